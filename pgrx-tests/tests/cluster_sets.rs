//! Cluster-wide backup sets made by `backup_cluster`. The test runs on its
//! own cluster because it counts databases, jobs and files cluster-wide.

use backup_ext_e2e::*;
use std::collections::BTreeSet;
use std::fs;
use std::time::Duration;

#[test]
fn backup_cluster_dumps_every_database_as_one_set() {
    let c = Cluster::start("cluster_set");
    let hostile = "we'ird \"db\" ü/x";
    let user_dbs = ["cl_a", "cl_b", "cl_c", hostile];
    for db in user_dbs.iter().chain(&["cl_skip"]) {
        c.create_sample_db(db);
    }
    let mut client = c.client("postgres");
    exec(
        &mut client,
        "CREATE TABLE public.cl_marker AS SELECT generate_series(1, 42) AS id",
    );

    // Refused requests create no set.
    expect_sqlstate(
        &mut client,
        "SELECT backup_ext.backup_cluster(options => '{\"include_databases\": [\"nope\"]}')",
        "3D000",
    );
    expect_sqlstate(
        &mut client,
        "SELECT backup_ext.backup_cluster('zip')",
        "22023",
    );
    expect_sqlstate(
        &mut client,
        "SELECT backup_ext.backup_cluster(options => '{\"exclude_databases\": \"cl_a\"}')",
        "22023",
    );
    assert_eq!(
        one_i64(&mut client, "SELECT count(*) FROM backup_ext.backup_sets"),
        0
    );
    assert_eq!(
        one_i64(&mut client, "SELECT count(*) FROM backup_ext.jobs"),
        0
    );

    let set_id: i64 = client
        .query_one(
            "SELECT backup_ext.backup_cluster('custom', 'nightly',
                 '{\"exclude_databases\": [\"cl_skip\"], \"exclude_table_data\": [\"t2\"]}')",
            &[],
        )
        .unwrap_or_else(|e| panic!("backup_cluster: {}", describe(&e)))
        .get(0);
    let mem = members(&mut client, set_id);
    let got: BTreeSet<(String, Option<String>)> =
        mem.iter().map(|m| (m.1.clone(), m.2.clone())).collect();
    let mut want: BTreeSet<(String, Option<String>)> =
        BTreeSet::from([("globals".to_string(), None)]);
    for db in user_dbs.iter().chain(&["postgres"]) {
        want.insert(("database".into(), Some(db.to_string())));
    }
    assert_eq!(mem.len(), 6, "{mem:?}");
    assert_eq!(got, want);
    for (job, _, _) in &mem {
        assert_eq!(
            c.wait_final(*job, SMALL_JOB),
            "succeeded",
            "{:?}",
            c.job(*job)
        );
    }
    let s = set_row(&mut client, set_id);
    assert_eq!(
        (s.members, s.succeeded, s.failed, s.status.as_str()),
        (6, 6, 0, "succeeded")
    );
    let total_size = one_i64(
        &mut client,
        &format!(
            "SELECT sum(a.size_bytes)::bigint FROM backup_ext.artifacts a
               JOIN backup_ext.jobs j USING (job_id) WHERE j.set_id = {set_id}"
        ),
    );
    assert_eq!(s.size_bytes, Some(total_size));
    assert!(total_size > 0);
    // list_backups() carries the set id and the label.
    let listed = one_i64(
        &mut client,
        &format!(
            "SELECT count(*) FROM backup_ext.list_backups()
              WHERE set_id = {set_id} AND label = 'nightly' AND status = 'succeeded'"
        ),
    );
    assert_eq!(listed, 6);

    for (i, (job, kind, db)) in mem.iter().enumerate() {
        let b = c.backup(*job);
        let path = b.path_buf();
        assert_eq!(
            b.size_bytes,
            Some(fs::metadata(&path).unwrap().len() as i64)
        );
        assert_eq!(b.sha256.as_deref(), Some(sha256_file(&path).as_str()));
        if kind == "globals" {
            assert_backup_path(&c.backups, "globals", *job, ".sql", &path);
            let text = fs::read_to_string(&path).unwrap();
            assert!(text.contains("CREATE ROLE backup_ext_operator;"), "{text}");
            continue;
        }
        let db = db.as_deref().unwrap();
        assert_eq!(b.format.as_deref(), Some("custom"));
        assert_backup_path(&c.backups, &folder_name(db), *job, ".dump", &path);
        let target = format!("restored_{i}");
        exec(&mut client, &format!("CREATE DATABASE {target}"));
        if db == "postgres" {
            let out = c.run_tool(
                "pg_restore",
                &[
                    "--exit-on-error",
                    "-d",
                    &target,
                    "-t",
                    "cl_marker",
                    path_str(&path),
                ],
            );
            check_output("pg_restore postgres", &out);
            assert_eq!(
                one_i64(&mut c.client(&target), "SELECT count(*) FROM cl_marker"),
                42
            );
            continue;
        }
        let out = c.run_tool(
            "pg_restore",
            &["--exit-on-error", "-d", &target, path_str(&path)],
        );
        check_output(&format!("pg_restore of {db}"), &out);
        assert_eq!(
            c.table_fingerprint(&target, "t1"),
            c.table_fingerprint(db, "t1"),
            "t1 of {db}"
        );
        assert_eq!(c.table_fingerprint(&target, "t3").0, 500);
        // exclude_table_data applied to every database.
        assert_eq!(c.table_fingerprint(db, "t2").0, 100);
        assert_eq!(c.table_fingerprint(&target, "t2").0, 0, "t2 of {db}");
    }
    assert!(!c.backups.join("cl_skip").exists());

    // A set with a cancelled member is failed.
    let holder = lock_t1(&c, "cl_a");
    let set2: i64 = client
        .query_one(
            "SELECT backup_ext.backup_cluster(options => '{\"include_databases\": [\"cl_a\"]}')",
            &[],
        )
        .unwrap()
        .get(0);
    let mem2 = members(&mut client, set2);
    assert_eq!(mem2.len(), 2, "{mem2:?}");
    let globals_job = mem2.iter().find(|m| m.1 == "globals").unwrap().0;
    let db_job = mem2
        .iter()
        .find(|m| m.2.as_deref() == Some("cl_a"))
        .unwrap()
        .0;
    assert_eq!(c.wait_final(globals_job, SMALL_JOB), "succeeded");
    c.wait_for_status(db_job, &["running"], SMALL_JOB);
    wait_dump_blocked(&c, "cl_a");
    let s = set_row(&mut client, set2);
    assert_eq!(
        (s.members, s.succeeded, s.failed, s.status.as_str()),
        (2, 1, 0, "running")
    );
    exec(&mut client, &format!("SELECT backup_ext.cancel({db_job})"));
    assert_eq!(
        c.wait_for_status(db_job, &["cancelled"], Duration::from_secs(15)),
        "cancelled"
    );
    drop(holder);
    let s = set_row(&mut client, set2);
    assert_eq!(
        (s.members, s.succeeded, s.failed, s.status.as_str()),
        (2, 1, 1, "failed")
    );
    // The first set is unaffected.
    assert_eq!(set_row(&mut client, set_id).status, "succeeded");
}
