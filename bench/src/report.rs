//! The markdown report: the tables, each figure against its target, the missed targets, the
//! compression table with its recommendation, and the S3 part (rendered in `s3/report.rs`).

use std::fmt::Write as _;

use crate::args::Args;
use crate::cases::CaseResult;
use crate::compression::{recommend, Compression, BACKUP_SLACK, METHODS};
use crate::probes::{CatalogTiming, Latency, Streaming, FABRICATED_DBS};
use crate::s3::S3;
use crate::setup::{loadavg, Machine, BIG_DB, TABLES_DB, TEXT_DB, TINY_DB};
use crate::stats::{max, median, min, percentile};

pub(crate) const RATIO_TARGET: f64 = 1.05;
const ENQUEUE_P99_TARGET_MS: f64 = 5.0;
const PICKUP_P99_TARGET_MS: f64 = 50.0;
const CATALOG_TARGET_MS: f64 = 20.0;
const RSS_TARGET_MB: f64 = 50.0;
/// Growth of the worker's resident set during one dump above which it is not "flat".
const RSS_FLAT_MB: f64 = 4.0;

pub(crate) fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "MISSED"
    }
}

pub(crate) fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// What the comparison part measured: the cases against the tools run directly and the probes.
pub(crate) struct Comparison {
    pub(crate) cases: Vec<CaseResult>,
    pub(crate) latency: Latency,
    pub(crate) catalog_rows: i64,
    pub(crate) catalog: Vec<CatalogTiming>,
    pub(crate) streaming: Streaming,
}

pub(crate) struct Report<'a> {
    pub(crate) m: &'a Machine,
    pub(crate) a: &'a Args,
    pub(crate) comparison: Option<&'a Comparison>,
    /// `--only catalog`: the rows in backup_ext.jobs and the timings.
    pub(crate) catalog: Option<&'a (i64, Vec<CatalogTiming>)>,
    pub(crate) compression: Option<&'a Compression>,
    pub(crate) s3: Option<&'a S3>,
    pub(crate) crypt: Option<&'a crate::crypt::Crypt>,
    pub(crate) total_secs: f64,
}

/// The report and the missed targets (the compression table has none).
pub(crate) fn render(r: &Report) -> (String, Vec<String>) {
    let mut missed = Vec::new();
    let mut md = String::new();
    header(&mut md, r);
    if let Some(c) = r.comparison {
        comparison(&mut md, r.a, c, &mut missed);
    }
    if let Some((rows, timings)) = r.catalog {
        catalog(&mut md, r.a, *rows, timings, &mut missed);
    }
    if let Some(c) = r.compression {
        compression(&mut md, r.a, c);
    }
    if let Some(s) = r.s3 {
        crate::s3::render(&mut md, r.a, s, &mut missed);
    }
    if let Some(c) = r.crypt {
        crate::crypt::render(&mut md, r.a, c, &mut missed);
    }
    if r.comparison.is_some() || r.s3.is_some() || r.catalog.is_some() || r.crypt.is_some() {
        let _ = writeln!(md, "\n## Missed targets\n");
        if missed.is_empty() {
            let _ = writeln!(md, "none");
        } else {
            for x in &missed {
                let _ = writeln!(md, "- MISSED: {x}");
            }
        }
    }
    (md, missed)
}

