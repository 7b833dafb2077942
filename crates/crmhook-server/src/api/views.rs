//! The answers of the API, as types: each struct is one JSON object of the contract
//! (`docs/openapi.json`), its fields in the order they are written (the workspace builds
//! serde_json with `preserve_order`). A member that a view leaves out when it does not apply is
//! skipped, never `null`; one the contract shows as `null` is an `Option` without a skip.
//!
//! The conversions from the core and store types are here too, and nothing else: no handler
//! builds JSON by hand, and no view is read back as data.

use std::borrow::Cow;

use base64::Engine;
use crmhook_core::retry::Outcome;
use crmhook_core::time::{now_ms, rfc3339};
use crmhook_core::{Event, EventId, RejectedId, Source, SourceId, SourceKind, Subscription, SubscriptionId};
use crmhook_core::{Target, TargetId};
use crmhook_store::{AckEntry, Attempt, AttemptResult, DeliveryStatus, Disabled, Rejected, Response, Retried};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::Value;

use crmhook_dispatch::metrics::Health;
use crmhook_dispatch::stats::{AttemptCounts, TypeCounts};

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

impl<'a> From<&'a Rejected> for Rejection<'a> {
    fn from(r: &'a Rejected) -> Self {
        Rejection { id: &r.id, index: r.index, reason: &r.reason }
    }
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

// ---- events --------------------------------------------------------------------------------

/// An event, in lists, in the stream, and (with its deliveries) on its own.
#[derive(Debug, Serialize)]
pub struct EventView<'a> {
    pub id: &'a EventId,
    pub seq: u64,
    #[serde(rename = "type")]
    pub event_type: &'a str,
    pub received_at: String,
    /// The event as the CRM sent it; serde_json keeps each number's text
    /// (`arbitrary_precision`): `12000.00` is shown as sent.
    pub payload: Value,
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
            payload: e.payload_json(),
            source_id: e.source_id.as_ref(),
            test: e.test,
        }
    }
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
        let (result, next_attempt_at) = match a.result {
            AttemptResult::Delivered => (AttemptOutcome::Delivered, None),
            AttemptResult::Retrying { next_at_ms } => (AttemptOutcome::Retrying, Some(rfc3339(next_at_ms))),
            AttemptResult::Dead => (AttemptOutcome::Dead, None),
            AttemptResult::TargetDisabled => (AttemptOutcome::TargetDisabled, None),
        };
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

// ---- targets -------------------------------------------------------------------------------

/// What every answer shows instead of a target's header value.
pub const REDACTED: &str = "<redacted>";

/// A target's `headers`, as an object in the order they were given, each value shown as
/// [`REDACTED`]: header values often hold a receiver's credentials, so they are write-only
/// (set by `POST` and `PATCH`, sent with each delivery, never shown again).
#[derive(Debug)]
pub struct Headers<'a>(pub &'a [(String, String)]);

impl Serialize for Headers<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, _) in self.0 {
            map.serialize_entry(name, REDACTED)?;
        }
        map.end()
    }
}

/// A `POST` or `PATCH` may send [`REDACTED`] back as a header's value (a client that edits what
/// it read): that header keeps the value it has in `current` (the same name, in any case). A
/// header that has no current value cannot take the placeholder: 422 on `headers.<name>`.
pub fn keep_redacted(current: Option<&Target>, headers: &mut [(String, String)]) -> Result<(), crate::error::ApiError> {
    for (name, value) in headers.iter_mut().filter(|(_, v)| v == REDACTED) {
        let kept = current
            .and_then(|t| t.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)))
            .map(|(_, v)| v.clone())
            .ok_or_else(|| {
                crate::error::ApiError::unprocessable(
                    &format!("headers.{name}"),
                    format!("`{REDACTED}` keeps a header's current value, and `{name}` has none; send its value"),
                )
            })?;
        *value = kept;
    }
    Ok(())
}

/// A target's health, from the store and this process's counters.
#[derive(Debug, Serialize)]
pub struct TargetHealth {
    pub pending: u64,
    pub dead: u64,
    pub last_success_at: Option<String>,
    pub failures_in_a_row: u64,
}

impl TargetHealth {
    pub fn new((pending, dead): (u64, u64), health: &Health) -> Self {
        TargetHealth {
            pending,
            dead,
            last_success_at: health.last_success_ms.map(rfc3339),
            failures_in_a_row: health.failures_in_a_row,
        }
    }
}

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

/// A target.
#[derive(Debug, Serialize)]
pub struct TargetView<'a> {
    pub id: &'a TargetId,
    pub name: &'a str,
    pub url: Cow<'a, str>,
    pub headers: Headers<'a>,
    pub timeout_ms: u64,
    pub retry_schedule_ms: &'a [u64],
    pub ordered: bool,
    pub format: Option<&'static str>,
    /// How many bytes of each answer's body are kept with its attempt.
    pub response_body_bytes: u32,
    pub created_at: String,
    pub updated_at: String,
    /// While the secret before the last rotation still signs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at: Option<String>,
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<&'a str>,
    /// Only when it is created and when its secret is rotated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<&'a str>,
    /// Absent from the creation's answer (nothing is known yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<TargetHealth>,
}

