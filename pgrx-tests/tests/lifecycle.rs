//! Job lifecycle: the worker process, notifications, concurrent requests,
//! wait_for, request validation and cancellation.

use backup_ext_e2e::postgres::fallible_iterator::FallibleIterator;
use backup_ext_e2e::postgres::{Client, Transaction};
use backup_ext_e2e::*;
use std::collections::HashSet;
use std::fs;
use std::time::{Duration, Instant};

fn cluster() -> SharedCluster {
    shared_cluster("lifecycle", &[])
}

#[test]
fn exactly_one_worker_is_running() {
    let c = cluster();
    let mut client = c.client("postgres");
    let workers: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'backup_ext worker'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(workers, 1);
}

#[test]
fn finished_job_sends_a_json_notification() {
    let c = cluster();
    c.create_sample_db("notify_db");
    let mut listener = c.client("postgres");
    listener.batch_execute("LISTEN backup_ext").unwrap();
    let job = c.enqueue("SELECT backup_ext.backup_database('notify_db')");

    let deadline = Instant::now() + SMALL_JOB;
    let mut seen = Vec::new();
    let status = 'outer: loop {
        assert!(
            Instant::now() < deadline,
            "no final notification for job {job}; seen {seen:?}; job {:?}",
            c.job(job)
        );
        let mut notes = listener.notifications();
        let mut it = notes.timeout_iter(Duration::from_millis(200));
        while let Some(n) = it.next().unwrap() {
            assert_eq!(n.channel(), "backup_ext");
            let payload: serde_json::Value = serde_json::from_str(n.payload())
                .unwrap_or_else(|e| panic!("payload {:?} is not JSON: {e}", n.payload()));
            seen.push(payload.clone());
            if payload["job_id"].as_i64() == Some(job) {
                break 'outer payload["status"].as_str().unwrap_or("").to_string();
            }
        }
    };
    assert_eq!(status, "succeeded", "{seen:?}");
    assert_eq!(c.job(job).status, "succeeded");
}

