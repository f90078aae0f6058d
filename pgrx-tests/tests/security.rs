//! Attacks on backup_ext's privilege boundaries, each played end to end by a hostile role
//! against a real cluster: restores that would run the attacker's code as the superuser,
//! functions and operators that shadow built-ins in schemas the attacker can write to,
//! globals, databases the attacker may not connect to, a cancel() that holds a lock, and a
//! restore into someone else's database. Every attack ends with a check that the attacker
//! gained nothing.
//!
//! Each test gets a cluster of its own: an attack that works changes roles, the catalog
//! database's schemas or the worker itself, and must not spill into other tests.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use backup_ext_e2e::postgres::Client;
use backup_ext_e2e::*;

const OPERATOR: &str = "backup_ext_operator";
const RESTORER: &str = "backup_ext_restorer";
/// insufficient_privilege: the SQLSTATE of every refusal here.
const DENIED: &str = "42501";
/// How long a per-job login role may outlive the final status of its job.
const ROLE_CLEANUP: Duration = Duration::from_secs(10);

/// A table t1 of 100 rows; what `lock_t1` locks to hold a dump up.
const SMALL_TABLE_SQL: &str = "
CREATE TABLE public.t1 (id integer PRIMARY KEY, v text NOT NULL);
INSERT INTO public.t1 SELECT i, 'row ' || i FROM generate_series(1, 100) AS i;
";

// ---------------------------------------------------------------------------
// Roles, databases, jobs

/// A superuser connection that resolves names in pg_catalog only, so the test's own queries
/// never run a shadowing function or operator an attacker planted.
fn pinned(c: &Cluster, db: &str) -> Client {
    let mut client = c.client(db);
    exec(&mut client, "SET search_path = pg_catalog, pg_temp");
    client
}

/// Restorers get CREATEDB: a restore into a new database gives it to them, which only roles
/// that may create databases may ask for.
fn create_role(c: &Cluster, role: &str, groups: &[&str]) {
    let mut sql = format!("CREATE ROLE {} LOGIN", quote_ident(role));
    if groups.contains(&RESTORER) {
        sql.push_str(" CREATEDB");
    }
    if !groups.is_empty() {
        sql.push_str(" IN ROLE ");
        sql.push_str(&groups.join(", "));
    }
    exec(&mut pinned(c, "postgres"), &sql);
}

/// Creates `db` owned by `owner` and runs `setup` in it as the owner.
fn create_owned_db(c: &Cluster, db: &str, owner: &str, setup: &str) {
    exec(
        &mut pinned(c, "postgres"),
        &format!(
            "CREATE DATABASE {} OWNER {}",
            quote_ident(db),
            quote_ident(owner)
        ),
    );
    exec(&mut c.client_as(db, owner), setup);
}

/// Calls a function returning a job id as `role`, connected to the catalog database.
fn enqueue_as(c: &Cluster, role: &str, sql: &str) -> i64 {
    c.client_as("postgres", role)
        .query_one(sql, &[])
        .unwrap_or_else(|e| panic!("{sql} as {role}: {}", describe(&e)))
        .get(0)
}

/// `status`, `error` and `message` of a job, read over a [`pinned`] connection (the
/// library's `job_outcome` uses an ordinary one).
fn job_outcome(c: &Cluster, job: i64) -> (String, Option<String>, Option<String>) {
    let row = pinned(c, "postgres")
        .query_one(
            "SELECT status, error, message FROM backup_ext.jobs WHERE job_id = $1",
            &[&job],
        )
        .unwrap_or_else(|e| panic!("jobs row {job}: {}", describe(&e)));
    (row.get(0), row.get(1), row.get(2))
}

fn assert_succeeds(c: &Cluster, job: i64, what: &str) {
    let status = c.wait_final(job, SMALL_JOB);
    assert_eq!(
        status,
        "succeeded",
        "{what}: job {job}: {:?}",
        job_outcome(c, job)
    );
}

/// Backs `db` up as `role` and returns the backup id once the job succeeded.
fn backup_as(c: &Cluster, role: &str, db: &str, args: &str) -> i64 {
    let job = enqueue_as(
        c,
        role,
        &format!(
            "SELECT backup_ext.backup_database({}{args})",
            quote_literal(db)
        ),
    );
    assert_succeeds(c, job, &format!("backup of {db} by {role}"));
    c.backup(job).backup_id
}

fn verify_sql(backup_id: i64) -> String {
    format!("SELECT backup_ext.verify_backup({backup_id}, test_restore => true)")
}

/// Jobs (restores and verifications) that read a backup.
fn jobs_reading(c: &Cluster, backup_id: i64) -> i64 {
    pinned(c, "postgres")
        .query_one(
            "SELECT count(*) FROM backup_ext.jobs WHERE backup_id = $1",
            &[&backup_id],
        )
        .unwrap()
        .get(0)
}

fn database_owner(c: &Cluster, db: &str) -> Option<String> {
    pinned(c, "postgres")
        .query_opt(
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1",
            &[&db],
        )
        .unwrap()
        .map(|r| r.get(0))
}

/// Like the library's `database_exists`, but over a [`pinned`] connection.
fn database_exists(c: &Cluster, db: &str) -> bool {
    database_owner(c, db).is_some()
}

fn row_count(c: &Cluster, db: &str, table: &str) -> i64 {
    one_i64(&mut pinned(c, db), &format!("SELECT count(*) FROM {table}"))
}

// ---------------------------------------------------------------------------
// What an attacker could have gained

fn is_superuser(c: &Cluster, role: &str) -> bool {
    pinned(c, "postgres")
        .query_one("SELECT rolsuper FROM pg_roles WHERE rolname = $1", &[&role])
        .unwrap_or_else(|e| panic!("role {role}: {}", describe(&e)))
        .get(0)
}

/// A role's attributes and the roles it belongs to: everything an escalation would change.
fn role_powers(c: &Cluster, role: &str) -> String {
    pinned(c, "postgres")
        .query_one(
            "SELECT format('superuser=%s createrole=%s createdb=%s bypassrls=%s \
                            replication=%s member of [%s]',
                           r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolbypassrls,
                           r.rolreplication,
                           (SELECT string_agg(g.rolname::text, ', ' ORDER BY g.rolname::text)
                              FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
                             WHERE m.member = r.oid))
               FROM pg_roles r WHERE r.rolname = $1",
            &[&role],
        )
        .unwrap_or_else(|e| panic!("role {role}: {}", describe(&e)))
        .get(0)
}

