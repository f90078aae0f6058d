//! Off-host storage: targets checked when added, backups streamed into a real S3 server
//! (SeaweedFS) with their sidecar, no secret anywhere, and targets that cannot be dropped from
//! under their backups.

use std::collections::BTreeSet;
use std::time::Duration;

use backup_ext_e2e::*;
use sha2::{Digest, Sha256};

const DEADLINE: Duration = Duration::from_secs(120);

fn add_storage_sql(name: &str, url: &str, endpoint: &str, extra: &str) -> String {
    format!(
        "SELECT backup_ext.add_storage({}, {}, jsonb_build_object('endpoint', {}, \
         'path_style', true, 'allow_http', true{extra}))",
        quote_literal(name),
        quote_literal(url),
        quote_literal(endpoint)
    )
}

/// Local copies of remote backups left in the work directory.
fn fetched_copies(c: &Cluster) -> Vec<String> {
    std::fs::read_dir(c.backups.join(".work"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".fetch"))
        .collect()
}

fn storage_names(client: &mut postgres::Client) -> Vec<String> {
    client
        .query("SELECT name FROM backup_ext.storages ORDER BY name", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn storage_targets_are_checked_when_added_and_keep_their_backups() {
    let s3 = Seaweed::start("targets");
    let c = Cluster::start("storage_targets");
    let mut client = c.client("postgres");
    let url = format!("s3://{}/backups", s3.bucket);

    // Without a credentials file an S3 target has no keys: F0000, naming the setting.
    let msg = expect_sqlstate(
        &mut client,
        &add_storage_sql("offsite", &url, &s3.endpoint, ""),
        "F0000",
    );
    assert!(msg.contains("backup_ext.s3_credentials_file"), "{msg}");
    c.set_and_reload(
        "backup_ext.s3_credentials_file",
        &s3.credentials_file.to_string_lossy(),
    );

    // Bad input, each with its SQLSTATE, and no row added.
    expect_sqlstate(
        &mut client,
        "SELECT backup_ext.add_storage('x1', 'ftp://host/dir')",
        "22023",
    );
    expect_sqlstate(
        &mut client,
        &add_storage_sql("Bad-Name", &url, &s3.endpoint, ""),
        "22023",
    );
    expect_sqlstate(
        &mut client,
        &add_storage_sql("local", &url, &s3.endpoint, ""),
        "42710",
    );
    expect_sqlstate(
        &mut client,
        &add_storage_sql("x2", "s3://no-such-bucket-here/p", &s3.endpoint, ""),
        "42704",
    );
    let closed = free_port();
    expect_sqlstate(
        &mut client,
        &add_storage_sql("x3", &url, &format!("http://127.0.0.1:{closed}"), ""),
        "08001",
    );
    let msg = expect_sqlstate(
        &mut client,
        &add_storage_sql("x4", &url, &s3.endpoint, ", 'profile', 'nobody'"),
        "F0000",
    );
    assert!(msg.contains("nobody"), "{msg}");
    // Plain http beyond loopback needs backup_ext.s3_allow_http.
    expect_sqlstate(
        &mut client,
        &add_storage_sql("x5", &url, "http://192.0.2.1:8333", ""),
        "22023",
    );
    // A wrong secret: the store refuses the signature.
    let wrong = c.root.join("wrong-credentials");
    std::fs::write(
        &wrong,
        format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = not-the-secret\n",
            s3.access_key
        ),
    )
    .unwrap();
    chown_postgres(&wrong);
    c.set_and_reload("backup_ext.s3_credentials_file", &wrong.to_string_lossy());
    expect_sqlstate(
        &mut client,
        &add_storage_sql("x6", &url, &s3.endpoint, ""),
        "28000",
    );
    c.set_and_reload(
        "backup_ext.s3_credentials_file",
        &s3.credentials_file.to_string_lossy(),
    );
    assert_eq!(storage_names(&mut client), vec!["local".to_string()]);

    // Non-superusers may not add targets.
    exec(
        &mut client,
        "CREATE ROLE op LOGIN; GRANT backup_ext_operator TO op",
    );
    let mut op = c.client_as("postgres", "op");
    expect_sqlstate(
        &mut op,
        &add_storage_sql("x7", &url, &s3.endpoint, ""),
        "42501",
    );

    exec(
        &mut client,
        &add_storage_sql("offsite", &url, &s3.endpoint, ""),
    );
    expect_sqlstate(
        &mut client,
        &add_storage_sql("offsite", &url, &s3.endpoint, ""),
        "42710",
    );
    assert_eq!(storage_names(&mut client), vec!["local", "offsite"]);
    let options = one_text(
        &mut client,
        "SELECT options::text FROM backup_ext.storages WHERE name = 'offsite'",
    );
    assert!(!options.contains(&s3.secret_key), "{options}");

    // An unknown target is refused at call time.
    expect_sqlstate(
        &mut client,
        "SELECT backup_ext.backup_database('postgres', options => '{\"storage\": \"nowhere\"}')",
        "42704",
    );

    // A backup there: the target cannot be dropped until it is expired.
    let job = one_i64(
        &mut client,
        "SELECT backup_ext.backup_database('postgres', options => '{\"storage\": \"offsite\"}')",
    );
    assert_eq!(c.wait_final(job, DEADLINE), "succeeded");
    let msg = expect_sqlstate(
        &mut client,
        "SELECT backup_ext.drop_storage('offsite')",
        "2BP01",
    );
    assert!(msg.contains("1 live backup"), "{msg}");
    expect_sqlstate(
        &mut client,
        "SELECT backup_ext.drop_storage('local')",
        "22023",
    );
    assert_eq!(
        one_text(
            &mut client,
            "SELECT backup_ext.drop_storage('never_added')::text"
        ),
        "false"
    );

    // Retention deletes the object and its sidecar, then the target can go.
    exec(
        &mut client,
        "SELECT backup_ext.set_retention('postgres', keep_last => 1)",
    );
    let second = one_i64(
        &mut client,
        "SELECT backup_ext.backup_database('postgres', options => '{\"storage\": \"offsite\"}')",
    );
    assert_eq!(c.wait_final(second, DEADLINE), "succeeded");
    c.wait_until("the first backup expires", DEADLINE, || {
        one_text(
            &mut c.client("postgres"),
            &format!("SELECT status FROM backup_ext.backups WHERE backup_id = {job}"),
        ) == "expired"
    });
    let keys: BTreeSet<String> = s3.objects("").into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys.len(),
        2,
        "one backup and its sidecar are left: {keys:?}"
    );
    assert!(
        keys.iter()
            .all(|k| k.contains(&format!("-job{second:012}."))),
        "{keys:?}"
    );
    exec(
        &mut client,
        "SELECT backup_ext.set_retention('postgres'); \
         UPDATE backup_ext.artifacts SET expired_at = now() WHERE storage = 'offsite'",
    );
    assert_eq!(
        one_text(
            &mut client,
            "SELECT backup_ext.drop_storage('offsite')::text"
        ),
        "true"
    );
    assert_eq!(storage_names(&mut client), vec!["local".to_string()]);
}

