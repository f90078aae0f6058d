//! Major-version upgrades through the extension: a database and the globals backed up on
//! PostgreSQL 15 (with the newest tools, as the README's upgrade section says) restore on 17
//! and 18 with the same schema and contents; the newer tools restore into 15 as well; and an
//! archive too new for the configured pg_restore is refused at call time.
//!
//! Runs in the PostgreSQL 18 pass of `scripts/test.sh`: it needs the extension installed for
//! 15 and 17 too, which the passes before it did.

use backup_ext_e2e::*;

/// Objects beyond the sample tables: what an upgrade must carry over.
const EXTRA_SQL: &str = "
    CREATE SCHEMA shop;
    CREATE TYPE shop.state AS ENUM ('new', 'paid', 'sent');
    CREATE SEQUENCE shop.order_no START 1000;
    CREATE TABLE shop.orders (
        id bigint PRIMARY KEY DEFAULT nextval('shop.order_no'),
        state shop.state NOT NULL DEFAULT 'new',
        placed timestamptz NOT NULL,
        total numeric(12, 2) CHECK (total >= 0),
        lines jsonb
    );
    INSERT INTO shop.orders (state, placed, total, lines)
    SELECT (ARRAY['new', 'paid', 'sent']::shop.state[])[1 + i % 3],
           timestamptz '2026-01-01 00:00+00' + i * interval '1 hour',
           i * 1.25, jsonb_build_object('sku', 'A-' || i, 'qty', i % 7)
      FROM generate_series(1, 2000) AS i;
    CREATE INDEX orders_placed ON shop.orders (placed);
    CREATE FUNCTION shop.paid_total() RETURNS numeric LANGUAGE sql STABLE
        AS $$ SELECT coalesce(sum(total), 0) FROM shop.orders WHERE state = 'paid' $$;
    CREATE VIEW shop.open_orders AS SELECT id, placed FROM shop.orders WHERE state <> 'sent';
    COMMENT ON TABLE shop.orders IS 'orders, carried over by an upgrade';
";

/// Lines of a schema dump that differ between runs and versions: `\restrict` keys, the version
/// header, and the attribute option the Debian PostgreSQL 15 keeps on every column
/// (`pg_attver=<n>`, set by that server on CREATE TABLE, hidden by its own pg_dump, refused by
/// every other server; restores leave it out).
fn noise(l: &str) -> bool {
    l.starts_with("\\restrict ")
        || l.starts_with("\\unrestrict ")
        || l.starts_with("-- Dumped from ")
        || l.starts_with("-- Dumped by ")
        || (l.starts_with("ALTER TABLE ONLY ") && l.contains(" SET (pg_attver="))
}

/// `pg_dump --schema-only` by the PostgreSQL 18 tools, which read every server here, without
/// the lines that differ between runs and versions.
fn schema_by_18(c: &Cluster, db: &str) -> String {
    let out = std::process::Command::new(bin_dir_of(18).join("pg_dump"))
        .args(["--schema-only", "--no-sync", "-d", db])
        .env("PGHOST", &c.sock)
        .env("PGPORT", c.port.to_string())
        .env("PGUSER", PG_USER)
        .output()
        .expect("run pg_dump 18");
    check_output("pg_dump 18 --schema-only", &out);
    String::from_utf8(out.stdout)
        .expect("UTF-8 schema dump")
        .lines()
        .filter(|l| !noise(l))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Puts a backup file written by another cluster into `c`'s backup directory and records it
/// in `c`'s catalog as that cluster recorded it, as a catalog rebuilt from the storage would.
fn adopt(c: &Cluster, from: &Backup, kind: &str, compress: Option<&str>) -> i64 {
    let source = from.path_buf();
    let name = source.file_name().unwrap().to_str().unwrap().to_string();
    let folder = if kind == "globals" {
        "globals".to_string()
    } else {
        folder_name(from.database.as_deref().unwrap())
    };
    let target = c.backups.join(&folder).join(&name);
    c.write_server_file(&target, &std::fs::read(&source).expect("read backup file"));
    let mut client = c.client("postgres");
    let row = client
        .query_one(
            "WITH j AS (
                 INSERT INTO backup_ext.jobs
                        (kind, database, status, requested_at, started_at, finished_at, request,
                         label)
                 VALUES ($1, $2, 'succeeded', now(), now(), now(), '{}', 'from PostgreSQL 15')
                 RETURNING job_id
             )
             INSERT INTO backup_ext.artifacts
                    (backup_id, job_id, kind, database, format, compress, path, size_bytes,
                     sha256)
             SELECT job_id, job_id, $1, $2, $3, $4, $5, $6, $7 FROM j
             RETURNING backup_id",
            &[
                &kind,
                &from.database,
                &from.format,
                &compress,
                &path_str(&target),
                &from.size_bytes,
                &from.sha256,
            ],
        )
        .unwrap_or_else(|e| panic!("adopting {name}: {}", describe(&e)));
    row.get(0)
}

/// The same schema (as one server deparses it) and the same table contents.
fn assert_same_database(src: &Cluster, src_db: &str, dst: &Cluster, dst_db: &str, what: &str) {
    assert_same_schema(src, src_db, dst, dst_db, what);
    assert_eq!(
        table_hashes(src, src_db),
        table_hashes(dst, dst_db),
        "{what}: table contents"
    );
}

