//! Restore and verification against a real PostgreSQL server. Ignored by
//! default; run with a throwaway cluster:
//!
//! ```text
//! BACKUP_CORE_PG_BIN=/usr/lib/postgresql/15/bin BACKUP_CORE_PG_SOCKET=/tmp/core3 \
//! BACKUP_CORE_PG_PORT=55077 BACKUP_CORE_PG_DB=src \
//!     cargo test -p backup_core --test real_restore -- --ignored --nocapture
//! ```
//!
//! The database named by BACKUP_CORE_PG_DB is dumped, never modified.

use backup_core::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

struct Server {
    bin: PathBuf,
    conn: Connection,
    db: String,
    work: PathBuf,
}

fn server() -> Server {
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("set {k}"));
    let work = std::env::temp_dir().join(format!("backup_core-real-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    Server {
        bin: PathBuf::from(var("BACKUP_CORE_PG_BIN")),
        conn: Connection {
            socket_dir: PathBuf::from(var("BACKUP_CORE_PG_SOCKET")),
            port: var("BACKUP_CORE_PG_PORT").parse().unwrap(),
            user: "postgres".into(),
            application_name: "backup_core test".into(),
        },
        db: var("BACKUP_CORE_PG_DB"),
        work,
    }
}

fn finish(run: &mut dyn JobRun) -> JobResult {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(r) = run.poll() {
            return r;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run_tool(cmd: (PathBuf, Vec<std::ffi::OsString>)) -> String {
    let out = Command::new(&cmd.0).args(&cmd.1).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn counts(s: &Server, db: &str) -> BTreeMap<String, u64> {
    parse_counts(&run_tool(psql_query_argv(
        &s.bin,
        &s.conn,
        db,
        row_count_query(),
    )))
    .unwrap()
}

fn dump(s: &Server, format: &str, file: &Path) {
    let req =
        DumpRequest::validate(format, None, None, &json!({}), DumpTool::by_version(15)).unwrap();
    let (prog, args) = pg_dump_argv(&s.bin, &s.conn, &s.db, &req, None);
    let out = Command::new(prog).args(args).output().unwrap();
    assert!(out.status.success());
    std::fs::write(file, out.stdout).unwrap();
}

fn sha_and_size(file: &Path) -> (String, u64) {
    use sha2::Digest;
    let data = std::fs::read(file).unwrap();
    (hex::encode(sha2::Sha256::digest(&data)), data.len() as u64)
}

#[test]
#[ignore]
fn verify_and_restore_for_real() {
    let s = server();
    let source_counts = counts(&s, &s.db);
    println!("source tables: {source_counts:?}");
    let scratch = "-verify scratch 'q\" ü";
    validate_database_name(scratch).unwrap();

    // Custom format: hash, list, test restore with row counts.
    let archive = s.work.join("a.dump");
    dump(&s, "custom", &archive);
    let (sha, size) = sha_and_size(&archive);
    let req = RestoreRequest::validate(Format::Custom, false, true, Some(2), &json!({})).unwrap();
    let plan = VerifyPlan {
        decrypted: None,
        path: archive.clone(),
        format: Format::Custom,
        expected_sha256: sha,
        expected_size: size,
        list: Some(pg_restore_list_argv(&s.bin, &archive).into()),
        test_restore: Some(TestRestorePlan {
            create: createdb_argv(&s.bin, &s.conn, "postgres", scratch).into(),
            restore: RestoreStep::PgRestore(
                pg_restore_argv(&s.bin, &s.conn, scratch, &archive, &req, None, None, true).into(),
            ),
            archive_rows: ArchiveRows::FromPgRestore(
                pg_restore_to_stdout_argv(&s.bin, &archive).into(),
            ),
            count: psql_query_argv(&s.bin, &s.conn, scratch, row_count_query()).into(),
            drop: dropdb_argv(&s.bin, &s.conn, "postgres", scratch).into(),
        }),
        work_dir: s.work.clone(),
    };
    let JobResult::Verify(report) = finish(&mut VerifyRun::start(plan.clone()).unwrap()) else {
        panic!()
    };
    println!("verify custom: {report:?}");
    assert!(report.passed, "{}", report.message);
    assert_eq!(
        compare_counts(&report.archive_rows.unwrap(), &source_counts),
        Vec::<String>::new()
    );

    // Plain gzipped dump: psql from stdin, rows counted in the file.
    let plain = s.work.join("a.sql");
    dump(&s, "plain", &plain);
    let gz = s.work.join("a.sql.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, &std::fs::read(&plain).unwrap()).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let (sha, size) = sha_and_size(&gz);
    let mut plain_plan = plan.clone();
    plain_plan.path = gz.clone();
    plain_plan.format = Format::Plain;
    plain_plan.expected_sha256 = sha;
    plain_plan.expected_size = size;
    plain_plan.list = None;
    if let Some(t) = plain_plan.test_restore.as_mut() {
        t.restore = RestoreStep::PsqlStdin {
            command: psql_script_argv(&s.bin, &s.conn, scratch, None, true, true, &[]).into(),
            input: gz.clone().into(),
            compressed: true,
            skip_settings: Vec::new(),
            rows_of: None,
        };
        t.archive_rows = ArchiveRows::FromPlainFile { compressed: true };
    }
    let JobResult::Verify(report) = finish(&mut VerifyRun::start(plain_plan).unwrap()) else {
        panic!()
    };
    println!("verify plain.gz: {}", report.message);
    assert!(report.passed, "{}", report.message);

    // Restore selected TOC entries into a new database.
    let listing = run_tool(pg_restore_list_argv(&s.bin, &archive));
    let entries = parse_toc(&listing).unwrap();
    let ids: Vec<i64> = entries
        .iter()
        .filter(|e| e.name == "t" && (e.kind == "TABLE" || e.kind == "TABLE DATA"))
        .map(|e| e.toc_id)
        .collect();
    assert_eq!(ids.len(), 2, "source needs a table public.t with data");
    let list_file = s.work.join("use.list");
    std::fs::write(&list_file, use_list_for(&listing, &ids).unwrap()).unwrap();
    let target = "restored -x";
    let req = RestoreRequest::validate(Format::Custom, false, true, None, &json!({"toc_ids": ids}))
        .unwrap();
    let mut run = RestoreRun::start(RestorePlan {
        create: Some(createdb_argv(&s.bin, &s.conn, "postgres", target).into()),
        restore: RestoreStep::PgRestore(
            pg_restore_argv(
                &s.bin,
                &s.conn,
                target,
                &archive,
                &req,
                Some(&list_file),
                None,
                true,
            )
            .into(),
        ),
        drop_on_failure: Some(dropdb_argv(&s.bin, &s.conn, "postgres", target).into()),
        work_dir: s.work.clone(),
        stdin: None,
        rows: Default::default(),
    })
    .unwrap();
    let result = finish(&mut run);
    println!("toc restore: {result:?}");
    assert!(matches!(result, JobResult::Restore { ok: true, .. }));
    let restored = counts(&s, target);
    println!("restored tables: {restored:?}");
    assert_eq!(restored.len(), 1);
    assert_eq!(restored.get("public.t"), source_counts.get("public.t"));
    run_tool(dropdb_argv(&s.bin, &s.conn, "postgres", target));

    // A restore that fails (the target exists already, pg_restore with
    // --exit-on-error into a non-empty database) is dropped afterwards.
    let failing = "failing restore";
    run_tool(createdb_argv(&s.bin, &s.conn, "postgres", failing));
    let req = RestoreRequest::validate(Format::Custom, false, false, None, &json!({})).unwrap();
    let restore = pg_restore_argv(&s.bin, &s.conn, failing, &archive, &req, None, None, true);
    run_tool(restore.clone());
    let mut run = RestoreRun::start(RestorePlan {
        create: None,
        restore: RestoreStep::PgRestore(restore.into()),
        drop_on_failure: Some(dropdb_argv(&s.bin, &s.conn, "postgres", failing).into()),
        work_dir: s.work.clone(),
        stdin: None,
        rows: Default::default(),
    })
    .unwrap();
    let result = finish(&mut run);
    println!("failing restore: {result:?}");
    assert!(matches!(result, JobResult::Restore { ok: false, .. }));
    let dbs = run_tool(psql_query_argv(
        &s.bin,
        &s.conn,
        "postgres",
        "SELECT datname FROM pg_database",
    ));
    assert!(!dbs.lines().any(|l| l == failing || l == scratch), "{dbs}");

    // Globals: the roles exist already.
    let globals = s.work.join("globals.sql");
    let (prog, args) =
        pg_dumpall_globals_argv(&s.bin, &s.conn, "postgres", &GlobalsRequest::default());
    let out = Command::new(prog).args(args).output().unwrap();
    std::fs::write(&globals, out.stdout).unwrap();
    let mut run = RestoreRun::start(RestorePlan {
        create: None,
        restore: RestoreStep::Globals {
            command: psql_script_argv(
                &s.bin,
                &s.conn,
                "postgres",
                Some(&globals),
                false,
                false,
                &[],
            )
            .into(),
        },
        drop_on_failure: None,
        work_dir: s.work.clone(),
        stdin: None,
        rows: Default::default(),
    })
    .unwrap();
    let result = finish(&mut run);
    println!("globals: {result:?}");
    assert!(matches!(result, JobResult::Restore { ok: true, .. }));
    assert!(std::fs::read_dir(&s.work).unwrap().all(|e| !e
        .unwrap()
        .path()
        .to_string_lossy()
        .ends_with(".stderr")));
    std::fs::remove_dir_all(&s.work).unwrap();
}
