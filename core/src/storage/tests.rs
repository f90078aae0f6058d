//! The stores against real targets: a SeaweedFS server for S3 (see
//! `test_support::seaweed`) and scratch directories for file storage.

use super::*;
use crate::error::ErrorKind;
use crate::test_support::seaweed::{self, closed_port, Seaweed, BUCKET, QUIET_BUCKET};
use crate::test_support::TempDir;
use md5::Md5;
use sha2::{Digest, Sha256};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread::ThreadId;

const MIB: u64 = 1024 * 1024;
const PART: u64 = 5 * MIB;

/// Deterministic, incompressible-looking bytes.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        out.extend_from_slice(&(x ^ (x >> 29)).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn sha_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The ETag S3 gives `bytes` when uploaded in parts of `part` bytes (one PUT
/// when they fit in one part), computed independently of the store.
fn s3_etag(bytes: &[u8], part: u64) -> String {
    if bytes.len() as u64 <= part {
        return hex::encode(Md5::digest(bytes));
    }
    let chunks: Vec<&[u8]> = bytes.chunks(part as usize).collect();
    let mut all = Md5::new();
    for c in &chunks {
        all.update(Md5::digest(c));
    }
    format!("{}-{}", hex::encode(all.finalize()), chunks.len())
}

/// Whether the calling thread has (at least) the usual signals blocked.
fn signals_blocked() -> bool {
    // SAFETY: reading the thread's mask into a zeroed sigset_t.
    unsafe {
        let mut current: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut current);
        [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGALRM,
            libc::SIGCHLD,
            libc::SIGPIPE,
        ]
        .iter()
        .all(|s| libc::sigismember(&current, *s) == 1)
    }
}

/// Records whether it was only ever called off the test's thread with
/// signals blocked.
#[derive(Clone)]
struct ThreadProbe {
    test_thread: ThreadId,
    ok: Arc<AtomicBool>,
    used: Arc<AtomicBool>,
}

impl ThreadProbe {
    fn new() -> Self {
        ThreadProbe {
            test_thread: std::thread::current().id(),
            ok: Arc::new(AtomicBool::new(true)),
            used: Arc::new(AtomicBool::new(false)),
        }
    }

    fn observe(&self) {
        self.used.store(true, Ordering::SeqCst);
        if std::thread::current().id() == self.test_thread || !signals_blocked() {
            self.ok.store(false, Ordering::SeqCst);
        }
    }

    fn assert_ok(&self) {
        assert!(self.used.load(Ordering::SeqCst), "never called");
        assert!(
            self.ok.load(Ordering::SeqCst),
            "called on the caller's thread or with signals deliverable"
        );
    }
}

/// A reader over `bytes` that fails after `fail_after` bytes, if given.
struct TestReader {
    bytes: io::Cursor<Vec<u8>>,
    fail_after: Option<u64>,
    probe: ThreadProbe,
}

impl TestReader {
    fn new(bytes: Vec<u8>, probe: &ThreadProbe) -> Self {
        TestReader {
            bytes: io::Cursor::new(bytes),
            fail_after: None,
            probe: probe.clone(),
        }
    }
}

impl io::Read for TestReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.probe.observe();
        if let Some(limit) = self.fail_after {
            if self.bytes.position() >= limit {
                return Err(io::Error::other("the producer died"));
            }
        }
        self.bytes.read(buf)
    }
}

/// A writer collecting into a shared buffer.
#[derive(Clone)]
struct Collect {
    bytes: Arc<Mutex<Vec<u8>>>,
    probe: ThreadProbe,
}

impl Collect {
    fn new(probe: &ThreadProbe) -> Self {
        Collect {
            bytes: Arc::default(),
            probe: probe.clone(),
        }
    }

    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut self.bytes.lock().unwrap())
    }
}

