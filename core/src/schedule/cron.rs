//! Schedules' times: a standard 5-field cron expression, evaluated in UTC.
//!
//! Only standard (Vixie/POSIX) cron syntax is accepted. Extensions that some
//! schedulers add (a seconds or year field, `L`, `W`, `#`, `?`, `+`) are
//! refused rather than interpreted, so an expression copied from a Quartz or
//! systemd configuration fails loudly instead of running at unexpected times.
//! As in Vixie cron, when both day-of-month and day-of-week are restricted
//! (neither is `*`), a day matching either one matches.

use crate::error::{quoted, RequestError};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

pub const CRON_HINT: &str = "Use 5 fields, minute hour day-of-month month day-of-week, in UTC: \
     e.g. '30 2 * * *' runs daily at 02:30; fields take *, lists (1,15), ranges (1-5), steps \
     (*/15, 0-30/10) and names (JAN-DEC, SUN-SAT); @hourly, @daily, @weekly, @monthly and \
     @yearly also work.";

const FIELD_NAMES: [&str; 5] = ["minute", "hour", "day-of-month", "month", "day-of-week"];
const MONTH_NAMES: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// A parsed cron expression. All times are UTC.
#[derive(Clone)]
pub struct CronSchedule {
    expr: String,
    cron: Cron,
}

impl std::fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CronSchedule").field(&self.expr).finish()
    }
}

fn alias(expr: &str) -> Result<&'static str, RequestError> {
    match expr.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => Ok("0 0 1 1 *"),
        "@monthly" => Ok("0 0 1 * *"),
        "@weekly" => Ok("0 0 * * 0"),
        "@daily" | "@midnight" => Ok("0 0 * * *"),
        "@hourly" => Ok("0 * * * *"),
        "@reboot" => Err(RequestError::unsupported(
            "schedule \"@reboot\" is not supported",
            "Schedules run at clock times; use e.g. '@daily' or '30 2 * * *'.",
        )),
        _ => Err(RequestError::invalid(
            format!("unknown schedule shorthand {}", quoted(expr)),
            CRON_HINT,
        )),
    }
}

