//! Events, their deliveries and attempts, and the test delivery.

use crmhook_core::retry::Outcome;
use crmhook_core::time::rfc3339;
use crmhook_core::TargetId;
use crmhook_core::{Event, EventId, SourceId};
use crmhook_store::{Attempt, AttemptResult, DeliveryStatus, Response};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::is_false;

// ---- events --------------------------------------------------------------------------------

/// An event, in lists, in the stream, and (with its deliveries) on its own.
#[derive(Debug, Serialize)]
pub struct EventView<'a> {
    pub id: &'a EventId,
    pub seq: u64,
    #[serde(rename = "type")]
    pub event_type: &'a str,
    pub received_at: String,
    /// The record id the filters take (`record_id=`): MAIA's `recordId`, Maximizer's
    /// `Data.New.Key` (else `Data.Original.Key`); absent when the event has none (`ai_pause`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_id: Option<&'a str>,
    /// The event as the CRM sent it: its exact text, written into the answer as it stands
    /// (whitespace, escapes and numbers' spelling kept; `12000.00` is shown as sent). The
    /// stream (`event_json`) shows the same JSON made compact, one line per SSE `data:`.
    pub payload: &'a RawValue,
    /// Absent for an event posted to `POST /v1/events`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_id: Option<&'a SourceId>,
    /// `true` for a test event (`POST /v1/targets/{id}/test`); absent for a CRM's.
    #[serde(skip_serializing_if = "is_false")]
    pub test: bool,
}

impl<'a> From<&'a Event> for EventView<'a> {
    fn from(e: &'a Event) -> Self {
        EventView {
            id: &e.id,
            seq: e.seq,
            event_type: &e.event_type,
            received_at: rfc3339(e.received_at_ms),
            record_id: e.record_id.as_deref(),
            payload: raw_payload(&e.payload),
            source_id: e.source_id.as_ref(),
            test: e.test,
        }
    }
}

/// A payload's text as a raw JSON value; `null` for bytes that are not JSON, which ingest's
/// validation rules out.
fn raw_payload(payload: &[u8]) -> &RawValue {
    serde_json::from_slice(payload).unwrap_or_else(|_| {
        let null: &'static RawValue = serde_json::from_str("null").expect("null is JSON");
        null
    })
}

/// An event's view as a JSON value, for the stream (`crate::stream::sse` renders with it).
pub fn event_json(e: &Event) -> Value {
    serde_json::to_value(EventView::from(e)).unwrap_or_default()
}

/// `GET /v1/events/{id}`.
#[derive(Debug, Serialize)]
pub struct EventDetail<'a> {
    #[serde(flatten)]
    pub event: EventView<'a>,
    pub deliveries: Vec<DeliveryView>,
}

/// `GET /v1/events`.
#[derive(Debug, Serialize)]
pub struct EventPage<'a> {
    pub events: Vec<EventView<'a>>,
    /// The last seq of a full page; `null` after a short one.
    pub next_after: Option<u64>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Delivered,
    Dead,
}

impl From<DeliveryStatus> for Status {
    fn from(s: DeliveryStatus) -> Self {
        match s {
            DeliveryStatus::Pending => Status::Pending,
            DeliveryStatus::Delivered => Status::Delivered,
            DeliveryStatus::Dead => Status::Dead,
        }
    }
}

/// One target's delivery of an event, in `GET /v1/events/{id}`.
#[derive(Debug, Serialize)]
pub struct DeliveryView {
    pub target_id: TargetId,
    pub status: Status,
    pub attempts: Vec<AttemptView>,
    /// The target's name; absent once the target is deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_name: Option<String>,
    /// `true` for the attempts of a deleted target; absent otherwise.
    #[serde(skip_serializing_if = "is_false")]
    pub target_deleted: bool,
}

impl DeliveryView {
    /// `name`: the target's, or `None` when it was deleted since.
    pub fn new(target_id: TargetId, name: Option<String>, pending: bool, attempts: &[Attempt]) -> Self {
        let status = match attempts.last().map(|a| a.result) {
            _ if pending => Status::Pending,
            Some(AttemptResult::Delivered) => Status::Delivered,
            Some(AttemptResult::Dead) => Status::Dead,
            // A deleted target is sent nothing more: what it was not delivered never will be.
            _ if name.is_none() => Status::Dead,
            Some(AttemptResult::Retrying { .. } | AttemptResult::TargetDisabled) | None => Status::Pending,
        };
        DeliveryView {
            target_id,
            status,
            attempts: attempts.iter().map(AttemptView::from).collect(),
            target_deleted: name.is_none(),
            target_name: name,
        }
    }
}