#[test]
fn concurrent_requests_each_run_exactly_once() {
    let c = cluster();
    c.create_sample_db("conc_db");
    let ids: Vec<i64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let c = &*c;
                s.spawn(move || {
                    let mut client = c.client("postgres");
                    (0..3)
                        .map(|i| {
                            client
                                .query_one(
                                    "SELECT backup_ext.backup_database('conc_db', label => $1)",
                                    &[&format!("conc {t}/{i}")],
                                )
                                .unwrap_or_else(|e| panic!("enqueue: {}", describe(&e)))
                                .get::<_, i64>(0)
                        })
                        .collect::<Vec<i64>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(ids.len(), 12);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 12, "{ids:?}");
    for &id in &ids {
        assert_eq!(c.wait_final(id, SMALL_JOB), "succeeded", "{:?}", c.job(id));
    }
    let mut client = c.client("postgres");
    let rows = client
        .query(
            "SELECT job_id, status::text, path::text, label
               FROM backup_ext.list_backups('conc_db')",
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), 12);
    let mut paths = HashSet::new();
    let mut labels = HashSet::new();
    for r in &rows {
        let id: i64 = r.get(0);
        assert!(ids.contains(&id));
        assert_eq!(r.get::<_, String>(1), "succeeded");
        let path: String = r.get(2);
        assert!(fs::metadata(&path).unwrap().len() > 0, "{path}");
        paths.insert(path);
        labels.insert(r.get::<_, String>(3));
    }
    assert_eq!(paths.len(), 12);
    assert_eq!(labels.len(), 12);
    // Newest first: backup ids descend. (Job ids of requests made in
    // concurrent transactions need not be in the same order.)
    let order: Vec<i64> = client
        .query(
            "SELECT backup_id::bigint FROM backup_ext.list_backups('conc_db')",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut sorted = order.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(order, sorted, "list_backups() is not newest first");
    let succeeded = client
        .query(
            "SELECT count(*) FROM backup_ext.list_backups('conc_db', 'succeeded')",
            &[],
        )
        .unwrap()[0]
        .get::<_, i64>(0);
    assert_eq!(succeeded, 12);
    assert!(partials_under(&c.backups.join("conc_db")).is_empty());
}

#[test]
fn wait_for_returns_the_final_status() {
    let c = cluster();
    c.create_sample_db("wait_db");
    let mut client = c.client("postgres");
    let job: i64 = client
        .query_one("SELECT backup_ext.backup_database('wait_db')", &[])
        .unwrap()
        .get(0);
    let status: String = client
        .query_one("SELECT backup_ext.wait_for($1, '2 minutes')", &[&job])
        .unwrap_or_else(|e| panic!("wait_for: {}", describe(&e)))
        .get(0);
    assert_eq!(status, "succeeded");
    let j = c.job(job);
    assert_eq!(j.status, "succeeded");
    assert_eq!(j.kind, "database");
    assert_eq!(j.database.as_deref(), Some("wait_db"));
    assert_eq!(j.requested_by.as_deref(), Some("postgres"));
    assert!(j.started && j.finished);
    assert_eq!(j.error, None);
    // A finished job cannot be cancelled.
    expect_sqlstate(
        &mut client,
        &format!("SELECT backup_ext.cancel({job})"),
        "55000",
    );
    assert_eq!(c.job(job).status, "succeeded");
}

fn job_count(client: &mut Client) -> i64 {
    client
        .query_one("SELECT count(*) FROM backup_ext.list_backups()", &[])
        .unwrap()
        .get(0)
}

/// Runs on its own cluster so that "nothing was enqueued" can be checked
/// by counting.
#[test]
fn invalid_requests_are_refused_and_enqueue_nothing() {
    let c = Cluster::start("validation");
    c.create_sample_db("valid_db");
    let mut client = c.client("postgres");
    assert_eq!(job_count(&mut client), 0);

    let cases: &[(&str, &str)] = &[
        (
            "SELECT backup_ext.backup_database('valid_db', format => 'zip')",
            "22023",
        ),
        (
            "SELECT backup_ext.backup_database('valid_db', format => 'Custom')",
            "22023",
        ),
        (
            "SELECT backup_ext.backup_database('valid_db', jobs => 2)",
            "22023",
        ),
        (
            "SELECT backup_ext.backup_database('valid_db', format => 'tar', jobs => 2)",
            "22023",
        ),
        (
            "SELECT backup_ext.backup_database('valid_db', format => 'tar', compress => '5')",
            "0A000",
        ),
        (
            "SELECT backup_ext.backup_database('valid_db', compress => '10')",
            "22023",
        ),
        (
            "SELECT backup_ext.backup_database('valid_db', options => '{\"bogus\":true}')",
            "22023",
        ),
        (
            "SELECT backup_ext.backup_database('valid_db', options => '{\"schema_only\":\"yes\"}')",
            "22023",
        ),
        (
            "SELECT backup_ext.backup_database('valid_db', options => '{\"tables\":\"t1\"}')",
            "22023",
        ),
        ("SELECT backup_ext.backup_database('no_such_db')", "3D000"),
        ("SELECT backup_ext.backup_database('template0')", "55000"),
        ("SELECT * FROM backup_ext.job_status(987654321)", "42704"),
        ("SELECT backup_ext.wait_for(987654321, '1 second')", "42704"),
        ("SELECT backup_ext.cancel(987654321)", "42704"),
    ];
    for (sql, code) in cases {
        let msg = expect_sqlstate(&mut client, sql, code);
        assert!(!msg.is_empty(), "{sql}: empty message");
    }
    if pg_major() < 16 {
        // pg_dump 15 knows no method names (16 and later: see tests/capabilities.rs).
        expect_sqlstate(
            &mut client,
            "SELECT backup_ext.backup_database('valid_db', compress => 'zstd:3')",
            "0A000",
        );
    }
    assert_eq!(job_count(&mut client), 0, "a refused request was enqueued");

    // wait_for on a job enqueued in the same, uncommitted transaction.
    let mut tx: Transaction = client.transaction().unwrap();
    let job: i64 = tx
        .query_one("SELECT backup_ext.backup_database('valid_db')", &[])
        .unwrap()
        .get(0);
    let err = tx
        .query_one("SELECT backup_ext.wait_for($1, '5 seconds')", &[&job])
        .expect_err("wait_for in the enqueuing transaction must fail");
    assert_eq!(sqlstate(&err), Some("55000"), "{}", describe(&err));
    tx.rollback().unwrap();
    assert_eq!(job_count(&mut client), 0, "rolled back request is visible");

    // A valid request still works afterwards, and only it is recorded.
    let job = c.enqueue("SELECT backup_ext.backup_database('valid_db', compress => '9')");
    assert_eq!(c.wait_final(job, SMALL_JOB), "succeeded");
    assert_eq!(job_count(&mut client), 1);
}

/// Holds an ACCESS EXCLUSIVE lock on a table so that pg_dump of its
/// database blocks in LOCK TABLE until the transaction ends: a job that
/// stays "running" for as long as the test needs.
pub fn blocking_lock(c: &Cluster, db: &str) -> Client {
    let mut holder = c.client(db);
    holder
        .batch_execute("BEGIN; LOCK TABLE t1 IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    holder
}

fn dump_connections_waiting(c: &Cluster, db: &str) -> i64 {
    c.client("postgres")
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = $1 AND wait_event_type = 'Lock'",
            &[&db],
        )
        .unwrap()
        .get(0)
}

fn connections_to(c: &Cluster, db: &str, except_app: &str) -> i64 {
    c.client("postgres")
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = $1 AND application_name <> $2",
            &[&db, &except_app],
        )
        .unwrap()
        .get(0)
}

