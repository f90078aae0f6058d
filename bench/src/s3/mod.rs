//! The S3 part: backups streamed into an S3 server (SeaweedFS's `weed mini`, started for the
//! part on loopback ports and stopped at its end) through a storage target of the extension.
//!
//! 1. The same custom-format backup of the pgbench database through the extension into S3 and
//!    into `backup_ext.directory`, interleaved.
//! 2. The same bytes uploaded by the worker and by `aws s3 cp`: for the worker's side,
//!    `backup_ext.bin_dir` points at a copy of the tools whose pg_dump, for one empty database,
//!    writes a local archive with `cat` instead of dumping, so the job's time is the upload's.
//! 3. The worker's memory while it uploads a dump of more than 1 GB.

mod cpu;
mod report;
mod seaweed;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::cluster::{connect, remove_path, run, secs, Bench, ExtRun};
use crate::compression::BIN_DIR;
use crate::probes::{RssSample, RssSampler};
use crate::setup::BIG_DB;
use crate::{Context, Res};

use cpu::{CpuMeter, CpuUse};
pub(crate) use report::render;
use seaweed::{Seaweed, BUCKET};

/// The storage target the part adds, and its folder in the bucket.
const STORAGE: &str = "bench_s3";
/// The second target the memory part's backup is copied to (another prefix of the same server).
const COPY_STORAGE: &str = "bench_copy";
const CREDENTIALS_FILE: &str = "backup_ext.s3_credentials_file";
/// An empty database: the pg_dump of the upload race writes the archive file instead.
const UPLOAD_DB: &str = "bench_upload";
/// Random bytes whose dump is watched for the worker's memory.
pub(crate) const MEMORY_DB: &str = "bench_blob";
/// Random bytes per row of `MEMORY_DB`, a multiple of 1024.
const MEMORY_ROW_BYTES: usize = 64 * 1024;

const ENQUEUE_SQL: &str = "SELECT backup_ext.backup_database(dbname => $1, format => 'custom', \
     compress => $2, label => 'bench', options => $3::text::jsonb)";

/// The programs the part needs besides PostgreSQL's, with their version lines.
pub(crate) struct S3Tools {
    weed: PathBuf,
    aws: PathBuf,
    pub(crate) weed_version: String,
    pub(crate) aws_version: String,
}

/// `weed` and `aws` of `py_env` (scripts/setup.sh installs both); checked before anything
/// else runs.
pub(crate) fn s3_tools(py_env: &Path) -> Res<S3Tools> {
    let version = |program: &Path, arg: &str| -> Res<String> {
        let out = Command::new(program)
            .arg(arg)
            .stdin(Stdio::null())
            .output()
            .context(|| {
                format!(
                    "cannot run {} (the S3 part needs SeaweedFS's weed and awscli: \
                     bash scripts/setup.sh, --py-env DIR, or --only comparison / compression)",
                    program.display()
                )
            })?;
        // awscli 1.x prints its version on stderr.
        let text = [out.stdout, out.stderr].concat();
        let text = String::from_utf8_lossy(&text);
        match text.lines().map(str::trim).find(|l| !l.is_empty()) {
            Some(line) if out.status.success() => Ok(line.to_string()),
            _ => Err(format!("{} {arg} failed: {}", program.display(), text.trim()).into()),
        }
    };
    let weed = py_env.join("bin/weed");
    let aws = py_env.join("bin/aws");
    Ok(S3Tools {
        weed_version: version(&weed, "version")?,
        aws_version: version(&aws, "--version")?,
        weed,
        aws,
    })
}

/// One backup of `BIG_DB` to S3 and to local disk, per run. Seconds from the enqueuing call:
/// `catalog` until the job's `finished_at`, `client` until `wait_for()` returned.
pub(crate) struct DumpPair {
    pub(crate) name: &'static str,
    pub(crate) compress: Option<&'static str>,
    /// Size of the last S3 backup, as recorded.
    pub(crate) bytes: i64,
    pub(crate) local: Vec<f64>,
    pub(crate) local_client: Vec<f64>,
    pub(crate) s3: Vec<f64>,
    pub(crate) s3_client: Vec<f64>,
    /// CPU used during each backup.
    pub(crate) local_cpu: Vec<CpuUse>,
    pub(crate) s3_cpu: Vec<CpuUse>,
}

