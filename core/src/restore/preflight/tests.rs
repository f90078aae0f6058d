//! Plans built from a real listing and hand-made facts.

use super::*;
use crate::restore::toc::parse_toc;

/// `pg_restore --list` of a small database (pg_restore 16), settings entries included.
const LISTING: &str = "\
;
; Archive created at 2026-11-30 03:30:00 UTC
;
4101; 0 0 ENCODING - ENCODING \n\
4102; 0 0 STDSTRINGS - STDSTRINGS \n\
4103; 0 0 SEARCHPATH - SEARCHPATH \n\
6; 2615 16390 SCHEMA - app alice\n\
2; 3079 16400 EXTENSION - pg_trgm -\n\
4104; 0 0 COMMENT - EXTENSION pg_trgm \n\
220; 1255 16406 FUNCTION app f(integer, text) alice\n\
215; 1259 16386 TABLE app orders alice\n\
216; 1259 16393 TABLE public notes bob\n\
219; 1259 16402 MATERIALIZED VIEW public mv alice\n\
3372; 0 0 ACL app TABLE orders alice\n\
3359; 0 16386 TABLE DATA app orders alice\n\
3360; 0 16393 TABLE DATA public notes bob\n\
3212; 2606 16392 CONSTRAINT app orders orders_pkey alice\n\
3362; 0 16402 MATERIALIZED VIEW DATA public mv alice\n";

fn entries() -> Vec<TocEntry> {
    parse_toc(LISTING).unwrap()
}

fn server(roles: &[&str], extensions: &[&str]) -> ServerFacts {
    ServerFacts {
        roles: roles.iter().map(|r| r.to_string()).collect(),
        available_extensions: extensions.iter().map(|e| e.to_string()).collect(),
    }
}

fn tools() -> ToolFacts {
    ToolFacts {
        tool: "pg_restore".into(),
        major: Some(16),
        archive_version: Some(ArchiveVersion(1, 15)),
        reads_up_to: Some(ArchiveVersion(1, 15)),
    }
}

fn new_db() -> TargetFacts {
    TargetFacts {
        name: "restored".into(),
        create_db: true,
        ..TargetFacts::default()
    }
}

fn plan(
    entries: &[TocEntry],
    options: &RestoreOptions,
    target: &TargetFacts,
    server: &ServerFacts,
    space: Option<&SpaceFacts>,
) -> Vec<PlanRow> {
    build_plan(&PlanFacts {
        contents: Contents::Archive(entries),
        options,
        target: Some(target),
        requester: "postgres",
        server,
        grantees: &BTreeSet::new(),
        tools: &tools(),
        space,
    })
}

fn actions(rows: &[PlanRow]) -> Vec<(i32, String, String)> {
    rows.iter()
        .map(|r| {
            let name = match (&r.schema, &r.name) {
                (Some(s), Some(n)) => format!("{s}.{n}"),
                (None, Some(n)) => n.clone(),
                _ => String::new(),
            };
            (r.step, r.action.clone(), name)
        })
        .collect()
}