#[test]
fn backups_stream_into_s3_with_a_sidecar_and_no_secret_anywhere() {
    let s3 = Seaweed::start("stream");
    let c = Cluster::start("storage_stream");
    c.set_and_reload(
        "backup_ext.s3_credentials_file",
        &s3.credentials_file.to_string_lossy(),
    );
    let mut client = c.client("postgres");
    let url = format!("s3://{}/team/a", s3.bucket);
    exec(
        &mut client,
        &add_storage_sql("offsite", &url, &s3.endpoint, ", 'part_size', 5242880"),
    );
    exec(&mut client, "CREATE DATABASE app");
    let mut app = c.client("app");
    // About 12 MB of incompressible data: three parts of 5 MiB.
    exec(
        &mut app,
        "CREATE TABLE blobs AS SELECT g AS id, \
         (SELECT string_agg(md5(random()::text || g || i), '') FROM generate_series(1, 40) i) AS data \
         FROM generate_series(1, 9000) g",
    );

    let sysid = one_text(
        &mut client,
        "SELECT system_identifier::text FROM pg_control_system()",
    );
    let mut jobs = Vec::new();
    for (format, compress) in [("custom", "'0'"), ("plain", "NULL"), ("tar", "NULL")] {
        jobs.push(one_i64(
            &mut client,
            &format!(
                "SELECT backup_ext.backup_database('app', '{format}', {compress}, \
                 options => '{{\"storage\": \"offsite\"}}')"
            ),
        ));
    }
    let globals = one_i64(
        &mut client,
        "SELECT backup_ext.backup_globals(options => '{\"storage\": \"offsite\"}')",
    );
    jobs.push(globals);
    for &job in &jobs {
        assert_eq!(
            c.wait_final(job, DEADLINE),
            "succeeded",
            "job {job}: {:?}",
            c.job(job)
        );
    }

    let objects: std::collections::BTreeMap<String, u64> = s3.objects("").into_iter().collect();
    for &job in &jobs {
        let row = client
            .query_one(
                "SELECT storage, key, path, size_bytes, sha256, database, bytes_written
                   FROM backup_ext.backups WHERE backup_id = $1",
                &[&job],
            )
            .unwrap();
        let (storage, key, path): (String, String, Option<String>) =
            (row.get(0), row.get(1), row.get(2));
        let (size, sha): (i64, String) = (row.get(3), row.get(4));
        let database: Option<String> = row.get(5);
        assert_eq!(storage, "offsite");
        assert_eq!(path, None, "a remote backup has no local path");
        let folder = database.as_deref().unwrap_or("globals");
        assert!(
            key.starts_with(&format!("{sysid}/{folder}/"))
                && key.contains(&format!("-job{job:012}.")),
            "key {key}"
        );
        let full = format!("team/a/{key}");
        assert_eq!(objects.get(&full), Some(&(size as u64)), "{objects:?}");
        let bytes = s3.get(&full);
        assert_eq!(hex::encode(Sha256::digest(&bytes)), sha);
        let sidecar: serde_json::Value =
            serde_json::from_slice(&s3.get(&format!("{full}.json"))).unwrap();
        assert_eq!(sidecar["backup_id"], job);
        assert_eq!(sidecar["sha256"], sha.as_str());
        assert_eq!(sidecar["size_bytes"], size);
        assert_eq!(sidecar["system_identifier"], sysid.as_str());
        assert_eq!(sidecar["storage"], "offsite");
        assert_eq!(sidecar["key"], key.as_str());
        assert_eq!(sidecar["sidecar_version"], 1);
        if database.is_some() {
            assert!(
                size > 10 * 1024 * 1024,
                "the dump spans several parts: {size}"
            );
        }
    }
    // The custom archive is whole: pg_restore lists its table.
    let custom_key = one_text(
        &mut client,
        &format!(
            "SELECT 'team/a/' || key FROM backup_ext.backups WHERE backup_id = {}",
            jobs[0]
        ),
    );
    let archive = c.root.join("from-s3.dump");
    std::fs::write(&archive, s3.get(&custom_key)).unwrap();
    let listing = c.run_tool("pg_restore", &["--list", &archive.to_string_lossy()]);
    assert!(
        String::from_utf8_lossy(&listing.stdout).contains("TABLE DATA public blobs"),
        "{listing:?}"
    );
    assert!(s3.open_uploads().is_empty(), "{:?}", s3.open_uploads());
    // Nothing local was written for them.
    let local = one_i64(
        &mut client,
        "SELECT count(*) FROM backup_ext.backups WHERE path IS NOT NULL",
    );
    assert_eq!(local, 0);

    // list_remote() reads the sidecars: every backup there, all known to the catalog.
    let listed = client
        .query(
            "SELECT backup_id, r.key, in_catalog, r.size_bytes, r.sha256 = b.sha256
               FROM backup_ext.list_remote('offsite') r
               JOIN backup_ext.backups b USING (backup_id) ORDER BY backup_id",
            &[],
        )
        .unwrap();
    let ids: Vec<i64> = listed.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, jobs);
    assert!(listed
        .iter()
        .all(|r| r.get::<_, bool>(2) && r.get::<_, bool>(4)));
    // A sidecar of another cluster is only listed with all_clusters.
    let other_key = "team/a/9999/app/20260101T000000Z-job000000000001.dump";
    s3.put(other_key, b"x");
    let mut foreign: serde_json::Value = serde_json::from_slice(&s3.get(&format!(
        "team/a/{}.json",
        one_text(
            &mut client,
            &format!(
                "SELECT key FROM backup_ext.backups WHERE backup_id = {}",
                jobs[0]
            )
        )
    )))
    .unwrap();
    foreign["system_identifier"] = "9999".into();
    s3.put(&format!("{other_key}.json"), foreign.to_string().as_bytes());
    // Sidecars that are not ours (not JSON, or JSON of another shape) are skipped.
    s3.put("team/a/9999/app/notes.json", b"not json");
    s3.put("team/a/9999/app/other.json", b"{\"hello\": 1}");
    let counts = one_text(
        &mut client,
        "SELECT (SELECT count(*) FROM backup_ext.list_remote('offsite')) || ' ' ||
                (SELECT count(*) FROM backup_ext.list_remote('offsite', all_clusters => true)
                  WHERE NOT in_catalog)",
    );
    assert_eq!(counts, "4 1");
    s3.delete(other_key);
    s3.delete(&format!("{other_key}.json"));
    s3.delete("team/a/9999/app/notes.json");
    s3.delete("team/a/9999/app/other.json");

    // Restores, inspection and verification read the object back.
    for (&job, target) in jobs.iter().zip(["from_custom", "from_plain", "from_tar"]) {
        let restore = one_i64(
            &mut client,
            &format!("SELECT backup_ext.restore_backup({job}, '{target}')"),
        );
        assert_eq!(
            c.wait_final(restore, DEADLINE),
            "succeeded",
            "{:?}",
            c.job(restore)
        );
        let rows = one_i64(&mut c.client(target), "SELECT count(*) FROM blobs");
        assert_eq!(rows, 9000, "{target}");
    }
    let tables = one_i64(
        &mut client,
        &format!(
            "SELECT count(*) FROM backup_ext.backup_contents({}) WHERE kind = 'TABLE DATA'",
            jobs[0]
        ),
    );
    assert_eq!(tables, 1);
    let verify = one_i64(
        &mut client,
        &format!(
            "SELECT backup_ext.verify_backup({}, test_restore => true)",
            jobs[0]
        ),
    );
    assert_eq!(
        c.wait_final(verify, DEADLINE),
        "succeeded",
        "{:?}",
        c.job(verify)
    );
    // Nothing is left in the work directory.
    assert_eq!(fetched_copies(&c), Vec::<String>::new());

    // An object overwritten behind our back: refused (XX001) and its verification fails; a
    // deleted one: 58P01.
    let tar_key = one_text(
        &mut client,
        &format!(
            "SELECT 'team/a/' || key FROM backup_ext.backups WHERE backup_id = {}",
            jobs[2]
        ),
    );
    let mut tampered = s3.get(&tar_key);
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x55;
    s3.put(&tar_key, &tampered);
    expect_sqlstate(
        &mut client,
        &format!("SELECT backup_ext.restore_backup({}, 'never')", jobs[2]),
        "XX001",
    );
    let verify = one_i64(
        &mut client,
        &format!("SELECT backup_ext.verify_backup({})", jobs[2]),
    );
    assert_eq!(c.wait_final(verify, DEADLINE), "failed");
    assert_eq!(
        one_text(
            &mut client,
            &format!(
                "SELECT verify_status FROM backup_ext.backups WHERE backup_id = {}",
                jobs[2]
            )
        ),
        "failed"
    );
    // status() says so: the newest backup of app cannot be trusted.
    let row = client
        .query_one(
            "SELECT status, last_error FROM backup_ext.status() WHERE database = 'app'",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "critical");
    let last_error: String = row.get(1);
    assert!(
        last_error.starts_with(&format!(
            "newest backup {} failed its verification: ",
            jobs[2]
        )),
        "{last_error}"
    );
    assert!(
        last_error.contains("no longer matches its recorded checksum"),
        "{last_error}"
    );
    assert!(one_text(&mut client, "SELECT backup_ext.check_status()")
        .contains("failed its verification"),);
    s3.delete(&tar_key);
    expect_sqlstate(
        &mut client,
        &format!("SELECT backup_ext.restore_backup({}, 'never')", jobs[2]),
        "58P01",
    );

    // No secret in the catalog, the server log or the storages view.
    let catalog = one_text(
        &mut client,
        "SELECT concat(
             (SELECT string_agg(t::text, ' ') FROM backup_ext.jobs t),
             (SELECT string_agg(t::text, ' ') FROM backup_ext.artifacts t),
             (SELECT string_agg(t::text, ' ') FROM backup_ext.storage_targets t))",
    );
    let log = c.log_text();
    for secret in [&s3.secret_key, &s3.access_key] {
        assert!(!catalog.contains(secret.as_str()), "catalog holds a key");
        assert!(!log.contains(secret.as_str()), "server log holds a key");
    }
}

