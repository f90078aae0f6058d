//! Benchmark of backup_ext against running pg_dump / pg_dumpall / pg_restore directly.
//!
//! Runs against a cluster that already has backup_ext preloaded (scripts/bench.sh starts one),
//! creates its own databases, times every case baseline / extension interleaved, measures call
//! and pickup latency, catalog reads, the worker's memory and the streaming throughput, then
//! the compression table (pg_dump's methods with newer tools), then backups into S3 (a SeaweedFS
//! it starts), prints a markdown report and writes it with a PNG chart of the ratios. `--only`
//! runs one of the three parts, or the catalog reads alone.

mod args;
mod cases;
mod chart;
mod cluster;
mod compression;
mod crypt;
mod probes;
mod report;
mod s3;
mod setup;
mod stats;

use std::error::Error;
use std::fmt::Display;
use std::fs;
use std::time::Instant;

use crate::args::{parse_args, Part};
use crate::cluster::{connect, Bench};
use crate::compression::compression_tool_version;
use crate::report::{render, Comparison, Report, RATIO_TARGET};
use crate::setup::{BIG_DB, TABLES_DB};

pub(crate) type Res<T> = Result<T, Box<dyn Error>>;

pub(crate) trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Res<T>;
}

impl<T, E: Display> Context<T> for Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Res<T> {
        self.map_err(|e| format!("{}: {e}", what()).into())
    }
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("backup_ext_bench: {e}");
        std::process::exit(1);
    }
}

fn real_main() -> Res<()> {
    let a = parse_args()?;
    let started = Instant::now();
    // Missing newer tools fail here rather than after the comparison's minutes.
    let compression_tools = if a.only.compression() {
        Some(compression_tool_version(&a.compression_bin)?)
    } else {
        None
    };
    let s3_tools = if a.only.s3() {
        Some(s3::s3_tools(&a.py_env)?)
    } else {
        None
    };
    let socket = a.dir.join("socket").to_string_lossy().into_owned();
    let scratch = a.dir.join("scratch");
    let db = connect(&socket, a.port, "postgres")?;
    let mut b = Bench {
        a,
        socket,
        scratch,
        db,
        started,
    };
    let font = if b.a.only.comparison() {
        let font = chart::load_font(b.a.font.as_deref());
        if let Err(e) = &font {
            b.log(&format!("warning: {e}; the chart will be skipped"));
        }
        font.is_ok()
    } else {
        false
    };

    if b.a.only.catalog_only() {
        b.setup_catalog_only()?;
    } else {
        b.setup()?;
    }
    let machine = b.machine()?;
    let catalog = if b.a.only.catalog_only() {
        Some(b.catalog_reads()?)
    } else {
        None
    };
    let comparison = if b.a.only.comparison() {
        Some(comparison(&mut b)?)
    } else {
        None
    };
    let compression = match compression_tools {
        Some(version) => Some(b.compression(version)?),
        None => None,
    };
    let s3 = match s3_tools {
        Some(tools) => Some(b.s3(tools)?),
        None => None,
    };
    let crypt = if b.a.only.crypt() {
        Some(b.crypt()?)
    } else {
        None
    };

    let report = Report {
        m: &machine,
        a: &b.a,
        comparison: comparison.as_ref(),
        catalog: catalog.as_ref(),
        compression: compression.as_ref(),
        s3: s3.as_ref(),
        crypt: crypt.as_ref(),
        total_secs: started.elapsed().as_secs_f64(),
    };
    let (md, missed) = render(&report);
    print!("{md}");

    fs::create_dir_all(&b.a.out).context(|| format!("cannot create {}", b.a.out.display()))?;
    let stem = match b.a.only {
        Part::Compression => format!("{}-compression", machine.date),
        Part::S3 => format!("{}-s3", machine.date),
        Part::Catalog => format!("{}-catalog", machine.date),
        Part::Crypt => format!("{}-crypt", machine.date),
        Part::All | Part::Comparison => machine.date.clone(),
    };
    let md_path = b.a.out.join(format!("{stem}.md"));
    fs::write(&md_path, &md).context(|| format!("cannot write {}", md_path.display()))?;
    b.log(&format!("wrote {}", md_path.display()));
    if let (true, Some(c)) = (font, &comparison) {
        let png_path = b.a.out.join(format!("{stem}.png"));
        let bars: Vec<chart::Bar> = c
            .cases
            .iter()
            .map(|c| chart::Bar {
                label: c.short.clone(),
                ratio: c.ratio(),
            })
            .collect();
        let title = format!(
            "backup_ext / baseline, median time ({}, scale {}, runs per side {})",
            machine.date, b.a.scale, b.a.runs
        );
        chart::draw(&png_path, &title, &bars, RATIO_TARGET)
            .context(|| format!("cannot draw {}", png_path.display()))?;
        b.log(&format!("wrote {}", png_path.display()));
    }
    if !missed.is_empty() {
        b.log(&format!(
            "{} target(s) MISSED (see the report)",
            missed.len()
        ));
    }
    Ok(())
}

fn comparison(b: &mut Bench) -> Res<Comparison> {
    let latency = b.latency()?;
    let mut cases = Vec::new();
    let big = BIG_DB;
    cases.push(b.dump_case(
        "custom, default compression",
        "custom",
        big,
        &["-Fc"],
        "big.dump",
        "custom",
        None,
        None,
    )?);
    cases.push(b.dump_case(
        "custom, compress 0",
        "custom -Z0",
        big,
        &["-Fc", "-Z0"],
        "big-z0.dump",
        "custom",
        Some("0"),
        None,
    )?);
    cases.push(b.dump_case(
        "plain",
        "plain",
        big,
        &["-Fp"],
        "big.sql",
        "plain",
        None,
        None,
    )?);
    cases.push(b.dump_case(
        "directory, jobs 2",
        "directory -j2",
        big,
        &["-Fd", "-j2"],
        "big.dir",
        "directory",
        None,
        Some(2),
    )?);
    let many = format!("{} small tables, custom", b.a.small_tables);
    cases.push(b.dump_case(
        &many,
        &format!("{} tables", b.a.small_tables),
        TABLES_DB,
        &["-Fc"],
        "tables.dump",
        "custom",
        None,
        None,
    )?);
    cases.push(b.globals_case()?);
    cases.extend(b.restore_cases()?);
    cases.extend(b.cluster_cases()?);
    let streaming = b.streaming()?;
    let (catalog_rows, catalog) = b.catalog_reads()?;
    Ok(Comparison {
        cases,
        latency,
        catalog_rows,
        catalog,
        streaming,
    })
}
