//! libpq connection strings for the child tools.
//!
//! Database names are passed inside a conninfo string instead of as a bare
//! `--dbname=NAME`, because a bare name containing `=` would itself be parsed
//! as a connection string by libpq.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// The server's unix socket directory; connecting over the socket keeps
    /// authentication local (peer/trust) without a password in the child's
    /// environment.
    pub socket_dir: PathBuf,
    pub port: u16,
    pub user: String,
    /// Lets a DBA spot the dump's session in pg_stat_activity.
    pub application_name: String,
}

/// Quotes one conninfo value: libpq reads single-quoted values with `\`
/// escaping the next character, so only `\` and `'` need escaping.
pub fn quote_conninfo_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\\' || c == '\'' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// Server options for every tool session: names resolve in `pg_catalog` only.
pub const SAFE_SEARCH_PATH_OPTION: &str = "-c search_path=pg_catalog,pg_temp";

impl Connection {
    /// For sessions that run the extension's own queries in a user's database: names resolve
    /// in `pg_catalog` only. (Not for pg_dump: its unqualified `-t` patterns follow the
    /// session's search_path.)
    pub fn query_conninfo(&self, dbname: &str) -> String {
        format!(
            "{} options={}",
            self.conninfo(dbname),
            quote_conninfo_value(SAFE_SEARCH_PATH_OPTION)
        )
    }

    pub fn conninfo(&self, dbname: &str) -> String {
        let host = self.socket_dir.to_string_lossy();
        let port = self.port.to_string();
        let pairs = [
            ("host", host.as_ref()),
            ("port", port.as_str()),
            ("user", self.user.as_str()),
            ("dbname", dbname),
            ("application_name", self.application_name.as_str()),
        ];
        pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", quote_conninfo_value(v)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        Connection {
            socket_dir: PathBuf::from("/var/run/postgresql"),
            port: 5432,
            user: "postgres".into(),
            application_name: "backup_ext job 42".into(),
        }
    }

    /// A small re-implementation of libpq's conninfo value parser, so the
    /// tests check that quoting round-trips rather than a fixed spelling.
    fn parse(conninfo: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut chars = conninfo.chars().peekable();
        loop {
            while chars.peek() == Some(&' ') {
                chars.next();
            }
            if chars.peek().is_none() {
                break;
            }
            let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
            assert_eq!(chars.next(), Some('\''), "value of {key} not quoted");
            let mut val = String::new();
            loop {
                match chars.next() {
                    Some('\\') => val.push(chars.next().unwrap()),
                    Some('\'') => break,
                    Some(c) => val.push(c),
                    None => panic!("unterminated value"),
                }
            }
            out.push((key, val));
        }
        out
    }

    #[test]
    fn plain_values() {
        assert_eq!(
            conn().conninfo("app"),
            "host='/var/run/postgresql' port='5432' user='postgres' dbname='app' \
             application_name='backup_ext job 42'"
        );
    }

    #[test]
    fn escaping() {
        assert_eq!(quote_conninfo_value("it's"), r"'it\'s'");
        assert_eq!(quote_conninfo_value(r"back\slash"), r"'back\\slash'");
        assert_eq!(quote_conninfo_value(""), "''");
    }

    #[test]
    fn hostile_names_round_trip() {
        for name in [
            "a b",
            "it's",
            "x=y",
            r"back\slash",
            "ünï",
            "'",
            "\\",
            "' host='evil",
            "dbname=other",
            "",
        ] {
            let ci = conn().conninfo(name);
            let parsed = parse(&ci);
            assert_eq!(parsed.len(), 5, "{ci}");
            assert_eq!(parsed[3], ("dbname".to_string(), name.to_string()), "{ci}");
            assert_eq!(parsed[0].1, "/var/run/postgresql");
            assert_eq!(parsed[4].1, "backup_ext job 42");
            let with_options = parse(&conn().query_conninfo(name));
            assert_eq!(with_options[..5], parsed[..]);
            assert_eq!(with_options[5].1, SAFE_SEARCH_PATH_OPTION);
        }
    }

    #[test]
    fn hostile_user_and_socket_dir() {
        let c = Connection {
            socket_dir: PathBuf::from("/tmp/with space's"),
            port: 6543,
            user: r"we\ird'user".into(),
            application_name: "x".into(),
        };
        let parsed = parse(&c.conninfo("d"));
        assert_eq!(parsed[0].1, "/tmp/with space's");
        assert_eq!(parsed[1].1, "6543");
        assert_eq!(parsed[2].1, r"we\ird'user");
    }
}
