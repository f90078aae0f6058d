//! The S3 part of the markdown report.

use std::fmt::Write as _;

use super::cpu::CpuUse;
use super::{BUCKET, MEMORY_DB, S3, STORAGE, UPLOAD_DB};
use crate::args::Args;
use crate::probes::RssSample;
use crate::report::{mb, verdict};
use crate::setup::BIG_DB;
use crate::stats::{max, median, min};

/// S3 backup time / local backup time.
pub(crate) const S3_RATIO_TARGET: f64 = 1.10;
/// The worker's upload of a file / `aws s3 cp` of it.
pub(crate) const UPLOAD_RATIO_TARGET: f64 = 1.05;
const RSS_TARGET_MB: f64 = 100.0;
/// Growth of the worker's peak VmRSS from the first half of the upload to the second above
/// which it is not "flat".
const RSS_FLAT_MB: f64 = 4.0;
/// The memory measurement is meant for an upload at least this large.
const MEMORY_MIN_BYTES: i64 = 1_000_000_000;

/// Median CPU seconds: the machine's, the S3 server's and the client's.
fn cpu_cell(v: &[CpuUse]) -> String {
    let of = |f: fn(&CpuUse) -> f64| median(&v.iter().map(f).collect::<Vec<_>>());
    format!(
        "{:.1} / {:.1} / {:.1}",
        of(|c| c.machine),
        of(|c| c.server),
        of(|c| c.client)
    )
}

fn peak(samples: &[RssSample], field: fn(&RssSample) -> u64) -> u64 {
    samples.iter().map(field).max().unwrap_or(0)
}

