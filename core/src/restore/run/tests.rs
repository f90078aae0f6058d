//! RestoreRun driven by shell scripts standing in for the tools; marker
//! files show which steps ran.

use super::*;
use crate::test_support::{fake_tool, poll_job, retry_busy, TempDir};
use std::fs;
use std::io::Write;
use std::time::{Duration, Instant};

struct Tools {
    dir: TempDir,
    work: PathBuf,
}

impl Tools {
    fn new() -> Tools {
        let dir = TempDir::new("restore_run");
        let work = dir.path().join("work");
        fs::create_dir(&work).unwrap();
        Tools { dir, work }
    }

    fn marker(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn touching(&self, tool: &str, marker: &str, extra: &str) -> ToolCommand {
        let body = format!("touch '{}'\n{extra}", self.marker(marker).display());
        fake_tool(&self.dir, tool, &body)
    }

    fn plan(&self, create: bool, restore: RestoreStep) -> RestorePlan {
        RestorePlan {
            create: create.then(|| self.touching("createdb", "created", "")),
            restore,
            drop_on_failure: Some(self.touching("dropdb", "dropped", "")),
            work_dir: self.work.clone(),
            stdin: None,
            rows: Default::default(),
        }
    }

    fn work_is_empty(&self) -> bool {
        fs::read_dir(&self.work).unwrap().next().is_none()
    }
}

fn restore_result(r: JobResult) -> (bool, String) {
    match r {
        JobResult::Restore { ok, message } => (ok, message),
        other => panic!("{other:?}"),
    }
}

#[test]
fn create_then_restore() {
    let t = Tools::new();
    let restore = RestoreStep::PgRestore(t.touching("pg_restore", "restored", ""));
    let mut run = RestoreRun::start(t.plan(true, restore)).unwrap();
    let (ok, message) = restore_result(poll_job(&mut run));
    assert!(ok);
    assert_eq!(message, "pg_restore finished");
    assert!(t.marker("created").exists() && t.marker("restored").exists());
    assert!(!t.marker("dropped").exists());
    assert!(run.poll().is_none());
    assert!(t.work_is_empty());
}

#[test]
fn failed_restore_drops_the_new_database() {
    let t = Tools::new();
    let restore = RestoreStep::PgRestore(fake_tool(
        &t.dir,
        "pg_restore",
        "echo 'pg_restore: processing item 3' >&2\n\
         echo 'pg_restore: error: could not execute query: ERROR:  x' >&2\nexit 1",
    ));
    let mut run = RestoreRun::start(t.plan(true, restore)).unwrap();
    let (ok, message) = restore_result(poll_job(&mut run));
    assert!(!ok);
    assert_eq!(
        message,
        "pg_restore exited with code 1: pg_restore: error: could not execute query: ERROR:  x"
    );
    assert!(t.marker("dropped").exists());
    assert!(t.work_is_empty());
}

#[test]
fn failed_createdb_drops_nothing() {
    let t = Tools::new();
    let mut plan = t.plan(
        false,
        RestoreStep::PgRestore(t.touching("pg_restore", "restored", "")),
    );
    plan.create = Some(fake_tool(
        &t.dir,
        "createdb",
        "echo 'createdb: error: database \"x\" already exists' >&2; exit 1",
    ));
    let mut run = RestoreRun::start(plan).unwrap();
    let (ok, message) = restore_result(poll_job(&mut run));
    assert!(!ok);
    assert!(message.starts_with("createdb exited with code 1: createdb: error"));
    assert!(!t.marker("restored").exists() && !t.marker("dropped").exists());
}

#[test]
fn drop_failure_is_reported_too() {
    let t = Tools::new();
    let mut plan = t.plan(
        false,
        RestoreStep::PsqlFile(fake_tool(&t.dir, "psql", "exit 3")),
    );
    plan.drop_on_failure = Some(fake_tool(&t.dir, "dropdb", "echo nope >&2; exit 1"));
    let mut run = RestoreRun::start(plan).unwrap();
    let (ok, message) = restore_result(poll_job(&mut run));
    assert!(!ok);
    assert_eq!(
        message,
        "psql exited with code 3; dropping the database afterwards failed too: \
         dropdb exited with code 1: nope"
    );
}

#[test]
fn cancel_stops_the_restore_and_drops() {
    let t = Tools::new();
    let restore = RestoreStep::PgRestore(t.touching("pg_restore", "restored", "sleep 30"));
    let mut run = RestoreRun::start(t.plan(true, restore)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !t.marker("restored").exists() {
        assert!(run.poll().is_none());
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    let started = Instant::now();
    run.cancel();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(t.marker("dropped").exists());
    assert!(run.poll().is_none());
    assert!(t.work_is_empty());
}

#[test]
fn psql_stdin_streams_gunzipped_input() {
    let t = Tools::new();
    let input = t.dir.path().join("dump.sql.gz");
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b"CREATE TABLE t ();\n").unwrap();
    fs::write(&input, e.finish().unwrap()).unwrap();
    let got = t.marker("got");
    let psql = fake_tool(&t.dir, "psql", &format!("cat > '{}'", got.display()));
    let restore = RestoreStep::PsqlStdin {
        command: psql,
        input: input.clone().into(),
        compressed: true,
        skip_settings: Vec::new(),
        rows_of: None,
    };
    let mut run = RestoreRun::start(t.plan(false, restore)).unwrap();
    assert!(restore_result(poll_job(&mut run)).0);
    assert_eq!(fs::read(&got).unwrap(), b"CREATE TABLE t ();\n");
    assert_eq!(run.progress(), fs::metadata(&input).unwrap().len());
}

#[test]
fn globals_tolerate_existing_roles_only() {
    let t = Tools::new();
    let errors = "echo 'psql:<stdin>:16: ERROR:  role \"postgres\" already exists' >&2\n\
                  echo 'psql:<stdin>:18: ERROR:  role \"app\" already exists' >&2";
    let command = fake_tool(&t.dir, "psql", errors);
    let mut plan = t.plan(false, RestoreStep::Globals { command });
    plan.drop_on_failure = None;
    let mut run = RestoreRun::start(plan).unwrap();
    let (ok, message) = restore_result(poll_job(&mut run));
    assert!(ok);
    assert_eq!(
        message,
        "2 roles already existed: ERROR:  role \"postgres\" already exists; \
         ERROR:  role \"app\" already exists"
    );

    let command = fake_tool(
        &t.dir,
        "psql",
        &format!("{errors}\necho 'psql:<stdin>:20: ERROR:  permission denied' >&2"),
    );
    let mut plan = t.plan(false, RestoreStep::Globals { command });
    plan.drop_on_failure = None;
    let mut run = RestoreRun::start(plan).unwrap();
    let (ok, message) = restore_result(poll_job(&mut run));
    assert!(!ok);
    assert_eq!(message, "psql reported 1 error: ERROR:  permission denied");
    assert!(!t.marker("dropped").exists());
    assert_eq!(
        globals_outcome(&["ERROR:  tablespace \"x\" already exists"]),
        Ok("1 object already existed: ERROR:  tablespace \"x\" already exists".into())
    );
}

#[test]
fn missing_program_fails_to_start() {
    let t = Tools::new();
    let restore = RestoreStep::PgRestore(ToolCommand {
        program: t.dir.path().join("missing"),
        args: vec![],
        env: Vec::new(),
    });
    assert!(RestoreRun::start(t.plan(false, restore)).is_err());
    assert!(t.work_is_empty());
}

/// What pg_restore 17 prints restoring into a PostgreSQL 15 server (seen with -j 2: one error
/// per connection).
const UNKNOWN_SETTING: &str = "pg_restore: error: could not execute query: ERROR:  unrecognized \
     configuration parameter \"transaction_timeout\"\nCommand was: SET transaction_timeout = 0;";

fn newer_pg_restore(t: &Tools, stderr: &str, code: i32) -> RestoreStep {
    let body = format!(
        "touch '{}'\ncat >&2 <<'END'\n{stderr}\nEND\nexit {code}",
        t.marker("restored").display()
    );
    RestoreStep::PgRestoreIntoOlderServer(fake_tool(&t.dir, "pg_restore", &body))
}

#[test]
fn newer_tools_may_skip_only_settings_the_server_does_not_know() {
    let t = Tools::new();
    let stderr = format!(
        "{UNKNOWN_SETTING}\n{UNKNOWN_SETTING}\npg_restore: warning: errors ignored on restore: 2"
    );
    let mut run = RestoreRun::start(t.plan(true, newer_pg_restore(&t, &stderr, 1))).unwrap();
    let (ok, message) = restore_result(poll_job(&mut run));
    assert!(ok, "{message}");
    assert_eq!(
        message,
        "pg_restore finished; this server does not know transaction_timeout (SET by the newer \
         pg_restore), skipped"
    );
    assert!(!t.marker("dropped").exists());
}

#[test]
fn newer_tools_fail_on_any_other_error() {
    for stderr in [
        // A real error beside the tolerated one.
        format!(
            "{UNKNOWN_SETTING}\npg_restore: error: could not execute query: ERROR:  relation \
             \"t\" already exists\nCommand was: CREATE TABLE public.t (x integer);\n\
             pg_restore: warning: errors ignored on restore: 2"
        ),
        // The unknown parameter of something other than a SET.
        "pg_restore: error: could not execute query: ERROR:  unrecognized configuration \
         parameter \"x\"\nCommand was: SELECT set_config('x', '1', false);"
            .to_string(),
        // Exit 1 without any error line.
        "pg_restore: warning: something".to_string(),
        // A tool error that is not a query error.
        format!(
            "{UNKNOWN_SETTING}\npg_restore: error: could not read from input file: end of file"
        ),
    ] {
        let t = Tools::new();
        let mut run = RestoreRun::start(t.plan(true, newer_pg_restore(&t, &stderr, 1))).unwrap();
        let (ok, message) = restore_result(poll_job(&mut run));
        assert!(!ok, "{stderr}: {message}");
        assert!(
            message.starts_with("pg_restore exited with code 1: "),
            "{message}"
        );
        assert!(t.marker("dropped").exists(), "{stderr}");
    }
    // Any exit but 1 is a failure whatever stderr says.
    let t = Tools::new();
    let mut run =
        RestoreRun::start(t.plan(true, newer_pg_restore(&t, UNKNOWN_SETTING, 2))).unwrap();
    assert!(!restore_result(poll_job(&mut run)).0);
}

/// Starts `restore` (without creating a database), runs it to its end and returns its message,
/// asserting it succeeded.
fn succeeded(t: &Tools, restore: RestoreStep) -> String {
    let plan = t.plan(false, restore);
    let mut run = retry_busy(|| RestoreRun::start(plan.clone()));
    let (ok, message) = restore_result(poll_job(&mut run));
    assert!(ok, "{message}");
    message
}

#[test]
fn psql_stdin_leaves_out_settings_the_server_does_not_know() {
    let t = Tools::new();
    let input = t.dir.path().join("in.sql");
    fs::write(
        &input,
        "SET lock_timeout = 0;\nSET transaction_timeout = 0;\nCREATE TABLE t ();\n",
    )
    .unwrap();
    let got = t.marker("got");
    let psql = fake_tool(&t.dir, "psql", &format!("cat > '{}'", got.display()));
    let restore = RestoreStep::PsqlStdin {
        command: psql,
        input: input.into(),
        compressed: false,
        skip_settings: vec!["transaction_timeout".into()],
        rows_of: None,
    };
    assert_eq!(
        succeeded(&t, restore),
        "psql finished; this server does not know transaction_timeout (SET by the newer \
         pg_dump), skipped"
    );
    assert_eq!(
        fs::read_to_string(&got).unwrap(),
        "SET lock_timeout = 0;\nCREATE TABLE t ();\n"
    );
}

#[test]
fn an_archive_restored_as_a_filtered_script() {
    let t = Tools::new();
    let got = t.marker("got");
    let source = fake_tool(
        &t.dir,
        "pg_restore",
        "printf 'SET transaction_timeout = 0;\\nCREATE TABLE t (x int);\\n\
         ALTER TABLE ONLY public.t ALTER COLUMN x SET (pg_attver=42);\\n'",
    );
    let psql = fake_tool(&t.dir, "psql", &format!("cat > '{}'", got.display()));
    let restore = RestoreStep::PsqlFromTool {
        command: psql,
        source,
        skip_settings: vec!["transaction_timeout".into()],
        copy_into: None,
    };
    assert_eq!(
        succeeded(&t, restore),
        "psql finished; this server does not know transaction_timeout (SET by the newer \
         pg_restore), skipped"
    );
    assert_eq!(
        fs::read_to_string(&got).unwrap(),
        "CREATE TABLE t (x int);\n"
    );
    assert!(t.work_is_empty());
}

#[test]
fn one_tables_rows_are_loaded_into_another_table() {
    let t = Tools::new();
    let got = t.marker("got");
    let source = fake_tool(
        &t.dir,
        "pg_restore",
        "printf 'SET client_encoding = UTF8;\nCOPY public.orders (id, note) FROM stdin;\n         1\tCOPY public.orders (x) FROM stdin;\n\\.\n'",
    );
    let psql = fake_tool(&t.dir, "psql", &format!("cat > '{}'", got.display()));
    let restore = RestoreStep::PsqlFromTool {
        command: psql,
        source,
        skip_settings: Vec::new(),
        copy_into: Some(crate::restore::table::CopyInto {
            schema: "public".into(),
            name: "orders".into(),
            into: "\"s\".\"o\"".into(),
        }),
    };
    assert_eq!(succeeded(&t, restore), "psql finished");
    assert_eq!(
        fs::read_to_string(&got).unwrap(),
        "SET client_encoding = UTF8;\nCOPY \"s\".\"o\" (id, note) FROM stdin;\n         1\tCOPY public.orders (x) FROM stdin;\n\\.\n"
    );
}

#[test]
fn a_copy_of_another_table_stops_a_table_restore() {
    let t = Tools::new();
    let source = fake_tool(
        &t.dir,
        "pg_restore",
        "printf 'COPY public.customers (id) FROM stdin;\n1\n\\.\n'",
    );
    let psql = fake_tool(&t.dir, "psql", "cat > /dev/null");
    let restore = RestoreStep::PsqlFromTool {
        command: psql,
        source,
        skip_settings: Vec::new(),
        copy_into: Some(crate::restore::table::CopyInto {
            schema: "public".into(),
            name: "orders".into(),
            into: "\"s\".\"o\"".into(),
        }),
    };
    let plan = t.plan(false, restore);
    let mut run = retry_busy(|| RestoreRun::start(plan.clone()));
    let (ok, message) = restore_result(poll_job(&mut run));
    assert!(!ok);
    assert!(
        message.contains(
            "unexpected COPY in the archive's data: COPY public.customers (id) FROM stdin;"
        ),
        "{message}"
    );
}

#[test]
fn a_failing_script_source_fails_the_restore_though_psql_succeeded() {
    let t = Tools::new();
    let source = fake_tool(
        &t.dir,
        "pg_restore",
        "echo 'CREATE TABLE t ();'\necho 'pg_restore: error: could not read input' >&2\nexit 1",
    );
    let psql = fake_tool(&t.dir, "psql", "cat > /dev/null");
    let restore = RestoreStep::PsqlFromTool {
        command: psql,
        source,
        skip_settings: Vec::new(),
        copy_into: None,
    };
    let plan = t.plan(true, restore);
    let mut run = retry_busy(|| RestoreRun::start(plan.clone()));
    let (ok, message) = restore_result(poll_job(&mut run));
    assert!(!ok);
    assert_eq!(
        message,
        "could not feed the input to psql: pg_restore exited with code 1: pg_restore: error: \
         could not read input"
    );
    assert!(t.marker("dropped").exists());
    assert!(t.work_is_empty());
}

#[test]
fn cancelling_a_script_restore_stops_both_tools() {
    let t = Tools::new();
    let source = fake_tool(&t.dir, "pg_restore", "echo 'SELECT 1;'\nsleep 30");
    let psql = fake_tool(&t.dir, "psql", "sleep 30");
    let restore = RestoreStep::PsqlFromTool {
        command: psql,
        source,
        skip_settings: Vec::new(),
        copy_into: None,
    };
    let plan = t.plan(false, restore);
    let mut run = retry_busy(|| RestoreRun::start(plan.clone()));
    // The processes whose command line names this test's tools (the two shells).
    let dir = t.dir.path().display().to_string();
    let running = || -> Vec<String> {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.contains(&dir))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while running().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "tools not started: {:?}",
            running()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    run.cancel();
    assert!(started.elapsed() < Duration::from_secs(15));
    let left = running();
    assert!(left.is_empty(), "left running: {left:?}");
}

/// Stand-ins for `pg_restore --file=- --data-only` (two tables, 3 rows) and for psql
/// counting the target's rows (`counted` is what it prints).
fn row_check(t: &Tools, counted: &str) -> crate::restore::check::RowCheck {
    use crate::restore::check::{ArchiveRowsFrom, RestoredRows, RowCheck};
    let archive = fake_tool(
        &t.dir,
        "pg_restore_data",
        "printf 'COPY public.t (id) FROM stdin;\\n1\\n2\\n\\\\.\\nCOPY public.u (id) FROM stdin;\\n3\\n\\\\.\\n'",
    );
    // `|` stands for the field separator (chr 31).
    let count = fake_tool(
        &t.dir,
        "psql_count",
        &format!("printf '{counted}' | tr '|' '\\037'"),
    );
    RowCheck {
        archive: Some(ArchiveRowsFrom::Tool {
            command: archive,
            stdin: None,
        }),
        restored: RestoredRows::Count(count),
    }
}

#[test]
fn matching_row_counts_are_the_message() {
    let t = Tools::new();
    let restore = RestoreStep::PgRestore(fake_tool(
        &t.dir,
        "pg_restore",
        "echo 'pg_restore: processing data for table \"public.t\"' >&2\n\
         echo 'pg_restore: processing data for table \"public.u\"' >&2",
    ));
    let mut plan = t.plan(true, restore);
    plan.rows = row_check(&t, "public.t|2\\npublic.u|1\\npublic.other|9\\n");
    let mut run = RestoreRun::start(plan).unwrap();
    let (ok, message) = restore_result(poll_job(&mut run));
    assert_eq!(
        (ok, message.as_str()),
        (
            true,
            "pg_restore finished; restored 2 tables, 3 rows; row counts match the archive"
        )
    );
    assert_eq!(run.tables(), Some((2, Some(2))));
    assert!(!t.marker("dropped").exists());
    assert!(t.work_is_empty());
}

#[test]
fn differing_row_counts_fail_and_drop_the_new_database() {
    let t = Tools::new();
    let restore = RestoreStep::PgRestore(t.touching("pg_restore", "restored", ""));
    let mut plan = t.plan(true, restore);
    plan.rows = row_check(&t, "public.t|0\\npublic.u|1\\n");
    let mut run = RestoreRun::start(plan).unwrap();
    let (ok, message) = restore_result(poll_job(&mut run));
    assert!(!ok);
    assert_eq!(
        message,
        "pg_restore finished, but row counts differ from the archive (2 tables, 3 rows in it): \
         table public.t: 2 rows in the archive, 0 after the restore"
    );
    assert!(t.marker("restored").exists() && t.marker("dropped").exists());
}

/// A row count of an archive that cannot be read.
fn unreadable_archive(t: &Tools) -> crate::restore::check::ArchiveRowsFrom {
    crate::restore::check::ArchiveRowsFrom::Tool {
        command: fake_tool(&t.dir, "pg_restore_data", "echo 'bad archive' >&2; exit 1"),
        stdin: None,
    }
}

#[test]
fn an_unreadable_archive_touches_no_existing_database() {
    let t = Tools::new();
    let restore = RestoreStep::PgRestore(t.touching("pg_restore", "restored", ""));
    let mut plan = t.plan(false, restore);
    plan.rows.archive = Some(unreadable_archive(&t));
    let mut run = RestoreRun::start(plan).unwrap();
    let (ok, message) = restore_result(poll_job(&mut run));
    assert!(!ok);
    assert!(
        message
            .starts_with("counting the rows in the archive failed, the target was not touched: ")
            && message.contains("bad archive"),
        "{message}"
    );
    for step in ["created", "restored", "dropped"] {
        assert!(!t.marker(step).exists(), "{step}");
    }
}

#[test]
fn an_unreadable_archive_fails_a_restore_into_a_new_database_and_drops_it() {
    let t = Tools::new();
    // The restore would take a while; the count beside it fails at once and stops it.
    let restore = RestoreStep::PgRestore(t.touching("pg_restore", "restored", "sleep 30"));
    let mut plan = t.plan(true, restore);
    plan.rows.archive = Some(unreadable_archive(&t));
    let started = std::time::Instant::now();
    let mut run = RestoreRun::start(plan).unwrap();
    let (ok, message) = restore_result(poll_job(&mut run));
    assert!(!ok);
    assert!(
        message.starts_with("counting the rows in the archive failed: ")
            && message.contains("bad archive"),
        "{message}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    // The database may have been made already (or createdb stopped midway): dropped anyway.
    assert!(t.marker("dropped").exists());
}

#[test]
fn the_archive_is_counted_beside_a_restore_into_a_new_database() {
    let t = Tools::new();
    // The count waits until pg_restore has run: it would wait in vain were it counted first.
    // The restore ends first, so the job also waits for the count after it.
    let restore = RestoreStep::PgRestore(t.touching("pg_restore", "restored", ""));
    let mut plan = t.plan(true, restore);
    plan.rows = row_check(&t, "public.t|2\\npublic.u|1\\n");
    plan.rows.archive = Some(crate::restore::check::ArchiveRowsFrom::Tool {
        command: fake_tool(
            &t.dir,
            "pg_restore_data",
            &format!(
                "for i in $(seq 1 100); do [ -e '{}' ] && break; sleep 0.1; done\n\
                 [ -e '{}' ] || exit 1\n\
                 sleep 0.3\n\
                 printf 'COPY public.t (id) FROM stdin;\\n1\\n2\\n\\\\.\\nCOPY public.u (id) FROM stdin;\\n3\\n\\\\.\\n'",
                t.marker("restored").display(),
                t.marker("restored").display()
            ),
        ),
        stdin: None,
    });
    let mut run = RestoreRun::start(plan).unwrap();
    let (ok, message) = restore_result(poll_job(&mut run));
    assert_eq!(
        (ok, message.as_str()),
        (
            true,
            "pg_restore finished; restored 2 tables, 3 rows; row counts match the archive"
        )
    );
    assert!(!t.marker("dropped").exists());
}

#[test]
fn counts_not_compared_say_why() {
    let t = Tools::new();
    let restore = RestoreStep::PgRestore(t.touching("pg_restore", "restored", ""));
    let mut plan = t.plan(false, restore);
    plan.rows = row_check(&t, "");
    plan.rows.restored =
        crate::restore::check::RestoredRows::NotCompared("the target existed".into());
    let mut run = RestoreRun::start(plan).unwrap();
    let (ok, message) = restore_result(poll_job(&mut run));
    assert!(ok);
    assert_eq!(
        message,
        "pg_restore finished; row counts not compared: the target existed"
    );
    assert_eq!(run.tables(), Some((2, Some(2))));
}

#[test]
fn progress_follows_the_verbose_lines_while_the_restore_runs() {
    let t = Tools::new();
    let go = t.marker("go");
    let restore = RestoreStep::PgRestore(fake_tool(
        &t.dir,
        "pg_restore",
        &format!(
            "echo 'pg_restore: processing data for table \"public.t\"' >&2\n\
             echo 'pg_restore: processing data for table \"public.u\"' >&2\n\
             while [ ! -e '{}' ]; do sleep 0.05; done",
            go.display()
        ),
    ));
    let mut plan = t.plan(false, restore);
    plan.rows = row_check(&t, "public.t|2\\npublic.u|1\\n");
    let mut run = RestoreRun::start(plan).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while run.tables() != Some((1, Some(2))) {
        assert!(run.poll().is_none());
        assert!(Instant::now() < deadline, "{:?}", run.tables());
        std::thread::sleep(Duration::from_millis(10));
    }
    let before = run.activity();
    assert!(before.is_some());
    fs::write(&go, b"").unwrap();
    let (ok, _) = restore_result(poll_job(&mut run));
    assert!(ok);
    assert_eq!(run.tables(), Some((2, Some(2))));
    assert_eq!(
        run.activity(),
        None,
        "nothing is watched once the restore is done"
    );
}
