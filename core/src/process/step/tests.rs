//! Steps driven by small shell programs.

use super::*;
use crate::dump::run::{DumpRun, OutputKind, RunResult, RunSpec};
use crate::job::{JobResult, JobRun};
use crate::test_support::{fake_tool, poll_job, TempDir};
use std::io::Write;
use std::time::Instant;

fn until_done(step: &mut Step) -> StepEnd {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(end) = step.poll() {
            return end;
        }
        assert!(Instant::now() < deadline, "step did not finish");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn leftover_stderr(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "stderr"))
        .collect()
}

#[test]
fn feeds_gunzipped_file_and_captures_text() {
    let dir = TempDir::new("steps");
    let gz = dir.path().join("in.sql.gz");
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b"hello\nworld\n").unwrap();
    fs::write(&gz, e.finish().unwrap()).unwrap();
    let tool = fake_tool(&dir, "psql", "tr a-z A-Z");
    let fed = Arc::new(AtomicU64::new(0));
    let feed = Feed::File {
        source: gz.clone().into(),
        compressed: true,
        skip: Vec::new(),
        rows_of: None,
    };
    let mut step = Step::start(
        &tool,
        dir.path(),
        feed,
        Capture::Text { limit: 100 },
        fed.clone(),
    )
    .unwrap();
    let end = until_done(&mut step);
    assert!(end.ok(), "{}", end.failure());
    assert_eq!(end.failure(), "");
    assert!(matches!(&end.output, Ok(Captured::Text(t)) if t == "HELLO\nWORLD\n"));
    assert_eq!(
        fed.load(Ordering::Relaxed),
        fs::metadata(&gz).unwrap().len()
    );
    assert!(leftover_stderr(dir.path()).is_empty());
}

#[test]
fn text_limit_and_copy_rows() {
    let dir = TempDir::new("steps");
    let tool = fake_tool(&dir, "big", "yes | head -n 1000");
    let mut step = Step::start(
        &tool,
        dir.path(),
        Feed::Nothing,
        Capture::Text { limit: 10 },
        Arc::default(),
    )
    .unwrap();
    let end = until_done(&mut step);
    assert!(end.exited_ok() && !end.ok());
    assert!(
        end.failure().contains("larger than 10 bytes"),
        "{}",
        end.failure()
    );

    let tool = fake_tool(
        &dir,
        "pg_restore",
        "printf 'COPY public.t (a) FROM stdin;\\n1\\n2\\n\\\\.\\n'",
    );
    let mut step = Step::start(
        &tool,
        dir.path(),
        Feed::Nothing,
        Capture::CopyRows,
        Arc::default(),
    )
    .unwrap();
    let end = until_done(&mut step);
    match end.output {
        Ok(Captured::Rows(rows)) => assert_eq!(rows.get("public.t"), Some(&2)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn failure_messages() {
    let dir = TempDir::new("steps");
    let tool = fake_tool(
        &dir,
        "pg_restore",
        "echo 'pg_restore: connecting to database for restore' >&2\n\
         echo 'pg_restore: error: could not execute query: ERROR:  boom' >&2\nexit 1",
    );
    let end = Step::run_sync(&tool, dir.path(), Duration::from_secs(20));
    assert_eq!(
        end.failure(),
        "pg_restore exited with code 1: pg_restore: error: could not execute query: ERROR:  boom"
    );
    assert_eq!(end.errors().len(), 1);

    let missing = ToolCommand {
        program: dir.path().join("nope"),
        args: vec![],
        env: Vec::new(),
    };
    let end = Step::run_sync(&missing, dir.path(), Duration::from_secs(5));
    assert!(
        end.failure().starts_with("nope failed: could not start"),
        "{}",
        end.failure()
    );

    let slow = fake_tool(&dir, "slow", "sleep 30");
    let t = Instant::now();
    let end = Step::run_sync(&slow, dir.path(), Duration::from_millis(200));
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(
        end.failure().contains("did not finish within"),
        "{}",
        end.failure()
    );
    assert!(leftover_stderr(dir.path()).is_empty());
}

#[test]
fn feed_errors_fail_the_step() {
    let dir = TempDir::new("steps");
    let bad = dir.path().join("bad.gz");
    fs::write(&bad, b"not gzip at all").unwrap();
    let tool = fake_tool(&dir, "psql", "cat >/dev/null");
    let feed = Feed::File {
        source: bad.into(),
        compressed: true,
        skip: Vec::new(),
        rows_of: None,
    };
    let mut step = Step::start(&tool, dir.path(), feed, Capture::Discard, Arc::default()).unwrap();
    let end = until_done(&mut step);
    assert!(end.exited_ok() && !end.ok());
    assert!(end
        .failure()
        .starts_with("could not feed the input to psql"));
}

#[test]
fn dump_run_as_job() {
    let dir = TempDir::new("steps");
    let final_path = dir.path().join("x.dump");
    let spec = RunSpec {
        program: PathBuf::from("/bin/sh"),
        args: vec!["-c".into(), "printf abc".into()],
        output: OutputKind::Stdout {
            partial: crate::files::paths::partial_path(&final_path),
        },
        final_path: final_path.clone(),
        stderr_path: dir.path().join("x.stderr"),
        expect: crate::dump::run::ExpectedOutput::AnyBytes,
        encrypt_to: Vec::new(),
    };
    let mut run: Box<dyn JobRun> = Box::new(DumpRun::start(spec).unwrap());
    match poll_job(run.as_mut()) {
        JobResult::Dump(RunResult::Succeeded { size, .. }) => assert_eq!(size, 3),
        other => panic!("{other:?}"),
    }
    assert_eq!(run.progress(), 3);
    assert!(run.poll().is_none());
    run.cancel();
    assert!(final_path.exists());
}

#[test]
fn read_chars_is_the_rchar_line() {
    let io = "rchar: 1234\nwchar: 99\nsyscr: 3\nread_bytes: 4096\n";
    assert_eq!(read_chars(io), Some(1234));
    assert_eq!(read_chars("wchar: 1\n"), None);
}

#[test]
fn bytes_read_grows_as_the_child_reads() {
    let dir = TempDir::new("step-bytes-read");
    let input = dir.path().join("in");
    fs::write(&input, b"xxxxxxxxx\n".repeat(30_000)).unwrap();
    // The shell reads the file itself: a child's reads would not count.
    let tool = fake_tool(
        &dir,
        "reader",
        &format!(
            "while read -r l; do :; done < '{}'; sleep 5",
            input.display()
        ),
    );
    let mut step = Step::start(
        &tool,
        dir.path(),
        Feed::Nothing,
        Capture::Discard,
        Arc::default(),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    // The shell's own reads count too, so the file's size is a lower bound.
    while step.bytes_read() < 300_000 {
        assert!(Instant::now() < deadline, "read {}", step.bytes_read());
        std::thread::sleep(Duration::from_millis(20));
    }
    step.stop();
}
