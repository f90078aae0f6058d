//! Encryption at rest: backups encrypted with age while they stream (local files and a
//! `file://` target), no plaintext byte stored, restores decrypting as they read, the stock
//! `age` tool decrypting by hand, wrong or missing identities refused before any database is
//! touched, key rotation, and the identity never stored or logged.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use backup_ext_e2e::*;

const DEADLINE: Duration = Duration::from_secs(120);
const AGE_HEADER: &[u8] = b"age-encryption.org/v1\n";

fn secret_of(identity: &Path) -> String {
    fs::read_to_string(identity)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap()
        .to_string()
}

fn set_encryption(client: &mut postgres::Client, recipients: &[&str], db: Option<&str>) {
    let list: Vec<String> = recipients.iter().map(|r| quote_literal(r)).collect();
    exec(
        client,
        &format!(
            "SELECT backup_ext.set_encryption(ARRAY[{}]::text[], {})",
            list.join(", "),
            db.map_or("NULL".into(), quote_literal)
        ),
    );
}

fn database_exists(client: &mut postgres::Client, name: &str) -> bool {
    one_i64(
        client,
        &format!(
            "SELECT count(*) FROM pg_database WHERE datname = {}",
            quote_literal(name)
        ),
    ) == 1
}

/// The stored bytes: encrypted, never the archive's own header.
fn assert_encrypted_bytes(bytes: &[u8]) {
    assert!(
        bytes.starts_with(AGE_HEADER),
        "{:?}",
        &bytes[..40.min(bytes.len())]
    );
    assert!(!bytes.windows(5).any(|w| w == b"PGDMP"));
    assert!(!bytes.windows(7).any(|w| w == "grüße".as_bytes()));
}

fn succeeds(c: &Cluster, job: i64) {
    assert_eq!(c.wait_final(job, DEADLINE), "succeeded", "{:?}", c.job(job));
}

fn restore(c: &Cluster, backup_id: i64, target: &str) {
    succeeds(
        c,
        c.enqueue(&format!(
            "SELECT backup_ext.restore_backup({backup_id}, {})",
            quote_literal(target)
        )),
    );
}

