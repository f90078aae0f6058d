//! Cancelling, and crashing during, the multi-step jobs: a restore that created its target and
//! a verification with its scratch database must not leave either behind.

use std::time::{Duration, Instant};

use backup_ext_e2e::Cluster;

const BIG: Duration = Duration::from_secs(120);

fn database_exists(c: &Cluster, name: &str) -> bool {
    c.client("postgres")
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .unwrap()
        .get::<_, i64>(0)
        == 1
}

/// Enqueues a job and waits until it runs and `db` exists, i.e. the restore step has begun.
fn start_and_wait_for_database(c: &Cluster, sql: &str, db: &str) -> i64 {
    let job = c.enqueue(sql);
    c.wait_until(&format!("job {job} running with {db} created"), BIG, || {
        c.job(job).status != "queued" && database_exists(c, db)
    });
    assert_eq!(
        c.job(job).status,
        "running",
        "the job finished before it could be cancelled"
    );
    job
}

fn cancel_and_time(c: &Cluster, job: i64) -> Duration {
    let start = Instant::now();
    let said: String = c
        .client("postgres")
        .query_one("SELECT backup_ext.cancel($1)", &[&job])
        .unwrap()
        .get(0);
    assert_eq!(said, "cancelling");
    assert_eq!(c.wait_final(job, BIG), "cancelled");
    start.elapsed()
}

/// A cluster with a backup of a database big enough for its restore to take a few seconds.
fn cluster_with_backup(name: &str) -> (Cluster, i64) {
    let c = Cluster::start(name);
    c.create_pgbench_db("src", 20);
    let backup = c.enqueue("SELECT backup_ext.backup_database('src')");
    assert_eq!(c.wait_final(backup, BIG), "succeeded");
    (c, backup)
}

#[test]
fn cancelled_restore_and_verification_drop_their_databases_at_once() {
    let (c, backup) = cluster_with_backup("cancel-restore");
    let restore = start_and_wait_for_database(
        &c,
        &format!("SELECT backup_ext.restore_backup({backup}, 'restored')"),
        "restored",
    );
    let took = cancel_and_time(&c, restore);
    assert!(
        !database_exists(&c, "restored"),
        "the half-restored database is still there"
    );
    // dropdb needs every backend, the waiting worker included, to answer its signal barrier.
    assert!(took < Duration::from_secs(10), "cancel took {took:?}");

    let verify = c.enqueue(&format!("SELECT backup_ext.verify_backup({backup}, true)"));
    let scratch = format!("backup_ext_verify_{verify}");
    c.wait_until(&format!("{scratch} created"), BIG, || {
        database_exists(&c, &scratch)
    });
    let took = cancel_and_time(&c, verify);
    assert!(
        !database_exists(&c, &scratch),
        "the scratch database is still there"
    );
    assert!(took < Duration::from_secs(10), "cancel took {took:?}");
}

#[test]
fn restart_during_a_restore_drops_the_half_made_database() {
    let (c, backup) = cluster_with_backup("restart-restore");
    let restore = start_and_wait_for_database(
        &c,
        &format!("SELECT backup_ext.restore_backup({backup}, 'restored')"),
        "restored",
    );
    c.restart_immediate();
    assert_eq!(c.wait_final(restore, BIG), "failed");
    assert_eq!(
        c.job(restore).error.as_deref(),
        Some("interrupted by server restart")
    );
    c.wait_until("the half-made database dropped", BIG, || {
        !database_exists(&c, "restored")
    });
}

#[test]
fn fast_shutdown_during_a_restore_drops_the_half_made_database_at_the_next_start() {
    let (c, backup) = cluster_with_backup("shutdown-restore");
    let restore = start_and_wait_for_database(
        &c,
        &format!("SELECT backup_ext.restore_backup({backup}, 'restored')"),
        "restored",
    );
    // dropdb cannot connect while the server shuts down; the next start must drop it.
    c.restart_fast();
    assert_eq!(c.wait_final(restore, BIG), "failed");
    let error = c.job(restore).error.unwrap_or_default();
    assert!(error.contains("interrupted"), "error: {error:?}");
    c.wait_until("the half-made database dropped", BIG, || {
        !database_exists(&c, "restored")
    });
    // The worker is back and serves restores into the same name again.
    let again = c.enqueue(&format!(
        "SELECT backup_ext.restore_backup({backup}, 'restored')"
    ));
    assert_eq!(c.wait_final(again, BIG), "succeeded", "{:?}", c.job(again));
}

#[test]
fn a_restore_that_runs_out_of_time_fails_and_drops_its_database() {
    let (c, backup) = cluster_with_backup("timeout-restore");
    let mut client = c.client("postgres");
    let err = client
        .query_one(
            &format!(
                "SELECT backup_ext.restore_backup({backup}, 'late', options => '{{\"timeout\": \"soon\"}}')"
            ),
            &[],
        )
        .expect_err("a timeout that is not an interval must be refused");
    assert_eq!(err.code().map(|s| s.code()), Some("22023"), "{err:?}");

    let job = c.enqueue(&format!(
        "SELECT backup_ext.restore_backup({backup}, 'late', options => '{{\"timeout\": \"1 second\"}}')"
    ));
    assert_eq!(c.wait_final(job, BIG), "failed");
    assert_eq!(c.job(job).error.as_deref(), Some("timed out after 1 s"));
    assert!(
        !database_exists(&c, "late"),
        "the timed-out restore left its database"
    );
}
