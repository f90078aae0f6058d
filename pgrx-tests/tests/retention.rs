//! Retention and purge: the policies `purge()` applies (last N, days, GFS
//! buckets, the default policy, pins), its report and dry run, leftovers
//! of jobs and forgotten history. The automatic purge after a successful
//! backup is in tests/auto_purge.rs. Each test runs on its own cluster
//! because it counts databases, jobs or files cluster-wide.

use backup_ext_e2e::postgres::Client;
use backup_ext_e2e::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------
// Retention and purge

/// A retention policy as the test understands it.
#[derive(Debug, Default, Clone, Copy)]
struct Policy {
    last: Option<usize>,
    days: Option<u32>,
    daily: Option<usize>,
    weekly: Option<usize>,
    monthly: Option<usize>,
}

/// A succeeded backup with the calendar keys PostgreSQL computes for its
/// finish time in UTC.
#[derive(Debug, Clone)]
struct Candidate {
    id: i64,
    age_seconds: f64,
    day: String,
    week: String,
    month: String,
    pinned: bool,
}

/// The succeeded backups of `db`, newest first.
fn candidates(client: &mut Client, db: &str) -> Vec<Candidate> {
    client
        .query(
            "SELECT backup_id, extract(epoch FROM now() - finished_at)::float8,
                    to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'),
                    to_char(finished_at AT TIME ZONE 'UTC', 'IYYY-IW'),
                    to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM'),
                    pinned
               FROM backup_ext.backups
              WHERE database = $1 AND status = 'succeeded'
              ORDER BY finished_at DESC, backup_id DESC",
            &[&db],
        )
        .unwrap()
        .iter()
        .map(|r| Candidate {
            id: r.get(0),
            age_seconds: r.get(1),
            day: r.get(2),
            week: r.get(3),
            month: r.get(4),
            pinned: r.get(5),
        })
        .collect()
}

/// What `policy` keeps of `rows` (newest first): the newest, pinned ones,
/// the last N, those younger than N days, and the newest backup of each of
/// the N most recent days / ISO weeks / months that have a backup.
fn expected_kept(rows: &[Candidate], policy: Policy) -> BTreeSet<i64> {
    let mut keep = BTreeSet::new();
    if let Some(first) = rows.first() {
        keep.insert(first.id);
    }
    keep.extend(rows.iter().filter(|r| r.pinned).map(|r| r.id));
    if let Some(n) = policy.last {
        keep.extend(rows.iter().take(n).map(|r| r.id));
    }
    if let Some(d) = policy.days {
        let limit = f64::from(d) * 86_400.0;
        keep.extend(rows.iter().filter(|r| r.age_seconds <= limit).map(|r| r.id));
    }
    let buckets: [(Option<usize>, BucketKey); 3] = [
        (policy.daily, |r| &r.day),
        (policy.weekly, |r| &r.week),
        (policy.monthly, |r| &r.month),
    ];
    for (n, key) in buckets {
        let Some(n) = n else { continue };
        let mut seen: Vec<&str> = Vec::new();
        for r in rows {
            if seen.len() == n {
                break;
            }
            if !seen.contains(&key(r)) {
                seen.push(key(r));
                keep.insert(r.id);
            }
        }
    }
    keep
}

/// The period a backup falls into: its day, ISO week or month.
type BucketKey = fn(&Candidate) -> &str;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct PurgeLine {
    backup_id: Option<i64>,
    database: Option<String>,
    path: Option<String>,
    reason: String,
}

fn run_purge(client: &mut Client, dry_run: bool) -> Vec<PurgeLine> {
    let mut lines: Vec<PurgeLine> = client
        .query(
            "SELECT backup_id, database, path, reason FROM backup_ext.purge(dry_run => $1)",
            &[&dry_run],
        )
        .unwrap_or_else(|e| panic!("purge({dry_run}): {}", describe(&e)))
        .iter()
        .map(|r| PurgeLine {
            backup_id: r.get(0),
            database: r.get(1),
            path: r.get(2),
            reason: r.get(3),
        })
        .collect();
    lines.sort();
    lines
}

