//! `POST /v1/targets/{id}/test`: a sample event, logged as a test event, delivered signed to
//! that one target at once and once, with what the receiver answered; never fanned out, marked
//! `test` wherever events are shown, counted apart. Through the real binary and real receivers
//! on 127.0.0.1.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const DELIVERY: Duration = Duration::from_secs(15);

fn test_target(server: &Server, tid: &str, body: Value) -> Resp {
    server.admin("POST", &format!("/v1/targets/{tid}/test"), Some(&body))
}

#[test]
fn a_test_shows_the_receivers_500_and_its_body() {
    let server = Server::start();
    let rcv = Receiver::start();
    rcv.program("/t", &[], with_body(500, "nope, broken"));
    let (tid, secret) = server.wire(&rcv.url("/t"), Some(json!({})), json!({}));
    let r = test_target(&server, &tid, json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    let (event, attempt) = (&v["event"], &v["attempt"]);
    assert_eq!((event["test"].as_bool(), event["type"].as_str()), (Some(true), Some("crm_field_update")), "{v}");
    assert_eq!(event["payload"]["eventType"], "crm_field_update");
    assert_eq!((attempt["n"].as_u64(), attempt["status_code"].as_u64()), (Some(1), Some(500)), "{v}");
    assert_eq!((attempt["result"].as_str(), attempt["error"].as_str()), (Some("dead"), Some("answered HTTP 500")));
    assert!(attempt["duration_ms"].is_u64() && attempt["at"].is_string(), "{v}");
    assert_eq!(
        attempt["response"],
        json!({"status": 500, "headers": {"content-type": "text/plain"}, "body": "nope, broken", "body_truncated": false})
    );
    // It arrived signed like any delivery, as attempt 1 of the test event.
    let got = rcv.requests("/t");
    assert_eq!(got.len(), 1);
    assert!(maia_signature_valid(&secret, &got[0]) && standard_signature_valid(&secret, &got[0]));
    assert_eq!(
        (got[0].header("webhook-id"), got[0].header("x-crmhook-attempt")),
        (event["id"].as_str().unwrap_or(""), "1")
    );
    // Not a delivery the target owes: nothing pending, dead or listed; the event's view shows
    // its one attempt.
    let deliveries = server.admin("GET", &format!("/v1/targets/{tid}/deliveries"), None).json();
    assert_eq!(deliveries["deliveries"], json!([]), "{deliveries}");
    let health = &server.admin("GET", &format!("/v1/targets/{tid}"), None).json()["health"];
    assert_eq!((health["pending"].as_u64(), health["dead"].as_u64()), (Some(0), Some(0)), "{health}");
    let shown = server.event(event["id"].as_str().expect("id"));
    assert_eq!(shown["test"], true);
    let d = shown["deliveries"].as_array().cloned().unwrap_or_default();
    assert_eq!(d.len(), 1, "{shown}");
    assert_eq!((d[0]["target_id"].as_str(), d[0]["status"].as_str()), (Some(tid.as_str()), Some("dead")));
    assert_eq!(d[0]["attempts"][0]["response"]["body"], "nope, broken");
    // Not redelivered.
    let again = server.admin("POST", &format!("/v1/events/{}/redeliver", event["id"].as_str().unwrap_or("")), None);
    assert_eq!(again.status, 409, "{}", again.text);
}

#[test]
fn a_test_event_is_listed_as_test_and_no_other_target_receives_it() {
    let server = Server::start();
    let rcv = Receiver::start();
    let (a, _) = server.wire(&rcv.url("/a"), Some(json!({})), json!({}));
    let (b, _) = server.wire(&rcv.url("/b"), Some(json!({})), json!({}));
    let r = test_target(&server, &a, json!({"type": "ai_pause"}));
    assert_eq!(r.status, 200, "{}", r.text);
    let test = r.json();
    assert_eq!(test["attempt"]["result"], "delivered", "{test}");
    assert!(test["attempt"].get("error").is_none(), "{test}");
    assert_eq!(test["attempt"]["response"]["status"], 200);
    let test_id = test["event"]["id"].as_str().expect("id").to_owned();
    // A marker both targets must get: once each has it and owes nothing, what they got is final.
    let marker = server.post_ok(&maia("crm_field_update", json!({})));
    let marker_id = marker["events"][0]["id"].as_str().expect("id").to_owned();
    rcv.wait_count("/a", 2, DELIVERY);
    rcv.wait_count("/b", 1, DELIVERY);
    server.wait_settled(&a, DELIVERY);
    server.wait_settled(&b, DELIVERY);
    let ids = |path: &str| rcv.requests(path).iter().map(|r| r.header("webhook-id").to_owned()).collect::<Vec<_>>();
    assert_eq!(ids("/a"), [test_id.clone(), marker_id.clone()]);
    assert_eq!(ids("/b"), [marker_id], "the other target got the test event");
    // Listed as test; the CRM's event has no `test` member.
    let page = server.admin("GET", "/v1/events", None).json();
    let events = page["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(events.len(), 2, "{page}");
    assert_eq!((events[0]["id"].as_str(), events[0]["test"].as_bool()), (Some(test_id.as_str()), Some(true)));
    assert!(events[1].get("test").is_none(), "{page}");
    assert_eq!(server.delivered_to(&test_id), std::slice::from_ref(&a));
    // The stream marks it too (read from the log from the start).
    let resp = ureq::get(&server.url("/v1/stream?after=0"))
        .set("Authorization", &format!("Bearer {ADMIN}"))
        .call()
        .expect("stream opens");
    let mut frames = std::io::BufRead::lines(std::io::BufReader::new(resp.into_reader()));
    let first = frames.find_map(|l| l.ok()?.strip_prefix("data: ").map(str::to_owned)).expect("a frame");
    let first: Value = serde_json::from_str(&first).expect("JSON");
    assert_eq!((first["id"].as_str(), first["test"].as_bool()), (Some(test_id.as_str()), Some(true)), "{first}");
    // Counted apart from the CRM's events.
    let text = http("GET", &server.url("/metrics"), &[], None).text;
    assert_eq!(metric(&text, "crmhook_events_ingested_total{type=\"crm_field_update\"}"), 1.0);
    assert_eq!(metric(&text, "crmhook_events_ingested_total{type=\"ai_pause\"}"), 0.0);
    assert_eq!(metric(&text, "crmhook_test_events_total"), 1.0);
    assert_eq!(metric(&text, &format!("crmhook_deliveries_total{{target=\"{a}\",outcome=\"delivered\"}}")), 1.0);
}

#[test]
fn every_test_is_a_new_event_in_the_targets_format_and_a_disabled_target_is_tested_too() {
    let server = Server::start();
    let rcv = Receiver::start();
    let (tid, _) = server.wire(&rcv.url("/mx"), None, json!({"format": "maximizer"}));
    let r = server.admin("PATCH", &format!("/v1/targets/{tid}"), Some(&json!({"enabled": false})));
    assert_eq!(r.status, 200, "{}", r.text);
    // Paused by hand: the reason names the key that did it.
    let t = server.admin("GET", &format!("/v1/targets/{tid}"), None).json();
    let reason = t["disabled_reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("disabled by admin_token (key_"), "{t}");
    let first = test_target(&server, &tid, json!({})).json();
    let second = test_target(&server, &tid, json!({"type": "opportunity.update"})).json();
    for t in [&first, &second] {
        assert_eq!(
            (t["event"]["type"].as_str(), t["attempt"]["result"].as_str()),
            (Some("Opportunity.Update"), Some("delivered")),
            "{t}"
        );
    }
    assert_ne!(first["event"]["id"], second["event"]["id"]);
    let got = rcv.requests("/mx");
    assert_eq!(got.len(), 2);
    let bodies: Vec<Value> = got.iter().map(Received::json).collect();
    assert!(bodies.iter().all(Value::is_array), "a Maximizer target gets arrays: {bodies:?}");
    assert_ne!(bodies[0][0]["Id"], bodies[1][0]["Id"], "each test has a fresh Maximizer Id");
    assert!(String::from_utf8_lossy(&got[0].body).contains("12000.00"), "the sample's bytes as documented");
    // Still disabled.
    assert_eq!(server.admin("GET", &format!("/v1/targets/{tid}"), None).json()["enabled"], false);
}

#[test]
fn what_a_test_refuses() {
    let server = Server::start();
    let rcv = Receiver::start();
    let (tid, _) = server.wire(&rcv.url("/r"), None, json!({}));
    let r = test_target(&server, &tid, json!({"type": "crm_something"}));
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.json()["field"], "type", "{}", r.text);
    assert!(r.text.contains("crm_record_created"), "the known types are listed: {}", r.text);
    assert_eq!(test_target(&server, &tid, json!({"type": 5})).json()["field"], "type");
    assert_eq!(test_target(&server, &tid, json!({"kind": "x"})).json()["field"], "kind");
    assert_eq!(test_target(&server, "tgt_00000000000000000000000000", json!({})).status, 404);
    // An operator key reads, it does not test.
    let key = server.admin("POST", "/v1/keys", Some(&json!({"name": "ops", "role": "operator"}))).json();
    let operator = key["key"].as_str().expect("key");
    let r = server.request("POST", &format!("/v1/targets/{tid}/test"), Some(operator), Some(&json!({})));
    assert_eq!(r.status, 403, "{}", r.text);
    // Nothing was logged or sent by any of these.
    assert_eq!(server.admin("GET", "/v1/events", None).json()["events"], json!([]));
    assert_eq!(rcv.count("/r"), 0);
}
