//! The timed cases of the comparison table: each runs the baseline tool and the matching
//! backup_ext call alternately, once per run.

use std::fmt::Write as _;
use std::time::Instant;

use crate::cluster::{files_under, remove_path, run, secs, sha256sum, Bench};
use crate::setup::BIG_DB;
use crate::stats::median;
use crate::{Context, Res};

const RESTORE_BASE_DB: &str = "bench_restore_base";
const RESTORE_EXT_DB: &str = "bench_restore_ext";
const MAX_PARALLEL: &str = "backup_ext.max_parallel";

pub(crate) const ENQUEUE_SQL: &str =
    "SELECT backup_ext.backup_database(dbname => $1, format => $2, \
     compress => $3, jobs => $4, label => 'bench')";

/// One case of the comparison table; every vector holds seconds, one entry per run.
pub(crate) struct CaseResult {
    pub(crate) name: String,
    pub(crate) short: String,
    pub(crate) baseline_desc: String,
    pub(crate) ext_desc: String,
    pub(crate) baseline: Vec<f64>,
    /// Baseline followed by sha256sum of its output; empty where that does not apply.
    pub(crate) baseline_hash: Vec<f64>,
    pub(crate) ext_client: Vec<f64>,
    pub(crate) ext_catalog: Vec<f64>,
}

impl CaseResult {
    fn new(name: &str, short: &str, baseline_desc: &str, ext_desc: &str) -> Self {
        CaseResult {
            name: name.into(),
            short: short.into(),
            baseline_desc: baseline_desc.into(),
            ext_desc: ext_desc.into(),
            baseline: Vec::new(),
            baseline_hash: Vec::new(),
            ext_client: Vec::new(),
            ext_catalog: Vec::new(),
        }
    }

    pub(crate) fn ratio(&self) -> f64 {
        median(&self.ext_client) / median(&self.baseline)
    }

    pub(crate) fn ratio_hash(&self) -> Option<f64> {
        (!self.baseline_hash.is_empty())
            .then(|| median(&self.ext_client) / median(&self.baseline_hash))
    }
}

impl Bench {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn dump_case(
        &mut self,
        name: &str,
        short: &str,
        db: &str,
        pg_dump_args: &[&str],
        output: &str,
        format: &str,
        compress: Option<&str>,
        jobs: Option<i32>,
    ) -> Res<CaseResult> {
        let baseline_desc = format!("pg_dump {} -f {output} {db}", pg_dump_args.join(" "));
        let mut ext_desc = format!("backup_database('{db}', format => '{format}'");
        if let Some(c) = compress {
            let _ = write!(ext_desc, ", compress => '{c}'");
        }
        if let Some(j) = jobs {
            let _ = write!(ext_desc, ", jobs => {j}");
        }
        ext_desc.push(')');
        let mut r = CaseResult::new(name, short, &baseline_desc, &ext_desc);
        let out = self.scratch.join(output);
        for i in 1..=self.a.runs {
            remove_path(&out)?;
            let mut cmd = self.tool("pg_dump");
            cmd.args(pg_dump_args).arg("-f").arg(&out).arg(db);
            let t = secs(|| run(cmd, "pg_dump"))?;
            let h = sha256sum(&files_under(&out)?)?;
            remove_path(&out)?;
            r.baseline.push(t);
            r.baseline_hash.push(t + h);

            let e = self.ext_job(ENQUEUE_SQL, &[&db, &format, &compress, &jobs])?;
            self.remove_ext_outputs(&e.job_ids)?;
            r.ext_client.push(e.client);
            r.ext_catalog.push(e.catalog);
            self.log(&format!(
                "{name}: run {i}: baseline {t:.3}s (+sha256sum {h:.3}s), extension {:.3}s (catalog {:.3}s)",
                e.client, e.catalog
            ));
        }
        Ok(r)
    }

    pub(crate) fn globals_case(&mut self) -> Res<CaseResult> {
        let mut r = CaseResult::new(
            "globals",
            "globals",
            "pg_dumpall -g -f globals.sql",
            "backup_globals()",
        );
        let out = self.scratch.join("globals.sql");
        for i in 1..=self.a.runs {
            remove_path(&out)?;
            let mut cmd = self.tool("pg_dumpall");
            cmd.arg("-g").arg("-f").arg(&out);
            let t = secs(|| run(cmd, "pg_dumpall -g"))?;
            let h = sha256sum(&files_under(&out)?)?;
            remove_path(&out)?;
            r.baseline.push(t);
            r.baseline_hash.push(t + h);

            let e = self.ext_job("SELECT backup_ext.backup_globals(label => 'bench')", &[])?;
            self.remove_ext_outputs(&e.job_ids)?;
            r.ext_client.push(e.client);
            r.ext_catalog.push(e.catalog);
            self.log(&format!(
                "globals: run {i}: baseline {t:.3}s, extension {:.3}s",
                e.client
            ));
        }
        Ok(r)
    }

