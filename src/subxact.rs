//! Running a statement that may raise (a cast of user text, say) inside a subtransaction, so a
//! failure becomes a value we can turn into our own error with a hint instead of an ERROR.

use pgrx::pg_sys;
use pgrx::PgTryBuilder;
use std::panic::AssertUnwindSafe;

/// `Some(f())`, or `None` if `f` raised an ERROR (which is rolled back and discarded).
pub fn try_or_none<T>(f: impl FnOnce() -> T) -> Option<T> {
    unsafe {
        let memory_context = pg_sys::CurrentMemoryContext;
        let resource_owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        PgTryBuilder::new(AssertUnwindSafe(|| {
            let value = f();
            pg_sys::ReleaseCurrentSubTransaction();
            pg_sys::MemoryContextSwitchTo(memory_context);
            pg_sys::CurrentResourceOwner = resource_owner;
            Some(value)
        }))
        .catch_others(|_| {
            pg_sys::MemoryContextSwitchTo(memory_context);
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
            pg_sys::MemoryContextSwitchTo(memory_context);
            pg_sys::CurrentResourceOwner = resource_owner;
            None
        })
        .execute()
    }
}
