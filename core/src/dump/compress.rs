//! Validation of pg_dump's `--compress` value against the pg_dump that will
//! actually run.
//!
//! pg_dump 15 only takes a gzip level; the `METHOD[:DETAIL]` syntax with lz4
//! and zstd arrived in 16. Checking here, in the calling backend, turns what
//! would be a failed job minutes later into an immediate error.

use crate::error::{quoted, RequestError};
use crate::format::Format;
use serde::{Deserialize, Serialize};

/// A compression spec that pg_dump in `bin_dir` will accept, passed through
/// verbatim as `--compress=<spec>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compression {
    pub spec: String,
    /// False for level 0 and `none`: the output is then not compressed and
    /// e.g. plain output keeps its `.sql` name.
    pub compressed: bool,
}

/// First pg_dump major version with the `METHOD[:DETAIL]` syntax.
const METHOD_SYNTAX_MAJOR: u32 = 16;

const SYNTAX_HINT: &str =
    "The compress argument takes a gzip level 0-9; with pg_dump 16 or later also none, \
     gzip[:1-9], lz4[:1-12], zstd[:1-22] or METHOD:level=N.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionMethod {
    None,
    Gzip,
    Lz4,
    Zstd,
}

impl CompressionMethod {
    fn from_name(name: &str) -> Option<CompressionMethod> {
        match name {
            "none" => Some(CompressionMethod::None),
            "gzip" => Some(CompressionMethod::Gzip),
            "lz4" => Some(CompressionMethod::Lz4),
            "zstd" => Some(CompressionMethod::Zstd),
            _ => None,
        }
    }

    fn level_range(self) -> Option<(u32, u32)> {
        match self {
            CompressionMethod::None => None,
            CompressionMethod::Gzip => Some((1, 9)),
            CompressionMethod::Lz4 => Some((1, 12)),
            CompressionMethod::Zstd => Some((1, 22)),
        }
    }

