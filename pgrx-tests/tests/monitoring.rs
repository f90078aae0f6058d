//! Monitoring: progress reporting, health status and job timeouts. Each
//! test runs on its own cluster because it counts jobs or files
//! cluster-wide.

use backup_ext_e2e::postgres::Client;
use backup_ext_e2e::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Helpers

/// Sets a server setting with ALTER SYSTEM, reloads, and waits until new
/// sessions see `shown` for it.
fn alter_system(c: &Cluster, name: &str, value: &str, shown: &str) {
    let mut client = c.client("postgres");
    exec(
        &mut client,
        &format!("ALTER SYSTEM SET {name} = {}", quote_literal(value)),
    );
    exec(&mut client, "SELECT pg_reload_conf()");
    c.wait_until(
        &format!("{name} = {shown} after reload"),
        Duration::from_secs(10),
        || one_text(&mut c.client("postgres"), &format!("SHOW {name}")) == shown,
    );
}

// ---------------------------------------------------------------------------
// Progress

#[test]
fn activity_reports_progress_of_a_running_dump() {
    let c = Cluster::start("progress");
    c.create_pgbench_db("bench", 20);
    // About 60 MB/s at most, so the dump runs for seconds even on a fast machine: long enough
    // for the worker to count its tables (after a second) and publish them.
    let tools = slow_pg_dump_tools(&c, 0.015);
    c.set_and_reload("backup_ext.bin_dir", &tools.to_string_lossy());
    let job = c.enqueue("SELECT backup_ext.backup_database('bench', 'plain')");

    let mut client = c.client("postgres");
    let mut bytes_seen: Vec<i64> = Vec::new();
    let mut totals_seen: BTreeSet<i32> = BTreeSet::new();
    let mut done_seen: Vec<i32> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "job {job}: {:?}", c.job(job));
        let row = client
            .query_opt(
                "SELECT bytes_written, bytes_per_second, tables_done, tables_total,
                        percent_tables::float8, extract(epoch FROM elapsed)::float8, kind,
                        database
                   FROM backup_ext.activity WHERE job_id = $1",
                &[&job],
            )
            .unwrap();
        match row {
            Some(r) => {
                assert_eq!(r.get::<_, String>(6), "database");
                assert_eq!(r.get::<_, Option<String>>(7).as_deref(), Some("bench"));
                assert!(r.get::<_, f64>(5) >= 0.0);
                if let Some(bytes) = r.get::<_, Option<i64>>(0) {
                    if bytes > 0 {
                        assert!(r.get::<_, Option<i64>>(1).unwrap_or(0) > 0);
                    }
                    if bytes_seen.last() != Some(&bytes) {
                        bytes_seen.push(bytes);
                    }
                }
                if let Some(total) = r.get::<_, Option<i32>>(3) {
                    totals_seen.insert(total);
                    let done: i32 = r.get::<_, Option<i32>>(2).unwrap_or(0);
                    assert!(done <= total);
                    let pct: Option<f64> = r.get(4);
                    let want = (1000.0 * f64::from(done) / f64::from(total)).round() / 10.0;
                    assert_eq!(pct, Some(want));
                    if done_seen.last() != Some(&done) {
                        done_seen.push(done);
                    }
                }
            }
            None => {
                if FINAL.contains(&c.job(job).status.as_str()) {
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(c.job(job).status, "succeeded", "{:?}", c.job(job));
    assert!(
        bytes_seen.len() >= 2,
        "bytes_written took fewer than two values while running: {bytes_seen:?}"
    );
    assert!(
        bytes_seen.windows(2).all(|w| w[0] < w[1]),
        "bytes_written went backwards: {bytes_seen:?}"
    );
    assert!(
        done_seen.windows(2).all(|w| w[0] <= w[1]),
        "tables_done went backwards: {done_seen:?}"
    );
    assert_eq!(
        totals_seen,
        BTreeSet::from([4]),
        "tables_total while running"
    );
    let r = client
        .query_one(
            "SELECT j.tables_done, j.tables_total, j.bytes_written, a.size_bytes
               FROM backup_ext.jobs j JOIN backup_ext.artifacts a USING (job_id)
              WHERE j.job_id = $1",
            &[&job],
        )
        .unwrap();
    assert_eq!(r.get::<_, Option<i32>>(0), Some(4));
    assert_eq!(r.get::<_, Option<i32>>(1), Some(4));
    let size: Option<i64> = r.get(3);
    assert_eq!(r.get::<_, Option<i64>>(2), size);
    assert!(*bytes_seen.last().unwrap() <= size.unwrap());
    assert_eq!(
        one_i64(
            &mut client,
            &format!("SELECT count(*) FROM backup_ext.activity WHERE job_id = {job}")
        ),
        0
    );
}

// ---------------------------------------------------------------------------
// Health status

#[derive(Debug, PartialEq)]
struct StatusRow {
    database: String,
    status: String,
    has_success: bool,
    has_failure: bool,
    backups_kept: i64,
}

fn status_rows(c: &Cluster) -> Vec<StatusRow> {
    c.client("postgres")
        .query(
            "SELECT database, status, last_success_at IS NOT NULL, last_failure_at IS NOT NULL,
                    backups_kept
               FROM backup_ext.status()",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| StatusRow {
            database: r.get(0),
            status: r.get(1),
            has_success: r.get(2),
            has_failure: r.get(3),
            backups_kept: r.get(4),
        })
        .collect()
}

fn statuses(c: &Cluster) -> Vec<(String, String)> {
    status_rows(c)
        .into_iter()
        .map(|r| (r.database, r.status))
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn check_status(c: &Cluster) -> String {
    one_text(
        &mut c.client("postgres"),
        "SELECT backup_ext.check_status()",
    )
}

#[test]
fn status_and_check_status_grade_backup_age() {
    let c = Cluster::start("monitoring");
    for db in ["st_fresh", "st_old", "st_warn", "st_failed"] {
        c.create_sample_db(db);
    }
    let mut client = c.client("postgres");
    exec(&mut client, "CREATE DATABASE st_never");

    assert_eq!(
        statuses(&c),
        pairs(&[
            ("globals", "critical"),
            ("postgres", "critical"),
            ("st_failed", "critical"),
            ("st_fresh", "critical"),
            ("st_never", "critical"),
            ("st_old", "critical"),
            ("st_warn", "critical"),
        ])
    );
    assert_eq!(
        check_status(&c),
        "BACKUP CRITICAL - globals: never backed up; postgres: never backed up; \
         st_failed: never backed up; st_fresh: never backed up; st_never: never backed up; \
         st_old: never backed up; st_warn: never backed up | ok=0 warning=0 critical=7"
    );

    let mut ok_jobs = BTreeMap::new();
    ok_jobs.insert("globals", c.enqueue("SELECT backup_ext.backup_globals()"));
    for db in ["st_fresh", "st_old", "st_warn", "st_failed"] {
        ok_jobs.insert(
            db,
            c.enqueue(&format!("SELECT backup_ext.backup_database('{db}')")),
        );
    }
    for job in ok_jobs.values() {
        assert_eq!(c.wait_final(*job, SMALL_JOB), "succeeded");
    }
    // A failure after the last success: pg_dump finds no table to dump.
    let failing = c.enqueue(
        "SELECT backup_ext.backup_database('st_failed',
                                           options => '{\"tables\": [\"no_such_table\"]}')",
    );
    assert_eq!(c.wait_final(failing, SMALL_JOB), "failed");
    let failure = c.job(failing).error.unwrap_or_default();
    assert!(failure.contains("no matching tables"), "{failure}");

    // Back-date the successes: two hours, 30 hours and three days ago.
    let backdate = |client: &mut Client, job: i64, age: &str| {
        let n = client
            .execute(
                &format!(
                    "UPDATE backup_ext.jobs
                        SET requested_at = now() - interval '{age}' - interval '2 minutes',
                            started_at = now() - interval '{age}' - interval '1 minute',
                            finished_at = now() - interval '{age}'
                      WHERE job_id = $1"
                ),
                &[&job],
            )
            .unwrap();
        assert_eq!(n, 1);
    };
    backdate(&mut client, ok_jobs["globals"], "2 hours");
    backdate(&mut client, ok_jobs["st_fresh"], "2 hours");
    backdate(&mut client, ok_jobs["st_failed"], "2 hours");
    backdate(&mut client, ok_jobs["st_warn"], "30 hours");
    backdate(&mut client, ok_jobs["st_old"], "3 days");

    let rows = status_rows(&c);
    assert_eq!(
        rows.iter()
            .map(|r| (r.database.clone(), r.status.clone()))
            .collect::<Vec<_>>(),
        pairs(&[
            ("globals", "ok"),
            ("postgres", "critical"),
            ("st_failed", "warning"),
            ("st_fresh", "ok"),
            ("st_never", "critical"),
            ("st_old", "critical"),
            ("st_warn", "warning"),
        ])
    );
    for r in &rows {
        let backed_up = !matches!(r.database.as_str(), "postgres" | "st_never");
        assert_eq!(r.has_success, backed_up, "{r:?}");
        assert_eq!(r.backups_kept, i64::from(backed_up), "{r:?}");
        assert_eq!(r.has_failure, r.database == "st_failed", "{r:?}");
    }
    let fresh = client
        .query_one(
            "SELECT s.last_size_bytes, s.bytes_kept::bigint, s.last_error,
                    s.last_success_age >= interval '2 hours'
                    AND s.last_success_age < interval '2 hours 1 minute'
               FROM backup_ext.status() s WHERE s.database = 'st_fresh'",
            &[],
        )
        .unwrap();
    let size = c.backup(ok_jobs["st_fresh"]).size_bytes;
    assert!(size.unwrap() > 0);
    assert_eq!(fresh.get::<_, Option<i64>>(0), size);
    assert_eq!(fresh.get::<_, Option<i64>>(1), size);
    assert_eq!(fresh.get::<_, Option<String>>(2), None);
    assert!(fresh.get::<_, bool>(3));
    let failed_err: Option<String> = client
        .query_one(
            "SELECT last_error FROM backup_ext.status() WHERE database = 'st_failed'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(failed_err.as_deref(), Some(failure.as_str()));
    assert_eq!(
        check_status(&c),
        "BACKUP CRITICAL - postgres: never backed up; \
         st_failed: last success 02:00:00 ago (failed since); st_never: never backed up; \
         st_old: last success 3 days ago; st_warn: last success 1 day 06:00:00 ago \
         | ok=2 warning=2 critical=3"
    );

    // Thresholds come from the settings.
    alter_system(&c, "backup_ext.warn_age", "1h", "1h");
    assert_eq!(
        statuses(&c),
        pairs(&[
            ("globals", "warning"),
            ("postgres", "critical"),
            ("st_failed", "warning"),
            ("st_fresh", "warning"),
            ("st_never", "critical"),
            ("st_old", "critical"),
            ("st_warn", "warning"),
        ])
    );
    assert_eq!(
        check_status(&c),
        "BACKUP CRITICAL - globals: last success 02:00:00 ago; postgres: never backed up; \
         st_failed: last success 02:00:00 ago (failed since); \
         st_fresh: last success 02:00:00 ago; st_never: never backed up; \
         st_old: last success 3 days ago; st_warn: last success 1 day 06:00:00 ago \
         | ok=0 warning=4 critical=3"
    );
    // Three days is no longer critical once critical_age is four days.
    alter_system(&c, "backup_ext.critical_age", "4d", "4d");
    assert_eq!(
        statuses(&c),
        pairs(&[
            ("globals", "warning"),
            ("postgres", "critical"),
            ("st_failed", "warning"),
            ("st_fresh", "warning"),
            ("st_never", "critical"),
            ("st_old", "warning"),
            ("st_warn", "warning"),
        ])
    );
    assert!(
        check_status(&c).ends_with(" | ok=0 warning=5 critical=2"),
        "{}",
        check_status(&c)
    );

    // Fresh backups of everything make the check OK.
    let mut fresh_jobs = vec![c.enqueue("SELECT backup_ext.backup_globals()")];
    for db in [
        "postgres",
        "st_fresh",
        "st_old",
        "st_warn",
        "st_failed",
        "st_never",
    ] {
        fresh_jobs.push(c.enqueue(&format!("SELECT backup_ext.backup_database('{db}')")));
    }
    for job in fresh_jobs {
        assert_eq!(c.wait_final(job, SMALL_JOB), "succeeded");
    }
    assert_eq!(
        check_status(&c),
        "BACKUP OK - all databases backed up | ok=7 warning=0 critical=0"
    );
}

#[test]
fn a_deleted_backup_file_makes_status_critical_with_the_reason() {
    let c = Cluster::start("missing-file");
    c.create_sample_db("mf_db");
    let job = c.enqueue("SELECT backup_ext.backup_database('mf_db')");
    assert_eq!(c.wait_final(job, SMALL_JOB), "succeeded");
    let path = c.backup(job).path_buf();
    let status_of = |c: &Cluster| -> (String, Option<String>) {
        let row = c
            .client("postgres")
            .query_one(
                "SELECT status, last_error FROM backup_ext.status() WHERE database = 'mf_db'",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(status_of(&c), ("ok".to_string(), None));

    std::fs::remove_file(&path).unwrap();
    let reason = format!("newest backup {job} is missing: {}", path.display());
    assert_eq!(
        status_of(&c),
        ("critical".to_string(), Some(reason.clone()))
    );
    let line = check_status(&c);
    assert!(line.starts_with("BACKUP CRITICAL - "), "{line}");
    assert!(line.contains("mf_db: last success "), "{line}");
    assert!(line.contains(&format!(" ago ({reason})")), "{line}");

    // A newer backup with its file is what counts.
    let again = c.enqueue("SELECT backup_ext.backup_database('mf_db')");
    assert_eq!(c.wait_final(again, SMALL_JOB), "succeeded");
    assert_eq!(status_of(&c), ("ok".to_string(), None));
}

#[test]
fn backup_file_exists_only_answers_inside_the_backup_directory() {
    let c = Cluster::start("file-exists");
    c.create_sample_db("fe_db");
    let job = c.enqueue("SELECT backup_ext.backup_database('fe_db')");
    assert_eq!(c.wait_final(job, SMALL_JOB), "succeeded");
    let backup = c.backup(job).path_buf();
    let outside = c.root.join("outside-secret");
    c.write_server_file(&outside, b"x");
    let link = c.backups.join("fe_db").join("link");
    std::os::unix::fs::symlink(&c.root, &link).unwrap();
    let b = c.backups.display().to_string();
    let cases: Vec<(String, Option<bool>)> = vec![
        (backup.display().to_string(), Some(true)),
        (format!("{b}/fe_db/no-such-file.dump"), Some(false)),
        ("/etc/passwd".into(), None),
        (c.data.join("PG_VERSION").display().to_string(), None),
        (format!("{b}/../data/PG_VERSION"), None),
        (format!("{b}/fe_db/../../outside-secret"), None),
        (format!("{b}/fe_db/../../no-such-file"), None),
        (format!("{b}/fe_db/link/outside-secret"), None),
        (format!("{b}/fe_db/link/no-such-file"), None),
        (b.clone(), None),
        ("relative/path".into(), None),
    ];
    c.client("postgres")
        .batch_execute(
            "CREATE ROLE fe_op LOGIN IN ROLE backup_ext_operator; CREATE ROLE fe_nobody LOGIN",
        )
        .unwrap();
    let mut op = c.client_as("postgres", "fe_op");
    for (path, expected) in &cases {
        let got: Option<bool> = op
            .query_one("SELECT backup_ext.backup_file_exists($1)", &[path])
            .unwrap_or_else(|e| panic!("{path}: {}", describe(&e)))
            .get(0);
        assert_eq!(got, *expected, "backup_file_exists({path:?})");
    }
    // Operators may call status(); roles without a grant may not probe at all.
    let mut op_status = c.client_as("postgres", "fe_op");
    let n = one_i64(&mut op_status, "SELECT count(*) FROM backup_ext.status()");
    assert!(n > 0);
    let mut nobody = c.client_as("postgres", "fe_nobody");
    expect_sqlstate(
        &mut nobody,
        "SELECT backup_ext.backup_file_exists('/etc/passwd')",
        "42501",
    );
}

// ---------------------------------------------------------------------------
// Timeouts

fn assert_timed_out(c: &Cluster, job: i64, secs: u64) {
    c.wait_for_status(job, &["running"], SMALL_JOB);
    let t0 = Instant::now();
    assert_eq!(
        c.wait_final(job, Duration::from_secs(secs + 15)),
        "failed",
        "{:?}",
        c.job(job)
    );
    // The job had been running for a moment before t0.
    assert!(
        t0.elapsed() + Duration::from_secs(1) >= Duration::from_secs(secs),
        "job {job} stopped after {:?}",
        t0.elapsed()
    );
    let j = c.job(job);
    let err = j.error.clone().unwrap_or_default();
    assert!(
        err.contains(&format!("timed out after {secs} s")),
        "error of job {job}: {err:?}"
    );
    assert!(j.finished);
    c.wait_until("pg_dump to exit", Duration::from_secs(10), || {
        c.dump_processes().is_empty()
    });
    assert!(
        partials_under(&c.backups).is_empty(),
        "{:?}",
        partials_under(&c.backups)
    );
    if let Some(p) = c.backup(job).path {
        assert!(!Path::new(&p).exists(), "{p} exists");
    }
}

#[test]
fn jobs_time_out_per_call_and_by_setting() {
    let c = Cluster::start("timeouts");
    c.create_sample_db("to_db");
    let mut client = c.client("postgres");
    for (options, code) in [
        (r#"{"timeout": "0 seconds"}"#, "22023"),
        (r#"{"timeout": "banana"}"#, "22023"),
        (r#"{"timeout": 5}"#, "22023"),
        (r#"{"include_databases": ["to_db"]}"#, "22023"),
    ] {
        expect_sqlstate(
            &mut client,
            &format!("SELECT backup_ext.backup_database('to_db', options => '{options}')"),
            code,
        );
    }

    let holder = lock_t1(&c, "to_db");
    let per_call = c.enqueue(
        "SELECT backup_ext.backup_database('to_db', options => '{\"timeout\": \"2 seconds\"}')",
    );
    assert_timed_out(&c, per_call, 2);
    assert_eq!(
        files_under(&c.backups.join("to_db")),
        BTreeSet::new(),
        "output left behind"
    );

    alter_system(&c, "backup_ext.job_timeout", "2s", "2s");
    let by_setting = c.enqueue("SELECT backup_ext.backup_database('to_db')");
    assert_timed_out(&c, by_setting, 2);
    // A per-call timeout wins over the setting.
    let longer = c.enqueue(
        "SELECT backup_ext.backup_database('to_db', options => '{\"timeout\": \"4 seconds\"}')",
    );
    assert_timed_out(&c, longer, 4);
    drop(holder);

    // Without the lock a short dump finishes well within the limit.
    let ok = c.enqueue("SELECT backup_ext.backup_database('to_db')");
    assert_eq!(c.wait_final(ok, SMALL_JOB), "succeeded", "{:?}", c.job(ok));
    assert_eq!(files_under(&c.backups.join("to_db")).len(), 1);
}
