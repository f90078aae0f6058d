//! Measurements besides the comparison table: call and pickup latency, catalog reads over
//! many rows, the worker's memory while streaming and the streaming throughput.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::cases::ENQUEUE_SQL;
use crate::cluster::{devnull, remove_path, run, secs, sha256sum, Bench};
use crate::setup::{BIG_DB, TINY_DB};
use crate::stats::median;
use crate::{Context, Res};

const FABRICATED_LABEL: &str = "bench-fabricated";
pub(crate) const FABRICATED_DBS: i32 = 20;

#[derive(Clone, Copy)]
pub(crate) struct RssSample {
    pub(crate) vm_rss_kb: u64,
    pub(crate) vm_hwm_kb: u64,
    pub(crate) rss_anon_kb: u64,
}

/// Polls /proc/<pid>/status every 100 ms on a thread until stopped.
pub(crate) struct RssSampler {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<Vec<RssSample>>,
}

fn read_rss(pid: i32) -> Option<RssSample> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some(RssSample {
        vm_rss_kb: field("VmRSS:"),
        vm_hwm_kb: field("VmHWM:"),
        rss_anon_kb: field("RssAnon:"),
    })
}

impl RssSampler {
    pub(crate) fn start(pid: i32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = thread::spawn(move || {
            let mut samples = Vec::new();
            loop {
                if let Some(s) = read_rss(pid) {
                    samples.push(s);
                }
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                thread::sleep(Duration::from_millis(100));
            }
            samples
        });
        RssSampler { stop, handle }
    }

    pub(crate) fn finish(self) -> Vec<RssSample> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

pub(crate) struct Latency {
    pub(crate) enqueue_ms: Vec<f64>,
    pub(crate) pickup_requested_ms: Vec<f64>,
    pub(crate) pickup_commit_ms: Vec<f64>,
}

pub(crate) struct CatalogTiming {
    pub(crate) query: String,
    pub(crate) ms: Vec<f64>,
}

pub(crate) struct Streaming {
    pub(crate) bytes: i64,
    pub(crate) ext_stream: Vec<f64>,
    pub(crate) ext_client: Vec<f64>,
    pub(crate) dump_file: Vec<f64>,
    pub(crate) dump_null: Vec<f64>,
    pub(crate) cat: Vec<f64>,
    pub(crate) sha: Vec<f64>,
    pub(crate) rss: Vec<RssSample>,
    pub(crate) rss_per_run: Vec<(u64, u64)>,
}

impl Bench {
    pub(crate) fn latency(&mut self) -> Res<Latency> {
        let enqueue = self
            .db
            .prepare("SELECT backup_ext.backup_database($1)")
            .context(|| "cannot prepare backup_database()".to_string())?;
        let warmup = 20;
        self.log(&format!(
            "enqueue latency: {} calls rolled back",
            self.a.enqueue_calls
        ));
        let mut enqueue_ms = Vec::with_capacity(self.a.enqueue_calls);
        for i in 0..warmup + self.a.enqueue_calls {
            let mut tx = self
                .db
                .transaction()
                .context(|| "BEGIN failed".to_string())?;
            let t0 = Instant::now();
            tx.query_one(&enqueue, &[&TINY_DB])
                .context(|| "backup_database() failed".to_string())?;
            let ms = t0.elapsed().as_secs_f64() * 1000.0;
            tx.rollback().context(|| "ROLLBACK failed".to_string())?;
            if i >= warmup {
                enqueue_ms.push(ms);
            }
        }

        self.log(&format!(
            "pickup latency: {} jobs on {TINY_DB}",
            self.a.pickup_jobs
        ));
        let clock = self
            .db
            .prepare("SELECT extract(epoch FROM clock_timestamp())::float8")
            .context(|| "cannot prepare clock query".to_string())?;
        let mut pickup_requested_ms = Vec::new();
        let mut pickup_commit_ms = Vec::new();
        for _ in 0..self.a.pickup_jobs {
            // Let the worker finish its bookkeeping for the previous job and go idle.
            thread::sleep(Duration::from_millis(50));
            let id: i64 = self
                .db
                .query_one(&enqueue, &[&TINY_DB])
                .context(|| "backup_database() failed".to_string())?
                .get(0);
            let after_commit: f64 = self
                .db
                .query_one(&clock, &[])
                .context(|| "clock_timestamp() failed".to_string())?
                .get(0);
            self.wait(id)?;
            let row = self
                .db
                .query_one(
                    "SELECT extract(epoch FROM started_at - requested_at)::float8 * 1000,
                            extract(epoch FROM started_at)::float8
                       FROM backup_ext.jobs WHERE job_id = $1",
                    &[&id],
                )
                .context(|| format!("cannot read job {id}"))?;
            pickup_requested_ms.push(row.get(0));
            let started: f64 = row.get(1);
            pickup_commit_ms.push((started - after_commit) * 1000.0);
            self.remove_ext_outputs(&[id])?;
        }
        Ok(Latency {
            enqueue_ms,
            pickup_requested_ms,
            pickup_commit_ms,
        })
    }

