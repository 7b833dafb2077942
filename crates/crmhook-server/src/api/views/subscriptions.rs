//! Subscriptions, and the filter builder's preview and facets.

use crmhook_core::time::rfc3339;
use crmhook_core::TargetId;
use crmhook_core::{EventId, Subscription, SubscriptionId};
use serde::Serialize;
use serde_json::Value;

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
