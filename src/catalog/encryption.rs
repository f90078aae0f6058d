//! The `encryption_policy` table: the age recipients new backups are encrypted to.

use pgrx::prelude::*;

use super::SpiResult;

/// Stores the recipients of `database` (None: the default for all databases), or removes that
/// policy when `recipients` is empty.
pub fn set_encryption_policy(database: Option<&str>, recipients: &[String]) -> SpiResult<()> {
    if recipients.is_empty() {
        return Spi::run_with_args(
            "DELETE FROM backup_ext.encryption_policy p WHERE p.database IS NOT DISTINCT FROM $1",
            &[database.into()],
        );
    }
    Spi::run_with_args(
        "INSERT INTO backup_ext.encryption_policy AS p (database, recipients) VALUES ($1, $2)
         ON CONFLICT (database) DO UPDATE SET recipients = EXCLUDED.recipients, updated_at = now()",
        &[database.into(), recipients.to_vec().into()],
    )
}

/// The recipients a new backup of `database` (None: globals) is encrypted to: its own policy
/// ('globals' for globals), else the default; empty when neither exists.
pub fn encryption_recipients(database: Option<&str>) -> SpiResult<Vec<String>> {
    Ok(super::one_kept::<Vec<String>>(
        // Always one row (NULL without a policy).
        "SELECT (SELECT recipients FROM (
             SELECT p.recipients, 0 AS rank FROM backup_ext.encryption_policy p
              WHERE p.database = coalesce($1, 'globals')
             UNION ALL
             SELECT p.recipients, 1 FROM backup_ext.encryption_policy p WHERE p.database IS NULL) x
          ORDER BY rank LIMIT 1)",
        &[database.into()],
    )?
    .unwrap_or_default())
}

/// Every policy: its database (None: the default) and recipients, default first.
pub fn encryption_policies() -> SpiResult<Vec<(Option<String>, Vec<String>)>> {
    Spi::connect(|client| {
        let mut out = Vec::new();
        for row in client.select(
            "SELECT p.database, p.recipients FROM backup_ext.encryption_policy p
              ORDER BY p.database NULLS FIRST",
            None,
            &[],
        )? {
            out.push((
                row.get::<String>(1)?,
                row.get::<Vec<String>>(2)?.unwrap_or_default(),
            ));
        }
        Ok(out)
    })
}

/// The recipient fingerprints of live encrypted backups: each with how many backups list it
/// and the newest of them.
pub fn backup_fingerprints() -> SpiResult<Vec<(String, i64, i64)>> {
    Spi::connect(|client| {
        let mut out = Vec::new();
        for row in client.select(
            "SELECT r.fingerprint, count(*), max(a.backup_id)
               FROM backup_ext.artifacts a
               JOIN backup_ext.jobs j ON j.job_id = a.job_id
              CROSS JOIN LATERAL pg_catalog.unnest(a.recipients) AS r(fingerprint)
              WHERE a.encrypted AND a.expired_at IS NULL AND j.status = 'succeeded'
              GROUP BY r.fingerprint
              ORDER BY r.fingerprint",
            None,
            &[],
        )? {
            out.push((
                row.get::<String>(1)?.unwrap_or_default(),
                row.get::<i64>(2)?.unwrap_or_default(),
                row.get::<i64>(3)?.unwrap_or_default(),
            ));
        }
        Ok(out)
    })
}