#[test]
fn a_storage_dropped_while_a_job_is_queued_fails_the_job() {
    let s3 = Seaweed::start("dropped");
    let c = Cluster::start_with("storage_dropped", &[("backup_ext.max_parallel", "1")]);
    c.set_and_reload(
        "backup_ext.s3_credentials_file",
        &s3.credentials_file.to_string_lossy(),
    );
    let mut client = c.client("postgres");
    let url = format!("s3://{}", s3.bucket);
    exec(
        &mut client,
        &add_storage_sql("gone", &url, &s3.endpoint, ""),
    );
    c.create_sample_db("held");
    // Hold the only slot with a dump that waits for a lock, then queue one for "gone".
    let holder = lock_t1(&c, "held");
    let blocker = one_i64(&mut client, "SELECT backup_ext.backup_database('held')");
    wait_dump_blocked(&c, "held");
    let queued = one_i64(
        &mut client,
        "SELECT backup_ext.backup_database('postgres', options => '{\"storage\": \"gone\"}')",
    );
    assert_eq!(
        one_text(&mut client, "SELECT backup_ext.drop_storage('gone')::text"),
        "true"
    );
    drop(holder);
    assert_eq!(c.wait_final(blocker, DEADLINE), "succeeded");
    assert_eq!(c.wait_final(queued, DEADLINE), "failed");
    let error = c.job(queued).error.unwrap_or_default();
    assert!(
        error.contains("storage target \"gone\" no longer exists"),
        "{error}"
    );
    assert!(s3.objects("").is_empty());
}