fn header(md: &mut String, r: &Report) {
    let m = r.m;
    let a = r.a;
    let _ = writeln!(md, "# backup_ext benchmark, {}\n", m.date);
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(
        md,
        "| machine | {} CPUs ({}), {:.1} GiB memory; load average {} at start, {} at end |",
        m.nproc,
        m.cpu,
        m.mem_gib,
        m.load_start,
        loadavg()
    );
    let _ = writeln!(md, "| PostgreSQL | {} |", m.pg_version);
    let _ = writeln!(md, "| tools | {} |", m.pg_dump_version);
    let _ = writeln!(md, "| backup_ext library | {} |", m.library);
    if let Some(c) = r.compression {
        let _ = writeln!(
            md,
            "| compression table's tools | {} in `{}` |",
            c.tool_version,
            a.compression_bin.display()
        );
    }
    if let Some(s) = r.s3 {
        let _ = writeln!(
            md,
            "| S3 part's tools | `weed mini` ({}), {} |",
            s.tools.weed_version, s.tools.aws_version
        );
    }
    let _ = writeln!(
        md,
        "| settings | shared_buffers {}, backup_ext.max_parallel {}{} |",
        m.shared_buffers,
        m.max_parallel,
        if r.comparison.is_some() {
            " (1 and 2 in the cluster case)"
        } else {
            ""
        }
    );
    let mut data = format!(
        "scale {}: {BIG_DB} {} (pgbench -i -s {})",
        a.scale, m.big_size, a.scale
    );
    if r.comparison.is_some() {
        let _ = write!(
            data,
            "; {TABLES_DB} {} tables of 100 rows ({}); {} small databases for the cluster case",
            a.small_tables,
            m.tables_size.as_deref().unwrap_or("?"),
            a.small_dbs
        );
    }
    if let Some(c) = r.compression {
        if let Some(d) = c.datasets.iter().find(|d| d.db == TEXT_DB) {
            let _ = write!(
                data,
                "; {TEXT_DB} {} for the compression table",
                d.description
            );
        }
    }
    if let Some(s) = r.s3 {
        let _ = write!(
            data,
            "; {} ({}) for the S3 part's memory",
            crate::s3::MEMORY_DB,
            s.memory.table_size
        );
    }
    if r.catalog.is_some() {
        data = "the fabricated catalog rows below only".to_string();
    }
    let _ = writeln!(md, "| data | {data} |");
    if r.comparison.is_some() {
        let _ = writeln!(
            md,
            "| runs | {} per side, baseline and extension interleaved |",
            a.runs
        );
    } else if r.s3.is_some() {
        let _ = writeln!(
            md,
            "| runs | {} per side, S3 and local backups interleaved, and the worker's and awscli's uploads |",
            a.runs
        );
    }
    if r.compression.is_some() {
        let _ = writeln!(
            md,
            "| runs, compression table | per case {} backup(s) through the extension, {} pg_dump by hand, {} restore(s) |",
            a.compression_runs, a.compression_dump_runs, a.compression_restore_runs
        );
    }
    let _ = writeln!(md, "| total time | {:.0} s |\n", r.total_secs);
}

