//! The store's own layouts of the core types it keeps, and the explicit conversions between the
//! two.
//!
//! bincode is positional: a field added to, moved in or removed from a struct changes what
//! every record already on disk decodes to. So the store never encodes `crmhook_core`'s types
//! directly: it encodes these structs, whose fields are in the order of the records on disk and
//! change only with a new version (a new struct beside the old one, and a version byte that
//! says which; see `codec`). A new field on a core type is a compile error here, not silent
//! corruption. Enums are encoded by variant index: a variant is only ever added at the end.
//! Ids stay the core's typed ids: they are serialised as their plain string.
//!
//! Targets and sources have a second version whose secrets are sealed ([`TargetV2`],
//! [`SourceV2`], record version [`SEALED_VERSION`]): they are converted to and from version 1
//! with the store's key (`seal`), and version 1 records, in clear, are still read.
//!
//! `tests/fixture.rs` reads a data dir written on 2026-12-02 with these layouts.

use serde::{Deserialize, Serialize};

use crmhook_core::retry::Outcome;
use crmhook_core::source::SourceKind;
use crmhook_core::subscription::{Filter, Op};
use crmhook_core::target::Format;
use crmhook_core::{
    Event, EventId, EventKind, NewEvent, Source, SourceId, Subscription, SubscriptionId, Target, TargetId,
};

use crate::seal::SealKey;
use crate::StoreError;

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

/// A target (`T` keys), record version 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TargetV1 {
    pub id: TargetId,
    pub name: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub timeout_ms: u64,
    pub retry_schedule_ms: Vec<u64>,
    pub ordered: bool,
    pub format: Option<FormatV1>,
    pub secret: String,
    pub previous_secret: Option<(String, u64)>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum FormatV1 {
    Maia,
    Maximizer,
}

impl From<&Target> for TargetV1 {
    fn from(t: &Target) -> Self {
        TargetV1 {
            id: t.id.clone(),
            name: t.name.clone(),
            url: t.url.clone(),
            headers: t.headers.clone(),
            timeout_ms: t.timeout_ms,
            retry_schedule_ms: t.retry_schedule_ms.clone(),
            ordered: t.ordered,
            format: t.format.map(|f| match f {
                Format::Maia => FormatV1::Maia,
                Format::Maximizer => FormatV1::Maximizer,
            }),
            secret: t.secret.clone(),
            previous_secret: t.previous_secret.clone(),
            created_at_ms: t.created_at_ms,
            updated_at_ms: t.updated_at_ms,
        }
    }
}

impl From<TargetV1> for Target {
    fn from(t: TargetV1) -> Self {
        Target {
            id: t.id,
            name: t.name,
            url: t.url,
            headers: t.headers,
            timeout_ms: t.timeout_ms,
            retry_schedule_ms: t.retry_schedule_ms,
            ordered: t.ordered,
            format: t.format.map(|f| match f {
                FormatV1::Maia => Format::Maia,
                FormatV1::Maximizer => Format::Maximizer,
            }),
            secret: t.secret,
            previous_secret: t.previous_secret,
            created_at_ms: t.created_at_ms,
            updated_at_ms: t.updated_at_ms,
            // Versions 1 and 2 were written before the options: each takes its default.
            response_body_bytes: crmhook_core::target::MAX_RESPONSE_BODY_BYTES,
        }
    }
}

/// A target's options that came after its first layouts: record versions 3 ([`TargetV3`], in
/// clear) and 4 ([`TargetV4`], sealed) hold them after the target of version 1 or 2; a
/// record of version 1 or 2 reads with each at its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TargetOptionsV1 {
    pub response_body_bytes: u32,
}

impl TargetOptionsV1 {
    pub(crate) fn of(t: &Target) -> Self {
        TargetOptionsV1 { response_body_bytes: t.response_body_bytes }
    }

    /// `target` (read from a layout without options) with these.
    pub(crate) fn apply(self, target: Target) -> Target {
        Target { response_body_bytes: self.response_body_bytes, ..target }
    }
}

/// The record version of targets in clear with their options ([`TargetV3`]).
pub(crate) const CLEAR_OPTIONS_VERSION: u8 = 3;
/// The record version of sealed targets with their options ([`TargetV4`]).
pub(crate) const SEALED_OPTIONS_VERSION: u8 = 4;

/// A target (`T` keys), record version 3: [`TargetV1`] (in clear) and its options. Written by
/// a store opened without a key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TargetV3 {
    pub target: TargetV1,
    pub options: TargetOptionsV1,
}

