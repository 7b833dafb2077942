//! `crmhook-bench jetstream`: the bare JetStream limit of cluster mode (issue 16), the
//! baseline that crmhook's cluster ingest and delivery are measured against in the same run.
//!
//! [`bare_publish`] publishes the bench's MAIA events (the `ingest` table's 512 bodies) to a
//! fresh R3 file-storage stream on the cluster, `concurrency` publishers each awaiting the
//! stream's acknowledgement of one message before sending the next (what crmhook's ingest does
//! before it answers), for a fixed time; then one durable pull consumer reads every message back
//! and acks each one (explicit acks), timed until the server's ack floor reaches the last
//! message. The messages carry no message id (no deduplication: the raw limit), and the stream
//! is deleted afterwards.
//!
//! The publishers share `min(concurrency, nodes)` client connections, connection `k` to node
//! `k` first (as crmhook nodes would, each on its own NATS connection); JetStream routes every
//! publish to the stream's leader whichever node the connection is on.
//!
//! Without `--nats`, the command starts its own 3-node cluster (`crmhook-natsbox`:
//! nats-server 2.15.1, `sync_interval: always`, stores in the system's temp dir, like the sled
//! baselines of `ingest`).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::{median, ROUNDS};

/// One run of [`bare_publish`].
#[derive(Debug, Clone)]
pub struct BareFigures {
    /// Publishers, each with one publish in flight.
    pub concurrency: usize,
    /// Publishes acknowledged by the stream.
    pub published: u64,
    /// Publishes that failed (error or no acknowledgement).
    pub publish_errors: u64,
    /// The first failure's words, if any.
    pub first_error: Option<String>,
    /// Acknowledged publishes per second over the publishing time.
    pub publish_per_s: f64,
    /// The publish acknowledgement's latency, from before the publish to the acknowledgement.
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub ack_p999_ms: f64,
    pub ack_max_ms: f64,
    /// The mean payload size, bytes.
    pub payload_bytes: usize,
    /// Messages the consumer received and acked.
    pub consumed: u64,
    /// Consumed (and acked, as the server's ack floor shows) per second, from the consumer's
    /// creation until the ack floor reached the last message.
    pub consume_per_s: f64,
    /// Redeliveries the consumer saw (0 expected).
    pub redelivered: u64,
}

impl BareFigures {
    /// The figures as the bench's JSON reports write them.
    pub fn json(&self) -> Value {
        json!({
            "concurrency": self.concurrency,
            "published": self.published,
            "publish_errors": self.publish_errors,
            "first_error": self.first_error,
            "publish_per_s": self.publish_per_s,
            "ack_p50_ms": self.ack_p50_ms,
            "ack_p99_ms": self.ack_p99_ms,
            "ack_p999_ms": self.ack_p999_ms,
            "ack_max_ms": self.ack_max_ms,
            "payload_bytes": self.payload_bytes,
            "consumed": self.consumed,
            "consume_per_s": self.consume_per_s,
            "redelivered": self.redelivered,
        })
    }
}

/// The bare limit on the cluster at `urls` (comma-separated `nats://` URLs): R3 publish with
/// acknowledgement at `concurrency` for `seconds`, then a durable pull consumer reading and
/// acking everything. Runs its own tokio runtime, so callers need none.
pub fn bare_publish(urls: &str, messages: &[Vec<u8>], concurrency: usize, seconds: f64) -> anyhow::Result<BareFigures> {
    if messages.is_empty() || concurrency == 0 {
        bail!("bare JetStream publish needs messages and at least one publisher");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map(usize::from).unwrap_or(2))
        .enable_all()
        .build()?;
    runtime.block_on(bare_publish_async(urls, messages, concurrency, seconds))
}

