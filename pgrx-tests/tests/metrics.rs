//! `backup_ext.metrics()`: the Prometheus text exposition format, read back by the reference
//! parser (PyPI `prometheus_client`, in the Python environment `scripts/setup.sh` makes), with
//! the values the catalog holds; hostile database names stay valid label values; callers as
//! for `status()`; the per-database summary behind both survives direct edits of the history.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use backup_ext_e2e::postgres::Client;
use backup_ext_e2e::*;
use serde_json::Value;

/// One sample as the parser reads it: (family, type, sample name, labels, value).
type Parsed = (String, String, String, BTreeMap<String, String>, f64);

/// Parses exposition text with `prometheus_client.parser`; one entry per sample.
fn parse(text: &str) -> Vec<Parsed> {
    const SCRIPT: &str = "import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append([family.name, family.type, s.name, s.labels, s.value])
print(json.dumps(out))
";
    let python = py_env().join("bin/python3");
    let mut child = Command::new(&python)
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup.sh)", python.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused metrics():\n{}\n--- text:\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    samples
        .iter()
        .map(|s| {
            let labels = s[3]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            (
                s[0].as_str().unwrap().to_string(),
                s[1].as_str().unwrap().to_string(),
                s[2].as_str().unwrap().to_string(),
                labels,
                s[4].as_f64().unwrap(),
            )
        })
        .collect()
}

type Samples = BTreeMap<(String, Vec<(String, String)>), f64>;

/// Sample name and labels → value; also checks every family has its HELP and TYPE.
fn samples_of(text: &str) -> Samples {
    let mut out = BTreeMap::new();
    for (family, kind, name, labels, value) in parse(text) {
        assert!(
            text.contains(&format!("# HELP {name} "))
                || text.contains(&format!("# HELP {family} ")),
            "{name}: no HELP"
        );
        assert!(
            text.contains(&format!("# TYPE {name} {kind}"))
                || text.contains(&format!("# TYPE {family} {kind}")),
            "{name}: no TYPE"
        );
        let key = (name, labels.into_iter().collect());
        assert!(
            out.insert(key, value).is_none(),
            "duplicate sample in:\n{text}"
        );
    }
    out
}

fn value(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    samples.get(&(name.to_string(), labels)).copied()
}

fn metrics(client: &mut Client) -> String {
    one_text(client, "SELECT backup_ext.metrics()")
}

const PER_DATABASE: &[&str] = &[
    "backup_ext_last_success_timestamp_seconds",
    "backup_ext_last_success_age_seconds",
    "backup_ext_last_size_bytes",
    "backup_ext_last_duration_seconds",
    "backup_ext_last_verified_timestamp_seconds",
    "backup_ext_backups_kept",
    "backup_ext_bytes_kept",
    "backup_ext_status",
];

