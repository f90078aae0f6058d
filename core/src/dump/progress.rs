//! Progress of a running pg_dump, read from its `--verbose` stderr.
//!
//! What pg_dump 15 prints, per output format:
//!
//! * custom, tar and directory without `--jobs`: one
//!   `pg_dump: dumping contents of table "schema.name"` line as it starts to
//!   copy each table's data, one table after the other. A table is finished
//!   when the next line of any kind appears, or when pg_dump exits.
//! * plain: the same lines, each preceded by
//!   `pg_dump: processing data for table "schema.name"`.
//! * tar also prints `processing data for table` lines for every table in a
//!   second, short pass that assembles the archive; those are not counted
//!   again.
//! * directory with `--jobs` > 1: each worker prints `dumping contents of
//!   table` when it starts a table, and the leader prints
//!   `pg_dump: finished item 3376 TABLE DATA t` when it is done (the table
//!   name there lacks its schema, so the item number identifies it).
//!
//! pg_restore --verbose (see [`ProgressTracker::for_restore`]) prints the same shape:
//! `pg_restore: processing data for table "schema.name"` as it starts a table's data, one
//! after the other, and with `--jobs` > 1 the leader's `pg_restore: finished item N TABLE
//! DATA name` when a worker is done with one.
//!
//! No verbose line announces how many tables there will be: "reading
//! user-defined tables" comes without a count. The caller sets the total
//! with [`ProgressTracker::with_total`], e.g. from the catalog's count of
//! ordinary tables and partitions (relkind 'r', unlogged ones included) that
//! the dump's filters select. Views, sequences, partitioned parents and
//! materialized views have no "dumping contents" line.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

const PREFIX: &str = "pg_dump: ";
const DUMPING: &str = "dumping contents of table \"";
const RESTORE_PREFIX: &str = "pg_restore: ";
const RESTORING: &str = "processing data for table \"";
const FINISHED: &str = "finished item ";
const TABLE_DATA: &str = "TABLE DATA ";

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProgressTracker {
    total: Option<u64>,
    parallel: bool,
    /// Tables whose data pg_dump has started to dump.
    started: HashSet<String>,
    /// Dump ids of finished TABLE DATA items (parallel dumps only).
    finished_items: HashSet<u64>,
    /// Whether the last line fed started a table that is still being dumped.
    last_line_started_table: bool,
    exited: bool,
    /// Reads pg_restore's lines instead of pg_dump's.
    restore: bool,
}

impl ProgressTracker {
    /// A tracker of pg_restore's `--verbose` lines.
    pub fn for_restore() -> Self {
        ProgressTracker {
            restore: true,
            ..Default::default()
        }
    }

    /// The number of tables whose data the dump will contain, which the
    /// verbose output does not tell.
    pub fn with_total(mut self, n: u64) -> Self {
        self.total = Some(n);
        self
    }

    /// The number of tables, learnt after the work began.
    pub fn set_total(&mut self, n: u64) {
        self.total = Some(n);
    }

    /// The dump's `jobs`: with more than one, pg_dump works on several tables
    /// at once and only its "finished item" lines say which are done.
    pub fn with_jobs(mut self, jobs: Option<u32>) -> Self {
        self.parallel = jobs.is_some_and(|j| j > 1);
        self
    }

    pub fn feed_line(&mut self, line: &str) {
        let line = line.trim_end_matches(['\n', '\r']);
        let (prefix, starting) = if self.restore {
            (RESTORE_PREFIX, RESTORING)
        } else {
            (PREFIX, DUMPING)
        };
        let msg = line.strip_prefix(prefix).unwrap_or(line);
        if let Some(rest) = msg.strip_prefix(starting) {
            // The name is printed unquoted inside the quotes, so a name
            // containing a double quote still ends at the last one.
            let name = rest.strip_suffix('"').unwrap_or(rest);
            self.started.insert(name.to_string());
            self.last_line_started_table = true;
            return;
        }
        self.last_line_started_table = false;
        if let Some(rest) = msg.strip_prefix(FINISHED) {
            if let Some((id, tail)) = rest.split_once(' ') {
                if let (Ok(id), true) = (id.parse::<u64>(), tail.starts_with(TABLE_DATA)) {
                    // Seeing one means the dump is parallel whatever we were told.
                    self.parallel = true;
                    self.finished_items.insert(id);
                }
            }
        }
    }

    /// Call when pg_dump has exited successfully: the table it was working on
    /// last is then done too.
    pub fn finish(&mut self) {
        self.exited = true;
        self.last_line_started_table = false;
    }