/// The same file uploaded by the worker and by `aws s3 cp`, seconds per run.
pub(crate) struct UploadRace {
    pub(crate) bytes: u64,
    /// Enqueuing call to the job's `finished_at`.
    pub(crate) ext: Vec<f64>,
    pub(crate) ext_client: Vec<f64>,
    /// With the extension's part size and parts in flight.
    pub(crate) aws: Vec<f64>,
    /// With awscli's defaults (8 MiB parts, 10 at a time).
    pub(crate) aws_default: Vec<f64>,
    /// `aws s3 ls` of an empty folder: awscli's start and one request.
    pub(crate) aws_ls: Vec<f64>,
    /// CPU used during each upload.
    pub(crate) ext_cpu: Vec<CpuUse>,
    pub(crate) aws_cpu: Vec<CpuUse>,
    pub(crate) aws_default_cpu: Vec<CpuUse>,
}

/// The worker's memory while it uploads the dump of `MEMORY_DB`.
pub(crate) struct UploadMemory {
    pub(crate) table_size: String,
    pub(crate) bytes: i64,
    /// `started_at` to `finished_at`.
    pub(crate) secs: f64,
    pub(crate) samples: Vec<RssSample>,
    /// Its copy to [`COPY_STORAGE`]: bytes, the copy job's seconds, its status.
    pub(crate) copy: (i64, f64, String),
}

pub(crate) struct S3 {
    pub(crate) tools: S3Tools,
    pub(crate) part_size: u64,
    pub(crate) dumps: Vec<DumpPair>,
    pub(crate) upload: UploadRace,
    pub(crate) memory: UploadMemory,
    /// Making `MEMORY_DB`.
    pub(crate) memory_db_secs: f64,
    /// The whole part, the server's start and stop included.
    pub(crate) secs: f64,
}

impl Bench {
    pub(crate) fn s3(&mut self, tools: S3Tools) -> Res<S3> {
        let started = Instant::now();
        let server = Seaweed::start(&tools.weed, &self.scratch.join("s3"))?;
        self.log(&format!(
            "s3: weed mini serves bucket {BUCKET} at {}",
            server.endpoint
        ));
        let original = self.setting(CREDENTIALS_FILE)?;
        let credentials = server.credentials_file.to_string_lossy().into_owned();
        let measured = self
            .alter_system(CREDENTIALS_FILE, Some(&credentials), &credentials)
            .and_then(|()| self.s3_parts(&server, &tools));
        if measured.is_err() {
            self.log(&format!("s3: the weed log was:\n{}", server.log_tail(30)));
        }
        // Put everything back even when a measurement failed.
        let forgot = self.forget_storage();
        let restored = self.restore_setting(CREDENTIALS_FILE, &original);
        let dropped = [UPLOAD_DB, MEMORY_DB]
            .into_iter()
            .try_for_each(|db| self.drop_database(db));
        let stopped = server.stop();
        let (dumps, upload, memory, memory_db_secs) = measured?;
        forgot?;
        restored?;
        dropped?;
        stopped?;
        Ok(S3 {
            tools,
            part_size: self.a.s3_part_size,
            dumps,
            upload,
            memory,
            memory_db_secs,
            secs: started.elapsed().as_secs_f64(),
        })
    }

    fn s3_parts(
        &mut self,
        server: &Seaweed,
        tools: &S3Tools,
    ) -> Res<(Vec<DumpPair>, UploadRace, UploadMemory, f64)> {
        self.forget_storage()?;
        self.add_target(STORAGE, server)?;
        self.add_target(COPY_STORAGE, server)?;
        let (dumps, archive) = self.s3_dump_pairs(server)?;
        let upload = self.upload_race(server, tools, &archive);
        remove_path(&archive)?;
        let upload = upload?;
        let memory_db_secs = secs(|| self.create_memory_db())?;
        let memory = self.upload_memory()?;
        Ok((dumps, upload, memory, memory_db_secs))
    }

