//! Verification: verify_backup() on corrupted backups, which are refused
//! for restores too, and test restores that count rows in a scratch
//! database and drop it.
//!
//! The tests share one cluster and work on databases of their own.

use backup_ext_e2e::postgres::error::SqlState;
use backup_ext_e2e::*;
use std::fs;
use std::io::Write;

fn cluster() -> SharedCluster {
    shared_cluster("verify", &[])
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn corrupted_backups_fail_verification_and_are_not_restored() {
    let c = cluster();
    let src = "corrupt_src";
    c.create_sample_db(src);
    let custom = backup_db(&c, src, "");
    let dir = backup_db(&c, src, ", format => 'directory'");

    // Custom format: one byte in the middle of the file.
    let path = custom.path_buf();
    let recorded = custom.sha256.clone().expect("sha256 recorded");
    flip_middle_byte(&path);
    let actual = sha256_file(&path);
    assert_ne!(actual, recorded);

    let mut client = c.client("postgres");
    let msg = refused(
        &mut client,
        &restore_sql(custom.backup_id, "corrupt_dst", ""),
        &SqlState::DATA_CORRUPTED,
    );
    assert!(msg.contains("sha256") || msg.contains("checksum"), "{msg}");

    let job = c.enqueue(&format!(
        "SELECT backup_ext.verify_backup({})",
        custom.backup_id
    ));
    assert_eq!(c.wait_final(job, SMALL_JOB), "failed");
    let (_, error, _) = job_outcome(&c, job);
    let expected = format!("sha256 mismatch: expected {recorded}, got {actual}");
    let error = error.expect("failed verification has an error");
    assert!(error.contains(&expected), "{error}");
    let (status, message, verified) = verify_result(&c, custom.backup_id);
    assert_eq!(status.as_deref(), Some("failed"));
    let message = message.unwrap_or_default();
    assert!(message.contains(&expected), "{message}");
    assert!(verified);

    // Directory format: one byte of a data file.
    let (entries, _, _) = directory_manifest(&dir.path_buf());
    let victim = entries
        .iter()
        .filter(|e| e.name != "toc.dat")
        .max_by_key(|e| e.size)
        .expect("a data file")
        .name
        .clone();
    flip_middle_byte(&dir.path_buf().join(&victim));
    refused(
        &mut client,
        &restore_sql(dir.backup_id, "corrupt_dst", ""),
        &SqlState::DATA_CORRUPTED,
    );
    let job = c.enqueue(&format!(
        "SELECT backup_ext.verify_backup({})",
        dir.backup_id
    ));
    assert_eq!(c.wait_final(job, SMALL_JOB), "failed");
    let (status, message, verified) = verify_result(&c, dir.backup_id);
    assert_eq!(status.as_deref(), Some("failed"));
    let message = message.unwrap_or_default();
    assert!(message.contains("manifest sha256 mismatch"), "{message}");
    assert!(verified);

    // A file that grew by one byte is refused on its size.
    let grown = backup_db(&c, src, ", format => 'tar'");
    fs::OpenOptions::new()
        .append(true)
        .open(grown.path_buf())
        .unwrap()
        .write_all(b"\0")
        .unwrap();
    let msg = refused(
        &mut client,
        &restore_sql(grown.backup_id, "corrupt_dst", ""),
        &SqlState::DATA_CORRUPTED,
    );
    let size = grown.size_bytes.unwrap();
    assert!(
        msg.contains(&format!("size is {} bytes, {size} were recorded", size + 1)),
        "{msg}"
    );

    assert_eq!(
        restore_jobs_for(&c, &[custom.backup_id, dir.backup_id, grown.backup_id]),
        0,
        "refused restores enqueued jobs"
    );
    assert!(!database_exists(&c, "corrupt_dst"));
}

#[test]
fn test_restore_verification_passes_and_drops_its_scratch_database() {
    let c = cluster();
    let src = "verify_src";
    c.create_sample_db(src);
    let mut verified = Vec::new();
    for args in ["", ", format => 'directory'", ", format => 'tar'"] {
        let b = backup_db(&c, src, args);
        let job = c.enqueue(&format!(
            "SELECT backup_ext.verify_backup({}, true)",
            b.backup_id
        ));
        verified.push((b, job));
    }
    for (b, job) in &verified {
        let status = c.wait_final(*job, SMALL_JOB);
        let outcome = job_outcome(&c, *job);
        assert_eq!(status, "succeeded", "{:?}: {outcome:?}", b.format);
        assert_eq!(outcome.1, None);
        let (status, message, at) = verify_result(&c, b.backup_id);
        assert_eq!(status.as_deref(), Some("passed"), "{message:?}");
        let message = message.unwrap_or_default();
        assert!(
            message.contains("test restore: 3 tables, 10600 rows, counts match"),
            "{:?}: {message}",
            b.format
        );
        assert!(at);
        let scratch = format!("backup_ext_verify_{job}");
        assert!(!database_exists(&c, &scratch), "{scratch} left behind");
    }
    let left: Vec<String> = c
        .client("postgres")
        .query(
            "SELECT datname::text FROM pg_database WHERE datname LIKE 'backup\\_ext\\_verify\\_%'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(left.is_empty(), "scratch databases left: {left:?}");
}
