//! Fuzzing on stable, driven by proptest: the ingest parsers (`parse_ingest`, and
//! `parse_source` for both kinds of source) get arbitrary bytes, structured-random JSON (with
//! member names that repeat, numbers of every form, deep nesting) and that JSON with bytes
//! changed; the subscription parser and both matchers get arbitrary subscription bodies and
//! events. Nothing may panic, and what comes out must keep the parsers' promises.
//!
//! How long: `CRMHOOK_FUZZ_CASES` cases per target (default 256, so CI stays fast), or, with
//! `CRMHOOK_FUZZ_SECS`, batches of that many cases until the time is spent. Each target prints
//! its figures (`--nocapture` shows them):
//!
//! ```text
//! CRMHOOK_FUZZ_SECS=600 CRMHOOK_FUZZ_CASES=2000 cargo test --release -p crmhook-core --test fuzz -- --nocapture
//! ```

use std::collections::HashSet;
use std::fmt::Debug;
use std::time::{Duration, Instant};

use crmhook_core::event::{parse_ingest, parse_source};
use crmhook_core::subscription::{self, eval, valid_pointer, Compiled, LazyJson, Op, Subscription};
use crmhook_core::{CoreError, Event, EventId, EventKind, SourceId, SourceKind, TargetId};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Map, Value};

/// Runs `test` on values of `strategy` for the configured budget; panics with the smallest
/// failing input proptest finds.
fn fuzz<S>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: Debug,
{
    let env = |key: &str| std::env::var(key).ok().and_then(|v| v.parse::<u64>().ok());
    let cases = env("CRMHOOK_FUZZ_CASES").unwrap_or(256).clamp(1, u64::from(u32::MAX)) as u32;
    let budget = env("CRMHOOK_FUZZ_SECS").map(Duration::from_secs);
    let started = Instant::now();
    let mut total = 0u64;
    loop {
        let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
        if let Err(e) = runner.run(&strategy, &test) {
            panic!("fuzz target {name} failed after {total} cases: {e}");
        }
        total += u64::from(cases);
        if budget.is_none_or(|b| started.elapsed() >= b) {
            break;
        }
    }
    eprintln!("fuzz {name}: {total} cases in {:.1} s, no failure", started.elapsed().as_secs_f64());
}

// ---- structured JSON ------------------------------------------------------------------------

/// A JSON document as text is built: objects keep every member, in order, repeated names too.
#[derive(Debug, Clone)]
enum Doc {
    Leaf(String),
    Array(Vec<Doc>),
    Object(Vec<(String, Doc)>),
}

impl Doc {
    fn render(&self, out: &mut String) {
        match self {
            Doc::Leaf(text) => out.push_str(text),
            Doc::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.render(out);
                }
                out.push(']');
            }
            Doc::Object(members) => {
                out.push('{');
                for (i, (name, value)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&Value::String(name.clone()).to_string());
                    out.push(':');
                    value.render(out);
                }
                out.push('}');
            }
        }
    }

    fn text(&self) -> String {
        let mut out = String::new();
        self.render(&mut out);
        out
    }

    /// Whether an object anywhere in it repeats a member name.
    fn repeats_a_name(&self) -> bool {
        match self {
            Doc::Leaf(_) => false,
            Doc::Array(items) => items.iter().any(Doc::repeats_a_name),
            Doc::Object(members) => {
                let mut seen = HashSet::new();
                members.iter().any(|(name, _)| !seen.insert(name)) || members.iter().any(|(_, v)| v.repeats_a_name())
            }
        }
    }
}

/// Names the parsers look at, so that generated objects come near to valid events.
const NAMES: &[&str] = &[
    "eventType",
    "recordId",
    "kanbanId",
    "fieldName",
    "sessionId",
    "newValue",
    "aiPaused",
    "customFields",
    "assignedUserIds",
    "Id",
    "Timestamp",
    "WorkspaceId",
    "Entity",
    "Data",
    "Op",
    "Version",
    "New",
    "Original",
    "Key",
    "Recipients",
    "SourceId",
    "ProcessedTimestamp",
    "Revenue",
];

