use std::cmp::Ordering;

use super::compare::order;
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
    let e = event("x.y", None, None, json!({"Data": {"Revenue": 12000.0, "Stage": "Won", "Tags": ["a"], "N": null}}));
    let f = |path: &str, op: &str, value: Value| sub(json!({"filters": [{"path": path, "op": op, "value": value}]}));
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
    // Exponents past any i64 still order against numbers of a readable size.
    assert_eq!(cmp("1e400", "1e99999999999999999999"), Some(Ordering::Less));
    assert_eq!(cmp("-1e-99999999999999999999", "-1e-400"), Some(Ordering::Greater));
    assert_eq!(cmp("1e-99999999999999999999", "0"), Some(Ordering::Greater));
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
    // What is wrong, said as it is: a value of the wrong type is not a missing one.
    let detail = |v: Value| match Subscription::create(v.as_object().expect("object"), 0) {
        Err(CoreError::Invalid(e)) => e.detail,
        other => panic!("expected an error, got {other:?}"),
    };
    assert_eq!(detail(json!({})), "`target_id` is required");
    assert!(detail(json!({"target_id": 5})).starts_with("`target_id` must be a target's id"));
    let target = crate::id::TargetId::generate();
    let filter = |f: Value| detail(json!({"target_id": target.as_str(), "filters": [f]}));
    assert!(filter(json!({"path": "/a", "op": 5, "value": 1})).contains("`op` must be a string, one of eq "));
    assert!(filter(json!({"path": "/a", "value": 1})).contains("`op` is required, one of eq "));
    assert!(filter(json!({"path": "/a", "op": "like", "value": 1})).contains("unknown op \"like\""));
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
