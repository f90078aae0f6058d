//! backup_ext: logical backups requested from SQL, run by a background worker, recorded in a
//! catalog. Data flows one way: SQL call → validation → catalog → worker → tools → catalog.

use pgrx::prelude::*;

mod api;
mod catalog;
mod enqueue;
mod error;
mod privileges;
mod purge;
mod settings;
mod storage;
mod subxact;
mod tools;
mod wake;
mod worker;

pgrx::pg_module_magic!();

pgrx::extension_sql_file!("schema/bootstrap.sql", name = "bootstrap", bootstrap);
pgrx::extension_sql_file!(
    "schema/alerts.sql",
    name = "alerts",
    requires = ["bootstrap"]
);
pgrx::extension_sql_file!(
    "schema/summary.sql",
    name = "summary",
    requires = ["bootstrap", "alerts"]
);
pgrx::extension_sql_file!("schema/finalize.sql", name = "finalize", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    settings::register();
    // The worker and the shared memory that wakes it only exist when preloaded; CREATE
    // EXTENSION refuses to run otherwise.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        wake::init_shmem();
        tools::init_shmem();
        worker::register();
    }
}

#[cfg(any(test, feature = "pg_test"))]
mod pg_tests;

/// Settings for the test cluster that `cargo pgrx test` starts.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![
            "shared_preload_libraries = 'backup_ext'",
            "backup_ext.database = 'pgrx_tests'",
        ]
    }
}
