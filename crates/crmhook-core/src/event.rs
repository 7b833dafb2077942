//! Ingest: telling the three accepted body shapes apart, validating each event, and the event
//! as it is kept in the log.
//!
//! The shapes (contract section 2): a JSON object is one MAIA event; an array whose items have
//! `Entity` is a Maximizer envelope; any other array holds MAIA events. Each event keeps the
//! exact JSON text it arrived with, so that a MAIA delivery's body is byte for byte what the CRM
//! sent.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::error::CoreError;
use crate::id::{EventId, SourceId};
use crate::source::SourceKind;
use json::{read, read_body, Read};

/// The four MAIA event types.
pub const MAIA_TYPES: [&str; 4] = ["crm_field_update", "crm_record_created", "crm_record_deleted", "ai_pause"];

/// Which CRM an event came from, which decides how it is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Maia,
    Maximizer,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Maia => "maia",
            EventKind::Maximizer => "maximizer",
        }
    }
}

/// An event as validated from a request, before the log gives it an id and a seq.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub kind: EventKind,
    /// `eventType` (MAIA) or `<Entity>.<Op>` (Maximizer).
    pub event_type: String,
    /// The event's JSON text exactly as ingested.
    pub payload: Vec<u8>,
    pub record_id: Option<String>,
    pub kanban_id: Option<String>,
    pub field_name: Option<String>,
    /// The event's own idempotency key: Maximizer's `Id`; for a MAIA event posted by a source
    /// (MAIA events carry no id), the source and the SHA-256 of the event's exact bytes.
    pub external_id: Option<String>,
    /// The major number of Maximizer's `Data.Version`.
    pub version_major: Option<u32>,
    /// The source that posted it (`None`: `POST /v1/events`).
    pub source_id: Option<SourceId>,
    /// A test event (`POST /v1/targets/{id}/test`), not a CRM's: delivered to the target it
    /// tests only, and matched by no subscription ([`crate::subscription`]).
    pub test: bool,
}

/// An event in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub id: EventId,
    pub received_at_ms: u64,
    pub kind: EventKind,
    pub event_type: String,
    /// Written as bytes, not as a sequence of numbers: the same bytes in the log (a length,
    /// then the bytes), read in one copy instead of one call per byte.
    #[serde(with = "bytes")]
    pub payload: Vec<u8>,
    pub record_id: Option<String>,
    pub kanban_id: Option<String>,
    pub field_name: Option<String>,
    pub external_id: Option<String>,
    pub version_major: Option<u32>,
    pub source_id: Option<SourceId>,
    /// A test event (`POST /v1/targets/{id}/test`): see [`NewEvent::test`].
    pub test: bool,
}

/// `Vec<u8>` through serde's byte methods. A format that has no bytes of its own (JSON) writes
/// a sequence, as it does for a plain `Vec<u8>`, and either is read back. Public for the
/// store's older record layouts.
#[doc(hidden)]
pub mod bytes {
    use serde::de::{Deserializer, SeqAccess, Visitor};
    use serde::Serializer;

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = Vec<u8>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }

            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }

            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(b) = seq.next_element()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        deserializer.deserialize_byte_buf(Bytes)
    }
}

impl Event {
    pub fn from_new(new: NewEvent, seq: u64, id: EventId, received_at_ms: u64) -> Self {
        Event {
            seq,
            id,
            received_at_ms,
            kind: new.kind,
            event_type: new.event_type,
            payload: new.payload,
            record_id: new.record_id,
            kanban_id: new.kanban_id,
            field_name: new.field_name,
            external_id: new.external_id,
            version_major: new.version_major,
            source_id: new.source_id,
            test: new.test,
        }
    }

    /// The payload as a JSON value (`null` if it could not be parsed, which validation rules out).
    pub fn payload_json(&self) -> Value {
        serde_json::from_slice(&self.payload).unwrap_or(Value::Null)
    }
}

