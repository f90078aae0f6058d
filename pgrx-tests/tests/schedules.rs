//! Built-in schedules and pg_cron. Each test runs on its own cluster
//! because it counts jobs cluster-wide.

use backup_ext_e2e::postgres::Client;
use backup_ext_e2e::*;
use std::collections::BTreeMap;
use std::fs;
use std::time::Duration;

// ---------------------------------------------------------------------------
// Built-in schedules

#[derive(Debug)]
struct ScheduleRow {
    last_run_is_minute: Option<bool>,
    last_job_id: Option<i64>,
    last_set_id: Option<i64>,
    last_status: Option<String>,
    last_error: Option<String>,
}

fn schedule_row(client: &mut Client, name: &str) -> ScheduleRow {
    let r = client
        .query_one(
            "SELECT last_run_at = date_trunc('minute', last_run_at), last_job_id, last_set_id,
                    last_status, last_error
               FROM backup_ext.schedules WHERE name = $1",
            &[&name],
        )
        .unwrap_or_else(|e| panic!("schedule {name}: {}", describe(&e)));
    ScheduleRow {
        last_run_is_minute: r.get(0),
        last_job_id: r.get(1),
        last_set_id: r.get(2),
        last_status: r.get(3),
        last_error: r.get(4),
    }
}

