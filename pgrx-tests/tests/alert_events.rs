//! Alert events beyond a job's success or failure, end to end: a failed verification,
//! `stale` once per crossing (also across a worker restart), `copy_lagging` once per backup.

use std::time::Duration;

use backup_ext_e2e::*;
use postgres::Client;

#[test]
fn a_failed_verification_is_reported_once_to_each_alert() {
    let c = Cluster::start("alerts_verify");
    c.create_sample_db("al_verify");
    let receiver = HttpReceiver::start();
    let mut client = c.client("postgres");
    exec(
        &mut client,
        &format!(
            "SELECT backup_ext.add_alert('both', 'webhook', {}, '{{failed,verify_failed}}');
             SELECT backup_ext.add_alert('failures', 'webhook', {}, '{{failed}}');",
            quote_literal(&receiver.url("/both")),
            quote_literal(&receiver.url("/failures"))
        ),
    );
    // A hostile role's function in public that would shadow what the alert code calls: neither
    // the worker nor the alert functions may ever run it.
    exec(
        &mut client,
        "CREATE ROLE mallory LOGIN; GRANT CREATE ON SCHEMA public TO mallory;",
    );
    c.client_as("postgres", "mallory")
        .batch_execute(
            "CREATE TABLE public.trap (who text);
             GRANT INSERT ON public.trap TO PUBLIC;
             CREATE FUNCTION public.overlaps(a text[], b text[]) RETURNS boolean LANGUAGE sql
                 AS $$ INSERT INTO public.trap VALUES (current_user) RETURNING true $$;
             CREATE OPERATOR public.&& (LEFTARG = text[], RIGHTARG = text[],
                                        FUNCTION = public.overlaps);
             CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE sql
                 AS $$ INSERT INTO public.trap VALUES (current_user) RETURNING pg_catalog.now() $$;
             CREATE FUNCTION public.make_interval(secs integer) RETURNS interval LANGUAGE sql
                 AS $$ INSERT INTO public.trap VALUES (current_user)
                       RETURNING pg_catalog.make_interval(secs => secs) $$;",
        )
        .unwrap_or_else(|e| panic!("the hostile objects: {}", describe(&e)));
    // The trap works where public is on the path: an exact match beats pg_catalog's
    // make_interval(..., secs double precision), which the alert code calls with integers.
    exec(&mut client, "SELECT make_interval(secs => 1::integer)");
    assert_eq!(
        one_i64(
            &mut client,
            "WITH d AS (DELETE FROM public.trap RETURNING 1) SELECT count(*) FROM d"
        ),
        1
    );
    let backup = backup_db(&c, "al_verify", "");
    flip_middle_byte(&backup.path_buf());
    let job = c.enqueue(&format!(
        "SELECT backup_ext.verify_backup({})",
        backup.backup_id
    ));
    assert_eq!(c.wait_final(job, SMALL_JOB), "failed");
    wait_deliveries_settled(&c, &mut client, 2);
    let mut got: Vec<(String, String)> = receiver
        .requests()
        .iter()
        .map(|r| {
            (
                r.path.clone(),
                r.json()["event"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("/both".to_string(), "verify_failed".to_string()),
            ("/failures".to_string(), "failed".to_string())
        ]
    );
    let body = receiver.requests()[0].json();
    assert_eq!(body["job_id"], job);
    assert_eq!(body["kind"], "verify");
    assert_eq!(body["backup_id"], backup.backup_id);
    assert!(
        body["error"].as_str().unwrap().contains("sha256 mismatch"),
        "{body}"
    );
    assert_eq!(
        one_text(&mut client, "SELECT backup_ext.test_alert('both')"),
        "delivered (HTTP 200)"
    );
    assert_eq!(one_i64(&mut client, "SELECT count(*) FROM public.trap"), 0);
}

#[test]
fn stale_is_raised_once_per_crossing() {
    let c = Cluster::start("alerts_stale");
    c.create_sample_db("al_stale");
    let receiver = HttpReceiver::start();
    let mut client = c.client("postgres");
    exec(
        &mut client,
        &format!(
            "SELECT backup_ext.add_alert('discord', 'discord', {}, '{{stale}}')",
            quote_literal(&receiver.url("/d"))
        ),
    );
    c.set_and_reload("backup_ext.warn_age", "3s");
    let job = c.enqueue("SELECT backup_ext.backup_database('al_stale')");
    assert_eq!(c.wait_final(job, SMALL_JOB), "succeeded");
    let first = receiver.wait_for(1, ALERT_DELIVERY);
    let content = first[0].json()["content"].as_str().unwrap().to_string();
    assert!(
        content.contains("stale: the last successful backup of database \"al_stale\" finished at"),
        "{content}"
    );
    // Nor does a restart of the worker raise it again: the worker looks every 10 s, so after
    // its restart it has looked at least once more when this sleep ends.
    let pid = worker_pid(&mut client);
    exec(&mut client, &format!("SELECT pg_terminate_backend({pid})"));
    c.wait_until("the worker to restart", ALERT_DELIVERY, || {
        let now = worker_pid(&mut c.client("postgres"));
        now > 0 && now != pid
    });
    std::thread::sleep(Duration::from_secs(12));
    assert_eq!(receiver.requests().len(), 1);
    assert_eq!(
        one_i64(
            &mut client,
            "SELECT count(*) FROM backup_ext.alert_raised WHERE event = 'stale'"
        ),
        1
    );
    // A new backup ends the crossing; once it is stale in turn, the alert comes again.
    let job = c.enqueue("SELECT backup_ext.backup_database('al_stale')");
    assert_eq!(c.wait_final(job, SMALL_JOB), "succeeded");
    receiver.wait_for(2, ALERT_DELIVERY);
}

fn worker_pid(client: &mut Client) -> i32 {
    client
        .query_opt(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'backup_ext worker'",
            &[],
        )
        .unwrap()
        .map(|r| r.get(0))
        .unwrap_or(0)
}

#[test]
fn a_copy_missing_past_copy_lag_is_raised_once() {
    let c = Cluster::start("alerts_copy_lag");
    c.create_sample_db("al_copy");
    let receiver = HttpReceiver::start();
    let nfs = c.root.join("nfs");
    std::fs::create_dir_all(&nfs).unwrap();
    chown_postgres(&nfs);
    let mut client = c.client("postgres");
    exec(
        &mut client,
        &format!(
            "SELECT backup_ext.add_storage('nfs', {});
             SELECT backup_ext.set_copies(NULL, ARRAY['nfs']);
             SELECT backup_ext.add_alert('copies', 'webhook', {}, '{{copy_lagging}}');",
            quote_literal(&format!("file://{}", nfs.display())),
            quote_literal(&receiver.url("/copies"))
        ),
    );
    // The target refuses writes from now on, so the copy fails and stays missing.
    std::fs::set_permissions(&nfs, std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
    c.set_and_reload("backup_ext.copy_lag", "1s");
    let job = c.enqueue("SELECT backup_ext.backup_database('al_copy')");
    assert_eq!(c.wait_final(job, SMALL_JOB), "succeeded");
    let got = receiver.wait_for(1, ALERT_DELIVERY);
    let body = got[0].json();
    assert_eq!(body["event"], "copy_lagging");
    assert_eq!(body["database"], "al_copy");
    assert_eq!(body["backup_id"], job);
    assert_eq!(
        body["message"],
        format!("backup {job} still has no copy in nfs after backup_ext.copy_lag")
    );
    // Later looks (every 10 s) do not raise it again for the same backup.
    std::thread::sleep(Duration::from_secs(12));
    assert_eq!(receiver.requests().len(), 1);
}
