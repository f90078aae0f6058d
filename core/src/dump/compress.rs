//! Validation of pg_dump's `--compress` value against the pg_dump that will
//! actually run.
//!
//! pg_dump 15 only takes a gzip level; the `METHOD[:DETAIL]` syntax with lz4
//! and zstd arrived in 16, and a pg_dump built without a library refuses that
//! method. Which methods the configured pg_dump accepts is probed from the
//! binary itself ([`crate::process::capabilities`]); checking here, in the
//! calling backend, turns what would be a failed job minutes later into an
//! immediate error.

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

/// What the pg_dump in `bin_dir` accepts as `--compress`: its major version
/// and the methods it takes by name (none at all before 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DumpTool {
    pub major: u32,
    pub gzip: bool,
    pub lz4: bool,
    pub zstd: bool,
}

impl DumpTool {
    /// A pg_dump of `major` built with every compression library: what the version implies.
    /// The real one is probed ([`crate::process::capabilities::probe`]).
    pub fn by_version(major: u32) -> DumpTool {
        let named = major >= 16;
        DumpTool {
            major,
            gzip: named,
            lz4: named,
            zstd: named,
        }
    }

    /// Whether `--compress=<method>` is accepted by name.
    pub fn accepts(&self, method: CompressionMethod) -> bool {
        match method {
            // `none` arrived with the method syntax; gzip is its proxy.
            CompressionMethod::None | CompressionMethod::Gzip => self.gzip,
            CompressionMethod::Lz4 => self.lz4,
            CompressionMethod::Zstd => self.zstd,
        }
    }

    /// The methods accepted by name, e.g. "gzip, lz4".
    pub fn method_names(&self) -> String {
        [
            (self.gzip, "none, gzip"),
            (self.lz4, "lz4"),
            (self.zstd, "zstd"),
        ]
        .iter()
        .filter(|(ok, _)| *ok)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(", ")
    }
}

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
    pub fn from_name(name: &str) -> Option<CompressionMethod> {
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
    pub fn name(self) -> &'static str {
        match self {
            CompressionMethod::None => "none",
            CompressionMethod::Gzip => "gzip",
            CompressionMethod::Lz4 => "lz4",
            CompressionMethod::Zstd => "zstd",
        }
    }

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
    tool: DumpTool,
) -> Result<Compression, RequestError> {
    let parsed = parse_spec(spec).ok_or_else(|| {
        RequestError::invalid(
            format!("invalid compression specification {}", quoted(spec)),
            SYNTAX_HINT,
        )
    })?;

    let compressed =
        match parsed {
            Parsed::Level(level) => level != 0,
            Parsed::Method(method, _) => {
                let major = tool.major;
                if major < 16 {
                    return Err(RequestError::unsupported(
                        format!(
                            "compression specification {} needs pg_dump 16 or later, \
                         but the configured pg_dump is version {major}",
                            quoted(spec)
                        ),
                        format!(
                            "The configured pg_dump {major} takes a gzip level 0-9; lz4 and \
                         zstd need pg_dump 16 or later (backup_ext.bin_dir)."
                        ),
                    ));
                }
                if !tool.accepts(method) {
                    return Err(RequestError::unsupported(
                        format!(
                            "the configured pg_dump {major} was built without {} support \
                         (compress => {})",
                            method.name(),
                            quoted(spec)
                        ),
                        format!(
                        "This pg_dump accepts: a gzip level 0-9{}{}. Point backup_ext.bin_dir at \
                         a pg_dump built with {}, or choose another method.",
                        if tool.method_names().is_empty() { "" } else { ", " },
                        tool.method_names(),
                        method.name()
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
        validate_compress(spec, format, DumpTool::by_version(major)).unwrap()
    }

    fn err(spec: &str, format: Format, major: u32) -> RequestError {
        validate_compress(spec, format, DumpTool::by_version(major)).unwrap_err()
    }

    #[test]
    fn a_method_the_binary_lacks_is_refused_with_what_it_has() {
        let no_zstd = DumpTool {
            zstd: false,
            ..DumpTool::by_version(18)
        };
        let e = validate_compress("zstd:3", Format::Custom, no_zstd).unwrap_err();
        assert_eq!(e.kind, ErrorKind::FeatureNotSupported);
        assert_eq!(
            e.message,
            "the configured pg_dump 18 was built without zstd support (compress => \"zstd:3\")"
        );
        assert_eq!(
            e.hint,
            "This pg_dump accepts: a gzip level 0-9, none, gzip, lz4. Point backup_ext.bin_dir \
             at a pg_dump built with zstd, or choose another method."
        );
        assert!(validate_compress("lz4", Format::Custom, no_zstd).is_ok());
        assert!(validate_compress("6", Format::Custom, no_zstd).is_ok());
        let bare = DumpTool {
            major: 16,
            ..DumpTool::default()
        };
        let e = validate_compress("gzip:5", Format::Custom, bare).unwrap_err();
        assert_eq!(
            e.hint,
            "This pg_dump accepts: a gzip level 0-9. Point backup_ext.bin_dir at a pg_dump \
             built with gzip, or choose another method."
        );
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
