//! The markdown report: the tables, each figure against its target, and the missed targets.

use std::fmt::Write as _;

use crate::args::Args;
use crate::cases::CaseResult;
use crate::probes::{CatalogTiming, Latency, Streaming, FABRICATED_DBS};
use crate::setup::{loadavg, Machine, BIG_DB, TABLES_DB, TINY_DB};
use crate::stats::{max, median, min, percentile};

pub(crate) const RATIO_TARGET: f64 = 1.05;
const ENQUEUE_P99_TARGET_MS: f64 = 5.0;
const PICKUP_P99_TARGET_MS: f64 = 50.0;
const CATALOG_TARGET_MS: f64 = 20.0;
const RSS_TARGET_MB: f64 = 50.0;
/// Growth of the worker's resident set during one dump above which it is not "flat".
const RSS_FLAT_MB: f64 = 4.0;

fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "MISSED"
    }
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

pub(crate) struct Report<'a> {
    pub(crate) m: &'a Machine,
    pub(crate) a: &'a Args,
    pub(crate) cases: &'a [CaseResult],
    pub(crate) latency: &'a Latency,
    pub(crate) catalog_rows: i64,
    pub(crate) catalog: &'a [CatalogTiming],
    pub(crate) streaming: &'a Streaming,
    pub(crate) total_secs: f64,
}

pub(crate) fn render(r: &Report) -> (String, Vec<String>) {
    let mut missed = Vec::new();
    let mut md = String::new();
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
    let _ = writeln!(
        md,
        "| settings | shared_buffers {}, backup_ext.max_parallel {} (1 and 2 in the cluster case) |",
        m.shared_buffers, m.max_parallel
    );
    let _ = writeln!(
        md,
        "| data | scale {}: {BIG_DB} {} (pgbench -i -s {}); {TABLES_DB} {} tables of 100 rows ({}); {} small databases for the cluster case |",
        a.scale, m.big_size, a.scale, a.small_tables, m.tables_size, a.small_dbs
    );
    let _ = writeln!(
        md,
        "| runs | {} per side, baseline and extension interleaved |",
        a.runs
    );
    let _ = writeln!(md, "| total time | {:.0} s |\n", r.total_secs);

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
    for c in r.cases {
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
    for c in r.cases {
        let _ = writeln!(
            md,
            "| {} | `{}` | `{}` |",
            c.name, c.baseline_desc, c.ext_desc
        );
    }

    let l = r.latency;
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

    let _ = writeln!(
        md,
        "\n## Catalog reads with {} rows in backup_ext.jobs\n",
        r.catalog_rows
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
    for t in r.catalog {
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

    let s = r.streaming;
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

    let _ = writeln!(md, "\n## Missed targets\n");
    if missed.is_empty() {
        let _ = writeln!(md, "none");
    } else {
        for x in &missed {
            let _ = writeln!(md, "- MISSED: {x}");
        }
    }
    (md, missed)
}
