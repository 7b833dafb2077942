//! How the server gets its log: the embedded store ([`Embedded`], the default), or the store a
//! backend opens for it (cluster mode: the binary's adapter over `crmhook-cluster`, whose store
//! is a copy of a replicated log). Either way the server holds a `crmhook_store::LogHandle` and
//! does not know which runs; what a backend adds is which targets this node delivers, where to
//! forward a request for a target another node delivers, and what `GET /v1/cluster` shows.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use crmhook_core::TargetId;
use crmhook_store::{Options, Store, StoreError};
use tokio::sync::watch;

pub use crmhook_dispatch::ownership::{ActorsHere, Deadlines};

/// Opens the log and tells what the server needs to know of the nodes beside it.
pub trait Backend: Send + Sync + 'static {
    /// Opens the log in `dir` (with the seal key and tuning in `options`).
    fn open(&self, dir: &Path, options: Options) -> Result<Store, StoreError>;

    /// The targets this node delivers, as they change; `None`: every target (one node).
    fn ownership(&self) -> Option<watch::Receiver<Arc<BTreeSet<TargetId>>>> {
        None
    }

    /// Until when each lease lets this node start the target's deliveries (cluster mode);
    /// `None`: no deadline (one node).
    fn deadlines(&self) -> Option<Deadlines> {
        None
    }

    /// Where the router reports the target actors it runs (cluster mode: a lease given up is
    /// handed over once its actor is gone); `None`: nobody asks (one node).
    fn actors_here(&self) -> Option<ActorsHere> {
        None
    }

    /// The URL of the node that delivers `target`, when another node does.
    fn owner_url(&self, _target: &TargetId) -> Option<String> {
        None
    }

    /// What `GET /v1/cluster` answers.
    fn status(&self) -> serde_json::Value;

    /// At a graceful stop, after the deliveries in flight: hands this node's share of the work
    /// to the others.
    fn leave(&self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async {})
    }
}

/// The embedded store: one node, every target.
pub struct Embedded;

impl Backend for Embedded {
    fn open(&self, dir: &Path, options: Options) -> Result<Store, StoreError> {
        Store::open_with(dir, options)
    }

    fn status(&self) -> serde_json::Value {
        serde_json::json!({ "mode": "single" })
    }
}
