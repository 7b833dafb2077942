//! Subscriptions: which events a target wants, and the matching of an event against them.
//!
//! A subscription matches when every condition it has holds (AND); a target gets an event once
//! if any of its subscriptions matches (OR). See contract section 3 and `docs/SUBSCRIPTIONS.md`.
//!
//! A test event (`POST /v1/targets/{id}/test`, [`Event::test`]) matches no subscription: it is
//! delivered to the target it tests, by that request, and to no one else; every path that
//! routes the log (the router's wake-ups, a target's window, the API's "who is owed this")
//! asks these matchers, so this one rule keeps test events out of all of them.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::CoreError;
use crate::event::{Event, MAIA_TYPES};
use crate::id::{SubscriptionId, TargetId};

mod compare;
mod pointer;
pub use compare::eval;
pub use pointer::valid_pointer;
use pointer::{pointer_tokens, resolve};

/// The filter operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
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

impl Op {
    pub const ALL: [(&'static str, Op); 10] = [
        ("eq", Op::Eq),
        ("ne", Op::Ne),
        ("gt", Op::Gt),
        ("gte", Op::Gte),
        ("lt", Op::Lt),
        ("lte", Op::Lte),
        ("in", Op::In),
        ("nin", Op::Nin),
        ("contains", Op::Contains),
        ("exists", Op::Exists),
    ];

    pub fn parse(s: &str) -> Option<Op> {
        Op::ALL.iter().find(|(name, _)| *name == s).map(|(_, op)| *op)
    }

    pub fn as_str(self) -> &'static str {
        Op::ALL.iter().find(|(_, op)| *op == self).map(|(name, _)| *name).unwrap_or("eq")
    }
}

/// One filter: `path` (a JSON Pointer into the event), `op`, and `value` (kept as JSON text so
/// that the record stays plain data on disk).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    pub path: String,
    pub op: Op,
    pub value_json: String,
}

/// A subscription as kept in the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: SubscriptionId,
    pub target_id: TargetId,
    pub event_types: Vec<String>,
    pub kanban_ids: Vec<String>,
    pub field_names: Vec<String>,
    pub filters: Vec<Filter>,
    pub version_major: Option<u32>,
    pub created_at_ms: u64,
    /// The log's head when the subscription was created: it applies to later events only.
    pub from_seq: u64,
}

/// The most subscriptions one target may have (more answer 422).
pub const MAX_PER_TARGET: usize = 100;
/// The most values in one list: `event_types`, `kanban_ids`, `field_names`, or the array of
/// an `in` / `nin` filter.
pub const MAX_LIST_VALUES: usize = 1_000;
/// The most values in all of one subscription's lists together (the three lists and every
/// `in` / `nin` array).
pub const MAX_VALUES: usize = 2_000;
/// The most filters in one subscription.
pub const MAX_FILTERS: usize = 50;
/// The longest string in `event_types`, `kanban_ids` or `field_names`, in bytes.
pub const MAX_STRING_BYTES: usize = 256;
/// The longest filter `path`, in bytes.
pub const MAX_PATH_BYTES: usize = 1_024;
/// The most bytes of JSON that one subscription's lists and filter values may take together.
pub const MAX_BYTES: usize = 128 * 1024;

/// Refuses one more subscription for a target that has `existing` already.
pub fn check_room(existing: usize) -> Result<(), CoreError> {
    if existing >= MAX_PER_TARGET {
        return Err(CoreError::field(
            "target_id",
            format!("the target has {existing} subscriptions, the most one target may have is {MAX_PER_TARGET}"),
        ));
    }
    Ok(())
}

const FIELDS: [&str; 6] = ["target_id", "event_types", "kanban_ids", "field_names", "filters", "version_major"];

/// Refuses a member a subscription does not have.
fn known_members(body: &Map<String, Value>) -> Result<(), CoreError> {
    match body.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        Some(other) => {
            Err(CoreError::field(other, format!("unknown field `{other}`; a subscription has {}", FIELDS.join(", "))))
        }
        None => Ok(()),
    }
}

fn target_id(v: &Value) -> Result<TargetId, CoreError> {
    match v {
        Value::String(s) => TargetId::parse(s)
            .ok_or_else(|| CoreError::field("target_id", format!("`target_id` {s:?} is not a target id (tgt_…)"))),
        _ => Err(CoreError::field("target_id", "`target_id` must be a target id (tgt_…)")),
    }
}

