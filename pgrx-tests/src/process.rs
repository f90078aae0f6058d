//! Processes and the operating system: running tools, users and ownership,
//! ports, and servers left behind by earlier runs.

use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use crate::paths::path_str;
use crate::{Cluster, PG_USER};

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

/// A TCP port nothing listens on right now (for servers, and for endpoints that must refuse).
pub fn free_port() -> u16 {
    // The server only listens on its own socket directory, so a port only
    // names the socket file; a free TCP port keeps it unique anyway.
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(55432)
}

pub(crate) fn running_as_root() -> bool {
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

pub(crate) fn pg_user_ids() -> (u32, u32) {
    let passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() > 3 && f[0] == PG_USER {
            return (f[2].parse().unwrap(), f[3].parse().unwrap());
        }
    }
    panic!("no user {PG_USER} in /etc/passwd");
}

/// Gives `path` to the PostgreSQL OS user, so the server can read it.
pub fn chown_postgres(path: &Path) {
    let (uid, gid) = pg_user_ids();
    chown(path, uid, gid);
}

pub(crate) fn chown(path: &Path, uid: u32, gid: u32) {
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

pub(crate) fn stop_stale_server(dir: &Path) {
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
/// exist (e.g. killed runs), stopping their servers (PostgreSQL, weed) first.
pub(crate) fn sweep_stale_dirs(scratch: &Path) {
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
        crate::seaweed::stop_stale_weed(&entry.path());
        let _ = fs::remove_dir_all(entry.path());
    }
}

impl Cluster {
    /// The postmaster's process id, from postmaster.pid.
    pub fn postmaster_pid(&self) -> Option<u32> {
        let text = fs::read_to_string(self.data.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// Processes named `pg_dump` or `pg_dumpall` that descend from this
    /// cluster's postmaster.
    pub fn dump_processes(&self) -> Vec<u32> {
        self.tool_processes(&["pg_dump", "pg_dumpall"])
    }

    /// Processes with one of these names that descend from this cluster's
    /// postmaster (read from /proc: no procps needed).
    pub fn tool_processes(&self, names: &[&str]) -> Vec<u32> {
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
            if !names.contains(&comm) {
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