/// Parses and validates an ingest body. All or nothing: the first invalid event fails the whole
/// request, naming its index when the body is an array.
pub fn parse_ingest(body: &[u8]) -> Result<Vec<NewEvent>, CoreError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    match first {
        Some(b'{') => {
            let read = read_body(body).map_err(malformed)?;
            Ok(vec![maia(object(&read)?, &read)?])
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_slice(body).map_err(malformed)?;
            if items.is_empty() {
                return Err(CoreError::field("body", "the array holds no events"));
            }
            let reads: Vec<Read<'_>> =
                items.iter().map(|r| read(r.get())).collect::<Result<_, _>>().map_err(malformed)?;
            // `null` counts as absent, as for every member: a MAIA event with `"Entity": null` is one.
            let maximizer = reads.iter().any(|r| r.value.get("Entity").is_some_and(|v| !v.is_null()));
            reads
                .iter()
                .enumerate()
                .map(|(i, read)| {
                    object(read)
                        .and_then(|obj| if maximizer { maximizer_event(obj, read) } else { maia(obj, read) })
                        .map_err(|e| e.at_index(i))
                })
                .collect()
        }
        _ => {
            let value = read_body(body).map_err(malformed)?.value;
            Err(CoreError::Shape(format!(
                "the body must be a MAIA event object, an array of MAIA events or a Maximizer envelope (an array), not {}",
                kind_of(&value)
            )))
        }
    }
}

/// What a source's request holds: the events that keep the rules, and the pieces that do not,
/// each with its exact bytes and why (they go to the quarantine, nothing is lost).
#[derive(Debug, Default)]
pub struct SourceBatch {
    pub events: Vec<NewEvent>,
    pub rejected: Vec<Rejection>,
    /// How many elements (or bodies) broke the rules: `rejected.len()`, unless there were more
    /// than [`MAX_PIECES_PER_REQUEST`] and the body is kept whole as one piece.
    pub elements_rejected: usize,
}

/// The most pieces one source request is kept as in the quarantine, one per element. A request
/// with more elements that break the rules is kept whole, as one piece (its exact body, which a
/// retry takes again as a batch): what a request costs in memory, on disk and in the log
/// writer's time stays bounded whatever its body holds (a 1 MiB body can hold 340,000 empty
/// objects).
pub const MAX_PIECES_PER_REQUEST: usize = 1_000;

/// A piece of a source's request that is not an event: one element of its array, or the whole
/// body when it does not parse at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The element's index in the posted array; `None` for the whole body.
    pub index: Option<usize>,
    /// Its exact bytes, as posted.
    pub bytes: Vec<u8>,
    pub reason: String,
}

/// Reads what a source posted, element by element: a JSON object is one event, an array holds
/// one event per element (MAIA posts one object per request, Maximizer an array). Each element
/// is validated as an event of the source's kind on its own; one that breaks the rules, or a
/// body that does not parse, is a [`Rejection`] and the others are still events. Each event is
/// marked with `source`; a MAIA event's idempotency key is its source and the SHA-256 of its
/// exact bytes (a CRM's retry of the same body is a duplicate). A body with more than
/// [`MAX_PIECES_PER_REQUEST`] elements that break the rules is one piece, the whole body.
pub fn parse_source(kind: SourceKind, source: &SourceId, body: &[u8]) -> SourceBatch {
    let (mut batch, total) = read_source(kind, source, body);
    if batch.elements_rejected > MAX_PIECES_PER_REQUEST {
        let reason = format!(
            "{}; more than {MAX_PIECES_PER_REQUEST}, so the request is kept whole, as one piece",
            batch.summary(total)
        );
        batch.rejected = vec![Rejection { index: None, bytes: body.to_vec(), reason }];
    }
    batch
}

/// [`parse_source`] but for the bound: at most one piece more than [`MAX_PIECES_PER_REQUEST`]
/// is kept (the others only counted); answers the batch and how many elements the body has.
fn read_source(kind: SourceKind, source: &SourceId, body: &[u8]) -> (SourceBatch, usize) {
    let mut batch = SourceBatch::default();
    let whole = |reason: String| Rejection { index: None, bytes: body.to_vec(), reason };
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    let mut only_one = None;
    let elements: Vec<&RawValue> = match first {
        Some(b'[') => match serde_json::from_slice::<Vec<&RawValue>>(body) {
            Ok(items) => items,
            Err(e) => return batch.whole(whole(format!("malformed JSON: {e}"))),
        },
        Some(b'{') => match read_body(body) {
            Ok(read) => {
                only_one = Some(read);
                Vec::new()
            }
            Err(e) => return batch.whole(whole(format!("malformed JSON: {e}"))),
        },
        _ => {
            let reason = match read_body(body) {
                Ok(r) => format!("the body must be a JSON object or an array of events, not {}", kind_of(&r.value)),
                Err(e) => format!("malformed JSON: {e}"),
            };
            return batch.whole(whole(reason));
        }
    };
    let total = if only_one.is_some() { 1 } else { elements.len() };
    // Each element is read as it is validated, so that only one is held as a JSON value at a time.
    let pieces = only_one
        .map(|read| (None, read.raw.as_bytes(), Ok(read)))
        .into_iter()
        .chain(elements.into_iter().enumerate().map(|(i, raw)| (Some(i), raw.get().as_bytes(), read(raw.get()))));
    for (index, bytes, read) in pieces {
        // An element that scanned as JSON reads as JSON; what can still fail here is a member
        // named like serde_json's reserved `$serde_json::private::Number`, as it always did.
        match read.map_err(malformed).and_then(|read| source_event(kind, source, &read)) {
            Ok(event) => batch.events.push(event),
            Err(e) => {
                batch.elements_rejected += 1;
                // Past the bound only counted: `parse_source` keeps the body whole.
                if batch.rejected.len() <= MAX_PIECES_PER_REQUEST {
                    batch.rejected.push(Rejection { index, bytes: bytes.to_vec(), reason: e.to_string() });
                }
            }
        }
    }
    (batch, total)
}

