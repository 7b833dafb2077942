//! The layouts of events: in chunks (record versions 1 to 4) and as an append carries them
//! through the replicated log.

use serde::{Deserialize, Serialize};

use crmhook_core::{Event, EventId, EventKind, NewEvent, SourceId};

/// An event in a chunk of record version 3: [`EventV2`] and whether it is a test event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct EventV3 {
    pub seq: u64,
    pub id: EventId,
    pub received_at_ms: u64,
    pub kind: EventKindV1,
    pub event_type: String,
    #[serde(with = "crmhook_core::event::bytes")]
    pub payload: Vec<u8>,
    pub record_id: Option<String>,
    pub kanban_id: Option<String>,
    pub field_name: Option<String>,
    pub external_id: Option<String>,
    pub version_major: Option<u32>,
    pub source_id: Option<SourceId>,
    pub test: bool,
}

impl From<EventV3> for Event {
    fn from(e: EventV3) -> Self {
        Event {
            seq: e.seq,
            id: e.id,
            received_at_ms: e.received_at_ms,
            kind: e.kind.into(),
            event_type: e.event_type,
            payload: e.payload,
            record_id: e.record_id,
            kanban_id: e.kanban_id,
            field_name: e.field_name,
            external_id: e.external_id,
            version_major: e.version_major,
            source_id: e.source_id,
            test: e.test,
        }
    }
}

/// A request's `Idempotency-Key` as a chunk of record version 4 keeps it beside the request's
/// events: the key the request came with and its events (`count` of them from `first_seq`,
/// all new). Open writes the request's `K` record again from it if a crash came between the
/// chunk and that record (`open::restore_request_keys`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RequestKeyV1 {
    pub key: String,
    pub first_seq: u64,
    pub count: u32,
}

/// An event as an append carries it through the replicated log (`replica`), before it has a
/// seq and an id: [`NewEvent`]'s layout, version 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct NewEventV1 {
    pub kind: EventKindV1,
    pub event_type: String,
    #[serde(with = "crmhook_core::event::bytes")]
    pub payload: Vec<u8>,
    pub record_id: Option<String>,
    pub kanban_id: Option<String>,
    pub field_name: Option<String>,
    pub external_id: Option<String>,
    pub version_major: Option<u32>,
    pub source_id: Option<SourceId>,
    pub test: bool,
}

impl From<NewEvent> for NewEventV1 {
    fn from(e: NewEvent) -> Self {
        NewEventV1 {
            kind: e.kind.into(),
            event_type: e.event_type,
            payload: e.payload,
            record_id: e.record_id,
            kanban_id: e.kanban_id,
            field_name: e.field_name,
            external_id: e.external_id,
            version_major: e.version_major,
            source_id: e.source_id,
            test: e.test,
        }
    }
}

impl From<NewEventV1> for NewEvent {
    fn from(e: NewEventV1) -> Self {
        NewEvent {
            kind: e.kind.into(),
            event_type: e.event_type,
            payload: e.payload,
            record_id: e.record_id,
            kanban_id: e.kanban_id,
            field_name: e.field_name,
            external_id: e.external_id,
            version_major: e.version_major,
            source_id: e.source_id,
            test: e.test,
        }
    }
}

/// An event in a chunk of record version 2 (before test events).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct EventV2 {
    pub seq: u64,
    pub id: EventId,
    pub received_at_ms: u64,
    pub kind: EventKindV1,
    pub event_type: String,
    #[serde(with = "crmhook_core::event::bytes")]
    pub payload: Vec<u8>,
    pub record_id: Option<String>,
    pub kanban_id: Option<String>,
    pub field_name: Option<String>,
    pub external_id: Option<String>,
    pub version_major: Option<u32>,
    pub source_id: Option<SourceId>,
}

