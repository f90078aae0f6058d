//! The data the cases run on (a pgbench database, a database of many small tables, a tiny
//! database, a set of small databases and a table of generated text) and the description of
//! the machine and cluster.

use std::fs;
use std::process::Command;
use std::thread;
use std::time::UNIX_EPOCH;

use postgres::Client;

use crate::cluster::{connect, ident, run, Bench};
use crate::{Context, Res};

pub(crate) const BIG_DB: &str = "bench_big";
pub(crate) const TABLES_DB: &str = "bench_tables";
pub(crate) const TINY_DB: &str = "bench_tiny";
pub(crate) const TEXT_DB: &str = "bench_text";
const SMALL_DB_PREFIX: &str = "bench_small_";
/// The table of `TEXT_DB` and the functions that make its rows (session-local, so that the
/// dumps hold the table alone).
const TEXT_SCHEMA_SQL: &str = include_str!("../sql/text_schema.sql");
/// Fills the table: `$1` rows.
const TEXT_ROWS_SQL: &str = include_str!("../sql/text_rows.sql");

pub(crate) struct Machine {
    pub(crate) date: String,
    pub(crate) nproc: usize,
    pub(crate) cpu: String,
    pub(crate) mem_gib: f64,
    pub(crate) load_start: String,
    pub(crate) pg_version: String,
    pub(crate) pg_dump_version: String,
    /// The shared library the worker runs, with its size and modification time: a debug
    /// build streams several times slower.
    pub(crate) library: String,
    pub(crate) shared_buffers: String,
    pub(crate) max_parallel: String,
    pub(crate) big_size: String,
    /// None when only the compression table runs.
    pub(crate) tables_size: Option<String>,
}

impl Bench {
    pub(crate) fn small_dbs(&self) -> Vec<String> {
        (1..=self.a.small_dbs)
            .map(|i| format!("{SMALL_DB_PREFIX}{i:03}"))
            .collect()
    }

    /// Every database the chosen parts need except `TEXT_DB`, which the compression part makes
    /// (its time counts in that part).
    /// What `--only catalog` needs: the extension and its worker, no databases to dump.
    pub(crate) fn setup_catalog_only(&mut self) -> Res<()> {
        self.exec("CREATE EXTENSION IF NOT EXISTS backup_ext")?;
        self.worker_pid()?;
        Ok(())
    }

    pub(crate) fn setup(&mut self) -> Res<()> {
        self.exec("CREATE EXTENSION IF NOT EXISTS backup_ext")?;
        self.worker_pid()?;
        let old: Vec<String> = self
            .db
            .query(
                "SELECT datname::text FROM pg_database WHERE datname LIKE 'bench\\_%'",
                &[],
            )
            .context(|| "cannot list databases".to_string())?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for name in old {
            self.drop_database(&name)?;
        }
        fs::create_dir_all(&self.scratch)
            .context(|| format!("cannot create {}", self.scratch.display()))?;
        let mut chown = Command::new("chown");
        chown.arg("postgres:postgres").arg(&self.scratch);
        run(chown, "chown of the scratch directory")?;

        self.log(&format!(
            "creating {BIG_DB} with pgbench -i -s {}",
            self.a.scale
        ));
        self.exec(&format!("CREATE DATABASE {BIG_DB}"))?;
        let mut pgbench = self.tool("pgbench");
        pgbench
            .args(["-i", "-q", "-s", &self.a.scale.to_string()])
            .arg(BIG_DB);
        run(pgbench, "pgbench -i")?;
        if self.a.only.comparison() {
            self.create_comparison_dbs()?;
        }
        self.exec("CHECKPOINT")
    }

    fn create_comparison_dbs(&mut self) -> Res<()> {
        self.log(&format!(
            "creating {TABLES_DB} with {} small tables",
            self.a.small_tables
        ));
        self.exec(&format!("CREATE DATABASE {TABLES_DB}"))?;
        let mut tables = connect(&self.socket, self.a.port, TABLES_DB)?;
        let mut first = 1;
        while first <= self.a.small_tables {
            let last = (first + 99).min(self.a.small_tables);
            let sql = format!(
                "DO $$ BEGIN FOR i IN {first}..{last} LOOP
                   EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, name text NOT NULL,
                                                    created timestamptz NOT NULL DEFAULT now())', i);
                   EXECUTE format('INSERT INTO t%s (id, name)
                                   SELECT g, md5(g::text) FROM generate_series(1, 100) g', i);
                 END LOOP; END $$"
            );
            tables
                .batch_execute(&sql)
                .context(|| format!("cannot create tables in {TABLES_DB}"))?;
            first = last + 1;
        }

        self.exec(&format!("CREATE DATABASE {TINY_DB}"))?;
        connect(&self.socket, self.a.port, TINY_DB)?
            .batch_execute(
                "CREATE TABLE t (id int PRIMARY KEY, v text);
                 INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 10) g;",
            )
            .context(|| format!("cannot fill {TINY_DB}"))?;