/// A target (`T` keys), record version 4: [`TargetV2`] (sealed) and its options. What a store
/// with its key writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TargetV4 {
    pub target: TargetV2,
    pub options: TargetOptionsV1,
}

/// The record version of targets and sources whose secrets are sealed ([`TargetV2`],
/// [`SourceV2`]); version 1 ([`TargetV1`], [`SourceV1`]) holds them in clear and is still read.
/// Targets are now written as version 4 ([`TargetV4`]), or 3 without a key.
pub(crate) const SEALED_VERSION: u8 = 2;

/// Where a sealed field is kept: its record's tag and id, and the field, bound to the sealed
/// bytes as associated data.
fn place(tag: char, id: &str, field: &str) -> Vec<u8> {
    format!("{tag}/{id}/{field}").into_bytes()
}

/// A target (`T` keys), record version 2: [`TargetV1`] with its URL, its header values and its
/// secrets sealed by the store's key (`seal`); header names, the schedule and the rest stay
/// in clear.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TargetV2 {
    pub id: TargetId,
    pub name: String,
    pub url: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub timeout_ms: u64,
    pub retry_schedule_ms: Vec<u64>,
    pub ordered: bool,
    pub format: Option<FormatV1>,
    pub secret: Vec<u8>,
    pub previous_secret: Option<(Vec<u8>, u64)>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

impl TargetV2 {
    pub(crate) fn seal(t: TargetV1, key: &SealKey) -> Result<TargetV2, StoreError> {
        let id = t.id.as_str();
        let at = |field: &str| place('T', id, field);
        let headers = t
            .headers
            .into_iter()
            .map(|(name, value)| {
                let sealed = key.seal(&at(&format!("header/{name}")), value.as_bytes())?;
                Ok((name, sealed))
            })
            .collect::<Result<_, StoreError>>()?;
        let previous_secret = match t.previous_secret {
            Some((s, until)) => Some((key.seal(&at("previous_secret"), s.as_bytes())?, until)),
            None => None,
        };
        Ok(TargetV2 {
            url: key.seal(&at("url"), t.url.as_bytes())?,
            headers,
            secret: key.seal(&at("secret"), t.secret.as_bytes())?,
            previous_secret,
            id: t.id,
            name: t.name,
            timeout_ms: t.timeout_ms,
            retry_schedule_ms: t.retry_schedule_ms,
            ordered: t.ordered,
            format: t.format,
            created_at_ms: t.created_at_ms,
            updated_at_ms: t.updated_at_ms,
        })
    }

    pub(crate) fn open(self, key: &SealKey) -> Result<TargetV1, StoreError> {
        let id = self.id.as_str();
        let at = |field: &str| place('T', id, field);
        let headers = self
            .headers
            .into_iter()
            .map(|(name, sealed)| {
                let value = key.open_string(&at(&format!("header/{name}")), &sealed)?;
                Ok((name, value))
            })
            .collect::<Result<_, StoreError>>()?;
        let previous_secret = match self.previous_secret {
            Some((s, until)) => Some((key.open_string(&at("previous_secret"), &s)?, until)),
            None => None,
        };
        Ok(TargetV1 {
            url: key.open_string(&at("url"), &self.url)?,
            headers,
            secret: key.open_string(&at("secret"), &self.secret)?,
            previous_secret,
            id: self.id,
            name: self.name,
            timeout_ms: self.timeout_ms,
            retry_schedule_ms: self.retry_schedule_ms,
            ordered: self.ordered,
            format: self.format,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
        })
    }
}

/// A subscription (`S` keys), record version 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SubscriptionV1 {
    pub id: SubscriptionId,
    pub target_id: TargetId,
    pub event_types: Vec<String>,
    pub kanban_ids: Vec<String>,
    pub field_names: Vec<String>,
    pub filters: Vec<FilterV1>,
    pub version_major: Option<u32>,
    pub created_at_ms: u64,
    pub from_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct FilterV1 {
    pub path: String,
    pub op: OpV1,
    pub value_json: String,
}

/// The filter operators, in the order of their variant index on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum OpV1 {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    In,
    Nin,
    Contains,
    Exists,
}

/// The operators in pairs, one place for both directions of the conversion.
const OPS: [(Op, OpV1); 10] = [
    (Op::Eq, OpV1::Eq),
    (Op::Ne, OpV1::Ne),
    (Op::Gt, OpV1::Gt),
    (Op::Gte, OpV1::Gte),
    (Op::Lt, OpV1::Lt),
    (Op::Lte, OpV1::Lte),
    (Op::In, OpV1::In),
    (Op::Nin, OpV1::Nin),
    (Op::Contains, OpV1::Contains),
    (Op::Exists, OpV1::Exists),
];

