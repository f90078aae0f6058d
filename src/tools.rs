//! Which dump tools are installed and what they can do.
//!
//! Versions and capabilities are asked of the binaries themselves (`backup_core::probe`), once
//! per `bin_dir` and binary: the probe is keyed by the directory and the size and modification
//! time of pg_dump and pg_restore, so replacing the tools (a package upgrade, a new
//! `backup_ext.bin_dir`) is noticed at the next call. The capabilities are shared by every
//! backend and the worker through shared memory; the version lines, which are only recorded
//! on jobs, are kept per process.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use backup_core::{ArchiveVersion, DumpTool, ToolCapabilities};
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};

use crate::settings;

/// The probed capabilities of one `bin_dir`, in a form that fits in shared memory.
#[derive(Clone, Copy, Default)]
struct Shared {
    key: u64,
    dump: DumpTool,
    restore_major: u32,
    reads_up_to: ArchiveVersion,
}

unsafe impl PGRXSharedMemory for Shared {}

static SHARED: PgLwLock<Shared> = unsafe { PgLwLock::new(c"backup_ext_tool_capabilities") };
static SHMEM_REQUESTED: AtomicBool = AtomicBool::new(false);

/// Reserves the shared memory; only from `_PG_init` while preloading.
pub fn init_shmem() {
    pg_shmem_init!(SHARED);
    SHMEM_REQUESTED.store(true, Ordering::SeqCst);
}

/// Per process: `(key, capabilities with version lines)` of the last probe.
static LOCAL: Mutex<Option<HashMap<PathBuf, (u64, ToolCapabilities)>>> = Mutex::new(None);

/// What identifies one build of `tools` in `bin_dir`: the directory and each program's size,
/// inode and modification time. Never 0, which means "nothing cached" in shared memory.
fn stamp(bin_dir: &Path, tools: &[&str]) -> Result<u64, String> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bin_dir.hash(&mut h);
    for tool in tools {
        let program = bin_dir.join(tool);
        let meta = std::fs::metadata(&program)
            .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
        (meta.size(), meta.mtime(), meta.mtime_nsec(), meta.ino()).hash(&mut h);
    }
    Ok(h.finish().max(1))
}

/// The build of pg_dump and pg_restore in `bin_dir`, which the capabilities belong to.
fn key_of(bin_dir: &Path) -> Result<u64, String> {
    stamp(bin_dir, &["pg_dump", "pg_restore"])
}

fn probe_now(bin_dir: &Path) -> Result<ToolCapabilities, String> {
    let probe_dir = settings::directory()
        .join(".work")
        .join(format!("probe-{}", std::process::id()));
    backup_core::create_private_dir(&probe_dir)
        .map_err(|e| format!("cannot create {}: {e}", probe_dir.display()))?;
    let probed = backup_core::probe(bin_dir, &probe_dir);
    let _ = std::fs::remove_dir_all(&probe_dir);
    probed
}

/// The capabilities of the tools in `bin_dir`, probed at most once per build of the tools.
pub fn capabilities(bin_dir: &Path) -> Result<ToolCapabilities, String> {
    let key = key_of(bin_dir)?;
    if let Ok(guard) = LOCAL.lock() {
        if let Some((k, caps)) = guard.as_ref().and_then(|m| m.get(bin_dir)) {
            if *k == key {
                return Ok(caps.clone());
            }
        }
    }
    let caps = probe_now(bin_dir)?;
    if let Ok(mut guard) = LOCAL.lock() {
        guard
            .get_or_insert_with(HashMap::new)
            .insert(bin_dir.to_path_buf(), (key, caps.clone()));
    }
    Ok(caps)
}

/// What the configured pg_dump accepts. Shared between processes: only the first backend (or
/// the worker) to need it after the tools changed runs the probe.
pub fn dump_tool() -> Result<DumpTool, String> {
    shared(&settings::bin_dir()).map(|s| s.dump)
}