    pub fn tables_done(&self) -> u64 {
        let started = self.started.len() as u64;
        let finished = self.finished_items.len() as u64;
        match (self.parallel, self.exited) {
            (true, false) => finished,
            (true, true) => started.max(finished),
            (false, _) => started.saturating_sub(u64::from(self.last_line_started_table)),
        }
    }

    /// The total given with [`ProgressTracker::with_total`], raised to the
    /// number of tables seen if the dump turned out to have more (a table
    /// created after the count was taken), so the fraction never exceeds 1.
    pub fn tables_total(&self) -> Option<u64> {
        self.total
            .map(|t| t.max(self.started.len() as u64).max(self.tables_done()))
    }

    /// Done / total between 0 and 1, or None without a total or when there
    /// is no table data to dump at all.
    pub fn fraction(&self) -> Option<f64> {
        let total = self.tables_total()?;
        if total == 0 {
            return None;
        }
        Some(self.tables_done() as f64 / total as f64)
    }
}

/// Feeds `tracker` the complete lines appended to `path` since `offset`,
/// and moves `offset` past them. A partial last line is left for the next
/// call. If the file is shorter than `offset` (it was replaced), it is read
/// again from the start; counting is by table, so lines seen twice do not
/// count twice.
pub fn scan_new_lines(
    path: &Path,
    offset: &mut u64,
    tracker: &mut ProgressTracker,
) -> io::Result<()> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    if len < *offset {
        *offset = 0;
    }
    if len == *offset {
        return Ok(());
    }
    file.seek(SeekFrom::Start(*offset))?;
    let mut reader = BufReader::new(file.take(len - *offset));
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf)?;
        if n == 0 || buf.last() != Some(&b'\n') {
            break;
        }
        tracker.feed_line(&String::from_utf8_lossy(&buf));
        *offset += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;
    use std::io::Write;

    /// pg_dump 15 --verbose -Fc on a database with tables t (1000 rows),
    /// empty_t, s.u, "we ird", unlogged ul, partitioned part with one
    /// partition part_1, a view, a materialized view, a sequence and a
    /// large object. Six tables have data.
    const CUSTOM: &str = r#"pg_dump: last built-in OID is 16383
pg_dump: reading extensions
pg_dump: identifying extension members
pg_dump: reading schemas
pg_dump: reading user-defined tables
pg_dump: reading dependency data
pg_dump: saving encoding = UTF8
pg_dump: saving standard_conforming_strings = on
pg_dump: saving search_path = 
pg_dump: saving database definition
pg_dump: dumping contents of table "public.empty_t"
pg_dump: dumping contents of table "public.part_1"
pg_dump: dumping contents of table "public.t"
pg_dump: dumping contents of table "public.ul"
pg_dump: dumping contents of table "public.we ird"
pg_dump: dumping contents of table "s.u"
pg_dump: saving large objects
"#;

    /// The same database, -Fp: the tail after the schema.
    const PLAIN: &str = r#"pg_dump: creating TABLE "s.u"
pg_dump: creating TABLE ATTACH "public.part_1"
pg_dump: executing BLOB 16419
pg_dump: processing data for table "public.empty_t"
pg_dump: dumping contents of table "public.empty_t"
pg_dump: processing data for table "public.part_1"
pg_dump: dumping contents of table "public.part_1"
pg_dump: processing data for table "public.t"
pg_dump: dumping contents of table "public.t"
pg_dump: processing data for table "public.ul"
pg_dump: dumping contents of table "public.ul"
pg_dump: processing data for table "public.we ird"
pg_dump: dumping contents of table "public.we ird"
pg_dump: processing data for table "s.u"
pg_dump: dumping contents of table "s.u"
pg_dump: executing SEQUENCE SET seq1
pg_dump: processing BLOBS
pg_dump: saving large objects
pg_dump: creating MATERIALIZED VIEW DATA "public.mv"
"#;

    /// -Ft: data first, then a second pass that writes the archive.
    const TAR: &str = r#"pg_dump: saving database definition
pg_dump: dumping contents of table "public.empty_t"
pg_dump: dumping contents of table "public.part_1"
pg_dump: dumping contents of table "public.t"
pg_dump: dumping contents of table "public.ul"
pg_dump: dumping contents of table "public.we ird"
pg_dump: dumping contents of table "s.u"
pg_dump: saving large objects
pg_dump: dropping DATABASE app
pg_dump: creating DATABASE "app"
pg_dump: connecting to new database "app"
pg_dump: creating TABLE "public.t"
pg_dump: processing data for table "public.empty_t"
pg_dump: processing data for table "public.part_1"
pg_dump: processing data for table "public.t"
pg_dump: processing data for table "public.ul"
pg_dump: processing data for table "public.we ird"
pg_dump: processing data for table "s.u"
pg_dump: executing SEQUENCE SET seq1
pg_dump: processing BLOBS
pg_dump: creating MATERIALIZED VIEW DATA "public.mv"
"#;

    /// -Fd -j2.
    const PARALLEL: &str = r#"pg_dump: saving database definition
