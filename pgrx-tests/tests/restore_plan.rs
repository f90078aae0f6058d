//! restore_plan(): what a restore would do and what would stop it, without a job and without
//! changes; and restore_backup() refusing, at call time, what its plan says would fail, with
//! the plan's first blocking row as DETAIL.

use backup_ext_e2e::postgres::error::SqlState;
use backup_ext_e2e::postgres::Client;
use backup_ext_e2e::*;
use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

fn cluster() -> SharedCluster {
    shared_cluster("restore_plan", &[])
}

#[derive(Debug, Clone, PartialEq)]
struct Row {
    step: i32,
    action: String,
    kind: Option<String>,
    schema: Option<String>,
    name: Option<String>,
    detail: String,
}

impl Row {
    /// The row as restore_backup() puts it in DETAIL.
    fn describe(&self) -> String {
        let mut what = self.action.clone();
        if let Some(kind) = &self.kind {
            what.push_str(&format!(" {kind}"));
        }
        if let Some(name) = &self.name {
            match &self.schema {
                Some(schema) => what.push_str(&format!(" {schema}.{name}")),
                None => what.push_str(&format!(" {name}")),
            }
        }
        format!("step {}: {what}: {}", self.step, self.detail)
    }

    fn blocking(&self) -> bool {
        self.detail.starts_with("blocking: ")
    }

    fn is(&self, action: &str, kind: &str, schema: Option<&str>, name: &str) -> bool {
        self.action == action
            && self.kind.as_deref() == Some(kind)
            && self.schema.as_deref() == schema
            && self.name.as_deref() == Some(name)
    }
}

fn plan(client: &mut Client, backup_id: i64, target: &str, rest: &str) -> Vec<Row> {
    let sql = format!(
        "SELECT step, action, kind, schema, name, detail
           FROM backup_ext.restore_plan({backup_id}, {}{rest}) ORDER BY step",
        quote_literal(target)
    );
    let rows: Vec<Row> = client
        .query(&sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)))
        .iter()
        .map(|r| Row {
            step: r.get(0),
            action: r.get(1),
            kind: r.get(2),
            schema: r.get(3),
            name: r.get(4),
            detail: r.get(5),
        })
        .collect();
    let steps: Vec<i32> = rows.iter().map(|r| r.step).collect();
    assert_eq!(
        steps,
        (1..=rows.len() as i32).collect::<Vec<_>>(),
        "{rows:#?}"
    );
    rows
}

fn step_of(rows: &[Row], action: &str, kind: &str, schema: Option<&str>, name: &str) -> i32 {
    rows.iter()
        .find(|r| r.is(action, kind, schema, name))
        .unwrap_or_else(|| panic!("no {action} {kind} {name} in {rows:#?}"))
        .step
}

/// Jobs that read backup `backup_id` (restores and verifications); other tests share the
/// cluster, so only these are counted.
fn job_count(c: &Cluster, backup_id: i64) -> i64 {
    one_i64(
        &mut c.client("postgres"),
        &format!("SELECT count(*) FROM backup_ext.jobs WHERE backup_id = {backup_id}"),
    )
}

/// restore_backup() refused with `state`; the error's DETAIL.
fn refused_detail(c: &Cluster, sql: &str, state: &SqlState) -> (String, String) {
    match c.client("postgres").batch_execute(sql) {
        Ok(()) => panic!("{sql}: succeeded, expected SQLSTATE {}", state.code()),
        Err(e) => {
            assert_eq!(e.code(), Some(state), "{sql}: {}", describe(&e));
            let db = e.as_db_error().expect("a server error");
            assert!(db.hint().is_some_and(|h| !h.is_empty()), "{sql}: no hint");
            (
                db.message().to_string(),
                db.detail().unwrap_or_default().to_string(),
            )
        }
    }
}

