//! Benchmark of backup_ext against running pg_dump / pg_dumpall / pg_restore directly.
//!
//! Runs against a cluster that already has backup_ext preloaded (scripts/bench.sh starts one),
//! creates its own databases, times every case baseline / extension interleaved, measures call
//! and pickup latency, catalog reads, the worker's memory and the streaming throughput, then
//! prints a markdown report and writes it with a PNG chart of the ratios.

mod chart;
mod stats;

use std::error::Error;
use std::fmt::{Display, Write as _};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use postgres::types::ToSql;
use postgres::{Client, NoTls};

use crate::stats::{max, median, min, percentile};

type Res<T> = Result<T, Box<dyn Error>>;

const DEFAULT_SCALE: u32 = 50;
const RATIO_TARGET: f64 = 1.05;
const ENQUEUE_P99_TARGET_MS: f64 = 5.0;
const PICKUP_P99_TARGET_MS: f64 = 50.0;
const CATALOG_TARGET_MS: f64 = 20.0;
const RSS_TARGET_MB: f64 = 50.0;
/// Growth of the worker's resident set during one dump above which it is not "flat".
const RSS_FLAT_MB: f64 = 4.0;

const BIG_DB: &str = "bench_big";
const TABLES_DB: &str = "bench_tables";
const TINY_DB: &str = "bench_tiny";
const SMALL_DB_PREFIX: &str = "bench_small_";
const RESTORE_BASE_DB: &str = "bench_restore_base";
const RESTORE_EXT_DB: &str = "bench_restore_ext";
const FABRICATED_LABEL: &str = "bench-fabricated";
const FABRICATED_DBS: i32 = 20;
const WAIT_TIMEOUT: &str = "6 hours";

const ENQUEUE_SQL: &str = "SELECT backup_ext.backup_database(dbname => $1, format => $2, \
     compress => $3, jobs => $4, label => 'bench')";

trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Res<T>;
}

impl<T, E: Display> Context<T> for Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Res<T> {
        self.map_err(|e| format!("{}: {e}", what()).into())
    }
}

const USAGE: &str = "\
backup_ext_bench: backup_ext against pg_dump / pg_dumpall / pg_restore run directly

usage: backup_ext_bench [options]

  --dir DIR            cluster directory made by cluster_start (socket in DIR/socket,
                       scratch files in DIR/scratch)          [/tmp/backup_ext-bench]
  --port PORT          cluster port                           [54339]
  --scale N            pgbench scale of the big database      [$BENCH_SCALE or 50]
  --runs N             runs per side of every case            [3]
  --small-tables N     tables in the many-tables database     [500]
  --small-dbs N        databases in the cluster case          [20]
  --enqueue-calls N    backup_database() calls timed          [1000]
  --pickup-jobs N      jobs for the pickup latency            [50]
  --catalog-rows N     catalog rows for the read timings      [100000]
  --catalog-runs N     runs of each catalog query             [20]
  --pgbin DIR          PostgreSQL binaries                    [/usr/lib/postgresql/15/bin]
  --out DIR            where <date>.md and <date>.png go      [bench/results]
  --font FILE          TrueType font for the chart            [a DejaVu/Liberation font]
";

struct Args {
    dir: PathBuf,
    port: u16,
    scale: u32,
    runs: usize,
    small_tables: usize,
    small_dbs: usize,
    enqueue_calls: usize,
    pickup_jobs: usize,
    catalog_rows: usize,
    catalog_runs: usize,
    pgbin: PathBuf,
    out: PathBuf,
    font: Option<PathBuf>,
}

fn number<T: FromStr>(flag: &str, value: &str) -> Res<T>
where
    T::Err: Display,
{
    value
        .parse()
        .context(|| format!("{flag} expects a number, got {value:?}"))
}

fn parse_args() -> Res<Args> {
    let scale = match std::env::var("BENCH_SCALE") {
        Ok(v) if !v.is_empty() => number("BENCH_SCALE", &v)?,
        _ => DEFAULT_SCALE,
    };
    let mut a = Args {
        dir: PathBuf::from("/tmp/backup_ext-bench"),
        port: 54339,
        scale,
        runs: 3,
        small_tables: 500,
        small_dbs: 20,
        enqueue_calls: 1000,
        pickup_jobs: 50,
        catalog_rows: 100_000,
        catalog_runs: 20,
        pgbin: PathBuf::from("/usr/lib/postgresql/15/bin"),
        out: Path::new(env!("CARGO_MANIFEST_DIR")).join("results"),
        font: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        if arg == "--help" || arg == "-h" {
            print!("{USAGE}");
            std::process::exit(0);
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || -> Res<String> {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{flag} needs a value; see --help").into())
        };
        match flag.as_str() {
            "--dir" => a.dir = PathBuf::from(value()?),
            "--port" => a.port = number(&flag, &value()?)?,
            "--scale" => a.scale = number(&flag, &value()?)?,
            "--runs" => a.runs = number(&flag, &value()?)?,
            "--small-tables" => a.small_tables = number(&flag, &value()?)?,
            "--small-dbs" => a.small_dbs = number(&flag, &value()?)?,
            "--enqueue-calls" => a.enqueue_calls = number(&flag, &value()?)?,
            "--pickup-jobs" => a.pickup_jobs = number(&flag, &value()?)?,
            "--catalog-rows" => a.catalog_rows = number(&flag, &value()?)?,
            "--catalog-runs" => a.catalog_runs = number(&flag, &value()?)?,
            "--pgbin" => a.pgbin = PathBuf::from(value()?),
            "--out" => a.out = PathBuf::from(value()?),
            "--font" => a.font = Some(PathBuf::from(value()?)),
            _ => return Err(format!("unknown argument {arg:?}; see --help").into()),
        }
    }
    let positive = [
        ("--scale", a.scale as usize),
        ("--runs", a.runs),
        ("--small-tables", a.small_tables),
        ("--small-dbs", a.small_dbs),
        ("--enqueue-calls", a.enqueue_calls),
        ("--pickup-jobs", a.pickup_jobs),
        ("--catalog-rows", a.catalog_rows),
        ("--catalog-runs", a.catalog_runs),
    ];
    if let Some((flag, _)) = positive.iter().find(|(_, v)| *v == 0) {
        return Err(format!("{flag} must be at least 1").into());
    }
    if a.catalog_rows > i32::MAX as usize {
        return Err("--catalog-rows is too large".into());
    }
    Ok(a)
}

/// One case of the comparison table; every vector holds seconds, one entry per run.
struct CaseResult {
    name: String,
    short: String,
    baseline_desc: String,
    ext_desc: String,
    baseline: Vec<f64>,
    /// Baseline followed by sha256sum of its output; empty where that does not apply.
    baseline_hash: Vec<f64>,
    ext_client: Vec<f64>,
    ext_catalog: Vec<f64>,
}

impl CaseResult {
    fn new(name: &str, short: &str, baseline_desc: &str, ext_desc: &str) -> Self {
        CaseResult {
            name: name.into(),
            short: short.into(),
            baseline_desc: baseline_desc.into(),
            ext_desc: ext_desc.into(),
            baseline: Vec::new(),
            baseline_hash: Vec::new(),
            ext_client: Vec::new(),
            ext_catalog: Vec::new(),
        }
    }

    fn ratio(&self) -> f64 {
        median(&self.ext_client) / median(&self.baseline)
    }

    fn ratio_hash(&self) -> Option<f64> {
        (!self.baseline_hash.is_empty())
            .then(|| median(&self.ext_client) / median(&self.baseline_hash))
    }
}

struct ExtRun {
    client: f64,
    catalog: f64,
    job_ids: Vec<i64>,
}

#[derive(Clone, Copy)]
struct RssSample {
    vm_rss_kb: u64,
    vm_hwm_kb: u64,
    rss_anon_kb: u64,
}

/// Polls /proc/<pid>/status every 100 ms on a thread until stopped.
struct RssSampler {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<Vec<RssSample>>,
}

fn read_rss(pid: i32) -> Option<RssSample> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some(RssSample {
        vm_rss_kb: field("VmRSS:"),
        vm_hwm_kb: field("VmHWM:"),
        rss_anon_kb: field("RssAnon:"),
    })
}

