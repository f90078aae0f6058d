//! Running catalog work in its own transaction without letting an ERROR escape: the worker must
//! never die of one bad job or one failed query.

use std::panic::AssertUnwindSafe;

use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::PgTryBuilder;

/// Runs `f` in a new transaction; commits on `Ok`, rolls back on `Err` or on an ERROR raised
/// inside, which comes back as `Err(message)`.
pub fn in_transaction<R>(f: impl FnOnce() -> Result<R, String>) -> Result<R, String> {
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    PgTryBuilder::new(AssertUnwindSafe(|| match f() {
        Ok(value) => {
            unsafe {
                pg_sys::PopActiveSnapshot();
                pg_sys::CommitTransactionCommand();
            }
            Ok(value)
        }
        Err(message) => {
            unsafe { pg_sys::AbortCurrentTransaction() };
            Err(message)
        }
    }))
    .catch_others(|caught| {
        unsafe { pg_sys::AbortCurrentTransaction() };
        Err(describe(&caught))
    })
    .execute()
}

fn describe(caught: &CaughtError) -> String {
    match caught {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r.message().to_string(),
        CaughtError::RustPanic { ereport, .. } => ereport.message().to_string(),
    }
}

/// Like `in_transaction`, for SPI results.
pub fn spi<R>(f: impl FnOnce() -> Result<R, pgrx::spi::Error>) -> Result<R, String> {
    in_transaction(|| f().map_err(|e| e.to_string()))
}
