//! Property tests of the filter language (contract section 3): every operator against numbers,
//! strings, booleans, nulls, arrays and missing paths, checked against a model written out
//! here; key order never changes a result; the compiled matcher agrees with the reference.

use crmhook_core::subscription::{eval, Compiled, Op, Subscription};
use crmhook_core::{Event, EventId, EventKind, TargetId};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-1000i64..1000).prop_map(|n| json!(n)),
        (-1000.0f64..1000.0).prop_map(|f| json!(f)),
        "[a-c]{0,3}".prop_map(Value::String),
        // ISO timestamps order as strings
        (2020u32..2026, 1u32..13).prop_map(|(y, m)| json!(format!("{y}-{m:02}-01T00:00:00Z"))),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![4 => scalar(), 1 => prop::collection::vec(scalar(), 0..4).prop_map(Value::Array)]
}

fn op() -> impl Strategy<Value = Op> {
    prop::sample::select(Op::ALL.iter().map(|(_, op)| *op).collect::<Vec<_>>())
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// The contract's semantics, spelled out independently of the implementation.
fn model(op: Op, found: Option<&Value>, want: &Value) -> bool {
    let same = |a: &Value, b: &Value| match (num(a), num(b)) {
        (Some(x), Some(y)) => x == y,
        _ => match (a, b) {
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len()
                    && x.iter().zip(y).all(|(p, q)| match (num(p), num(q)) {
                        (Some(m), Some(n)) => m == n,
                        _ => p == q,
                    })
            }
            _ => a == b,
        },
    };
    let cmp = |a: &Value, b: &Value| -> Option<std::cmp::Ordering> {
        match (a, b) {
            (Value::Number(_), Value::Number(_)) => num(a)?.partial_cmp(&num(b)?),
            (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
            _ => None,
        }
    };
    let Some(v) = found else { return op == Op::Exists && want == &json!(false) };
    let kind = |x: &Value| std::mem::discriminant(x);
    match op {
        Op::Exists => want != &json!(false),
        Op::Eq => same(v, want),
        Op::Ne => kind(v) == kind(want) && !same(v, want),
        Op::Gt => cmp(v, want) == Some(std::cmp::Ordering::Greater),
        Op::Gte => matches!(cmp(v, want), Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)),
        Op::Lt => cmp(v, want) == Some(std::cmp::Ordering::Less),
        Op::Lte => matches!(cmp(v, want), Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)),
        Op::In => want.as_array().is_some_and(|w| w.iter().any(|x| same(v, x))),
        Op::Nin => want.as_array().is_some_and(|w| !w.iter().any(|x| same(v, x))),
        Op::Contains => match (v, want) {
            (Value::String(s), Value::String(w)) => s.contains(w.as_str()),
            (Value::Array(items), w) => items.iter().any(|x| same(x, w)),
            _ => false,
        },
    }
}

fn event_with(payload: &str) -> Event {
    Event {
        seq: 10,
        id: EventId::generate(),
        received_at_ms: 0,
        kind: EventKind::Maximizer,
        event_type: "Opportunity.Update".into(),
        payload: payload.as_bytes().to_vec(),
        record_id: None,
        kanban_id: None,
        field_name: None,
        external_id: None,
        version_major: Some(1),
        source_id: None,
        test: false,
    }
}

fn subscription(filters: Value) -> Result<Subscription, crmhook_core::CoreError> {
    let body = json!({"target_id": TargetId::generate().as_str(), "filters": filters});
    Subscription::create(body.as_object().expect("object"), 0)
}