impl SourceBatch {
    /// The batch of a body that is not an array of elements: the whole body is one piece.
    fn whole(mut self, piece: Rejection) -> (SourceBatch, usize) {
        self.rejected.push(piece);
        self.elements_rejected += 1;
        (self, 1)
    }

    /// What broke the rules in a body of `total` elements: how many, and the first and why.
    fn summary(&self, total: usize) -> String {
        let (index, reason) = self.rejected.first().map_or((None, ""), |r| (r.index, r.reason.as_str()));
        match (index, self.elements_rejected) {
            (None, _) => reason.to_owned(),
            (Some(i), 1) => format!("the element at index {i}: {reason}"),
            (Some(i), n) => format!("{n} of its {total} elements break the rules (the first, at index {i}: {reason})"),
        }
    }
}

/// One element posted by `source` (of `kind`), validated as an event of that kind and marked
/// with its source (and, for MAIA, its idempotency key).
fn source_event(kind: SourceKind, source: &SourceId, read: &Read<'_>) -> Result<NewEvent, CoreError> {
    let obj = object(read)?;
    let mut event = match kind {
        SourceKind::Maia => maia(obj, read)?,
        SourceKind::Maximizer => maximizer_event(obj, read)?,
    };
    event.source_id = Some(source.clone());
    if kind == SourceKind::Maia {
        // The object's own bytes: a retry that adds or drops a newline after it is the same event.
        event.external_id = Some(maia_key(source, read.text.as_bytes()));
    }
    Ok(event)
}

/// A MAIA event's idempotency key: `maia:` and the first 128 bits of the SHA-256 of its source
/// id and its exact bytes, in hex (short: it is a key of the store's, one per event).
fn maia_key(source: &SourceId, payload: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::new().chain_update(source.as_str()).chain_update(b"\n").chain_update(payload).finalize();
    format!("maia:{}", hex::encode(&digest[..16]))
}

/// Reads a quarantined piece again (a retry) with the rules [`parse_source`] applies: an
/// element (`whole` false) as one element of a batch, so an element that is itself an array
/// stays refused; a whole body (`whole`: a body that did not parse, or one kept whole past
/// [`MAX_PIECES_PER_REQUEST`]) as a body, every element of it an event. Answers the events, or
/// why the piece is still not one.
pub fn parse_source_piece(
    kind: SourceKind,
    source: &SourceId,
    bytes: &[u8],
    whole: bool,
) -> Result<Vec<NewEvent>, String> {
    if !whole {
        let read = read_body(bytes).map_err(|e| malformed(e).to_string())?;
        return source_event(kind, source, &read).map(|event| vec![event]).map_err(|e| e.to_string());
    }
    let (batch, total) = read_source(kind, source, bytes);
    if batch.elements_rejected > 0 {
        return Err(batch.summary(total));
    }
    if batch.events.is_empty() {
        return Err("the body holds no event".into());
    }
    Ok(batch.events)
}

/// Reads a JSON body as serde_json does, and refuses it (as ingest refuses an event) when one
/// of its objects repeats a member name: for the admin API's bodies, where the last value of a
/// repeated name would otherwise win unseen (`{"kind": "maia", "kind": "maximizer"}`).
pub fn parse_json_unique(body: &[u8]) -> Result<Value, CoreError> {
    let read = read_body(body).map_err(malformed)?;
    unique_members(&read)?;
    Ok(read.value)
}

