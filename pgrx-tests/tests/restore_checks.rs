//! Restores that cannot lie: a restore succeeds only when its tool reported no error and the
//! restored tables hold the rows the archive has for them; a restore that gets no further is
//! stopped (backup_ext.stall_timeout); a running restore shows its tables in
//! backup_ext.activity.

use std::time::{Duration, Instant};

use backup_ext_e2e::postgres::Client;
use backup_ext_e2e::*;

fn cluster() -> SharedCluster {
    shared_cluster("restore-checks", &[])
}

/// `(tables_done, tables_total)` of a job's row.
fn tables_of(c: &Cluster, job: i64) -> (Option<i32>, Option<i32>) {
    let row = c
        .client("postgres")
        .query_one(
            "SELECT tables_done, tables_total FROM backup_ext.jobs WHERE job_id = $1",
            &[&job],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

fn role_exists(c: &Cluster, role: &str) -> bool {
    c.client("postgres")
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)",
            &[&role],
        )
        .unwrap()
        .get(0)
}

fn run(client: &mut Client, sql: &str) {
    client
        .batch_execute(sql)
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
}

#[test]
fn a_restore_says_how_many_rows_it_restored_and_that_they_match() {
    let c = cluster();
    let src = "checks_src";
    c.create_sample_db(src);
    let expected = rows_matched(&c, src);
    assert_eq!(
        expected,
        "restored 3 tables, 10600 rows; row counts match the archive"
    );
    for (format, tool) in [
        ("custom", "pg_restore"),
        ("plain", "psql"),
        ("directory", "pg_restore"),
    ] {
        let b = backup_db(&c, src, &format!(", '{format}'"));
        let target = format!("checks_{format}");
        let job = c.enqueue(&restore_sql(b.backup_id, &target, ""));
        assert_eq!(
            c.wait_final(job, SMALL_JOB),
            "succeeded",
            "{:?}",
            job_outcome(&c, job)
        );
        let (_, error, message) = job_outcome(&c, job);
        assert_eq!(error, None);
        assert_eq!(
            message,
            Some(format!("{tool} finished; {expected}")),
            "{format}"
        );
        assert_eq!(tables_of(&c, job), (Some(3), Some(3)), "{format}");
        assert!(
            !role_exists(&c, &format!("backup_ext_job_{job}")),
            "{format}: login left"
        );
    }

    // Only the restored tables are compared, and counted in tables_total.
    let b = backup_db(&c, src, "");
    let job = c.enqueue(&restore_sql(
        b.backup_id,
        "checks_t2",
        ", options => '{\"tables\": [\"t2\"]}'",
    ));
    assert_eq!(
        c.wait_final(job, SMALL_JOB),
        "succeeded",
        "{:?}",
        job_outcome(&c, job)
    );
    assert_eq!(
        job_outcome(&c, job).2.as_deref(),
        Some("pg_restore finished; restored 1 table, 100 rows; row counts match the archive")
    );
    assert_eq!(tables_of(&c, job), (Some(1), Some(1)));

    // A clean restore into an existing database is compared: its tables were emptied. The
    // target's other tables are not the restore's.
    run(
        &mut c.client("checks_t2"),
        "INSERT INTO t2 VALUES (1000, 'extra'); CREATE TABLE other (i int); \
         INSERT INTO other VALUES (1), (2);",
    );
    let job = c.enqueue(&restore_sql(
        b.backup_id,
        "checks_t2",
        ", create_db => false, options => '{\"clean\": true}'",
    ));
    assert_eq!(
        c.wait_final(job, SMALL_JOB),
        "succeeded",
        "{:?}",
        job_outcome(&c, job)
    );
    assert_eq!(
        job_outcome(&c, job).2,
        Some(format!("pg_restore finished; {expected}"))
    );
    assert_eq!(
        c.table_fingerprint("checks_t2", "t2"),
        c.table_fingerprint(src, "t2")
    );
}

