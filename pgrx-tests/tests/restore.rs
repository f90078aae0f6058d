//! Restores, table-of-contents listings and verification: round trips in
//! every format, parallel and selective restores, globals, clean restores
//! into existing databases, failing restores, refusals with their SQLSTATEs,
//! corrupted backups, test restores and who may do what.
//!
//! Most tests share one cluster and work on databases of their own. The
//! globals test drops and recreates a role, so it gets its own cluster: a
//! globals backup replayed there could otherwise bring back roles other
//! tests dropped on purpose.

use backup_ext_e2e::postgres::error::SqlState;
use backup_ext_e2e::postgres::Client;
use backup_ext_e2e::*;
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::OnceLock;

fn cluster() -> SharedCluster {
    shared_cluster("restore", &[])
}

// ---------------------------------------------------------------------------
// Helpers

/// Requests a backup with `sql` and waits until it succeeded.
fn backup(c: &Cluster, sql: &str) -> Backup {
    let job = c.enqueue(sql);
    let status = c.wait_final(job, SMALL_JOB);
    let b = c.backup(job);
    assert_eq!(
        status, "succeeded",
        "{sql}: job {job} ended {status}: {b:?}"
    );
    b
}

fn backup_db(c: &Cluster, db: &str, args: &str) -> Backup {
    backup(
        c,
        &format!(
            "SELECT backup_ext.backup_database({}{args})",
            quote_literal(db)
        ),
    )
}

/// `status`, `error` and `message` of a job, read from backup_ext.jobs.
fn job_outcome(c: &Cluster, job: i64) -> (String, Option<String>, Option<String>) {
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
fn restore(c: &Cluster, sql: &str) -> (i64, String) {
    let job = c.enqueue(sql);
    let status = c.wait_final(job, SMALL_JOB);
    (job, status)
}

/// Like [`restore`], asserting the job succeeded.
fn restore_ok(c: &Cluster, sql: &str) -> i64 {
    let (job, status) = restore(c, sql);
    let outcome = job_outcome(c, job);
    assert_eq!(status, "succeeded", "{sql}: job {job}: {outcome:?}");
    job
}

fn restore_sql(backup_id: i64, target: &str, rest: &str) -> String {
    format!(
        "SELECT backup_ext.restore_backup({backup_id}, {}{rest})",
        quote_literal(target)
    )
}

fn database_exists(c: &Cluster, name: &str) -> bool {
    c.client("postgres")
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)",
            &[&name],
        )
        .unwrap()
        .get(0)
}

