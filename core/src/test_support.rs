//! Scratch directories for tests, removed when dropped.

pub mod seaweed;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("backup_core-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An executable `/bin/sh` script called `name` in `dir/bin`, standing in
/// for one of the PostgreSQL tools.
pub fn fake_tool(dir: &TempDir, name: &str, body: &str) -> crate::process::command::ToolCommand {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let path = bin.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    crate::process::command::ToolCommand {
        program: path,
        args: Vec::new(),
        env: Vec::new(),
    }
}

/// Polls a job until it reports, failing the test after 20 seconds.
pub fn poll_job(run: &mut dyn crate::job::JobRun) -> crate::job::JobResult {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(r) = run.poll() {
            return r;
        }
        assert!(std::time::Instant::now() < deadline, "job did not finish");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Runs `start` again while it fails with "text file busy": a script just written by this test
/// binary can be briefly held open for writing by a child another test thread is forking.
pub fn retry_busy<T>(mut start: impl FnMut() -> std::io::Result<T>) -> T {
    for _ in 0..20 {
        match start() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other.unwrap(),
        }
    }
    panic!("text file still busy after 20 attempts")
}