fn comparison(md: &mut String, a: &Args, r: &Comparison, missed: &mut Vec<String>) {
    let _ = writeln!(md, "## Backups and restores\n");
    let _ = writeln!(
        md,
        "Seconds. Baseline tools run as `postgres` over the cluster's socket. \"extension\" is \
         measured by the client from the enqueuing call (autocommit) until `wait_for()` returns; \
         \"catalog\" is `finished_at - requested_at` as the extension records it. \
         ratio = extension median / baseline median, target <= {RATIO_TARGET}. \
         \"+ sha256sum\" is the baseline followed by `sha256sum` of its output, which the \
         extension computes while streaming.\n"
    );
    let _ = writeln!(
        md,
        "| case | baseline min | baseline median | + sha256sum median | extension min | extension median | catalog median | ratio | ratio vs + sha256sum | target <= {RATIO_TARGET} |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for c in &r.cases {
        let ratio = c.ratio();
        let ok = ratio <= RATIO_TARGET;
        if !ok {
            missed.push(format!("{}: ratio {ratio:.2} > {RATIO_TARGET}", c.name));
        }
        let hash = if c.baseline_hash.is_empty() {
            "-".to_string()
        } else {
            format!("{:.3}", median(&c.baseline_hash))
        };
        let ratio_hash = c
            .ratio_hash()
            .map_or_else(|| "-".to_string(), |x| format!("{x:.2}"));
        let _ = writeln!(
            md,
            "| {} | {:.3} | {:.3} | {hash} | {:.3} | {:.3} | {:.3} | {ratio:.2} | {ratio_hash} | {} |",
            c.name,
            min(&c.baseline),
            median(&c.baseline),
            min(&c.ext_client),
            median(&c.ext_client),
            median(&c.ext_catalog),
            verdict(ok)
        );
    }
    let _ = writeln!(md, "\n| case | baseline | extension |\n|---|---|---|");
    for c in &r.cases {
        let _ = writeln!(
            md,
            "| {} | `{}` | `{}` |",
            c.name, c.baseline_desc, c.ext_desc
        );
    }

    let l = &r.latency;
    let _ = writeln!(md, "\n## Call and pickup latency\n");
    let _ = writeln!(
        md,
        "| measure | samples | p50 ms | p99 ms | max ms | target | result |\n|---|---:|---:|---:|---:|---|---|"
    );
    let enqueue_p99 = percentile(&l.enqueue_ms, 99.0);
    let ok = enqueue_p99 < ENQUEUE_P99_TARGET_MS;
    if !ok {
        missed.push(format!(
            "backup_database() call latency: p99 {enqueue_p99:.2} ms >= {ENQUEUE_P99_TARGET_MS} ms"
        ));
    }
    let _ = writeln!(
        md,
        "| `backup_database()` call (BEGIN; SELECT, timed; ROLLBACK) | {} | {:.2} | {enqueue_p99:.2} | {:.2} | p99 < {ENQUEUE_P99_TARGET_MS} ms | {} |",
        l.enqueue_ms.len(),
        percentile(&l.enqueue_ms, 50.0),
        max(&l.enqueue_ms),
        verdict(ok)
    );
    let pickup_p99 = percentile(&l.pickup_requested_ms, 99.0);
    let ok = pickup_p99 < PICKUP_P99_TARGET_MS;
    if !ok {
        missed.push(format!(
            "pickup latency: p99 {pickup_p99:.2} ms >= {PICKUP_P99_TARGET_MS} ms"
        ));
    }
    let _ = writeln!(
        md,
        "| pickup: `started_at - requested_at` | {} | {:.2} | {pickup_p99:.2} | {:.2} | p99 < {PICKUP_P99_TARGET_MS} ms | {} |",
        l.pickup_requested_ms.len(),
        percentile(&l.pickup_requested_ms, 50.0),
        max(&l.pickup_requested_ms),
        verdict(ok)
    );
    let _ = writeln!(
        md,
        "| pickup: `started_at` - server clock right after COMMIT returned | {} | {:.2} | {:.2} | {:.2} | (information) | |",
        l.pickup_commit_ms.len(),
        percentile(&l.pickup_commit_ms, 50.0),
        percentile(&l.pickup_commit_ms, 99.0),
        max(&l.pickup_commit_ms)
    );
    let _ = writeln!(
        md,
        "\nPickup jobs are tiny dumps of `{TINY_DB}`, enqueued one at a time in autocommit, each \
         after the previous one finished. `requested_at` is `now()` of the enqueuing transaction \
         (its start), so the first pickup row also contains the call itself and its commit: it \
         is an upper bound of commit-to-running. The second row subtracts `clock_timestamp()` \
         read in the same session right after COMMIT returned; that moment is later than the \
         commit by up to one round trip, so it is a lower bound (it can be slightly negative)."
    );

    catalog(md, a, r.catalog_rows, &r.catalog, missed);

    let s = &r.streaming;
    let _ = writeln!(
        md,
        "\n## Worker memory while streaming the plain dump of {BIG_DB}\n"
    );
    let _ = writeln!(
        md,
        "`/proc/<pid>/status` of the `backup_ext worker` process, polled every 100 ms during \
         {} plain dump(s) of {:.1} MB. VmHWM is the peak since the worker started; RssAnon is its \
         private memory (VmRSS also counts shared buffers it touched).\n",
        s.rss_per_run.len(),
        s.bytes as f64 / 1e6
    );
    let rss_first = s.rss.first().map_or(0, |x| x.vm_rss_kb);
    let rss_max = s.rss.iter().map(|x| x.vm_rss_kb).max().unwrap_or(0);
    let rss_last = s.rss.last().map_or(0, |x| x.vm_rss_kb);
    let anon_max = s.rss.iter().map(|x| x.rss_anon_kb).max().unwrap_or(0);
    let anon_first = s.rss.first().map_or(0, |x| x.rss_anon_kb);
    let hwm_first = s.rss.first().map_or(0, |x| x.vm_hwm_kb);
    let hwm_last = s.rss.last().map_or(0, |x| x.vm_hwm_kb);
    let growth = s
        .rss_per_run
        .iter()
        .map(|(first, peak)| mb(peak.saturating_sub(*first)))
        .fold(0.0, f64::max);
    let _ = writeln!(
        md,
        "| measure | value | target | result |\n|---|---:|---|---|"
    );
    let ok = s.rss.is_empty() || mb(rss_max) < RSS_TARGET_MB;
    if !ok || s.rss.is_empty() {
        missed.push(format!(
            "worker peak VmRSS {:.1} MB (target < {RSS_TARGET_MB} MB{})",
            mb(rss_max),
            if s.rss.is_empty() {
                "; no samples could be read"
            } else {
                ""
            }
        ));
    }
    let _ = writeln!(
        md,
        "| peak VmRSS | {:.1} MB | < {RSS_TARGET_MB} MB | {} |",
        mb(rss_max),
        verdict(ok && !s.rss.is_empty())
    );
    let flat = growth < RSS_FLAT_MB;
    if !flat {
        missed.push(format!(
            "worker VmRSS grew by {growth:.1} MB during one dump (flat: < {RSS_FLAT_MB} MB)"
        ));
    }
    let _ = writeln!(
        md,
        "| largest VmRSS growth within one dump | {growth:.1} MB | < {RSS_FLAT_MB} MB (flat) | {} |",
        verdict(flat)
    );
    let _ = writeln!(
        md,
        "| VmRSS first / last sample | {:.1} / {:.1} MB | | |",
        mb(rss_first),
        mb(rss_last)
    );
    let _ = writeln!(
        md,
        "| RssAnon first / peak | {:.1} / {:.1} MB | | |",
        mb(anon_first),
        mb(anon_max)
    );
    let _ = writeln!(
        md,
        "| VmHWM before / after | {:.1} / {:.1} MB | | |",
        mb(hwm_first),
        mb(hwm_last)
    );
    let _ = writeln!(md, "| samples | {} | | |", s.rss.len());

    let _ = writeln!(
        md,
        "\n## Streaming throughput, plain dump of {BIG_DB} ({:.1} MB)\n",
        s.bytes as f64 / 1e6
    );
    let _ = writeln!(
        md,
        "MB = 10^6 bytes of the dump; medians over runs: {}. `cat` of the extension's own output (just \
         written, so from the page cache) is the ceiling for moving these bytes.\n",
        a.runs
    );
    let _ = writeln!(md, "| path | median s | MB/s |\n|---|---:|---:|");
    let rows: [(&str, &Vec<f64>); 6] = [
        (
            "extension, started_at to finished_at (pg_dump, worker with SHA-256 and size, file, fsync)",
            &s.ext_stream,
        ),
        ("extension, client: call to wait_for()", &s.ext_client),
        ("`pg_dump -Fp -f file`", &s.dump_file),
        ("`pg_dump -Fp > /dev/null`", &s.dump_null),
        ("`cat file > /dev/null` (ceiling)", &s.cat),
        ("`sha256sum file`", &s.sha),
    ];
    for (what, v) in rows {
        let med = median(v);
        let _ = writeln!(
            md,
            "| {what} | {med:.3} | {:.1} |",
            s.bytes as f64 / 1e6 / med
        );
    }
}