fn name() -> impl Strategy<Value = String> {
    prop_oneof![4 => prop::sample::select(NAMES).prop_map(str::to_owned), 1 => "\\PC{0,6}"]
}

fn leaf() -> impl Strategy<Value = Doc> {
    let texts = prop::sample::select(vec![
        "null",
        "true",
        "false",
        "0",
        "-0",
        "-1",
        "12000.00",
        "1e400",
        "-1e-400",
        "1.5E+7",
        "18446744073709551617",
        "-9223372036854775809",
        "0.30000000000000001",
        "\"crm_field_update\"",
        "\"crm_record_created\"",
        "\"crm_record_deleted\"",
        "\"ai_pause\"",
        "\"Opportunity\"",
        "\"Update\"",
        "\"1.0\"",
        "\"2.7.1\"",
        "\"\"",
        "\"\\u0000\\ud83d\\ude00\"",
        "\"k1\"",
    ]);
    prop_oneof![
        3 => texts.prop_map(|t| Doc::Leaf(t.to_owned())),
        1 => any::<i64>().prop_map(|n| Doc::Leaf(n.to_string())),
        1 => any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| Doc::Leaf(json!(f).to_string())),
        1 => "\\PC{0,12}".prop_map(|s| Doc::Leaf(Value::String(s).to_string())),
    ]
}

fn doc() -> impl Strategy<Value = Doc> {
    leaf().prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Doc::Array),
            prop::collection::vec((name(), inner), 0..8).prop_map(Doc::Object),
        ]
    })
}

/// An object shaped like a MAIA event or a Maximizer element, with some members perturbed.
fn event_doc() -> impl Strategy<Value = Doc> {
    let maia =
        (prop::sample::select(vec!["crm_field_update", "crm_record_created", "ai_pause", "nope"]), any::<bool>())
            .prop_map(|(ty, id)| {
                let mut m = vec![("eventType".to_owned(), Doc::Leaf(format!("\"{ty}\"")))];
                if id {
                    m.push(("recordId".into(), Doc::Leaf("\"r1\"".into())));
                    m.push(("kanbanId".into(), Doc::Leaf("\"k1\"".into())));
                    m.push(("sessionId".into(), Doc::Leaf("\"s1\"".into())));
                }
                m
            });
    let maximizer = any::<bool>().prop_map(|full| {
        let data = Doc::Object(vec![
            ("Op".into(), Doc::Leaf("\"Update\"".into())),
            ("Version".into(), Doc::Leaf(if full { "\"1.2\"" } else { "7" }.into())),
            ("New".into(), Doc::Object(vec![("Key".into(), Doc::Leaf("\"o1\"".into()))])),
        ]);
        vec![
            ("Id".to_owned(), Doc::Leaf("\"x1\"".into())),
            ("Timestamp".into(), Doc::Leaf("\"t\"".into())),
            ("WorkspaceId".into(), Doc::Leaf("\"w\"".into())),
            ("Entity".into(), Doc::Leaf("\"Opportunity\"".into())),
            ("Data".into(), data),
        ]
    });
    (prop_oneof![maia, maximizer], prop::collection::vec((name(), doc()), 0..4), any::<prop::sample::Index>()).prop_map(
        |(mut members, extra, at)| {
            for member in extra {
                let i = at.index(members.len() + 1);
                members.insert(i, member);
            }
            Doc::Object(members)
        },
    )
}

/// A body: one event object, an array of them, or any JSON.
fn body_doc() -> impl Strategy<Value = Doc> {
    prop_oneof![
        3 => event_doc(),
        3 => prop::collection::vec(prop_oneof![4 => event_doc(), 1 => doc()], 0..5).prop_map(Doc::Array),
        1 => doc(),
    ]
}