fn op_v1(op: Op) -> OpV1 {
    OPS.iter().find(|(o, _)| *o == op).map_or(OpV1::Eq, |(_, v)| *v)
}

fn op_of(v: OpV1) -> Op {
    OPS.iter().find(|(_, w)| *w == v).map_or(Op::Eq, |(o, _)| *o)
}

impl From<&Subscription> for SubscriptionV1 {
    fn from(s: &Subscription) -> Self {
        SubscriptionV1 {
            id: s.id.clone(),
            target_id: s.target_id.clone(),
            event_types: s.event_types.clone(),
            kanban_ids: s.kanban_ids.clone(),
            field_names: s.field_names.clone(),
            filters: s
                .filters
                .iter()
                .map(|f| FilterV1 { path: f.path.clone(), op: op_v1(f.op), value_json: f.value_json.clone() })
                .collect(),
            version_major: s.version_major,
            created_at_ms: s.created_at_ms,
            from_seq: s.from_seq,
        }
    }
}

impl From<SubscriptionV1> for Subscription {
    fn from(s: SubscriptionV1) -> Self {
        Subscription {
            id: s.id,
            target_id: s.target_id,
            event_types: s.event_types,
            kanban_ids: s.kanban_ids,
            field_names: s.field_names,
            filters: s
                .filters
                .into_iter()
                .map(|f| Filter { path: f.path, op: op_of(f.op), value_json: f.value_json })
                .collect(),
            version_major: s.version_major,
            created_at_ms: s.created_at_ms,
            from_seq: s.from_seq,
        }
    }
}

/// A source (`Z` keys), record version 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SourceV1 {
    pub id: SourceId,
    pub name: String,
    pub kind: SourceKindV1,
    pub enabled: bool,
    pub maia_secret: Option<String>,
    pub key_sha256: Option<Vec<u8>>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

/// A source's kind; the quarantine's records keep it too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum SourceKindV1 {
    Maia,
    Maximizer,
}

impl From<SourceKind> for SourceKindV1 {
    fn from(k: SourceKind) -> Self {
        match k {
            SourceKind::Maia => SourceKindV1::Maia,
            SourceKind::Maximizer => SourceKindV1::Maximizer,
        }
    }
}

impl From<SourceKindV1> for SourceKind {
    fn from(k: SourceKindV1) -> Self {
        match k {
            SourceKindV1::Maia => SourceKind::Maia,
            SourceKindV1::Maximizer => SourceKind::Maximizer,
        }
    }
}

impl From<&Source> for SourceV1 {
    fn from(s: &Source) -> Self {
        SourceV1 {
            id: s.id.clone(),
            name: s.name.clone(),
            kind: s.kind.into(),
            enabled: s.enabled,
            maia_secret: s.maia_secret.clone(),
            key_sha256: s.key_sha256.clone(),
            created_at_ms: s.created_at_ms,
            updated_at_ms: s.updated_at_ms,
        }
    }
}

impl From<SourceV1> for Source {
    fn from(s: SourceV1) -> Self {
        Source {
            id: s.id,
            name: s.name,
            kind: s.kind.into(),
            enabled: s.enabled,
            maia_secret: s.maia_secret,
            key_sha256: s.key_sha256,
            created_at_ms: s.created_at_ms,
            updated_at_ms: s.updated_at_ms,
        }
    }
}

/// A source (`Z` keys), record version 2: [`SourceV1`] with a MAIA source's secret sealed by
/// the store's key. A Maximizer source's key was only ever kept as its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SourceV2 {
    pub id: SourceId,
    pub name: String,
    pub kind: SourceKindV1,
    pub enabled: bool,
    pub maia_secret: Option<Vec<u8>>,
    pub key_sha256: Option<Vec<u8>>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

impl SourceV2 {
    pub(crate) fn seal(s: SourceV1, key: &SealKey) -> Result<SourceV2, StoreError> {
        let maia_secret = match s.maia_secret {
            Some(secret) => Some(key.seal(&place('Z', s.id.as_str(), "maia_secret"), secret.as_bytes())?),
            None => None,
        };
        Ok(SourceV2 {
            maia_secret,
            id: s.id,
            name: s.name,
            kind: s.kind,
            enabled: s.enabled,
            key_sha256: s.key_sha256,
            created_at_ms: s.created_at_ms,
            updated_at_ms: s.updated_at_ms,
        })
    }

