//! What the configured tools can do is asked of the binaries: a pg_dump built without zstd
//! refuses zstd at call time (not in the job), whatever its version, and replacing the tools is
//! noticed at the next call.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use backup_ext_e2e::*;

/// A bin directory with the PostgreSQL 18 tools whose pg_dump refuses zstd the way a pg_dump
/// built without libzstd does.
fn tools_without_zstd(c: &Cluster) -> PathBuf {
    let dir = c.root.join("tools");
    std::fs::create_dir_all(&dir).unwrap();
    let real = bin_dir_of(18);
    for tool in ["pg_dumpall", "pg_restore", "psql", "createdb", "dropdb"] {
        symlink(real.join(tool), dir.join(tool)).unwrap();
    }
    write_pg_dump_without_zstd(&dir, &real);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn write_pg_dump_without_zstd(dir: &Path, real: &Path) {
    let script = format!(
        "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in --compress=zstd*) \
         echo 'pg_dump: error: this build does not support compression with ZSTD' >&2; \
         exit 1;; esac; done\nexec {} \"$@\"\n",
        real.join("pg_dump").display()
    );
    let path = dir.join("pg_dump");
    let staged = dir.join("pg_dump.new");
    std::fs::write(&staged, script).unwrap();
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&staged, &path).unwrap();
}

/// `pg_restore --list` by the 18 tools (the archive version is newer than pg_restore 15 reads).
fn list_by_18(path: &Path) -> String {
    let out = std::process::Command::new(bin_dir_of(18).join("pg_restore"))
        .arg("--list")
        .arg(path)
        .output()
        .expect("run pg_restore 18");
    check_output("pg_restore 18 --list", &out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn compression_follows_what_the_binary_accepts() {
    let c = Cluster::start("capabilities");
    c.create_sample_db("app");
    let tools = tools_without_zstd(&c);
    c.set_and_reload("backup_ext.bin_dir", path_str(&tools));

    let mut client = c.client("postgres");
    let before = one_i64(&mut client, "SELECT count(*) FROM backup_ext.jobs");
    let err = refused(
        &mut client,
        "SELECT backup_ext.backup_database('app', compress => 'zstd:3')",
        &postgres::error::SqlState::FEATURE_NOT_SUPPORTED,
    );
    assert!(
        err.contains(
            "the configured pg_dump 18 was built without zstd support (compress => \"zstd:3\")"
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "This pg_dump accepts: a gzip level 0-9, none, gzip, lz4. Point backup_ext.bin_dir \
             at a pg_dump built with zstd, or choose another method."
        ),
        "{err}"
    );
    assert_eq!(
        one_i64(&mut client, "SELECT count(*) FROM backup_ext.jobs"),
        before,
        "nothing enqueued"
    );
    // A schedule asking for zstd is refused alike.
    expect_sqlstate(
        &mut client,
        "SELECT backup_ext.schedule('z', '0 3 * * *',
             '{\"backup\": \"database\", \"dbname\": \"app\", \"compress\": \"zstd\"}')",
        "0A000",
    );

    // What it has works, through the extension, with the 18 tools against this server.
    let lz4 = backup_db(&c, "app", ", 'custom', compress => 'lz4'");
    assert!(
        lz4.tool_version.as_deref().unwrap().contains(" 18."),
        "{:?}",
        lz4.tool_version
    );
    let list = list_by_18(&lz4.path_buf());
    assert!(list.contains("Compression: lz4"), "{list}");

    // The real pg_dump in its place: a new build of the tools is probed again.
    std::fs::remove_file(tools.join("pg_dump")).unwrap();
    symlink(bin_dir_of(18).join("pg_dump"), tools.join("pg_dump")).unwrap();
    let zstd = backup_db(&c, "app", ", 'custom', compress => 'zstd:3'");
    let list = list_by_18(&zstd.path_buf());
    assert!(list.contains("Compression: zstd"), "{list}");
}