/// Bytes of a body with some changed: a byte replaced, inserted or removed.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (body_doc(), prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4)).prop_map(
        |(doc, edits)| {
            let mut bytes = doc.text().into_bytes();
            for (at, byte, how) in edits {
                let i = at.index(bytes.len() + 1);
                match how {
                    0 if i < bytes.len() => bytes[i] = byte,
                    1 => bytes.insert(i, byte),
                    _ if i < bytes.len() => {
                        bytes.remove(i);
                    }
                    _ => bytes.push(byte),
                }
            }
            bytes
        },
    )
}

fn any_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..256),
        1 => prop::collection::vec(prop::sample::select(b"{}[]\",: 0123456789.eE+-truefalsn\\u".to_vec()), 0..128),
        3 => body_doc().prop_map(|d| d.text().into_bytes()),
        3 => mutated(),
    ]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// What `parse_ingest` promises about any body.
fn check_ingest(body: &[u8]) -> Result<(), TestCaseError> {
    let parsed = serde_json::from_slice::<Value>(body);
    match parse_ingest(body) {
        Ok(events) => {
            prop_assert!(!events.is_empty());
            prop_assert!(parsed.is_ok(), "accepted a body that is not JSON");
            for e in &events {
                prop_assert!(contains(body, &e.payload), "a payload that is not the body's own bytes");
                let value: Value =
                    serde_json::from_slice(&e.payload).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert!(value.is_object());
                prop_assert!(!e.event_type.is_empty());
                prop_assert!(e.source_id.is_none());
            }
        }
        Err(CoreError::Malformed(_)) => prop_assert!(parsed.is_err(), "malformed, yet serde_json reads it"),
        Err(CoreError::Shape(_)) => prop_assert!(parsed.is_ok_and(|v| !v.is_object() && !v.is_array())),
        Err(CoreError::Invalid(_)) => prop_assert!(parsed.is_ok(), "a 422 for a body that is not JSON"),
    }
    Ok(())
}

/// What `parse_source` promises about any body, for a source of `kind`.
fn check_source(kind: SourceKind, body: &[u8]) -> Result<(), TestCaseError> {
    let source = SourceId::generate();
    let batch = parse_source(kind, &source, body);
    for r in &batch.rejected {
        prop_assert!(contains(body, &r.bytes), "a rejection that is not the body's own bytes");
        prop_assert!(!r.reason.is_empty());
    }
    for e in &batch.events {
        prop_assert!(contains(body, &e.payload));
        prop_assert_eq!(e.source_id.as_ref(), Some(&source));
        prop_assert!(e.external_id.is_some());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(items)) => {
            prop_assert_eq!(batch.events.len() + batch.rejected.len(), items.len());
            prop_assert!(batch.rejected.iter().all(|r| r.index.is_some_and(|i| i < items.len())));
        }
        Ok(Value::Object(_)) => prop_assert_eq!(batch.events.len() + batch.rejected.len(), 1),
        parsed => {
            // Text that is JSON in its structure but not in a string's escapes (a lone
            // surrogate) still splits into elements, each judged on its own.
            use serde_json::value::RawValue;
            let elements = match body.iter().find(|b| !b.is_ascii_whitespace()) {
                Some(b'[') => serde_json::from_slice::<Vec<&RawValue>>(body).ok().map(|v| v.len()),
                Some(b'{') => serde_json::from_slice::<&RawValue>(body).ok().map(|_| 1),
                _ => None,
            };
            match elements {
                Some(n) if parsed.is_err() => prop_assert_eq!(batch.events.len() + batch.rejected.len(), n),
                _ => {
                    prop_assert!(batch.events.is_empty());
                    prop_assert_eq!(batch.rejected.len(), 1);
                    prop_assert_eq!(batch.rejected[0].index, None);
                    prop_assert_eq!(&batch.rejected[0].bytes, &body.to_vec());
                }
            }
        }
    }
    Ok(())
}

