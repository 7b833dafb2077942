//! The records of delivery state, as kept in the store.

use serde::{Deserialize, Serialize};

use crmhook_core::retry::Outcome;
use crmhook_core::EventId;

/// A delivery a target still owes: the number of its next attempt and when it is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub attempt: u32,
    pub due_at_ms: u64,
}

/// What an attempt led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttemptResult {
    Delivered,
    Retrying {
        next_at_ms: u64,
    },
    Dead,
    /// The receiver answered 410 Gone: the target was disabled; the delivery waits for it.
    TargetDisabled,
}

/// Why a target is not being delivered to, and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disabled {
    pub at_ms: u64,
    pub reason: String,
}

/// One delivery attempt, appended once and never changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub n: u32,
    /// When it started, ms since the epoch.
    pub at_ms: u64,
    pub duration_ms: u64,
    pub outcome: Outcome,
    pub result: AttemptResult,
}

/// One event of an ingest acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckEntry {
    pub id: EventId,
    pub seq: u64,
    pub event_type: String,
    /// Already accepted by an earlier request.
    pub duplicate: bool,
}
