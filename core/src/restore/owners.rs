//! Whose data a backup holds. A backup is written with the rights of the role the tools
//! connect as (a superuser), so it can hold rows its requester could never read; a role that
//! is not a superuser may restore (or test-restore) it only when it already has the rights of
//! every role owning data in it. This module finds those owners; the caller checks them.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};

use crate::restore::toc::TocEntry;

/// Entry kinds that carry rows or values (large objects are owned through their `BLOB` /
/// `LARGE OBJECT` entries; the `BLOBS` data entry itself has no owner).
const DATA_KINDS: [&str; 5] = [
    "TABLE DATA",
    "SEQUENCE SET",
    "MATERIALIZED VIEW DATA",
    "BLOB",
    "LARGE OBJECT",
];

/// The owners of data in an archive's table of contents. `None` stands for data whose owner
/// the archive does not say.
pub fn archive_data_owners(entries: &[TocEntry]) -> BTreeSet<Option<String>> {
    entries
        .iter()
        .filter(|e| DATA_KINDS.contains(&e.kind.as_str()))
        .map(|e| e.owner.clone())
        .collect()
}

/// The same for a plain script, from pg_dump's header comments
/// (`-- Data for Name: t; Type: TABLE DATA; Schema: public; Owner: alice`); a script dumped
/// without owners says `Owner: -`, which comes back as `None`. Reads the whole script: a
/// forged comment inside table data can only add an owner, never hide one.
pub fn plain_data_owners(script: impl Read) -> std::io::Result<BTreeSet<Option<String>>> {
    let mut owners = BTreeSet::new();
    let mut reader = BufReader::new(script);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(owners);
        }
        if !line.starts_with(b"-- ") {
            continue;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        let Some((head, owner)) = text.rsplit_once("; Owner: ") else {
            continue;
        };
        let Some(kind) = head
            .split("; ")
            .find_map(|part| part.strip_prefix("Type: "))
        else {
            continue;
        };
        if DATA_KINDS.contains(&kind) {
            owners.insert((owner != "-").then(|| owner.to_string()));
        }
    }
}

/// Lines of a plain script's head searched for `\restrict`.
const RESTRICT_HEAD_LINES: usize = 64;

/// Whether a plain script starts by turning psql's backslash commands off (`\restrict KEY`,
/// written by pg_dump since 15.14, 16.10, 17.6): a script without it could run `\!` shell
/// commands as the server's OS user when psql replays it.
pub fn script_is_restricted(script: impl Read) -> std::io::Result<bool> {
    let reader = BufReader::new(script);
    for line in reader.split(b'\n').take(RESTRICT_HEAD_LINES) {
        if line?.starts_with(b"\\restrict ") {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: &str, owner: Option<&str>) -> TocEntry {
        TocEntry {
            toc_id: 1,
            kind: kind.into(),
            schema: Some("public".into()),
            name: "x".into(),
            owner: owner.map(str::to_string),
        }
    }

    #[test]
    fn archive_owners_of_data_only() {
        let entries = [
            entry("SCHEMA", Some("postgres")),
            entry("TABLE", Some("postgres")),
            entry("TABLE DATA", Some("alice")),
            entry("SEQUENCE SET", Some("bob")),
            entry("BLOB", Some("carol")),
            entry("BLOBS", None),
            entry("FUNCTION", Some("postgres")),
        ];
        let owners: Vec<Option<String>> = archive_data_owners(&entries).into_iter().collect();
        assert_eq!(
            owners,
            [
                Some("alice".into()),
                Some("bob".into()),
                Some("carol".into())
            ]
        );
        assert_eq!(
            archive_data_owners(&[entry("TABLE DATA", None)])
                .into_iter()
                .collect::<Vec<_>>(),
            [None]
        );
    }

    #[test]
    fn restricted_scripts() {
        let head = "--\n-- PostgreSQL database dump\n--\n\n\\restrict abc123\n\nSET x = 1;\n";
        assert!(script_is_restricted(head.as_bytes()).unwrap());
        assert!(!script_is_restricted("SET x = 1;\n\\! id\n".as_bytes()).unwrap());
        let late = format!("{}\\restrict k\n", "SET x = 1;\n".repeat(100));
        assert!(!script_is_restricted(late.as_bytes()).unwrap());
    }

    #[test]
    fn plain_owners_from_headers() {
        let script = "\
--\n-- Name: t; Type: TABLE; Schema: public; Owner: postgres\n--\n\nCREATE TABLE public.t (a text);\n\
--\n-- Data for Name: t; Type: TABLE DATA; Schema: public; Owner: alice\n--\n\n\
COPY public.t (a) FROM stdin;\n-- Data for Name: x; Type: TABLE DATA; Schema: public; Owner: mallory\n\\.\n\n\
--\n-- Name: s; Type: SEQUENCE SET; Schema: public; Owner: bob\n--\n\n\
--\n-- Data for Name: BLOBS; Type: BLOBS; Schema: -; Owner: -\n--\n";
        let owners: Vec<Option<String>> = plain_data_owners(script.as_bytes())
            .unwrap()
            .into_iter()
            .collect();
        // The forged line inside COPY data adds mallory; it cannot remove alice.
        assert_eq!(
            owners,
            [
                Some("alice".into()),
                Some("bob".into()),
                Some("mallory".into())
            ]
        );
        let no_owner = "-- Data for Name: t; Type: TABLE DATA; Schema: public; Owner: -\n";
        assert_eq!(
            plain_data_owners(no_owner.as_bytes())
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            [None]
        );
    }
}
