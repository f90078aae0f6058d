//! Restore command lines, element by element.

use super::*;
use crate::error::ErrorKind;
use crate::format::Format;
use serde_json::json;

fn conn() -> Connection {
    Connection {
        socket_dir: PathBuf::from("/run/postgresql"),
        port: 5432,
        user: "postgres".into(),
        application_name: "backup_ext".into(),
    }
}

fn strs(args: &[OsString]) -> Vec<String> {
    args.iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

fn dbname(db: &str) -> String {
    conn().conninfo(db)
}

#[test]
fn pg_restore_minimal_and_full() {
    let req = RestoreRequest::validate(Format::Custom, false, true, None, &json!({})).unwrap();
    let minimal = |exit_on_error: bool| {
        pg_restore_argv(
            Path::new("/pg/bin"),
            &conn(),
            "new db",
            Path::new("/b/x.dump"),
            &req,
            None,
            None,
            exit_on_error,
        )
    };
    let (prog, args) = minimal(true);
    assert_eq!(prog, PathBuf::from("/pg/bin/pg_restore"));
    assert_eq!(
        strs(&args),
        vec![
            format!("--dbname={}", dbname("new db")),
            "--verbose".into(),
            "--exit-on-error".into(),
            "/b/x.dump".to_string(),
        ]
    );
    // Without --exit-on-error (newer tools than the server), nothing else changes.
    assert_eq!(
        strs(&minimal(false).1),
        vec![
            format!("--dbname={}", dbname("new db")),
            "--verbose".into(),
            "/b/x.dump".to_string(),
        ]
    );

    let req = RestoreRequest::validate(
        Format::Directory,
        false,
        false,
        Some(1),
        &json!({
            "tables": ["t one"], "schemas": ["-s"], "exclude_schemas": ["x"],
            "data_only": true, "no_owner": true, "no_privileges": true,
            "single_transaction": true, "clean": true, "toc_ids": [3],
        }),
    )
    .unwrap();
    let (_, args) = pg_restore_argv(
        Path::new("/pg/bin"),
        &conn(),
        "app",
        Path::new("-rel.dir"),
        &req,
        Some(Path::new("/w/list 1")),
        Some("mal lory"),
        true,
    );
    assert_eq!(
        strs(&args),
        vec![
            format!("--dbname={}", dbname("app")),
            "--verbose".into(),
            "--exit-on-error".into(),
            "--role=mal lory".into(),
            "--jobs=1".into(),
            "--single-transaction".into(),
            "--clean".into(),
            "--if-exists".into(),
            "--table=t one".into(),
            "--schema=-s".into(),
            "--exclude-schema=x".into(),
            "--data-only".into(),
            "--no-owner".into(),
            "--no-privileges".into(),
            "--use-list=/w/list 1".into(),
            "./-rel.dir".to_string(),
        ]
    );
}

#[test]
fn pg_restore_data_keeps_only_the_table_selection() {
    let req = RestoreRequest::validate(
        Format::Custom,
        false,
        false,
        None,
        &json!({
            "tables": ["t one"], "schemas": ["-s"], "exclude_schemas": ["x"],
            "no_owner": true, "single_transaction": true, "clean": true,
        }),
    )
    .unwrap();
    let (prog, args) = pg_restore_data_argv(
        Path::new("/pg/bin"),
        Path::new("-a.dump"),
        &req,
        Some(Path::new("/w/list 1")),
    );
    assert_eq!(prog, PathBuf::from("/pg/bin/pg_restore"));
    assert_eq!(
        strs(&args),
        vec![
            "--file=-",
            "--data-only",
            "--table=t one",
            "--schema=-s",
            "--exclude-schema=x",
            "--use-list=/w/list 1",
            "./-a.dump",
        ]
    );
    let plain = RestoreRequest::validate(Format::Custom, false, true, None, &json!({})).unwrap();
    let (_, args) = pg_restore_data_argv(Path::new("/b"), Path::new(""), &plain, None);
    assert_eq!(strs(&args), vec!["--file=-", "--data-only"]);
}

#[test]
fn pg_restore_to_stdout() {
    let (prog, args) = pg_restore_to_stdout_argv(Path::new("/bin"), Path::new("/b/a.tar"));
    assert_eq!(prog, PathBuf::from("/bin/pg_restore"));
    assert_eq!(strs(&args), vec!["--file=-", "--data-only", "/b/a.tar"]);
}

#[test]
fn psql_script() {
    let before = [
        "SET ROLE \"m\"".to_string(),
        "DROP SCHEMA public".to_string(),
    ];
    let (prog, args) = psql_script_argv(Path::new("/bin"), &conn(), "d", None, true, true, &before);
    assert_eq!(prog, PathBuf::from("/bin/psql"));
    assert_eq!(
        strs(&args),
        vec![
            "--no-psqlrc".to_string(),
            "--quiet".into(),
            format!("--dbname={}", dbname("d")),
            "--variable=ON_ERROR_STOP=1".into(),
            "--single-transaction".into(),
            "--command=SET ROLE \"m\"".into(),
            "--command=DROP SCHEMA public".into(),
            "--file=-".into(),
        ]
    );
    let (_, args) = psql_script_argv(
        Path::new("/bin"),
        &conn(),
        "d",
        Some(Path::new("/b/g s.sql")),
        false,
        false,
        &[],
    );
    assert_eq!(strs(&args)[3..], ["--file=/b/g s.sql".to_string()][..]);
    let (_, args) = psql_script_argv(
        Path::new("/bin"),
        &conn(),
        "d",
        Some(Path::new("-")),
        false,
        false,
        &[],
    );
    assert_eq!(strs(&args)[3], "--file=./-");
}

#[test]
fn psql_query() {
    let (prog, args) = psql_query_argv(Path::new("/bin"), &conn(), "d", "SELECT 1");
    assert_eq!(prog, PathBuf::from("/bin/psql"));
    assert_eq!(
        strs(&args),
        vec![
            "--no-psqlrc".to_string(),
            "--quiet".into(),
            "--no-align".into(),
            "--tuples-only".into(),
            "--field-separator=\u{1f}".into(),
            "--variable=ON_ERROR_STOP=1".into(),
            format!("--dbname={}", conn().query_conninfo("d")),
            "--command=SELECT 1".into(),
        ]
    );
}

#[test]
fn create_database_statements() {
    let statements = vec![
        "CREATE DATABASE \"n\" TEMPLATE template0".to_string(),
        "REVOKE ALL ON DATABASE \"n\" FROM PUBLIC;".to_string(),
    ];
    let (prog, args) = create_database_argv(Path::new("/bin"), &conn(), "postgres", &statements);
    assert_eq!(prog, PathBuf::from("/bin/psql"));
    assert_eq!(
        strs(&args),
        vec![
            "--no-psqlrc".to_string(),
            "--quiet".into(),
            "--variable=ON_ERROR_STOP=1".into(),
            format!("--dbname={}", dbname("postgres")),
            "--command=CREATE DATABASE \"n\" TEMPLATE template0".into(),
            "--command=REVOKE ALL ON DATABASE \"n\" FROM PUBLIC;".into(),
        ]
    );
}

#[test]
fn createdb_and_dropdb() {
    let (prog, args) = createdb_argv(Path::new("/bin"), &conn(), "postgres", "-x 'y\" ü");
    assert_eq!(prog, PathBuf::from("/bin/createdb"));
    assert_eq!(
        strs(&args),
        vec![
            format!("--maintenance-db={}", dbname("postgres")),
            "--template=template0".into(),
            "--".into(),
            "-x 'y\" ü".into(),
        ]
    );
    let (prog, args) = dropdb_argv(Path::new("/bin"), &conn(), "postgres", "--help");
    assert_eq!(prog, PathBuf::from("/bin/dropdb"));
    assert_eq!(
        strs(&args),
        vec![
            format!("--maintenance-db={}", dbname("postgres")),
            "--if-exists".into(),
            "--force".into(),
            "--".into(),
            "--help".into(),
        ]
    );
}

#[test]
fn database_names() {
    for ok in ["a", "-x", "with space 'q\"", "ü", &"x".repeat(63)] {
        assert_eq!(validate_database_name(ok), Ok(()), "{ok}");
    }
    // 32 two-byte characters are 64 bytes.
    for bad in [
        "",
        &"x".repeat(64),
        &"é".repeat(32),
        "a\nb",
        "tab\t",
        "nul\0",
    ] {
        let e = validate_database_name(bad).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidParameter, "{bad:?}");
        assert!(e.hint.contains("63 bytes"));
    }
}