/// What started an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    First,
    Retry,
    Redelivery,
}

/// What an attempt led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Delivered,
    Retrying,
    Dead,
    TargetDisabled,
}

impl AttemptOutcome {
    /// What an attempt led to, and when it is tried again: the words of every view of an
    /// attempt (the API's, the stream's).
    pub fn of(result: &AttemptResult) -> (AttemptOutcome, Option<String>) {
        match *result {
            AttemptResult::Delivered => (AttemptOutcome::Delivered, None),
            AttemptResult::Retrying { next_at_ms } => (AttemptOutcome::Retrying, Some(rfc3339(next_at_ms))),
            AttemptResult::Dead => (AttemptOutcome::Dead, None),
            AttemptResult::TargetDisabled => (AttemptOutcome::TargetDisabled, None),
        }
    }
}

/// One delivery attempt.
#[derive(Debug, Serialize)]
pub struct AttemptView {
    pub n: u32,
    pub at: String,
    pub duration_ms: u64,
    pub trigger: Trigger,
    /// When the target answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// Why a failed attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub result: AttemptOutcome,
    /// When retrying.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    /// What the receiver answered; `null` when it did not (or the attempt was recorded before
    /// answers were kept).
    pub response: Option<ResponseView>,
}

/// What a receiver answered to an attempt.
#[derive(Debug, Serialize)]
pub struct ResponseView {
    pub status: u16,
    /// `content-type`, `retry-after`, `location`: those it sent.
    pub headers: serde_json::Map<String, Value>,
    /// Its first bytes (at most the target's `response_body_bytes`) as UTF-8, invalid
    /// sequences replaced.
    pub body: String,
    /// It was longer than `body`.
    pub body_truncated: bool,
}

impl From<&Response> for ResponseView {
    fn from(r: &Response) -> Self {
        ResponseView {
            status: r.status,
            headers: r.headers.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect(),
            body: String::from_utf8_lossy(&r.body).into_owned(),
            body_truncated: r.body_truncated,
        }
    }
}

pub use crmhook_store::attempt_error;

impl From<&Attempt> for AttemptView {
    fn from(a: &Attempt) -> Self {
        let trigger = match (a.n == a.round, a.round > 1) {
            (true, false) => Trigger::First,
            (true, true) => Trigger::Redelivery,
            (false, _) => Trigger::Retry,
        };
        let status_code = match &a.outcome {
            Outcome::Status(code) => Some(*code),
            Outcome::Timeout | Outcome::Error(_) => None,
        };
        let error = attempt_error(&a.outcome, a.duration_ms, a.response.as_ref());
        let (result, next_attempt_at) = AttemptOutcome::of(&a.result);
        AttemptView {
            n: a.n,
            at: rfc3339(a.at_ms),
            duration_ms: a.duration_ms,
            trigger,
            status_code,
            error,
            result,
            next_attempt_at,
            response: a.response.as_ref().map(ResponseView::from),
        }
    }
}

/// `POST /v1/targets/{id}/test`: the test event and its one attempt.
#[derive(Debug, Serialize)]
pub struct TestDelivery<'a> {
    pub event: EventView<'a>,
    pub attempt: AttemptView,
}

/// One event owed to a target, in `GET /v1/targets/{id}/deliveries`.
#[derive(Debug, Serialize)]
pub struct TargetDelivery<'a> {
    pub event_id: &'a EventId,
    pub seq: u64,
    #[serde(rename = "type")]
    pub event_type: &'a str,
    pub received_at: String,
    pub status: Status,
    pub attempts: Vec<AttemptView>,
}

/// `GET /v1/targets/{id}/deliveries`.
#[derive(Debug, Serialize)]
pub struct TargetDeliveries<'a> {
    pub target_id: &'a TargetId,
    pub deliveries: Vec<TargetDelivery<'a>>,
    pub next_after: Option<u64>,
}