/// `sql` fails with 42501 (insufficient_privilege).
fn assert_denied(client: &mut Client, sql: &str) {
    let err = client.query(sql, &[]).unwrap_err();
    assert_eq!(
        err.code(),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE),
        "{sql}: {}",
        describe(&err)
    );
}

#[test]
fn plan_for_a_new_database_matches_the_restore() {
    let c = cluster();
    let src = "plan_new_src";
    c.create_sample_db(src);
    let b = backup_db(&c, src, "");
    let mut client = c.client("postgres");
    let source_size = one_i64(
        &mut client,
        &format!(
            "SELECT source_size_bytes FROM backup_ext.artifacts WHERE backup_id = {}",
            b.backup_id
        ),
    );
    assert!(
        source_size > 0,
        "the source's size is recorded with the backup"
    );

    let jobs_before = job_count(&c, b.backup_id);
    let rows = plan(&mut client, b.backup_id, "plan_new_dst", "");
    assert_eq!(
        job_count(&c, b.backup_id),
        jobs_before,
        "a plan queues nothing"
    );
    assert!(
        !database_exists(&c, "plan_new_dst"),
        "a plan creates nothing"
    );
    assert!(rows.iter().all(|r| !r.blocking()), "{rows:#?}");

    assert_eq!(
        (rows[0].action.as_str(), rows[0].kind.as_deref()),
        ("tools", Some("pg_restore"))
    );
    assert!(
        rows[0].detail.starts_with(&format!(
            "pg_restore {} reads this archive (version 1.",
            pg_major()
        )),
        "{}",
        rows[0].detail
    );
    assert_eq!(rows[1].action, "space");
    assert!(
        rows[1]
            .detail
            .contains("after the restore (the source database's size when it was backed up)"),
        "{}",
        rows[1].detail
    );
    assert!(rows[2].is("create", "DATABASE", None, "plan_new_dst"));

    // Tables, then their data, then their indexes and foreign keys.
    for t in ["t1", "t2", "t3"] {
        let table = step_of(&rows, "create", "TABLE", Some("public"), t);
        let data = step_of(&rows, "load data", "TABLE DATA", Some("public"), t);
        assert!(table < data, "{t}: {rows:#?}");
    }
    let t1_data = step_of(&rows, "load data", "TABLE DATA", Some("public"), "t1");
    assert!(t1_data < step_of(&rows, "create", "INDEX", Some("public"), "t1_n"));
    assert!(
        t1_data
            < step_of(
                &rows,
                "create",
                "FK CONSTRAINT",
                Some("public"),
                "t3 t3_t1_id_fkey"
            )
    );

    // One row per entry of the archive, less session settings and the public schema the new
    // database has already.
    let listed = one_i64(
        &mut client,
        &format!(
            "SELECT count(*) FROM backup_ext.backup_contents({})
              WHERE kind NOT IN ('ENCODING', 'STDSTRINGS', 'SEARCHPATH')
                AND NOT (kind = 'SCHEMA' AND name = 'public')",
            b.backup_id
        ),
    );
    let object_rows = rows.iter().filter(|r| r.step > 3).count() as i64;
    assert_eq!(object_rows, listed, "{rows:#?}");

    // The restore does what the plan said: the tables it would create are the ones it made.
    restore_ok(&c, &restore_sql(b.backup_id, "plan_new_dst", ""));
    let mut planned: Vec<String> = rows
        .iter()
        .filter(|r| r.action == "create" && r.kind.as_deref() == Some("TABLE"))
        .map(|r| {
            format!(
                "{}.{}",
                r.schema.as_deref().unwrap(),
                r.name.as_deref().unwrap()
            )
        })
        .collect();
    planned.sort();
    assert_eq!(table_set(&c, "plan_new_dst"), planned);
}

