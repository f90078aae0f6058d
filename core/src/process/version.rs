//! Version of the client tools in `bin_dir`, from their `--version` output.
//!
//! The tool version, not the server version, decides which options are
//! understood (e.g. the compression syntax of pg_dump 16).

/// Parses e.g. `pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)` into
/// `(15, <the line>)`. Pre-release versions like `16beta1` count as their
/// major version. Returns None when no line looks like a PostgreSQL tool
/// version, so the caller can report the raw output.
pub fn parse_tool_version(output: &str) -> Option<(u32, String)> {
    output.lines().find_map(|line| {
        let line = line.trim();
        let (_, rest) = line.split_once("(PostgreSQL) ")?;
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        let major: u32 = digits.parse().ok()?;
        // Before 10 the major version had two parts (9.6); those tools are
        // far too old for this extension and are reported as unparsable.
        if major < 10 {
            return None;
        }
        Some((major, line.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_build() {
        assert_eq!(
            parse_tool_version("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"),
            Some((
                15,
                "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)".to_string()
            ))
        );
    }

    #[test]
    fn plain_and_prerelease() {
        assert_eq!(
            parse_tool_version("pg_dump (PostgreSQL) 17.2"),
            Some((17, "pg_dump (PostgreSQL) 17.2".to_string()))
        );
        assert_eq!(
            parse_tool_version("pg_dump (PostgreSQL) 16beta1\n").map(|v| v.0),
            Some(16)
        );
        assert_eq!(
            parse_tool_version("pg_dumpall (PostgreSQL) 18devel").map(|v| v.0),
            Some(18)
        );
    }

    #[test]
    fn junk() {
        assert_eq!(parse_tool_version(""), None);
        assert_eq!(parse_tool_version("bash: pg_dump: not found"), None);
        assert_eq!(parse_tool_version("pg_dump (PostgreSQL) x.1"), None);
        assert_eq!(parse_tool_version("pg_dump (PostgreSQL) 9.6.24"), None);
    }

    #[test]
    fn skips_leading_noise() {
        let out = "warning: something\n  pg_dump (PostgreSQL) 16.4  \n";
        assert_eq!(
            parse_tool_version(out),
            Some((16, "pg_dump (PostgreSQL) 16.4".to_string()))
        );
    }
}
