//! Reading a plain-format dump, gzip-compressed or not.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// A plain dump for reading, gunzipped on the fly when `compressed`
/// (concatenated gzip members are read as one stream).
pub fn open_plain_dump(path: &Path, compressed: bool) -> io::Result<Box<dyn Read + Send>> {
    Ok(plain_dump_reader(File::open(path)?, compressed))
}

/// [`open_plain_dump`] for an already open file (or any reader).
pub(crate) fn plain_dump_reader(
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

/// Reads a plain script leaving out the header's `SET <name> = ...;` lines for `skip`, the
/// parameters a newer pg_dump sets that an older server does not know; everything from the
/// first statement that is not part of the header on passes unchanged.
pub struct WithoutSettings<R> {
    inner: io::BufReader<R>,
    skip: Vec<String>,
    in_header: bool,
    pending: Vec<u8>,
    offset: usize,
}

impl<R: Read> WithoutSettings<R> {
    pub fn new(inner: R, skip: Vec<String>) -> WithoutSettings<R> {
        WithoutSettings {
            inner: io::BufReader::new(inner),
            in_header: !skip.is_empty(),
            skip,
            pending: Vec::new(),
            offset: 0,
        }
    }
}

impl<R: Read> Read for WithoutSettings<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.in_header && self.offset == self.pending.len() {
            self.pending.clear();
            self.offset = 0;
            if io::BufRead::read_until(&mut self.inner, b'\n', &mut self.pending)? == 0 {
                self.in_header = false;
                break;
            }
            let line = String::from_utf8_lossy(&self.pending).into_owned();
            if !in_header(&line) {
                self.in_header = false;
            } else if set_name(&line).is_some_and(|n| self.skip.iter().any(|s| s == n)) {
                self.pending.clear();
            }
        }
        if self.offset < self.pending.len() {
            let n = buf.len().min(self.pending.len() - self.offset);
            buf[..n].copy_from_slice(&self.pending[self.offset..self.offset + n]);
            self.offset += n;
            return Ok(n);
        }
        self.inner.read(buf)
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
        WithoutSettings::new(SCRIPT.as_bytes(), vec!["transaction_timeout".into()])
            .read_to_string(&mut out)
            .unwrap();
        // The header line is gone; the same text as a row of data stays.
        assert_eq!(
            out,
            SCRIPT.replacen("SET transaction_timeout = 0;\n", "", 1)
        );
        assert!(out.contains("FROM stdin;\nSET transaction_timeout = 0;\n"));

        let mut same = String::new();
        WithoutSettings::new(SCRIPT.as_bytes(), Vec::new())
            .read_to_string(&mut same)
            .unwrap();
        assert_eq!(same, SCRIPT);
    }

    #[test]
    fn small_reads_see_the_same_bytes() {
        let mut r = WithoutSettings::new(SCRIPT.as_bytes(), vec!["lock_timeout".into()]);
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