fn jobs_of_schedule(client: &mut Client, name: &str) -> Vec<i64> {
    client
        .query(
            "SELECT job_id FROM backup_ext.jobs WHERE schedule = $1 ORDER BY job_id",
            &[&name],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Backdates a schedule's creation so that it is due now, as if the server
/// had been down over its runs.
fn make_due(client: &mut Client, name: &str, by: &str) {
    let n = client
        .execute(
            &format!(
                "UPDATE backup_ext.schedule_entries SET created_at = now() - interval '{by}'
                  WHERE name = $1"
            ),
            &[&name],
        )
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn built_in_schedules_fire_once_and_never_overlap() {
    let c = Cluster::start("schedules");
    c.create_sample_db("sched_db");
    let mut client = c.client("postgres");

    for cron in ["61 * * * *", "* * * *", "0 0 30 2 *"] {
        expect_sqlstate(
            &mut client,
            &format!("SELECT backup_ext.schedule('bad', '{cron}', '{{\"backup\": \"globals\"}}')"),
            "22023",
        );
    }
    for command in [
        r#"{"backup": "tape"}"#,
        r#"{"backup": "database"}"#,
        r#"{"backup": "database", "dbname": "sched_db", "format": "zip"}"#,
    ] {
        expect_sqlstate(
            &mut client,
            &format!("SELECT backup_ext.schedule('bad', '* * * * *', '{command}')"),
            "22023",
        );
    }
    expect_sqlstate(&mut client, "SELECT backup_ext.unschedule('nope')", "42704");
    assert_eq!(
        one_i64(
            &mut client,
            "SELECT count(*) FROM backup_ext.schedule_entries"
        ),
        0
    );

    // Leave room before the next minute boundary, so the runs observed
    // below are the ones this test provokes.
    c.wait_until(
        "the first 30 s of a minute",
        Duration::from_secs(65),
        || {
            one_i64(
                &mut c.client("postgres"),
                "SELECT extract(second FROM clock_timestamp())::bigint",
            ) < 30
        },
    );

    // The scheduled dump blocks on this lock, so it stays running.
    let holder = lock_t1(&c, "sched_db");
    let r = client
        .query_one(
            "WITH s AS (
                 SELECT backup_ext.schedule('every_minute', '* * * * *',
                     '{\"backup\": \"database\", \"dbname\": \"sched_db\",
                       \"format\": \"custom\", \"label\": \"scheduled\"}') AS next_run
             )
             SELECT next_run = date_trunc('minute', now()) + interval '1 minute',
                    next_run::text
               FROM s",
            &[],
        )
        .unwrap_or_else(|e| panic!("schedule(): {}", describe(&e)));
    assert!(r.get::<_, bool>(0), "next run is not the next minute");
    let next_run: String = r.get(1);
    let same: bool = client
        .query_one(
            "SELECT next_run_at = $1::text::timestamptz FROM backup_ext.schedules
              WHERE name = 'every_minute'",
            &[&next_run],
        )
        .unwrap()
        .get(0);
    assert!(same, "the view's next_run_at differs from {next_run}");
    assert!(jobs_of_schedule(&mut client, "every_minute").is_empty());

    // Five missed runs collapse into one.
    make_due(&mut client, "every_minute", "5 minutes");
    c.wait_until("the schedule to fire", Duration::from_secs(20), || {
        schedule_row(&mut c.client("postgres"), "every_minute")
            .last_job_id
            .is_some()
    });
    let row = schedule_row(&mut client, "every_minute");
    let job = row.last_job_id.unwrap();
    assert_eq!(jobs_of_schedule(&mut client, "every_minute"), vec![job]);
    assert_eq!(row.last_run_is_minute, Some(true));
    assert_eq!(row.last_error, None);
    assert_eq!(row.last_set_id, None);
    let j = c.job(job);
    assert_eq!(j.kind, "database");
    assert_eq!(j.database.as_deref(), Some("sched_db"));
    assert_eq!(c.backups_of(job)[0].label.as_deref(), Some("scheduled"));
    c.wait_for_status(job, &["running"], SMALL_JOB);
    wait_dump_blocked(&c, "sched_db");
    assert_eq!(
        schedule_row(&mut client, "every_minute")
            .last_status
            .as_deref(),
        Some("running")
    );

    // Due again while the previous run is still going: skipped.
    exec(
        &mut client,
        "UPDATE backup_ext.schedule_entries
            SET last_run_at = last_run_at - interval '5 minutes'
          WHERE name = 'every_minute'",
    );
    c.wait_until(
        "the overlapping run to be skipped",
        Duration::from_secs(20),
        || {
            schedule_row(&mut c.client("postgres"), "every_minute")
                .last_error
                .is_some()
        },
    );
    let row = schedule_row(&mut client, "every_minute");
    let err = row.last_error.clone().unwrap();
    assert!(err.starts_with("skipped"), "last_error: {err:?}");
    assert_eq!(row.last_job_id, Some(job));
    assert_eq!(row.last_run_is_minute, Some(true));
    assert_eq!(jobs_of_schedule(&mut client, "every_minute"), vec![job]);
    assert_eq!(c.job(job).status, "running");

    drop(holder);
    assert_eq!(c.wait_final(job, SMALL_JOB), "succeeded");
    assert_eq!(
        schedule_row(&mut client, "every_minute")
            .last_status
            .as_deref(),
        Some("succeeded")
    );
    let removed: bool = client
        .query_one("SELECT backup_ext.unschedule('every_minute')", &[])
        .unwrap()
        .get(0);
    assert!(removed);
    expect_sqlstate(
        &mut client,
        "SELECT backup_ext.unschedule('every_minute')",
        "42704",
    );

    // Globals and cluster commands.
    exec(
        &mut client,
        "SELECT backup_ext.schedule('globals_hourly', '17 * * * *', '{\"backup\": \"globals\"}');
         SELECT backup_ext.schedule('cluster_nightly', '0 3 * * *',
             '{\"backup\": \"cluster\", \"options\": {\"include_databases\": [\"sched_db\"]}}');",
    );
    make_due(&mut client, "globals_hourly", "3 hours");
    make_due(&mut client, "cluster_nightly", "3 days");
    c.wait_until("both schedules to fire", Duration::from_secs(20), || {
        let mut cl = c.client("postgres");
        schedule_row(&mut cl, "globals_hourly")
            .last_job_id
            .is_some()
            && schedule_row(&mut cl, "cluster_nightly")
                .last_set_id
                .is_some()
    });
    let g = schedule_row(&mut client, "globals_hourly");
    let gjob = g.last_job_id.unwrap();
    assert_eq!(jobs_of_schedule(&mut client, "globals_hourly"), vec![gjob]);
    assert_eq!(c.job(gjob).kind, "globals");
    assert_eq!(c.wait_final(gjob, SMALL_JOB), "succeeded");
    let cl = schedule_row(&mut client, "cluster_nightly");
    let set_id = cl.last_set_id.unwrap();
    assert_eq!(cl.last_job_id, None);
    let mem = members(&mut client, set_id);
    assert_eq!(mem.len(), 2, "{mem:?}");
    assert_eq!(
        jobs_of_schedule(&mut client, "cluster_nightly"),
        mem.iter().map(|m| m.0).collect::<Vec<_>>()
    );
    for (id, _, _) in &mem {
        assert_eq!(c.wait_final(*id, SMALL_JOB), "succeeded");
    }
    c.wait_until("the set's status in the view", SMALL_JOB, || {
        schedule_row(&mut c.client("postgres"), "cluster_nightly")
            .last_status
            .as_deref()
            == Some("succeeded")
    });
    assert_eq!(set_row(&mut client, set_id).status, "succeeded");
}

#[test]
fn schedules_refuse_commands_that_every_run_would_refuse() {
    let c = Cluster::start("schedule_commands");
    c.create_sample_db("sched_db");
    let mut client = c.client("postgres");

    // Options backup_database() and backup_cluster() refuse are refused at schedule() time,
    // not discovered in last_error at every run.
    for command in [
        r#"{"backup": "database", "dbname": "sched_db", "options": {"include_databases": ["a"]}}"#,
        r#"{"backup": "database", "dbname": "sched_db", "options": {"exclude_databases": ["a"]}}"#,
        r#"{"backup": "database", "dbname": "sched_db", "options": {"timeout": "banana"}}"#,
        r#"{"backup": "database", "dbname": "sched_db", "options": {"timeout": 60}}"#,
        r#"{"backup": "cluster", "options": {"timeout": "banana"}}"#,
        r#"{"backup": "cluster", "options": {"timeout": "0 s"}}"#,
        r#"{"backup": "cluster", "options": {"include_databases": "sched_db"}}"#,
        r#"{"options": {"no_owner": true}}"#,
        r#"{"backup": "everything"}"#,
    ] {
        expect_sqlstate(
            &mut client,
            &format!("SELECT backup_ext.schedule('bad', '* * * * *', '{command}')"),
            "22023",
        );
    }
    assert_eq!(
        one_i64(
            &mut client,
            "SELECT count(*) FROM backup_ext.schedule_entries"
        ),
        0
    );

    // What the API accepts is accepted.
    exec(
        &mut client,
        "SELECT backup_ext.schedule('ok_db', '0 3 * * *',
             '{\"backup\": \"database\", \"dbname\": \"sched_db\",
               \"options\": {\"timeout\": \"2 hours\"}}');
         SELECT backup_ext.schedule('ok_cluster', '0 3 * * *',
             '{\"backup\": \"cluster\", \"options\": {\"timeout\": \"1 hour\",
               \"include_databases\": [\"sched_db\"]}}');",
    );

    // A stored command without "backup" (edited by hand) is refused by the worker too,
    // instead of running as a cluster backup.
    exec(
        &mut client,
        "UPDATE backup_ext.schedule_entries SET command = '{\"label\": \"no kind\"}'
          WHERE name = 'ok_cluster'",
    );
    make_due(&mut client, "ok_cluster", "3 days");
    c.wait_until("the schedule to fire", Duration::from_secs(20), || {
        let row = schedule_row(&mut c.client("postgres"), "ok_cluster");
        row.last_error.is_some() || row.last_set_id.is_some()
    });
    let row = schedule_row(&mut client, "ok_cluster");
    let err = row.last_error.clone().unwrap_or_default();
    assert!(err.contains("no \"backup\" key"), "{row:?}");
    assert_eq!(row.last_set_id, None);
    assert_eq!(row.last_job_id, None);
    assert!(jobs_of_schedule(&mut client, "ok_cluster").is_empty());
}

// ---------------------------------------------------------------------------
// pg_cron

#[test]
fn pg_cron_schedules_backups_through_sql() {
    let pg_cron = std::path::Path::new(&pg_config("pkglibdir")).join("pg_cron.so");
    assert!(
        pg_cron.exists(),
        "{} is missing: pg_cron is packaged by Debian for PostgreSQL 15 only \
         (scripts/test.sh skips this test on other majors)",
        pg_cron.display()
    );
    let c = Cluster::start_with(
        "pgcron",
        &[
            ("shared_preload_libraries", "backup_ext,pg_cron"),
            ("cron.database_name", "postgres"),
            // The cluster only listens on its socket; run jobs in-process.
            ("cron.use_background_workers", "on"),
        ],
    );
    let mut client = c.client("postgres");
    exec(
        &mut client,
        "CREATE EXTENSION pg_cron;
         CREATE ROLE cron_operator LOGIN IN ROLE backup_ext_operator;",
    );
    // One schedule of the superuser, one run as an operator role.
    let cron_jobs = [
        one_i64(
            &mut client,
            "SELECT cron.schedule('bx-every-minute', '* * * * *',
                                  $$SELECT backup_ext.backup_database('postgres')$$)",
        ),
        one_i64(
            &mut client,
            "SELECT cron.schedule_in_database('bx-operator', '* * * * *',
                 $$SELECT backup_ext.backup_database('postgres', label => 'operator')$$,
                 'postgres', 'cron_operator')",
        ),
    ];
    let users: Vec<String> = cron_jobs
        .iter()
        .map(|id| {
            one_text(
                &mut client,
                &format!("SELECT username::text FROM cron.job WHERE jobid = {id}"),
            )
        })
        .collect();
    assert_eq!(users, vec!["postgres".to_string(), "cron_operator".into()]);

    // The first job requested by each schedule, keyed by label.
    let first_jobs = |c: &Cluster| -> BTreeMap<Option<String>, (i64, String)> {
        c.client("postgres")
            .query(
                "SELECT DISTINCT ON (label) label, job_id, requested_by::text
                   FROM backup_ext.jobs ORDER BY label, job_id",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect()
    };
    c.wait_until(
        "pg_cron to request both backups",
        Duration::from_secs(75),
        || first_jobs(&c).len() == 2,
    );
    let jobs = first_jobs(&c);
    assert_eq!(jobs[&None].1, users[0]);
    assert_eq!(jobs[&Some("operator".to_string())].1, users[1]);
    for (job, _) in jobs.values() {
        assert_eq!(c.wait_final(*job, SMALL_JOB), "succeeded");
        let j = c.job(*job);
        assert_eq!(j.database.as_deref(), Some("postgres"));
        let b = c.backup(*job);
        assert_eq!(
            b.size_bytes,
            Some(fs::metadata(b.path_buf()).unwrap().len() as i64)
        );
    }
    for id in cron_jobs {
        c.wait_until(
            "cron.job_run_details to record the run",
            Duration::from_secs(30),
            || {
                one_i64(
                    &mut c.client("postgres"),
                    &format!(
                        "SELECT count(*) FROM cron.job_run_details
                          WHERE jobid = {id} AND status = 'succeeded'"
                    ),
                ) >= 1
            },
        );
        let failed_runs = one_i64(
            &mut client,
            &format!(
                "SELECT count(*) FROM cron.job_run_details
                  WHERE jobid = {id} AND status NOT IN ('succeeded', 'running', 'starting')"
            ),
        );
        assert_eq!(failed_runs, 0);
    }
    for id in cron_jobs {
        let removed: bool = client
            .query_one("SELECT cron.unschedule($1::bigint)", &[&id])
            .unwrap()
            .get(0);
        assert!(removed);
    }
}