impl RssSampler {
    fn start(pid: i32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = thread::spawn(move || {
            let mut samples = Vec::new();
            loop {
                if let Some(s) = read_rss(pid) {
                    samples.push(s);
                }
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                thread::sleep(Duration::from_millis(100));
            }
            samples
        });
        RssSampler { stop, handle }
    }

    fn finish(self) -> Vec<RssSample> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

struct Latency {
    enqueue_ms: Vec<f64>,
    pickup_requested_ms: Vec<f64>,
    pickup_commit_ms: Vec<f64>,
}

struct CatalogTiming {
    query: String,
    ms: Vec<f64>,
}

struct Streaming {
    bytes: i64,
    ext_stream: Vec<f64>,
    ext_client: Vec<f64>,
    dump_file: Vec<f64>,
    dump_null: Vec<f64>,
    cat: Vec<f64>,
    sha: Vec<f64>,
    rss: Vec<RssSample>,
    rss_per_run: Vec<(u64, u64)>,
}

struct Machine {
    date: String,
    nproc: usize,
    cpu: String,
    mem_gib: f64,
    load_start: String,
    pg_version: String,
    pg_dump_version: String,
    shared_buffers: String,
    max_parallel: String,
    big_size: String,
    tables_size: String,
}

struct Bench {
    a: Args,
    socket: String,
    scratch: PathBuf,
    db: Client,
    started: Instant,
}

fn connect(socket: &str, port: u16, dbname: &str) -> Res<Client> {
    postgres::Config::new()
        .host_path(socket)
        .port(port)
        .user("postgres")
        .dbname(dbname)
        .application_name("backup_ext_bench")
        .connect(NoTls)
        .context(|| format!("cannot connect to database {dbname} at {socket}, port {port}"))
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn secs(f: impl FnOnce() -> Res<()>) -> Res<f64> {
    let t0 = Instant::now();
    f()?;
    Ok(t0.elapsed().as_secs_f64())
}

fn run(mut cmd: Command, what: &str) -> Res<()> {
    // stdout is captured unless the caller redirected it.
    let out = cmd
        .stderr(Stdio::piped())
        .output()
        .context(|| format!("cannot start {what}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!("{what} failed ({}): {}", out.status, tail.join("\n")).into());
    }
    Ok(())
}

fn remove_path(path: &Path) -> Res<()> {
    let result = if path.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("cannot remove {}: {e}", path.display()).into())
        }
        _ => Ok(()),
    }
}

