//! The entries of a plain-format script, for restoring one of its tables.
//!
//! pg_dump writes the same entries into a plain script as into an archive, each after a header
//! comment (`-- Name: orders; Type: TABLE; Schema: public; Owner: app`, and for rows `-- Data
//! for Name: ...`). Read once through, the script gives the entries (as `pg_restore --list`
//! would) and the text of each, with the rows of its `COPY` blocks left out: what
//! [`crate::restore::table::table_definition`] needs from a plain backup, in memory the size of
//! the schema, not of the data.

use std::io::{self, BufRead, BufReader, Read};

use crate::files::plain::without_server_attribute_option;
use crate::restore::toc::TocEntry;

/// A plain script's entries and their statements (see the module's comment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScriptEntries {
    /// In the script's order; `toc_id` is the position, from 1.
    pub entries: Vec<TocEntry>,
    /// The settings block before the first entry.
    preamble: String,
    /// The text of each entry, by position (`toc_id - 1`).
    texts: Vec<String>,
}

/// The entry a header comment line names, if it is one.
fn header_entry(line: &str) -> Option<(String, String, Option<String>, Option<String>)> {
    let rest = line
        .strip_prefix("-- Name: ")
        .or_else(|| line.strip_prefix("-- Data for Name: "))?;
    let (name, rest) = rest.split_once("; Type: ")?;
    let (kind, rest) = rest.split_once("; Schema: ")?;
    let (schema, rest) = rest.split_once("; Owner: ")?;
    let owner = rest.split("; Tablespace:").next().unwrap_or_default();
    let dash = |s: &str| (!s.is_empty() && s != "-").then(|| s.to_string());
    Some((
        name.to_string(),
        kind.to_string(),
        dash(schema),
        dash(owner),
    ))
}

/// Reads a whole plain script (already decompressed).
pub fn read_script_entries(script: impl Read) -> io::Result<ScriptEntries> {
    let mut out = ScriptEntries::default();
    let mut reader = BufReader::new(script);
    let mut raw = Vec::new();
    let mut in_copy = false;
    loop {
        raw.clear();
        if reader.read_until(b'\n', &mut raw)? == 0 {
            return Ok(out);
        }
        if in_copy {
            in_copy = !(raw == b"\\.\n" || raw == b"\\.");
            continue;
        }
        let line = String::from_utf8_lossy(&raw);
        if line.starts_with("COPY ") && line.trim_end().ends_with(" FROM stdin;") {
            in_copy = true;
            continue;
        }
        if let Some((name, kind, schema, owner)) = header_entry(line.trim_end()) {
            out.entries.push(TocEntry {
                toc_id: out.entries.len() as i64 + 1,
                kind,
                schema,
                name,
                owner,
            });
            out.texts.push(String::new());
            continue;
        }
        let line = without_server_attribute_option(&line).unwrap_or_else(|| line.into_owned());
        match out.texts.last_mut() {
            Some(text) => text.push_str(&line),
            None => out.preamble.push_str(&line),
        }
    }
}

