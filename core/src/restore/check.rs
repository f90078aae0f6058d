//! A restore checked by its rows: the archive's own `COPY` rows per table, counted before the
//! restore (which also tells how many tables it will restore), against the rows each of those
//! tables has in the target afterwards.

use crate::files::plain::plain_dump_reader;
use crate::process::command::ToolCommand;
use crate::process::step::{Capture, Captured, Feed, Step, StepEnd, Stoppable};
use crate::process::stream::spawn_signal_free;
use crate::restore::source::ArchiveSource;
use crate::verify::rows::{count_copy_rows, parse_counts, quote_mismatches};
use std::collections::BTreeMap;
use std::io::{self, BufReader};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Rows per table, as pg_dump names them in `COPY` lines (`schema.name`, quoted where needed).
pub type RowCounts = BTreeMap<String, u64>;

/// How a restore's rows are checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowCheck {
    /// Where the rows of the tables the restore writes are counted, before it starts; None
    /// when it writes no table data (a globals script, a schema-only restore).
    pub archive: Option<ArchiveRowsFrom>,
    pub restored: RestoredRows,
}

impl RowCheck {
    /// Nothing counted, for the reason given.
    pub fn not_compared(why: impl Into<String>) -> RowCheck {
        RowCheck {
            archive: None,
            restored: RestoredRows::NotCompared(why.into()),
        }
    }
}

/// What happens after the restore.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RestoredRows {
    /// psql running [`crate::verify::rows::row_count_query`] in the target; its counts of the
    /// archive's tables must equal the archive's.
    Count(ToolCommand),
    /// Not compared, for this reason, which the job's message gives.
    NotCompared(String),
    /// Nothing is said about rows.
    #[default]
    Unchecked,
}

/// Where the archive's rows are counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveRowsFrom {
    /// A plain dump, gunzipped when `compressed`.
    Script {
        source: ArchiveSource,
        compressed: bool,
    },
    /// The stdout of `pg_restore --file=- --data-only` with the restore's own selection (see
    /// [`crate::restore::argv::pg_restore_data_argv`]), fed `stdin` when it reads no file.
    Tool {
        command: ToolCommand,
        stdin: Option<ArchiveSource>,
    },
}

/// Counting the archive's rows, in a thread or a tool.
pub(crate) enum RowsReading {
    Script {
        /// Taken once it has finished.
        handle: Option<JoinHandle<io::Result<RowCounts>>>,
        stop: Arc<AtomicBool>,
    },
    Tool(Box<Step>),
}

impl RowsReading {
    /// `read` counts the bytes of the archive read (before gunzipping).
    pub(crate) fn start(
        from: &ArchiveRowsFrom,
        work_dir: &Path,
        read: Arc<AtomicU64>,
    ) -> io::Result<RowsReading> {
        match from {
            ArchiveRowsFrom::Script { source, compressed } => {
                let (source, compressed) = (source.clone(), *compressed);
                let stop = Arc::new(AtomicBool::new(false));
                let flag = stop.clone();
                let handle = spawn_signal_free("backup_ext rows", move || {
                    let raw = Stoppable {
                        inner: source.open()?,
                        stop: flag,
                        count: read,
                    };
                    count_copy_rows(BufReader::new(plain_dump_reader(raw, compressed)))
                })?;
                Ok(RowsReading::Script {
                    handle: Some(handle),
                    stop,
                })
            }
            ArchiveRowsFrom::Tool { command, stdin } => {
                let feed = stdin.clone().map_or(Feed::Nothing, Feed::Archive);
                Step::start(command, work_dir, feed, Capture::CopyRows, read)
                    .map(|step| RowsReading::Tool(Box::new(step)))
            }
        }
    }

    /// The counts once they are known; None while counting.
    pub(crate) fn poll(&mut self) -> Option<Result<RowCounts, String>> {
        match self {
            RowsReading::Script { handle, .. } => {
                if handle.as_ref().is_some_and(|h| !h.is_finished()) {
                    return None;
                }
                Some(match handle.take()?.join() {
                    Ok(Ok(rows)) => Ok(rows),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("a helper thread panicked".into()),
                })
            }
            RowsReading::Tool(step) => {
                let end = step.poll()?;
                Some(match end.output {
                    Ok(Captured::Rows(rows)) if end.ok() => Ok(rows),
                    _ => Err(end.failure()),
                })
            }
        }
    }

    pub(crate) fn stop(&mut self) {
        match self {
            RowsReading::Script { stop, .. } => stop.store(true, Ordering::Relaxed),
            RowsReading::Tool(step) => step.stop(),
        }
    }

    /// Bytes the counting tool has read (a thread counts into the `read` it was given).
    pub(crate) fn bytes_read(&self) -> u64 {
        match self {
            RowsReading::Script { .. } => 0,
            RowsReading::Tool(step) => step.bytes_read(),
        }
    }
}

/// `N tables, M rows`.
pub fn describe_rows(archive: &RowCounts) -> String {
    let tables = archive.len();
    let rows: u64 = archive.values().sum();
    format!(
        "{tables} table{}, {rows} row{}",
        if tables == 1 { "" } else { "s" },
        if rows == 1 { "" } else { "s" }
    )
}

