//! Every `backup_ext.*` setting: a private static, registered once in `_PG_init`, read through a
//! typed accessor. Paths and binaries are sighup + superuser-only: an ordinary user must never be
//! able to point the worker at another program or directory.

use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

static DATABASE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"postgres"));
static DIRECTORY: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));
static BIN_DIR: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));
static ROLE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));
static MAX_PARALLEL: GucSetting<i32> = GucSetting::<i32>::new(2);
static JOB_TIMEOUT: GucSetting<i32> = GucSetting::<i32>::new(0);
/// A restore reading its archive that gets no further for this long is stopped (ms; 0 = off).
static STALL_TIMEOUT: GucSetting<i32> = GucSetting::<i32>::new(0);
static HISTORY_DAYS: GucSetting<i32> = GucSetting::<i32>::new(90);
static WARN_AGE: GucSetting<i32> = GucSetting::<i32>::new(26 * 3600);
static CRITICAL_AGE: GucSetting<i32> = GucSetting::<i32>::new(50 * 3600);
static DEFAULT_STORAGE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"local"));
static S3_CREDENTIALS_FILE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c""));
static IDENTITY_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));
static S3_ALLOW_HTTP: GucSetting<bool> = GucSetting::<bool>::new(false);
static COPY_RETRIES: GucSetting<i32> = GucSetting::<i32>::new(5);
static COPY_RETRY_DELAY: GucSetting<i32> = GucSetting::<i32>::new(30);
static COPY_LAG: GucSetting<i32> = GucSetting::<i32>::new(3600);
static ALERT_RETRIES: GucSetting<i32> = GucSetting::<i32>::new(10);
static ALERT_ALLOW_HTTP: GucSetting<bool> = GucSetting::<bool>::new(false);
static VERIFY_AGE: GucSetting<i32> = GucSetting::<i32>::new(0);
static MIN_SIZE_RATIO: GucSetting<f64> = GucSetting::<f64>::new(0.5);
static MIN_FREE_SPACE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"1GB, 5%"));