#[test]
fn fuzz_ingest_parsers_with_any_bytes() {
    fuzz("ingest (parse_ingest, parse_source maia and maximizer)", any_body(), |body| {
        check_ingest(&body)?;
        check_source(SourceKind::Maia, &body)?;
        check_source(SourceKind::Maximizer, &body)
    });
}

#[test]
fn fuzz_repeated_member_names_never_pass() {
    fuzz("ingest: repeated member names", body_doc(), |doc| {
        let body = doc.text().into_bytes();
        let events = parse_ingest(&body);
        // All or nothing: a body with a name repeated anywhere in an event is refused.
        let repeated = match &doc {
            Doc::Array(items) => items.iter().any(Doc::repeats_a_name),
            other => other.repeats_a_name(),
        };
        if repeated {
            prop_assert!(events.is_err(), "accepted an event with a repeated member name: {}", doc.text());
        }
        // A source keeps no event that repeats a name; the elements that do are quarantined.
        let items = match &doc {
            Doc::Array(items) => items.clone(),
            other => vec![other.clone()],
        };
        for kind in [SourceKind::Maia, SourceKind::Maximizer] {
            let batch = parse_source(kind, &SourceId::generate(), &body);
            let kept: Vec<Vec<u8>> = batch.events.iter().map(|e| e.payload.clone()).collect();
            for item in items.iter().filter(|i| i.repeats_a_name()) {
                prop_assert!(!kept.contains(&item.text().into_bytes()), "kept {}", item.text());
            }
        }
        Ok(())
    });
}

// ---- subscriptions and matching -------------------------------------------------------------

fn value() -> impl Strategy<Value = Value> {
    doc().prop_map(|d| serde_json::from_str(&d.text()).unwrap_or(Value::Null))
}

fn pointer() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "",
            "/",
            "/Data/New/Revenue",
            "/newValue",
            "/customFields/a~1b",
            "/arr/0",
            "/arr/01",
            "/arr/-",
            "/x~2",
            "Data",
            "/~",
            "/Data/New/Key",
        ])
        .prop_map(str::to_owned),
        "(/[a-zA-Z0-9~]{0,4}){0,4}",
    ]
}

fn filter() -> impl Strategy<Value = Value> {
    let op = prop_oneof![
        4 => prop::sample::select(Op::ALL.iter().map(|(n, _)| *n).collect::<Vec<_>>()).prop_map(Value::from),
        1 => value(),
    ];
    (pointer(), op, prop::option::of(value()), any::<bool>()).prop_map(|(path, op, value, object)| {
        let mut f = Map::new();
        f.insert("path".into(), Value::String(path));
        f.insert("op".into(), op);
        if let Some(v) = value {
            f.insert("value".into(), v);
        }
        if object {
            Value::Object(f)
        } else {
            Value::Array(f.into_values().collect())
        }
    })
}

fn strings() -> impl Strategy<Value = Value> {
    let s = prop::sample::select(vec![
        "crm_field_update",
        "CRM_RECORD_CREATED",
        "ai_pause",
        "Opportunity.*",
        "opportunity.update",
        "Contact.Delete",
        "k1",
        "Email",
        "",
        ".*",
        "a.b.c",
    ]);
    prop_oneof![
        4 => prop::collection::vec(s.prop_map(Value::from), 0..5).prop_map(Value::Array),
        1 => value(),
    ]
}

fn subscription_body() -> impl Strategy<Value = Map<String, Value>> {
    (
        prop::option::of(strings()),
        prop::option::of(strings()),
        prop::option::of(strings()),
        prop::option::of(prop_oneof![4 => prop::collection::vec(filter(), 0..4).prop_map(Value::Array), 1 => value()]),
        prop::option::of(prop_oneof![(0u64..5).prop_map(Value::from), value()]),
        prop::option::of((name(), value())),
    )
        .prop_map(|(types, kanbans, fields, filters, major, extra)| {
            let mut body = Map::new();
            body.insert("target_id".into(), Value::String(TargetId::generate().to_string()));
            for (k, v) in [("event_types", types), ("kanban_ids", kanbans), ("field_names", fields)] {
                if let Some(v) = v {
                    body.insert(k.into(), v);
                }
            }
            if let Some(f) = filters {
                body.insert("filters".into(), f);
            }
            if let Some(m) = major {
                body.insert("version_major".into(), m);
            }
            if let Some((k, v)) = extra {
                body.insert(k, v);
            }
            body
        })
}