#[test]
fn restore_errors_fail_the_job() {
    let c = cluster();
    let src = "errors_src";
    c.create_sample_db(src);
    // A plain script is run as a whole, so the table it creates that exists already is its
    // error. An archive's conflicts are refused at call time (see restore_plan.rs), so its
    // error is one no plan can foresee: rows the existing table rejects, loaded data-only.
    for (format, table, options, expected) in [
        (
            "custom",
            "CREATE TABLE t1 (id integer, n bigint, txt text, payload bytea, doc jsonb, \
             CHECK (id < 0))",
            r#", options => '{"data_only": true}'"#,
            "ERROR:  new row for relation \"t1\" violates check constraint",
        ),
        (
            "plain",
            "CREATE TABLE t1 (i int)",
            "",
            "ERROR:  relation \"t1\" already exists",
        ),
    ] {
        let b = backup_db(&c, src, &format!(", '{format}'"));
        let target = format!("errors_{format}");
        run(
            &mut c.client("postgres"),
            &format!("CREATE DATABASE {target}"),
        );
        run(&mut c.client(&target), table);
        let job = c.enqueue(&restore_sql(
            b.backup_id,
            &target,
            &format!(", create_db => false{options}"),
        ));
        assert_eq!(c.wait_final(job, SMALL_JOB), "failed", "{format}");
        let (_, error, message) = job_outcome(&c, job);
        let error = error.unwrap_or_default();
        assert!(error.contains(expected), "{format}: {error}");
        assert_eq!(message, None, "{format}");
        // The tool stopped at the error: the tables after t1 were not restored.
        assert_eq!(table_set(&c, &target), ["public.t1"], "{format}");
    }
}

#[test]
fn rows_the_restoring_role_cannot_see_fail_the_restore_and_drop_its_database() {
    let c = cluster();
    let src = "rls_src";
    let mut admin = c.client("postgres");
    run(
        &mut admin,
        "CREATE ROLE rls_rst LOGIN CREATEDB IN ROLE backup_ext_restorer",
    );
    run(&mut admin, "CREATE DATABASE rls_src");
    // Forced row security hides three of five rows from the table's owner, and so from the
    // restore's login acting for her; the backup, taken by a superuser, has all five.
    run(
        &mut c.client(src),
        "CREATE TABLE secret (id int PRIMARY KEY, v text);
         INSERT INTO secret SELECT i, 'v' || i FROM generate_series(1, 5) i;
         CREATE TABLE open (id int);
         INSERT INTO open VALUES (1);
         ALTER TABLE secret ENABLE ROW LEVEL SECURITY;
         ALTER TABLE secret FORCE ROW LEVEL SECURITY;
         CREATE POLICY first_two ON secret USING (id <= 2);
         ALTER TABLE secret OWNER TO rls_rst;
         ALTER TABLE open OWNER TO rls_rst;",
    );
    let b = backup_db(&c, src, "");
    let mut rst = c.client_as("postgres", "rls_rst");
    let job: i64 = rst
        .query_one(
            &restore_sql(
                b.backup_id,
                "rls_dst",
                ", options => '{\"no_owner\": true}'",
            ),
            &[],
        )
        .unwrap_or_else(|e| panic!("restore_backup as rls_rst: {}", describe(&e)))
        .get(0);
    assert_eq!(
        c.wait_final(job, SMALL_JOB),
        "failed",
        "{:?}",
        job_outcome(&c, job)
    );
    let (_, error, _) = job_outcome(&c, job);
    assert_eq!(
        error.as_deref(),
        Some(
            "pg_restore finished, but row counts differ from the archive (2 tables, 6 rows in \
             it): table public.secret: 5 rows in the archive, 2 after the restore"
        )
    );
    assert!(
        !database_exists(&c, "rls_dst"),
        "the database is still there"
    );
    assert!(!role_exists(&c, &format!("backup_ext_job_{job}")));
}

