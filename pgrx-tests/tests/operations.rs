//! Day-to-day operations: retention and purge, cluster-wide backup sets,
//! built-in schedules, pg_cron, progress reporting, health status and job
//! timeouts. Each test runs on its own cluster because most of them count
//! databases, jobs or files cluster-wide.

use backup_ext_e2e::postgres::Client;
use backup_ext_e2e::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Helpers

fn one_i64(client: &mut Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)))
        .get(0)
}

fn one_text(client: &mut Client, sql: &str) -> String {
    client
        .query_one(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)))
        .get(0)
}

fn exec(client: &mut Client, sql: &str) {
    client
        .batch_execute(sql)
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
}

/// Holds an ACCESS EXCLUSIVE lock on `t1` of `db` until the returned client
/// is dropped: pg_dump of that database blocks in its LOCK TABLE.
fn lock_t1(c: &Cluster, db: &str) -> Client {
    let mut holder = c.client(db);
    exec(&mut holder, "BEGIN; LOCK TABLE t1 IN ACCESS EXCLUSIVE MODE");
    holder
}

fn wait_dump_blocked(c: &Cluster, db: &str) {
    c.wait_until("pg_dump to block on the table lock", SMALL_JOB, || {
        c.client("postgres")
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = $1 AND wait_event_type = 'Lock'",
                &[&db],
            )
            .unwrap()
            .get::<_, i64>(0)
            == 1
    });
}

/// Every regular file below `dir`, recursively.
fn files_under(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return out;
    };
    for entry in rd.flatten() {
        let p = entry.path();
        if entry.file_type().unwrap().is_dir() {
            out.extend(files_under(&p));
        } else {
            out.insert(p);
        }
    }
    out
}

/// Sets a server setting with ALTER SYSTEM, reloads, and waits until new
/// sessions see `shown` for it.
fn alter_system(c: &Cluster, name: &str, value: &str, shown: &str) {
    let mut client = c.client("postgres");
    exec(
        &mut client,
        &format!("ALTER SYSTEM SET {name} = {}", quote_literal(value)),
    );
    exec(&mut client, "SELECT pg_reload_conf()");
    c.wait_until(
        &format!("{name} = {shown} after reload"),
        Duration::from_secs(10),
        || one_text(&mut c.client("postgres"), &format!("SHOW {name}")) == shown,
    );
}

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

fn fabricated_content(id: i64) -> String {
    format!("fabricated backup {id}\n")
}

/// Records succeeded custom-format backups of `db` that finished `days`
/// days and `hours` hours ago (pairwise), oldest first so that backup ids
/// grow with time, and creates their (small) files with the names the
/// worker gives. Returns the new backup ids, oldest first.
fn fabricate(c: &Cluster, client: &mut Client, db: &str, ages: &[(i32, i32)]) -> Vec<i64> {
    let days: Vec<i32> = ages.iter().map(|a| a.0).collect();
    let hours: Vec<i32> = ages.iter().map(|a| a.1).collect();
    let rows = client
        .query(
            "WITH src AS (
                 SELECT now() - make_interval(days => d, hours => h) AS fin
                   FROM unnest($2::int[], $3::int[]) AS u(d, h)
             ), j AS (
                 INSERT INTO backup_ext.jobs
                        (kind, database, status, requested_at, started_at, finished_at,
                         request, label)
                 SELECT 'database', $1, 'succeeded', fin - interval '2 minutes',
                        fin - interval '1 minute', fin, '{}', 'fabricated'
                   FROM src
                  ORDER BY fin
                 RETURNING job_id, finished_at
             )
             INSERT INTO backup_ext.artifacts
                    (backup_id, job_id, kind, database, format, path, size_bytes, sha256)
             SELECT job_id, job_id, 'database', $1, 'custom',
                    format('%s/%s/%s-job%s.dump', $4::text, $5::text,
                           to_char(finished_at AT TIME ZONE 'UTC', 'YYYYMMDD\"T\"HH24MISS\"Z\"'),
                           lpad(job_id::text, 12, '0')),
                    octet_length('fabricated backup ' || job_id || E'\\n'),
                    encode(sha256(convert_to('fabricated backup ' || job_id || E'\\n', 'UTF8')),
                           'hex')
               FROM j
             RETURNING backup_id, path",
            &[&db, &days, &hours, &path_str(&c.backups), &folder_name(db)],
        )
        .unwrap_or_else(|e| panic!("fabricating history of {db}: {}", describe(&e)));
    let mut ids = Vec::new();
    for r in &rows {
        let id: i64 = r.get(0);
        let path: String = r.get(1);
        c.write_server_file(Path::new(&path), fabricated_content(id).as_bytes());
        ids.push(id);
    }
    ids.sort();
    // The fabrication relies on ids growing with the finish time.
    let by_time: Vec<i64> = client
        .query(
            "SELECT backup_id FROM backup_ext.backups WHERE backup_id = ANY($1)
              ORDER BY finished_at, backup_id",
            &[&ids],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        by_time, ids,
        "backup ids of {db} do not follow finish times"
    );
    ids
}

/// The id of `db`'s fabricated backup that finished `days` days and
/// `hours` hours before `now()` (to the minute).
fn fabricated_id(client: &mut Client, db: &str, days: i32, hours: i32) -> i64 {
    client
        .query_one(
            "SELECT backup_id FROM backup_ext.backups
              WHERE database = $1
                AND abs(extract(epoch FROM now() - make_interval(days => $2, hours => $3)
                                           - finished_at)) < 60",
            &[&db, &days, &hours],
        )
        .unwrap_or_else(|e| panic!("backup of {db} {days} d {hours} h ago: {}", describe(&e)))
        .get(0)
}

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

