//! Real nats-server processes: a 3-node JetStream cluster that replicates through a node's
//! kill and restart, and a single server whose file store survives a kill.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use async_nats::jetstream::{self, consumer, stream};
use crmhook_natsbox::{Error, NatsCluster, CLUSTER_NAME};
use futures_util::StreamExt;
use serde_json::Value;

fn json_get(cluster: &NatsCluster, i: usize, path: &str) -> anyhow::Result<Value> {
    let (status, body) = cluster.monitor_get(i, path)?;
    ensure!(status == 200, "GET {path} on node {i}: {status} {body}");
    Ok(serde_json::from_str(&body)?)
}

/// What `/varz` says of node `i`'s JetStream: enabled, synced on every write, its store in the
/// cluster's directory.
fn check_varz(cluster: &NatsCluster, i: usize) -> anyhow::Result<Value> {
    let varz = json_get(cluster, i, "/varz")?;
    let config = &varz["jetstream"]["config"];
    ensure!(config.is_object(), "node {i}: no jetstream.config in /varz: {varz}");
    // `sync_interval: always` shows as `sync_always: true` (the member is left out when false);
    // `sync_interval` keeps its default, 2 minutes in nanoseconds.
    ensure!(config["sync_always"] == Value::Bool(true), "node {i}: jetstream.config.sync_always is not true: {config}");
    let store = config["store_dir"].as_str().context("store_dir")?;
    ensure!(store.starts_with(&*cluster.dir().to_string_lossy()), "node {i}: store_dir {store}");
    ensure!(varz["server_name"] == cluster.server_name(i), "node {i}: server_name {}", varz["server_name"]);
    ensure!(varz["max_payload"] == 8 * 1024 * 1024, "node {i}: max_payload {}", varz["max_payload"]);
    Ok(varz)
}

async fn connect(cluster: &NatsCluster) -> anyhow::Result<jetstream::Context> {
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(cluster.client_urls())
        .await
        .context("connect to the cluster")?;
    Ok(jetstream::new(client))
}

