//! Checks of the S3 harness itself: real `weed mini` servers side by side, seen through boto3, so
//! that an S3 test of backup_ext can trust what the harness tells it.

use backup_ext_e2e::*;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;
use std::time::{Duration, Instant};

fn refuses_connections(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err()
}

/// Whether `user` can read `path` (via `runuser`, so only meaningful as root).
fn readable_by(user: &str, path: &std::path::Path) -> bool {
    Command::new("runuser")
        .args(["-u", user, "--", "cat"])
        .arg(path)
        .output()
        .expect("run runuser")
        .status
        .success()
}

fn uid_of(user: Option<&str>) -> u32 {
    let out = Command::new("id")
        .arg("-u")
        .args(user)
        .output()
        .expect("run id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a uid")
}

#[test]
fn two_servers_side_by_side_each_with_its_own_bucket() {
    let a = Seaweed::start("harness-a");
    let b = Seaweed::start("harness-b");

    // Every listener of each server is one of its own chosen ports, and the two share none.
    for s in [&a, &b] {
        let mut expected = s.ports();
        expected.sort_unstable();
        assert_eq!(s.listening_ports(), expected, "listeners of {}", s.name);
        assert_eq!(s.endpoint, format!("http://127.0.0.1:{}", s.s3_port));
    }
    assert!(a.ports().iter().all(|p| !b.ports().contains(p)));
    assert_ne!(a.access_key, b.access_key);
    assert_ne!(a.secret_key, b.secret_key);

    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    a.put("dir/one.bin", &payload);
    a.put("dir/two.txt", b"two");
    a.put("elsewhere.txt", b"x");
    assert_eq!(
        a.objects("dir/"),
        vec![
            ("dir/one.bin".to_string(), payload.len() as u64),
            ("dir/two.txt".to_string(), 3)
        ]
    );
    assert_eq!(a.get("dir/one.bin"), payload);
    assert!(b.objects("").is_empty(), "b sees a's objects");

    b.put_with_metadata("meta.txt", b"m", &[("sha256", "abc123"), ("job", "42")]);
    let metadata = b.head_metadata("meta.txt");
    assert_eq!(metadata.get("sha256").map(String::as_str), Some("abc123"));
    assert_eq!(metadata.get("job").map(String::as_str), Some("42"));
    assert_eq!(metadata.len(), 2, "{metadata:?}");

    a.delete("dir/two.txt");
    assert_eq!(
        a.objects(""),
        vec![
            ("dir/one.bin".to_string(), payload.len() as u64),
            ("elsewhere.txt".to_string(), 1)
        ]
    );

    // The [other] profile's keys are valid too.
    assert_eq!(
        a.try_objects_with(&a.other_access_key, &a.other_secret_key, "elsewhere")
            .unwrap(),
        vec![("elsewhere.txt".to_string(), 1)]
    );
}

#[test]
fn the_credentials_file_is_for_postgres_only() {
    let s = Seaweed::start("harness-creds");
    let text = std::fs::read_to_string(&s.credentials_file).unwrap();
    for expected in [
        "[default]".to_string(),
        format!("aws_access_key_id = {}", s.access_key),
        format!("aws_secret_access_key = {}", s.secret_key),
        "[other]".to_string(),
        format!("aws_access_key_id = {}", s.other_access_key),
        format!("aws_secret_access_key = {}", s.other_secret_key),
    ] {
        assert!(
            text.lines().any(|l| l == expected),
            "{expected:?} in\n{text}"
        );
    }
    let meta = std::fs::metadata(&s.credentials_file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let dir = std::fs::metadata(s.credentials_file.parent().unwrap()).unwrap();
    assert_eq!(
        dir.permissions().mode() & 0o077,
        0,
        "the directory is private"
    );
    if uid_of(None) == 0 {
        assert_eq!(meta.uid(), uid_of(Some(PG_USER)));
        assert!(readable_by(PG_USER, &s.credentials_file));
        assert!(!readable_by("nobody", &s.credentials_file));
    }
}

#[test]
fn open_multipart_uploads_are_listed() {
    let s = Seaweed::start("harness-uploads");
    assert!(s.open_uploads().is_empty());
    let id = s.start_upload("big/part.dump");
    assert!(!id.is_empty());
    assert_eq!(s.open_uploads(), vec![("big/part.dump".to_string(), id)]);
    // An upload that was begun is not an object.
    assert!(s.objects("").is_empty());
}

#[test]
fn wrong_keys_are_refused() {
    let s = Seaweed::start("harness-auth");
    s.put("secret.txt", b"s");
    assert_eq!(
        s.try_objects_with(&s.access_key, "not-the-secret", ""),
        Err("SignatureDoesNotMatch".to_string())
    );
    assert_eq!(
        s.try_objects_with("AKNOBODYKNOWSTHIS000", &s.secret_key, ""),
        Err("InvalidAccessKeyId".to_string())
    );
    assert_eq!(
        s.try_objects_with(&s.access_key, &s.secret_key, ""),
        Ok(vec![("secret.txt".to_string(), 1)])
    );
}

#[test]
fn stop_closes_every_port_and_start_again_serves_the_same_data() {
    let s = Seaweed::start("harness-restart");
    s.put("kept.txt", b"still here");
    let upload = s.start_upload("kept/upload");

    let started = Instant::now();
    s.stop();
    let stop_took = started.elapsed();
    assert!(!s.is_running());
    // A port the server let go of may be taken at once by another program (tests run side by
    // side and bind free ports): what must hold is that nothing of this server listens.
    for port in s.ports() {
        assert!(
            refuses_connections(port) || s.own_listeners(port).is_empty(),
            "port {port} after stop: still served by {:?}",
            s.own_listeners(port)
        );
    }
    assert_eq!(
        s.try_objects_with(&s.access_key, &s.secret_key, ""),
        Err("EndpointConnectionError".to_string())
    );
    s.stop();

    let started = Instant::now();
    s.start_again();
    let start_took = started.elapsed();
    assert!(s.is_running());
    assert_eq!(s.get("kept.txt"), b"still here");
    assert_eq!(s.open_uploads(), vec![("kept/upload".to_string(), upload)]);
    let mut expected = s.ports();
    expected.sort_unstable();
    assert_eq!(s.listening_ports(), expected);
    eprintln!("stop took {stop_took:?}, start_again took {start_took:?}");
}
