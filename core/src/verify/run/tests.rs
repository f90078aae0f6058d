//! VerifyRun driven by shell scripts standing in for the tools.

use super::*;
use crate::files::manifest::directory_manifest;
use crate::test_support::{fake_tool, poll_job, TempDir};
use sha2::{Digest, Sha256};
use std::fs;
use std::time::{Duration, Instant};

const LISTING: &str = ";\n; Archive created at x\n;\n\
216; 1259 16393 TABLE public t postgres\n\
3360; 0 16393 TABLE DATA public t postgres\n";
const COPY: &str = "COPY public.t (a) FROM stdin;\n1\n2\n\\.\n";

struct Env {
    dir: TempDir,
    file: PathBuf,
}

impl Env {
    fn new(content: &str) -> Env {
        let dir = TempDir::new("verify_run");
        fs::create_dir(dir.path().join("work")).unwrap();
        let file = dir.path().join("b.dump");
        fs::write(&file, content).unwrap();
        Env { dir, file }
    }

    fn marker(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn touching(&self, tool: &str, marker: &str, extra: &str) -> ToolCommand {
        let body = format!("touch '{}'\n{extra}", self.marker(marker).display());
        fake_tool(&self.dir, tool, &body)
    }

    fn printing(&self, tool: &str, text: &str) -> ToolCommand {
        let path = self.dir.path().join(format!("{tool}.out"));
        fs::write(&path, text).unwrap();
        fake_tool(&self.dir, tool, &format!("cat '{}'", path.display()))
    }

    fn plan(&self, content: &str) -> VerifyPlan {
        VerifyPlan {
            decrypted: None,
            path: self.file.clone(),
            format: Format::Custom,
            expected_sha256: hex::encode(Sha256::digest(content.as_bytes())),
            expected_size: content.len() as u64,
            list: None,
            test_restore: None,
            work_dir: self.dir.path().join("work"),
        }
    }

    fn test_restore(&self, count_output: &str) -> TestRestorePlan {
        TestRestorePlan {
            create: self.touching("createdb", "created", ""),
            restore: RestoreStep::PgRestore(self.touching("pg_restore", "restored", "")),
            archive_rows: ArchiveRows::FromPgRestore(self.printing("pg_restore_data", COPY)),
            count: self.printing("psql", count_output),
            drop: self.touching("dropdb", "dropped", ""),
        }
    }

    fn work_is_empty(&self) -> bool {
        fs::read_dir(self.dir.path().join("work"))
            .unwrap()
            .next()
            .is_none()
    }
}

fn report(run: &mut VerifyRun) -> VerifyReport {
    match poll_job(run) {
        JobResult::Verify(r) => r,
        other => panic!("{other:?}"),
    }
}

#[test]
fn hash_only() {
    let env = Env::new("abc");
    let mut run = VerifyRun::start(env.plan("abc")).unwrap();
    let r = report(&mut run);
    assert_eq!(
        (r.passed, r.message.as_str()),
        (true, "sha256 and size match")
    );
    assert_eq!(run.progress(), 3);
    assert!(run.poll().is_none());
}

#[test]
fn hash_and_size_mismatch() {
    let env = Env::new("abd!");
    let plan = env.plan("abc");
    let sha = plan.expected_sha256.clone();
    let mut run = VerifyRun::start(plan).unwrap();
    let r = report(&mut run);
    assert!(!r.passed);
    assert!(r
        .message
        .contains(&format!("sha256 mismatch: expected {sha}, got ")));
    assert!(
        r.message.contains("size mismatch: expected 3 bytes, got 4"),
        "{}",
        r.message
    );

    fs::remove_file(&env.file).unwrap();
    let r = report(&mut VerifyRun::start(env.plan("abc")).unwrap());
    assert!(
        !r.passed && r.message.starts_with("could not read"),
        "{}",
        r.message
    );
}

#[test]
fn directory_uses_the_manifest() {
    let env = Env::new("");
    let d = env.dir.path().join("b.dir");
    fs::create_dir(&d).unwrap();
    fs::write(d.join("toc.dat"), "toc").unwrap();
    fs::write(d.join("3360.dat.gz"), "data").unwrap();
    let m = directory_manifest(&d).unwrap();
    let mut plan = env.plan("");
    plan.path = d.clone();
    plan.format = Format::Directory;
    plan.expected_sha256 = m.sha256.clone();
    plan.expected_size = m.total_size;
    let r = report(&mut VerifyRun::start(plan.clone()).unwrap());
    assert!(r.passed, "{}", r.message);
    fs::write(d.join("toc.dat"), "tod").unwrap();
    let r = report(&mut VerifyRun::start(plan).unwrap());
    assert!(!r.passed);
    assert!(
        r.message.starts_with("manifest sha256 mismatch"),
        "{}",
        r.message
    );
}

#[test]
fn full_verification_passes_and_drops() {
    let env = Env::new("abc");
    let mut plan = env.plan("abc");
    plan.list = Some(env.printing("pg_restore_list", LISTING));
    plan.test_restore = Some(env.test_restore("public.t\u{1f}2\npublic.empty\u{1f}0\n"));
    let r = report(&mut VerifyRun::start(plan).unwrap());
    assert_eq!(
        r.message,
        "sha256 and size match; 2 TOC entries read; test restore: 1 tables, 2 rows, counts match"
    );
    assert!(r.passed);
    let rows = r.archive_rows.unwrap();
    assert_eq!(rows.get("public.t"), Some(&2));
    assert!(env.marker("created").exists() && env.marker("restored").exists());
    assert!(env.marker("dropped").exists());
    assert!(env.work_is_empty());
}

#[test]
fn count_mismatch_fails_and_drops() {
    let env = Env::new("abc");
    let mut plan = env.plan("abc");
    plan.test_restore = Some(env.test_restore("public.t\u{1f}1\n"));
    let r = report(&mut VerifyRun::start(plan).unwrap());
    assert!(!r.passed);
    assert_eq!(
        r.message,
        "sha256 and size match; test restore: 1 tables, 2 rows, 1 count mismatches: \
         table public.t: 2 rows in the backup, 1 after restore"
    );
    assert!(env.marker("dropped").exists());
}

#[test]
fn failed_restore_and_bad_listing() {
    let env = Env::new("abc");
    let mut plan = env.plan("abc");
    let mut t = env.test_restore("");
    t.restore = RestoreStep::PgRestore(fake_tool(
        &env.dir,
        "pg_restore",
        "echo 'pg_restore: error: bad' >&2; exit 1",
    ));
    plan.test_restore = Some(t);
    let r = report(&mut VerifyRun::start(plan.clone()).unwrap());
    assert!(!r.passed);
    assert!(r
        .message
        .ends_with("test restore: pg_restore exited with code 1: pg_restore: error: bad"));
    assert!(env.marker("dropped").exists());

    fs::remove_file(env.marker("dropped")).unwrap();
    plan.list = Some(env.printing("pg_restore_list", "garbage line\n"));
    let r = report(&mut VerifyRun::start(plan).unwrap());
    assert!(!r.passed);
    assert!(r.message.contains("unexpected line 1"), "{}", r.message);
    assert!(!env.marker("dropped").exists());
}

#[test]
fn failed_createdb_is_not_dropped() {
    let env = Env::new("abc");
    let mut plan = env.plan("abc");
    let mut t = env.test_restore("");
    t.create = fake_tool(&env.dir, "createdb", "exit 1");
    plan.test_restore = Some(t);
    let r = report(&mut VerifyRun::start(plan).unwrap());
    assert!(!r.passed);
    assert!(r
        .message
        .ends_with("test restore: createdb exited with code 1"));
    assert!(!env.marker("dropped").exists());
}

#[test]
fn plain_file_rows_and_drop_failure() {
    let env = Env::new(COPY);
    let mut plan = env.plan(COPY);
    plan.format = Format::Plain;
    let mut t = env.test_restore("public.t\u{1f}2\n");
    t.restore = RestoreStep::PsqlStdin {
        command: fake_tool(&env.dir, "psql_restore", "cat >/dev/null"),
        input: env.file.clone().into(),
        compressed: false,
        skip_settings: Vec::new(),
        rows_of: None,
    };
    t.archive_rows = ArchiveRows::FromPlainFile { compressed: false };
    t.drop = fake_tool(&env.dir, "dropdb", "echo gone wrong >&2; exit 1");
    plan.test_restore = Some(t);
    let r = report(&mut VerifyRun::start(plan).unwrap());
    assert!(r.passed, "{}", r.message);
    assert_eq!(
        r.message,
        "sha256 and size match; test restore: 1 tables, 2 rows, counts match; \
         could not drop the scratch database: dropdb exited with code 1: gone wrong"
    );
}

#[test]
fn cancel_during_test_restore_drops() {
    let env = Env::new("abc");
    let mut plan = env.plan("abc");
    let mut t = env.test_restore("");
    t.restore = RestoreStep::PgRestore(env.touching("pg_restore", "restored", "sleep 30"));
    plan.test_restore = Some(t);
    let mut run = VerifyRun::start(plan).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !env.marker("restored").exists() {
        assert!(run.poll().is_none());
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    let started = Instant::now();
    run.cancel();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(env.marker("dropped").exists());
    assert!(run.poll().is_none());
    assert!(env.work_is_empty());
}