    pub(crate) fn restore_cases(&mut self) -> Res<Vec<CaseResult>> {
        // Both sides restore the same archive: one custom-format backup made by the extension.
        let source = self.ext_job(
            ENQUEUE_SQL,
            &[&BIG_DB, &"custom", &None::<&str>, &None::<i32>],
        )?;
        let backup_id = source.job_ids[0];
        let archive = self
            .ext_paths(&source.job_ids)?
            .pop()
            .ok_or("the source backup for the restore cases has no path")?;
        let mut results = Vec::new();
        for jobs in [1i32, 2] {
            let mut r = CaseResult::new(
                &format!("restore custom, jobs {jobs}"),
                &format!("restore -j{jobs}"),
                &format!("createdb + pg_restore -j {jobs} -d <new>"),
                &format!("restore_backup(id, '<new>', create_db => true, jobs => {jobs})"),
            );
            for i in 1..=self.a.runs {
                self.drop_database(RESTORE_BASE_DB)?;
                let mut createdb = self.tool("createdb");
                createdb.arg(RESTORE_BASE_DB);
                let mut restore = self.tool("pg_restore");
                restore
                    .args(["-j", &jobs.to_string(), "-d", RESTORE_BASE_DB])
                    .arg(&archive);
                let t = secs(|| {
                    run(createdb, "createdb")?;
                    run(restore, "pg_restore")
                })?;
                self.drop_database(RESTORE_BASE_DB)?;
                r.baseline.push(t);

                self.drop_database(RESTORE_EXT_DB)?;
                let e = self.ext_job(
                    "SELECT backup_ext.restore_backup($1, $2, create_db => true, jobs => $3)",
                    &[&backup_id, &RESTORE_EXT_DB, &jobs],
                )?;
                self.drop_database(RESTORE_EXT_DB)?;
                r.ext_client.push(e.client);
                r.ext_catalog.push(e.catalog);
                self.log(&format!(
                    "restore -j{jobs}: run {i}: baseline {t:.3}s, extension {:.3}s (catalog {:.3}s)",
                    e.client, e.catalog
                ));
            }
            results.push(r);
        }
        remove_path(&archive)?;
        Ok(results)
    }

    pub(crate) fn cluster_cases(&mut self) -> Res<Vec<CaseResult>> {
        let dbs = self.small_dbs();
        let n = dbs.len();
        let options = format!(
            "{{\"include_databases\": [{}]}}",
            dbs.iter()
                .map(|d| format!("\"{d}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let baseline_desc = format!("for each of {n} dbs: pg_dump -Fc; then pg_dumpall -g");
        let mut results: Vec<CaseResult> = [1, 2]
            .iter()
            .map(|mp| {
                CaseResult::new(
                    &format!("cluster of {n} databases, max_parallel {mp}"),
                    &format!("cluster {n} dbs, mp {mp}"),
                    &baseline_desc,
                    &format!(
                        "backup_cluster('custom', options => include {n} dbs), max_parallel {mp}"
                    ),
                )
            })
            .collect();
        let original = self.setting(MAX_PARALLEL)?;
        for i in 1..=self.a.runs {
            let dir = self.scratch_dir("cluster")?;
            let mut cmds = Vec::new();
            for db in &dbs {
                let mut c = self.tool("pg_dump");
                c.args(["-Fc", "-f"])
                    .arg(dir.join(format!("{db}.dump")))
                    .arg(db);
                cmds.push((c, "pg_dump"));
            }
            let mut g = self.tool("pg_dumpall");
            g.args(["-g", "-f"]).arg(dir.join("globals.sql"));
            cmds.push((g, "pg_dumpall -g"));
            let t = secs(|| {
                for (c, what) in cmds {
                    run(c, what)?;
                }
                Ok(())
            })?;
            let h = sha256sum(&files_under(&dir)?)?;
            remove_path(&dir)?;
            let mut line = format!("cluster: run {i}: baseline {t:.3}s");

            for (k, mp) in [1, 2].into_iter().enumerate() {
                self.alter_system(MAX_PARALLEL, Some(&mp.to_string()), &mp.to_string())?;
                let t0 = Instant::now();
                let set_id: i64 = self
                    .db
                    .query_one(
                        "SELECT backup_ext.backup_cluster(format => 'custom', label => 'bench', \
                         options => $1::text::jsonb)",
                        &[&options],
                    )
                    .context(|| "backup_cluster() failed".to_string())?
                    .get(0);
                let ids: Vec<i64> = self
                    .db
                    .query(
                        "SELECT job_id FROM backup_ext.jobs WHERE set_id = $1 ORDER BY job_id",
                        &[&set_id],
                    )
                    .context(|| format!("cannot list jobs of set {set_id}"))?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                for id in &ids {
                    self.wait(*id)?;
                }
                let client = t0.elapsed().as_secs_f64();
                let row = self
                    .db
                    .query_one(
                        "SELECT status, extract(epoch FROM finished_at - requested_at)::float8
                           FROM backup_ext.sets WHERE set_id = $1",
                        &[&set_id],
                    )
                    .context(|| format!("cannot read set {set_id}"))?;
                let status: String = row.get(0);
                if status != "succeeded" {
                    return Err(format!("backup_cluster set {set_id} ended {status}").into());
                }
                self.remove_ext_outputs(&ids)?;
                let r = &mut results[k];
                r.baseline.push(t);
                r.baseline_hash.push(t + h);
                r.ext_client.push(client);
                r.ext_catalog.push(row.get(1));
                let _ = write!(line, ", max_parallel {mp} {client:.3}s");
            }
            self.log(&line);
        }
        self.restore_setting(MAX_PARALLEL, &original)?;
        Ok(results)
    }
}
