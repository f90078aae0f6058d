//! Who may request and inspect backups.

use backup_ext_e2e::postgres::error::SqlState;
use backup_ext_e2e::*;

#[test]
fn only_operators_may_use_the_api() {
    let c = Cluster::start("permissions");
    c.client("postgres")
        .batch_execute(
            "CREATE ROLE nobody LOGIN;
             CREATE ROLE op LOGIN IN ROLE backup_ext_operator;",
        )
        .unwrap();

    let mut nobody = c.client_as("postgres", "nobody");
    let calls = [
        "SELECT backup_ext.backup_database('postgres')",
        "SELECT backup_ext.backup_database()",
        "SELECT backup_ext.backup_globals()",
        "SELECT * FROM backup_ext.list_backups()",
        "SELECT * FROM backup_ext.job_status(1)",
        "SELECT backup_ext.wait_for(1, '1 second')",
        "SELECT backup_ext.cancel(1)",
        "SELECT * FROM backup_ext.backups",
    ];
    for sql in calls {
        let err = nobody
            .batch_execute(sql)
            .expect_err(&format!("{sql} as nobody must fail"));
        assert_eq!(
            err.code(),
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {}",
            describe(&err)
        );
    }

    let mut op = c.client_as("postgres", "op");
    let job: i64 = op
        .query_one("SELECT backup_ext.backup_database('postgres')", &[])
        .unwrap_or_else(|e| panic!("op backup_database: {}", describe(&e)))
        .get(0);
    let status: String = op
        .query_one("SELECT backup_ext.wait_for($1, '2 minutes')", &[&job])
        .unwrap_or_else(|e| panic!("op wait_for: {}", describe(&e)))
        .get(0);
    assert_eq!(status, "succeeded");
    let requested_by: String = op
        .query_one(
            "SELECT requested_by::text FROM backup_ext.job_status($1)",
            &[&job],
        )
        .unwrap_or_else(|e| panic!("op job_status: {}", describe(&e)))
        .get(0);
    assert_eq!(requested_by, "op");
    let rows = op
        .query(
            "SELECT requested_by::text, status::text FROM backup_ext.list_backups()",
            &[],
        )
        .unwrap_or_else(|e| panic!("op list_backups: {}", describe(&e)));
    assert_eq!(
        rows.len(),
        1,
        "nobody's calls must not have enqueued anything"
    );
    assert_eq!(rows[0].get::<_, String>(0), "op");
    assert_eq!(rows[0].get::<_, String>(1), "succeeded");
    assert_eq!(c.backup(job).requested_by.as_deref(), Some("op"));

    // Globals carry every role's password hash: superusers only.
    let err = op
        .batch_execute("SELECT backup_ext.backup_globals(label => 'by op')")
        .expect_err("an operator must not back up globals");
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    let g: i64 = c
        .client("postgres")
        .query_one(
            "SELECT backup_ext.backup_globals(label => 'by postgres')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(c.wait_final(g, SMALL_JOB), "succeeded", "{:?}", c.job(g));
    assert_eq!(c.job(g).requested_by.as_deref(), Some("postgres"));

    // Membership granted later takes effect; revoking it takes it away.
    c.client("postgres")
        .batch_execute("GRANT backup_ext_operator TO nobody")
        .unwrap();
    let mut nobody = c.client_as("postgres", "nobody");
    let n: i64 = nobody
        .query_one("SELECT count(*) FROM backup_ext.list_backups()", &[])
        .unwrap_or_else(|e| panic!("member list_backups: {}", describe(&e)))
        .get(0);
    // op's backup of postgres; the globals backup is not shown to non-superusers.
    assert_eq!(n, 1);
    c.client("postgres")
        .batch_execute("REVOKE backup_ext_operator FROM nobody")
        .unwrap();
    let err = nobody
        .batch_execute("SELECT backup_ext.backup_database('postgres')")
        .expect_err("revoked member must be refused");
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
}