impl ScriptEntries {
    /// The settings block, then the statements of the entries `ids`, in the script's order,
    /// without their `ALTER ... OWNER TO` lines: what `pg_restore --no-owner -L` prints for
    /// the same entries of an archive. psql commands (lines beginning with a backslash) are
    /// left out.
    pub fn script_of(&self, ids: &[i64]) -> String {
        let keep = |line: &&str| {
            let l = line.trim_start();
            let psql_command = l.starts_with('\\');
            let owner = l.starts_with("ALTER ") && l.contains(" OWNER TO ");
            !(psql_command || owner)
        };
        let mut script: String = self.preamble.split_inclusive('\n').filter(keep).collect();
        for (i, text) in self.texts.iter().enumerate() {
            if ids.contains(&(i as i64 + 1)) {
                script.extend(text.split_inclusive('\n').filter(keep));
            }
        }
        script
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::table::table_entries;

    /// The shape of a plain script written by pg_dump 15 (heads and a few entries).
    const SCRIPT: &str = "--\n-- PostgreSQL database dump\n--\n\n\\restrict abc\n\n\
SET statement_timeout = 0;\nSET client_encoding = 'UTF8';\n\
SELECT pg_catalog.set_config('search_path', '', false);\n\n\
--\n-- Name: sales; Type: SCHEMA; Schema: -; Owner: app\n--\n\nCREATE SCHEMA sales;\n\n\n\
ALTER SCHEMA sales OWNER TO app;\n\n\
SET default_tablespace = '';\n\n\
--\n-- Name: orders; Type: TABLE; Schema: sales; Owner: app\n--\n\n\
CREATE TABLE sales.orders (\n    id integer NOT NULL,\n    note text DEFAULT 'a;b'::text\n);\n\n\n\
ALTER TABLE sales.orders OWNER TO app;\n\n\
--\n-- Name: orders_id_seq; Type: SEQUENCE; Schema: sales; Owner: app\n--\n\n\
CREATE SEQUENCE sales.orders_id_seq;\n\n\
--\n-- Name: orders id; Type: DEFAULT; Schema: sales; Owner: app\n--\n\n\
ALTER TABLE ONLY sales.orders ALTER COLUMN id SET DEFAULT nextval('sales.orders_id_seq'::regclass);\n\n\
--\n-- Data for Name: orders; Type: TABLE DATA; Schema: sales; Owner: app\n--\n\n\
COPY sales.orders (id, note) FROM stdin;\n1\t-- Name: fake; Type: TABLE; Schema: sales; Owner: x\n\
2\tALTER TABLE sales.orders OWNER TO x;\n\\.\n\n\n\
--\n-- Name: orders orders_pkey; Type: CONSTRAINT; Schema: sales; Owner: app\n--\n\n\
ALTER TABLE ONLY sales.orders\n    ADD CONSTRAINT orders_pkey PRIMARY KEY (id);\n\n\
--\n-- Name: orders_note_idx; Type: INDEX; Schema: sales; Owner: app; Tablespace: \n--\n\n\
CREATE INDEX orders_note_idx ON sales.orders USING btree (note);\n\n\
--\n-- Name: orders orders_fk; Type: FK CONSTRAINT; Schema: sales; Owner: app\n--\n\n\
ALTER TABLE ONLY sales.orders\n    ADD CONSTRAINT orders_fk FOREIGN KEY (id) REFERENCES sales.x(id);\n\n\
\\unrestrict abc\n";

    #[test]
    fn entries_come_from_the_headers_and_never_from_the_rows() {
        let s = read_script_entries(SCRIPT.as_bytes()).unwrap();
        type Row<'a> = (i64, &'a str, Option<&'a str>, &'a str, Option<&'a str>);
        let kinds: Vec<Row> = s
            .entries
            .iter()
            .map(|e| {
                (
                    e.toc_id,
                    e.kind.as_str(),
                    e.schema.as_deref(),
                    e.name.as_str(),
                    e.owner.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                (1, "SCHEMA", None, "sales", Some("app")),
                (2, "TABLE", Some("sales"), "orders", Some("app")),
                (3, "SEQUENCE", Some("sales"), "orders_id_seq", Some("app")),
                (4, "DEFAULT", Some("sales"), "orders id", Some("app")),
                (5, "TABLE DATA", Some("sales"), "orders", Some("app")),
                (
                    6,
                    "CONSTRAINT",
                    Some("sales"),
                    "orders orders_pkey",
                    Some("app")
                ),
                (7, "INDEX", Some("sales"), "orders_note_idx", Some("app")),
                (
                    8,
                    "FK CONSTRAINT",
                    Some("sales"),
                    "orders orders_fk",
                    Some("app")
                ),
            ]
        );
        let found = table_entries(&s.entries, "sales", "orders").unwrap();
        assert_eq!((found.table, found.data), (2, Some(5)));
        assert_eq!(found.definitions, [2, 4, 6, 7]);
    }

    #[test]
    fn the_script_of_entries_has_their_statements_without_owners_rows_or_psql_commands() {
        let s = read_script_entries(SCRIPT.as_bytes()).unwrap();
        let script = s.script_of(&[2, 4, 6, 7]);
        assert_eq!(
            script,
            "--\n-- PostgreSQL database dump\n--\n\n\n\
SET statement_timeout = 0;\nSET client_encoding = 'UTF8';\n\
SELECT pg_catalog.set_config('search_path', '', false);\n\n--\n\
--\n\nCREATE TABLE sales.orders (\n    id integer NOT NULL,\n    note text DEFAULT 'a;b'::text\n);\n\n\n\n\
--\n\
--\n\nALTER TABLE ONLY sales.orders ALTER COLUMN id SET DEFAULT nextval('sales.orders_id_seq'::regclass);\n\n\
--\n\
--\n\nALTER TABLE ONLY sales.orders\n    ADD CONSTRAINT orders_pkey PRIMARY KEY (id);\n\n--\n\
--\n\nCREATE INDEX orders_note_idx ON sales.orders USING btree (note);\n\n--\n"
        );
        assert!(!script.contains("OWNER TO"));
        assert!(!script.contains("FOREIGN KEY"));
        assert!(!script.contains('\\'));
    }

    #[test]
    fn an_empty_or_headless_script_has_no_entries() {
        assert_eq!(
            read_script_entries(&b""[..]).unwrap(),
            ScriptEntries::default()
        );
        let s = read_script_entries(&b"SET x = 1;\nCREATE TABLE t (i int);\n"[..]).unwrap();
        assert!(s.entries.is_empty());
        assert_eq!(s.script_of(&[1]), "SET x = 1;\nCREATE TABLE t (i int);\n");
    }
}
