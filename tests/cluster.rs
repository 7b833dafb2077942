//! Cluster mode under failure (issue 16, "Done means"): three `nats-server` nodes in a
//! JetStream cluster (`crmhook-natsbox`, `sync_interval: always`) and three crmhook nodes
//! (`serve --cluster` with the three NATS URLs, `cluster_monitor` set, a 2 s lease TTL), all on
//! 127.0.0.1. A CRM (the simulator's MAIA posts, round-robin over the three nodes, ~150 events
//! per second) posts while one crmhook node is killed with SIGKILL (the one delivering the
//! targets) and then one NATS node (the log stream's leader); both are started again later.
//!
//! Checked at the end:
//! - every acknowledged event (a 200 from `/in/{src}` with its `evt_` id) is delivered at least
//!   once to the ordered and to the unordered target (0 lost), and so is every other event the
//!   log holds;
//! - the ordered target's receiver sees log order (the rule is written at [`order_check`]);
//! - the retry that was pending at the kill (a marked event its receiver failed three times) is
//!   made by another node on schedule, and ends delivered;
//! - duplicates are counted and printed, not asserted to be zero;
//! - every node answers `GET /v1/events/{id}` for events other nodes acknowledged, and
//!   `GET /v1/targets/{id}/deliveries`;
//! - nothing is logged twice: the log holds each acknowledged event once, with the seq it was
//!   acknowledged with, and nothing that was not posted (a post that got no 2xx may or may not
//!   be in it: counted apart);
//! - a node that is up answers every ingest within MAIA's 10 s per try (503 is allowed while the
//!   stream elects a leader; the CRM then tries the next node).
//!
//! A second test is the smallest reproduction of a stall the first one met about every other
//! run before the reader's watchdog (`crmhook-cluster`'s `apply.rs`): a node whose NATS server
//! died stopped applying the log for 45 to 75 s.
//!
//! The nodes' logs go to files in a temporary directory; on failure the cluster's state (each
//! node's `GET /v1/cluster`, each NATS server's view of the streams), the logs' tails (the NATS
//! servers' too) are printed and the directory is kept (`CRMHOOK_CLUSTER_TEST_KEEP_LOGS=1` keeps
//! it in any case).

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crmhook_crmsim::{maia as maia_crm, Options};
use crmhook_natsbox::NatsCluster;
use serde_json::{json, Value};
use support::*;

/// `cluster_lease_ttl_ms`: a dead node's targets move after this.
const LEASE_TTL: Duration = Duration::from_millis(2000);
/// The retry target's schedule.
const RETRY_SCHEDULE_MS: [u64; 3] = [1000, 2000, 4000];
/// The failed attempts of the marked event before its receiver answers 200.
const RETRY_FAILURES: usize = 3;
/// How late the retry may come past its due time on top of the lease TTL: a lease round (a
/// fifth of the TTL), the new owner's start of the target, and a loaded 2-core machine.
const RETRY_MARGIN: Duration = Duration::from_secs(3);
/// The schedule's jitter (±20%, `crmhook_core::retry::JITTER`).
const JITTER: f64 = 0.2;
/// Events per second, all nodes together.
const RATE: f64 = 150.0;
const LOAD_THREADS: usize = 8;
const MAIA_SECRET: &str = "cluster-test-maia-secret-5d1e";
/// The paths the receiver serves, one per target.
const ORDERED: &str = "/ordered";
const UNORDERED: &str = "/unordered";
const RETRY: &str = "/retry";
/// The marked event's sessionId (its tag at the receiver).
const MARK: &str = "mark-retry";

// ---- the crmhook nodes ----------------------------------------------------------------------

/// A crmhook node: `serve --cluster` on a fixed port (so that it keeps its URL, which the other
/// nodes know it by, across a restart), its own data dir, its log in a file.
struct Node {
    name: String,
    port: u16,
    log: PathBuf,
    /// The child and its data dir, with the support helpers (`admin`, `wire`, …).
    server: Server,
}

impl Node {
    fn start(name: &str, env: &[(String, String)], logs: &Path) -> Node {
        let port = free_port();
        let mut env = env.to_vec();
        env.push(("CRMHOOK_CLUSTER_ADVERTISE".into(), format!("http://127.0.0.1:{port}")));
        let server = Server {
            dir: tempfile::tempdir().expect("tempdir"),
            env,
            wrapper: String::new(),
            child: None,
            base: String::new(),
            stdout: Arc::default(),
        };
        let mut node = Node { name: name.to_owned(), port, log: logs.join(format!("{name}.log")), server };
        node.spawn();
        node
    }

