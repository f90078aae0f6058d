//! Helpers shared by the operations tests: one-value queries, table locks
//! that hold pg_dump up, files below a directory, and backup sets.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use postgres::Client;

use crate::sql::describe;
use crate::{Cluster, SMALL_JOB};

pub fn one_i64(client: &mut Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)))
        .get(0)
}

pub fn one_text(client: &mut Client, sql: &str) -> String {
    client
        .query_one(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)))
        .get(0)
}

pub fn exec(client: &mut Client, sql: &str) {
    client
        .batch_execute(sql)
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
}

/// Holds an ACCESS EXCLUSIVE lock on `t1` of `db` until the returned client
/// is dropped: pg_dump of that database blocks in its LOCK TABLE.
pub fn lock_t1(c: &Cluster, db: &str) -> Client {
    let mut holder = c.client(db);
    exec(&mut holder, "BEGIN; LOCK TABLE t1 IN ACCESS EXCLUSIVE MODE");
    holder
}

pub fn wait_dump_blocked(c: &Cluster, db: &str) {
    c.wait_until("pg_dump to block on the table lock", SMALL_JOB, || {
        c.client("postgres")
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = $1 AND wait_event_type = 'Lock'",
                &[&db],
            )
            .unwrap()
            .get::<_, i64>(0)
            == 1
    });
}

/// Every regular file below `dir`, recursively.
/// Every file below `dir`, except the sidecar (`<backup>.json`) of a backup that is there too:
/// an orphaned sidecar is listed.
pub fn files_under(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return out;
    };
    for entry in rd.flatten() {
        let p = entry.path();
        let sidecar_of = p
            .to_str()
            .and_then(|s| s.strip_suffix(".json"))
            .map(PathBuf::from);
        if entry.file_type().unwrap().is_dir() {
            out.extend(files_under(&p));
        } else if !sidecar_of.is_some_and(|b| b.exists()) {
            out.insert(p);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Backup sets

#[derive(Debug)]
pub struct SetRow {
    pub members: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub status: String,
    pub size_bytes: Option<i64>,
}

pub fn set_row(client: &mut Client, set_id: i64) -> SetRow {
    let r = client
        .query_one(
            "SELECT members, succeeded, failed, status, size_bytes::bigint
               FROM backup_ext.sets WHERE set_id = $1",
            &[&set_id],
        )
        .unwrap_or_else(|e| panic!("sets row {set_id}: {}", describe(&e)));
    SetRow {
        members: r.get(0),
        succeeded: r.get(1),
        failed: r.get(2),
        status: r.get(3),
        size_bytes: r.get(4),
    }
}

/// (job_id, kind, database) of a set's members, by job id.
pub fn members(client: &mut Client, set_id: i64) -> Vec<(i64, String, Option<String>)> {
    client
        .query(
            "SELECT job_id, kind, database FROM backup_ext.jobs WHERE set_id = $1 ORDER BY job_id",
            &[&set_id],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// A tools directory whose pg_dump sleeps `pause` seconds after every MiB it writes (0.1: about
/// 10 MB/s), so a test can act while a dump or an upload is under way whatever the machine's
/// speed. The other tools are the cluster's own.
pub fn slow_pg_dump_tools(c: &Cluster, pause: f64) -> PathBuf {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let dir = c.root.join("slow-tools");
    fs::create_dir_all(&dir).unwrap();
    for tool in ["pg_dumpall", "pg_restore", "psql", "createdb", "dropdb"] {
        let _ = fs::remove_file(dir.join(tool));
        symlink(c.bin_dir().join(tool), dir.join(tool)).unwrap();
    }
    let throttle = format!(
        "import sys, time\n\
         r, w = sys.stdin.buffer, sys.stdout.buffer\n\
         while True:\n\
         \x20   b = r.read(1 << 20)\n\
         \x20   if not b:\n\
         \x20       break\n\
         \x20   w.write(b)\n\
         \x20   w.flush()\n\
         \x20   time.sleep({pause})\n"
    );
    fs::write(dir.join("throttle.py"), throttle).unwrap();
    let script = format!(
        "#!/bin/bash\nset -o pipefail\ncase \" $* \" in *' --version '*|*' -V '*) exec {real} \"$@\";; esac\n\
         {real} \"$@\" | /usr/bin/python3 {dir}/throttle.py\n",
        real = c.bin_dir().join("pg_dump").display(),
        dir = dir.display()
    );
    fs::write(dir.join("pg_dump"), script).unwrap();
    fs::set_permissions(dir.join("pg_dump"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    dir
}