/// [`EventV3`] borrowed from an [`Event`], to encode the writer's events without a copy.
#[derive(Serialize)]
pub(crate) struct EventV3Ref<'a> {
    seq: u64,
    id: &'a EventId,
    received_at_ms: u64,
    kind: EventKindV1,
    event_type: &'a str,
    #[serde(with = "crmhook_core::event::bytes")]
    payload: &'a [u8],
    record_id: &'a Option<String>,
    kanban_id: &'a Option<String>,
    field_name: &'a Option<String>,
    external_id: &'a Option<String>,
    version_major: Option<u32>,
    source_id: &'a Option<SourceId>,
    test: bool,
}

impl<'a> From<&'a Event> for EventV3Ref<'a> {
    fn from(e: &'a Event) -> Self {
        EventV3Ref {
            seq: e.seq,
            id: &e.id,
            received_at_ms: e.received_at_ms,
            kind: e.kind.into(),
            event_type: &e.event_type,
            payload: &e.payload,
            record_id: &e.record_id,
            kanban_id: &e.kanban_id,
            field_name: &e.field_name,
            external_id: &e.external_id,
            version_major: e.version_major,
            source_id: &e.source_id,
            test: e.test,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum EventKindV1 {
    Maia,
    Maximizer,
}

impl From<EventKind> for EventKindV1 {
    fn from(k: EventKind) -> Self {
        match k {
            EventKind::Maia => EventKindV1::Maia,
            EventKind::Maximizer => EventKindV1::Maximizer,
        }
    }
}

impl From<EventKindV1> for EventKind {
    fn from(k: EventKindV1) -> Self {
        match k {
            EventKindV1::Maia => EventKind::Maia,
            EventKindV1::Maximizer => EventKind::Maximizer,
        }
    }
}

impl From<EventV2> for Event {
    fn from(e: EventV2) -> Self {
        Event {
            seq: e.seq,
            id: e.id,
            received_at_ms: e.received_at_ms,
            kind: e.kind.into(),
            event_type: e.event_type,
            payload: e.payload,
            record_id: e.record_id,
            kanban_id: e.kanban_id,
            field_name: e.field_name,
            external_id: e.external_id,
            version_major: e.version_major,
            source_id: e.source_id,
            test: false,
        }
    }
}

/// An event as chunks of record version 1 held it (before events recorded their source).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct EventV1 {
    pub seq: u64,
    pub id: EventId,
    pub received_at_ms: u64,
    pub kind: EventKindV1,
    pub event_type: String,
    #[serde(with = "crmhook_core::event::bytes")]
    pub payload: Vec<u8>,
    pub record_id: Option<String>,
    pub kanban_id: Option<String>,
    pub field_name: Option<String>,
    pub external_id: Option<String>,
    pub version_major: Option<u32>,
}

impl From<EventV1> for Event {
    fn from(e: EventV1) -> Event {
        Event {
            seq: e.seq,
            id: e.id,
            received_at_ms: e.received_at_ms,
            kind: e.kind.into(),
            event_type: e.event_type,
            payload: e.payload,
            record_id: e.record_id,
            kanban_id: e.kanban_id,
            field_name: e.field_name,
            external_id: e.external_id,
            version_major: e.version_major,
            source_id: None,
            test: false,
        }
    }
}

impl From<&Event> for EventV2 {
    fn from(e: &Event) -> EventV2 {
        EventV2 {
            seq: e.seq,
            id: e.id.clone(),
            received_at_ms: e.received_at_ms,
            kind: e.kind.into(),
            event_type: e.event_type.clone(),
            payload: e.payload.clone(),
            record_id: e.record_id.clone(),
            kanban_id: e.kanban_id.clone(),
            field_name: e.field_name.clone(),
            external_id: e.external_id.clone(),
            version_major: e.version_major,
            source_id: e.source_id.clone(),
        }
    }
}

impl From<&Event> for EventV1 {
    fn from(e: &Event) -> EventV1 {
        EventV1 {
            seq: e.seq,
            id: e.id.clone(),
            received_at_ms: e.received_at_ms,
            kind: e.kind.into(),
            event_type: e.event_type.clone(),
            payload: e.payload.clone(),
            record_id: e.record_id.clone(),
            kanban_id: e.kanban_id.clone(),
            field_name: e.field_name.clone(),
            external_id: e.external_id.clone(),
            version_major: e.version_major,
        }
    }
}