#[test]
fn plan_into_an_existing_database_finds_conflicts_and_the_restore_is_refused() {
    let c = cluster();
    let src = "plan_conflict_src";
    c.create_sample_db(src);
    let b = backup_db(&c, src, "");
    let dst = "plan_conflict_dst";
    let mut admin = c.client("postgres");
    admin
        .batch_execute("CREATE ROLE plan_dst_owner NOLOGIN")
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {dst} OWNER plan_dst_owner"))
        .unwrap();
    // A session that stays in the target.
    let mut session = c.client(dst);
    session
        .batch_execute("CREATE TABLE t2 (other int); CREATE TABLE unrelated (x int);")
        .unwrap();

    let jobs_before = job_count(&c, b.backup_id);
    let rows = plan(&mut admin, b.backup_id, dst, ", create_db => false");
    assert_eq!(job_count(&c, b.backup_id), jobs_before);
    let conflicts: Vec<&Row> = rows.iter().filter(|r| r.action == "conflict").collect();
    assert_eq!(conflicts.len(), 3, "{rows:#?}");
    assert!(conflicts[0].is("conflict", "DATABASE", None, dst));
    assert!(
        conflicts[0]
            .detail
            .starts_with("1 other session(s) connected to the target"),
        "{}",
        conflicts[0].detail
    );
    assert!(!conflicts[0].blocking());
    assert_eq!(
        conflicts[1].detail,
        "the target is owned by role \"plan_dst_owner\", not by \"postgres\"; restored objects keep the archive's owners"
    );
    assert!(conflicts[2].is("conflict", "TABLE", Some("public"), "t2"));
    assert!(conflicts[2].blocking());
    assert!(
        conflicts[2].detail.starts_with(&format!(
            "blocking: TABLE public.t2 already exists in database \"{dst}\" (toc_id "
        )),
        "{}",
        conflicts[2].detail
    );
    let first_blocking = rows.iter().find(|r| r.blocking()).unwrap().clone();
    assert_eq!(&first_blocking, conflicts[2]);

    // restore_backup() refuses exactly that, and queues nothing.
    let (message, detail) = refused_detail(
        &c,
        &restore_sql(b.backup_id, dst, ", create_db => false"),
        &SqlState::DUPLICATE_TABLE,
    );
    assert_eq!(
        message,
        format!(
            "backup {} cannot be restored into \"{dst}\": a table, view, sequence or index it creates exists there already",
            b.backup_id
        )
    );
    assert_eq!(detail, first_blocking.describe());
    assert_eq!(job_count(&c, b.backup_id), jobs_before);
    assert_eq!(table_set(&c, dst), ["public.t2", "public.unrelated"]);

    // With clean nothing blocks: everything is dropped first, in reverse order.
    let rows = plan(
        &mut admin,
        b.backup_id,
        dst,
        ", create_db => false, options => '{\"clean\": true}'",
    );
    assert!(rows.iter().all(|r| !r.blocking()), "{rows:#?}");
    let drop_t3 = step_of(&rows, "drop", "TABLE", Some("public"), "t3");
    let drop_t1 = step_of(&rows, "drop", "TABLE", Some("public"), "t1");
    let drop_fk = step_of(
        &rows,
        "drop",
        "FK CONSTRAINT",
        Some("public"),
        "t3 t3_t1_id_fkey",
    );
    let create_t1 = step_of(&rows, "create", "TABLE", Some("public"), "t1");
    assert!(
        drop_fk < drop_t1 && drop_t3 < drop_t1 && drop_t1 < create_t1,
        "{rows:#?}"
    );

    // data_only replaces data and creates nothing.
    let rows = plan(
        &mut admin,
        b.backup_id,
        dst,
        ", create_db => false, options => '{\"data_only\": true}'",
    );
    let actions: BTreeSet<&str> = rows.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(
        actions,
        ["conflict", "replace data", "space", "tools"]
            .into_iter()
            .collect()
    );
    assert!(rows
        .iter()
        .any(|r| r.is("replace data", "TABLE DATA", Some("public"), "t2")));
}