/// Tables (ordinary and partitioned) of a database, as `schema.name`.
fn table_set(c: &Cluster, db: &str) -> Vec<String> {
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
fn table_hashes(c: &Cluster, db: &str) -> BTreeMap<String, (i64, Option<String>)> {
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
fn schema_dump(c: &Cluster, db: &str) -> String {
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
struct Snapshot {
    schema: String,
    tables: BTreeMap<String, (i64, Option<String>)>,
    sequences: Vec<(String, Option<i64>)>,
    large_objects: Vec<(i64, Vec<u8>)>,
}

fn snapshot(c: &Cluster, db: &str) -> Snapshot {
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
fn assert_same(expected: &Snapshot, actual: &Snapshot, what: &str) {
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

/// Roles the rich database grants to; created once per cluster.
fn grant_roles(c: &Cluster) {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        c.client("postgres")
            .batch_execute(
                "CREATE ROLE restore_reader NOLOGIN;
                 CREATE ROLE restore_writer NOLOGIN;",
            )
            .unwrap_or_else(|e| panic!("grant roles: {}", describe(&e)));
    });
}

const RICH_SQL: &str = r#"
CREATE SCHEMA app;
COMMENT ON SCHEMA app IS 'application schema – ü';
CREATE SCHEMA "Sales & Co ü";
COMMENT ON SCHEMA "Sales & Co ü" IS 'sales "team"';
CREATE TYPE app.mood AS ENUM ('sad', 'ok', 'happy', 'ekstatisch ü');
CREATE DOMAIN app.positive_int AS integer CHECK (VALUE > 0);
CREATE TYPE app.floatrange AS RANGE (subtype = float8, subtype_diff = float8mi);

CREATE TABLE app.customers (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL,
    mood app.mood NOT NULL,
    score app.positive_int NOT NULL,
    balance numeric(14,4) NOT NULL,
    tags text[] NOT NULL,
    signed_up timestamptz NOT NULL
);
COMMENT ON TABLE app.customers IS 'who buys';
COMMENT ON COLUMN app.customers.mood IS 'Stimmung 😀';
INSERT INTO app.customers (name, mood, score, balance, tags, signed_up)
SELECT format('Kunde %s ñ 漢字 🐘 "q" ''s'' \ %s end', i, chr(9)),
       (enum_range(NULL::app.mood))[i % 4 + 1],
       i,
       round(i * 1234.5678 / 7, 4) * CASE WHEN i % 2 = 0 THEN -1 ELSE 1 END,
       ARRAY['tag' || (i % 5), 'ü', NULL, 'with,comma'],
       timestamptz '2024-01-01 00:00:00+00' + i * interval '37 minutes 13.25 seconds'
  FROM generate_series(1, 1000) AS i;

CREATE TABLE app.orders (
    id serial PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES app.customers (id),
    doc jsonb NOT NULL,
    quantities int[] NOT NULL,
    receipt bytea,
    discount app.floatrange,
    total numeric NOT NULL
);
INSERT INTO app.orders (customer_id, doc, quantities, receipt, discount, total)
SELECT i % 1000 + 1,
       jsonb_build_object('n', i, 'note', 'größe ' || i,
                          'items', jsonb_build_array(i, i * 2, 'x'),
                          'nested', jsonb_build_object('ok', i % 2 = 0)),
       ARRAY[i, i % 7, -i],
       CASE WHEN i % 10 = 0 THEN NULL ELSE decode(md5(i::text) || '00ff', 'hex') END,
       CASE WHEN i % 3 = 0 THEN app.floatrange(0, i / 100.0) END,
       round(i * 3.14159, 3)
  FROM generate_series(1, 2000) AS i;
CREATE INDEX orders_doc_gin ON app.orders USING gin (doc);
CREATE INDEX orders_customer_idx ON app.orders (customer_id);
CREATE INDEX orders_big_idx ON app.orders (total) WHERE total > 5000;
CREATE INDEX customers_lower_name_idx ON app.customers (lower(name));

CREATE TABLE app.events (
    id bigint GENERATED BY DEFAULT AS IDENTITY,
    happened date NOT NULL,
    what text NOT NULL,
    PRIMARY KEY (id, happened)
) PARTITION BY RANGE (happened);
CREATE TABLE app.events_2023 PARTITION OF app.events
    FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE app.events_2024 PARTITION OF app.events
    FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
INSERT INTO app.events (happened, what)
SELECT date '2023-01-01' + i, 'event ' || i FROM generate_series(0, 729) AS i;

CREATE TABLE public.audit_log (
    id bigserial PRIMARY KEY,
    table_name text NOT NULL,
    op text NOT NULL
);
CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.updated_at := timestamptz '2024-06-01 12:00:00+00';
    INSERT INTO public.audit_log (table_name, op) VALUES (TG_TABLE_NAME, TG_OP);
    RETURN NEW;
END
$fn$;
COMMENT ON FUNCTION app.touch() IS 'stamps rows';

CREATE TABLE "Sales & Co ü"."Quarterly ""Report"" ü" (
    region text PRIMARY KEY,
    amount numeric(10,2) NOT NULL
);
INSERT INTO "Sales & Co ü"."Quarterly ""Report"" ü"
SELECT 'Region ' || i || ' – ß', i * 100.5 FROM generate_series(1, 20) AS i;
CREATE TABLE "Sales & Co ü"."line items" (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    region text NOT NULL
        REFERENCES "Sales & Co ü"."Quarterly ""Report"" ü" (region) ON DELETE CASCADE,
    qty app.positive_int NOT NULL,
    updated_at timestamptz
);
COMMENT ON COLUMN "Sales & Co ü"."line items".qty IS 'how many';
CREATE TRIGGER "line items touch" BEFORE INSERT OR UPDATE ON "Sales & Co ü"."line items"
    FOR EACH ROW EXECUTE FUNCTION app.touch();
INSERT INTO "Sales & Co ü"."line items" (region, qty)
SELECT 'Region ' || (i % 20 + 1) || ' – ß', i FROM generate_series(1, 300) AS i;

CREATE VIEW app.customer_totals AS
SELECT c.id, c.name, count(o.id) AS orders, coalesce(sum(o.total), 0) AS total
  FROM app.customers c LEFT JOIN app.orders o ON o.customer_id = c.id
 GROUP BY c.id, c.name;
CREATE MATERIALIZED VIEW "Sales & Co ü"."region summary" AS
SELECT region, count(*) AS lines, sum(qty) AS qty
  FROM "Sales & Co ü"."line items" GROUP BY region;
CREATE UNIQUE INDEX region_summary_region ON "Sales & Co ü"."region summary" (region);
COMMENT ON MATERIALIZED VIEW "Sales & Co ü"."region summary" IS 'per region';

SELECT lo_from_bytea(0, convert_to('large object ü 🐘', 'UTF8')
                        || decode(repeat('00ff7f80', 4096), 'hex'));

GRANT USAGE ON SCHEMA app, "Sales & Co ü" TO restore_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA app TO restore_reader;
GRANT SELECT ON "Sales & Co ü"."region summary" TO restore_reader;
GRANT USAGE ON SCHEMA "Sales & Co ü" TO restore_writer;
GRANT SELECT, INSERT, UPDATE (qty) ON "Sales & Co ü"."line items" TO restore_writer;
REVOKE EXECUTE ON FUNCTION app.touch() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.touch() TO restore_writer;
ANALYZE;
"#;

/// A database with many kinds of objects and a few thousand rows; returns
/// its snapshot after checking it holds what it should.
fn create_rich_db(c: &Cluster, db: &str) -> Snapshot {
    grant_roles(c);
    c.client("postgres")
        .batch_execute(&format!("CREATE DATABASE {}", quote_ident(db)))
        .unwrap_or_else(|e| panic!("CREATE DATABASE {db}: {}", describe(&e)));
    c.client(db)
        .batch_execute(RICH_SQL)
        .unwrap_or_else(|e| panic!("filling {db}: {}", describe(&e)));
    let snap = snapshot(c, db);
    let counts: Vec<(&str, i64)> = snap.tables.iter().map(|(k, v)| (k.as_str(), v.0)).collect();
    assert_eq!(
        counts,
        [
            (r#""Sales & Co ü"."Quarterly ""Report"" ü""#, 20),
            (r#""Sales & Co ü"."line items""#, 300),
            (r#""Sales & Co ü"."region summary""#, 20),
            ("app.customers", 1000),
            ("app.events", 730),
            ("app.events_2023", 365),
            ("app.events_2024", 365),
            ("app.orders", 2000),
            ("audit_log", 300),
        ]
    );
    assert_eq!(snap.large_objects.len(), 1);
    for needle in [
        r#"CREATE TABLE "Sales & Co ü"."Quarterly ""Report"" ü""#,
        r#"CREATE TRIGGER "line items touch""#,
        "CREATE INDEX orders_doc_gin ON app.orders USING gin (doc);",
        "GRANT SELECT ON TABLE app.customers TO restore_reader;",
        r#"GRANT UPDATE(qty) ON TABLE "Sales & Co ü"."line items" TO restore_writer;"#,
        "COMMENT ON COLUMN app.customers.mood IS 'Stimmung 😀';",
        "CREATE TYPE app.floatrange AS RANGE (",
    ] {
        assert!(
            snap.schema.contains(needle),
            "{needle:?} not in schema dump"
        );
    }
    snap
}

/// Flips every bit of the byte in the middle of a file; the size stays.
fn flip_middle_byte(path: &Path) {
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
fn refused(client: &mut Client, sql: &str, state: &SqlState) -> String {
    match client.batch_execute(sql) {
        Ok(()) => panic!("{sql}: succeeded, expected SQLSTATE {}", state.code()),
        Err(e) => {
            assert_eq!(e.code(), Some(state), "{sql}: {}", describe(&e));
            // Message, detail and hint: tool output and checksums are in the detail.
            describe(&e)
        }
    }
}

fn restore_jobs_for(c: &Cluster, backup_ids: &[i64]) -> i64 {
    c.client("postgres")
        .query_one(
            "SELECT count(*) FROM backup_ext.jobs WHERE kind = 'restore' AND backup_id = ANY($1)",
            &[&backup_ids],
        )
        .unwrap()
        .get(0)
}

/// verify_status, verify_message and whether verified_at is set.
fn verify_result(c: &Cluster, backup_id: i64) -> (Option<String>, Option<String>, bool) {
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

fn contents_ids(c: &Cluster, backup_id: i64, table: &str) -> Vec<i64> {
    let rows = c
        .client("postgres")
        .query(
            "SELECT toc_id, kind, schema, owner FROM backup_ext.backup_contents($1)
              WHERE kind IN ('TABLE', 'TABLE DATA') AND name = $2 ORDER BY kind",
            &[&backup_id, &table],
        )
        .unwrap_or_else(|e| panic!("backup_contents({backup_id}): {}", describe(&e)));
    let kinds: Vec<(String, Option<String>, Option<String>)> = rows
        .iter()
        .map(|r| (r.get(1), r.get(2), r.get(3)))
        .collect();
    let public = Some("public".to_string());
    let owner = Some("postgres".to_string());
    assert_eq!(
        kinds,
        [
            ("TABLE".to_string(), public.clone(), owner.clone()),
            ("TABLE DATA".to_string(), public, owner)
        ],
        "entries of {table:?}"
    );
    rows.iter().map(|r| r.get(0)).collect()
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn every_format_round_trips_schema_data_and_large_objects() {
    let c = cluster();
    let src = "rich_src";
    let source = create_rich_db(&c, src);

    let cases: [(&str, &str); 5] = [
        ("custom", ", format => 'custom'"),
        ("directory", ", format => 'directory', jobs => 2"),
        ("tar", ", format => 'tar'"),
        ("plain", ", format => 'plain'"),
        ("plain gz", ", format => 'plain', compress => '6'"),
    ];
    let mut backups = Vec::new();
    for (name, args) in cases {
        let b = backup_db(&c, src, args);
        backups.push((name, b));
    }
    assert!(backups[4]
        .1
        .path_buf()
        .to_string_lossy()
        .ends_with(".sql.gz"));

    let mut jobs = Vec::new();
    for (name, b) in &backups {
        let target = format!("rt {name} ü 'q'");
        let job = c.enqueue(&restore_sql(b.backup_id, &target, ""));
        jobs.push((name, job, target));
    }
    for (name, job, target) in &jobs {
        let status = c.wait_final(*job, SMALL_JOB);
        assert_eq!(status, "succeeded", "{name}: {:?}", job_outcome(&c, *job));
        let j = c.job(*job);
        assert_eq!(j.kind, "restore");
        assert_eq!(j.database.as_deref(), Some(target.as_str()));
        assert_eq!(j.error, None);
        let tool = if name.starts_with("plain") {
            "psql"
        } else {
            "pg_restore"
        };
        assert_eq!(
            job_outcome(&c, *job).2,
            Some(format!("{tool} finished")),
            "{name}"
        );
        let restored = snapshot(&c, target);
        assert_same(&source, &restored, &format!("{name} backup restored"));
    }
}

#[test]
fn parallel_restore_matches_single_job_restore() {
    let c = cluster();
    let src = "par_src";
    let source = create_rich_db(&c, src);
    for format in ["custom", "directory"] {
        let b = backup_db(&c, src, &format!(", format => '{format}'"));
        let one = format!("par_{format}_j1");
        let two = format!("par_{format}_j2");
        let j1 = c.enqueue(&restore_sql(b.backup_id, &one, ", jobs => 1"));
        let j2 = c.enqueue(&restore_sql(b.backup_id, &two, ", jobs => 2"));
        for job in [j1, j2] {
            let status = c.wait_final(job, SMALL_JOB);
            assert_eq!(status, "succeeded", "{format}: {:?}", job_outcome(&c, job));
        }
        let single = snapshot(&c, &one);
        let parallel = snapshot(&c, &two);
        assert_same(&single, &parallel, &format!("{format}: jobs 2 vs jobs 1"));
        assert_same(&source, &single, &format!("{format}: jobs 1 vs source"));
    }
}

#[test]
fn single_table_restores_by_name_and_by_toc_id() {
    let c = cluster();
    let src = "sel_src";
    let odd = "odd \"name\" ü";
    c.create_sample_db(src);
    c.client(src)
        .batch_execute(&format!(
            "CREATE TABLE {} (id int PRIMARY KEY, v text);
             INSERT INTO {0} SELECT i, 'v' || i FROM generate_series(1, 42) AS i;",
            quote_ident(odd)
        ))
        .unwrap();
    let b = backup_db(&c, src, "");
    let all_tables = [
        "public.odd \"name\" ü",
        "public.t1",
        "public.t2",
        "public.t3",
    ];
    assert_eq!(table_set(&c, src), all_tables);

    // Target names that look like options or need quoting in a conninfo.
    let by_name = "-sel by name";
    let by_toc = r"sel \ toc 'x' = y";

    // By name, through options.tables.
    let options = serde_json::json!({ "tables": ["t2"] }).to_string();
    restore_ok(
        &c,
        &restore_sql(
            b.backup_id,
            by_name,
            &format!(", options => {}", quote_literal(&options)),
        ),
    );
    assert_eq!(table_set(&c, by_name), ["public.t2"]);
    assert_eq!(
        c.table_fingerprint(by_name, "t2"),
        c.table_fingerprint(src, "t2")
    );

    let options = serde_json::json!({ "tables": [odd] }).to_string();
    restore_ok(
        &c,
        &restore_sql(
            b.backup_id,
            "sel_by_odd_name",
            &format!(", options => {}", quote_literal(&options)),
        ),
    );
    assert_eq!(table_set(&c, "sel_by_odd_name"), ["public.odd \"name\" ü"]);
    let quoted = quote_ident(odd);
    assert_eq!(
        c.table_fingerprint("sel_by_odd_name", &quoted),
        c.table_fingerprint(src, &quoted)
    );

    // By TOC ids picked from backup_contents().
    let ids = contents_ids(&c, b.backup_id, "t1");
    let options = serde_json::json!({ "toc_ids": ids }).to_string();
    restore_ok(
        &c,
        &restore_sql(
            b.backup_id,
            by_toc,
            &format!(", options => {}", quote_literal(&options)),
        ),
    );
    assert_eq!(table_set(&c, by_toc), ["public.t1"]);
    let restored = c.table_fingerprint(by_toc, "t1");
    assert_eq!(restored.0, 10_000);
    assert_eq!(restored, c.table_fingerprint(src, "t1"));

    // schema_only: every table, no rows.
    restore_ok(
        &c,
        &restore_sql(
            b.backup_id,
            "sel_schema_only",
            ", options => '{\"schema_only\": true}'",
        ),
    );
    assert_eq!(table_set(&c, "sel_schema_only"), all_tables);
    for t in ["t1", "t2", "t3", &quoted] {
        assert_eq!(c.table_fingerprint("sel_schema_only", t), (0, None), "{t}");
    }

    let ids = contents_ids(&c, b.backup_id, odd);
    let options = serde_json::json!({ "toc_ids": ids }).to_string();
    restore_ok(
        &c,
        &restore_sql(
            b.backup_id,
            "sel_by_toc_odd",
            &format!(", options => {}", quote_literal(&options)),
        ),
    );
    assert_eq!(table_set(&c, "sel_by_toc_odd"), ["public.odd \"name\" ü"]);
    assert_eq!(
        c.table_fingerprint("sel_by_toc_odd", &quoted),
        c.table_fingerprint(src, &quoted)
    );
}

#[test]
fn globals_restore_brings_back_a_dropped_role() {
    let c = Cluster::start("restore-globals");
    c.client("postgres")
        .batch_execute("CREATE ROLE restore_probe LOGIN CONNECTION LIMIT 7")
        .unwrap();
    let g = backup(&c, "SELECT backup_ext.backup_globals()");
    assert_eq!(g.kind, "globals");
    c.client("postgres")
        .batch_execute("DROP ROLE restore_probe")
        .unwrap();
    let role = |c: &Cluster| -> Option<(bool, i32)> {
        c.client("postgres")
            .query_opt(
                "SELECT rolcanlogin, rolconnlimit FROM pg_roles WHERE rolname = 'restore_probe'",
                &[],
            )
            .unwrap()
            .map(|r| (r.get(0), r.get(1)))
    };
    assert_eq!(role(&c), None);

    let job = c.enqueue(&format!(
        "SELECT backup_ext.restore_backup({})",
        g.backup_id
    ));
    let status = c.wait_final(job, SMALL_JOB);
    let (_, error, message) = job_outcome(&c, job);
    assert_eq!(
        status, "succeeded",
        "error: {error:?}, message: {message:?}"
    );
    assert_eq!(error, None);
    assert_eq!(role(&c), Some((true, 7)));
    assert_eq!(c.job(job).database, None);

    let message = message.expect("message lists roles that already existed");
    for existing in ["postgres", "backup_ext_operator", "backup_ext_restorer"] {
        assert!(
            message.contains(&format!("role \"{existing}\" already exists")),
            "{existing} not in {message:?}"
        );
    }
    assert!(message.contains("roles already existed"), "{message:?}");
    assert!(!message.contains("restore_probe"), "{message:?}");
}

#[test]
fn clean_restore_into_existing_database_and_failing_restores() {
    let c = cluster();
    let src = "clean_src";
    c.create_sample_db(src);
    let b = backup_db(&c, src, "");

    let dst = "clean_dst";
    c.client("postgres")
        .batch_execute(&format!("CREATE DATABASE {dst}"))
        .unwrap();
    c.client(dst)
        .batch_execute(
            "CREATE TABLE t1 (id int, junk text);
             INSERT INTO t1 VALUES (1, 'old'), (2, 'old'), (3, 'old');
             CREATE TABLE keep_me (x int);
             INSERT INTO keep_me VALUES (7);",
        )
        .unwrap();

    restore_ok(
        &c,
        &restore_sql(
            b.backup_id,
            dst,
            ", create_db => false, options => '{\"clean\": true}'",
        ),
    );
    let check_replaced = |c: &Cluster| {
        assert_eq!(
            table_set(c, dst),
            ["public.keep_me", "public.t1", "public.t2", "public.t3"]
        );
        for t in ["t1", "t2", "t3"] {
            assert_eq!(
                c.table_fingerprint(dst, t),
                c.table_fingerprint(src, t),
                "{t}"
            );
        }
        let columns: Vec<String> = c
            .client(dst)
            .query(
                "SELECT attname::text FROM pg_attribute
                  WHERE attrelid = 'public.t1'::regclass AND attnum > 0 AND NOT attisdropped
                  ORDER BY attnum",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(columns, ["id", "n", "txt", "payload", "doc"]);
        assert_eq!(c.psql(dst, "SELECT x FROM keep_me"), "7\n");
        assert_eq!(c.psql(dst, "SELECT count(*) FROM t1_even"), "5000\n");
    };
    check_replaced(&c);

    // Without clean the tables collide: pg_restore stops at the first error.
    let (job, status) = restore(&c, &restore_sql(b.backup_id, dst, ", create_db => false"));
    let (_, error, _) = job_outcome(&c, job);
    assert_eq!(status, "failed");
    let error = error.expect("failed restore has an error");
    assert!(
        error.starts_with("pg_restore exited with code 1: pg_restore: error: "),
        "{error}"
    );
    assert!(error.contains(r#"relation "t1" already exists"#), "{error}");
    assert!(
        database_exists(&c, dst),
        "an existing target is never dropped"
    );
    check_replaced(&c);

    // A restore into a new database that fails leaves no database behind:
    // the archive's table is owned by a role that no longer exists.
    let owned = "owned_src";
    let mut admin = c.client("postgres");
    admin
        .batch_execute("CREATE ROLE restore_gone_owner NOLOGIN")
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {owned}"))
        .unwrap();
    c.client(owned)
        .batch_execute(
            "CREATE TABLE gone (id int);
             INSERT INTO gone VALUES (1);
             ALTER TABLE gone OWNER TO restore_gone_owner;",
        )
        .unwrap();
    let custom = backup_db(&c, owned, "");
    let plain = backup_db(&c, owned, ", format => 'plain'");
    admin
        .batch_execute(&format!("DROP DATABASE {owned} WITH (FORCE)"))
        .unwrap();
    admin.batch_execute("DROP ROLE restore_gone_owner").unwrap();

    for (b, target, rest, tool) in [
        (
            &custom,
            "owned dst custom",
            "",
            "pg_restore exited with code 1: ",
        ),
        (
            &plain,
            "owned dst plain",
            ", options => '{\"single_transaction\": true}'",
            "psql exited with code 3: ",
        ),
    ] {
        let (job, status) = restore(&c, &restore_sql(b.backup_id, target, rest));
        let (_, error, _) = job_outcome(&c, job);
        assert_eq!(status, "failed", "{target}: {error:?}");
        let error = error.expect("failed restore has an error");
        assert!(error.starts_with(tool), "{target}: {error}");
        assert!(
            error.contains(r#"role "restore_gone_owner" does not exist"#),
            "{target}: {error}"
        );
        assert!(
            !database_exists(&c, target),
            "failed restore left database {target:?}"
        );
    }
}

#[test]
fn refusals_have_their_sqlstate_and_enqueue_nothing() {
    let c = cluster();
    let src = "refuse_src";
    c.create_sample_db(src);
    let custom = backup_db(&c, src, "").backup_id;
    let plain = backup_db(&c, src, ", format => 'plain'").backup_id;
    let tar = backup_db(&c, src, ", format => 'tar'").backup_id;
    let gone = backup_db(&c, src, "");
    fs::remove_file(gone.path_buf()).unwrap();
    let gone = gone.backup_id;
    let failed_job = c.enqueue(
        "SELECT backup_ext.backup_database('refuse_src',
                 options => '{\"tables\": [\"no_such_table\"]}')",
    );
    assert_eq!(c.wait_final(failed_job, SMALL_JOB), "failed");
    let failed = c.backup(failed_job).backup_id;
    let globals = backup(&c, "SELECT backup_ext.backup_globals()").backup_id;
    let unknown: i64 = c
        .client("postgres")
        .query_one(
            "SELECT coalesce(max(backup_id), 0) + 1000000 FROM backup_ext.artifacts",
            &[],
        )
        .unwrap()
        .get(0);

    let long_name = "x".repeat(64);
    let cases: Vec<(String, SqlState)> = vec![
        (
            restore_sql(unknown, "refuse_new", ""),
            SqlState::UNDEFINED_OBJECT,
        ),
        (
            restore_sql(failed, "refuse_new", ""),
            SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
        ),
        (
            restore_sql(gone, "refuse_new", ""),
            SqlState::UNDEFINED_FILE,
        ),
        (
            restore_sql(custom, "postgres", ", create_db => false"),
            SqlState::RESERVED_NAME,
        ),
        (
            restore_sql(custom, "postgres", ", create_db => true"),
            SqlState::RESERVED_NAME,
        ),
        (
            restore_sql(custom, "template1", ", create_db => false"),
            SqlState::RESERVED_NAME,
        ),
        (
            restore_sql(custom, "template0", ""),
            SqlState::RESERVED_NAME,
        ),
        (restore_sql(custom, src, ""), SqlState::DUPLICATE_DATABASE),
        (
            restore_sql(custom, "refuse_missing", ", create_db => false"),
            SqlState::INVALID_CATALOG_NAME,
        ),
        (restore_sql(custom, "", ""), SqlState::INVALID_NAME),
        (restore_sql(custom, &long_name, ""), SqlState::INVALID_NAME),
        (
            restore_sql(plain, "refuse_new", ", jobs => 2"),
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        (
            restore_sql(tar, "refuse_new", ", jobs => 2"),
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        (
            restore_sql(plain, "refuse_new", ", options => '{\"tables\": [\"t1\"]}'"),
            SqlState::FEATURE_NOT_SUPPORTED,
        ),
        (
            restore_sql(
                plain,
                "refuse_new",
                ", options => '{\"schema_only\": true}'",
            ),
            SqlState::FEATURE_NOT_SUPPORTED,
        ),
        (
            restore_sql(plain, "refuse_new", ", options => '{\"no_owner\": true}'"),
            SqlState::FEATURE_NOT_SUPPORTED,
        ),
        (
            restore_sql(
                plain,
                "refuse_new",
                ", options => '{\"toc_ids\": [1], \"single_transaction\": true}'",
            ),
            SqlState::FEATURE_NOT_SUPPORTED,
        ),
        (
            restore_sql(
                custom,
                "refuse_new",
                ", jobs => 2, options => '{\"single_transaction\": true}'",
            ),
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        (
            restore_sql(
                custom,
                "refuse_new",
                ", create_db => true, options => '{\"clean\": true}'",
            ),
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        (
            restore_sql(
                custom,
                "refuse_new",
                ", options => '{\"toc_ids\": [999999]}'",
            ),
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        (
            restore_sql(
                custom,
                "refuse_new",
                ", options => '{\"talbes\": [\"t1\"]}'",
            ),
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        (
            restore_sql(globals, "refuse_new", ""),
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        (
            format!("SELECT backup_ext.restore_backup({custom})"),
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        (
            format!("SELECT backup_ext.verify_backup({globals}, true)"),
            SqlState::FEATURE_NOT_SUPPORTED,
        ),
        (
            format!("SELECT * FROM backup_ext.backup_contents({plain})"),
            SqlState::FEATURE_NOT_SUPPORTED,
        ),
        (
            format!("SELECT * FROM backup_ext.backup_contents({unknown})"),
            SqlState::UNDEFINED_OBJECT,
        ),
        (
            format!("SELECT backup_ext.verify_backup({failed})"),
            SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
        ),
    ];
    let mut client = c.client("postgres");
    for (sql, state) in &cases {
        refused(&mut client, sql, state);
    }

    let ids = [custom, plain, tar, gone, failed, globals, unknown];
    assert_eq!(restore_jobs_for(&c, &ids), 0, "refused calls enqueued jobs");
    let verify_jobs: i64 = client
        .query_one(
            "SELECT count(*) FROM backup_ext.jobs WHERE kind = 'verify' AND backup_id = ANY($1)",
            &[&[failed, globals].as_slice()],
        )
        .unwrap()
        .get(0);
    assert_eq!(verify_jobs, 0);
    for db in ["refuse_new", "refuse_missing"] {
        assert!(!database_exists(&c, db), "{db} was created");
    }
}

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

#[test]
fn operators_inspect_and_verify_restorers_restore() {
    let c = cluster();
    let src = "perm_src";
    c.create_sample_db(src);
    let b = backup_db(&c, src, "");
    c.client("postgres")
        .batch_execute(
            "CREATE ROLE restore_op LOGIN IN ROLE backup_ext_operator;
             CREATE ROLE restore_rst LOGIN CREATEDB IN ROLE backup_ext_restorer;
             CREATE ROLE restore_nobody LOGIN;",
        )
        .unwrap();
    let restore_call = restore_sql(b.backup_id, "perm_dst", "");
    let contents_call = format!("SELECT * FROM backup_ext.backup_contents({})", b.backup_id);
    let verify_call = format!("SELECT backup_ext.verify_backup({})", b.backup_id);

    let mut nobody = c.client_as("postgres", "restore_nobody");
    for sql in [&restore_call, &contents_call, &verify_call] {
        refused(&mut nobody, sql, &SqlState::INSUFFICIENT_PRIVILEGE);
    }

    let mut op = c.client_as("postgres", "restore_op");
    refused(&mut op, &restore_call, &SqlState::INSUFFICIENT_PRIVILEGE);
    assert_eq!(restore_jobs_for(&c, &[b.backup_id]), 0);
    let tables: Vec<String> = op
        .query(
            &format!(
                "SELECT name FROM backup_ext.backup_contents({}) WHERE kind = 'TABLE DATA'
                  ORDER BY name",
                b.backup_id
            ),
            &[],
        )
        .unwrap_or_else(|e| panic!("operator backup_contents: {}", describe(&e)))
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(tables, ["t1", "t2", "t3"]);
    let job: i64 = op
        .query_one(&verify_call, &[])
        .unwrap_or_else(|e| panic!("operator verify_backup: {}", describe(&e)))
        .get(0);
    let status: String = op
        .query_one("SELECT backup_ext.wait_for($1, '1 minute')", &[&job])
        .unwrap()
        .get(0);
    assert_eq!(status, "succeeded", "{:?}", job_outcome(&c, job));
    assert_eq!(c.job(job).requested_by.as_deref(), Some("restore_op"));
    let (status, _, _) = verify_result(&c, b.backup_id);
    assert_eq!(status.as_deref(), Some("passed"));
    assert!(!database_exists(&c, "perm_dst"));

    // A restorer restores with her own rights, and only data she could read already: the
    // tables of this backup belong to postgres.
    let mut rst = c.client_as("postgres", "restore_rst");
    refused(&mut rst, &restore_call, &SqlState::INSUFFICIENT_PRIVILEGE);
    assert_eq!(restore_jobs_for(&c, &[b.backup_id]), 0);
    // Once the tables are hers, a backup of them is hers to restore. The database and its
    // schema still belong to postgres, which she cannot give objects to: no_owner.
    c.client(src)
        .batch_execute(
            "ALTER TABLE t1 OWNER TO restore_rst; ALTER TABLE t2 OWNER TO restore_rst;
             ALTER TABLE t3 OWNER TO restore_rst;",
        )
        .unwrap();
    let b = backup_db(&c, src, "");
    let job: i64 = rst
        .query_one(
            &restore_sql(
                b.backup_id,
                "perm_dst",
                ", options => '{\"no_owner\": true}'",
            ),
            &[],
        )
        .unwrap_or_else(|e| panic!("restorer restore_backup: {}", describe(&e)))
        .get(0);
    let status: String = rst
        .query_one("SELECT backup_ext.wait_for($1, '1 minute')", &[&job])
        .unwrap()
        .get(0);
    assert_eq!(status, "succeeded", "{:?}", job_outcome(&c, job));
    assert_eq!(c.job(job).requested_by.as_deref(), Some("restore_rst"));
    for t in ["t1", "t2", "t3"] {
        assert_eq!(
            c.table_fingerprint("perm_dst", t),
            c.table_fingerprint(src, t),
            "{t}"
        );
    }
    let owners: Vec<String> = c
        .client("perm_dst")
        .query(
            "SELECT DISTINCT pg_get_userbyid(relowner)::text FROM pg_class
              WHERE relnamespace = 'public'::regnamespace
             UNION SELECT pg_get_userbyid(datdba)::text FROM pg_database
              WHERE datname = current_database()",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(owners, ["restore_rst"]);
}

#[test]
fn a_second_restore_into_a_busy_target_is_refused() {
    let c = cluster();
    let src = "race_src";
    c.create_sample_db(src);
    let b = backup_db(&c, src, "");
    let target = "race_dst";
    let first = c.enqueue(&restore_sql(b.backup_id, target, ""));
    // While the first restore is queued or running, the target is taken: refused at call time
    // (or, if the first already finished, the database exists).
    let mut client = c.client("postgres");
    let err = client
        .query_one(restore_sql(b.backup_id, target, "").as_str(), &[])
        .expect_err("a second restore into the same target must be refused");
    let state = err.code().cloned();
    assert!(
        state == Some(SqlState::OBJECT_IN_USE) || state == Some(SqlState::DUPLICATE_DATABASE),
        "{err:?}"
    );
    assert_eq!(c.wait_final(first, SMALL_JOB), "succeeded");
    assert_eq!(restore_jobs_for(&c, &[b.backup_id]), 1);
    for t in ["t1", "t2", "t3"] {
        assert_eq!(
            c.table_fingerprint(target, t),
            c.table_fingerprint(src, t),
            "{t}"
        );
    }
}

/// Reading a table of contents at call time is bounded like any query: a pg_restore that
/// never returns (here the archive is a FIFO nobody writes) ends with statement_timeout, and
/// leaves no process behind.
#[test]
fn backup_contents_honours_statement_timeout() {
    let c = Cluster::start("toc-timeout");
    let src = "toc_hang_src";
    c.create_sample_db(src);
    let b = backup_db(&c, src, "");
    let archive = b.path_buf();
    std::fs::remove_file(&archive).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&archive)
        .status()
        .unwrap();
    assert!(made.success());
    let mut client = c.client("postgres");
    client
        .batch_execute("SET statement_timeout = '1s'")
        .unwrap();
    let started = std::time::Instant::now();
    let err = client
        .query(
            &format!("SELECT * FROM backup_ext.backup_contents({})", b.backup_id),
            &[],
        )
        .expect_err("a hung pg_restore --list must not hang the call");
    assert_eq!(
        err.code(),
        Some(&SqlState::QUERY_CANCELED),
        "{}",
        describe(&err)
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let left = std::process::Command::new("pgrep")
        .args(["-f", &format!("pg_restore.*{}", b.path_buf().display())])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&left.stdout).trim().is_empty(),
        "pg_restore left running"
    );
}
