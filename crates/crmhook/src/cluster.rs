//! `crmhook serve --cluster …`: the server's log opened by `crmhook-cluster` (docs/CLUSTER.md).
//! The server sees a [`Backend`]; this adapter is the only place the two meet.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crmhook_cluster::{Cluster, ClusterConfig};
use crmhook_core::TargetId;
use crmhook_server::backend::{ActorsHere, Deadlines};
use crmhook_server::{Backend, Config};
use crmhook_store::{Options, Store, StoreError};
use tokio::sync::watch;

/// A node of a cluster, as the server's backend.
pub struct ClusterBackend(Mutex<Cluster>);

impl ClusterBackend {
    /// Joins the cluster that `config.cluster` names (blocking: before the actix system starts).
    pub fn connect(config: &Config) -> anyhow::Result<Option<ClusterBackend>> {
        let Some(urls) = &config.cluster else { return Ok(None) };
        let advertise = config.cluster_advertise.clone().or_else(|| config.public_url.clone()).unwrap_or_else(|| {
            let scheme = if config.tls_cert.is_some() { "https" } else { "http" };
            format!("{scheme}://{}", config.bind)
        });
        let cluster = Cluster::connect(ClusterConfig {
            urls: urls.clone(),
            name: config.cluster_name.clone(),
            replicas: config.cluster_replicas,
            monitor: config.cluster_monitor.clone(),
            lease_ttl: Duration::from_millis(config.cluster_lease_ttl_ms),
            advertise,
        })?;
        tracing::info!(node = format!("{:016x}", cluster.node()), "joined the cluster");
        Ok(Some(ClusterBackend(Mutex::new(cluster))))
    }

    fn with<T>(&self, f: impl FnOnce(&mut Cluster) -> T) -> Option<T> {
        self.0.lock().ok().map(|mut c| f(&mut c))
    }
}

impl Backend for ClusterBackend {
    fn open(&self, dir: &Path, options: Options) -> Result<Store, StoreError> {
        self.with(|c| c.open(dir, options)).ok_or_else(|| StoreError::Io("cluster lock poisoned".into()))?.map_err(
            |e| match e {
                crmhook_cluster::ClusterError::Store(e) => e,
                other => StoreError::Io(other.to_string()),
            },
        )
    }

    fn ownership(&self) -> Option<watch::Receiver<Arc<BTreeSet<TargetId>>>> {
        self.with(|c| c.ownership())
    }

    fn deadlines(&self) -> Option<Deadlines> {
        let deadlines = self.with(|c| c.lease_deadlines())?;
        Some(Deadlines::new(move |target| deadlines.of(target), crmhook_cluster::lease_clock))
    }

    fn actors_here(&self) -> Option<ActorsHere> {
        let here = self.with(|c| c.actors_here())?;
        Some(ActorsHere::new(move |target, running| here.set(target, running)))
    }

    fn owner_url(&self, target: &TargetId) -> Option<String> {
        self.with(|c| c.owner_url(target)).flatten()
    }

    fn status(&self) -> serde_json::Value {
        self.with(|c| {
            let (stream, applied) = c.log_position();
            serde_json::json!({
                "mode": "cluster",
                "node": format!("{:016x}", c.node()),
                "stream": stream,
                "applied": applied,
                "nodes": c.nodes(),
            })
        })
        .unwrap_or(serde_json::Value::Null)
    }

    fn leave(&self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        match self.with(|c| c.leave()) {
            Some(left) => Box::pin(left),
            None => Box::pin(async {}),
        }
    }
}