/// A cluster with an S3 target `offsite` (5 MiB parts), a slow pg_dump and a database `big`
/// whose custom dump (uncompressed) is about 40 MB.
fn slow_upload_setup(name: &str, s3: &Seaweed) -> Cluster {
    let c = Cluster::start(name);
    c.set_and_reload(
        "backup_ext.s3_credentials_file",
        &s3.credentials_file.to_string_lossy(),
    );
    let mut client = c.client("postgres");
    let url = format!("s3://{}", s3.bucket);
    exec(
        &mut client,
        &add_storage_sql("offsite", &url, &s3.endpoint, ", 'part_size', 5242880"),
    );
    exec(&mut client, "CREATE DATABASE big");
    exec(
        &mut c.client("big"),
        "CREATE TABLE t AS SELECT g AS id, repeat(md5(g::text), 30) AS data \
         FROM generate_series(1, 42000) g",
    );
    let tools = slow_pg_dump_tools(&c, 0.1);
    c.set_and_reload("backup_ext.bin_dir", &tools.to_string_lossy());
    c
}

fn start_slow_backup(c: &Cluster) -> i64 {
    one_i64(
        &mut c.client("postgres"),
        "SELECT backup_ext.backup_database('big', 'custom', '0', \
         options => '{\"storage\": \"offsite\"}')",
    )
}