impl Subscription {
    /// A new subscription from a creation request. Whether `target_id` names an existing target
    /// is for the caller to check.
    pub fn create(body: &Map<String, Value>, now_ms: u64) -> Result<Subscription, CoreError> {
        known_members(body)?;
        let target_id = match body.get("target_id") {
            Some(v @ Value::String(_)) => target_id(v)?,
            None | Some(Value::Null) => return Err(CoreError::field("target_id", "`target_id` is required")),
            Some(_) => {
                return Err(CoreError::field("target_id", "`target_id` must be a target's id (tgt_…), a string"))
            }
        };
        Subscription::read(body, target_id, now_ms)
    }

    /// A subscription to try out (`POST /v1/subscriptions/preview`): the body of a creation,
    /// read by the same rules, except that `target_id` may be absent. Answers the target it
    /// names, if any (whether that target exists is for the caller to check), and the
    /// subscription, which applies to every event (`from_seq` 0); without a `target_id` its
    /// `target_id` is a fresh id that names no target. It is never stored.
    pub fn draft(body: &Map<String, Value>, now_ms: u64) -> Result<(Option<TargetId>, Subscription), CoreError> {
        known_members(body)?;
        let named = match body.get("target_id") {
            None | Some(Value::Null) => None,
            Some(v) => Some(target_id(v)?),
        };
        let sub = Subscription::read(body, named.clone().unwrap_or_else(TargetId::generate), now_ms)?;
        Ok((named, sub))
    }

    /// This subscription edited by a partial body (`PATCH /v1/subscriptions/{id}`): each member
    /// given replaces the current one, `null` clears it, and the result is checked exactly as a
    /// creation is (the same 422s, naming the member). `target_id` cannot change (giving the
    /// same one is allowed); the id, the creation time and `from_seq` are kept.
    pub fn patched(&self, body: &Map<String, Value>) -> Result<Subscription, CoreError> {
        if let Some(other) = body.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(match other.as_str() {
                "id" | "created_at" => CoreError::field(other, format!("`{other}` cannot be set")),
                _ => CoreError::field(
                    other,
                    format!("unknown field `{other}`; a subscription has {}", FIELDS.join(", ")),
                ),
            });
        }
        match body.get("target_id") {
            None => {}
            Some(v) if v.as_str() == Some(self.target_id.as_str()) => {}
            Some(_) => {
                return Err(CoreError::field(
                    "target_id",
                    format!(
                    "`target_id` cannot change (this subscription is {}'s); create a subscription for the other target",
                    self.target_id
                ),
                ))
            }
        }
        let mut merged = self.to_body();
        for (name, value) in body {
            if value.is_null() {
                merged.remove(name);
            } else {
                merged.insert(name.clone(), value.clone());
            }
        }
        let edited = Subscription::read(&merged, self.target_id.clone(), self.created_at_ms)?;
        Ok(Subscription { id: self.id.clone(), from_seq: self.from_seq, ..edited })
    }

    /// The members of a creation request that would make this subscription (`target_id` and
    /// the conditions; the empty ones left out).
    pub fn to_body(&self) -> Map<String, Value> {
        let mut body = Map::new();
        body.insert("target_id".into(), Value::String(self.target_id.to_string()));
        for (name, list) in
            [("event_types", &self.event_types), ("kanban_ids", &self.kanban_ids), ("field_names", &self.field_names)]
        {
            if !list.is_empty() {
                body.insert(name.into(), Value::Array(list.iter().cloned().map(Value::String).collect()));
            }
        }
        if !self.filters.is_empty() {
            let filters = self
                .filters
                .iter()
                .map(|f| {
                    let mut o = Map::new();
                    o.insert("path".into(), Value::String(f.path.clone()));
                    o.insert("op".into(), Value::String(f.op.as_str().into()));
                    o.insert("value".into(), serde_json::from_str(&f.value_json).unwrap_or(Value::Null));
                    Value::Object(o)
                })
                .collect();
            body.insert("filters".into(), Value::Array(filters));
        }
        if let Some(major) = self.version_major {
            body.insert("version_major".into(), Value::from(major));
        }
        body
    }

    /// The conditions of a creation body whose members are known and whose target is read.
    fn read(body: &Map<String, Value>, target_id: TargetId, now_ms: u64) -> Result<Subscription, CoreError> {
        let event_types = strings(body, "event_types")?;
        if let Some(bad) = event_types.iter().find(|t| !valid_event_type(t)) {
            return Err(CoreError::field(
                "event_types",
                format!(
                    "unknown event type {bad:?}: expected one of {} or <Entity>.<Op> / <Entity>.*",
                    MAIA_TYPES.join(", ")
                ),
            ));
        }
        let filters = match body.get("filters") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) if items.len() <= MAX_FILTERS => {
                items.iter().enumerate().map(|(i, f)| filter(i, f)).collect::<Result<_, _>>()?
            }
            Some(_) => {
                return Err(CoreError::field(
                    "filters",
                    format!("`filters` must be an array of at most {MAX_FILTERS} filters"),
                ))
            }
        };
        let version_major =
            match body.get("version_major") {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| {
                    CoreError::field("version_major", "`version_major` must be a non-negative integer")
                })?),
            };
        let kanban_ids = strings(body, "kanban_ids")?;
        let field_names = strings(body, "field_names")?;
        within_totals(&[&event_types, &kanban_ids, &field_names], &filters)?;
        Ok(Subscription {
            id: SubscriptionId::generate(),
            target_id,
            event_types,
            kanban_ids,
            field_names,
            filters,
            version_major,
            created_at_ms: now_ms,
            from_seq: 0,
        })
    }

    /// Whether this subscription wants `event`. `json` is the event's payload, parsed on first
    /// use (only filters need it).
    pub fn matches(&self, event: &Event, json: &mut LazyJson<'_>) -> bool {
        if event.seq <= self.from_seq || event.test {
            return false;
        }
        if !self.event_types.is_empty() && !self.event_types.iter().any(|t| type_matches(t, &event.event_type)) {
            return false;
        }
        if !self.kanban_ids.is_empty() && !event.kanban_id.as_ref().is_none_or(|k| self.kanban_ids.contains(k)) {
            return false;
        }
        if !self.field_names.is_empty()
            && event.event_type == "crm_field_update"
            && !event.field_name.as_ref().is_some_and(|f| self.field_names.contains(f))
        {
            return false;
        }
        if let Some(major) = self.version_major {
            if event.version_major != Some(major) {
                return false;
            }
        }
        self.filters.iter().all(|f| {
            let want: Value = serde_json::from_str(&f.value_json).unwrap_or(Value::Null);
            eval(f.op, json.get(event).pointer(&f.path), &want)
        })
    }
}

