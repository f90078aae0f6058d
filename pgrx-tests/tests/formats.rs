//! Dump formats, their artifacts on disk, options, restores, hostile
//! database names, failing dumps and globals.
//!
//! All tests share one cluster; each test dumps its own database so that
//! checks on a database folder only see that test's files.

use backup_ext_e2e::*;
use std::fs;
use std::path::Path;

fn cluster() -> SharedCluster {
    shared_cluster("formats", &[])
}

fn enqueue_and_finish(c: &Cluster, sql: &str) -> (i64, Backup) {
    let job = c.enqueue(sql);
    let status = c.wait_final(job, SMALL_JOB);
    let backup = c.backup(job);
    assert_eq!(
        status,
        "succeeded",
        "{sql}: job {job} ended {status}: {backup:?}\n{}",
        c.log_tail(30)
    );
    (job, backup)
}

fn assert_no_partials(c: &Cluster, folder: &str) {
    let partials = partials_under(&c.backups.join(folder));
    assert!(partials.is_empty(), "left behind: {partials:?}");
}

fn assert_common(b: &Backup, job: i64, db: &str, format: &str, label: &str) {
    assert_eq!(b.job_id, job);
    assert_eq!(b.kind, "database");
    assert_eq!(b.database.as_deref(), Some(db));
    assert_eq!(b.format.as_deref(), Some(format));
    assert_eq!(b.status, "succeeded");
    assert_eq!(b.label.as_deref(), Some(label));
    assert_eq!(b.requested_by.as_deref(), Some("postgres"));
    assert!(b.started && b.finished, "{b:?}");
    assert_eq!(b.error, None);
    let server = b.server_version.as_deref().unwrap_or("");
    let major = pg_major().to_string();
    assert!(server.starts_with(&major), "server_version {server:?}");
    let tool = b.tool_version.as_deref().unwrap_or("");
    assert!(
        tool.contains(&format!(" {major}.")),
        "tool_version {tool:?}"
    );
}

/// A file artifact: size and SHA-256 recorded match the bytes on disk.
fn assert_file_artifact(b: &Backup) -> std::path::PathBuf {
    let path = b.path_buf();
    let meta = fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(meta.is_file(), "{} is not a file", path.display());
    assert_eq!(b.size_bytes, Some(meta.len() as i64), "size_bytes of {b:?}");
    assert_eq!(
        b.sha256.as_deref(),
        Some(sha256_file(&path).as_str()),
        "sha256"
    );
    path
}

fn table_entries(list: &str, desc: &str) -> Vec<String> {
    let mut names: Vec<String> = toc_entries(list)
        .into_iter()
        .filter(|e| e.0 == desc && e.1 == "public")
        .map(|e| e.2)
        .collect();
    names.sort();
    names
}

fn check_file_format(db: &str, format: &str, extra: &str, suffix: &str) -> (Backup, String) {
    let c = cluster();
    c.create_sample_db(db);
    let label = format!("{format} {db}");
    let (job, b) = enqueue_and_finish(
        &c,
        &format!(
            "SELECT backup_ext.backup_database({}, format => {}, label => {}{extra})",
            quote_literal(db),
            quote_literal(format),
            quote_literal(&label)
        ),
    );
    assert_common(&b, job, db, format, &label);
    let path = assert_file_artifact(&b);
    assert_backup_path(&c.backups, db, job, suffix, &path);
    assert_no_partials(&c, db);
    let list = if format == "plain" {
        String::new()
    } else {
        let list = pg_restore_list(&c, &path);
        assert_eq!(table_entries(&list, "TABLE"), ["t1", "t2", "t3"], "{list}");
        assert_eq!(
            table_entries(&list, "TABLE DATA"),
            ["t1", "t2", "t3"],
            "{list}"
        );
        list
    };
    (b, list)
}

#[test]
fn custom_format() {
    check_file_format("fmt_custom", "custom", "", ".dump");
}

#[test]
fn custom_format_uncompressed() {
    let (_, list) = check_file_format("fmt_custom0", "custom", ", compress => '0'", ".dump");
    assert!(list.contains(uncompressed_listing()), "{list}");
}

#[test]
fn tar_format() {
    check_file_format("fmt_tar", "tar", "", ".tar");
}

#[test]
fn plain_format() {
    let (b, _) = check_file_format("fmt_plain", "plain", "", ".sql");
    let text = fs::read_to_string(b.path_buf()).expect("plain dump is UTF-8");
    assert!(text.contains("CREATE TABLE public.t1 ("), "no CREATE TABLE");
    assert!(text.contains("COPY public.t1 "), "no COPY for t1");
    assert!(text.contains("grüße 1 日本語 🐘"), "unicode text missing");
}