impl io::Write for Collect {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.probe.observe();
        self.bytes.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Whether the upload folder `id` leaves the filer's listing within 10 s: under load the filer
/// may list a folder for a moment after the abort removed it.
fn gone_soon(server: &Seaweed, uploads: &str, id: &str) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if !server.filer_names(uploads).iter().any(|n| n == id) {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn s3_store(store: &Store) -> &S3Store {
    match store {
        Store::S3(s) => s,
        Store::File(_) => panic!("not an S3 store"),
    }
}

/// Uploads, checks the pending upload, completes, and checks what the
/// store holds and what a download gives back.
fn round_trip(store: &Store, key: &str, bytes: Vec<u8>) -> PendingUpload {
    let probe = ThreadProbe::new();
    let progress = Arc::new(AtomicU64::new(0));
    let len = bytes.len() as u64;
    let sha = sha_hex(&bytes);
    let pending = store
        .upload(
            key,
            TestReader::new(bytes.clone(), &probe),
            progress.clone(),
            Arc::default(),
        )
        .unwrap();
    if len > 0 {
        probe.assert_ok();
    }
    assert_eq!(progress.load(Ordering::SeqCst), len);
    assert_eq!(pending.key(), key);
    assert_eq!(pending.size(), len);
    assert_eq!(pending.sha256(), sha);
    // Nothing is visible before completion.
    assert_eq!(
        store.head(key).unwrap(),
        None,
        "{key} visible before completion"
    );
    pending.complete(store).unwrap();

    let info = store.head(key).unwrap().expect("completed object");
    assert_eq!(info.key, key);
    assert_eq!(info.size, len);
    let age = chrono::Utc::now() - info.last_modified;
    assert!(age.num_seconds().abs() < 300, "{info:?}");

    let probe = ThreadProbe::new();
    let sink = Collect::new(&probe);
    let progress = Arc::new(AtomicU64::new(0));
    let got = store.download(key, sink.clone(), progress.clone()).unwrap();
    if len > 0 {
        probe.assert_ok();
    }
    assert_eq!(
        got,
        Downloaded {
            size: len,
            sha256: sha
        }
    );
    assert_eq!(progress.load(Ordering::SeqCst), len);
    assert!(sink.take() == bytes, "downloaded bytes differ");
    pending
}

#[test]
fn s3_check_accepts_good_credentials_and_refuses_the_rest() {
    let server = Seaweed::shared();
    server.fresh_store("check", PART).check().unwrap();

    let wrong = Credentials::new(seaweed::ACCESS_KEY, "not-the-secret-value", None);
    let e = server
        .store_in(BUCKET, "x", PART, Some(wrong))
        .check()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidAuthorization, "{e:?}");
    assert!(!format!("{e:?}").contains("not-the-secret-value"), "{e:?}");
    assert!(e.message.contains("s3://backups/x"), "{e:?}");

    let unknown = Credentials::new("nobody", seaweed::SECRET_KEY, None);
    let e = server
        .store_in(BUCKET, "", PART, Some(unknown))
        .check()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidAuthorization, "{e:?}");
    assert!(!format!("{e:?}").contains(seaweed::SECRET_KEY), "{e:?}");

    let e = server.store_in(BUCKET, "", PART, None).check().unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::InvalidAuthorization,
        "anonymous: {e:?}"
    );

    let e = server
        .store_in("no-such-bucket", "p", PART, Some(seaweed::credentials()))
        .check()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UndefinedObject, "{e:?}");
    assert!(e.message.contains("NoSuchBucket"), "{e:?}");
    let r: RequestError = e.into();
    assert_eq!(r.kind.sqlstate(), "42704");
    assert!(r.hint.starts_with("Create the bucket"), "{r:?}");
}

#[test]
fn s3_check_reports_an_endpoint_nobody_listens_on() {
    let url = StorageUrl::parse("s3://backups").unwrap();
    let options = serde_json::json!({
        "endpoint": format!("http://127.0.0.1:{}", closed_port()),
        "path_style": true,
        "allow_http": true,
    });
    let options = StorageOptions::from_json(&url, &options, false).unwrap();
    let store = Store::new(&url, &options, Some(seaweed::credentials())).unwrap();
    let started = std::time::Instant::now();
    let e = store.check().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionFailure, "{e:?}");
    assert_eq!(e.kind().sqlstate(), "08001");
    assert!(
        e.message.starts_with("listing s3://backups failed: "),
        "{e:?}"
    );
    assert!(e.message.contains("(endpoint http://127.0.0.1:"), "{e:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn s3_uploads_of_every_size_round_trip() {
    let server = Seaweed::shared();
    let store = server.fresh_store("sizes", PART);
    let s3 = s3_store(&store);
    for (key, len, parts) in [
        ("empty", 0, 0),
        ("one-byte", 1, 0),
        ("one-part", PART as usize, 0),
        ("db/two-and-a-half", (PART * 5 / 2) as usize, 3),
    ] {
        let bytes = data(len, len as u64);
        let pending = round_trip(&store, key, bytes.clone());
        assert_eq!(pending.parts(), parts, "{key}");
        assert_eq!(pending.expected_etag(), s3_etag(&bytes, PART), "{key}");
        assert_eq!(pending.upload_id().is_some(), parts > 0, "{key}");
        let info = store.head(key).unwrap().unwrap();
        assert_eq!(info.etag.as_deref(), Some(pending.expected_etag()), "{key}");
        // Single PUTs carry the SHA-256 as metadata; multipart uploads cannot.
        let sha = s3.user_metadata(key, "sha256").unwrap();
        if parts == 0 {
            assert_eq!(sha.as_deref(), Some(pending.sha256()), "{key}");
        }
    }
}

