//! Subscriptions: which events a target wants, and the matching of an event against them.
//!
//! A subscription matches when every condition it has holds (AND); a target gets an event once
//! if any of its subscriptions matches (OR). See contract section 3 and `docs/SUBSCRIPTIONS.md`.
//!
//! A test event (`POST /v1/targets/{id}/test`, [`Event::test`]) matches no subscription: it is
//! delivered to the target it tests, by that request, and to no one else; every path that
//! routes the log (the router's wake-ups, a target's window, the API's "who is owed this")
//! asks these matchers, so this one rule keeps test events out of all of them.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::CoreError;
use crate::event::{Event, MAIA_TYPES};
use crate::id::{SubscriptionId, TargetId};

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
            _ => return Err(CoreError::field("target_id", "`target_id` is required")),
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

/// The reference tokens of a JSON Pointer, unescaped (`~1` is `/`, `~0` is `~`).
fn pointer_tokens(pointer: &str) -> Vec<String> {
    if pointer.is_empty() {
        return Vec::new();
    }
    pointer.split('/').skip(1).map(|t| t.replace("~1", "/").replace("~0", "~")).collect()
}

/// Follows pointer tokens into a value: object members by name, array items by index.
fn resolve<'v>(mut value: &'v Value, tokens: &[String]) -> Option<&'v Value> {
    for token in tokens {
        value = match value {
            Value::Object(map) => map.get(token)?,
            Value::Array(items) => {
                if token.len() > 1 && token.starts_with('0') {
                    return None;
                }
                items.get(token.parse::<usize>().ok()?)?
            }
            _ => return None,
        };
    }
    Some(value)
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

/// Whether a pattern of `event_types` admits an event type, ignoring case.
fn type_matches(pattern: &str, event_type: &str) -> bool {
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

/// A JSON Pointer (RFC 6901): empty, or `/`-separated tokens where `~` is followed by 0 or 1.
pub fn valid_pointer(p: &str) -> bool {
    if p.is_empty() {
        return true;
    }
    if !p.starts_with('/') {
        return false;
    }
    let b = p.as_bytes();
    b.iter().enumerate().all(|(i, c)| *c != b'~' || matches!(b.get(i + 1), Some(b'0' | b'1')))
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
    let op_name = obj.get("op").and_then(Value::as_str).unwrap_or_default();
    let op = Op::parse(op_name)
        .ok_or_else(|| bad(format!("unknown op {op_name:?}; expected one of {}", Op::ALL.map(|(n, _)| n).join(" "))))?;
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

/// A JSON number's exact value as decimal digits: negative, the significant digits (no leading
/// or trailing zeros; empty for zero), and where the decimal point goes (value = 0.digits ×
/// 10^point). `None` for text that is not a JSON number or an exponent past `i64`.
fn decimal(text: &str) -> Option<(bool, Vec<u8>, i64)> {
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], text[i + 1..].trim_start_matches('+').parse::<i64>().ok()?),
        None => (text, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits: Vec<u8> = int.bytes().chain(frac.bytes()).collect();
    let mut point = i64::try_from(int.len()).ok()?.checked_add(exponent)?;
    let leading = digits.iter().take_while(|d| **d == b'0').count();
    digits.drain(..leading);
    point = point.checked_sub(i64::try_from(leading).ok()?)?;
    while digits.last() == Some(&b'0') {
        digits.pop();
    }
    Some((negative && !digits.is_empty(), digits, point))
}

/// Compares two JSON numbers exactly, from their text: `12000.00` equals `12000`, and an integer
/// past 2^53 differs from its neighbour (with serde_json's `arbitrary_precision`, which keeps
/// each number's text, this holds for any number; f64 is the fallback for unreadable text).
fn compare_numbers(x: &serde_json::Number, y: &serde_json::Number) -> Option<Ordering> {
    let (Some(a), Some(b)) = (decimal(&x.to_string()), decimal(&y.to_string())) else {
        return x.as_f64()?.partial_cmp(&y.as_f64()?);
    };
    let magnitude =
        |(_, da, pa): &(bool, Vec<u8>, i64), (_, db, pb): &(bool, Vec<u8>, i64)| match (da.is_empty(), db.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            (false, false) => pa.cmp(pb).then_with(|| da.cmp(db)),
        };
    Some(match (a.0, b.0) {
        (false, true) => Ordering::Greater,
        (true, false) => Ordering::Less,
        (false, false) => magnitude(&a, &b),
        (true, true) => magnitude(&b, &a),
    })
}

/// Orders two values of the same kind: numbers as numbers (exactly), strings as strings;
/// `None` for a type mismatch or a kind without order.
fn order(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// Equality with numbers compared as numbers (`1` equals `1.0`).
fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => order(a, b) == Some(Ordering::Equal),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| equal(p, q)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| equal(v, w)))
        }
        _ => a == b,
    }
}