#[test]
fn cancel_running_and_queued_jobs() {
    let c = Cluster::start_with("cancel", &[("backup_ext.max_parallel", "1")]);
    c.create_sample_db("cancel_db");
    c.create_sample_db("other_db");
    let holder = blocking_lock(&c, "cancel_db");

    let running = c.enqueue("SELECT backup_ext.backup_database('cancel_db', label => 'blocked')");
    c.wait_for_status(running, &["running"], SMALL_JOB);
    c.wait_until("pg_dump to block on the table lock", SMALL_JOB, || {
        dump_connections_waiting(&c, "cancel_db") == 1
    });
    let folder = c.backups.join("cancel_db");
    c.wait_until("the .partial output to exist", SMALL_JOB, || {
        !partials_under(&folder).is_empty()
    });
    assert_eq!(c.dump_processes().len(), 1, "pg_dump processes");

    // With max_parallel = 1 the next job waits in the queue.
    let queued = c.enqueue("SELECT backup_ext.backup_database('other_db', label => 'queued')");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(c.job(queued).status, "queued");

    let mut client = c.client("postgres");
    client
        .query("SELECT backup_ext.cancel($1)", &[&queued])
        .unwrap_or_else(|e| panic!("cancel queued: {}", describe(&e)));
    assert_eq!(
        c.wait_for_status(queued, &["cancelled"], Duration::from_secs(10)),
        "cancelled"
    );

    let t0 = Instant::now();
    client
        .query("SELECT backup_ext.cancel($1)", &[&running])
        .unwrap_or_else(|e| panic!("cancel running: {}", describe(&e)));
    assert_eq!(
        c.wait_for_status(running, &["cancelled"], Duration::from_secs(10)),
        "cancelled"
    );
    assert!(t0.elapsed() < Duration::from_secs(10));
    c.wait_until("pg_dump to exit", Duration::from_secs(10), || {
        c.dump_processes().is_empty()
    });
    c.wait_until(
        "pg_dump's connection to go away",
        Duration::from_secs(10),
        || connections_to(&c, "cancel_db", "backup_ext_e2e") == 0,
    );
    let app_rows: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'backup_ext%'
                AND application_name <> 'backup_ext_e2e' AND backend_type = 'client backend'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(app_rows, 0);
    let leftovers: Vec<_> = fs::read_dir(&folder)
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    assert!(
        leftovers.is_empty(),
        "left behind after cancel: {leftovers:?}"
    );

    let q = c.job(queued);
    assert!(!q.started, "cancelled queued job was started: {q:?}");
    let b = c.backup(queued);
    assert_eq!(b.status, "cancelled");
    assert!(!b.started, "{b:?}");
    let other_files = fs::read_dir(c.backups.join("other_db"))
        .map(|rd| rd.count())
        .unwrap_or(0);
    assert_eq!(other_files, 0, "the cancelled queued job wrote output");
    if let Some(p) = c.backup(running).path {
        assert!(!std::path::Path::new(&p).exists(), "{p} exists");
    }

    // Cancelling again is refused; the worker keeps serving requests.
    expect_sqlstate(
        &mut client,
        &format!("SELECT backup_ext.cancel({queued})"),
        "55000",
    );
    expect_sqlstate(
        &mut client,
        &format!("SELECT backup_ext.cancel({running})"),
        "55000",
    );
    drop(holder);
    let next = c.enqueue("SELECT backup_ext.backup_database('cancel_db')");
    assert_eq!(c.wait_final(next, SMALL_JOB), "succeeded");
    assert_eq!(c.job(queued).status, "cancelled");
    assert_eq!(c.job(running).status, "cancelled");
}