    pub(crate) fn streaming(&mut self) -> Res<Streaming> {
        let pid = self.worker_pid()?;
        let mut s = Streaming {
            bytes: 0,
            ext_stream: Vec::new(),
            ext_client: Vec::new(),
            dump_file: Vec::new(),
            dump_null: Vec::new(),
            cat: Vec::new(),
            sha: Vec::new(),
            rss: Vec::new(),
            rss_per_run: Vec::new(),
        };
        let out = self.scratch.join("stream.sql");
        for i in 1..=self.a.runs {
            let sampler = RssSampler::start(pid);
            let e = self.ext_job(
                ENQUEUE_SQL,
                &[&BIG_DB, &"plain", &None::<&str>, &None::<i32>],
            );
            let samples = sampler.finish();
            let e = e?;
            let id = e.job_ids[0];
            let row = self
                .db
                .query_one(
                    "SELECT a.size_bytes, a.path, extract(epoch FROM j.finished_at - j.started_at)::float8
                       FROM backup_ext.artifacts a JOIN backup_ext.jobs j USING (job_id)
                      WHERE a.job_id = $1",
                    &[&id],
                )
                .context(|| format!("cannot read backup {id}"))?;
            s.bytes = row.get::<_, Option<i64>>(0).unwrap_or(0);
            let path = PathBuf::from(row.get::<_, String>(1));
            s.ext_stream.push(row.get(2));
            s.ext_client.push(e.client);
            if let (Some(first), Some(peak)) =
                (samples.first(), samples.iter().map(|x| x.vm_rss_kb).max())
            {
                s.rss_per_run.push((first.vm_rss_kb, peak));
            }
            s.rss.extend(samples);

            let mut cat = Command::new("cat");
            cat.arg(&path).stdout(devnull()?).stdin(Stdio::null());
            let t_cat = secs(|| run(cat, "cat"))?;
            s.cat.push(t_cat);
            s.sha.push(sha256sum(std::slice::from_ref(&path))?);
            self.remove_ext_outputs(&e.job_ids)?;

            let mut null = self.tool("pg_dump");
            null.arg("-Fp").arg(BIG_DB).stdout(devnull()?);
            s.dump_null.push(secs(|| run(null, "pg_dump > /dev/null"))?);

            remove_path(&out)?;
            let mut file = self.tool("pg_dump");
            file.args(["-Fp", "-f"]).arg(&out).arg(BIG_DB);
            s.dump_file.push(secs(|| run(file, "pg_dump -f"))?);
            remove_path(&out)?;
            self.log(&format!(
                "streaming: run {i}: extension {:.3}s, pg_dump > /dev/null {:.3}s, cat {t_cat:.3}s",
                e.client,
                s.dump_null.last().copied().unwrap_or(f64::NAN)
            ));
        }
        Ok(s)
    }

    pub(crate) fn catalog_reads(&mut self) -> Res<(i64, Vec<CatalogTiming>)> {
        let existing: i64 = self
            .db
            .query_one("SELECT count(*) FROM backup_ext.jobs", &[])
            .context(|| "cannot count jobs".to_string())?
            .get(0);
        let add = (self.a.catalog_rows as i64 - existing).max(0) as i32;
        self.log(&format!(
            "catalog: fabricating {add} rows next to {existing} real ones"
        ));
        self.db
            .execute(
                "WITH j AS (
                   INSERT INTO backup_ext.jobs (kind, database, label, status, requested_at,
                                                started_at, finished_at, bytes_written, error)
                   SELECT 'database', 'bench_cat_' || (g % $2), $3,
                          CASE WHEN g % 50 = 0 THEN 'failed' ELSE 'succeeded' END,
                          now() - g * interval '5 minutes',
                          now() - g * interval '5 minutes' + interval '1 second',
                          now() - g * interval '5 minutes' + interval '30 seconds',
                          1000000 + g,
                          CASE WHEN g % 50 = 0 THEN 'pg_dump exited with code 1: fabricated' END
                     FROM generate_series(1, $1) g
                   RETURNING job_id, database, status)
                 INSERT INTO backup_ext.artifacts (backup_id, job_id, kind, database, format, path,
                                                   size_bytes, sha256, server_version, tool_version)
                 SELECT job_id, job_id, 'database', database, 'custom',
                        '/nonexistent/' || database || '/' || job_id || '.dump',
                        CASE WHEN status = 'succeeded' THEN 1000000 END,
                        CASE WHEN status = 'succeeded' THEN repeat('ab', 32) END,
                        '15', '15'
                   FROM j",
                &[&add, &FABRICATED_DBS, &FABRICATED_LABEL],
            )
            .context(|| "cannot fabricate catalog rows".to_string())?;
        self.exec("ANALYZE backup_ext.jobs; ANALYZE backup_ext.artifacts")?;
        let total: i64 = self
            .db
            .query_one("SELECT count(*) FROM backup_ext.jobs", &[])
            .context(|| "cannot count jobs".to_string())?
            .get(0);

        let queries = [
            "SELECT count(*) FROM backup_ext.list_backups('bench_cat_7')",
            "SELECT * FROM backup_ext.list_backups() LIMIT 50",
            "SELECT * FROM backup_ext.status()",
            "SELECT backup_ext.metrics()",
        ];
        let mut timings = Vec::new();
        for q in queries {
            let stmt = self
                .db
                .prepare(q)
                .context(|| format!("cannot prepare {q}"))?;
            let mut ms = Vec::new();
            for i in 0..3 + self.a.catalog_runs {
                let t0 = Instant::now();
                self.db
                    .query(&stmt, &[])
                    .context(|| format!("SQL failed: {q}"))?;
                if i >= 3 {
                    ms.push(t0.elapsed().as_secs_f64() * 1000.0);
                }
            }
            self.log(&format!("catalog: {q}: median {:.2} ms", median(&ms)));
            timings.push(CatalogTiming {
                query: q.to_string(),
                ms,
            });
        }
        self.db
            .execute(
                "DELETE FROM backup_ext.jobs WHERE label = $1",
                &[&FABRICATED_LABEL],
            )
            .context(|| "cannot remove the fabricated catalog rows".to_string())?;
        Ok((total, timings))
    }
}
