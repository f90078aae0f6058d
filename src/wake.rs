//! Waking the worker the moment a job is committed, instead of making it poll: the worker keeps
//! its pid in shared memory, and a commit (or prepare) callback of the requesting transaction
//! sets its latch.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use pgrx::prelude::*;
use pgrx::{pg_shmem_init, register_xact_callback, PgAtomic, PgXactCallbackEvent};

static WORKER_PID: PgAtomic<AtomicI32> = unsafe { PgAtomic::new(c"backup_ext_worker_pid") };
// Set in the postmaster and inherited by every forked backend: only then does WORKER_PID exist.
static SHMEM_REQUESTED: AtomicBool = AtomicBool::new(false);

thread_local! {
    // One callback per transaction is enough, however many jobs it enqueues.
    static WAKE_REGISTERED: Cell<bool> = const { Cell::new(false) };
    // Counts the transactions of this backend that ended with callbacks registered. PREPARE
    // TRANSACTION fires neither Commit nor Abort, and pgrx keeps those callbacks until the
    // backend's next transaction ends: a callback acts only in the transaction it was
    // registered in.
    static XACT_GENERATION: Cell<u64> = const { Cell::new(0) };
}

/// Reserves the shared memory; only from `_PG_init` while preloading.
pub fn init_shmem() {
    pg_shmem_init!(WORKER_PID);
    SHMEM_REQUESTED.store(true, Ordering::SeqCst);
}

fn shmem_ready() -> bool {
    SHMEM_REQUESTED.load(Ordering::SeqCst)
}

/// Called by the worker once it is connected.
pub fn publish_worker_pid() {
    WORKER_PID
        .get()
        .store(unsafe { pg_sys::MyProcPid }, Ordering::SeqCst);
}

pub fn clear_worker_pid() {
    WORKER_PID.get().store(0, Ordering::SeqCst);
}

/// The worker's pid, or 0 when no worker is running.
pub fn worker_pid() -> i32 {
    if !shmem_ready() {
        return 0;
    }
    WORKER_PID.get().load(Ordering::SeqCst)
}

/// Arranges for the worker to be woken when the current transaction commits or is prepared.
///
/// A prepared transaction's jobs become visible only at COMMIT PREPARED, which may run in any
/// session and fires no callback of ours; as pg_net does, PREPARE wakes the worker anyway (it
/// finds nothing yet, and its poll picks the jobs up after COMMIT PREPARED).
pub fn wake_worker_on_commit() {
    if WAKE_REGISTERED.with(|r| r.replace(true)) {
        return;
    }
    let generation = XACT_GENERATION.with(Cell::get);
    register_xact_callback(PgXactCallbackEvent::Commit, move || {
        transaction_ended(generation, true)
    });
    register_xact_callback(PgXactCallbackEvent::Prepare, move || {
        transaction_ended(generation, true)
    });
    register_xact_callback(PgXactCallbackEvent::Abort, move || {
        transaction_ended(generation, false)
    });
}

/// Forgets the registration (so the backend's next transaction registers afresh) and wakes the
/// worker if asked. Runs after commit, abort or prepare: must never raise or panic.
fn transaction_ended(generation: u64, wake: bool) {
    let current = XACT_GENERATION.with(Cell::get);
    if current != generation {
        // Left over from a prepared transaction; that one was handled at PREPARE.
        return;
    }
    XACT_GENERATION.with(|g| g.set(current.wrapping_add(1)));
    WAKE_REGISTERED.with(|r| r.set(false));
    if wake {
        set_worker_latch();
    }
}

/// Must never raise: it runs after commit, where an ERROR would take the cluster down.
fn set_worker_latch() {
    let pid = worker_pid();
    if pid <= 0 {
        return;
    }
    unsafe {
        let proc_ = pg_sys::BackendPidGetProc(pid);
        if !proc_.is_null() {
            pg_sys::SetLatch(&raw mut (*proc_).procLatch);
        }
    }
}
