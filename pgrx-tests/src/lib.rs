//! Harness for the end-to-end tests in tests/.
//!
//! Every test talks to a real PostgreSQL 15 cluster started from the system
//! binaries with `backup_ext` preloaded. Clusters live in
//! `/tmp/backup_ext-e2e/<name>-<pid>` and are owned by the `postgres` user,
//! because initdb and postgres refuse to run as root.
//!
//! Set `BACKUP_EXT_KEEP=1` to keep the scratch directory (and its server
//! log) after the tests; the server is stopped either way.

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use postgres;
use postgres::{Client, NoTls};
use sha2::{Digest, Sha256};

/// Where the PostgreSQL 15 server and client programs live.
pub const BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
/// The installed extension library; clusters preload it.
pub const EXTENSION_SO: &str = "/usr/lib/postgresql/15/lib/backup_ext.so";
/// Parent of every scratch directory.
pub const SCRATCH_ROOT: &str = "/tmp/backup_ext-e2e";
/// The OS user that owns clusters and runs server-side tools.
pub const PG_USER: &str = "postgres";

/// Final job statuses.
pub const FINAL: &[&str] = &["succeeded", "failed", "cancelled"];

/// Generous upper bound for jobs on the small sample database.
pub const SMALL_JOB: Duration = Duration::from_secs(60);

/// A running PostgreSQL cluster in its own scratch directory.
pub struct Cluster {
    pub name: String,
    /// The scratch directory: data/, sock/, backups/, server.log.
    pub root: PathBuf,
    pub data: PathBuf,
    pub sock: PathBuf,
    /// The value of `backup_ext.directory`.
    pub backups: PathBuf,
    pub log: PathBuf,
    pub port: u16,
    /// The `-o` string handed to pg_ctl for start and restart.
    server_options: String,
    stopped: AtomicBool,
}

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Preload backup_ext and run `CREATE EXTENSION backup_ext`.
    pub extension: bool,
    /// Extra `-c name=value` server settings.
    pub settings: Vec<(String, String)>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            extension: true,
            settings: Vec::new(),
        }
    }
}

impl Cluster {
    /// A fresh cluster with backup_ext preloaded and created in `postgres`.
    pub fn start(name: &str) -> Cluster {
        Cluster::start_opts(name, ClusterOptions::default())
    }

    /// Like [`Cluster::start`] with extra server settings, e.g.
    /// `&[("backup_ext.max_parallel", "1")]`.
    pub fn start_with(name: &str, settings: &[(&str, &str)]) -> Cluster {
        Cluster::start_opts(
            name,
            ClusterOptions {
                extension: true,
                settings: settings
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            },
        )
    }

    /// A cluster without the extension: only for checking the harness.
    pub fn start_without_extension(name: &str) -> Cluster {
        Cluster::start_opts(
            name,
            ClusterOptions {
                extension: false,
                settings: Vec::new(),
            },
        )
    }

