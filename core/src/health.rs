//! Backup freshness for monitoring: a status per database and a one-line
//! summary in the format Nagios, Icinga and their relatives read.

use std::time::Duration;

/// Ordered from best to worst, so the overall status is the maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Health {
    Ok,
    Warning,
    Critical,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Warning => "warning",
            Health::Critical => "critical",
        }
    }

    /// The exit code a Nagios plugin reports for this status.
    pub fn nagios_exit_code(self) -> i32 {
        match self {
            Health::Ok => 0,
            Health::Warning => 1,
            Health::Critical => 2,
        }
    }

    fn nagios_word(self) -> &'static str {
        match self {
            Health::Ok => "OK",
            Health::Warning => "WARNING",
            Health::Critical => "CRITICAL",
        }
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `last_success_age` is the time since the last succeeded backup, None if
/// there never was one; `last_failure_after_success` says whether a backup
/// failed after it. A failure alone is a warning, not critical: the last
/// good backup is still there and still fresh enough.
pub fn classify(
    last_success_age: Option<Duration>,
    last_failure_after_success: bool,
    warn_after: Duration,
    critical_after: Duration,
) -> Health {
    match last_success_age {
        None => Health::Critical,
        Some(age) if age >= critical_after => Health::Critical,
        Some(age) if age >= warn_after || last_failure_after_success => Health::Warning,
        Some(_) => Health::Ok,
    }
}

