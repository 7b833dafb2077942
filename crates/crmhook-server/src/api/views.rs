//! The answers of the API, as types: each struct is one JSON object of the contract
//! (`docs/openapi.json`), its fields in the order they are written (the workspace builds
//! serde_json with `preserve_order`). A member that a view leaves out when it does not apply is
//! skipped, never `null`; one the contract shows as `null` is an `Option` without a skip.
//!
//! The conversions from the core and store types are here too, and nothing else: no handler
//! builds JSON by hand, and no view is read back as data.

use serde::Serialize;

mod charts;
mod events;
mod ingest;
mod keys;
mod sources;
mod subscriptions;
mod targets;

pub use charts::*;
pub use events::*;
pub use ingest::*;
pub use keys::*;
pub use sources::*;
pub use subscriptions::*;
pub use targets::*;

fn is_false(b: &bool) -> bool {
    !*b
}

// ---- health --------------------------------------------------------------------------------

/// `GET /healthz`.
#[derive(Debug, Serialize)]
pub struct Alive {
    pub status: &'static str,
}

/// `GET /readyz` when ready.
#[derive(Debug, Serialize)]
pub struct Ready {
    pub status: &'static str,
    /// The seq of the last event in the log; absent when a `metrics_token` is configured and the
    /// request did not present it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head: Option<u64>,
}

#[cfg(test)]
#[path = "views_tests.rs"]
mod tests;
