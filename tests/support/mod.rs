//! Test support: the real `crmhook` binary as a child process, a real HTTP receiver on
//! 127.0.0.1, an HTTP client, and waiting for a condition with a deadline (never a sleep as
//! synchronisation).

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const ADMIN: &str = "adm_test_0123456789abcdef0123456789";
pub const INGEST: &str = "ing_test_0123456789abcdef0123456789";

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
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

/// True if `f` holds at every check for `period` (used to see that nothing more arrives).
pub fn holds_for(period: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + period;
    while Instant::now() < deadline {
        if !f() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
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

impl Server {
    /// With the test tokens and private targets allowed.
    pub fn start() -> Server {
        Server::start_with(&[
            ("CRMHOOK_ADMIN_TOKEN", ADMIN),
            ("CRMHOOK_INGEST_TOKEN", INGEST),
            ("CRMHOOK_ALLOW_PRIVATE_TARGETS", "true"),
        ])
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
        let mut cmd = if self.wrapper.is_empty() {
            Command::new(env!("CARGO_BIN_EXE_crmhook"))
        } else {
            let mut c = Command::new("bash");
            c.arg("-c").arg(format!("{}; exec \"$0\" \"$@\"", self.wrapper)).arg(env!("CARGO_BIN_EXE_crmhook"));
            c
        };
        cmd.arg("serve").arg("--bind").arg("127.0.0.1:0").arg("--data-dir").arg(self.data_dir());
        cmd.current_dir(self.dir.path()).env("NO_COLOR", "1").env("CRMHOOK_LOG", "warn");
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CRMHOOK_")) {
            cmd.env_remove(k);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child =
            cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).stdin(Stdio::null()).spawn().expect("crmhook runs");
        let stdout = child.stdout.take().expect("stdout piped");
        let lines = self.stdout.clone();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let _ = tx.send(addr.trim().to_owned());
                }
                lines.lock().expect("lock").push(line);
            }
        });
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
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("crmhook did not stop within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
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
    pub fn post_ok(&self, body: &Value) -> Value {
        let r = self.request("POST", "/v1/events", Some(INGEST), Some(body));
        assert_eq!(r.status, 202, "POST /v1/events: {}", r.text);
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
}

pub fn status(code: u16) -> Reply {
    Reply { status: code, delay: Duration::ZERO, retry_after: None }
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
    /// Distinct tags answered 2xx, per path, kept as requests come.
    delivered: HashMap<String, std::collections::HashSet<String>>,
}

/// A real HTTP server on 127.0.0.1:0 that records every request and answers as programmed
/// (default 200). Each request is answered on its own thread, so delays do not queue.
pub struct Receiver {
    pub port: u16,
    server: Arc<tiny_http::Server>,
    received: Arc<Mutex<Vec<Received>>>,
    program: Arc<Mutex<Program>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        Receiver::start_on(0)
    }

    /// On a given port (0: any).
    pub fn start_on(port: u16) -> Receiver {
        let server = Arc::new(tiny_http::Server::http(("127.0.0.1", port)).expect("receiver binds"));
        let port = server.server_addr().to_ip().expect("ip listener").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let program = Arc::new(Mutex::new(Program::default()));
        let (srv, rec, prog) = (server.clone(), received.clone(), program.clone());
        std::thread::spawn(move || {
            for mut request in srv.incoming_requests() {
                let mut body = Vec::new();
                let _ = request.as_reader().read_to_end(&mut body);
                let uri = request.url().to_owned();
                let path = uri.split('?').next().unwrap_or("").to_owned();
                let headers = request
                    .headers()
                    .iter()
                    .map(|h| (h.field.as_str().as_str().to_ascii_lowercase(), h.value.as_str().to_owned()))
                    .collect();
                let reply = {
                    let mut p = prog.lock().expect("lock");
                    let default = p.defaults.get(&path).copied().unwrap_or(status(200));
                    p.replies.get_mut(&path).and_then(VecDeque::pop_front).unwrap_or(default)
                };
                let wall_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0);
                let tag = tag_of(&body);
                if (200..300).contains(&reply.status) {
                    prog.lock().expect("lock").delivered.entry(path.clone()).or_default().insert(tag.clone());
                }
                rec.lock().expect("lock").push(Received {
                    path,
                    uri,
                    headers,
                    body,
                    at: Instant::now(),
                    wall_ms,
                    tag,
                    status: reply.status,
                });
                std::thread::spawn(move || {
                    if !reply.delay.is_zero() {
                        std::thread::sleep(reply.delay);
                    }
                    let mut response = tiny_http::Response::from_string("ok").with_status_code(reply.status);
                    if let Some(seconds) = reply.retry_after {
                        if let Ok(h) =
                            tiny_http::Header::from_bytes(&b"Retry-After"[..], seconds.to_string().as_bytes())
                        {
                            response.add_header(h);
                        }
                    }
                    let _ = request.respond(response);
                });
            }
        });
        Receiver { port, server, received, program }
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

    /// How many distinct events `path` answered with a 2xx.
    pub fn distinct_delivered(&self, path: &str) -> usize {
        self.program.lock().expect("lock").delivered.get(path).map_or(0, |s| s.len())
    }

    /// How many requests `path` got.
    pub fn count(&self, path: &str) -> usize {
        self.received.lock().expect("lock").iter().filter(|r| r.path == path).count()
    }

    pub fn requests(&self, path: &str) -> Vec<Received> {
        self.received.lock().expect("lock").iter().filter(|r| r.path == path).cloned().collect()
    }

    pub fn tags(&self, path: &str) -> Vec<String> {
        self.received.lock().expect("lock").iter().filter(|r| r.path == path).map(|r| r.tag.clone()).collect()
    }

    /// Answered deliveries per tag on `path` (only those answered 2xx count as received).
    pub fn tag_counts(&self, path: &str) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for r in self.received.lock().expect("lock").iter().filter(|r| r.path == path && (200..300).contains(&r.status))
        {
            *counts.entry(r.tag.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// Waits until `path` got at least `n` requests.
    pub fn wait_count(&self, path: &str, n: usize, timeout: Duration) -> Vec<Received> {
        wait_for(timeout, &format!("{n} requests on {path}"), || {
            let got = self.requests(path);
            (got.len() >= n).then_some(got)
        })
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.unblock();
    }
}