fn assert_same_schema(a_c: &Cluster, a_db: &str, b_c: &Cluster, b_db: &str, what: &str) {
    let (a, b) = (schema_by_18(a_c, a_db), schema_by_18(b_c, b_db));
    if a != b {
        let i = a
            .lines()
            .zip(b.lines())
            .position(|(x, y)| x != y)
            .unwrap_or(0);
        panic!(
            "{what}: schema dumps differ at line {}: {:?} vs {:?}",
            i + 1,
            a.lines().nth(i),
            b.lines().nth(i)
        );
    }
}

#[test]
fn backups_from_15_restore_on_17_and_18() {
    assert_eq!(
        pg_major(),
        18,
        "run with BACKUP_EXT_PG_BIN pointing at the PostgreSQL 18 tree (scripts/test.sh does)"
    );
    let tools_18 = bin_dir_of(18);
    let old = Cluster::start_major("upgrade-15", 15, &[]);
    old.set_and_reload("backup_ext.bin_dir", path_str(&tools_18));
    old.create_sample_db("app");
    exec(&mut old.client("app"), EXTRA_SQL);
    exec(
        &mut old.client("postgres"),
        "CREATE ROLE upgrade_owner LOGIN PASSWORD 'pw-upgrade' CONNECTION LIMIT 7;
         CREATE ROLE upgrade_reader NOLOGIN IN ROLE upgrade_owner",
    );

    // zstd needs pg_dump 16 or later: the 18 tools take it against the 15 server.
    let custom = backup_db(&old, "app", ", 'custom', compress => 'zstd:3'");
    let plain = backup_db(&old, "app", ", 'plain'");
    assert!(
        custom.tool_version.as_deref().unwrap().contains(" 18."),
        "{:?}",
        custom.tool_version
    );
    let globals_job = old.enqueue("SELECT backup_ext.backup_globals()");
    assert_eq!(old.wait_final(globals_job, SMALL_JOB), "succeeded");
    let globals = old.backup(globals_job);

    // The newer tools restore into the older server too, skipping only what 15 lacks. The
    // archive holds the 15 server's own column option, so it is restored as a script as well.
    for (from, target, by) in [
        (&custom, "app_back", "pg_restore"),
        (&plain, "app_back_plain", "pg_dump"),
    ] {
        let job = restore_ok(&old, &restore_sql(from.backup_id, target, ""));
        let (_, _, message) = job_outcome(&old, job);
        assert_eq!(
            message,
            Some(format!(
                "psql finished; this server does not know transaction_timeout (SET by the newer \
                 {by}), skipped; {}",
                rows_matched(&old, "app")
            ))
        );
        assert_same_database(
            &old,
            "app",
            &old,
            target,
            &format!("18 tools into 15, {target}"),
        );
    }

    for major in [17, 18] {
        let new = Cluster::start_major(&format!("upgrade-{major}"), major, &[]);
        // Each server prints view definitions its own way (16 and later leave out table names
        // where they are not needed): the schema a restore gives is compared with the same
        // database created on the new server directly, the contents with the old server's.
        new.create_sample_db("reference");
        exec(&mut new.client("reference"), EXTRA_SQL);
        for (from, compress, what) in [
            (&custom, Some("zstd:3"), "custom zstd"),
            (&plain, None, "plain"),
        ] {
            let id = adopt(&new, from, "database", compress);
            let target = format!("app_{}", from.format.as_deref().unwrap());
            restore_ok(&new, &restore_sql(id, &target, ""));
            let what = format!("15 → {major}, {what}");
            assert_same_schema(&new, "reference", &new, &target, &what);
            assert_eq!(
                table_hashes(&old, "app"),
                table_hashes(&new, &target),
                "{what}: table contents"
            );
        }
        if major == 18 {
            let id = adopt(&new, &globals, "globals", None);
            restore_ok(&new, &format!("SELECT backup_ext.restore_backup({id})"));
            let roles = one_text(
                &mut new.client("postgres"),
                "SELECT string_agg(format('%s login=%s limit=%s scram=%s', rolname, rolcanlogin::text,
                                          rolconnlimit,
                                          coalesce(rolpassword LIKE 'SCRAM-SHA-256$%', false)::text),
                                   ', ' ORDER BY rolname)
                   FROM pg_authid WHERE rolname LIKE 'upgrade\\_%'",
            );
            assert_eq!(
                roles,
                "upgrade_owner login=true limit=7 scram=true, \
                 upgrade_reader login=false limit=-1 scram=false"
            );
            let member = one_text(
                &mut new.client("postgres"),
                "SELECT pg_has_role('upgrade_reader', 'upgrade_owner', 'MEMBER')::text",
            );
            assert_eq!(member, "true");
        }
    }

    // With its own 15 tools again, the server refuses the archive the 18 tools wrote (version
    // 1.16) before anything is enqueued, naming the tools that read it.
    let mut client = old.client("postgres");
    old.set_and_reload("backup_ext.bin_dir", path_str(&bin_dir_of(15)));
    let before = one_i64(&mut client, "SELECT count(*) FROM backup_ext.jobs");
    let mut fresh = old.client("postgres");
    let err = refused(
        &mut fresh,
        &restore_sql(custom.backup_id, "app_old_tools", ""),
        &postgres::error::SqlState::FEATURE_NOT_SUPPORTED,
    );
    assert!(
        err.contains(&format!(
            "backup {} is an archive of version 1.16, which the configured pg_restore 15 \
             cannot read (it reads up to 1.14)",
            custom.backup_id
        )),
        "{err}"
    );
    assert!(
        err.contains("Set backup_ext.bin_dir to a directory with pg_restore 17 or later"),
        "{err}"
    );
    assert_eq!(
        one_i64(&mut client, "SELECT count(*) FROM backup_ext.jobs"),
        before,
        "nothing enqueued"
    );
}