fn event() -> impl Strategy<Value = Event> {
    let ty = prop::sample::select(vec![
        "crm_field_update",
        "crm_record_created",
        "ai_pause",
        "Opportunity.Update",
        "opportunity.delete",
        "Contact.Delete",
        "x.y",
        "",
    ]);
    let payload = prop_oneof![
        4 => body_doc().prop_map(|d| d.text().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ];
    (
        ty,
        prop::option::of(prop::sample::select(vec!["k1", "k2"])),
        prop::option::of(prop::sample::select(vec!["Email", "Phone"])),
        payload,
        prop::option::of(0u32..4),
        0u64..3,
    )
        .prop_map(|(ty, kanban, field, payload, major, seq)| Event {
            seq,
            id: EventId::generate(),
            received_at_ms: 0,
            kind: EventKind::Maia,
            event_type: ty.to_owned(),
            payload,
            record_id: None,
            kanban_id: kanban.map(str::to_owned),
            field_name: field.map(str::to_owned),
            external_id: None,
            version_major: major,
            source_id: None,
            test: false,
        })
}

#[test]
fn fuzz_subscriptions_and_matching() {
    let strategy = (prop::collection::vec(subscription_body(), 1..4), prop::collection::vec(event(), 1..6));
    fuzz("filter language (Subscription::create, Compiled, matches, eval)", strategy, |(bodies, events)| {
        let mut subs = Vec::new();
        for body in &bodies {
            match Subscription::create(body, 0) {
                Ok(s) => {
                    prop_assert!(s.filters.len() <= subscription::MAX_FILTERS);
                    for list in [&s.event_types, &s.kanban_ids, &s.field_names] {
                        prop_assert!(list.len() <= subscription::MAX_LIST_VALUES);
                        prop_assert!(list.iter().all(|v| !v.is_empty() && v.len() <= subscription::MAX_STRING_BYTES));
                    }
                    for f in &s.filters {
                        prop_assert!(valid_pointer(&f.path));
                        prop_assert!(serde_json::from_str::<Value>(&f.value_json).is_ok());
                    }
                    subs.push(s);
                }
                Err(CoreError::Invalid(e)) => prop_assert!(e.field.is_some(), "a 422 that names no field"),
                Err(other) => prop_assert!(false, "a subscription body is never a 400: {other:?}"),
            }
        }
        let compiled = Compiled::new(subs.clone());
        for e in &events {
            // The compiled matcher agrees with the reference, subscription by subscription.
            let reference: Vec<_> =
                subs.iter().filter(|s| s.matches(e, &mut LazyJson::default())).map(|s| &s.id).collect();
            prop_assert_eq!(compiled.matching(e), reference.clone());
            prop_assert_eq!(compiled.matches(e), !reference.is_empty());
        }
        Ok(())
    });
}

#[test]
fn fuzz_filter_operators_and_pointers() {
    let op = prop::sample::select(Op::ALL.iter().map(|(_, op)| *op).collect::<Vec<_>>());
    fuzz(
        "filter language (eval, valid_pointer)",
        (op, prop::option::of(value()), value(), pointer(), "\\PC{0,16}"),
        |(op, found, want, p, s)| {
            let _ = eval(op, found.as_ref(), &want);
            let _ = valid_pointer(&p);
            let _ = valid_pointer(&s);
            // eq is reflexive on anything, and exists: true holds for any value found.
            if let Some(v) = &found {
                prop_assert!(eval(Op::Eq, Some(v), v));
                prop_assert!(eval(Op::Exists, Some(v), &Value::Bool(true)));
            }
            Ok(())
        },
    );
}
