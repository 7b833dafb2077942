//! `crmhook cluster …`: offline commands of cluster mode (docs/CLUSTER.md). `import` copies a
//! stopped single node's data dir into a new cluster's stream (`crmhook_cluster::import`), so
//! that every node started on the cluster afterwards holds that store.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Subcommand;
use crmhook_cluster::ClusterConfig;
use crmhook_store::{Options, SealKey, Store, StoreError, RESTORE_BYTES};

#[derive(Subcommand)]
pub enum Cluster {
    /// Move from a single node to a cluster: copy a stopped single node's whole store (events,
    /// targets, subscriptions, sources, API keys, delivery state, audit trail, quarantine) into
    /// a new cluster's stream. Then start every node with an empty data dir and the same key
    /// file.
    Import {
        /// The single node's data dir (stop the server first).
        #[arg(long, default_value = "./data/db")]
        data_dir: PathBuf,
        /// The NATS servers, comma-separated (nats://10.0.0.1:4222,…), as the nodes' `cluster`.
        #[arg(long, env = "CRMHOOK_CLUSTER")]
        cluster: String,
        /// As the nodes' `cluster_name` (default crmhook): the stream `<name>-log`.
        #[arg(long, env = "CRMHOOK_CLUSTER_NAME")]
        cluster_name: Option<String>,
        /// As the nodes' `cluster_replicas` (default 3): the stream and the lease bucket are made
        /// with it if they do not exist yet.
        #[arg(long, env = "CRMHOOK_CLUSTER_REPLICAS", value_parser = clap::value_parser!(u8).range(1..=5))]
        cluster_replicas: Option<u8>,
        /// As the nodes' `cluster_lease_ttl_ms` (default 5000): the lease bucket is made with it
        /// if it does not exist yet.
        #[arg(long, env = "CRMHOOK_CLUSTER_LEASE_TTL_MS", value_parser = clap::value_parser!(u64).range(1000..))]
        cluster_lease_ttl_ms: Option<u64>,
        /// The servers' monitoring URLs (http://10.0.0.1:8222,…), to check that they fsync every
        /// write, as the nodes' `cluster_monitor`.
        #[arg(long, env = "CRMHOOK_CLUSTER_MONITOR", value_delimiter = ',')]
        cluster_monitor: Vec<String>,
        /// The single node's key file (default `<data_dir>.key`, if it exists): checked against
        /// the data dir's sealed secrets. Every node needs this same file as its `key_file`.
        #[arg(long, env = "CRMHOOK_KEY_FILE")]
        key_file: Option<PathBuf>,
    },
}

pub fn cluster(cmd: Cluster) -> anyhow::Result<ExitCode> {
    match cmd {
        Cluster::Import {
            data_dir,
            cluster,
            cluster_name,
            cluster_replicas,
            cluster_lease_ttl_ms,
            cluster_monitor,
            key_file,
        } => {
            let defaults = crmhook_server::Config::default();
            let name = cluster_name.unwrap_or(defaults.cluster_name);
            if !crate::config::cluster_name_ok(&name) {
                bail!("--cluster-name {name:?} is not a name of 1 to 32 letters, digits, - and _");
            }
            let config = ClusterConfig {
                urls: cluster.split(',').map(str::trim).filter(|u| !u.is_empty()).collect::<Vec<_>>().join(","),
                name,
                replicas: cluster_replicas.map_or(defaults.cluster_replicas, usize::from),
                monitor: cluster_monitor
                    .iter()
                    .map(|u| u.trim().trim_end_matches('/').to_owned())
                    .filter(|u| !u.is_empty())
                    .collect(),
                lease_ttl: Duration::from_millis(cluster_lease_ttl_ms.unwrap_or(defaults.cluster_lease_ttl_ms)),
                // Not used: the import joins no cluster.
                advertise: String::new(),
            };
            import(&data_dir, key_file, &config)
        }
    }
}

fn import(data_dir: &Path, key_file: Option<PathBuf>, config: &ClusterConfig) -> anyhow::Result<ExitCode> {
    let shown = data_dir.display();
    // Opening a dir that is not a store would make an empty one, and import nothing.
    if !data_dir.join("db").is_file() || !data_dir.join("conf").is_file() {
        bail!("{shown} is not a crmhook data dir (no sled `conf` and `db` files); pass the single node's data_dir");
    }
    let key_file = key_file.or_else(|| crmhook_server::at_rest::default_key_file(data_dir).filter(|f| f.exists()));
    let key = match &key_file {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read the key file {}", file.display()))?;
            Some(
                SealKey::from_text(&text)
                    .with_context(|| format!("the key file {} is not a crmhook key", file.display()))?,
            )
        }
        None => None,
    };
    let store = Store::open_with(data_dir, Options { key, ..Options::default() }).map_err(|e| match e {
        StoreError::Key(why) => anyhow::anyhow!("{shown}: {why}"),
        StoreError::InUse => anyhow::anyhow!("cannot open {shown}: {}; stop it first", StoreError::InUse),
        e => anyhow::anyhow!("cannot open {shown}: {e} (is the server still running? stop it first)"),
    })?;
    let locked = |r: Result<_, StoreError>| matches!(r, Err(StoreError::Key(_)));
    if locked(store.targets().map(drop)) || locked(store.sources().map(drop)) {
        eprintln!(
            "note: {shown}'s secrets are sealed and no key file was given (--key-file): they are copied sealed, \
             and every node needs this data dir's key file as its `key_file`"
        );
    }
    let head = store.head();
    let first = store.events_from(1).next().transpose()?.map(|e| e.seq);
    let events = first.map_or(0, |first| head.saturating_sub(first) + 1);
    say!("importing {shown} (head {head}, {events} events) into the stream {}-log on {}", config.name, config.urls);
    let mut entries = store.restore_entries(RESTORE_BYTES);
    let imported = crmhook_cluster::import(config, &mut entries);
    let records = entries.records();
    drop(entries);
    close(&store);
    let imported = imported?;
    say!(
        "imported {records} records: {events} events (head {head}), in {} {} ({} bytes) of the stream {}",
        imported.entries,
        if imported.entries == 1 { "entry" } else { "entries" },
        imported.bytes,
        imported.stream
    );
    match &key_file {
        Some(file) => say!(
            "now start each node with an empty data dir, `cluster` {} and the key file {} as its `key_file`",
            config.urls,
            file.display()
        ),
        None => say!("now start each node with an empty data dir and `cluster` {}", config.urls),
    }
    Ok(ExitCode::SUCCESS)
}

/// Stops the store's writer and flushes.
fn close(store: &Store) {
    match tokio::runtime::Builder::new_current_thread().enable_time().build() {
        Ok(rt) => rt.block_on(store.close()),
        Err(e) => eprintln!("note: the store was not closed cleanly: {e}"),
    }
}