/// Whether any of a target's subscriptions wants `event` (compiles them first; hold a
/// [`Compiled`] to match many events).
pub fn any_matches(subscriptions: &[Subscription], event: &Event) -> bool {
    Compiled::new(subscriptions.to_vec()).matches(event)
}

/// A target's subscriptions compiled for matching: filter values parsed, JSON Pointers split,
/// lists turned into sets, and subscriptions indexed by event type so that an event is only
/// checked against the subscriptions that can want its type. The event's payload is parsed at
/// most once, and only if a candidate has filters.
#[derive(Debug, Clone, Default)]
pub struct Compiled {
    subscriptions: Vec<Subscription>,
    compiled: Vec<CompiledSub>,
    by_type: HashMap<String, Vec<usize>>,
    by_entity: HashMap<String, Vec<usize>>,
    any_type: Vec<usize>,
}

#[derive(Debug, Clone)]
struct CompiledSub {
    from_seq: u64,
    kanban_ids: HashSet<String>,
    field_names: HashSet<String>,
    version_major: Option<u32>,
    filters: Vec<CompiledFilter>,
}

#[derive(Debug, Clone)]
struct CompiledFilter {
    pointer: Vec<String>,
    op: Op,
    value: Value,
}

impl Compiled {
    pub fn new(subscriptions: Vec<Subscription>) -> Compiled {
        let mut c = Compiled { subscriptions, ..Compiled::default() };
        for (i, s) in c.subscriptions.iter().enumerate() {
            c.compiled.push(CompiledSub {
                from_seq: s.from_seq,
                kanban_ids: s.kanban_ids.iter().cloned().collect(),
                field_names: s.field_names.iter().cloned().collect(),
                version_major: s.version_major,
                filters: s
                    .filters
                    .iter()
                    .map(|f| CompiledFilter {
                        pointer: pointer_tokens(&f.path),
                        op: f.op,
                        value: serde_json::from_str(&f.value_json).unwrap_or(Value::Null),
                    })
                    .collect(),
            });
            if s.event_types.is_empty() {
                c.any_type.push(i);
            }
            for t in &s.event_types {
                let t = t.to_ascii_lowercase();
                let list = match t.strip_suffix(".*") {
                    Some(entity) => c.by_entity.entry(entity.to_owned()).or_default(),
                    None => c.by_type.entry(t.clone()).or_default(),
                };
                if list.last() != Some(&i) {
                    list.push(i);
                }
            }
        }
        c
    }

