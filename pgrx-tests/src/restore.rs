//! Helpers for the restore and verification tests: backups that must
//! succeed, restore_backup() calls and their jobs, refusals with their
//! SQLSTATE, verification results, snapshots of a database to compare a
//! restore with its source, and corrupting a backup file.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use postgres::error::SqlState;
use postgres::Client;

use crate::process::check_output;
use crate::sql::{describe, quote_literal};
use crate::{Backup, Cluster, SMALL_JOB};

/// Requests a backup with `sql` and waits until it succeeded.
pub fn backup(c: &Cluster, sql: &str) -> Backup {
    let job = c.enqueue(sql);
    let status = c.wait_final(job, SMALL_JOB);
    let b = c.backup(job);
    assert_eq!(
        status, "succeeded",
        "{sql}: job {job} ended {status}: {b:?}"
    );
    b
}

pub fn backup_db(c: &Cluster, db: &str, args: &str) -> Backup {
    backup(
        c,
        &format!(
            "SELECT backup_ext.backup_database({}{args})",
            quote_literal(db)
        ),
    )
}

/// `status`, `error` and `message` of a job, read from backup_ext.jobs.
pub fn job_outcome(c: &Cluster, job: i64) -> (String, Option<String>, Option<String>) {
    let row = c
        .client("postgres")
        .query_one(
            "SELECT status, error, message FROM backup_ext.jobs WHERE job_id = $1",
            &[&job],
        )
        .unwrap_or_else(|e| panic!("jobs row {job}: {}", describe(&e)));
    (row.get(0), row.get(1), row.get(2))
}

/// Runs a restore_backup() call and waits for the job to finish; returns
/// the job id and its final status.
pub fn restore(c: &Cluster, sql: &str) -> (i64, String) {
    let job = c.enqueue(sql);
    let status = c.wait_final(job, SMALL_JOB);
    (job, status)
}

/// Like [`restore`], asserting the job succeeded.
pub fn restore_ok(c: &Cluster, sql: &str) -> i64 {
    let (job, status) = restore(c, sql);
    let outcome = job_outcome(c, job);
    assert_eq!(status, "succeeded", "{sql}: job {job}: {outcome:?}");
    job
}

pub fn restore_sql(backup_id: i64, target: &str, rest: &str) -> String {
    format!(
        "SELECT backup_ext.restore_backup({backup_id}, {}{rest})",
        quote_literal(target)
    )
}

pub fn database_exists(c: &Cluster, name: &str) -> bool {
    c.client("postgres")
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)",
            &[&name],
        )
        .unwrap()
        .get(0)
}