#[test]
fn s3_parts_in_flight_are_bounded() {
    let server = Seaweed::shared();
    let store = server.fresh_store("bounded", PART);
    let bytes = data(60 * MIB as usize, 60);
    let gauge = Arc::new(upload::PartGauge::default());
    let progress = Arc::new(AtomicU64::new(0));
    let probe = ThreadProbe::new();
    let pending = s3_store(&store)
        .upload(
            "big",
            TestReader::new(bytes.clone(), &probe),
            progress.clone(),
            Arc::default(),
            Some(gauge.clone()),
        )
        .unwrap();
    let max = gauge.max();
    assert!(
        (1..=MAX_PARTS_IN_FLIGHT).contains(&max),
        "{max} parts in flight"
    );
    assert_eq!(pending.parts(), 12);
    assert_eq!(progress.load(Ordering::SeqCst), 60 * MIB);
    assert_eq!(pending.expected_etag(), s3_etag(&bytes, PART));
    pending.complete(&store).unwrap();
    let info = store.head("big").unwrap().unwrap();
    assert_eq!(info.size, 60 * MIB);
    assert_eq!(info.etag.as_deref(), Some(pending.expected_etag()));
}

#[test]
fn s3_aborted_and_failed_uploads_leave_nothing() {
    let server = Seaweed::shared();
    let uploads = format!("/buckets/{QUIET_BUCKET}/.uploads");
    let store = server.store_in(QUIET_BUCKET, "aborts", PART, Some(seaweed::credentials()));
    let before = server.filer_names(&uploads);

    // Aborted by the pending upload itself.
    let probe = ThreadProbe::new();
    let bytes = data((PART * 2 + 7) as usize, 2);
    let pending = store
        .upload(
            "aborted",
            TestReader::new(bytes, &probe),
            Arc::default(),
            Arc::default(),
        )
        .unwrap();
    let id = pending.upload_id().unwrap().to_string();
    assert!(server.filer_names(&uploads).contains(&id), "{id} not open");
    pending.abort(&store).unwrap();
    assert!(gone_soon(&server, &uploads, &id), "{id} still open");
    assert_eq!(store.head("aborted").unwrap(), None);
    // Twice is fine, and so is completing it after: that fails cleanly.
    pending.abort(&store).unwrap();
    assert!(pending.complete(&store).is_err());
    assert_eq!(store.head("aborted").unwrap(), None);

    // Aborted after a "crash", from the recorded id only.
    let pending = store
        .upload(
            "crashed",
            TestReader::new(data((PART + 1) as usize, 3), &probe),
            Arc::default(),
            Arc::default(),
        )
        .unwrap();
    let id = pending.upload_id().unwrap().to_string();
    drop(pending);
    store.abort_upload("crashed", &id).unwrap();
    store.abort_upload("crashed", &id).unwrap();
    assert!(gone_soon(&server, &uploads, &id), "{id} still open");
    assert_eq!(store.head("crashed").unwrap(), None);

    // The producer fails after two and a half parts: the error says so, and
    // the multipart upload is gone.
    let mut reader = TestReader::new(data((PART * 4) as usize, 4), &probe);
    reader.fail_after = Some(PART * 5 / 2);
    let e = store
        .upload("failed", reader, Arc::default(), Arc::default())
        .unwrap_err();
    assert_eq!(e.failure, Failure::SourceFailed, "{e:?}");
    assert_eq!(e.kind().sqlstate(), "58000");
    assert!(e.message.contains("the producer died"), "{e:?}");
    assert_eq!(store.head("failed").unwrap(), None);
    assert_eq!(server.filer_names(&uploads), before);

    // Failing within the first part never started an upload.
    let mut reader = TestReader::new(data(1000, 5), &probe);
    reader.fail_after = Some(10);
    let e = store
        .upload("failed-early", reader, Arc::default(), Arc::default())
        .unwrap_err();
    assert_eq!(e.failure, Failure::SourceFailed, "{e:?}");
    assert_eq!(store.head("failed-early").unwrap(), None);
    assert_eq!(server.filer_names(&uploads), before);
    assert!(store.list("").unwrap().is_empty());
}