#[test]
fn new_database_in_restore_order() {
    let entries = entries();
    let rows = plan(
        &entries,
        &RestoreOptions::default(),
        &new_db(),
        &server(&["alice", "bob", "postgres"], &["pg_trgm"]),
        None,
    );
    let got: Vec<(i32, String, String)> = actions(&rows);
    let want: Vec<(i32, &str, &str)> = vec![
        (1, "tools", ""),
        (2, "create", "restored"),
        (3, "create", "app"),
        (4, "create", "pg_trgm"),
        (5, "create", "EXTENSION pg_trgm"),
        (6, "create", "app.f(integer, text)"),
        (7, "create", "app.orders"),
        (8, "create", "public.notes"),
        (9, "create", "public.mv"),
        (10, "load data", "app.orders"),
        (11, "load data", "public.notes"),
        (12, "create", "app.orders orders_pkey"),
        // privileges, then materialized view data: pg_restore's later passes
        (13, "create", "app.TABLE orders"),
        (14, "load data", "public.mv"),
    ];
    let want: Vec<(i32, String, String)> = want
        .into_iter()
        .map(|(s, a, n)| (s, a.to_string(), n.to_string()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(
        rows[0].detail,
        "pg_restore 16 reads this archive (version 1.15; it reads up to 1.15)"
    );
    assert_eq!(rows[6].detail, "toc_id 215; owner alice");
    assert!(first_blocking(&rows).is_none());
}

#[test]
fn conflicts_in_an_existing_database_block() {
    let entries = entries();
    let target = TargetFacts {
        name: "app".into(),
        create_db: false,
        owner: Some("alice".into()),
        active_connections: 2,
        existing: [
            ("relation", Some("app"), "orders"),
            ("schema", None, "app"),
            ("function", Some("app"), "f(integer, text)"),
            ("relation", Some("public"), "other"),
        ]
        .into_iter()
        .map(|(c, s, n)| (c.to_string(), s.map(str::to_string), n.to_string()))
        .collect(),
    };
    let srv = server(&["alice", "bob", "postgres"], &["pg_trgm"]);
    let rows = plan(&entries, &RestoreOptions::default(), &target, &srv, None);
    let conflicts: Vec<&PlanRow> = rows.iter().filter(|r| r.action == "conflict").collect();
    assert_eq!(conflicts.len(), 5);
    assert_eq!(conflicts[0].blocker, None);
    assert!(conflicts[0].detail.starts_with("2 other session(s)"));
    assert_eq!(
        conflicts[1].detail,
        "the target is owned by role \"alice\", not by \"postgres\"; restored objects keep the archive's owners"
    );
    assert_eq!(conflicts[2].blocker, Some(Blocker::DuplicateObject));
    assert_eq!(conflicts[2].name.as_deref(), Some("app"));
    assert_eq!(conflicts[3].kind.as_deref(), Some("FUNCTION"));
    assert_eq!(conflicts[4].blocker, Some(Blocker::DuplicateRelation));
    let first = first_blocking(&rows).unwrap();
    assert_eq!(
        first.describe(),
        "step 4: conflict SCHEMA app: blocking: SCHEMA app already exists in database \"app\" (toc_id 6)"
    );
    assert_eq!(Blocker::DuplicateRelation.sqlstate(), "42P07");

    // clean drops first, in reverse order, and conflicts no longer block
    let clean = RestoreOptions {
        clean: true,
        ..RestoreOptions::default()
    };
    let rows = plan(&entries, &clean, &target, &srv, None);
    assert!(first_blocking(&rows).is_none());
    let drops: Vec<String> = rows
        .iter()
        .filter(|r| r.action == "drop")
        .map(|r| r.name.clone().unwrap())
        .collect();
    assert_eq!(
        drops,
        [
            "orders orders_pkey",
            "mv",
            "notes",
            "orders",
            "f(integer, text)",
            "pg_trgm",
            "app"
        ]
    );
}

#[test]
fn data_only_replaces_data() {
    let data: Vec<TocEntry> = entries()
        .into_iter()
        .filter(|e| e.kind == "TABLE DATA")
        .collect();
    let target = TargetFacts {
        name: "app".into(),
        existing: [(
            "relation".to_string(),
            Some("app".to_string()),
            "orders".to_string(),
        )]
        .into_iter()
        .collect(),
        ..TargetFacts::default()
    };
    let options = RestoreOptions {
        data_only: true,
        ..RestoreOptions::default()
    };
    let rows = plan(
        &data,
        &options,
        &target,
        &server(&["alice", "bob"], &[]),
        None,
    );
    assert_eq!(
        actions(&rows)[1..],
        [
            (2, "replace data".to_string(), "app.orders".to_string()),
            (3, "replace data".to_string(), "public.notes".to_string()),
        ]
    );
    assert!(first_blocking(&rows).is_none());
}

#[test]
fn missing_roles_and_extensions() {
    let entries = entries();
    let srv = server(&["postgres", "alice"], &["plpgsql"]);
    let grantees: BTreeSet<String> = ["carol".to_string(), "alice".to_string()].into();
    let options = RestoreOptions::default();
    let target = new_db();
    let tool = tools();
    let facts = |options| PlanFacts {
        contents: Contents::Archive(&entries),
        options,
        target: Some(&target),
        requester: "postgres",
        server: &srv,
        grantees: &grantees,
        tools: &tool,
        space: None,
    };
    let rows = build_plan(&facts(&options));
    let missing: Vec<(&str, &str, bool)> = rows
        .iter()
        .filter(|r| r.action.starts_with("missing"))
        .map(|r| {
            (
                r.action.as_str(),
                r.name.as_deref().unwrap(),
                r.blocker.is_some(),
            )
        })
        .collect();
    assert_eq!(
        missing,
        [
            ("missing role", "bob", true),
            ("missing role", "carol", true),
            ("missing extension", "pg_trgm", true),
        ]
    );
    let bob = rows
        .iter()
        .find(|r| r.name.as_deref() == Some("bob"))
        .unwrap();
    assert_eq!(
        bob.detail,
        "blocking: role \"bob\" owns 2 object(s) in the archive (first: TABLE public.notes) and \
         does not exist on this server; restore the globals backup first, or restore with no_owner"
    );
    let ext = rows
        .iter()
        .find(|r| r.action == "missing extension")
        .unwrap();
    assert!(ext.detail.contains("extension \"pg_trgm\" (toc_id 2)"));

    let lenient = RestoreOptions {
        no_owner: true,
        no_privileges: true,
        ..RestoreOptions::default()
    };
    let rows = build_plan(&facts(&lenient));
    let blocking: Vec<&str> = rows
        .iter()
        .filter(|r| r.blocker.is_some())
        .map(|r| r.action.as_str())
        .collect();
    assert_eq!(blocking, ["missing extension"]);
    assert!(rows
        .iter()
        .any(|r| r.name.as_deref() == Some("bob") && r.detail.contains("not needed: no_owner")));
}

#[test]
fn space_and_tools_block() {
    let entries = entries();
    let space = SpaceFacts {
        estimate: 3 * 1024 * 1024 * 1024,
        basis: "the backup's size".into(),
        free: 1024 * 1024 * 1024,
        data_directory: "/var/lib/postgresql/16/main".into(),
        firm: true,
    };
    let srv = server(&["alice", "bob", "postgres"], &["pg_trgm"]);
    let rows = plan(
        &entries,
        &RestoreOptions::default(),
        &new_db(),
        &srv,
        Some(&space),
    );
    assert_eq!(rows[1].action, "space");
    assert_eq!(
        rows[1].detail,
        "blocking: about 3.0 GB after the restore (the backup's size); 1.0 GB free on the \
         filesystem of /var/lib/postgresql/16/main"
    );
    assert_eq!(first_blocking(&rows).unwrap().blocker, Some(Blocker::Space));
    // A guessed estimate warns but does not block.
    let guess = SpaceFacts {
        firm: false,
        ..space.clone()
    };
    let row = space_row(&guess);
    assert_eq!(row.blocker, None);
    assert!(
        row.detail.starts_with("may not fit: about 3.0 GB"),
        "{}",
        row.detail
    );

    let old = ToolFacts {
        major: Some(15),
        reads_up_to: Some(ArchiveVersion(1, 14)),
        ..tools()
    };
    let row = tools_row(&old);
    assert_eq!(row.blocker, Some(Blocker::Tools));
    assert!(row.detail.starts_with(
        "blocking: pg_restore 15 reads archive versions up to 1.14; this archive is 1.15"
    ));
}

#[test]
fn scripts_run_whole() {
    let target = new_db();
    let rows = build_plan(&PlanFacts {
        contents: Contents::Script { globals: false },
        options: &RestoreOptions::default(),
        target: Some(&target),
        requester: "postgres",
        server: &ServerFacts::default(),
        grantees: &BTreeSet::new(),
        tools: &ToolFacts {
            tool: "psql".into(),
            major: Some(16),
            archive_version: None,
            reads_up_to: None,
        },
        space: None,
    });
    assert_eq!(
        actions(&rows),
        [
            (1, "tools".to_string(), String::new()),
            (2, "create".to_string(), "restored".to_string()),
            (3, "run script".to_string(), "restored".to_string()),
        ]
    );
    assert_eq!(rows[0].detail, "psql 16 runs the restore");
}

#[test]
fn estimates() {
    let firm = |e: (u64, String, bool)| (e.0, e.2);
    assert_eq!(
        firm(estimate_restored_size(100, true, Some(5000))),
        (5000, true)
    );
    assert_eq!(firm(estimate_restored_size(100, true, None)), (400, false));
    assert_eq!(firm(estimate_restored_size(100, false, None)), (100, true));
}

#[test]
fn grantees_from_a_script() {
    let script = "\
GRANT SELECT ON TABLE app.orders TO reader;\n\
GRANT ALL ON SCHEMA app TO \"We \"\"ird\";\n\
GRANT USAGE ON SCHEMA public TO PUBLIC;\n\
ALTER DEFAULT PRIVILEGES FOR ROLE alice IN SCHEMA app GRANT SELECT ON TABLES TO auditor;\n\
GRANT SELECT ON TABLE app.t TO writer WITH GRANT OPTION;\n\
REVOKE ALL ON TABLE app.t FROM nobody;\n    GRANT SELECT ON x TO inside_a_body;\n";
    let roles: Vec<String> = script_grantees(script).into_iter().collect();
    assert_eq!(roles, ["We \"ird", "auditor", "reader", "writer"]);
}

#[test]
fn use_list_matches_the_worker() {
    use crate::restore::request::use_list_to_write;
    let listing =
        "6; 2615 2200 SCHEMA - public pg_database_owner\n215; 1259 16386 TABLE public t postgres\n";
    assert_eq!(use_list_to_write(listing, &[], false).unwrap(), None);
    assert_eq!(
        use_list_to_write(listing, &[], true).unwrap().unwrap(),
        ";6; 2615 2200 SCHEMA - public pg_database_owner\n215; 1259 16386 TABLE public t postgres\n"
    );
    assert_eq!(
        use_list_to_write(listing, &[215], false).unwrap().unwrap(),
        "215; 1259 16386 TABLE public t postgres\n"
    );
    assert!(use_list_to_write(listing, &[7], true).is_err());
}

#[test]
fn an_owner_whose_name_has_spaces_is_found_among_the_roles() {
    let listing = "\
;
; Selected TOC Entries:
;
5; 2615 16390 SCHEMA - Ünï Schema Ré Owner
6; 1259 16391 TABLE public t Ré Owner
7; 1259 16392 TABLE public u Nobody Here
";
    let entries = crate::restore::toc::parse_toc(listing).unwrap();
    let srv = server(&["postgres", "Ré Owner"], &["plpgsql"]);
    let grantees = BTreeSet::new();
    let options = RestoreOptions::default();
    let target = new_db();
    let tool = tools();
    let rows = build_plan(&PlanFacts {
        contents: Contents::Archive(&entries),
        options: &options,
        target: Some(&target),
        requester: "postgres",
        server: &srv,
        grantees: &grantees,
        tools: &tool,
        space: None,
    });
    let missing: Vec<&str> = rows
        .iter()
        .filter(|r| r.action == "missing role")
        .map(|r| r.name.as_deref().unwrap())
        .collect();
    // "Ré Owner" exists: neither the schema nor t reports it; "Nobody Here" does not.
    assert_eq!(missing, ["Here"]);
}