#[test]
fn a_backup_directory_inside_the_data_directory_is_refused() {
    // The harness's own backup_ext.directory comes first on the command line; this one wins.
    let name = "datadir-backups";
    let root = format!("{SCRATCH_ROOT}/{name}-{}", std::process::id());
    let inside = format!("{root}/data/../data/dumps");
    let c = Cluster::start_with(name, &[("backup_ext.directory", &inside)]);
    c.create_sample_db("datadir_db");
    let job = c.enqueue("SELECT backup_ext.backup_database('datadir_db')");
    assert_eq!(c.wait_final(job, SMALL_JOB), "failed");
    let err = c.job(job).error.unwrap_or_default();
    assert!(
        err.contains(&format!("backup_ext.directory {inside}")),
        "{err}"
    );
    assert!(
        err.contains(&format!("inside the data directory {}", c.data.display())),
        "{err}"
    );
    assert!(err.contains("base backup"), "{err}");
    assert!(
        !c.data.join("dumps").exists(),
        "dumps written into the data directory"
    );
}

#[test]
fn prepare_transaction_wakes_the_worker() {
    // A cluster of its own: on the shared one, other tests' jobs wake the worker.
    let c = Cluster::start_with("prepared", &[("max_prepared_transactions", "4")]);
    let enqueue = "SELECT backup_ext.backup_database('postgres', format => 'plain')";
    // Right after a job, the idle worker sleeps its full poll interval (10 s) unless woken.
    let warm_up = c.enqueue(enqueue);
    assert_eq!(c.wait_final(warm_up, SMALL_JOB), "succeeded");

    let mut session = c.client("postgres");
    let mut prepared_enqueue = |gid: &str| -> i64 {
        session.batch_execute("BEGIN").unwrap();
        let job: i64 = session.query_one(enqueue, &[]).unwrap().get(0);
        session
            .batch_execute(&format!("PREPARE TRANSACTION '{gid}'"))
            .unwrap();
        job
    };
    // COMMIT PREPARED wakes no one: this job becomes visible silently...
    let first = prepared_enqueue("first");
    exec(&mut c.client("postgres"), "COMMIT PREPARED 'first'");
    // ...and the next PREPARE of an enqueue wakes the worker, which then finds it.
    let second = prepared_enqueue("second");
    c.wait_for_status(first, &["running", "succeeded"], Duration::from_secs(3));

    // The session's next transaction registers (and wakes) afresh.
    let third: i64 = session.query_one(enqueue, &[]).unwrap().get(0);
    c.wait_for_status(third, &["running", "succeeded"], Duration::from_secs(3));

    exec(&mut c.client("postgres"), "COMMIT PREPARED 'second'");
    for job in [first, second, third] {
        assert_eq!(c.wait_final(job, SMALL_JOB), "succeeded");
    }
    c.stop();
}
