//! Waking the worker the moment a job is committed, instead of making it poll: the worker keeps
//! its pid in shared memory, and a commit callback of the requesting transaction sets its latch.

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

/// Arranges for the worker to be woken when the current transaction commits.
pub fn wake_worker_on_commit() {
    if WAKE_REGISTERED.with(|r| r.replace(true)) {
        return;
    }
    register_xact_callback(PgXactCallbackEvent::Commit, || {
        WAKE_REGISTERED.with(|r| r.set(false));
        set_worker_latch();
    });
    register_xact_callback(PgXactCallbackEvent::Abort, || {
        WAKE_REGISTERED.with(|r| r.set(false));
    });
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
