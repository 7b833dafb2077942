//! crmhook-cluster: cluster mode (`crmhook serve --cluster nats://…`, issue 16). It owns the
//! NATS JetStream connection and everything crmhook keeps there:
//!
//! - **the log**: one JetStream stream (`<name>-log`, file storage, 3 replicas) whose entries
//!   are every write any node makes (events, delivery state, configuration, the audit trail,
//!   the quarantine), published by `publish` and read back in order by `apply` into this
//!   node's copy of the store (`crmhook_store::replica`). An ingest is answered once its entry
//!   is in the stream (a quorum of the servers has it, fsynced with `sync_interval: always`)
//!   and applied on the node that took it. Every node holds every record, so every operator
//!   read works on any node, from its own copy.
//! - **the leases** (`leases`): a key-value bucket (`<name>-leases`) whose keys expire after
//!   the lease TTL. A target is delivered by the node holding `tgt.<id>`, renewed every fifth
//!   of the TTL; `node.<n>` keys are the nodes' heartbeats (and their HTTP URLs). When a node
//!   dies its keys expire and the others take its targets, whose delivery state (cursor,
//!   pending retries and their due times, attempts) is in the log: the new owner's target
//!   actor starts from it as after a restart. Each lease's deadline (`deadline`: 3/5 of the
//!   TTL after its last renewal was sent) is shared with the node's target actors
//!   ([`Cluster::lease_deadlines`]), which start no delivery past it.
//!
//! - **the import** (`import`, [`import()`]): a single node's store, stopped, copied into a
//!   new cluster's stream as its first entries (`crmhook cluster import`), so that every node
//!   started on it afterwards holds that store.
//!
//! Dispatch and the HTTP edge do not know this crate: they get a `crmhook_store::LogHandle`
//! (the same store, in replica mode) and a watch of the targets this node owns.
//!
//! The NATS client runs on a runtime of its own (one thread, `crmhook-nats`), apart from the
//! actix arbiters.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use crmhook_core::TargetId;
use crmhook_store::{Replica, Store, StoreError};
use tokio::sync::watch;

mod apply;
mod deadline;
mod handover;
mod import;
mod leases;
mod publish;
mod sync_check;

pub use deadline::{lease_clock, LeaseDeadlines};
pub use handover::ActorsHere;
pub use import::Imported;
pub use leases::NodeView;

/// Everything that can go wrong in cluster mode.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot connect to the NATS servers {urls}: {reason}")]
    Connect { urls: String, reason: String },
    #[error("JetStream: {0}")]
    JetStream(String),
    /// A server that does not fsync every write (Jepsen, NATS 2.12.1: acknowledged writes lost
    /// on power failure with the default lazy fsync).
    #[error("{0}")]
    Sync(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cluster mode: {0}")]
    Runtime(String),
    /// `crmhook cluster import` could not copy the store (what was published, if anything, is
    /// said).
    #[error("{0}")]
    Import(String),
}

type Result<T, E = ClusterError> = std::result::Result<T, E>;

/// How a node joins the cluster (the `cluster*` configuration keys).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The NATS servers, comma-separated (`nats://10.0.0.1:4222,nats://10.0.0.2:4222`).
    pub urls: String,
    /// Names the stream (`<name>-log`), its subject (`<name>.log`) and the lease bucket
    /// (`<name>-leases`): several crmhook clusters can share NATS servers.
    pub name: String,
    /// Replicas of the stream and the bucket (3; 1 for a single NATS server).
    pub replicas: usize,
    /// The servers' HTTP monitoring URLs (`http://10.0.0.1:8222`), to check that each fsyncs
    /// every write (`sync_interval: always`); none: a loud warning that nothing was checked.
    pub monitor: Vec<String>,
    /// A lease not renewed for this long is free (a dead node's targets move after it).
    pub lease_ttl: Duration,
    /// This node's HTTP URL as the other nodes reach it (requests for a target another node
    /// delivers are forwarded there).
    pub advertise: String,
}

impl ClusterConfig {
    fn stream(&self) -> String {
        format!("{}-log", self.name)
    }

    fn subject(&self) -> String {
        format!("{}.log", self.name)
    }

    fn bucket(&self) -> String {
        format!("{}-leases", self.name)
    }
}

/// A node's membership of the cluster: the connection, its copy of the log, its leases.
pub struct Cluster {
    config: ClusterConfig,
    runtime: NatsRuntime,
    js: jetstream::Context,
    node: u64,
    replica: Option<Arc<Replica>>,
    leases: Option<leases::Leases>,
    deadlines: LeaseDeadlines,
    actors: ActorsHere,
}

impl Cluster {
    /// Connects to the NATS servers, checks that they fsync every write, and makes sure the
    /// stream and the lease bucket exist. Blocking: call it before the actix system starts.
    pub fn connect(config: ClusterConfig) -> Result<Cluster> {
        let runtime = NatsRuntime(Some(nats_runtime()?));
        sync_check::check(&config.monitor)?;
        let js = runtime.block_on(connect(&config))?;
        let node = node_number();
        Ok(Cluster {
            config,
            runtime,
            js,
            node,
            replica: None,
            leases: None,
            deadlines: LeaseDeadlines::default(),
            actors: ActorsHere::default(),
        })
    }