    /// The subscriptions this was compiled from.
    pub fn subscriptions(&self) -> &[Subscription] {
        &self.subscriptions
    }

    /// Indexes of the subscriptions whose `event_types` admit this event (ignoring case),
    /// ascending, unique.
    fn candidates(&self, event: &Event) -> Vec<usize> {
        let mut out: Vec<usize> = self.any_type.clone();
        if self.by_type.is_empty() && self.by_entity.is_empty() {
            return out;
        }
        let lower;
        let event_type = if event.event_type.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = event.event_type.to_ascii_lowercase();
            lower.as_str()
        } else {
            event.event_type.as_str()
        };
        if let Some(list) = self.by_type.get(event_type) {
            out.extend(list);
        }
        if let Some((entity, _)) = event_type.split_once('.') {
            if let Some(list) = self.by_entity.get(entity) {
                out.extend(list);
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Whether any subscription wants `event`.
    pub fn matches(&self, event: &Event) -> bool {
        let mut json = LazyJson::default();
        self.candidates(event).into_iter().any(|i| self.compiled[i].matches(event, &mut json))
    }

    /// Every subscription that wants `event`.
    pub fn matching(&self, event: &Event) -> Vec<&SubscriptionId> {
        let mut json = LazyJson::default();
        self.candidates(event)
            .into_iter()
            .filter(|i| self.compiled[*i].matches(event, &mut json))
            .map(|i| &self.subscriptions[i].id)
            .collect()
    }
}

impl CompiledSub {
    fn matches(&self, event: &Event, json: &mut LazyJson<'_>) -> bool {
        event.seq > self.from_seq
            && !event.test
            && (self.kanban_ids.is_empty() || event.kanban_id.as_ref().is_none_or(|k| self.kanban_ids.contains(k)))
            && (self.field_names.is_empty()
                || event.event_type != "crm_field_update"
                || event.field_name.as_ref().is_some_and(|f| self.field_names.contains(f)))
            && self.version_major.is_none_or(|m| event.version_major == Some(m))
            && self.filters.iter().all(|f| eval(f.op, resolve(json.get(event), &f.pointer), &f.value))
    }
}

/// An event's payload, parsed once, on first use.
#[derive(Default)]
pub struct LazyJson<'a> {
    value: Option<Value>,
    _event: std::marker::PhantomData<&'a Event>,
}

impl LazyJson<'_> {
    fn get(&mut self, event: &Event) -> &Value {
        self.value.get_or_insert_with(|| event.payload_json())
    }
}

/// Whether a pattern of `event_types` admits an event type, ignoring case (`Opportunity.*`
/// admits every op of the entity). Event listings take the same patterns.
pub fn type_matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix(".*") {
        Some(entity) => {
            event_type.as_bytes().get(entity.len()) == Some(&b'.')
                && event_type.get(..entity.len()).is_some_and(|e| e.eq_ignore_ascii_case(entity))
        }
        None => pattern.eq_ignore_ascii_case(event_type),
    }
}

fn valid_event_type(t: &str) -> bool {
    if MAIA_TYPES.iter().any(|m| m.eq_ignore_ascii_case(t)) {
        return true;
    }
    let ident = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    match t.split_once('.') {
        Some((entity, op)) => ident(entity) && (op == "*" || ident(op)),
        None => false,
    }
}

fn strings(body: &Map<String, Value>, field: &str) -> Result<Vec<String>, CoreError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) if items.len() <= MAX_LIST_VALUES => items
            .iter()
            .map(|v| match v.as_str() {
                Some(s) if !s.is_empty() && s.len() <= MAX_STRING_BYTES => Ok(s.to_owned()),
                _ => Err(CoreError::field(
                    field,
                    format!("`{field}` must hold non-empty strings of at most {MAX_STRING_BYTES} bytes"),
                )),
            })
            .collect(),
        Some(_) => {
            Err(CoreError::field(field, format!("`{field}` must be an array of at most {MAX_LIST_VALUES} strings")))
        }
    }
}