#[test]
fn plan_honours_tables_schemas_and_toc_ids() {
    let c = cluster();
    let src = "plan_filter_src";
    let mut admin = c.client("postgres");
    admin
        .batch_execute(&format!("CREATE DATABASE {src}"))
        .unwrap();
    c.client(src)
        .batch_execute(
            "CREATE SCHEMA app; CREATE SCHEMA other;
             CREATE TABLE app.a1 (id int PRIMARY KEY); INSERT INTO app.a1 VALUES (1), (2);
             CREATE TABLE app.a2 (x text);
             CREATE TABLE other.o1 (y int); INSERT INTO other.o1 VALUES (3);
             CREATE TABLE public.p1 (z int); INSERT INTO public.p1 VALUES (4);",
        )
        .unwrap();
    let b = backup_db(&c, src, "");
    let objects = |rows: &[Row]| -> Vec<String> {
        rows.iter()
            .filter(|r| r.action == "create" || r.action == "load data")
            .filter(|r| r.kind.as_deref() != Some("DATABASE"))
            .map(|r| {
                format!(
                    "{} {} {}.{}",
                    r.action,
                    r.kind.as_deref().unwrap(),
                    r.schema.as_deref().unwrap_or("-"),
                    r.name.as_deref().unwrap()
                )
            })
            .collect()
    };

    let rows = plan(
        &mut admin,
        b.backup_id,
        "plan_filter_t",
        ", options => '{\"tables\": [\"a1\"]}'",
    );
    assert_eq!(
        objects(&rows),
        ["create TABLE app.a1", "load data TABLE DATA app.a1"]
    );

    let rows = plan(
        &mut admin,
        b.backup_id,
        "plan_filter_s",
        ", options => '{\"schemas\": [\"other\"]}'",
    );
    // pg_restore --schema selects the schema's objects, not the schema itself.
    assert_eq!(
        objects(&rows),
        ["create TABLE other.o1", "load data TABLE DATA other.o1"]
    );

    let rows = plan(
        &mut admin,
        b.backup_id,
        "plan_filter_x",
        ", options => '{\"exclude_schemas\": [\"other\"], \"schema_only\": true}'",
    );
    // pg_restore --exclude-schema leaves out the schema's objects, not the schema itself.
    assert_eq!(
        objects(&rows),
        [
            "create SCHEMA -.app",
            "create SCHEMA -.other",
            "create TABLE app.a1",
            "create TABLE app.a2",
            "create TABLE public.p1",
            "create CONSTRAINT app.a1 a1_pkey"
        ]
    );

    let a2 = one_i64(
        &mut admin,
        &format!(
            "SELECT toc_id FROM backup_ext.backup_contents({}) WHERE kind = 'TABLE' AND name = 'a2'",
            b.backup_id
        ),
    );
    let rows = plan(
        &mut admin,
        b.backup_id,
        "plan_filter_id",
        &format!(", options => '{{\"toc_ids\": [{a2}]}}'"),
    );
    assert_eq!(objects(&rows), ["create TABLE app.a2"]);
    let detail = &rows
        .iter()
        .find(|r| r.action == "create" && r.kind.as_deref() == Some("TABLE"))
        .unwrap()
        .detail;
    assert_eq!(detail, &format!("toc_id {a2}; owner postgres"));

    // The restore with the same filter makes exactly the planned table.
    let p1 = ", options => '{\"tables\": [\"p1\"]}'";
    let rows = plan(&mut admin, b.backup_id, "plan_filter_p", p1);
    assert_eq!(
        objects(&rows),
        ["create TABLE public.p1", "load data TABLE DATA public.p1"]
    );
    restore_ok(&c, &restore_sql(b.backup_id, "plan_filter_p", p1));
    assert_eq!(table_set(&c, "plan_filter_p"), ["public.p1"]);
}

/// The extension directory of the test installation, where a throwaway extension is put.
fn extension_dir() -> PathBuf {
    PathBuf::from(pg_config("sharedir")).join("extension")
}