    /// Starts the binary (again) on the node's port and data dir; waits for `listening on`
    /// (which a cluster node prints once its copy has caught up with the stream).
    fn spawn(&mut self) {
        assert!(self.server.child.is_none(), "{} is running", self.name);
        let mut log = File::options().create(true).append(true).open(&self.log).expect("log file");
        writeln!(log, "--- cluster test: starting {} on 127.0.0.1:{} ---", self.name, self.port).expect("log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_crmhook"));
        cmd.arg("serve")
            .arg("--bind")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(self.server.data_dir());
        cmd.current_dir(self.server.dir.path()).env("NO_COLOR", "1");
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CRMHOOK_") || k == "RUST_LOG") {
            cmd.env_remove(k);
        }
        for (k, v) in &self.server.env {
            cmd.env(k, v);
        }
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log).spawn().expect("crmhook runs");
        let rx = follow_stdout(&mut child, self.server.stdout.clone());
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => {
                assert_eq!(addr, format!("127.0.0.1:{}", self.port), "{} listens where asked", self.name);
                self.server.base = format!("http://{addr}");
                self.server.child = Some(child);
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{} did not print `listening on` ({e}); its log:\n{}", self.name, tail(&self.log, 40));
            }
        }
    }

    fn kill9(&mut self) {
        self.server.kill9();
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn ingest_url(&self, src: &str) -> String {
        format!("{}/in/{src}", self.url())
    }

    /// `GET /v1/cluster`.
    fn cluster(&self) -> Value {
        let r = self.server.admin("GET", "/v1/cluster", None);
        assert_eq!(r.status, 200, "{} GET /v1/cluster: {}", self.name, r.text);
        r.json()
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("address").port()
}

/// The last `lines` lines of a file ("" if unreadable).
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Who delivers `target` according to `view` (a `GET /v1/cluster` answer): the node's URL.
fn owner_url(view: &Value, target: &str) -> Option<String> {
    view["nodes"].as_array()?.iter().find_map(|n| {
        let holds = n["targets"].as_array()?.iter().any(|t| t.as_str() == Some(target));
        holds.then(|| n["url"].as_str().map(str::to_owned)).flatten()
    })
}

// ---- the CRM --------------------------------------------------------------------------------

/// What became of one event the CRM posted.
#[derive(Debug, Clone)]
struct Posted {
    tag: String,
    /// The acknowledgement (`id`, `seq`) and the node that gave it.
    acked: Option<(String, u64, usize)>,
    /// When the acknowledgement came.
    acked_at: Option<Instant>,
    /// Tries not answered (connection refused, reset, timed out).
    unanswered: usize,
    /// Tries answered 503.
    unavailable: usize,
    /// Tries answered otherwise (neither 200 nor 503).
    other: usize,
    /// The acknowledgement said `duplicates: 1`: an earlier try that got no 200 was logged.
    duplicate_ack: bool,
    /// The last failed try, in words.
    last_failure: String,
}

/// The CRM's tries per node: answered 200, answered 503, answered otherwise, refused (no
/// answer within a second), timed out (no answer at all).
type Tries = Arc<[[AtomicUsize; 5]; 3]>;

/// The CRM's posts, from several threads, paced at [`RATE`], round-robin over the nodes.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    acked_by: Arc<[AtomicUsize; 3]>,
    tries: Tries,
    posted: Arc<Mutex<Vec<Posted>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(urls: [String; 3]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let acked_by: Arc<[AtomicUsize; 3]> = Arc::default();
        let tries: Tries = Arc::default();
        let posted = Arc::new(Mutex::new(Vec::new()));
        let next = Arc::new(AtomicUsize::new(0));
        let urls = Arc::new(urls);
        let start = Instant::now();
        let threads = (0..LOAD_THREADS)
            .map(|_| {
                let (stop, acked, acked_by, posted, next, urls) =
                    (stop.clone(), acked.clone(), acked_by.clone(), posted.clone(), next.clone(), urls.clone());
                let tries = tries.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let due = start + Duration::from_secs_f64(i as f64 / RATE);
                        if let Some(ahead) = due.checked_duration_since(Instant::now()) {
                            // Pacing the load (the CRM's rate), not waiting for anything.
                            std::thread::sleep(ahead);
                        }
                        let tag = format!("ld{i:06}");
                        let p = post_any(&urls, i % 3, &tag, &load_event(i, &tag), &tries);
                        if let Some((_, _, node)) = p.acked {
                            acked.fetch_add(1, Ordering::SeqCst);
                            acked_by[node].fetch_add(1, Ordering::SeqCst);
                        }
                        posted.lock().expect("lock").push(p);
                    }
                })
            })
            .collect();
        Load { stop, acked, acked_by, tries, posted, threads }
    }

    fn acked(&self) -> usize {
        self.acked.load(Ordering::SeqCst)
    }

    fn acked_by(&self, node: usize) -> usize {
        self.acked_by[node].load(Ordering::SeqCst)
    }

    /// The tries so far, per node.
    fn tries(&self) -> String {
        let names = ["200", "503", "other", "refused", "timed out"];
        (0..3)
            .map(|node| {
                let counts: Vec<String> =
                    (0..5).map(|k| format!("{} {}", self.tries[node][k].load(Ordering::SeqCst), names[k])).collect();
                format!("node {node}: {}", counts.join(", "))
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Waits until `n` more events than `from` are acknowledged (by `node` alone when given);
    /// if they are not, panics with `what` and the tries per node.
    fn wait_acked(&self, node: Option<usize>, from: usize, n: usize, timeout: Duration, what: &str) -> usize {
        let count = || node.map_or_else(|| self.acked(), |i| self.acked_by(i));
        let deadline = Instant::now() + timeout;
        loop {
            let now = count();
            if now >= from + n {
                return now;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}: {} of {n}; the CRM's tries so far: {}",
                now - from,
                self.tries()
            );
            // The CRM's threads signal nothing: the count is polled.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(mut self) -> Vec<Posted> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            t.join().expect("a load thread panicked");
        }
        std::mem::take(&mut *self.posted.lock().expect("lock"))
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A MAIA event with recordId `tag`.
fn load_event(i: usize, tag: &str) -> Vec<u8> {
    let name = if i.is_multiple_of(2) { "crm_field_update" } else { "crm_record_created" };
    let mut ev: Value = serde_json::from_str(&sample(name)).expect("sample is JSON");
    ev["recordId"] = Value::String(tag.to_owned());
    serde_json::to_vec(&ev).expect("json")
}

/// Posts `body` as MAIA does (one try each) to the nodes in turn from `first`, as a CRM behind a
/// load balancer would: a node that does not answer 200 (killed, or its log not reachable) is
/// followed by the next; three rounds at most. A retry of the same bytes is recognised by its
/// body hash on whichever node takes it.
fn post_any(urls: &[String; 3], first: usize, tag: &str, body: &[u8], tries: &Tries) -> Posted {
    let one_try = Options { tries: 1, timeout: Duration::from_secs(10), pause: Duration::ZERO };
    let mut posted = Posted {
        tag: tag.to_owned(),
        acked: None,
        acked_at: None,
        unanswered: 0,
        unavailable: 0,
        other: 0,
        duplicate_ack: false,
        last_failure: String::new(),
    };
    for k in 0..9 {
        let node = (first + k) % 3;
        let report = maia_crm::post_with(&urls[node], MAIA_SECRET, body, &one_try);
        let kind = match (report.last_status(), report.tries.last().map(|t| t.elapsed)) {
            (Some(200), _) => 0,
            (Some(503), _) => 1,
            (Some(_), _) => 2,
            (None, Some(took)) if took < Duration::from_secs(1) => 3,
            (None, _) => 4,
        };
        tries[node][kind].fetch_add(1, Ordering::SeqCst);
        if report.last_status() == Some(200) {
            let ack = report.last_body_json().unwrap_or(Value::Null);
            let event = &ack["events"][0];
            if let (Some(id), Some(seq)) = (event["id"].as_str(), event["seq"].as_u64()) {
                assert_eq!(ack["rejected"].as_u64(), Some(0), "{tag} quarantined: {ack}");
                posted.duplicate_ack = ack["duplicates"].as_u64() == Some(1);
                posted.acked = Some((id.to_owned(), seq, node));
                posted.acked_at = Some(Instant::now());
                return posted;
            }
        }
        match report.last_status() {
            None => posted.unanswered += 1,
            Some(503) => posted.unavailable += 1,
            Some(_) => posted.other += 1,
        }
        posted.last_failure = format!("node {node}: {report}");
        if k % 3 == 2 {
            // A round of the three nodes failed: the client's back-off before the next.
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    posted
}

// ---- the checks -----------------------------------------------------------------------------

/// Every event in `node`'s log, through `GET /v1/events?limit=1000` pages.
fn log_events(node: &Node) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let r = node.server.admin("GET", &format!("/v1/events?limit=1000&after={after}"), None);
        assert_eq!(r.status, 200, "GET /v1/events on {}: {}", node.name, r.text);
        let page = r.json();
        out.extend(page["events"].as_array().cloned().unwrap_or_default());
        match page["next_after"].as_u64() {
            Some(next) => after = next,
            None => return out,
        }
    }
}

/// The tag of a logged event (its recordId, or sessionId).
fn logged_tag(e: &Value) -> String {
    let p = &e["payload"];
    p["recordId"].as_str().or(p["sessionId"].as_str()).unwrap_or_default().to_owned()
}

/// Waits (on the receiver's arrivals) until `path` answered each of `tags` with a 2xx; answers
/// the tags still missing at `timeout` (none: all delivered).
fn wait_all_delivered(rcv: &Receiver, path: &str, tags: &HashSet<String>, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut missing = tags.clone();
    let mut seen = 0;
    loop {
        // `holds_for` returns false at the arrival that delivers the last one missing; true
        // after a second without it, to look at the clock.
        let period = deadline.saturating_duration_since(Instant::now()).min(Duration::from_secs(1));
        let still = rcv.holds_for(period, |got| {
            for r in &got[seen..] {
                if r.path == path && (200..300).contains(&r.status) {
                    missing.remove(&r.tag);
                }
            }
            seen = got.len();
            !missing.is_empty()
        });
        if !still || Instant::now() >= deadline {
            let mut left: Vec<String> = missing.into_iter().collect();
            left.sort();
            return left;
        }
    }
}

/// Deliveries answered 2xx per tag on `path`; answers (distinct events, arrivals, duplicates).
fn duplicates(rcv: &Receiver, path: &str) -> (usize, usize, usize) {
    let counts = rcv.tag_counts(path);
    let arrivals: usize = counts.values().sum();
    (counts.len(), arrivals, arrivals - counts.len())
}

/// What the ordered target's receiver saw.
#[derive(Debug, Default)]
struct Order {
    arrivals: usize,
    /// Arrivals of an event not seen before, each after every earlier arrival's seq.
    in_order: usize,
    /// Arrivals of an event already delivered (at-least-once after a failover).
    repeats: usize,
    /// Arrivals of an event not seen before, after one with a higher seq: order broken.
    breaks: Vec<String>,
    /// Arrivals whose `webhook-id` is not in the log.
    unknown: Vec<String>,
}

/// The ordered target's rule, as its receiver can check it. Let `s_1, s_2, …` be the seqs of
/// the events the receiver got, in arrival order (an event's seq is its position in the log,
/// found from its `webhook-id`, the event's id, through the log's listing). Each `s_i` must be
/// either
/// - greater than every `s_j` before it (`j < i`): the next event in log order, or
/// - equal to some `s_j` before it: a repeat of an event already delivered, which at-least-once
///   allows (the node that takes the target after a crash starts from the log's cursor, so the
///   event in flight at the crash, or a few before it, can come again).
///
/// An event arriving for the first time after an event with a higher seq is an order break.
/// With "0 lost" this means the receiver's first arrivals of the events are in log order.
fn order_check(got: &[Received], seq_of: &HashMap<String, u64>) -> Order {
    let mut order = Order::default();
    let mut seen = HashSet::new();
    let mut high = 0;
    for r in got.iter().filter(|r| r.path == ORDERED) {
        order.arrivals += 1;
        let id = r.header("webhook-id");
        let Some(&seq) = seq_of.get(id) else {
            order.unknown.push(format!("{id} ({})", r.tag));
            continue;
        };
        if seen.contains(&seq) {
            order.repeats += 1;
        } else if seq > high {
            order.in_order += 1;
        } else {
            order.breaks.push(format!("seq {seq} ({}) first arrived after seq {high}", r.tag));
        }
        seen.insert(seq);
        high = high.max(seq);
    }
    order
}

/// `2026-12-03T07:51:17.591Z` as Unix milliseconds.
fn rfc3339_ms(s: &str) -> u64 {
    let num = |range: std::ops::Range<usize>| -> i64 {
        s.get(range).and_then(|t| t.parse().ok()).unwrap_or_else(|| panic!("not RFC 3339: {s}"))
    };
    let (y, m, d) = (num(0..4), num(5..7), num(8..10));
    let (hh, mm, ss) = (num(11..13), num(14..16), num(17..19));
    let ms = if s.as_bytes().get(19) == Some(&b'.') { num(20..23) } else { 0 };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    (((days * 24 + hh) * 60 + mm) * 60 + ss) as u64 * 1000 + ms as u64
}

/// The marked event's delivery to the retry target in `view` (`GET /v1/events/{id}`).
fn retry_delivery<'a>(view: &'a Value, target: &str) -> Option<&'a Value> {
    view["deliveries"].as_array()?.iter().find(|d| d["target_id"].as_str() == Some(target))
}

// ---- the test -------------------------------------------------------------------------------

struct Cluster {
    nats: NatsCluster,
    nodes: Vec<Node>,
    logs: tempfile::TempDir,
}

#[test]
fn three_nodes_lose_nothing_when_a_node_and_a_nats_server_die_under_load() {
    let begun = Instant::now();
    Cluster::start().run(|cluster| scenario(cluster, begun));
}

/// How soon a node must answer an ingest after one NATS server of three died: the log
/// stream's leader election (a few seconds) and a margin.
const INGEST_AFTER_NATS_LOSS: Duration = Duration::from_secs(20);

/// The smallest reproduction of the stall the test above can meet: one crmhook node; the NATS
/// server holding the node's reader of the log (its ordered consumer, R1, on one server) is
/// killed; an event is then posted to the node. The other two servers keep the stream's quorum,
/// so the node should answer within a leader election. Before the reader's watchdog it answered
/// only once the client noticed its reader was gone (two missed idle heartbeats of 15 s in
/// async-nats, then a recreate: 45 to 75 s), its copy applying nothing meanwhile.
#[test]
fn a_node_answers_an_ingest_soon_after_the_nats_server_holding_its_reader_dies() {
    Cluster::start().run(|cluster| {
        let env = cluster.env();
        cluster.nodes.push(Node::start("crmhook-solo", &env, cluster.logs.path()));
        let node = &cluster.nodes[0].server;
        node.post_ok(&maia("crm_field_update", json!({})));
        let (reader, leader) =
            wait_for(Duration::from_secs(10), "the log stream's consumer", || log_consumer_host(&cluster.nats));
        let (reader_name, leader_name) =
            (cluster.nats.server_name(reader).to_owned(), cluster.nats.server_name(leader).to_owned());
        cluster.nats.kill(reader);
        phase(&format!(
            "killed nats {reader_name}, which holds the node's reader (the stream's leader: {leader_name})"
        ));
        let killed = Instant::now();
        let body = serde_json::to_vec(&maia("crm_field_update", json!({}))).expect("json");
        // A 503 (the node's connection to NATS was on the dead server, or the stream is between
        // leaders) is an answer a CRM retries after `Retry-After`: so does this test, within the
        // bound; what must not happen is no answer at all.
        let status = loop {
            let answer = ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(150))
                .build()
                .post(&node.url("/v1/events"))
                .set("Authorization", &format!("Bearer {INGEST}"))
                .set("Content-Type", "application/json")
                .send_bytes(&body);
            let status = match &answer {
                Ok(r) => r.status().to_string(),
                Err(ureq::Error::Status(code, _)) => code.to_string(),
                Err(e) => format!("no answer ({e})"),
            };
            if status != "503" || killed.elapsed() >= INGEST_AFTER_NATS_LOSS {
                break status;
            }
            std::thread::sleep(Duration::from_secs(1));
        };
        let took = killed.elapsed();
        phase(&format!("the ingest after the kill answered {status} after {} ms", took.as_millis()));
        assert!(
            status == "202" && took <= INGEST_AFTER_NATS_LOSS,
            "an ingest after NATS {reader_name} (holding the node's reader) died answered {status} after {} ms \
             (bound {} ms)",
            took.as_millis(),
            INGEST_AFTER_NATS_LOSS.as_millis()
        );
    });
}