pub(crate) fn render(md: &mut String, a: &Args, r: &S3, missed: &mut Vec<String>) {
    if !md.ends_with("\n\n") {
        md.push('\n');
    }
    let _ = writeln!(md, "## S3: backups streamed into SeaweedFS\n");
    let _ = writeln!(
        md,
        "The benchmark starts `weed mini` ({}) on free loopback ports, data on the cluster's \
         disk, and adds the storage target `{STORAGE}` = `s3://{BUCKET}/{STORAGE}` \
         (path-style, http, `part_size` {} bytes = {:.0} MiB; at most 3 parts in flight); the \
         server is stopped and its data deleted at the end. awscli: {}. The server runs on the \
         same CPUs as PostgreSQL, pg_dump and the worker, so every byte sent costs this machine \
         CPU twice, once to send and once to store, which a remote store would not. Seconds are \
         medians over {} runs; \"catalog\" is the job's `finished_at - requested_at` (from the \
         enqueuing call, autocommit, to the end of the job as recorded), \"client\" is until \
         `wait_for()` returned. \"CPU s\" are medians of the CPU time used during each run: \
         machine / SeaweedFS / client. \"machine\" is from /proc/stat (user, system, irq, \
         softirq and steal of all CPUs, so other work on the machine counts too); \
         \"SeaweedFS\" is its processes' utime + stime; \"client\" is the process doing the \
         work with the children it waited for: the worker (its threads, and pg_dump or `cat`), \
         or awscli. CPU time varies less than wall time on a shared machine. MB = 10^6 bytes.\n",
        r.tools.weed_version,
        r.part_size,
        r.part_size as f64 / 1024.0 / 1024.0,
        r.tools.aws_version,
        a.runs
    );

    let _ = writeln!(
        md,
        "### Backup of {BIG_DB} into S3 against the same backup into backup_ext.directory\n"
    );
    let _ = writeln!(
        md,
        "`backup_database('{BIG_DB}', 'custom', compress => …, options => '{{\"storage\": \
         \"{STORAGE}\"}}')` against the same call without `options`, alternately.\n"
    );
    let _ = writeln!(
        md,
        "| case | size MB | local catalog median (min) | S3 catalog median (min) | local / S3 client median | CPU s local | CPU s S3 | ratio S3 / local | target <= {S3_RATIO_TARGET:.2} |\n|---|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for p in &r.dumps {
        let ratio = median(&p.s3) / median(&p.local);
        let ok = ratio <= S3_RATIO_TARGET;
        if !ok {
            missed.push(format!(
                "S3 backup, {}: ratio to the local backup {ratio:.2} > {S3_RATIO_TARGET:.2}",
                p.name
            ));
        }
        let _ = writeln!(
            md,
            "| {} | {:.1} | {:.3} ({:.3}) | {:.3} ({:.3}) | {:.3} / {:.3} | {} | {} | {ratio:.2} | {} |",
            p.name,
            p.bytes as f64 / 1e6,
            median(&p.local),
            min(&p.local),
            median(&p.s3),
            min(&p.s3),
            median(&p.local_client),
            median(&p.s3_client),
            cpu_cell(&p.local_cpu),
            cpu_cell(&p.s3_cpu),
            verdict(ok)
        );
    }
    // The share of the machine's CPU capacity used: on two CPUs, a backup that keeps them
    // busy cannot go faster, whatever the upload does.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let share = |used: &dyn Fn(&CpuUse) -> f64, cpu: &[CpuUse], secs: &[f64]| {
        100.0 * cpu.iter().map(used).sum::<f64>() / (secs.iter().sum::<f64>() * cpus)
    };
    let _ = writeln!(md);
    for p in &r.dumps {
        let _ = writeln!(
            md,
            "- {}: the machine's {cpus} CPUs were busy {:.0}% of the time during the local \
             backups and {:.0}% during the S3 backups, SeaweedFS taking {:.0} of those points.",
            p.name,
            share(&|c| c.machine, &p.local_cpu, &p.local),
            share(&|c| c.machine, &p.s3_cpu, &p.s3),
            share(&|c| c.server, &p.s3_cpu, &p.s3)
        );
    }

    let u = &r.upload;
    let size = u.bytes as f64 / 1e6;
    let _ = writeln!(
        md,
        "\n### The same {size:.1} MB uploaded by the worker and by `aws s3 cp`\n"
    );
    let _ = writeln!(
        md,
        "The file is the archive of the last local backup without compression above. The \
         worker uploads it as a backup of the empty database `{UPLOAD_DB}` while \
         `backup_ext.bin_dir` points at a copy of the tools whose pg_dump, for that database \
         only, is `cat <file>`: the job is then the upload plus what the extension does around \
         it (pickup, the child and its pipe, SHA-256 of the stream and MD5 of each part, the \
         multipart upload, completion with the ETag check, the JSON sidecar, the catalog). \
         `aws s3 cp <file> s3://…` is timed as a process, Python's start included, first with \
         the extension's part size and parallelism (`multipart_chunksize`, \
         `max_concurrent_requests = 3` in its config file), then with awscli's defaults (8 MiB \
         parts, 10 at a time). Every upload reads the file from the page cache; they \
         alternate, after one untimed upload by the worker (the first job after the change of \
         `bin_dir` probes the tools).\n"
    );
    let _ = writeln!(
        md,
        "| uploader | median s | min s | max s | MB/s (median) | CPU s |\n|---|---:|---:|---:|---:|---:|"
    );
    // What, seconds per run, CPU per run where measured, whether it moves the file's bytes.
    type Row<'a> = (&'a str, &'a [f64], Option<&'a [CpuUse]>, bool);
    let rows: [Row; 5] = [
        (
            "backup_ext worker: catalog (call to `finished_at`)",
            &u.ext[..],
            Some(&u.ext_cpu[..]),
            true,
        ),
        (
            "backup_ext worker: client (call to `wait_for()`)",
            &u.ext_client[..],
            None,
            true,
        ),
        (
            "`aws s3 cp`, same part size, 3 at a time",
            &u.aws[..],
            Some(&u.aws_cpu[..]),
            true,
        ),
        (
            "`aws s3 cp`, awscli's defaults",
            &u.aws_default[..],
            Some(&u.aws_default_cpu[..]),
            true,
        ),
        (
            "`aws s3 ls` of an empty folder (awscli's start; not an upload)",
            &u.aws_ls[..],
            None,
            false,
        ),
    ];
    for (what, v, cpu, moves_bytes) in rows {
        let rate = if moves_bytes {
            format!("{:.1}", size / median(v))
        } else {
            "-".to_string()
        };
        let _ = writeln!(
            md,
            "| {what} | {:.3} | {:.3} | {:.3} | {rate} | {} |",
            median(v),
            min(v),
            max(v),
            cpu.map_or_else(|| "-".to_string(), cpu_cell)
        );
    }
    let ratio = median(&u.ext) / median(&u.aws);
    let ok = ratio <= UPLOAD_RATIO_TARGET;
    if !ok {
        missed.push(format!(
            "upload of the same file, worker / aws s3 cp: {ratio:.2} > {UPLOAD_RATIO_TARGET}"
        ));
    }
    let started = median(&u.aws_ls);
    let _ = writeln!(
        md,
        "\nRatio worker / `aws s3 cp` with the same part size and parallelism: **{ratio:.2}** \
         (target <= {UPLOAD_RATIO_TARGET}: {}); against awscli's defaults: {:.2}. Without \
         awscli's start-up (the `aws s3 ls` median, {started:.3} s, taken off each `aws s3 cp` \
         median): {:.2} and {:.2}.",
        verdict(ok),
        median(&u.ext) / median(&u.aws_default),
        median(&u.ext) / (median(&u.aws) - started),
        median(&u.ext) / (median(&u.aws_default) - started)
    );
    if let Some(z0) = r.dumps.iter().find(|p| p.compress == Some("0")) {
        let (local, s3, aws) = (median(&z0.local), median(&z0.s3), median(&u.aws));
        let _ = writeln!(
            md,
            "\nSeen from the backups without compression above: streaming into S3 added {:.3} s \
             to the local backup ({s3:.3} against {local:.3} s), where uploading the finished \
             file with `aws s3 cp` takes {aws:.3} s; dumping to local disk and then uploading \
             ({:.3} s) takes {:.2} times as long as the streamed backup.",
            s3 - local,
            local + aws,
            (local + aws) / s3
        );
    }

    memory(md, r, missed);
    let _ = writeln!(
        md,
        "\nThis part took {:.0} s, of which {:.0} s to make {MEMORY_DB}.",
        r.secs, r.memory_db_secs
    );
}