fn catalog(
    md: &mut String,
    a: &Args,
    rows: i64,
    timings: &[CatalogTiming],
    missed: &mut Vec<String>,
) {
    let _ = writeln!(
        md,
        "\n## Catalog reads with {} rows in backup_ext.jobs\n",
        rows
    );
    let _ = writeln!(
        md,
        "Rows fabricated with INSERT ... SELECT generate_series into `backup_ext.jobs` and \
         `backup_ext.artifacts` ({FABRICATED_DBS} databases, 2% failed), removed afterwards. \
         {} runs of each query after 3 warm-up runs, measured by the client including fetching \
         the rows.\n",
        a.catalog_runs
    );
    let _ = writeln!(
        md,
        "| query | median ms | min ms | max ms | target | result |\n|---|---:|---:|---:|---|---|"
    );
    for t in timings {
        let med = median(&t.ms);
        let ok = med < CATALOG_TARGET_MS;
        if !ok {
            missed.push(format!(
                "`{}`: median {med:.1} ms >= {CATALOG_TARGET_MS} ms",
                t.query
            ));
        }
        let _ = writeln!(
            md,
            "| `{}` | {med:.2} | {:.2} | {:.2} | < {CATALOG_TARGET_MS} ms | {} |",
            t.query,
            min(&t.ms),
            max(&t.ms),
            verdict(ok)
        );
    }
}

