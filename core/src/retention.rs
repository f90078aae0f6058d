//! Which backups a retention policy keeps: grandfather-father-son rules
//! evaluated over the succeeded backups of one database (or of the globals).
//!
//! The rules follow restic's `forget` semantics, so that a DBA who knows
//! restic or pgBackRest reads the same meaning into the same words:
//!
//! * Every rule is evaluated on its own, newest backup first, and a backup is
//!   kept when any rule keeps it. A backup kept for one reason (pinned, say)
//!   still uses up a slot of every other rule it matches.
//! * `keep_daily`, `keep_weekly` and `keep_monthly` count only days, ISO weeks
//!   and months that *have* a backup. `keep_daily = 7` keeps the newest backup
//!   of each of the 7 most recent days on which a backup finished, however
//!   far back those days are. A week without backups (an outage, a holiday)
//!   therefore never uses up a slot, and an outage alone can never make the
//!   policy delete the last good backups.
//! * `keep_days` is the only rule that looks at the clock: it keeps what
//!   finished within that many days (of 24 hours) before `now`.
//!
//! Days, weeks and months are taken in UTC. Of two backups that finished at
//! the same instant, the one with the higher `backup_id` counts as newer.

use crate::error::RequestError;
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::cmp::Ordering;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionPolicy {
    pub keep_last: Option<u32>,
    pub keep_days: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
}

pub const RETENTION_HINT: &str = "Retention keys: keep_last, keep_days, keep_daily, keep_weekly, \
     keep_monthly (whole numbers of at least 1, or null to not use the rule).";

impl RetentionPolicy {
    /// A set rule of 0 would silently mean "this rule keeps nothing", which
    /// is never what someone writing `keep_daily = 0` wants to learn from a
    /// purge; leaving the rule out says that unambiguously.
    pub fn validate(&self) -> Result<(), RequestError> {
        for (name, value) in self.rules() {
            if value == Some(0) {
                return Err(RequestError::invalid(
                    format!("{name} => 0 is out of range"),
                    format!("Give {name} a value of at least 1, or leave it out (null) to not use that rule."),
                ));
            }
        }
        Ok(())
    }

    /// True when no rule is set: such a policy keeps every backup.
    pub fn is_empty(&self) -> bool {
        self.rules().iter().all(|(_, v)| v.is_none())
    }

    /// Strict parse of a stored or user-supplied policy: unknown keys and
    /// wrong types are errors, and the result is validated.
    pub fn from_value(value: &Value) -> Result<RetentionPolicy, RequestError> {
        if !value.is_object() {
            return Err(RequestError::invalid(
                "retention policy must be a JSON object",
                format!("Pass '{{}}' to keep everything. {RETENTION_HINT}"),
            ));
        }
        let policy = RetentionPolicy::deserialize(value).map_err(|e| {
            RequestError::invalid(format!("invalid retention policy: {e}"), RETENTION_HINT)
        })?;
        policy.validate()?;
        Ok(policy)
    }

    pub fn to_json(&self) -> Result<Value, serde_json::Error> {
        serde_json::to_value(self)
    }

