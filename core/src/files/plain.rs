//! Reading a plain-format dump, gzip-compressed or not.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use crate::restore::script_entries::{advance, Lex};
use crate::restore::table::{copy_line_into, CopyInto};

/// A plain dump for reading, gunzipped on the fly when `compressed`
/// (concatenated gzip members are read as one stream).
pub fn open_plain_dump(path: &Path, compressed: bool) -> io::Result<Box<dyn Read + Send>> {
    Ok(plain_dump_reader(File::open(path)?, compressed))
}

/// [`open_plain_dump`] for an already open file (or any reader).
pub fn plain_dump_reader(
    raw: impl Read + Send + 'static,
    compressed: bool,
) -> Box<dyn Read + Send> {
    if compressed {
        Box::new(flate2::read::MultiGzDecoder::new(raw))
    } else {
        Box::new(raw)
    }
}

/// Whether a line belongs to the settings block pg_dump writes before the first object.
fn in_header(line: &str) -> bool {
    let l = line.trim_end();
    l.is_empty()
        || l.starts_with("--")
        || l.starts_with("\\restrict ")
        || l.starts_with("SET ")
        || l.starts_with("SELECT pg_catalog.set_config(")
}

/// The parameter a header line `SET <name> = <value>;` sets.
fn set_name(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("SET ")?;
    let (name, _) = rest.split_once(" = ")?;
    (!name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .then_some(name)
}

/// The parameters the script's header block sets (`SET statement_timeout = 0;` ...), in order.
pub fn header_settings(script: impl Read) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for line in io::BufRead::lines(io::BufReader::new(script)) {
        let line = line?;
        if !in_header(&line) {
            break;
        }
        if let Some(name) = set_name(&line) {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

/// The attribute option the PostgreSQL 15 server on Debian 12 (15.20-0+deb12u1) keeps on every
/// column it creates, `pg_attver=<n>`, a value the server sets itself. Its own pg_dump leaves
/// it out; pg_dump 16 and later write it as `ALTER TABLE ONLY t ALTER COLUMN c SET
/// (pg_attver=<n>);`, which every other server refuses ("unrecognized parameter"), and which
/// the 15 server overrides with its own value anyway.
pub const SERVER_ATTRIBUTE_OPTION: &str = "pg_attver";

/// `line` without the [`SERVER_ATTRIBUTE_OPTION`] item of an `ALTER TABLE ONLY ... ALTER
/// COLUMN ... SET (...);` statement: None when there is none, Some("") when it was the only
/// option (the statement goes), else the statement with the other options.
pub fn without_server_attribute_option(line: &str) -> Option<String> {
    let body = line.trim_end_matches(['\n', '\r']);
    if !body.starts_with("ALTER TABLE ONLY ") || !body.contains(" ALTER COLUMN ") {
        return None;
    }
    let open = body.rfind(" SET (")?;
    let list = body[open + 6..].strip_suffix(");")?;
    let prefix = format!("{SERVER_ATTRIBUTE_OPTION}=");
    let is_server_item = |item: &str| {
        item.strip_prefix(&prefix)
            .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
    };
    let items: Vec<&str> = list.split(", ").collect();
    if !items.iter().any(|i| is_server_item(i)) {
        return None;
    }
    let kept: Vec<&str> = items.into_iter().filter(|i| !is_server_item(i)).collect();
    if kept.is_empty() {
        return Some(String::new());
    }
    Some(format!(
        "{} SET ({});{}",
        &body[..open],
        kept.join(", "),
        &line[body.len()..]
    ))
}

/// Streams a SQL script (a plain dump, or what `pg_restore --file=-` prints) leaving out what
/// the restoring server must not see:
/// - the header's `SET <name> = ...;` lines for `skip`, parameters a newer pg_dump sets that an
///   older server does not know;
/// - the [`SERVER_ATTRIBUTE_OPTION`] of `ALTER COLUMN ... SET (...)` statements.
///
/// The rows of `COPY ... FROM stdin;` blocks pass unchanged, whatever they contain.
pub struct ScriptFilter<R> {
    inner: io::BufReader<R>,
    skip: Vec<String>,
    in_header: bool,
    in_copy: bool,
    pending: Vec<u8>,
    offset: usize,
    copy_into: Option<CopyInto>,
    /// Set by [`ScriptFilter::only_rows_of`]: everything but the header block and the rows of
    /// the one table is left out.
    only_rows: bool,
    /// Whether the COPY block being read is passed on.
    keep_copy: bool,
    /// With `only_rows`: where the statements read so far leave SQL's quoting, so that a
    /// `COPY` line inside a function body or a string is not taken for the table's rows.
    lex: Lex,
}

impl<R: Read> ScriptFilter<R> {
    pub fn new(inner: R, skip: Vec<String>) -> ScriptFilter<R> {
        ScriptFilter {
            inner: io::BufReader::with_capacity(256 * 1024, inner),
            skip,
            in_header: true,
            in_copy: false,
            pending: Vec::new(),
            offset: 0,
            copy_into: None,
            only_rows: false,
            keep_copy: true,
            lex: Lex::Neutral,
        }
    }

    /// Passes on only the header block and the rows of one table's COPY, loaded into another
    /// table (see [`CopyInto`]): a whole plain script in, one table's rows out. Statements,
    /// psql commands and other tables' rows are left out.
    pub fn only_rows_of(mut self, copy_into: CopyInto) -> ScriptFilter<R> {
        self.copy_into = Some(copy_into);
        self.only_rows = true;
        self
    }

    /// Loads the rows of the script's COPY into another table (see [`CopyInto`]); a COPY of
    /// any other table stops the stream with an error.
    pub fn copying_into(mut self, copy_into: Option<CopyInto>) -> ScriptFilter<R> {
        self.copy_into = copy_into;
        self
    }

    /// Reads the next line into `pending`, replaced or emptied as the filter says; false at the
    /// end of the input.
    fn next_line(&mut self) -> io::Result<bool> {
        self.pending.clear();
        self.offset = 0;
        if io::BufRead::read_until(&mut self.inner, b'\n', &mut self.pending)? == 0 {
            return Ok(false);
        }
        if self.in_copy {
            if self.pending == b"\\.\n" || self.pending == b"\\." {
                self.in_copy = false;
            }
            if !self.keep_copy {
                self.pending.clear();
            }
            return Ok(true);
        }
        let Ok(line) = std::str::from_utf8(&self.pending) else {
            return Ok(true);
        };
        if self.in_header && !in_header(line) {
            self.in_header = false;
        }
        if self.in_header {
            if set_name(line).is_some_and(|n| self.skip.iter().any(|s| s == n)) {
                self.pending.clear();
            }
            return Ok(true);
        }
        let at_start = !self.only_rows || self.lex == Lex::Neutral;
        if at_start && line.starts_with("COPY ") && line.trim_end().ends_with(" FROM stdin;") {
            self.in_copy = true;
            self.keep_copy = true;
            if let Some(c) = &self.copy_into {
                match copy_line_into(line, &c.schema, &c.name, &c.into) {
                    Some(renamed) => self.pending = renamed.into_bytes(),
                    None if self.only_rows => {
                        self.keep_copy = false;
                        self.pending.clear();
                    }
                    None => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("unexpected COPY in the archive's data: {}", line.trim_end()),
                        ))
                    }
                }
            }
        } else if self.only_rows {
            self.lex = advance(std::mem::take(&mut self.lex), line);
            self.pending.clear();
        } else if let Some(replaced) = without_server_attribute_option(line) {
            self.pending = replaced.into_bytes();
        }
        Ok(true)
    }
}

