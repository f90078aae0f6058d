//! The compression table: pg_dump's compression methods, run by the extension with the tools of
//! a newer PostgreSQL (`--compression-bin`) against this server. For each method and database:
//! the backup's time through the extension, the same pg_dump run by hand, the archive's size as
//! the catalog records it, and the time of pg_restore into a new database.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::cases::ENQUEUE_SQL;
use crate::cluster::{connect, remove_path, run, secs, Bench};
use crate::setup::{BIG_DB, TEXT_DB};
use crate::stats::median;
use crate::{Context, Res};

pub(crate) const BIN_DIR: &str = "backup_ext.bin_dir";
const RESTORE_DB: &str = "bench_restore_compression";
/// To be recommended, a method's backup takes at most this times gzip 6's on every database.
pub(crate) const BACKUP_SLACK: f64 = 1.05;

/// All that pg_restore 17 prints when it restores into a server older than 17: it sets
/// transaction_timeout, which such a server does not know, ignores that error, restores
/// everything else and exits 1.
const KNOWN_RESTORE_ERROR: [&str; 3] = [
    "pg_restore: error: could not execute query: ERROR:  unrecognized configuration parameter \"transaction_timeout\"",
    "Command was: SET transaction_timeout = 0;",
    "pg_restore: warning: errors ignored on restore: 1",
];

pub(crate) struct Method {
    pub(crate) name: &'static str,
    short: &'static str,
    pub(crate) format: &'static str,
    /// None: pg_dump's default, gzip level 6.
    pub(crate) compress: Option<&'static str>,
    pub(crate) jobs: Option<i32>,
    pub(crate) pg_dump_args: &'static [&'static str],
    /// The by-hand output under the scratch directory.
    output: &'static str,
}

impl Method {
    pub(crate) fn is_default(&self) -> bool {
        self.format == "custom" && self.compress.is_none()
    }

    /// The method in a sentence: its compress argument.
    pub(crate) fn label(&self) -> String {
        self.compress
            .map_or_else(|| "gzip 6".to_string(), |c| format!("`{c}`"))
    }

    pub(crate) fn ext_call(&self) -> String {
        let mut call = format!("backup_database(db, format => '{}'", self.format);
        if let Some(c) = self.compress {
            let _ = write!(call, ", compress => '{c}'");
        }
        if let Some(j) = self.jobs {
            let _ = write!(call, ", jobs => {j}");
        }
        call.push(')');
        call
    }
}

pub(crate) static METHODS: [Method; 6] = [
    Method {
        name: "custom, gzip 6 (default)",
        short: "gzip6",
        format: "custom",
        compress: None,
        jobs: None,
        pg_dump_args: &["-Fc"],
        output: "gzip6.dump",
    },
    Method {
        name: "custom, gzip 1",
        short: "gzip1",
        format: "custom",
        compress: Some("gzip:1"),
        jobs: None,
        pg_dump_args: &["-Fc", "--compress=gzip:1"],
        output: "gzip1.dump",
    },
    Method {
        name: "custom, lz4",
        short: "lz4",
        format: "custom",
        compress: Some("lz4"),
        jobs: None,
        pg_dump_args: &["-Fc", "--compress=lz4"],
        output: "lz4.dump",
    },
    Method {
        name: "custom, zstd 3",
        short: "zstd3",
        format: "custom",
        compress: Some("zstd:3"),
        jobs: None,
        pg_dump_args: &["-Fc", "--compress=zstd:3"],
        output: "zstd3.dump",
    },
    Method {
        name: "custom, zstd 9",
        short: "zstd9",
        format: "custom",
        compress: Some("zstd:9"),
        jobs: None,
        pg_dump_args: &["-Fc", "--compress=zstd:9"],
        output: "zstd9.dump",
    },
    Method {
        name: "directory, zstd 3, jobs 2",
        short: "dir-zstd3-j2",
        format: "directory",
        compress: Some("zstd:3"),
        jobs: Some(2),
        pg_dump_args: &["-Fd", "-j2", "--compress=zstd:3"],
        output: "zstd3.dir",
    },
];

