//! Sending alerts: one thread with its own current-thread tokio runtime does all network I/O.
//! The worker submits deliveries and collects results without waiting; `test_alert()` waits
//! for one result in short slices so that a cancel still reaches the backend.

use std::collections::HashSet;
use std::io;
use std::sync::mpsc;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::mpsc as async_mpsc;

use super::payload::{render, sign, AlertEvent, Rendered, SIGNATURE_HEADER};
use super::{AlertKind, AlertOptions, TlsMode};
use crate::process::stream::spawn_signal_free;

/// Longest wait between two tries of a delivery.
const MAX_RETRY_DELAY: u64 = 3600;
/// Time a send gets beyond its own timeout (connection set-up, TLS) before it is abandoned.
const GRACE: Duration = Duration::from_secs(5);

/// One message to send.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub id: i64,
    pub kind: AlertKind,
    pub target: String,
    pub options: AlertOptions,
    pub event: AlertEvent,
}

/// How a delivery went: `Ok` with the receiver's answer (`HTTP 200`, `SMTP 250`), or the
/// reason it failed. Never holds a secret (URLs are left out of HTTP errors).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryResult {
    pub id: i64,
    pub result: Result<String, String>,
}

/// Seconds before the next try after `attempts` failed ones: 2, 4, 8, ... at most an hour.
pub fn retry_delay(attempts: i32) -> u64 {
    let exp = attempts.clamp(1, 12) as u32 - 1;
    (2u64 << exp).min(MAX_RETRY_DELAY)
}

/// The I/O thread of the worker.
pub struct Sender {
    input: Option<async_mpsc::UnboundedSender<Delivery>>,
    output: mpsc::Receiver<DeliveryResult>,
    in_flight: HashSet<i64>,
}

impl Sender {
    pub fn start() -> io::Result<Sender> {
        let (input, mut requests) = async_mpsc::unbounded_channel::<Delivery>();
        let (results, output) = mpsc::channel();
        let runtime = runtime()?;
        spawn_signal_free("backup_ext alerts", move || {
            runtime.block_on(async move {
                while let Some(delivery) = requests.recv().await {
                    let results = results.clone();
                    tokio::spawn(async move {
                        let id = delivery.id;
                        let result = tokio::spawn(deliver(delivery))
                            .await
                            .unwrap_or_else(|_| Err("the sending task panicked".into()));
                        let _ = results.send(DeliveryResult { id, result });
                    });
                }
            })
        })?;
        Ok(Sender {
            input: Some(input),
            output,
            in_flight: HashSet::new(),
        })
    }

    /// Hands a delivery to the thread; false when the thread is gone.
    pub fn submit(&mut self, delivery: Delivery) -> bool {
        let id = delivery.id;
        let sent = self
            .input
            .as_ref()
            .is_some_and(|i| i.send(delivery).is_ok());
        if sent {
            self.in_flight.insert(id);
        }
        sent
    }

    /// The results that have arrived, without waiting.
    pub fn results(&mut self) -> Vec<DeliveryResult> {
        let results: Vec<DeliveryResult> = self.output.try_iter().collect();
        for r in &results {
            self.in_flight.remove(&r.id);
        }
        results
    }

    /// Deliveries submitted whose result has not been collected yet.
    pub fn in_flight(&self) -> &HashSet<i64> {
        &self.in_flight
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop; sends still running are dropped with it.
        self.input.take();
    }
}

/// Sends one message and waits for the result, calling `between` every 100 ms while waiting
/// (the caller checks for interrupts there: it may unwind, the send then ends on its own).
pub fn send_now(delivery: Delivery, between: &mut dyn FnMut()) -> Result<String, String> {
    let (tx, rx) = mpsc::channel();
    let runtime = runtime().map_err(|e| format!("cannot start the sending runtime: {e}"))?;
    spawn_signal_free("backup_ext alert test", move || {
        let _ = tx.send(runtime.block_on(deliver(delivery)));
    })
    .map_err(|e| format!("cannot start the sending thread: {e}"))?;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(result) => return result,
            Err(mpsc::RecvTimeoutError::Timeout) => between(),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err("the sending thread ended without a result".into())
            }
        }
    }
}

fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

async fn deliver(delivery: Delivery) -> Result<String, String> {
    let limit = Duration::from_secs(delivery.options.timeout_secs()) + GRACE;
    match tokio::time::timeout(limit, send(&delivery)).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {} s", limit.as_secs())),
    }
}

async fn send(d: &Delivery) -> Result<String, String> {
    match render(d.kind, &d.event) {
        Rendered::Http { body } => post(d, body).await,
        Rendered::Email { subject, body } => mail(d, subject, body).await,
    }
}

/// Reads a secret file; a trailing newline is not part of the secret.
fn read_secret(what: &str, path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?;
    Ok(text.trim_end_matches(['\r', '\n']).to_string())
}

async fn post(d: &Delivery, body: Vec<u8>) -> Result<String, String> {
    let timeout = Duration::from_secs(d.options.timeout_secs());
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("backup_ext-alerts/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", e.without_url()))?;
    let mut request = client
        .post(&d.target)
        .header(reqwest::header::CONTENT_TYPE, "application/json");
    if let Some(path) = &d.options.secret_file {
        let secret = read_secret("secret_file", path)?;
        request = request.header(SIGNATURE_HEADER, sign(secret.as_bytes(), &body));
    }
    let response = request
        .body(body)
        .send()
        .await
        .map_err(|e| describe_http_error(e.without_url()))?;
    let status = response.status();
    if status.is_success() {
        Ok(format!("HTTP {}", status.as_u16()))
    } else {
        Err(format!("the receiver answered HTTP {}", status.as_u16()))
    }
}