/// "42s", "17m", "51h", "9d": hours up to 99 so that "last success 51h
/// ago" reads directly against thresholds usually given in hours.
pub fn format_age(age: Duration) -> String {
    let s = age.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=359_999 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// Nagios reads everything after the first `|` as performance data and
/// only the first line as the status text.
fn clean_name(name: &str) -> String {
    name.chars()
        .map(|c| if c == '|' || c.is_control() { '?' } else { c })
        .collect()
}

/// One line for a Nagios-style check, e.g.
/// `BACKUP CRITICAL - app: last success 51h ago; shop: never backed up | ok=3 warning=0 critical=2`.
/// Rows that are not ok are listed worst first, otherwise in the given
/// order; the overall status is the worst row's.
pub fn nagios_line(rows: &[(String, Health, Option<Duration>)]) -> String {
    let count = |h: Health| rows.iter().filter(|(_, r, _)| *r == h).count();
    let perf = format!(
        "ok={} warning={} critical={}",
        count(Health::Ok),
        count(Health::Warning),
        count(Health::Critical)
    );
    let worst = rows.iter().map(|(_, h, _)| *h).max().unwrap_or(Health::Ok);
    let mut problems: Vec<&(String, Health, Option<Duration>)> =
        rows.iter().filter(|(_, h, _)| *h != Health::Ok).collect();
    // Stable sort: equal statuses keep their order.
    problems.sort_by_key(|r| std::cmp::Reverse(r.1));
    let text = if rows.is_empty() {
        "no backups are monitored".to_string()
    } else if problems.is_empty() {
        let n = rows.len();
        let noun = if n == 1 { "backup is" } else { "backups are" };
        format!("{n} {noun} recent")
    } else {
        problems
            .iter()
            .map(|(name, _, age)| match age {
                Some(a) => format!("{}: last success {} ago", clean_name(name), format_age(*a)),
                None => format!("{}: never backed up", clean_name(name)),
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    format!("BACKUP {} - {text} | {perf}", worst.nagios_word())
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = 3600;

    fn hours(h: u64) -> Duration {
        Duration::from_secs(h * H)
    }

    fn c(age: Option<Duration>, failed: bool) -> Health {
        classify(age, failed, hours(26), hours(50))
    }

    #[test]
    fn classify_rules() {
        assert_eq!(c(None, false), Health::Critical);
        assert_eq!(c(None, true), Health::Critical);
        assert_eq!(c(Some(hours(1)), false), Health::Ok);
        assert_eq!(c(Some(Duration::ZERO), false), Health::Ok);
        assert_eq!(c(Some(hours(1)), true), Health::Warning);
        assert_eq!(
            c(Some(hours(26) - Duration::from_secs(1)), false),
            Health::Ok
        );
        assert_eq!(c(Some(hours(26)), false), Health::Warning);
        assert_eq!(
            c(Some(hours(50) - Duration::from_secs(1)), true),
            Health::Warning
        );
        assert_eq!(c(Some(hours(50)), false), Health::Critical);
        assert_eq!(c(Some(hours(500)), true), Health::Critical);
    }

    #[test]
    fn names_order_and_codes() {
        assert_eq!(Health::Ok.as_str(), "ok");
        assert_eq!(Health::Warning.as_str(), "warning");
        assert_eq!(Health::Critical.to_string(), "critical");
        assert!(Health::Ok < Health::Warning && Health::Warning < Health::Critical);
        assert_eq!(Health::Ok.nagios_exit_code(), 0);
        assert_eq!(Health::Warning.nagios_exit_code(), 1);
        assert_eq!(Health::Critical.nagios_exit_code(), 2);
    }

    #[test]
    fn ages() {
        assert_eq!(format_age(Duration::from_secs(0)), "0s");
        assert_eq!(format_age(Duration::from_secs(59)), "59s");
        assert_eq!(format_age(Duration::from_secs(60)), "1m");
        assert_eq!(format_age(Duration::from_secs(3599)), "59m");
        assert_eq!(format_age(hours(1)), "1h");
        assert_eq!(format_age(hours(51) + Duration::from_secs(1800)), "51h");
        assert_eq!(format_age(hours(99)), "99h");
        assert_eq!(format_age(hours(100)), "4d");
    }

    fn row(name: &str, h: Health, age: Option<u64>) -> (String, Health, Option<Duration>) {
        (name.to_string(), h, age.map(hours))
    }

    #[test]
    fn nagios_critical_example() {
        let rows = [
            row("a", Health::Ok, Some(2)),
            row("app", Health::Critical, Some(51)),
            row("b", Health::Ok, Some(3)),
            row("shop", Health::Critical, None),
            row("c", Health::Ok, Some(1)),
        ];
        assert_eq!(
            nagios_line(&rows),
            "BACKUP CRITICAL - app: last success 51h ago; shop: never backed up \
             | ok=3 warning=0 critical=2"
        );
    }

    #[test]
    fn nagios_lists_worst_first() {
        let rows = [
            row("w1", Health::Warning, Some(30)),
            row("c1", Health::Critical, Some(60)),
            row("ok", Health::Ok, Some(1)),
            row("w2", Health::Warning, Some(2)),
        ];
        assert_eq!(
            nagios_line(&rows),
            "BACKUP CRITICAL - c1: last success 60h ago; w1: last success 30h ago; \
             w2: last success 2h ago | ok=1 warning=2 critical=1"
        );
        let rows = [
            row("w", Health::Warning, Some(30)),
            row("o", Health::Ok, Some(1)),
        ];
        assert_eq!(
            nagios_line(&rows),
            "BACKUP WARNING - w: last success 30h ago | ok=1 warning=1 critical=0"
        );
    }

    #[test]
    fn nagios_all_ok_and_empty() {
        let rows = [row("a", Health::Ok, Some(1)), row("b", Health::Ok, Some(2))];
        assert_eq!(
            nagios_line(&rows),
            "BACKUP OK - 2 backups are recent | ok=2 warning=0 critical=0"
        );
        assert_eq!(
            nagios_line(&rows[..1]),
            "BACKUP OK - 1 backup is recent | ok=1 warning=0 critical=0"
        );
        assert_eq!(
            nagios_line(&[]),
            "BACKUP OK - no backups are monitored | ok=0 warning=0 critical=0"
        );
    }

    #[test]
    fn nagios_names_cannot_break_the_format() {
        let line = nagios_line(&[row("a|b\nc", Health::Critical, None)]);
        assert_eq!(
            line,
            "BACKUP CRITICAL - a?b?c: never backed up | ok=0 warning=0 critical=1"
        );
    }
}
