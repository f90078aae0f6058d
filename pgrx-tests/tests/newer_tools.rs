//! `backup_ext.bin_dir` pointing at newer tools than the server (the PostgreSQL 18 tools):
//! backups with zstd, and restores that succeed although the newer pg_restore sets what an
//! older server does not know, on every major.

use backup_ext_e2e::*;

#[test]
fn newer_tools_back_up_and_restore_this_server() {
    let tools = bin_dir_of(18);
    let c = Cluster::start_with("newer-tools", &[("backup_ext.bin_dir", path_str(&tools))]);
    c.create_sample_db("app");
    for (format, compress, target) in [
        ("custom", "zstd:3", "app_custom"),
        ("directory", "lz4", "app_directory"),
        ("plain", "0", "app_plain"),
    ] {
        let b = backup_db(
            &c,
            "app",
            &format!(", '{format}', compress => '{compress}'"),
        );
        assert!(
            b.tool_version.as_deref().unwrap().contains(" 18."),
            "{:?}",
            b.tool_version
        );
        let job = restore_ok(&c, &restore_sql(b.backup_id, target, ""));
        let (_, _, message) = job_outcome(&c, job);
        let expected = match (pg_major(), format) {
            // Archives of the Debian 15 carry its own column option: restored as a script.
            (15, "plain") => {
                "psql finished; this server does not know transaction_timeout (SET \
                              by the newer pg_dump), skipped"
            }
            (15, _) => {
                "psql finished; this server does not know transaction_timeout (SET by \
                        the newer pg_restore), skipped"
            }
            (16, "plain") => {
                "psql finished; this server does not know transaction_timeout (SET \
                              by the newer pg_dump), skipped"
            }
            (16, _) => {
                "pg_restore finished; this server does not know transaction_timeout \
                        (SET by the newer pg_restore), skipped"
            }
            (_, "plain") => "psql finished",
            _ => "pg_restore finished",
        };
        assert_eq!(message.as_deref(), Some(expected), "{format}");
        assert_eq!(
            table_hashes(&c, "app"),
            table_hashes(&c, target),
            "{format}: table contents"
        );
    }
}
