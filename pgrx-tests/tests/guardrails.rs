//! Guardrails against silent failure: an empty dump or an archive without a table of contents
//! fails; a dump much smaller than the previous one is flagged and makes status() warn until a
//! normal one follows; retention keeps the newest verified backup, and everything while the
//! newest attempts fail.

use backup_ext_e2e::postgres::Client;
use backup_ext_e2e::*;
use std::fs;
use std::path::PathBuf;

/// A tools directory whose pg_dump runs `body` (a bash snippet) instead of dumping; `--version`
/// still reaches the real one. The other tools are the cluster's own.
fn fake_pg_dump_tools(c: &Cluster, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let dir = c.root.join(name);
    fs::create_dir_all(&dir).unwrap();
    for tool in ["pg_dumpall", "pg_restore", "psql", "createdb", "dropdb"] {
        let _ = fs::remove_file(dir.join(tool));
        symlink(c.bin_dir().join(tool), dir.join(tool)).unwrap();
    }
    let script = format!(
        "#!/bin/bash\ncase \" $* \" in *' --version '*|*' -V '*) exec {real} \"$@\";; esac\n{body}\n",
        real = c.bin_dir().join("pg_dump").display(),
    );
    fs::write(dir.join("pg_dump"), script).unwrap();
    fs::set_permissions(dir.join("pg_dump"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn anomaly(client: &mut Client, backup_id: i64) -> Option<String> {
    let a: Option<String> = client
        .query_one(
            "SELECT anomaly FROM backup_ext.list_backups() WHERE backup_id = $1",
            &[&backup_id],
        )
        .unwrap()
        .get(0);
    let b: Option<String> = client
        .query_one(
            "SELECT anomaly FROM backup_ext.backups WHERE backup_id = $1",
            &[&backup_id],
        )
        .unwrap()
        .get(0);
    assert_eq!(a, b);
    a
}

fn status_of(client: &mut Client, db: &str) -> (String, Option<String>) {
    let r = client
        .query_one(
            "SELECT status, anomaly FROM backup_ext.status() WHERE database = $1",
            &[&db],
        )
        .unwrap();
    (r.get(0), r.get(1))
}

#[test]
fn empty_and_headless_dumps_fail_and_leave_nothing() {
    let c = Cluster::start("guard-empty");
    c.create_sample_db("ge_db");
    let cases = [
        (
            "empty",
            "exit 0",
            "custom",
            "pg_dump exited 0 but wrote 0 bytes",
        ),
        (
            "empty-plain",
            "exit 0",
            "plain",
            "pg_dump exited 0 but wrote 0 bytes",
        ),
        (
            "garbage",
            "printf 'not an archive'",
            "custom",
            "pg_dump exited 0 but the archive has no table of contents",
        ),
    ];
    for (name, body, format, message) in cases {
        let tools = fake_pg_dump_tools(&c, name, body);
        c.set_and_reload("backup_ext.bin_dir", &tools.to_string_lossy());
        let job = c.enqueue(&format!(
            "SELECT backup_ext.backup_database('ge_db', '{format}')"
        ));
        assert_eq!(c.wait_final(job, SMALL_JOB), "failed", "{name}");
        let error = c.job(job).error.unwrap_or_default();
        assert!(error.starts_with(message), "{name}: {error}");
        assert!(
            partials_under(&c.backups).is_empty(),
            "{name}: a partial file is left"
        );
        let files: Vec<_> = files_under(&c.backups)
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(&format!("job{job:012}")))
            .collect();
        assert!(files.is_empty(), "{name}: {files:?}");
    }
}

#[test]
fn a_much_smaller_dump_is_flagged_until_a_normal_one_follows() {
    let c = Cluster::start("guard-size");
    c.create_sample_db("gs_db");
    let mut client = c.client("postgres");
    let mut db = c.client("gs_db");
    let full = c.enqueue("SELECT backup_ext.backup_database('gs_db', 'plain')");
    assert_eq!(c.wait_final(full, SMALL_JOB), "succeeded");
    assert_eq!(anomaly(&mut client, full), None);
    // Other options are another series: a schema-only dump is not compared with full ones.
    let schema = c.enqueue(
        "SELECT backup_ext.backup_database('gs_db', 'plain', options => '{\"schema_only\": true}')",
    );
    assert_eq!(c.wait_final(schema, SMALL_JOB), "succeeded");
    assert_eq!(anomaly(&mut client, schema), None);

    exec(&mut db, "TRUNCATE t3, t1 CASCADE");
    let small = c.enqueue("SELECT backup_ext.backup_database('gs_db', 'plain')");
    assert_eq!(c.wait_final(small, SMALL_JOB), "succeeded");
    let sizes = |client: &mut Client, id: i64| -> i64 {
        client
            .query_one(
                "SELECT size_bytes FROM backup_ext.backups WHERE backup_id = $1",
                &[&id],
            )
            .unwrap()
            .get(0)
    };
    let reason = format!(
        "{} bytes, less than 0.5 of the previous backup {full} ({} bytes)",
        sizes(&mut client, small),
        sizes(&mut client, full)
    );
    assert_eq!(anomaly(&mut client, small), Some(reason.clone()));
    assert_eq!(
        status_of(&mut client, "gs_db"),
        ("warning".to_string(), Some(reason.clone()))
    );
    let line = one_text(&mut client, "SELECT backup_ext.check_status()");
    assert!(
        line.contains(&format!("gs_db: last success 00:00:00 ago ({reason})")),
        "{line}"
    );
    assert!(
        c.log_text().contains("guardrail"),
        "no guardrail line in the log"
    );

    // The next dump is as small as the flagged one: normal again.
    let again = c.enqueue("SELECT backup_ext.backup_database('gs_db', 'plain')");
    assert_eq!(c.wait_final(again, SMALL_JOB), "succeeded");
    assert_eq!(anomaly(&mut client, again), None);
    assert_eq!(status_of(&mut client, "gs_db"), ("ok".to_string(), None));

    // 0 turns the check off.
    c.set_and_reload("backup_ext.min_size_ratio", "0");
    exec(&mut db, "DROP TABLE t2, t3, t1 CASCADE");
    let tiny = c.enqueue("SELECT backup_ext.backup_database('gs_db', 'plain')");
    assert_eq!(c.wait_final(tiny, SMALL_JOB), "succeeded");
    assert_eq!(anomaly(&mut client, tiny), None);
}

#[test]
fn retention_keeps_the_newest_verified_backup_and_everything_while_failing() {
    let c = Cluster::start("guard-retention");
    c.create_sample_db("gr_db");
    let mut client = c.client("postgres");
    let backup = || {
        let job = c.enqueue("SELECT backup_ext.backup_database('gr_db')");
        assert_eq!(c.wait_final(job, SMALL_JOB), "succeeded");
        job
    };
    let verified = backup();
    let verify = c.enqueue(&format!("SELECT backup_ext.verify_backup({verified})"));
    assert_eq!(c.wait_final(verify, SMALL_JOB), "succeeded");
    let middle = backup();
    let newest = backup();
    exec(
        &mut client,
        "SELECT backup_ext.set_retention('gr_db', keep_last => 1)",
    );
    let report = |client: &mut Client| -> Vec<(Option<i64>, String)> {
        client
            .query(
                "SELECT backup_id, reason FROM backup_ext.purge() WHERE database = 'gr_db'
                  ORDER BY backup_id NULLS FIRST",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };
    let lines = report(&mut client);
    assert_eq!(
        lines
            .iter()
            .map(|(id, r)| (*id, r.starts_with("kept")))
            .collect::<Vec<_>>(),
        vec![(Some(verified), true), (Some(middle), false)],
        "{lines:?}"
    );
    assert_eq!(
        lines[0].1,
        "kept: the newest backup whose verification passed"
    );
    let live = |client: &mut Client| {
        one_text(
            client,
            "SELECT string_agg(backup_id::text, ' ' ORDER BY backup_id) FROM backup_ext.backups
              WHERE database = 'gr_db' AND status = 'succeeded'",
        )
    };
    assert_eq!(live(&mut client), format!("{verified} {newest}"));

    // A failing attempt after the newest success: nothing expires, and the purge says why.
    let failing = c.enqueue(
        "SELECT backup_ext.backup_database('gr_db', options => '{\"tables\": [\"no_such_table\"]}')",
    );
    assert_eq!(c.wait_final(failing, SMALL_JOB), "failed");
    exec(
        &mut client,
        &format!(
            "UPDATE backup_ext.artifacts SET verify_status = NULL WHERE backup_id = {verified}"
        ),
    );
    let lines = report(&mut client);
    assert_eq!(
        lines,
        vec![(
            None,
            format!(
                "kept all 2 backups: the newest attempt (job {failing}) failed, so nothing expires until a backup succeeds again"
            )
        )]
    );
    assert_eq!(live(&mut client), format!("{verified} {newest}"));
}

/// A tmpfs of `size` mounted by the test, unmounted on drop; None where mounting is forbidden.
struct SmallFilesystem(PathBuf);

impl SmallFilesystem {
    fn mount(dir: PathBuf, size: &str) -> Option<SmallFilesystem> {
        fs::create_dir_all(&dir).unwrap();
        let uid = std::process::Command::new("id")
            .args(["-u", PG_USER])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())?;
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700,uid={uid}"),
                "tmpfs",
            ])
            .arg(&dir)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs here ({}); the free-space guardrail is untested",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(SmallFilesystem(dir))
    }
}

/// Removes the mount point once the filesystem is unmounted (declared first, dropped last).
struct MountPoint(PathBuf);

impl Drop for MountPoint {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_dump_neither_starts_nor_goes_on_below_the_free_space_minimum() {
    // The backup directory is a server start option, so the filesystem comes first.
    let point = MountPoint(
        PathBuf::from(SCRATCH_ROOT).join(format!("guard-space-fs-{}", std::process::id())),
    );
    let Some(small) = SmallFilesystem::mount(point.0.clone(), "24m") else {
        return;
    };
    let c = Cluster::start_with(
        "guard-space",
        &[("backup_ext.directory", &small.0.to_string_lossy())],
    );
    c.create_pgbench_db("gf_big", 3);

    // 24 MB with 30 MB required: refused at once, nothing written.
    c.set_and_reload("backup_ext.min_free_space", "30MB");
    let refused = c.enqueue("SELECT backup_ext.backup_database('gf_big', 'plain')");
    assert_eq!(c.wait_final(refused, SMALL_JOB), "failed");
    let error = c.job(refused).error.unwrap_or_default();
    assert!(
        error.starts_with(&format!(
            "not started: the filesystem of {}",
            small.0.display()
        )),
        "{error}"
    );
    assert!(
        error.contains("below backup_ext.min_free_space (30.0 MB here)"),
        "{error}"
    );

    // A percentage of the filesystem: 50 % of 24 MB is 12 MB. The plain dump of about 35 MB,
    // throttled so the once-a-second check sees it grow, is stopped before the disk is full.
    c.set_and_reload("backup_ext.min_free_space", "1MB, 50%");
    let tools = slow_pg_dump_tools(&c, 0.2);
    c.set_and_reload("backup_ext.bin_dir", &tools.to_string_lossy());
    let stopped = c.enqueue("SELECT backup_ext.backup_database('gf_big', 'plain')");
    assert_eq!(c.wait_final(stopped, SMALL_JOB), "failed");
    let error = c.job(stopped).error.unwrap_or_default();
    assert!(
        error.starts_with(&format!("stopped: the filesystem of {}", small.0.display())),
        "{error}"
    );
    assert!(
        error.contains("(12.0 MB here); the partial output was removed"),
        "{error}"
    );
    assert!(
        files_under(&small.0).is_empty(),
        "{:?}",
        files_under(&small.0)
    );

    // A setting that cannot be read fails the job with the reason rather than ignoring it.
    c.set_and_reload("backup_ext.min_free_space", "lots");
    let unreadable = c.enqueue("SELECT backup_ext.backup_database('gf_big', 'plain')");
    assert_eq!(c.wait_final(unreadable, SMALL_JOB), "failed");
    let error = c.job(unreadable).error.unwrap_or_default();
    assert!(
        error.starts_with("not started: backup_ext.min_free_space = 'lots' is not understood"),
        "{error}"
    );
}