#[test]
fn a_stalled_restore_is_stopped_and_leaves_nothing() {
    let c = Cluster::start_with("restore-stall", &[("backup_ext.stall_timeout", "2s")]);
    let mut admin = c.client("postgres");
    run(&mut admin, "CREATE ROLE stall_reader NOLOGIN");
    run(&mut admin, "CREATE DATABASE stall_src");
    run(
        &mut c.client("stall_src"),
        "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 1000);
         GRANT SELECT ON t TO stall_reader;",
    );
    let b = backup_db(&c, "stall_src", "");
    // The role is free to drop now; a transaction dropping it holds its lock, so the
    // restore's GRANT to it waits: no bytes read, no table finished.
    run(
        &mut c.client("stall_src"),
        "REVOKE ALL ON t FROM stall_reader",
    );
    let mut holder = c.client("postgres");
    run(&mut holder, "BEGIN; DROP ROLE stall_reader");
    let start = Instant::now();
    let job = c.enqueue(&restore_sql(b.backup_id, "stall_dst", ""));
    assert_eq!(c.wait_final(job, Duration::from_secs(30)), "failed");
    let took = start.elapsed();
    let (_, error, _) = job_outcome(&c, job);
    assert_eq!(
        error.as_deref(),
        Some(
            "stalled: no bytes read from the archive and no table finished for 2 s \
             (backup_ext.stall_timeout); stopped"
        )
    );
    assert!(took >= Duration::from_secs(2), "stopped after {took:?}");
    assert!(took < Duration::from_secs(20), "stopped after {took:?}");
    assert!(
        !database_exists(&c, "stall_dst"),
        "the database is still there"
    );
    assert!(!role_exists(&c, &format!("backup_ext_job_{job}")));
    let tools: i64 = c
        .client("postgres")
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'backup_ext'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tools, 0, "a tool of the job is still connected");
    run(&mut holder, "ROLLBACK");

    // Without the lock the same restore goes through: the setting only stops restores that
    // stall.
    let job = c.enqueue(&restore_sql(b.backup_id, "stall_dst", ""));
    assert_eq!(
        c.wait_final(job, SMALL_JOB),
        "succeeded",
        "{:?}",
        job_outcome(&c, job)
    );
}

#[test]
fn a_running_restore_shows_its_tables_in_activity() {
    let c = cluster();
    let src = "progress_src";
    c.create_sample_db(src);
    let b = backup_db(&c, src, "");
    // The target has the tables, empty; t2 is locked, so the data-only restore finishes t1,
    // then waits on t2.
    let target = "progress_dst";
    run(
        &mut c.client("postgres"),
        &format!("CREATE DATABASE {target}"),
    );
    let schema = c.run_tool("pg_dump", &["--schema-only", "-d", src]);
    check_output("pg_dump --schema-only", &schema);
    run(
        &mut c.client(target),
        &String::from_utf8(schema.stdout)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('\\'))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let mut holder = c.client(target);
    run(&mut holder, "BEGIN; LOCK TABLE t2 IN ACCESS EXCLUSIVE MODE");
    let job = c.enqueue(&restore_sql(
        b.backup_id,
        target,
        ", create_db => false, options => '{\"data_only\": true}'",
    ));
    let seen = |c: &Cluster| -> Option<(i32, i32, i64)> {
        let row = c
            .client("postgres")
            .query_opt(
                "SELECT tables_done, tables_total, bytes_written FROM backup_ext.activity
                  WHERE job_id = $1",
                &[&job],
            )
            .unwrap()?;
        Some((
            row.get::<_, Option<i32>>(0)?,
            row.get::<_, Option<i32>>(1)?,
            row.get(2),
        ))
    };
    c.wait_until("the restore to wait on t2", SMALL_JOB, || {
        matches!(seen(&c), Some((1, 3, _)))
    });
    let (_, _, bytes) = seen(&c).unwrap();
    assert!(bytes > 0, "no bytes read: {bytes}");
    assert_eq!(c.job(job).status, "running");
    run(&mut holder, "COMMIT");
    assert_eq!(
        c.wait_final(job, SMALL_JOB),
        "succeeded",
        "{:?}",
        job_outcome(&c, job)
    );
    assert_eq!(tables_of(&c, job), (Some(3), Some(3)));
    assert_eq!(
        job_outcome(&c, job).2.as_deref(),
        Some(
            "pg_restore finished; row counts not compared: the restore went into an existing \
             database without clean, whose tables may have had rows before"
        )
    );
    for t in ["t1", "t2", "t3"] {
        assert_eq!(
            c.table_fingerprint(target, t),
            c.table_fingerprint(src, t),
            "{t}"
        );
    }
}
