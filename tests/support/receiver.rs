//! The receiver: a real HTTP/1.1 server on 127.0.0.1 that records every request and answers as
//! programmed, and signals every arrival to the tests waiting on it.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

/// One programmed answer.
#[derive(Clone, Copy)]
pub struct Reply {
    pub status: u16,
    pub delay: Duration,
    /// A `Retry-After` header, in seconds.
    pub retry_after: Option<u32>,
    /// The body (`ok` when `None`), sent as `text/plain`.
    pub body: Option<&'static str>,
    /// A `Location` header (a redirect's).
    pub location: Option<&'static str>,
}

pub fn status(code: u16) -> Reply {
    Reply { status: code, delay: Duration::ZERO, retry_after: None, body: None, location: None }
}

/// A redirect: `status` with `Location: location`.
pub fn redirect(code: u16, location: &'static str) -> Reply {
    Reply { location: Some(location), ..status(code) }
}

/// `status` with `body` (as `text/plain`).
pub fn with_body(code: u16, body: &'static str) -> Reply {
    Reply { body: Some(body), ..status(code) }
}

/// `status` after `delay`.
pub fn delayed(code: u16, delay: Duration) -> Reply {
    Reply { delay, ..status(code) }
}

/// A request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// Path and query as requested.
    pub uri: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub at: Instant,
    pub wall_ms: u64,
    /// The recordId / sessionId / Id that tells deliveries apart.
    pub tag: String,
    /// What the receiver answered.
    pub status: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn tag(&self) -> String {
        self.tag.clone()
    }
}

/// The recordId / sessionId / Id of a delivered body.
fn tag_of(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let v = if v.is_array() { v[0].clone() } else { v };
    ["recordId", "sessionId", "Id"].iter().find_map(|k| v[k].as_str().map(str::to_owned)).unwrap_or_default()
}

#[derive(Default)]
struct Program {
    replies: HashMap<String, VecDeque<Reply>>,
    defaults: HashMap<String, Reply>,
}

/// What the receiver got, in arrival order.
#[derive(Default)]
struct Got {
    requests: Vec<Received>,
    /// Distinct tags answered 2xx, per path, kept as requests come.
    delivered: HashMap<String, std::collections::HashSet<String>>,
}

/// `Got` behind a lock, and a condvar notified on every arrival.
#[derive(Default)]
struct Arrivals {
    got: Mutex<Got>,
    arrived: Condvar,
}

impl Arrivals {
    fn lock(&self) -> MutexGuard<'_, Got> {
        // A test that panicked while waiting leaves it poisoned; the others go on.
        self.got.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A real HTTP/1.1 server on 127.0.0.1:0 that records every request and answers as programmed
/// (default 200). Each connection has a thread of its own (keep-alive as the client asks), so
/// delays on one connection hold up no other. A request is recorded (and waiters woken) before
/// it is answered.
///
/// Written out here rather than tiny_http: its worker pool can leave a new connection queued
/// behind kept-alive ones (two connections handed to one idle worker), so a burst of
/// deliveries could stall for as long as the client keeps its connections.
pub struct Receiver {
    pub port: u16,
    stopped: Arc<std::sync::atomic::AtomicBool>,
    arrivals: Arc<Arrivals>,
    program: Arc<Mutex<Program>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        Receiver::start_on(0)
    }