/// The 100-day history used for each policy: one backup a day, three hours
/// before the current time of day, plus a second, earlier one every 7th day.
fn hundred_days() -> Vec<(i32, i32)> {
    let mut ages = Vec::new();
    for d in 1..=100 {
        ages.push((d, 3));
        if d % 7 == 3 {
            ages.push((d, 5));
        }
    }
    ages
}

#[test]
fn purge_applies_retention_policies_exactly() {
    // A timezone far from UTC: day, week and month buckets must be UTC.
    let c = Cluster::start_with("retention", &[("timezone", "Pacific/Chatham")]);
    let mut client = c.client("postgres");
    let history = hundred_days();

    // Policies: three rule kinds, "newest always survives", the default.
    let dbs = ["ret_last", "ret_days", "ret_gfs", "ret_old", "ret_default"];
    let mut ids: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    ids.insert("ret_last", fabricate(&c, &mut client, "ret_last", &history));
    ids.insert("ret_days", fabricate(&c, &mut client, "ret_days", &history));
    ids.insert("ret_gfs", fabricate(&c, &mut client, "ret_gfs", &history));
    let old: Vec<(i32, i32)> = (40..=50).map(|d| (d, 3)).collect();
    ids.insert("ret_old", fabricate(&c, &mut client, "ret_old", &old));
    let recent: Vec<(i32, i32)> = (1..=10).map(|d| (d, 3)).collect();
    ids.insert(
        "ret_default",
        fabricate(&c, &mut client, "ret_default", &recent),
    );
    assert_eq!(ids["ret_last"].len(), 114);

    exec(
        &mut client,
        "SELECT backup_ext.set_retention(NULL, keep_last => 3);
         SELECT backup_ext.set_retention('ret_last', keep_last => 5);
         SELECT backup_ext.set_retention('ret_days', keep_days => 30);
         SELECT backup_ext.set_retention('ret_gfs', keep_daily => 7, keep_weekly => 4,
                                         keep_monthly => 6);
         SELECT backup_ext.set_retention('ret_old', keep_days => 7);
         SELECT backup_ext.set_retention('ret_default', keep_last => 1);
         SELECT backup_ext.set_retention('ret_default', NULL, NULL, NULL, NULL, NULL);",
    );
    // All rules NULL removed ret_default's own policy: the default applies.
    assert_eq!(
        one_i64(
            &mut client,
            "SELECT count(*) FROM backup_ext.retention WHERE database = 'ret_default'"
        ),
        0
    );
    assert_eq!(
        one_i64(&mut client, "SELECT count(*) FROM backup_ext.retention"),
        5
    );
    expect_sqlstate(
        &mut client,
        "SELECT backup_ext.set_retention('ret_last', keep_last => 0)",
        "22023",
    );
    expect_sqlstate(&mut client, "SELECT backup_ext.pin(987654321)", "42704");

    // Two old pinned backups (one beyond history_days) survive keep_last.
    let pinned_60 = fabricated_id(&mut client, "ret_last", 60, 3);
    let pinned_95 = fabricated_id(&mut client, "ret_last", 95, 3);
    for id in [pinned_60, pinned_95] {
        let pinned: bool = client
            .query_one("SELECT backup_ext.pin($1)", &[&id])
            .unwrap()
            .get(0);
        assert!(pinned);
    }
    // A recorded path that is not a name the worker gives is never deleted.
    let handmade_id = fabricated_id(&mut client, "ret_last", 50, 3);
    let ret_last_dir = c.backups.join("ret_last");
    let handmade = ret_last_dir.join("handmade-copy.dump");
    let original: String = client
        .query_one(
            "SELECT path FROM backup_ext.artifacts WHERE backup_id = $1",
            &[&handmade_id],
        )
        .unwrap()
        .get(0);
    fs::remove_file(&original).unwrap();
    c.write_server_file(&handmade, b"copied by hand\n");
    client
        .execute(
            "UPDATE backup_ext.artifacts SET path = $2 WHERE backup_id = $1",
            &[&handmade_id, &path_str(&handmade)],
        )
        .unwrap();
    // Files purge must leave alone or clean up.
    let readme = ret_last_dir.join("README.txt");
    c.write_server_file(&readme, b"not a backup\n");
    let partial = ret_last_dir.join("20250101T000000Z-job000000999999.dump.partial");
    c.write_server_file(&partial, b"half");
    // Failed jobs: one older than history_days (90), one recent.
    let failed_old = one_i64(
        &mut client,
        "INSERT INTO backup_ext.jobs (kind, database, status, requested_at, started_at,
                                      finished_at, request, error)
         VALUES ('database', 'ret_days', 'failed', now() - interval '200 days',
                 now() - interval '200 days', now() - interval '200 days', '{}', 'boom')
         RETURNING job_id",
    );
    let failed_recent = one_i64(
        &mut client,
        "INSERT INTO backup_ext.jobs (kind, database, status, requested_at, started_at,
                                      finished_at, request, error)
         VALUES ('database', 'ret_days', 'failed', now() - interval '10 days',
                 now() - interval '10 days', now() - interval '10 days', '{}', 'boom')
         RETURNING job_id",
    );

    // Expected outcome, computed from the fabricated dates.
    let policies: BTreeMap<&str, Policy> = [
        (
            "ret_last",
            Policy {
                last: Some(5),
                ..Policy::default()
            },
        ),
        (
            "ret_days",
            Policy {
                days: Some(30),
                ..Policy::default()
            },
        ),
        (
            "ret_gfs",
            Policy {
                daily: Some(7),
                weekly: Some(4),
                monthly: Some(6),
                ..Policy::default()
            },
        ),
        (
            "ret_old",
            Policy {
                days: Some(7),
                ..Policy::default()
            },
        ),
        (
            "ret_default",
            Policy {
                last: Some(3),
                ..Policy::default()
            },
        ),
    ]
    .into_iter()
    .collect();
    let mut kept: BTreeMap<&str, BTreeSet<i64>> = BTreeMap::new();
    let mut dropped: BTreeMap<&str, BTreeSet<i64>> = BTreeMap::new();
    let mut age_days: BTreeMap<i64, f64> = BTreeMap::new();
    for db in dbs {
        let cands = candidates(&mut client, db);
        assert_eq!(cands.len(), ids[db].len(), "{db}");
        for cand in &cands {
            age_days.insert(cand.id, cand.age_seconds / 86_400.0);
        }
        let keep = expected_kept(&cands, policies[db]);
        let all: BTreeSet<i64> = cands.iter().map(|r| r.id).collect();
        dropped.insert(db, all.difference(&keep).copied().collect());
        kept.insert(db, keep);
    }
    // Sanity of the expectation itself.
    assert_eq!(kept["ret_last"].len(), 7, "{:?}", kept["ret_last"]);
    assert!(kept["ret_last"].contains(&pinned_60) && kept["ret_last"].contains(&pinned_95));
    assert_eq!(
        kept["ret_old"],
        BTreeSet::from([*ids["ret_old"].last().unwrap()])
    );
    assert_eq!(kept["ret_default"].len(), 3);
    assert!(dropped["ret_last"].contains(&handmade_id));
    assert!(
        (10..=17).contains(&kept["ret_gfs"].len()),
        "{:?}",
        kept["ret_gfs"]
    );
    assert_eq!(kept["ret_days"].len(), 33, "{:?}", kept["ret_days"]);

    let paths_before: BTreeMap<&str, BTreeMap<i64, (String, Option<String>)>> = dbs
        .iter()
        .map(|db| (*db, rows_of(&mut client, db)))
        .collect();
    let files_before = files_under(&c.backups);

    // What purge has to report, dry run or not.
    let expected_lines = |forgotten: i64| -> Vec<PurgeLine> {
        let mut lines = Vec::new();
        for db in dbs {
            for id in &dropped[db] {
                let path = paths_before[db][id].1.clone();
                lines.push(PurgeLine {
                    backup_id: Some(*id),
                    database: Some(db.to_string()),
                    path,
                    reason: String::new(),
                });
            }
        }
        lines.push(PurgeLine {
            backup_id: None,
            database: Some("ret_last".into()),
            path: Some(path_str(&partial).into()),
            reason: "leftover of job 999999, which is not running".into(),
        });
        lines.push(PurgeLine {
            backup_id: None,
            database: None,
            path: None,
            reason: format!(
                "{forgotten} job rows older than backup_ext.history_days = 90 forgotten"
            ),
        });
        lines.sort();
        lines
    };
    let check_report = |got: &[PurgeLine], forgotten: i64| {
        let want = expected_lines(forgotten);
        let strip = |l: &PurgeLine| {
            let mut l = l.clone();
            if l.backup_id.is_some() {
                l.reason = String::new();
            }
            l
        };
        let got_stripped: Vec<PurgeLine> = got.iter().map(strip).collect();
        assert_eq!(got_stripped, want);
        for l in got.iter().filter(|l| l.backup_id.is_some()) {
            if l.backup_id == Some(handmade_id) {
                assert!(
                    l.reason.starts_with("kept: "),
                    "reason for the handmade path: {l:?}"
                );
            } else {
                assert!(
                    !l.reason.is_empty() && !l.reason.starts_with("kept:"),
                    "reason: {l:?}"
                );
            }
        }
    };

    // Dry run: the full report, nothing changes.
    let dry = run_purge(&mut client, true);
    check_report(&dry, 1);
    assert_eq!(
        files_under(&c.backups),
        files_before,
        "dry run deleted files"
    );
    for db in dbs {
        assert_eq!(
            rows_of(&mut client, db),
            paths_before[db],
            "dry run on {db}"
        );
    }
    assert_eq!(
        one_i64(
            &mut client,
            &format!("SELECT count(*) FROM backup_ext.jobs WHERE job_id = {failed_old}")
        ),
        1
    );

    // The real purge.
    let forgotten_backups: BTreeSet<i64> = dbs
        .iter()
        .flat_map(|db| dropped[db].iter().copied())
        .filter(|id| *id != handmade_id && age_days[id] > 90.0)
        .collect();
    let real = run_purge(&mut client, false);
    check_report(&real, 1 + forgotten_backups.len() as i64);

    let mut expected_files: BTreeSet<PathBuf> = BTreeSet::from([readme.clone()]);
    for db in dbs {
        let rows = rows_of(&mut client, db);
        let mut want = BTreeMap::new();
        for (id, (_, path)) in &paths_before[db] {
            let status = if kept[db].contains(id) || *id == handmade_id {
                "succeeded"
            } else if forgotten_backups.contains(id) {
                continue;
            } else {
                "expired"
            };
            want.insert(*id, (status.to_string(), path.clone()));
            if status == "succeeded" {
                expected_files.insert(PathBuf::from(path.as_deref().unwrap()));
            }
        }
        assert_eq!(rows, want, "rows of {db} after purge");
    }
    assert_eq!(
        files_under(&c.backups),
        expected_files,
        "files on disk after purge"
    );
    assert!(handmade.exists());
    assert!(!partial.exists());
    let expired_without_stamp = one_i64(
        &mut client,
        "SELECT count(*) FROM backup_ext.backups
          WHERE (status = 'expired') <> (expired_at IS NOT NULL)",
    );
    assert_eq!(expired_without_stamp, 0);
    let jobs_left: Vec<i64> = client
        .query(
            "SELECT job_id FROM backup_ext.jobs WHERE job_id = ANY($1) ORDER BY job_id",
            &[&vec![failed_old, failed_recent]],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(jobs_left, vec![failed_recent]);

    // Only the handmade path is still a candidate.
    let again = run_purge(&mut client, false);
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].backup_id, Some(handmade_id));
    assert!(again[0].reason.starts_with("kept: "), "{again:?}");

    // Unpinning makes a backup purgeable.
    exec(
        &mut client,
        &format!("SELECT backup_ext.pin({pinned_60}, false)"),
    );
    let after_unpin: BTreeSet<Option<i64>> = run_purge(&mut client, false)
        .into_iter()
        .map(|l| l.backup_id)
        .collect();
    assert_eq!(
        after_unpin,
        BTreeSet::from([Some(handmade_id), Some(pinned_60)])
    );
    let p60 = &paths_before["ret_last"][&pinned_60];
    assert!(!Path::new(p60.1.as_deref().unwrap()).exists());
    assert_eq!(rows_of(&mut client, "ret_last")[&pinned_60].0, "expired");
    assert_eq!(rows_of(&mut client, "ret_last")[&pinned_95].0, "succeeded");
}
