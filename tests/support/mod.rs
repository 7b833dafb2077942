//! Test support: the real `crmhook` binary as a child process, a real HTTP receiver on
//! 127.0.0.1, an HTTP client, and waiting for a condition with a deadline (never a sleep as
//! synchronisation).
//!
//! Tests wait on events, not time: the receiver signals every arrival ([`Receiver::wait_until`]
//! blocks on it), and a negative ("this is never delivered") is proven by a positive marker: a
//! later delivery the same target must make arrives, then [`Server::wait_settled`] sees the
//! target owe nothing more, so the receiver's record is final. [`Receiver::holds_for`], a quiet
//! period, is left only where no event can prove the negative.

#![allow(dead_code)]

pub mod tls;

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const ADMIN: &str = "adm_test_0123456789abcdef0123456789";
pub const INGEST: &str = "ing_test_0123456789abcdef0123456789";

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`: for state that
/// signals nothing (the server's API). The receiver's state is waited on with
/// [`Receiver::wait_until`].
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn sample(name: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/samples");
    let path = ["maia", "maximizer"].iter().map(|d| root.join(d).join(format!("{name}.json"))).find(|p| p.exists());
    std::fs::read_to_string(path.unwrap_or_else(|| panic!("no sample {name}"))).expect("sample readable")
}

/// A MAIA sample with a fresh recordId (or sessionId) and `fields` overriding.
pub fn maia(name: &str, fields: Value) -> Value {
    let mut ev: Value = serde_json::from_str(&sample(name)).expect("sample is JSON");
    let tag = format!("rec_{}", unique());
    if ev.get("recordId").is_some() {
        ev["recordId"] = Value::String(tag);
    } else {
        ev["sessionId"] = Value::String(tag);
    }
    if let (Some(obj), Some(extra)) = (ev.as_object_mut(), fields.as_object()) {
        for (k, v) in extra {
            obj.insert(k.clone(), v.clone());
        }
    }
    ev
}

pub fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed), Instant::now().elapsed().as_nanos())
}

// ---- HTTP client ------------------------------------------------------------------------

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    pub fn content_type(&self) -> &str {
        self.headers.get("content-type").map(String::as_str).unwrap_or("")
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(Duration::from_secs(15)).redirects(0).build()
}

/// One HTTP request; any status is returned, not raised.
pub fn http(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Resp {
    let mut req = agent().request(method, url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let result = match body {
        Some(b) => req.send_bytes(b),
        None => req.call(),
    };
    let resp = match result {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = resp.status();
    let headers = resp
        .headers_names()
        .into_iter()
        .filter_map(|n| resp.header(&n).map(|v| (n.to_ascii_lowercase(), v.to_owned())))
        .collect();
    let text = resp.into_string().unwrap_or_default();
    Resp { status, headers, text }
}

// ---- the server ---------------------------------------------------------------------------

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("read the fixture") {
        let entry = entry.expect("fixture entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a fixture file");
        }
    }
}

/// `crmhook serve` on 127.0.0.1:0 in a temporary data dir.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
    /// Shell commands run before `exec crmhook` (e.g. `ulimit -f 4000`); none when empty.
    pub wrapper: String,
    pub child: Option<Child>,
    pub base: String,
    /// Every stdout line of every start.
    pub stdout: Arc<Mutex<Vec<String>>>,
}

/// What [`Server::start`] runs with: the test tokens, and private targets allowed.
pub const TEST_ENV: [(&str, &str); 3] =
    [("CRMHOOK_ADMIN_TOKEN", ADMIN), ("CRMHOOK_INGEST_TOKEN", INGEST), ("CRMHOOK_ALLOW_PRIVATE_TARGETS", "true")];

impl Server {
    /// With the test tokens and private targets allowed ([`TEST_ENV`]).
    pub fn start() -> Server {
        Server::start_with(&TEST_ENV)
    }

    pub fn start_with(env: &[(&str, &str)]) -> Server {
        let mut server = Server {
            dir: tempfile::tempdir().expect("tempdir"),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            wrapper: String::new(),
            child: None,
            base: String::new(),
            stdout: Arc::new(Mutex::new(Vec::new())),
        };
        server.spawn();
        server
    }

    /// On a copy of the data dir `from` (a fixture written by an earlier binary).
    pub fn start_on_copy(from: &std::path::Path, env: &[(&str, &str)]) -> Server {
        let mut server = Server {
            dir: tempfile::tempdir().expect("tempdir"),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            wrapper: String::new(),
            child: None,
            base: String::new(),
            stdout: Arc::new(Mutex::new(Vec::new())),
        };
        copy_dir(from, &server.data_dir());
        server.spawn();
        server
    }

    /// Starts the binary through `bash -c '<wrapper>; exec crmhook serve …'`.
    pub fn start_wrapped(env: &[(&str, &str)], wrapper: &str) -> Server {
        let mut server = Server {
            dir: tempfile::tempdir().expect("tempdir"),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            wrapper: wrapper.to_owned(),
            child: None,
            base: String::new(),
            stdout: Arc::new(Mutex::new(Vec::new())),
        };
        server.spawn();
        server
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn spawn(&mut self) {
        self.spawn_on("127.0.0.1:0");
    }

    fn spawn_on(&mut self, bind: &str) {
        let mut cmd = if self.wrapper.is_empty() {
            Command::new(env!("CARGO_BIN_EXE_crmhook"))
        } else {
            let mut c = Command::new("bash");
            c.arg("-c").arg(format!("{}; exec \"$0\" \"$@\"", self.wrapper)).arg(env!("CARGO_BIN_EXE_crmhook"));
            c
        };
        cmd.arg("serve").arg("--bind").arg(bind).arg("--data-dir").arg(self.data_dir());
        cmd.current_dir(self.dir.path()).env("NO_COLOR", "1").env("CRMHOOK_LOG", "warn");
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CRMHOOK_")) {
            cmd.env_remove(k);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child =
            cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).stdin(Stdio::null()).spawn().expect("crmhook runs");
        let rx = follow_stdout(&mut child, self.stdout.clone());
        let addr = rx.recv_timeout(Duration::from_secs(30)).expect("`listening on` within 30 s");
        self.base = format!("http://{addr}");
        self.child = Some(child);
    }

    /// SIGTERM, wait for the exit, start again on the same data dir.
    pub fn restart(&mut self) {
        let status = self.stop();
        assert!(status.success(), "graceful stop exits 0, got {status:?}");
        self.spawn();
    }

    /// SIGKILL: the process dies at once, wherever it is.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the binary again on the same data dir (after `kill9` or `stop`).
    pub fn respawn(&mut self) {
        assert!(self.child.is_none(), "still running");
        self.spawn();
    }

    /// [`Server::respawn`] on the port the last start listened on (a client keeps its URL).
    pub fn respawn_on_the_same_port(&mut self) {
        assert!(self.child.is_none(), "still running");
        let addr = self.base.trim_start_matches("http://").to_owned();
        self.spawn_on(&addr);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Resident memory of the server process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS")
    }

    /// SIGTERM and wait; answers the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = child.id().to_string();
        let _ = Command::new("kill").arg("-TERM").arg(&pid).status();
        // The exit is waited on by a thread of its own, which reports it.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait().expect("wait"));
        });
        rx.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| {
            let _ = Command::new("kill").arg("-KILL").arg(&pid).status();
            panic!("crmhook did not stop within 20 s of SIGTERM");
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn request(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Resp {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        let bytes = body.map(|b| serde_json::to_vec(b).expect("json"));
        http(method, &self.url(path), &headers, bytes.as_deref())
    }

    pub fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> Resp {
        self.request(method, path, Some(ADMIN), body)
    }

    /// POST /v1/events with the ingest token, expecting 202.
    /// Posts `n` MAIA events, a thousand a request; answers their ids in order.
    pub fn post_many(&self, n: usize) -> Vec<String> {
        let mut ids = Vec::with_capacity(n);
        for chunk in (0..n).collect::<Vec<_>>().chunks(1_000) {
            let events: Vec<Value> = chunk.iter().map(|_| maia("crm_record_created", serde_json::json!({}))).collect();
            let ack = self.post_ok(&Value::Array(events));
            ids.extend(
                ack["events"].as_array().expect("events").iter().map(|e| e["id"].as_str().expect("id").to_owned()),
            );
        }
        ids
    }

    pub fn post_ok(&self, body: &Value) -> Value {
        let r = self.request("POST", "/v1/events", Some(INGEST), Some(body));
        assert_eq!(r.status, 202, "POST /v1/events: {}", r.text);
        r.json()
    }

    /// `POST /v1/events` of `body` with the ingest token and `Idempotency-Key: key`, answered 202.
    pub fn post_keyed(&self, body: &Value, key: &str) -> Value {
        let bearer = format!("Bearer {INGEST}");
        let headers =
            [("Content-Type", "application/json"), ("Authorization", bearer.as_str()), ("Idempotency-Key", key)];
        let body = serde_json::to_vec(body).expect("json");
        let r = http("POST", &self.url("/v1/events"), &headers, Some(&body));
        assert_eq!(r.status, 202, "POST /v1/events with a key: {}", r.text);
        r.json()
    }

    /// A target on `url` with a fast schedule, plus one subscription when `sub` is an object.
    /// Answers (target id, secret).
    pub fn wire(&self, url: &str, sub: Option<Value>, extra: Value) -> (String, String) {
        let mut body = serde_json::json!({"name": format!("t{}", unique()), "url": url, "retry_schedule_ms": [200, 400], "timeout_ms": 1000});
        if let Some(obj) = extra.as_object() {
            for (k, v) in obj {
                body[k] = v.clone();
            }
        }
        let r = self.admin("POST", "/v1/targets", Some(&body));
        assert_eq!(r.status, 201, "POST /v1/targets: {}", r.text);
        let t = r.json();
        let id = t["id"].as_str().expect("id").to_owned();
        if let Some(mut s) = sub {
            s["target_id"] = Value::String(id.clone());
            let r = self.admin("POST", "/v1/subscriptions", Some(&s));
            assert_eq!(r.status, 201, "POST /v1/subscriptions: {}", r.text);
        }
        (id, t["secret"].as_str().expect("secret").to_owned())
    }

    /// `GET /v1/events/{id}`.
    pub fn event(&self, id: &str) -> Value {
        let r = self.admin("GET", &format!("/v1/events/{id}"), None);
        assert_eq!(r.status, 200, "GET /v1/events/{id}: {}", r.text);
        r.json()
    }

    /// The targets an event's view lists a delivery for (owed, pending, or attempted): the
    /// server's own word on whom the event goes to.
    pub fn delivered_to(&self, event_id: &str) -> Vec<String> {
        let e = self.event(event_id);
        let deliveries = e["deliveries"].as_array().cloned().unwrap_or_default();
        deliveries.iter().filter_map(|d| d["target_id"].as_str().map(str::to_owned)).collect()
    }

    /// Waits until target `tid` lists no pending delivery: every attempt it has taken on is
    /// over, answered, and recorded. After a delivery it had to make (a marker) arrived, it has
    /// also matched every event logged before that one, so what a receiver got from it is final
    /// (an attempt is recorded only once it is answered, and the receiver records a request
    /// before answering it).
    pub fn wait_settled(&self, tid: &str, timeout: Duration) {
        self.wait_settled_as(ADMIN, tid, timeout);
    }

    /// [`Server::wait_settled`] with another admin token.
    pub fn wait_settled_as(&self, admin: &str, tid: &str, timeout: Duration) {
        wait_for(timeout, &format!("nothing pending for {tid}"), || {
            let path = format!("/v1/targets/{tid}/deliveries?status=pending&limit=1");
            let r = self.request("GET", &path, Some(admin), None);
            assert_eq!(r.status, 200, "{}", r.text);
            r.json()["deliveries"].as_array().is_some_and(Vec::is_empty).then_some(())
        });
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---- the receivers' checks ------------------------------------------------------------------
// Independent of crmhook-core: the contract's two schemes written out again here.

/// Runs the `crmhook` CLI against `server` with the admin token (nothing inherited from the
/// environment that runs the tests).
pub fn crmhook(server: &Server, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_crmhook"))
        .args(args)
        .env_remove("CRMHOOK_URL")
        .env_remove("CRMHOOK_ADMIN_TOKEN")
        .env("CRMHOOK_URL", &server.base)
        .env("CRMHOOK_ADMIN_TOKEN", ADMIN)
        .output()
        .expect("crmhook runs")
}

/// A command's stdout, once it has succeeded (a failure fails the test with what it said).
pub fn succeeded(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// MAIA's documented check: the header equals the lowercase hex HMAC-SHA256 of the raw body,
/// keyed with the secret string.
pub fn maia_signature_valid(secret: &str, r: &Received) -> bool {
    r.header("x-maia-signature") == hex::encode(hmac_sha256(secret.as_bytes(), &r.body))
}

/// Standard Webhooks: one of the header's `v1,<base64 HMAC>` entries signs
/// `<id>.<timestamp>.<body>` with the base64-decoded key after `whsec_`.
pub fn standard_signature_valid(secret: &str, r: &Received) -> bool {
    use base64::Engine;
    let key =
        base64::engine::general_purpose::STANDARD.decode(secret.trim_start_matches("whsec_")).expect("whsec_ base64");
    let msg =
        [r.header("webhook-id").as_bytes(), b".", r.header("webhook-timestamp").as_bytes(), b".", &r.body].concat();
    let want = format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(hmac_sha256(&key, &msg)));
    r.header("webhook-signature").split(' ').any(|s| s == want)
}

// ---- the receiver -------------------------------------------------------------------------

/// One programmed answer.
#[derive(Clone, Copy)]
pub struct Reply {
    pub status: u16,
    pub delay: Duration,
    /// A `Retry-After` header, in seconds.
    pub retry_after: Option<u32>,
    /// The body (`ok` when `None`), sent as `text/plain`.
    pub body: Option<&'static str>,
}

pub fn status(code: u16) -> Reply {
    Reply { status: code, delay: Duration::ZERO, retry_after: None, body: None }
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
        let response = match reply.body {
            None => format!("HTTP/1.1 {} Answer\r\nContent-Length: 2\r\n{retry_after}{connection}\r\nok", reply.status),
            Some(body) => format!(
                "HTTP/1.1 {} Answer\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{retry_after}{connection}\r\n{body}",
                reply.status,
                body.len()
            ),
        };
        if out.write_all(response.as_bytes()).is_err() || close {
            return;
        }
    }
}

/// Reads a started `crmhook`'s stdout on a thread of its own, keeping every line in `lines`;
/// the address of its `listening on` line comes on the answered channel.
pub fn follow_stdout(child: &mut Child, lines: Arc<Mutex<Vec<String>>>) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.split("listening on ").nth(1) {
                let _ = tx.send(addr.trim().to_owned());
            }
            lines.lock().expect("lock").push(line);
        }
    });
    rx
}