/// Publishes with a message id and waits for the stream's acknowledgement, trying again (the
/// id deduplicates) until `deadline`: while a node is down the client may be reconnecting and a
/// stream leader being elected.
async fn publish(
    js: &jetstream::Context,
    subject: &str,
    id: &str,
    payload: &[u8],
    deadline: Instant,
) -> anyhow::Result<u64> {
    loop {
        let message = jetstream::message::PublishMessage::build().message_id(id).payload(payload.to_vec().into());
        let result = match js.send_publish(subject.to_owned(), message).await {
            Ok(ack) => ack.await.map_err(anyhow::Error::from),
            Err(e) => Err(e.into()),
        };
        match result {
            Ok(ack) => return Ok(ack.sequence),
            Err(e) if Instant::now() < deadline => eprintln!("publish {id}: {e}; trying again"),
            Err(e) => return Err(e.context(format!("publish {id}"))),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads `count` messages from a new durable pull consumer of `stream` (explicit acks) and
/// answers their payloads in stream order.
async fn read_all(js: &jetstream::Context, stream: &str, durable: &str, count: usize) -> anyhow::Result<Vec<Vec<u8>>> {
    let config = consumer::pull::Config {
        durable_name: Some(durable.to_owned()),
        ack_policy: consumer::AckPolicy::Explicit,
        ..Default::default()
    };
    // Tried again until a deadline: after a kill the client may still be reconnecting.
    let deadline = Instant::now() + Duration::from_secs(30);
    let consumer = loop {
        let result = match js.get_stream(stream).await {
            Ok(s) => s.create_consumer(config.clone()).await.map_err(anyhow::Error::from),
            Err(e) => Err(e.into()),
        };
        match result {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => eprintln!("consumer on {stream}: {e}; trying again"),
            Err(e) => return Err(e.context(format!("consumer on {stream}"))),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut messages = consumer.messages().await?;
    let mut payloads = Vec::new();
    while payloads.len() < count {
        let message = tokio::time::timeout(Duration::from_secs(20), messages.next())
            .await
            .context("no message within 20 s")?
            .context("the consumer's messages ended")?;
        // A pull that meets the consumer's leader moving (a node was just killed) answers "no
        // responders", and that pull is spent: a new one asks again for what is not acked yet.
        let message = match message {
            Ok(message) => message,
            Err(e) if Instant::now() < deadline => {
                eprintln!("consumer on {stream}: {e}; pulling again");
                tokio::time::sleep(Duration::from_millis(100)).await;
                messages = consumer.messages().await?;
                continue;
            }
            Err(e) => return Err(anyhow::anyhow!("consumer: {e}")),
        };
        message.ack().await.map_err(|e| anyhow::anyhow!("ack: {e}"))?;
        payloads.push(message.payload.to_vec());
    }
    Ok(payloads)
}

#[test]
fn three_nodes_replicate_through_a_kill_and_restart() -> anyhow::Result<()> {
    let mut cluster = NatsCluster::start(3)?;
    assert_eq!(cluster.client_urls().len(), 3);
    assert_eq!(cluster.urls().split(',').count(), 3);
    assert!(cluster.urls().split(',').all(|u| u.starts_with("nats://127.0.0.1:")));
    assert!(cluster.monitor_urls().iter().all(|u| u.starts_with("http://127.0.0.1:")));
    for i in 0..3 {
        let varz = check_varz(&cluster, i)?;
        assert_eq!(varz["cluster"]["name"], CLUSTER_NAME, "node {i}");
        let jsz = json_get(&cluster, i, "/jsz")?;
        assert_eq!(jsz["meta_cluster"]["cluster_size"], 3, "node {i}: {jsz}");
        assert!(jsz["meta_cluster"]["leader"].is_string(), "node {i}: no meta leader: {jsz}");
    }

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let js = runtime.block_on(connect(&cluster))?;
    let deadline = || Instant::now() + Duration::from_secs(30);
    runtime.block_on(async {
        js.create_stream(stream::Config {
            name: "EVENTS".into(),
            subjects: vec!["events.>".into()],
            num_replicas: 3,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await?;
        let seq = publish(&js, "events.a", "m1", b"first", deadline()).await?;
        assert_eq!(seq, 1);
        anyhow::Ok(())
    })?;

    // Kill node 0: the other two stay healthy (a meta leader among them), and the R3 stream
    // still takes a write (2 of 3 is a quorum).
    cluster.kill(0);
    assert!(!cluster.is_running(0));
    assert!(cluster.wait_healthy(0, Duration::from_secs(1)).is_err(), "a killed node is not healthy");
    for i in 1..3 {
        assert!(cluster.is_running(i));
        cluster.wait_healthy(i, Duration::from_secs(30))?;
    }
    let seq = runtime.block_on(publish(&js, "events.b", "m2", b"second", deadline()))?;
    assert_eq!(seq, 2);

    // Node 0 back on the same ports and store: healthy means its stream replica caught up.
    cluster.restart(0)?;
    assert!(cluster.is_running(0));
    check_varz(&cluster, 0)?;
    // Kill node 1: a write now needs node 0's replica in the quorum, and Raft lets node 0 take
    // the third message only once its log holds the second, written while it was down.
    cluster.kill(1);
    cluster.wait_healthy(0, Duration::from_secs(30))?;
    cluster.wait_healthy(2, Duration::from_secs(30))?;
    let seq = runtime.block_on(publish(&js, "events.c", "m3", b"third", deadline()))?;
    assert_eq!(seq, 3);
    // A repeated message id is not stored twice.
    let seq = runtime.block_on(publish(&js, "events.c", "m3", b"third", deadline()))?;
    assert_eq!(seq, 3);
    let payloads = runtime.block_on(read_all(&js, "EVENTS", "reader", 3))?;
    assert_eq!(payloads, vec![b"first".to_vec(), b"second".to_vec(), b"third".to_vec()]);

    // Everyone back: every node healthy, and each holds the stream's three messages.
    cluster.restart(1)?;
    for i in 0..3 {
        cluster.wait_healthy(i, Duration::from_secs(30))?;
        let jsz = json_get(&cluster, i, "/jsz?streams=true")?;
        let messages = jsz["account_details"][0]["stream_detail"][0]["state"]["messages"].clone();
        assert_eq!(messages, 3, "node {i}: {jsz}");
    }
    let log = std::fs::read_to_string(cluster.log_path(0))?;
    assert_eq!(log.matches("--- crmhook-natsbox: starting n1 ---").count(), 2, "node 0 started twice, one log");
    Ok(())
}

#[test]
fn one_server_keeps_its_store_through_a_kill() -> anyhow::Result<()> {
    let mut cluster = NatsCluster::start(1)?;
    let varz = check_varz(&cluster, 0)?;
    assert!(varz["cluster"]["name"].is_null(), "a single server has no cluster: {}", varz["cluster"]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let js = runtime.block_on(connect(&cluster))?;
    runtime.block_on(async {
        js.create_stream(stream::Config {
            name: "ONE".into(),
            subjects: vec!["one".into()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        publish(&js, "one", "x1", b"kept", deadline).await?;
        anyhow::Ok(())
    })?;
    cluster.kill(0);
    cluster.restart(0)?;
    assert!(matches!(cluster.wait_healthy(1, Duration::from_secs(1)), Err(Error::NoNode { index: 1, nodes: 1 })));
    let payloads = runtime.block_on(read_all(&js, "ONE", "reader", 1))?;
    assert_eq!(payloads, vec![b"kept".to_vec()]);
    Ok(())
}

#[test]
fn zero_nodes_is_an_error() {
    assert!(matches!(NatsCluster::start(0), Err(Error::NoNodes)));
}