impl<R: Read> Read for ScriptFilter<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.offset == self.pending.len() {
            if !self.next_line()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.pending.len() - self.offset);
        buf[..n].copy_from_slice(&self.pending[self.offset..self.offset + n]);
        self.offset += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The head of a plain script written by pg_dump 17.11 from a PostgreSQL 15 server.
    const SCRIPT: &str = "--\n-- PostgreSQL database dump\n--\n\n\\restrict abc\n\n\
        SET statement_timeout = 0;\nSET lock_timeout = 0;\nSET transaction_timeout = 0;\n\
        SET client_encoding = 'UTF8';\nSELECT pg_catalog.set_config('search_path', '', false);\n\
        SET default_tablespace = '';\n\nCREATE TABLE public.t (x text);\n\
        COPY public.t (x) FROM stdin;\nSET transaction_timeout = 0;\n\\.\n";

    #[test]
    fn header_settings_stop_at_the_first_statement() {
        assert_eq!(
            header_settings(SCRIPT.as_bytes()).unwrap(),
            [
                "statement_timeout",
                "lock_timeout",
                "transaction_timeout",
                "client_encoding",
                "default_tablespace"
            ]
        );
    }

    #[test]
    fn only_the_headers_settings_are_left_out() {
        let mut out = String::new();
        ScriptFilter::new(SCRIPT.as_bytes(), vec!["transaction_timeout".into()])
            .read_to_string(&mut out)
            .unwrap();
        // The header line is gone; the same text as a row of data stays.
        assert_eq!(
            out,
            SCRIPT.replacen("SET transaction_timeout = 0;\n", "", 1)
        );
        assert!(out.contains("FROM stdin;\nSET transaction_timeout = 0;\n"));

        let mut same = String::new();
        ScriptFilter::new(SCRIPT.as_bytes(), Vec::new())
            .read_to_string(&mut same)
            .unwrap();
        assert_eq!(same, SCRIPT);
    }

    #[test]
    fn the_servers_own_attribute_option_is_left_out_outside_copy_data() {
        let script = "SET lock_timeout = 0;\n\nCREATE TABLE public.t (x integer, y text);\n\
            ALTER TABLE ONLY public.t ALTER COLUMN x SET (pg_attver=35277352);\n\
            ALTER TABLE ONLY public.t ALTER COLUMN y SET (n_distinct=100, pg_attver=35277352);\n\
            ALTER TABLE ONLY public.t ALTER COLUMN y SET (n_distinct=5);\n\
            ALTER TABLE ONLY public.\"SET (pg_attver=1);\" ALTER COLUMN z SET (pg_attver=x1);\n\
            COPY public.t (x, y) FROM stdin;\n\
            1\tALTER TABLE ONLY public.t ALTER COLUMN x SET (pg_attver=35277352);\n\
            \\.\n\
            ALTER TABLE ONLY public.t ALTER COLUMN x SET (pg_attver=1);\n";
        let mut out = String::new();
        ScriptFilter::new(script.as_bytes(), Vec::new())
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(
            out,
            "SET lock_timeout = 0;\n\nCREATE TABLE public.t (x integer, y text);\n\
             ALTER TABLE ONLY public.t ALTER COLUMN y SET (n_distinct=100);\n\
             ALTER TABLE ONLY public.t ALTER COLUMN y SET (n_distinct=5);\n\
             ALTER TABLE ONLY public.\"SET (pg_attver=1);\" ALTER COLUMN z SET (pg_attver=x1);\n\
             COPY public.t (x, y) FROM stdin;\n\
             1\tALTER TABLE ONLY public.t ALTER COLUMN x SET (pg_attver=35277352);\n\
             \\.\n"
        );
    }

    #[test]
    fn only_one_tables_rows_pass_into_the_new_table() {
        let script = "--\n-- PostgreSQL database dump\n--\n\n\\restrict abc\n\n\
             SET client_encoding = 'UTF8';\nSET lock_timeout = 0;\n\n\
             CREATE TABLE public.t (x int);\n\
             CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS $$\n\
             COPY public.t (x) FROM stdin;\n666\n\\.\nSELECT 1 $$;\n\
             COPY public.other (x) FROM stdin;\n1\n\\.\n\
             \\! echo never\n\
             COPY public.t (x) FROM stdin;\n7\n\\! not a command: a row\n\\.\n\
             \\! echo never either\nDROP TABLE public.t;\n\\unrestrict abc\n";
        let mut out = String::new();
        ScriptFilter::new(script.as_bytes(), vec!["lock_timeout".into()])
            .only_rows_of(CopyInto {
                schema: "public".into(),
                name: "t".into(),
                into: "public.t_restored_9".into(),
            })
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(
            out,
            "--\n-- PostgreSQL database dump\n--\n\n\\restrict abc\n\n\
             SET client_encoding = 'UTF8';\n\n\
             COPY public.t_restored_9 (x) FROM stdin;\n7\n\\! not a command: a row\n\\.\n"
        );
    }

    #[test]
    fn small_reads_see_the_same_bytes() {
        let mut r = ScriptFilter::new(SCRIPT.as_bytes(), vec!["lock_timeout".into()]);
        let mut out = Vec::new();
        let mut buf = [0u8; 3];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            SCRIPT.replacen("SET lock_timeout = 0;\n", "", 1)
        );
    }
}
