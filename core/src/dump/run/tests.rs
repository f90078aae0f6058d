//! DumpRun driven by small shell programs standing in for pg_dump.

use super::*;
use crate::test_support::TempDir;
use sha2::{Digest, Sha256};
use std::time::Instant;

const SHA_ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
const SHA_X: &str = "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881";

fn sh_spec(dir: &TempDir, script: &str, extra: &[&Path], directory: bool) -> RunSpec {
    let final_path = dir
        .path()
        .join(if directory { "out.dir" } else { "out.dump" });
    let partial = crate::files::paths::partial_path(&final_path);
    let mut args: Vec<OsString> = vec!["-c".into(), script.into()];
    args.extend(extra.iter().map(|p| p.as_os_str().to_owned()));
    RunSpec {
        program: PathBuf::from("/bin/sh"),
        args,
        output: if directory {
            OutputKind::Directory { partial }
        } else {
            OutputKind::Stdout { partial }
        },
        final_path,
        stderr_path: dir.path().join("out.stderr"),
        expect: ExpectedOutput::AnyBytes,
        encrypt_to: Vec::new(),
    }
}

fn poll_until_done(run: &mut DumpRun) -> RunResult {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(r) = run.poll() {
            return r;
        }
        assert!(Instant::now() < deadline, "run did not finish");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn streamed_success() {
    let dir = TempDir::new("run");
    let spec = sh_spec(&dir, "printf abc; echo progress >&2; exit 0", &[], false);
    let (final_path, partial) = (
        spec.final_path.clone(),
        spec.output.partial().unwrap().to_owned(),
    );
    let mut run = DumpRun::start(spec).unwrap();
    let result = poll_until_done(&mut run);
    assert_eq!(
        result,
        RunResult::Succeeded {
            size: 3,
            sha256: SHA_ABC.into(),
            manifest: None
        }
    );
    assert_eq!(run.progress(), 3);
    assert_eq!(fs::read(&final_path).unwrap(), b"abc");
    assert!(!partial.exists());
    assert!(!dir.path().join("out.stderr").exists());
    assert_eq!(run.poll(), None);
    drop(run);
    assert!(
        final_path.exists(),
        "drop after success must keep the backup"
    );
}

#[test]
fn echo_program() {
    let dir = TempDir::new("run");
    let final_path = dir.path().join("e.sql");
    let spec = RunSpec {
        program: PathBuf::from("/bin/echo"),
        args: vec!["abc".into()],
        output: OutputKind::Stdout {
            partial: crate::files::paths::partial_path(&final_path),
        },
        final_path: final_path.clone(),
        stderr_path: dir.path().join("e.stderr"),
        expect: crate::dump::run::ExpectedOutput::AnyBytes,
        encrypt_to: Vec::new(),
    };
    let mut run = DumpRun::start(spec).unwrap();
    match poll_until_done(&mut run) {
        RunResult::Succeeded { size, sha256, .. } => {
            assert_eq!(size, 4);
            assert_eq!(sha256, hex::encode(Sha256::digest(b"abc\n")));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fs::read(&final_path).unwrap(), b"abc\n");
}

#[test]
fn failure_reports_stderr_and_cleans_up() {
    let dir = TempDir::new("run");
    let script = "printf partial; echo 'pg_dump: error: connection to server failed' >&2; exit 1";
    let spec = sh_spec(&dir, script, &[], false);
    let (final_path, partial) = (
        spec.final_path.clone(),
        spec.output.partial().unwrap().to_owned(),
    );
    let mut run = DumpRun::start(spec).unwrap();
    assert_eq!(
        poll_until_done(&mut run),
        RunResult::Failed {
            message: "sh exited with code 1: pg_dump: error: connection to server failed".into()
        }
    );
    assert!(!partial.exists());
    assert!(!final_path.exists());
    assert!(!dir.path().join("out.stderr").exists());
    assert_eq!(run.poll(), None);
}

#[test]
fn failure_without_stderr() {
    let dir = TempDir::new("run");
    let mut run = DumpRun::start(sh_spec(&dir, "exit 2", &[], false)).unwrap();
    assert_eq!(
        poll_until_done(&mut run),
        RunResult::Failed {
            message: "sh exited with code 2".into()
        }
    );
}

#[test]
fn cancel_is_quick_and_leaves_nothing() {
    let dir = TempDir::new("run");
    let spec = sh_spec(&dir, "printf abc; sleep 30", &[], false);
    let (final_path, partial) = (
        spec.final_path.clone(),
        spec.output.partial().unwrap().to_owned(),
    );
    let mut run = DumpRun::start(spec).unwrap();
    let pid = run.child_pid().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while run.progress() < 3 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(run.poll(), None);
    let t = Instant::now();
    run.cancel();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, 0) }, -1);
    assert!(!partial.exists());
    assert!(!final_path.exists());
    assert!(!dir.path().join("out.stderr").exists());
    assert_eq!(run.poll(), None);
    run.cancel();
}