#[test]
fn missing_roles_and_extensions_are_predicted_and_refused() {
    let c = cluster();
    let ext = "backup_ext_plan_probe";
    let control = extension_dir().join(format!("{ext}.control"));
    let script = extension_dir().join(format!("{ext}--1.0.sql"));
    fs::write(
        &control,
        "comment = 'restore plan test'\ndefault_version = '1.0'\nrelocatable = true\n",
    )
    .unwrap();
    fs::write(
        &script,
        "CREATE FUNCTION plan_probe_one() RETURNS int LANGUAGE sql AS 'SELECT 1';\n",
    )
    .unwrap();

    let src = "plan_missing_src";
    let mut admin = c.client("postgres");
    admin
        .batch_execute("CREATE ROLE plan_gone_owner NOLOGIN; CREATE ROLE plan_gone_reader NOLOGIN")
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {src}"))
        .unwrap();
    c.client(src)
        .batch_execute(&format!(
            "CREATE EXTENSION {ext};
             CREATE TABLE kept (id int); INSERT INTO kept VALUES (1);
             CREATE TABLE owned (id int); ALTER TABLE owned OWNER TO plan_gone_owner;
             GRANT SELECT ON kept TO plan_gone_reader;"
        ))
        .unwrap();
    let b = backup_db(&c, src, "");
    admin
        .batch_execute(&format!("DROP DATABASE {src} WITH (FORCE)"))
        .unwrap();
    admin
        .batch_execute("DROP ROLE plan_gone_owner; DROP ROLE plan_gone_reader")
        .unwrap();
    fs::remove_file(&control).unwrap();
    fs::remove_file(&script).unwrap();

    let rows = plan(&mut admin, b.backup_id, "plan_missing_dst", "");
    let missing: Vec<(&str, &str, bool)> = rows
        .iter()
        .filter(|r| r.action.starts_with("missing"))
        .map(|r| (r.action.as_str(), r.name.as_deref().unwrap(), r.blocking()))
        .collect();
    assert_eq!(
        missing,
        [
            ("missing role", "plan_gone_owner", true),
            ("missing role", "plan_gone_reader", true),
            ("missing extension", ext, true),
        ],
        "{rows:#?}"
    );
    let owner_row = rows
        .iter()
        .find(|r| r.name.as_deref() == Some("plan_gone_owner"))
        .unwrap();
    // The count depends on what the major's pg_dump writes for a table (statistics, say).
    let (head, tail) = owner_row
        .detail
        .split_once(" object(s) in the archive ")
        .unwrap();
    assert!(
        head.starts_with("blocking: role \"plan_gone_owner\" owns "),
        "{}",
        owner_row.detail
    );
    assert_eq!(
        tail,
        "(first: TABLE public.owned) and does not exist on this server; restore the globals \
         backup first, or restore with no_owner"
    );
    let ext_row = rows
        .iter()
        .find(|r| r.action == "missing extension")
        .unwrap()
        .clone();
    assert!(
        ext_row.detail.starts_with(&format!(
            "blocking: the archive creates extension \"{ext}\" (toc_id "
        )),
        "{}",
        ext_row.detail
    );

    // Without owners and privileges the roles are not needed; the extension still is, and
    // restore_backup() refuses with that row.
    let lenient = ", options => '{\"no_owner\": true, \"no_privileges\": true}'";
    let rows = plan(&mut admin, b.backup_id, "plan_missing_dst", lenient);
    let blocking: Vec<&Row> = rows.iter().filter(|r| r.blocking()).collect();
    assert_eq!(blocking.len(), 1, "{rows:#?}");
    assert!(blocking[0].is("missing extension", "EXTENSION", None, ext));
    assert!(rows
        .iter()
        .any(|r| r.name.as_deref() == Some("plan_gone_owner")
            && r.detail.contains("not needed: no_owner is set")));
    let jobs_before = job_count(&c, b.backup_id);
    let (message, detail) = refused_detail(
        &c,
        &restore_sql(b.backup_id, "plan_missing_dst", lenient),
        &SqlState::FEATURE_NOT_SUPPORTED,
    );
    assert_eq!(
        message,
        format!(
            "backup {} cannot be restored into \"plan_missing_dst\": it creates an extension that is not available on this server",
            b.backup_id
        )
    );
    assert_eq!(detail, blocking[0].describe());
    // Without the options the first blocking row is the first missing role (42704).
    let (_, detail) = refused_detail(
        &c,
        &restore_sql(b.backup_id, "plan_missing_dst", ""),
        &SqlState::UNDEFINED_OBJECT,
    );
    assert_eq!(
        detail,
        plan(&mut admin, b.backup_id, "plan_missing_dst", "")
            .iter()
            .find(|r| r.blocking())
            .unwrap()
            .describe()
    );
    assert_eq!(job_count(&c, b.backup_id), jobs_before);
    assert!(!database_exists(&c, "plan_missing_dst"));

    // Leaving the extension out (only the tables) restores.
    let only_tables = ", options => '{\"no_owner\": true, \"no_privileges\": true, \"tables\": [\"kept\", \"owned\"]}'";
    let rows = plan(&mut admin, b.backup_id, "plan_missing_dst", only_tables);
    assert!(rows.iter().all(|r| !r.blocking()), "{rows:#?}");
    restore_ok(
        &c,
        &restore_sql(b.backup_id, "plan_missing_dst", only_tables),
    );
    assert_eq!(
        table_set(&c, "plan_missing_dst"),
        ["public.kept", "public.owned"]
    );
}