#[test]
fn metrics_parse_and_carry_the_catalog_figures() {
    let c = Cluster::start_with("metrics", &[("backup_ext.max_parallel", "1")]);
    c.create_sample_db("mx_app");
    let hostile = "mx \"quoted\" back\\slash\nnewline";
    let mut client = c.client("postgres");
    exec(
        &mut client,
        &format!("CREATE DATABASE {}", quote_ident(hostile)),
    );

    // Nothing backed up yet: every database is critical, no other per-database sample exists.
    let s = samples_of(&metrics(&mut client));
    for db in ["postgres", "mx_app", hostile, "globals"] {
        assert_eq!(
            value(&s, "backup_ext_status", &[("database", db)]),
            Some(2.0),
            "{db}"
        );
        assert_eq!(
            value(&s, "backup_ext_backups_kept", &[("database", db)]),
            Some(0.0)
        );
        assert_eq!(
            value(
                &s,
                "backup_ext_last_success_timestamp_seconds",
                &[("database", db)]
            ),
            None
        );
    }
    assert_eq!(value(&s, "backup_ext_jobs_running", &[]), Some(0.0));
    assert_eq!(value(&s, "backup_ext_jobs_queued", &[]), Some(0.0));
    assert_eq!(
        value(&s, "backup_ext_alert_deliveries_pending", &[]),
        Some(0.0)
    );

    let ok = c.enqueue("SELECT backup_ext.backup_database('mx_app')");
    assert_eq!(c.wait_final(ok, SMALL_JOB), "succeeded");
    let ok2 = c.enqueue("SELECT backup_ext.backup_database('mx_app')");
    assert_eq!(c.wait_final(ok2, SMALL_JOB), "succeeded");
    let failing = c.enqueue(
        "SELECT backup_ext.backup_database('mx_app', options => '{\"tables\": [\"no_such_table\"]}')",
    );
    assert_eq!(c.wait_final(failing, SMALL_JOB), "failed");
    let verify = c.enqueue(&format!("SELECT backup_ext.verify_backup({ok2})"));
    assert_eq!(c.wait_final(verify, SMALL_JOB), "succeeded");

    let text = metrics(&mut client);
    let s = samples_of(&text);
    let facts = client
        .query_one(
            "SELECT extract(epoch FROM j.finished_at)::float8,
                    extract(epoch FROM j.finished_at - j.started_at)::float8, a.size_bytes,
                    extract(epoch FROM a.verified_at)::float8,
                    (SELECT sum(size_bytes) FROM backup_ext.artifacts
                      WHERE database = 'mx_app' AND size_bytes IS NOT NULL)::float8
               FROM backup_ext.jobs j JOIN backup_ext.artifacts a USING (job_id)
              WHERE j.job_id = $1",
            &[&ok2],
        )
        .unwrap();
    let app = [("database", "mx_app")];
    let close = |got: Option<f64>, want: f64, what: &str| {
        let got = got.unwrap_or_else(|| panic!("{what}: no sample in\n{text}"));
        assert!((got - want).abs() < 1e-3, "{what}: {got} <> {want}");
    };
    close(
        value(&s, "backup_ext_last_success_timestamp_seconds", &app),
        facts.get(0),
        "last success",
    );
    close(
        value(&s, "backup_ext_last_duration_seconds", &app),
        facts.get(1),
        "duration",
    );
    close(
        value(&s, "backup_ext_last_size_bytes", &app),
        facts.get::<_, i64>(2) as f64,
        "size",
    );
    close(
        value(&s, "backup_ext_last_verified_timestamp_seconds", &app),
        facts.get(3),
        "verified",
    );
    close(
        value(&s, "backup_ext_bytes_kept", &app),
        facts.get(4),
        "bytes kept",
    );
    assert_eq!(value(&s, "backup_ext_backups_kept", &app), Some(2.0));
    // Failed after the last success: warning.
    assert_eq!(value(&s, "backup_ext_status", &app), Some(1.0));
    let age = value(&s, "backup_ext_last_success_age_seconds", &app).unwrap();
    assert!((0.0..600.0).contains(&age), "{age}");
    assert_eq!(
        value(&s, "backup_ext_status", &[("database", hostile)]),
        Some(2.0)
    );
    let total = |kind: &str, status: &str| {
        value(
            &s,
            "backup_ext_jobs_total",
            &[("kind", kind), ("status", status)],
        )
    };
    assert_eq!(total("database", "succeeded"), Some(2.0));
    assert_eq!(total("database", "failed"), Some(1.0));
    assert_eq!(total("verify", "succeeded"), Some(1.0));
    assert_eq!(total("database", "cancelled"), None);
    for name in PER_DATABASE {
        assert!(text.contains(&format!("# HELP {name} ")), "{name}");
        assert!(text.contains(&format!("# TYPE {name} gauge\n")), "{name}");
    }
    assert!(text.contains("# TYPE backup_ext_jobs_total counter\n"));

    // Counters survive purge() forgetting the history; gauges follow the catalog.
    exec(
        &mut client,
        &format!("DELETE FROM backup_ext.jobs WHERE job_id IN ({failing}, {verify})"),
    );
    let s = samples_of(&metrics(&mut client));
    assert_eq!(
        value(
            &s,
            "backup_ext_jobs_total",
            &[("kind", "database"), ("status", "failed")]
        ),
        Some(1.0)
    );
    assert_eq!(value(&s, "backup_ext_status", &app), Some(0.0));

    // With max_parallel = 1 and a dump blocked on a lock, the next job waits in the queue.
    let locker = lock_t1(&c, "mx_app");
    let blocked = c.enqueue("SELECT backup_ext.backup_database('mx_app')");
    wait_dump_blocked(&c, "mx_app");
    let queued = c.enqueue("SELECT backup_ext.backup_database('mx_app')");
    let s = samples_of(&metrics(&mut client));
    assert_eq!(value(&s, "backup_ext_jobs_running", &[]), Some(1.0));
    assert_eq!(value(&s, "backup_ext_jobs_queued", &[]), Some(1.0));
    drop(locker);
    for job in [blocked, queued] {
        assert_eq!(c.wait_final(job, SMALL_JOB), "succeeded");
    }
}