fn megabytes(bytes: f64) -> f64 {
    bytes / 1e6
}

/// Median with two decimals, "-" without samples.
fn secs_cell(samples: &[f64]) -> String {
    if samples.is_empty() {
        "-".into()
    } else {
        format!("{:.2}", median(samples))
    }
}

fn compression(md: &mut String, a: &Args, c: &Compression) {
    if !md.ends_with("\n\n") {
        md.push('\n');
    }
    let _ = writeln!(
        md,
        "## Compression: pg_dump {}'s methods against this server\n",
        c.tool_version.rsplit(' ').next().unwrap_or("")
    );
    let _ = writeln!(
        md,
        "Backups through the extension with `backup_ext.bin_dir = '{}'` (set by ALTER SYSTEM \
         for this part, then put back): time from the enqueuing call until `wait_for()` returns, \
         median of {} run(s); size = `size_bytes` of `backup_ext.backups`, MB = 10^6 bytes. \
         \"by hand\" is the same `pg_dump` run directly, median of {} run(s). \"restore\" is \
         `createdb` + `pg_restore -j 1 -d <new>` of the extension's archive with the same tools, \
         median of {} run(s); each restored database's row counts are checked against the \
         source. \"uncompressed\" is `pg_dump -Fc --compress=none`, counted from a pipe.\n",
        a.compression_bin.display(),
        a.compression_runs,
        a.compression_dump_runs,
        a.compression_restore_runs
    );
    for d in &c.datasets {
        let base = d.default_method();
        let _ = writeln!(
            md,
            "### {}: {}; uncompressed archive {:.1} MB\n",
            d.db,
            d.description,
            megabytes(d.uncompressed_bytes as f64)
        );
        let _ = writeln!(
            md,
            "| case | backup s (extension) | pg_dump s (by hand) | size MB | uncompressed / size | size / gzip 6 | restore s |\n|---|---:|---:|---:|---:|---:|---:|"
        );
        for r in &d.methods {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.1} | {:.1} | {:.2} | {} |",
                r.method.name,
                secs_cell(&r.backup),
                secs_cell(&r.pg_dump),
                megabytes(r.bytes as f64),
                d.uncompressed_bytes as f64 / r.bytes as f64,
                r.bytes as f64 / base.bytes as f64,
                secs_cell(&r.restore)
            );
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(md, "| case | extension | by hand |\n|---|---|---|");
    for m in &METHODS {
        let _ = writeln!(
            md,
            "| {} | `{}` | `pg_dump {} -f <file> db` |",
            m.name,
            m.ext_call(),
            m.pg_dump_args.join(" ")
        );
    }

    let rec = recommend(c);
    let _ = writeln!(md, "\n### Recommended default\n");
    let _ = writeln!(
        md,
        "Rule: the smallest archive (mean of size / gzip 6 over both databases) among the \
         custom-format methods whose backup through the extension takes at most \
         {BACKUP_SLACK:.2} × gzip 6's time on every database. Restore times are shown, not \
         used: most of a restore is COPY and index builds, the same whatever the method, and \
         {} run(s) per case cannot tell the rest from noise.\n",
        a.compression_restore_runs
    );
    if rec.method.is_default() {
        let _ = writeln!(
            md,
            "**Keep pg_dump's default, gzip 6**: no other method is as fast and smaller here."
        );
    } else {
        let _ = writeln!(
            md,
            "**`compress => '{}'`** (custom format): {:.2} × gzip 6's size on average.",
            rec.method.compress.unwrap_or(""),
            rec.mean_size
        );
    }
    for d in &c.datasets {
        let base = d.default_method();
        let Some(r) = d
            .methods
            .iter()
            .find(|r| std::ptr::eq(r.method, rec.method))
        else {
            continue;
        };
        let fastest = d
            .methods
            .iter()
            .filter(|r| r.method.format == "custom")
            .min_by(|x, y| median(&x.backup).total_cmp(&median(&y.backup)));
        let smallest = d
            .methods
            .iter()
            .filter(|r| r.method.format == "custom")
            .min_by_key(|r| r.bytes);
        let mut line = if rec.method.is_default() {
            format!(
                "- {}: gzip 6 backup {:.2} s, {:.1} MB; restore {:.2} s",
                d.db,
                median(&base.backup),
                megabytes(base.bytes as f64),
                median(&base.restore)
            )
        } else {
            format!(
                "- {}: backup {:.2} s, {:.1} MB (gzip 6: {:.2} s, {:.1} MB); restore {:.2} s (gzip 6: {:.2} s)",
                d.db,
                median(&r.backup),
                megabytes(r.bytes as f64),
                median(&base.backup),
                megabytes(base.bytes as f64),
                median(&r.restore),
                median(&base.restore)
            )
        };
        if let Some(f) = fastest.filter(|f| !std::ptr::eq(f.method, rec.method)) {
            let _ = write!(
                line,
                ". Fastest backup: {} ({:.2} s, {:.2} × gzip 6's size)",
                f.method.label(),
                median(&f.backup),
                f.bytes as f64 / base.bytes as f64
            );
        }
        if let Some(s) = smallest.filter(|s| !std::ptr::eq(s.method, rec.method)) {
            let _ = write!(
                line,
                ". Smallest: {} ({:.1} MB, {:.2} × gzip 6's backup time)",
                s.method.label(),
                megabytes(s.bytes as f64),
                median(&s.backup) / median(&base.backup)
            );
        }
        let _ = writeln!(md, "{line}.");
    }
    let _ = writeln!(
        md,
        "\n`lz4`, `zstd` and `method:level` need pg_dump 16 or later in `backup_ext.bin_dir`; \
         with older tools the choice is a gzip level (`compress => '1'` .. `'9'`)."
    );

    let _ = writeln!(
        md,
        "\n{} of {} restores exited 1 with exactly one error, `unrecognized configuration \
         parameter \"transaction_timeout\"` (pg_restore 17 sets it; this server does not know \
         it), and nothing else on stderr; they count as successes, and their row counts matched. \
         Any other output or exit status stops the benchmark.",
        c.tolerated, c.restores
    );
    let _ = writeln!(
        md,
        "\nThis part took {:.0} s, of which {:.0} s to make {TEXT_DB}.",
        c.secs, c.text_secs
    );
}