/// Differences between the archive's rows and the target's, for the tables the archive holds
/// data for (other tables of the target are not the restore's); one readable line each.
pub fn compare_restored(archive: &RowCounts, restored: &RowCounts) -> Vec<String> {
    archive
        .iter()
        .filter_map(|(table, &n)| match restored.get(table) {
            None => Some(format!(
                "table {table}: {n} rows in the archive, not found after the restore"
            )),
            Some(&m) if m != n => Some(format!(
                "table {table}: {n} rows in the archive, {m} after the restore"
            )),
            Some(_) => None,
        })
        .collect()
}

/// The outcome of the count step: the job's message, or its error.
pub(crate) fn judge_counts(
    archive: &RowCounts,
    count: &StepEnd,
    restored_message: &str,
) -> Result<String, String> {
    let counted = if count.ok() {
        match &count.output {
            Ok(Captured::Text(t)) => parse_counts(t),
            _ => Err("psql printed nothing".into()),
        }
    } else {
        Err(count.failure())
    };
    let restored = counted.map_err(|e| {
        format!("{restored_message}, but the restored rows could not be counted: {e}")
    })?;
    let summary = describe_rows(archive);
    let mismatches = compare_restored(archive, &restored);
    if mismatches.is_empty() {
        return Ok(format!(
            "{restored_message}; restored {summary}; row counts match the archive"
        ));
    }
    Err(format!(
        "{restored_message}, but row counts differ from the archive ({summary} in it): {}",
        quote_mismatches(&mismatches)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pairs: &[(&str, u64)]) -> RowCounts {
        pairs.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    fn count_end(output: &str) -> StepEnd {
        StepEnd {
            name: "psql".into(),
            status: Ok(std::os::unix::process::ExitStatusExt::from_raw(0)),
            tail: String::new(),
            stderr: String::new(),
            output: Ok(Captured::Text(output.into())),
            feed: Ok(()),
        }
    }

    #[test]
    fn only_the_archive_tables_are_compared() {
        let archive = counts(&[("public.t", 5), ("s.\"We ird\"", 0)]);
        let restored = counts(&[("public.t", 5), ("s.\"We ird\"", 0), ("public.other", 9)]);
        assert!(compare_restored(&archive, &restored).is_empty());
        let restored = counts(&[("public.t", 2)]);
        assert_eq!(
            compare_restored(&archive, &restored),
            [
                "table public.t: 5 rows in the archive, 2 after the restore",
                "table s.\"We ird\": 0 rows in the archive, not found after the restore",
            ]
        );
    }

    #[test]
    fn matching_counts_are_the_message() {
        let archive = counts(&[("public.t", 5), ("public.u", 1)]);
        let end = count_end("public.t\u{1f}5\npublic.u\u{1f}1\npublic.x\u{1f}7\n");
        assert_eq!(
            judge_counts(&archive, &end, "pg_restore finished"),
            Ok(
                "pg_restore finished; restored 2 tables, 6 rows; row counts match the archive"
                    .to_string()
            )
        );
        let one = counts(&[("public.t", 1)]);
        let end = count_end("public.t\u{1f}1\n");
        assert_eq!(
            judge_counts(&one, &end, "psql finished"),
            Ok("psql finished; restored 1 table, 1 row; row counts match the archive".to_string())
        );
    }

    #[test]
    fn a_mismatch_is_the_error() {
        let archive = counts(&[("public.t", 5), ("public.u", 1)]);
        let end = count_end("public.t\u{1f}2\npublic.u\u{1f}1\n");
        assert_eq!(
            judge_counts(&archive, &end, "pg_restore finished"),
            Err(
                "pg_restore finished, but row counts differ from the archive (2 tables, 6 rows \
                 in it): table public.t: 5 rows in the archive, 2 after the restore"
                    .to_string()
            )
        );
    }

    #[test]
    fn unreadable_counts_fail() {
        let archive = counts(&[("public.t", 5)]);
        let end = count_end("garbage\n");
        let err = judge_counts(&archive, &end, "pg_restore finished").unwrap_err();
        assert!(
            err.starts_with("pg_restore finished, but the restored rows could not be counted: "),
            "{err}"
        );
    }

    #[test]
    fn many_mismatches_are_cut_short() {
        let archive: RowCounts = (0..25).map(|i| (format!("public.t{i:02}"), 1)).collect();
        let end = count_end("");
        let err = judge_counts(&archive, &end, "psql finished").unwrap_err();
        assert_eq!(err.matches("not found after the restore").count(), 20);
        assert!(err.ends_with("; and 5 more"), "{err}");
    }

    #[test]
    fn script_rows_are_counted_in_a_thread() {
        let dir = crate::test_support::TempDir::new("restore-check-script");
        let path = dir.path().join("dump.sql");
        std::fs::write(
            &path,
            "SET x = 1;\nCOPY public.t (id) FROM stdin;\n1\n2\n\\.\nCOPY public.u (id) FROM stdin;\n\\.\n",
        )
        .unwrap();
        let read = Arc::new(AtomicU64::new(0));
        let from = ArchiveRowsFrom::Script {
            source: ArchiveSource::File(path),
            compressed: false,
        };
        let mut reading = RowsReading::start(&from, dir.path(), read.clone()).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let rows = loop {
            if let Some(r) = reading.poll() {
                break r;
            }
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        assert_eq!(rows, Ok(counts(&[("public.t", 2), ("public.u", 0)])));
        let size = std::fs::metadata(dir.path().join("dump.sql"))
            .unwrap()
            .len();
        assert_eq!(read.load(Ordering::Relaxed), size);
    }
}