proptest! {
    // Eight times proptest's default (256, or `PROPTEST_CASES`: `just properties`).
    #![proptest_config(ProptestConfig::with_cases(ProptestConfig::default().cases.saturating_mul(8)))]

    #[test]
    fn every_operator_follows_the_model(op in op(), found in prop::option::of(value()), want in value()) {
        prop_assert_eq!(eval(op, found.as_ref(), &want), model(op, found.as_ref(), &want),
            "op {:?} found {:?} want {:?}", op, found, want);
    }

    #[test]
    fn a_missing_path_is_false_except_exists_false(op in op(), want in value()) {
        let expected = op == Op::Exists && want == json!(false);
        prop_assert_eq!(eval(op, None, &want), expected);
    }

    #[test]
    fn ordering_is_consistent(a in value(), b in value()) {
        // gt/lt are mirror images; gte is gt or eq for orderable pairs of one kind.
        prop_assert_eq!(eval(Op::Gt, Some(&a), &b), eval(Op::Lt, Some(&b), &a));
        if eval(Op::Gt, Some(&a), &b) || eval(Op::Lt, Some(&a), &b) || eval(Op::Gte, Some(&a), &b) {
            prop_assert_eq!(eval(Op::Gte, Some(&a), &b), eval(Op::Gt, Some(&a), &b) || eval(Op::Eq, Some(&a), &b));
        }
        // in and nin split every present value of an array filter.
        let list = Value::Array(vec![b.clone()]);
        prop_assert!(eval(Op::In, Some(&a), &list) != eval(Op::Nin, Some(&a), &list));
    }

    /// The same object written with its keys in any order gives the same answer through a
    /// subscription (parsing, pointers and compiled matching included).
    #[test]
    fn key_order_never_changes_a_result(
        members in prop::collection::btree_map("[a-e]{1,2}", value(), 1..6),
        rotate in 0usize..6,
        op in op(),
        want in value(),
        pick in 0usize..6,
    ) {
        let keys: Vec<&String> = members.keys().collect();
        let path = format!("/Data/{}", keys[pick % keys.len()]);
        let write = |order: Vec<(&String, &Value)>| {
            let inner: Vec<String> = order.iter().map(|(k, v)| format!("{}:{}", json!(k), v)).collect();
            format!(r#"{{"Entity":"Opportunity","Data":{{{}}},"Id":"x"}}"#, inner.join(","))
        };
        let mut order: Vec<(&String, &Value)> = members.iter().collect();
        let forward = write(order.clone());
        let len = order.len();
        order.rotate_left(rotate % len);
        order.reverse();
        let shuffled = write(order);
        let filter = if op == Op::Exists { json!([{"path": path, "op": "exists", "value": want.is_boolean() && want == json!(true)}]) }
            else { json!([{"path": path, "op": op.as_str(), "value": want}]) };
        if let Ok(sub) = subscription(filter) {
            let compiled = Compiled::new(vec![sub]);
            prop_assert_eq!(compiled.matches(&event_with(&forward)), compiled.matches(&event_with(&shuffled)));
        }
    }

    /// The compiled matcher agrees with the reference (`Subscription::matches`) on any event.
    #[test]
    fn compiled_matching_agrees_with_the_reference(
        data in prop::collection::btree_map("[a-c]", value(), 0..4),
        filters in prop::collection::vec(("[a-d]", op(), value()), 0..3),
        types in prop::collection::vec(prop::sample::select(vec!["Opportunity.Update", "Opportunity.*", "Contact.*", "crm_field_update"]), 0..3),
        major in prop::option::of(0u32..3),
    ) {
        let filters: Vec<Value> = filters.into_iter().map(|(k, op, v)| {
            let v = match op { Op::Exists => json!(v.is_null()), Op::In | Op::Nin => json!([v]), _ => v };
            json!({"path": format!("/Data/{k}"), "op": op.as_str(), "value": v})
        }).collect();
        let mut body = Map::new();
        body.insert("target_id".into(), json!(TargetId::generate().as_str()));
        body.insert("filters".into(), Value::Array(filters));
        body.insert("event_types".into(), json!(types));
        if let Some(m) = major { body.insert("version_major".into(), json!(m)); }
        if let Ok(sub) = Subscription::create(&body, 0) {
            let event = event_with(&json!({"Entity": "Opportunity", "Data": data}).to_string());
            let reference = sub.matches(&event, &mut Default::default());
            prop_assert_eq!(Compiled::new(vec![sub]).matches(&event), reference);
        }
    }
}