pg_dump: saving large objects
pg_dump: dumping contents of table "public.t"
pg_dump: finished item 3385 BLOBS BLOBS
pg_dump: finished item 3376 TABLE DATA t
pg_dump: dumping contents of table "s.u"
pg_dump: dumping contents of table "public.empty_t"
pg_dump: finished item 3378 TABLE DATA u
pg_dump: finished item 3377 TABLE DATA empty_t
pg_dump: dumping contents of table "public.part_1"
pg_dump: dumping contents of table "public.ul"
pg_dump: finished item 3381 TABLE DATA part_1
pg_dump: finished item 3382 TABLE DATA ul
pg_dump: dumping contents of table "public.we ird"
pg_dump: finished item 3383 TABLE DATA we ird
"#;

    fn feed(tracker: &mut ProgressTracker, text: &str) -> Vec<u64> {
        text.lines()
            .map(|l| {
                tracker.feed_line(l);
                tracker.tables_done()
            })
            .collect()
    }

    #[test]
    fn sequential_counts_a_table_when_the_next_line_arrives() {
        let mut p = ProgressTracker::default().with_total(6);
        assert_eq!(p.tables_done(), 0);
        assert_eq!(p.fraction(), Some(0.0));
        let done = feed(&mut p, CUSTOM);
        // Through "saving database definition": nothing; then each
        // "dumping contents" line finishes the table before it.
        assert_eq!(&done[..10], &[0; 10]);
        assert_eq!(&done[10..], &[0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(p.tables_total(), Some(6));
        assert_eq!(p.fraction(), Some(1.0));
    }

    #[test]
    fn last_table_is_done_when_pg_dump_exits() {
        let mut p = ProgressTracker::default().with_total(2);
        p.feed_line("pg_dump: dumping contents of table \"public.a\"\n");
        p.feed_line("pg_dump: dumping contents of table \"public.b\"\r\n");
        assert_eq!(p.tables_done(), 1);
        assert_eq!(p.fraction(), Some(0.5));
        p.finish();
        assert_eq!(p.tables_done(), 2);
        assert_eq!(p.fraction(), Some(1.0));
    }

    #[test]
    fn plain_output() {
        let mut p = ProgressTracker::default().with_total(6);
        let done = feed(&mut p, PLAIN);
        assert_eq!(done[4], 0, "dumping empty_t");
        assert_eq!(done[5], 1, "processing part_1 means empty_t is done");
        assert_eq!(done[14], 5, "dumping s.u");
        assert_eq!(*done.last().unwrap(), 6);
    }

    #[test]
    fn tar_second_pass_does_not_count_twice() {
        let mut p = ProgressTracker::default().with_total(6);
        let done = feed(&mut p, TAR);
        assert_eq!(done[6], 5);
        assert_eq!(done[7], 6);
        assert!(done[7..].iter().all(|&d| d == 6));
        assert_eq!(p.fraction(), Some(1.0));
    }

    #[test]
    fn parallel_counts_finished_items() {
        let mut p = ProgressTracker::default().with_total(6).with_jobs(Some(2));
        let done = feed(&mut p, PARALLEL);
        assert_eq!(done, vec![0, 0, 0, 0, 1, 1, 1, 2, 3, 3, 3, 4, 5, 5, 6]);
        assert_eq!(p.fraction(), Some(1.0));
    }

    #[test]
    fn parallel_is_detected_without_being_told() {
        let mut p = ProgressTracker::default().with_total(6);
        let done = feed(&mut p, PARALLEL);
        // Before the first "finished item" line the count is a guess...
        assert_eq!(done[3], 1);
        // ...afterwards it follows the finished items.
        assert_eq!(&done[4..], &[1, 1, 1, 2, 3, 3, 3, 4, 5, 5, 6]);
    }

    #[test]
    fn jobs_of_one_is_sequential() {
        let p = ProgressTracker::default().with_jobs(Some(1));
        assert!(!p.parallel);
        assert!(ProgressTracker::default().with_jobs(Some(3)).parallel);
        assert!(!ProgressTracker::default().with_jobs(None).parallel);
    }

    #[test]
    fn totals() {
        let mut p = ProgressTracker::default();
        feed(&mut p, CUSTOM);
        assert_eq!(p.tables_total(), None);
        assert_eq!(p.fraction(), None);
        assert_eq!(p.tables_done(), 6);

        // A total that is too small is raised to what was seen.
        let mut p = ProgressTracker::default().with_total(4);
        feed(&mut p, CUSTOM);
        assert_eq!(p.tables_total(), Some(6));
        assert_eq!(p.fraction(), Some(1.0));

        let p = ProgressTracker::default().with_total(0);
        assert_eq!(p.fraction(), None);
    }

    /// pg_restore 16 --verbose into a new database: tables t and u, then their grants.
    const RESTORE_SERIAL: &str = "pg_restore: connecting to database for restore
pg_restore: creating TABLE \"public.t\"
pg_restore: creating TABLE \"public.u\"
pg_restore: processing data for table \"public.t\"
pg_restore: processing data for table \"public.u\"
pg_restore: creating ACL \"public.TABLE t\"
";

    #[test]
    fn restore_counts_a_table_when_the_next_line_arrives() {
        let mut t = ProgressTracker::for_restore().with_total(2);
        let done = feed(&mut t, RESTORE_SERIAL);
        assert_eq!(done, [0, 0, 0, 0, 1, 2]);
        assert_eq!(t.tables_total(), Some(2));
        let mut t = ProgressTracker::for_restore();
        feed(
            &mut t,
            "pg_restore: processing data for table \"public.t\"\n",
        );
        assert_eq!(t.tables_done(), 0);
        t.finish();
        assert_eq!(t.tables_done(), 1);
    }

    #[test]
    fn restore_in_parallel_counts_finished_items() {
        let mut t = ProgressTracker::for_restore()
            .with_jobs(Some(2))
            .with_total(2);
        let text = "pg_restore: launching item 3370 TABLE DATA t
pg_restore: processing data for table \"public.t\"
pg_restore: launching item 3371 TABLE DATA u
pg_restore: processing data for table \"public.u\"
pg_restore: finished item 3371 TABLE DATA u
pg_restore: finished item 3370 TABLE DATA t
";
        assert_eq!(feed(&mut t, text), [0, 0, 0, 0, 1, 2]);
    }

    #[test]
    fn restore_and_dump_lines_are_told_apart() {
        let mut restore = ProgressTracker::for_restore();
        feed(
            &mut restore,
            "pg_dump: dumping contents of table \"public.t\"\nx\n",
        );
        assert_eq!(restore.tables_done(), 0);
        let mut dump = ProgressTracker::default();
        feed(
            &mut dump,
            "pg_restore: processing data for table \"public.t\"\nx\n",
        );
        assert_eq!(dump.tables_done(), 0);
    }

    #[test]
    fn odd_lines() {
        let mut p = ProgressTracker::default().with_total(3);
        // Quotes in names, lines without the prefix, errors, junk.
        p.feed_line("pg_dump: dumping contents of table \"public.a\"b\"");
        p.feed_line("dumping contents of table \"public.c\"");
        p.feed_line("pg_dump: error: Dumping the contents of table \"x\" failed");
        p.feed_line("pg_dump: finished item x TABLE DATA y");
        p.feed_line("pg_dump: finished item 12");
        p.feed_line("");
        assert_eq!(p.tables_done(), 2);
        assert!(!p.parallel);
        assert!(p.started.contains("public.a\"b"));
        // The same table twice counts once.
        p.feed_line("pg_dump: dumping contents of table \"public.c\"");
        p.feed_line("pg_dump: saving large objects");
        assert_eq!(p.tables_done(), 2);
    }

    #[test]
    fn scan_reads_only_complete_new_lines() {
        let dir = TempDir::new("progress");
        let path = dir.path().join("stderr");
        let mut f = File::create(&path).unwrap();
        let mut offset = 0;
        let mut p = ProgressTracker::default().with_total(6);

        scan_new_lines(&path, &mut offset, &mut p).unwrap();
        assert_eq!(offset, 0);

        let (head, tail) = CUSTOM.split_at(CUSTOM.find("public.t\"").unwrap());
        f.write_all(head.as_bytes()).unwrap();
        scan_new_lines(&path, &mut offset, &mut p).unwrap();
        // The partial line "...table \"" is not consumed yet.
        let consumed = head.rfind('\n').unwrap() as u64 + 1;
        assert_eq!(offset, consumed);
        assert_eq!(p.tables_done(), 1);

        f.write_all(tail.as_bytes()).unwrap();
        scan_new_lines(&path, &mut offset, &mut p).unwrap();
        assert_eq!(offset, CUSTOM.len() as u64);
        assert_eq!(p.tables_done(), 6);

        // Nothing new: nothing changes.
        scan_new_lines(&path, &mut offset, &mut p).unwrap();
        assert_eq!(offset, CUSTOM.len() as u64);

        // Replaced by a shorter file: read again from the start.
        let mut f = File::create(&path).unwrap();
        f.write_all(b"pg_dump: dumping contents of table \"x.y\"\n")
            .unwrap();
        scan_new_lines(&path, &mut offset, &mut p).unwrap();
        assert_eq!(offset, 41);
        assert_eq!(p.started.len(), 7);

        // Invalid UTF-8 does not stop the scan.
        f.write_all(b"pg_dump: \xff\xfe\n").unwrap();
        scan_new_lines(&path, &mut offset, &mut p).unwrap();
        assert_eq!(offset, 41 + 12);

        let missing = dir.path().join("missing");
        assert!(scan_new_lines(&missing, &mut offset, &mut p).is_err());
    }
}

/// How long counting the tables may take; after that the child is killed and the total
/// stays unknown.
pub const COUNT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs a query tool (e.g. psql counting the tables a dump will contain) on a signal-free
/// thread and hands back the number it prints, so the worker never waits for it. The tool
/// starts like every other child (libpq variables of the server's environment removed, its
/// own process group, stderr in a file under `work_dir`) and is killed after
/// [`COUNT_TIMEOUT`], which reads as "unknown".
pub fn count_in_background(
    command: crate::process::command::ToolCommand,
    work_dir: &Path,
) -> std::sync::mpsc::Receiver<Option<u64>> {
    count_within(command, work_dir, COUNT_TIMEOUT)
}

fn count_within(
    command: crate::process::command::ToolCommand,
    work_dir: &Path,
    timeout: std::time::Duration,
) -> std::sync::mpsc::Receiver<Option<u64>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let work_dir = work_dir.to_path_buf();
    let spawned = crate::process::stream::spawn_signal_free("backup_ext-count", move || {
        let counted = crate::process::step::list_archive(&command, None, &work_dir, timeout)
            .ok()
            .and_then(|out| out.trim().parse().ok());
        let _ = tx.send(counted);
    });
    // Without a thread the channel is closed, which callers read as "unknown".
    drop(spawned);
    rx
}

