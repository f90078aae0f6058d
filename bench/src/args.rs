//! Command-line flags: the usage text, the defaults and their parsing.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::{Context, Res};

const DEFAULT_SCALE: u32 = 50;

/// Which parts of the benchmark run.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// The comparison with the tools run directly, the compression table, then S3.
    All,
    /// backup_ext against pg_dump / pg_dumpall / pg_restore run directly, and the probes.
    Comparison,
    /// The compression table only.
    Compression,
    /// Backups into S3 (a SeaweedFS the benchmark starts) only.
    S3,
    /// The catalog reads (list_backups(), status(), metrics()) over fabricated history only.
    Catalog,
    /// Encrypted against plain backups and restores only.
    Crypt,
}

impl Part {
    pub(crate) fn comparison(self) -> bool {
        matches!(self, Part::All | Part::Comparison)
    }

    pub(crate) fn compression(self) -> bool {
        matches!(self, Part::All | Part::Compression)
    }

    pub(crate) fn s3(self) -> bool {
        matches!(self, Part::All | Part::S3)
    }

    pub(crate) fn catalog_only(self) -> bool {
        matches!(self, Part::Catalog)
    }

    pub(crate) fn crypt(self) -> bool {
        matches!(self, Part::Crypt)
    }
}

const USAGE: &str = "\
backup_ext_bench: backup_ext against pg_dump / pg_dumpall / pg_restore run directly

usage: backup_ext_bench [options]

  --dir DIR            cluster directory made by cluster_start (socket in DIR/socket,
                       scratch files in DIR/scratch)          [/tmp/backup_ext-bench]
  --port PORT          cluster port                           [54339]
  --scale N            pgbench scale of the big database      [$BENCH_SCALE or 50]
  --runs N             runs per side of every case            [3]
  --small-tables N     tables in the many-tables database     [500]
  --small-dbs N        databases in the cluster case          [20]
  --enqueue-calls N    backup_database() calls timed          [1000]
  --pickup-jobs N      jobs for the pickup latency            [50]
  --catalog-rows N     catalog rows for the read timings      [100000]
  --catalog-runs N     runs of each catalog query             [20]
  --pgbin DIR          PostgreSQL binaries                    [/usr/lib/postgresql/15/bin]
  --out DIR            where <date>.md and <date>.png go      [bench/results]
  --font FILE          TrueType font for the chart            [a DejaVu/Liberation font]

  --only PART          comparison: the cases against the tools run directly and the
                       probes; compression: the compression table only, written to
                       <date>-compression.md; s3: backups into a SeaweedFS started
                       for the purpose, written to <date>-s3.md; catalog: the
                       catalog reads alone (part of comparison), written to
                       <date>-catalog.md; crypt: encrypted against plain backups
                       and restores (age), written to <date>-crypt.md
                                                              [the first three, in that order]
  --compression-bin DIR
                       pg_dump / pg_restore 16 or later for the compression table
                                                              [/opt/backup_ext-pg/17/bin]
  --compression-runs N backups through the extension per compression case    [2]
  --compression-dump-runs N
                       pg_dump runs by hand per compression case (0: none)    [1]
  --compression-restore-runs N
                       pg_restore runs per compression case                   [1]
  --text-rows N        rows of generated text in bench_text   [300000]
  --py-env DIR         environment with bin/weed (SeaweedFS) and bin/aws (awscli)
                                                   [$BACKUP_EXT_PY or /opt/backup_ext-py]
  --s3-part-size BYTES part_size of the S3 storage target     [16777216]
  --s3-memory-mb N     MB (10^6 bytes) of random bytes in the table whose dump
                       (about twice that: bytea as hex) is watched for the
                       worker's memory                        [560]
";

pub(crate) struct Args {
    pub(crate) dir: PathBuf,
    pub(crate) port: u16,
    pub(crate) scale: u32,
    pub(crate) runs: usize,
    pub(crate) small_tables: usize,
    pub(crate) small_dbs: usize,
    pub(crate) enqueue_calls: usize,
    pub(crate) pickup_jobs: usize,
    pub(crate) catalog_rows: usize,
    pub(crate) catalog_runs: usize,
    pub(crate) pgbin: PathBuf,
    pub(crate) out: PathBuf,
    pub(crate) font: Option<PathBuf>,
    pub(crate) only: Part,
    pub(crate) compression_bin: PathBuf,
    pub(crate) compression_runs: usize,
    pub(crate) compression_dump_runs: usize,
    pub(crate) compression_restore_runs: usize,
    pub(crate) text_rows: usize,
    pub(crate) py_env: PathBuf,
    pub(crate) s3_part_size: u64,
    pub(crate) s3_memory_mb: usize,
}

fn number<T: FromStr>(flag: &str, value: &str) -> Res<T>
where
    T::Err: Display,
{
    value
        .parse()
        .context(|| format!("{flag} expects a number, got {value:?}"))
}