fn same_kind(a: &Value, b: &Value) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// One filter against the value found at its path (`None`: the path is missing). A missing
/// path or a type mismatch is false, except `exists: false`.
pub fn eval(op: Op, found: Option<&Value>, want: &Value) -> bool {
    let Some(v) = found else {
        return op == Op::Exists && want == &Value::Bool(false);
    };
    match op {
        Op::Exists => want != &Value::Bool(false),
        Op::Eq => equal(v, want),
        Op::Ne => same_kind(v, want) && !equal(v, want),
        Op::Gt => order(v, want) == Some(Ordering::Greater),
        Op::Gte => matches!(order(v, want), Some(Ordering::Greater | Ordering::Equal)),
        Op::Lt => order(v, want) == Some(Ordering::Less),
        Op::Lte => matches!(order(v, want), Some(Ordering::Less | Ordering::Equal)),
        Op::In => want.as_array().is_some_and(|items| items.iter().any(|w| equal(v, w))),
        Op::Nin => want.as_array().is_some_and(|items| !items.iter().any(|w| equal(v, w))),
        Op::Contains => match (v, want) {
            (Value::String(s), Value::String(w)) => s.contains(w.as_str()),
            (Value::Array(items), w) => items.iter().any(|x| equal(x, w)),
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;
    use crate::id::EventId;
    use serde_json::json;

    fn event(event_type: &str, kanban: Option<&str>, field: Option<&str>, payload: Value) -> Event {
        Event {
            seq: 1,
            id: EventId::generate(),
            received_at_ms: 0,
            kind: EventKind::Maia,
            event_type: event_type.into(),
            payload: payload.to_string().into_bytes(),
            record_id: None,
            kanban_id: kanban.map(Into::into),
            field_name: field.map(Into::into),
            external_id: None,
            version_major: None,
            source_id: None,
            test: false,
        }
    }

    fn sub(v: Value) -> Subscription {
        let mut body = v.as_object().cloned().unwrap_or_default();
        body.insert("target_id".into(), json!(crate::id::TargetId::generate().as_str()));
        Subscription::create(&body, 0).expect("valid subscription")
    }

    fn matches(s: &Subscription, e: &Event) -> bool {
        any_matches(std::slice::from_ref(s), e)
    }

    #[test]
    fn an_empty_subscription_matches_everything() {
        assert!(matches(&sub(json!({})), &event("ai_pause", None, None, json!({}))));
    }

    #[test]
    fn a_test_event_matches_no_subscription() {
        let test = Event { test: true, ..event("crm_field_update", None, None, json!({})) };
        let all = sub(json!({}));
        assert!(!matches(&all, &test));
        assert!(!all.matches(&test, &mut LazyJson::default()));
        assert!(!Compiled::new(vec![all, sub(json!({"event_types": ["crm_field_update"]}))]).matches(&test));
    }

    #[test]
    fn event_types_with_entity_wildcards() {
        let s = sub(json!({"event_types": ["crm_field_update", "Opportunity.*"]}));
        assert!(matches(&s, &event("crm_field_update", None, None, json!({}))));
        assert!(matches(&s, &event("Opportunity.Update", None, None, json!({}))));
        assert!(!matches(&s, &event("OpportunityX.Update", None, None, json!({}))));
        assert!(!matches(&s, &event("ai_pause", None, None, json!({}))));
    }

    #[test]
    fn kanban_ids_apply_to_events_with_a_kanban() {
        let s = sub(json!({"kanban_ids": ["k1"]}));
        assert!(matches(&s, &event("crm_record_created", Some("k1"), None, json!({}))));
        assert!(!matches(&s, &event("crm_record_created", Some("k2"), None, json!({}))));
        assert!(matches(&s, &event("ai_pause", None, None, json!({}))));
    }

    #[test]
    fn field_names_apply_to_field_updates_only() {
        let s = sub(json!({"field_names": ["Email"]}));
        assert!(matches(&s, &event("crm_field_update", Some("k"), Some("Email"), json!({}))));
        assert!(!matches(&s, &event("crm_field_update", Some("k"), Some("Phone"), json!({}))));
        assert!(matches(&s, &event("crm_record_created", Some("k"), None, json!({}))));
    }

    #[test]
    fn conditions_are_anded() {
        let s = sub(json!({"event_types": ["crm_field_update"], "kanban_ids": ["k1"], "field_names": ["Email"]}));
        assert!(matches(&s, &event("crm_field_update", Some("k1"), Some("Email"), json!({}))));
        assert!(!matches(&s, &event("crm_field_update", Some("k2"), Some("Email"), json!({}))));
        assert!(!matches(&s, &event("crm_record_created", Some("k1"), None, json!({}))));
    }

    #[test]
    fn filters_compare_by_kind() {
        let e =
            event("x.y", None, None, json!({"Data": {"Revenue": 12000.0, "Stage": "Won", "Tags": ["a"], "N": null}}));
        let f =
            |path: &str, op: &str, value: Value| sub(json!({"filters": [{"path": path, "op": op, "value": value}]}));
        assert!(matches(&f("/Data/Revenue", "gt", json!(10000)), &e));
        assert!(matches(&f("/Data/Revenue", "eq", json!(12000)), &e));
        assert!(!matches(&f("/Data/Revenue", "gt", json!("10000")), &e));
        assert!(matches(&f("/Data/Stage", "in", json!(["Won", "Lost"])), &e));
        assert!(matches(&f("/Data/Stage", "ne", json!("Lost")), &e));
        assert!(!matches(&f("/Data/Missing", "ne", json!("Lost")), &e));
        assert!(matches(&f("/Data/Tags", "contains", json!("a")), &e));
        assert!(matches(&f("/Data/Missing", "exists", json!(false)), &e));
        assert!(matches(&f("/Data/N", "exists", json!(true)), &e));
    }

    #[test]
    fn numbers_compare_exactly() {
        let n = |t: &str| serde_json::from_str::<Value>(t).expect("number");
        let cmp = |a: &str, b: &str| order(&n(a), &n(b));
        assert_eq!(cmp("12000.00", "12000"), Some(Ordering::Equal));
        assert_eq!(cmp("1.2e4", "12000.0"), Some(Ordering::Equal));
        assert_eq!(cmp("9007199254740993", "9007199254740992"), Some(Ordering::Greater));
        assert_eq!(cmp("18446744073709551617", "18446744073709551616"), Some(Ordering::Greater));
        assert_eq!(cmp("0.30000000000000001", "0.3"), Some(Ordering::Greater));
        assert_eq!(cmp("-1", "0"), Some(Ordering::Less));
        assert_eq!(cmp("-2.5", "-2.25"), Some(Ordering::Less));
        assert_eq!(cmp("0", "-0.0"), Some(Ordering::Equal));
        assert_eq!(cmp("0.001", "1e-3"), Some(Ordering::Equal));
        assert_eq!(cmp("10", "9.99"), Some(Ordering::Greater));
        let e = event("x.y", None, None, Value::Null);
        let e = Event { payload: br#"{"Big": 9007199254740993}"#.to_vec(), ..e };
        let f = |op: &str, value: &str| sub(json!({"filters": [{"path": "/Big", "op": op, "value": n(value)}]}));
        assert!(!matches(&f("eq", "9007199254740992"), &e));
        assert!(matches(&f("eq", "9007199254740993"), &e));
        assert!(matches(&f("gt", "9007199254740992"), &e));
    }

    #[test]
    fn event_types_ignore_case_and_kanban_filters_pass_events_without_a_kanban() {
        let s = sub(json!({"event_types": ["opportunity.update", "Contact.*", "CRM_FIELD_UPDATE"]}));
        assert!(matches(&s, &event("Opportunity.Update", None, None, json!({}))));
        assert!(matches(&s, &event("contact.Delete", None, None, json!({}))));
        assert!(matches(&s, &event("crm_field_update", None, None, json!({}))));
        assert!(!matches(&s, &event("Opportunity.Delete", None, None, json!({}))));
        let s = sub(json!({"kanban_ids": ["k1"]}));
        assert!(matches(&s, &event("ai_pause", None, None, json!({}))));
        assert!(matches(&s, &event("Opportunity.Update", None, None, json!({}))));
        assert!(!matches(&s, &event("crm_record_created", Some("k2"), None, json!({}))));
    }

    #[test]
    fn bad_subscriptions_name_their_field() {
        let field = |v: Value| {
            let mut body = v.as_object().cloned().unwrap_or_default();
            body.entry("target_id").or_insert(json!(crate::id::TargetId::generate().as_str()));
            match Subscription::create(&body, 0) {
                Err(CoreError::Invalid(e)) => e.field.unwrap_or_default(),
                other => panic!("expected an error, got {other:?}"),
            }
        };
        assert_eq!(field(json!({"target_id": "nope"})), "target_id");
        assert_eq!(field(json!({"event_types": ["crm_field_exploded"]})), "event_types");
        assert_eq!(field(json!({"kanban_ids": "k1"})), "kanban_ids");
        assert_eq!(field(json!({"filters": [{"path": "Data", "op": "eq", "value": 1}]})), "filters[0]");
        assert_eq!(field(json!({"filters": [{"path": "/Data", "op": "like", "value": 1}]})), "filters[0]");
        assert_eq!(field(json!({"version_major": -1})), "version_major");
        assert_eq!(field(json!({"colour": 1})), "colour");
    }

    #[test]
    fn a_patch_replaces_the_members_given_clears_nulls_and_keeps_the_rest() {
        let mut s = sub(json!({"event_types": ["crm_field_update"], "kanban_ids": ["k1"], "version_major": 1,
                               "filters": [{"path": "/fieldName", "op": "eq", "value": "Email"}]}));
        s.from_seq = 41;
        let patch = |v: Value| s.patched(v.as_object().expect("object"));
        let edited = patch(json!({"kanban_ids": ["k2", "k3"], "version_major": null})).expect("valid patch");
        assert_eq!(edited.id, s.id);
        assert_eq!((edited.from_seq, edited.created_at_ms), (41, s.created_at_ms));
        assert_eq!(edited.kanban_ids, ["k2", "k3"]);
        assert_eq!(edited.version_major, None);
        assert_eq!((edited.event_types.clone(), edited.filters.clone()), (s.event_types.clone(), s.filters.clone()));
        assert_eq!(patch(json!({})).expect("empty patch"), s);
        let same_target = patch(json!({"target_id": s.target_id.as_str(), "filters": null})).expect("same target");
        assert!(same_target.filters.is_empty());
        let field = |v: Value| match patch(v) {
            Err(CoreError::Invalid(e)) => e.field.unwrap_or_default(),
            other => panic!("expected an error, got {other:?}"),
        };
        assert_eq!(field(json!({"target_id": crate::id::TargetId::generate().as_str()})), "target_id");
        assert_eq!(field(json!({"event_types": ["crm_field_exploded"]})), "event_types");
        assert_eq!(field(json!({"filters": [{"path": "/a", "op": "like", "value": 1}]})), "filters[0]");
        assert_eq!(field(json!({"version_major": "one"})), "version_major");
        assert_eq!(field(json!({"id": "sub_x"})), "id");
        assert_eq!(field(json!({"colour": 1})), "colour");
        // Totals hold over the merged subscription, not only the members given.
        let values = |n: usize| (0..n).map(|i| json!(format!("v{i}"))).collect::<Vec<_>>();
        let full = s.patched(json!({"kanban_ids": values(1000)}).as_object().expect("object")).expect("at the limit");
        let over = full.patched(json!({"field_names": values(1000)}).as_object().expect("object"));
        assert!(matches!(over, Err(CoreError::Invalid(e)) if e.field.as_deref() == Some("body")));
    }

    #[test]
    fn a_draft_needs_no_target_but_checks_one_given() {
        let body = |v: Value| v.as_object().cloned().unwrap_or_default();
        let (named, d) = Subscription::draft(&body(json!({"event_types": ["ai_pause"]})), 0).expect("draft");
        assert_eq!((named, d.from_seq), (None, 0));
        assert!(matches(&d, &event("ai_pause", None, None, json!({}))));
        let t = crate::id::TargetId::generate();
        let (named, d) = Subscription::draft(&body(json!({"target_id": t.as_str()})), 0).expect("draft");
        assert_eq!((named.as_ref(), &d.target_id), (Some(&t), &t));
        for (bad, name) in [
            (json!({"target_id": "nope"}), "target_id"),
            (json!({"target_id": 5}), "target_id"),
            (json!({"kanban_ids": "k"}), "kanban_ids"),
            (json!({"colour": 1}), "colour"),
        ] {
            match Subscription::draft(&body(bad), 0) {
                Err(CoreError::Invalid(e)) => assert_eq!(e.field.as_deref(), Some(name)),
                other => panic!("expected a 422 on {name}, got {other:?}"),
            }
        }
    }

    #[test]
    fn lists_and_subscriptions_are_bounded() {
        let create = |v: Value| {
            let mut body = v.as_object().cloned().unwrap_or_default();
            body.insert("target_id".into(), json!(crate::id::TargetId::generate().as_str()));
            Subscription::create(&body, 0)
        };
        let field = |v: Value| match create(v) {
            Err(CoreError::Invalid(e)) => e.field.unwrap_or_default(),
            other => panic!("expected an error, got {other:?}"),
        };
        let values = |n: usize| (0..n).map(|i| json!(format!("v{i}"))).collect::<Vec<_>>();
        let in_filter = |n: usize| json!([{"path": "/a", "op": "in", "value": values(n)}]);
        // At the limits: accepted.
        assert!(create(json!({"kanban_ids": values(MAX_LIST_VALUES)})).is_ok());
        assert!(create(json!({"filters": in_filter(MAX_LIST_VALUES)})).is_ok());
        assert!(create(json!({"kanban_ids": values(1000), "filters": in_filter(1000)})).is_ok());
        // Past them: refused, naming the field.
        assert_eq!(field(json!({"kanban_ids": values(MAX_LIST_VALUES + 1)})), "kanban_ids");
        assert_eq!(field(json!({"event_types": vec![json!("crm_field_update"); MAX_LIST_VALUES + 1]})), "event_types");
        assert_eq!(field(json!({"filters": in_filter(MAX_LIST_VALUES + 1)})), "filters[0]");
        let nin = json!([{"path": "/a", "op": "nin", "value": values(100_000)}]);
        assert_eq!(field(json!({"filters": nin})), "filters[0]");
        assert_eq!(
            field(json!({"kanban_ids": values(1000), "field_names": values(1000), "filters": in_filter(1)})),
            "body"
        );
        assert_eq!(field(json!({"field_names": ["x".repeat(MAX_STRING_BYTES + 1)]})), "field_names");
        assert_eq!(
            field(json!({"filters": [{"path": format!("/{}", "a".repeat(MAX_PATH_BYTES)), "op": "exists"}]})),
            "filters[0]"
        );
        let big = json!([{"path": "/a", "op": "eq", "value": "x".repeat(MAX_BYTES + 1)}]);
        assert_eq!(field(json!({"filters": big})), "filters[0]");
        let halves = json!([{"path": "/a", "op": "eq", "value": "x".repeat(MAX_BYTES / 2)}, {"path": "/b", "op": "eq", "value": "y".repeat(MAX_BYTES / 2)}]);
        assert_eq!(field(json!({"filters": halves})), "body");
        assert_eq!(field(json!({"filters": vec![json!({"path": "/a", "op": "exists"}); MAX_FILTERS + 1]})), "filters");
        // The number per target.
        assert!(check_room(MAX_PER_TARGET - 1).is_ok());
        match check_room(MAX_PER_TARGET) {
            Err(CoreError::Invalid(e)) => assert_eq!(e.field.as_deref(), Some("target_id")),
            other => panic!("expected a 422, got {other:?}"),
        }
    }
}
