//! The S3 server of the S3 part: SeaweedFS's `weed mini` serving one bucket on free loopback
//! ports, in a directory of its own under the scratch area, with an AWS shared-credentials file
//! the `postgres` user can read. Started the way the end-to-end tests start theirs
//! (`pgrx-tests/src/seaweed.rs`); stopped at the end of the part, and killed if the benchmark
//! fails on the way.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::cluster::{remove_path, run};
use crate::{Context, Res};

/// About 1.5 s when the machine is idle.
const START_DEADLINE: Duration = Duration::from_secs(60);
/// The filer and volume servers drain first: about 2–3 s.
const STOP_DEADLINE: Duration = Duration::from_secs(30);
const KILL_DEADLINE: Duration = Duration::from_secs(10);
/// weed mini puts each server's gRPC port 10000 above its HTTP port (its admin worker dials
/// the admin server there whatever `-admin.port.grpc` says), so both must be free.
const GRPC_OFFSET: u16 = 10000;
const SERVERS: [&str; 5] = ["s3", "filer", "master", "volume", "admin"];
pub(crate) const BUCKET: &str = "backup-ext-bench";

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}
const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

/// A running `weed mini`. Dropping it kills the server and removes its directory.
pub(crate) struct Seaweed {
    root: PathBuf,
    /// weed's `-dir`; it also names the server's process (weed re-executes itself, so the pid
    /// it was started with is not the server's).
    data: PathBuf,
    pub(crate) log: PathBuf,
    /// `http://127.0.0.1:<s3 port>`; clients must use path-style addressing.
    pub(crate) endpoint: String,
    /// `[default]` holds the only identity's keys; mode 0600, owned by `postgres`.
    pub(crate) credentials_file: PathBuf,
    ports: [u16; 5],
    child: Option<Child>,
}

impl Seaweed {
    /// Starts a server with an empty bucket [`BUCKET`] in `root` (emptied first; a server left
    /// there by an earlier run that died is killed).
    pub(crate) fn start(weed: &Path, root: &Path) -> Res<Seaweed> {
        stop_stale(root);
        remove_path(root)?;
        let aws = root.join("aws");
        fs::create_dir_all(&aws).context(|| format!("cannot create {}", aws.display()))?;
        fs::set_permissions(root, fs::Permissions::from_mode(0o755))
            .context(|| format!("cannot chmod {}", root.display()))?;
        fs::set_permissions(&aws, fs::Permissions::from_mode(0o700))
            .context(|| format!("cannot chmod {}", aws.display()))?;

        let (access_key, secret_key) = new_keys()?;
        let s3_config = format!(
            "{{\"identities\":[{{\"name\":\"backup_ext_bench\",\"credentials\":[{{\"accessKey\":\"{access_key}\",\"secretKey\":\"{secret_key}\"}}],\"actions\":[\"Admin\",\"Read\",\"Write\",\"List\",\"Tagging\"]}}]}}"
        );
        write_private(&root.join("s3.json"), &s3_config)?;
        let credentials_file = aws.join("credentials");
        write_private(
            &credentials_file,
            &format!(
                "[default]\naws_access_key_id = {access_key}\naws_secret_access_key = {secret_key}\n"
            ),
        )?;
        let mut chown = Command::new("chown");
        chown.args(["-R", "postgres:postgres"]).arg(&aws);
        run(chown, "chown of the S3 credentials")?;

        let mut server = Seaweed {
            data: root.join("data"),
            log: root.join("weed.log"),
            root: root.to_path_buf(),
            endpoint: String::new(),
            credentials_file,
            ports: [0; 5],
            child: None,
        };
        // Ports are only probed free; another process may take one before weed binds it (weed
        // then exits: "port ... is not available"). Try again on fresh ones.
        for attempt in 1..=3 {
            server.ports = pick_ports()?;
            server.endpoint = format!("http://127.0.0.1:{}", server.ports[0]);
            remove_path(&server.data)?;
            fs::create_dir_all(&server.data)
                .context(|| format!("cannot create {}", server.data.display()))?;
            let log_start = fs::metadata(&server.log).map_or(0, |m| m.len());
            match server.launch(weed) {
                Ok(()) => return Ok(server),
                Err(why) => {
                    server.signal_until_gone(&[(SIGKILL, KILL_DEADLINE)])?;
                    let text = server.log_text();
                    let this_attempt = text.get(log_start as usize..).unwrap_or(&text);
                    let port_taken = this_attempt.contains("not available")
                        || this_attempt.contains("address already in use");
                    if attempt == 3 || !port_taken {
                        return Err(format!("{why}; weed log:\n{}", server.log_tail(30)).into());
                    }
                }
            }
        }
        unreachable!("the last attempt returns")
    }

