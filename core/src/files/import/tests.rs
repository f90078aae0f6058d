use super::*;
use crate::files::sidecar::SIDECAR_VERSION;
use serde_json::json;

/// A change that makes a sidecar unacceptable.
type Change = fn(&mut Sidecar);

const KEY: &str = "7400000000000000001/app/20261129T100001Z-job000000000042.dump";

fn sidecar() -> Sidecar {
    Sidecar {
        sidecar_version: SIDECAR_VERSION,
        backup_id: 42,
        kind: "database".into(),
        database: Some("app".into()),
        format: "custom".into(),
        compress: Some("zstd:3".into()),
        label: None,
        size_bytes: 1234,
        sha256: "ab".repeat(32),
        requested_at: "2026-11-29T10:00:00.000000Z".into(),
        started_at: "2026-11-29T10:00:01.000000Z".into(),
        finished_at: "2026-11-29T10:00:09.000000Z".into(),
        server_version: "16.13".into(),
        tool_version: "16.13".into(),
        system_identifier: "7400000000000000001".into(),
        set_id: Some(3),
        storage: "offsite".into(),
        key: KEY.into(),
        manifest: None,
        table_rows: None,
        encrypted: false,
        recipients: vec![],
    }
}

fn objects(list: &[(&str, u64)]) -> BTreeMap<String, ObjectInfo> {
    list.iter()
        .map(|(k, size)| {
            (
                k.to_string(),
                ObjectInfo {
                    key: k.to_string(),
                    size: *size,
                    etag: Some("e1".into()),
                    last_modified: Utc::now(),
                },
            )
        })
        .collect()
}

fn check(s: &Sidecar, key: &str, list: &[(&str, u64)]) -> Result<ImportCandidate, String> {
    check_sidecar(&s.to_bytes(), key, &objects(list))
}

fn reason(s: &Sidecar, list: &[(&str, u64)]) -> String {
    check(s, KEY, list).unwrap_err()
}

#[test]
fn a_whole_backup_beside_its_sidecar_is_a_candidate() {
    let c = check(&sidecar(), KEY, &[(KEY, 1234)]).unwrap();
    assert_eq!(c.key, KEY);
    assert_eq!(c.size_bytes, 1234);
    assert_eq!(c.set_id, Some(3));
    assert_eq!(c.etag.as_deref(), Some("e1"));
    assert_eq!(c.finished_at.to_rfc3339(), "2026-11-29T10:00:09+00:00");
    assert_eq!(c.sidecar, sidecar());
}

#[test]
fn a_copy_under_another_prefix_and_a_local_backup_are_candidates() {
    let copy = format!("copies/{KEY}");
    assert!(check(&sidecar(), &copy, &[(copy.as_str(), 1234)]).is_ok());
    let mut local = sidecar();
    local.storage = "local".into();
    local.key = "/var/lib/backups/app/20261129T100001Z-job000000000042.dump".into();
    let key = "app/20261129T100001Z-job000000000042.dump";
    assert!(check(&local, key, &[(key, 1234)]).is_ok());
}

#[test]
fn missing_or_resized_objects_are_refused() {
    assert_eq!(
        reason(&sidecar(), &[]),
        format!("the backup is missing: no object at {KEY}")
    );
    assert_eq!(
        reason(&sidecar(), &[(KEY, 1233)]),
        "the backup is 1233 bytes, the sidecar says 1234"
    );
}

#[test]
fn hostile_keys_are_refused_and_never_followed() {
    for bad in [
        "../../etc/passwd",
        "/etc/passwd",
        "a/./b.dump",
        "a//b.dump",
        "",
    ] {
        let mut s = sidecar();
        s.key = bad.into();
        let r = reason(&s, &[(KEY, 1234)]);
        assert!(r.contains("is not a safe key"), "{bad}: {r}");
    }
    // Absolute paths are only what a local backup's sidecar records.
    let mut s = sidecar();
    s.storage = "local".into();
    s.key = "/var/lib/../../etc/20261129T100001Z-job000000000042.dump".into();
    assert!(reason(&s, &[(KEY, 1234)]).contains("is not a safe key"));
    // A sidecar describing another file than the one beside it.
    let mut s = sidecar();
    s.key = "7400000000000000001/app/other.dump".into();
    assert_eq!(
        reason(&s, &[(KEY, 1234)]),
        "it describes \"other.dump\", not the object beside it"
    );
    assert_eq!(
        check(&sidecar(), "a/../b.dump", &[]).unwrap_err(),
        "\"a/../b.dump\" is not a safe key"
    );
}

