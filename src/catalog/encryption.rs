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
    Ok(Spi::get_one_with_args::<Vec<String>>(
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
