//! Alerts end to end: the worker sends what add_alert() asked for to a real HTTP receiver and a
//! real SMTP server owned by the test, signed, retried with backoff, and never lets a receiver
//! that does not answer hold up a job; bad alerts are refused. The events other than job
//! outcomes are in alert_events.rs.

use std::time::{Duration, Instant};

use backup_ext_e2e::*;
use hmac::{Hmac, Mac};
use postgres::Client;
use sha2::Sha256;

const SECRET: &str = "alert-hmac-secret-6b1f0c";
fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[test]
fn a_failed_backup_sends_one_signed_webhook_and_one_email() {
    let c = Cluster::start("alerts_failed");
    c.create_sample_db("al_fail");
    let receiver = HttpReceiver::start();
    let smtp = SmtpServer::start("failed");
    let secret_file = c.root.join("webhook.secret");
    c.write_server_file(&secret_file, format!("{SECRET}\n").as_bytes());
    let mut client = c.client("postgres");
    exec(
        &mut client,
        &format!(
            "SELECT backup_ext.add_alert('hook', 'webhook', {}, '{{failed}}',
                                         jsonb_build_object('secret_file', {}::text));
             SELECT backup_ext.add_alert('mail', 'email', 'dba@example.com', '{{failed}}',
                 '{{\"host\": \"127.0.0.1\", \"port\": {}, \"tls\": \"none\",
                    \"from\": \"backups@example.com\"}}');",
            quote_literal(&receiver.url("/hook")),
            quote_literal(path_str(&secret_file)),
            smtp.port
        ),
    );

    let job = c.enqueue(
        "SELECT backup_ext.backup_database('al_fail', options => '{\"tables\": [\"no_such_table\"]}')",
    );
    assert_eq!(c.wait_final(job, SMALL_JOB), "failed");
    wait_deliveries_settled(&c, &mut client, 2);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let r = &requests[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str(), r.answered),
        ("POST", "/hook", 200)
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.header("x-backup-ext-signature"),
        Some(hmac_hex(SECRET, &r.body).as_str())
    );
    let body = r.json();
    let system_id = one_text(
        &mut client,
        "SELECT system_identifier::text FROM pg_control_system()",
    );
    assert_eq!(body["event"], "failed");
    assert_eq!(body["database"], "al_fail");
    assert_eq!(body["job_id"], job);
    assert_eq!(body["kind"], "database");
    assert_eq!(body["status"], "failed");
    assert_eq!(body["system_identifier"], system_id.as_str());
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("no matching tables"), "{error}");
    assert!(!error.contains('\n'));
    assert_eq!(
        body["message"].as_str().unwrap(),
        format!("backup job {job} of database \"al_fail\" failed: {error}")
    );
    let time = body["time"].as_str().unwrap();
    assert!(time.ends_with('Z') && time.len() == 20, "{time}");

    let mails = smtp.wait_for(1, ALERT_DELIVERY);
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert!(mail.contains("X-Envelope-To: dba@example.com"), "{mail}");
    assert!(
        mail.contains(&format!(
            "Subject: [backup_ext {system_id}] failed: database \"al_fail\", job {job}"
        )),
        "{mail}"
    );
    assert!(mail.contains("Database:  al_fail"), "{mail}");
    assert!(
        mail.contains(&format!("Job:       {job} (database)")),
        "{mail}"
    );
    assert!(mail.contains("no matching tables"), "{mail}");

    let rows = one_text(
        &mut client,
        "SELECT string_agg(alert || ' ' || event || ' ' || attempts || ' ' || (delivered_at IS NOT NULL),
                           ', ' ORDER BY alert)
           FROM backup_ext.alert_deliveries",
    );
    assert_eq!(rows, "hook failed 1 true, mail failed 1 true");

    // test_alert() sends at once and says how it went.
    let answer = one_text(&mut client, "SELECT backup_ext.test_alert('hook')");
    assert_eq!(answer, "delivered (HTTP 200)");
    let test = receiver.wait_for(2, ALERT_DELIVERY)[1].clone();
    assert_eq!(test.json()["event"], "test");
    assert_eq!(
        test.header("x-backup-ext-signature"),
        Some(hmac_hex(SECRET, &test.body).as_str())
    );
    assert_eq!(
        one_text(&mut client, "SELECT backup_ext.test_alert('mail')"),
        "delivered (SMTP 250)"
    );
    smtp.wait_for(2, ALERT_DELIVERY);

    // The secret is nowhere: not in a table, not in the server log.
    for table in ["alert_targets", "alert_deliveries", "alerts", "jobs"] {
        let found = one_i64(
            &mut client,
            &format!("SELECT count(*) FROM backup_ext.{table} t WHERE t::text LIKE '%{SECRET}%'"),
        );
        assert_eq!(found, 0, "the secret is in {table}");
    }
    assert!(
        !c.log_text().contains(SECRET),
        "the secret is in the server log"
    );
}