fn describe_http_error(e: reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    // The chain of causes says why (refused, TLS, DNS); the URL was removed above.
    let mut text = format!("{what}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

async fn mail(d: &Delivery, subject: String, body: String) -> Result<String, String> {
    let o = &d.options;
    let host = o
        .host
        .as_deref()
        .ok_or("email alert without options.host")?;
    let from = o
        .from
        .as_deref()
        .ok_or("email alert without options.from")?;
    let tls = o.tls.unwrap_or(TlsMode::StartTls);
    let builder = match tls {
        TlsMode::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host),
        TlsMode::Implicit => AsyncSmtpTransport::<Tokio1Executor>::relay(host),
        TlsMode::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
            host,
        )),
    }
    .map_err(|e| format!("cannot set up SMTP to {host}: {e}"))?;
    let port = o.port.unwrap_or(match tls {
        TlsMode::StartTls => 587,
        TlsMode::Implicit => 465,
        TlsMode::None => 25,
    });
    let mut builder = builder
        .port(port)
        .timeout(Some(Duration::from_secs(o.timeout_secs())));
    if let (Some(user), Some(path)) = (&o.username, &o.password_file) {
        builder = builder.credentials(Credentials::new(
            user.clone(),
            read_secret("password_file", path)?,
        ));
    }
    let message = Message::builder()
        .from(from.parse().map_err(|e| format!("bad from address: {e}"))?)
        .to(d
            .target
            .parse()
            .map_err(|e| format!("bad recipient: {e}"))?)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| format!("cannot build the email: {e}"))?;
    let response = builder
        .build()
        .send(message)
        .await
        .map_err(|e| format!("SMTP to {host}:{port} failed: {e}"))?;
    Ok(format!("SMTP {}", response.code()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::AlertEvent;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    fn delivery(kind: AlertKind, target: String, options: AlertOptions) -> Delivery {
        Delivery {
            id: 1,
            kind,
            target,
            options,
            event: AlertEvent {
                event: "test".into(),
                message: "test".into(),
                database: None,
                job_id: None,
                kind: None,
                status: None,
                backup_id: None,
                error: None,
                time: "2026-11-30T00:00:00Z".into(),
                cluster: String::new(),
                system_identifier: "1".into(),
            },
        }
    }

    /// A loopback server that answers every connection with `reply` and closes it.
    fn answering(reply: &'static [u8]) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let mut buf = [0u8; 4096];
                let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(reply);
            }
        });
        port
    }

    fn closed_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[test]
    fn tls_failures_are_errors_not_panics() {
        let opts = AlertOptions {
            timeout: Some(3),
            ..AlertOptions::default()
        };
        // https to a server that speaks plain HTTP: the handshake fails.
        let port = answering(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        let d = delivery(
            AlertKind::Webhook,
            format!("https://127.0.0.1:{port}/"),
            opts.clone(),
        );
        let e = send_now(d, &mut || {}).unwrap_err();
        assert!(
            e.starts_with("request failed") || e.starts_with("cannot connect"),
            "{e}"
        );
        let port = closed_port();
        let d = delivery(
            AlertKind::Slack,
            format!("http://127.0.0.1:{port}/"),
            opts.clone(),
        );
        let e = send_now(d, &mut || {}).unwrap_err();
        assert!(e.starts_with("cannot connect"), "{e}");
        for tls in [TlsMode::StartTls, TlsMode::Implicit, TlsMode::None] {
            let mail = AlertOptions {
                host: Some("127.0.0.1".into()),
                port: Some(closed_port()),
                tls: Some(tls),
                from: Some("b@example.com".into()),
                ..opts.clone()
            };
            let d = delivery(AlertKind::Email, "dba@example.com".into(), mail);
            let e = send_now(d, &mut || {}).unwrap_err();
            assert!(e.starts_with("SMTP to 127.0.0.1:"), "{e}");
        }
    }

    #[test]
    fn answers_other_than_2xx_fail_and_a_missing_secret_file_is_named() {
        let port = answering(b"HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n");
        let d = delivery(
            AlertKind::Webhook,
            format!("http://127.0.0.1:{port}/"),
            AlertOptions::default(),
        );
        assert_eq!(
            send_now(d, &mut || {}).unwrap_err(),
            "the receiver answered HTTP 302"
        );
        let d = delivery(
            AlertKind::Webhook,
            format!("http://127.0.0.1:{port}/"),
            AlertOptions {
                secret_file: Some("/nonexistent/secret".into()),
                ..AlertOptions::default()
            },
        );
        let e = send_now(d, &mut || {}).unwrap_err();
        assert!(
            e.starts_with("cannot read secret_file /nonexistent/secret"),
            "{e}"
        );
    }

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(retry_delay(1), 2);
        assert_eq!(retry_delay(2), 4);
        assert_eq!(retry_delay(3), 8);
        assert_eq!(retry_delay(11), 2048);
        assert_eq!(retry_delay(12), 3600);
        assert_eq!(retry_delay(1000), 3600);
        assert_eq!(retry_delay(0), 2);
    }
}