/// Seconds per run, and the archive's size.
pub(crate) struct MethodResult {
    pub(crate) method: &'static Method,
    /// Through the extension: from the enqueuing call until wait_for() returns.
    pub(crate) backup: Vec<f64>,
    pub(crate) pg_dump: Vec<f64>,
    pub(crate) bytes: i64,
    /// createdb + pg_restore -j 1.
    pub(crate) restore: Vec<f64>,
}

pub(crate) struct Dataset {
    pub(crate) db: &'static str,
    pub(crate) description: String,
    /// `pg_dump -Fc --compress=none` counted from a pipe.
    pub(crate) uncompressed_bytes: u64,
    pub(crate) methods: Vec<MethodResult>,
}

impl Dataset {
    pub(crate) fn default_method(&self) -> &MethodResult {
        // METHODS starts with the default.
        &self.methods[0]
    }
}

pub(crate) struct Compression {
    pub(crate) tool_version: String,
    pub(crate) datasets: Vec<Dataset>,
    /// Making bench_text.
    pub(crate) text_secs: f64,
    /// This whole part, bench_text included.
    pub(crate) secs: f64,
    pub(crate) restores: usize,
    /// Restores that ended with exactly `KNOWN_RESTORE_ERROR`.
    pub(crate) tolerated: usize,
}

/// The version line of `bin`'s pg_dump, which must be 16 or later (zstd and lz4, `method:level`);
/// checked before anything else runs.
pub(crate) fn compression_tool_version(bin: &Path) -> Res<String> {
    let mut line = String::new();
    for tool in ["pg_dump", "pg_restore"] {
        let program = bin.join(tool);
        let out = Command::new(&program)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .context(|| {
                format!(
                    "cannot run {} (the compression table needs PostgreSQL 16 or later tools: \
                     --compression-bin DIR, or --only comparison)",
                    program.display()
                )
            })?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let major: u32 = text
            .rsplit(' ')
            .next()
            .and_then(|v| v.split(['.', 'b', 'r']).next())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                format!(
                    "unexpected output of {} --version: {text:?}",
                    program.display()
                )
            })?;
        if major < 16 {
            return Err(format!(
                "{} is {text}; the compression table needs 16 or later (--compression-bin DIR)",
                program.display()
            )
            .into());
        }
        if tool == "pg_dump" {
            line = text;
        }
    }
    Ok(line)
}