    /// On a given port (0: any).
    pub fn start_on(port: u16) -> Receiver {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("receiver binds");
        let port = listener.local_addr().expect("local address").port();
        let receiver = Receiver { port, stopped: Arc::default(), arrivals: Arc::default(), program: Arc::default() };
        let (stopped, arrivals, program) =
            (receiver.stopped.clone(), receiver.arrivals.clone(), receiver.program.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (arrivals, program) = (arrivals.clone(), program.clone());
                std::thread::spawn(move || serve_connection(stream, &arrivals, &program));
            }
        });
        receiver
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// Answers `replies` in order on `path`, then `default`.
    pub fn program(&self, path: &str, replies: &[Reply], default: Reply) {
        let mut p = self.program.lock().expect("lock");
        p.replies.insert(path.to_owned(), replies.iter().copied().collect());
        p.defaults.insert(path.to_owned(), default);
    }

    /// Changes what `path` answers from now on.
    pub fn set_default(&self, path: &str, default: Reply) {
        let mut p = self.program.lock().expect("lock");
        p.replies.remove(path);
        p.defaults.insert(path.to_owned(), default);
    }

    /// Blocks until `f`, shown every request received so far (in arrival order), answers
    /// `Some`; woken by each arrival, never polling. Panics with `what` after `timeout`. `f`
    /// runs under the receiver's lock: it must not call the receiver.
    pub fn wait_until<T>(&self, timeout: Duration, what: &str, mut f: impl FnMut(&[Received]) -> Option<T>) -> T {
        self.wait_on(timeout, what, |got| f(&got.requests))
    }

    fn wait_on<T>(&self, timeout: Duration, what: &str, mut f: impl FnMut(&Got) -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        let mut got = self.arrivals.lock();
        loop {
            if let Some(v) = f(&got) {
                return v;
            }
            let now = Instant::now();
            if now >= deadline {
                let mut by_path: std::collections::BTreeMap<String, usize> = Default::default();
                for r in &got.requests {
                    *by_path.entry(r.path.clone()).or_default() += 1;
                }
                drop(got);
                panic!("timed out after {timeout:?} waiting for {what}; requests so far by path: {by_path:?}");
            }
            got = self.arrivals.arrived.wait_timeout(got, deadline - now).expect("lock").0;
        }
    }

    /// Whether `f` holds for what the receiver got, checked at each arrival for `period`: a quiet
    /// period, the last resort for a negative that no later event can prove (each use says why).
    /// Answers `false` as soon as an arrival breaks it.
    pub fn holds_for(&self, period: Duration, mut f: impl FnMut(&[Received]) -> bool) -> bool {
        let deadline = Instant::now() + period;
        let mut got = self.arrivals.lock();
        loop {
            if !f(&got.requests) {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            got = self.arrivals.arrived.wait_timeout(got, deadline - now).expect("lock").0;
        }
    }

    /// Waits until `path` got at least `n` requests; answers them.
    pub fn wait_count(&self, path: &str, n: usize, timeout: Duration) -> Vec<Received> {
        self.wait_until(timeout, &format!("{n} requests on {path}"), |got| {
            // Counted first: cloned once, when there are enough (a wake-up per arrival).
            (got.iter().filter(|r| r.path == path).count() >= n)
                .then(|| got.iter().filter(|r| r.path == path).cloned().collect())
        })
    }

    /// Waits until `path` got a request carrying `tag` (a recordId, sessionId or Id); answers
    /// every request on `path` so far.
    pub fn wait_tag(&self, path: &str, tag: &str, timeout: Duration) -> Vec<Received> {
        self.wait_until(timeout, &format!("{tag} on {path}"), |got| {
            let on: Vec<Received> = got.iter().filter(|r| r.path == path).cloned().collect();
            on.iter().any(|r| r.tag == tag).then_some(on)
        })
    }

    /// Waits until `path` answered at least `n` distinct events with a 2xx.
    pub fn wait_distinct_delivered(&self, path: &str, n: usize, timeout: Duration) {
        self.wait_on(timeout, &format!("{n} distinct events delivered on {path}"), |got| {
            (got.delivered.get(path).map_or(0, |s| s.len()) >= n).then_some(())
        })
    }

    /// Waits until `path` answered each of `tags` with a 2xx at least once.
    pub fn wait_delivered<'a>(&self, path: &str, tags: impl IntoIterator<Item = &'a String>, timeout: Duration) {
        let mut missing: Vec<&String> = tags.into_iter().collect();
        self.wait_on(timeout, &format!("{} more events delivered on {path}", missing.len()), |got| {
            let delivered = got.delivered.get(path);
            missing.retain(|t| !delivered.is_some_and(|d| d.contains(*t)));
            missing.is_empty().then_some(())
        })
    }

    /// How many distinct events `path` answered with a 2xx.
    pub fn distinct_delivered(&self, path: &str) -> usize {
        self.arrivals.lock().delivered.get(path).map_or(0, |s| s.len())
    }

    /// How many requests `path` got.
    pub fn count(&self, path: &str) -> usize {
        self.arrivals.lock().requests.iter().filter(|r| r.path == path).count()
    }

    pub fn requests(&self, path: &str) -> Vec<Received> {
        self.arrivals.lock().requests.iter().filter(|r| r.path == path).cloned().collect()
    }

    pub fn tags(&self, path: &str) -> Vec<String> {
        self.arrivals.lock().requests.iter().filter(|r| r.path == path).map(|r| r.tag.clone()).collect()
    }

    /// Answered deliveries per tag on `path` (only those answered 2xx count as received).
    pub fn tag_counts(&self, path: &str) -> HashMap<String, usize> {
        tag_counts(&self.arrivals.lock().requests, path)
    }
}