/// (backup_id, status, path) of every row of `db` in backup_ext.backups.
fn rows_of(client: &mut Client, db: &str) -> BTreeMap<i64, (String, Option<String>)> {
    client
        .query(
            "SELECT backup_id, status, path FROM backup_ext.backups WHERE database = $1",
            &[&db],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect()
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

#[test]
fn successful_backup_purges_its_own_database_only() {
    let c = Cluster::start("autopurge");
    let mut client = c.client("postgres");
    c.create_sample_db("ret_auto");
    let five: Vec<(i32, i32)> = (1..=5).map(|d| (d, 3)).collect();
    let auto_ids = fabricate(&c, &mut client, "ret_auto", &five);
    let other_ids = fabricate(&c, &mut client, "ret_other", &five);
    exec(
        &mut client,
        "SELECT backup_ext.set_retention('ret_auto', keep_last => 2);
         SELECT backup_ext.set_retention('ret_other', keep_last => 2);",
    );
    let partial = c
        .backups
        .join("ret_other")
        .join("20250101T000000Z-job000000999999.dump.partial");
    c.write_server_file(&partial, b"half");
    let other_before = rows_of(&mut client, "ret_other");

    let job = c.enqueue("SELECT backup_ext.backup_database('ret_auto')");
    assert_eq!(c.wait_final(job, SMALL_JOB), "succeeded");
    let newest_fabricated = *auto_ids.last().unwrap();
    c.wait_until(
        "the automatic purge of ret_auto",
        Duration::from_secs(20),
        || {
            rows_of(&mut c.client("postgres"), "ret_auto")
                .values()
                .filter(|(s, _)| s == "expired")
                .count()
                == 4
        },
    );
    let rows = rows_of(&mut client, "ret_auto");
    let live: BTreeSet<i64> = rows
        .iter()
        .filter(|(_, (s, _))| s == "succeeded")
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(live, BTreeSet::from([newest_fabricated, job]));
    let on_disk = files_under(&c.backups.join("ret_auto"));
    let expected: BTreeSet<PathBuf> = live
        .iter()
        .map(|id| PathBuf::from(rows[id].1.as_deref().unwrap()))
        .collect();
    assert_eq!(on_disk, expected);
    // Another database with a policy and a leftover is not touched.
    assert_eq!(rows_of(&mut client, "ret_other"), other_before);
    assert_eq!(
        files_under(&c.backups.join("ret_other")).len(),
        other_ids.len() + 1
    );
    assert!(partial.exists());

    // Globals have their own policy and are purged after a globals backup.
    exec(
        &mut client,
        "SELECT backup_ext.set_retention('globals', keep_last => 1)",
    );
    let first = c.enqueue("SELECT backup_ext.backup_globals()");
    assert_eq!(c.wait_final(first, SMALL_JOB), "succeeded");
    let first_path = c.backup(first).path_buf();
    let second = c.enqueue("SELECT backup_ext.backup_globals()");
    assert_eq!(c.wait_final(second, SMALL_JOB), "succeeded");
    c.wait_until(
        "the automatic purge of globals",
        Duration::from_secs(20),
        || c.backup(first).status == "expired",
    );
    assert!(
        !first_path.exists(),
        "{} still exists",
        first_path.display()
    );
    assert_eq!(c.backup(second).status, "succeeded");
    assert_eq!(
        files_under(&c.backups.join("globals")),
        BTreeSet::from([c.backup(second).path_buf()])
    );
    // ret_auto was not purged again: its two live backups are untouched.
    assert_eq!(
        rows_of(&mut client, "ret_auto")
            .values()
            .filter(|(s, _)| s == "succeeded")
            .count(),
        2
    );
}

// ---------------------------------------------------------------------------
// backup_cluster

#[derive(Debug)]
struct SetRow {
    members: i64,
    succeeded: i64,
    failed: i64,
    status: String,
    size_bytes: Option<i64>,
}

fn set_row(client: &mut Client, set_id: i64) -> SetRow {
    let r = client
        .query_one(
            "SELECT members, succeeded, failed, status, size_bytes::bigint
               FROM backup_ext.sets WHERE set_id = $1",
            &[&set_id],
        )
        .unwrap_or_else(|e| panic!("sets row {set_id}: {}", describe(&e)));
    SetRow {
        members: r.get(0),
        succeeded: r.get(1),
        failed: r.get(2),
        status: r.get(3),
        size_bytes: r.get(4),
    }
}

/// (job_id, kind, database) of a set's members, by job id.
fn members(client: &mut Client, set_id: i64) -> Vec<(i64, String, Option<String>)> {
    client
        .query(
            "SELECT job_id, kind, database FROM backup_ext.jobs WHERE set_id = $1 ORDER BY job_id",
            &[&set_id],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[test]
fn backup_cluster_dumps_every_database_as_one_set() {
    let c = Cluster::start("cluster_set");
    let hostile = "we'ird \"db\" ü/x";
    let user_dbs = ["cl_a", "cl_b", "cl_c", hostile];
    for db in user_dbs.iter().chain(&["cl_skip"]) {
        c.create_sample_db(db);
    }
    let mut client = c.client("postgres");
    exec(
        &mut client,
        "CREATE TABLE public.cl_marker AS SELECT generate_series(1, 42) AS id",
    );

    // Refused requests create no set.
    expect_sqlstate(
        &mut client,
        "SELECT backup_ext.backup_cluster(options => '{\"include_databases\": [\"nope\"]}')",
        "3D000",
    );
    expect_sqlstate(
        &mut client,
        "SELECT backup_ext.backup_cluster('zip')",
        "22023",
    );
    expect_sqlstate(
        &mut client,
        "SELECT backup_ext.backup_cluster(options => '{\"exclude_databases\": \"cl_a\"}')",
        "22023",
    );
    assert_eq!(
        one_i64(&mut client, "SELECT count(*) FROM backup_ext.backup_sets"),
        0
    );
    assert_eq!(
        one_i64(&mut client, "SELECT count(*) FROM backup_ext.jobs"),
        0
    );

    let set_id: i64 = client
        .query_one(
            "SELECT backup_ext.backup_cluster('custom', 'nightly',
                 '{\"exclude_databases\": [\"cl_skip\"], \"exclude_table_data\": [\"t2\"]}')",
            &[],
        )
        .unwrap_or_else(|e| panic!("backup_cluster: {}", describe(&e)))
        .get(0);
    let mem = members(&mut client, set_id);
    let got: BTreeSet<(String, Option<String>)> =
        mem.iter().map(|m| (m.1.clone(), m.2.clone())).collect();
    let mut want: BTreeSet<(String, Option<String>)> =
        BTreeSet::from([("globals".to_string(), None)]);
    for db in user_dbs.iter().chain(&["postgres"]) {
        want.insert(("database".into(), Some(db.to_string())));
    }
    assert_eq!(mem.len(), 6, "{mem:?}");
    assert_eq!(got, want);
    for (job, _, _) in &mem {
        assert_eq!(
            c.wait_final(*job, SMALL_JOB),
            "succeeded",
            "{:?}",
            c.job(*job)
        );
    }
    let s = set_row(&mut client, set_id);
    assert_eq!(
        (s.members, s.succeeded, s.failed, s.status.as_str()),
        (6, 6, 0, "succeeded")
    );
    let total_size = one_i64(
        &mut client,
        &format!(
            "SELECT sum(a.size_bytes)::bigint FROM backup_ext.artifacts a
               JOIN backup_ext.jobs j USING (job_id) WHERE j.set_id = {set_id}"
        ),
    );
    assert_eq!(s.size_bytes, Some(total_size));
    assert!(total_size > 0);
    // list_backups() carries the set id and the label.
    let listed = one_i64(
        &mut client,
        &format!(
            "SELECT count(*) FROM backup_ext.list_backups()
              WHERE set_id = {set_id} AND label = 'nightly' AND status = 'succeeded'"
        ),
    );
    assert_eq!(listed, 6);

    for (i, (job, kind, db)) in mem.iter().enumerate() {
        let b = c.backup(*job);
        let path = b.path_buf();
        assert_eq!(
            b.size_bytes,
            Some(fs::metadata(&path).unwrap().len() as i64)
        );
        assert_eq!(b.sha256.as_deref(), Some(sha256_file(&path).as_str()));
        if kind == "globals" {
            assert_backup_path(&c.backups, "globals", *job, ".sql", &path);
            let text = fs::read_to_string(&path).unwrap();
            assert!(text.contains("CREATE ROLE backup_ext_operator;"), "{text}");
            continue;
        }
        let db = db.as_deref().unwrap();
        assert_eq!(b.format.as_deref(), Some("custom"));
        assert_backup_path(&c.backups, &folder_name(db), *job, ".dump", &path);
        let target = format!("restored_{i}");
        exec(&mut client, &format!("CREATE DATABASE {target}"));
        if db == "postgres" {
            let out = c.run_tool(
                "pg_restore",
                &[
                    "--exit-on-error",
                    "-d",
                    &target,
                    "-t",
                    "cl_marker",
                    path_str(&path),
                ],
            );
            check_output("pg_restore postgres", &out);
            assert_eq!(
                one_i64(&mut c.client(&target), "SELECT count(*) FROM cl_marker"),
                42
            );
            continue;
        }
        let out = c.run_tool(
            "pg_restore",
            &["--exit-on-error", "-d", &target, path_str(&path)],
        );
        check_output(&format!("pg_restore of {db}"), &out);
        assert_eq!(
            c.table_fingerprint(&target, "t1"),
            c.table_fingerprint(db, "t1"),
            "t1 of {db}"
        );
        assert_eq!(c.table_fingerprint(&target, "t3").0, 500);
        // exclude_table_data applied to every database.
        assert_eq!(c.table_fingerprint(db, "t2").0, 100);
        assert_eq!(c.table_fingerprint(&target, "t2").0, 0, "t2 of {db}");
    }
    assert!(!c.backups.join("cl_skip").exists());

    // A set with a cancelled member is failed.
    let holder = lock_t1(&c, "cl_a");
    let set2: i64 = client
        .query_one(
            "SELECT backup_ext.backup_cluster(options => '{\"include_databases\": [\"cl_a\"]}')",
            &[],
        )
        .unwrap()
        .get(0);
    let mem2 = members(&mut client, set2);
    assert_eq!(mem2.len(), 2, "{mem2:?}");
    let globals_job = mem2.iter().find(|m| m.1 == "globals").unwrap().0;
    let db_job = mem2
        .iter()
        .find(|m| m.2.as_deref() == Some("cl_a"))
        .unwrap()
        .0;
    assert_eq!(c.wait_final(globals_job, SMALL_JOB), "succeeded");
    c.wait_for_status(db_job, &["running"], SMALL_JOB);
    wait_dump_blocked(&c, "cl_a");
    let s = set_row(&mut client, set2);
    assert_eq!(
        (s.members, s.succeeded, s.failed, s.status.as_str()),
        (2, 1, 0, "running")
    );
    exec(&mut client, &format!("SELECT backup_ext.cancel({db_job})"));
    assert_eq!(
        c.wait_for_status(db_job, &["cancelled"], Duration::from_secs(15)),
        "cancelled"
    );
    drop(holder);
    let s = set_row(&mut client, set2);
    assert_eq!(
        (s.members, s.succeeded, s.failed, s.status.as_str()),
        (2, 1, 1, "failed")
    );
    // The first set is unaffected.
    assert_eq!(set_row(&mut client, set_id).status, "succeeded");
}

// ---------------------------------------------------------------------------
// Built-in schedules

#[derive(Debug)]
struct ScheduleRow {
    last_run_is_minute: Option<bool>,
    last_job_id: Option<i64>,
    last_set_id: Option<i64>,
    last_status: Option<String>,
    last_error: Option<String>,
}

fn schedule_row(client: &mut Client, name: &str) -> ScheduleRow {
    let r = client
        .query_one(
            "SELECT last_run_at = date_trunc('minute', last_run_at), last_job_id, last_set_id,
                    last_status, last_error
               FROM backup_ext.schedules WHERE name = $1",
            &[&name],
        )
        .unwrap_or_else(|e| panic!("schedule {name}: {}", describe(&e)));
    ScheduleRow {
        last_run_is_minute: r.get(0),
        last_job_id: r.get(1),
        last_set_id: r.get(2),
        last_status: r.get(3),
        last_error: r.get(4),
    }
}

fn jobs_of_schedule(client: &mut Client, name: &str) -> Vec<i64> {
    client
        .query(
            "SELECT job_id FROM backup_ext.jobs WHERE schedule = $1 ORDER BY job_id",
            &[&name],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Backdates a schedule's creation so that it is due now, as if the server
/// had been down over its runs.
fn make_due(client: &mut Client, name: &str, by: &str) {
    let n = client
        .execute(
            &format!(
                "UPDATE backup_ext.schedule_entries SET created_at = now() - interval '{by}'
                  WHERE name = $1"
            ),
            &[&name],
        )
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn built_in_schedules_fire_once_and_never_overlap() {
    let c = Cluster::start("schedules");
    c.create_sample_db("sched_db");
    let mut client = c.client("postgres");

    for cron in ["61 * * * *", "* * * *", "0 0 30 2 *"] {
        expect_sqlstate(
            &mut client,
            &format!("SELECT backup_ext.schedule('bad', '{cron}', '{{\"backup\": \"globals\"}}')"),
            "22023",
        );
    }
    for command in [
        r#"{"backup": "tape"}"#,
        r#"{"backup": "database"}"#,
        r#"{"backup": "database", "dbname": "sched_db", "format": "zip"}"#,
    ] {
        expect_sqlstate(
            &mut client,
            &format!("SELECT backup_ext.schedule('bad', '* * * * *', '{command}')"),
            "22023",
        );
    }
    expect_sqlstate(&mut client, "SELECT backup_ext.unschedule('nope')", "42704");
    assert_eq!(
        one_i64(
            &mut client,
            "SELECT count(*) FROM backup_ext.schedule_entries"
        ),
        0
    );

    // Leave room before the next minute boundary, so the runs observed
    // below are the ones this test provokes.
    c.wait_until(
        "the first 30 s of a minute",
        Duration::from_secs(65),
        || {
            one_i64(
                &mut c.client("postgres"),
                "SELECT extract(second FROM clock_timestamp())::bigint",
            ) < 30
        },
    );

    // The scheduled dump blocks on this lock, so it stays running.
    let holder = lock_t1(&c, "sched_db");
    let r = client
        .query_one(
            "WITH s AS (
                 SELECT backup_ext.schedule('every_minute', '* * * * *',
                     '{\"backup\": \"database\", \"dbname\": \"sched_db\",
                       \"format\": \"custom\", \"label\": \"scheduled\"}') AS next_run
             )
             SELECT next_run = date_trunc('minute', now()) + interval '1 minute',
                    next_run::text
               FROM s",
            &[],
        )
        .unwrap_or_else(|e| panic!("schedule(): {}", describe(&e)));
    assert!(r.get::<_, bool>(0), "next run is not the next minute");
    let next_run: String = r.get(1);
    let same: bool = client
        .query_one(
            "SELECT next_run_at = $1::text::timestamptz FROM backup_ext.schedules
              WHERE name = 'every_minute'",
            &[&next_run],
        )
        .unwrap()
        .get(0);
    assert!(same, "the view's next_run_at differs from {next_run}");
    assert!(jobs_of_schedule(&mut client, "every_minute").is_empty());

    // Five missed runs collapse into one.
    make_due(&mut client, "every_minute", "5 minutes");
    c.wait_until("the schedule to fire", Duration::from_secs(20), || {
        schedule_row(&mut c.client("postgres"), "every_minute")
            .last_job_id
            .is_some()
    });
    let row = schedule_row(&mut client, "every_minute");
    let job = row.last_job_id.unwrap();
    assert_eq!(jobs_of_schedule(&mut client, "every_minute"), vec![job]);
    assert_eq!(row.last_run_is_minute, Some(true));
    assert_eq!(row.last_error, None);
    assert_eq!(row.last_set_id, None);
    let j = c.job(job);
    assert_eq!(j.kind, "database");
    assert_eq!(j.database.as_deref(), Some("sched_db"));
    assert_eq!(c.backups_of(job)[0].label.as_deref(), Some("scheduled"));
    c.wait_for_status(job, &["running"], SMALL_JOB);
    wait_dump_blocked(&c, "sched_db");
    assert_eq!(
        schedule_row(&mut client, "every_minute")
            .last_status
            .as_deref(),
        Some("running")
    );

    // Due again while the previous run is still going: skipped.
    exec(
        &mut client,
        "UPDATE backup_ext.schedule_entries
            SET last_run_at = last_run_at - interval '5 minutes'
          WHERE name = 'every_minute'",
    );
    c.wait_until(
        "the overlapping run to be skipped",
        Duration::from_secs(20),
        || {
            schedule_row(&mut c.client("postgres"), "every_minute")
                .last_error
                .is_some()
        },
    );
    let row = schedule_row(&mut client, "every_minute");
    let err = row.last_error.clone().unwrap();
    assert!(err.starts_with("skipped"), "last_error: {err:?}");
    assert_eq!(row.last_job_id, Some(job));
    assert_eq!(row.last_run_is_minute, Some(true));
    assert_eq!(jobs_of_schedule(&mut client, "every_minute"), vec![job]);
    assert_eq!(c.job(job).status, "running");

    drop(holder);
    assert_eq!(c.wait_final(job, SMALL_JOB), "succeeded");
    assert_eq!(
        schedule_row(&mut client, "every_minute")
            .last_status
            .as_deref(),
        Some("succeeded")
    );
    let removed: bool = client
        .query_one("SELECT backup_ext.unschedule('every_minute')", &[])
        .unwrap()
        .get(0);
    assert!(removed);
    expect_sqlstate(
        &mut client,
        "SELECT backup_ext.unschedule('every_minute')",
        "42704",
    );

    // Globals and cluster commands.
    exec(
        &mut client,
        "SELECT backup_ext.schedule('globals_hourly', '17 * * * *', '{\"backup\": \"globals\"}');
         SELECT backup_ext.schedule('cluster_nightly', '0 3 * * *',
             '{\"backup\": \"cluster\", \"options\": {\"include_databases\": [\"sched_db\"]}}');",
    );
    make_due(&mut client, "globals_hourly", "3 hours");
    make_due(&mut client, "cluster_nightly", "3 days");
    c.wait_until("both schedules to fire", Duration::from_secs(20), || {
        let mut cl = c.client("postgres");
        schedule_row(&mut cl, "globals_hourly")
            .last_job_id
            .is_some()
            && schedule_row(&mut cl, "cluster_nightly")
                .last_set_id
                .is_some()
    });
    let g = schedule_row(&mut client, "globals_hourly");
    let gjob = g.last_job_id.unwrap();
    assert_eq!(jobs_of_schedule(&mut client, "globals_hourly"), vec![gjob]);
    assert_eq!(c.job(gjob).kind, "globals");
    assert_eq!(c.wait_final(gjob, SMALL_JOB), "succeeded");
    let cl = schedule_row(&mut client, "cluster_nightly");
    let set_id = cl.last_set_id.unwrap();
    assert_eq!(cl.last_job_id, None);
    let mem = members(&mut client, set_id);
    assert_eq!(mem.len(), 2, "{mem:?}");
    assert_eq!(
        jobs_of_schedule(&mut client, "cluster_nightly"),
        mem.iter().map(|m| m.0).collect::<Vec<_>>()
    );
    for (id, _, _) in &mem {
        assert_eq!(c.wait_final(*id, SMALL_JOB), "succeeded");
    }
    c.wait_until("the set's status in the view", SMALL_JOB, || {
        schedule_row(&mut c.client("postgres"), "cluster_nightly")
            .last_status
            .as_deref()
            == Some("succeeded")
    });
    assert_eq!(set_row(&mut client, set_id).status, "succeeded");
}

// ---------------------------------------------------------------------------
// pg_cron

#[test]
fn pg_cron_schedules_backups_through_sql() {
    let c = Cluster::start_with(
        "pgcron",
        &[
            ("shared_preload_libraries", "backup_ext,pg_cron"),
            ("cron.database_name", "postgres"),
            // The cluster only listens on its socket; run jobs in-process.
            ("cron.use_background_workers", "on"),
        ],
    );
    let mut client = c.client("postgres");
    exec(
        &mut client,
        "CREATE EXTENSION pg_cron;
         CREATE ROLE cron_operator LOGIN IN ROLE backup_ext_operator;",
    );
    // One schedule of the superuser, one run as an operator role.
    let cron_jobs = [
        one_i64(
            &mut client,
            "SELECT cron.schedule('bx-every-minute', '* * * * *',
                                  $$SELECT backup_ext.backup_database('postgres')$$)",
        ),
        one_i64(
            &mut client,
            "SELECT cron.schedule_in_database('bx-operator', '* * * * *',
                 $$SELECT backup_ext.backup_database('postgres', label => 'operator')$$,
                 'postgres', 'cron_operator')",
        ),
    ];
    let users: Vec<String> = cron_jobs
        .iter()
        .map(|id| {
            one_text(
                &mut client,
                &format!("SELECT username::text FROM cron.job WHERE jobid = {id}"),
            )
        })
        .collect();
    assert_eq!(users, vec!["postgres".to_string(), "cron_operator".into()]);

    // The first job requested by each schedule, keyed by label.
    let first_jobs = |c: &Cluster| -> BTreeMap<Option<String>, (i64, String)> {
        c.client("postgres")
            .query(
                "SELECT DISTINCT ON (label) label, job_id, requested_by::text
                   FROM backup_ext.jobs ORDER BY label, job_id",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect()
    };
    c.wait_until(
        "pg_cron to request both backups",
        Duration::from_secs(75),
        || first_jobs(&c).len() == 2,
    );
    let jobs = first_jobs(&c);
    assert_eq!(jobs[&None].1, users[0]);
    assert_eq!(jobs[&Some("operator".to_string())].1, users[1]);
    for (job, _) in jobs.values() {
        assert_eq!(c.wait_final(*job, SMALL_JOB), "succeeded");
        let j = c.job(*job);
        assert_eq!(j.database.as_deref(), Some("postgres"));
        let b = c.backup(*job);
        assert_eq!(
            b.size_bytes,
            Some(fs::metadata(b.path_buf()).unwrap().len() as i64)
        );
    }
    for id in cron_jobs {
        c.wait_until(
            "cron.job_run_details to record the run",
            Duration::from_secs(30),
            || {
                one_i64(
                    &mut c.client("postgres"),
                    &format!(
                        "SELECT count(*) FROM cron.job_run_details
                          WHERE jobid = {id} AND status = 'succeeded'"
                    ),
                ) >= 1
            },
        );
        let failed_runs = one_i64(
            &mut client,
            &format!(
                "SELECT count(*) FROM cron.job_run_details
                  WHERE jobid = {id} AND status NOT IN ('succeeded', 'running', 'starting')"
            ),
        );
        assert_eq!(failed_runs, 0);
    }
    for id in cron_jobs {
        let removed: bool = client
            .query_one("SELECT cron.unschedule($1::bigint)", &[&id])
            .unwrap()
            .get(0);
        assert!(removed);
    }
}

// ---------------------------------------------------------------------------
// Progress

#[test]
fn activity_reports_progress_of_a_running_dump() {
    let c = Cluster::start("progress");
    c.create_pgbench_db("bench", 20);
    let job = c.enqueue("SELECT backup_ext.backup_database('bench', 'plain')");

    let mut client = c.client("postgres");
    let mut bytes_seen: Vec<i64> = Vec::new();
    let mut totals_seen: BTreeSet<i32> = BTreeSet::new();
    let mut done_seen: Vec<i32> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "job {job}: {:?}", c.job(job));
        let row = client
            .query_opt(
                "SELECT bytes_written, bytes_per_second, tables_done, tables_total,
                        percent_tables::float8, extract(epoch FROM elapsed)::float8, kind,
                        database
                   FROM backup_ext.activity WHERE job_id = $1",
                &[&job],
            )
            .unwrap();
        match row {
            Some(r) => {
                assert_eq!(r.get::<_, String>(6), "database");
                assert_eq!(r.get::<_, Option<String>>(7).as_deref(), Some("bench"));
                assert!(r.get::<_, f64>(5) >= 0.0);
                if let Some(bytes) = r.get::<_, Option<i64>>(0) {
                    if bytes > 0 {
                        assert!(r.get::<_, Option<i64>>(1).unwrap_or(0) > 0);
                    }
                    if bytes_seen.last() != Some(&bytes) {
                        bytes_seen.push(bytes);
                    }
                }
                if let Some(total) = r.get::<_, Option<i32>>(3) {
                    totals_seen.insert(total);
                    let done: i32 = r.get::<_, Option<i32>>(2).unwrap_or(0);
                    assert!(done <= total);
                    let pct: Option<f64> = r.get(4);
                    let want = (1000.0 * f64::from(done) / f64::from(total)).round() / 10.0;
                    assert_eq!(pct, Some(want));
                    if done_seen.last() != Some(&done) {
                        done_seen.push(done);
                    }
                }
            }
            None => {
                if FINAL.contains(&c.job(job).status.as_str()) {
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(c.job(job).status, "succeeded", "{:?}", c.job(job));
    assert!(
        bytes_seen.len() >= 2,
        "bytes_written took fewer than two values while running: {bytes_seen:?}"
    );
    assert!(
        bytes_seen.windows(2).all(|w| w[0] < w[1]),
        "bytes_written went backwards: {bytes_seen:?}"
    );
    assert!(
        done_seen.windows(2).all(|w| w[0] <= w[1]),
        "tables_done went backwards: {done_seen:?}"
    );
    assert_eq!(
        totals_seen,
        BTreeSet::from([4]),
        "tables_total while running"
    );
    let r = client
        .query_one(
            "SELECT j.tables_done, j.tables_total, j.bytes_written, a.size_bytes
               FROM backup_ext.jobs j JOIN backup_ext.artifacts a USING (job_id)
              WHERE j.job_id = $1",
            &[&job],
        )
        .unwrap();
    assert_eq!(r.get::<_, Option<i32>>(0), Some(4));
    assert_eq!(r.get::<_, Option<i32>>(1), Some(4));
    let size: Option<i64> = r.get(3);
    assert_eq!(r.get::<_, Option<i64>>(2), size);
    assert!(*bytes_seen.last().unwrap() <= size.unwrap());
    assert_eq!(
        one_i64(
            &mut client,
            &format!("SELECT count(*) FROM backup_ext.activity WHERE job_id = {job}")
        ),
        0
    );
}

// ---------------------------------------------------------------------------
// Health status

#[derive(Debug, PartialEq)]
struct StatusRow {
    database: String,
    status: String,
    has_success: bool,
    has_failure: bool,
    backups_kept: i64,
}

fn status_rows(c: &Cluster) -> Vec<StatusRow> {
    c.client("postgres")
        .query(
            "SELECT database, status, last_success_at IS NOT NULL, last_failure_at IS NOT NULL,
                    backups_kept
               FROM backup_ext.status()",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| StatusRow {
            database: r.get(0),
            status: r.get(1),
            has_success: r.get(2),
            has_failure: r.get(3),
            backups_kept: r.get(4),
        })
        .collect()
}

fn statuses(c: &Cluster) -> Vec<(String, String)> {
    status_rows(c)
        .into_iter()
        .map(|r| (r.database, r.status))
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn check_status(c: &Cluster) -> String {
    one_text(
        &mut c.client("postgres"),
        "SELECT backup_ext.check_status()",
    )
}

#[test]
fn status_and_check_status_grade_backup_age() {
    let c = Cluster::start("monitoring");
    for db in ["st_fresh", "st_old", "st_warn", "st_failed"] {
        c.create_sample_db(db);
    }
    let mut client = c.client("postgres");
    exec(&mut client, "CREATE DATABASE st_never");

    assert_eq!(
        statuses(&c),
        pairs(&[
            ("globals", "critical"),
            ("postgres", "critical"),
            ("st_failed", "critical"),
            ("st_fresh", "critical"),
            ("st_never", "critical"),
            ("st_old", "critical"),
            ("st_warn", "critical"),
        ])
    );
    assert_eq!(
        check_status(&c),
        "BACKUP CRITICAL - globals: never backed up; postgres: never backed up; \
         st_failed: never backed up; st_fresh: never backed up; st_never: never backed up; \
         st_old: never backed up; st_warn: never backed up | ok=0 warning=0 critical=7"
    );

    let mut ok_jobs = BTreeMap::new();
    ok_jobs.insert("globals", c.enqueue("SELECT backup_ext.backup_globals()"));
    for db in ["st_fresh", "st_old", "st_warn", "st_failed"] {
        ok_jobs.insert(
            db,
            c.enqueue(&format!("SELECT backup_ext.backup_database('{db}')")),
        );
    }
    for job in ok_jobs.values() {
        assert_eq!(c.wait_final(*job, SMALL_JOB), "succeeded");
    }
    // A failure after the last success: pg_dump finds no table to dump.
    let failing = c.enqueue(
        "SELECT backup_ext.backup_database('st_failed',
                                           options => '{\"tables\": [\"no_such_table\"]}')",
    );
    assert_eq!(c.wait_final(failing, SMALL_JOB), "failed");
    let failure = c.job(failing).error.unwrap_or_default();
    assert!(failure.contains("no matching tables"), "{failure}");

    // Back-date the successes: two hours, 30 hours and three days ago.
    let backdate = |client: &mut Client, job: i64, age: &str| {
        let n = client
            .execute(
                &format!(
                    "UPDATE backup_ext.jobs
                        SET requested_at = now() - interval '{age}' - interval '2 minutes',
                            started_at = now() - interval '{age}' - interval '1 minute',
                            finished_at = now() - interval '{age}'
                      WHERE job_id = $1"
                ),
                &[&job],
            )
            .unwrap();
        assert_eq!(n, 1);
    };
    backdate(&mut client, ok_jobs["globals"], "2 hours");
    backdate(&mut client, ok_jobs["st_fresh"], "2 hours");
    backdate(&mut client, ok_jobs["st_failed"], "2 hours");
    backdate(&mut client, ok_jobs["st_warn"], "30 hours");
    backdate(&mut client, ok_jobs["st_old"], "3 days");

    let rows = status_rows(&c);
    assert_eq!(
        rows.iter()
            .map(|r| (r.database.clone(), r.status.clone()))
            .collect::<Vec<_>>(),
        pairs(&[
            ("globals", "ok"),
            ("postgres", "critical"),
            ("st_failed", "warning"),
            ("st_fresh", "ok"),
            ("st_never", "critical"),
            ("st_old", "critical"),
            ("st_warn", "warning"),
        ])
    );
    for r in &rows {
        let backed_up = !matches!(r.database.as_str(), "postgres" | "st_never");
        assert_eq!(r.has_success, backed_up, "{r:?}");
        assert_eq!(r.backups_kept, i64::from(backed_up), "{r:?}");
        assert_eq!(r.has_failure, r.database == "st_failed", "{r:?}");
    }
    let fresh = client
        .query_one(
            "SELECT s.last_size_bytes, s.bytes_kept::bigint, s.last_error,
                    s.last_success_age >= interval '2 hours'
                    AND s.last_success_age < interval '2 hours 1 minute'
               FROM backup_ext.status() s WHERE s.database = 'st_fresh'",
            &[],
        )
        .unwrap();
    let size = c.backup(ok_jobs["st_fresh"]).size_bytes;
    assert!(size.unwrap() > 0);
    assert_eq!(fresh.get::<_, Option<i64>>(0), size);
    assert_eq!(fresh.get::<_, Option<i64>>(1), size);
    assert_eq!(fresh.get::<_, Option<String>>(2), None);
    assert!(fresh.get::<_, bool>(3));
    let failed_err: Option<String> = client
        .query_one(
            "SELECT last_error FROM backup_ext.status() WHERE database = 'st_failed'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(failed_err.as_deref(), Some(failure.as_str()));
    assert_eq!(
        check_status(&c),
        "BACKUP CRITICAL - postgres: never backed up; \
         st_failed: last success 02:00:00 ago (failed since); st_never: never backed up; \
         st_old: last success 3 days ago; st_warn: last success 1 day 06:00:00 ago \
         | ok=2 warning=2 critical=3"
    );

    // Thresholds come from the settings.
    alter_system(&c, "backup_ext.warn_age", "1h", "1h");
    assert_eq!(
        statuses(&c),
        pairs(&[
            ("globals", "warning"),
            ("postgres", "critical"),
            ("st_failed", "warning"),
            ("st_fresh", "warning"),
            ("st_never", "critical"),
            ("st_old", "critical"),
            ("st_warn", "warning"),
        ])
    );
    assert_eq!(
        check_status(&c),
        "BACKUP CRITICAL - globals: last success 02:00:00 ago; postgres: never backed up; \
         st_failed: last success 02:00:00 ago (failed since); \
         st_fresh: last success 02:00:00 ago; st_never: never backed up; \
         st_old: last success 3 days ago; st_warn: last success 1 day 06:00:00 ago \
         | ok=0 warning=4 critical=3"
    );
    // Three days is no longer critical once critical_age is four days.
    alter_system(&c, "backup_ext.critical_age", "4d", "4d");
    assert_eq!(
        statuses(&c),
        pairs(&[
            ("globals", "warning"),
            ("postgres", "critical"),
            ("st_failed", "warning"),
            ("st_fresh", "warning"),
            ("st_never", "critical"),
            ("st_old", "warning"),
            ("st_warn", "warning"),
        ])
    );
    assert!(
        check_status(&c).ends_with(" | ok=0 warning=5 critical=2"),
        "{}",
        check_status(&c)
    );

    // Fresh backups of everything make the check OK.
    let mut fresh_jobs = vec![c.enqueue("SELECT backup_ext.backup_globals()")];
    for db in [
        "postgres",
        "st_fresh",
        "st_old",
        "st_warn",
        "st_failed",
        "st_never",
    ] {
        fresh_jobs.push(c.enqueue(&format!("SELECT backup_ext.backup_database('{db}')")));
    }
    for job in fresh_jobs {
        assert_eq!(c.wait_final(job, SMALL_JOB), "succeeded");
    }
    assert_eq!(
        check_status(&c),
        "BACKUP OK - all databases backed up | ok=7 warning=0 critical=0"
    );
}

// ---------------------------------------------------------------------------
// Timeouts

fn assert_timed_out(c: &Cluster, job: i64, secs: u64) {
    c.wait_for_status(job, &["running"], SMALL_JOB);
    let t0 = Instant::now();
    assert_eq!(
        c.wait_final(job, Duration::from_secs(secs + 15)),
        "failed",
        "{:?}",
        c.job(job)
    );
    // The job had been running for a moment before t0.
    assert!(
        t0.elapsed() + Duration::from_secs(1) >= Duration::from_secs(secs),
        "job {job} stopped after {:?}",
        t0.elapsed()
    );
    let j = c.job(job);
    let err = j.error.clone().unwrap_or_default();
    assert!(
        err.contains(&format!("timed out after {secs} s")),
        "error of job {job}: {err:?}"
    );
    assert!(j.finished);
    c.wait_until("pg_dump to exit", Duration::from_secs(10), || {
        c.dump_processes().is_empty()
    });
    assert!(
        partials_under(&c.backups).is_empty(),
        "{:?}",
        partials_under(&c.backups)
    );
    if let Some(p) = c.backup(job).path {
        assert!(!Path::new(&p).exists(), "{p} exists");
    }
}

#[test]
fn jobs_time_out_per_call_and_by_setting() {
    let c = Cluster::start("timeouts");
    c.create_sample_db("to_db");
    let mut client = c.client("postgres");
    for (options, code) in [
        (r#"{"timeout": "0 seconds"}"#, "22023"),
        (r#"{"timeout": "banana"}"#, "22023"),
        (r#"{"timeout": 5}"#, "22023"),
        (r#"{"include_databases": ["to_db"]}"#, "22023"),
    ] {
        expect_sqlstate(
            &mut client,
            &format!("SELECT backup_ext.backup_database('to_db', options => '{options}')"),
            code,
        );
    }

    let holder = lock_t1(&c, "to_db");
    let per_call = c.enqueue(
        "SELECT backup_ext.backup_database('to_db', options => '{\"timeout\": \"2 seconds\"}')",
    );
    assert_timed_out(&c, per_call, 2);
    assert_eq!(
        files_under(&c.backups.join("to_db")),
        BTreeSet::new(),
        "output left behind"
    );

    alter_system(&c, "backup_ext.job_timeout", "2s", "2s");
    let by_setting = c.enqueue("SELECT backup_ext.backup_database('to_db')");
    assert_timed_out(&c, by_setting, 2);
    // A per-call timeout wins over the setting.
    let longer = c.enqueue(
        "SELECT backup_ext.backup_database('to_db', options => '{\"timeout\": \"4 seconds\"}')",
    );
    assert_timed_out(&c, longer, 4);
    drop(holder);

    // Without the lock a short dump finishes well within the limit.
    let ok = c.enqueue("SELECT backup_ext.backup_database('to_db')");
    assert_eq!(c.wait_final(ok, SMALL_JOB), "succeeded", "{:?}", c.job(ok));
    assert_eq!(files_under(&c.backups.join("to_db")).len(), 1);
}