fn upload_recorded(c: &Cluster, job: i64) -> bool {
    one_text(
        &mut c.client("postgres"),
        &format!(
            "SELECT (upload_id IS NOT NULL)::text FROM backup_ext.artifacts WHERE job_id = {job}"
        ),
    ) == "true"
}

#[test]
fn an_upload_cut_off_by_the_store_fails_and_leaves_nothing_open() {
    let s3 = Seaweed::start("cutoff");
    let c = slow_upload_setup("storage_cutoff", &s3);
    let job = start_slow_backup(&c);
    c.wait_until("the upload has an id", DEADLINE, || {
        upload_recorded(&c, job)
    });
    s3.stop();
    assert_eq!(c.wait_final(job, DEADLINE), "failed");
    let error = c.job(job).error.unwrap_or_default();
    assert!(
        error.contains("offsite") || error.contains("127.0.0.1"),
        "the store's error names it: {error}"
    );
    s3.start_again();
    // The abort failed while the store was down; the worker's sweep retries it.
    c.wait_until("the open upload is aborted", DEADLINE, || {
        s3.open_uploads().is_empty() && !upload_recorded(&c, job)
    });
    assert!(s3.objects("").is_empty(), "{:?}", s3.objects(""));
}

#[test]
fn a_crash_during_an_upload_is_cleaned_up_at_the_next_start() {
    let s3 = Seaweed::start("crash");
    let c = slow_upload_setup("storage_crash", &s3);
    let job = start_slow_backup(&c);
    c.wait_until("the upload has an id", DEADLINE, || {
        upload_recorded(&c, job)
    });
    assert_eq!(s3.open_uploads().len(), 1);
    c.restart_immediate();
    assert_eq!(c.wait_final(job, DEADLINE), "failed");
    assert_eq!(
        c.job(job).error.as_deref(),
        Some("interrupted by server restart")
    );
    c.wait_until("recovery aborts the upload", DEADLINE, || {
        s3.open_uploads().is_empty() && !upload_recorded(&c, job)
    });
    assert!(s3.objects("").is_empty(), "{:?}", s3.objects(""));
}