    /// Opens this node's copy of the log in `dir` (replica mode), starts publishing its writes
    /// and applying the stream's entries, and waits until the copy has every entry the stream
    /// had at the call; then starts taking leases. Blocking (it waits for the copy).
    pub fn open(&mut self, dir: &Path, options: crmhook_store::Options) -> Result<Store> {
        let replica = Arc::new(Store::open_replica(dir, options, self.node)?);
        let outgoing =
            replica.take_outgoing().ok_or_else(|| ClusterError::Runtime("the store's ops are taken".into()))?;
        let subject = self.config.subject();
        self.runtime.spawn(publish::run(self.js.clone(), subject, replica.clone(), outgoing));
        let stream_name = self.config.stream();
        let js = self.js.clone();
        let name = stream_name.clone();
        let last = self.wait_on(async move {
            let mut s = js.get_stream(&name).await.map_err(js_error)?;
            Ok::<_, ClusterError>(s.info().await.map_err(js_error)?.state.last_sequence)
        })??;
        self.runtime.spawn(apply::run(self.js.clone(), stream_name.clone(), replica.clone()));
        let store = replica.store().clone();
        let mut reported = std::time::Instant::now();
        loop {
            let applied = store.replicated()?;
            if applied >= last {
                break;
            }
            if reported.elapsed() >= Duration::from_secs(5) {
                tracing::info!(applied, of = last, "catching up with the cluster's log");
                reported = std::time::Instant::now();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let (js, bucket, node, advertise, ttl) =
            (self.js.clone(), self.config.bucket(), self.node, self.config.advertise.clone(), self.config.lease_ttl);
        let (for_leases, deadlines, actors) = (replica.clone(), self.deadlines.clone(), self.actors.clone());
        let leases = self.wait_on(async move {
            let kv = js.get_key_value(bucket).await.map_err(js_error)?;
            let log = js.get_stream(&stream_name).await.map_err(js_error)?;
            let bucket = leases::Bucket { kv, log, replica: for_leases };
            Ok::<_, ClusterError>(leases::Leases::start(bucket, (node, advertise), ttl, deadlines, actors))
        })??;
        self.leases = Some(leases);
        self.replica = Some(replica);
        Ok(store)
    }

    /// Runs `f` on the cluster's runtime and waits for it here (a thread that may itself be
    /// driving another runtime: it only blocks, it does not enter this one).
    fn wait_on<T: Send + 'static>(&self, f: impl std::future::Future<Output = T> + Send + 'static) -> Result<T> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.runtime.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv().map_err(|_| ClusterError::Runtime("the cluster's runtime stopped".into()))
    }

    /// This node's number (random at each start).
    pub fn node(&self) -> u64 {
        self.node
    }

    /// The targets this node delivers, as they change (empty before [`Cluster::open`]).
    pub fn ownership(&self) -> watch::Receiver<Arc<BTreeSet<TargetId>>> {
        match &self.leases {
            Some(l) => l.owned(),
            None => watch::channel(Arc::new(BTreeSet::new())).1,
        }
    }

    /// Until when each lease this node holds lets it start deliveries (nanoseconds on
    /// [`lease_clock`]), for the target actors to check before each start.
    pub fn lease_deadlines(&self) -> LeaseDeadlines {
        self.deadlines.clone()
    }

    /// Where the router reports the target actors it runs here: a lease given up is handed
    /// over once its actor is gone (`handover.rs`).
    pub fn actors_here(&self) -> ActorsHere {
        self.actors.clone()
    }

    /// The HTTP URL of the node that delivers `target` now, if one does and it is not this one.
    pub fn owner_url(&self, target: &TargetId) -> Option<String> {
        self.leases.as_ref()?.owner_url(target)
    }

    /// The nodes alive and the targets each delivers, as of the last lease round.
    pub fn nodes(&self) -> Vec<NodeView> {
        self.leases.as_ref().map(|l| l.nodes()).unwrap_or_default()
    }

    /// The stream's name and the last entry applied here.
    pub fn log_position(&self) -> (String, u64) {
        let applied = self.replica.as_ref().map_or(0, |r| r.store().replicated().unwrap_or(0));
        (self.config.stream(), applied)
    }

    /// Gives this node's leases back at once (a graceful stop: the others take its targets
    /// at their next round instead of after the TTL), and stops taking new ones.
    pub fn leave(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let left = self.leases.as_ref().map(|l| l.leave());
        async move {
            if let Some(left) = left {
                let _ = tokio::time::timeout(Duration::from_secs(5), left).await;
            }
        }
    }
}