/// Whether `part` of a list has the standard shape: `*`, `V` or `V-V`,
/// optionally followed by `/N`, where V is a number or a name.
fn well_formed(part: &str) -> bool {
    let is_value = |v: &str| {
        !v.is_empty()
            && (v.bytes().all(|b| b.is_ascii_digit()) || v.bytes().all(|b| b.is_ascii_alphabetic()))
    };
    let (base, step) = match part.split_once('/') {
        Some((b, s)) => (b, Some(s)),
        None => (part, None),
    };
    if let Some(s) = step {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    match base.split_once('-') {
        _ if base == "*" => true,
        Some((a, b)) => is_value(a) && is_value(b),
        None => is_value(base),
    }
}

/// Checks one field for characters, names and shapes outside standard cron.
fn check_field(index: usize, field: &str, expr: &str) -> Result<(), RequestError> {
    let what = FIELD_NAMES.get(index).copied().unwrap_or("unknown");
    let names: &[&str] = match index {
        3 => &MONTH_NAMES,
        4 => &DAY_NAMES,
        _ => &[],
    };
    let mut word = String::new();
    let check_word = |word: &mut String| -> Result<(), RequestError> {
        if word.is_empty() {
            return Ok(());
        }
        let upper = word.to_ascii_uppercase();
        if !names.contains(&upper.as_str()) {
            let accepted = if names.is_empty() {
                format!("The {what} field takes numbers only.")
            } else {
                format!("Names in the {what} field: {}.", names.join(", "))
            };
            return Err(RequestError::invalid(
                format!(
                    "cron expression {} has {} in its {what} field, which standard cron does not accept",
                    quoted(expr),
                    quoted(word)
                ),
                format!("{accepted} {CRON_HINT}"),
            ));
        }
        word.clear();
        Ok(())
    };
    for ch in field.chars() {
        if ch.is_ascii_alphabetic() {
            word.push(ch);
            continue;
        }
        check_word(&mut word)?;
        if !(ch.is_ascii_digit() || matches!(ch, '*' | ',' | '-' | '/')) {
            return Err(RequestError::invalid(
                format!(
                    "cron expression {} uses {} in its {what} field, which standard cron does not accept",
                    quoted(expr),
                    quoted(&ch.to_string())
                ),
                CRON_HINT,
            ));
        }
    }
    check_word(&mut word)?;
    if let Some(part) = field.split(',').find(|p| !well_formed(p)) {
        return Err(RequestError::invalid(
            format!(
                "cron expression {} has a malformed {what} field: {} is not a value, a range or a step",
                quoted(expr),
                quoted(part)
            ),
            CRON_HINT,
        ));
    }
    Ok(())
}

/// Whether any day matches. Asking croner for the next occurrence of a
/// pattern that never matches walks forward to its year limit, which takes
/// seconds; checking each day of a 28-year span (every combination of date,
/// weekday and leap year) is instant and decides the same for standard
/// syntax.
fn matches_some_day(cron: &Cron) -> bool {
    let Some(mut day) = NaiveDate::from_ymd_opt(2000, 1, 1) else {
        return true;
    };
    let Some(end) = NaiveDate::from_ymd_opt(2028, 1, 1) else {
        return true;
    };
    while day < end {
        let month_ok = cron.pattern.month_match(day.month()).unwrap_or(false);
        if month_ok
            && cron
                .pattern
                .day_match(
                    day.year(),
                    day.month(),
                    day.day(),
                    croner::Weekday::from_days_from_sunday(day.weekday().num_days_from_sunday()),
                )
                .unwrap_or(false)
        {
            return true;
        }
        match day.succ_opt() {
            Some(next) => day = next,
            None => return true,
        }
    }
    false
}

impl CronSchedule {
    pub fn parse(expr: &str) -> Result<CronSchedule, RequestError> {
        let trimmed = expr.trim();
        if trimmed.is_empty() {
            return Err(RequestError::invalid("cron expression is empty", CRON_HINT));
        }
        if trimmed
            .chars()
            .any(|c| c.is_control() && !c.is_whitespace())
        {
            return Err(RequestError::invalid(
                format!(
                    "cron expression {} contains a control character",
                    quoted(expr)
                ),
                CRON_HINT,
            ));
        }
        let pattern = if trimmed.starts_with('@') {
            alias(trimmed)?.to_string()
        } else {
            let fields: Vec<&str> = trimmed.split_whitespace().collect();
            match fields.len() {
                5 => {}
                6 | 7 => {
                    return Err(RequestError::invalid(
                        format!(
                            "cron expression {} has {} fields; seconds and year fields are not supported",
                            quoted(expr),
                            fields.len()
                        ),
                        format!("Schedules have minute granularity. {CRON_HINT}"),
                    ))
                }
                n => {
                    return Err(RequestError::invalid(
                        format!("cron expression {} has {n} fields, not 5", quoted(expr)),
                        CRON_HINT,
                    ))
                }
            }
            for (i, field) in fields.iter().enumerate() {
                check_field(i, field, expr)?;
            }
            fields.join(" ")
        };
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(&pattern)
            .map_err(|e| {
                RequestError::invalid(
                    format!("invalid cron expression {}: {e}", quoted(expr)),
                    CRON_HINT,
                )
            })?;
        // "0 0 30 2 *" parses but never fires; better to say so now than to
        // have a schedule that silently never runs.
        let some_hour = (0..24).any(|h| cron.pattern.hour_match(h).unwrap_or(false));
        let some_minute = (0..60).any(|m| cron.pattern.minute_match(m).unwrap_or(false));
        if !(some_hour && some_minute && matches_some_day(&cron)) {
            return Err(RequestError::invalid(
                format!("cron expression {} never matches a date", quoted(expr)),
                format!("Check the day-of-month and month fields. {CRON_HINT}"),
            ));
        }
        Ok(CronSchedule {
            expr: trimmed.to_string(),
            cron,
        })
    }

    /// The expression as given (without surrounding whitespace).
    pub fn as_str(&self) -> &str {
        &self.expr
    }

    /// The first scheduled time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&t, false).ok()
    }

    /// The most recent scheduled time in `(last_run or created, now]`, if
    /// any. Several runs missed while the server was down collapse into
    /// this one: a backup schedule wants a fresh backup, not a backlog.
    pub fn due_runs(
        &self,
        last_run: Option<DateTime<Utc>>,
        created: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let since = last_run.unwrap_or(created);
        if now <= since {
            return None;
        }
        let latest = self.cron.find_previous_occurrence(&now, true).ok()?;
        (latest > since && latest <= now).then_some(latest)
    }
}

impl std::fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.expr)
    }
}

#[cfg(test)]
mod tests;
