use super::*;
use crate::error::ErrorKind;
use chrono::TimeZone;

fn t(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

fn cron(expr: &str) -> CronSchedule {
    CronSchedule::parse(expr).unwrap()
}

fn err(expr: &str) -> RequestError {
    CronSchedule::parse(expr).unwrap_err()
}

#[test]
fn parses_standard_expressions() {
    // 2024-03-04 is a Monday.
    let from = t(2024, 3, 4, 10, 7);
    let cases = [
        ("* * * * *", t(2024, 3, 4, 10, 8)),
        ("30 2 * * *", t(2024, 3, 5, 2, 30)),
        ("*/15 * * * *", t(2024, 3, 4, 10, 15)),
        ("0-30/10 11 * * *", t(2024, 3, 4, 11, 0)),
        ("5,50 * * * *", t(2024, 3, 4, 10, 50)),
        ("0 9-17 * * MON-FRI", t(2024, 3, 4, 11, 0)),
        ("0 0 * * sat,SUN", t(2024, 3, 9, 0, 0)),
        ("0 0 * * 7", t(2024, 3, 10, 0, 0)),
        ("0 0 1 JAN *", t(2025, 1, 1, 0, 0)),
        ("0 0 1 jun-aug *", t(2024, 6, 1, 0, 0)),
        ("0 0 29 2 *", t(2028, 2, 29, 0, 0)),
        ("  0 3 * * 0  ", t(2024, 3, 10, 3, 0)),
        ("@daily", t(2024, 3, 5, 0, 0)),
        ("@HOURLY", t(2024, 3, 4, 11, 0)),
        ("@weekly", t(2024, 3, 10, 0, 0)),
        ("@monthly", t(2024, 4, 1, 0, 0)),
        ("@yearly", t(2025, 1, 1, 0, 0)),
        ("@annually", t(2025, 1, 1, 0, 0)),
        ("@midnight", t(2024, 3, 5, 0, 0)),
    ];
    for (expr, next) in cases {
        assert_eq!(cron(expr).next_after(from), Some(next), "{expr}");
    }
    assert_eq!(cron("  0 3 * * 0  ").as_str(), "0 3 * * 0");
    assert_eq!(cron("0 3 * * 0").to_string(), "0 3 * * 0");
}

#[test]
fn day_of_month_or_day_of_week() {
    // Both restricted: the 15th or any Friday, as in Vixie cron.
    let s = cron("0 0 15 * FRI");
    let from = t(2024, 3, 4, 0, 0);
    assert_eq!(s.next_after(from), Some(t(2024, 3, 8, 0, 0)));
    assert_eq!(
        s.next_after(t(2024, 3, 13, 0, 0)),
        Some(t(2024, 3, 15, 0, 0))
    );
    assert_eq!(
        s.next_after(t(2024, 3, 15, 0, 0)),
        Some(t(2024, 3, 22, 0, 0))
    );
}

#[test]
fn next_after_is_strictly_after() {
    let s = cron("30 2 * * *");
    assert_eq!(
        s.next_after(t(2024, 3, 4, 2, 30)),
        Some(t(2024, 3, 5, 2, 30))
    );
    let just_before = t(2024, 3, 4, 2, 29) + chrono::Duration::milliseconds(59_999);
    assert_eq!(s.next_after(just_before), Some(t(2024, 3, 4, 2, 30)));
}

#[test]
fn refuses_seconds_and_year_fields() {
    for expr in ["0 30 2 * * *", "0 30 2 * * * 2025", "*/5 * * * * *"] {
        let e = err(expr);
        assert_eq!(e.kind, ErrorKind::InvalidParameter);
        assert!(
            e.message
                .contains("seconds and year fields are not supported"),
            "{}",
            e.message
        );
        assert!(e.hint.contains("minute granularity"), "{}", e.hint);
    }
    for expr in ["* * * *", "*", "1 2 3 4 5 6 7 8"] {
        let e = err(expr);
        assert!(e.message.contains("fields, not 5"), "{}", e.message);
        assert_eq!(e.hint, CRON_HINT);
    }
}

#[test]
fn refuses_non_standard_syntax() {
    for (expr, bad) in [
        ("0 0 L * *", "\"L\""),
        ("0 0 15W * *", "\"W\""),
        ("0 0 * * 5#2", "\"#\""),
        ("0 0 * * 5L", "\"L\""),
        ("0 0 ? * MON", "\"?\""),
        ("0 0 1 * +MON", "\"+\""),
        ("0 0 * * MONDAY", "\"MONDAY\""),
        ("0 0 * JAN MON-FRX", "\"FRX\""),
        ("0 0 * MON *", "\"MON\""),
        ("0 0 * * JAN", "\"JAN\""),
        ("MON 0 * * *", "\"MON\""),
        ("0 0 * * 1.5", "\".\""),
    ] {
        let e = err(expr);
        assert_eq!(e.kind, ErrorKind::InvalidParameter, "{expr}");
        assert!(
            e.message.contains(bad) && e.message.contains("standard cron"),
            "{expr}: {}",
            e.message
        );
    }
    assert!(err("0 0 * MON *").hint.contains("JAN, FEB"));
    assert!(err("MON 0 * * *").hint.contains("numbers only"));
}

#[test]
fn refuses_out_of_range_and_malformed_values() {
    for expr in [
        "60 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * 32 * *",
        "* * * 13 *",
        "* * * * 8",
        "*/0 * * * *",
        "0/10 * * * *",
        "1- * * * *",
        ", * * * *",
        "1,,2 * * * *",
        "1, * * * *",
        "-5 * * * *",
        "1-2-3 * * * *",
        "*/ * * * *",
        "1/2/3 * * * *",
        "** * * * *",
        "*-5 * * * *",
        "5-* * * * *",
        "0 0 * JAN- *",
    ] {
        let e = err(expr);
        assert_eq!(e.kind, ErrorKind::InvalidParameter, "{expr}");
        assert!(e.message.contains(&quoted(expr)), "{}", e.message);
    }
    let e = err("0 0 30 2 *");
    assert!(e.message.contains("never matches"), "{}", e.message);
    assert!(err("").message.contains("empty"));
    assert!(err("   ").message.contains("empty"));
    assert!(err("0 0 * * *\u{0}").message.contains("control"));
    assert_eq!(err("@reboot").kind, ErrorKind::FeatureNotSupported);
    assert!(err("@fortnightly")
        .message
        .contains("unknown schedule shorthand"));
}

#[test]
fn due_runs_collapses_missed_runs() {
    let s = cron("0 2 * * *");
    let created = t(2024, 3, 1, 12, 0);
    // Nothing scheduled yet.
    assert_eq!(s.due_runs(None, created, t(2024, 3, 2, 1, 59)), None);
    // First run due at exactly 02:00.
    assert_eq!(
        s.due_runs(None, created, t(2024, 3, 2, 2, 0)),
        Some(t(2024, 3, 2, 2, 0))
    );
    // Already ran at that time: not due again.
    let last = Some(t(2024, 3, 2, 2, 0));
    assert_eq!(s.due_runs(last, created, t(2024, 3, 2, 2, 0)), None);
    assert_eq!(s.due_runs(last, created, t(2024, 3, 3, 1, 0)), None);
    // Down for five days: one run, at the most recent scheduled time.
    assert_eq!(
        s.due_runs(last, created, t(2024, 3, 7, 9, 30)),
        Some(t(2024, 3, 7, 2, 0))
    );
    // Sub-second parts of now do not hide a run.
    let now = t(2024, 3, 3, 2, 0) + chrono::Duration::milliseconds(250);
    assert_eq!(s.due_runs(last, created, now), Some(t(2024, 3, 3, 2, 0)));
    // A last run recorded after the scheduled time (the run started late).
    let late = Some(t(2024, 3, 3, 2, 0) + chrono::Duration::seconds(5));
    assert_eq!(s.due_runs(late, created, t(2024, 3, 3, 23, 0)), None);
    // A clock that went backwards.
    assert_eq!(s.due_runs(last, created, t(2024, 3, 1, 0, 0)), None);
    // Created exactly on a scheduled time: that time is not in the window.
    assert_eq!(
        s.due_runs(None, t(2024, 3, 2, 2, 0), t(2024, 3, 2, 2, 30)),
        None
    );
}

#[test]
fn due_runs_after_a_long_outage() {
    let s = cron("0 0 1 1 *");
    assert_eq!(
        s.due_runs(
            Some(t(2019, 1, 1, 0, 0)),
            t(2018, 6, 1, 0, 0),
            t(2024, 3, 1, 0, 0)
        ),
        Some(t(2024, 1, 1, 0, 0))
    );
    let s = cron("*/5 * * * *");
    assert_eq!(
        s.due_runs(
            Some(t(2024, 1, 1, 0, 0)),
            t(2024, 1, 1, 0, 0),
            t(2024, 3, 1, 0, 3)
        ),
        Some(t(2024, 3, 1, 0, 0))
    );
}
