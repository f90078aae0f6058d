//! The entries of a plain-format script, for restoring one of its tables.
//!
//! pg_dump writes the same entries into a plain script as into an archive, each after a header
//! comment (`-- Name: orders; Type: TABLE; Schema: public; Owner: app`, and for rows `-- Data
//! for Name: ...`). Read once through, the script gives the entries (as `pg_restore --list`
//! would) and the text of each, with the rows of its `COPY` blocks left out: what
//! [`crate::restore::table::table_definition`] needs from a plain backup, in memory the size of
//! the schema, not of the data.
//!
//! A header comment or a `COPY` counts only where a statement may begin: the lines are followed
//! through SQL's quoting (strings, quoted names, dollar quotes, block comments), so text inside a
//! function body or a string (which whoever wrote the object chose) can never pose as an entry.

use std::io::{self, BufRead, BufReader, Read};

use crate::files::plain::without_server_attribute_option;
use crate::restore::table::{dollar_tag, is_ident_char};
use crate::restore::toc::TocEntry;

/// Where a line of SQL leaves the lexer: outside any quoting, or inside one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Lex {
    #[default]
    Neutral,
    /// In a string literal; `E'...'` strings take backslash escapes.
    Quote { backslashes: bool },
    /// In a quoted name.
    Name,
    /// In a dollar-quoted string with this `$tag$`.
    Dollar(String),
    /// In a block comment, nested this deep.
    Comment(usize),
}

/// The lexer's state after `line`, from `state` before it.
pub(crate) fn advance(mut state: Lex, line: &str) -> Lex {
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        match &mut state {
            Lex::Neutral => {
                if rest.starts_with(b"--") {
                    return Lex::Neutral;
                } else if rest.starts_with(b"/*") {
                    state = Lex::Comment(1);
                    i += 2;
                } else if rest[0] == b'\'' {
                    state = Lex::Quote { backslashes: false };
                    i += 1;
                } else if (rest[0] == b'E' || rest[0] == b'e') && rest.get(1) == Some(&b'\'') {
                    state = Lex::Quote { backslashes: true };
                    i += 2;
                } else if rest[0] == b'"' {
                    state = Lex::Name;
                    i += 1;
                } else if rest[0] == b'$' {
                    match dollar_tag(line, i) {
                        Some(tag) => {
                            i += tag.len();
                            state = Lex::Dollar(tag.to_string());
                        }
                        None => i += 1,
                    }
                } else if rest[0].is_ascii_alphabetic() || rest[0] == b'_' || rest[0] >= 0x80 {
                    // A name or keyword, `$` included (`a$b$` is not a dollar quote).
                    while i < b.len() && (b[i] >= 0x80 || is_ident_char(b[i] as char)) {
                        i += 1;
                    }
                } else {
                    i += 1;
                }
            }
            Lex::Quote { backslashes } => match rest[0] {
                b'\\' if *backslashes => i += 2,
                b'\'' if rest.get(1) == Some(&b'\'') => i += 2,
                b'\'' => {
                    state = Lex::Neutral;
                    i += 1;
                }
                _ => i += 1,
            },
            Lex::Name => match rest[0] {
                b'"' if rest.get(1) == Some(&b'"') => i += 2,
                b'"' => {
                    state = Lex::Neutral;
                    i += 1;
                }
                _ => i += 1,
            },
            Lex::Dollar(tag) => match line[i..].find(tag.as_str()) {
                Some(n) => {
                    i += n + tag.len();
                    state = Lex::Neutral;
                }
                None => return state,
            },
            Lex::Comment(depth) => {
                if rest.starts_with(b"/*") {
                    *depth += 1;
                    i += 2;
                } else if rest.starts_with(b"*/") {
                    *depth -= 1;
                    i += 2;
                    if *depth == 0 {
                        state = Lex::Neutral;
                    }
                } else {
                    i += 1;
                }
            }
        }
    }
    state
}

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
    let mut lex = Lex::Neutral;
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
        let at_start = lex == Lex::Neutral;
        if at_start && line.starts_with("COPY ") && line.trim_end().ends_with(" FROM stdin;") {
            in_copy = true;
            continue;
        }
        let header = at_start.then(|| header_entry(line.trim_end())).flatten();
        if let Some((name, kind, schema, owner)) = header {
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
        lex = advance(lex, &line);
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
    fn text_inside_quotes_never_poses_as_an_entry_or_rows() {
        let forged = "\
--\n-- Name: sales; Type: SCHEMA; Schema: -; Owner: app\n--\n\nCREATE SCHEMA sales;\n\n\
--\n-- Name: f(); Type: FUNCTION; Schema: sales; Owner: eve\n--\n\n\
CREATE FUNCTION sales.f() RETURNS text LANGUAGE sql AS $b$\n\
--\n-- Name: orders id; Type: DEFAULT; Schema: sales; Owner: app\n--\n\
SELECT pg_catalog.set_config('a', 'b', false), sales.evil();\n\
COPY sales.x FROM stdin;\n$b$;\n\n\
COMMENT ON FUNCTION sales.f() IS 'it''s\n-- Name: orders c; Type: CONSTRAINT; Schema: sales; Owner: app\n\
ALTER TABLE sales.orders ADD CONSTRAINT c CHECK (sales.evil());';\n\
COMMENT ON SCHEMA sales IS E'\\'\n-- Name: orders i; Type: INDEX; Schema: sales; Owner: app\n';\n\
CREATE TABLE sales.\"x\n-- Name: y; Type: INDEX; Schema: sales; Owner: app\" (/* a\n\
-- Name: z; Type: INDEX; Schema: sales; Owner: app\n*/ i int);\n\
SELECT a$b$c;\n\
--\n-- Name: orders; Type: TABLE; Schema: sales; Owner: app\n--\n\n\
CREATE TABLE sales.orders (id integer);\n";
        let s = read_script_entries(forged.as_bytes()).unwrap();
        let kinds: Vec<&str> = s.entries.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["SCHEMA", "FUNCTION", "TABLE"]);
        let found = table_entries(&s.entries, "sales", "orders").unwrap();
        assert_eq!((found.table, found.data), (3, None));
        assert_eq!(found.definitions, [3]);
        let script = s.script_of(&found.definitions);
        assert!(!script.contains("evil"), "{script}");
        assert!(
            script.ends_with("CREATE TABLE sales.orders (id integer);\n"),
            "{script}"
        );
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
