//! The server's configuration: plain data that [`crate::Server::start`] takes. Loading it
//! (defaults < `crmhook.toml` < environment < flags) is the binary's job (`crmhook`'s
//! `config.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;

/// The server's configuration (contract section 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub bind: SocketAddr,
    pub data_dir: PathBuf,
    pub admin_token: Option<String>,
    pub ingest_token: Option<String>,
    pub allow_private_targets: bool,
    pub max_targets: usize,
    pub max_body_bytes: usize,
    /// HTTP worker threads (default: the machine's parallelism).
    pub workers: usize,
    /// Linux: `crmhook serve` runs its threads under SCHED_BATCH (the binary sets it before
    /// any thread starts; docs/PERFORMANCE.md, "Scheduling").
    pub sched_batch: bool,
    /// Write requests that may wait for the log writer; past it ingest answers 503.
    pub ingest_queue: usize,
    /// Bytes of ingest bodies in memory at once; past it ingest answers 503.
    pub ingest_buffer_bytes: usize,
    /// Events older than this whose deliveries are all finished are compacted away.
    pub retention_days: u64,
    /// How often compaction runs.
    pub compaction_interval_s: u64,
    /// sled's page cache, in bytes.
    pub cache_bytes: usize,
    /// `crmhook serve`: how long the data dir may stay in use by another (the stopped store,
    /// whose log writer does not end) after the log broke, before the process exits for a
    /// restart (docs/RELIABILITY.md, "Disk trouble").
    pub locked_restart_after_s: u64,
    /// The URL at which CRMs reach this server (sources' `ingest_url`); default `http://<bind>`.
    pub public_url: Option<String>,
    /// TLS on the listener: the certificate chain and the private key (PEM files), both or
    /// neither; reloaded on [`crate::tls::TlsReload::reload`].
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// More certificates deliveries trust beside the public roots (a PEM file: a private CA's).
    pub delivery_ca_file: Option<PathBuf>,
    /// The key file that seals the store's secrets; default `<data_dir>.key`, beside the data
    /// dir (`at_rest`).
    pub key_file: Option<std::path::PathBuf>,
    /// A request body must arrive within this time, with no gap over `min(10 s, this)`; 408.
    pub body_timeout_ms: u64,
    /// Ingest requests in progress at once per ingest token and per source; past it 503.
    pub ingest_concurrency: usize,
    /// Ingest answers 503 while live targets deliver events older than this (ms); 0: never.
    pub max_delivery_lag_ms: u64,
    /// Open `GET /v1/stream` responses at once; past it 503.
    pub max_streams: usize,
    /// Open `GET /v1/stream` responses of one API key at once (at most `max_streams`); past it
    /// 503. `None`: a quarter of `max_streams`, at least 1 (`crate::stream::default_per_key`).
    pub max_streams_per_key: Option<usize>,
    /// A page of `GET /v1/events` ends once its events' payloads reach this many bytes.
    pub max_page_bytes: usize,
    /// Host names requests may name besides `public_url`'s, IP literals and `localhost`; `*`
    /// turns the `Host` check off (`crate::api::exposure`).
    pub allowed_hosts: Vec<String>,
    /// Proxies whose `X-Forwarded-For` names the client (`crate::api::client`); empty: none,
    /// the TCP peer is the client.
    pub trusted_proxies: crate::api::client::TrustedProxies,
    /// When set, `GET /metrics` and `GET /readyz`'s detail need it (or the admin token).
    pub metrics_token: Option<String>,
    /// Failed authentications a client address or a key may make at once (0: no limit).
    pub auth_failure_burst: u32,
    /// Failed authentications allowed again per minute.
    pub auth_failure_refill_per_minute: u32,
    /// Cluster mode (docs/CLUSTER.md): the NATS servers, comma-separated; `None`: the embedded
    /// store alone. The `cluster_*` keys below apply only with it; the binary reads them (the
    /// server gets the opened log through a `crate::Backend`).
    pub cluster: Option<String>,
    /// Names the cluster's stream and lease bucket (several crmhook clusters on one NATS).
    pub cluster_name: String,
    /// Replicas of the stream and the bucket.
    pub cluster_replicas: usize,
    /// The NATS servers' monitoring URLs, to check they fsync every write.
    pub cluster_monitor: Vec<String>,
    /// A target's lease expires this long after its node last renewed it.
    pub cluster_lease_ttl_ms: u64,
    /// This node's URL as the other nodes reach it; default `public_url`, else `http://<bind>`.
    pub cluster_advertise: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data/db"),
            admin_token: None,
            ingest_token: None,
            allow_private_targets: false,
            max_targets: 10,
            max_body_bytes: 1_048_576,
            workers: std::thread::available_parallelism().map(usize::from).unwrap_or(2),
            sched_batch: true,
            ingest_queue: crmhook_store::QUEUE,
            ingest_buffer_bytes: 64 * 1024 * 1024,
            retention_days: 30,
            compaction_interval_s: 300,
            cache_bytes: crmhook_store::CACHE_BYTES,
            locked_restart_after_s: 60,
            public_url: None,
            tls_cert: None,
            tls_key: None,
            delivery_ca_file: None,
            key_file: None,
            body_timeout_ms: 30_000,
            ingest_concurrency: crate::api::request::INGEST_CONCURRENCY,
            max_delivery_lag_ms: 0,
            max_streams: crate::stream::MAX_STREAMS,
            max_streams_per_key: None,
            max_page_bytes: crate::api::request::PAGE_BYTES,
            allowed_hosts: Vec::new(),
            trusted_proxies: crate::api::client::TrustedProxies::default(),
            metrics_token: None,
            auth_failure_burst: crate::api::limits::Limits::default().burst,
            auth_failure_refill_per_minute: crate::api::limits::Limits::default().refill_per_minute,
            cluster: None,
            cluster_name: "crmhook".to_owned(),
            cluster_replicas: 3,
            cluster_monitor: Vec::new(),
            cluster_lease_ttl_ms: 5_000,
            cluster_advertise: None,
        }
    }
}