        self.log(&format!("creating {} small databases", self.a.small_dbs));
        for name in self.small_dbs() {
            self.exec(&format!("CREATE DATABASE {}", ident(&name)))?;
            connect(&self.socket, self.a.port, &name)?
                .batch_execute(
                    "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2));
                     INSERT INTO items SELECT g, 'item ' || g, (g % 1000) / 10.0
                       FROM generate_series(1, 1000) g;
                     CREATE TABLE events (id bigint PRIMARY KEY, item_id int REFERENCES items,
                                          at timestamptz NOT NULL, payload jsonb);
                     INSERT INTO events SELECT g, 1 + g % 1000, now() - g * interval '1 minute',
                                               jsonb_build_object('n', g)
                       FROM generate_series(1, 2000) g;
                     CREATE INDEX ON events (item_id);",
                )
                .context(|| format!("cannot fill {name}"))?;
        }
        Ok(())
    }

    /// `TEXT_DB`: one table of `--text-rows` rows of generated text, the same rows every time.
    pub(crate) fn create_text_db(&mut self) -> Res<()> {
        self.log(&format!(
            "creating {TEXT_DB} with {} rows of generated text",
            self.a.text_rows
        ));
        self.drop_database(TEXT_DB)?;
        self.exec(&format!("CREATE DATABASE {TEXT_DB}"))?;
        let mut text = connect(&self.socket, self.a.port, TEXT_DB)?;
        text.batch_execute(TEXT_SCHEMA_SQL)
            .context(|| format!("cannot create the table of {TEXT_DB}"))?;
        text.execute(TEXT_ROWS_SQL, &[&(self.a.text_rows as i64)])
            .context(|| format!("cannot fill {TEXT_DB}"))?;
        text.batch_execute(
            "ALTER TABLE messages ADD PRIMARY KEY (id);
             CREATE INDEX messages_created_at ON messages (created_at);",
        )
        .context(|| format!("cannot index {TEXT_DB}"))?;
        text.batch_execute("VACUUM ANALYZE messages")
            .context(|| format!("cannot vacuum {TEXT_DB}"))?;
        self.exec("CHECKPOINT")
    }

    pub(crate) fn machine(&mut self) -> Res<Machine> {
        let one = |db: &mut Client, sql: &str| -> Res<String> {
            Ok(db
                .query_one(sql, &[])
                .context(|| format!("SQL failed: {sql}"))?
                .get(0))
        };
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_else(|| "unknown CPU".into());
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kb: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let version = Command::new(self.a.pgbin.join("pg_dump"))
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|e| format!("unknown ({e})"));
        let library = self.worker_library()?;
        Ok(Machine {
            library,
            date: one(&mut self.db, "SELECT to_char(now(), 'YYYY-MM-DD')")?,
            nproc: thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            mem_gib: mem_kb / 1024.0 / 1024.0,
            load_start: loadavg(),
            pg_version: one(&mut self.db, "SELECT version()")?,
            pg_dump_version: version,
            shared_buffers: one(&mut self.db, "SHOW shared_buffers")?,
            max_parallel: one(&mut self.db, "SHOW backup_ext.max_parallel")?,
            big_size: self.database_size(BIG_DB)?.unwrap_or_default(),
            tables_size: self.database_size(TABLES_DB)?,
        })
    }

    fn worker_library(&mut self) -> Res<String> {
        let pid = self.worker_pid()?;
        let maps = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
        let Some(line) = maps.lines().find(|l| l.contains("/backup_ext.so")) else {
            return Ok("unknown".into());
        };
        let path = line.split_whitespace().nth(5).unwrap_or_default();
        if line.ends_with("(deleted)") {
            // Installs unlink the old file: the worker still runs the one it loaded.
            return Ok(format!("{path}, replaced on disk since the server started"));
        }
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) => return Ok(format!("{path} ({e})")),
        };
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0.0, |d| d.as_secs_f64());
        let when: String = self
            .db
            .query_one(
                "SELECT to_char(to_timestamp($1) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI \"UTC\"')",
                &[&modified],
            )
            .context(|| "cannot format a time".to_string())?
            .get(0);
        Ok(format!(
            "{path}, {:.1} MB, modified {when}",
            meta.len() as f64 / 1e6
        ))
    }

    /// `pg_size_pretty` of the database, None if it does not exist.
    pub(crate) fn database_size(&mut self, name: &str) -> Res<Option<String>> {
        Ok(self
            .db
            .query_opt(
                "SELECT pg_size_pretty(pg_database_size(oid)) FROM pg_database WHERE datname = $1",
                &[&name],
            )
            .context(|| format!("cannot read the size of {name}"))?
            .map(|r| r.get(0)))
    }
}

pub(crate) fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