/// Stops the server it holds once `after` bytes have been read.
struct KillingReader {
    bytes: io::Cursor<Vec<u8>>,
    after: u64,
    server: Arc<Mutex<Option<Seaweed>>>,
}

impl io::Read for KillingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.bytes.position() >= self.after {
            // Dropping it kills weed and waits until it is gone.
            self.server.lock().unwrap().take();
        }
        self.bytes.read(buf)
    }
}

#[test]
fn s3_a_server_dying_mid_upload_fails_it_and_names_the_upload_left() {
    // A server of its own: this test kills it.
    let server = Seaweed::start();
    let store = server.fresh_store("dying", PART);
    let holder = Arc::new(Mutex::new(Some(server)));
    let reader = KillingReader {
        bytes: io::Cursor::new(data((PART * 6) as usize, 6)),
        // Past what an upload holds before any request has to succeed (3 parts in flight and
        // 1 being filled): the upload was started by then, so the server dies under a part.
        after: PART * 4 + 1,
        server: holder.clone(),
    };
    let e = store
        .upload("dies", reader, Arc::default(), Arc::default())
        .unwrap_err();
    assert!(holder.lock().unwrap().is_none());
    assert_eq!(e.kind(), ErrorKind::ConnectionFailure, "{e:?}");
    assert!(e.message.contains("(part "), "{e:?}");
    assert!(
        e.message.contains("aborting the upload failed too"),
        "{e:?}"
    );
    assert!(e.message.contains("must be aborted later"), "{e:?}");
}

#[test]
fn s3_a_wrong_etag_deletes_the_object() {
    let server = Seaweed::shared();
    let store = server.fresh_store("etag", PART);
    for (key, len) in [("small", 10), ("large", (PART + 10) as usize)] {
        let mut pending = store
            .upload(
                key,
                io::Cursor::new(data(len, 9)),
                Arc::default(),
                Arc::default(),
            )
            .unwrap();
        pending.expected_etag = "0123456789abcdef0123456789abcdef".into();
        let e = pending.complete(&store).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::DataCorrupted, "{e:?}");
        assert_eq!(e.kind().sqlstate(), "XX001");
        assert!(e.message.contains("it was deleted"), "{e:?}");
        assert_eq!(store.head(key).unwrap(), None);
    }
}

#[test]
fn s3_small_objects_listing_and_deletion() {
    let server = Seaweed::shared();
    let store = server.fresh_store("objects", PART);
    assert!(store.list("").unwrap().is_empty());
    for key in ["a/1.json", "a/2.json", "b/3", "ab"] {
        store.put_bytes(key, key.as_bytes().to_vec()).unwrap();
    }
    assert_eq!(store.get_bytes("a/2.json").unwrap(), b"a/2.json");
    let keys = |prefix: &str| -> Vec<String> {
        store
            .list(prefix)
            .unwrap()
            .into_iter()
            .map(|i| i.key)
            .collect()
    };
    assert_eq!(keys(""), ["a/1.json", "a/2.json", "ab", "b/3"]);
    assert_eq!(keys("a"), ["a/1.json", "a/2.json"]);
    assert_eq!(keys("a/"), ["a/1.json", "a/2.json"]);
    assert!(keys("c").is_empty());
    let listed = store.list("b").unwrap();
    assert_eq!(listed[0].size, 3);
    assert_eq!(
        listed[0].etag.as_deref(),
        Some(s3_etag(b"b/3", PART).as_str())
    );

    store.delete("a/1.json").unwrap();
    store.delete("a/1.json").unwrap();
    store.delete("never-there").unwrap();
    assert_eq!(keys("a"), ["a/2.json"]);
    assert_eq!(store.head("a/1.json").unwrap(), None);

    let e = store.get_bytes("a/1.json").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::FileMissing, "{e:?}");
    let e = store.delete("../x").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidParameter, "{e:?}");
}