impl<'a> TargetView<'a> {
    pub fn new(t: &'a Target, disabled: Option<&'a Disabled>, show_secret: bool) -> Self {
        TargetView {
            id: &t.id,
            name: &t.name,
            url: Cow::Borrowed(&t.url),
            headers: Headers(&t.headers),
            timeout_ms: t.timeout_ms,
            retry_schedule_ms: &t.retry_schedule_ms,
            ordered: t.ordered,
            format: t.format.map(|f| f.as_str()),
            response_body_bytes: t.response_body_bytes,
            created_at: rfc3339(t.created_at_ms),
            updated_at: rfc3339(t.updated_at_ms),
            previous_secret_expires_at: t
                .previous_secret
                .as_ref()
                .filter(|(_, until)| *until > now_ms())
                .map(|(_, until)| rfc3339(*until)),
            enabled: disabled.is_none(),
            disabled_at: disabled.map(|d| rfc3339(d.at_ms)),
            disabled_reason: disabled.map(|d| d.reason.as_str()),
            secret: show_secret.then_some(t.secret.as_str()),
            health: None,
        }
    }

    /// The view with the URL's user info and query redacted (what may hold a credential).
    pub fn without_credentials(mut self) -> Self {
        self.url = Cow::Owned(crate::api::audit::url_without_credentials(&self.url));
        self
    }

    pub fn with_health(self, health: TargetHealth) -> Self {
        TargetView { health: Some(health), ..self }
    }
}

/// `GET /v1/targets`.
#[derive(Debug, Serialize)]
pub struct Targets<'a> {
    pub targets: Vec<TargetView<'a>>,
}

// ---- subscriptions -------------------------------------------------------------------------

/// One filter of a subscription.
#[derive(Debug, Serialize)]
pub struct FilterView<'a> {
    pub path: &'a str,
    pub op: &'static str,
    pub value: Value,
}

/// A subscription.
#[derive(Debug, Serialize)]
pub struct SubscriptionView<'a> {
    pub id: &'a SubscriptionId,
    pub target_id: &'a TargetId,
    pub event_types: &'a [String],
    pub kanban_ids: &'a [String],
    pub field_names: &'a [String],
    pub filters: Vec<FilterView<'a>>,
    pub version_major: Option<u32>,
    pub created_at: String,
}

impl<'a> From<&'a Subscription> for SubscriptionView<'a> {
    fn from(s: &'a Subscription) -> Self {
        SubscriptionView {
            id: &s.id,
            target_id: &s.target_id,
            event_types: &s.event_types,
            kanban_ids: &s.kanban_ids,
            field_names: &s.field_names,
            filters: s
                .filters
                .iter()
                .map(|f| FilterView {
                    path: &f.path,
                    op: f.op.as_str(),
                    value: serde_json::from_str(&f.value_json).unwrap_or(Value::Null),
                })
                .collect(),
            version_major: s.version_major,
            created_at: rfc3339(s.created_at_ms),
        }
    }
}

/// `GET /v1/subscriptions`.
#[derive(Debug, Serialize)]
pub struct Subscriptions<'a> {
    pub subscriptions: Vec<SubscriptionView<'a>>,
}

/// One event a subscription would match, in `POST /v1/subscriptions/preview`.
#[derive(Debug, Serialize)]
pub struct PreviewEvent {
    pub id: EventId,
    pub seq: u64,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The event's record (MAIA `recordId`, Maximizer record key), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
    pub received_at: String,
}

/// `POST /v1/subscriptions/preview`: of the last `scanned` events, the `matched` ones, newest
/// first.
#[derive(Debug, Serialize)]
pub struct Preview {
    pub scanned: u64,
    pub matched: u64,
    pub events: Vec<PreviewEvent>,
}

/// An event type seen in `GET /v1/events/facets`, with how many of the events read had it.
#[derive(Debug, Serialize)]
pub struct TypeCount {
    #[serde(rename = "type")]
    pub event_type: String,
    pub count: u64,
}

/// A kanban id or field name seen in `GET /v1/events/facets`, with its count.
#[derive(Debug, Serialize)]
pub struct ValueCount {
    pub value: String,
    pub count: u64,
}

/// `GET /v1/events/facets`: what the last `scanned` events hold, most frequent first, for the
/// console's pickers; `known_types` are MAIA's event types, seen or not.
#[derive(Debug, Serialize)]
pub struct Facets {
    pub scanned: u64,
    pub types: Vec<TypeCount>,
    pub kanban_ids: Vec<ValueCount>,
    pub field_names: Vec<ValueCount>,
    pub known_types: &'static [&'static str],
}

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

// ---- API keys ------------------------------------------------------------------------------

/// An API key (`GET /v1/keys`): never its secret, but in the answer that made it (`key`).
#[derive(Debug, Serialize)]
pub struct KeyView<'a> {
    pub id: &'a crmhook_core::id::KeyId,
    pub name: &'a str,
    pub role: &'static str,
    /// `admin_token` or `ingest_token` for the keys the configuration sets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<&'a str>,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// The secret, in the answer of a creation or a rotation only: shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<&'a str>,
}

impl<'a> KeyView<'a> {
    pub fn new(k: &'a crate::keys::ApiKey, secret: Option<&'a str>) -> Self {
        KeyView {
            id: &k.id,
            name: &k.name,
            role: k.role.as_str(),
            bootstrap: k.bootstrap.as_deref(),
            created_at: rfc3339(k.created_ms),
            rotated_at: k.rotated_ms.map(rfc3339),
            revoked_at: k.revoked_ms.map(rfc3339),
            key: secret,
        }
    }
}

/// `GET /v1/keys`.
#[derive(Debug, Serialize)]
pub struct Keys<'a> {
    pub keys: Vec<KeyView<'a>>,
}

/// `GET /v1/me`: the key that called.
#[derive(Debug, Serialize)]
pub struct Me<'a> {
    pub id: &'a crmhook_core::id::KeyId,
    pub name: &'a str,
    pub role: &'static str,
}

#[cfg(test)]
#[path = "views_tests.rs"]
mod tests;