    /// Adds the storage target `name`: the prefix `name` of the server's bucket.
    fn add_target(&mut self, name: &str, server: &Seaweed) -> Res<()> {
        let url = format!("s3://{BUCKET}/{name}");
        self.db
            .execute(
                "SELECT backup_ext.add_storage($1, $2, jsonb_build_object('endpoint', $3::text, \
                 'path_style', true, 'allow_http', true, 'part_size', $4::bigint))",
                &[&name, &url, &server.endpoint, &(self.a.s3_part_size as i64)],
            )
            .context(|| format!("add_storage('{name}', '{url}') failed"))?;
        Ok(())
    }

    /// Removes the storage target left by this part (now, or by an earlier run that failed):
    /// its backups are marked expired first (the objects go with the server's directory).
    fn forget_storage(&mut self) -> Res<()> {
        self.exec(&format!(
            "SELECT backup_ext.set_copies('{MEMORY_DB}', '{{}}');
             UPDATE backup_ext.backup_copies SET status = 'expired' WHERE storage = '{COPY_STORAGE}';
             SELECT backup_ext.drop_storage('{COPY_STORAGE}');"
        ))?;
        self.db
            .execute(
                "UPDATE backup_ext.artifacts SET expired_at = now() \
                  WHERE storage = $1 AND expired_at IS NULL",
                &[&STORAGE],
            )
            .context(|| format!("cannot expire the backups in {STORAGE}"))?;
        self.db
            .execute("SELECT backup_ext.drop_storage($1)", &[&STORAGE])
            .context(|| format!("drop_storage('{STORAGE}') failed"))?;
        Ok(())
    }

    fn s3_options() -> String {
        format!("{{\"storage\": \"{STORAGE}\"}}")
    }

    /// Backs `db` up into the storage target.
    fn s3_job(&mut self, db: &str, compress: Option<&str>) -> Res<ExtRun> {
        self.ext_job(ENQUEUE_SQL, &[&db, &compress, &Self::s3_options()])
    }

    /// `(size_bytes, storage, finished_at - started_at in seconds)` of a job's backup.
    fn s3_backup_row(&mut self, job_id: i64) -> Res<(i64, String, f64)> {
        let row = self
            .db
            .query_one(
                "SELECT a.size_bytes, a.storage,
                        extract(epoch FROM j.finished_at - j.started_at)::float8
                   FROM backup_ext.artifacts a JOIN backup_ext.jobs j USING (job_id)
                  WHERE job_id = $1",
                &[&job_id],
            )
            .context(|| format!("cannot read the backup of job {job_id}"))?;
        let size: Option<i64> = row.get(0);
        Ok((size.unwrap_or(0), row.get(1), row.get(2)))
    }

    /// Local and S3 backups of `BIG_DB`, interleaved; also returns the last local archive
    /// without compression, for the upload race.
    fn s3_dump_pairs(&mut self, server: &Seaweed) -> Res<(Vec<DumpPair>, PathBuf)> {
        let worker = self.worker_pid()? as u32;
        let mut pairs = Vec::new();
        let mut archive = None;
        for (name, compress) in [
            ("custom, default compression", None),
            ("custom, compress 0", Some("0")),
        ] {
            let mut p = DumpPair {
                name,
                compress,
                bytes: 0,
                local: Vec::new(),
                local_client: Vec::new(),
                s3: Vec::new(),
                s3_client: Vec::new(),
                local_cpu: Vec::new(),
                s3_cpu: Vec::new(),
            };
            for i in 1..=self.a.runs {
                let cpu = CpuMeter::start(server, worker);
                let local = self.ext_job(ENQUEUE_SQL, &[&BIG_DB, &compress, &"{}"])?;
                p.local_cpu.push(cpu.stop());
                let mut paths = self.ext_paths(&local.job_ids)?;
                if compress.is_some() && i == self.a.runs {
                    archive = paths.pop();
                }
                for path in paths {
                    remove_path(&path)?;
                }
                let cpu = CpuMeter::start(server, worker);
                let remote = self.s3_job(BIG_DB, compress)?;
                p.s3_cpu.push(cpu.stop());
                let (bytes, storage, _) = self.s3_backup_row(remote.job_ids[0])?;
                if storage != STORAGE {
                    return Err(format!(
                        "backup {} went to {storage:?}, not to {STORAGE}",
                        remote.job_ids[0]
                    )
                    .into());
                }
                p.bytes = bytes;
                p.local.push(local.catalog);
                p.local_client.push(local.client);
                p.s3.push(remote.catalog);
                p.s3_client.push(remote.client);
                self.log(&format!(
                    "s3: {name}: run {i}: local {:.3}s, S3 {:.3}s ({:.1} MB)",
                    local.catalog,
                    remote.catalog,
                    bytes as f64 / 1e6
                ));
            }
            pairs.push(p);
        }
        let archive = archive.ok_or("the local backup without compression has no path")?;
        Ok((pairs, archive))
    }