    pub fn start_opts(name: &str, opts: ClusterOptions) -> Cluster {
        if opts.extension && !Path::new(EXTENSION_SO).exists() {
            panic!(
                "{EXTENSION_SO} does not exist; install the extension first with \
                 `cargo pgrx install --pg-config {BIN_DIR}/pg_config`"
            );
        }
        let (uid, gid) = pg_user_ids();
        let scratch = Path::new(SCRATCH_ROOT);
        fs::create_dir_all(scratch).expect("create scratch root");
        fs::set_permissions(scratch, fs::Permissions::from_mode(0o1777))
            .expect("chmod scratch root");
        sweep_stale_dirs(scratch);

        let root = scratch.join(format!("{name}-{}", std::process::id()));
        if root.exists() {
            stop_stale_server(&root);
            fs::remove_dir_all(&root).expect("remove stale scratch dir");
        }
        let sock = root.join("sock");
        let backups = root.join("backups");
        for dir in [&root, &sock, &backups] {
            fs::create_dir_all(dir).expect("create scratch dir");
            chown(dir, uid, gid);
            fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let data = root.join("data");
        let log = root.join("server.log");
        let port = free_port();

        let mut server_options = format!(
            "-p {port} -k {} -c listen_addresses='' -c fsync=off",
            sock.display()
        );
        if opts.extension {
            server_options.push_str(&format!(
                " -c shared_preload_libraries=backup_ext -c backup_ext.database=postgres \
                 -c backup_ext.directory={}",
                backups.display()
            ));
        }
        for (k, v) in &opts.settings {
            server_options.push_str(&format!(" -c {k}={v}"));
        }

        let cluster = Cluster {
            name: name.to_string(),
            root,
            data,
            sock,
            backups,
            log,
            port,
            server_options,
            stopped: AtomicBool::new(true),
        };

        let out = cluster.run_tool(
            "initdb",
            &[
                "-D",
                path_str(&cluster.data),
                "-A",
                "trust",
                "-U",
                PG_USER,
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ],
        );
        check_output("initdb", &out);

        cluster.stopped.store(false, Ordering::SeqCst);
        let out = cluster.pg_ctl(&[
            "start",
            "-D",
            path_str(&cluster.data),
            "-l",
            path_str(&cluster.log),
            "-w",
            "-t",
            "60",
            "-o",
            &cluster.server_options,
        ]);
        if !out.status.success() {
            cluster.stopped.store(true, Ordering::SeqCst);
            panic!(
                "pg_ctl start failed: {}\n--- server log ---\n{}",
                String::from_utf8_lossy(&out.stderr),
                cluster.log_tail(60)
            );
        }
        if opts.extension {
            cluster
                .client("postgres")
                .batch_execute("CREATE EXTENSION backup_ext")
                .unwrap_or_else(|e| panic!("CREATE EXTENSION backup_ext: {}", describe(&e)));
        }
        cluster
    }

    /// Path of a PostgreSQL program.
    pub fn bin(name: &str) -> PathBuf {
        Path::new(BIN_DIR).join(name)
    }

    /// A connection as superuser `postgres`.
    pub fn client(&self, db: &str) -> Client {
        self.client_as(db, PG_USER)
    }

    /// A connection as `role` (trust authentication).
    pub fn client_as(&self, db: &str, role: &str) -> Client {
        self.try_client_as(db, role)
            .unwrap_or_else(|e| panic!("connect to {db} as {role}: {}", describe(&e)))
    }

    pub fn try_client_as(&self, db: &str, role: &str) -> Result<Client, postgres::Error> {
        postgres::Config::new()
            .host_path(&self.sock)
            .port(self.port)
            .user(role)
            .dbname(db)
            .application_name("backup_ext_e2e")
            .connect_timeout(Duration::from_secs(30))
            .connect(NoTls)
    }

    /// Runs `sql` with psql -X -A -t and returns its standard output;
    /// panics if psql fails.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self.run_tool(
            "psql",
            &[
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                db,
                "-c",
                sql,
            ],
        );
        check_output("psql", &out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a program from [`BIN_DIR`] as the postgres user, with PGHOST,
    /// PGPORT and PGUSER pointing at this cluster.
    pub fn run_tool(&self, name: &str, args: &[&str]) -> Output {
        let mut cmd = self.tool_command(name, args);
        cmd.output()
            .unwrap_or_else(|e| panic!("could not run {name}: {e}"))
    }

    /// The command [`Cluster::run_tool`] would run, for callers that want
    /// to spawn it themselves.
    pub fn tool_command(&self, name: &str, args: &[&str]) -> Command {
        let mut cmd = if running_as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", PG_USER, "--"]);
            c.arg(Cluster::bin(name));
            c
        } else {
            Command::new(Cluster::bin(name))
        };
        cmd.args(args)
            .env("PGHOST", &self.sock)
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", PG_USER)
            .env_remove("PGDATABASE")
            .env_remove("PGPASSWORD")
            .stdin(Stdio::null())
            .current_dir(&self.root);
        cmd
    }

    fn pg_ctl(&self, args: &[&str]) -> Output {
        self.run_tool("pg_ctl", args)
    }

    /// `pg_ctl restart -m immediate`: the server crashes on purpose and
    /// comes back after recovery with the same options.
    pub fn restart_immediate(&self) {
        self.restart("immediate");
    }

