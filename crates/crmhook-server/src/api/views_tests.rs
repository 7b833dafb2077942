//! The views' JSON, member by member: the order, and which members are absent and which are
//! `null` (the contract's; the integration tests check the same through the binary).

use crmhook_core::retry::Outcome;
use crmhook_core::{EventId, RejectedId, SourceId, SourceKind, Target, TargetId};
use crmhook_store::{Attempt, AttemptResult, Disabled, Rejected, Response, Retried};

use super::*;

fn json<T: Serialize>(view: &T) -> String {
    serde_json::to_string(view).unwrap_or_default()
}

fn attempt(n: u32, round: u32, outcome: Outcome, result: AttemptResult) -> Attempt {
    Attempt { n, at_ms: 0, duration_ms: 12, outcome, result, round, response: None }
}

const T0: &str = "1970-01-01T00:00:00.000Z";

#[test]
fn attempts_show_what_applies_in_order() {
    let delivered = attempt(1, 1, Outcome::Status(204), AttemptResult::Delivered);
    assert_eq!(
        json(&AttemptView::from(&delivered)),
        format!(
            r#"{{"n":1,"at":"{T0}","duration_ms":12,"trigger":"first","status_code":204,"result":"delivered","response":null}}"#
        )
    );
    let retrying = attempt(2, 1, Outcome::Status(500), AttemptResult::Retrying { next_at_ms: 0 });
    assert_eq!(
        json(&AttemptView::from(&retrying)),
        format!(
            r#"{{"n":2,"at":"{T0}","duration_ms":12,"trigger":"retry","status_code":500,"error":"answered HTTP 500","result":"retrying","next_attempt_at":"{T0}","response":null}}"#
        )
    );
    let redelivery = attempt(3, 3, Outcome::Timeout, AttemptResult::Dead);
    assert_eq!(
        json(&AttemptView::from(&redelivery)),
        format!(
            r#"{{"n":3,"at":"{T0}","duration_ms":12,"trigger":"redelivery","error":"timed out after 12 ms","result":"dead","response":null}}"#
        )
    );
    let refused = attempt(1, 1, Outcome::Error("connection refused".into()), AttemptResult::TargetDisabled);
    assert!(json(&AttemptView::from(&refused))
        .ends_with(r#""error":"connection refused","result":"target_disabled","response":null}"#));
}

#[test]
fn an_answer_shows_its_status_headers_and_body() {
    let response = Response {
        status: 500,
        headers: vec![("content-type".into(), "text/plain".into()), ("retry-after".into(), "30".into())],
        body: vec![b'o', b'k', 0xff],
        body_truncated: true,
    };
    let failed = Attempt {
        response: Some(response),
        ..attempt(1, 1, Outcome::Status(500), AttemptResult::Retrying { next_at_ms: 0 })
    };
    assert!(json(&AttemptView::from(&failed)).ends_with(&format!(
        r#""next_attempt_at":"{T0}","response":{{"status":500,"headers":{{"content-type":"text/plain","retry-after":"30"}},"body":"ok�","body_truncated":true}}}}"#
    )));
    let moved = Response {
        status: 302,
        headers: vec![("location".into(), "https://elsewhere.example/".into())],
        body: Vec::new(),
        body_truncated: false,
    };
    let redirected = Attempt {
        response: Some(moved),
        ..attempt(1, 1, Outcome::Status(302), AttemptResult::Retrying { next_at_ms: 0 })
    };
    assert_eq!(
        AttemptView::from(&redirected).error.as_deref(),
        Some("redirect not followed (HTTP 302 to https://elsewhere.example/)")
    );
    let bare = attempt(1, 1, Outcome::Status(301), AttemptResult::Dead);
    assert_eq!(AttemptView::from(&bare).error.as_deref(), Some("redirect not followed (HTTP 301)"));
}

#[test]
fn a_delivery_names_its_target_or_says_it_is_deleted() {
    let id = TargetId::generate();
    let dead = [attempt(1, 1, Outcome::Timeout, AttemptResult::Dead)];
    let named = json(&DeliveryView::new(id.clone(), Some("crm".into()), false, &dead));
    assert!(named.starts_with(&format!(r#"{{"target_id":"{id}","status":"dead","attempts":[{{"n":1"#)), "{named}");
    assert!(named.ends_with(r#"}],"target_name":"crm"}"#), "{named}");
    let deleted = json(&DeliveryView::new(id.clone(), None, false, &[]));
    assert_eq!(deleted, format!(r#"{{"target_id":"{id}","status":"dead","attempts":[],"target_deleted":true}}"#));
    // Retrying when its target was deleted: nothing more is sent.
    let retrying = [attempt(1, 1, Outcome::Timeout, AttemptResult::Retrying { next_at_ms: 1 })];
    let cut_short = json(&DeliveryView::new(id.clone(), None, false, &retrying));
    assert!(
        cut_short.contains(r#""status":"dead""#) && cut_short.ends_with(r#""target_deleted":true}"#),
        "{cut_short}"
    );
    let owed = json(&DeliveryView::new(id, Some("crm".into()), true, &dead));
    assert!(owed.contains(r#""status":"pending""#), "{owed}");
}

#[test]
fn a_target_shows_enabled_then_what_applies() {
    let target = Target {
        id: TargetId::generate(),
        name: "crm".into(),
        url: "https://crm.example/hook".into(),
        headers: vec![("X-B".into(), "2".into()), ("X-A".into(), "1".into())],
        timeout_ms: 2000,
        retry_schedule_ms: vec![5000],
        ordered: false,
        format: None,
        secret: "whsec_x".into(),
        previous_secret: Some(("whsec_old".into(), 1)),
        created_at_ms: 0,
        updated_at_ms: 0,
        response_body_bytes: 4096,
        rate_limit_per_s: None,
    };
    let plain = json(&TargetView::new(&target, None, false));
    assert_eq!(
        plain,
        format!(
            r#"{{"id":"{}","name":"crm","url":"https://crm.example/hook","headers":{{"X-B":"<redacted>","X-A":"<redacted>"}},"timeout_ms":2000,"retry_schedule_ms":[5000],"ordered":false,"format":null,"response_body_bytes":4096,"rate_limit_per_s":null,"created_at":"{T0}","updated_at":"{T0}","enabled":true}}"#,
            target.id
        )
    );
    let disabled = Disabled { at_ms: 0, reason: "gone".into() };
    let health = TargetHealth {
        pending: 1,
        dead: 0,
        last_success_at: None,
        failures_in_a_row: 2,
        blocked_by_retries_until: Some(T0.into()),
        retrying: 1,
        next_retry_at: Some(T0.into()),
    };
    let full = json(&TargetView::new(&target, Some(&disabled), true).with_health(health));
    assert!(
        full.ends_with(&format!(
            r#""enabled":false,"disabled_at":"{T0}","disabled_reason":"gone","secret":"whsec_x","health":{{"pending":1,"dead":0,"last_success_at":null,"failures_in_a_row":2,"blocked_by_retries_until":"{T0}","retrying":1,"next_retry_at":"{T0}"}}}}"#
        )),
        "{full}"
    );
}

#[test]
fn a_rejected_piece_shows_null_until_retried() {
    let mut piece = Rejected {
        id: RejectedId::generate(),
        source_id: SourceId::generate(),
        kind: SourceKind::Maximizer,
        at_ms: 0,
        index: None,
        reason: "bad".into(),
        bytes: vec![b'5', 0xff],
        retried: None,
    };
    let fresh = json(&RejectedView::from(&piece));
    assert!(
        fresh.ends_with(r#""kind":"maximizer","received_at":"1970-01-01T00:00:00.000Z","index":null,"reason":"bad","body":"5�","body_base64":"Nf8=","retried":null}"#),
        "{fresh}"
    );
    let event_id = EventId::generate();
    piece.retried = Some(Retried { at_ms: 0, event_id: event_id.clone(), seq: 7 });
    assert!(json(&RejectedView::from(&piece))
        .ends_with(&format!(r#""retried":{{"at":"{T0}","event_id":"{event_id}","seq":7}}}}"#)));
}
