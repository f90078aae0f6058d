//! The free-space guardrail: `backup_ext.min_free_space` parsed into a rule, and the free
//! space of a filesystem read with `statvfs`. A dump must never fill the filesystem it writes
//! to (often the one holding the data directory): below the rule's minimum it does not start,
//! and a running one is stopped.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::RequestError;

/// The minimum free space: the larger of an absolute size and a share of the filesystem.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FreeSpaceRule {
    pub min_bytes: u64,
    /// Percent of the filesystem's size, 0 to 100.
    pub min_percent: f64,
}

pub const FREE_SPACE_HINT: &str = "Give a size, a percentage or both, the larger applying, e.g. '1GB, 5%', '500MB', '10%'; '0' turns the check off. Units: B, kB, MB, GB, TB (powers of 1024).";

/// The default of `backup_ext.min_free_space`.
pub const DEFAULT_MIN_FREE_SPACE: &str = "1GB, 5%";

impl FreeSpaceRule {
    pub fn parse(text: &str) -> Result<FreeSpaceRule, RequestError> {
        let bad = |why: String| {
            RequestError::invalid(
                format!("backup_ext.min_free_space = '{text}' is not understood: {why}"),
                FREE_SPACE_HINT,
            )
        };
        let mut rule = FreeSpaceRule {
            min_bytes: 0,
            min_percent: 0.0,
        };
        let parts: Vec<&str> = text.split(',').map(str::trim).collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(bad("an empty part".into()));
        }
        for part in parts {
            if let Some(number) = part.strip_suffix('%') {
                let p: f64 = number
                    .trim()
                    .parse()
                    .map_err(|_| bad(format!("{part:?} is not a percentage")))?;
                if !(0.0..=100.0).contains(&p) {
                    return Err(bad(format!("{part} is not between 0% and 100%")));
                }
                rule.min_percent = rule.min_percent.max(p);
            } else {
                rule.min_bytes = rule
                    .min_bytes
                    .max(parse_size(part).ok_or_else(|| bad(format!("{part:?} is not a size")))?);
            }
        }
        Ok(rule)
    }

    /// Bytes that must stay free on a filesystem of `total` bytes.
    pub fn required(&self, total: u64) -> u64 {
        let share = (total as f64 * self.min_percent / 100.0).ceil() as u64;
        self.min_bytes.max(share)
    }

    /// Why `free` bytes out of `total` are too few, if they are.
    pub fn shortfall(&self, free: u64, total: u64) -> Option<String> {
        let required = self.required(total);
        (free < required).then(|| {
            format!(
                "{} free of {}, below backup_ext.min_free_space ({} here)",
                human(free),
                human(total),
                human(required)
            )
        })
    }
}

fn parse_size(text: &str) -> Option<u64> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "kB" | "KB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        "TB" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(factor)
}

/// Bytes in the largest unit that keeps a whole number above 1, e.g. "1.5 GB".
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// (free bytes available to unprivileged writers, total bytes) of the filesystem holding `path`.
pub fn free_space(path: &Path) -> io::Result<(u64, u64)> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated path and s a properly sized, writable struct.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let unit = s.f_frsize as u64;
    Ok((s.f_bavail as u64 * unit, s.f_blocks as u64 * unit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_and_the_larger_applies() {
        let rule = FreeSpaceRule::parse(DEFAULT_MIN_FREE_SPACE).unwrap();
        assert_eq!(
            rule,
            FreeSpaceRule {
                min_bytes: 1 << 30,
                min_percent: 5.0
            }
        );
        assert_eq!(rule.required(10 << 30), 1 << 30);
        assert_eq!(rule.required(100 << 30), 5 << 30);
        assert_eq!(FreeSpaceRule::parse("0").unwrap().required(1 << 40), 0);
        assert_eq!(FreeSpaceRule::parse("10%").unwrap().required(1000), 100);
        assert_eq!(FreeSpaceRule::parse("500MB").unwrap().min_bytes, 500 << 20);
        assert_eq!(FreeSpaceRule::parse("2 kB").unwrap().min_bytes, 2048);
        assert_eq!(FreeSpaceRule::parse(" 7 ").unwrap().min_bytes, 7);
        for bad in [
            "",
            "5 GiB",
            "x",
            "101%",
            "-1%",
            "1GB,",
            "abc%",
            "99999999999TB",
        ] {
            let e = FreeSpaceRule::parse(bad).unwrap_err();
            assert!(
                e.message
                    .starts_with(&format!("backup_ext.min_free_space = '{bad}'")),
                "{bad}: {}",
                e.message
            );
            assert_eq!(e.hint, FREE_SPACE_HINT);
        }
    }

    #[test]
    fn shortfalls_say_how_much_is_free_and_needed() {
        let rule = FreeSpaceRule::parse("1GB, 5%").unwrap();
        assert_eq!(rule.shortfall(2 << 30, 10 << 30), None);
        assert_eq!(
            rule.shortfall(512 << 20, 10 << 30).unwrap(),
            "512.0 MB free of 10.0 GB, below backup_ext.min_free_space (1.0 GB here)"
        );
        assert_eq!(human(1023), "1023 B");
    }

    #[test]
    fn statvfs_reads_a_real_filesystem() {
        let (free, total) = free_space(Path::new("/")).unwrap();
        assert!(total > 0 && free <= total);
        assert!(free_space(Path::new("/no/such/dir")).is_err());
    }
}
