//! Parser for `pg_restore --list` output, used to describe what a finished
//! archive contains.
//!
//! pg_restore prints each entry as
//! `"%d; %u %u %s %s %s %s"` = dump id; catalog table oid, oid, kind,
//! schema (or `-`), name, owner. None of the fields are quoted, so kinds,
//! schema names and names containing spaces make the line ambiguous. Kinds
//! are resolved with the list of kinds pg_dump emits, and schema names with
//! the `SCHEMA` entries of the same listing, which name every dumped schema.
//! The owner is taken as the last word; an owner role whose name contains a
//! space is therefore split wrongly, which only affects the owner and name.

use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TocEntry {
    pub toc_id: i64,
    pub kind: String,
    /// None for objects outside any schema (pg_restore prints `-`).
    pub schema: Option<String>,
    pub name: String,
    /// None when pg_restore prints `-` or nothing (e.g. `BLOBS`).
    pub owner: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected line {line_no} in pg_restore --list output: {line:?}")]
pub struct TocParseError {
    pub line_no: usize,
    pub line: String,
}

pub const KNOWN_KINDS: &[&str] = &[
    "ACCESS METHOD",
    "ACL",
    "AGGREGATE",
    "BLOB",
    "BLOB METADATA",
    "BLOBS",
    "CAST",
    "CHECK CONSTRAINT",
    "COLLATION",
    "COMMENT",
    "CONSTRAINT",
    "CONVERSION",
    "DATABASE",
    "DATABASE PROPERTIES",
    "DEFAULT",
    "DEFAULT ACL",
    "DOMAIN",
    "ENCODING",
    "EVENT TRIGGER",
    "EXTENSION",
    "FK CONSTRAINT",
    "FOREIGN DATA WRAPPER",
    "FOREIGN TABLE",
    "FUNCTION",
    "INDEX",
    "INDEX ATTACH",
    "LARGE OBJECT",
    "LARGE OBJECTS",
    "MATERIALIZED VIEW",
    "MATERIALIZED VIEW DATA",
    "OPERATOR",
    "OPERATOR CLASS",
    "OPERATOR FAMILY",
    "POLICY",
    "PROCEDURAL LANGUAGE",
    "PROCEDURE",
    "PUBLICATION",
    "PUBLICATION TABLE",
    "PUBLICATION TABLES IN SCHEMA",
    "ROW SECURITY",
    "RULE",
    "SCHEMA",
    "SEARCHPATH",
    "SECURITY LABEL",
    "SEQUENCE",
    "SEQUENCE OWNED BY",
    "SEQUENCE SET",
    "SERVER",
    "SHELL TYPE",
    "STATISTICS",
    "STATISTICS DATA",
    "STDSTRINGS",
    "SUBSCRIPTION",
    "SUBSCRIPTION TABLE",
    "TABLE",
    "TABLE ATTACH",
    "TABLE DATA",
    "TEXT SEARCH CONFIGURATION",
    "TEXT SEARCH DICTIONARY",
    "TEXT SEARCH PARSER",
    "TEXT SEARCH TEMPLATE",
    "TRANSFORM",
    "TRIGGER",
    "TYPE",
    "USER MAPPING",
    "VIEW",
];

/// The longest entry of `candidates` that is followed by a space in `s`.
fn longest_prefix<'a>(s: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .filter(|c| {
            s.strip_prefix(*c)
                .is_some_and(|after| after.starts_with(' '))
        })
        .max_by_key(|c| c.len())
}

/// `dump id`, and the text after the two catalog oids.
fn split_header(line: &str) -> Option<(i64, &str)> {
    let (id, rest) = line.split_once("; ")?;
    let toc_id = id.trim().parse().ok()?;
    let (tableoid, rest) = rest.split_once(' ')?;
    let (oid, rest) = rest.split_once(' ')?;
    tableoid.parse::<u32>().ok()?;
    oid.parse::<u32>().ok()?;
    Some((toc_id, rest))
}

fn split_kind(rest: &str) -> Option<(&str, &str)> {
    match longest_prefix(rest, KNOWN_KINDS.iter().copied()) {
        Some(kind) => Some((kind, &rest[kind.len() + 1..])),
        // A kind from a newer pg_dump: assume it is a single word.
        None => rest.split_once(' '),
    }
}

fn none_if_dash(s: &str) -> Option<String> {
    if s.is_empty() || s == "-" {
        None
    } else {
        Some(s.to_string())
    }
}

fn is_entry_line(line: &str) -> bool {
    !(line.trim().is_empty() || line.trim_start().starts_with(';'))
}

