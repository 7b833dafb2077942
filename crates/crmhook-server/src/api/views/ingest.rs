//! The answers to ingest: acknowledgements, a source's answer, a refusal's.

use super::RejectedView;
use crmhook_core::{EventId, RejectedId};
use crmhook_store::AckEntry;
use serde::Serialize;

// ---- ingest --------------------------------------------------------------------------------

/// One event of an ingest answer.
#[derive(Debug, Serialize)]
pub struct Ack<'a> {
    pub id: &'a EventId,
    pub seq: u64,
    #[serde(rename = "type")]
    pub event_type: &'a str,
}

impl<'a> From<&'a AckEntry> for Ack<'a> {
    fn from(a: &'a AckEntry) -> Self {
        Ack { id: &a.id, seq: a.seq, event_type: &a.event_type }
    }
}

/// `POST /v1/events` (202).
#[derive(Debug, Serialize)]
pub struct Accepted<'a> {
    pub accepted: usize,
    pub duplicates: usize,
    pub events: Vec<Ack<'a>>,
}

/// `POST /in/{id}` (200).
#[derive(Debug, Serialize)]
pub struct SourceAccepted<'a> {
    pub accepted: usize,
    pub duplicates: usize,
    /// How many pieces went to the quarantine.
    pub rejected: usize,
    pub events: Vec<Ack<'a>>,
    pub rejections: Vec<Rejection<'a>>,
}

/// A piece of a source's request kept in the quarantine, in the ingest answer.
#[derive(Debug, Serialize)]
pub struct Rejection<'a> {
    pub id: &'a RejectedId,
    /// Its index in the posted array; `null` for the whole body.
    pub index: Option<u32>,
    pub reason: &'a str,
}

/// `POST /v1/rejected/{id}/retry` (200).
#[derive(Debug, Serialize)]
pub struct Retry<'a> {
    pub accepted: usize,
    pub duplicates: usize,
    pub events: Vec<Ack<'a>>,
    pub rejected: RejectedView<'a>,
}

/// `POST /v1/events/{id}/redeliver` and `POST /v1/targets/{id}/replay` (202).
#[derive(Debug, Serialize)]
pub struct Queued {
    pub queued: u64,
}
