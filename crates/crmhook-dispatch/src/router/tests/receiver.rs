//! The tests' receiver: an HTTP server on 127.0.0.1 that keeps what arrived and answers as
//! each path is told to.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Notify;

use super::DEADLINE;

/// One request the receiver got: its path, body, `X-Crmhook-Attempt` and when.
#[derive(Clone, Debug)]
pub(super) struct Arrival {
    pub(super) path: String,
    pub(super) body: String,
    pub(super) attempt: String,
    pub(super) at: Instant,
}

/// An HTTP receiver on 127.0.0.1 that keeps what arrived and answers 200, or 503 to the first
/// requests of a path told to fail, or never to a path told to stay silent.
#[derive(Clone)]
pub(super) struct Receiver {
    port: u16,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    pub(super) notify: Arc<Notify>,
    /// How many requests of each path are still to answer 503.
    pub(super) failing: Arc<Mutex<std::collections::HashMap<String, usize>>>,
    /// The paths whose requests are never answered (the connection is held until the client
    /// closes it).
    pub(super) silent: Arc<Mutex<BTreeSet<String>>>,
}

impl Receiver {
    pub(super) fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let receiver = Receiver {
            port,
            arrivals: Arc::default(),
            notify: Arc::new(Notify::new()),
            failing: Arc::default(),
            silent: Arc::default(),
        };
        let r = receiver.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let r = r.clone();
                std::thread::spawn(move || r.serve(stream));
            }
        });
        receiver
    }

    /// Answers the requests of one connection (kept alive) until the client closes it.
    fn serve(&self, stream: TcpStream) {
        let Ok(mut out) = stream.try_clone() else { return };
        let mut reader = BufReader::new(stream);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let path = line.split_whitespace().nth(1).unwrap_or_default().to_owned();
            let mut length = 0;
            let mut attempt = String::new();
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 {
                    return;
                }
                if header == "\r\n" {
                    break;
                }
                let lower = header.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if let Some(v) = lower.strip_prefix("x-crmhook-attempt:") {
                    attempt = v.trim().to_owned();
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            let fail = match self.failing.lock().expect("lock").get_mut(&path) {
                Some(left) if *left > 0 => {
                    *left -= 1;
                    true
                }
                _ => false,
            };
            let body = String::from_utf8_lossy(&body).into();
            let silent = self.silent.lock().expect("lock").contains(&path);
            self.arrivals.lock().expect("lock").push(Arrival { path, body, attempt, at: Instant::now() });
            self.notify.notify_waiters();
            if silent {
                let _ = reader.read(&mut [0; 1]);
                return;
            }
            let answer: &[u8] = match fail {
                true => b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
                false => b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            };
            if out.write_all(answer).is_err() {
                return;
            }
        }
    }

    pub(super) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    /// The records (`recordId`s) that arrived at `path`, in order of arrival.
    pub(super) fn records(&self, path: &str) -> Vec<String> {
        let path = format!("/{path}");
        let arrivals = self.arrivals.lock().expect("lock");
        arrivals.iter().filter(|a| a.path == path).map(|a| record_of(&a.body)).collect()
    }

    /// What arrived at `path`, in order of arrival.
    pub(super) fn arrivals(&self, path: &str) -> Vec<Arrival> {
        let path = format!("/{path}");
        self.arrivals.lock().expect("lock").iter().filter(|a| a.path == path).cloned().collect()
    }

    /// Waits until `path` has received `want` (in any order), or fails the test.
    pub(super) async fn wait_for(&self, path: &str, want: &[&str]) -> Vec<String> {
        let until = Instant::now() + DEADLINE;
        loop {
            // Made before looking: an arrival after the look wakes it.
            let arrived = self.notify.notified();
            let got = self.records(path);
            if want.iter().all(|w| got.iter().any(|g| g == w)) {
                return got;
            }
            let left = until.saturating_duration_since(Instant::now());
            if actix_rt::time::timeout(left, arrived).await.is_err() {
                panic!("/{path} got {got:?}, waiting for {want:?}");
            }
        }
    }
}

/// The `recordId` in an event's body.
fn record_of(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    v["recordId"].as_str().unwrap_or_default().to_owned()
}