/// What a schedule command is checked against: the probed pg_dump; when it cannot be probed,
/// what every pg_dump accepts (gzip levels), so the command is refused only for what it asks.
pub fn schedule_dump_tool() -> DumpTool {
    dump_tool().unwrap_or_else(|_| DumpTool::by_version(15))
}

/// The newest archive version the configured pg_restore reads, and its major version.
pub fn restore_reads() -> Result<(u32, ArchiveVersion), String> {
    shared(&settings::bin_dir()).map(|s| (s.restore_major, s.reads_up_to))
}

fn shared(bin_dir: &Path) -> Result<Shared, String> {
    let key = key_of(bin_dir)?;
    let ready = SHMEM_REQUESTED.load(Ordering::SeqCst);
    if ready {
        let cached = *SHARED.share();
        if cached.key == key {
            return Ok(cached);
        }
    }
    let caps = capabilities(bin_dir)?;
    let entry = Shared {
        key,
        dump: caps.dump,
        restore_major: caps.restore_major,
        reads_up_to: caps.reads_up_to,
    };
    if ready {
        *SHARED.exclusive() = entry;
    }
    Ok(entry)
}

/// Version lines of the other tools (pg_dumpall, psql), per process: `(major, version line)`
/// by program, with the [`stamp`] of the build they were read from.
type Versions = HashMap<PathBuf, (u64, (u32, String))>;
static OTHER_VERSIONS: Mutex<Option<Versions>> = Mutex::new(None);

/// `(major, version line)` of `<bin_dir>/<tool>`.
pub fn tool_version(bin_dir: &Path, tool: &str) -> Result<(u32, String), String> {
    match tool {
        "pg_dump" => return capabilities(bin_dir).map(|c| (c.dump.major, c.dump_version)),
        "pg_restore" => return capabilities(bin_dir).map(|c| (c.restore_major, c.restore_version)),
        _ => {}
    }
    let program = bin_dir.join(tool);
    let stamp = stamp(bin_dir, &[tool])?;
    if let Ok(guard) = OTHER_VERSIONS.lock() {
        if let Some((s, found)) = guard.as_ref().and_then(|m| m.get(&program)) {
            if *s == stamp {
                return Ok(found.clone());
            }
        }
    }
    let parsed = backup_core::version_of(&program)?;
    if let Ok(mut guard) = OTHER_VERSIONS.lock() {
        guard
            .get_or_insert_with(HashMap::new)
            .insert(program, (stamp, parsed.clone()));
    }
    Ok(parsed)
}

/// Forgets what this process cached, e.g. after `backup_ext.bin_dir` changed on reload (the
/// shared entry is keyed by the binaries and needs no forgetting).
pub fn forget_versions() {
    if let Ok(mut guard) = LOCAL.lock() {
        *guard = None;
    }
    if let Ok(mut guard) = OTHER_VERSIONS.lock() {
        *guard = None;
    }
}

/// How the tools connect to this server: over its first unix socket, as `backup_ext.role` (or
/// the bootstrap superuser). Inside a transaction (SPI).
pub fn tool_connection() -> Result<backup_core::Connection, String> {
    let (socket_dir, port, superuser) = (|| {
        let (socket, port) = crate::catalog::local_socket()?;
        Ok::<_, pgrx::spi::Error>((socket, port, crate::catalog::bootstrap_superuser()?))
    })()
    .map_err(|e| e.to_string())?;
    let socket_dir = socket_dir
        .split(',')
        .map(str::trim)
        .find(|s| !s.is_empty())
        .ok_or("unix_socket_directories is empty: the dump tools connect over a local socket")?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("cannot read port {port:?}"))?;
    Ok(backup_core::Connection {
        socket_dir: socket_dir.into(),
        port,
        user: settings::role().unwrap_or(superuser),
        application_name: "backup_ext".into(),
    })
}
