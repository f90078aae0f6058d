//! The cluster under test: the connection, PostgreSQL tools run as `postgres` against it,
//! backup_ext jobs enqueued and waited for, and the scratch files the baseline tools write.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use postgres::types::ToSql;
use postgres::{Client, NoTls};

use crate::args::Args;
use crate::{Context, Res};

const WAIT_TIMEOUT: &str = "6 hours";

pub(crate) struct ExtRun {
    pub(crate) client: f64,
    pub(crate) catalog: f64,
    pub(crate) job_ids: Vec<i64>,
}

/// A setting as a new session sees it.
pub(crate) struct Setting {
    pub(crate) value: String,
    /// The value in postgresql.auto.conf (ALTER SYSTEM), None if it is not set there.
    pub(crate) configured: Option<String>,
}

pub(crate) struct Bench {
    pub(crate) a: Args,
    pub(crate) socket: String,
    pub(crate) scratch: PathBuf,
    pub(crate) db: Client,
    pub(crate) started: Instant,
}

pub(crate) fn connect(socket: &str, port: u16, dbname: &str) -> Res<Client> {
    postgres::Config::new()
        .host_path(socket)
        .port(port)
        .user("postgres")
        .dbname(dbname)
        .application_name("backup_ext_bench")
        .connect(NoTls)
        .context(|| format!("cannot connect to database {dbname} at {socket}, port {port}"))
}

pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub(crate) fn secs(f: impl FnOnce() -> Res<()>) -> Res<f64> {
    let t0 = Instant::now();
    f()?;
    Ok(t0.elapsed().as_secs_f64())
}

pub(crate) fn run(mut cmd: Command, what: &str) -> Res<()> {
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

pub(crate) fn remove_path(path: &Path) -> Res<()> {
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

pub(crate) fn files_under(path: &Path) -> Res<Vec<PathBuf>> {
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

pub(crate) fn devnull() -> Res<File> {
    File::create("/dev/null").context(|| "cannot open /dev/null".to_string())
}

pub(crate) fn sha256sum(paths: &[PathBuf]) -> Res<f64> {
    let mut cmd = Command::new("sha256sum");
    cmd.args(paths).stdout(devnull()?).stdin(Stdio::null());
    secs(|| run(cmd, "sha256sum"))
}

fn log(started: Instant, msg: &str) {
    eprintln!("[{:7.1}s] {msg}", started.elapsed().as_secs_f64());
}

impl Bench {
    pub(crate) fn log(&self, msg: &str) {
        log(self.started, msg);
    }

    pub(crate) fn tool(&self, program: &str) -> Command {
        self.tool_in(&self.a.pgbin, program)
    }

    /// `program` of the binaries in `bin`, run as `postgres` against the cluster.
    pub(crate) fn tool_in(&self, bin: &Path, program: &str) -> Command {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"])
            .arg(bin.join(program))
            .args(["-h", &self.socket, "-p", &self.a.port.to_string()])
            .args(["-U", "postgres"])
            .stdin(Stdio::null());
        c
    }

    /// A directory under the scratch area that the postgres user can write into.
    pub(crate) fn scratch_dir(&self, name: &str) -> Res<PathBuf> {
        let dir = self.scratch.join(name);
        remove_path(&dir)?;
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--", "mkdir", "-p"]).arg(&dir);
        run(cmd, &format!("mkdir {}", dir.display()))?;
        Ok(dir)
    }

    pub(crate) fn exec(&mut self, sql: &str) -> Res<()> {
        self.db
            .batch_execute(sql)
            .context(|| format!("SQL failed: {sql}"))
    }

    pub(crate) fn setting(&mut self, name: &str) -> Res<Setting> {
        let row = connect(&self.socket, self.a.port, "postgres")?
            .query_one(
                "SELECT setting, CASE WHEN sourcefile LIKE '%/postgresql.auto.conf' THEN setting END
                   FROM pg_settings WHERE name = $1",
                &[&name],
            )
            .context(|| format!("cannot read setting {name}"))?;
        Ok(Setting {
            value: row.get(0),
            configured: row.get(1),
        })
    }

    /// `ALTER SYSTEM SET name = value` (`RESET` for None), reload, and wait until a new session
    /// sees `want`.
    pub(crate) fn alter_system(&mut self, name: &str, value: Option<&str>, want: &str) -> Res<()> {
        let sql: String = self
            .db
            .query_one(
                "SELECT CASE WHEN $2::text IS NULL THEN format('ALTER SYSTEM RESET %s', $1::text)
                             ELSE format('ALTER SYSTEM SET %s = %L', $1::text, $2::text) END",
                &[&name, &value],
            )
            .context(|| format!("cannot build ALTER SYSTEM for {name}"))?
            .get(0);
        self.exec(&sql)?;
        self.exec("SELECT pg_reload_conf()")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.setting(name)?.value;
            if now == want {
                break;
            }
            if Instant::now() > deadline {
                return Err(
                    format!("{name} is still {now:?} 10 s after reloading for {want:?}").into(),
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
        // The worker rereads the file on SIGHUP; give it a moment.
        thread::sleep(Duration::from_millis(300));
        Ok(())
    }

    /// Puts back a setting read with `setting()` before `alter_system()` changed it.
    pub(crate) fn restore_setting(&mut self, name: &str, original: &Setting) -> Res<()> {
        self.alter_system(name, original.configured.as_deref(), &original.value)
    }

    pub(crate) fn drop_database(&mut self, name: &str) -> Res<()> {
        self.exec(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            ident(name)
        ))
    }

    pub(crate) fn wait(&mut self, job_id: i64) -> Res<()> {
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
    pub(crate) fn ext_job(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Res<ExtRun> {
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

    pub(crate) fn ext_paths(&mut self, job_ids: &[i64]) -> Res<Vec<PathBuf>> {
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

    pub(crate) fn remove_ext_outputs(&mut self, job_ids: &[i64]) -> Res<()> {
        for path in self.ext_paths(job_ids)? {
            remove_path(&path)?;
        }
        Ok(())
    }

    pub(crate) fn worker_pid(&mut self) -> Res<i32> {
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
}