#[test]
fn wrong_types_huge_numbers_and_odd_values_are_refused() {
    let mut v = serde_json::to_value(sidecar()).unwrap();
    v["size_bytes"] = json!("1234");
    let r = check_sidecar(v.to_string().as_bytes(), KEY, &objects(&[(KEY, 1234)])).unwrap_err();
    assert!(
        r.starts_with("not a backup sidecar: invalid type: string"),
        "{r}"
    );
    v["size_bytes"] = json!(1e30);
    let r = check_sidecar(v.to_string().as_bytes(), KEY, &objects(&[])).unwrap_err();
    assert!(r.starts_with("not a backup sidecar: "), "{r}");

    let mut s = sidecar();
    s.size_bytes = u64::MAX;
    assert_eq!(
        reason(&s, &[(KEY, u64::MAX)]),
        format!("size_bytes {} is out of range", u64::MAX)
    );
    let cases: [(Change, &str); 13] = [
        (|s| s.backup_id = -1, "backup_id -1 is not a backup id"),
        (
            |s| s.kind = "restore".into(),
            "kind \"restore\" is not database or globals",
        ),
        (|s| s.database = None, "a database backup names no database"),
        (
            |s| s.database = Some("x".repeat(64)),
            "is not a database name",
        ),
        (|s| s.format = "zip".into(), "unknown dump format \"zip\""),
        (
            |s| s.sha256 = "XYZ".into(),
            "sha256 is not 64 lower-case hex digits",
        ),
        (
            |s| s.system_identifier = "1; DROP".into(),
            "is not a system identifier",
        ),
        (
            |s| s.finished_at = "yesterday".into(),
            "finished_at \"yesterday\" is not a timestamp",
        ),
        (
            |s| s.finished_at = "2026-11-29T09:00:00Z".into(),
            "finished_at is before started_at",
        ),
        (
            |s| s.encrypted = true,
            "an encrypted backup lists no recipients",
        ),
        (
            |s| s.recipients = vec!["0123456789abcdef".into()],
            "a backup that is not encrypted lists recipients",
        ),
        (
            |s| s.server_version = "16\u{0}".into(),
            "server_version is not a plausible value",
        ),
        (
            |s| s.table_rows = Some(json!([1, 2])),
            "table_rows is not an object",
        ),
    ];
    for (change, expected) in cases {
        let mut s = sidecar();
        change(&mut s);
        let r = reason(&s, &[(KEY, 1234)]);
        assert!(r.contains(expected), "{expected}: {r}");
    }
    let mut s = sidecar();
    s.encrypted = true;
    s.recipients = vec!["../../x".into()];
    assert!(reason(&s, &[(KEY, 1234)]).contains("is not 16 hex digits"));
}

fn directory_sidecar(files: &[(&str, u64)]) -> (Sidecar, String) {
    let manifest = crate::files::manifest::Manifest {
        files: files
            .iter()
            .map(|(n, s)| crate::files::manifest::ManifestEntry {
                name: n.to_string(),
                size: *s,
                sha256: "cd".repeat(32),
            })
            .collect(),
        total_size: files.iter().map(|f| f.1).sum(),
        sha256: "ef".repeat(32),
    };
    let key = "74/app/20261129T100001Z-job000000000042.dir".to_string();
    let mut s = sidecar();
    s.format = "directory".into();
    s.key = key.clone();
    s.size_bytes = manifest.total_size;
    s.sha256 = manifest.sha256.clone();
    s.manifest = Some(serde_json::to_value(&manifest).unwrap());
    (s, key)
}

#[test]
fn directory_backups_are_checked_file_by_file() {
    let (s, key) = directory_sidecar(&[("toc.dat", 10), ("3001.dat.gz", 20)]);
    let toc = format!("{key}/toc.dat");
    let data = format!("{key}/3001.dat.gz");
    let c = check(&s, &key, &[(toc.as_str(), 10), (data.as_str(), 20)]).unwrap();
    assert_eq!((c.size_bytes, c.etag), (30, None));
    assert_eq!(
        check(&s, &key, &[(toc.as_str(), 10)]).unwrap_err(),
        "the backup's files hold 10 bytes, the sidecar says 30"
    );
    assert_eq!(
        check(&s, &key, &[(toc.as_str(), 11), (data.as_str(), 19)]).unwrap_err(),
        "file toc.dat is 11 bytes, the manifest says 10"
    );
    assert_eq!(
        check(&s, &key, &[]).unwrap_err(),
        format!("the backup is missing: no object at {key} or under {key}/")
    );
    let (s, key) = directory_sidecar(&[("../escape", 10)]);
    let inside = format!("{key}/escape");
    assert_eq!(
        check(&s, &key, &[(inside.as_str(), 10)]).unwrap_err(),
        "manifest file name \"../escape\" is not safe"
    );
}

#[test]
fn sidecar_keys_name_their_backup() {
    assert_eq!(
        sidecar_backup_key("74/app/x.dump.json"),
        Some("74/app/x.dump")
    );
    assert_eq!(sidecar_backup_key("74/app/x.dump"), None);
    assert_eq!(sidecar_backup_key(".work/job-1.json"), None);
    assert_eq!(sidecar_backup_key(".json"), None);
    assert!(is_safe_relative("74/app/x.dump"));
    assert!(!is_safe_relative("74/../x"));
    assert!(!is_safe_relative("/x"));
    assert!(!is_safe_relative("a\\..\\b"));
}
