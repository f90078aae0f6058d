//! The [`Cluster`] type: starting, connecting to, restarting and stopping
//! a scratch PostgreSQL cluster, and the cluster shared by one test binary.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};

use crate::paths::path_str;
use crate::process::{
    check_output, chown, free_port, pg_user_ids, running_as_root, stop_stale_server,
    sweep_stale_dirs,
};
use crate::sql::describe;
use crate::{bin_dir, bin_dir_of, pg_config_of, PG_USER, SCRATCH_ROOT};

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
    /// The server and client programs of this cluster's PostgreSQL.
    bin: PathBuf,
    stopped: AtomicBool,
}

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Preload backup_ext and run `CREATE EXTENSION backup_ext`.
    pub extension: bool,
    /// Extra `-c name=value` server settings.
    pub settings: Vec<(String, String)>,
    /// Another PostgreSQL major than the one under test (see [`bin_dir_of`]).
    pub major: Option<u32>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            extension: true,
            settings: Vec::new(),
            major: None,
        }
    }
}

fn owned(settings: &[(&str, &str)]) -> Vec<(String, String)> {
    settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
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
                settings: owned(settings),
                ..ClusterOptions::default()
            },
        )
    }

    /// A cluster without the extension: only for checking the harness.
    pub fn start_without_extension(name: &str) -> Cluster {
        Cluster::start_opts(
            name,
            ClusterOptions {
                extension: false,
                ..ClusterOptions::default()
            },
        )
    }

    /// A cluster of another PostgreSQL major, with the extension (installed for that major).
    pub fn start_major(name: &str, major: u32, settings: &[(&str, &str)]) -> Cluster {
        Cluster::start_opts(
            name,
            ClusterOptions {
                settings: owned(settings),
                major: Some(major),
                ..ClusterOptions::default()
            },
        )
    }

    pub fn start_opts(name: &str, opts: ClusterOptions) -> Cluster {
        let bin = opts
            .major
            .map(bin_dir_of)
            .unwrap_or_else(|| bin_dir().to_path_buf());
        let library = PathBuf::from(pg_config_of(&bin, "pkglibdir")).join("backup_ext.so");
        if opts.extension && !library.exists() {
            panic!(
                "{} does not exist; install the extension first with \
                 `cargo pgrx install --pg-config {}/pg_config`",
                library.display(),
                bin.display()
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
            bin,
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
        if opts.extension {
            // The free-space guardrail's default (1 GB or 5 % of the filesystem) would make the
            // tests depend on how full this machine's disk is. In postgresql.conf, so that a
            // test's ALTER SYSTEM (the guardrail's own test) overrides it.
            let conf = cluster.data.join("postgresql.conf");
            let mut text = fs::read_to_string(&conf).expect("read postgresql.conf");
            text.push_str("\nbackup_ext.min_free_space = '64MB'\n");
            fs::write(&conf, text).expect("write postgresql.conf");
        }

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

    /// The directory of this cluster's PostgreSQL programs.
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// Path of a program of the PostgreSQL under test.
    pub fn bin(name: &str) -> PathBuf {
        bin_dir().join(name)
    }

    /// `ALTER SYSTEM SET name = value` and a reload, returning once a new session sees the
    /// value (the postmaster rereads the file asynchronously).
    pub fn set_and_reload(&self, name: &str, value: &str) {
        let mut client = self.client("postgres");
        client
            .batch_execute(&format!(
                "ALTER SYSTEM SET {name} = '{}'",
                value.replace('\'', "''")
            ))
            .unwrap_or_else(|e| panic!("ALTER SYSTEM SET {name}: {}", describe(&e)));
        client.batch_execute("SELECT pg_reload_conf()").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let seen: String = self
                .client("postgres")
                .query_one(&format!("SHOW {name}"), &[])
                .unwrap()
                .get(0);
            if seen == value {
                return;
            }
            assert!(Instant::now() < deadline, "{name} is still {seen:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
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
            c.arg(self.bin.join(name));
            c
        } else {
            Command::new(self.bin.join(name))
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
