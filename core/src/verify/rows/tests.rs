//! COPY row counting, count parsing and comparison.

use super::*;
use crate::files::plain::open_plain_dump;
use crate::test_support::TempDir;
use std::io::{BufReader, Cursor, Read, Write};

/// COPY lines as pg_dump 15 writes them for awkward names.
const DUMP: &str = "--\n-- PostgreSQL database dump\n--\n\
SET statement_timeout = 0;\n\
CREATE TABLE public.t (a integer);\n\
COPY \"My Schema\".\"odd \"\"name\"\"\" (a, \"B c\") FROM stdin;\n\
1\tx\\\\y\\tz\n\
2\t\\N\n\
\\.\n\
COPY public.\"MixedCase\" (x) FROM stdin;\n\
\\.\n\
COPY public.noncols  FROM stdin;\n\
\n\
\n\
\n\
\\.\n\
COPY public.\"Ünï\" (x) FROM stdin;\n\
1\n\
\\.\n\
COPY public.t (a) FROM stdin;\n\
1\n\
COPY public.t (a) FROM stdin;\n\
\\.\n\
-- COPY public.fake (a) FROM stdin;\n\
SELECT pg_catalog.setval('public.s', 1, false);\n";

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[test]
fn counts_copy_blocks() {
    let got = count_copy_rows(Cursor::new(DUMP)).unwrap();
    assert_eq!(
        got,
        counts(&[
            ("\"My Schema\".\"odd \"\"name\"\"\"", 2),
            ("public.\"MixedCase\"", 0),
            ("public.noncols", 3),
            ("public.\"Ünï\"", 1),
            // A data line that looks like a header is still data.
            ("public.t", 2),
        ])
    );
}

#[test]
fn tiny_buffers_and_missing_final_newline() {
    let got = count_copy_rows(BufReader::with_capacity(3, Cursor::new(DUMP))).unwrap();
    assert_eq!(got["public.t"], 2);
    let got = count_copy_rows(Cursor::new("COPY a.b (x) FROM stdin;\n1\n2")).unwrap();
    assert_eq!(got, counts(&[("a.b", 2)]));
    assert!(count_copy_rows(Cursor::new("")).unwrap().is_empty());
}

#[test]
fn rejects_lines_that_only_look_like_headers() {
    for line in [
        "COPY public.t (a) TO stdout;",
        "COPY \"unterminated (a) FROM stdin;",
        "COPY public.t junk FROM stdin;",
        "COPY  FROM stdin;",
    ] {
        let input = format!("{line}\n1\n\\.\n");
        assert!(
            count_copy_rows(Cursor::new(input)).unwrap().is_empty(),
            "{line}"
        );
    }
    assert_eq!(
        copy_target("COPY \"a.b\".\"c (d\" (x) FROM stdin;"),
        Some("\"a.b\".\"c (d\"")
    );
    assert_eq!(copy_target("COPY t FROM stdin;"), Some("t"));
}

/// Produces one long data line without holding it, to check that memory
/// does not grow with line length.
struct LongLine {
    left: u64,
}

impl Read for LongLine {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        buf[..n].fill(b'x');
        self.left -= n as u64;
        Ok(n)
    }
}

#[test]
fn long_lines_are_not_buffered_whole() {
    let input = Cursor::new("COPY s.big (a) FROM stdin;\n")
        .chain(LongLine { left: 50 << 20 })
        .chain(Cursor::new("\n2\n\\.\n"));
    let got = count_copy_rows(BufReader::new(input)).unwrap();
    assert_eq!(got, counts(&[("s.big", 2)]));
}

#[test]
fn query_shape() {
    let q = row_count_query();
    assert!(q.starts_with("SELECT "));
    assert!(!q.contains(';'));
    assert!(q.contains("relkind = 'r'"));
    assert!(q.contains("FROM ONLY %I.%I"));
}

#[test]
fn parses_counts() {
    let out = "public.t\u{1f}3\n\"My Schema\".\"a\u{1f}b\"\u{1f}0\n\n";
    assert_eq!(
        parse_counts(out).unwrap(),
        counts(&[("public.t", 3), ("\"My Schema\".\"a\u{1f}b\"", 0)])
    );
    assert!(parse_counts("").unwrap().is_empty());
    for bad in ["public.t 3", "public.t\u{1f}x", "\u{1f}3", "t\u{1f}-1"] {
        let e = parse_counts(bad).unwrap_err();
        assert!(e.contains("line 1"), "{e}");
    }
}

#[test]
fn compares_counts() {
    let archive = counts(&[("a", 1), ("b", 2), ("c", 0), ("d", 5)]);
    let restored = counts(&[("a", 1), ("b", 3), ("d", 5), ("e", 0), ("f", 7)]);
    assert_eq!(
        compare_counts(&archive, &restored),
        vec![
            "table b: 2 rows in the backup, 3 after restore",
            "table c: 0 rows in the backup, missing after restore",
            "table f: 7 rows after restore, none in the backup",
        ]
    );
    assert!(compare_counts(&archive, &archive).is_empty());
}

#[test]
fn opens_plain_and_gzipped_dumps() {
    let dir = TempDir::new("rows");
    let plain = dir.path().join("a.sql");
    std::fs::write(&plain, DUMP).unwrap();
    let mut s = String::new();
    open_plain_dump(&plain, false)
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(s, DUMP);

    // Two gzip members, as appending to a .gz file produces.
    let gz = dir.path().join("a.sql.gz");
    let (head, tail) = DUMP.split_at(100);
    let mut bytes = Vec::new();
    for part in [head, tail] {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(part.as_bytes()).unwrap();
        bytes.extend(e.finish().unwrap());
    }
    std::fs::write(&gz, bytes).unwrap();
    let reader = BufReader::new(open_plain_dump(&gz, true).unwrap());
    assert_eq!(
        count_copy_rows(reader).unwrap(),
        count_copy_rows(Cursor::new(DUMP)).unwrap()
    );
    std::fs::write(&gz, b"not gzip").unwrap();
    let mut out = Vec::new();
    assert!(open_plain_dump(&gz, true)
        .unwrap()
        .read_to_end(&mut out)
        .is_err());
    assert!(open_plain_dump(&dir.path().join("none"), false).is_err());
}

#[test]
fn mismatches_are_quoted_up_to_twenty() {
    let lines: Vec<String> = (1..=22).map(|i| format!("m{i}")).collect();
    assert_eq!(quote_mismatches(&lines[..2]), "m1; m2");
    let quoted = quote_mismatches(&lines);
    assert!(quoted.starts_with("m1; m2; "), "{quoted}");
    assert!(quoted.ends_with("; m20; and 2 more"), "{quoted}");
    assert_eq!(quote_mismatches(&[]), "");
}