pub(crate) fn parse_args() -> Res<Args> {
    let scale = match std::env::var("BENCH_SCALE") {
        Ok(v) if !v.is_empty() => number("BENCH_SCALE", &v)?,
        _ => DEFAULT_SCALE,
    };
    let mut a = Args {
        dir: PathBuf::from("/tmp/backup_ext-bench"),
        port: 54339,
        scale,
        runs: 3,
        small_tables: 500,
        small_dbs: 20,
        enqueue_calls: 1000,
        pickup_jobs: 50,
        catalog_rows: 100_000,
        catalog_runs: 20,
        pgbin: PathBuf::from("/usr/lib/postgresql/15/bin"),
        out: Path::new(env!("CARGO_MANIFEST_DIR")).join("results"),
        font: None,
        only: Part::All,
        compression_bin: PathBuf::from("/opt/backup_ext-pg/17/bin"),
        compression_runs: 2,
        compression_dump_runs: 1,
        compression_restore_runs: 1,
        text_rows: 300_000,
        py_env: std::env::var_os("BACKUP_EXT_PY")
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from("/opt/backup_ext-py"), PathBuf::from),
        s3_part_size: 16 * 1024 * 1024,
        s3_memory_mb: 560,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        if arg == "--help" || arg == "-h" {
            print!("{USAGE}");
            std::process::exit(0);
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || -> Res<String> {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{flag} needs a value; see --help").into())
        };
        match flag.as_str() {
            "--dir" => a.dir = PathBuf::from(value()?),
            "--port" => a.port = number(&flag, &value()?)?,
            "--scale" => a.scale = number(&flag, &value()?)?,
            "--runs" => a.runs = number(&flag, &value()?)?,
            "--small-tables" => a.small_tables = number(&flag, &value()?)?,
            "--small-dbs" => a.small_dbs = number(&flag, &value()?)?,
            "--enqueue-calls" => a.enqueue_calls = number(&flag, &value()?)?,
            "--pickup-jobs" => a.pickup_jobs = number(&flag, &value()?)?,
            "--catalog-rows" => a.catalog_rows = number(&flag, &value()?)?,
            "--catalog-runs" => a.catalog_runs = number(&flag, &value()?)?,
            "--pgbin" => a.pgbin = PathBuf::from(value()?),
            "--out" => a.out = PathBuf::from(value()?),
            "--font" => a.font = Some(PathBuf::from(value()?)),
            "--only" => {
                a.only = match value()?.as_str() {
                    "comparison" => Part::Comparison,
                    "compression" => Part::Compression,
                    "s3" => Part::S3,
                    "catalog" => Part::Catalog,
                    "crypt" => Part::Crypt,
                    other => {
                        return Err(format!(
                        "--only takes comparison, compression, s3, catalog or crypt, not {other:?}"
                    )
                        .into())
                    }
                }
            }
            "--compression-bin" => a.compression_bin = PathBuf::from(value()?),
            "--compression-runs" => a.compression_runs = number(&flag, &value()?)?,
            "--compression-dump-runs" => a.compression_dump_runs = number(&flag, &value()?)?,
            "--compression-restore-runs" => a.compression_restore_runs = number(&flag, &value()?)?,
            "--text-rows" => a.text_rows = number(&flag, &value()?)?,
            "--py-env" => a.py_env = PathBuf::from(value()?),
            "--s3-part-size" => a.s3_part_size = number(&flag, &value()?)?,
            "--s3-memory-mb" => a.s3_memory_mb = number(&flag, &value()?)?,
            _ => return Err(format!("unknown argument {arg:?}; see --help").into()),
        }
    }
    let positive = [
        ("--scale", a.scale as usize),
        ("--runs", a.runs),
        ("--small-tables", a.small_tables),
        ("--small-dbs", a.small_dbs),
        ("--enqueue-calls", a.enqueue_calls),
        ("--pickup-jobs", a.pickup_jobs),
        ("--catalog-rows", a.catalog_rows),
        ("--catalog-runs", a.catalog_runs),
        ("--compression-runs", a.compression_runs),
        ("--compression-restore-runs", a.compression_restore_runs),
        ("--text-rows", a.text_rows),
        ("--s3-memory-mb", a.s3_memory_mb),
    ];
    if let Some((flag, _)) = positive.iter().find(|(_, v)| *v == 0) {
        return Err(format!("{flag} must be at least 1").into());
    }
    // What add_storage() accepts; checked here to fail before the other parts run.
    if !(5 * 1024 * 1024..=512 * 1024 * 1024).contains(&a.s3_part_size) {
        return Err("--s3-part-size must be from 5242880 (5 MiB) to 536870912 (512 MiB)".into());
    }
    if a.catalog_rows > i32::MAX as usize {
        return Err("--catalog-rows is too large".into());
    }
    // Each row's words are keyed by id * 256 + word number in a bigint.
    if a.text_rows > i64::MAX as usize / 256 {
        return Err("--text-rows is too large".into());
    }
    Ok(a)
}