/// [`bare_publish`] on the caller's tokio runtime (async-nats needs one; actix's will do).
pub async fn bare_publish_async(
    urls: &str,
    messages: &[Vec<u8>],
    concurrency: usize,
    seconds: f64,
) -> anyhow::Result<BareFigures> {
    let servers: Vec<String> = urls.split(',').map(str::trim).filter(|u| !u.is_empty()).map(str::to_owned).collect();
    if servers.is_empty() {
        bail!("no NATS URL in {urls:?}");
    }
    let mut contexts = Vec::new();
    for k in 0..concurrency.min(servers.len()) {
        let mut order = servers.clone();
        order.rotate_left(k);
        let client = async_nats::ConnectOptions::new()
            .name(format!("crmhook-bench bare {k}"))
            .retain_servers_order()
            .connect(order)
            .await
            .with_context(|| format!("connect to {urls}"))?;
        contexts.push(jetstream::new(client));
    }
    let js = contexts[0].clone();
    let unique = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos();
    let name = format!("BENCH_BARE_{unique}");
    let subject = format!("bench.bare.{unique}");
    js.create_stream(stream::Config {
        name: name.clone(),
        subjects: vec![subject.clone()],
        num_replicas: 3,
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .with_context(|| format!("create the R3 stream {name} (it needs a JetStream cluster of 3 nodes or more)"))?;
    let result = measure(&contexts, &name, &subject, messages, concurrency, seconds).await;
    let deleted = js.delete_stream(&name).await;
    let figures = result?;
    deleted.with_context(|| format!("delete the stream {name}"))?;
    Ok(figures)
}

async fn measure(
    contexts: &[jetstream::Context],
    name: &str,
    subject: &str,
    messages: &[Vec<u8>],
    concurrency: usize,
    seconds: f64,
) -> anyhow::Result<BareFigures> {
    let bodies: std::sync::Arc<Vec<Vec<u8>>> = std::sync::Arc::new(messages.to_vec());
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::with_capacity(concurrency);
    for p in 0..concurrency {
        let js = contexts[p % contexts.len()].clone();
        let (bodies, subject) = (bodies.clone(), subject.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut latencies: Vec<u32> = Vec::with_capacity(100_000);
            let mut errors = 0u64;
            let mut first_error = None;
            let mut next = p * bodies.len() / concurrency;
            while Instant::now() < deadline {
                next = (next + 1) % bodies.len();
                let t0 = Instant::now();
                let acked = match js.publish(subject.clone(), bodies[next].clone().into()).await {
                    Ok(ack) => ack.await.map_err(|e| format!("acknowledgement: {e}")),
                    Err(e) => Err(format!("publish: {e}")),
                };
                match acked {
                    Ok(_) => latencies.push(t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            (latencies, errors, first_error)
        }));
    }
    let mut latencies = Vec::new();
    let (mut publish_errors, mut first_error) = (0, None);
    for task in tasks {
        let (l, e, first) = task.await.context("a publisher panicked")?;
        latencies.extend(l);
        publish_errors += e;
        first_error = first_error.or(first);
    }
    let publish_seconds = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1));
        latencies.get(i).copied().unwrap_or(0) as f64 / 1000.0
    };
    let published = latencies.len() as u64;

    let js = &contexts[0];
    let mut stream = js.get_stream(name).await?;
    let state = stream.info().await?.state.clone();
    if state.messages != published {
        bail!("the stream holds {} messages, {published} publishes were acknowledged", state.messages);
    }
    let consume_started = Instant::now();
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("bench-reader".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await?;
    let mut incoming = consumer.messages().await?;
    let (mut consumed, mut redelivered) = (0u64, 0u64);
    while consumed < published {
        let message = tokio::time::timeout(Duration::from_secs(30), incoming.next())
            .await
            .with_context(|| format!("no message for 30 s after {consumed} of {published}"))?
            .context("the consumer's messages ended")?
            .map_err(|e| anyhow::anyhow!("consumer: {e}"))?;
        match message.info() {
            Ok(info) if info.delivered > 1 => redelivered += 1,
            _ => consumed += 1,
        }
        message.ack().await.map_err(|e| anyhow::anyhow!("ack: {e}"))?;
    }
    drop(incoming);
    // Acks are sent without waiting for an answer: done when the server's ack floor is at the
    // last message.
    let floor_deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info = consumer.get_info().await?;
        if info.ack_floor.stream_sequence >= state.last_sequence {
            break;
        }
        if Instant::now() > floor_deadline {
            bail!("the ack floor stayed at {} of {} for 30 s", info.ack_floor.stream_sequence, state.last_sequence);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let consume_seconds = consume_started.elapsed().as_secs_f64();
    Ok(BareFigures {
        concurrency,
        published,
        publish_errors,
        first_error,
        publish_per_s: published as f64 / publish_seconds,
        ack_p50_ms: pct(0.50),
        ack_p99_ms: pct(0.99),
        ack_p999_ms: pct(0.999),
        ack_max_ms: latencies.last().copied().unwrap_or(0) as f64 / 1000.0,
        payload_bytes: messages.iter().map(Vec::len).sum::<usize>() / messages.len(),
        consumed,
        consume_per_s: consumed as f64 / consume_seconds,
        redelivered,
    })
}

/// The median of each figure of `runs` (counts summed), as the other commands report rounds.
pub fn median_figures(runs: &[BareFigures]) -> BareFigures {
    let m = |f: fn(&BareFigures) -> f64| median(runs.iter().map(f).collect());
    BareFigures {
        concurrency: runs.first().map_or(0, |r| r.concurrency),
        published: runs.iter().map(|r| r.published).sum(),
        publish_errors: runs.iter().map(|r| r.publish_errors).sum(),
        first_error: runs.iter().find_map(|r| r.first_error.clone()),
        publish_per_s: m(|r| r.publish_per_s),
        ack_p50_ms: m(|r| r.ack_p50_ms),
        ack_p99_ms: m(|r| r.ack_p99_ms),
        ack_p999_ms: m(|r| r.ack_p999_ms),
        ack_max_ms: runs.iter().map(|r| r.ack_max_ms).fold(0.0, f64::max),
        payload_bytes: runs.first().map_or(0, |r| r.payload_bytes),
        consumed: runs.iter().map(|r| r.consumed).sum(),
        consume_per_s: m(|r| r.consume_per_s),
        redelivered: runs.iter().map(|r| r.redelivered).sum(),
    }
}

/// The `jetstream` subcommand: the bare limit at each of `connections` (the median of
/// [`ROUNDS`] runs, each on a fresh stream), on the cluster at `nats` or, without it, on a
/// 3-node cluster of its own.
pub fn run_command(nats: Option<String>, seconds: u64, connections: &[usize]) -> anyhow::Result<Value> {
    let own = match nats {
        Some(_) => None,
        None => Some(crmhook_natsbox::NatsCluster::start(3).context("start a 3-node NATS cluster")?),
    };
    let urls = match (&nats, &own) {
        (Some(urls), _) => urls.clone(),
        (None, Some(cluster)) => cluster.urls(),
        (None, None) => bail!("no NATS cluster"),
    };
    let bodies = crate::bodies(1);
    match &own {
        Some(c) => println!(
            "bare JetStream, its own 3-node cluster (nats-server {}, sync_interval: always, stores in {})",
            crmhook_natsbox::NATS_SERVER_VERSION,
            c.dir().display()
        ),
        None => println!("bare JetStream on {urls}"),
    }
    println!(
        "R3 file stream, {} B MAIA events, each publisher awaiting the stream's ack, {seconds} s per round; \
         then a durable pull consumer reading and acking every message; median of {ROUNDS} rounds",
        bodies.iter().map(Vec::len).sum::<usize>() / bodies.len()
    );
    println!(
        "{:>5} | {:>10} {:>8} {:>8} {:>8} {:>8} | {:>10} | {:>6}",
        "conns", "publish/s", "p50 ms", "p99 ms", "p99.9", "max ms", "consume/s", "errors"
    );
    let mut rows = Vec::new();
    for &c in connections {
        let mut runs = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            runs.push(bare_publish(&urls, &bodies, c, seconds as f64)?);
        }
        let f = median_figures(&runs);
        println!(
            "{c:>5} | {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} | {:>10.0} | {:>6}",
            f.publish_per_s, f.ack_p50_ms, f.ack_p99_ms, f.ack_p999_ms, f.ack_max_ms, f.consume_per_s, f.publish_errors
        );
        if let Some(e) = &f.first_error {
            println!("      (first publish error: {e})");
        }
        if f.redelivered > 0 {
            println!("      ({} redeliveries while consuming)", f.redelivered);
        }
        let mut row = f.json();
        row["runs"] = json!({
            "publish_per_s": runs.iter().map(|r| r.publish_per_s).collect::<Vec<_>>(),
            "consume_per_s": runs.iter().map(|r| r.consume_per_s).collect::<Vec<_>>(),
        });
        rows.push(row);
    }
    Ok(json!({
        "benchmark": "jetstream",
        "nats": urls,
        "own_cluster": own.is_some(),
        "nats_server": own.as_ref().map(|_| crmhook_natsbox::NATS_SERVER_VERSION),
        "seconds": seconds,
        "rows": rows,
    }))
}
