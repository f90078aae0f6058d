//! `backup_ext.bin_dir` pointing at newer tools than the server (the PostgreSQL 18 tools):
//! backups with zstd, and restores that succeed although the newer pg_restore sets what an
//! older server does not know, on every major.

use backup_ext_e2e::*;

#[test]
fn newer_tools_back_up_and_restore_this_server() {
    let tools = bin_dir_of(18);
    let c = Cluster::start_with("newer-tools", &[("backup_ext.bin_dir", path_str(&tools))]);
    c.create_sample_db("app");
    for (format, compress, target) in [
        ("custom", "zstd:3", "app_custom"),
        ("directory", "lz4", "app_directory"),
        ("plain", "0", "app_plain"),
    ] {
        let b = backup_db(
            &c,
            "app",
            &format!(", '{format}', compress => '{compress}'"),
        );
        assert!(
            b.tool_version.as_deref().unwrap().contains(" 18."),
            "{:?}",
            b.tool_version
        );
        let job = restore_ok(&c, &restore_sql(b.backup_id, target, ""));
        let (_, _, message) = job_outcome(&c, job);
        let expected = match (pg_major(), format) {
            // Archives of the Debian 15 carry its own column option: restored as a script.
            (15, "plain") => {
                "psql finished; this server does not know transaction_timeout (SET \
                              by the newer pg_dump), skipped"
            }
            (15, _) => {
                "psql finished; this server does not know transaction_timeout (SET by \
                        the newer pg_restore), skipped"
            }
            (16, "plain") => {
                "psql finished; this server does not know transaction_timeout (SET \
                              by the newer pg_dump), skipped"
            }
            (16, _) => {
                "pg_restore finished; this server does not know transaction_timeout \
                        (SET by the newer pg_restore), skipped"
            }
            (_, "plain") => "psql finished",
            _ => "pg_restore finished",
        };
        assert_eq!(
            message,
            Some(format!("{expected}; {}", rows_matched(&c, "app"))),
            "{format}"
        );
        assert_eq!(
            table_hashes(&c, "app"),
            table_hashes(&c, target),
            "{format}: table contents"
        );
    }
}

/// A restore that has to go through psql (an archive of the Debian 15 carrying its own column
/// option, see README) needs a pg_restore that writes `\restrict`: without it, names in the
/// archive could run psql backslash commands. Elsewhere the same tools restore directly.
#[test]
fn a_script_restore_needs_a_pg_restore_that_writes_restrict() {
    let c = Cluster::start("no-restrict");
    // The 18 tools, with a pg_restore that drops its \restrict lines like one from before it.
    let tools = c.root.join("tools");
    std::fs::create_dir_all(&tools).unwrap();
    let real = bin_dir_of(18);
    for tool in ["pg_dump", "pg_dumpall", "psql", "createdb", "dropdb"] {
        std::os::unix::fs::symlink(real.join(tool), tools.join(tool)).unwrap();
    }
    let wrapper = tools.join("pg_restore");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/bash\n{} \"$@\" | grep -v '^\\\\\\(un\\)\\?restrict '\nexit ${{PIPESTATUS[0]}}\n",
            real.join("pg_restore").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&tools, std::fs::Permissions::from_mode(0o755)).unwrap();
    c.set_and_reload("backup_ext.bin_dir", path_str(&tools));
    c.create_sample_db("app");

    let b = backup_db(&c, "app", ", 'custom'");
    let (job, status) = restore(&c, &restore_sql(b.backup_id, "app_copy", ""));
    let (_, error, _) = job_outcome(&c, job);
    if pg_major() == 15 {
        assert_eq!(status, "failed", "{error:?}");
        let error = error.unwrap_or_default();
        assert!(
            error.contains(&format!(
                "this archive must be restored as a script, and the pg_restore in {} does not \
                 write \\restrict",
                tools.display()
            )),
            "{error}"
        );
        assert!(
            !database_exists(&c, "app_copy"),
            "the new database is dropped"
        );
    } else {
        assert_eq!(status, "succeeded", "{error:?}");
        assert_eq!(table_hashes(&c, "app"), table_hashes(&c, "app_copy"));
    }
}