#[test]
fn plain_backups_are_planned_as_one_script_and_restorers_need_rights() {
    let c = cluster();
    let src = "plan_plain_src";
    c.create_sample_db(src);
    let b = backup_db(&c, src, ", format => 'plain'");
    let mut admin = c.client("postgres");
    let rows = plan(&mut admin, b.backup_id, "plan_plain_dst", "");
    let actions: Vec<(&str, Option<&str>)> = rows
        .iter()
        .map(|r| (r.action.as_str(), r.kind.as_deref()))
        .collect();
    assert_eq!(
        actions,
        [
            ("tools", Some("psql")),
            ("space", None),
            ("create", Some("DATABASE")),
            ("run script", Some("SCRIPT")),
        ]
    );
    assert!(rows[3]
        .detail
        .starts_with("psql runs the script as a whole"));

    // A role without the right to restore gets the same refusal as from restore_backup().
    admin
        .batch_execute("CREATE ROLE plan_nobody LOGIN")
        .unwrap();
    let mut nobody = c.client_as("postgres", "plan_nobody");
    assert_denied(
        &mut nobody,
        &format!(
            "SELECT * FROM backup_ext.restore_plan({}, 'x')",
            b.backup_id
        ),
    );
}

#[test]
fn a_restorer_plans_with_its_own_rights_and_functions_in_the_target_never_run() {
    let c = cluster();
    let role = "plan_restorer";
    let mut admin = c.client("postgres");
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN CREATEDB IN ROLE backup_ext_restorer, backup_ext_operator"
        ))
        .unwrap();
    for db in ["plan_own_src", "plan_own_dst"] {
        admin
            .batch_execute(&format!("CREATE DATABASE {db} OWNER {role}"))
            .unwrap();
    }
    c.client_as("plan_own_src", role)
        .batch_execute("CREATE TABLE mine (id int); INSERT INTO mine VALUES (1);")
        .unwrap();
    let b = backup_db(&c, "plan_own_src", "");
    // The target's owner plants functions named like those the plan's query calls, and a
    // witness table they would write to.
    c.client_as("plan_own_dst", role)
        .batch_execute(
            "CREATE TABLE mine (id int);
             CREATE TABLE witness (who text);
             GRANT INSERT ON witness TO PUBLIC;
             CREATE FUNCTION public.oidvectortypes(oidvector) RETURNS text LANGUAGE sql
                 AS $$ INSERT INTO public.witness VALUES (current_user) RETURNING 'x' $$;
             CREATE FUNCTION public.json_build_array(text, text, text) RETURNS json
                 LANGUAGE sql AS $$ INSERT INTO public.witness VALUES (current_user)
                                    RETURNING '[]'::json $$;",
        )
        .unwrap_or_else(|e| panic!("hostile target: {}", describe(&e)));

    let mut restorer = c.client_as("postgres", role);
    let rows = plan(
        &mut restorer,
        b.backup_id,
        "plan_own_dst",
        ", create_db => false",
    );
    let blocking: Vec<&Row> = rows.iter().filter(|r| r.blocking()).collect();
    assert_eq!(blocking.len(), 1, "{rows:#?}");
    assert!(blocking[0].is("conflict", "TABLE", Some("public"), "mine"));
    // Not a superuser: the data directory's path is not shown.
    let space = rows.iter().find(|r| r.action == "space").unwrap();
    assert!(
        space
            .detail
            .ends_with("free on the filesystem of the data directory"),
        "{}",
        space.detail
    );
    assert_eq!(
        one_i64(
            &mut c.client("plan_own_dst"),
            "SELECT count(*) FROM witness"
        ),
        0,
        "a function planted in the target ran"
    );
    // A database the restorer does not own is refused as restore_backup() refuses it.
    admin
        .batch_execute("CREATE DATABASE plan_not_theirs")
        .unwrap();
    assert_denied(
        &mut restorer,
        &format!(
            "SELECT * FROM backup_ext.restore_plan({}, 'plan_not_theirs', create_db => false)",
            b.backup_id
        ),
    );
}