    /// File name ending of a compressed plain-format dump.
    pub fn plain_suffix(self) -> &'static str {
        match self {
            CompressionMethod::None => ".sql",
            CompressionMethod::Gzip => ".sql.gz",
            CompressionMethod::Lz4 => ".sql.lz4",
            CompressionMethod::Zstd => ".sql.zst",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parsed {
    /// A bare digit, understood by every pg_dump version as a gzip level.
    Level(u32),
    Method(CompressionMethod, Option<u32>),
}

/// Strict decimal: no sign, no whitespace, no leading zeros, so that one
/// level has exactly one spelling.
fn parse_level(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 2 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if s.len() > 1 && s.starts_with('0') {
        return None;
    }
    s.parse().ok()
}

fn parse_spec(spec: &str) -> Option<Parsed> {
    if spec.len() == 1 && spec.as_bytes()[0].is_ascii_digit() {
        return parse_level(spec).map(Parsed::Level);
    }
    let (name, detail) = match spec.split_once(':') {
        Some((n, d)) => (n, Some(d)),
        None => (spec, None),
    };
    let method = CompressionMethod::from_name(name)?;
    let level = match detail {
        None => None,
        Some(d) => {
            let digits = d.strip_prefix("level=").unwrap_or(d);
            let level = parse_level(digits)?;
            let (lo, hi) = method.level_range()?;
            if !(lo..=hi).contains(&level) {
                return None;
            }
            Some(level)
        }
    };
    Some(Parsed::Method(method, level))
}

impl Compression {
    /// Which algorithm the spec selects; a bare digit means gzip.
    pub fn method(&self) -> CompressionMethod {
        match parse_spec(&self.spec) {
            Some(Parsed::Level(0)) | None => CompressionMethod::None,
            Some(Parsed::Level(_)) => CompressionMethod::Gzip,
            Some(Parsed::Method(m, _)) => m,
        }
    }
}

pub fn validate_compress(
    spec: &str,
    format: Format,
    tool_major: u32,
) -> Result<Compression, RequestError> {
    let parsed = parse_spec(spec).ok_or_else(|| {
        RequestError::invalid(
            format!("invalid compression specification {}", quoted(spec)),
            SYNTAX_HINT,
        )
    })?;

    let compressed = match parsed {
        Parsed::Level(level) => level != 0,
        Parsed::Method(method, _) => {
            if tool_major < METHOD_SYNTAX_MAJOR {
                return Err(RequestError::unsupported(
                    format!(
                        "compression specification {} needs pg_dump 16 or later, \
                         but the configured pg_dump is version {tool_major}",
                        quoted(spec)
                    ),
                    format!(
                        "The configured pg_dump {tool_major} takes a gzip level 0-9; lz4 and \
                         zstd need pg_dump 16 or later (backup_ext.bin_dir)."
                    ),
                ));
            }
            method != CompressionMethod::None
        }
    };

    if compressed && format == Format::Tar {
        return Err(RequestError::unsupported(
            format!(
                "the tar format cannot be compressed by pg_dump (compress => {})",
                quoted(spec)
            ),
            "Use format => 'custom' or 'directory' for compressed archives, \
             or omit compress for tar.",
        ));
    }

    Ok(Compression {
        spec: spec.to_string(),
        compressed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn ok(spec: &str, format: Format, major: u32) -> Compression {
        validate_compress(spec, format, major).unwrap()
    }

    fn err(spec: &str, format: Format, major: u32) -> RequestError {
        validate_compress(spec, format, major).unwrap_err()
    }

    #[test]
    fn bare_levels_work_everywhere() {
        for major in [15, 16, 17] {
            for d in 0..=9 {
                let s = d.to_string();
                let c = ok(&s, Format::Custom, major);
                assert_eq!(c.spec, s);
                assert_eq!(c.compressed, d != 0);
            }
        }
    }

    #[test]
    fn level_zero_is_uncompressed() {
        let c = ok("0", Format::Plain, 15);
        assert!(!c.compressed);
        assert_eq!(c.method(), CompressionMethod::None);
        assert_eq!(ok("6", Format::Plain, 15).method(), CompressionMethod::Gzip);
    }

    #[test]
    fn method_syntax_on_16() {
        let cases = [
            ("gzip", true, CompressionMethod::Gzip),
            ("gzip:1", true, CompressionMethod::Gzip),
            ("gzip:9", true, CompressionMethod::Gzip),
            ("gzip:level=4", true, CompressionMethod::Gzip),
            ("lz4", true, CompressionMethod::Lz4),
            ("lz4:12", true, CompressionMethod::Lz4),
            ("zstd", true, CompressionMethod::Zstd),
            ("zstd:22", true, CompressionMethod::Zstd),
            ("zstd:level=3", true, CompressionMethod::Zstd),
            ("none", false, CompressionMethod::None),
        ];
        for (spec, compressed, method) in cases {
            for major in [16, 17] {
                let c = ok(spec, Format::Directory, major);
                assert_eq!(c.compressed, compressed, "{spec}");
                assert_eq!(c.method(), method, "{spec}");
            }
        }
    }

    #[test]
    fn method_syntax_refused_on_15() {
        for spec in [
            "gzip",
            "gzip:5",
            "lz4",
            "lz4:3",
            "zstd",
            "zstd:19",
            "none",
            "gzip:level=5",
        ] {
            let e = err(spec, Format::Custom, 15);
            assert_eq!(e.kind, ErrorKind::FeatureNotSupported, "{spec}");
            assert!(e.message.contains(&format!("{spec:?}")), "{}", e.message);
            assert!(e.message.contains("version 15"), "{}", e.message);
            assert_eq!(
                e.hint,
                "The configured pg_dump 15 takes a gzip level 0-9; lz4 and zstd need pg_dump 16 \
                 or later (backup_ext.bin_dir)."
            );
        }
    }

    #[test]
    fn garbage_is_invalid_on_every_version() {
        let bad = [
            "",
            " 5",
            "5 ",
            "fast",
            "10",
            "-1",
            "+5",
            "00",
            "gzip:99",
            "gzip:0",
            "gzip:",
            "gzip:10",
            "lz4:13",
            "zstd:23",
            "zstd:0",
            "none:1",
            "GZIP",
            "brotli",
            "gzip:level=",
            "gzip:level=x",
            "gzip:fast",
            ":5",
            "5:gzip",
        ];
        for spec in bad {
            for major in [15, 16] {
                let e = err(spec, Format::Custom, major);
                assert_eq!(e.kind, ErrorKind::InvalidParameter, "{spec:?} on {major}");
                assert!(e.message.contains(&format!("{spec:?}")), "{}", e.message);
                assert!(e.hint.contains("gzip level 0-9"));
                assert!(e.hint.contains("zstd[:1-22]"));
            }
        }
    }

    #[test]
    fn tar_cannot_be_compressed() {
        for (spec, major) in [("5", 15), ("gzip", 16), ("zstd:3", 17)] {
            let e = err(spec, Format::Tar, major);
            assert_eq!(e.kind, ErrorKind::FeatureNotSupported);
            assert!(e
                .message
                .contains("the tar format cannot be compressed by pg_dump"));
            assert!(e.hint.contains("custom") && e.hint.contains("directory"));
        }
        assert!(!ok("0", Format::Tar, 15).compressed);
        assert!(!ok("none", Format::Tar, 16).compressed);
    }

    #[test]
    fn plain_and_archives_accept_compression() {
        assert!(ok("5", Format::Plain, 15).compressed);
        assert!(ok("9", Format::Custom, 15).compressed);
        assert!(ok("1", Format::Directory, 15).compressed);
        assert!(ok("lz4", Format::Plain, 16).compressed);
    }

    #[test]
    fn plain_suffix_follows_method() {
        assert_eq!(CompressionMethod::Gzip.plain_suffix(), ".sql.gz");
        assert_eq!(CompressionMethod::Lz4.plain_suffix(), ".sql.lz4");
        assert_eq!(CompressionMethod::Zstd.plain_suffix(), ".sql.zst");
        assert_eq!(CompressionMethod::None.plain_suffix(), ".sql");
    }
}