    /// The server's processes.
    pub(crate) fn pids(&self) -> Vec<u32> {
        server_pids(&self.data)
    }

    /// A clean stop: SIGTERM, then SIGKILL if the server lingers; then the directory goes.
    pub(crate) fn stop(mut self) -> Res<()> {
        self.signal_until_gone(&[(SIGTERM, STOP_DEADLINE), (SIGKILL, KILL_DEADLINE)])?;
        remove_path(&self.root)
    }

    fn args(&self) -> Vec<String> {
        let path = |p: &Path| p.to_string_lossy().into_owned();
        let mut args = vec![
            "mini".to_string(),
            format!("-dir={}", path(&self.data)),
            "-ip=127.0.0.1".to_string(),
            "-ip.bind=127.0.0.1".to_string(),
            format!("-bucket={BUCKET}"),
            "-master.telemetry=false".to_string(),
            format!("-s3.config={}", path(&self.root.join("s3.json"))),
            // Otherwise /tmp/seaweedfs-<server>-<port>.sock, left behind after a stop.
            format!("-filer.localSocket={}", path(&self.root.join("filer.sock"))),
            format!("-s3.localSocket={}", path(&self.root.join("s3.sock"))),
            // Listeners on fixed default ports that nothing here uses.
            "-webdav=false".to_string(),
            "-s3.port.iceberg=0".to_string(),
            "-s3.port.lance=0".to_string(),
            "-volume.preStopSeconds=0".to_string(),
        ];
        for (server, port) in SERVERS.iter().zip(self.ports) {
            args.push(format!("-{server}.port={port}"));
            args.push(format!("-{server}.port.grpc={}", port + GRPC_OFFSET));
        }
        args
    }