#[test]
fn a_restore_larger_than_the_free_space_is_refused() {
    let c = cluster();
    let src = "plan_space_src";
    c.create_sample_db(src);
    let b = backup_db(&c, src, "");
    let mut admin = c.client("postgres");
    // Record a source far larger than any filesystem here.
    admin
        .batch_execute(&format!(
            "UPDATE backup_ext.artifacts SET source_size_bytes = 1125899906842624000
              WHERE backup_id = {}",
            b.backup_id
        ))
        .unwrap();
    let rows = plan(&mut admin, b.backup_id, "plan_space_dst", "");
    let first = rows.iter().find(|r| r.blocking()).unwrap().clone();
    assert_eq!(
        (first.step, first.action.as_str()),
        (2, "space"),
        "{rows:#?}"
    );
    assert!(
        first.detail.starts_with(
            "blocking: about 1024000.0 TB after the restore (the source database's size when \
             it was backed up); "
        ),
        "{}",
        first.detail
    );
    let jobs_before = job_count(&c, b.backup_id);
    let (message, detail) = refused_detail(
        &c,
        &restore_sql(b.backup_id, "plan_space_dst", ""),
        &SqlState::DISK_FULL,
    );
    assert_eq!(
        message,
        format!(
            "backup {} cannot be restored into \"plan_space_dst\": it would not fit on the data directory's filesystem",
            b.backup_id
        )
    );
    // The free space is read again by the refused call: other tests write meanwhile.
    assert_eq!(free_masked(&detail), free_masked(&first.describe()));
    assert_eq!(job_count(&c, b.backup_id), jobs_before);
    assert!(!database_exists(&c, "plan_space_dst"));
}

/// `text` with the figure before " free on the filesystem" replaced by `<free>`; the figure
/// must be a number and a unit (`37.4 GB`).
fn free_masked(text: &str) -> String {
    let end = text
        .find(" free on the filesystem")
        .unwrap_or_else(|| panic!("no free space in {text}"));
    let start = text[..end].rfind("; ").map_or(0, |i| i + 2);
    let (number, unit) = text[start..end].split_once(' ').unwrap_or(("", ""));
    assert!(
        number.parse::<f64>().is_ok() && ["B", "kB", "MB", "GB", "TB"].contains(&unit),
        "{text}"
    );
    format!("{}<free>{}", &text[..start], &text[end..])
}