    /// The worker and `aws s3 cp` upload `archive`, interleaved.
    fn upload_race(
        &mut self,
        server: &Seaweed,
        tools: &S3Tools,
        archive: &Path,
    ) -> Res<UploadRace> {
        let bytes = fs::metadata(archive)
            .context(|| format!("cannot read the size of {}", archive.display()))?
            .len();
        self.drop_database(UPLOAD_DB)?;
        self.exec(&format!("CREATE DATABASE {UPLOAD_DB}"))?;
        let bin = self.cat_tools(archive)?;
        let aws_dir = self.scratch.join("s3").join("aws-cli");
        fs::create_dir_all(&aws_dir).context(|| format!("cannot create {}", aws_dir.display()))?;
        let part_mib = self.a.s3_part_size.div_ceil(1024 * 1024);
        let matched = aws_dir.join("matched.ini");
        let defaults = aws_dir.join("defaults.ini");
        // awscli 1.x: path-style addressing, and the extension's part size and parts in flight
        // (MAX_PARTS_IN_FLIGHT); the other file keeps awscli's own defaults.
        let config = "[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n";
        write_file(
            &matched,
            &format!(
                "{config}    multipart_chunksize = {part_mib}MB\n    max_concurrent_requests = 3\n"
            ),
        )?;
        write_file(&defaults, config)?;

        let mut r = UploadRace {
            bytes,
            ext: Vec::new(),
            ext_client: Vec::new(),
            aws: Vec::new(),
            aws_default: Vec::new(),
            aws_ls: Vec::new(),
            ext_cpu: Vec::new(),
            aws_cpu: Vec::new(),
            aws_default_cpu: Vec::new(),
        };
        let worker = self.worker_pid()? as u32;
        let original = self.setting(BIN_DIR)?;
        let bin_text = bin.to_string_lossy().into_owned();
        self.alter_system(BIN_DIR, Some(&bin_text), &bin_text)?;
        let raced = (|| -> Res<()> {
            // Untimed: the first job after the change of bin_dir probes the tools.
            self.s3_job(UPLOAD_DB, None)?;
            for i in 1..=self.a.runs {
                let cpu = CpuMeter::start(server, worker);
                let e = self.s3_job(UPLOAD_DB, None)?;
                r.ext_cpu.push(cpu.stop());
                let (size, _, _) = self.s3_backup_row(e.job_ids[0])?;
                if size as u64 != bytes {
                    return Err(format!(
                        "the upload race's backup {} has {size} bytes, the archive {bytes}: \
                         the worker did not run the pg_dump of {}",
                        e.job_ids[0],
                        bin.display()
                    )
                    .into());
                }
                let aws = |config: &Path| {
                    let mut c = Command::new(&tools.aws);
                    c.env("AWS_CONFIG_FILE", config)
                        .env("AWS_SHARED_CREDENTIALS_FILE", &server.credentials_file)
                        .env("AWS_EC2_METADATA_DISABLED", "true")
                        .stdin(Stdio::null())
                        .args(["--endpoint-url", &server.endpoint]);
                    c
                };
                let mut cp_secs = [0.0; 2];
                for (k, (config, name)) in [(&matched, "matched"), (&defaults, "defaults")]
                    .into_iter()
                    .enumerate()
                {
                    let mut cp = aws(config);
                    cp.args(["s3", "cp", "--only-show-errors"])
                        .arg(archive)
                        .arg(format!("s3://{BUCKET}/aws-cli/{name}-{i}.dump"));
                    let cpu = CpuMeter::start(server, std::process::id());
                    cp_secs[k] = secs(|| run(cp, "aws s3 cp"))?;
                    let used = cpu.stop();
                    if k == 0 {
                        r.aws_cpu.push(used);
                    } else {
                        r.aws_default_cpu.push(used);
                    }
                }
                let mut ls = aws(&matched);
                ls.args(["s3", "ls", &format!("s3://{BUCKET}/empty/")]);
                // `aws s3 ls` of nothing exits 1.
                let ls_secs = secs(|| {
                    ls.stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .map(drop)
                        .context(|| "cannot run aws s3 ls".to_string())
                })?;
                r.ext.push(e.catalog);
                r.ext_client.push(e.client);
                r.aws.push(cp_secs[0]);
                r.aws_default.push(cp_secs[1]);
                r.aws_ls.push(ls_secs);
                self.log(&format!(
                    "s3: upload of {:.1} MB: run {i}: extension {:.3}s, aws s3 cp {:.3}s \
                     (awscli's defaults {:.3}s; aws s3 ls {ls_secs:.3}s)",
                    bytes as f64 / 1e6,
                    e.catalog,
                    cp_secs[0],
                    cp_secs[1]
                ));
            }
            Ok(())
        })();
        let restored = self.restore_setting(BIN_DIR, &original);
        raced?;
        restored?;
        remove_path(&bin)?;
        Ok(r)
    }