#[test]
fn s3_downloads_report_missing_keys_and_closed_sinks() {
    let server = Seaweed::shared();
    let store = server.fresh_store("download", PART);
    let probe = ThreadProbe::new();
    let e = store
        .download("missing", Collect::new(&probe), Arc::default())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::FileMissing, "{e:?}");
    assert_eq!(e.kind().sqlstate(), "58P01");
    assert!(e.message.contains("\"missing\""), "{e:?}");

    let bytes = data((3 * MIB) as usize, 7);
    store
        .upload(
            "obj",
            io::Cursor::new(bytes),
            Arc::default(),
            Arc::default(),
        )
        .unwrap()
        .complete(&store)
        .unwrap();
    // A pipe whose reader has gone: the child we stream into died.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let e = store.download("obj", writer, Arc::default()).unwrap_err();
    assert!(e.is_sink_closed(), "{e:?}");
    assert_eq!(e.failure, Failure::SinkClosed);
}

#[test]
fn s3_store_debug_shows_no_secret() {
    let server = Seaweed::shared();
    let store = server.fresh_store("debug", PART);
    let shown = format!("{store:?}");
    assert!(!shown.contains(seaweed::SECRET_KEY), "{shown}");
    assert!(!shown.contains(seaweed::ACCESS_KEY), "{shown}");
    assert!(shown.contains("s3://backups/debug-"), "{shown}");
}

fn file_store(dir: &TempDir) -> Store {
    let url = StorageUrl::parse(&format!("file://{}/store", dir.path().display())).unwrap();
    let options = StorageOptions::from_json(&url, &serde_json::json!({}), false).unwrap();
    Store::new(&url, &options, None).unwrap()
}

#[test]
fn file_uploads_round_trip_and_publish_only_on_completion() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("file-store");
    let store = file_store(&dir);
    store.check().unwrap();
    let root = dir.path().join("store");
    let mode = std::fs::metadata(&root).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    for (key, len) in [
        ("empty", 0),
        ("one", 1),
        ("db/x/big.dump", (3 * MIB) as usize),
    ] {
        let bytes = data(len, 1);
        let pending = round_trip(&store, key, bytes.clone());
        assert_eq!(pending.expected_etag(), hex::encode(Md5::digest(&bytes)));
        let mode = std::fs::metadata(root.join(key))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
    // While pending, only the .partial file exists, and it is not listed.
    let pending = store
        .upload(
            "late",
            io::Cursor::new(b"abc".to_vec()),
            Arc::default(),
            Arc::default(),
        )
        .unwrap();
    assert_eq!(pending.upload_id(), Some("late.partial"));
    let nested = store
        .upload(
            "d/e/late",
            io::Cursor::new(b"abc".to_vec()),
            Arc::default(),
            Arc::default(),
        )
        .unwrap();
    assert_eq!(nested.upload_id(), Some("d/e/late.partial"));
    store
        .abort_upload("d/e/late", nested.upload_id().unwrap())
        .unwrap();
    assert!(!root.join("d/e/late.partial").exists());
    assert!(root.join("late.partial").is_file());
    assert!(store.list("").unwrap().iter().all(|i| i.key != "late"));
    pending.abort(&store).unwrap();
    assert!(!root.join("late.partial").exists());
    store.abort_upload("late", "late.partial").unwrap();

    let keys: Vec<String> = store.list("").unwrap().into_iter().map(|i| i.key).collect();
    assert_eq!(keys, ["db/x/big.dump", "empty", "one"]);
    assert_eq!(store.list("db").unwrap().len(), 1);
    assert!(store.list("nope/").unwrap().is_empty());
}

#[test]
fn file_store_small_objects_errors_and_mismatches() {
    let dir = TempDir::new("file-store");
    let store = file_store(&dir);
    store.put_bytes("s/side.json", b"{}".to_vec()).unwrap();
    assert_eq!(store.get_bytes("s/side.json").unwrap(), b"{}");
    assert_eq!(store.head("s/side.json").unwrap().unwrap().size, 2);
    assert_eq!(store.head("s").unwrap(), None);
    assert_eq!(store.head("s/side.json/x").unwrap(), None);
    store.delete("s/side.json").unwrap();
    store.delete("s/side.json").unwrap();
    assert_eq!(store.head("s/side.json").unwrap(), None);
    let e = store.get_bytes("s/side.json").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::FileMissing, "{e:?}");

    let probe = ThreadProbe::new();
    let e = store
        .download("missing", Collect::new(&probe), Arc::default())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::FileMissing, "{e:?}");

    let mut reader = TestReader::new(data(1 << 20, 1), &probe);
    reader.fail_after = Some(300_000);
    let e = store
        .upload("failed", reader, Arc::default(), Arc::default())
        .unwrap_err();
    assert_eq!(e.failure, Failure::SourceFailed, "{e:?}");
    assert!(!dir.path().join("store/failed.partial").exists());
    assert!(store.list("").unwrap().is_empty());

    let e = store
        .upload("x.partial", io::empty(), Arc::default(), Arc::default())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidParameter, "{e:?}");

    store
        .upload(
            "obj",
            io::Cursor::new(data(1 << 20, 2)),
            Arc::default(),
            Arc::default(),
        )
        .unwrap()
        .complete(&store)
        .unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let e = store.download("obj", writer, Arc::default()).unwrap_err();
    assert!(e.is_sink_closed(), "{e:?}");

    // An upload belongs to the store it was started on.
    let other_dir = TempDir::new("file-store");
    let other = file_store(&other_dir);
    let pending = store
        .upload(
            "mine",
            io::Cursor::new(b"x".to_vec()),
            Arc::default(),
            Arc::default(),
        )
        .unwrap();
    let e = pending.complete(&other).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidParameter, "{e:?}");
    pending.complete(&store).unwrap();
}