/// The NATS nodes holding the log stream's (first) consumer and leading the stream, from `/jsz`.
/// A node whose start fails after it joined the cluster (here its data dir is a file) says why
/// and exits with status 2. It used to panic on the way out instead ("Cannot drop a runtime in a
/// context where blocking is not allowed": the cluster's NATS runtime was dropped inside the
/// server's async context), which hid the reason.
#[test]
fn a_node_whose_start_fails_says_why_and_exits_without_a_panic() {
    let nats = NatsCluster::start(1).expect("a nats-server");
    let dir = tempfile::tempdir().expect("tempdir");
    let not_a_dir = dir.path().join("db");
    std::fs::write(&not_a_dir, b"not a data dir").expect("file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crmhook"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CRMHOOK_") || k == "RUST_LOG") {
        cmd.env_remove(k);
    }
    let mut child = cmd
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(&not_a_dir)
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .env("CRMHOOK_ADMIN_TOKEN", ADMIN)
        .env("CRMHOOK_INGEST_TOKEN", INGEST)
        .env("CRMHOOK_CLUSTER", nats.urls())
        .env("CRMHOOK_CLUSTER_MONITOR", nats.monitor_urls().join(","))
        .env("CRMHOOK_CLUSTER_REPLICAS", "1")
        .env("CRMHOOK_KEY_FILE", dir.path().join("cluster.key"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("crmhook runs");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut std::io::BufReader::new(stderr), &mut text);
        let _ = tx.send(text);
    });
    // Its stderr closes when it exits.
    let text = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| {
        let _ = child.kill();
        panic!("the node did not exit within 60 s")
    });
    let status = child.wait().expect("wait");
    assert!(!text.contains("panicked"), "{text}");
    assert_eq!(status.code(), Some(2), "{text}");
    assert!(text.contains("joined the cluster"), "the start failed after joining: {text}");
}