/// Deliveries answered 2xx per tag on `path`, in `got`.
pub fn tag_counts(got: &[Received], path: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for r in got.iter().filter(|r| r.path == path && (200..300).contains(&r.status)) {
        *counts.entry(r.tag.clone()).or_insert(0) += 1;
    }
    counts
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // The accepting thread sees the flag at its next connection: this one.
        self.stopped.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// One request read off a connection: method aside, its target, headers (names lowercase) and
/// body. `None` at the end of the connection or on anything that is not HTTP/1.1 we can read.
fn read_request(conn: &mut BufReader<std::net::TcpStream>) -> Option<(String, HashMap<String, String>, Vec<u8>)> {
    use std::io::Read;
    let mut line = String::new();
    if conn.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let uri = line.split_whitespace().nth(1)?.to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if conn.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (name, value) = h.split_once(':')?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    let mut body = Vec::new();
    if headers.get("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            conn.read_line(&mut size).ok()?;
            let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; size + 2];
            conn.read_exact(&mut chunk).ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        let length = headers.get("content-length").map_or(Some(0), |l| l.parse().ok())?;
        body.resize(length, 0);
        conn.read_exact(&mut body).ok()?;
    }
    Some((uri, headers, body))
}

/// Reads requests off one connection, records each, and answers it as programmed.
fn serve_connection(stream: std::net::TcpStream, arrivals: &Arrivals, program: &Mutex<Program>) {
    use std::io::Write;
    let Ok(mut out) = stream.try_clone() else { return };
    let mut conn = BufReader::new(stream);
    while let Some((uri, headers, body)) = read_request(&mut conn) {
        let path = uri.split('?').next().unwrap_or("").to_owned();
        let close = headers.get("connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
        let reply = {
            let mut p = program.lock().expect("lock");
            let default = p.defaults.get(&path).copied().unwrap_or(status(200));
            p.replies.get_mut(&path).and_then(VecDeque::pop_front).unwrap_or(default)
        };
        let wall_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let tag = tag_of(&body);
        {
            let mut got = arrivals.lock();
            if (200..300).contains(&reply.status) {
                got.delivered.entry(path.clone()).or_default().insert(tag.clone());
            }
            got.requests.push(Received {
                path,
                uri,
                headers,
                body,
                at: Instant::now(),
                wall_ms,
                tag,
                status: reply.status,
            });
        }
        arrivals.arrived.notify_all();
        if !reply.delay.is_zero() {
            // Not a wait for anything: the programmed slow answer.
            std::thread::sleep(reply.delay);
        }
        let retry_after = reply.retry_after.map(|s| format!("Retry-After: {s}\r\n")).unwrap_or_default();
        let connection = if close { "Connection: close\r\n" } else { "" };
        let location = reply.location.map(|l| format!("Location: {l}\r\n")).unwrap_or_default();
        let response = match reply.body {
            None => format!("HTTP/1.1 {} Answer\r\nContent-Length: 2\r\n{retry_after}{location}{connection}\r\nok", reply.status),
            Some(body) => format!(
                "HTTP/1.1 {} Answer\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{retry_after}{location}{connection}\r\n{body}",
                reply.status,
                body.len()
            ),
        };
        if out.write_all(response.as_bytes()).is_err() || close {
            return;
        }
    }
}