/// The object an event must be.
fn object<'r>(read: &'r Read<'_>) -> Result<&'r Map<String, Value>, CoreError> {
    read.value.as_object().ok_or_else(|| {
        CoreError::field("body", format!("an event must be a JSON object, not {}", kind_of(&read.value)))
    })
}

/// Refuses an event that repeats a member name (see [`Read`]).
fn unique_members(read: &Read<'_>) -> Result<(), CoreError> {
    match &read.repeated {
        None => Ok(()),
        Some(why) => Err(CoreError::field("body", format!("{why}: every member name of an object must be unique"))),
    }
}

fn malformed(e: serde_json::Error) -> CoreError {
    CoreError::Malformed(e.to_string())
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ty {
    Str,
    Bool,
    Obj,
    StrArray,
    Any,
}

impl Ty {
    fn holds(self, v: &Value) -> bool {
        match self {
            Ty::Str => v.is_string(),
            Ty::Bool => v.is_boolean(),
            Ty::Obj => v.is_object(),
            Ty::StrArray => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
            Ty::Any => true,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Ty::Str => "a string",
            Ty::Bool => "a boolean",
            Ty::Obj => "an object",
            Ty::StrArray => "an array of strings",
            Ty::Any => "any value",
        }
    }
}

/// Fields every MAIA type may carry, with their types.
const MAIA_COMMON: &[(&str, Ty)] = &[
    ("recordId", Ty::Str),
    ("kanbanId", Ty::Str),
    ("kanbanName", Ty::Str),
    ("externalUserId", Ty::Str),
    ("sessionId", Ty::Str),
    ("channelId", Ty::Str),
];

/// Fields with the type their values must have.
type Typed = &'static [(&'static str, Ty)];

/// The fields of each MAIA type (from the MAIA payload examples) and which are required.
fn maia_fields(event_type: &str) -> Option<(&'static [&'static str], Typed)> {
    const RECORD: &[(&str, Ty)] = &[
        ("title", Ty::Str),
        ("status", Ty::Str),
        ("customFields", Ty::Obj),
        ("assignedUserIds", Ty::StrArray),
        ("createdBy", Ty::Str),
        ("createdAt", Ty::Str),
        ("deletedBy", Ty::Str),
        ("deletedAt", Ty::Str),
    ];
    match event_type {
        "crm_field_update" => Some((
            &["recordId", "kanbanId"],
            &[
                ("fieldName", Ty::Str),
                ("fieldType", Ty::Str),
                ("previousValue", Ty::Any),
                ("newValue", Ty::Any),
                ("updatedBy", Ty::Str),
                ("updatedAt", Ty::Str),
            ],
        )),
        "crm_record_created" | "crm_record_deleted" => Some((&["recordId", "kanbanId"], RECORD)),
        "ai_pause" => Some((&["sessionId"], &[("aiPaused", Ty::Bool), ("changedBy", Ty::Str), ("changedAt", Ty::Str)])),
        _ => None,
    }
}

fn check_type(obj: &Map<String, Value>, field: &str, ty: Ty, prefix: &str) -> Result<(), CoreError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(()),
        Some(v) if ty.holds(v) => Ok(()),
        Some(v) => {
            // An array of the wrong items is said as such: "not an array" would read as nonsense.
            let what = match (ty, v.as_array().and_then(|a| a.iter().position(|item| !item.is_string()))) {
                (Ty::StrArray, Some(i)) => format!("an array whose item {i} is {}", kind_of(&v[i])),
                _ => kind_of(v).to_owned(),
            };
            Err(CoreError::field(
                format!("{prefix}{field}"),
                format!("`{prefix}{field}` must be {}, not {what}", ty.name()),
            ))
        }
    }
}

fn required_str<'a>(obj: &'a Map<String, Value>, field: &str, prefix: &str) -> Result<&'a str, CoreError> {
    let name = format!("{prefix}{field}");
    match obj.get(field) {
        None | Some(Value::Null) => Err(CoreError::field(&name, format!("`{name}` is required"))),
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) => Err(CoreError::field(&name, format!("`{name}` must not be empty"))),
        Some(v) => Err(CoreError::field(&name, format!("`{name}` must be a string, not {}", kind_of(v)))),
    }
}

fn opt_str(obj: &Map<String, Value>, field: &str) -> Option<String> {
    obj.get(field).and_then(Value::as_str).map(str::to_owned)
}

