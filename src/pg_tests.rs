//! In-server tests: validation, SQLSTATEs, grants and catalog behaviour. Each runs in one
//! transaction that is rolled back, so the worker never sees these jobs.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    /// Runs `stmt` and returns `SQLSTATE|hint` of the error it raised, or `00000|` on success.
    fn outcome(stmt: &str) -> String {
        let exists =
            Spi::get_one::<bool>("SELECT to_regprocedure('pg_temp.outcome_of(text)') IS NOT NULL")
                .unwrap();
        if exists != Some(true) {
            Spi::run(
                "CREATE FUNCTION pg_temp.outcome_of(stmt text) RETURNS text
                 LANGUAGE plpgsql AS $$
                 DECLARE h text;
                 BEGIN
                     EXECUTE stmt;
                     RETURN '00000|';
                 EXCEPTION WHEN OTHERS THEN
                     GET STACKED DIAGNOSTICS h = PG_EXCEPTION_HINT;
                     RETURN SQLSTATE || '|' || h;
                 END $$",
            )
            .unwrap();
        }
        Spi::get_one_with_args::<String>("SELECT pg_temp.outcome_of($1)", &[stmt.into()])
            .unwrap()
            .unwrap()
    }

    fn job_count() -> i64 {
        Spi::get_one::<i64>("SELECT count(*) FROM backup_ext.jobs")
            .unwrap()
            .unwrap()
    }

    /// Asserts the SQLSTATE, that a hint came with it, and that nothing was enqueued.
    fn assert_refused(stmt: &str, sqlstate: &str) {
        let before = job_count();
        let got = outcome(stmt);
        let (code, hint) = got.split_once('|').unwrap();
        assert_eq!(code, sqlstate, "{stmt} gave {got}");
        assert!(!hint.is_empty(), "{stmt} raised {code} without a hint");
        assert_eq!(
            job_count(),
            before,
            "{stmt} enqueued a job although it failed"
        );
    }

    #[pg_test]
    fn refuses_bad_format_and_jobs() {
        assert_refused(
            "SELECT backup_ext.backup_database('pgrx_tests', 'zip')",
            "22023",
        );
        assert_refused(
            "SELECT backup_ext.backup_database('pgrx_tests', NULL)",
            "22023",
        );
        assert_refused("SELECT backup_ext.backup_database(NULL)", "22023");
        assert_refused(
            "SELECT backup_ext.backup_database('pgrx_tests', 'custom', jobs => 2)",
            "22023",
        );
        assert_refused(
            "SELECT backup_ext.backup_database('pgrx_tests', 'directory', jobs => 0)",
            "22023",
        );
        assert_refused(
            "SELECT backup_ext.backup_database('pgrx_tests', 'directory', jobs => 65)",
            "22023",
        );
    }

    #[pg_test]
    fn refuses_compression_the_tool_cannot_do() {
        // The server's own tools: pg_dump 15 knows no method names; 16 and later (built with
        // lz4 and zstd here) take them, which tests/capabilities.rs checks end to end.
        if pg_sys::PG_VERSION_NUM < 160000 {
            assert_refused(
                "SELECT backup_ext.backup_database('pgrx_tests', compress => 'zstd:3')",
                "0A000",
            );
            assert_refused(
                "SELECT backup_ext.backup_database('pgrx_tests', compress => 'lz4')",
                "0A000",
            );
        }
        assert_refused(
            "SELECT backup_ext.backup_database('pgrx_tests', compress => 'fast')",
            "22023",
        );
        assert_refused(
            "SELECT backup_ext.backup_database('pgrx_tests', compress => '10')",
            "22023",
        );
        assert_refused(
            "SELECT backup_ext.backup_database('pgrx_tests', 'tar', compress => '5')",
            "0A000",
        );
    }

    #[pg_test]
    fn refuses_bad_options() {
        for options in [
            r#"'{"tabels": ["t"]}'"#,
            r#"'{"tables": "t"}'"#,
            r#"'{"tables": [1]}'"#,
            r#"'{"schema_only": "yes"}'"#,
            r#"'[]'"#,
            r#"'{"schema_only": true, "data_only": true}'"#,
        ] {
            assert_refused(
                &format!("SELECT backup_ext.backup_database('pgrx_tests', options => {options})"),
                "22023",
            );
        }
    }

    #[pg_test]
    fn refuses_databases_that_cannot_be_dumped() {
        assert_refused("SELECT backup_ext.backup_database('no_such_db')", "3D000");
        assert_refused("SELECT backup_ext.backup_database('template0')", "55000");
        assert_refused(
            &format!(
                "SELECT backup_ext.backup_database('pgrx_tests', label => '{}')",
                "x".repeat(201)
            ),
            "22023",
        );
    }

    #[pg_test]
    fn enqueues_a_validated_request() {
        let id = Spi::get_one::<i64>(
            "SELECT backup_ext.backup_database('pgrx_tests', 'directory', '3', 2, 'nightly',
                     '{\"schemas\": [\"public\"], \"no_owner\": true}')",
        )
        .unwrap()
        .unwrap();
        let (status, format) = Spi::get_two_with_args::<String, String>(
            "SELECT status, format FROM backup_ext.backups WHERE job_id = $1",
            &[id.into()],
        )
        .unwrap();
        assert_eq!(status.as_deref(), Some("queued"));
        assert_eq!(format.as_deref(), Some("directory"));
        let (label, by) = Spi::get_two_with_args::<String, bool>(
            "SELECT label, requested_by = session_user FROM backup_ext.jobs WHERE job_id = $1",
            &[id.into()],
        )
        .unwrap();
        assert_eq!(label.as_deref(), Some("nightly"));
        assert_eq!(by, Some(true));
        let compress = Spi::get_one_with_args::<String>(
            "SELECT compress FROM backup_ext.artifacts WHERE job_id = $1",
            &[id.into()],
        )
        .unwrap();
        assert_eq!(compress.as_deref(), Some("3"));
        let listed = Spi::get_one::<i64>(
            "SELECT count(*) FROM backup_ext.list_backups('pgrx_tests', 'queued')",
        )
        .unwrap();
        assert_eq!(listed, Some(1));
        let globals = Spi::get_one::<i64>("SELECT backup_ext.backup_globals('roles')")
            .unwrap()
            .unwrap();
        let kind = Spi::get_one_with_args::<String>(
            "SELECT kind || ':' || coalesce(database, '-') FROM backup_ext.backups WHERE job_id = $1",
            &[globals.into()],
        )
        .unwrap();
        assert_eq!(kind.as_deref(), Some("globals:-"));
        let newest_first =
            Spi::get_one::<i64>("SELECT job_id FROM backup_ext.list_backups() LIMIT 1").unwrap();
        assert_eq!(newest_first, Some(globals));
    }

    #[pg_test]
    fn job_functions_refuse_unknown_and_uncommitted_jobs() {
        assert_refused("SELECT * FROM backup_ext.job_status(987654)", "42704");
        assert_refused("SELECT backup_ext.wait_for(987654)", "42704");
        assert_refused("SELECT backup_ext.cancel(987654)", "42704");
        assert_refused(
            "SELECT * FROM backup_ext.list_backups(status => 'done')",
            "22023",
        );
        let id = Spi::get_one::<i64>("SELECT backup_ext.backup_database('pgrx_tests')")
            .unwrap()
            .unwrap();
        let got = outcome(&format!("SELECT backup_ext.wait_for({id}, '5 s')"));
        assert!(got.starts_with("55000|"), "{got}");
    }

    #[pg_test]
    fn cancel_of_a_queued_job_is_final() {
        let id = Spi::get_one::<i64>("SELECT backup_ext.backup_database('pgrx_tests')")
            .unwrap()
            .unwrap();
        let said =
            Spi::get_one_with_args::<String>("SELECT backup_ext.cancel($1)", &[id.into()]).unwrap();
        assert_eq!(said.as_deref(), Some("cancelled"));
        let status = Spi::get_one_with_args::<String>(
            "SELECT status FROM backup_ext.job_status($1)",
            &[id.into()],
        )
        .unwrap();
        assert_eq!(status.as_deref(), Some("cancelled"));
        // Already final: wait_for returns at once, cancel refuses.
        let waited =
            Spi::get_one_with_args::<String>("SELECT backup_ext.wait_for($1)", &[id.into()])
                .unwrap();
        assert_eq!(waited.as_deref(), Some("cancelled"));
        assert_refused(&format!("SELECT backup_ext.cancel({id})"), "55000");
    }

    #[pg_test]
    fn nothing_is_open_to_public_and_operators_may_back_up() {
        outcome("SELECT 1"); // creates the helper while still superuser
        Spi::run("CREATE ROLE backup_ext_test_nobody").unwrap();
        Spi::run("CREATE ROLE backup_ext_test_op IN ROLE backup_ext_operator").unwrap();
        let public_fns = Spi::get_one::<i64>(
            "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname = 'backup_ext'
                AND has_function_privilege('backup_ext_test_nobody', p.oid, 'EXECUTE')",
        )
        .unwrap();
        assert_eq!(public_fns, Some(0));
        Spi::run("SET LOCAL ROLE backup_ext_test_nobody").unwrap();
        let got = outcome("SELECT backup_ext.backup_database('pgrx_tests')");
        assert!(got.starts_with("42501|"), "{got}");
        let got = outcome("SELECT count(*) FROM backup_ext.jobs");
        assert!(got.starts_with("42501|"), "{got}");
        Spi::run("RESET ROLE").unwrap();
        Spi::run("SET LOCAL ROLE backup_ext_test_op").unwrap();
        let id = Spi::get_one::<i64>("SELECT backup_ext.backup_database('pgrx_tests')")
            .unwrap()
            .unwrap();
        Spi::run("RESET ROLE").unwrap();
        let status = Spi::get_one_with_args::<String>(
            "SELECT status FROM backup_ext.jobs WHERE job_id = $1",
            &[id.into()],
        )
        .unwrap();
        assert_eq!(status.as_deref(), Some("queued"));
    }

    #[pg_test]
    fn settings_have_safe_contexts() {
        let rows = Spi::get_one::<String>(
            "SELECT string_agg(name || '=' || context, ',' ORDER BY name)
               FROM pg_settings WHERE name LIKE 'backup\\_ext.%'",
        )
        .unwrap();
        assert_eq!(
            rows.as_deref(),
            Some(
                "backup_ext.alert_allow_http=sighup,backup_ext.alert_retries=sighup,\
                 backup_ext.bin_dir=sighup,backup_ext.copy_lag=sighup,\
                 backup_ext.copy_retries=sighup,backup_ext.copy_retry_delay=sighup,\
                 backup_ext.critical_age=sighup,\
                 backup_ext.database=postmaster,backup_ext.default_storage=sighup,\
                 backup_ext.directory=sighup,\
                 backup_ext.history_days=sighup,backup_ext.identity_file=sighup,\
                 backup_ext.job_timeout=sighup,\
                 backup_ext.max_parallel=sighup,backup_ext.min_free_space=sighup,\
                 backup_ext.min_size_ratio=sighup,\
                 backup_ext.role=sighup,\
                 backup_ext.s3_allow_http=sighup,backup_ext.s3_credentials_file=sighup,\
                 backup_ext.stall_timeout=sighup,\
                 backup_ext.verify_age=sighup,backup_ext.warn_age=sighup"
            )
        );
        let got = outcome("SET backup_ext.directroy = '/tmp'");
        // The prefix is reserved, so a typo is an error rather than a silent placeholder.
        assert!(got.starts_with("42602|"), "{got}");
    }

    #[pg_test]
    fn refuses_bad_operations_requests() {
        assert_refused(
            "SELECT backup_ext.backup_database('pgrx_tests', options => '{\"exclude_databases\": [\"x\"]}')",
            "22023",
        );
        assert_refused(
            "SELECT backup_ext.backup_database('pgrx_tests', options => '{\"timeout\": \"soon\"}')",
            "22023",
        );
        assert_refused(
            "SELECT backup_ext.backup_database('pgrx_tests', options => '{\"timeout\": 5}')",
            "22023",
        );
        assert_refused(
            "SELECT backup_ext.backup_cluster(options => '{\"include_databases\": [\"nope\"]}')",
            "3D000",
        );
        assert_refused(
            "SELECT backup_ext.backup_cluster(options => '{\"databases\": []}')",
            "22023",
        );
        assert_refused("SELECT backup_ext.backup_cluster('zip')", "22023");
        assert_refused(
            "SELECT backup_ext.set_retention('pgrx_tests', keep_last => 0)",
            "22023",
        );
        assert_refused("SELECT backup_ext.pin(987654)", "42704");
        assert_refused(
            "SELECT backup_ext.schedule('n', '61 * * * *', '{\"backup\": \"globals\"}')",
            "22023",
        );
        assert_refused(
            "SELECT backup_ext.schedule('n', '* * * *', '{\"backup\": \"globals\"}')",
            "22023",
        );
        assert_refused(
            "SELECT backup_ext.schedule('n', '0 3 * * *', '{\"backup\": \"everything\"}')",
            "22023",
        );
        // Run options every run would refuse are refused by schedule() itself.
        for command in [
            r#"{"backup": "database", "dbname": "pgrx_tests", "options": {"include_databases": ["a"]}}"#,
            r#"{"backup": "database", "dbname": "pgrx_tests", "options": {"timeout": "banana"}}"#,
            r#"{"backup": "cluster", "options": {"timeout": "banana"}}"#,
            r#"{"options": {"timeout": "1 hour"}}"#,
        ] {
            assert_refused(
                &format!("SELECT backup_ext.schedule('n', '0 3 * * *', '{command}')"),
                "22023",
            );
        }
        assert_refused("SELECT backup_ext.unschedule('no such schedule')", "42704");
        assert_refused("SELECT backup_ext.restore_backup(987654, 'x')", "42704");
        assert_refused("SELECT * FROM backup_ext.backup_contents(987654)", "42704");
        assert_refused("SELECT backup_ext.verify_backup(987654)", "42704");
    }

    #[pg_test]
    fn unknown_job_hint_points_at_the_jobs_table() {
        // Restore and verify jobs are in backup_ext.jobs, not in backup_ext.backups.
        for stmt in [
            "SELECT backup_ext.wait_for(987654)",
            "SELECT backup_ext.cancel(987654)",
        ] {
            let got = outcome(stmt);
            let (code, hint) = got.split_once('|').unwrap();
            assert_eq!(code, "42704", "{stmt} gave {got}");
            assert!(hint.contains("FROM backup_ext.jobs;"), "{stmt} gave {got}");
        }
    }

    #[pg_test]
    fn cluster_backup_enqueues_globals_and_every_connectable_database() {
        Spi::run("SELECT backup_ext.set_retention(NULL, keep_last => 3)").unwrap();
        let set_id = Spi::get_one::<i64>("SELECT backup_ext.backup_cluster(label => 'all')")
            .unwrap()
            .unwrap();
        let members = Spi::get_one_with_args::<String>(
            "SELECT string_agg(kind || ':' || coalesce(database, '-'), ',' ORDER BY kind, database)
               FROM backup_ext.jobs WHERE set_id = $1",
            &[set_id.into()],
        )
        .unwrap();
        let expected = Spi::get_one::<String>(
            "SELECT 'database:' || string_agg(datname, ',database:' ORDER BY datname) || ',globals:-'
               FROM pg_database WHERE datallowconn AND NOT datistemplate",
        )
        .unwrap();
        assert_eq!(members, expected);
        let status = Spi::get_one_with_args::<String>(
            "SELECT status FROM backup_ext.sets WHERE set_id = $1",
            &[set_id.into()],
        )
        .unwrap();
        assert_eq!(status.as_deref(), Some("running"));
        // A set of queued jobs is followed like any job; a queued one can be cancelled.
        let first = Spi::get_one_with_args::<i64>(
            "SELECT min(job_id) FROM backup_ext.jobs WHERE set_id = $1",
            &[set_id.into()],
        )
        .unwrap()
        .unwrap();
        Spi::run_with_args("SELECT backup_ext.cancel($1)", &[first.into()]).unwrap();
    }

    #[pg_test]
    fn schedules_are_listed_with_their_next_run() {
        let next = Spi::get_one::<bool>(
            "SELECT backup_ext.schedule('nightly', '0 3 * * *', '{\"backup\": \"globals\"}')
                    > now()",
        )
        .unwrap();
        assert_eq!(next, Some(true));
        let row = Spi::get_one::<String>(
            "SELECT name || ' ' || cron || ' ' || to_char(next_run_at AT TIME ZONE 'UTC', 'HH24:MI')
               FROM backup_ext.schedules",
        )
        .unwrap();
        assert_eq!(row.as_deref(), Some("nightly 0 3 * * * 03:00"));
        // Same name again replaces it.
        Spi::run(
            "SELECT backup_ext.schedule('nightly', '30 4 * * 1', '{\"backup\": \"cluster\"}')",
        )
        .unwrap();
        let count = Spi::get_one::<i64>("SELECT count(*) FROM backup_ext.schedules").unwrap();
        assert_eq!(count, Some(1));
        assert_eq!(
            Spi::get_one::<bool>("SELECT backup_ext.unschedule('nightly')").unwrap(),
            Some(true)
        );
    }

    #[pg_test]
    fn status_covers_databases_never_backed_up() {
        let row = Spi::get_one::<String>(
            "SELECT status || ':' || backups_kept FROM backup_ext.status() WHERE database = 'pgrx_tests'",
        )
        .unwrap();
        assert_eq!(row.as_deref(), Some("critical:0"));
        let line = Spi::get_one::<String>("SELECT backup_ext.check_status()")
            .unwrap()
            .unwrap();
        assert!(line.starts_with("BACKUP CRITICAL - "), "{line}");
        assert!(line.contains("pgrx_tests: never backed up"), "{line}");
    }
}