    fn rules(&self) -> [(&'static str, Option<u32>); 5] {
        [
            ("keep_last", self.keep_last),
            ("keep_days", self.keep_days),
            ("keep_daily", self.keep_daily),
            ("keep_weekly", self.keep_weekly),
            ("keep_monthly", self.keep_monthly),
        ]
    }

    /// "keep_last=3, keep_daily=7": the rules that are set, for purge reasons.
    fn describe_set_rules(&self) -> String {
        self.rules()
            .iter()
            .filter_map(|(name, v)| v.map(|n| format!("{name}={n}")))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A succeeded backup that retention may keep or purge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainCandidate {
    pub backup_id: i64,
    pub finished_at: DateTime<Utc>,
    pub pinned: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionDecision {
    pub backup_id: i64,
    pub keep: bool,
    /// Kept: every rule that keeps it, e.g. "newest, keep_last, daily".
    /// Purged: the rules that were set, e.g. "not kept by keep_last=3, keep_daily=7".
    pub reason: String,
}

/// Newest first; of equal times the higher id is newer.
fn newest_first(a: &RetainCandidate, b: &RetainCandidate) -> Ordering {
    b.finished_at
        .cmp(&a.finished_at)
        .then(b.backup_id.cmp(&a.backup_id))
}

/// Keeps the newest backup of each of the `n` most recent periods that
/// have a backup; `sorted` must be newest first.
fn mark_buckets<K: PartialEq>(
    sorted: &[RetainCandidate],
    n: u32,
    key: impl Fn(&RetainCandidate) -> K,
    kept: &mut [Vec<&'static str>],
    reason: &'static str,
) {
    let mut left = n;
    let mut last: Option<K> = None;
    for (i, c) in sorted.iter().enumerate() {
        if left == 0 {
            break;
        }
        let k = key(c);
        if last.as_ref() != Some(&k) {
            kept[i].push(reason);
            left -= 1;
            last = Some(k);
        }
    }
}

/// Decides, for each backup, whether `policy` keeps it. Returns one
/// decision per input backup, newest first. See the module documentation
/// for the exact meaning of each rule.
pub fn plan_retention(
    policy: &RetentionPolicy,
    backups: &[RetainCandidate],
    now: DateTime<Utc>,
) -> Vec<RetentionDecision> {
    let mut sorted = backups.to_vec();
    sorted.sort_by(newest_first);

    if policy.is_empty() {
        return sorted
            .iter()
            .map(|c| RetentionDecision {
                backup_id: c.backup_id,
                keep: true,
                reason: "no retention policy".to_string(),
            })
            .collect();
    }

    let mut kept: Vec<Vec<&'static str>> = vec![Vec::new(); sorted.len()];
    for (i, c) in sorted.iter().enumerate() {
        if c.pinned {
            kept[i].push("pinned");
        }
    }
    if let Some(first) = kept.first_mut() {
        first.push("newest");
    }
    if let Some(n) = policy.keep_last {
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        for reasons in kept.iter_mut().take(n) {
            reasons.push("keep_last");
        }
    }
    if let Some(d) = policy.keep_days {
        // A cutoff before the earliest representable time keeps everything.
        let cutoff = now.checked_sub_signed(Duration::days(i64::from(d)));
        for (i, c) in sorted.iter().enumerate() {
            if cutoff.is_none_or(|cut| c.finished_at >= cut) {
                kept[i].push("keep_days");
            }
        }
    }
    if let Some(n) = policy.keep_daily {
        mark_buckets(
            &sorted,
            n,
            |c| c.finished_at.date_naive(),
            &mut kept,
            "daily",
        );
    }
    if let Some(n) = policy.keep_weekly {
        mark_buckets(
            &sorted,
            n,
            |c| {
                let w = c.finished_at.iso_week();
                (w.year(), w.week())
            },
            &mut kept,
            "weekly",
        );
    }
    if let Some(n) = policy.keep_monthly {
        mark_buckets(
            &sorted,
            n,
            |c| {
                let d: NaiveDate = c.finished_at.date_naive();
                (d.year(), d.month())
            },
            &mut kept,
            "monthly",
        );
    }

    let purge_reason = format!("not kept by {}", policy.describe_set_rules());
    sorted
        .iter()
        .zip(kept)
        .map(|(c, reasons)| RetentionDecision {
            backup_id: c.backup_id,
            keep: !reasons.is_empty(),
            reason: if reasons.is_empty() {
                purge_reason.clone()
            } else {
                reasons.join(", ")
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use chrono::TimeZone;
    use serde_json::json;

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
    }

    fn c(backup_id: i64, finished_at: DateTime<Utc>) -> RetainCandidate {
        RetainCandidate {
            backup_id,
            finished_at,
            pinned: false,
        }
    }

    fn kept_ids(decisions: &[RetentionDecision]) -> Vec<i64> {
        decisions
            .iter()
            .filter(|d| d.keep)
            .map(|d| d.backup_id)
            .collect()
    }

    fn reason_of(decisions: &[RetentionDecision], id: i64) -> &str {
        &decisions.iter().find(|d| d.backup_id == id).unwrap().reason
    }

    fn policy() -> RetentionPolicy {
        RetentionPolicy::default()
    }

    #[test]
    fn validate_rejects_zero_and_names_the_rule() {
        assert!(policy().validate().is_ok());
        let ok = RetentionPolicy {
            keep_last: Some(1),
            keep_days: Some(1),
            keep_daily: Some(1),
            keep_weekly: Some(1),
            keep_monthly: Some(u32::MAX),
        };
        assert!(ok.validate().is_ok());
        for name in [
            "keep_last",
            "keep_days",
            "keep_daily",
            "keep_weekly",
            "keep_monthly",
        ] {
            let p = RetentionPolicy::from_value(&json!({ name: 0 })).unwrap_err();
            assert_eq!(p.kind, ErrorKind::InvalidParameter);
            assert_eq!(p.message, format!("{name} => 0 is out of range"));
            assert!(p.hint.contains("at least 1"), "{}", p.hint);
        }
    }

    #[test]
    fn is_empty() {
        assert!(policy().is_empty());
        assert!(!RetentionPolicy {
            keep_weekly: Some(2),
            ..policy()
        }
        .is_empty());
    }

    #[test]
    fn from_value_is_strict() {
        let p = RetentionPolicy::from_value(&json!({"keep_last": 3, "keep_daily": null})).unwrap();
        assert_eq!(p.keep_last, Some(3));
        assert_eq!(p.keep_daily, None);
        assert_eq!(RetentionPolicy::from_value(&json!({})).unwrap(), policy());
        let e = RetentionPolicy::from_value(&json!({"keep_lats": 3})).unwrap_err();
        assert!(e.message.contains("keep_lats"), "{}", e.message);
        assert_eq!(e.hint, RETENTION_HINT);
        for bad in [json!({"keep_last": -1}), json!({"keep_last": "3"})] {
            let e = RetentionPolicy::from_value(&bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidParameter);
        }
        let e = RetentionPolicy::from_value(&json!([1])).unwrap_err();
        assert_eq!(e.message, "retention policy must be a JSON object");
        let round = RetentionPolicy::from_value(&p.to_json().unwrap()).unwrap();
        assert_eq!(round, p);
    }

    #[test]
    fn empty_input() {
        let p = RetentionPolicy {
            keep_last: Some(3),
            ..policy()
        };
        assert!(plan_retention(&p, &[], at(2024, 1, 1, 0)).is_empty());
        assert!(plan_retention(&policy(), &[], at(2024, 1, 1, 0)).is_empty());
    }

    #[test]
    fn empty_policy_keeps_everything() {
        let b = [c(1, at(2020, 1, 1, 0)), c(2, at(2021, 1, 1, 0))];
        let d = plan_retention(&policy(), &b, at(2024, 1, 1, 0));
        assert_eq!(kept_ids(&d), vec![2, 1]);
        assert!(d.iter().all(|x| x.reason == "no retention policy"));
    }

    #[test]
    fn keep_last() {
        let now = at(2024, 3, 10, 12);
        // Input order does not matter; output is newest first.
        let b: Vec<_> = [3, 1, 5, 2, 4]
            .into_iter()
            .map(|i| c(i, at(2024, 3, i as u32, 1)))
            .collect();
        let p = RetentionPolicy {
            keep_last: Some(3),
            ..policy()
        };
        let d = plan_retention(&p, &b, now);
        assert_eq!(
            d.iter().map(|x| x.backup_id).collect::<Vec<_>>(),
            vec![5, 4, 3, 2, 1]
        );
        assert_eq!(kept_ids(&d), vec![5, 4, 3]);
        assert_eq!(reason_of(&d, 5), "newest, keep_last");
        assert_eq!(reason_of(&d, 4), "keep_last");
        assert_eq!(reason_of(&d, 2), "not kept by keep_last=3");
        // More slots than backups keeps them all.
        let p = RetentionPolicy {
            keep_last: Some(10),
            ..policy()
        };
        assert_eq!(kept_ids(&plan_retention(&p, &b, now)).len(), 5);
    }

    #[test]
    fn keep_days() {
        let now = at(2024, 3, 10, 12);
        let b = [
            c(1, at(2024, 3, 7, 11)),       // 3 days 1 hour ago
            c(2, at(2024, 3, 7, 12)),       // exactly 3 days ago
            c(3, at(2024, 3, 9, 0)),        // 1.5 days ago
            c(4, at(2024, 3, 10, 11)),      // 1 hour ago
            c(5, now + Duration::hours(1)), // clock skew: in the future
            c(6, Utc.with_ymd_and_hms(2024, 3, 7, 11, 59, 59).unwrap()), // just outside
        ];
        let p = RetentionPolicy {
            keep_days: Some(3),
            ..policy()
        };
        let d = plan_retention(&p, &b, now);
        assert_eq!(kept_ids(&d), vec![5, 4, 3, 2]);
        assert_eq!(reason_of(&d, 5), "newest, keep_days");
        assert_eq!(reason_of(&d, 2), "keep_days");
        assert_eq!(reason_of(&d, 6), "not kept by keep_days=3");
        assert_eq!(reason_of(&d, 1), "not kept by keep_days=3");

        // A huge window does not overflow: it keeps everything.
        let p = RetentionPolicy {
            keep_days: Some(u32::MAX),
            ..policy()
        };
        assert_eq!(kept_ids(&plan_retention(&p, &b, now)).len(), b.len());
    }

    #[test]
    fn pinned_and_newest_survive_keep_last_1() {
        let now = at(2024, 3, 10, 12);
        let mut b: Vec<_> = (1..=5).map(|i| c(i, at(2024, 3, i as u32, 1))).collect();
        b[1].pinned = true; // id 2
        let p = RetentionPolicy {
            keep_last: Some(1),
            ..policy()
        };
        let d = plan_retention(&p, &b, now);
        assert_eq!(kept_ids(&d), vec![5, 2]);
        assert_eq!(reason_of(&d, 5), "newest, keep_last");
        assert_eq!(reason_of(&d, 2), "pinned");
        assert_eq!(reason_of(&d, 4), "not kept by keep_last=1");

        // With a rule that keeps nothing recent, the newest still survives.
        let p = RetentionPolicy {
            keep_days: Some(1),
            ..policy()
        };
        let d = plan_retention(&p, &b, at(2030, 1, 1, 0));
        assert_eq!(kept_ids(&d), vec![5, 2]);
        assert_eq!(reason_of(&d, 5), "newest");
        // A pinned newest backup gives both reasons.
        b[4].pinned = true;
        let d = plan_retention(&p, &b, at(2030, 1, 1, 0));
        assert_eq!(reason_of(&d, 5), "pinned, newest");
    }

    #[test]
    fn pinned_backups_use_up_slots_like_any_other() {
        let now = at(2024, 3, 10, 12);
        let mut b: Vec<_> = (1..=4).map(|i| c(i, at(2024, 3, i as u32, 1))).collect();
        b[3].pinned = true; // id 4, the newest
        let p = RetentionPolicy {
            keep_last: Some(2),
            ..policy()
        };
        assert_eq!(kept_ids(&plan_retention(&p, &b, now)), vec![4, 3]);
    }

    #[test]
    fn ties_at_identical_timestamps() {
        let now = at(2024, 3, 10, 12);
        let t = at(2024, 3, 9, 1);
        let b = [c(7, t), c(9, t), c(8, t), c(1, at(2024, 3, 8, 1))];
        let p = RetentionPolicy {
            keep_last: Some(2),
            ..policy()
        };
        let d = plan_retention(&p, &b, now);
        assert_eq!(
            d.iter().map(|x| x.backup_id).collect::<Vec<_>>(),
            vec![9, 8, 7, 1]
        );
        assert_eq!(kept_ids(&d), vec![9, 8]);
        assert_eq!(reason_of(&d, 9), "newest, keep_last");

        // The daily rule picks the higher id of a day's tied backups.
        let p = RetentionPolicy {
            keep_daily: Some(2),
            ..policy()
        };
        let d = plan_retention(&p, &b, now);
        assert_eq!(kept_ids(&d), vec![9, 1]);
        assert_eq!(reason_of(&d, 1), "daily");
        assert_eq!(reason_of(&d, 8), "not kept by keep_daily=2");
    }

    #[test]
    fn daily_counts_only_days_that_have_backups() {
        // Three backups on 1 March, then an outage until 20 March.
        let b = [
            c(1, at(2024, 3, 1, 1)),
            c(2, at(2024, 3, 1, 13)),
            c(3, at(2024, 2, 27, 1)),
            c(4, at(2024, 2, 26, 1)),
            c(5, at(2024, 3, 20, 1)),
        ];
        let p = RetentionPolicy {
            keep_daily: Some(3),
            ..policy()
        };
        let d = plan_retention(&p, &b, at(2024, 3, 20, 12));
        // 20 March, 1 March (newest of the two) and 27 February.
        assert_eq!(kept_ids(&d), vec![5, 2, 3]);
        assert_eq!(reason_of(&d, 5), "newest, daily");
        assert_eq!(reason_of(&d, 1), "not kept by keep_daily=3");
    }

    #[test]
    fn days_are_utc_days() {
        // 23:30 and 00:30 are different UTC days even though an hour apart.
        let b = [
            c(1, Utc.with_ymd_and_hms(2024, 3, 1, 23, 30, 0).unwrap()),
            c(2, Utc.with_ymd_and_hms(2024, 3, 2, 0, 30, 0).unwrap()),
        ];
        let p = RetentionPolicy {
            keep_daily: Some(2),
            ..policy()
        };
        assert_eq!(
            kept_ids(&plan_retention(&p, &b, at(2024, 3, 2, 12))),
            vec![2, 1]
        );
    }

    #[test]
    fn weeks_are_iso_weeks_across_the_year_end() {
        // Mon 30 Dec 2024 belongs to ISO week 2025-W01, together with
        // Thu 2 Jan 2025; Sun 29 Dec 2024 is 2024-W52.
        let b = [
            c(1, at(2024, 12, 29, 1)),
            c(2, at(2024, 12, 30, 1)),
            c(3, at(2025, 1, 2, 1)),
            c(4, at(2024, 12, 28, 1)),
        ];
        let p = RetentionPolicy {
            keep_weekly: Some(2),
            ..policy()
        };
        let d = plan_retention(&p, &b, at(2025, 1, 3, 0));
        assert_eq!(kept_ids(&d), vec![3, 1]);
        assert_eq!(reason_of(&d, 1), "weekly");
        assert_eq!(reason_of(&d, 2), "not kept by keep_weekly=2");
    }

    /// One backup a day at 01:00 UTC for 100 days: id 100 finished on
    /// Wed 10 April 2024, id 1 on Tue 2 January 2024.
    #[test]
    fn hundred_days_of_daily_backups() {
        let first = at(2024, 1, 2, 1);
        let b: Vec<_> = (1..=100)
            .map(|id| c(id, first + Duration::days(id - 1)))
            .collect();
        assert_eq!(b[99].finished_at, at(2024, 4, 10, 1));
        let now = at(2024, 4, 10, 12);
        let p = RetentionPolicy {
            keep_daily: Some(7),
            keep_weekly: Some(4),
            keep_monthly: Some(6),
            ..policy()
        };
        let d = plan_retention(&p, &b, now);
        assert_eq!(d.len(), 100);

        // daily: 4-10 April = ids 94..=100.
        // weekly (weeks end on Sunday): W15 -> 100 (Wed 10 Apr),
        //   W14 -> 97 (Sun 7 Apr), W13 -> 90 (Sun 31 Mar), W12 -> 83 (Sun 24 Mar).
        // monthly: April -> 100, March -> 90 (31 Mar), February ->
        //   59 (29 Feb, leap year), January -> 30 (31 Jan); only 4 months
        //   have backups, so all 4 are kept and 2 slots stay unused.
        assert_eq!(
            kept_ids(&d),
            vec![100, 99, 98, 97, 96, 95, 94, 90, 83, 59, 30]
        );
        assert_eq!(reason_of(&d, 100), "newest, daily, weekly, monthly");
        assert_eq!(reason_of(&d, 97), "daily, weekly");
        assert_eq!(reason_of(&d, 94), "daily");
        assert_eq!(reason_of(&d, 90), "weekly, monthly");
        assert_eq!(reason_of(&d, 83), "weekly");
        assert_eq!(reason_of(&d, 59), "monthly");
        assert_eq!(reason_of(&d, 30), "monthly");
        assert_eq!(
            reason_of(&d, 93),
            "not kept by keep_daily=7, keep_weekly=4, keep_monthly=6"
        );
        assert_eq!(
            reason_of(&d, 1),
            "not kept by keep_daily=7, keep_weekly=4, keep_monthly=6"
        );

        // Adding keep_last and keep_days only ever keeps more.
        let wider = RetentionPolicy {
            keep_last: Some(10),
            keep_days: Some(12),
            ..p.clone()
        };
        let d2 = plan_retention(&wider, &b, now);
        let mut expected: Vec<i64> = (89..=100).rev().collect();
        expected.extend([83, 59, 30]);
        assert_eq!(kept_ids(&d2), expected);
        assert_eq!(reason_of(&d2, 91), "keep_last, keep_days");
        assert_eq!(reason_of(&d2, 89), "keep_days");
    }
}