#[test]
fn cancel_escalates_for_stubborn_children() {
    let dir = TempDir::new("run");
    let spec = sh_spec(&dir, "trap '' TERM; sleep 30", &[], false);
    let partial = spec.output.partial().unwrap().to_owned();
    let mut run = DumpRun::start(spec).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    run.cancel();
    let took = t.elapsed();
    assert!(took >= CANCEL_GRACE && took < CANCEL_GRACE * 3, "{took:?}");
    assert!(!partial.exists());
}

#[test]
fn drop_kills_child_and_removes_partial() {
    let dir = TempDir::new("run");
    let spec = sh_spec(&dir, "printf abc; sleep 30", &[], false);
    let partial = spec.output.partial().unwrap().to_owned();
    let run = DumpRun::start(spec).unwrap();
    let pid = run.child_pid().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while run.progress() < 3 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    let t = Instant::now();
    drop(run);
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, 0) }, -1);
    assert!(!partial.exists());
}

#[test]
fn directory_output() {
    let dir = TempDir::new("run");
    let final_path = dir.path().join("out.dir");
    let partial = crate::files::paths::partial_path(&final_path);
    let spec = sh_spec(
        &dir,
        "mkdir -p \"$0\"; printf x > \"$0/toc.dat\"",
        &[&partial],
        true,
    );
    let mut run = DumpRun::start(spec).unwrap();
    let result = poll_until_done(&mut run);
    let expected_text = format!("{SHA_X}  1  toc.dat\n");
    let expected_sha = hex::encode(Sha256::digest(expected_text.as_bytes()));
    match result {
        RunResult::Succeeded {
            size,
            sha256,
            manifest: Some(m),
        } => {
            assert_eq!(size, 1);
            assert_eq!(sha256, expected_sha);
            assert_eq!(m.to_text(), expected_text);
            assert_eq!(m.files[0].sha256, SHA_X);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fs::read(final_path.join("toc.dat")).unwrap(), b"x");
    assert!(!partial.exists());
}

#[test]
fn failed_directory_output_is_removed() {
    let dir = TempDir::new("run");
    let partial = crate::files::paths::partial_path(&dir.path().join("out.dir"));
    let spec = sh_spec(
        &dir,
        "mkdir -p \"$0\"; printf x > \"$0/toc.dat\"; echo 'pg_dump: error: disk full' >&2; exit 1",
        &[&partial],
        true,
    );
    let mut run = DumpRun::start(spec).unwrap();
    assert_eq!(
        poll_until_done(&mut run),
        RunResult::Failed {
            message: "sh exited with code 1: pg_dump: error: disk full".into()
        }
    );
    assert!(!partial.exists());
}

#[test]
fn existing_final_path_is_not_overwritten() {
    let dir = TempDir::new("run");
    let spec = sh_spec(&dir, "printf abc", &[], false);
    fs::write(&spec.final_path, b"old").unwrap();
    let (final_path, partial) = (
        spec.final_path.clone(),
        spec.output.partial().unwrap().to_owned(),
    );
    let mut run = DumpRun::start(spec).unwrap();
    match poll_until_done(&mut run) {
        RunResult::Failed { message } => {
            assert!(message.starts_with("sh succeeded but its output could not be saved"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fs::read(&final_path).unwrap(), b"old");
    assert!(!partial.exists());
}

#[test]
fn missing_program_fails_to_start() {
    let dir = TempDir::new("run");
    let mut spec = sh_spec(&dir, "", &[], false);
    spec.program = PathBuf::from("/nonexistent/pg_dump");
    let partial = spec.output.partial().unwrap().to_owned();
    let err = DumpRun::start(spec).err().unwrap();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    assert!(!partial.exists());
    assert!(!dir.path().join("out.stderr").exists());
}

#[test]
fn a_full_disk_is_reported_instead_of_the_childs_sigpipe() {
    let dir = TempDir::new("run");
    // `yes` writes until the pipe closes; the copy into /dev/full fails with ENOSPC at once.
    let spec = sh_spec(&dir, "exec yes", &[], false);
    let partial = spec.output.partial().unwrap().to_owned();
    let stderr = fs::File::create(&spec.stderr_path).unwrap();
    let mut child = ChildGuard::spawn(&spec.program, &spec.args, true, stderr).unwrap();
    let full = OpenOptions::new().write(true).open("/dev/full").unwrap();
    let progress = Arc::new(AtomicU64::new(0));
    let writer =
        StreamWriter::spawn_into(child.take_stdout().unwrap(), full, progress.clone()).unwrap();
    let mut run = DumpRun {
        spec,
        child: Some(child),
        writer: Some(Sink::File(writer)),
        progress,
        finished: false,
        completing: None,
        hasher: None,
    };
    let RunResult::Failed { message } = poll_until_done(&mut run) else {
        panic!("a dump into a full filesystem succeeded");
    };
    let expected = format!(
        "the filesystem is full (ENOSPC): could not write {}: No space left on device",
        partial.display()
    );
    assert!(message.starts_with(&expected), "{message}");
}

#[test]
fn an_empty_or_headless_output_is_a_failure_and_leaves_nothing() {
    let cases: [(&str, bool, ExpectedOutput, Option<&str>); 7] = [
        (
            "exit 0",
            false,
            ExpectedOutput::AnyBytes,
            Some("wrote 0 bytes"),
        ),
        ("printf abc", false, ExpectedOutput::AnyBytes, None),
        (
            "printf abc",
            false,
            ExpectedOutput::CustomArchive,
            Some("no table of contents"),
        ),
        (
            "printf PGDMP; printf rest",
            false,
            ExpectedOutput::CustomArchive,
            None,
        ),
        (
            "printf 'toc.dat\\000rest'",
            false,
            ExpectedOutput::TarArchive,
            None,
        ),
        (
            "mkdir -p \"$1\" && printf x > \"$1/1.dat\"",
            true,
            ExpectedOutput::DirectoryArchive,
            Some("no table of contents (toc.dat)"),
        ),
        (
            "mkdir -p \"$1\" && printf x > \"$1/toc.dat\"",
            true,
            ExpectedOutput::DirectoryArchive,
            None,
        ),
    ];
    for (script, directory, expect, refusal) in cases {
        let dir = TempDir::new("run");
        let mut spec = sh_spec(&dir, script, &[], directory);
        if directory {
            let partial = spec.output.partial().unwrap().to_owned();
            spec.args = vec!["-c".into(), script.into(), "sh".into(), partial.into()];
        }
        spec.expect = expect;
        let final_path = spec.final_path.clone();
        let partial = spec.output.partial().unwrap().to_owned();
        let mut run = DumpRun::start(spec).unwrap();
        match (poll_until_done(&mut run), refusal) {
            (RunResult::Failed { message }, Some(want)) => {
                assert!(message.contains(want), "{script}: {message}");
                assert!(
                    message.starts_with("sh exited 0 but "),
                    "{script}: {message}"
                );
                assert!(!final_path.exists() && !partial.exists(), "{script}");
            }
            (RunResult::Succeeded { .. }, None) => assert!(final_path.exists(), "{script}"),
            (other, _) => panic!("{script}: {other:?}"),
        }
    }
}

#[test]
fn encrypted_output_is_age_and_its_checksum_is_of_the_stored_bytes() {
    use age::secrecy::ExposeSecret;
    use std::io::Read;
    let dir = TempDir::new("run-age");
    let id = age::x25519::Identity::generate();
    let key = dir.path().join("key.txt");
    fs::write(&key, id.to_string().expose_secret()).unwrap();
    let mut spec = sh_spec(&dir, "printf PGDMPabc; exit 0", &[], false);
    spec.encrypt_to = vec![id.to_public().to_string()];
    let final_path = spec.final_path.clone();
    let mut run = DumpRun::start(spec).unwrap();
    let RunResult::Succeeded { size, sha256, .. } = poll_until_done(&mut run) else {
        panic!("the encrypted dump failed");
    };
    let stored = fs::read(&final_path).unwrap();
    assert!(stored.starts_with(crate::crypt::AGE_MAGIC));
    assert!(!stored.windows(5).any(|w| w == b"PGDMP"));
    assert_eq!(size, stored.len() as u64);
    assert_eq!(sha256, hex::encode(Sha256::digest(&stored)));
    let mut plain = Vec::new();
    crate::crypt::decrypting_reader(
        Box::new(fs::File::open(&final_path).unwrap()),
        Some(&key),
        "x",
    )
    .unwrap()
    .read_to_end(&mut plain)
    .unwrap();
    assert_eq!(plain, b"PGDMPabc");
}