fn memory(md: &mut String, r: &S3, missed: &mut Vec<String>) {
    let m = &r.memory;
    let s = &m.samples;
    let _ = writeln!(
        md,
        "\n### Worker memory while uploading {:.2} GB\n",
        m.bytes as f64 / 1e9
    );
    let _ = writeln!(
        md,
        "One backup without compression of `{MEMORY_DB}` ({}: one table of random bytes, \
         stored uncompressed; the dump writes them as hex, twice the size) into S3: {:.1} MB \
         in {:.2} s from `started_at` to `finished_at` ({:.1} MB/s). `/proc/<pid>/status` of \
         the `backup_ext worker` process (its threads included: the upload runs on threads of \
         the worker) every 100 ms from before the call until `wait_for()` returned. \"Flat\": \
         the peak VmRSS of the second half of the samples exceeds that of the first half by \
         less than {RSS_FLAT_MB} MB, i.e. memory does not grow with the bytes sent. By design \
         an upload holds at most 4 parts of `part_size` in memory (3 being sent, 1 being \
         filled): {:.0} MiB here.\n",
        m.table_size,
        m.bytes as f64 / 1e6,
        m.secs,
        m.bytes as f64 / 1e6 / m.secs,
        4.0 * r.part_size as f64 / 1024.0 / 1024.0
    );
    if m.bytes < MEMORY_MIN_BYTES {
        missed.push(format!(
            "the memory upload was {:.1} MB, under 1 GB: raise --s3-memory-mb",
            m.bytes as f64 / 1e6
        ));
    }
    let rss_peak = peak(s, |x| x.vm_rss_kb);
    let half = s.len() / 2;
    let first_half = peak(&s[..half], |x| x.vm_rss_kb);
    let second_half = peak(&s[half..], |x| x.vm_rss_kb);
    let growth = mb(second_half.saturating_sub(first_half));
    let _ = writeln!(
        md,
        "| measure | value | target | result |\n|---|---:|---|---|"
    );
    let ok = !s.is_empty() && mb(rss_peak) < RSS_TARGET_MB;
    if !ok {
        missed.push(format!(
            "worker peak VmRSS during the S3 upload {:.1} MB (target < {RSS_TARGET_MB} MB{})",
            mb(rss_peak),
            if s.is_empty() {
                "; no samples could be read"
            } else {
                ""
            }
        ));
    }
    let _ = writeln!(
        md,
        "| peak VmRSS | {:.1} MB | < {RSS_TARGET_MB} MB | {} |",
        mb(rss_peak),
        verdict(ok)
    );
    let flat = !s.is_empty() && growth < RSS_FLAT_MB;
    if !flat {
        missed.push(format!(
            "worker VmRSS during the S3 upload: second half's peak {:.1} MB above the first's \
             (flat: < {RSS_FLAT_MB} MB)",
            growth
        ));
    }
    let _ = writeln!(
        md,
        "| peak VmRSS, second half − first half | {growth:.1} MB ({:.1} → {:.1}) | < {RSS_FLAT_MB} MB (flat) | {} |",
        mb(first_half),
        mb(second_half),
        verdict(flat)
    );
    let first = s.first().copied();
    let last = s.last().copied();
    let field = |x: Option<RssSample>, f: fn(&RssSample) -> u64| mb(x.as_ref().map_or(0, f));
    let _ = writeln!(
        md,
        "| VmRSS before / peak / after | {:.1} / {:.1} / {:.1} MB | | |",
        field(first, |x| x.vm_rss_kb),
        mb(rss_peak),
        field(last, |x| x.vm_rss_kb)
    );
    let _ = writeln!(
        md,
        "| RssAnon (private memory) before / peak / after | {:.1} / {:.1} / {:.1} MB | | |",
        field(first, |x| x.rss_anon_kb),
        mb(peak(s, |x| x.rss_anon_kb)),
        field(last, |x| x.rss_anon_kb)
    );
    let _ = writeln!(
        md,
        "| VmHWM (peak since the worker started) before / after | {:.1} / {:.1} MB | | |",
        field(first, |x| x.vm_hwm_kb),
        field(last, |x| x.vm_hwm_kb)
    );
    let tenths: Vec<String> = (1..=10)
        .filter_map(|k| {
            let i = (s.len() * k / 10).checked_sub(1)?;
            Some(format!("{:.0}", mb(s[i].vm_rss_kb)))
        })
        .collect();
    let _ = writeln!(
        md,
        "| VmRSS at the end of each tenth of the samples, MB | {} | | |",
        tenths.join(", ")
    );
    let _ = writeln!(md, "| samples | {} | | |", s.len());
    let (bytes, secs, status) = &m.copy;
    let _ = writeln!(
        md,
        "\nThe backup's copy to a second target (`set_copies()`; another prefix of the same \
         SeaweedFS, so the server reads and writes at once), streamed from the first without a \
         local copy: {:.1} MB in {secs:.2} s (the copy job's `started_at` to `finished_at`), \
         **{:.1} MB/s**, {status}.",
        *bytes as f64 / 1e6,
        *bytes as f64 / 1e6 / secs.max(0.001)
    );
}
