//! The console's charts: a target's and ingest's counts over time.

use crmhook_core::time::rfc3339;
use crmhook_core::TargetId;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crmhook_dispatch::stats::{AttemptCounts, TypeCounts};

// ---- the console's charts ------------------------------------------------------------------

/// `GET /v1/targets/{id}/stats`: what a target owes now, its last success and failure, and its
/// attempts by minute over the last hour and by quarter hour over the last day.
#[derive(Debug, Serialize)]
pub struct TargetStats<'a> {
    pub target_id: &'a TargetId,
    /// Deliveries owed now (pending, not dead).
    pub backlog: u64,
    /// When the oldest event owed was received.
    pub backlog_oldest_at: Option<String>,
    pub backlog_age_ms: Option<u64>,
    pub last_success_at: Option<String>,
    pub last_failure: Option<LastFailureView>,
    pub minutes: Vec<AttemptBucket>,
    pub days: Vec<AttemptBucket>,
}

/// A target's last failed attempt.
#[derive(Debug, Serialize)]
pub struct LastFailureView {
    pub at: String,
    pub status_code: Option<u16>,
    pub error: Option<String>,
}

impl From<crmhook_store::LastFailure> for LastFailureView {
    fn from(f: crmhook_store::LastFailure) -> Self {
        LastFailureView { at: rfc3339(f.at_ms), status_code: f.status_code, error: f.error }
    }
}

/// A minute or quarter hour of a target's attempts.
#[derive(Debug, Serialize)]
pub struct AttemptBucket {
    pub at: String,
    pub succeeded: u64,
    pub failed: u64,
    pub dead: u64,
}

impl From<AttemptCounts> for AttemptBucket {
    fn from(c: AttemptCounts) -> Self {
        AttemptBucket { at: rfc3339(c.at_ms), succeeded: c.succeeded, failed: c.failed, dead: c.dead }
    }
}

/// `GET /v1/stats/ingest`: the events logged, by minute over the last hour and by quarter hour
/// over the last day.
#[derive(Debug, Serialize)]
pub struct IngestStats {
    pub minutes: Vec<IngestBucket>,
    pub days: Vec<IngestBucket>,
}

/// A minute or quarter hour of ingest: the events logged, and by type (the most frequent
/// first, the rest under `other`).
#[derive(Debug, Serialize)]
pub struct IngestBucket {
    pub at: String,
    pub total: u64,
    pub types: TypeMap,
}

/// Counts by name, as a JSON object in the order given.
#[derive(Debug)]
pub struct TypeMap(pub Vec<(String, u64)>);

impl Serialize for TypeMap {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl From<TypeCounts> for IngestBucket {
    fn from(c: TypeCounts) -> Self {
        IngestBucket { at: rfc3339(c.at_ms), total: c.total, types: TypeMap(c.types) }
    }
}