/// The limits on a subscription as a whole: how many values its lists and `in` / `nin`
/// filters hold together, and how many bytes they and the filter values take.
fn within_totals(lists: &[&Vec<String>], filters: &[Filter]) -> Result<(), CoreError> {
    let in_values = |f: &Filter| match f.op {
        Op::In | Op::Nin => serde_json::from_str::<Value>(&f.value_json).ok().and_then(|v| v.as_array().map(Vec::len)),
        _ => None,
    };
    let values: usize =
        lists.iter().map(|l| l.len()).sum::<usize>() + filters.iter().filter_map(in_values).sum::<usize>();
    if values > MAX_VALUES {
        return Err(CoreError::field(
            "body",
            format!("the subscription holds {values} values in its lists and in/nin filters, at most {MAX_VALUES}"),
        ));
    }
    let bytes: usize = lists.iter().flat_map(|l| l.iter()).map(|s| s.len() + 3).sum::<usize>()
        + filters.iter().map(|f| f.path.len() + f.value_json.len()).sum::<usize>();
    if bytes > MAX_BYTES {
        return Err(CoreError::field(
            "body",
            format!("the subscription's lists and filters take {bytes} bytes of JSON, at most {MAX_BYTES}"),
        ));
    }
    Ok(())
}

fn filter(i: usize, f: &Value) -> Result<Filter, CoreError> {
    let field = format!("filters[{i}]");
    let bad = |why: String| CoreError::field(&field, format!("`{field}`: {why}"));
    let obj = f.as_object().ok_or_else(|| bad("must be an object {path, op, value}".into()))?;
    if let Some(other) = obj.keys().find(|k| !["path", "op", "value"].contains(&k.as_str())) {
        return Err(bad(format!("unknown member `{other}`")));
    }
    let path =
        obj.get("path").and_then(Value::as_str).ok_or_else(|| bad("`path` must be a JSON Pointer string".into()))?;
    if path.len() > MAX_PATH_BYTES {
        return Err(bad(format!("`path` is longer than {MAX_PATH_BYTES} bytes")));
    }
    if !valid_pointer(path) {
        return Err(bad(format!("`path` {path:?} is not a JSON Pointer (like /Data/New/Revenue)")));
    }
    let ops = || Op::ALL.map(|(n, _)| n).join(" ");
    let op_name = match obj.get("op") {
        Some(Value::String(name)) => name.as_str(),
        None => return Err(bad(format!("`op` is required, one of {}", ops()))),
        Some(_) => return Err(bad(format!("`op` must be a string, one of {}", ops()))),
    };
    let op = Op::parse(op_name).ok_or_else(|| bad(format!("unknown op {op_name:?}; expected one of {}", ops())))?;
    let value = obj.get("value").cloned();
    let value = match (op, value) {
        (Op::Exists, None) => Value::Bool(true),
        (Op::Exists, Some(v @ Value::Bool(_))) => v,
        (Op::Exists, Some(_)) => return Err(bad("`exists` takes true or false".into())),
        (_, None) => return Err(bad("`value` is required".into())),
        (Op::In | Op::Nin, Some(Value::Array(items))) if items.len() > MAX_LIST_VALUES => {
            return Err(bad(format!("`{op_name}` takes an array of at most {MAX_LIST_VALUES} values")))
        }
        (Op::In | Op::Nin, Some(v @ Value::Array(_))) => v,
        (Op::In | Op::Nin, Some(_)) => return Err(bad(format!("`{op_name}` takes an array"))),
        (Op::Gt | Op::Gte | Op::Lt | Op::Lte, Some(v @ (Value::Number(_) | Value::String(_)))) => v,
        (Op::Gt | Op::Gte | Op::Lt | Op::Lte, Some(_)) => {
            return Err(bad(format!("`{op_name}` takes a number or a string")))
        }
        (_, Some(v)) => v,
    };
    let value_json = value.to_string();
    if value_json.len() > MAX_BYTES {
        return Err(bad(format!("`value` takes more than {MAX_BYTES} bytes of JSON")));
    }
    Ok(Filter { path: path.to_owned(), op, value_json })
}

#[cfg(test)]
mod tests;