#[test]
fn a_failing_receiver_gets_the_message_once_on_the_third_try() {
    let c = Cluster::start("alerts_retry");
    c.create_sample_db("al_retry");
    let receiver = HttpReceiver::start();
    receiver.fail_next(2);
    let mut client = c.client("postgres");
    exec(
        &mut client,
        &format!(
            "SELECT backup_ext.add_alert('chat', 'slack', {}, '{{succeeded}}')",
            quote_literal(&receiver.url("/slack"))
        ),
    );
    let job = c.enqueue("SELECT backup_ext.backup_database('al_retry')");
    assert_eq!(c.wait_final(job, SMALL_JOB), "succeeded");
    wait_deliveries_settled(&c, &mut client, 1);
    let requests = receiver.requests();
    let answers: Vec<u16> = requests.iter().map(|r| r.answered).collect();
    assert_eq!(answers, vec![500, 500, 200]);
    assert!(requests.iter().all(|r| r.body == requests[0].body));
    let text = requests[2].json()["text"].as_str().unwrap().to_string();
    assert!(
        text.contains(&format!(
            "succeeded: backup job {job} of database \"al_retry\" succeeded (backup {job})"
        )),
        "{text}"
    );
    let row = one_text(
        &mut client,
        "SELECT attempts || ' ' || (delivered_at IS NOT NULL) || ' ' || last_error
           FROM backup_ext.alert_deliveries",
    );
    assert_eq!(row, "3 true the receiver answered HTTP 500");
    let view = one_text(
        &mut client,
        "SELECT name || ' ' || pending || ' ' || given_up || ' ' || (last_delivered_at IS NOT NULL)
           FROM backup_ext.alerts",
    );
    assert_eq!(view, "chat 0 0 true");

    // purge() forgets deliveries older than history_days that have ended; a pending one stays.
    exec(
        &mut client,
        "UPDATE backup_ext.alert_deliveries SET created_at = now() - interval '91 days';
         INSERT INTO backup_ext.alert_deliveries (alert, event, payload, next_try_at, created_at)
         SELECT alert, event, payload, now() + interval '1 hour', now() - interval '91 days'
           FROM backup_ext.alert_deliveries;
         SELECT count(*) FROM backup_ext.purge();",
    );
    let left = one_text(
        &mut client,
        "SELECT string_agg((delivered_at IS NULL)::text, ',') FROM backup_ext.alert_deliveries",
    );
    assert_eq!(left, "true");
}

#[test]
fn a_receiver_that_never_answers_does_not_delay_jobs() {
    let c = Cluster::start_with("alerts_hang", &[("backup_ext.max_parallel", "1")]);
    c.create_sample_db("al_hang");
    let receiver = HttpReceiver::start();
    receiver.hang(true);
    let mut client = c.client("postgres");
    exec(
        &mut client,
        &format!(
            "SELECT backup_ext.add_alert('hook', 'webhook', {}, '{{succeeded}}', '{{\"timeout\": 30}}')",
            quote_literal(&receiver.url("/never"))
        ),
    );
    let first = c.enqueue("SELECT backup_ext.backup_database('al_hang')");
    assert_eq!(c.wait_final(first, SMALL_JOB), "succeeded");
    receiver.wait_for(1, ALERT_DELIVERY);
    // The send hangs for 30 s; meanwhile backups start and finish as usual (one takes
    // well under a second here; 8 s leaves room for a loaded machine).
    let hung_at = Instant::now();
    for _ in 0..3 {
        let started = Instant::now();
        let job = c.enqueue("SELECT backup_ext.backup_database('al_hang')");
        assert_eq!(c.wait_final(job, SMALL_JOB), "succeeded");
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "a backup took {:?} while a delivery hung",
            started.elapsed()
        );
    }
    // Well before the send times out, so the row below is still in flight.
    assert!(hung_at.elapsed() < Duration::from_secs(20));
    let in_flight = one_text(
        &mut client,
        &format!(
            "SELECT attempts || ' ' || (delivered_at IS NULL) || ' ' || coalesce(last_error, '-')
               FROM backup_ext.alert_deliveries WHERE payload->>'job_id' = '{first}'"
        ),
    );
    assert_eq!(in_flight, "1 true -");
    // Then the try times out and is recorded as failed, to be tried again.
    c.wait_until("the hung delivery to time out", ALERT_DELIVERY, || {
        one_text(
            &mut client,
            &format!(
                "SELECT coalesce(last_error, '') FROM backup_ext.alert_deliveries
                  WHERE payload->>'job_id' = '{first}'"
            ),
        )
        .contains("timed out")
    });
}

