//! Command lines for pg_dump, pg_dumpall and pg_restore.
//!
//! Every argument is a separate argv element handed straight to exec, never
//! to a shell, so database names and patterns need no shell quoting. Values
//! are always attached with `=` so that none can be mistaken for an option.

use crate::conninfo::{quote_conninfo_value, Connection};
use crate::dump::request::{DumpRequest, GlobalsRequest};
use crate::process::command::{archive_arg, arg};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// `output_dir` is where pg_dump creates the directory-format output; it is
/// ignored for the other formats, which stream to stdout. For the directory
/// format without `output_dir` no `--file` is passed and pg_dump itself
/// refuses to run.
pub fn pg_dump_argv(
    bin_dir: &Path,
    conn: &Connection,
    dbname: &str,
    req: &DumpRequest,
    output_dir: Option<&Path>,
) -> (PathBuf, Vec<OsString>) {
    let mut args = vec![
        arg(format!("--dbname={}", conn.conninfo(dbname))),
        arg(req.format.pg_dump_flag()),
    ];
    if let Some(c) = &req.compress {
        args.push(arg(format!("--compress={}", c.spec)));
    }
    if let Some(j) = req.jobs {
        args.push(arg(format!("--jobs={j}")));
    }
    args.extend(req.options.to_args().into_iter().map(OsString::from));
    // Verbose output goes to stderr and is what progress reporting and
    // failure messages are built from.
    args.push(arg("--verbose"));
    if !req.format.writes_to_stdout() {
        if let Some(dir) = output_dir {
            let mut file = OsString::from("--file=");
            file.push(dir.as_os_str());
            args.push(file);
        }
    }
    (bin_dir.join("pg_dump"), args)
}

/// pg_dumpall ignores the database name inside `--dbname` because it
/// connects to several databases; the initial database is chosen with
/// `--database`. That value is expanded as a connection string when it
/// contains `=`, so it is always given as `dbname='…'` to keep names with
/// `=` or quotes literal.
pub fn pg_dumpall_globals_argv(
    bin_dir: &Path,
    conn: &Connection,
    dbname: &str,
    req: &GlobalsRequest,
) -> (PathBuf, Vec<OsString>) {
    let mut args = vec![
        arg("--globals-only"),
        arg(format!("--dbname={}", conn.conninfo(dbname))),
        arg(format!(
            "--database=dbname={}",
            quote_conninfo_value(dbname)
        )),
    ];
    if req.no_role_passwords {
        args.push(arg("--no-role-passwords"));
    }
    (bin_dir.join("pg_dumpall"), args)
}

