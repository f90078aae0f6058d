//! Disaster recovery: a server with encrypted backups in a real S3 server (SeaweedFS) and a
//! `file://` target is destroyed; a new server with the same bucket and identity file imports
//! the backups from their sidecars and restores globals and every database, identical to what
//! was lost. Also: a wrong identity refused before any database exists, a bucket shared with
//! another cluster, hostile sidecars skipped with their reasons, a second import adding nothing.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use backup_ext_e2e::*;

const DEADLINE: Duration = Duration::from_secs(120);
const APP: &str = "Données \"App\" Ω";

fn add_s3(client: &mut postgres::Client, s3: &Seaweed, url: &str) {
    exec(
        client,
        &format!(
            "SELECT backup_ext.add_storage('offsite', {}, jsonb_build_object('endpoint', {}, \
             'path_style', true, 'allow_http', true))",
            quote_literal(url),
            quote_literal(&s3.endpoint)
        ),
    );
}

fn add_file_target(client: &mut postgres::Client, dir: &Path) {
    exec(
        client,
        &format!(
            "SELECT backup_ext.add_storage('nfs', {})",
            quote_literal(&format!("file://{}", dir.display()))
        ),
    );
}

/// A database with awkward names, several types, a sequence, a view and a function, owned
/// in part by a role that only a globals restore brings back.
fn fill_app(c: &Cluster) {
    let mut client = c.client("postgres");
    exec(&mut client, "CREATE ROLE \"Ré Owner\" LOGIN");
    exec(
        &mut client,
        &format!("CREATE DATABASE {}", quote_ident(APP)),
    );
    c.client(APP)
        .batch_execute(
            r#"CREATE SCHEMA "Ünï Schema" AUTHORIZATION "Ré Owner";
               CREATE SEQUENCE "Ünï Schema"."Seq.One" START 100 INCREMENT 7;
               CREATE TABLE "Ünï Schema"."Order Items" (
                   id bigint PRIMARY KEY DEFAULT nextval('"Ünï Schema"."Seq.One"'),
                   "MixedCase" text NOT NULL,
                   amount numeric(12, 3),
                   at timestamptz,
                   tags int[],
                   doc jsonb,
                   raw bytea,
                   u uuid);
               ALTER TABLE "Ünï Schema"."Order Items" OWNER TO "Ré Owner";
               INSERT INTO "Ünï Schema"."Order Items" ("MixedCase", amount, at, tags, doc, raw, u)
               SELECT 'grüße ' || i || E' \'q\' \\ 日本 🐘', i * 1.125,
                      '2026-01-01 00:00:00+00'::timestamptz + i * interval '1 hour',
                      ARRAY[i, i % 3], jsonb_build_object('i', i, 'ü', ARRAY['a', NULL]),
                      decode(md5(i::text), 'hex'), md5(i::text)::uuid
                 FROM generate_series(1, 3000) AS i;
               CREATE TABLE public."lower and UPPER" (k text PRIMARY KEY, v double precision);
               INSERT INTO public."lower and UPPER" SELECT 'k' || i, i / 7.0
                 FROM generate_series(1, 200) AS i;
               CREATE VIEW "Ünï Schema"."Big Orders" AS
                   SELECT id, amount FROM "Ünï Schema"."Order Items" WHERE amount > 100;
               CREATE FUNCTION public."Total Ω"(p numeric) RETURNS numeric
                   LANGUAGE sql STABLE
                   AS $$ SELECT sum(amount) * p FROM "Ünï Schema"."Order Items" $$;"#,
        )
        .unwrap_or_else(|e| panic!("filling the app database: {}", describe(&e)));
}

/// Copies the files under `from` into `to` (created), owned by the server's user.
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    chown_postgres(to);
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), &dest).unwrap();
            chown_postgres(&dest);
        }
    }
}

/// Rows of import_backups() by key: (backup_id, database, kind, action).
type Imports = BTreeMap<String, (Option<i64>, Option<String>, Option<String>, String)>;

fn import(client: &mut postgres::Client, sql: &str) -> Imports {
    client
        .query(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)))
        .iter()
        .map(|r| {
            (
                r.get("key"),
                (r.get(0), r.get(1), r.get(2), r.get("action")),
            )
        })
        .collect()
}