fn files_under(path: &Path) -> Res<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = fs::read_dir(path)
        .context(|| format!("cannot list {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

fn devnull() -> Res<File> {
    File::create("/dev/null").context(|| "cannot open /dev/null".to_string())
}

fn sha256sum(paths: &[PathBuf]) -> Res<f64> {
    let mut cmd = Command::new("sha256sum");
    cmd.args(paths).stdout(devnull()?).stdin(Stdio::null());
    secs(|| run(cmd, "sha256sum"))
}

fn log(started: Instant, msg: &str) {
    eprintln!("[{:7.1}s] {msg}", started.elapsed().as_secs_f64());
}

impl Bench {
    fn log(&self, msg: &str) {
        log(self.started, msg);
    }

    fn tool(&self, program: &str) -> Command {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"])
            .arg(self.a.pgbin.join(program))
            .args(["-h", &self.socket, "-p", &self.a.port.to_string()])
            .args(["-U", "postgres"])
            .stdin(Stdio::null());
        c
    }

    /// A directory under the scratch area that the postgres user can write into.
    fn scratch_dir(&self, name: &str) -> Res<PathBuf> {
        let dir = self.scratch.join(name);
        remove_path(&dir)?;
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--", "mkdir", "-p"]).arg(&dir);
        run(cmd, &format!("mkdir {}", dir.display()))?;
        Ok(dir)
    }

    fn exec(&mut self, sql: &str) -> Res<()> {
        self.db
            .batch_execute(sql)
            .context(|| format!("SQL failed: {sql}"))
    }

    fn drop_database(&mut self, name: &str) -> Res<()> {
        self.exec(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            ident(name)
        ))
    }

    fn wait(&mut self, job_id: i64) -> Res<()> {
        let status: String = self
            .db
            .query_one(
                "SELECT backup_ext.wait_for($1, $2::text::interval)",
                &[&job_id, &WAIT_TIMEOUT],
            )
            .context(|| format!("wait_for({job_id}) failed"))?
            .get(0);
        if status != "succeeded" {
            let error: Option<String> = self
                .db
                .query_one(
                    "SELECT error FROM backup_ext.jobs WHERE job_id = $1",
                    &[&job_id],
                )
                .context(|| format!("cannot read job {job_id}"))?
                .get(0);
            return Err(format!(
                "backup_ext job {job_id} ended {status}: {}",
                error.unwrap_or_default()
            )
            .into());
        }
        Ok(())
    }

    /// Enqueues with `sql` in autocommit (so the job is committed when the call returns), then
    /// waits for it.
    fn ext_job(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Res<ExtRun> {
        let t0 = Instant::now();
        let id: i64 = self
            .db
            .query_one(sql, params)
            .context(|| format!("SQL failed: {sql}"))?
            .get(0);
        self.wait(id)?;
        let client = t0.elapsed().as_secs_f64();
        let catalog: f64 = self
            .db
            .query_one(
                "SELECT extract(epoch FROM finished_at - requested_at)::float8 \
                   FROM backup_ext.jobs WHERE job_id = $1",
                &[&id],
            )
            .context(|| format!("cannot read job {id}"))?
            .get(0);
        Ok(ExtRun {
            client,
            catalog,
            job_ids: vec![id],
        })
    }

    fn ext_paths(&mut self, job_ids: &[i64]) -> Res<Vec<PathBuf>> {
        let ids = job_ids.to_vec();
        let rows = self
            .db
            .query(
                "SELECT path FROM backup_ext.artifacts WHERE job_id = ANY($1) AND path IS NOT NULL",
                &[&ids],
            )
            .context(|| "cannot read backup paths".to_string())?;
        Ok(rows
            .iter()
            .map(|r| PathBuf::from(r.get::<_, String>(0)))
            .collect())
    }

    fn remove_ext_outputs(&mut self, job_ids: &[i64]) -> Res<()> {
        for path in self.ext_paths(job_ids)? {
            remove_path(&path)?;
        }
        Ok(())
    }

    fn small_dbs(&self) -> Vec<String> {
        (1..=self.a.small_dbs)
            .map(|i| format!("{SMALL_DB_PREFIX}{i:03}"))
            .collect()
    }

    // ---------------------------------------------------------------- setup

    fn setup(&mut self) -> Res<()> {
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
        self.exec("CHECKPOINT")?;
        Ok(())
    }

    fn worker_pid(&mut self) -> Res<i32> {
        let row = self
            .db
            .query_opt(
                "SELECT pid FROM pg_stat_activity WHERE backend_type = 'backup_ext worker' LIMIT 1",
                &[],
            )
            .context(|| "cannot read pg_stat_activity".to_string())?;
        row.map(|r| r.get(0)).ok_or_else(|| {
            "no backup_ext worker in pg_stat_activity: is backup_ext in shared_preload_libraries?"
                .into()
        })
    }

    fn machine(&mut self) -> Res<Machine> {
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
        Ok(Machine {
            date: one(&mut self.db, "SELECT to_char(now(), 'YYYY-MM-DD')")?,
            nproc: thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            mem_gib: mem_kb / 1024.0 / 1024.0,
            load_start: loadavg(),
            pg_version: one(&mut self.db, "SELECT version()")?,
            pg_dump_version: version,
            shared_buffers: one(&mut self.db, "SHOW shared_buffers")?,
            max_parallel: one(&mut self.db, "SHOW backup_ext.max_parallel")?,
            big_size: one(
                &mut self.db,
                &format!("SELECT pg_size_pretty(pg_database_size('{BIG_DB}'))"),
            )?,
            tables_size: one(
                &mut self.db,
                &format!("SELECT pg_size_pretty(pg_database_size('{TABLES_DB}'))"),
            )?,
        })
    }

    // ---------------------------------------------------------------- latency

    fn latency(&mut self) -> Res<Latency> {
        let enqueue = self
            .db
            .prepare("SELECT backup_ext.backup_database($1)")
            .context(|| "cannot prepare backup_database()".to_string())?;
        let warmup = 20;
        self.log(&format!(
            "enqueue latency: {} calls rolled back",
            self.a.enqueue_calls
        ));
        let mut enqueue_ms = Vec::with_capacity(self.a.enqueue_calls);
        for i in 0..warmup + self.a.enqueue_calls {
            let mut tx = self
                .db
                .transaction()
                .context(|| "BEGIN failed".to_string())?;
            let t0 = Instant::now();
            tx.query_one(&enqueue, &[&TINY_DB])
                .context(|| "backup_database() failed".to_string())?;
            let ms = t0.elapsed().as_secs_f64() * 1000.0;
            tx.rollback().context(|| "ROLLBACK failed".to_string())?;
            if i >= warmup {
                enqueue_ms.push(ms);
            }
        }

        self.log(&format!(
            "pickup latency: {} jobs on {TINY_DB}",
            self.a.pickup_jobs
        ));
        let clock = self
            .db
            .prepare("SELECT extract(epoch FROM clock_timestamp())::float8")
            .context(|| "cannot prepare clock query".to_string())?;
        let mut pickup_requested_ms = Vec::new();
        let mut pickup_commit_ms = Vec::new();
        for _ in 0..self.a.pickup_jobs {
            // Let the worker finish its bookkeeping for the previous job and go idle.
            thread::sleep(Duration::from_millis(50));
            let id: i64 = self
                .db
                .query_one(&enqueue, &[&TINY_DB])
                .context(|| "backup_database() failed".to_string())?
                .get(0);
            let after_commit: f64 = self
                .db
                .query_one(&clock, &[])
                .context(|| "clock_timestamp() failed".to_string())?
                .get(0);
            self.wait(id)?;
            let row = self
                .db
                .query_one(
                    "SELECT extract(epoch FROM started_at - requested_at)::float8 * 1000,
                            extract(epoch FROM started_at)::float8
                       FROM backup_ext.jobs WHERE job_id = $1",
                    &[&id],
                )
                .context(|| format!("cannot read job {id}"))?;
            pickup_requested_ms.push(row.get(0));
            let started: f64 = row.get(1);
            pickup_commit_ms.push((started - after_commit) * 1000.0);
            self.remove_ext_outputs(&[id])?;
        }
        Ok(Latency {
            enqueue_ms,
            pickup_requested_ms,
            pickup_commit_ms,
        })
    }

    // ---------------------------------------------------------------- dumps

    #[allow(clippy::too_many_arguments)]
    fn dump_case(
        &mut self,
        name: &str,
        short: &str,
        db: &str,
        pg_dump_args: &[&str],
        output: &str,
        format: &str,
        compress: Option<&str>,
        jobs: Option<i32>,
    ) -> Res<CaseResult> {
        let baseline_desc = format!("pg_dump {} -f {output} {db}", pg_dump_args.join(" "));
        let mut ext_desc = format!("backup_database('{db}', format => '{format}'");
        if let Some(c) = compress {
            let _ = write!(ext_desc, ", compress => '{c}'");
        }
        if let Some(j) = jobs {
            let _ = write!(ext_desc, ", jobs => {j}");
        }
        ext_desc.push(')');
        let mut r = CaseResult::new(name, short, &baseline_desc, &ext_desc);
        let out = self.scratch.join(output);
        for i in 1..=self.a.runs {
            remove_path(&out)?;
            let mut cmd = self.tool("pg_dump");
            cmd.args(pg_dump_args).arg("-f").arg(&out).arg(db);
            let t = secs(|| run(cmd, "pg_dump"))?;
            let h = sha256sum(&files_under(&out)?)?;
            remove_path(&out)?;
            r.baseline.push(t);
            r.baseline_hash.push(t + h);

            let e = self.ext_job(ENQUEUE_SQL, &[&db, &format, &compress, &jobs])?;
            self.remove_ext_outputs(&e.job_ids)?;
            r.ext_client.push(e.client);
            r.ext_catalog.push(e.catalog);
            self.log(&format!(
                "{name}: run {i}: baseline {t:.3}s (+sha256sum {h:.3}s), extension {:.3}s (catalog {:.3}s)",
                e.client, e.catalog
            ));
        }
        Ok(r)
    }

    fn globals_case(&mut self) -> Res<CaseResult> {
        let mut r = CaseResult::new(
            "globals",
            "globals",
            "pg_dumpall -g -f globals.sql",
            "backup_globals()",
        );
        let out = self.scratch.join("globals.sql");
        for i in 1..=self.a.runs {
            remove_path(&out)?;
            let mut cmd = self.tool("pg_dumpall");
            cmd.arg("-g").arg("-f").arg(&out);
            let t = secs(|| run(cmd, "pg_dumpall -g"))?;
            let h = sha256sum(&files_under(&out)?)?;
            remove_path(&out)?;
            r.baseline.push(t);
            r.baseline_hash.push(t + h);

            let e = self.ext_job("SELECT backup_ext.backup_globals(label => 'bench')", &[])?;
            self.remove_ext_outputs(&e.job_ids)?;
            r.ext_client.push(e.client);
            r.ext_catalog.push(e.catalog);
            self.log(&format!(
                "globals: run {i}: baseline {t:.3}s, extension {:.3}s",
                e.client
            ));
        }
        Ok(r)
    }

    fn restore_cases(&mut self) -> Res<Vec<CaseResult>> {
        // Both sides restore the same archive: one custom-format backup made by the extension.
        let source = self.ext_job(
            ENQUEUE_SQL,
            &[&BIG_DB, &"custom", &None::<&str>, &None::<i32>],
        )?;
        let backup_id = source.job_ids[0];
        let archive = self
            .ext_paths(&source.job_ids)?
            .pop()
            .ok_or("the source backup for the restore cases has no path")?;
        let mut results = Vec::new();
        for jobs in [1i32, 2] {
            let mut r = CaseResult::new(
                &format!("restore custom, jobs {jobs}"),
                &format!("restore -j{jobs}"),
                &format!("createdb + pg_restore -j {jobs} -d <new>"),
                &format!("restore_backup(id, '<new>', create_db => true, jobs => {jobs})"),
            );
            for i in 1..=self.a.runs {
                self.drop_database(RESTORE_BASE_DB)?;
                let mut createdb = self.tool("createdb");
                createdb.arg(RESTORE_BASE_DB);
                let mut restore = self.tool("pg_restore");
                restore
                    .args(["-j", &jobs.to_string(), "-d", RESTORE_BASE_DB])
                    .arg(&archive);
                let t = secs(|| {
                    run(createdb, "createdb")?;
                    run(restore, "pg_restore")
                })?;
                self.drop_database(RESTORE_BASE_DB)?;
                r.baseline.push(t);

                self.drop_database(RESTORE_EXT_DB)?;
                let e = self.ext_job(
                    "SELECT backup_ext.restore_backup($1, $2, create_db => true, jobs => $3)",
                    &[&backup_id, &RESTORE_EXT_DB, &jobs],
                )?;
                self.drop_database(RESTORE_EXT_DB)?;
                r.ext_client.push(e.client);
                r.ext_catalog.push(e.catalog);
                self.log(&format!(
                    "restore -j{jobs}: run {i}: baseline {t:.3}s, extension {:.3}s (catalog {:.3}s)",
                    e.client, e.catalog
                ));
            }
            results.push(r);
        }
        remove_path(&archive)?;
        Ok(results)
    }

    fn set_max_parallel(&mut self, n: Option<i32>) -> Res<()> {
        match n {
            Some(n) => self.exec(&format!("ALTER SYSTEM SET backup_ext.max_parallel = {n}"))?,
            None => self.exec("ALTER SYSTEM RESET backup_ext.max_parallel")?,
        }
        self.exec("SELECT pg_reload_conf()")?;
        let want = match n {
            Some(n) => n.to_string(),
            None => self.default_max_parallel()?,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut fresh = connect(&self.socket, self.a.port, "postgres")?;
            let now: String = fresh
                .query_one("SHOW backup_ext.max_parallel", &[])
                .context(|| "SHOW backup_ext.max_parallel failed".to_string())?
                .get(0);
            if now == want {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "backup_ext.max_parallel is still {now} 10 s after reloading for {want}"
                )
                .into());
            }
            thread::sleep(Duration::from_millis(50));
        }
        // The worker rereads the file on SIGHUP; give it a moment.
        thread::sleep(Duration::from_millis(300));
        Ok(())
    }

    fn default_max_parallel(&mut self) -> Res<String> {
        let row = self
            .db
            .query_one(
                "SELECT coalesce(reset_val, boot_val) FROM pg_settings WHERE name = 'backup_ext.max_parallel'",
                &[],
            )
            .context(|| "cannot read pg_settings".to_string())?;
        Ok(row.get(0))
    }

    fn cluster_cases(&mut self) -> Res<Vec<CaseResult>> {
        let dbs = self.small_dbs();
        let n = dbs.len();
        let options = format!(
            "{{\"include_databases\": [{}]}}",
            dbs.iter()
                .map(|d| format!("\"{d}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let baseline_desc = format!("for each of {n} dbs: pg_dump -Fc; then pg_dumpall -g");
        let mut results: Vec<CaseResult> = [1, 2]
            .iter()
            .map(|mp| {
                CaseResult::new(
                    &format!("cluster of {n} databases, max_parallel {mp}"),
                    &format!("cluster {n} dbs, mp {mp}"),
                    &baseline_desc,
                    &format!(
                        "backup_cluster('custom', options => include {n} dbs), max_parallel {mp}"
                    ),
                )
            })
            .collect();
        for i in 1..=self.a.runs {
            let dir = self.scratch_dir("cluster")?;
            let mut cmds = Vec::new();
            for db in &dbs {
                let mut c = self.tool("pg_dump");
                c.args(["-Fc", "-f"])
                    .arg(dir.join(format!("{db}.dump")))
                    .arg(db);
                cmds.push((c, "pg_dump"));
            }
            let mut g = self.tool("pg_dumpall");
            g.args(["-g", "-f"]).arg(dir.join("globals.sql"));
            cmds.push((g, "pg_dumpall -g"));
            let t = secs(|| {
                for (c, what) in cmds {
                    run(c, what)?;
                }
                Ok(())
            })?;
            let h = sha256sum(&files_under(&dir)?)?;
            remove_path(&dir)?;
            let mut line = format!("cluster: run {i}: baseline {t:.3}s");

            for (k, mp) in [1, 2].into_iter().enumerate() {
                self.set_max_parallel(Some(mp))?;
                let t0 = Instant::now();
                let set_id: i64 = self
                    .db
                    .query_one(
                        "SELECT backup_ext.backup_cluster(format => 'custom', label => 'bench', \
                         options => $1::text::jsonb)",
                        &[&options],
                    )
                    .context(|| "backup_cluster() failed".to_string())?
                    .get(0);
                let ids: Vec<i64> = self
                    .db
                    .query(
                        "SELECT job_id FROM backup_ext.jobs WHERE set_id = $1 ORDER BY job_id",
                        &[&set_id],
                    )
                    .context(|| format!("cannot list jobs of set {set_id}"))?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                for id in &ids {
                    self.wait(*id)?;
                }
                let client = t0.elapsed().as_secs_f64();
                let row = self
                    .db
                    .query_one(
                        "SELECT status, extract(epoch FROM finished_at - requested_at)::float8
                           FROM backup_ext.sets WHERE set_id = $1",
                        &[&set_id],
                    )
                    .context(|| format!("cannot read set {set_id}"))?;
                let status: String = row.get(0);
                if status != "succeeded" {
                    return Err(format!("backup_cluster set {set_id} ended {status}").into());
                }
                self.remove_ext_outputs(&ids)?;
                let r = &mut results[k];
                r.baseline.push(t);
                r.baseline_hash.push(t + h);
                r.ext_client.push(client);
                r.ext_catalog.push(row.get(1));
                let _ = write!(line, ", max_parallel {mp} {client:.3}s");
            }
            self.log(&line);
        }
        self.set_max_parallel(None)?;
        Ok(results)
    }

    // ---------------------------------------------------------------- streaming

    fn streaming(&mut self) -> Res<Streaming> {
        let pid = self.worker_pid()?;
        let mut s = Streaming {
            bytes: 0,
            ext_stream: Vec::new(),
            ext_client: Vec::new(),
            dump_file: Vec::new(),
            dump_null: Vec::new(),
            cat: Vec::new(),
            sha: Vec::new(),
            rss: Vec::new(),
            rss_per_run: Vec::new(),
        };
        let out = self.scratch.join("stream.sql");
        for i in 1..=self.a.runs {
            let sampler = RssSampler::start(pid);
            let e = self.ext_job(
                ENQUEUE_SQL,
                &[&BIG_DB, &"plain", &None::<&str>, &None::<i32>],
            );
            let samples = sampler.finish();
            let e = e?;
            let id = e.job_ids[0];
            let row = self
                .db
                .query_one(
                    "SELECT a.size_bytes, a.path, extract(epoch FROM j.finished_at - j.started_at)::float8
                       FROM backup_ext.artifacts a JOIN backup_ext.jobs j USING (job_id)
                      WHERE a.job_id = $1",
                    &[&id],
                )
                .context(|| format!("cannot read backup {id}"))?;
            s.bytes = row.get::<_, Option<i64>>(0).unwrap_or(0);
            let path = PathBuf::from(row.get::<_, String>(1));
            s.ext_stream.push(row.get(2));
            s.ext_client.push(e.client);
            if let (Some(first), Some(peak)) =
                (samples.first(), samples.iter().map(|x| x.vm_rss_kb).max())
            {
                s.rss_per_run.push((first.vm_rss_kb, peak));
            }
            s.rss.extend(samples);

            let mut cat = Command::new("cat");
            cat.arg(&path).stdout(devnull()?).stdin(Stdio::null());
            let t_cat = secs(|| run(cat, "cat"))?;
            s.cat.push(t_cat);
            s.sha.push(sha256sum(std::slice::from_ref(&path))?);
            self.remove_ext_outputs(&e.job_ids)?;

            let mut null = self.tool("pg_dump");
            null.arg("-Fp").arg(BIG_DB).stdout(devnull()?);
            s.dump_null.push(secs(|| run(null, "pg_dump > /dev/null"))?);

            remove_path(&out)?;
            let mut file = self.tool("pg_dump");
            file.args(["-Fp", "-f"]).arg(&out).arg(BIG_DB);
            s.dump_file.push(secs(|| run(file, "pg_dump -f"))?);
            remove_path(&out)?;
            self.log(&format!(
                "streaming: run {i}: extension {:.3}s, pg_dump > /dev/null {:.3}s, cat {t_cat:.3}s",
                e.client,
                s.dump_null.last().copied().unwrap_or(f64::NAN)
            ));
        }
        Ok(s)
    }

    // ---------------------------------------------------------------- catalog

    fn catalog_reads(&mut self) -> Res<(i64, Vec<CatalogTiming>)> {
        let existing: i64 = self
            .db
            .query_one("SELECT count(*) FROM backup_ext.jobs", &[])
            .context(|| "cannot count jobs".to_string())?
            .get(0);
        let add = (self.a.catalog_rows as i64 - existing).max(0) as i32;
        self.log(&format!(
            "catalog: fabricating {add} rows next to {existing} real ones"
        ));
        self.db
            .execute(
                "WITH j AS (
                   INSERT INTO backup_ext.jobs (kind, database, label, status, requested_at,
                                                started_at, finished_at, bytes_written, error)
                   SELECT 'database', 'bench_cat_' || (g % $2), $3,
                          CASE WHEN g % 50 = 0 THEN 'failed' ELSE 'succeeded' END,
                          now() - g * interval '5 minutes',
                          now() - g * interval '5 minutes' + interval '1 second',
                          now() - g * interval '5 minutes' + interval '30 seconds',
                          1000000 + g,
                          CASE WHEN g % 50 = 0 THEN 'pg_dump exited with code 1: fabricated' END
                     FROM generate_series(1, $1) g
                   RETURNING job_id, database, status)
                 INSERT INTO backup_ext.artifacts (backup_id, job_id, kind, database, format, path,
                                                   size_bytes, sha256, server_version, tool_version)
                 SELECT job_id, job_id, 'database', database, 'custom',
                        '/nonexistent/' || database || '/' || job_id || '.dump',
                        CASE WHEN status = 'succeeded' THEN 1000000 END,
                        CASE WHEN status = 'succeeded' THEN repeat('ab', 32) END,
                        '15', '15'
                   FROM j",
                &[&add, &FABRICATED_DBS, &FABRICATED_LABEL],
            )
            .context(|| "cannot fabricate catalog rows".to_string())?;
        self.exec("ANALYZE backup_ext.jobs; ANALYZE backup_ext.artifacts")?;
        let total: i64 = self
            .db
            .query_one("SELECT count(*) FROM backup_ext.jobs", &[])
            .context(|| "cannot count jobs".to_string())?
            .get(0);

        let queries = [
            "SELECT count(*) FROM backup_ext.list_backups('bench_cat_7')",
            "SELECT * FROM backup_ext.list_backups() LIMIT 50",
            "SELECT * FROM backup_ext.status()",
        ];
        let mut timings = Vec::new();
        for q in queries {
            let stmt = self
                .db
                .prepare(q)
                .context(|| format!("cannot prepare {q}"))?;
            let mut ms = Vec::new();
            for i in 0..3 + self.a.catalog_runs {
                let t0 = Instant::now();
                self.db
                    .query(&stmt, &[])
                    .context(|| format!("SQL failed: {q}"))?;
                if i >= 3 {
                    ms.push(t0.elapsed().as_secs_f64() * 1000.0);
                }
            }
            self.log(&format!("catalog: {q}: median {:.2} ms", median(&ms)));
            timings.push(CatalogTiming {
                query: q.to_string(),
                ms,
            });
        }
        self.db
            .execute(
                "DELETE FROM backup_ext.jobs WHERE label = $1",
                &[&FABRICATED_LABEL],
            )
            .context(|| "cannot remove the fabricated catalog rows".to_string())?;
        Ok((total, timings))
    }
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "MISSED"
    }
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

struct Report<'a> {
    m: &'a Machine,
    a: &'a Args,
    cases: &'a [CaseResult],
    latency: &'a Latency,
    catalog_rows: i64,
    catalog: &'a [CatalogTiming],
    streaming: &'a Streaming,
    total_secs: f64,
}

fn render(r: &Report) -> (String, Vec<String>) {
    let mut missed = Vec::new();
    let mut md = String::new();
    let m = r.m;
    let a = r.a;
    let _ = writeln!(md, "# backup_ext benchmark, {}\n", m.date);
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(
        md,
        "| machine | {} CPUs ({}), {:.1} GiB memory; load average {} at start, {} at end |",
        m.nproc,
        m.cpu,
        m.mem_gib,
        m.load_start,
        loadavg()
    );
    let _ = writeln!(md, "| PostgreSQL | {} |", m.pg_version);
    let _ = writeln!(md, "| tools | {} |", m.pg_dump_version);
    let _ = writeln!(
        md,
        "| settings | shared_buffers {}, backup_ext.max_parallel {} (1 and 2 in the cluster case) |",
        m.shared_buffers, m.max_parallel
    );
    let _ = writeln!(
        md,
        "| data | scale {}: {BIG_DB} {} (pgbench -i -s {}); {TABLES_DB} {} tables of 100 rows ({}); {} small databases for the cluster case |",
        a.scale, m.big_size, a.scale, a.small_tables, m.tables_size, a.small_dbs
    );
    let _ = writeln!(
        md,
        "| runs | {} per side, baseline and extension interleaved |",
        a.runs
    );
    let _ = writeln!(md, "| total time | {:.0} s |\n", r.total_secs);

    let _ = writeln!(md, "## Backups and restores\n");
    let _ = writeln!(
        md,
        "Seconds. Baseline tools run as `postgres` over the cluster's socket. \"extension\" is \
         measured by the client from the enqueuing call (autocommit) until `wait_for()` returns; \
         \"catalog\" is `finished_at - requested_at` as the extension records it. \
         ratio = extension median / baseline median, target <= {RATIO_TARGET}. \
         \"+ sha256sum\" is the baseline followed by `sha256sum` of its output, which the \
         extension computes while streaming.\n"
    );
    let _ = writeln!(
        md,
        "| case | baseline min | baseline median | + sha256sum median | extension min | extension median | catalog median | ratio | ratio vs + sha256sum | target <= {RATIO_TARGET} |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for c in r.cases {
        let ratio = c.ratio();
        let ok = ratio <= RATIO_TARGET;
        if !ok {
            missed.push(format!("{}: ratio {ratio:.2} > {RATIO_TARGET}", c.name));
        }
        let hash = if c.baseline_hash.is_empty() {
            "-".to_string()
        } else {
            format!("{:.3}", median(&c.baseline_hash))
        };
        let ratio_hash = c
            .ratio_hash()
            .map_or_else(|| "-".to_string(), |x| format!("{x:.2}"));
        let _ = writeln!(
            md,
            "| {} | {:.3} | {:.3} | {hash} | {:.3} | {:.3} | {:.3} | {ratio:.2} | {ratio_hash} | {} |",
            c.name,
            min(&c.baseline),
            median(&c.baseline),
            min(&c.ext_client),
            median(&c.ext_client),
            median(&c.ext_catalog),
            verdict(ok)
        );
    }
    let _ = writeln!(md, "\n| case | baseline | extension |\n|---|---|---|");
    for c in r.cases {
        let _ = writeln!(
            md,
            "| {} | `{}` | `{}` |",
            c.name, c.baseline_desc, c.ext_desc
        );
    }

    let l = r.latency;
    let _ = writeln!(md, "\n## Call and pickup latency\n");
    let _ = writeln!(
        md,
        "| measure | samples | p50 ms | p99 ms | max ms | target | result |\n|---|---:|---:|---:|---:|---|---|"
    );
    let enqueue_p99 = percentile(&l.enqueue_ms, 99.0);
    let ok = enqueue_p99 < ENQUEUE_P99_TARGET_MS;
    if !ok {
        missed.push(format!(
            "backup_database() call latency: p99 {enqueue_p99:.2} ms >= {ENQUEUE_P99_TARGET_MS} ms"
        ));
    }
    let _ = writeln!(
        md,
        "| `backup_database()` call (BEGIN; SELECT, timed; ROLLBACK) | {} | {:.2} | {enqueue_p99:.2} | {:.2} | p99 < {ENQUEUE_P99_TARGET_MS} ms | {} |",
        l.enqueue_ms.len(),
        percentile(&l.enqueue_ms, 50.0),
        max(&l.enqueue_ms),
        verdict(ok)
    );
    let pickup_p99 = percentile(&l.pickup_requested_ms, 99.0);
    let ok = pickup_p99 < PICKUP_P99_TARGET_MS;
    if !ok {
        missed.push(format!(
            "pickup latency: p99 {pickup_p99:.2} ms >= {PICKUP_P99_TARGET_MS} ms"
        ));
    }
    let _ = writeln!(
        md,
        "| pickup: `started_at - requested_at` | {} | {:.2} | {pickup_p99:.2} | {:.2} | p99 < {PICKUP_P99_TARGET_MS} ms | {} |",
        l.pickup_requested_ms.len(),
        percentile(&l.pickup_requested_ms, 50.0),
        max(&l.pickup_requested_ms),
        verdict(ok)
    );
    let _ = writeln!(
        md,
        "| pickup: `started_at` - server clock right after COMMIT returned | {} | {:.2} | {:.2} | {:.2} | (information) | |",
        l.pickup_commit_ms.len(),
        percentile(&l.pickup_commit_ms, 50.0),
        percentile(&l.pickup_commit_ms, 99.0),
        max(&l.pickup_commit_ms)
    );
    let _ = writeln!(
        md,
        "\nPickup jobs are tiny dumps of `{TINY_DB}`, enqueued one at a time in autocommit, each \
         after the previous one finished. `requested_at` is `now()` of the enqueuing transaction \
         (its start), so the first pickup row also contains the call itself and its commit: it \
         is an upper bound of commit-to-running. The second row subtracts `clock_timestamp()` \
         read in the same session right after COMMIT returned; that moment is later than the \
         commit by up to one round trip, so it is a lower bound (it can be slightly negative)."
    );

    let _ = writeln!(
        md,
        "\n## Catalog reads with {} rows in backup_ext.jobs\n",
        r.catalog_rows
    );
    let _ = writeln!(
        md,
        "Rows fabricated with INSERT ... SELECT generate_series into `backup_ext.jobs` and \
         `backup_ext.artifacts` ({FABRICATED_DBS} databases, 2% failed), removed afterwards. \
         {} runs of each query after 3 warm-up runs, measured by the client including fetching \
         the rows.\n",
        a.catalog_runs
    );
    let _ = writeln!(
        md,
        "| query | median ms | min ms | max ms | target | result |\n|---|---:|---:|---:|---|---|"
    );
    for t in r.catalog {
        let med = median(&t.ms);
        let ok = med < CATALOG_TARGET_MS;
        if !ok {
            missed.push(format!(
                "`{}`: median {med:.1} ms >= {CATALOG_TARGET_MS} ms",
                t.query
            ));
        }
        let _ = writeln!(
            md,
            "| `{}` | {med:.2} | {:.2} | {:.2} | < {CATALOG_TARGET_MS} ms | {} |",
            t.query,
            min(&t.ms),
            max(&t.ms),
            verdict(ok)
        );
    }

    let s = r.streaming;
    let _ = writeln!(
        md,
        "\n## Worker memory while streaming the plain dump of {BIG_DB}\n"
    );
    let _ = writeln!(
        md,
        "`/proc/<pid>/status` of the `backup_ext worker` process, polled every 100 ms during \
         {} plain dump(s) of {:.1} MB. VmHWM is the peak since the worker started; RssAnon is its \
         private memory (VmRSS also counts shared buffers it touched).\n",
        s.rss_per_run.len(),
        s.bytes as f64 / 1e6
    );
    let rss_first = s.rss.first().map_or(0, |x| x.vm_rss_kb);
    let rss_max = s.rss.iter().map(|x| x.vm_rss_kb).max().unwrap_or(0);
    let rss_last = s.rss.last().map_or(0, |x| x.vm_rss_kb);
    let anon_max = s.rss.iter().map(|x| x.rss_anon_kb).max().unwrap_or(0);
    let anon_first = s.rss.first().map_or(0, |x| x.rss_anon_kb);
    let hwm_first = s.rss.first().map_or(0, |x| x.vm_hwm_kb);
    let hwm_last = s.rss.last().map_or(0, |x| x.vm_hwm_kb);
    let growth = s
        .rss_per_run
        .iter()
        .map(|(first, peak)| mb(peak.saturating_sub(*first)))
        .fold(0.0, f64::max);
    let _ = writeln!(
        md,
        "| measure | value | target | result |\n|---|---:|---|---|"
    );
    let ok = s.rss.is_empty() || mb(rss_max) < RSS_TARGET_MB;
    if !ok || s.rss.is_empty() {
        missed.push(format!(
            "worker peak VmRSS {:.1} MB (target < {RSS_TARGET_MB} MB{})",
            mb(rss_max),
            if s.rss.is_empty() {
                "; no samples could be read"
            } else {
                ""
            }
        ));
    }
    let _ = writeln!(
        md,
        "| peak VmRSS | {:.1} MB | < {RSS_TARGET_MB} MB | {} |",
        mb(rss_max),
        verdict(ok && !s.rss.is_empty())
    );
    let flat = growth < RSS_FLAT_MB;
    if !flat {
        missed.push(format!(
            "worker VmRSS grew by {growth:.1} MB during one dump (flat: < {RSS_FLAT_MB} MB)"
        ));
    }
    let _ = writeln!(
        md,
        "| largest VmRSS growth within one dump | {growth:.1} MB | < {RSS_FLAT_MB} MB (flat) | {} |",
        verdict(flat)
    );
    let _ = writeln!(
        md,
        "| VmRSS first / last sample | {:.1} / {:.1} MB | | |",
        mb(rss_first),
        mb(rss_last)
    );
    let _ = writeln!(
        md,
        "| RssAnon first / peak | {:.1} / {:.1} MB | | |",
        mb(anon_first),
        mb(anon_max)
    );
    let _ = writeln!(
        md,
        "| VmHWM before / after | {:.1} / {:.1} MB | | |",
        mb(hwm_first),
        mb(hwm_last)
    );
    let _ = writeln!(md, "| samples | {} | | |", s.rss.len());

    let _ = writeln!(
        md,
        "\n## Streaming throughput, plain dump of {BIG_DB} ({:.1} MB)\n",
        s.bytes as f64 / 1e6
    );
    let _ = writeln!(
        md,
        "MB = 10^6 bytes of the dump; medians over runs: {}. `cat` of the extension's own output (just \
         written, so from the page cache) is the ceiling for moving these bytes.\n",
        a.runs
    );
    let _ = writeln!(md, "| path | median s | MB/s |\n|---|---:|---:|");
    let rows: [(&str, &Vec<f64>); 6] = [
        (
            "extension, started_at to finished_at (pg_dump, worker with SHA-256 and size, file, fsync)",
            &s.ext_stream,
        ),
        ("extension, client: call to wait_for()", &s.ext_client),
        ("`pg_dump -Fp -f file`", &s.dump_file),
        ("`pg_dump -Fp > /dev/null`", &s.dump_null),
        ("`cat file > /dev/null` (ceiling)", &s.cat),
        ("`sha256sum file`", &s.sha),
    ];
    for (what, v) in rows {
        let med = median(v);
        let _ = writeln!(
            md,
            "| {what} | {med:.3} | {:.1} |",
            s.bytes as f64 / 1e6 / med
        );
    }

    let _ = writeln!(md, "\n## Missed targets\n");
    if missed.is_empty() {
        let _ = writeln!(md, "none");
    } else {
        for x in &missed {
            let _ = writeln!(md, "- MISSED: {x}");
        }
    }
    (md, missed)
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("backup_ext_bench: {e}");
        std::process::exit(1);
    }
}

