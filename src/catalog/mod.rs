//! The only code that reads or writes `backup_ext.*` tables, one file per table family. Every
//! value travels as a `$n` parameter; no SQL text is ever built from user input (identifiers in
//! the few utility statements go through `format('%I')`). The items are re-exported here, so
//! callers write `catalog::claim_next_job` whatever file it lives in.

pub mod alerts;
mod backups;
mod cluster;
mod copies;
mod encryption;
mod imports;
mod jobs;
mod retention;
mod schedules;
mod storage;

pub use backups::*;
pub use cluster::*;
pub use copies::*;
pub use encryption::*;
pub use imports::*;
pub use jobs::*;
pub use retention::*;
pub use schedules::*;
pub use storage::*;

use std::cell::RefCell;
use std::collections::HashMap;

use pgrx::datum::{DatumWithOid, FromDatum, IntoDatum};
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiTupleTable};
use pgrx::{pg_sys, PgOid, Spi};

pub type SpiResult<T> = Result<T, pgrx::spi::Error>;

/// `to_char` format of a UTC timestamp that `parse_utc` reads back.
pub(crate) const UTC_TEXT: &str = "YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"";

/// A timestamp written with [`UTC_TEXT`].
pub(crate) fn parse_utc(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

thread_local! {
    /// The plans [`kept`] keeps, by statement and argument types.
    static KEPT: RefCell<HashMap<(&'static str, Vec<pg_sys::Oid>), OwnedPreparedStatement>> =
        RefCell::default();
}

/// Runs `sql` through a plan kept for the rest of the session. The worker runs the same few
/// statements for every job (claim, start, progress, outcome, sidecar, guardrail, copies), and
/// planning them each time cost more than running them. PostgreSQL re-plans a kept statement
/// by itself when something it depends on changes (an extension update, a new search_path or
/// role), so a kept plan never differs from a fresh one in what it does.
pub(crate) fn kept<'conn>(
    client: &mut SpiClient<'conn>,
    sql: &'static str,
    args: &[DatumWithOid],
) -> SpiResult<SpiTupleTable<'conn>> {
    let key = (sql, args.iter().map(DatumWithOid::oid).collect::<Vec<_>>());
    KEPT.with(|plans| {
        let mut plans = plans.borrow_mut();
        if !plans.contains_key(&key) {
            let types: Vec<PgOid> = key.1.iter().map(|&oid| PgOid::from(oid)).collect();
            let plan = client.prepare_mut(sql, &types)?.keep();
            plans.insert(key.clone(), plan);
        }
        client.update(&plans[&key], None, args)
    })
}

/// [`kept`] in a connection of its own, for a statement whose rows are not wanted.
pub(crate) fn run_kept(sql: &'static str, args: &[DatumWithOid]) -> SpiResult<()> {
    Spi::connect_mut(|client| kept(client, sql, args).map(|_| ()))
}

/// The first column of the first row through [`kept`]; None when there is no row or it is NULL.
pub(crate) fn one_kept<T: FromDatum + IntoDatum>(
    sql: &'static str,
    args: &[DatumWithOid],
) -> SpiResult<Option<T>> {
    Spi::connect_mut(|client| {
        let rows = kept(client, sql, args)?;
        if rows.is_empty() {
            return Ok(None);
        }
        rows.first().get_one::<T>()
    })
}

/// The first column of every row, as text.
pub(crate) fn texts(sql: &str, args: &[pgrx::datum::DatumWithOid]) -> SpiResult<Vec<String>> {
    pgrx::Spi::connect(|client| {
        let mut out = Vec::new();
        for row in client.select(sql, None, args)? {
            out.extend(row.get::<String>(1)?);
        }
        Ok(out)
    })
}

/// A single-value lookup where no row means None rather than an error.
pub(crate) fn optional<T>(found: SpiResult<Option<T>>) -> SpiResult<Option<T>> {
    found.or_else(|e| match e {
        pgrx::spi::Error::InvalidPosition => Ok(None),
        other => Err(other),
    })
}

/// A `kind` column read back as a [`backup_core::JobKind`]; the table's CHECK constraint makes
/// an unknown value impossible short of a newer version's row, which is then refused where the
/// kind is used.
pub(crate) fn job_kind(text: Option<String>) -> Result<backup_core::JobKind, String> {
    let text = text.unwrap_or_default();
    backup_core::JobKind::parse(&text).map_err(|e| e.message)
}