fn log_consumer_host(nats: &NatsCluster) -> Option<(usize, usize)> {
    let index = |name: &str| (0..nats.nodes()).find(|&j| nats.server_name(j) == name);
    for i in (0..nats.nodes()).filter(|&i| nats.is_running(i)) {
        let Ok((200, body)) = nats.monitor_get(i, "/jsz?accounts=true&streams=true&consumers=true") else { continue };
        let jsz: Value = serde_json::from_str(&body).ok()?;
        for account in jsz["account_details"].as_array().into_iter().flatten() {
            for stream in account["stream_detail"].as_array().into_iter().flatten() {
                if stream["name"] != "crmhook-log" {
                    continue;
                }
                // A server lists the consumers it holds.
                let Some(consumer) = stream["consumer_detail"].as_array().and_then(|c| c.first()) else { continue };
                let reader = index(consumer["cluster"]["leader"].as_str()?)?;
                let leader = index(stream["cluster"]["leader"].as_str()?)?;
                return Some((reader, leader));
            }
        }
    }
    None
}

impl Cluster {
    /// Three NATS servers, none of crmhook yet.
    fn start() -> Cluster {
        let nats = NatsCluster::start(3).expect("a 3-node JetStream cluster");
        let logs = tempfile::Builder::new().prefix("crmhook-cluster-test").tempdir().expect("tempdir");
        eprintln!("cluster test: crmhook logs in {}, NATS logs in {}", logs.path().display(), nats.dir().display());
        Cluster { nats, nodes: Vec::new(), logs }
    }

