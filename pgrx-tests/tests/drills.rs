//! Scheduled restore drills: `{"verify": "latest", ...}` schedules verify the newest backup of a
//! database (or of each), leave their evidence in `backup_ext.verifications`, and keep
//! `status()` quiet under `backup_ext.verify_age`.

use backup_ext_e2e::postgres::Client;
use backup_ext_e2e::*;

fn make_due(client: &mut Client, name: &str) {
    let n = client
        .execute(
            "UPDATE backup_ext.schedule_entries SET created_at = now() - interval '2 days'
              WHERE name = $1",
            &[&name],
        )
        .unwrap();
    assert_eq!(n, 1);
}

fn jobs_of_schedule(client: &mut Client, name: &str) -> Vec<(i64, i64, Option<String>)> {
    client
        .query(
            "SELECT job_id, backup_id, database FROM backup_ext.jobs
              WHERE schedule = $1 ORDER BY job_id",
            &[&name],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

fn status_of(client: &mut Client, db: &str) -> (String, bool) {
    let r = client
        .query_one(
            "SELECT status, last_verified_at IS NOT NULL FROM backup_ext.status()
              WHERE database = $1",
            &[&db],
        )
        .unwrap();
    (r.get(0), r.get(1))
}

#[test]
fn a_scheduled_drill_test_restores_the_newest_backup_and_leaves_evidence() {
    let c = Cluster::start_with("drills", &[("backup_ext.verify_age", "1h")]);
    c.create_sample_db("dr_app");
    c.create_sample_db("dr_other");
    let mut client = c.client("postgres");
    let old = c.enqueue("SELECT backup_ext.backup_database('dr_app')");
    assert_eq!(c.wait_final(old, SMALL_JOB), "succeeded");
    let newest = c.enqueue("SELECT backup_ext.backup_database('dr_app')");
    assert_eq!(c.wait_final(newest, SMALL_JOB), "succeeded");
    let other = c.enqueue("SELECT backup_ext.backup_database('dr_other')");
    assert_eq!(c.wait_final(other, SMALL_JOB), "succeeded");

    // Never verified while verify_age is set: a warning, and check_status() says why.
    assert_eq!(status_of(&mut client, "dr_app"), ("warning".into(), false));
    let line = one_text(&mut client, "SELECT backup_ext.check_status()");
    assert!(
        line.contains("dr_app: last success 00:00:00 ago (never verified)"),
        "{line}"
    );

    exec(
        &mut client,
        "SELECT backup_ext.schedule('drill', '0 3 * * *',
             '{\"verify\": \"latest\", \"dbname\": \"dr_app\", \"test_restore\": true}')",
    );
    make_due(&mut client, "drill");
    c.wait_until("the drill to be enqueued", SMALL_JOB, || {
        !jobs_of_schedule(&mut c.client("postgres"), "drill").is_empty()
    });
    let jobs = jobs_of_schedule(&mut client, "drill");
    assert_eq!(jobs.len(), 1);
    let (job, backup, db) = jobs[0].clone();
    assert_eq!((backup, db.as_deref()), (newest, Some("dr_app")));
    assert_eq!(
        c.wait_final(job, SMALL_JOB),
        "succeeded",
        "{:?}",
        c.job(job)
    );

    let evidence = client
        .query_one(
            "SELECT backup_id, database, schedule, test_restore, result, tables_compared,
                    rows_compared, finished_at IS NOT NULL
               FROM backup_ext.verifications WHERE job_id = $1",
            &[&job],
        )
        .unwrap();
    assert_eq!(evidence.get::<_, i64>(0), newest);
    assert_eq!(evidence.get::<_, String>(1), "dr_app");
    assert_eq!(evidence.get::<_, String>(2), "drill");
    assert!(evidence.get::<_, bool>(3));
    assert_eq!(evidence.get::<_, String>(4), "passed");
    assert_eq!(evidence.get::<_, Option<i64>>(5), Some(3));
    assert_eq!(evidence.get::<_, Option<i64>>(6), Some(10_000 + 100 + 500));
    assert!(evidence.get::<_, bool>(7));
    assert_eq!(status_of(&mut client, "dr_app"), ("ok".into(), true));

    // "*": the newest backup of every database that has one, and of the globals; checksum only.
    let globals = c.enqueue("SELECT backup_ext.backup_globals()");
    assert_eq!(c.wait_final(globals, SMALL_JOB), "succeeded");
    exec(
        &mut client,
        "SELECT backup_ext.schedule('drill_all', '0 4 * * *',
             '{\"verify\": \"latest\", \"dbname\": \"*\"}')",
    );
    make_due(&mut client, "drill_all");
    c.wait_until("the drills of every database", SMALL_JOB, || {
        jobs_of_schedule(&mut c.client("postgres"), "drill_all").len() == 3
    });
    let jobs = jobs_of_schedule(&mut client, "drill_all");
    assert_eq!(
        jobs.iter()
            .map(|(_, b, d)| (*b, d.as_deref()))
            .collect::<Vec<_>>(),
        vec![
            (newest, Some("dr_app")),
            (other, Some("dr_other")),
            (globals, None)
        ]
    );
    for (job, _, _) in &jobs {
        assert_eq!(c.wait_final(*job, SMALL_JOB), "succeeded");
    }
    let results = one_text(
        &mut client,
        "SELECT string_agg(concat_ws(' ', coalesce(database, 'globals'), test_restore, result,
                                     coalesce(tables_compared::text, '-')), ', ' ORDER BY job_id)
           FROM backup_ext.verifications WHERE schedule = 'drill_all'",
    );
    assert_eq!(
        results,
        "dr_app f passed -, dr_other f passed -, globals f passed -"
    );
    assert_eq!(status_of(&mut client, "globals"), ("ok".into(), true));
    assert_eq!(status_of(&mut client, "dr_other"), ("ok".into(), true));

    // Nothing to verify: the schedule says so and runs nothing.
    c.create_sample_db("dr_empty");
    exec(
        &mut client,
        "SELECT backup_ext.schedule('drill_empty', '0 5 * * *',
             '{\"verify\": \"latest\", \"dbname\": \"dr_empty\"}')",
    );
    make_due(&mut client, "drill_empty");
    c.wait_until("the empty drill's error", SMALL_JOB, || {
        c.client("postgres")
            .query_one(
                "SELECT last_error IS NOT NULL FROM backup_ext.schedules WHERE name = 'drill_empty'",
                &[],
            )
            .unwrap()
            .get::<_, bool>(0)
    });
    let error = one_text(
        &mut client,
        "SELECT last_error FROM backup_ext.schedules WHERE name = 'drill_empty'",
    );
    assert!(
        error.contains("database \"dr_empty\" has no succeeded backup to verify"),
        "{error}"
    );
    assert!(jobs_of_schedule(&mut client, "drill_empty").is_empty());

    // Bad drill commands are refused when scheduled.
    for command in [
        "{\"verify\": \"oldest\", \"dbname\": \"dr_app\"}",
        "{\"verify\": \"latest\"}",
        "{\"verify\": \"latest\", \"dbname\": \"dr_app\", \"test_restore\": 1}",
    ] {
        expect_sqlstate(
            &mut client,
            &format!("SELECT backup_ext.schedule('bad', '0 3 * * *', '{command}')"),
            "22023",
        );
    }
}