/// Copies a single node's store into the new cluster `config` names (`crmhook cluster import`):
/// connects as a node does (the stream and the bucket are made if missing, the servers' fsync
/// checked), refuses a stream that already has entries, and publishes `entries` (the store's
/// `restore_entries`) in order as the stream's first entries, each acknowledged by the
/// stream. Every node started on the stream afterwards, with an empty data dir and the store's
/// key file, holds a copy of that store. Blocking.
pub fn import(config: &ClusterConfig, entries: impl Iterator<Item = Result<Vec<u8>, StoreError>>) -> Result<Imported> {
    let runtime = nats_runtime()?;
    sync_check::check(&config.monitor)?;
    runtime.block_on(async {
        let js = connect(config).await?;
        import::run(&js, config, entries).await
    })
}

/// A [`Cluster`]'s runtime, shut down in the background when the cluster is dropped: the server
/// drops its backend inside the actix system's async context (a start that failed, a stop),
/// where dropping a runtime the usual way panics (and the panic hid the start's error).
struct NatsRuntime(Option<tokio::runtime::Runtime>);

impl std::ops::Deref for NatsRuntime {
    type Target = tokio::runtime::Runtime;

    fn deref(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("the runtime is taken only when dropped")
    }
}

impl Drop for NatsRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// The NATS client's runtime (one worker thread).
fn nats_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("crmhook-nats")
        .enable_all()
        .build()
        .map_err(|e| ClusterError::Runtime(e.to_string()))
}

async fn connect(config: &ClusterConfig) -> Result<jetstream::Context> {
    let error = |reason: String| ClusterError::Connect { urls: config.urls.clone(), reason };
    let addrs = config
        .urls
        .split(',')
        .map(|u| u.trim().parse::<async_nats::ServerAddr>().map_err(|e| error(format!("{u}: {e}"))))
        .collect::<Result<Vec<_>>>()?;
    let client = async_nats::ConnectOptions::new()
        .name("crmhook")
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Connected => tracing::info!("NATS: connected"),
                async_nats::Event::Disconnected => tracing::warn!("NATS: disconnected; reconnecting"),
                other => tracing::info!("NATS: {other}"),
            }
        })
        .connect(addrs)
        .await
        .map_err(|e| error(e.to_string()))?;
    let js = jetstream::new(client);
    let stream = stream::Config {
        name: config.stream(),
        subjects: vec![config.subject()],
        storage: stream::StorageType::File,
        num_replicas: config.replicas,
        max_message_size: 8 << 20,
        allow_direct: true,
        ..Default::default()
    };
    // Waits for the JetStream meta leader (a cluster just started has none for a moment).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match js.get_or_create_stream(stream.clone()).await {
            Ok(_) => break,
            Err(e) if std::time::Instant::now() < deadline => {
                tracing::info!(error = %e, "waiting for JetStream");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(js_error(e)),
        }
    }
    let bucket = kv::Config {
        bucket: config.bucket(),
        history: 1,
        max_age: config.lease_ttl,
        storage: stream::StorageType::File,
        num_replicas: config.replicas,
        ..Default::default()
    };
    if js.get_key_value(config.bucket()).await.is_err() {
        js.create_key_value(bucket).await.map_err(js_error)?;
    }
    wait_for_the_subject(&js, config, deadline).await?;
    Ok(js)
}

/// A stream whose name no stream has: a probe that expects it is refused by the stream that
/// takes the log's subject, never stored.
const PROBE_STREAM: &str = "crmhook-probe-no-such-stream";

/// Waits until a publish to the log's subject reaches its stream. Right after a JetStream
/// cluster starts, the stream exists and has a leader while the server this node is connected
/// to does not know yet that the subject is the stream's: a publish then has no responder
/// ("no stream found for given subject"), and a node's first writes (its start's) failed. The
/// probe expects a stream of another name (`Nats-Expected-Stream`), so the stream answers it
/// with a refusal and stores nothing; that refusal means the subject is live.
async fn wait_for_the_subject(
    js: &jetstream::Context,
    config: &ClusterConfig,
    deadline: std::time::Instant,
) -> Result<()> {
    use async_nats::jetstream::context::PublishErrorKind;
    loop {
        let probe = jetstream::message::PublishMessage::build().expected_stream(PROBE_STREAM);
        let answer = match js.send_publish(config.subject(), probe).await {
            Ok(ack) => ack.await.map(|_| ()),
            Err(e) => Err(e),
        };
        match answer {
            Ok(()) => {
                return Err(ClusterError::JetStream(format!(
                    "the stream took a probe meant for no stream on {}: check its configuration",
                    config.subject()
                )))
            }
            // The stream's refusal (an error answer: `Other`).
            Err(e) if e.kind() == PublishErrorKind::Other => return Ok(()),
            // No responder, no answer in time, a broken connection: not yet.
            Err(e) if std::time::Instant::now() < deadline => {
                tracing::info!(error = %e, "waiting for the cluster's log to take its subject");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(js_error(e)),
        }
    }
}

fn js_error(e: impl std::fmt::Display) -> ClusterError {
    ClusterError::JetStream(e.to_string())
}

/// A node's number: random, so a restarted node is a new one (its callers waiting died with
/// it).
fn node_number() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.write_u32(std::process::id());
    h.finish()
}

/// Who holds which lease, as the last round saw.
type Owners = Arc<Mutex<HashMap<TargetId, leases::Holder>>>;
