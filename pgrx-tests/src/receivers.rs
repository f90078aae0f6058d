//! Real receivers for alert tests, owned by the test: an HTTP server on a free loopback port
//! that records every request and can be told to answer 500 to the next N or to never answer,
//! and an SMTP server (aiosmtpd from the Python environment of `scripts/setup.sh`) that
//! writes each message it accepts to a file.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{free_port, py_env, SCRATCH_ROOT};

/// One request the receiver read, with the status it answered (0: none, it hung).
#[derive(Clone, Debug)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub answered: u16,
}

impl HttpRequest {
    /// A header's value by name, case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

#[derive(Default)]
struct ReceiverState {
    requests: Vec<HttpRequest>,
    fail_next: usize,
    hang: bool,
}

/// The HTTP receiver; stops when dropped.
pub struct HttpReceiver {
    pub port: u16,
    state: Arc<Mutex<ReceiverState>>,
    stop: Arc<AtomicBool>,
}

impl HttpReceiver {
    pub fn start() -> HttpReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the HTTP receiver");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(ReceiverState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (st, sp) = (st.clone(), sp.clone());
                std::thread::spawn(move || serve(stream, &st, &sp));
            }
        });
        HttpReceiver { port, state, stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Answers 500 to the next `n` requests.
    pub fn fail_next(&self, n: usize) {
        self.state.lock().unwrap().fail_next = n;
    }

    /// Reads requests but never answers them while `on`.
    pub fn hang(&self, on: bool) {
        self.state.lock().unwrap().hang = on;
    }

    pub fn requests(&self) -> Vec<HttpRequest> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Waits until `n` requests have come in; panics with what came at the deadline.
    pub fn wait_for(&self, n: usize, deadline: Duration) -> Vec<HttpRequest> {
        let start = Instant::now();
        loop {
            let got = self.requests();
            if got.len() >= n {
                return got;
            }
            assert!(
                start.elapsed() < deadline,
                "the receiver got {} of {n} requests within {deadline:?}: {got:?}",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(mut stream: TcpStream, state: &Mutex<ReceiverState>, stop: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_string();
    let path = first.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let status = {
        let mut s = state.lock().unwrap();
        let status = if s.hang {
            0
        } else if s.fail_next > 0 {
            s.fail_next -= 1;
            500
        } else {
            200
        };
        s.requests.push(HttpRequest {
            method,
            path,
            headers,
            body,
            answered: status,
        });
        status
    };
    if status == 0 {
        // Holds the connection open, answering nothing, until the receiver stops.
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
        }
        return;
    }
    let reason = if status == 200 {
        "OK"
    } else {
        "Internal Server Error"
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    );
}

const SMTP_SERVER: &str = r#"
import os, sys, threading, itertools
from aiosmtpd.controller import Controller

class Handler:
    counter = itertools.count()
    async def handle_DATA(self, server, session, envelope):
        i = next(self.counter)
        tmp = os.path.join(sys.argv[2], ".%d.tmp" % i)
        with open(tmp, "wb") as f:
            f.write(("X-Envelope-From: %s\r\nX-Envelope-To: %s\r\n"
                     % (envelope.mail_from, ",".join(envelope.rcpt_tos))).encode())
            f.write(envelope.original_content)
        os.rename(tmp, os.path.join(sys.argv[2], "%d.eml" % i))
        return "250 Message accepted for delivery"

controller = Controller(Handler(), hostname="127.0.0.1", port=int(sys.argv[1]))
controller.start()
open(os.path.join(sys.argv[2], "ready"), "w").close()
threading.Event().wait()
"#;

/// aiosmtpd on a free loopback port; each accepted message becomes `<n>.eml` in [`Self::dir`].
pub struct SmtpServer {
    pub port: u16,
    pub dir: PathBuf,
    child: Child,
}

impl SmtpServer {
    pub fn start(name: &str) -> SmtpServer {
        let port = free_port();
        let dir = PathBuf::from(SCRATCH_ROOT).join(format!("smtp-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the SMTP server's directory");
        let python = py_env().join("bin/python3");
        let child = Command::new(&python)
            .args(["-c", SMTP_SERVER, &port.to_string()])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("server.log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start aiosmtpd with {} (scripts/setup.sh installs it): {e}",
                    python.display()
                )
            });
        let server = SmtpServer { port, dir, child };
        let start = Instant::now();
        while !server.dir.join("ready").exists() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "aiosmtpd did not start: {}",
                std::fs::read_to_string(server.dir.join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// The messages received so far, oldest first.
    pub fn messages(&self) -> Vec<String> {
        let mut names: Vec<(u64, PathBuf)> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let p = e.path();
                let n = p
                    .file_name()?
                    .to_str()?
                    .strip_suffix(".eml")?
                    .parse()
                    .ok()?;
                Some((n, p))
            })
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|(_, p)| std::fs::read_to_string(p).unwrap_or_default())
            .collect()
    }

    /// Waits until `n` messages have arrived.
    pub fn wait_for(&self, n: usize, deadline: Duration) -> Vec<String> {
        let start = Instant::now();
        loop {
            let got = self.messages();
            if got.len() >= n {
                return got;
            }
            assert!(
                start.elapsed() < deadline,
                "the SMTP server got {} of {n} messages within {deadline:?}",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::env::var_os("BACKUP_EXT_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Long enough for an alert delivery and two retries (2 s and 4 s apart) on a busy machine.
pub const ALERT_DELIVERY: Duration = Duration::from_secs(40);

/// Waits until `n` deliveries of the alert outbox have ended (delivered or given up).
pub fn wait_deliveries_settled(c: &crate::Cluster, client: &mut postgres::Client, n: i64) {
    c.wait_until("alert deliveries to settle", ALERT_DELIVERY, || {
        crate::one_i64(
            client,
            "SELECT count(*) FROM backup_ext.alert_deliveries WHERE next_try_at IS NULL",
        ) >= n
    });
}
