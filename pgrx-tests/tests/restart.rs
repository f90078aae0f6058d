//! A crash-restart of the server while a dump is running.

use backup_ext_e2e::*;
use std::fs;
use std::path::Path;
use std::time::Duration;

#[test]
fn running_job_fails_as_interrupted_and_queue_survives_restart() {
    let c = Cluster::start_with("restart", &[("backup_ext.max_parallel", "1")]);
    c.create_sample_db("restart_db");
    c.create_sample_db("after_db");

    // pg_dump blocks on this lock, so the job is still running at the crash.
    let mut holder = c.client("restart_db");
    holder
        .batch_execute("BEGIN; LOCK TABLE t1 IN ACCESS EXCLUSIVE MODE")
        .unwrap();

    let running = c.enqueue("SELECT backup_ext.backup_database('restart_db', label => 'crash')");
    c.wait_for_status(running, &["running"], SMALL_JOB);
    c.wait_until("pg_dump to block on the table lock", SMALL_JOB, || {
        c.client("postgres")
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = 'restart_db' AND wait_event_type = 'Lock'",
                &[],
            )
            .unwrap()
            .get::<_, i64>(0)
            == 1
    });
    let queued = c.enqueue("SELECT backup_ext.backup_database('after_db', label => 'behind')");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        c.job(queued).status,
        "queued",
        "max_parallel = 1 not honoured"
    );

    c.restart_immediate();
    assert!(holder.is_closed() || holder.batch_execute("SELECT 1").is_err());

    assert_eq!(c.wait_final(running, SMALL_JOB), "failed");
    let j = c.job(running);
    let err = j.error.clone().unwrap_or_default();
    assert!(
        err.contains("interrupted"),
        "error of the crashed job: {err:?}"
    );
    assert!(j.finished, "{j:?}");

    assert_eq!(
        c.wait_final(queued, SMALL_JOB),
        "succeeded",
        "{:?}",
        c.job(queued)
    );
    let b = c.backup(queued);
    let path = b.path_buf();
    assert_eq!(
        b.size_bytes,
        Some(fs::metadata(&path).unwrap().len() as i64)
    );
    assert_eq!(b.sha256.as_deref(), Some(sha256_file(&path).as_str()));

    let crashed = c.backup(running);
    assert_eq!(crashed.status, "failed");
    if let Some(p) = &crashed.path {
        assert!(!Path::new(p).exists(), "crashed job left {p}");
    }
    let folder = c.backups.join("restart_db");
    c.wait_until(
        "no output of the crashed job",
        Duration::from_secs(10),
        || {
            fs::read_dir(&folder)
                .map(|rd| rd.count() == 0)
                .unwrap_or(true)
        },
    );
    assert!(partials_under(&c.backups).is_empty());

    let workers: i64 = c
        .client("postgres")
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'backup_ext worker'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(workers, 1, "workers after restart");

    let again = c.enqueue("SELECT backup_ext.backup_database('restart_db')");
    assert_eq!(c.wait_final(again, SMALL_JOB), "succeeded");
}

#[test]
fn fast_shutdown_stops_a_running_dump_at_once_and_says_so() {
    let c = Cluster::start("shutdown");
    c.create_sample_db("shutdown_db");
    let mut holder = c.client("shutdown_db");
    holder
        .batch_execute("BEGIN; LOCK TABLE t1 IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let job = c.enqueue("SELECT backup_ext.backup_database('shutdown_db')");
    c.wait_for_status(job, &["running"], SMALL_JOB);
    c.wait_until("a .partial file to appear", SMALL_JOB, || {
        !partials_under(&c.backups).is_empty()
    });

    // The worker reacts to SIGTERM by stopping pg_dump's process group; a worker that did not
    // would hold the shutdown up until pg_dump gave up on the lock.
    let took = c.restart_fast();
    assert!(took < Duration::from_secs(10), "fast restart took {took:?}");
    assert_eq!(c.wait_final(job, SMALL_JOB), "failed");
    assert_eq!(
        c.job(job).error.as_deref(),
        Some("interrupted by server shutdown")
    );
    assert!(partials_under(&c.backups).is_empty());
    assert!(c.dump_processes().is_empty());
}

#[test]
fn work_files_left_by_a_crash_are_removed_at_restart_and_by_purge() {
    let c = Cluster::start("work-files");
    c.create_sample_db("work_db");
    let work = c.backups.join(".work");
    let holder = lock_t1(&c, "work_db");
    let crashed = c.enqueue("SELECT backup_ext.backup_database('work_db')");
    c.wait_for_status(crashed, &["running"], SMALL_JOB);
    wait_dump_blocked(&c, "work_db");
    let crashed_stderr = work.join(format!("job-{crashed}.stderr"));
    assert!(crashed_stderr.exists(), "no {}", crashed_stderr.display());
    // What other crashes leave: a restore's TOC list and a step's stderr of a worker gone since.
    let list = work.join("job-999999.list");
    let step = work.join("pg_restore-999999-0.stderr");
    let unknown = work.join("notes.txt");
    for p in [&list, &step, &unknown] {
        c.write_server_file(p, b"x");
    }

    c.restart_immediate();
    drop(holder);
    assert_eq!(c.wait_final(crashed, SMALL_JOB), "failed");
    c.wait_until(
        "recovery to remove the crashed jobs' files",
        SMALL_JOB,
        || !crashed_stderr.exists() && !list.exists() && !step.exists(),
    );
    assert!(
        unknown.exists(),
        "a file the worker did not name was removed"
    );

    // purge() removes them too, but never the files of a job still running.
    let holder = lock_t1(&c, "work_db");
    let running = c.enqueue("SELECT backup_ext.backup_database('work_db')");
    c.wait_for_status(running, &["running"], SMALL_JOB);
    wait_dump_blocked(&c, "work_db");
    let running_stderr = work.join(format!("job-{running}.stderr"));
    assert!(running_stderr.exists(), "no {}", running_stderr.display());
    for p in [&crashed_stderr, &list, &step] {
        c.write_server_file(p, b"x");
    }
    let mut client = c.client("postgres");
    let purged: Vec<String> = client
        .query(
            "SELECT path FROM backup_ext.purge() WHERE path LIKE '%/.work/%' ORDER BY path",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut expected: Vec<String> = [&crashed_stderr, &list, &step]
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    expected.sort();
    assert_eq!(purged, expected);
    for p in [&crashed_stderr, &list, &step] {
        assert!(!p.exists(), "{} survived purge()", p.display());
    }
    assert!(
        running_stderr.exists(),
        "purge() removed a running job's stderr"
    );
    assert!(unknown.exists());
    drop(holder);
    assert_eq!(c.wait_final(running, SMALL_JOB), "succeeded");
}