/// Registers the settings; called from `_PG_init` in every process that loads the library.
pub fn register() {
    GucRegistry::define_string_guc(
        c"backup_ext.database",
        c"Database that holds the backup_ext catalog and that the worker connects to.",
        c"CREATE EXTENSION backup_ext is only allowed in this database.",
        &DATABASE,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"backup_ext.directory",
        c"Directory that backups are written to (one folder per database).",
        c"Empty means <data_directory>-backups, a sibling of the data directory.",
        &DIRECTORY,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        c"backup_ext.bin_dir",
        c"Directory holding pg_dump, pg_dumpall and pg_restore.",
        c"Empty means the running server's own bin directory.",
        &BIN_DIR,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        c"backup_ext.role",
        c"Role the dump tools connect as over the local socket.",
        c"Empty means the bootstrap superuser.",
        &ROLE,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_int_guc(
        c"backup_ext.max_parallel",
        c"How many backup jobs the worker runs at once.",
        c"",
        &MAX_PARALLEL,
        1,
        64,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"backup_ext.job_timeout",
        c"A job running longer than this is stopped and marked failed; 0 disables the limit.",
        c"",
        &JOB_TIMEOUT,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"backup_ext.stall_timeout",
        c"A restore that reads no bytes of its archive and finishes no table for this long is stopped and marked failed; 0 disables the check.",
        c"",
        &STALL_TIMEOUT,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"backup_ext.history_days",
        c"Job rows older than this many days are removed by purge (live backups are kept).",
        c"",
        &HISTORY_DAYS,
        1,
        36500,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"backup_ext.warn_age",
        c"status() says warning when a database's last successful backup is older than this.",
        c"",
        &WARN_AGE,
        1,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"backup_ext.critical_age",
        c"status() says critical when a database's last successful backup is older than this.",
        c"",
        &CRITICAL_AGE,
        1,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_string_guc(
        c"backup_ext.default_storage",
        c"Storage target of backups that do not name one in options.storage.",
        c"'local' is backup_ext.directory; others are added with backup_ext.add_storage().",
        &DEFAULT_STORAGE,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        c"backup_ext.s3_credentials_file",
        c"AWS shared-credentials file (INI) with the keys of the S3 storage targets.",
        c"Read by the server's OS user when a target is used; each target names its profile.",
        &S3_CREDENTIALS_FILE,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        c"backup_ext.identity_file",
        c"age identity file (private keys) that encrypted backups are decrypted with.",
        c"Read by the server's OS user when a restore, verification or listing needs it; may hold several keys.",
        &IDENTITY_FILE,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_bool_guc(
        c"backup_ext.s3_allow_http",
        c"Allows S3 endpoints over plain http on other hosts than loopback.",
        c"Keys are signed, not sent, but the data travels unencrypted.",
        &S3_ALLOW_HTTP,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_int_guc(
        c"backup_ext.copy_retries",
        c"How many times a copy to a storage target is tried before it is left failed.",
        c"",
        &COPY_RETRIES,
        1,
        100,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"backup_ext.copy_retry_delay",
        c"Delay before the first retry of a failed copy; each further retry waits twice as long.",
        c"",
        &COPY_RETRY_DELAY,
        1,
        86400,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"backup_ext.copy_lag",
        c"status() warns when a database's newest backup still lacks a required copy after this long.",
        c"",
        &COPY_LAG,
        1,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"backup_ext.alert_retries",
        c"How many times an alert delivery is tried before it is given up.",
        c"Tries are 2 s, 4 s, 8 s, ... apart, at most an hour.",
        &ALERT_RETRIES,
        1,
        100,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"backup_ext.alert_allow_http",
        c"Allows alert targets over plain http, and SMTP without TLS, beyond loopback.",
        c"Messages, and their signatures, then travel unencrypted.",
        &ALERT_ALLOW_HTTP,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_int_guc(
        c"backup_ext.verify_age",
        c"status() warns when a database's newest passed verification is older than this (0: never).",
        c"Scheduled restore drills ({\"verify\": \"latest\"}) keep it fresh.",
        &VERIFY_AGE,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_float_guc(
        c"backup_ext.min_size_ratio",
        c"A database dump smaller than this fraction of the previous one (same database, format and options) is flagged as an anomaly (0: never).",
        c"The backup still succeeds; list_backups() shows the reason in its anomaly column and status() warns until a normal one follows.",
        &MIN_SIZE_RATIO,
        0.0,
        1.0,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"backup_ext.min_free_space",
        c"Free space a dump must leave on the filesystem it writes to: a size, a percentage of the filesystem or both, the larger applying ('0': no check).",
        c"Below it a dump does not start, and a running one is stopped and its partial output removed. E.g. '1GB, 5%', '500MB', '10%'.",
        &MIN_FREE_SPACE,
        GucContext::Sighup,
        GucFlags::default(),
    );
    // Reserve the prefix so a typo such as backup_ext.directroy is an error, not a silent no-op.
    unsafe { pgrx::pg_sys::MarkGUCPrefixReserved(c"backup_ext".as_ptr()) };
}

fn string_setting(setting: &GucSetting<Option<CString>>) -> String {
    setting
        .get()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The catalog database (`backup_ext.database`).
pub fn database() -> String {
    string_setting(&DATABASE)
}

/// The backup directory, resolved against the data directory when left empty. Jobs refuse one
/// inside the data directory (`backup_core::check_outside_data_directory`).
pub fn directory() -> PathBuf {
    let configured = string_setting(&DIRECTORY);
    if !configured.is_empty() {
        return PathBuf::from(configured);
    }
    let data_dir = data_directory().to_string_lossy().into_owned();
    PathBuf::from(format!("{}-backups", data_dir.trim_end_matches('/')))
}

/// The server's data directory (`data_directory`).
pub fn data_directory() -> PathBuf {
    PathBuf::from(
        unsafe { CStr::from_ptr(pgrx::pg_sys::DataDir) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// Where the dump tools live: the setting, or the running server's own bin directory.
pub fn bin_dir() -> PathBuf {
    let configured = string_setting(&BIN_DIR);
    if !configured.is_empty() {
        return PathBuf::from(configured);
    }
    let exec = unsafe { CStr::from_ptr((&raw const pgrx::pg_sys::my_exec_path).cast()) }
        .to_string_lossy()
        .into_owned();
    Path::new(&exec)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

/// The role the tools connect as; `None` means the bootstrap superuser.
pub fn role() -> Option<String> {
    Some(string_setting(&ROLE)).filter(|r| !r.is_empty())
}

pub fn max_parallel() -> usize {
    MAX_PARALLEL.get().max(1) as usize
}

/// `None` when jobs may run for ever.
pub fn job_timeout() -> Option<std::time::Duration> {
    let secs = JOB_TIMEOUT.get();
    (secs > 0).then(|| std::time::Duration::from_secs(secs as u64))
}

/// `None` when restores may stall for ever.
pub fn stall_timeout() -> Option<std::time::Duration> {
    let ms = STALL_TIMEOUT.get();
    (ms > 0).then(|| std::time::Duration::from_millis(ms as u64))
}

pub fn history_days() -> i32 {
    HISTORY_DAYS.get()
}

/// The storage target of backups that name none (`backup_ext.default_storage`).
pub fn default_storage() -> String {
    Some(string_setting(&DEFAULT_STORAGE))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "local".to_string())
}

/// The AWS shared-credentials file (`backup_ext.s3_credentials_file`); `None` when unset.
pub fn s3_credentials_file() -> Option<PathBuf> {
    Some(string_setting(&S3_CREDENTIALS_FILE))
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
}

/// The age identity file (`backup_ext.identity_file`); `None` when unset.
pub fn identity_file() -> Option<PathBuf> {
    Some(string_setting(&IDENTITY_FILE))
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
}

/// Whether plain-http S3 endpoints beyond loopback are allowed (`backup_ext.s3_allow_http`).
pub fn s3_allow_http() -> bool {
    S3_ALLOW_HTTP.get()
}

/// Tries of a copy before it stays failed (`backup_ext.copy_retries`).
pub fn copy_retries() -> i32 {
    COPY_RETRIES.get()
}

/// The fraction of the previous dump's size below which a dump is flagged
/// (`backup_ext.min_size_ratio`; 0 turns the check off).
pub fn min_size_ratio() -> f64 {
    MIN_SIZE_RATIO.get()
}

/// `backup_ext.min_free_space` as written (parsed by `backup_core::FreeSpaceRule`).
pub fn min_free_space() -> String {
    Some(string_setting(&MIN_FREE_SPACE))
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| backup_core::DEFAULT_MIN_FREE_SPACE.to_string())
}

/// Seconds before the first retry of a failed copy (`backup_ext.copy_retry_delay`).
pub fn copy_retry_delay() -> i32 {
    COPY_RETRY_DELAY.get()
}

/// Tries of an alert delivery before it is given up (`backup_ext.alert_retries`).
pub fn alert_retries() -> i32 {
    ALERT_RETRIES.get()
}

/// Whether alerts may use plain http or SMTP without TLS beyond loopback
/// (`backup_ext.alert_allow_http`).
pub fn alert_allow_http() -> bool {
    ALERT_ALLOW_HTTP.get()
}
