//! `crmhook-bench cluster`: cluster mode (issue 16) in one run, on one 3-node JetStream cluster
//! (`crmhook-natsbox`, `sync_interval: always`) started for it:
//!
//! 1. the bare limit: a raw JetStream publish (each publisher awaiting the stream's
//!    acknowledgement, as crmhook's ingest does) and consume of the same bodies, on the same
//!    cluster (`jetstream::bare_publish`);
//! 2. three crmhook nodes in cluster mode, the load spread over them (one connection to each in
//!    turn), one live target: the whole-system rows of `crmhook-bench system` (ingest/s,
//!    deliveries/s, ack and end-to-end latency, CPU per event summed over the three nodes);
//! 3. the same rows against one single-node crmhook on its embedded store.
//!
//! Everything runs on the same machine: three NATS servers, three crmhook nodes, the load and
//! the receiver share its cores, so the ratios are what this machine gives, not a cluster of
//! machines.

use std::time::Duration;

use serde_json::{json, Value};

use crate::soak::Server;
use crate::system::{measure_on, Mode, Receiver, Row, Via};

const KEY_FILE: &str = "cluster.key";

pub fn run(seconds: u64, offered: &[String], connections: usize) -> anyhow::Result<Value> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let duration = Duration::from_secs(seconds);
    let modes = Mode::parse_all(offered)?;
    let nats = crmhook_natsbox::NatsCluster::start(3)?;
    let urls = nats.urls();
    println!("cluster mode: 3 NATS servers (sync_interval: always), {seconds} s per row, on this one machine");

    let bare = crate::jetstream::bare_publish(&urls, &crate::bodies(1), connections, seconds as f64)?;
    println!(
        "bare JetStream, {connections} publishers: {:.0} publish/s (ack p50 {:.2} ms, p99 {:.2} ms), {:.0} consume/s",
        bare.publish_per_s, bare.ack_p50_ms, bare.ack_p99_ms, bare.consume_per_s
    );

    let rcv = Receiver::start()?;
    let dir = tempfile::tempdir()?;
    let env = || -> Vec<(String, String)> {
        vec![
            ("CRMHOOK_CLUSTER".into(), urls.clone()),
            ("CRMHOOK_CLUSTER_MONITOR".into(), nats.monitor_urls().join(",")),
            ("CRMHOOK_KEY_FILE".into(), dir.path().join(KEY_FILE).display().to_string()),
            ("CRMHOOK_CLUSTER_LEASE_TTL_MS".into(), "2000".into()),
        ]
    };
    let nodes: Vec<Server> = (0..3)
        .map(|i| {
            let node_dir = dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&node_dir)?;
            Server::start_with(&node_dir, env())
        })
        .collect::<anyhow::Result<_>>()?;
    let cluster: Vec<&Server> = nodes.iter().collect();
    let single_dir = tempfile::tempdir()?;
    let single = Server::start(single_dir.path())?;

    println!(
        "{:>9} {:>7} | {:>9} {:>9} | {:>28} | {:>22} | {:>8} {:>5} | {:>8}",
        "crmhook",
        "offered",
        "ingest/s",
        "deliv/s",
        "ack ms p50/p99/p99.9/max",
        "e2e ms p50/p99/max",
        "cpu ms/ev",
        "cores",
        "÷bare pub"
    );
    let mut rows = Vec::new();
    for &mode in &modes {
        for (name, servers) in [("cluster", cluster.as_slice()), ("single", std::slice::from_ref(&&single))] {
            let r = measure_on(servers, &rcv, name, 1, mode, duration, Via::Api)?;
            print_row(name, &r, bare.publish_per_s);
            rows.push(row_json(name, &r, bare.publish_per_s));
        }
    }
    Ok(json!({
        "benchmark": "cluster",
        "seconds": seconds,
        "bare_jetstream": bare.json(),
        "rows": rows,
    }))
}

fn print_row(name: &str, r: &Row, bare_publish: f64) {
    println!("{:>9} {} | {:>7.0}%", name, r.figures(), r.ingest_per_s / bare_publish * 100.0);
    r.print_shortfall();
}

fn row_json(name: &str, r: &Row, bare_publish: f64) -> Value {
    let mut row = r.json();
    row["crmhook"] = json!(name);
    row["ingest_over_bare_publish"] = json!(r.ingest_per_s / bare_publish);
    row
}
