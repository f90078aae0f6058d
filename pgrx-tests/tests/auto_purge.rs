//! The automatic purge after a successful backup: it applies the policy of
//! the backed-up database (or of globals) only. The test runs on its own
//! cluster because it counts files and rows cluster-wide.

use backup_ext_e2e::*;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

#[test]
fn successful_backup_purges_its_own_database_only() {
    let c = Cluster::start("autopurge");
    let mut client = c.client("postgres");
    c.create_sample_db("ret_auto");
    let five: Vec<(i32, i32)> = (1..=5).map(|d| (d, 3)).collect();
    let auto_ids = fabricate(&c, &mut client, "ret_auto", &five);
    let other_ids = fabricate(&c, &mut client, "ret_other", &five);
    exec(
        &mut client,
        "SELECT backup_ext.set_retention('ret_auto', keep_last => 2);
         SELECT backup_ext.set_retention('ret_other', keep_last => 2);",
    );
    let partial = c
        .backups
        .join("ret_other")
        .join("20250101T000000Z-job000000999999.dump.partial");
    c.write_server_file(&partial, b"half");
    let other_before = rows_of(&mut client, "ret_other");

    let job = c.enqueue("SELECT backup_ext.backup_database('ret_auto')");
    assert_eq!(c.wait_final(job, SMALL_JOB), "succeeded");
    let newest_fabricated = *auto_ids.last().unwrap();
    c.wait_until(
        "the automatic purge of ret_auto",
        Duration::from_secs(20),
        || {
            rows_of(&mut c.client("postgres"), "ret_auto")
                .values()
                .filter(|(s, _)| s == "expired")
                .count()
                == 4
        },
    );
    let rows = rows_of(&mut client, "ret_auto");
    let live: BTreeSet<i64> = rows
        .iter()
        .filter(|(_, (s, _))| s == "succeeded")
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(live, BTreeSet::from([newest_fabricated, job]));
    let on_disk = files_under(&c.backups.join("ret_auto"));
    let expected: BTreeSet<PathBuf> = live
        .iter()
        .map(|id| PathBuf::from(rows[id].1.as_deref().unwrap()))
        .collect();
    assert_eq!(on_disk, expected);
    // Another database with a policy and a leftover is not touched.
    assert_eq!(rows_of(&mut client, "ret_other"), other_before);
    assert_eq!(
        files_under(&c.backups.join("ret_other")).len(),
        other_ids.len() + 1
    );
    assert!(partial.exists());

    // Globals have their own policy and are purged after a globals backup.
    exec(
        &mut client,
        "SELECT backup_ext.set_retention('globals', keep_last => 1)",
    );
    let first = c.enqueue("SELECT backup_ext.backup_globals()");
    assert_eq!(c.wait_final(first, SMALL_JOB), "succeeded");
    let first_path = c.backup(first).path_buf();
    let second = c.enqueue("SELECT backup_ext.backup_globals()");
    assert_eq!(c.wait_final(second, SMALL_JOB), "succeeded");
    c.wait_until(
        "the automatic purge of globals",
        Duration::from_secs(20),
        || c.backup(first).status == "expired",
    );
    assert!(
        !first_path.exists(),
        "{} still exists",
        first_path.display()
    );
    assert_eq!(c.backup(second).status, "succeeded");
    assert_eq!(
        files_under(&c.backups.join("globals")),
        BTreeSet::from([c.backup(second).path_buf()])
    );
    // ret_auto was not purged again: its two live backups are untouched.
    assert_eq!(
        rows_of(&mut client, "ret_auto")
            .values()
            .filter(|(s, _)| s == "succeeded")
            .count(),
        2
    );
}