#[test]
fn bad_alerts_are_refused_with_the_right_sqlstates() {
    let c = Cluster::start("alerts_refused");
    let mut client = c.client("postgres");
    let refused = |client: &mut Client, sql: &str, code: &str, fragment: &str| {
        let err = client.batch_execute(sql).expect_err(sql);
        assert_eq!(sqlstate(&err), Some(code), "{sql}: {}", describe(&err));
        assert!(
            describe(&err).contains(fragment),
            "{sql}: {}",
            describe(&err)
        );
    };
    let add = |args: &str| format!("SELECT backup_ext.add_alert({args})");
    refused(
        &mut client,
        &add("'a', 'pager', 'https://x.example/'"),
        "22023",
        "webhook, slack, discord, teams, email",
    );
    refused(
        &mut client,
        &add("'a', 'webhook', 'https://x.example/', '{fail}'"),
        "22023",
        "alert event \"fail\"",
    );
    refused(
        &mut client,
        &add("'a', 'webhook', 'https://x.example/', '{}'"),
        "22023",
        "at least one event",
    );
    refused(
        &mut client,
        &add("'a', 'webhook', 'https://x.example/', options => '{\"secret\": \"x\"}'"),
        "22023",
        "hint: Options of webhook alerts: secret_file, timeout.",
    );
    refused(
        &mut client,
        &add("'a', 'webhook', 'http://hooks.example.com/'"),
        "22023",
        "alert_allow_http",
    );
    refused(
        &mut client,
        &add("'a', 'slack', 'ftp://x.example/'"),
        "22023",
        "not supported",
    );
    refused(
        &mut client,
        &add("'a', 'email', 'dba@example.com'"),
        "22023",
        "options.host",
    );
    refused(
        &mut client,
        &add("'a', 'email', 'dba@example.com', options => '{\"host\": \"smtp.example.com\", \"from\": \"b@example.com\", \"tls\": \"none\"}'"),
        "22023",
        "without TLS",
    );
    refused(
        &mut client,
        &add("'a', 'email', 'nobody', options => '{\"host\": \"h\", \"from\": \"b@example.com\"}'"),
        "22023",
        "not an email address",
    );
    refused(
        &mut client,
        &add("'a', 'webhook', 'https://x.example/', options => '{\"secret_file\": \"/nonexistent/secret\"}'"),
        "58P01",
        "secret_file",
    );
    refused(
        &mut client,
        &add("'Bad Name', 'webhook', 'https://x.example/'"),
        "22023",
        "not valid",
    );
    refused(
        &mut client,
        &add("'a', 'webhook', NULL"),
        "22023",
        "target must not be NULL",
    );
    exec(&mut client, &add("'a', 'teams', 'https://x.example/'"));
    refused(
        &mut client,
        &add("'a', 'webhook', 'https://x.example/'"),
        "42710",
        "already exists",
    );
    refused(
        &mut client,
        "SELECT backup_ext.test_alert('nope')",
        "42704",
        "Alerts: a.",
    );
    assert_eq!(
        one_text(
            &mut client,
            "SELECT events::text FROM backup_ext.alerts WHERE name = 'a'"
        ),
        "{failed,stale,verify_failed}"
    );
    assert!(!one_bool(
        &mut client,
        "SELECT backup_ext.drop_alert('nope')"
    ));
    assert!(one_bool(&mut client, "SELECT backup_ext.drop_alert('a')"));

    // Superusers only, operators included.
    exec(
        &mut client,
        "CREATE ROLE op LOGIN IN ROLE backup_ext_operator",
    );
    let mut op = c.client_as("postgres", "op");
    for sql in [
        add("'b', 'webhook', 'https://x.example/'"),
        "SELECT backup_ext.drop_alert('a')".to_string(),
        "SELECT backup_ext.test_alert('a')".to_string(),
        "SELECT * FROM backup_ext.alerts".to_string(),
        "SELECT * FROM backup_ext.alert_deliveries".to_string(),
    ] {
        refused(&mut op, &sql, "42501", "");
    }
}

fn one_bool(client: &mut Client, sql: &str) -> bool {
    client.query_one(sql, &[]).unwrap().get(0)
}