/// Runs pg_restore; true if it ended with exactly `KNOWN_RESTORE_ERROR`, an error if anything
/// else went wrong.
fn run_restore(mut cmd: Command) -> Res<bool> {
    let out = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context(|| "cannot start pg_restore".to_string())?;
    if out.status.success() {
        return Ok(false);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    if out.status.code() == Some(1) && lines == KNOWN_RESTORE_ERROR {
        return Ok(true);
    }
    Err(format!("pg_restore failed ({}): {}", out.status, lines.join("\n")).into())
}

impl Bench {
    pub(crate) fn compression(&mut self, tool_version: String) -> Res<Compression> {
        let started = Instant::now();
        let text_secs = secs(|| self.create_text_db())?;
        let original = self.setting(BIN_DIR)?;
        let bin = self.a.compression_bin.to_string_lossy().into_owned();
        self.log(&format!("compression: {BIN_DIR} = {bin}"));
        self.alter_system(BIN_DIR, Some(&bin), &bin)?;
        let mut c = Compression {
            tool_version,
            datasets: Vec::new(),
            text_secs,
            secs: 0.0,
            restores: 0,
            tolerated: 0,
        };
        let measured = self.compression_datasets(&mut c);
        // Put the setting back even when a measurement failed.
        let restored = self.restore_setting(BIN_DIR, &original);
        measured?;
        restored?;
        c.secs = started.elapsed().as_secs_f64();
        Ok(c)
    }

    fn compression_datasets(&mut self, c: &mut Compression) -> Res<()> {
        let big_size = self.database_size(BIG_DB)?.unwrap_or_default();
        let text_size = self.database_size(TEXT_DB)?.unwrap_or_default();
        let big = format!("pgbench -i -s {}, {big_size}", self.a.scale);
        let text = format!("{} rows of generated text, {text_size}", self.a.text_rows);
        for (db, description) in [(BIG_DB, big), (TEXT_DB, text)] {
            let d = self.compression_dataset(db, description, c)?;
            c.datasets.push(d);
        }
        Ok(())
    }

    fn compression_dataset(
        &mut self,
        db: &'static str,
        description: String,
        c: &mut Compression,
    ) -> Res<Dataset> {
        let bin = self.a.compression_bin.clone();
        let uncompressed_bytes = self.uncompressed_size(&bin, db)?;
        let counts = self.row_counts(db)?;
        self.exec("CHECKPOINT")?;
        let mut methods: Vec<MethodResult> = METHODS
            .iter()
            .map(|method| MethodResult {
                method,
                backup: Vec::new(),
                pg_dump: Vec::new(),
                bytes: 0,
                restore: Vec::new(),
            })
            .collect();
        // The extension's archive of the last run of each method, restored afterwards.
        let mut archives: Vec<Option<PathBuf>> = METHODS.iter().map(|_| None).collect();
        let runs = self.a.compression_runs.max(self.a.compression_dump_runs);
        for i in 1..=runs {
            let mut line = format!("compression: {db}: run {i}:");
            for (k, m) in METHODS.iter().enumerate() {
                let r = &mut methods[k];
                if i <= self.a.compression_runs {
                    let e = self.ext_job(ENQUEUE_SQL, &[&db, &m.format, &m.compress, &m.jobs])?;
                    let (bytes, tool, path) = self.backup_row(e.job_ids[0])?;
                    if tool != c.tool_version {
                        return Err(format!(
                            "backup {} was made by {tool:?}, not by {:?}: did the worker miss \
                             the change of {BIN_DIR}?",
                            e.job_ids[0], c.tool_version
                        )
                        .into());
                    }
                    if let Some(old) = archives[k].replace(path) {
                        remove_path(&old)?;
                    }
                    r.bytes = bytes;
                    r.backup.push(e.client);
                    let _ = write!(line, " {} {:.2}s", m.short, e.client);
                }
                if i <= self.a.compression_dump_runs {
                    let out = self.scratch.join(format!("{db}-{}", m.output));
                    remove_path(&out)?;
                    let mut cmd = self.tool_in(&bin, "pg_dump");
                    cmd.args(m.pg_dump_args).arg("-f").arg(&out).arg(db);
                    let t = secs(|| run(cmd, "pg_dump"))?;
                    remove_path(&out)?;
                    r.pg_dump.push(t);
                    let _ = write!(line, " (by hand {t:.2}s)");
                }
            }
            self.log(&line);
        }

        for (k, m) in METHODS.iter().enumerate() {
            let archive = archives[k]
                .take()
                .ok_or_else(|| format!("no archive of {db}, {} to restore", m.name))?;
            for i in 1..=self.a.compression_restore_runs {
                self.drop_database(RESTORE_DB)?;
                // Each restore writes ~its database's size; without this, a later restore
                // would also pay for writing out the earlier ones.
                self.exec("CHECKPOINT")?;
                let mut createdb = self.tool_in(&bin, "createdb");
                createdb.arg(RESTORE_DB);
                let mut restore = self.tool_in(&bin, "pg_restore");
                restore.args(["-j", "1", "-d", RESTORE_DB]).arg(&archive);
                let mut tolerated = false;
                let t = secs(|| {
                    run(createdb, "createdb")?;
                    tolerated = run_restore(restore)?;
                    Ok(())
                })?;
                let restored = self.row_counts(RESTORE_DB)?;
                if restored != counts {
                    return Err(format!(
                        "the restore of {db}, {} has rows {restored:?}, the source {counts:?}",
                        m.name
                    )
                    .into());
                }
                self.drop_database(RESTORE_DB)?;
                methods[k].restore.push(t);
                c.restores += 1;
                c.tolerated += usize::from(tolerated);
                self.log(&format!(
                    "compression: {db}: restore {} run {i}: {t:.2}s{}",
                    m.short,
                    if tolerated {
                        " (the known transaction_timeout error)"
                    } else {
                        ""
                    }
                ));
            }
            remove_path(&archive)?;
        }
        Ok(Dataset {
            db,
            description,
            uncompressed_bytes,
            methods,
        })
    }

    /// Size of `pg_dump -Fc --compress=none`, counted from a pipe (nothing written).
    fn uncompressed_size(&mut self, bin: &Path, db: &str) -> Res<u64> {
        let mut cmd = self.tool_in(bin, "pg_dump");
        cmd.args(["-Fc", "--compress=none"])
            .arg(db)
            .stdout(Stdio::piped());
        let t0 = Instant::now();
        let mut child = cmd
            .spawn()
            .context(|| "cannot start pg_dump --compress=none".to_string())?;
        let mut stdout = child
            .stdout
            .take()
            .ok_or("pg_dump --compress=none has no stdout")?;
        let bytes = io::copy(&mut stdout, &mut io::sink())
            .context(|| "cannot read pg_dump --compress=none".to_string())?;
        let status = child
            .wait()
            .context(|| "cannot wait for pg_dump --compress=none".to_string())?;
        if !status.success() {
            return Err(format!("pg_dump --compress=none {db} failed ({status})").into());
        }
        self.log(&format!(
            "compression: {db}: uncompressed archive {:.1} MB ({:.2}s)",
            bytes as f64 / 1e6,
            t0.elapsed().as_secs_f64()
        ));
        Ok(bytes)
    }

    /// `(size_bytes, tool_version, path)` of the backup made by a job, from the catalog.
    fn backup_row(&mut self, job_id: i64) -> Res<(i64, String, PathBuf)> {
        let row = self
            .db
            .query_one(
                "SELECT size_bytes, tool_version, path FROM backup_ext.backups WHERE job_id = $1",
                &[&job_id],
            )
            .context(|| format!("cannot read the backup of job {job_id}"))?;
        let bytes: Option<i64> = row.get(0);
        let tool: Option<String> = row.get(1);
        let path: Option<String> = row.get(2);
        match (bytes, tool, path) {
            (Some(b), Some(t), Some(p)) => Ok((b, t, PathBuf::from(p))),
            _ => Err(format!("the backup of job {job_id} has no size, tool or path").into()),
        }
    }

    /// Rows of every table of `db`, by name.
    fn row_counts(&mut self, db: &str) -> Res<Vec<(String, i64)>> {
        let mut client = connect(&self.socket, self.a.port, db)?;
        let tables: Vec<String> = client
            .query(
                "SELECT format('%I.%I', n.nspname, c.relname)
                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.relkind = 'r' AND n.nspname <> 'information_schema'
                    AND n.nspname NOT LIKE 'pg\\_%'
                  ORDER BY 1",
                &[],
            )
            .context(|| format!("cannot list the tables of {db}"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut counts = Vec::new();
        for table in tables {
            // The name comes quoted from format('%I').
            let n: i64 = client
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .context(|| format!("cannot count the rows of {table} in {db}"))?
                .get(0);
            counts.push((table, n));
        }
        Ok(counts)
    }
}

/// The default this part recommends.
pub(crate) struct Recommendation {
    pub(crate) method: &'static Method,
    /// Mean over the databases of its size / gzip 6's.
    pub(crate) mean_size: f64,
}

/// The smallest archive (mean of size / gzip 6's over the databases) among the custom-format
/// methods whose backup takes at most `BACKUP_SLACK` times gzip 6's on every database; gzip 6
/// itself qualifies, so there is always one. Restore times are left out: a restore is mostly
/// COPY and index builds, the same for every method, and one restore run per case varies more
/// between runs than between methods.
pub(crate) fn recommend(c: &Compression) -> Recommendation {
    let mut best: Option<Recommendation> = None;
    for (k, method) in METHODS.iter().enumerate() {
        if method.format != "custom" {
            continue;
        }
        let mut fits = true;
        let mut size_sum = 0.0;
        for d in &c.datasets {
            let base = d.default_method();
            let r = &d.methods[k];
            fits &= median(&r.backup) <= BACKUP_SLACK * median(&base.backup);
            size_sum += r.bytes as f64 / base.bytes as f64;
        }
        let mean_size = size_sum / c.datasets.len().max(1) as f64;
        if fits && best.as_ref().is_none_or(|b| mean_size < b.mean_size) {
            best = Some(Recommendation { method, mean_size });
        }
    }
    best.unwrap_or(Recommendation {
        method: &METHODS[0],
        mean_size: 1.0,
    })
}
