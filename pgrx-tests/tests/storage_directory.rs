//! Directory-format backups in a storage target: pg_dump writes them into a staging directory
//! under backup_ext.directory, each file is uploaded as `<key>/<file>` once pg_dump has finished,
//! and restores, inspection, verification and retention read or delete them there.

use std::time::Duration;

use backup_ext_e2e::*;

const DEADLINE: Duration = Duration::from_secs(120);

fn work_entries(c: &Cluster) -> Vec<String> {
    std::fs::read_dir(c.backups.join(".work"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.ends_with(".stderr"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn directory_backups_go_up_file_by_file_and_come_back() {
    let s3 = Seaweed::start("directory");
    let c = Cluster::start("storage_directory");
    c.set_and_reload(
        "backup_ext.s3_credentials_file",
        &s3.credentials_file.to_string_lossy(),
    );
    let mut client = c.client("postgres");
    exec(
        &mut client,
        &format!(
            "SELECT backup_ext.add_storage('offsite', {}, jsonb_build_object('endpoint', {}, \
             'path_style', true, 'allow_http', true, 'part_size', 5242880))",
            quote_literal(&format!("s3://{}/dirs", s3.bucket)),
            quote_literal(&s3.endpoint)
        ),
    );
    // Directory backups are not copied (set_copies() names a second target).
    let nfs = c.root.join("nfs");
    std::fs::create_dir(&nfs).unwrap();
    chown_postgres(&nfs);
    exec(
        &mut client,
        &format!(
            "SELECT backup_ext.add_storage('nfs', {})",
            quote_literal(&format!("file://{}", nfs.display()))
        ),
    );
    exec(
        &mut client,
        "SELECT backup_ext.set_copies(NULL, ARRAY['nfs'])",
    );
    c.create_sample_db("app");
    // About 12 MB of incompressible data in one table: its file goes up in three parts.
    exec(
        &mut c.client("app"),
        "CREATE TABLE blobs AS SELECT g AS id, \
         (SELECT string_agg(md5(random()::text || g || i), '') FROM generate_series(1, 40) i) AS data \
         FROM generate_series(1, 9000) g",
    );
    let job = one_i64(
        &mut client,
        "SELECT backup_ext.backup_database('app', 'directory', '0', jobs => 2, \
         options => '{\"storage\": \"offsite\"}')",
    );
    assert_eq!(c.wait_final(job, DEADLINE), "succeeded", "{:?}", c.job(job));
    // Copies are queued with the outcome, in its transaction: none for this one.
    let copies = one_i64(
        &mut client,
        &format!("SELECT count(*) FROM backup_ext.copies WHERE backup_id = {job}"),
    );
    assert_eq!(copies, 0);

    let row = client
        .query_one(
            "SELECT b.key, b.path, b.size_bytes, a.manifest::text, b.bytes_written
               FROM backup_ext.backups b JOIN backup_ext.artifacts a USING (backup_id)
              WHERE backup_id = $1",
            &[&job],
        )
        .unwrap();
    let (key, path, size): (String, Option<String>, i64) = (row.get(0), row.get(1), row.get(2));
    let manifest: serde_json::Value = serde_json::from_str(row.get(3)).unwrap();
    assert_eq!(path, None);
    assert!(key.ends_with(&format!("-job{job:012}.dir")), "{key}");
    assert_eq!(
        row.get::<_, i64>(4),
        size,
        "bytes_written counts what went up"
    );
    // Every file of the manifest, and nothing else, lies under <key>/ with its size; the
    // sidecar beside it.
    let mut expected: Vec<(String, u64)> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                format!("dirs/{key}/{}", f["name"].as_str().unwrap()),
                f["size"].as_u64().unwrap(),
            )
        })
        .collect();
    expected.sort();
    assert!(expected.iter().any(|(k, _)| k.ends_with("/toc.dat")));
    assert!(expected.iter().any(|(_, s)| *s > 10 * 1024 * 1024));
    assert_eq!(s3.objects(&format!("dirs/{key}/")), expected);
    assert_eq!(
        expected.iter().map(|(_, s)| *s as i64).sum::<i64>(),
        size,
        "the recorded size is the files' total"
    );
    let sidecar: serde_json::Value =
        serde_json::from_slice(&s3.get(&format!("dirs/{key}.json"))).unwrap();
    assert_eq!(sidecar["backup_id"], job);
    assert_eq!(sidecar["format"], "directory");
    assert!(s3.open_uploads().is_empty(), "{:?}", s3.open_uploads());
    assert!(work_entries(&c).is_empty(), "{:?}", work_entries(&c));

    // The table of contents is read from toc.dat alone; restores (parallel or not) and a test
    // restore fetch the files, check them against the manifest, and remove them afterwards.
    let tables = one_i64(
        &mut client,
        &format!(
            "SELECT count(*) FROM backup_ext.backup_contents({job}) WHERE kind = 'TABLE DATA'"
        ),
    );
    assert_eq!(tables, 4, "t1, t2, t3 and blobs");
    for (target, jobs) in [("from_dir", "NULL"), ("from_dir_parallel", "2")] {
        let restore = one_i64(
            &mut client,
            &format!("SELECT backup_ext.restore_backup({job}, '{target}', jobs => {jobs})"),
        );
        assert_eq!(
            c.wait_final(restore, DEADLINE),
            "succeeded",
            "{:?}",
            c.job(restore)
        );
        assert_eq!(
            one_i64(&mut c.client(target), "SELECT count(*) FROM blobs"),
            9000
        );
    }
    let verify = one_i64(
        &mut client,
        &format!("SELECT backup_ext.verify_backup({job}, test_restore => true)"),
    );
    assert_eq!(
        c.wait_final(verify, DEADLINE),
        "succeeded",
        "{:?}",
        c.job(verify)
    );
    assert!(work_entries(&c).is_empty(), "{:?}", work_entries(&c));

    // A file changed behind our back: refused at call time by its size, or by the job's check
    // of the manifest before the target is touched.
    let data_file = expected
        .iter()
        .find(|(_, s)| *s > 10 * 1024 * 1024)
        .unwrap()
        .0
        .clone();
    let original = s3.get(&data_file);
    let mut tampered = original.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x55;
    s3.put(&data_file, &tampered);
    let restore = one_i64(
        &mut client,
        &format!("SELECT backup_ext.restore_backup({job}, 'never_restored')"),
    );
    assert_eq!(c.wait_final(restore, DEADLINE), "failed");
    let error = c.job(restore).error.unwrap_or_default();
    assert!(
        error.contains("no longer matches its recorded checksum"),
        "{error}"
    );
    let exists = one_i64(
        &mut client,
        "SELECT count(*) FROM pg_database WHERE datname = 'never_restored'",
    );
    assert_eq!(exists, 0);
    s3.put(&data_file, &original[..middle]);
    expect_sqlstate(
        &mut client,
        &format!("SELECT backup_ext.restore_backup({job}, 'never_restored')"),
        "XX001",
    );

    // Retention deletes every file, the sidecar too.
    exec(
        &mut client,
        "SELECT backup_ext.set_retention('app', keep_last => 1)",
    );
    let second = one_i64(
        &mut client,
        "SELECT backup_ext.backup_database('app', options => '{\"storage\": \"offsite\"}')",
    );
    assert_eq!(c.wait_final(second, DEADLINE), "succeeded");
    // Retention keeps the newest backup whose verification passed: verify the new one first.
    let verify = one_i64(
        &mut client,
        &format!("SELECT backup_ext.verify_backup({second})"),
    );
    assert_eq!(
        c.wait_final(verify, DEADLINE),
        "succeeded",
        "{:?}",
        c.job(verify)
    );
    let purged = one_text(
        &mut client,
        "SELECT string_agg(backup_id::text, ',') FROM backup_ext.purge() WHERE backup_id IS NOT NULL",
    );
    assert_eq!(purged, job.to_string());
    assert_eq!(
        s3.objects(&format!("dirs/{key}")),
        Vec::<(String, u64)>::new()
    );
}