    pub(crate) fn open(self, key: &SealKey) -> Result<SourceV1, StoreError> {
        let maia_secret = match self.maia_secret {
            Some(sealed) => Some(key.open_string(&place('Z', self.id.as_str(), "maia_secret"), &sealed)?),
            None => None,
        };
        Ok(SourceV1 {
            maia_secret,
            id: self.id,
            name: self.name,
            kind: self.kind,
            enabled: self.enabled,
            key_sha256: self.key_sha256,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
        })
    }
}

/// An attempt's outcome inside the store's attempt records (`#[serde(with)]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum OutcomeV1 {
    Status(u16),
    Timeout,
    Error(String),
}

/// `Outcome` through [`OutcomeV1`], for the fields of the store's own records.
pub(crate) mod outcome_v1 {
    use super::{Outcome, OutcomeV1};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(o: &Outcome, serializer: S) -> Result<S::Ok, S::Error> {
        match o {
            Outcome::Status(code) => OutcomeV1::Status(*code),
            Outcome::Timeout => OutcomeV1::Timeout,
            Outcome::Error(e) => OutcomeV1::Error(e.clone()),
        }
        .serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Outcome, D::Error> {
        Ok(match OutcomeV1::deserialize(deserializer)? {
            OutcomeV1::Status(code) => Outcome::Status(code),
            OutcomeV1::Timeout => Outcome::Timeout,
            OutcomeV1::Error(e) => Outcome::Error(e),
        })
    }
}

/// `SourceKind` through [`SourceKindV1`], for the fields of the store's own records.
pub(crate) mod source_kind_v1 {
    use super::{SourceKind, SourceKindV1};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(k: &SourceKind, serializer: S) -> Result<S::Ok, S::Error> {
        SourceKindV1::from(*k).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SourceKind, D::Error> {
        SourceKindV1::deserialize(deserializer).map(SourceKind::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode, encode};
    use serde_json::json;

    /// Until 2026-12-02 the store encoded the core types themselves: the layouts here must
    /// give the very same bytes, so that those records still read, and read back whole.
    fn same_record<C, V>(core: &C)
    where
        C: Serialize + PartialEq + std::fmt::Debug,
        V: Serialize + serde::de::DeserializeOwned + for<'a> From<&'a C> + Into<C>,
    {
        let ours = encode(&V::from(core)).expect("encode");
        assert_eq!(ours, encode(core).expect("encode"), "the layout of {core:?}");
        assert_eq!(&decode::<V>(&ours).expect("decode").into(), core);
    }

    #[test]
    fn the_layouts_are_the_records_already_on_disk() {
        let mut target = Target::create(
            json!({"name": "t", "url": "https://a.example/x", "headers": {"X-K": "v"}, "format": "maximizer", "ordered": true})
                .as_object()
                .expect("object"),
            false,
            crmhook_core::sign::generate_secret(),
            7,
        )
        .expect("valid");
        target.previous_secret = Some(("whsec_old".into(), 99));
        // Core's `Target` has gained `response_body_bytes` since, at its end: what it encodes
        // begins with the very bytes of version 1, which reads back with the option's default.
        let v1 = encode(&TargetV1::from(&target)).expect("encode");
        assert_eq!(&encode(&target).expect("encode")[..v1.len()], &v1[..], "the layout of {target:?}");
        assert_eq!(Target::from(decode::<TargetV1>(&v1).expect("decode")), target);
        // Versions 3 and 4 keep the option.
        let narrow = Target { response_body_bytes: 0, ..target.clone() };
        let v3 = TargetV3 { target: TargetV1::from(&narrow), options: TargetOptionsV1::of(&narrow) };
        let read = decode::<TargetV3>(&encode(&v3).expect("encode")).expect("decode");
        assert_eq!(read.options.apply(read.target.into()), narrow);
        let mut filters = Vec::new();
        for (name, _) in Op::ALL {
            let value = match name {
                "in" | "nin" => json!([1]),
                "exists" => json!(true),
                _ => json!(1),
            };
            filters.push(json!({"path": "/a", "op": name, "value": value}));
        }
        let sub = Subscription::create(
            json!({"target_id": target.id.as_str(), "event_types": ["Opportunity.*"], "kanban_ids": ["k"],
                   "field_names": ["f"], "filters": filters, "version_major": 2})
            .as_object()
            .expect("object"),
            3,
        )
        .expect("valid");
        same_record::<Subscription, SubscriptionV1>(&sub);
        for kind in ["maia", "maximizer"] {
            let (source, _) =
                Source::create(json!({"name": "s", "kind": kind}).as_object().expect("object"), 5).expect("valid");
            same_record::<Source, SourceV1>(&source);
        }
    }
}