#[test]
fn encrypted_backups_store_no_plaintext_and_restore_with_the_identity() {
    let c = Cluster::start("encryption");
    let keys = c.root.join("keys");
    fs::create_dir(&keys).unwrap();
    chown_postgres(&keys);
    let (key1, r1) = keygen(&keys, "key1.txt");
    let (key2, r2) = keygen(&keys, "key2.txt");
    let mut client = c.client("postgres");

    // Bad recipients: 22023, nothing stored.
    for bad in ["age1notakey", "ssh-ed25519 AAAA", ""] {
        let msg = expect_sqlstate(
            &mut client,
            &format!(
                "SELECT backup_ext.set_encryption(ARRAY[{}])",
                quote_literal(bad)
            ),
            "22023",
        );
        assert!(msg.contains("age"), "{msg}");
    }
    assert_eq!(
        one_i64(&mut client, "SELECT count(*) FROM backup_ext.encryption"),
        0
    );
    exec(
        &mut client,
        "CREATE ROLE op LOGIN; GRANT backup_ext_operator TO op",
    );
    let mut op = c.client_as("postgres", "op");
    expect_sqlstate(
        &mut op,
        &format!(
            "SELECT backup_ext.set_encryption(ARRAY[{}])",
            quote_literal(&r1)
        ),
        "42501",
    );

    set_encryption(&mut client, &[&r1], None);
    assert_eq!(
        one_text(
            &mut client,
            "SELECT coalesce(database, '*') || ' ' || array_to_string(fingerprints, ',')
               FROM backup_ext.encryption"
        ),
        format!("* {}", fingerprint(&r1))
    );
    c.create_sample_db("app");
    let before = c.table_fingerprint("app", "t1");

    // Directory format with encryption: refused at call time.
    let msg = expect_sqlstate(
        &mut client,
        "SELECT backup_ext.backup_database('app', 'directory')",
        "0A000",
    );
    assert!(msg.contains("directory"), "{msg}");

    // A local custom backup: `.age` appended, encrypted bytes whose SHA-256 is recorded.
    let job = c.enqueue("SELECT backup_ext.backup_database('app')");
    succeeds(&c, job);
    let b = c.backup(job);
    let path = b.path_buf();
    assert!(path.to_string_lossy().ends_with(".dump.age"), "{path:?}");
    let bytes = fs::read(&path).unwrap();
    assert_encrypted_bytes(&bytes);
    assert_eq!(b.sha256.as_deref(), Some(sha256_hex(&bytes).as_str()));
    assert_eq!(b.size_bytes, Some(bytes.len() as i64));
    let row = client
        .query_one(
            "SELECT encrypted, recipients FROM backup_ext.list_backups() WHERE backup_id = $1",
            &[&b.backup_id],
        )
        .unwrap();
    assert!(row.get::<_, bool>(0));
    assert_eq!(row.get::<_, Vec<String>>(1), vec![fingerprint(&r1)]);
    let sidecar: serde_json::Value =
        serde_json::from_slice(&fs::read(format!("{}.json", path.display())).unwrap()).unwrap();
    assert_eq!(sidecar["encrypted"], serde_json::json!(true));
    assert_eq!(sidecar["recipients"], serde_json::json!([fingerprint(&r1)]));

    // Without an identity, or with the wrong one: refused at call time, nothing created.
    let call = |target: &str| {
        format!(
            "SELECT backup_ext.restore_backup({}, {})",
            b.backup_id,
            quote_literal(target)
        )
    };
    let msg = expect_sqlstate(&mut client, &call("app_none"), "F0000");
    assert!(msg.contains("backup_ext.identity_file"), "{msg}");
    c.set_and_reload("backup_ext.identity_file", &key2.to_string_lossy());
    let msg = expect_sqlstate(&mut client, &call("app_wrong"), "28000");
    assert!(msg.contains("backup_ext.identity_file"), "{msg}");
    expect_sqlstate(
        &mut client,
        &format!(
            "SELECT count(*) FROM backup_ext.backup_contents({})",
            b.backup_id
        ),
        "28000",
    );
    assert!(!database_exists(&mut client, "app_none"));
    assert!(!database_exists(&mut client, "app_wrong"));

    // With the right identity: the listing and the restore decrypt as they read.
    c.set_and_reload("backup_ext.identity_file", &key1.to_string_lossy());
    assert!(
        one_i64(
            &mut client,
            &format!(
                "SELECT count(*) FROM backup_ext.backup_contents({}) WHERE name = 't1'",
                b.backup_id
            )
        ) >= 1
    );
    expect_sqlstate(
        &mut client,
        &format!(
            "SELECT backup_ext.restore_backup({}, 'app_par', jobs => 2)",
            b.backup_id
        ),
        "0A000",
    );
    restore(&c, b.backup_id, "app_restored");
    assert_eq!(c.table_fingerprint("app_restored", "t1"), before);

    // Verification: the listing and the test restore decrypt; the rows match.
    let verify = c.enqueue(&format!(
        "SELECT backup_ext.verify_backup({}, true)",
        b.backup_id
    ));
    succeeds(&c, verify);
    assert_eq!(
        one_text(
            &mut client,
            &format!(
                "SELECT verify_status || ' ' || (table_rows::text LIKE '%t1\": 10000%')::text
                   FROM backup_ext.artifacts WHERE backup_id = {}",
                b.backup_id
            )
        ),
        "passed true"
    );

    // By hand, with nothing but the stock age tool and pg_restore.
    exec(&mut client, "CREATE DATABASE app_by_hand");
    let mut age = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&key1)
        .arg(&path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = c
        .tool_command("pg_restore", &["-d", "app_by_hand"])
        .stdin(age.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(age.wait().unwrap().success());
    check_output("age -d | pg_restore", &out);
    assert_eq!(c.table_fingerprint("app_by_hand", "t1"), before);

    // A changed byte is caught before the target is touched.
    let mut damaged = bytes.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 1;
    fs::write(&path, &damaged).unwrap();
    expect_sqlstate(&mut client, &call("app_damaged"), "XX001");
    assert!(!database_exists(&mut client, "app_damaged"));
    fs::write(&path, &bytes).unwrap();

    // Key rotation: new backups go to the new key; an identity file with both keys reads both.
    set_encryption(&mut client, &[&r2], None);
    let job2 = c.enqueue("SELECT backup_ext.backup_database('app')");
    succeeds(&c, job2);
    let b2 = c.backup(job2);
    expect_sqlstate(
        &mut client,
        &format!(
            "SELECT backup_ext.restore_backup({}, 'app_rot0')",
            b2.backup_id
        ),
        "28000",
    );
    let both = keys.join("both.txt");
    fs::write(
        &both,
        fs::read_to_string(&key1).unwrap() + &fs::read_to_string(&key2).unwrap(),
    )
    .unwrap();
    chown_postgres(&both);
    c.set_and_reload("backup_ext.identity_file", &both.to_string_lossy());
    restore(&c, b.backup_id, "app_rot1");
    restore(&c, b2.backup_id, "app_rot2");
    assert_eq!(c.table_fingerprint("app_rot2", "t1"), before);

    // Globals follow the default policy too, and are replayed decrypted.
    exec(&mut client, "CREATE ROLE enc_role NOLOGIN");
    let globals = c.enqueue("SELECT backup_ext.backup_globals()");
    succeeds(&c, globals);
    let g = c.backup(globals);
    assert!(
        g.path_buf().to_string_lossy().ends_with(".sql.age"),
        "{g:?}"
    );
    let g_bytes = fs::read(g.path_buf()).unwrap();
    assert!(g_bytes.starts_with(AGE_HEADER));
    assert!(!g_bytes.windows(8).any(|w| w == b"enc_role"));
    exec(&mut client, "DROP ROLE enc_role");
    let replay = c.enqueue(&format!(
        "SELECT backup_ext.restore_backup({})",
        g.backup_id
    ));
    succeeds(&c, replay);
    assert_eq!(
        one_i64(
            &mut client,
            "SELECT count(*) FROM pg_roles WHERE rolname = 'enc_role'"
        ),
        1
    );

    // A per-database policy overrides the default; NULL turns it off.
    c.create_sample_db("plain_db");
    set_encryption(&mut client, &[], None);
    set_encryption(&mut client, &[&r1, &r2], Some("app"));
    let plain_job = c.enqueue("SELECT backup_ext.backup_database('plain_db')");
    let app_job = c.enqueue("SELECT backup_ext.backup_database('app')");
    succeeds(&c, plain_job);
    succeeds(&c, app_job);
    assert!(fs::read(c.backup(plain_job).path_buf())
        .unwrap()
        .starts_with(b"PGDMP"));
    let app_row = client
        .query_one(
            "SELECT encrypted, recipients FROM backup_ext.backups WHERE job_id = $1",
            &[&app_job],
        )
        .unwrap();
    assert!(app_row.get::<_, bool>(0));
    assert_eq!(
        app_row.get::<_, Vec<String>>(1),
        vec![fingerprint(&r1), fingerprint(&r2)]
    );

    // The identity is in no table and no log line.
    let dump = c.run_tool("pg_dump", &["-d", "postgres", "--data-only"]);
    check_output("pg_dump", &dump);
    let log = c.log_text();
    for key in [&key1, &key2] {
        let secret = secret_of(key);
        assert!(!String::from_utf8_lossy(&dump.stdout).contains(&secret));
        assert!(!log.contains(&secret));
        assert!(!log.contains("AGE-SECRET-KEY"));
    }
}

#[test]
fn encrypted_backups_stream_into_a_file_target_and_back() {
    let c = Cluster::start("encryption_target");
    let keys = c.root.join("keys");
    fs::create_dir(&keys).unwrap();
    chown_postgres(&keys);
    let (key, r) = keygen(&keys, "key.txt");
    let nfs = c.root.join("nfs");
    fs::create_dir(&nfs).unwrap();
    chown_postgres(&nfs);
    let mut client = c.client("postgres");
    exec(
        &mut client,
        &format!(
            "SELECT backup_ext.add_storage('nfs', {})",
            quote_literal(&format!("file://{}", nfs.display()))
        ),
    );
    set_encryption(&mut client, &[&r], None);
    c.create_sample_db("app");
    let before = c.table_fingerprint("app", "t1");

    for format in ["custom", "plain"] {
        let job = c.enqueue(&format!(
            "SELECT backup_ext.backup_database('app', '{format}', \
             options => '{{\"storage\": \"nfs\"}}')"
        ));
        succeeds(&c, job);
        let (backup_id, key_name, sha, size): (i64, String, String, i64) = {
            let row = client
                .query_one(
                    "SELECT backup_id, key, sha256, size_bytes FROM backup_ext.backups
                      WHERE job_id = $1 AND encrypted",
                    &[&job],
                )
                .unwrap();
            (row.get(0), row.get(1), row.get(2), row.get(3))
        };
        assert!(key_name.ends_with(".age"), "{key_name}");
        let stored = fs::read(nfs.join(&key_name)).unwrap();
        assert_encrypted_bytes(&stored);
        assert_eq!(sha256_hex(&stored), sha);
        assert_eq!(stored.len() as i64, size);
        let target = format!("app_from_nfs_{format}");
        let msg = expect_sqlstate(
            &mut client,
            &format!(
                "SELECT backup_ext.restore_backup({backup_id}, {})",
                quote_literal(&target)
            ),
            "F0000",
        );
        assert!(msg.contains("backup_ext.identity_file"), "{msg}");
        c.set_and_reload("backup_ext.identity_file", &key.to_string_lossy());
        restore(&c, backup_id, &target);
        assert_eq!(c.table_fingerprint(&target, "t1"), before);
        c.set_and_reload("backup_ext.identity_file", "");
        // The identity gone between the call and the job: the job fails before it creates
        // the target.
        c.set_and_reload("backup_ext.identity_file", &key.to_string_lossy());
        let mut tx = c.client("postgres");
        let late = format!("{target}_late");
        exec(&mut tx, "BEGIN");
        let job = one_i64(
            &mut tx,
            &format!(
                "SELECT backup_ext.restore_backup({backup_id}, {})",
                quote_literal(&late)
            ),
        );
        c.set_and_reload("backup_ext.identity_file", "");
        exec(&mut tx, "COMMIT");
        assert_eq!(c.wait_final(job, DEADLINE), "failed", "{:?}", c.job(job));
        let error = c.job(job).error.unwrap_or_default();
        assert!(
            error.contains("backup_ext.identity_file is not set"),
            "{error}"
        );
        assert!(!database_exists(&mut client, &late));
        // Without a key, verification is the checksum of the stored bytes.
        let verify = c.enqueue(&format!("SELECT backup_ext.verify_backup({backup_id})"));
        succeeds(&c, verify);
        expect_sqlstate(
            &mut client,
            &format!("SELECT backup_ext.verify_backup({backup_id}, true)"),
            "F0000",
        );
    }
}

#[test]
fn encrypted_backups_stream_into_s3_and_tampering_is_caught_before_a_restore() {
    let s3 = Seaweed::start("encryption");
    let c = Cluster::start("encryption_s3");
    let (_, r) = encrypted_offsite(&c, &s3);
    let mut client = c.client("postgres");
    set_encryption(&mut client, &[&r], Some("app"));
    c.create_sample_db("app");
    let before = c.table_fingerprint("app", "t1");
    let job = c.enqueue(
        "SELECT backup_ext.backup_database('app', options => '{\"storage\": \"offsite\"}')",
    );
    succeeds(&c, job);
    let row = client
        .query_one(
            "SELECT backup_id, key, sha256 FROM backup_ext.backups WHERE job_id = $1 AND encrypted",
            &[&job],
        )
        .unwrap();
    let (backup_id, object, sha): (i64, String, String) = (row.get(0), row.get(1), row.get(2));
    assert!(object.ends_with(".dump.age"), "{object}");
    let stored = s3.get(&object);
    assert_encrypted_bytes(&stored);
    assert_eq!(sha256_hex(&stored), sha);
    let sidecar: serde_json::Value =
        serde_json::from_slice(&s3.get(&format!("{object}.json"))).unwrap();
    assert_eq!(sidecar["encrypted"], serde_json::json!(true));

    restore(&c, backup_id, "app_from_s3");
    assert_eq!(c.table_fingerprint("app_from_s3", "t1"), before);

    // A changed byte in the middle (the header still opens): never restored.
    let mut changed = stored.clone();
    let mid = changed.len() / 2;
    changed[mid] ^= 1;
    s3.put(&object, &changed);
    let call = format!("SELECT backup_ext.restore_backup({backup_id}, 'app_tampered')");
    if let Ok(row) = client.query_one(&call, &[]) {
        let job: i64 = row.get(0);
        assert_eq!(c.wait_final(job, DEADLINE), "failed", "{:?}", c.job(job));
    }
    assert!(!database_exists(&mut client, "app_tampered"));
}