fn maia(obj: &Map<String, Value>, read: &Read<'_>) -> Result<NewEvent, CoreError> {
    unique_members(read)?;
    let event_type = match obj.get("eventType") {
        None => return Err(CoreError::field("eventType", "a MAIA event needs `eventType`")),
        Some(Value::String(s)) => s.as_str(),
        Some(v) => {
            return Err(CoreError::field("eventType", format!("`eventType` must be a string, not {}", kind_of(v))))
        }
    };
    let (required, fields) = maia_fields(event_type).ok_or_else(|| {
        CoreError::field(
            "eventType",
            format!("unknown eventType {event_type:?}; expected one of {}", MAIA_TYPES.join(", ")),
        )
    })?;
    for field in required {
        required_str(obj, field, "")?;
    }
    for (field, ty) in MAIA_COMMON.iter().chain(fields) {
        check_type(obj, field, *ty, "")?;
    }
    Ok(NewEvent {
        kind: EventKind::Maia,
        event_type: event_type.to_owned(),
        // Byte for byte as the CRM sent it: a body that is this one object is delivered whole,
        // whitespace around it included (an element of an array has none).
        payload: read.raw.as_bytes().to_vec(),
        record_id: opt_str(obj, "recordId"),
        kanban_id: opt_str(obj, "kanbanId"),
        field_name: if event_type == "crm_field_update" { opt_str(obj, "fieldName") } else { None },
        external_id: None,
        version_major: None,
        source_id: None,
        test: false,
    })
}

/// `Entity` and `Op` become part of the event type, so they are identifiers.
fn identifier(s: &str) -> bool {
    !s.is_empty() && s.len() <= 100 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn maximizer_event(obj: &Map<String, Value>, read: &Read<'_>) -> Result<NewEvent, CoreError> {
    unique_members(read)?;
    let id = required_str(obj, "Id", "")?;
    required_str(obj, "Timestamp", "")?;
    required_str(obj, "WorkspaceId", "")?;
    let entity = required_str(obj, "Entity", "")?;
    if !identifier(entity) {
        return Err(CoreError::field("Entity", "`Entity` must be a name of 1 to 100 letters, digits, `_` or `-`"));
    }
    for (field, ty) in [("SourceId", Ty::Str), ("Recipients", Ty::Any), ("ProcessedTimestamp", Ty::Str)] {
        check_type(obj, field, ty, "")?;
    }
    if let Some(r) = obj.get("Recipients").filter(|v| !v.is_null() && !v.is_array()) {
        return Err(CoreError::field("Recipients", format!("`Recipients` must be an array, not {}", kind_of(r))));
    }
    let data = match obj.get("Data") {
        Some(Value::Object(d)) => d,
        None | Some(Value::Null) => return Err(CoreError::field("Data", "`Data` is required")),
        Some(v) => return Err(CoreError::field("Data", format!("`Data` must be an object, not {}", kind_of(v)))),
    };
    let op = required_str(data, "Op", "Data.")?;
    if !identifier(op) {
        return Err(CoreError::field("Data.Op", "`Data.Op` must be a name of 1 to 100 letters, digits, `_` or `-`"));
    }
    check_type(data, "Original", Ty::Obj, "Data.")?;
    check_type(data, "New", Ty::Obj, "Data.")?;
    // A string, as Maximizer sends it (`"1.1"`): a number is the wrong type (contract: 422).
    let version = match data.get("Version") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::String(_)) => return Err(CoreError::field("Data.Version", "`Data.Version` must not be empty")),
        None | Some(Value::Null) => return Err(CoreError::field("Data.Version", "`Data.Version` is required")),
        Some(v) => {
            return Err(CoreError::field(
                "Data.Version",
                format!("`Data.Version` must be a string, not {}", kind_of(v)),
            ))
        }
    };
    let version_major = version.split('.').next().and_then(|m| m.trim().parse::<u32>().ok());
    let key_of = |side: &str| data.get(side).and_then(|v| v.get("Key")).and_then(Value::as_str).map(str::to_owned);
    Ok(NewEvent {
        kind: EventKind::Maximizer,
        event_type: format!("{entity}.{op}"),
        payload: read.text.as_bytes().to_vec(),
        record_id: key_of("New").or_else(|| key_of("Original")),
        kanban_id: None,
        field_name: None,
        external_id: Some(id.to_owned()),
        version_major,
        source_id: None,
        test: false,
    })
}

mod json;
#[cfg(test)]
mod tests;