/// Per-job login roles that still exist.
fn job_roles(c: &Cluster) -> Vec<String> {
    pinned(c, "postgres")
        .query(
            "SELECT rolname::text FROM pg_roles
              WHERE rolname::text LIKE 'backup\\_ext\\_job\\_%' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn assert_no_job_roles_remain(c: &Cluster, after: &str) {
    let start = Instant::now();
    loop {
        let left = job_roles(c);
        if left.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < ROLE_CLEANUP,
            "per-job roles still there {ROLE_CLEANUP:?} after {after}: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asserts that `role` is exactly as powerful as `before` and that no per-job role is left.
fn assert_gained_nothing(c: &Cluster, role: &str, before: &str, after: &str) {
    assert!(
        !is_superuser(c, role),
        "{role} became a superuser through {after}"
    );
    assert_eq!(
        role_powers(c, role),
        before,
        "{role}'s attributes or memberships changed through {after}"
    );
    assert_no_job_roles_remain(c, after);
}

// ---------------------------------------------------------------------------
// Hostile database contents

/// Run as `attacker` in `db`, which the attacker owns:
///
/// * `public.escalate()`, SECURITY DEFINER, makes the attacker a superuser: harmless while the
///   attacker owns it, a promotion if a restore leaves it owned by a superuser.
/// * `public.witnessed`, whose CHECK constraint runs for every row a restore loads and writes
///   where it ran into the comment of `db` (a shared catalog, so it outlives a verification's
///   scratch database): see [`witnessed`].
/// * with `trap`, `public.trap`, whose CHECK constraint tries RESET ROLE, RESET SESSION
///   AUTHORIZATION and SET ROLE to the bootstrap superuser, each followed by ALTER ROLE
///   attacker SUPERUSER, and swallows every failure so the restore looks fine.
fn hostile_sql(db: &str, attacker: &str, trap: bool) -> String {
    let role = quote_literal(attacker);
    let db = quote_literal(db);
    let mut sql = format!(
        r#"
CREATE FUNCTION public.escalate() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER AS $fn$
BEGIN
    EXECUTE pg_catalog.format('ALTER ROLE %I SUPERUSER', {role});
END
$fn$;

CREATE FUNCTION public.witness(id integer) RETURNS boolean
LANGUAGE plpgsql AS $fn$
DECLARE
    facts text;
BEGIN
    SELECT pg_catalog.concat_ws('|', d.datname, pg_catalog.pg_get_userbyid(d.datdba),
                                current_user,
                                CASE WHEN r.rolsuper THEN 'session user is a superuser'
                                     ELSE 'session user is no superuser' END)
      INTO facts
      FROM pg_catalog.pg_database d, pg_catalog.pg_roles r
     WHERE d.datname = pg_catalog.current_database() AND r.rolname = session_user;
    EXECUTE pg_catalog.format('COMMENT ON DATABASE %I IS %L', {db}, facts);
    RETURN true;
END
$fn$;
CREATE TABLE public.witnessed (id integer PRIMARY KEY CHECK (public.witness(id)));
INSERT INTO public.witnessed VALUES (1);
"#
    );
    if trap {
        sql.push_str(&format!(
            r#"
CREATE FUNCTION public.escape_and_escalate(id integer) RETURNS boolean
LANGUAGE plpgsql AS $fn$
DECLARE
    attempt text;
BEGIN
    FOREACH attempt IN ARRAY ARRAY[
        'RESET ROLE',
        'RESET SESSION AUTHORIZATION',
        pg_catalog.format('SET ROLE %I',
                          (SELECT rolname FROM pg_catalog.pg_roles WHERE oid = 10))]
    LOOP
        BEGIN
            EXECUTE attempt;
            EXECUTE pg_catalog.format('ALTER ROLE %I SUPERUSER', {role});
        EXCEPTION WHEN others THEN
            NULL;
        END;
    END LOOP;
    RETURN true;
END
$fn$;
CREATE TABLE public.trap (id integer PRIMARY KEY CHECK (public.escape_and_escalate(id)));
INSERT INTO public.trap VALUES (1);
"#
        ));
    }
    sql
}

/// What the witness of [`hostile_sql`] writes when a restore into `db` runs as `role`:
/// the database, its owner, current_user, and that the session user is no superuser.
fn witnessed(db: &str, role: &str) -> String {
    format!("{db}|{role}|{role}|session user is no superuser")
}

fn witness(c: &Cluster, source: &str) -> Option<String> {
    pinned(c, "postgres")
        .query_one(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
            &[&source],
        )
        .unwrap()
        .get(0)
}

fn clear_witness(c: &Cluster, source: &str) {
    exec(
        &mut pinned(c, "postgres"),
        &format!("COMMENT ON DATABASE {} IS NULL", quote_ident(source)),
    );
}

/// Objects in schema public of `db` that `role` does not own.
fn objects_not_owned_by(c: &Cluster, db: &str, role: &str) -> Vec<String> {
    pinned(c, db)
        .query(
            "SELECT 'relation ' || c.relname::text
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'public' AND pg_get_userbyid(c.relowner) <> $1::text
             UNION ALL
             SELECT 'function ' || p.proname::text
               FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) <> $1::text
             ORDER BY 1",
            &[&role],
        )
        .unwrap_or_else(|e| panic!("owners in {db}: {}", describe(&e)))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

// ---------------------------------------------------------------------------
// Shadowing functions and operators

/// `public.pwned`: every shadow that runs adds who ran it and what it was.
const PWNED_TABLE_SQL: &str = "
CREATE TABLE public.pwned (who text, what text);
GRANT INSERT ON public.pwned TO PUBLIC;
";

/// Distinct `who|what` rows of `public.pwned` in `db`.
fn pwned_rows(c: &Cluster, db: &str) -> BTreeSet<String> {
    pinned(c, db)
        .query("SELECT DISTINCT who || '|' || what FROM public.pwned", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// A SECURITY INVOKER function `schema.name(args)` that records the call in `public.pwned`,
/// tries to make `attacker` a superuser (which works if a superuser runs it), then does
/// `tail` (hands the call on to the built-in), so that whoever called it notices nothing.
fn shadow_sql(
    schema: &str,
    name: &str,
    args: &[&str],
    returns: &str,
    tail: &str,
    attacker: &str,
) -> String {
    let signature = format!("{schema}.{name}({})", args.join(", "));
    let alter = format!("ALTER ROLE {} SUPERUSER", quote_ident(attacker));
    format!(
        "CREATE FUNCTION {}.{name}({}) RETURNS {returns}
         LANGUAGE plpgsql SECURITY INVOKER AS $fn$
         BEGIN
             INSERT INTO public.pwned (who, what) VALUES (current_user, {});
             BEGIN
                 EXECUTE {};
             EXCEPTION WHEN others THEN
                 NULL;
             END;
             {tail}
         END
         $fn$;\n",
        quote_ident(schema),
        args.join(", "),
        quote_literal(&signature),
        quote_literal(&alter)
    )
}

/// `RETURN pg_catalog.name($1, ..., $n);`
fn hand_on(name: &str, n: usize) -> String {
    let params: Vec<String> = (1..=n).map(|i| format!("${i}")).collect();
    format!("RETURN pg_catalog.{name}({});", params.join(", "))
}

/// Functions in `schema` that shadow built-ins the worker's SQL might call. Most match some
/// argument types better than the built-in (which takes VARIADIC "any", anyarray or
/// anyelement) and so win even with pg_catalog first in the search_path, e.g. the exact shape
/// of a NOTIFY payload built with json_build_object, or a one-array `unnest($1::bigint[])` (a
/// multi-array unnest in FROM always calls pg_catalog's). The last ones are exact twins of
/// built-ins and only run for a search_path that puts `schema` first.
fn shadow_functions_sql(schema: &str, attacker: &str) -> String {
    let mut sql = String::new();
    let mut add = |name: &str, args: &[&str], returns: &str, tail: &str| {
        sql.push_str(&shadow_sql(schema, name, args, returns, tail, attacker));
    };

    let mut object_shapes: BTreeSet<Vec<&str>> = BTreeSet::new();
    for pairs in 1..=6usize {
        let patterns: [Vec<&str>; 4] = [
            vec!["bigint"; pairs],
            vec!["text"; pairs],
            (0..pairs)
                .map(|i| if i < 2 { "bigint" } else { "text" })
                .collect(),
            (0..pairs)
                .map(|i| if i < 1 { "bigint" } else { "text" })
                .collect(),
        ];
        for values in patterns {
            object_shapes.insert(values.iter().flat_map(|v| ["text", *v]).collect());
        }
    }
    for (name, returns) in [
        ("json_build_object", "json"),
        ("jsonb_build_object", "jsonb"),
    ] {
        for shape in &object_shapes {
            add(name, shape, returns, &hand_on(name, shape.len()));
        }
    }
    for (name, returns) in [("json_build_array", "json"), ("jsonb_build_array", "jsonb")] {
        for n in 1..=4 {
            for t in ["text", "bigint"] {
                add(name, &vec![t; n], returns, &hand_on(name, n));
            }
        }
    }
    for (name, returns) in [("to_json", "json"), ("to_jsonb", "jsonb")] {
        for t in ["text", "bigint", "integer"] {
            add(name, &[t], returns, &hand_on(name, 1));
        }
    }

    let scalars = ["text", "name", "bigint", "integer"];
    for a in scalars {
        add("format", &["text", a], "text", &hand_on("format", 2));
        for b in scalars {
            add("format", &["text", a, b], "text", &hand_on("format", 3));
        }
    }
    for a in ["text", "name"] {
        for b in ["text", "name"] {
            for d in ["text", "name"] {
                add("format", &["text", a, b, d], "text", &hand_on("format", 4));
            }
        }
    }
    for a in ["text", "bigint"] {
        for b in ["text", "bigint"] {
            add("concat", &[a, b], "text", &hand_on("concat", 2));
            for d in ["text", "bigint"] {
                add("concat", &[a, b, d], "text", &hand_on("concat", 3));
            }
        }
    }
    for (array, element) in [
        ("bigint[]", "bigint"),
        ("integer[]", "integer"),
        ("text[]", "text"),
    ] {
        add(
            "unnest",
            &[array],
            &format!("SETOF {element}"),
            "RETURN QUERY SELECT pg_catalog.unnest($1);",
        );
    }

    add("now", &[], "timestamptz", &hand_on("now", 0));
    add(
        "clock_timestamp",
        &[],
        "timestamptz",
        &hand_on("clock_timestamp", 0),
    );
    add(
        "current_setting",
        &["text"],
        "text",
        &hand_on("current_setting", 1),
    );
    add(
        "to_char",
        &["timestamptz", "text"],
        "text",
        &hand_on("to_char", 2),
    );
    add(
        "to_char",
        &["timestamp", "text"],
        "text",
        &hand_on("to_char", 2),
    );
    add("quote_ident", &["text"], "text", &hand_on("quote_ident", 1));
    add(
        "pg_notify",
        &["text", "text"],
        "void",
        "PERFORM pg_catalog.pg_notify($1, $2);",
    );
    sql
}

/// Operators in `schema` that shadow built-ins. pg_catalog has no `~~`, `!~~`, `~` or `!~`
/// for (name, name), so `nspname NOT LIKE 'pg\_toast%'` (an unknown literal is taken to be of
/// the other side's type first) resolves to the attacker's operator. The (name, text) ones are
/// twins of built-ins.
fn shadow_operators_sql(schema: &str, attacker: &str) -> String {
    let operators = [
        (
            "~~",
            "name",
            "name",
            "shadow_like",
            "$1::text OPERATOR(pg_catalog.~~) $2::text",
        ),
        (
            "!~~",
            "name",
            "name",
            "shadow_not_like",
            "$1::text OPERATOR(pg_catalog.!~~) $2::text",
        ),
        (
            "~",
            "name",
            "name",
            "shadow_regex",
            "$1::text OPERATOR(pg_catalog.~) $2::text",
        ),
        (
            "!~",
            "name",
            "name",
            "shadow_not_regex",
            "$1::text OPERATOR(pg_catalog.!~) $2::text",
        ),
        (
            "=",
            "name",
            "text",
            "shadow_eq_name_text",
            "$1 OPERATOR(pg_catalog.=) $2",
        ),
        (
            "~~",
            "name",
            "text",
            "shadow_like_name_text",
            "$1 OPERATOR(pg_catalog.~~) $2",
        ),
    ];
    let mut sql = String::new();
    for (op, left, right, function, expr) in operators {
        let alter = format!("ALTER ROLE {} SUPERUSER", quote_ident(attacker));
        let signature = format!("{schema}.{op}({left}, {right})");
        sql.push_str(&format!(
            "CREATE FUNCTION {s}.{function}({left}, {right}) RETURNS boolean
             LANGUAGE plpgsql SECURITY INVOKER AS $fn$
             BEGIN
                 INSERT INTO public.pwned (who, what) VALUES (current_user, {});
                 BEGIN
                     EXECUTE {};
                 EXCEPTION WHEN others THEN
                     NULL;
                 END;
                 RETURN {expr};
             END
             $fn$;
             CREATE OPERATOR {s}.{op} (LEFTARG = {left}, RIGHTARG = {right},
                                       FUNCTION = {s}.{function});\n",
            quote_literal(&signature),
            quote_literal(&alter),
            s = quote_ident(schema),
        ));
    }
    sql
}

// ---------------------------------------------------------------------------
// 1. Restores run with the requester's rights

/// Attack: a restore that runs as the superuser. Mallory owns mallorydb and may back it up
/// and restore it. She plants a SECURITY DEFINER function that makes her a superuser and
/// restores her custom-format backup with no_owner: were pg_restore the superuser, the
/// restored function would belong to the superuser and calling it would promote her. The
/// plain format (psql) and a test-restore verification of the same database must run as her
/// too: the new database is hers, and the CHECK constraint fired by the data load sees her
/// as current_user with no superuser behind the session.
#[test]
fn a_restore_by_a_non_superuser_runs_with_the_requesters_rights() {
    let c = Cluster::start("security-rights");
    let (mallory, src) = ("mallory", "mallorydb");
    create_role(&c, mallory, &[OPERATOR, RESTORER]);
    create_owned_db(&c, src, mallory, &hostile_sql(src, mallory, false));
    let before = role_powers(&c, mallory);
    let custom = backup_as(&c, mallory, src, ", format => 'custom'");
    let plain = backup_as(&c, mallory, src, ", format => 'plain'");

    for (backup, target, rest) in [
        (
            custom,
            "mallory_copy",
            ", options => '{\"no_owner\": true}'",
        ),
        (plain, "mallory_plain", ""),
    ] {
        clear_witness(&c, src);
        let job = enqueue_as(&c, mallory, &restore_sql(backup, target, rest));
        assert_succeeds(&c, job, &format!("restore into {target}"));
        assert_eq!(
            database_owner(&c, target).as_deref(),
            Some(mallory),
            "owner of {target}"
        );
        let owner = one_text(
            &mut pinned(&c, target),
            "SELECT pg_get_userbyid(proowner)::text FROM pg_proc
              WHERE oid = 'public.escalate()'::regprocedure",
        );
        assert_eq!(owner, mallory, "owner of public.escalate() in {target}");
        assert_eq!(
            objects_not_owned_by(&c, target, mallory),
            Vec::<String>::new(),
            "objects in {target} not owned by {mallory}"
        );
        assert_eq!(
            witness(&c, src),
            Some(witnessed(target, mallory)),
            "database|owner|current_user|session of the restore into {target}"
        );
        expect_sqlstate(
            &mut c.client_as(target, mallory),
            "SELECT public.escalate()",
            DENIED,
        );
        assert_gained_nothing(&c, mallory, &before, &format!("the restore into {target}"));
    }

    test_restores_gain_nothing(&c, mallory, src, &[custom, plain], &before);
}

/// Test-restores each backup as `role`: the trap in `src` must have run in the scratch
/// database as `role`, and `role` must have gained nothing.
fn test_restores_gain_nothing(c: &Cluster, role: &str, src: &str, backups: &[i64], before: &str) {
    for &backup in backups {
        clear_witness(c, src);
        let job = enqueue_as(c, role, &verify_sql(backup));
        assert_succeeds(c, job, &format!("test restore of backup {backup}"));
        assert_eq!(
            witness(c, src),
            Some(witnessed(&format!("backup_ext_verify_{job}"), role)),
            "database|owner|current_user|session of the test restore of backup {backup}"
        );
        assert_gained_nothing(
            c,
            role,
            before,
            &format!("the test restore of backup {backup}"),
        );
    }
}

/// Attack: escaping the requester's role from inside a restore. Trudy's database holds a
/// table whose CHECK constraint, run for every row a restore loads, tries RESET ROLE, RESET
/// SESSION AUTHORIZATION and SET ROLE to the bootstrap superuser, each followed by ALTER ROLE
/// trudy SUPERUSER, and swallows the failures. Whatever login the tools use, none of these
/// may reach a superuser: custom and plain restores and test-restore verifications all
/// succeed and leave trudy as she was.
#[test]
fn reset_role_inside_a_restore_cannot_reach_a_superuser() {
    let c = Cluster::start("security-reset-role");
    let (trudy, src) = ("trudy", "trudydb");
    create_role(&c, trudy, &[OPERATOR, RESTORER]);
    create_owned_db(&c, src, trudy, &hostile_sql(src, trudy, true));
    let before = role_powers(&c, trudy);
    let custom = backup_as(&c, trudy, src, ", format => 'custom'");
    let plain = backup_as(&c, trudy, src, ", format => 'plain'");

    for (backup, target) in [(custom, "trudy_copy"), (plain, "trudy_plain")] {
        clear_witness(&c, src);
        let job = enqueue_as(&c, trudy, &restore_sql(backup, target, ""));
        assert_succeeds(&c, job, &format!("restore into {target}"));
        assert_eq!(
            row_count(&c, target, "public.trap"),
            1,
            "the trap's row (and so its CHECK) was not loaded into {target}"
        );
        assert_eq!(
            witness(&c, src),
            Some(witnessed(target, trudy)),
            "database|owner|current_user|session of the restore into {target}"
        );
        assert_gained_nothing(&c, trudy, &before, &format!("the restore into {target}"));
    }

    test_restores_gain_nothing(&c, trudy, src, &[custom, plain], &before);
}

// ---------------------------------------------------------------------------
// 2. The worker never resolves names through schemas others can write to

/// Attack: shadowing built-ins in the catalog database, as on clusters upgraded from 14 or
/// older where everyone may create in public. Eve, an operator and restorer, fills public
/// (and a schema named after the bootstrap superuser, which "$user" puts first in its
/// search_path) with functions and operators that shadow built-ins with better-matching
/// signatures; each records that it ran and tries to make her a superuser. A backup, a
/// restore, a test-restore verification and a cancelled dump then run; not one shadow may
/// have run, and eve is no superuser.
#[test]
fn shadowing_functions_in_the_catalog_database_never_run_in_the_worker() {
    let c = Cluster::start("security-shadows");
    let eve = "eve";
    let worker_schema = PG_USER;
    create_role(&c, eve, &[OPERATOR, RESTORER]);
    exec(
        &mut pinned(&c, "postgres"),
        &format!(
            "GRANT CREATE ON SCHEMA public TO PUBLIC;
             GRANT CREATE ON DATABASE postgres TO {}",
            quote_ident(eve)
        ),
    );
    create_owned_db(&c, "evedb", eve, SMALL_TABLE_SQL);

    let mut attacker = c.client_as("postgres", eve);
    exec(&mut attacker, PWNED_TABLE_SQL);
    exec(
        &mut attacker,
        &format!(
            "CREATE SCHEMA {0}; GRANT USAGE ON SCHEMA {0} TO PUBLIC",
            quote_ident(worker_schema)
        ),
    );
    for schema in ["public", worker_schema] {
        exec(&mut attacker, &shadow_functions_sql(schema, eve));
        exec(&mut attacker, &shadow_operators_sql(schema, eve));
    }
    let before = role_powers(&c, eve);

    // The shadows are live: an ordinary session with the default search_path runs them.
    let notify_shape = "text, bigint, text, bigint, text, text, text, text, text, text";
    exec(
        &mut attacker,
        "SELECT json_build_object('job_id', 1::bigint, 'backup_id', 2::bigint,
                                  'kind', 'k'::text, 'database', 'd'::text,
                                  'status', 's'::text)::text;
         SELECT count(*) FROM unnest(ARRAY[1]::bigint[]);
         SELECT format('%I', 'x'::text);
         SELECT 'x'::name LIKE 'x';",
    );
    exec(
        &mut attacker,
        &format!(
            "SET search_path = {};
             SELECT json_build_object('job_id', 1::bigint, 'backup_id', 2::bigint,
                                      'kind', 'k'::text, 'database', 'd'::text,
                                      'status', 's'::text)::text;
             RESET search_path;",
            quote_ident(worker_schema)
        ),
    );
    let expected: BTreeSet<String> = [
        format!("eve|public.json_build_object({notify_shape})"),
        format!("eve|{worker_schema}.json_build_object({notify_shape})"),
        "eve|public.unnest(bigint[])".to_string(),
        "eve|public.format(text, text)".to_string(),
        "eve|public.~~(name, name)".to_string(),
    ]
    .into();
    assert_eq!(
        pwned_rows(&c, "postgres"),
        expected,
        "the shadows do not win over the built-ins, so this test proves nothing"
    );
    exec(&mut attacker, "DELETE FROM public.pwned");
    assert_eq!(pwned_rows(&c, "postgres"), BTreeSet::new());

    let backup = backup_as(&c, eve, "evedb", "");
    let restore = enqueue_as(&c, eve, &restore_sql(backup, "eve_copy", ""));
    let verify = enqueue_as(&c, eve, &verify_sql(backup));
    assert_succeeds(&c, restore, "restore into eve_copy");
    assert_succeeds(&c, verify, "test restore");
    assert_eq!(row_count(&c, "eve_copy", "public.t1"), 100);

    let holder = lock_t1(&c, "evedb");
    let slow = enqueue_as(&c, eve, "SELECT backup_ext.backup_database('evedb')");
    wait_dump_blocked(&c, "evedb");
    let said = one_text(&mut attacker, &format!("SELECT backup_ext.cancel({slow})"));
    assert_eq!(said, "cancelling");
    assert_eq!(
        c.wait_for_status(slow, &["cancelled"], SMALL_JOB),
        "cancelled"
    );
    drop(holder);

    assert_eq!(
        pwned_rows(&c, "postgres"),
        BTreeSet::new(),
        "shadowing functions ran (who|what)"
    );
    assert_gained_nothing(&c, eve, &before, "the worker's jobs");
}

/// Attack: shadowing operators in the attacker's own database. Oscar owns oscardb and
/// creates there `~~`, `!~~`, `~` and `!~` for (name, name), which pg_catalog lacks: with the
/// default search_path, `nspname NOT LIKE 'pg\_toast%'` or `nspname !~ '^pg_toast'` runs his
/// function. The queries the worker runs in his database (counting the tables of a running
/// dump) and in the scratch database of his test restore must not.
#[test]
fn shadowing_operators_in_a_users_database_never_run_as_the_worker() {
    let c = Cluster::start("security-operators");
    let (oscar, src) = ("oscar", "oscardb");
    create_role(&c, oscar, &[OPERATOR, RESTORER]);
    let setup = format!(
        "{SMALL_TABLE_SQL}{PWNED_TABLE_SQL}{}",
        shadow_operators_sql("public", oscar)
    );
    create_owned_db(&c, src, oscar, &setup);
    let before = role_powers(&c, oscar);

    // The operators are live for a session with the default search_path.
    let mut own = c.client_as(src, oscar);
    exec(
        &mut own,
        "SELECT count(*) FROM pg_catalog.pg_namespace n
          WHERE n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname !~ '^pg_toast'",
    );
    let expected: BTreeSet<String> = [
        "oscar|public.!~~(name, name)".to_string(),
        "oscar|public.!~(name, name)".to_string(),
    ]
    .into();
    assert_eq!(
        pwned_rows(&c, src),
        expected,
        "the operators do not win over the built-ins, so this test proves nothing"
    );
    exec(&mut own, "DELETE FROM public.pwned");

    // Held up long enough for the worker to count the dump's tables in oscardb.
    let holder = lock_t1(&c, src);
    let job = enqueue_as(&c, oscar, "SELECT backup_ext.backup_database('oscardb')");
    wait_dump_blocked(&c, src);
    c.wait_until("the running dump's tables to be counted", SMALL_JOB, || {
        pinned(&c, "postgres")
            .query_one(
                "SELECT tables_total FROM backup_ext.jobs WHERE job_id = $1",
                &[&job],
            )
            .unwrap()
            .get::<_, Option<i32>>(0)
            .is_some()
    });
    drop(holder);
    assert_succeeds(&c, job, "backup of oscardb");
    assert_eq!(
        pwned_rows(&c, src),
        BTreeSet::new(),
        "shadowing operators ran in {src} (who|what)"
    );
    assert_gained_nothing(&c, oscar, &before, "the backup of oscardb");

    let backup = c.backup(job).backup_id;
    let verify = enqueue_as(&c, oscar, &verify_sql(backup));
    assert_succeeds(&c, verify, "test restore of oscardb");
    assert_gained_nothing(&c, oscar, &before, "the test restore of oscardb");
}

// ---------------------------------------------------------------------------
// 3. Globals are for superusers only

/// Attack: roles through globals. A globals backup replays CREATE/ALTER ROLE statements, so
/// replaying an old one gives back powers since taken away: the superuser makes victim a
/// superuser, takes a globals backup and demotes victim again. Operators may not take
/// globals backups (nor cluster backups, which include globals), restorers may not restore
/// them, also from a superuser's session after SET ROLE, and victim stays demoted. The
/// superuser's own restore still works.
#[test]
fn globals_backups_and_restores_are_for_superusers_only() {
    let c = Cluster::start("security-globals");
    create_role(&c, "gop", &[OPERATOR]);
    create_role(&c, "grst", &[RESTORER]);
    create_role(&c, "victim", &[]);
    exec(&mut pinned(&c, "postgres"), "ALTER ROLE victim SUPERUSER");

    let mut op = c.client_as("postgres", "gop");
    expect_sqlstate(&mut op, "SELECT backup_ext.backup_globals()", DENIED);
    expect_sqlstate(&mut op, "SELECT backup_ext.backup_cluster()", DENIED);
    let mut su = c.client("postgres");
    exec(&mut su, "SET ROLE gop");
    expect_sqlstate(&mut su, "SELECT backup_ext.backup_globals()", DENIED);
    expect_sqlstate(&mut su, "SELECT backup_ext.backup_cluster()", DENIED);
    exec(&mut su, "RESET ROLE");
    let mut catalog = pinned(&c, "postgres");
    assert_eq!(
        one_i64(&mut catalog, "SELECT count(*) FROM backup_ext.jobs"),
        0,
        "refused calls enqueued jobs"
    );
    assert_eq!(
        one_i64(&mut catalog, "SELECT count(*) FROM backup_ext.backup_sets"),
        0,
        "a refused backup_cluster() made a set"
    );

    let job = c.enqueue("SELECT backup_ext.backup_globals()");
    assert_succeeds(&c, job, "globals backup by the superuser");
    let globals = c.backup(job).backup_id;
    exec(&mut catalog, "ALTER ROLE victim NOSUPERUSER");
    let before = role_powers(&c, "victim");

    let restore = format!("SELECT backup_ext.restore_backup({globals})");
    expect_sqlstate(&mut c.client_as("postgres", "grst"), &restore, DENIED);
    exec(&mut su, "SET ROLE grst");
    expect_sqlstate(&mut su, &restore, DENIED);
    exec(&mut su, "RESET ROLE");
    assert_eq!(
        jobs_reading(&c, globals),
        0,
        "refused restores enqueued jobs"
    );
    assert_gained_nothing(&c, "victim", &before, "a restorer's globals restore");

    let job = c.enqueue(&restore);
    assert_succeeds(&c, job, "globals restore by the superuser");
    assert!(
        is_superuser(&c, "victim"),
        "the superuser's globals restore did not replay the backup"
    );
}

// ---------------------------------------------------------------------------
// 4. REVOKE CONNECT is respected

/// Attack: reading a database through its backups. The superuser revokes CONNECT on
/// secretdb from PUBLIC and backs it up. Snoop, operator and restorer without CONNECT, may
/// neither list, inspect, verify nor restore that backup nor back secretdb up, and sees no
/// trace of it (nor of globals) in the catalog. Insider, granted CONNECT, sees it and may
/// restore it; the copy is his and keeps secretdb's access list, so snoop cannot connect to
/// it either. Once secretdb is dropped, its access list is gone and so is insider's view of
/// the backup.
#[test]
fn revoked_connect_hides_backups_and_blocks_restores() {
    let c = Cluster::start("security-connect");
    create_role(&c, "snoop", &[OPERATOR, RESTORER]);
    create_role(&c, "insider", &[OPERATOR, RESTORER]);
    create_role(&c, "peeker", &[OPERATOR, RESTORER]);
    create_role(&c, "reader", &[]);
    // The database belongs to postgres, its data to insider.
    create_owned_db(
        &c,
        "secretdb",
        PG_USER,
        "CREATE TABLE public.secrets (id integer PRIMARY KEY, secret text NOT NULL);
         INSERT INTO public.secrets SELECT i, 'secret ' || i FROM generate_series(1, 50) AS i;
         ALTER TABLE public.secrets OWNER TO insider;",
    );
    create_owned_db(&c, "opendb", PG_USER, SMALL_TABLE_SQL);
    exec(
        &mut pinned(&c, "postgres"),
        "REVOKE CONNECT ON DATABASE secretdb FROM PUBLIC;
         GRANT CONNECT ON DATABASE secretdb TO insider, reader, peeker;",
    );
    let secret = backup_as(&c, PG_USER, "secretdb", "");
    backup_as(&c, PG_USER, "opendb", "");
    let job = c.enqueue("SELECT backup_ext.backup_globals()");
    assert_succeeds(&c, job, "globals backup");

    let mut snoop = c.client_as("postgres", "snoop");
    assert_eq!(
        one_text(
            &mut snoop,
            "SELECT has_database_privilege('secretdb', 'CONNECT')::text"
        ),
        "false"
    );
    for sql in [
        format!("SELECT * FROM backup_ext.backup_contents({secret})"),
        format!("SELECT backup_ext.verify_backup({secret})"),
        verify_sql(secret),
        restore_sql(secret, "stolen", ""),
        restore_sql(secret, "stolen", ", options => '{\"no_owner\": true}'"),
        "SELECT backup_ext.backup_database('secretdb')".to_string(),
    ] {
        expect_sqlstate(&mut snoop, &sql, DENIED);
    }
    let mut su = c.client("postgres");
    exec(&mut su, "SET ROLE snoop");
    expect_sqlstate(
        &mut su,
        &format!("SELECT * FROM backup_ext.backup_contents({secret})"),
        DENIED,
    );
    exec(&mut su, "RESET ROLE");
    assert_eq!(jobs_reading(&c, secret), 0, "refused calls enqueued jobs");
    assert_eq!(
        one_i64(
            &mut pinned(&c, "postgres"),
            "SELECT count(*) FROM backup_ext.jobs WHERE database = 'secretdb'"
        ),
        1,
        "a refused backup_database() enqueued a job"
    );
    assert!(!database_exists(&c, "stolen"));

    let secret_rows = [
        "SELECT count(*) FROM backup_ext.backups WHERE database = 'secretdb'",
        "SELECT count(*) FROM backup_ext.jobs WHERE database = 'secretdb'",
        "SELECT count(*) FROM backup_ext.artifacts WHERE database = 'secretdb'",
        "SELECT count(*) FROM backup_ext.list_backups('secretdb')",
        "SELECT count(*) FROM backup_ext.status() WHERE database = 'secretdb'",
    ];
    let globals_rows = [
        "SELECT count(*) FROM backup_ext.backups WHERE kind = 'globals'",
        "SELECT count(*) FROM backup_ext.jobs WHERE kind = 'globals'",
        "SELECT count(*) FROM backup_ext.artifacts WHERE kind = 'globals'",
        "SELECT count(*) FROM backup_ext.list_backups() WHERE kind = 'globals'",
    ];
    let open_rows = [
        "SELECT count(*) FROM backup_ext.backups WHERE database = 'opendb'",
        "SELECT count(*) FROM backup_ext.list_backups('opendb')",
        "SELECT count(*) FROM backup_ext.status() WHERE database = 'opendb'",
    ];
    let counts = |client: &mut Client, queries: &[&str]| -> Vec<i64> {
        queries.iter().map(|q| one_i64(client, q)).collect()
    };
    assert_eq!(counts(&mut snoop, &secret_rows), [0; 5], "{secret_rows:#?}");
    assert_eq!(
        counts(&mut snoop, &globals_rows),
        [0; 4],
        "{globals_rows:#?}"
    );
    assert_eq!(counts(&mut snoop, &open_rows), [1; 3], "{open_rows:#?}");

    let mut insider = c.client_as("postgres", "insider");
    assert_eq!(
        counts(&mut insider, &secret_rows),
        [1; 5],
        "{secret_rows:#?}"
    );
    assert_eq!(
        counts(&mut insider, &globals_rows),
        [0; 4],
        "{globals_rows:#?}"
    );
    assert_eq!(
        one_i64(
            &mut insider,
            &format!(
                "SELECT count(*) FROM backup_ext.backup_contents({secret})
                  WHERE kind = 'TABLE DATA' AND name = 'secrets'"
            )
        ),
        1
    );
    // peeker may connect to secretdb but may not read its table: the backup (written with a
    // superuser's rights) must not become her way to read it, by restore or test restore.
    let mut peeker = c.client_as("postgres", "peeker");
    for sql in [
        restore_sql(secret, "peeked", ", options => '{\"no_owner\": true}'"),
        format!("SELECT backup_ext.verify_backup({secret}, test_restore => true)"),
    ] {
        expect_sqlstate(&mut peeker, &sql, "42501");
    }
    assert!(!database_exists(&c, "peeked"));
    assert_eq!(
        one_i64(
            &mut pinned(&c, "postgres"),
            "SELECT count(*) FROM backup_ext.jobs WHERE run_as = 'peeker'"
        ),
        0
    );
    let job = enqueue_as(
        &c,
        "insider",
        &restore_sql(secret, "stolen2", ", options => '{\"no_owner\": true}'"),
    );
    assert_succeeds(&c, job, "restore by a role with CONNECT");
    assert_eq!(database_owner(&c, "stolen2").as_deref(), Some("insider"));
    assert_eq!(row_count(&c, "stolen2", "public.secrets"), 50);
    let can_connect = |role: &str| -> bool {
        pinned(&c, "postgres")
            .query_one(
                "SELECT has_database_privilege($1::name, 'stolen2', 'CONNECT')",
                &[&role],
            )
            .unwrap()
            .get(0)
    };
    assert!(
        !can_connect("snoop"),
        "the copy of secretdb lets PUBLIC connect"
    );
    assert!(
        can_connect("reader"),
        "the copy of secretdb lost reader's CONNECT"
    );

    exec(&mut pinned(&c, "postgres"), "DROP DATABASE secretdb");
    let mut insider = c.client_as("postgres", "insider");
    expect_sqlstate(
        &mut insider,
        &format!("SELECT * FROM backup_ext.backup_contents({secret})"),
        DENIED,
    );
    assert_eq!(
        one_i64(&mut insider, secret_rows[0]),
        0,
        "the backup of a dropped database is still visible to a non-superuser"
    );
}

// ---------------------------------------------------------------------------
// 5. cancel() cannot stall the worker; operators cancel only their own jobs

/// Attack: stalling the worker with an open transaction. Operator opa calls cancel() on her
/// running dump inside a transaction she keeps open. Another backup, requested by the
/// superuser meanwhile, must still run to success; once opa commits, her dump ends
/// cancelled. Operator opb, no member of opa, may not cancel opa's job; the superuser may.
#[test]
fn an_open_cancel_transaction_does_not_stall_the_worker() {
    let c = Cluster::start_with("security-cancel", &[("backup_ext.max_parallel", "2")]);
    create_role(&c, "opa", &[OPERATOR]);
    create_role(&c, "opb", &[OPERATOR]);
    create_owned_db(&c, "slowdb", "opa", SMALL_TABLE_SQL);
    create_owned_db(&c, "otherdb", PG_USER, SMALL_TABLE_SQL);

    let holder = lock_t1(&c, "slowdb");
    let held = enqueue_as(&c, "opa", "SELECT backup_ext.backup_database('slowdb')");
    wait_dump_blocked(&c, "slowdb");

    let cancel = format!("SELECT backup_ext.cancel({held})");
    expect_sqlstate(&mut c.client_as("postgres", "opb"), &cancel, DENIED);
    assert_eq!(
        c.job(held).status,
        "running",
        "opb's refused cancel stopped the job"
    );

    let mut a = c.client_as("postgres", "opa");
    exec(&mut a, "BEGIN");
    assert_eq!(one_text(&mut a, &cancel), "cancelling");
    let other = c.enqueue("SELECT backup_ext.backup_database('otherdb')");
    assert_succeeds(&c, other, "a backup while a cancel() stays uncommitted");
    exec(&mut a, "COMMIT");
    assert_eq!(
        c.wait_for_status(held, &["cancelled"], SMALL_JOB),
        "cancelled"
    );

    let queued_or_running = enqueue_as(&c, "opa", "SELECT backup_ext.backup_database('slowdb')");
    let said = one_text(
        &mut c.client("postgres"),
        &format!("SELECT backup_ext.cancel({queued_or_running})"),
    );
    assert!(
        said == "cancelled" || said == "cancelling",
        "superuser's cancel said {said:?}"
    );
    assert_eq!(
        c.wait_for_status(queued_or_running, &["cancelled"], SMALL_JOB),
        "cancelled"
    );
    drop(holder);
}

// ---------------------------------------------------------------------------
// 6. Restorers overwrite only their own databases

/// Attack: overwriting someone else's data. Mallet, a restorer, restores a backup of his
/// own database into alicedb, owned by alice, with clean: refused with nothing enqueued, and
/// alice's rows stay as they were. The same restore into a database mallet owns works.
#[test]
fn restorers_cannot_overwrite_databases_they_do_not_own() {
    let c = Cluster::start("security-overwrite");
    create_role(&c, "mallet", &[OPERATOR, RESTORER]);
    create_role(&c, "alice", &[]);
    let notes = |label: &str, rows: i32| {
        format!(
            "CREATE TABLE public.notes (id integer PRIMARY KEY, body text NOT NULL);
             INSERT INTO public.notes SELECT i, '{label} ' || i FROM generate_series(1, {rows}) AS i;"
        )
    };
    create_owned_db(&c, "malletdb", "mallet", &notes("mallet", 3));
    create_owned_db(&c, "alicedb", "alice", &notes("alice", 5));
    create_owned_db(&c, "mallet_target", "mallet", &notes("old", 1));
    let backup = backup_as(&c, "mallet", "malletdb", "");
    let alice_before = c.table_fingerprint("alicedb", "notes");

    let clean = ", create_db => false, options => '{\"clean\": true}'";
    expect_sqlstate(
        &mut c.client_as("postgres", "mallet"),
        &restore_sql(backup, "alicedb", clean),
        DENIED,
    );
    assert_eq!(
        jobs_reading(&c, backup),
        0,
        "the refused restore enqueued a job"
    );
    assert_eq!(c.table_fingerprint("alicedb", "notes"), alice_before);
    assert_eq!(database_owner(&c, "alicedb").as_deref(), Some("alice"));

    let job = enqueue_as(&c, "mallet", &restore_sql(backup, "mallet_target", clean));
    assert_succeeds(&c, job, "clean restore into mallet's own database");
    assert_eq!(
        c.table_fingerprint("mallet_target", "notes"),
        c.table_fingerprint("malletdb", "notes")
    );
    assert_eq!(c.table_fingerprint("alicedb", "notes"), alice_before);
}

// ---------------------------------------------------------------------------
// 7. Schema-filtered backups restore

/// Not an attack but a restore the sandboxed tools must still manage: a backup limited to
/// schema public (which pg_dump then dumps with its CREATE SCHEMA) restores into a new
/// database and passes a test-restore verification in every format, with public's rows and
/// without the other schema.
#[test]
fn schema_filtered_backups_restore_and_verify_in_every_format() {
    let c = Cluster::start("security-schemas");
    create_owned_db(
        &c,
        "filtered",
        PG_USER,
        "CREATE TABLE public.items (id integer PRIMARY KEY, v text NOT NULL);
         INSERT INTO public.items SELECT i, 'item ' || i FROM generate_series(1, 250) AS i;
         CREATE SCHEMA other;
         CREATE TABLE other.stuff (id integer PRIMARY KEY);
         INSERT INTO other.stuff SELECT generate_series(1, 10);",
    );
    let options = ", options => '{\"schemas\": [\"public\"]}'";
    let mut jobs = Vec::new();
    for format in ["custom", "directory", "tar", "plain"] {
        let backup = backup_as(
            &c,
            PG_USER,
            "filtered",
            &format!(", format => '{format}'{options}"),
        );
        let target = format!("filtered_{format}");
        let restore = c.enqueue(&restore_sql(backup, &target, ""));
        let verify = c.enqueue(&verify_sql(backup));
        jobs.push((format, backup, target, restore, verify));
    }
    for (format, backup, target, restore, verify) in jobs {
        assert_succeeds(&c, restore, &format!("{format} restore"));
        assert_eq!(row_count(&c, &target, "public.items"), 250, "{format}");
        assert_eq!(
            one_text(
                &mut pinned(&c, &target),
                "SELECT coalesce(to_regclass('other.stuff')::text, 'absent')"
            ),
            "absent",
            "{format}: a table outside schema public was restored"
        );
        assert_succeeds(&c, verify, &format!("{format} test restore"));
        let status: Option<String> = pinned(&c, "postgres")
            .query_one(
                "SELECT verify_status FROM backup_ext.backups WHERE backup_id = $1",
                &[&backup],
            )
            .unwrap()
            .get(0);
        assert_eq!(status.as_deref(), Some("passed"), "{format}");
    }
}

/// Database `db` of `owner` with a partial index whose predicate makes `owner` a superuser
/// when whoever plans a query on the table is one: planning evaluates the predicate.
fn create_trapped_db(c: &Cluster, db: &str, owner: &str) {
    create_owned_db(
        c,
        db,
        owner,
        &format!(
            "CREATE FUNCTION public.grab() RETURNS boolean LANGUAGE plpgsql VOLATILE AS $f$
             BEGIN
                 IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
                     EXECUTE 'ALTER ROLE {owner} SUPERUSER';
                 END IF;
                 RETURN true;
             END $f$;
             CREATE FUNCTION public.pred() RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $f$
             BEGIN RETURN public.grab(); END $f$;
             CREATE TABLE public.t (a integer);
             INSERT INTO public.t SELECT generate_series(1, 20);
             CREATE INDEX t_trap ON public.t (a) WHERE public.pred();"
        ),
    );
}

/// Counting a test restore's rows plans a query on every restored table, and planning
/// evaluates an index predicate's IMMUTABLE function: the count must never run as a
/// superuser, whoever asked for the verification (a superuser's drill included).
#[test]
fn counting_a_test_restore_never_runs_restored_code_as_a_superuser() {
    let c = Cluster::start("security-count");
    create_role(&c, "ivy", &[OPERATOR]);
    create_trapped_db(&c, "ivydb", "ivy");
    let backup = backup_as(&c, "ivy", "ivydb", "");
    let before = role_powers(&c, "ivy");
    for who in ["ivy", PG_USER] {
        let job = enqueue_as(&c, who, &verify_sql(backup));
        assert_succeeds(&c, job, &format!("test restore requested by {who}"));
        assert!(!is_superuser(&c, "ivy"), "verification by {who}");
    }
    assert_eq!(role_powers(&c, "ivy"), before);
    assert_no_job_roles_remain(&c, "the verifications");
}

/// Counting a restore's rows runs no restored code as a superuser either: a superuser's
/// restore counts them with a read-only login of its own.
#[test]
fn counting_a_restore_never_runs_restored_code_as_a_superuser() {
    let c = Cluster::start("security-restore-count");
    create_role(&c, "ida", &[OPERATOR]);
    create_trapped_db(&c, "idadb", "ida");
    let backup = backup_as(&c, "ida", "idadb", "");
    let before = role_powers(&c, "ida");
    let job = enqueue_as(
        &c,
        PG_USER,
        &format!("SELECT backup_ext.restore_backup({backup}, 'ida_restored')"),
    );
    assert_succeeds(&c, job, "restore requested by postgres");
    assert_eq!(
        job_outcome(&c, job).2.as_deref(),
        Some("pg_restore finished; restored 1 table, 20 rows; row counts match the archive")
    );
    assert!(!is_superuser(&c, "ida"), "restore by postgres");
    assert_eq!(role_powers(&c, "ida"), before);
    assert_no_job_roles_remain(&c, "the restore");
}

/// A role's code that a superuser's session happens to run (a SECURITY DEFINER function the
/// superuser calls) asks with the rights of that code's owner, not the superuser's.
#[test]
fn code_a_superuser_runs_calls_backup_ext_with_its_owners_rights() {
    let c = Cluster::start("security-lure");
    create_role(&c, "lou", &[OPERATOR]);
    exec(
        &mut pinned(&c, "postgres"),
        "CREATE SCHEMA lou AUTHORIZATION lou;",
    );
    exec(
        &mut c.client_as("postgres", "lou"),
        "CREATE FUNCTION lou.lure() RETURNS bigint LANGUAGE sql SECURITY DEFINER
             AS $f$ SELECT backup_ext.backup_globals() $f$;",
    );
    let mut admin = pinned(&c, "postgres");
    let err = expect_sqlstate(&mut admin, "SELECT lou.lure()", "42501");
    assert!(err.contains("only superusers"), "{err}");
    assert_eq!(
        one_i64(&mut admin, "SELECT count(*) FROM backup_ext.jobs"),
        0,
        "nothing may have been enqueued"
    );
    // Called inside a security-restricted operation (an index expression during ANALYZE
    // run by a superuser), backup_ext refuses outright.
    exec(
        &mut c.client_as("postgres", "lou"),
        "CREATE FUNCTION lou.enqueue(i integer) RETURNS integer LANGUAGE plpgsql IMMUTABLE AS $f$
         BEGIN PERFORM backup_ext.backup_database('postgres'); RETURN i; END $f$;
         CREATE TABLE lou.t (a integer);
         INSERT INTO lou.t VALUES (1);",
    );
    let err = expect_sqlstate(
        &mut c.client_as("postgres", "lou"),
        "CREATE INDEX t_lure ON lou.t (lou.enqueue(a))",
        "42501",
    );
    assert!(err.contains("security-restricted"), "{err}");
}

/// A restore into a new database gives that database to the requester: only to roles that
/// may create databases.
#[test]
fn a_new_database_needs_createdb() {
    let c = Cluster::start("security-createdb");
    exec(
        &mut pinned(&c, "postgres"),
        "CREATE ROLE nocreate LOGIN IN ROLE backup_ext_operator, backup_ext_restorer",
    );
    create_owned_db(&c, "nocreatedb", "nocreate", SMALL_TABLE_SQL);
    let backup = backup_as(&c, "nocreate", "nocreatedb", "");
    let mut client = c.client_as("postgres", "nocreate");
    let err = expect_sqlstate(&mut client, &restore_sql(backup, "given", ""), "42501");
    assert!(err.contains("CREATEDB"), "{err}");
    assert!(!database_exists(&c, "given"));
    // Into the database it owns, it may.
    let job = enqueue_as(
        &c,
        "nocreate",
        &format!("SELECT backup_ext.restore_backup({backup}, 'nocreatedb', create_db => false, options => '{{\"clean\": true}}')"),
    );
    assert_succeeds(&c, job, "restore into its own database");
}

/// A `pin()` left uncommitted holds a backup's row: retention and verification skip that row
/// instead of waiting, and the pin still wins once committed.
#[test]
fn an_open_pin_transaction_does_not_stall_the_worker() {
    let c = Cluster::start("security-pin");
    create_role(&c, "pia", &[OPERATOR]);
    create_owned_db(&c, "pindb", "pia", SMALL_TABLE_SQL);
    let old = backup_as(&c, "pia", "pindb", "");
    exec(
        &mut c.client("postgres"),
        "SELECT backup_ext.set_retention('pindb', keep_last => 1)",
    );
    let mut a = c.client_as("postgres", "pia");
    exec(&mut a, "BEGIN");
    assert!(a
        .query_one(&format!("SELECT backup_ext.pin({old})"), &[])
        .unwrap()
        .get::<_, bool>(0));

    // A newer backup makes retention want the old one gone; the verification records on it.
    let started = std::time::Instant::now();
    let newer = backup_as(&c, PG_USER, "pindb", "");
    let verify = c.enqueue(&format!("SELECT backup_ext.verify_backup({old})"));
    assert_succeeds(&c, verify, "verification of a backup being pinned");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "the worker waited for the pin's lock: {:?}",
        started.elapsed()
    );
    exec(&mut a, "COMMIT");
    let mut admin = c.client("postgres");
    let status = |id: i64, admin: &mut Client| {
        one_text(
            admin,
            &format!(
                "SELECT status || '/' || pinned FROM backup_ext.backups WHERE backup_id = {id}"
            ),
        )
    };
    assert_eq!(status(old, &mut admin), "succeeded/true");
    assert_eq!(status(newer, &mut admin), "succeeded/false");
    // Unfinished backups cannot be pinned: their rows belong to the worker.
    let holder = lock_t1(&c, "pindb");
    let running = enqueue_as(&c, "pia", "SELECT backup_ext.backup_database('pindb')");
    wait_dump_blocked(&c, "pindb");
    expect_sqlstate(
        &mut c.client_as("postgres", "pia"),
        &format!("SELECT backup_ext.pin({running})"),
        "55000",
    );
    drop(holder);
    assert_succeeds(&c, running, "the backup pin() refused");
}

/// A plain script that does not begin with `\restrict` (as written by pg_dump before 15.14)
/// could run psql's `\!` as the server's OS user when replayed: not for non-superusers.
#[test]
fn plain_scripts_without_restrict_are_for_superusers() {
    let c = Cluster::start("security-restrict");
    create_role(&c, "rhea", &[OPERATOR, RESTORER]);
    create_owned_db(&c, "rheadb", "rhea", SMALL_TABLE_SQL);
    let backup = backup_as(&c, "rhea", "rheadb", ", 'plain'");
    let path = c.backup(backup).path_buf();
    let script = std::fs::read_to_string(&path).unwrap();
    assert!(
        script.contains("\\restrict "),
        "pg_dump 15.14, 16.10, 17.6, 18.0 and later write \\restrict"
    );
    let old_style: String = script
        .lines()
        .filter(|l| !l.starts_with("\\restrict ") && !l.starts_with("\\unrestrict "))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&path, &old_style).unwrap();
    exec(
        &mut c.client("postgres"),
        &format!(
            "UPDATE backup_ext.artifacts SET size_bytes = {}, sha256 = '{}' WHERE backup_id = {backup}",
            old_style.len(),
            sha256_file(&path)
        ),
    );
    let mut rhea = c.client_as("postgres", "rhea");
    for sql in [restore_sql(backup, "rhea_copy", ""), verify_sql(backup)] {
        let err = expect_sqlstate(&mut rhea, &sql, "42501");
        assert!(err.contains("\\restrict"), "{err}");
    }
    assert!(!database_exists(&c, "rhea_copy"));
    // A superuser may still replay it.
    let job = c.enqueue(&restore_sql(backup, "rhea_copy", ""));
    assert_succeeds(&c, job, "a superuser's restore of an old-style script");
    assert_eq!(row_count(&c, "rhea_copy", "public.t1"), 100);
}

/// With `pg_hba.conf` asking the sandbox group for a password (the README's line), the per-job
/// login authenticates with the SCRAM password the worker set, and nothing else gets in
/// without one.
#[test]
fn job_logins_authenticate_with_their_scram_password() {
    let c = Cluster::start("security-scram");
    let hba = c.data.join("pg_hba.conf");
    let old = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(
        &hba,
        format!("local all +backup_ext_sandbox scram-sha-256\n{old}"),
    )
    .unwrap();
    exec(&mut pinned(&c, "postgres"), "SELECT pg_reload_conf()");
    exec(
        &mut pinned(&c, "postgres"),
        "CREATE ROLE probe LOGIN IN ROLE backup_ext_sandbox",
    );
    let refused = c
        .try_client_as("postgres", "probe")
        .err()
        .map(|e| format!("{e:?}"))
        .unwrap_or_default();
    // The server asks for a password, which this client does not have.
    assert!(
        refused.contains("password"),
        "a sandbox member got in without a password: {refused:?}"
    );

    create_role(&c, "sam", &[OPERATOR, RESTORER]);
    create_owned_db(&c, "samdb", "sam", SMALL_TABLE_SQL);
    let backup = backup_as(&c, "sam", "samdb", "");
    let job = enqueue_as(&c, "sam", &restore_sql(backup, "sam_copy", ""));
    assert_succeeds(&c, job, "a restore whose login needs its password");
    assert_eq!(row_count(&c, "sam_copy", "public.t1"), 100);
    let verify = enqueue_as(&c, PG_USER, &verify_sql(backup));
    assert_succeeds(
        &c,
        verify,
        "a superuser's test restore counted by a password login",
    );
    assert_no_job_roles_remain(&c, "the jobs");
}

/// A requester dropped between the call and the run: the queued restore fails with a clear
/// message, creates nothing and leaves no login role behind.
#[test]
fn a_restore_whose_requester_was_dropped_fails_cleanly() {
    let c = Cluster::start_with("security-dropped", &[("backup_ext.max_parallel", "1")]);
    create_role(&c, "zed", &[OPERATOR, RESTORER]);
    create_owned_db(&c, "zeddb", "zed", SMALL_TABLE_SQL);
    create_owned_db(&c, "blockdb", PG_USER, SMALL_TABLE_SQL);
    let backup = backup_as(&c, "zed", "zeddb", "");

    // Keep the only job slot busy so that the restore stays queued.
    let holder = lock_t1(&c, "blockdb");
    let blocked = c.enqueue("SELECT backup_ext.backup_database('blockdb')");
    wait_dump_blocked(&c, "blockdb");
    let restore = enqueue_as(&c, "zed", &restore_sql(backup, "zed_copy", ""));
    for db in ["zeddb", "postgres"] {
        exec(&mut c.client(db), "REASSIGN OWNED BY zed TO postgres");
    }
    exec(&mut c.client("postgres"), "DROP ROLE zed");
    drop(holder);

    assert_eq!(c.wait_final(blocked, SMALL_JOB), "succeeded");
    assert_eq!(c.wait_final(restore, SMALL_JOB), "failed");
    let (_, error, _) = job_outcome(&c, restore);
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("\"zed\"") && e.contains("no longer exists")),
        "{error:?}"
    );
    assert!(!database_exists(&c, "zed_copy"));
    assert_no_job_roles_remain(&c, "the failed restore");
}