#[test]
fn metrics_show_operators_only_their_databases() {
    let c = Cluster::start("metrics-roles");
    c.create_sample_db("mr_open");
    c.create_sample_db("mr_secret");
    let mut client = c.client("postgres");
    exec(
        &mut client,
        "CREATE ROLE mr_op LOGIN IN ROLE backup_ext_operator;
         CREATE ROLE mr_nobody LOGIN;
         REVOKE CONNECT ON DATABASE mr_secret FROM PUBLIC",
    );
    for db in ["mr_open", "mr_secret"] {
        let job = c.enqueue(&format!("SELECT backup_ext.backup_database('{db}')"));
        assert_eq!(c.wait_final(job, SMALL_JOB), "succeeded");
    }
    let mut op = c.client_as("postgres", "mr_op");
    let s = samples_of(&metrics(&mut op));
    assert_eq!(
        value(&s, "backup_ext_status", &[("database", "mr_open")]),
        Some(0.0)
    );
    for hidden in ["mr_secret", "globals"] {
        assert!(
            !s.keys()
                .any(|(_, labels)| labels.iter().any(|(k, v)| k == "database" && v == hidden)),
            "{hidden} visible to an operator"
        );
    }
    assert_eq!(
        value(
            &s,
            "backup_ext_jobs_total",
            &[("kind", "database"), ("status", "succeeded")]
        ),
        Some(1.0)
    );
    let mut nobody = c.client_as("postgres", "mr_nobody");
    expect_sqlstate(&mut nobody, "SELECT backup_ext.metrics()", "42501");
}

#[test]
fn status_follows_direct_edits_of_the_history() {
    let c = Cluster::start("summary");
    c.create_sample_db("sm_db");
    let job = c.enqueue("SELECT backup_ext.backup_database('sm_db')");
    assert_eq!(c.wait_final(job, SMALL_JOB), "succeeded");
    let mut client = c.client("postgres");
    let status = |client: &mut Client| {
        one_text(
            client,
            "SELECT concat_ws(' ', status, backups_kept, last_success_age > interval '1 day')
               FROM backup_ext.status() WHERE database = 'sm_db'",
        )
    };
    assert_eq!(status(&mut client), "ok 1 f");
    exec(
        &mut client,
        &format!(
            "UPDATE backup_ext.jobs SET finished_at = now() - interval '30 hours'
              WHERE job_id = {job}"
        ),
    );
    assert_eq!(status(&mut client), "warning 1 t");
    exec(
        &mut client,
        &format!("UPDATE backup_ext.artifacts SET expired_at = now() WHERE backup_id = {job}"),
    );
    assert_eq!(status(&mut client), "critical 0");
    // The summary equals a recomputation from the history.
    const SUMMARY: &str = "SELECT string_agg(concat_ws('|', kind, database, last_backup_id,
                                   last_success_at, last_started_at, last_size_bytes, last_path,
                                   last_anomaly, last_failure_at, last_error, last_verified_at,
                                   last_verified_backup_id, backups_kept, bytes_kept),
                         E'\\n' ORDER BY kind, database)
                             FROM backup_ext.database_summary";
    let kept = one_text(&mut client, SUMMARY);
    exec(
        &mut client,
        "SELECT backup_ext.refresh_database_summary(kind, database)
           FROM backup_ext.database_summary",
    );
    assert_eq!(one_text(&mut client, SUMMARY), kept);
}