#[test]
fn file_check_fails_where_no_directory_can_be() {
    let dir = TempDir::new("file-store");
    std::fs::write(dir.path().join("store"), b"a file").unwrap();
    let e = file_store(&dir).check().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ExternalFailure, "{e:?}");
    assert!(e.message.contains("checking file://"), "{e:?}");
    assert!(e.message.ends_with("is not a directory"), "{e:?}");
}

#[test]
fn store_new_refuses_options_of_another_kind() {
    let file = StorageUrl::parse("file:///var/b").unwrap();
    let s3 = StorageUrl::parse("s3://bucket").unwrap();
    let s3_options = StorageOptions::from_json(&s3, &serde_json::json!({}), false).unwrap();
    let e = Store::new(&file, &s3_options, None).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidParameter);
    assert!(Store::new(&s3, &StorageOptions::File, None).is_err());
    // Parsing and building never touch the network.
    let store = Store::new(&s3, &s3_options, None).unwrap();
    assert_eq!(store.url(), s3);
}

#[test]
fn hints_are_sentences() {
    let url = StorageUrl::parse("s3://bucket").unwrap();
    let dir = TempDir::new("hints");
    let missing = dir.path().join("missing");
    let results: Vec<RequestError> = vec![
        StorageUrl::parse("x").unwrap_err(),
        StorageUrl::parse("s3://B").unwrap_err(),
        StorageUrl::parse("s3://bucket//x").unwrap_err(),
        StorageUrl::parse("file://h/x").unwrap_err(),
        StorageUrl::parse("file:///a%b").unwrap_err(),
        StorageUrl::parse("file:///a/../b").unwrap_err(),
        StorageUrl::parse("file:///").unwrap_err(),
        url::check_key("a//b").unwrap_err(),
        StorageOptions::from_json(&url, &serde_json::json!([]), false).unwrap_err(),
        StorageOptions::from_json(&url, &serde_json::json!({"x": 1}), false).unwrap_err(),
        StorageOptions::from_json(&url, &serde_json::json!({"endpoint": 1}), false).unwrap_err(),
        StorageOptions::from_json(&url, &serde_json::json!({"endpoint": "x"}), false).unwrap_err(),
        StorageOptions::from_json(
            &url,
            &serde_json::json!({"endpoint": "http://10.0.0.1", "path_style": true}),
            false,
        )
        .unwrap_err(),
        StorageOptions::from_json(&url, &serde_json::json!({"allow_http": true}), false)
            .unwrap_err(),
        StorageOptions::from_json(&url, &serde_json::json!({"part_size": 1}), false).unwrap_err(),
        StorageOptions::from_json(&url, &serde_json::json!({"region": 1}), false).unwrap_err(),
        StorageOptions::from_json(&url, &serde_json::json!({"path_style": 1}), false).unwrap_err(),
        StorageOptions::from_json(&url, &serde_json::json!({"profile": "[p]"}), false).unwrap_err(),
        StorageOptions::from_json(
            &url,
            &serde_json::json!({"endpoint": "https://10.0.0.1"}),
            false,
        )
        .unwrap_err(),
        Credentials::from_file(&missing, "default").unwrap_err(),
    ];
    for e in results {
        assert!(
            e.hint.starts_with(char::is_uppercase) && e.hint.ends_with('.'),
            "hint of {:?} is not a sentence: {:?}",
            e.message,
            e.hint
        );
    }
}
