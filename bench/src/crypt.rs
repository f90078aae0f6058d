//! Encryption at rest: a custom-format backup of the big database made plain and age-encrypted,
//! and a restore of each into a new database, alternately, through the extension. Targets: an
//! encrypted backup and an encrypted restore take at most `CRYPT_TARGET` times the plain ones.

use std::fmt::Write as _;
use std::process::Command;

use crate::cases::ENQUEUE_SQL;
use crate::cluster::{remove_path, run, Bench};
use crate::setup::BIG_DB;
use crate::stats::median;
use crate::{Context, Res};

const IDENTITY_FILE: &str = "backup_ext.identity_file";
const RESTORE_DB: &str = "bench_restore_crypt";
pub(crate) const CRYPT_TARGET: f64 = 1.05;

/// Seconds per run (client side: from the call to the job's end), and the backups' sizes.
pub(crate) struct Crypt {
    pub(crate) backup_plain: Vec<f64>,
    pub(crate) backup_encrypted: Vec<f64>,
    pub(crate) restore_plain: Vec<f64>,
    pub(crate) restore_encrypted: Vec<f64>,
    pub(crate) size_plain: i64,
    pub(crate) size_encrypted: i64,
}

impl Bench {
    pub(crate) fn crypt(&mut self) -> Res<Crypt> {
        let dir = self.scratch_dir("crypt")?;
        let key = dir.join("key.txt");
        let mut keygen = Command::new("runuser");
        keygen
            .args(["-u", "postgres", "--", "age-keygen", "-o"])
            .arg(&key);
        run(keygen, "age-keygen")?;
        let out = Command::new("age-keygen")
            .arg("-y")
            .arg(&key)
            .output()
            .context(|| "cannot run age-keygen -y".to_string())?;
        let recipient = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || !recipient.starts_with("age1") {
            return Err(format!("age-keygen -y {} gave no recipient", key.display()).into());
        }
        let original = self.setting(IDENTITY_FILE)?;
        let key_path = key.to_string_lossy().into_owned();
        self.alter_system(IDENTITY_FILE, Some(&key_path), &key_path)?;
        let result = self.crypt_runs(&recipient);
        self.exec("SELECT backup_ext.set_encryption(NULL)")?;
        self.drop_database(RESTORE_DB)?;
        self.restore_setting(IDENTITY_FILE, &original)?;
        remove_path(&dir)?;
        result
    }

    fn crypt_runs(&mut self, recipient: &str) -> Res<Crypt> {
        let mut c = Crypt {
            backup_plain: Vec::new(),
            backup_encrypted: Vec::new(),
            restore_plain: Vec::new(),
            restore_encrypted: Vec::new(),
            size_plain: 0,
            size_encrypted: 0,
        };
        let on = format!(
            "SELECT backup_ext.set_encryption(ARRAY['{}'])",
            recipient.replace('\'', "''")
        );
        for i in 1..=self.a.runs {
            let mut line = format!("encryption: run {i}:");
            for encrypted in [false, true] {
                self.exec(if encrypted {
                    &on
                } else {
                    "SELECT backup_ext.set_encryption(NULL)"
                })?;
                let b = self.ext_job(
                    ENQUEUE_SQL,
                    &[&BIG_DB, &"custom", &None::<&str>, &None::<i32>],
                )?;
                let id = b.job_ids[0];
                let (size, is_encrypted): (i64, bool) = self
                    .db
                    .query_one(
                        "SELECT size_bytes, encrypted FROM backup_ext.artifacts WHERE job_id = $1",
                        &[&id],
                    )
                    .context(|| format!("cannot read backup {id}"))
                    .map(|r| (r.get(0), r.get(1)))?;
                if is_encrypted != encrypted {
                    return Err(format!("backup {id}: encrypted = {is_encrypted}").into());
                }
                self.drop_database(RESTORE_DB)?;
                let r = self.ext_job(
                    "SELECT backup_ext.restore_backup($1, $2, create_db => true)",
                    &[&id, &RESTORE_DB],
                )?;
                self.drop_database(RESTORE_DB)?;
                self.remove_ext_outputs(&b.job_ids)?;
                let (backups, restores) = if encrypted {
                    c.size_encrypted = size;
                    (&mut c.backup_encrypted, &mut c.restore_encrypted)
                } else {
                    c.size_plain = size;
                    (&mut c.backup_plain, &mut c.restore_plain)
                };
                backups.push(b.client);
                restores.push(r.client);
                let _ = write!(
                    line,
                    " {} backup {:.3}s restore {:.3}s;",
                    if encrypted { "encrypted" } else { "plain" },
                    b.client,
                    r.client
                );
            }
            self.log(&line);
        }
        Ok(c)
    }
}

pub(crate) fn render(md: &mut String, a: &crate::args::Args, c: &Crypt, missed: &mut Vec<String>) {
    if !md.ends_with("\n\n") {
        md.push('\n');
    }
    let _ = writeln!(md, "## Encryption at rest (age)\n");
    let _ = writeln!(
        md,
        "`backup_database('{BIG_DB}', format => 'custom')` with `set_encryption(NULL)` and with one \
         X25519 recipient, each followed by `restore_backup(id, '<new>', create_db => true)`, \
         alternately, {} runs per side; medians of the client-side time (call to job end).\n",
        a.runs
    );
    let _ = writeln!(
        md,
        "| case | plain | encrypted | ratio | target |\n|---|---|---|---|---|"
    );
    for (name, plain, enc) in [
        ("backup", &c.backup_plain, &c.backup_encrypted),
        ("restore", &c.restore_plain, &c.restore_encrypted),
    ] {
        let (p, e) = (median(plain), median(enc));
        let ratio = e / p;
        let ok = ratio <= CRYPT_TARGET;
        let _ = writeln!(
            md,
            "| {name} | {p:.3} s | {e:.3} s | {ratio:.3} | ≤ {CRYPT_TARGET} {} |",
            if ok { "met" } else { "MISSED" }
        );
        if !ok {
            missed.push(format!(
                "encrypted {name} {ratio:.3}× the plain one (target ≤ {CRYPT_TARGET})"
            ));
        }
    }
    let _ = writeln!(
        md,
        "\nSizes: plain {} bytes, encrypted {} bytes ({:+} bytes: age's header and its 16-byte tag per 64 KiB chunk).",
        c.size_plain,
        c.size_encrypted,
        c.size_encrypted - c.size_plain
    );
}