/// A relative archive path starting with `-` is anchored with `./`; an empty one reads stdin.
pub fn pg_restore_list_argv(bin_dir: &Path, path: &Path) -> (PathBuf, Vec<OsString>) {
    let mut args = vec![arg("--list")];
    archive_arg(&mut args, path);
    (bin_dir.join("pg_restore"), args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dump::compress::DumpTool;
    use serde_json::json;

    fn conn() -> Connection {
        Connection {
            socket_dir: PathBuf::from("/run/postgresql"),
            port: 5432,
            user: "postgres".into(),
            application_name: "backup_ext".into(),
        }
    }

    fn req(
        format: &str,
        compress: Option<&str>,
        jobs: Option<i32>,
        opts: serde_json::Value,
    ) -> DumpRequest {
        DumpRequest::validate(format, compress, jobs, &opts, DumpTool::by_version(16)).unwrap()
    }

    fn strs(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    const DBNAME_ARG: &str = "--dbname=host='/run/postgresql' port='5432' user='postgres' \
                              dbname='app' application_name='backup_ext'";

    #[test]
    fn stream_formats_have_no_file() {
        for (f, flag) in [
            ("custom", "--format=custom"),
            ("plain", "--format=plain"),
            ("tar", "--format=tar"),
        ] {
            let (prog, args) = pg_dump_argv(
                Path::new("/usr/lib/postgresql/15/bin"),
                &conn(),
                "app",
                &req(f, None, None, json!({})),
                Some(Path::new("/ignored")),
            );
            assert_eq!(prog, PathBuf::from("/usr/lib/postgresql/15/bin/pg_dump"));
            assert_eq!(strs(&args), vec![DBNAME_ARG, flag, "--verbose"]);
        }
    }

    #[test]
    fn directory_format_with_everything() {
        let r = req(
            "directory",
            Some("zstd:3"),
            Some(4),
            json!({
                "schemas": ["s"],
                "exclude_schemas": ["-x"],
                "tables": ["t one"],
                "exclude_tables": ["e"],
                "exclude_table_data": ["log*"],
                "data_only": true,
                "no_owner": true,
                "no_privileges": true,
            }),
        );
        let (_, args) = pg_dump_argv(
            Path::new("/bin"),
            &conn(),
            "app",
            &r,
            Some(Path::new("/backups/app/x.dir.partial")),
        );
        assert_eq!(
            strs(&args),
            vec![
                DBNAME_ARG,
                "--format=directory",
                "--compress=zstd:3",
                "--jobs=4",
                "--schema=s",
                "--exclude-schema=-x",
                "--table=t one",
                "--exclude-table=e",
                "--exclude-table-data=log*",
                "--data-only",
                "--no-owner",
                "--no-privileges",
                "--verbose",
                "--file=/backups/app/x.dir.partial",
            ]
        );
    }

    #[test]
    fn compressed_custom_and_schema_only() {
        let r = req("custom", Some("5"), None, json!({"schema_only": true}));
        let (_, args) = pg_dump_argv(Path::new("/bin"), &conn(), "app", &r, None);
        assert_eq!(
            strs(&args),
            vec![
                DBNAME_ARG,
                "--format=custom",
                "--compress=5",
                "--schema-only",
                "--verbose"
            ]
        );
    }

    #[test]
    fn directory_without_output_dir_omits_file() {
        let r = req("directory", None, None, json!({}));
        let (_, args) = pg_dump_argv(Path::new("/bin"), &conn(), "app", &r, None);
        assert_eq!(
            strs(&args),
            vec![DBNAME_ARG, "--format=directory", "--verbose"]
        );
    }

    #[test]
    fn hostile_dbname_stays_in_one_element() {
        let r = req("plain", None, None, json!({}));
        let (_, args) = pg_dump_argv(Path::new("/bin"), &conn(), "x=y it's --evil", &r, None);
        assert_eq!(args.len(), 3);
        assert!(strs(&args)[0].contains(r"dbname='x=y it\'s --evil'"));
    }

    #[test]
    fn globals() {
        let (prog, args) = pg_dumpall_globals_argv(
            Path::new("/opt/pg/bin"),
            &conn(),
            "app",
            &GlobalsRequest::default(),
        );
        assert_eq!(prog, PathBuf::from("/opt/pg/bin/pg_dumpall"));
        assert_eq!(
            strs(&args),
            vec!["--globals-only", DBNAME_ARG, "--database=dbname='app'"]
        );
        let (_, args) = pg_dumpall_globals_argv(
            Path::new("/opt/pg/bin"),
            &conn(),
            "it's",
            &GlobalsRequest {
                no_role_passwords: true,
            },
        );
        let a = strs(&args);
        assert_eq!(a[2], r"--database=dbname='it\'s'");
        assert_eq!(a[3], "--no-role-passwords");
        assert_eq!(a.len(), 4);
    }

    #[test]
    fn restore_list() {
        let (prog, args) = pg_restore_list_argv(Path::new("/bin"), Path::new("/b/a b.dump"));
        assert_eq!(prog, PathBuf::from("/bin/pg_restore"));
        assert_eq!(strs(&args), vec!["--list", "/b/a b.dump"]);
        let (_, args) = pg_restore_list_argv(Path::new("/bin"), Path::new("-x.dump"));
        assert_eq!(strs(&args), vec!["--list", "./-x.dump"]);
    }
}
