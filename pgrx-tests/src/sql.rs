//! SQL helpers: quoting, server errors and SQLSTATEs, and sample databases.

use postgres::Client;

use crate::process::check_output;
use crate::Cluster;

/// Quotes an SQL identifier.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Quotes an SQL string literal.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Message, SQLSTATE, detail and hint of a server error, for panics.
pub fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!(
            "{} (SQLSTATE {}){}{}",
            db.message(),
            db.code().code(),
            db.detail()
                .map(|d| format!("; detail: {d}"))
                .unwrap_or_default(),
            db.hint()
                .map(|h| format!("; hint: {h}"))
                .unwrap_or_default()
        ),
        None => e.to_string(),
    }
}

/// SQLSTATE of an error from the server.
pub fn sqlstate(e: &postgres::Error) -> Option<&str> {
    e.code().map(|c| c.code())
}

/// Runs `sql` and asserts that it fails with SQLSTATE `code`; returns the
/// error message.
pub fn expect_sqlstate(client: &mut Client, sql: &str, code: &str) -> String {
    match client.batch_execute(sql) {
        Ok(()) => panic!("{sql}: succeeded, expected SQLSTATE {code}"),
        Err(e) => {
            assert_eq!(
                sqlstate(&e),
                Some(code),
                "{sql}: wrong error: {}",
                describe(&e)
            );
            e.as_db_error()
                .map(|d| d.message().to_string())
                .unwrap_or_default()
        }
    }
}

impl Cluster {
    /// Creates database `name` with three tables: t1 (10,000 rows with
    /// unicode text, bytea and jsonb), t2 (100 rows) and t3 (500 rows with
    /// a foreign key to t1).
    pub fn create_sample_db(&self, name: &str) {
        let mut c = self.client("postgres");
        c.batch_execute(&format!("CREATE DATABASE {}", quote_ident(name)))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {}", describe(&e)));
        let mut db = self.client(name);
        db.batch_execute(
            "CREATE TABLE t1 (
                 id integer PRIMARY KEY,
                 n bigint NOT NULL,
                 txt text NOT NULL,
                 payload bytea,
                 doc jsonb
             );
             INSERT INTO t1
             SELECT i, i * 7919 % 10007,
                    'grüße ' || i || ' 日本語 🐘 ''quoted'' \\ back',
                    decode(md5(i::text), 'hex'),
                    jsonb_build_object('i', i, 'tags', jsonb_build_array('a', 'ü', i % 3))
               FROM generate_series(1, 10000) AS i;
             CREATE TABLE t2 (id serial PRIMARY KEY, name text NOT NULL UNIQUE);
             INSERT INTO t2 (name) SELECT 'name-' || i FROM generate_series(1, 100) AS i;
             CREATE TABLE t3 (
                 id integer PRIMARY KEY,
                 t1_id integer NOT NULL REFERENCES t1 (id),
                 note text
             );
             INSERT INTO t3 SELECT i, (i * 13) % 10000 + 1, CASE WHEN i % 5 = 0 THEN NULL
                                ELSE 'note ' || i END
               FROM generate_series(1, 500) AS i;
             CREATE INDEX t1_n ON t1 (n);
             CREATE VIEW t1_even AS SELECT id, txt FROM t1 WHERE id % 2 = 0;
             ANALYZE;",
        )
        .unwrap_or_else(|e| panic!("filling {name}: {}", describe(&e)));
    }

    /// Creates database `name` filled by `pgbench -i` at `scale`
    /// (100,000 pgbench_accounts rows per unit), for jobs that must run
    /// for a while.
    pub fn create_pgbench_db(&self, name: &str, scale: u32) {
        self.client("postgres")
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(name)))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {}", describe(&e)));
        let scale = scale.to_string();
        let out = self.run_tool(
            "pgbench",
            &["-i", "-q", "-s", &scale, "-I", "dtGp", "-d", name],
        );
        check_output("pgbench -i", &out);
    }

    /// Row count and `md5(string_agg(t::text, ',' ORDER BY id))` of a table.
    pub fn table_fingerprint(&self, db: &str, table: &str) -> (i64, Option<String>) {
        let mut c = self.client(db);
        let sql =
            format!("SELECT count(*), md5(string_agg(t::text, ',' ORDER BY id)) FROM {table} t");
        let row = c
            .query_one(&sql, &[])
            .unwrap_or_else(|e| panic!("{sql} in {db}: {}", describe(&e)));
        (row.get(0), row.get(1))
    }
}