#[test]
fn directory_format_with_two_jobs() {
    let c = cluster();
    let db = "fmt_directory";
    c.create_sample_db(db);
    let (job, b) = enqueue_and_finish(
        &c,
        &format!(
            "SELECT backup_ext.backup_database('{db}', format => 'directory', jobs => 2,
                                               label => 'dir')"
        ),
    );
    assert_common(&b, job, db, "directory", "dir");
    let path = b.path_buf();
    assert!(path.is_dir(), "{} is not a directory", path.display());
    assert_backup_path(&c.backups, db, job, ".dir", &path);
    assert_no_partials(&c, db);

    let (entries, text, total) = directory_manifest(&path);
    assert!(entries.iter().any(|e| e.name == "toc.dat"), "{entries:?}");
    assert_eq!(b.size_bytes, Some(total as i64), "size_bytes");
    let manifest_sha = sha256_hex(text.as_bytes());
    assert_eq!(
        b.sha256.as_deref(),
        Some(manifest_sha.as_str()),
        "sha256 of\n{text}"
    );

    let mut client = c.client("postgres");
    let rows = client
        .query(
            "SELECT manifest::text FROM backup_ext.artifacts WHERE manifest->>'sha256' = $1",
            &[&manifest_sha],
        )
        .expect("artifacts");
    assert_eq!(
        rows.len(),
        1,
        "artifacts rows with manifest sha {manifest_sha}"
    );
    let manifest: serde_json::Value = serde_json::from_str(rows[0].get(0)).unwrap();
    assert_eq!(manifest["total_size"].as_u64(), Some(total), "{manifest}");
    let files = manifest["files"].as_array().expect("files array");
    let recorded: Vec<(String, u64, String)> = files
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["size"].as_u64().unwrap(),
                f["sha256"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let computed: Vec<(String, u64, String)> = entries
        .iter()
        .map(|e| (e.name.clone(), e.size, e.sha256.clone()))
        .collect();
    assert_eq!(recorded, computed);

    let list = pg_restore_list(&c, &path);
    assert_eq!(table_entries(&list, "TABLE"), ["t1", "t2", "t3"], "{list}");
    assert_eq!(
        table_entries(&list, "TABLE DATA"),
        ["t1", "t2", "t3"],
        "{list}"
    );
}

#[test]
fn custom_dump_restores_with_identical_data() {
    let c = cluster();
    let db = "roundtrip_src";
    c.create_sample_db(db);
    let (_, b) = enqueue_and_finish(&c, &format!("SELECT backup_ext.backup_database('{db}')"));
    let path = assert_file_artifact(&b);

    c.client("postgres")
        .batch_execute("CREATE DATABASE roundtrip_dst")
        .unwrap();
    let out = c.run_tool(
        "pg_restore",
        &[
            "-j",
            "2",
            "--exit-on-error",
            "-d",
            "roundtrip_dst",
            path_str(&path),
        ],
    );
    check_output("pg_restore -j 2", &out);
    for t in ["t1", "t2", "t3"] {
        let src = c.table_fingerprint(db, t);
        let dst = c.table_fingerprint("roundtrip_dst", t);
        assert!(src.0 > 0);
        assert_eq!(src, dst, "table {t}");
    }
    let views = c.psql("roundtrip_dst", "SELECT count(*) FROM t1_even");
    assert_eq!(views.trim(), "5000");
}

#[test]
fn options_select_what_is_dumped() {
    let c = cluster();
    let db = "opts";
    c.create_sample_db(db);

    let (_, only_t1) = enqueue_and_finish(
        &c,
        "SELECT backup_ext.backup_database('opts', options => '{\"tables\":[\"public.t1\"]}')",
    );
    let list = pg_restore_list(&c, &only_t1.path_buf());
    assert_eq!(table_entries(&list, "TABLE"), ["t1"], "{list}");
    assert_eq!(table_entries(&list, "TABLE DATA"), ["t1"], "{list}");

    let (_, schema_only) = enqueue_and_finish(
        &c,
        "SELECT backup_ext.backup_database('opts', options => '{\"schema_only\":true}')",
    );
    let list = pg_restore_list(&c, &schema_only.path_buf());
    assert_eq!(table_entries(&list, "TABLE"), ["t1", "t2", "t3"], "{list}");
    assert_eq!(
        table_entries(&list, "TABLE DATA"),
        Vec::<String>::new(),
        "{list}"
    );

    let (_, no_t1_data) = enqueue_and_finish(
        &c,
        "SELECT backup_ext.backup_database('opts', format => 'tar',
                 options => '{\"exclude_table_data\":[\"public.t1\"], \"no_owner\":true}')",
    );
    let list = pg_restore_list(&c, &no_t1_data.path_buf());
    assert_eq!(table_entries(&list, "TABLE"), ["t1", "t2", "t3"], "{list}");
    assert_eq!(table_entries(&list, "TABLE DATA"), ["t2", "t3"], "{list}");
    assert_no_partials(&c, db);
}