    /// Spawns weed and waits until it serves the bucket: S3 answers, the filer has the bucket
    /// (S3 answers a moment before it does), and the master knows the volume server.
    fn launch(&mut self, weed: &Path) -> Res<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .context(|| format!("cannot open {}", self.log.display()))?;
        let log_err = log
            .try_clone()
            .context(|| format!("cannot open {}", self.log.display()))?;
        let child = Command::new(weed)
            .args(self.args())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .current_dir(&self.root)
            .spawn()
            .context(|| format!("cannot run {}", weed.display()))?;
        self.child = Some(child);
        let started = Instant::now();
        let [s3, filer, master, volume, _] = self.ports;
        let ok = |port, path: &str| http_get(port, path).filter(|(status, _)| *status == 200);
        let volume_server = format!("\"Url\":\"127.0.0.1:{volume}\"");
        loop {
            let serves = http_get(s3, "/").is_some()
                && ok(filer, &format!("/buckets/{BUCKET}/")).is_some()
                && ok(master, "/dir/status").is_some_and(|(_, body)| body.contains(&volume_server));
            if serves {
                return Ok(());
            }
            if self.reap_child() && server_pids(&self.data).is_empty() {
                return Err("weed mini exited while starting".into());
            }
            if started.elapsed() > START_DEADLINE {
                return Err(format!(
                    "weed mini did not serve bucket {BUCKET} on port {s3} within {START_DEADLINE:?}"
                )
                .into());
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the spawned process has exited (reaping it).
    fn reap_child(&mut self) -> bool {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => false,
            _ => {
                self.child = None;
                true
            }
        }
    }

    /// Sends each signal in turn, each time waiting up to its deadline for the server to go.
    fn signal_until_gone(&mut self, signals: &[(i32, Duration)]) -> Res<()> {
        for &(signal, deadline) in signals {
            let started = Instant::now();
            let mut signalled = Vec::new();
            loop {
                self.reap_child();
                let pids = server_pids(&self.data);
                if pids.is_empty() {
                    remove_grpc_sockets(&self.ports);
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
                thread::sleep(Duration::from_millis(50));
            }
        }
        Err(format!("weed mini in {} did not exit", self.root.display()).into())
    }

    fn log_text(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        // After stop() nothing is left; on an error on the way, the data needs no clean stop.
        if !server_pids(&self.data).is_empty() {
            if let Err(e) = self.signal_until_gone(&[(SIGKILL, KILL_DEADLINE)]) {
                eprintln!("{e}");
            }
        }
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// Five free loopback ports P, each with P + [`GRPC_OFFSET`] free too (the listeners probing
/// them are held until all are chosen, so they are distinct).
fn pick_ports() -> Res<[u16; 5]> {
    let mut held = Vec::new();
    let mut chosen = Vec::new();
    while chosen.len() < 5 {
        let first = TcpListener::bind("127.0.0.1:0")
            .context(|| "cannot bind a loopback port".to_string())?;
        let port = first
            .local_addr()
            .context(|| "cannot read a local address".to_string())?
            .port();
        held.push(first);
        if port > u16::MAX - GRPC_OFFSET {
            continue;
        }
        if let Ok(grpc) = TcpListener::bind(("127.0.0.1", port + GRPC_OFFSET)) {
            held.push(grpc);
            chosen.push(port);
        }
    }
    Ok([chosen[0], chosen[1], chosen[2], chosen[3], chosen[4]])
}

/// Kills weed servers whose data directory lies in `root`: left by a benchmark that died.
fn stop_stale(root: &Path) {
    let prefix = format!("-dir={}/", root.to_string_lossy());
    let stale = || processes_with_arg(|arg| arg.starts_with(&prefix));
    for pid in stale() {
        // SAFETY: kill(2) on a pid read from /proc just now.
        unsafe { kill(pid as i32, SIGKILL) };
    }
    let deadline = Instant::now() + KILL_DEADLINE;
    while !stale().is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
}

/// weed puts a unix socket beside each gRPC port and removes it only on a clean stop.
fn remove_grpc_sockets(ports: &[u16; 5]) {
    for (server, port) in SERVERS.iter().zip(ports) {
        let grpc = port + GRPC_OFFSET;
        let _ = fs::remove_file(format!("/tmp/seaweedfs-{server}-grpc-{grpc}.sock"));
    }
}

/// The processes running weed on this data directory (an exited, unreaped process has an empty
/// command line, so it is not among them).
fn server_pids(data: &Path) -> Vec<u32> {
    let arg = format!("-dir={}", data.to_string_lossy());
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

/// An access key (20 characters, like AWS's) and a secret (40 hex digits) from /dev/urandom.
fn new_keys() -> Res<(String, String)> {
    let mut bytes = [0u8; 28];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context(|| "cannot read /dev/urandom".to_string())?;
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let access = format!("AKBENCH{}", hex(&bytes[..8]).to_ascii_uppercase());
    Ok((access[..20].to_string(), hex(&bytes[8..])))
}

/// Writes a file only its owner can read, created with that mode.
fn write_private(path: &Path, text: &str) -> Res<()> {
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .context(|| format!("cannot write {}", path.display()))
}