fn real_main() -> Res<()> {
    let a = parse_args()?;
    let started = Instant::now();
    let socket = a.dir.join("socket").to_string_lossy().into_owned();
    let scratch = a.dir.join("scratch");
    let db = connect(&socket, a.port, "postgres")?;
    let mut b = Bench {
        a,
        socket,
        scratch,
        db,
        started,
    };
    let font = chart::load_font(b.a.font.as_deref());
    if let Err(e) = &font {
        b.log(&format!("warning: {e}; the chart will be skipped"));
    }

    b.setup()?;
    let machine = b.machine()?;
    let latency = b.latency()?;

    let mut cases = Vec::new();
    let big = BIG_DB;
    cases.push(b.dump_case(
        "custom, default compression",
        "custom",
        big,
        &["-Fc"],
        "big.dump",
        "custom",
        None,
        None,
    )?);
    cases.push(b.dump_case(
        "custom, compress 0",
        "custom -Z0",
        big,
        &["-Fc", "-Z0"],
        "big-z0.dump",
        "custom",
        Some("0"),
        None,
    )?);
    cases.push(b.dump_case(
        "plain",
        "plain",
        big,
        &["-Fp"],
        "big.sql",
        "plain",
        None,
        None,
    )?);
    cases.push(b.dump_case(
        "directory, jobs 2",
        "directory -j2",
        big,
        &["-Fd", "-j2"],
        "big.dir",
        "directory",
        None,
        Some(2),
    )?);
    let many = format!("{} small tables, custom", b.a.small_tables);
    cases.push(b.dump_case(
        &many,
        &format!("{} tables", b.a.small_tables),
        TABLES_DB,
        &["-Fc"],
        "tables.dump",
        "custom",
        None,
        None,
    )?);
    cases.push(b.globals_case()?);
    cases.extend(b.restore_cases()?);
    cases.extend(b.cluster_cases()?);
    let streaming = b.streaming()?;
    let (catalog_rows, catalog) = b.catalog_reads()?;

    let report = Report {
        m: &machine,
        a: &b.a,
        cases: &cases,
        latency: &latency,
        catalog_rows,
        catalog: &catalog,
        streaming: &streaming,
        total_secs: started.elapsed().as_secs_f64(),
    };
    let (md, missed) = render(&report);
    print!("{md}");

    fs::create_dir_all(&b.a.out).context(|| format!("cannot create {}", b.a.out.display()))?;
    let md_path = b.a.out.join(format!("{}.md", machine.date));
    fs::write(&md_path, &md).context(|| format!("cannot write {}", md_path.display()))?;
    b.log(&format!("wrote {}", md_path.display()));
    if font.is_ok() {
        let png_path = b.a.out.join(format!("{}.png", machine.date));
        let bars: Vec<chart::Bar> = cases
            .iter()
            .map(|c| chart::Bar {
                label: c.short.clone(),
                ratio: c.ratio(),
            })
            .collect();
        let title = format!(
            "backup_ext / baseline, median time ({}, scale {}, runs per side {})",
            machine.date, b.a.scale, b.a.runs
        );
        chart::draw(&png_path, &title, &bars, RATIO_TARGET)
            .context(|| format!("cannot draw {}", png_path.display()))?;
        b.log(&format!("wrote {}", png_path.display()));
    }
    if !missed.is_empty() {
        b.log(&format!(
            "{} target(s) MISSED (see the report)",
            missed.len()
        ));
    }
    Ok(())
}
