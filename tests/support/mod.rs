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

mod receiver;
pub mod tls;

pub use receiver::*;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const ADMIN: &str = "adm_test_0123456789abcdef0123456789";
pub const INGEST: &str = "ing_test_0123456789abcdef0123456789";

/// The value of one series in a Prometheus text scrape (`name{labels}` exactly as printed), 0
/// when absent.
pub fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(name_and_labels).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0.0)
}

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

/// One HTTP/1.1 request from the local address `from` (any of 127.0.0.0/8 reaches a server on
/// 127.0.0.1: a client other than the test's usual one), with exactly the headers given (no
/// `Host` is added: pass one) and `Connection: close`; any status is returned.
pub fn http_from(from: &str, method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Resp {
    use std::io::{Read, Write};
    use std::net::{IpAddr, SocketAddr};
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    let addr: SocketAddr = authority.parse().expect("a literal address and port");
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().expect("runtime");
    let stream = rt.block_on(async {
        let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }
            .expect("socket");
        socket.bind(SocketAddr::new(from.parse::<IpAddr>().expect("from"), 0)).expect("bind the client address");
        socket.connect(addr).await.expect("connect")
    });
    let mut stream = stream.into_std().expect("std stream");
    stream.set_nonblocking(false).expect("blocking");
    stream.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
    let body = body.unwrap_or_default();
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes).expect("write");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, text) = text.split_once("\r\n\r\n").expect("a response head");
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Resp { status, headers, text: text.to_owned() }
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