    /// What every crmhook node of the cluster is started with (but its advertised URL).
    fn env(&self) -> Vec<(String, String)> {
        let key_file = self.logs.path().join("cluster.key");
        [
            ("CRMHOOK_ADMIN_TOKEN", ADMIN.to_owned()),
            ("CRMHOOK_INGEST_TOKEN", INGEST.to_owned()),
            ("CRMHOOK_ALLOW_PRIVATE_TARGETS", "true".to_owned()),
            ("CRMHOOK_CLUSTER", self.nats.urls()),
            ("CRMHOOK_CLUSTER_MONITOR", self.nats.monitor_urls().join(",")),
            ("CRMHOOK_CLUSTER_LEASE_TTL_MS", LEASE_TTL.as_millis().to_string()),
            ("CRMHOOK_KEY_FILE", key_file.display().to_string()),
            ("CRMHOOK_LOG", "info,actix_server=warn".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Runs `scenario`; on a panic prints the nodes' logs' tails and the cluster's state, keeps
    /// the logs, and panics again. `CRMHOOK_CLUSTER_TEST_KEEP_LOGS` keeps them in any case.
    fn run(mut self, scenario: impl FnOnce(&mut Cluster)) {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(&mut self)));
        let cluster = self;
        let keep = std::env::var_os("CRMHOOK_CLUSTER_TEST_KEEP_LOGS").is_some();
        if outcome.is_err() || keep {
            for i in 0..cluster.nats.nodes() {
                let name = cluster.nats.server_name(i).to_owned();
                let _ = std::fs::copy(cluster.nats.log_path(i), cluster.logs.path().join(format!("nats-{name}.log")));
            }
        }
        if let Err(panic) = outcome {
            eprintln!("===== the state at the failure =====\n{}", state(&cluster));
            for node in &cluster.nodes {
                eprintln!("===== {} ({}) log, last 80 lines =====\n{}", node.name, node.url(), tail(&node.log, 80));
            }
            for i in 0..cluster.nats.nodes() {
                let name = cluster.nats.server_name(i).to_owned();
                eprintln!("===== nats {name} log, last 30 lines =====\n{}", cluster.nats.log_tail(i, 30));
            }
            let kept = cluster.logs.keep();
            eprintln!("cluster test failed: the logs are kept in {}", kept.display());
            std::panic::resume_unwind(panic);
        }
        if keep {
            eprintln!("cluster test: the logs are kept in {}", cluster.logs.keep().display());
        }
    }
}

fn scenario(cluster: &mut Cluster, begun: Instant) {
    let env = cluster.env();

    let rcv = Receiver::start();
    let fails = [status(500); RETRY_FAILURES];
    rcv.program(RETRY, &fails, status(200));

    // Node A alone first: it makes the key file and the configuration, and, alone, takes every
    // target's lease (its share is all of them); nodes do not give targets to nodes that join
    // later. So killing A moves every target, the ordered one and the retrying one included.
    cluster.nodes.push(Node::start("crmhook-a", &env, cluster.logs.path()));
    let a = &cluster.nodes[0].server;
    let r = a.admin("POST", "/v1/sources", Some(&json!({"name": "MAIA", "kind": "maia", "maia_secret": MAIA_SECRET})));
    assert_eq!(r.status, 201, "POST /v1/sources: {}", r.text);
    let src = r.json()["id"].as_str().expect("source id").to_owned();
    let main_schedule = json!([200, 500, 1000, 2000, 4000, 8000, 8000]);
    let (ordered, _) = a.wire(
        &rcv.url(ORDERED),
        Some(json!({})),
        json!({"ordered": true, "retry_schedule_ms": main_schedule, "timeout_ms": 5000}),
    );
    let (unordered, _) =
        a.wire(&rcv.url(UNORDERED), Some(json!({})), json!({"retry_schedule_ms": main_schedule, "timeout_ms": 5000}));
    let (retry, _) = a.wire(
        &rcv.url(RETRY),
        Some(json!({"event_types": ["ai_pause"]})),
        json!({"retry_schedule_ms": RETRY_SCHEDULE_MS, "timeout_ms": 5000}),
    );
    let targets = [ordered.clone(), unordered.clone(), retry.clone()];
    wait_for(Duration::from_secs(20), "node A to hold the three leases", || {
        let view = cluster.nodes[0].cluster();
        assert_eq!(view["mode"], "cluster", "{view}");
        targets.iter().all(|t| owner_url(&view, t) == Some(cluster.nodes[0].url())).then_some(())
    });
    for name in ["crmhook-b", "crmhook-c"] {
        let node = Node::start(name, &env, cluster.logs.path());
        cluster.nodes.push(node);
    }
    wait_for(Duration::from_secs(20), "node A to see three nodes", || {
        (cluster.nodes[0].cluster()["nodes"].as_array().map_or(0, Vec::len) == 3).then_some(())
    });
    let setup = begun.elapsed();

    // The load, round-robin over the three nodes.
    let urls = [0, 1, 2].map(|i| cluster.nodes[i].ingest_url(&src));
    let load = Load::start(urls.clone());
    load.wait_acked(None, 0, 300, Duration::from_secs(30), "300 events acknowledged");

    // Who delivers what now, as node B sees it; the node to kill is the retry target's.
    let view = cluster.nodes[1].cluster();
    let index_of = |url: &str| cluster.nodes.iter().position(|n| n.url() == url);
    let owner =
        |t: &str| owner_url(&view, t).and_then(|u| index_of(&u)).unwrap_or_else(|| panic!("no owner of {t}: {view}"));
    let victim = owner(&retry);
    let ordered_owner = owner(&ordered);
    eprintln!(
        "cluster test: owners before the kill: ordered {}, unordered {}, retry {}",
        cluster.nodes[ordered_owner].name,
        cluster.nodes[owner(&unordered)].name,
        cluster.nodes[victim].name
    );
    let reader = (victim + 1) % 3;

    // The marked event: its receiver fails its first three attempts.
    let mut mark: Value = serde_json::from_str(&sample("ai_pause")).expect("sample");
    mark["sessionId"] = Value::String(MARK.into());
    let mark_body = serde_json::to_vec(&mark).expect("json");
    let report = maia_crm::post_with(&urls[reader], MAIA_SECRET, &mark_body, &Options { tries: 1, ..Options::maia() });
    assert_eq!(report.last_status(), Some(200), "the marked event: {report}");
    let mark_ack = report.last_body_json().expect("ack");
    let mark_id = mark_ack["events"][0]["id"].as_str().expect("id").to_owned();
    let mark_seq = mark_ack["events"][0]["seq"].as_u64().expect("seq");

    // Its third failed attempt arrives, and the pending retry is in the log (seen on another
    // node): then its node is killed.
    let failed = rcv.wait_count(RETRY, RETRY_FAILURES, Duration::from_secs(30));
    let last_failed = failed[RETRY_FAILURES - 1].clone();
    let due_ms = wait_for(Duration::from_secs(10), "the pending retry recorded", || {
        let view = cluster.nodes[reader].server.event(&mark_id);
        let d = retry_delivery(&view, &retry)?;
        let attempts = d["attempts"].as_array()?;
        let last = attempts.last()?;
        (attempts.len() == RETRY_FAILURES && last["result"] == "retrying")
            .then(|| last["next_attempt_at"].as_str().map(rfc3339_ms))
            .flatten()
    });
    let acked_at_kill = load.acked();
    let killed_at = Instant::now();
    let killed_wall_ms = now_ms();
    cluster.nodes[victim].kill9();
    phase(&format!(
        "killed {} (kill -9) with {acked_at_kill} events acknowledged, the retry due in {} ms",
        cluster.nodes[victim].name,
        due_ms as i64 - killed_wall_ms as i64
    ));

    // The lease moves; the retry is made by its new node, at its due time, and delivered.
    let (moved_after, new_owner) =
        wait_for(LEASE_TTL + RETRY_MARGIN + Duration::from_secs(5), "the leases to move", || {
            let view = cluster.nodes[reader].cluster();
            let urls: Vec<Option<String>> = targets.iter().map(|t| owner_url(&view, t)).collect();
            let moved = urls.iter().all(|u| u.as_ref().is_some_and(|u| *u != cluster.nodes[victim].url()));
            moved.then(|| (killed_at.elapsed(), urls[2].clone().unwrap_or_default()))
        });
    let next = rcv.wait_until(
        Duration::from_millis(due_ms.saturating_sub(now_ms())) + LEASE_TTL + RETRY_MARGIN + Duration::from_secs(10),
        "the retry's next attempt",
        |got| got.iter().filter(|r| r.path == RETRY).nth(RETRY_FAILURES).cloned(),
    );
    wait_for(Duration::from_secs(10), "the marked event delivered to the retry target", || {
        let view = cluster.nodes[reader].server.event(&mark_id);
        (retry_delivery(&view, &retry)?["status"] == "delivered").then_some(())
    });
    let since_failed = next.at.duration_since(last_failed.at);
    let late_ms = next.wall_ms as i64 - due_ms as i64;

    // One NATS server dies too (the log stream's leader), with crmhook node down still.
    let nats_victim = stream_leader(&cluster.nats).unwrap_or(1);
    let acked = load.acked();
    let nats_killed_at = Instant::now();
    cluster.nats.kill(nats_victim);
    phase(&format!("killed nats {} (kill -9) with {acked} events acknowledged", cluster.nats.server_name(nats_victim)));
    let acked =
        load.wait_acked(None, acked, 400, Duration::from_secs(60), "400 events acknowledged with a NATS node down");

    // Both back.
    phase(&format!(
        "restarting nats {} with {} events acknowledged",
        cluster.nats.server_name(nats_victim),
        load.acked()
    ));
    cluster.nats.restart(nats_victim).expect("the NATS node back");
    phase(&format!(
        "nats {} healthy; restarting {}",
        cluster.nats.server_name(nats_victim),
        cluster.nodes[victim].name
    ));
    cluster.nodes[victim].spawn();
    phase(&format!("{} listening with {} events acknowledged", cluster.nodes[victim].name, load.acked()));
    let by_victim = load.acked_by(victim);
    load.wait_acked(
        Some(victim),
        by_victim,
        100,
        Duration::from_secs(30),
        "100 events acknowledged by the restarted node",
    );
    load.wait_acked(None, acked, 600, Duration::from_secs(60), "600 events acknowledged since the NATS kill");
    let tries = load.tries();
    let timed_out: Vec<usize> = (0..3).map(|i| load.tries[i][4].load(Ordering::SeqCst)).collect();
    let posted = load.stop();
    phase("load stopped");
    let load_time = begun.elapsed() - setup;

    // ---- the figures ----
    let mut problems: Vec<String> = Vec::new();
    let mut acked_tags: HashMap<String, (String, u64, usize)> =
        posted.iter().filter_map(|p| p.acked.clone().map(|a| (p.tag.clone(), a))).collect();
    acked_tags.insert(MARK.into(), (mark_id.clone(), mark_seq, reader));
    let unacked: HashSet<String> = posted.iter().filter(|p| p.acked.is_none()).map(|p| p.tag.clone()).collect();
    let failed_tries = [
        posted.iter().map(|p| p.unanswered).sum::<usize>(),
        posted.iter().map(|p| p.unavailable).sum(),
        posted.iter().map(|p| p.other).sum(),
    ];
    if failed_tries[2] > 0 {
        problems.push(format!("{} ingest tries answered neither 200 nor 503", failed_tries[2]));
    }
    // A node that is up answers within MAIA's 10 s per try: at worst 503 while the stream elects
    // a leader (the publish's acknowledgement times out after 5 s).
    if timed_out.iter().any(|n| *n > 0) {
        problems.push(format!("ingest tries left unanswered for 10 s, per node: {timed_out:?}"));
    }
    // The longest time without an acknowledgement while the load ran, and when it began.
    let mut ack_times: Vec<Instant> = posted.iter().filter_map(|p| p.acked_at).collect();
    ack_times.sort();
    let (gap, gap_from) = ack_times
        .windows(2)
        .map(|w| (w[1] - w[0], w[0]))
        .max_by_key(|(gap, _)| *gap)
        .unwrap_or((Duration::ZERO, begun));
    let since = |at: Instant, event: Instant| at.checked_duration_since(event).map_or(-1, |d| d.as_millis() as i64);
    let duplicate_acks = posted.iter().filter(|p| p.duplicate_ack).count();
    for p in posted.iter().filter(|p| p.acked.is_none()).take(5) {
        eprintln!("cluster test: not acknowledged: {} ({})", p.tag, p.last_failure);
    }

    // The log, as node B's copy has it once it holds every acknowledged event.
    let reader_node = &cluster.nodes[reader];
    let log = wait_for(Duration::from_secs(30), "every acknowledged event in the reader's copy", || {
        let log = log_events(reader_node);
        let ids: HashSet<&str> = log.iter().filter_map(|e| e["id"].as_str()).collect();
        acked_tags.values().all(|(id, _, _)| ids.contains(id.as_str())).then_some(log)
    });
    let mut seq_of: HashMap<String, u64> = HashMap::new();
    let mut logged_per_tag: BTreeMap<String, usize> = BTreeMap::new();
    let mut logged_tags: HashSet<String> = HashSet::new();
    for e in &log {
        let id = e["id"].as_str().expect("id").to_owned();
        seq_of.insert(id, e["seq"].as_u64().expect("seq"));
        let tag = logged_tag(e);
        *logged_per_tag.entry(tag.clone()).or_default() += 1;
        logged_tags.insert(tag);
    }
    let twice: Vec<&String> = logged_per_tag.iter().filter(|(_, n)| **n > 1).map(|(t, _)| t).collect();
    if !twice.is_empty() {
        problems.push(format!("{} events logged more than once, e.g. {:?}", twice.len(), &twice[..twice.len().min(5)]));
    }
    for (tag, (id, seq, _)) in &acked_tags {
        if seq_of.get(id) != Some(seq) {
            problems.push(format!("{tag} acknowledged as {id} seq {seq}, logged with seq {:?}", seq_of.get(id)));
        }
    }
    let strangers: Vec<&String> =
        logged_tags.iter().filter(|t| !acked_tags.contains_key(*t) && !unacked.contains(*t)).collect();
    if !strangers.is_empty() {
        problems.push(format!("the log holds events nobody posted: {strangers:?}"));
    }
    let logged_unacked: HashSet<String> = unacked.intersection(&logged_tags).cloned().collect();

    // 0 lost: every acknowledged event delivered to both main targets; then the other events in
    // the log (posts that got no 200 but were logged) too.
    let acked_set: HashSet<String> = acked_tags.keys().cloned().collect();
    let mut lost = BTreeMap::new();
    for path in [ORDERED, UNORDERED] {
        let missing = wait_all_delivered(&rcv, path, &acked_set, Duration::from_secs(90));
        if !missing.is_empty() {
            problems.push(format!(
                "{path}: {} acknowledged events lost, e.g. {:?}",
                missing.len(),
                &missing[..missing.len().min(10)]
            ));
        }
        let missing_unacked = wait_all_delivered(&rcv, path, &logged_unacked, Duration::from_secs(20));
        if !missing_unacked.is_empty() {
            problems.push(format!("{path}: {} logged (unacknowledged) events not delivered", missing_unacked.len()));
        }
        lost.insert(path, missing.len());
    }

    // Order at the ordered target.
    let order = rcv.wait_until(Duration::ZERO, "the ordered target's arrivals", |got| Some(order_check(got, &seq_of)));
    if !order.breaks.is_empty() {
        problems.push(format!(
            "{} order breaks at {ORDERED}: {:?}",
            order.breaks.len(),
            &order.breaks[..order.breaks.len().min(10)]
        ));
    }
    if !order.unknown.is_empty() {
        problems.push(format!(
            "{ORDERED} got events the log does not hold: {:?}",
            &order.unknown[..order.unknown.len().min(10)]
        ));
    }

    // The retry: another node, no earlier than due (and than the schedule's delay with its
    // jitter, from the failed attempt), no later than due + the lease TTL + a margin; attempt 4.
    let schedule_min = Duration::from_millis((RETRY_SCHEDULE_MS[RETRY_FAILURES - 1] as f64 * (1.0 - JITTER)) as u64);
    if next.header("x-crmhook-attempt") != (RETRY_FAILURES + 1).to_string() {
        problems.push(format!("the retry after the kill is attempt {:?}", next.header("x-crmhook-attempt")));
    }
    if next.at < killed_at {
        problems.push("the retry's next attempt came before the kill".into());
    }
    if since_failed < schedule_min || late_ms < -5 {
        problems.push(format!(
            "the retry came early: {} ms after the failed attempt (schedule ≥ {} ms), {late_ms} ms from its due time",
            since_failed.as_millis(),
            schedule_min.as_millis()
        ));
    }
    if late_ms > (LEASE_TTL + RETRY_MARGIN).as_millis() as i64 {
        problems.push(format!(
            "the retry came {late_ms} ms after its due time (bound {} ms)",
            (LEASE_TTL + RETRY_MARGIN).as_millis()
        ));
    }
    if new_owner == cluster.nodes[victim].url() {
        problems.push("the retry target's lease did not move".into());
    }
    let retry_arrivals = rcv.count(RETRY);

    // Reads on any node: events acknowledged by each node, on each node; deliveries per target.
    let mut by_node: Vec<Option<&(String, u64, usize)>> = vec![None; 3];
    for a in acked_tags.values() {
        by_node[a.2].get_or_insert(a);
    }
    let mut reads = 0;
    for node in &cluster.nodes {
        for (id, seq, _) in by_node.iter().flatten() {
            let got = wait_for(Duration::from_secs(10), &format!("{id} on {}", node.name), || {
                let r = node.server.admin("GET", &format!("/v1/events/{id}"), None);
                (r.status == 200).then(|| r.json())
            });
            if got["seq"].as_u64() != Some(*seq) || got["deliveries"].as_array().map_or(0, Vec::len) == 0 {
                problems.push(format!("{} answers {id} with {got}", node.name));
            }
            reads += 1;
        }
        for t in &targets {
            let r = node.server.admin("GET", &format!("/v1/targets/{t}/deliveries?limit=10"), None);
            if r.status != 200 || r.json()["deliveries"].as_array().is_none_or(Vec::is_empty) {
                problems.push(format!("{} GET /v1/targets/{t}/deliveries: {} {}", node.name, r.status, r.text));
            }
            reads += 1;
        }
    }

    // Operators' requests on a node that does not deliver the target are forwarded to the one
    // that does: a redelivery of the marked event, then a replay of the retry target's delivered
    // deliveries (the marked event alone: the target takes `ai_pause` only), each answered with
    // what the owner queued and made there. The replay is asked the moment the redelivery
    // arrived: the owner waits for its record before it lists what is delivered.
    let view = cluster.nodes[reader].cluster();
    let retry_owner = owner_url(&view, &retry);
    let other = cluster.nodes.iter().position(|n| Some(n.url()) != retry_owner).expect("a node not delivering it");
    let marked = |rcv: &Receiver| rcv.requests(RETRY).iter().filter(|r| r.header("webhook-id") == mark_id).count();
    let asks = [
        (format!("/v1/events/{mark_id}/redeliver"), json!({"target_id": retry})),
        (format!("/v1/targets/{retry}/replay"), json!({"status": "delivered"})),
    ];
    for (path, body) in &asks {
        let before = marked(&rcv);
        let r = cluster.nodes[other].server.admin("POST", path, Some(body));
        if (r.status, r.json()["queued"].as_u64()) != (202, Some(1)) {
            problems.push(format!(
                "{} POST {path} (owner {retry_owner:?}): {} {}",
                cluster.nodes[other].name, r.status, r.text
            ));
            continue;
        }
        rcv.wait_until(Duration::from_secs(20), &format!("the marked event again after POST {path}"), |got| {
            (got.iter().filter(|r| r.path == RETRY && r.header("webhook-id") == mark_id).count() > before).then_some(())
        });
    }

    let (od, oa, odup) = duplicates(&rcv, ORDERED);
    let (ud, ua, udup) = duplicates(&rcv, UNORDERED);
    eprintln!(
        "cluster test: setup {:.1} s, load {:.1} s, total {:.1} s; posted {}, acked {} (by node {:?}), \
         unacked {} (of which logged {}), failed tries (unanswered, 503, other) {failed_tries:?}, acks of a retried post as duplicate {duplicate_acks}; \
         log holds {} events; lost: {lost:?}; longest time without an acknowledgement {} ms, from {} ({} ms after \
         the crmhook kill, {} ms after the NATS kill)",
        setup.as_secs_f64(),
        load_time.as_secs_f64(),
        begun.elapsed().as_secs_f64(),
        posted.len() + 1,
        acked_tags.len(),
        [0, 1, 2].map(|i| posted.iter().filter(|p| p.acked.as_ref().is_some_and(|a| a.2 == i)).count()),
        unacked.len(),
        logged_unacked.len(),
        log.len(),
        gap.as_millis(),
        clock(gap_from),
        since(gap_from, killed_at),
        since(gap_from, nats_killed_at),
    );
    eprintln!("cluster test: the CRM's tries: {tries}");
    eprintln!(
        "cluster test: {ORDERED}: {od} events, {oa} deliveries, {odup} duplicates; order: {} arrivals, {} in order, \
         {} repeats, {} breaks, {} unknown; {UNORDERED}: {ud} events, {ua} deliveries, {udup} duplicates",
        order.arrivals,
        order.in_order,
        order.repeats,
        order.breaks.len(),
        order.unknown.len()
    );
    eprintln!(
        "cluster test: retry: leases moved {} ms after the kill; attempt {} came {} ms after the failed attempt \
         (schedule {} ms ±20%), {late_ms} ms after its due time (bound {} ms), {retry_arrivals} attempts in all; \
         reads on every node: {reads}",
        moved_after.as_millis(),
        next.header("x-crmhook-attempt"),
        since_failed.as_millis(),
        RETRY_SCHEDULE_MS[RETRY_FAILURES - 1],
        (LEASE_TTL + RETRY_MARGIN).as_millis()
    );
    assert!(problems.is_empty(), "cluster test: {} problems:\n{}", problems.len(), problems.join("\n"));
}

/// Where each running node's copy is (`GET /v1/cluster`: applied, the nodes and their targets)
/// and what each running NATS server says of the log stream and its consumers (`/jsz`).
fn state(cluster: &Cluster) -> String {
    let mut out = String::new();
    for node in cluster.nodes.iter().filter(|n| n.server.child.is_some()) {
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(3)).build();
        let answer = agent
            .get(&node.server.url("/v1/cluster"))
            .set("Authorization", &format!("Bearer {ADMIN}"))
            .call()
            .map_err(|e| e.to_string())
            .and_then(|r| r.into_string().map_err(|e| e.to_string()));
        out.push_str(&format!("{} /v1/cluster: {}\n", node.name, answer.unwrap_or_else(|e| e)));
    }
    for i in 0..cluster.nats.nodes() {
        let name = cluster.nats.server_name(i);
        if !cluster.nats.is_running(i) {
            out.push_str(&format!("nats {name}: not running\n"));
            continue;
        }
        let jsz = cluster.nats.monitor_get(i, "/jsz?accounts=true&streams=true&consumers=true");
        let Ok((_, body)) = jsz else {
            out.push_str(&format!("nats {name}: /jsz: {jsz:?}\n"));
            continue;
        };
        let jsz: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        for account in jsz["account_details"].as_array().into_iter().flatten() {
            for stream in account["stream_detail"].as_array().into_iter().flatten() {
                let consumers: Vec<String> = stream["consumer_detail"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| {
                        format!(
                            "{} (leader {}, delivered {}, pending {})",
                            c["name"], c["cluster"]["leader"], c["delivered"]["stream_seq"], c["num_pending"]
                        )
                    })
                    .collect();
                out.push_str(&format!(
                    "nats {name}: stream {} leader {} last_seq {} consumers {consumers:?}\n",
                    stream["name"], stream["cluster"]["leader"], stream["state"]["last_seq"]
                ));
            }
        }
    }
    out
}

/// One line of the scenario's progress, with the time of day (UTC, as the nodes' logs have it).
fn phase(text: &str) {
    eprintln!("cluster test: {} {text}", clock(Instant::now()));
}

/// `at` as the time of day, UTC (`10:13:52.612`).
fn clock(at: Instant) -> String {
    let ms = (now_ms() - Instant::now().saturating_duration_since(at).as_millis() as u64) % 86_400_000;
    let (h, m, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    format!("{h:02}:{m:02}:{s:02}.{milli:03}")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The NATS node leading the log stream (`crmhook-log`), from a node's `/jsz`.
fn stream_leader(nats: &NatsCluster) -> Option<usize> {
    for i in 0..nats.nodes() {
        let Ok((200, body)) = nats.monitor_get(i, "/jsz?accounts=true&streams=true") else { continue };
        let jsz: Value = serde_json::from_str(&body).ok()?;
        for account in jsz["account_details"].as_array().into_iter().flatten() {
            for stream in account["stream_detail"].as_array().into_iter().flatten() {
                if stream["name"] == "crmhook-log" {
                    let leader = stream["cluster"]["leader"].as_str()?;
                    return (0..nats.nodes()).find(|&j| nats.server_name(j) == leader);
                }
            }
        }
    }
    None
}
