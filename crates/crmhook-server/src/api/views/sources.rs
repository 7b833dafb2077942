//! Sources, and the quarantine's records.

use base64::Engine;
use std::borrow::Cow;

use crmhook_core::time::rfc3339;
use crmhook_core::{EventId, RejectedId, Source, SourceId, SourceKind};
use crmhook_store::{Rejected, Retried};
use serde::Serialize;

// ---- sources -------------------------------------------------------------------------------

/// A source. Its key is shown only when it is made (creation, `rotate-key`); `maia_secret`
/// never.
#[derive(Debug, Serialize)]
pub struct SourceView<'a> {
    pub id: &'a SourceId,
    pub name: &'a str,
    pub kind: &'static str,
    pub enabled: bool,
    pub ingest_url: String,
    pub created_at: String,
    pub updated_at: String,
    /// maia sources only: whether posts can be authenticated yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maia_secret_set: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<&'a str>,
}

impl<'a> SourceView<'a> {
    pub fn new(public_url: &str, s: &'a Source, key: Option<&'a str>) -> Self {
        SourceView {
            id: &s.id,
            name: &s.name,
            kind: s.kind.as_str(),
            enabled: s.enabled,
            ingest_url: format!("{public_url}/in/{}", s.id),
            created_at: rfc3339(s.created_at_ms),
            updated_at: rfc3339(s.updated_at_ms),
            maia_secret_set: (s.kind == SourceKind::Maia).then_some(s.maia_secret.is_some()),
            key,
        }
    }
}

/// `GET /v1/sources`.
#[derive(Debug, Serialize)]
pub struct Sources<'a> {
    pub sources: Vec<SourceView<'a>>,
}

// ---- the quarantine ------------------------------------------------------------------------

/// A quarantined piece.
#[derive(Debug, Serialize)]
pub struct RejectedView<'a> {
    pub id: &'a RejectedId,
    pub source_id: &'a SourceId,
    pub kind: &'static str,
    pub received_at: String,
    pub index: Option<u32>,
    pub reason: &'a str,
    /// The bytes as text, for reading (invalid UTF-8 replaced).
    pub body: Cow<'a, str>,
    /// The exact bytes.
    pub body_base64: String,
    pub retried: Option<RetriedView<'a>>,
}

/// When a retry logged a piece as an event.
#[derive(Debug, Serialize)]
pub struct RetriedView<'a> {
    pub at: String,
    pub event_id: &'a EventId,
    pub seq: u64,
}

impl<'a> From<&'a Retried> for RetriedView<'a> {
    fn from(r: &'a Retried) -> Self {
        RetriedView { at: rfc3339(r.at_ms), event_id: &r.event_id, seq: r.seq }
    }
}

impl<'a> From<&'a Rejected> for RejectedView<'a> {
    fn from(r: &'a Rejected) -> Self {
        RejectedView {
            id: &r.id,
            source_id: &r.source_id,
            kind: r.kind.as_str(),
            received_at: rfc3339(r.at_ms),
            index: r.index,
            reason: &r.reason,
            body: String::from_utf8_lossy(&r.bytes),
            body_base64: base64::engine::general_purpose::STANDARD.encode(&r.bytes),
            retried: r.retried.as_ref().map(RetriedView::from),
        }
    }
}

/// `GET /v1/rejected`.
#[derive(Debug, Serialize)]
pub struct RejectedPage<'a> {
    pub rejected: Vec<RejectedView<'a>>,
    /// The last id of a full page; `null` after a short one.
    pub next_after: Option<&'a RejectedId>,
}