#[test]
fn hostile_database_name_stays_inside_the_backup_directory() {
    let c = cluster();
    let db = "we'ird = db/../ü x";
    c.client("postgres")
        .batch_execute(&format!("CREATE DATABASE {}", quote_ident(db)))
        .unwrap();
    c.client(db)
        .batch_execute("CREATE TABLE marker (id int PRIMARY KEY); INSERT INTO marker VALUES (42)")
        .unwrap();
    let mut client = c.client("postgres");
    let job: i64 = client
        .query_one("SELECT backup_ext.backup_database($1)", &[&db])
        .unwrap()
        .get(0);
    assert_eq!(
        c.wait_final(job, SMALL_JOB),
        "succeeded",
        "{:?}",
        c.job(job)
    );
    let b = c.backup(job);
    assert_eq!(b.database.as_deref(), Some(db));
    let path = assert_file_artifact(&b);
    assert!(
        !path
            .components()
            .any(|p| matches!(p, std::path::Component::ParentDir)),
        "{}",
        path.display()
    );
    let folder = folder_name(db);
    assert_eq!(folder, "we%27ird%20%3D%20db%2F..%2F%C3%BC%20x");
    assert_backup_path(&c.backups, &folder, job, ".dump", &path);
    assert!(path.canonicalize().unwrap().starts_with(&c.backups));
    // Nothing was written anywhere else under the backups directory.
    let top: Vec<_> = fs::read_dir(&c.backups)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("we"))
        .collect();
    assert_eq!(top, std::slice::from_ref(&folder));
    let list = pg_restore_list(&c, &path);
    assert_eq!(table_entries(&list, "TABLE"), ["marker"], "{list}");
    assert_no_partials(&c, &folder);
}

#[test]
fn failing_dump_is_recorded_and_leaves_no_file() {
    let c = cluster();
    let db = "fails";
    c.create_sample_db(db);
    let job = c.enqueue(
        "SELECT backup_ext.backup_database('fails', options => '{\"tables\":[\"no_such_table\"]}')",
    );
    assert_eq!(c.wait_final(job, SMALL_JOB), "failed");
    let j = c.job(job);
    assert_eq!(j.status, "failed");
    assert!(j.finished, "{j:?}");
    let err = j.error.clone().unwrap_or_default();
    assert!(err.contains("no matching tables"), "job error: {err:?}");
    let b = c.backup(job);
    assert_eq!(b.status, "failed");
    assert!(
        b.error
            .as_deref()
            .unwrap_or("")
            .contains("no matching tables"),
        "{b:?}"
    );
    if let Some(p) = &b.path {
        assert!(!Path::new(p).exists(), "failed job left {p}");
    }
    let folder = c.backups.join(folder_name(db));
    let leftovers: Vec<_> = fs::read_dir(&folder)
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}

#[test]
fn globals_dump_with_and_without_role_passwords() {
    let c = cluster();
    let password = "secret_e2e_pw";
    c.client("postgres")
        .batch_execute(&format!(
            "CREATE ROLE globals_probe LOGIN PASSWORD '{password}'"
        ))
        .unwrap();

    let (job, b) = enqueue_and_finish(&c, "SELECT backup_ext.backup_globals(label => 'g1')");
    assert_eq!(b.kind, "globals");
    assert_eq!(b.label.as_deref(), Some("g1"));
    let path = assert_file_artifact(&b);
    assert_backup_path(&c.backups, "globals", job, ".sql", &path);
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.contains("CREATE ROLE globals_probe;"), "{text}");
    assert!(text.contains("PASSWORD 'SCRAM-SHA-256$"), "{text}");

    let (job2, b2) = enqueue_and_finish(
        &c,
        "SELECT backup_ext.backup_globals(no_role_passwords => true)",
    );
    let path2 = assert_file_artifact(&b2);
    assert_backup_path(&c.backups, "globals", job2, ".sql", &path2);
    let text2 = fs::read_to_string(&path2).unwrap();
    assert!(text2.contains("CREATE ROLE globals_probe;"), "{text2}");
    assert!(!text2.contains("PASSWORD"), "{text2}");
    assert_no_partials(&c, "globals");

    // The clear-text password is nowhere in the extension's tables or the log.
    let mut client = c.client("postgres");
    let relations: Vec<String> = client
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname)
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'backup_ext' AND c.relkind IN ('r', 'v', 'm')",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!relations.is_empty());
    for rel in relations {
        let hits: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM {rel} t WHERE t::text LIKE '%' || $1 || '%'"),
                &[&"secret"],
            )
            .unwrap()
            .get(0);
        assert_eq!(hits, 0, "'secret' found in {rel}");
    }
    assert!(
        !c.log_text().contains("secret"),
        "'secret' in the server log"
    );
}
