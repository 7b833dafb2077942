//! The layout of API keys and retired secrets' hashes.

use serde::{Deserialize, Serialize};

/// An API key (`V` keys), record version 1. Never its secret: the SHA-256 of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ApiKeyV1 {
    pub id: String,
    pub name: String,
    /// `admin`, `operator` or `ingest` (the edge's roles).
    pub role: String,
    pub hash: [u8; 32],
    pub created_ms: u64,
    pub rotated_ms: Option<u64>,
    pub revoked_ms: Option<u64>,
    /// `admin_token` or `ingest_token` for the bootstrap keys.
    pub bootstrap: Option<String>,
}
