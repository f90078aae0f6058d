//! Checks of the harness itself on a cluster without the extension, so the
//! plumbing can be trusted when an extension test fails.

use backup_ext_e2e::*;
use std::time::Duration;

#[test]
fn harness_runs_a_plain_cluster() {
    let c = Cluster::start_without_extension("harness");
    assert!(c.data.join("PG_VERSION").exists());
    assert_eq!(c.psql("postgres", "SELECT 1 + 1").trim(), "2");
    let version: String = c
        .client("postgres")
        .query_one("SHOW server_version_num", &[])
        .unwrap()
        .get(0);
    assert!(
        version.starts_with(&pg_major().to_string()),
        "server_version_num {version}"
    );

    c.create_sample_db("sample");
    assert_eq!(c.table_fingerprint("sample", "t1").0, 10_000);
    assert_eq!(c.table_fingerprint("sample", "t2").0, 100);
    assert_eq!(c.table_fingerprint("sample", "t3").0, 500);

    // A dump taken with the same tools the worker uses, read back.
    let file = c.root.join("manual.dump");
    let out = c.run_tool(
        "pg_dump",
        &[
            "--format=custom",
            "-Z",
            "0",
            "-f",
            path_str(&file),
            "-d",
            "sample",
        ],
    );
    check_output("pg_dump", &out);
    let list = pg_restore_list(&c, &file);
    assert!(list.contains(uncompressed_listing()), "{list}");
    let entries = toc_entries(&list);
    let tables: Vec<_> = entries
        .iter()
        .filter(|e| e.0 == "TABLE")
        .map(|e| e.2.as_str())
        .collect();
    assert_eq!(tables, ["t1", "t2", "t3"]);
    assert_eq!(entries.iter().filter(|e| e.0 == "TABLE DATA").count(), 3);
    assert_eq!(sha256_file(&file).len(), 64);

    c.client("postgres")
        .batch_execute("CREATE DATABASE copy")
        .unwrap();
    let out = c.run_tool("pg_restore", &["-j", "2", "-d", "copy", path_str(&file)]);
    check_output("pg_restore", &out);
    for t in ["t1", "t2", "t3"] {
        assert_eq!(
            c.table_fingerprint("sample", t),
            c.table_fingerprint("copy", t)
        );
    }

    c.restart_immediate();
    assert_eq!(c.psql("postgres", "SELECT 'back'").trim(), "back");
    let start = std::time::Instant::now();
    c.wait_until("a second", Duration::from_secs(5), || {
        start.elapsed() > Duration::from_millis(200)
    });
    assert!(c.log_tail(200).contains("database system is ready"));
    assert_eq!(
        folder_name("we'ird = db/../ü x"),
        "we%27ird%20%3D%20db%2F..%2F%C3%BC%20x"
    );
    c.stop();
}