/// Tables (ordinary and partitioned) of a database, as `schema.name`.
pub fn table_set(c: &Cluster, db: &str) -> Vec<String> {
    c.client(db)
        .query(
            "SELECT n.nspname || '.' || c.relname
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind IN ('r', 'p')
                AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                AND n.nspname NOT LIKE 'pg\\_toast%'
              ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Row count and `md5(string_agg(t::text, '|' ORDER BY t::text))` of every
/// table, partition and materialized view, keyed by quoted name.
pub fn table_hashes(c: &Cluster, db: &str) -> BTreeMap<String, (i64, Option<String>)> {
    let mut client = c.client(db);
    let names: Vec<String> = client
        .query(
            "SELECT c.oid::regclass::text
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind IN ('r', 'p', 'm')
                AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                AND n.nspname NOT LIKE 'pg\\_toast%'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    names
        .into_iter()
        .map(|name| {
            let sql = format!(
                "SELECT count(*), md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {name} t"
            );
            let row = client
                .query_one(&sql, &[])
                .unwrap_or_else(|e| panic!("{sql} in {db}: {}", describe(&e)));
            (name, (row.get(0), row.get(1)))
        })
        .collect()
}

/// `pg_dump --schema-only` of a database without the lines that differ
/// between runs (`\restrict` keys) and the version header.
pub fn schema_dump(c: &Cluster, db: &str) -> String {
    let out = c.run_tool("pg_dump", &["--schema-only", "-d", db]);
    check_output("pg_dump --schema-only", &out);
    String::from_utf8(out.stdout)
        .expect("UTF-8 schema dump")
        .lines()
        .filter(|l| {
            !l.starts_with("\\restrict ")
                && !l.starts_with("\\unrestrict ")
                && !l.starts_with("-- Dumped from ")
                && !l.starts_with("-- Dumped by ")
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Everything compared between a source and a restored database.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub schema: String,
    pub tables: BTreeMap<String, (i64, Option<String>)>,
    pub sequences: Vec<(String, Option<i64>)>,
    pub large_objects: Vec<(i64, Vec<u8>)>,
}

pub fn snapshot(c: &Cluster, db: &str) -> Snapshot {
    let mut client = c.client(db);
    let sequences = client
        .query(
            "SELECT format('%I.%I', schemaname, sequencename), last_value
               FROM pg_sequences ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let large_objects = client
        .query(
            "SELECT oid::bigint, lo_get(oid) FROM pg_largeobject_metadata ORDER BY oid",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    Snapshot {
        schema: schema_dump(c, db),
        tables: table_hashes(c, db),
        sequences,
        large_objects,
    }
}

/// Asserts two snapshots are equal; for the schema dump, shows the first
/// line that differs instead of two whole dumps.
pub fn assert_same(expected: &Snapshot, actual: &Snapshot, what: &str) {
    if expected.schema != actual.schema {
        let a: Vec<&str> = expected.schema.lines().collect();
        let b: Vec<&str> = actual.schema.lines().collect();
        let i = a
            .iter()
            .zip(&b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len()));
        let lo = i.saturating_sub(3);
        panic!(
            "{what}: schema dumps differ at line {} ({} vs {} lines)\n--- expected ---\n{}\n\
             --- actual ---\n{}",
            i + 1,
            a.len(),
            b.len(),
            a[lo..(i + 4).min(a.len())].join("\n"),
            b[lo..(i + 4).min(b.len())].join("\n")
        );
    }
    assert_eq!(expected.tables, actual.tables, "{what}: tables");
    assert_eq!(expected.sequences, actual.sequences, "{what}: sequences");
    assert_eq!(
        expected.large_objects, actual.large_objects,
        "{what}: large objects"
    );
}

/// Flips every bit of the byte in the middle of a file; the size stays.
pub fn flip_middle_byte(path: &Path) {
    let len = fs::metadata(path).unwrap().len();
    assert!(len > 2, "{} is too small to corrupt", path.display());
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut byte = [0u8];
    f.seek(SeekFrom::Start(len / 2)).unwrap();
    f.read_exact(&mut byte).unwrap();
    byte[0] ^= 0xff;
    f.seek(SeekFrom::Start(len / 2)).unwrap();
    f.write_all(&byte).unwrap();
    f.sync_all().unwrap();
    assert_eq!(fs::metadata(path).unwrap().len(), len);
}

/// Asserts `sql` fails with `state`; returns the message.
pub fn refused(client: &mut Client, sql: &str, state: &SqlState) -> String {
    match client.batch_execute(sql) {
        Ok(()) => panic!("{sql}: succeeded, expected SQLSTATE {}", state.code()),
        Err(e) => {
            assert_eq!(e.code(), Some(state), "{sql}: {}", describe(&e));
            // Message, detail and hint: tool output and checksums are in the detail.
            describe(&e)
        }
    }
}

pub fn restore_jobs_for(c: &Cluster, backup_ids: &[i64]) -> i64 {
    c.client("postgres")
        .query_one(
            "SELECT count(*) FROM backup_ext.jobs WHERE kind = 'restore' AND backup_id = ANY($1)",
            &[&backup_ids],
        )
        .unwrap()
        .get(0)
}

/// verify_status, verify_message and whether verified_at is set.
pub fn verify_result(c: &Cluster, backup_id: i64) -> (Option<String>, Option<String>, bool) {
    let row = c
        .client("postgres")
        .query_one(
            "SELECT verify_status, verify_message, verified_at IS NOT NULL
               FROM backup_ext.backups WHERE backup_id = $1",
            &[&backup_id],
        )
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

/// The end of the message of a restore of all of `db` whose row counts matched: the ordinary
/// tables of the source and their rows, counted here in the source itself.
pub fn rows_matched(c: &Cluster, db: &str) -> String {
    let row = c
        .client(db)
        .query_one(
            "SELECT count(*), coalesce(sum((xpath('/row/n/text()', query_to_xml(format(
                        'SELECT count(*) AS n FROM ONLY %I.%I', n.nspname, c.relname),
                        false, true, '')))[1]::text::bigint), 0)::bigint
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind = 'r' AND c.relpersistence <> 't'
                AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                AND n.nspname NOT LIKE 'pg\\_toast%'",
            &[],
        )
        .unwrap_or_else(|e| panic!("counting the rows of {db}: {}", describe(&e)));
    let (tables, rows): (i64, i64) = (row.get(0), row.get(1));
    format!(
        "restored {tables} table{}, {rows} row{}; row counts match the archive",
        if tables == 1 { "" } else { "s" },
        if rows == 1 { "" } else { "s" }
    )
}
