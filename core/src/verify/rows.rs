//! Row counts for verifying a test restore: the rows each table has in a
//! plain SQL stream (pg_dump plain output, or `pg_restore --file=-`)
//! against the rows the restored database has.
//!
//! Table names are compared as pg_dump writes them in `COPY` lines, which
//! is how `format('%I.%I', …)` prints them on the server side too.

use crate::restore::argv::FIELD_SEPARATOR;
use std::collections::BTreeMap;
use std::io::{self, BufRead, ErrorKind};

/// Bytes of a line kept for recognising a `COPY` header. A header is
/// `COPY` + two quoted identifiers of at most 63 bytes, each of which can
/// double in size by quoting, + a column list. Longer lines are data or
/// other SQL and are only scanned for their end.
const LINE_PREFIX_BYTES: usize = 64 * 1024;

/// One identifier as written: `"…"` with `""` for a quote, or a bare word.
fn identifier_len(s: &str) -> Option<usize> {
    if let Some(rest) = s.strip_prefix('"') {
        let bytes = rest.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'"' {
                if bytes.get(i + 1) == Some(&b'"') {
                    i += 2;
                    continue;
                }
                return Some(i + 2);
            }
            i += 1;
        }
        None
    } else {
        let n = s.find(['.', ' ', '(']).unwrap_or(s.len());
        (n > 0).then_some(n)
    }
}

/// The table name of a `COPY <name> [(<cols>)] FROM stdin;` line.
fn copy_target(line: &str) -> Option<&str> {
    let body = line.strip_prefix("COPY ")?.strip_suffix(" FROM stdin;")?;
    let mut end = identifier_len(body)?;
    while body[end..].starts_with('.') {
        end += 1 + identifier_len(&body[end + 1..])?;
    }
    let rest = body[end..].trim();
    (rest.is_empty() || (rest.starts_with('(') && rest.ends_with(')'))).then_some(&body[..end])
}

/// Counts the data lines of every `COPY … FROM stdin;` block. Memory use
/// is bounded by [`LINE_PREFIX_BYTES`] whatever the size of the input or
/// of a single line.
pub fn count_copy_rows(mut reader: impl BufRead) -> io::Result<BTreeMap<String, u64>> {
    let mut counts = BTreeMap::new();
    // The table whose data is being read, with its row count so far.
    let mut current: Option<(String, u64)> = None;
    let mut line: Vec<u8> = Vec::new();
    loop {
        let buf = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let at_eof = buf.is_empty();
        let (chunk, line_done) = if at_eof {
            if line.is_empty() {
                break;
            }
            (&buf[..0], true)
        } else {
            match buf.iter().position(|b| *b == b'\n') {
                Some(i) => (&buf[..=i], true),
                None => (buf, false),
            }
        };
        let used = chunk.len();
        let room = LINE_PREFIX_BYTES.saturating_sub(line.len());
        line.extend_from_slice(&chunk[..used.min(room)]);
        reader.consume(used);
        if !line_done {
            continue;
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        match current.as_mut() {
            Some((_, rows)) if text != b"\\." => *rows += 1,
            Some(_) => {
                if let Some((name, rows)) = current.take() {
                    *counts.entry(name).or_insert(0) += rows;
                }
            }
            None => {
                if text.starts_with(b"COPY ") {
                    if let Some(name) = copy_target(&String::from_utf8_lossy(text)) {
                        current = Some((name.to_string(), 0));
                    }
                }
            }
        }
        line.clear();
        if at_eof {
            break;
        }
    }
    // A stream cut off inside a block still reports what it had.
    if let Some((name, rows)) = current {
        *counts.entry(name).or_insert(0) += rows;
    }
    Ok(counts)
}

/// One line per ordinary table of the connected database: the name as
/// pg_dump prints it, [`FIELD_SEPARATOR`], and its row count (inheritance
/// children not included, as in pg_dump's per-table data). A single
/// SELECT, so it runs through `psql --command`; functions are
/// schema-qualified so the restored database's objects cannot stand in.
pub fn row_count_query() -> &'static str {
    "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) || pg_catalog.chr(31) || \
     (pg_catalog.xpath('/row/n/text()', pg_catalog.query_to_xml(pg_catalog.format(\
     'SELECT pg_catalog.count(*) AS n FROM ONLY %I.%I', n.nspname, c.relname), \
     false, true, '')))[1]::text \
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind = 'r' AND c.relpersistence <> 't' \
     AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname !~ '^pg_toast' ORDER BY 1"
}

/// Parses the output of [`row_count_query`] run through
/// [`crate::restore::argv::psql_query_argv`].
pub fn parse_counts(output: &str) -> Result<BTreeMap<String, u64>, String> {
    let mut counts = BTreeMap::new();
    for (idx, line) in output.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let parsed = line
            .rsplit_once(FIELD_SEPARATOR)
            .and_then(|(name, n)| Some((name, n.trim().parse::<u64>().ok()?)));
        match parsed {
            Some((name, n)) if !name.is_empty() => {
                counts.insert(name.to_string(), n);
            }
            _ => {
                return Err(format!(
                    "unexpected line {} in row count output: {line:?}",
                    idx + 1
                ))
            }
        }
    }
    Ok(counts)
}

/// Differences between the rows in a backup and after restoring it, one
/// readable line each; empty when they agree. Tables the backup has no
/// data for are fine as long as they are empty after the restore.
pub fn compare_counts(
    archive: &BTreeMap<String, u64>,
    restored: &BTreeMap<String, u64>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (table, &n) in archive {
        match restored.get(table) {
            None => out.push(format!(
                "table {table}: {n} rows in the backup, missing after restore"
            )),
            Some(&m) if m != n => out.push(format!(
                "table {table}: {n} rows in the backup, {m} after restore"
            )),
            Some(_) => {}
        }
    }
    for (table, &m) in restored {
        if m > 0 && !archive.contains_key(table) {
            out.push(format!(
                "table {table}: {m} rows after restore, none in the backup"
            ));
        }
    }
    out
}

/// Mismatch lines quoted in a message.
const MAX_MISMATCH_LINES: usize = 20;

/// The first [`MAX_MISMATCH_LINES`] of `mismatches` joined by `; `, and how many more there are.
pub fn quote_mismatches(mismatches: &[String]) -> String {
    let mut shown: Vec<&str> = mismatches
        .iter()
        .take(MAX_MISMATCH_LINES)
        .map(String::as_str)
        .collect();
    let more = mismatches.len().saturating_sub(MAX_MISMATCH_LINES);
    let and_more = format!("and {more} more");
    if more > 0 {
        shown.push(&and_more);
    }
    shown.join("; ")
}

#[cfg(test)]
mod tests;