    /// `pg_ctl restart -m fast`: a clean shutdown (SIGTERM to every backend and the worker) and
    /// start with the same options; returns how long the shutdown-and-start took.
    pub fn restart_fast(&self) -> Duration {
        let started = Instant::now();
        self.restart("fast");
        started.elapsed()
    }

    fn restart(&self, mode: &str) {
        let out = self.pg_ctl(&[
            "restart",
            "-D",
            path_str(&self.data),
            "-l",
            path_str(&self.log),
            "-m",
            mode,
            "-w",
            "-t",
            "120",
            "-o",
            &self.server_options,
        ]);
        if !out.status.success() {
            panic!(
                "pg_ctl restart failed: {}\n--- server log ---\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.log_tail(60)
            );
        }
    }

    /// Stops the server (fast mode); safe to call more than once.
    pub fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        let out = self.pg_ctl(&[
            "stop",
            "-D",
            path_str(&self.data),
            "-m",
            "fast",
            "-w",
            "-t",
            "60",
        ]);
        if !out.status.success() {
            // Fast shutdown waits for the background worker; do not leave a
            // server behind if it does not react.
            let _ = self.pg_ctl(&["stop", "-D", path_str(&self.data), "-m", "immediate"]);
        }
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The whole server log.
    pub fn log_text(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Calls a function returning a job id, e.g.
    /// `enqueue("SELECT backup_ext.backup_database('db')")`.
    pub fn enqueue(&self, sql: &str) -> i64 {
        let mut c = self.client("postgres");
        let row = c
            .query_one(sql, &[])
            .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
        row.get(0)
    }

    /// Current status of a job.
    pub fn status(&self, client: &mut Client, job_id: i64) -> String {
        client
            .query_one(
                "SELECT status::text FROM backup_ext.job_status($1)",
                &[&job_id],
            )
            .unwrap_or_else(|e| panic!("job_status({job_id}): {}", describe(&e)))
            .get(0)
    }

    /// Polls `job_status` every 50 ms until the status is one of `wanted`;
    /// panics (with the server log) when `deadline` passes first.
    pub fn wait_for_status(&self, job_id: i64, wanted: &[&str], deadline: Duration) -> String {
        let mut client = self.client("postgres");
        let start = Instant::now();
        let last = loop {
            let last = self.status(&mut client, job_id);
            if wanted.contains(&last.as_str()) {
                return last;
            }
            if FINAL.contains(&last.as_str()) {
                // A final status never changes again.
                let job = self.job(job_id);
                panic!(
                    "job {job_id} ended {last:?} while waiting for {wanted:?}: {job:?}\n\
                     --- server log ---\n{}",
                    self.log_tail(40)
                );
            }
            if start.elapsed() > deadline {
                break last;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        panic!(
            "job {job_id} still {last:?} after {deadline:?}, wanted {wanted:?}\n\
             --- server log ---\n{}",
            self.log_tail(40)
        );
    }

    /// Waits until the job is final and returns its status.
    pub fn wait_final(&self, job_id: i64, deadline: Duration) -> String {
        self.wait_for_status(job_id, FINAL, deadline)
    }

    /// Polls `cond` every 50 ms until it holds; panics with `what` after
    /// `deadline`.
    pub fn wait_until(&self, what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            if start.elapsed() > deadline {
                panic!(
                    "timed out after {deadline:?} waiting for {what}\n--- server log ---\n{}",
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The `job_status` row of a job.
    pub fn job(&self, job_id: i64) -> Job {
        let mut c = self.client("postgres");
        let row = c
            .query_one(
                "SELECT job_id, kind::text, status::text, database::text, requested_by::text,
                        started_at IS NOT NULL, finished_at IS NOT NULL,
                        bytes_written::bigint, error::text
                   FROM backup_ext.job_status($1)",
                &[&job_id],
            )
            .unwrap_or_else(|e| panic!("job_status({job_id}): {}", describe(&e)));
        Job {
            job_id: row.get(0),
            kind: row.get(1),
            status: row.get(2),
            database: row.get(3),
            requested_by: row.get(4),
            started: row.get(5),
            finished: row.get(6),
            bytes_written: row.get(7),
            error: row.get(8),
        }
    }

    /// The rows of `list_backups()` belonging to a job (normally one).
    pub fn backups_of(&self, job_id: i64) -> Vec<Backup> {
        let mut c = self.client("postgres");
        c.query(
            "SELECT backup_id::bigint, job_id, kind::text, database::text, format::text,
                    status::text, label, path::text, size_bytes::bigint, sha256::text,
                    requested_by::text, started_at IS NOT NULL, finished_at IS NOT NULL,
                    error::text, server_version::text, tool_version::text
               FROM backup_ext.list_backups()
              WHERE job_id = $1",
            &[&job_id],
        )
        .unwrap_or_else(|e| panic!("list_backups(): {}", describe(&e)))
        .into_iter()
        .map(|row| Backup {
            backup_id: row.get(0),
            job_id: row.get(1),
            kind: row.get(2),
            database: row.get(3),
            format: row.get(4),
            status: row.get(5),
            label: row.get(6),
            path: row.get(7),
            size_bytes: row.get(8),
            sha256: row.get::<_, Option<String>>(9).map(normalize_hex),
            requested_by: row.get(10),
            started: row.get(11),
            finished: row.get(12),
            error: row.get(13),
            server_version: row.get(14),
            tool_version: row.get(15),
        })
        .collect()
    }

    /// The single `list_backups()` row of a job.
    pub fn backup(&self, job_id: i64) -> Backup {
        let mut rows = self.backups_of(job_id);
        assert_eq!(
            rows.len(),
            1,
            "list_backups() rows for job {job_id}: {rows:?}"
        );
        rows.pop().unwrap()
    }

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

    /// The postmaster's process id, from postmaster.pid.
    pub fn postmaster_pid(&self) -> Option<u32> {
        let text = fs::read_to_string(self.data.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// Processes named `pg_dump` or `pg_dumpall` that descend from this
    /// cluster's postmaster.
    pub fn dump_processes(&self) -> Vec<u32> {
        let Some(postmaster) = self.postmaster_pid() else {
            return Vec::new();
        };
        let mut found = Vec::new();
        let Ok(entries) = fs::read_dir("/proc") else {
            return found;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let comm = comm.trim();
            if comm != "pg_dump" && comm != "pg_dumpall" {
                continue;
            }
            let mut cur = pid;
            for _ in 0..16 {
                match parent_pid(cur) {
                    Some(p) if p == postmaster => {
                        found.push(pid);
                        break;
                    }
                    Some(p) if p > 1 => cur = p,
                    _ => break,
                }
            }
        }
        found
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- server log of cluster {} ({}) ---\n{}",
                self.name,
                self.log.display(),
                self.log_tail(80)
            );
        }
        self.stop();
        if std::env::var_os("BACKUP_EXT_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.root);
        } else {
            eprintln!("keeping {}", self.root.display());
        }
    }
}

/// A job as reported by `backup_ext.job_status`.
#[derive(Debug, Clone)]
pub struct Job {
    pub job_id: i64,
    pub kind: String,
    pub status: String,
    pub database: Option<String>,
    pub requested_by: Option<String>,
    pub started: bool,
    pub finished: bool,
    pub bytes_written: Option<i64>,
    pub error: Option<String>,
}

/// A row of `backup_ext.list_backups()`.
#[derive(Debug, Clone)]
pub struct Backup {
    pub backup_id: i64,
    pub job_id: i64,
    pub kind: String,
    pub database: Option<String>,
    pub format: Option<String>,
    pub status: String,
    pub label: Option<String>,
    pub path: Option<String>,
    pub size_bytes: Option<i64>,
    pub sha256: Option<String>,
    pub requested_by: Option<String>,
    pub started: bool,
    pub finished: bool,
    pub error: Option<String>,
    pub server_version: Option<String>,
    pub tool_version: Option<String>,
}

impl Backup {
    pub fn path_buf(&self) -> PathBuf {
        PathBuf::from(
            self.path
                .as_deref()
                .unwrap_or_else(|| panic!("backup of job {} has no path", self.job_id)),
        )
    }
}

// ---------------------------------------------------------------------------
// Shared cluster

static SHARED: OnceLock<Cluster> = OnceLock::new();

extern "C" {
    fn atexit(cb: extern "C" fn()) -> std::os::raw::c_int;
}

extern "C" fn stop_shared_cluster() {
    if let Some(c) = SHARED.get() {
        c.stop();
        if std::env::var_os("BACKUP_EXT_KEEP").is_none() {
            let _ = fs::remove_dir_all(&c.root);
        }
    }
}

/// The cluster shared by all tests of one test binary, started on first
/// use with `settings` and stopped when the process exits. Tests running
/// on it must not depend on what other tests do concurrently.
pub fn shared_cluster(name: &str, settings: &[(&str, &str)]) -> SharedCluster {
    let cluster = SHARED.get_or_init(|| {
        let c = Cluster::start_with(name, settings);
        // SAFETY: registering a plain extern "C" function without captures.
        unsafe {
            atexit(stop_shared_cluster);
        }
        c
    });
    SharedCluster(cluster)
}

/// Access to the shared cluster; prints the server log tail when the test
/// holding it fails.
pub struct SharedCluster(&'static Cluster);

impl std::ops::Deref for SharedCluster {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        self.0
    }
}

impl Drop for SharedCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- server log of shared cluster {} ({}) ---\n{}",
                self.0.name,
                self.0.log.display(),
                self.0.log_tail(80)
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Files, hashes, names

/// Hex SHA-256 of a file's contents.
pub fn sha256_file(path: &Path) -> String {
    let mut f = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// One file of a directory-format dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// The manifest of a directory: entries sorted by name, the manifest text
/// (`<sha256>  <size>  <name>\n` per file), and the total size.
pub fn directory_manifest(dir: &Path) -> (Vec<ManifestEntry>, String, u64) {
    let mut entries = Vec::new();
    collect_files(dir, dir, &mut entries);
    entries.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    let mut text = String::new();
    let mut total = 0;
    for e in &entries {
        text.push_str(&format!("{}  {}  {}\n", e.sha256, e.size, e.name));
        total += e.size;
    }
    (entries, text, total)
}

fn collect_files(base: &Path, dir: &Path, out: &mut Vec<ManifestEntry>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let entry = entry.expect("dir entry");
        let path = entry.path();
        let ft = entry.file_type().expect("file type");
        if ft.is_dir() {
            collect_files(base, &path, out);
        } else {
            let name = path
                .strip_prefix(base)
                .unwrap()
                .to_str()
                .expect("utf-8 file name")
                .to_string();
            out.push(ManifestEntry {
                name,
                size: entry.metadata().expect("metadata").len(),
                sha256: sha256_file(&path),
            });
        }
    }
}

/// Every path under `dir` whose name ends in `.partial`.
pub fn partials_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for entry in rd.flatten() {
            let p = entry.path();
            if p.to_string_lossy().ends_with(".partial") {
                found.push(p.clone());
            }
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                walk(&p, found);
            }
        }
    }
    walk(dir, &mut found);
    found
}

/// The folder name the extension uses for a database: bytes outside
/// `[A-Za-z0-9_.-]` become `%XX`.
pub fn folder_name(db: &str) -> String {
    let mut s = String::new();
    for b in db.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-' {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// Asserts that `path` is `<backups>/<folder>/<YYYYMMDDTHHMMSSZ>-job<12
/// digits><suffix>`.
pub fn assert_backup_path(backups: &Path, folder: &str, job_id: i64, suffix: &str, path: &Path) {
    let parent = path.parent().expect("path has a parent");
    assert_eq!(parent, backups.join(folder), "folder of {}", path.display());
    let file = path.file_name().unwrap().to_str().expect("utf-8 file name");
    let expected_tail = format!("-job{job_id:012}{suffix}");
    assert!(
        file.ends_with(&expected_tail) && file.len() == 16 + expected_tail.len(),
        "file name {file:?} does not end in {expected_tail:?} after a timestamp"
    );
    let stamp = &file.as_bytes()[..16];
    for (i, c) in stamp.iter().enumerate() {
        let ok = match i {
            8 => *c == b'T',
            15 => *c == b'Z',
            _ => c.is_ascii_digit(),
        };
        assert!(ok, "timestamp part of {file:?} is not YYYYMMDDTHHMMSSZ");
    }
}

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

/// `pg_restore --list` of an archive; panics if pg_restore fails.
pub fn pg_restore_list(cluster: &Cluster, archive: &Path) -> String {
    let out = cluster.run_tool("pg_restore", &["--list", path_str(archive)]);
    check_output("pg_restore --list", &out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A `pg_restore --list` entry: (description, schema, name), e.g.
/// ("TABLE DATA", "public", "t1").
pub fn toc_entries(list: &str) -> Vec<(String, String, String)> {
    const DESCS: &[&str] = &[
        "TABLE DATA",
        "SEQUENCE SET",
        "SEQUENCE OWNED BY",
        "FK CONSTRAINT",
        "DEFAULT ACL",
        "TABLE",
        "VIEW",
        "SEQUENCE",
        "INDEX",
        "CONSTRAINT",
        "DEFAULT",
        "SCHEMA",
        "COMMENT",
        "EXTENSION",
        "ACL",
    ];
    let mut out = Vec::new();
    for line in list.lines() {
        if line.starts_with(';') || line.trim().is_empty() {
            continue;
        }
        let Some((_, rest)) = line.split_once("; ") else {
            continue;
        };
        // "<tableoid> <oid> <desc...> <schema> <name> <owner>"
        let mut parts = rest.splitn(3, ' ');
        let (_, _, tail) = (parts.next(), parts.next(), parts.next().unwrap_or(""));
        let Some(desc) = DESCS.iter().find(|d| tail.starts_with(&format!("{d} "))) else {
            continue;
        };
        let mut fields = tail[desc.len() + 1..].split(' ');
        let schema = fields.next().unwrap_or("").to_string();
        let name = fields.next().unwrap_or("").to_string();
        out.push((desc.to_string(), schema, name));
    }
    out
}

pub fn check_output(what: &str, out: &Output) {
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn normalize_hex(s: String) -> String {
    s.strip_prefix("\\x").map(str::to_string).unwrap_or(s)
}

fn free_port() -> u16 {
    // The server only listens on its own socket directory, so a port only
    // names the socket file; a free TCP port keeps it unique anyway.
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(55432)
}

fn running_as_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Uid:"))
                    .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
            })
            .unwrap_or(false)
    })
}

fn pg_user_ids() -> (u32, u32) {
    let passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() > 3 && f[0] == PG_USER {
            return (f[2].parse().unwrap(), f[3].parse().unwrap());
        }
    }
    panic!("no user {PG_USER} in /etc/passwd");
}

fn chown(path: &Path, uid: u32, gid: u32) {
    if running_as_root() {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    }
}

fn parent_pid(pid: u32) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("PPid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn stop_stale_server(dir: &Path) {
    let data = dir.join("data");
    if data.join("postmaster.pid").exists() {
        let mut cmd = if running_as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", PG_USER, "--"]).arg(Cluster::bin("pg_ctl"));
            c
        } else {
            Command::new(Cluster::bin("pg_ctl"))
        };
        let _ = cmd
            .args(["stop", "-D", path_str(&data), "-m", "immediate"])
            .current_dir("/")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Removes scratch directories left by test processes that no longer
/// exist (e.g. killed runs), stopping their servers first.
fn sweep_stale_dirs(scratch: &Path) {
    let Ok(rd) = fs::read_dir(scratch) else {
        return;
    };
    for entry in rd.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(pid) = name.rsplit('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        stop_stale_server(&entry.path());
        let _ = fs::remove_dir_all(entry.path());
    }
}

// ---------------------------------------------------------------------------
// Files the server must be able to delete

impl Cluster {
    /// Writes `contents` to `path` as if the server had written it: missing
    /// parent directories are created (mode 0700) and the directories and
    /// the file end up owned by the postgres user.
    pub fn write_server_file(&self, path: &Path, contents: &[u8]) {
        let (uid, gid) = pg_user_ids();
        let parent = path.parent().expect("path has a parent");
        let mut missing = Vec::new();
        let mut cur = parent;
        while !cur.exists() {
            missing.push(cur.to_path_buf());
            cur = cur.parent().expect("existing ancestor");
        }
        for dir in missing.iter().rev() {
            fs::create_dir(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).expect("chmod");
            chown(dir, uid, gid);
        }
        fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod");
        chown(path, uid, gid);
    }
}