pub fn parse_toc(listing: &str) -> Result<Vec<TocEntry>, TocParseError> {
    // First pass: the SCHEMA entries tell which schema names exist, so that
    // a schema name with spaces can be told apart from the object name.
    let mut schemas: BTreeSet<String> = BTreeSet::new();
    for line in listing.lines().filter(|l| is_entry_line(l)) {
        if let Some((_, rest)) = split_header(line) {
            if let Some(("SCHEMA", after)) = split_kind(rest) {
                if let Some((middle, _owner)) = after.rsplit_once(' ') {
                    if let Some(name) = middle.strip_prefix("- ") {
                        schemas.insert(name.to_string());
                    }
                }
            }
        }
    }

    let mut entries = Vec::new();
    for (idx, line) in listing.lines().enumerate() {
        if !is_entry_line(line) {
            continue;
        }
        let error = || TocParseError {
            line_no: idx + 1,
            line: line.to_string(),
        };
        let (toc_id, rest) = split_header(line).ok_or_else(error)?;
        let (kind, after_kind) = split_kind(rest).ok_or_else(error)?;
        let (middle, owner) = after_kind.rsplit_once(' ').ok_or_else(error)?;
        let (schema, name) = if let Some(name) = middle.strip_prefix("- ") {
            (None, name)
        } else if let Some(s) = longest_prefix(middle, schemas.iter().map(String::as_str)) {
            (Some(s.to_string()), &middle[s.len() + 1..])
        } else {
            let (s, n) = middle.split_once(' ').ok_or_else(error)?;
            (none_if_dash(s), n)
        };
        entries.push(TocEntry {
            toc_id,
            kind: kind.to_string(),
            schema,
            name: name.to_string(),
            owner: none_if_dash(owner),
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(id: i64, kind: &str, schema: Option<&str>, name: &str, owner: Option<&str>) -> TocEntry {
        TocEntry {
            toc_id: id,
            kind: kind.into(),
            schema: schema.map(Into::into),
            name: name.into(),
            owner: owner.map(Into::into),
        }
    }

    /// Real output of pg_restore 15 for a database with awkward names.
    const LISTING: &str = ";
; Archive created at 2026-11-24 00:45:02 UTC
;     dbname: x=y it's
;     TOC Entries: 22
;     Format: CUSTOM
;
; Selected TOC Entries:
;
6; 2615 16385 SCHEMA - My Schema postgres
220; 1255 16406 FUNCTION public f(integer, text) postgres
215; 1259 16386 TABLE My Schema my table ü postgres
219; 1259 16402 MATERIALIZED VIEW public mv postgres
217; 1259 16397 SEQUENCE public s1 postgres
218; 1259 16398 VIEW public v1 postgres
216; 1259 16393 TABLE public we\"ird postgres
3371; 0 0 COMMENT public TABLE \"we\"\"ird\" postgres
3372; 0 0 ACL public TABLE \"we\"\"ird\" postgres
3363; 2613 16413 BLOB - 16413 postgres
3359; 0 16386 TABLE DATA My Schema my table ü postgres
3360; 0 16393 TABLE DATA public we\"ird postgres
3373; 0 0 SEQUENCE SET public s1 postgres
3364; 0 0 BLOBS - BLOBS 
3212; 2606 16392 CONSTRAINT My Schema my table ü my table ü_pkey postgres
3213; 1259 16396 INDEX public idx with space postgres
3214; 2606 16407 FK CONSTRAINT public we\"ird fk postgres
3362; 0 16402 MATERIALIZED VIEW DATA public mv postgres
";

    #[test]
    fn parses_real_listing() {
        let entries = parse_toc(LISTING).unwrap();
        let p = Some("postgres");
        let ms = Some("My Schema");
        let public = Some("public");
        assert_eq!(
            entries,
            vec![
                e(6, "SCHEMA", None, "My Schema", p),
                e(220, "FUNCTION", public, "f(integer, text)", p),
                e(215, "TABLE", ms, "my table ü", p),
                e(219, "MATERIALIZED VIEW", public, "mv", p),
                e(217, "SEQUENCE", public, "s1", p),
                e(218, "VIEW", public, "v1", p),
                e(216, "TABLE", public, "we\"ird", p),
                e(3371, "COMMENT", public, "TABLE \"we\"\"ird\"", p),
                e(3372, "ACL", public, "TABLE \"we\"\"ird\"", p),
                e(3363, "BLOB", None, "16413", p),
                e(3359, "TABLE DATA", ms, "my table ü", p),
                e(3360, "TABLE DATA", public, "we\"ird", p),
                e(3373, "SEQUENCE SET", public, "s1", p),
                e(3364, "BLOBS", None, "BLOBS", None),
                e(3212, "CONSTRAINT", ms, "my table ü my table ü_pkey", p),
                e(3213, "INDEX", public, "idx with space", p),
                e(3214, "FK CONSTRAINT", public, "we\"ird fk", p),
                e(3362, "MATERIALIZED VIEW DATA", public, "mv", p),
            ]
        );
    }

    #[test]
    fn schema_entries_may_come_after_their_objects() {
        let listing = "215; 1259 16386 TABLE a b t postgres\n6; 2615 16385 SCHEMA - a b postgres\n";
        let entries = parse_toc(listing).unwrap();
        assert_eq!(
            entries[0],
            e(215, "TABLE", Some("a b"), "t", Some("postgres"))
        );
    }

    #[test]
    fn unknown_schema_falls_back_to_first_word() {
        // pg_dump --table without the schema: no SCHEMA entry in the list.
        let entries = parse_toc("215; 1259 16386 TABLE app orders alice\n").unwrap();
        assert_eq!(
            entries[0],
            e(215, "TABLE", Some("app"), "orders", Some("alice"))
        );
    }

    #[test]
    fn unknown_kind_is_one_word() {
        let entries = parse_toc("9; 1 2 NEWTHING public x bob\n").unwrap();
        assert_eq!(
            entries[0],
            e(9, "NEWTHING", Some("public"), "x", Some("bob"))
        );
    }

    #[test]
    fn dash_owner_and_database_entries() {
        let listing = "\
3375; 0 0 ENCODING - ENCODING \n\
3376; 0 0 STDSTRINGS - STDSTRINGS \n\
3377; 0 0 SEARCHPATH - SEARCHPATH \n\
3378; 1262 16384 DATABASE - app postgres\n\
2; 3079 16400 EXTENSION - pgcrypto -\n\
4; 0 0 COMMENT - EXTENSION pgcrypto \n";
        let entries = parse_toc(listing).unwrap();
        assert_eq!(entries[0], e(3375, "ENCODING", None, "ENCODING", None));
        assert_eq!(entries[1].kind, "STDSTRINGS");
        assert_eq!(entries[2].kind, "SEARCHPATH");
        assert_eq!(
            entries[3],
            e(3378, "DATABASE", None, "app", Some("postgres"))
        );
        assert_eq!(entries[4], e(2, "EXTENSION", None, "pgcrypto", None));
        assert_eq!(
            entries[5],
            e(4, "COMMENT", None, "EXTENSION pgcrypto", None)
        );
    }

    #[test]
    fn multi_word_kinds_prefer_longest() {
        let listing = "\
1; 0 0 SEQUENCE OWNED BY public s1 postgres\n\
2; 0 0 DEFAULT ACL - DEFAULT PRIVILEGES FOR TABLES postgres\n\
3; 0 0 TEXT SEARCH CONFIGURATION public cfg postgres\n\
4; 0 0 FOREIGN DATA WRAPPER - fdw postgres\n\
5; 0 0 PUBLICATION TABLE public pub t postgres\n\
6; 0 0 INDEX ATTACH public idx_p1 postgres\n\
7; 0 0 ROW SECURITY public t postgres\n\
8; 0 0 CHECK CONSTRAINT public d c postgres\n\
9; 0 0 USER MAPPING - USER MAPPING bob SERVER s postgres\n";
        let kinds: Vec<String> = parse_toc(listing)
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(
            kinds,
            vec![
                "SEQUENCE OWNED BY",
                "DEFAULT ACL",
                "TEXT SEARCH CONFIGURATION",
                "FOREIGN DATA WRAPPER",
                "PUBLICATION TABLE",
                "INDEX ATTACH",
                "ROW SECURITY",
                "CHECK CONSTRAINT",
                "USER MAPPING",
            ]
        );
    }

    #[test]
    fn commented_out_entries_are_skipped() {
        let entries = parse_toc(";215; 1259 16386 TABLE public t postgres\n\n   \n").unwrap();
        assert!(entries.is_empty());
    }

    #[test]
    fn garbage_is_an_error_with_line_number() {
        let err = parse_toc(";\n215 1259 TABLE\n").unwrap_err();
        assert_eq!(err.line_no, 2);
        assert_eq!(err.line, "215 1259 TABLE");
        assert!(parse_toc("x; 1 2 TABLE public t o\n").is_err());
        assert!(parse_toc("1; 1 2 TABLE\n").is_err());
    }
}