fn actions(rows: &Imports) -> Vec<String> {
    rows.values().map(|r| r.3.clone()).collect()
}

#[test]
fn a_lost_server_is_rebuilt_from_its_bucket() {
    let s3 = Seaweed::start("disaster");
    let url = format!("s3://{}/fleet", s3.bucket);
    let keys = s3.root.join("keys");
    let nfs = s3.root.join("nfs");
    for dir in [&keys, &nfs] {
        fs::create_dir(dir).unwrap();
        chown_postgres(dir);
    }
    let (key, recipient) = keygen(&keys, "key.txt");
    let (wrong_key, _) = keygen(&keys, "wrong.txt");
    let credentials = s3.credentials_file.to_string_lossy().into_owned();

    // Server A: encryption on, backups in S3 (a cluster set) and in a directory target.
    let a = Cluster::start("disaster_a");
    a.set_and_reload("backup_ext.s3_credentials_file", &credentials);
    a.set_and_reload("backup_ext.identity_file", &key.to_string_lossy());
    let mut client = a.client("postgres");
    add_s3(&mut client, &s3, &url);
    add_file_target(&mut client, &nfs);
    exec(
        &mut client,
        &format!(
            "SELECT backup_ext.set_encryption(ARRAY[{}])",
            quote_literal(&recipient)
        ),
    );
    let probe = client
        .query("SELECT * FROM backup_ext.check_encryption()", &[])
        .unwrap();
    assert_eq!(probe.len(), 1);
    assert_eq!(probe[0].get::<_, String>("source"), "policy");
    assert_eq!(
        probe[0].get::<_, Option<String>>("recipient"),
        Some(recipient.clone())
    );
    assert_eq!(
        probe[0].get::<_, String>("fingerprint"),
        fingerprint(&recipient)
    );
    assert!(probe[0].get::<_, bool>("ok"));
    fill_app(&a);
    a.create_sample_db("plain_db");
    let sysid_a = one_text(
        &mut client,
        "SELECT system_identifier::text FROM pg_control_system()",
    );
    let set = one_i64(
        &mut client,
        "SELECT backup_ext.backup_cluster(options => '{\"storage\": \"offsite\"}')",
    );
    a.wait_until("the cluster set ends", DEADLINE, || {
        one_text(
            &mut a.client("postgres"),
            &format!("SELECT status FROM backup_ext.sets WHERE set_id = {set}"),
        ) != "running"
    });
    let members: Vec<(i64, String, Option<String>)> = members(&mut client, set);
    let statuses = one_text(
        &mut client,
        &format!(
            "SELECT string_agg(DISTINCT b.status || '/' || b.storage || '/' || b.encrypted, ',')
               FROM backup_ext.backups b WHERE set_id = {set}"
        ),
    );
    assert_eq!(statuses, "succeeded/offsite/true", "{members:?}");
    let to_nfs = backup(
        &a,
        &format!(
            "SELECT backup_ext.backup_database({}, options => '{{\"storage\": \"nfs\"}}')",
            quote_literal(APP)
        ),
    );
    let app_before = snapshot(&a, APP);
    let plain_before = snapshot(&a, "plain_db");
    assert_eq!(app_before.tables.len(), 2);
    let lost: BTreeMap<String, i64> = client
        .query(
            "SELECT coalesce(database, '(globals)'), backup_id FROM backup_ext.backups
              WHERE set_id = $1",
            &[&set],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        lost.keys().cloned().collect::<Vec<_>>(),
        ["(globals)", APP, "plain_db", "postgres"]
    );
    drop(client);

    // Hostile sidecars in A's folder of the bucket.
    let app_key = one_text(
        &mut a.client("postgres"),
        &format!(
            "SELECT key FROM backup_ext.backups WHERE backup_id = {}",
            lost[APP]
        ),
    );
    let real: serde_json::Value =
        serde_json::from_slice(&s3.get(&format!("fleet/{app_key}.json"))).unwrap();
    let folder = app_key.rsplit_once('/').unwrap().0.to_string();
    let hostile = |name: &str, change: &dyn Fn(&mut serde_json::Value), object: Option<&[u8]>| {
        let key = format!("{folder}/{name}");
        let mut v = real.clone();
        v["key"] = key.clone().into();
        change(&mut v);
        s3.put(&format!("fleet/{key}.json"), v.to_string().as_bytes());
        if let Some(bytes) = object {
            s3.put(&format!("fleet/{key}"), bytes);
        }
        key
    };
    let size = real["size_bytes"].as_u64().unwrap() as usize;
    let mut expected_skips: BTreeMap<String, String> = BTreeMap::new();
    let k = hostile(
        "evil1.dump",
        &|v| v["key"] = "../../../etc/evil1.dump".into(),
        Some(&b"x"[..]),
    );
    expected_skips.insert(
        k,
        "skipped: key \"../../../etc/evil1.dump\" is not a safe key".into(),
    );
    let k = hostile(
        "evil2.dump",
        &|v| v["key"] = "/etc/evil2.dump".into(),
        Some(&b"x"[..]),
    );
    expected_skips.insert(
        k,
        "skipped: key \"/etc/evil2.dump\" is not a safe key".into(),
    );
    let k = hostile(
        "evil3.dump",
        &|v| v["size_bytes"] = u64::MAX.into(),
        Some(&b"x"[..]),
    );
    expected_skips.insert(
        k,
        format!("skipped: size_bytes {} is out of range", u64::MAX),
    );
    let k = hostile("evil4.dump", &|_| {}, None);
    expected_skips.insert(
        k.clone(),
        format!("skipped: the backup is missing: no object at {k}"),
    );
    let k = hostile("evil5.dump", &|_| {}, Some(vec![0u8; size + 1].as_slice()));
    expected_skips.insert(
        k,
        format!(
            "skipped: the backup is {} bytes, the sidecar says {size}",
            size + 1
        ),
    );
    let k = hostile(
        "evil6.dump",
        &|v| v["backup_id"] = "1".into(),
        Some(&b"x"[..]),
    );
    expected_skips.insert(
        k,
        "skipped: not a backup sidecar: invalid type: string \"1\", expected i64".into(),
    );
    let k = format!("{folder}/evil7.dump");
    s3.put(&format!("fleet/{k}.json"), b"\x00\xffnot json");
    s3.put(&format!("fleet/{k}"), b"x");
    expected_skips.insert(k, "skipped: not a backup sidecar: ".into());

    // Server A is gone: stopped, its data directory and local backups deleted.
    a.stop();
    fs::remove_dir_all(&a.data).unwrap();
    fs::remove_dir_all(&a.backups).unwrap();

    // Server B: same bucket, a wrong identity at first.
    let b = Cluster::start("disaster_b");
    let mut client = b.client("postgres");
    let msg = expect_sqlstate(
        &mut client,
        "SELECT * FROM backup_ext.check_encryption()",
        "F0000",
    );
    assert_eq!(
        msg,
        "backup_ext.identity_file is not set, so no encrypted backup can be read"
    );
    b.set_and_reload("backup_ext.s3_credentials_file", &credentials);
    let missing = keys.join("missing.txt");
    b.set_and_reload("backup_ext.identity_file", &missing.to_string_lossy());
    let err = client
        .query("SELECT * FROM backup_ext.check_encryption()", &[])
        .unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "F0000");
    assert!(
        db.message().contains("missing.txt: entity not found"),
        "{}",
        db.message()
    );
    assert!(
        db.hint().unwrap().contains("backup_ext.identity_file"),
        "{:?}",
        db.hint()
    );
    // A file that is not an age identity (the S3 credentials): refused without quoting it.
    b.set_and_reload("backup_ext.identity_file", &credentials);
    let msg = expect_sqlstate(
        &mut client,
        "SELECT * FROM backup_ext.check_encryption()",
        "F0000",
    );
    assert_eq!(
        msg,
        "the identity file named by backup_ext.identity_file holds no age identity"
    );
    b.set_and_reload("backup_ext.identity_file", &wrong_key.to_string_lossy());
    // Superusers only.
    exec(
        &mut client,
        "CREATE ROLE op LOGIN; GRANT backup_ext_operator TO op",
    );
    let mut op = b.client_as("postgres", "op");
    for sql in [
        "SELECT * FROM backup_ext.import_backups('local', true)",
        "SELECT * FROM backup_ext.check_encryption()",
    ] {
        expect_sqlstate(&mut op, sql, "42501");
    }
    // An unknown target or a NULL: refused, nothing read.
    let msg = expect_sqlstate(
        &mut client,
        "SELECT * FROM backup_ext.import_backups('offsite')",
        "42704",
    );
    assert!(msg.contains("offsite"), "{msg}");
    expect_sqlstate(
        &mut client,
        "SELECT * FROM backup_ext.import_backups(NULL)",
        "22023",
    );
    add_s3(&mut client, &s3, &url);
    add_file_target(&mut client, &nfs);
    // B's own backup in the bucket: the only one an import without all_clusters sees.
    let own = backup(
        &b,
        "SELECT backup_ext.backup_globals(options => '{\"storage\": \"offsite\"}')",
    );
    let rows = import(
        &mut client,
        "SELECT * FROM backup_ext.import_backups('offsite')",
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    let only = rows.values().next().unwrap();
    assert_eq!(
        (only.0, only.3.as_str()),
        (Some(own.backup_id), "already known")
    );

    // Everything of A, with the hostile sidecars skipped.
    let rows = import(
        &mut client,
        "SELECT * FROM backup_ext.import_backups('offsite', all_clusters => true)",
    );
    for (key, expected) in &expected_skips {
        let got = &rows.get(key).unwrap_or_else(|| panic!("{key}: {rows:?}")).3;
        assert!(got.starts_with(expected.as_str()), "{key}: {got}");
        assert_eq!(rows[key].0, None);
    }
    let imported: BTreeMap<String, i64> = rows
        .values()
        .filter(|r| r.3 == "imported")
        .map(|r| (r.1.clone().unwrap_or("(globals)".into()), r.0.unwrap()))
        .collect();
    assert_eq!(
        imported.keys().collect::<Vec<_>>(),
        lost.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        rows.len(),
        expected_skips.len() + lost.len() + 1,
        "{rows:?}"
    );
    // New ids from this catalog's sequence, the originals kept for reference.
    for (db, id) in &imported {
        let row = client
            .query_one(
                "SELECT b.status, b.origin, b.encrypted, b.recipients,
                        (a.imported_from->>'backup_id')::bigint,
                        a.imported_from->>'system_identifier', b.set_id
                   FROM backup_ext.list_backups() b
                   JOIN backup_ext.artifacts a USING (backup_id)
                  WHERE b.backup_id = $1",
                &[id],
            )
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "succeeded");
        assert_eq!(row.get::<_, String>(1), "imported");
        assert!(row.get::<_, bool>(2));
        assert_eq!(row.get::<_, Vec<String>>(3), vec![fingerprint(&recipient)]);
        assert_eq!(row.get::<_, i64>(4), lost[db], "{db}");
        assert_eq!(row.get::<_, String>(5), sysid_a);
        assert_eq!(row.get::<_, Option<i64>>(6), None);
        assert!(*id > own.backup_id, "{db}: {id}");
    }
    // list_remote() knows them now; of the hostile sidecars it lists (evil1, 2 and 5: an
    // object beside them), none is in the catalog.
    assert_eq!(
        one_text(
            &mut client,
            "SELECT count(*) FILTER (WHERE in_catalog) || ' ' || count(*)
               FROM backup_ext.list_remote('offsite', all_clusters => true)"
        ),
        format!("{} {}", lost.len() + 1, lost.len() + 4)
    );
    // Running it again adds nothing.
    let count = "SELECT count(*) FROM backup_ext.artifacts";
    let before = one_i64(&mut client, count);
    let again = import(
        &mut client,
        "SELECT * FROM backup_ext.import_backups('offsite', all_clusters => true)",
    );
    assert_eq!(one_i64(&mut client, count), before);
    let known: Vec<i64> = again
        .values()
        .filter(|r| r.3 == "already known")
        .map(|r| r.0.unwrap())
        .collect();
    assert_eq!(known.len(), lost.len() + 1, "{again:?}");
    assert_eq!(
        again
            .values()
            .filter(|r| r.3.starts_with("skipped: "))
            .count(),
        expected_skips.len()
    );
    assert!(!actions(&again).contains(&"imported".to_string()));

    // The wrong identity: check_encryption says so, the restore is refused and no database
    // is left behind.
    let probe = client
        .query(
            "SELECT source, fingerprint, ok FROM backup_ext.check_encryption()",
            &[],
        )
        .unwrap();
    assert_eq!(probe.len(), 1);
    assert_eq!(probe[0].get::<_, String>(0), "backups");
    assert_eq!(probe[0].get::<_, String>(1), fingerprint(&recipient));
    assert!(!probe[0].get::<_, bool>(2));
    let msg = expect_sqlstate(&mut client, &restore_sql(imported[APP], APP, ""), "28000");
    assert!(msg.contains("backup_ext.identity_file"), "{msg}");
    assert!(!database_exists(&b, APP));

    // The right identity: globals first, then every database.
    b.set_and_reload("backup_ext.identity_file", &key.to_string_lossy());
    assert_eq!(
        one_text(
            &mut client,
            "SELECT string_agg(ok::text, ',') FROM backup_ext.check_encryption()"
        ),
        "true"
    );
    restore_ok(
        &b,
        &format!(
            "SELECT backup_ext.restore_backup({})",
            imported["(globals)"]
        ),
    );
    assert_eq!(
        one_i64(
            &mut client,
            "SELECT count(*) FROM pg_roles WHERE rolname = 'Ré Owner'"
        ),
        1
    );
    for db in [APP, "plain_db"] {
        restore_ok(&b, &restore_sql(imported[db], db, ""));
    }
    assert_same(&app_before, &snapshot(&b, APP), "app after import");
    assert_same(
        &plain_before,
        &snapshot(&b, "plain_db"),
        "plain_db after import",
    );

    // The directory target holds the other backup of the app database.
    let rows = import(
        &mut client,
        "SELECT * FROM backup_ext.import_backups('nfs', all_clusters => true)",
    );
    assert_eq!(actions(&rows), ["imported"], "{rows:?}");
    let from_nfs = rows.values().next().unwrap().0.unwrap();
    assert_eq!(
        one_i64(
            &mut client,
            &format!(
                "SELECT (imported_from->>'backup_id')::bigint FROM backup_ext.artifacts
                  WHERE backup_id = {from_nfs}"
            )
        ),
        to_nfs.backup_id
    );
    let verify = one_i64(
        &mut client,
        &format!("SELECT backup_ext.verify_backup({from_nfs})"),
    );
    assert_eq!(
        b.wait_final(verify, DEADLINE),
        "succeeded",
        "{:?}",
        b.job(verify)
    );
    restore_ok(&b, &restore_sql(from_nfs, "app_from_nfs", ""));
    assert_same(&app_before, &snapshot(&b, "app_from_nfs"), "app from nfs");
    // The same backup carried into backup_ext.directory by hand is the one already imported.
    let carried = b.backups.join("carried");
    copy_tree(&nfs, &carried);
    let rows = import(
        &mut client,
        "SELECT * FROM backup_ext.import_backups(all_clusters => true)",
    );
    let (key, row) = rows.iter().next().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(key.starts_with(&format!("carried/{sysid_a}/")), "{key}");
    assert_eq!((row.0, row.3.as_str()), (Some(from_nfs), "already known"));

    // Imported backups are purged like any other: their objects go with them.
    let plain_key = one_text(
        &mut client,
        &format!(
            "SELECT key FROM backup_ext.backups WHERE backup_id = {}",
            imported["plain_db"]
        ),
    );
    exec(
        &mut client,
        "SELECT backup_ext.set_retention('plain_db', keep_last => 1)",
    );
    let newer = backup(
        &b,
        "SELECT backup_ext.backup_database('plain_db', options => '{\"storage\": \"offsite\"}')",
    );
    // The worker applies the policy after the new backup succeeded.
    let wanted = format!(
        "{}:expired,{}:succeeded",
        imported["plain_db"], newer.backup_id
    );
    b.wait_until("the imported backup expires", DEADLINE, || {
        one_text(
            &mut b.client("postgres"),
            "SELECT string_agg(backup_id || ':' || status, ',' ORDER BY backup_id)
               FROM backup_ext.backups WHERE database = 'plain_db'",
        ) == wanted
    });
    let left: Vec<String> = s3
        .objects(&format!("fleet/{plain_key}"))
        .into_iter()
        .map(|o| o.0)
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