#[cfg(test)]
mod background_count_tests {
    use super::{count_in_background, count_within};
    use crate::process::command::ToolCommand;
    use crate::test_support::{fake_tool, TempDir};
    use std::time::{Duration, Instant};

    fn count(cmd: ToolCommand, dir: &TempDir) -> Option<u64> {
        count_in_background(cmd, dir.path())
            .recv_timeout(Duration::from_secs(10))
            .unwrap()
    }

    #[test]
    fn counts_what_the_tool_prints() {
        let dir = TempDir::new("count");
        let cmd = ToolCommand {
            program: "/bin/echo".into(),
            args: vec!["42".into()],
            env: Vec::new(),
        };
        assert_eq!(count(cmd, &dir), Some(42));
        let cmd = ToolCommand {
            program: "/bin/false".into(),
            args: vec![],
            env: Vec::new(),
        };
        assert_eq!(count(cmd, &dir), None);
    }

    #[test]
    fn the_server_environment_does_not_reach_the_tool() {
        let dir = TempDir::new("count");
        std::env::set_var("PGPASSWORD", "7777");
        std::env::set_var("PGOPTIONS", "-c statement_timeout=1");
        let tool = fake_tool(
            &dir,
            "psql",
            "test -z \"${PGOPTIONS+x}\" || exit 1\nprintf '%s\\n' \"${PGPASSWORD-1}\"",
        );
        assert_eq!(count(tool.clone(), &dir), Some(1));
        // What the job itself passes does.
        let with_login = tool.with_env(vec![("PGPASSWORD".into(), "5".into())]);
        assert_eq!(count(with_login, &dir), Some(5));
    }

    #[test]
    fn a_tool_that_hangs_is_killed_and_counts_as_unknown() {
        let dir = TempDir::new("count");
        let pid_file = dir.path().join("pid");
        let tool = fake_tool(
            &dir,
            "psql",
            &format!("echo $$ > '{}'\nexec sleep 1000", pid_file.display()),
        );
        let started = Instant::now();
        let rx = count_within(tool, dir.path(), Duration::from_millis(500));
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), None);
        assert!(started.elapsed() < Duration::from_secs(10));
        let pid: libc::pid_t = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Killed and reaped: the pid no longer exists.
        assert_eq!(unsafe { libc::kill(pid, 0) }, -1);
        let stderr_files = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "stderr")
            })
            .count();
        assert_eq!(stderr_files, 0);
    }
}