    /// A directory like `--pgbin` whose pg_dump, asked for `UPLOAD_DB`, writes `archive` with
    /// `cat` instead; any other call goes to the real one. Every other program is a link.
    fn cat_tools(&self, archive: &Path) -> Res<PathBuf> {
        let dir = self.scratch_dir("s3-bin")?;
        let pgbin = &self.a.pgbin;
        for entry in fs::read_dir(pgbin).context(|| format!("cannot list {}", pgbin.display()))? {
            let entry = entry.context(|| format!("cannot list {}", pgbin.display()))?;
            if entry.file_name() != "pg_dump" {
                let link = dir.join(entry.file_name());
                symlink(entry.path(), &link)
                    .context(|| format!("cannot create {}", link.display()))?;
            }
        }
        let quote = |p: &Path| format!("'{}'", p.to_string_lossy().replace('\'', "'\\''"));
        let script = format!(
            "#!/bin/sh\n\
             # The upload race of backup_ext_bench: the dump of {UPLOAD_DB} is a file's bytes.\n\
             for arg in \"$@\"; do\n\
             \x20   case \"$arg\" in *{UPLOAD_DB}*) exec cat {};; esac\n\
             done\n\
             exec {} \"$@\"\n",
            quote(archive),
            quote(&pgbin.join("pg_dump"))
        );
        let pg_dump = dir.join("pg_dump");
        write_file(&pg_dump, &script)?;
        fs::set_permissions(&pg_dump, fs::Permissions::from_mode(0o755))
            .context(|| format!("cannot chmod {}", pg_dump.display()))?;
        Ok(dir)
    }

