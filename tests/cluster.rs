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
//! Another test checks that API keys made, rotated and revoked on one node apply on every
//! node (`cluster/keys.rs`).
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

// The test's parts, a file each in tests/cluster/; each reads this file's imports and constants.
#[path = "cluster/checks.rs"]
mod checks;
#[path = "cluster/crm.rs"]
mod crm;
#[path = "cluster/forwarded.rs"]
mod forwarded;
#[path = "cluster/keys.rs"]
mod keys;
#[path = "cluster/nodes.rs"]
mod nodes;
#[path = "cluster/pause.rs"]
mod pause;
#[path = "cluster/rebalance.rs"]
mod rebalance;
#[path = "cluster/retention.rs"]
mod retention;
#[path = "cluster/scenario.rs"]
mod scenario;

use checks::*;
use crm::*;
use forwarded::forwarded_scenario;
use keys::keys_scenario;
use nodes::*;
use pause::{a_holds_a_target_b_is_up, pause_scenario};
use rebalance::rebalance_scenario;
use retention::retention_scenario;
use scenario::*;

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

/// API keys made, rotated and revoked on any node apply on every node (within a bound), two
/// made at once on two nodes are both kept, and a restart neither loses nor gains any
/// (`cluster/keys.rs`).
#[test]
fn api_keys_changed_on_any_node_apply_on_every_node() {
    Cluster::start().run(keys_scenario);
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

/// `/readyz` says whether the cluster can take writes, on a node nobody posts to as well: 503
/// while two NATS servers of three are down (no quorum: every ingest would be 503), 200 again
/// once they are back. Before, it said ready until the node's own next publish failed.
#[test]
fn readyz_follows_the_nats_quorum_on_a_node_nobody_posts_to() {
    Cluster::start().run(|cluster| {
        let env = cluster.env();
        cluster.nodes.push(Node::start("crmhook-ready", &env, cluster.logs.path()));
        let readyz = cluster.nodes[0].server.url("/readyz");
        let status = || support::http("GET", &readyz, &[], None).status;
        assert_eq!(status(), 200);
        cluster.nats.kill(0);
        cluster.nats.kill(1);
        phase("killed two NATS servers of three");
        wait_for(Duration::from_secs(30), "/readyz 503 without a quorum", || (status() == 503).then_some(()));
        // It says why: the cluster's log, not a disk (it said "disk full or I/O error").
        let answer = support::http("GET", &readyz, &[], None);
        assert!(answer.text.contains("no NATS quorum"), "{}", answer.text);
        phase("/readyz answers 503");
        cluster.nats.restart(0).expect("restart nats 0");
        cluster.nats.restart(1).expect("restart nats 1");
        wait_for(Duration::from_secs(90), "/readyz 200 with the quorum back", || (status() == 200).then_some(()));
        phase("/readyz answers 200 again");
    });
}

/// A node stopped (SIGSTOP) for longer than the lease TTL, then continued, while another node
/// took its target: it delivers nothing after it is continued (`cluster/pause.rs`).
#[test]
fn a_node_paused_past_the_lease_ttl_delivers_nothing_once_continued() {
    Cluster::single().run(pause_scenario);
}

/// A replay asked of a node that does not deliver the target is forwarded to the one that
/// does with the caller's address, which that node's audit trail names (`cluster/forwarded.rs`).
#[test]
fn a_forwarded_request_names_its_caller_on_the_node_that_makes_it() {
    Cluster::single().run(forwarded_scenario);
}

/// Retention is an entry of the log, applied by every copy (`cluster/retention.rs`).
#[test]
fn retention_removes_the_same_events_from_every_copy() {
    Cluster::single().run(retention_scenario);
}

/// A node that joins takes its share of the targets, one lease a round, and the moves repeat
/// no delivery (`cluster/rebalance.rs`).
#[test]
fn a_node_that_joins_takes_its_share_of_the_targets_without_repeats() {
    Cluster::single().run(rebalance_scenario);
}

/// A node whose start fails after it joined the cluster (here its data dir is writable by
/// others, which the server refuses as it opens it; a data dir that is a file is refused before
/// the join since 2026-12-07) says why and exits with status 2. It used to panic on the way out instead ("Cannot drop a runtime in a
/// context where blocking is not allowed": the cluster's NATS runtime was dropped inside the
/// server's async context), which hid the reason.
#[test]
fn a_node_whose_start_fails_says_why_and_exits_without_a_panic() {
    let nats = NatsCluster::start(1).expect("a nats-server");
    let dir = tempfile::tempdir().expect("tempdir");
    let not_a_dir = dir.path().join("db");
    std::fs::create_dir(&not_a_dir).expect("mkdir");
    std::fs::set_permissions(&not_a_dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).expect("chmod");
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
    assert!(text.contains("is writable by its group or by others"), "{text}");
    assert!(!not_a_dir.join("crmhook.lock").exists(), "the refused start took its lock file back");
}

/// The NATS nodes holding the log stream's (first) consumer and leading the stream, from `/jsz`.
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
        Cluster::on(NatsCluster::start(3).expect("a 3-node JetStream cluster"))
    }

    /// One NATS server (replicas 1: for what needs nodes, not a quorum), none of crmhook yet.
    fn single() -> Cluster {
        Cluster::on(NatsCluster::start(1).expect("a nats-server"))
    }

    fn on(nats: NatsCluster) -> Cluster {
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
