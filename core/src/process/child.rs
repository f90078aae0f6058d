//! A child process (pg_dump and friends) that cannot outlive its owner.
//!
//! The child runs in its own process group so that signals reach pg_dump's
//! parallel workers too, and so that a terminal or postmaster signal aimed
//! at our group does not hit it by accident. If the owner goes away without
//! reaping it (error, unwind), Drop kills the whole group.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// libpq variables that would override or add to the connection string
/// built by the extension (e.g. a password or options from the server's
/// environment leaking into the dump session).
pub const REMOVED_ENV: [&str; 8] = [
    "PGPASSWORD",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
    "PGHOST",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
];

const POLL_INTERVAL: Duration = Duration::from_millis(10);

static WAIT_HOOK: std::sync::OnceLock<fn() -> bool> = std::sync::OnceLock::new();

/// Something the process must keep doing while it waits for a child, and whether it must stop
/// waiting. The worker must answer the server's signal barriers: a DROP DATABASE run by the
/// child waits for every backend, the waiting worker included, to absorb one. A backend stops
/// waiting when its query is cancelled or times out.
pub fn set_wait_hook(hook: fn() -> bool) {
    let _ = WAIT_HOOK.set(hook);
}

pub struct ChildGuard {
    child: Child,
    pgid: libc::pid_t,
    status: Option<ExitStatus>,
}

impl ChildGuard {
    pub fn spawn(
        program: &Path,
        args: &[OsString],
        stdout_piped: bool,
        stderr_file: File,
    ) -> io::Result<ChildGuard> {
        Self::spawn_with(program, args, &[], false, stdout_piped, stderr_file)
    }

    /// Like [`ChildGuard::spawn`], with a pipe to the child's stdin that
    /// [`ChildGuard::take_stdin`] hands out.
    pub fn spawn_piped_stdin(
        program: &Path,
        args: &[OsString],
        stdout_piped: bool,
        stderr_file: File,
    ) -> io::Result<ChildGuard> {
        Self::spawn_with(program, args, &[], true, stdout_piped, stderr_file)
    }