fn copy_statuses(client: &mut postgres::Client, backup: i64) -> String {
    one_text(
        client,
        &format!(
            "SELECT coalesce(copies::text, '') FROM backup_ext.list_backups() \
             WHERE backup_id = {backup}"
        ),
    )
}

#[test]
fn backups_are_copied_to_further_targets_and_retried_until_they_get_there() {
    let primary = Seaweed::start("copy-primary");
    let vault = Seaweed::start("copy-vault");
    let c = Cluster::start_with(
        "storage_copies",
        &[
            ("backup_ext.copy_retry_delay", "1"),
            ("backup_ext.copy_lag", "1"),
        ],
    );
    // One credentials file with both servers' keys, as two profiles.
    let creds = c.root.join("s3-credentials");
    std::fs::write(
        &creds,
        format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n\
             [vault]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            primary.access_key, primary.secret_key, vault.access_key, vault.secret_key
        ),
    )
    .unwrap();
    chown_postgres(&creds);
    c.set_and_reload("backup_ext.s3_credentials_file", &creds.to_string_lossy());
    let nfs = c.root.join("nfs");
    std::fs::create_dir(&nfs).unwrap();
    chown_postgres(&nfs);
    let mut client = c.client("postgres");
    exec(
        &mut client,
        &add_storage_sql(
            "offsite",
            &format!("s3://{}", primary.bucket),
            &primary.endpoint,
            "",
        ),
    );
    exec(
        &mut client,
        &add_storage_sql(
            "vault",
            &format!("s3://{}/copies", vault.bucket),
            &vault.endpoint,
            ", 'profile', 'vault'",
        ),
    );
    exec(
        &mut client,
        &format!(
            "SELECT backup_ext.add_storage('nfs', {})",
            quote_literal(&format!("file://{}", nfs.display()))
        ),
    );
    expect_sqlstate(
        &mut client,
        "SELECT backup_ext.set_copies(NULL, ARRAY['vault', 'nowhere'])",
        "42704",
    );
    expect_sqlstate(
        &mut client,
        "SELECT backup_ext.set_copies(NULL, ARRAY['local'])",
        "22023",
    );
    exec(
        &mut client,
        "SELECT backup_ext.set_copies(NULL, ARRAY['vault', 'nfs'])",
    );
    c.create_sample_db("app");

    // A local backup, copied to S3 and to a directory; a backup in S3, copied from there.
    let local = one_i64(&mut client, "SELECT backup_ext.backup_database('app')");
    let remote = one_i64(
        &mut client,
        "SELECT backup_ext.backup_database('app', 'plain', options => '{\"storage\": \"offsite\"}')",
    );
    for job in [local, remote] {
        assert_eq!(c.wait_final(job, DEADLINE), "succeeded", "{:?}", c.job(job));
    }
    c.wait_until("the copies are made", DEADLINE, || {
        let mut client = c.client("postgres");
        copy_statuses(&mut client, local) == r#"{"nfs": "succeeded", "vault": "succeeded"}"#
            && copy_statuses(&mut client, remote) == r#"{"nfs": "succeeded", "vault": "succeeded"}"#
    });
    for backup in [local, remote] {
        let row = client
            .query_one(
                "SELECT b.sha256, b.size_bytes, c.key, c.sha256, c.size_bytes
                   FROM backup_ext.backups b JOIN backup_ext.copies c USING (backup_id)
                  WHERE b.backup_id = $1 AND c.storage = 'vault'",
                &[&backup],
            )
            .unwrap();
        let (sha, size, key): (String, i64, String) = (row.get(0), row.get(1), row.get(2));
        assert_eq!(row.get::<_, String>(3), sha);
        assert_eq!(row.get::<_, i64>(4), size);
        let bytes = vault.get(&format!("copies/{key}"));
        assert_eq!(hex::encode(Sha256::digest(&bytes)), sha);
        let sidecar: serde_json::Value =
            serde_json::from_slice(&vault.get(&format!("copies/{key}.json"))).unwrap();
        assert_eq!(sidecar["backup_id"], backup);
        let file = std::fs::read(nfs.join(&key)).unwrap();
        assert_eq!(hex::encode(Sha256::digest(&file)), sha);
        assert!(nfs.join(format!("{key}.json")).exists());
    }
    assert_eq!(
        one_text(
            &mut client,
            "SELECT status FROM backup_ext.status() WHERE database = 'app'"
        ),
        "ok"
    );
    // Both backups are found in the directory target by their sidecars, and the local one in
    // backup_ext.directory.
    let found = one_text(
        &mut client,
        "SELECT string_agg(backup_id || ':' || in_catalog, ' ' ORDER BY backup_id)
           FROM backup_ext.list_remote('nfs')",
    );
    assert_eq!(found, format!("{local}:true {remote}:true"));
    let found = one_text(
        &mut client,
        "SELECT string_agg(backup_id || ':' || in_catalog, ' ' ORDER BY backup_id)
           FROM backup_ext.list_remote('local')",
    );
    assert_eq!(found, format!("{local}:true"));

    // A restore reads the copy it is told to; an unknown one is refused.
    let restored_rows = |db: &str| {
        one_i64(
            &mut c.client(db),
            "SELECT (SELECT count(*) FROM t1) + (SELECT count(*) FROM t2)",
        )
    };
    let source_rows = restored_rows("app");
    expect_sqlstate(
        &mut client,
        &format!(
            "SELECT backup_ext.restore_backup({remote}, 'never',              options => '{{\"storage\": \"nowhere\"}}')"
        ),
        "42704",
    );
    let wait_restore = |sql: &str, target: &str| {
        let job = one_i64(&mut c.client("postgres"), sql);
        assert_eq!(c.wait_final(job, DEADLINE), "succeeded", "{:?}", c.job(job));
        assert_eq!(restored_rows(target), source_rows, "{target}");
        job
    };
    let from_vault = wait_restore(
        &format!(
            "SELECT backup_ext.restore_backup({remote}, 'from_vault',              options => '{{\"storage\": \"vault\"}}')"
        ),
        "from_vault",
    );
    // A parallel restore of a remote custom archive reads a checked local copy, removed after.
    let parallel = wait_restore(
        &format!(
            "SELECT backup_ext.restore_backup({local}, 'from_nfs', jobs => 2,              options => '{{\"storage\": \"nfs\"}}')"
        ),
        "from_nfs",
    );
    // The primary is gone: the restore falls back to a copy, and the job says which.
    let local_path = one_text(
        &mut client,
        &format!("SELECT path FROM backup_ext.backups WHERE backup_id = {local}"),
    );
    let moved = c.root.join("moved-away.dump");
    std::fs::rename(&local_path, &moved).unwrap();
    let fallback = wait_restore(
        &format!("SELECT backup_ext.restore_backup({local}, 'from_fallback')"),
        "from_fallback",
    );
    let read_from: Vec<String> = [from_vault, parallel, fallback]
        .iter()
        .map(|job| {
            one_text(
                &mut client,
                &format!(
                    "SELECT coalesce(request->>'storage', '-') FROM backup_ext.jobs                      WHERE job_id = {job}"
                ),
            )
        })
        .collect();
    assert_eq!(read_from, ["vault", "nfs", "nfs"]);
    std::fs::rename(&moved, &local_path).unwrap();
    assert_eq!(fetched_copies(&c), Vec::<String>::new());

    // The vault is down: the copy fails, status() warns once copy_lag has passed, and the
    // retry after the vault is back succeeds.
    vault.stop();
    let third = one_i64(&mut client, "SELECT backup_ext.backup_database('app')");
    assert_eq!(c.wait_final(third, DEADLINE), "succeeded");
    c.wait_until("the copy to the vault fails", DEADLINE, || {
        one_text(
            &mut c.client("postgres"),
            &format!(
                "SELECT status || '/' || attempts FROM backup_ext.copies \
                 WHERE backup_id = {third} AND storage = 'vault'"
            ),
        )
        .starts_with("failed/")
    });
    // copy_lag is one second here.
    c.wait_until("status() warns", DEADLINE, || {
        one_text(
            &mut c.client("postgres"),
            "SELECT status FROM backup_ext.status() WHERE database = 'app'",
        ) == "warning"
    });
    let row = client
        .query_one(
            "SELECT status, last_error FROM backup_ext.status() WHERE database = 'app'",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "warning");
    assert_eq!(
        row.get::<_, Option<String>>(1).unwrap_or_default(),
        format!("newest backup {third} has no copy in vault yet")
    );
    let check = one_text(&mut client, "SELECT backup_ext.check_status()");
    assert!(check.contains("has no copy in vault yet"), "{check}");
    vault.start_again();
    c.wait_until("the retry gets the copy there", DEADLINE, || {
        copy_statuses(&mut c.client("postgres"), third)
            == r#"{"nfs": "succeeded", "vault": "succeeded"}"#
    });
    let attempts = one_i64(
        &mut client,
        &format!(
            "SELECT attempts::bigint FROM backup_ext.copies \
             WHERE backup_id = {third} AND storage = 'vault'"
        ),
    );
    assert!(attempts >= 2, "{attempts}");
    assert_eq!(
        one_text(
            &mut client,
            "SELECT status FROM backup_ext.status() WHERE database = 'app'"
        ),
        "ok"
    );

    // Retention deletes a backup's copies with it; a target with copies cannot be dropped.
    expect_sqlstate(
        &mut client,
        "SELECT backup_ext.drop_storage('nfs')",
        "2BP01",
    );
    let key = one_text(
        &mut client,
        &format!("SELECT key FROM backup_ext.copies WHERE backup_id = {local} AND storage = 'nfs'"),
    );
    exec(
        &mut client,
        "SELECT backup_ext.set_retention('app', keep_last => 1)",
    );
    exec(&mut client, "SELECT * FROM backup_ext.purge()");
    assert_eq!(
        copy_statuses(&mut client, local),
        r#"{"nfs": "expired", "vault": "expired"}"#
    );
    assert!(!nfs.join(&key).exists());
    assert!(!nfs.join(format!("{key}.json")).exists());
    assert!(vault.objects(&format!("copies/{key}")).is_empty());
}