    /// `MEMORY_DB`: one table of `--s3-memory-mb` MB of random bytes, stored uncompressed.
    /// pgcrypto's `gen_random_bytes()` makes them (up to 1024 bytes a call, ten times faster
    /// than MD5s of `random()`) and is dropped afterwards, so the dump holds the table alone.
    fn create_memory_db(&mut self) -> Res<()> {
        let rows = (self.a.s3_memory_mb * 1_000_000).div_ceil(MEMORY_ROW_BYTES) as i32;
        self.log(&format!(
            "s3: creating {MEMORY_DB} with {rows} rows of {MEMORY_ROW_BYTES} random bytes"
        ));
        self.drop_database(MEMORY_DB)?;
        self.exec(&format!("CREATE DATABASE {MEMORY_DB}"))?;
        let mut db = connect(&self.socket, self.a.port, MEMORY_DB)?;
        db.batch_execute(
            "CREATE EXTENSION pgcrypto;
             CREATE TABLE blobs (id int PRIMARY KEY, data bytea NOT NULL);
             ALTER TABLE blobs ALTER COLUMN data SET STORAGE EXTERNAL;",
        )
        .context(|| format!("cannot create the table of {MEMORY_DB}"))?;
        // `WHERE g > 0` ties the subquery to each row, so it is not computed once for all.
        db.execute(
            "INSERT INTO blobs
             SELECT g, (SELECT string_agg(gen_random_bytes(1024), ''::bytea)
                          FROM generate_series(1, $2) WHERE g > 0)
               FROM generate_series(1, $1) g",
            &[&rows, &((MEMORY_ROW_BYTES / 1024) as i32)],
        )
        .context(|| format!("cannot fill {MEMORY_DB}"))?;
        // Two calls: VACUUM cannot run in the implicit transaction of a multi-statement query.
        db.batch_execute("DROP EXTENSION pgcrypto")
            .and_then(|()| db.batch_execute("VACUUM ANALYZE blobs"))
            .context(|| format!("cannot vacuum {MEMORY_DB}"))?;
        self.exec("CHECKPOINT")
    }

    /// One backup of `MEMORY_DB` without compression into S3, with the worker's
    /// `/proc/<pid>/status` sampled throughout.
    fn upload_memory(&mut self) -> Res<UploadMemory> {
        let table_size = self.database_size(MEMORY_DB)?.unwrap_or_default();
        let pid = self.worker_pid()?;
        self.log(&format!(
            "s3: worker memory during the upload of {MEMORY_DB} ({table_size})"
        ));
        self.exec(&format!(
            "SELECT backup_ext.set_copies('{MEMORY_DB}', ARRAY['{COPY_STORAGE}'])"
        ))?;
        let sampler = RssSampler::start(pid);
        let job = self.s3_job(MEMORY_DB, Some("0"));
        let samples = sampler.finish();
        let job = job?;
        let (bytes, _, secs) = self.s3_backup_row(job.job_ids[0])?;
        let copy = self.copy_of(job.job_ids[0])?;
        self.log(&format!(
            "s3: copy to {COPY_STORAGE}: {:.1} MB in {:.2}s ({})",
            copy.0 as f64 / 1e6,
            copy.1,
            copy.2
        ));
        let peak = samples.iter().map(|s| s.vm_rss_kb).max().unwrap_or(0);
        self.log(&format!(
            "s3: {:.1} MB in {secs:.2}s, worker VmRSS peak {:.1} MB over {} samples",
            bytes as f64 / 1e6,
            peak as f64 / 1024.0,
            samples.len()
        ));
        Ok(UploadMemory {
            table_size,
            bytes,
            secs,
            samples,
            copy,
        })
    }

    /// Waits for the copy of `backup_id` (queued when the backup succeeded) to end: its bytes,
    /// the copy job's `finished_at - started_at` and its status.
    fn copy_of(&mut self, backup_id: i64) -> Res<(i64, f64, String)> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(900);
        loop {
            let row = self
                .db
                .query_opt(
                    "SELECT coalesce(c.size_bytes, 0), \
                            extract(epoch FROM j.finished_at - j.started_at)::float8, c.status \
                       FROM backup_ext.copies c JOIN backup_ext.jobs j ON j.job_id = c.job_id \
                      WHERE c.backup_id = $1 AND c.status IN ('succeeded', 'failed')",
                    &[&backup_id],
                )
                .context(|| format!("cannot read the copy of backup {backup_id}"))?;
            if let Some(row) = row {
                return Ok((row.get(0), row.get(1), row.get(2)));
            }
            if std::time::Instant::now() > deadline {
                return Err(
                    format!("the copy of backup {backup_id} did not end within 900 s").into(),
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

fn write_file(path: &Path, text: &str) -> Res<()> {
    fs::write(path, text).context(|| format!("cannot write {}", path.display()))
}