    /// The general form: `env` is added after the libpq variables of
    /// [`REMOVED_ENV`] are removed (a per-job password travels this way,
    /// never in argv).
    pub fn spawn_with(
        program: &Path,
        args: &[OsString],
        env: &[(String, String)],
        stdin_piped: bool,
        stdout_piped: bool,
        stderr_file: File,
    ) -> io::Result<ChildGuard> {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(if stdin_piped {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(if stdout_piped {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::from(stderr_file))
            .process_group(0);
        for var in REMOVED_ENV {
            cmd.env_remove(var);
        }
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        let child = cmd.spawn()?;
        let pgid = libc::pid_t::try_from(child.id())
            .map_err(|_| io::Error::other("child process id out of range"))?;
        Ok(ChildGuard {
            child,
            pgid,
            status: None,
        })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The child's stdout, with the pipe enlarged so that the tool writes (and the reader
    /// wakes) in large chunks instead of the default 64 KiB.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        let stdout = self.child.stdout.take()?;
        enlarge_pipe(&stdout);
        Some(stdout)
    }

    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    /// Whether the group leader has exited, without reaping it. While the
    /// leader is an unreaped zombie its process group id cannot be reused,
    /// so signalling the group is still safe.
    fn exited_unreaped(&self) -> io::Result<bool> {
        loop {
            // SAFETY: siginfo_t is plain data; waitid only writes to it.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            let rc = unsafe {
                libc::waitid(
                    libc::P_PID,
                    self.pgid as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
                )
            };
            if rc == 0 {
                // SAFETY: waitid succeeded, so the pid field is initialised
                // (zero when the child has not exited yet).
                return Ok(unsafe { info.si_pid() } != 0);
            }
            let err = io::Error::last_os_error();
            if err.kind() != ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    fn signal_group(&self, signal: libc::c_int) {
        // SAFETY: plain syscall. Failure (ESRCH when the group is already
        // gone) needs no handling.
        unsafe {
            libc::killpg(self.pgid, signal);
        }
    }

    /// Reaps the leader once it has exited. Anything left in its group
    /// (a stray grandchild holding our stdout pipe open would make the
    /// stream thread wait forever) is killed first, while the zombie leader
    /// still pins the group id.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        if !self.exited_unreaped()? {
            return Ok(None);
        }
        self.signal_group(libc::SIGKILL);
        let status = self.child.wait()?;
        self.status = Some(status);
        Ok(Some(status))
    }

    /// Asks the whole group to stop (pg_dump exits cleanly on SIGTERM).
    pub fn terminate(&mut self) {
        if self.status.is_none() {
            self.signal_group(libc::SIGTERM);
        }
    }

    pub fn kill(&mut self) {
        if self.status.is_none() {
            self.signal_group(libc::SIGKILL);
        }
    }

    /// Waits at most `timeout` for the child to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            // The hook says true when the process must stop waiting (a backend whose query
            // was cancelled or timed out): the wait ends as if it had timed out.
            if WAIT_HOOK.get().is_some_and(|hook| hook()) {
                return Ok(None);
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// SIGTERM, then SIGKILL if the group has not gone after `grace`; always
    /// returns with the child reaped.
    pub fn shutdown(&mut self, grace: Duration) -> io::Result<ExitStatus> {
        self.terminate();
        if let Some(status) = self.wait_timeout(grace)? {
            return Ok(status);
        }
        self.kill();
        let status = self.child.wait()?;
        self.status = Some(status);
        Ok(status)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.status.is_none() {
            self.signal_group(libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// Pipe capacity asked for; 1 MiB is the default limit for unprivileged processes.
const PIPE_BYTES: libc::c_int = 1 << 20;

fn enlarge_pipe(fd: &impl std::os::unix::io::AsRawFd) {
    // Best effort: a smaller pipe only costs more wake-ups.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BYTES) };
}

/// The end of a stderr log for an error message: at most `max_bytes`,
/// starting on a character boundary, invalid UTF-8 replaced, trimmed.
pub fn stderr_tail(path: &Path, max_bytes: usize) -> String {
    let read = || -> io::Result<Vec<u8>> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        let max = u64::try_from(max_bytes).unwrap_or(u64::MAX);
        file.seek(SeekFrom::Start(len.saturating_sub(max)))?;
        let mut buf = Vec::new();
        file.take(max).read_to_end(&mut buf)?;
        Ok(buf)
    };
    match read() {
        Ok(buf) => {
            // Skip UTF-8 continuation bytes cut off from their lead byte.
            let start = buf
                .iter()
                .take(3)
                .take_while(|b| (**b & 0xC0) == 0x80)
                .count();
            String::from_utf8_lossy(&buf[start..]).trim().to_string()
        }
        Err(e) => format!("(could not read {}: {e})", path.display()),
    }
}

/// Drops the `--verbose` progress chatter (`pg_dump: reading extensions`) from a stderr tail so
/// that the error itself leads the message; keeps everything when nothing else is left.
pub fn without_progress_lines(text: &str, program: &str) -> String {
    let prefix = format!("{program}: ");
    let kept: Vec<&str> = text
        .lines()
        .filter(|line| match line.strip_prefix(&prefix) {
            Some(rest) => ["error:", "detail:", "hint:", "warning:", "fatal:"]
                .iter()
                .any(|level| rest.starts_with(level)),
            None => true,
        })
        .collect();
    if kept.iter().all(|l| l.trim().is_empty()) {
        text.to_string()
    } else {
        kept.join("\n").trim().to_string()
    }
}

pub fn describe_exit(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) if status.core_dumped() => {
            format!("killed by signal {sig} (core dumped)")
        }
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => format!("ended with status {status}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;
    use std::fs;

    fn sh(script: &str, stdout_piped: bool, dir: &TempDir) -> ChildGuard {
        let stderr = File::create(dir.path().join("stderr")).unwrap();
        ChildGuard::spawn(
            Path::new("/bin/sh"),
            &["-c".into(), script.into()],
            stdout_piped,
            stderr,
        )
        .unwrap()
    }

    fn alive(pid: u32) -> bool {
        unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
    }

    #[test]
    fn stdout_stderr_and_exit_code() {
        let dir = TempDir::new("child");
        let mut c = sh("printf abc; echo oops >&2; exit 3", true, &dir);
        let mut out = String::new();
        let stdout = c.take_stdout().unwrap();
        let size = unsafe {
            libc::fcntl(
                std::os::unix::io::AsRawFd::as_raw_fd(&stdout),
                libc::F_GETPIPE_SZ,
            )
        };
        assert_eq!(size, PIPE_BYTES);
        let mut stdout = stdout;
        stdout.read_to_string(&mut out).unwrap();
        assert!(c.take_stdout().is_none());
        let status = c.wait_timeout(Duration::from_secs(10)).unwrap().unwrap();
        assert_eq!(out, "abc");
        assert_eq!(describe_exit(status), "exited with code 3");
        assert_eq!(
            without_progress_lines(
                "pg_dump: last built-in OID is 16383\npg_dump: reading extensions\n\
                 pg_dump: error: no matching tables were found\npg_dump: detail: x",
                "pg_dump"
            ),
            "pg_dump: error: no matching tables were found\npg_dump: detail: x"
        );
        assert_eq!(
            without_progress_lines("pg_dump: reading extensions", "pg_dump"),
            "pg_dump: reading extensions"
        );
        assert_eq!(stderr_tail(&dir.path().join("stderr"), 100), "oops");
        assert_eq!(c.try_wait().unwrap(), Some(status));
    }

    #[test]
    fn environment_is_scrubbed() {
        let dir = TempDir::new("child");
        std::env::set_var("PGPASSWORD", "secret");
        let mut c = sh("printf '%s' \"${PGPASSWORD-unset}\"", true, &dir);
        let mut out = String::new();
        c.take_stdout().unwrap().read_to_string(&mut out).unwrap();
        c.wait_timeout(Duration::from_secs(10)).unwrap().unwrap();
        assert_eq!(out, "unset");
    }

    #[test]
    fn runs_in_its_own_process_group() {
        let dir = TempDir::new("child");
        let mut c = sh("sleep 30", false, &dir);
        let pgid = unsafe { libc::getpgid(c.id() as libc::pid_t) };
        assert_eq!(pgid, c.id() as libc::pid_t);
        assert_ne!(pgid, unsafe { libc::getpgrp() });
        let status = c.shutdown(Duration::from_secs(5)).unwrap();
        assert_eq!(describe_exit(status), "killed by signal 15");
    }

    #[test]
    fn shutdown_escalates_to_sigkill() {
        let dir = TempDir::new("child");
        let mut c = sh("trap '' TERM; sleep 30", false, &dir);
        std::thread::sleep(Duration::from_millis(100));
        let t = Instant::now();
        let status = c.shutdown(Duration::from_millis(300)).unwrap();
        assert!(t.elapsed() < Duration::from_secs(5));
        assert_eq!(describe_exit(status), "killed by signal 9");
    }

    #[test]
    fn drop_kills_the_group() {
        let dir = TempDir::new("child");
        let c = sh("sleep 30 & echo $! >&2; wait", false, &dir);
        let leader = c.id();
        // Wait for the grandchild's pid to appear in stderr.
        let stderr = dir.path().join("stderr");
        let deadline = Instant::now() + Duration::from_secs(10);
        let grandchild: u32 = loop {
            if let Ok(pid) = fs::read_to_string(&stderr).unwrap().trim().parse() {
                break pid;
            }
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(10));
        };
        drop(c);
        assert!(!alive(leader));
        let deadline = Instant::now() + Duration::from_secs(5);
        // The grandchild is reparented to init, which reaps it shortly.
        while alive(grandchild) {
            assert!(Instant::now() < deadline, "grandchild survived");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn missing_program() {
        let dir = TempDir::new("child");
        let f = File::create(dir.path().join("e")).unwrap();
        let err = ChildGuard::spawn(Path::new("/nonexistent/pg_dump"), &[], true, f)
            .err()
            .unwrap();
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn tail_cuts_on_char_boundary() {
        let dir = TempDir::new("child");
        let p = dir.path().join("log");
        fs::write(&p, "line one\nünïcödé end\n").unwrap();
        assert_eq!(stderr_tail(&p, 1000), "line one\nünïcödé end");
        // "dé end\n" is 8 bytes; 9 bytes would start inside "ö".
        assert_eq!(stderr_tail(&p, 9), "dé end");
        assert_eq!(stderr_tail(&p, 0), "");
        fs::write(&p, b"\xff\xfe bad\n").unwrap();
        assert_eq!(stderr_tail(&p, 100), "\u{fffd}\u{fffd} bad");
        assert!(stderr_tail(&dir.path().join("none"), 10).starts_with("(could not read"));
    }

    #[test]
    fn describes_signals() {
        assert_eq!(describe_exit(ExitStatus::from_raw(9)), "killed by signal 9");
        assert_eq!(
            describe_exit(ExitStatus::from_raw(1 << 8)),
            "exited with code 1"
        );
        assert_eq!(describe_exit(ExitStatus::from_raw(0)), "exited with code 0");
    }
}
