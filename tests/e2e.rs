//! End to end: the real `crmhook` binary on port 0, a real receiver on 127.0.0.1, HTTP to both.

mod support;

// The tests across restarts, in tests/e2e/.
#[path = "e2e/restarts.rs"]
mod restarts;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const DELIVERY: Duration = Duration::from_secs(10);
/// The one quiet period left: a disabled target, whose silence no later event can prove.
const QUIET: Duration = Duration::from_millis(500);

fn expect_problem(r: &Resp, status: u16) -> Value {
    assert_eq!(r.status, status, "expected {status}, got {}: {}", r.status, r.text);
    assert!(r.content_type().starts_with("application/problem+json"), "content type {:?}", r.content_type());
    let body = r.json();
    for key in ["type", "title", "status", "detail"] {
        assert!(body.get(key).is_some(), "problem lacks {key}: {body}");
    }
    assert_eq!(body["status"], status);
    body
}

#[test]
fn a_delivery_is_the_ingested_event_signed_twice() {
    let server = Server::start();
    let rcv = Receiver::start();
    let (tid, secret) = server.wire(&rcv.url("/hook"), Some(json!({"event_types": ["crm_field_update"]})), json!({}));
    let raw = sample("crm_field_update");
    let r = http(
        "POST",
        &server.url("/v1/events"),
        &[("Content-Type", "application/json"), ("Authorization", &format!("Bearer {INGEST}"))],
        Some(raw.as_bytes()),
    );
    assert_eq!(r.status, 202, "{}", r.text);
    let ack = r.json();
    assert_eq!((ack["accepted"].as_u64(), ack["duplicates"].as_u64()), (Some(1), Some(0)));
    let event_id = ack["events"][0]["id"].as_str().expect("id").to_owned();
    assert!(event_id.starts_with("evt_"));
    assert_eq!(ack["events"][0]["type"], "crm_field_update");

    let got = rcv.wait_count("/hook", 1, DELIVERY);
    let d = &got[0];
    // Byte for byte, the file's last line feed included (since 2026-12-07).
    assert_eq!(d.body, raw.as_bytes(), "the body is the event exactly as ingested");
    assert_eq!(d.header("content-type"), "application/json");
    assert_eq!(d.header("x-crmhook-attempt"), "1");
    assert_eq!(d.header("webhook-id"), event_id);
    assert_eq!(d.header("x-maia-timestamp"), d.header("webhook-timestamp"));
    let ts: u64 = d.header("x-maia-timestamp").parse().expect("unix seconds");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    assert!(now.abs_diff(ts) < 60, "timestamp {ts} is not now ({now})");
    assert!(maia_signature_valid(&secret, d), "X-Maia-Signature does not verify: {:?}", d.headers);
    assert!(standard_signature_valid(&secret, d), "webhook-signature does not verify: {:?}", d.headers);
    assert!(!maia_signature_valid("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", d));

    // The operator sees it delivered, with its one attempt.
    let shown = wait_for(DELIVERY, "delivered status", || {
        let e = server.admin("GET", &format!("/v1/events/{event_id}"), None).json();
        (e["deliveries"][0]["status"] == "delivered").then_some(e)
    });
    assert_eq!(shown["deliveries"][0]["attempts"].as_array().map(Vec::len), Some(1), "{shown}");
    // The only event, recorded delivered, nothing pending: nothing more will arrive.
    server.wait_settled(&tid, DELIVERY);
    assert_eq!(rcv.count("/hook"), 1, "delivered more than once");
    let attempt = &shown["deliveries"][0]["attempts"][0];
    assert_eq!((attempt["n"].as_u64(), attempt["status_code"].as_u64()), (Some(1), Some(200)));
    assert!(attempt["at"].is_string() && attempt["duration_ms"].is_u64());
    assert_eq!(shown["payload"], serde_json::from_str::<Value>(&raw).expect("json"));
}

#[test]
fn subscriptions_include_and_exclude() {
    let server = Server::start();
    let rcv = Receiver::start();
    let (types, _) = server.wire(&rcv.url("/types"), Some(json!({"event_types": ["crm_field_update"]})), json!({}));
    let (kanban, _) = server.wire(&rcv.url("/kanban"), Some(json!({"kanban_ids": ["kanban_A"]})), json!({}));
    let (fields, _) = server.wire(&rcv.url("/fields"), Some(json!({"field_names": ["Email"]})), json!({}));
    let (and, _) = server.wire(
        &rcv.url("/and"),
        Some(json!({"event_types": ["crm_field_update"], "kanban_ids": ["kanban_A"]})),
        json!({}),
    );
    let (either, _) = server.wire(&rcv.url("/or"), Some(json!({"event_types": ["ai_pause"]})), json!({}));
    let r = server.admin("POST", "/v1/subscriptions", Some(&json!({"target_id": either, "kanban_ids": ["kanban_A"]})));
    assert_eq!(r.status, 201, "{}", r.text);
    let (none, _) = server.wire(&rcv.url("/none"), None, json!({}));

    let email_a = maia("crm_field_update", json!({"kanbanId": "kanban_A", "fieldName": "Email"}));
    let phone_b = maia("crm_field_update", json!({"kanbanId": "kanban_B", "fieldName": "Phone"}));
    let created_a = maia("crm_record_created", json!({"kanbanId": "kanban_A"}));
    let pause = maia("ai_pause", json!({}));
    let ack = server.post_ok(&json!([email_a, phone_b, created_a, pause]));
    // The marker: an event every subscribed target takes, logged after the others. Once it has
    // arrived on a target and the target owes nothing more, the target has matched every event
    // before it and made (and had answered) each delivery it owed: what its receiver got is
    // final.
    let marker = maia("crm_field_update", json!({"kanbanId": "kanban_A", "fieldName": "Email"}));
    server.post_ok(&marker);
    let tag = |v: &Value| v["recordId"].as_str().or(v["sessionId"].as_str()).expect("tag").to_owned();
    let expect = [
        ("/types", &types, vec![&email_a, &phone_b]),
        // A kanban filter applies to events that carry a kanban: `ai_pause` passes.
        ("/kanban", &kanban, vec![&email_a, &created_a, &pause]),
        ("/fields", &fields, vec![&email_a, &created_a, &pause]),
        ("/and", &and, vec![&email_a]),
        ("/or", &either, vec![&email_a, &created_a, &pause]),
    ];
    for (path, tid, events) in &expect {
        rcv.wait_tag(path, &tag(&marker), DELIVERY);
        server.wait_settled(tid, DELIVERY);
        let mut want: Vec<String> = events.iter().map(|e| tag(e)).chain([tag(&marker)]).collect();
        want.sort();
        let mut got = rcv.tags(path);
        got.sort();
        assert_eq!(got, want, "{path}: an event delivered that its subscriptions exclude, or twice, or not at all");
    }
    // No event can reach /none (it has no subscription), so no marker either: the server's view
    // of each event names every target it owes that event to, and /none is never among them.
    let ids: Vec<&str> = ack["events"].as_array().expect("events").iter().filter_map(|e| e["id"].as_str()).collect();
    for (event, id) in [&email_a, &phone_b, &created_a, &pause].iter().zip(&ids) {
        let mut want: Vec<&str> =
            expect.iter().filter(|(_, _, events)| events.contains(event)).map(|(_, tid, _)| tid.as_str()).collect();
        want.sort();
        let mut owed = server.delivered_to(id);
        owed.sort();
        assert_eq!(owed, want, "the targets {} goes to", tag(event));
        assert!(!owed.contains(&none));
    }
    assert!(rcv.requests("/none").is_empty(), "a target without subscriptions was delivered to");
}

#[test]
fn a_subscription_applies_to_later_events_only() {
    let server = Server::start();
    let rcv = Receiver::start();
    let (id, _) = server.wire(&rcv.url("/late"), None, json!({}));
    let before = maia("crm_field_update", json!({}));
    server.post_ok(&before);
    let r = server.admin("POST", "/v1/subscriptions", Some(&json!({"target_id": id})));
    assert_eq!(r.status, 201, "{}", r.text);
    let after = maia("crm_field_update", json!({}));
    server.post_ok(&after);
    // `after` is the marker: once it has arrived and nothing is pending, `before` was matched
    // (logged earlier) and would have arrived too.
    rcv.wait_tag("/late", after["recordId"].as_str().expect("tag"), DELIVERY);
    server.wait_settled(&id, DELIVERY);
    assert_eq!(rcv.tags("/late"), [after["recordId"].as_str().expect("tag")], "delivered an event from before");
}

#[test]
fn two_failures_then_success_is_three_attempts_with_one_webhook_id() {
    let server = Server::start();
    let rcv = Receiver::start();
    rcv.program("/retry", &[status(500), status(500)], status(200));
    server.wire(&rcv.url("/retry"), Some(json!({})), json!({"retry_schedule_ms": [200, 400, 400]}));
    let ack = server.post_ok(&maia("crm_field_update", json!({})));
    let event_id = ack["events"][0]["id"].as_str().expect("id").to_owned();
    let reqs = rcv.wait_count("/retry", 3, DELIVERY);
    assert_eq!(reqs.iter().map(|r| r.header("x-crmhook-attempt")).collect::<Vec<_>>(), ["1", "2", "3"]);
    assert!(reqs.iter().all(|r| r.header("webhook-id") == event_id));
    let gaps: Vec<Duration> = reqs.windows(2).map(|w| w[1].at - w[0].at).collect();
    // The schedule [200, 400, 400], whose jitter only adds (up to a tenth): never sooner. (A
    // millisecond's slack for the clock's rounding.)
    assert!(
        gaps[0] >= Duration::from_millis(199) && gaps[1] >= Duration::from_millis(399),
        "retried before the schedule: {gaps:?}"
    );

    let shown = wait_for(DELIVERY, "three recorded attempts", || {
        let e = server.admin("GET", &format!("/v1/events/{event_id}"), None).json();
        (e["deliveries"][0]["attempts"].as_array().map(Vec::len) == Some(3)).then_some(e)
    });
    let d = &shown["deliveries"][0];
    assert_eq!(d["status"], "delivered");
    let codes: Vec<u64> =
        d["attempts"].as_array().expect("attempts").iter().filter_map(|a| a["status_code"].as_u64()).collect();
    assert_eq!(codes, [500, 500, 200]);
    // Delivered and recorded: no attempt is left to come.
    assert_eq!(rcv.count("/retry"), 3, "more than three attempts");
}

#[test]
fn a_spent_schedule_marks_the_delivery_dead() {
    let server = Server::start();
    let rcv = Receiver::start();
    rcv.program("/down", &[], status(503));
    server.wire(&rcv.url("/down"), Some(json!({})), json!({"retry_schedule_ms": [100]}));
    let ack = server.post_ok(&maia("ai_pause", json!({})));
    let event_id = ack["events"][0]["id"].as_str().expect("id").to_owned();
    let shown = wait_for(DELIVERY, "dead status", || {
        let e = server.admin("GET", &format!("/v1/events/{event_id}"), None).json();
        (e["deliveries"][0]["status"] == "dead").then_some(e)
    });
    assert_eq!(shown["deliveries"][0]["attempts"].as_array().map(Vec::len), Some(2));
    // Dead is final, and each attempt was recorded after its answer: exactly two requests.
    assert_eq!(rcv.count("/down"), 2);
}

#[test]
fn a_receiver_slower_than_timeout_ms_is_a_failed_attempt() {
    let server = Server::start();
    let rcv = Receiver::start();
    rcv.program("/slow", &[delayed(200, Duration::from_secs(3))], status(200));
    server.wire(&rcv.url("/slow"), Some(json!({})), json!({"timeout_ms": 500, "retry_schedule_ms": [100]}));
    let ack = server.post_ok(&maia("crm_field_update", json!({})));
    let event_id = ack["events"][0]["id"].as_str().expect("id").to_owned();
    let reqs = rcv.wait_count("/slow", 2, DELIVERY);
    assert_eq!(reqs[1].header("x-crmhook-attempt"), "2");
    assert!(reqs[1].at - reqs[0].at < Duration::from_millis(2500), "the 3 s answer was awaited");
    let shown = wait_for(DELIVERY, "delivered after the timeout", || {
        let e = server.admin("GET", &format!("/v1/events/{event_id}"), None).json();
        (e["deliveries"][0]["status"] == "delivered").then_some(e)
    });
    let first = &shown["deliveries"][0]["attempts"][0];
    let error = first["error"].as_str().unwrap_or_default();
    assert!(first.get("status_code").is_none() && error.starts_with("timed out after "), "{first}");
    let waited: u64 = error.trim_start_matches("timed out after ").trim_end_matches(" ms").parse().expect("ms");
    assert!((500..3000).contains(&waited), "{first}");
    assert!(first["response"].is_null(), "no answer: {first}");
}

#[test]
fn redirects_are_not_followed() {
    let server = Server::start();
    let rcv = Receiver::start();
    rcv.program("/moved", &[], status(302));
    server.wire(&rcv.url("/moved"), Some(json!({})), json!({"retry_schedule_ms": []}));
    let ack = server.post_ok(&maia("crm_field_update", json!({})));
    let event_id = ack["events"][0]["id"].as_str().expect("id").to_owned();
    let shown = wait_for(DELIVERY, "dead after a redirect", || {
        let e = server.admin("GET", &format!("/v1/events/{event_id}"), None).json();
        (e["deliveries"][0]["status"] == "dead").then_some(e)
    });
    let attempt = &shown["deliveries"][0]["attempts"][0];
    assert_eq!(attempt["status_code"], 302);
    assert!(attempt["error"].as_str().unwrap_or_default().starts_with("redirect not followed (HTTP 302"), "{attempt}");
    assert_eq!(attempt["response"]["status"], 302, "{attempt}");
}

#[test]
fn every_ingest_error_is_a_problem_and_stores_nothing() {
    let server = Server::start_with(&[
        ("CRMHOOK_ADMIN_TOKEN", ADMIN),
        ("CRMHOOK_INGEST_TOKEN", INGEST),
        ("CRMHOOK_MAX_BODY_BYTES", "4096"),
    ]);
    let url = server.url("/v1/events");
    let bearer = format!("Bearer {INGEST}");
    let json_ct = ("Content-Type", "application/json");
    let auth = ("Authorization", bearer.as_str());
    let post = |headers: &[(&str, &str)], body: &str| http("POST", &url, headers, Some(body.as_bytes()));

    expect_problem(&post(&[json_ct, auth], r#"{"eventType": "#), 400);
    expect_problem(&post(&[json_ct, auth], "42"), 400);
    expect_problem(&post(&[json_ct], &maia("ai_pause", json!({})).to_string()), 401);
    expect_problem(&post(&[json_ct, ("Authorization", "Bearer nope")], &maia("ai_pause", json!({})).to_string()), 401);
    let admin_bearer = format!("Bearer {ADMIN}");
    expect_problem(&post(&[json_ct, ("Authorization", &admin_bearer)], &maia("ai_pause", json!({})).to_string()), 403);
    let big = maia("crm_field_update", json!({"newValue": "x".repeat(10_000)}));
    expect_problem(&post(&[json_ct, auth], &big.to_string()), 413);
    expect_problem(&post(&[("Content-Type", "text/plain"), auth], &maia("ai_pause", json!({})).to_string()), 415);
    expect_problem(&post(&[json_ct, auth], r#"{"eventType": "crm_field_exploded"}"#), 422);
    expect_problem(&post(&[json_ct, auth], "[]"), 422);
    expect_problem(&post(&[json_ct, auth], r#"{"recordId": "r"}"#), 422);
    let wrong_type = maia("crm_record_created", json!({"recordId": 5}));
    expect_problem(&post(&[json_ct, auth], &wrong_type.to_string()), 422);

    // One invalid event among valid ones: 422 naming its index, and none of them is stored.
    let good = maia("crm_field_update", json!({}));
    let mut bad = maia("crm_field_update", json!({}));
    bad.as_object_mut().expect("object").remove("kanbanId");
    let p = expect_problem(&post(&[json_ct, auth], &json!([good, good, bad]).to_string()), 422);
    assert_eq!(p["index"], 2, "{p}");
    assert!(p["detail"].as_str().expect("detail").contains("kanbanId"), "{p}");
    let listed = server.admin("GET", "/v1/events?limit=1000", None).json();
    assert_eq!(listed["events"].as_array().map(Vec::len), Some(0), "something was stored: {listed}");
    assert_eq!(server.admin("GET", "/healthz", None).status, 200);
}

#[test]
fn a_full_writer_queue_answers_503_with_retry_after() {
    let server = Server::start_with(&[
        ("CRMHOOK_ADMIN_TOKEN", ADMIN),
        ("CRMHOOK_INGEST_TOKEN", INGEST),
        ("CRMHOOK_INGEST_QUEUE", "1"),
    ]);
    let url = server.url("/v1/events");
    let body = json!([maia("crm_field_update", json!({})), maia("crm_record_created", json!({}))]).to_string();
    // Bursts of concurrent posts until the one-slot queue overflows (bounded by a deadline).
    let problem = wait_for(Duration::from_secs(30), "a 503 from a full writer queue", || {
        let answers: Vec<Resp> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..32)
                .map(|_| {
                    s.spawn(|| {
                        let bearer = format!("Bearer {INGEST}");
                        http(
                            "POST",
                            &url,
                            &[("Content-Type", "application/json"), ("Authorization", &bearer)],
                            Some(body.as_bytes()),
                        )
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("thread")).collect()
        });
        assert!(answers.iter().all(|r| r.status == 202 || r.status == 503), "only 202 or 503 expected");
        answers.into_iter().find(|r| r.status == 503)
    });
    let p = expect_problem(&problem, 503);
    assert_eq!(problem.headers.get("retry-after").map(String::as_str), Some("1"), "{p}");
}

#[test]
fn admin_errors_are_problems() {
    let server = Server::start_with(&[
        ("CRMHOOK_ADMIN_TOKEN", ADMIN),
        ("CRMHOOK_INGEST_TOKEN", INGEST),
        ("CRMHOOK_MAX_TARGETS", "2"),
    ]);
    expect_problem(&server.request("GET", "/v1/targets", Some(INGEST), None), 403);
    expect_problem(&server.request("GET", "/v1/targets", None, None), 401);
    // One problem type, one title: an unknown id and an unknown path alike.
    let unknown_id = expect_problem(&server.admin("GET", "/v1/targets/tgt_nope", None), 404);
    expect_problem(&server.admin("GET", "/v1/events/evt_00000000000000000000000000", None), 404);
    let unknown_path = expect_problem(&server.admin("GET", "/v1/nothing-here", None), 404);
    assert_eq!((&unknown_id["type"], &unknown_id["title"]), (&unknown_path["type"], &unknown_path["title"]));
    // A detail that quotes what was sent quotes at most 500 characters of it.
    let long = expect_problem(&server.admin("GET", &format!("/v1/events/evt_{}", "x".repeat(20_000)), None), 404);
    assert!(long["detail"].as_str().is_some_and(|d| d.chars().count() <= 501 && d.ends_with('…')), "{long}");
    // A 405 names the methods the path takes (RFC 9110: `Allow`), the sources' paths too.
    let put = server.admin("PUT", "/v1/targets", Some(&json!({})));
    expect_problem(&put, 405);
    assert_eq!(put.headers.get("allow").map(String::as_str), Some("GET, HEAD, POST"));
    let patch = server.admin("PATCH", "/v1/events", Some(&json!({})));
    expect_problem(&patch, 405);
    assert_eq!(patch.headers.get("allow").map(String::as_str), Some("POST, GET, HEAD"));
    let get = server.admin("GET", "/in/src_00000000000000000000000000", None);
    expect_problem(&get, 405);
    assert_eq!(get.headers.get("allow").map(String::as_str), Some("POST"));
    let post = server.request("POST", "/healthz", None, None);
    assert_eq!(post.headers.get("allow").map(String::as_str), Some("GET, HEAD"), "{}", post.text);
    // Every GET route takes HEAD (RFC 9110): the same status and headers, no content; the
    // stream, whose content never ends, does not.
    for path in ["/v1/events", "/v1/targets", "/v1/sources", "/console", "/openapi.json"] {
        let get = server.admin("GET", path, None);
        let head = server.admin("HEAD", path, None);
        assert_eq!((head.status, head.text.as_str()), (get.status, ""), "HEAD {path}");
        assert_eq!(head.headers.get("content-type"), get.headers.get("content-type"), "HEAD {path}");
    }
    assert_eq!(server.request("HEAD", "/v1/events", None, None).status, 401, "HEAD needs the token GET needs");
    let stream = server.admin("HEAD", "/v1/stream", None);
    assert_eq!((stream.status, stream.headers.get("allow").map(String::as_str)), (405, Some("GET")));
    let p = expect_problem(&server.admin("POST", "/v1/targets", Some(&json!({"name": "x", "url": "ftp://x"}))), 422);
    assert_eq!(p["field"], "url");
    let p = expect_problem(
        &server.admin("POST", "/v1/targets", Some(&json!({"name": "x", "url": "https://a.example", "timeout_ms": -1}))),
        422,
    );
    assert_eq!(p["field"], "timeout_ms");
    let p = expect_problem(
        &server.admin("POST", "/v1/subscriptions", Some(&json!({"target_id": "tgt_00000000000000000000000000"}))),
        422,
    );
    assert_eq!(p["field"], "target_id");
    expect_problem(&server.admin("GET", "/v1/events?limit=1001", None), 422);
    let r = http(
        "POST",
        &server.url("/v1/targets"),
        &[("Authorization", &format!("Bearer {ADMIN}")), ("Content-Type", "application/json")],
        Some(b"{"),
    );
    expect_problem(&r, 400);
    for i in 0..2 {
        assert_eq!(
            server
                .admin("POST", "/v1/targets", Some(&json!({"name": format!("t{i}"), "url": "https://a.example"})))
                .status,
            201
        );
    }
    expect_problem(&server.admin("POST", "/v1/targets", Some(&json!({"name": "t3", "url": "https://a.example"}))), 409);
}

#[test]
fn targets_and_subscriptions_crud_never_shows_the_secret_again() {
    let server = Server::start();
    let r = server.admin(
        "POST",
        "/v1/targets",
        Some(&json!({"name": "crm", "url": "https://hooks.example/in?x=1", "headers": {"X-Key": "k"}})),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let t = r.json();
    let (id, secret) = (t["id"].as_str().expect("id").to_owned(), t["secret"].as_str().expect("secret").to_owned());
    assert!(id.starts_with("tgt_") && secret.starts_with("whsec_"));
    assert_eq!(t["url"], "https://hooks.example/in?x=1");
    for path in [format!("/v1/targets/{id}"), "/v1/targets".to_owned()] {
        let r = server.admin("GET", &path, None);
        assert_eq!(r.status, 200);
        assert!(r.text.contains(&id) && !r.text.contains(&secret[6..]), "{path}: {}", r.text);
    }
    let r = server.admin("PATCH", &format!("/v1/targets/{id}"), Some(&json!({"name": "renamed", "ordered": true})));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!((r.json()["name"].as_str(), r.json()["ordered"].as_bool()), (Some("renamed"), Some(true)));
    let r = server.admin(
        "POST",
        "/v1/subscriptions",
        Some(&json!({"target_id": id, "event_types": ["crm_record_created"]})),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let sub = r.json()["id"].as_str().expect("id").to_owned();
    assert!(sub.starts_with("sub_"));
    assert_eq!(server.admin("GET", &format!("/v1/subscriptions/{sub}"), None).json()["target_id"], id.as_str());
    assert_eq!(
        server.admin("GET", "/v1/subscriptions", None).json()["subscriptions"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(server.admin("DELETE", &format!("/v1/subscriptions/{sub}"), None).status, 204);
    assert_eq!(server.admin("GET", &format!("/v1/subscriptions/{sub}"), None).status, 404);
    let r = server.admin("POST", &format!("/v1/targets/{id}/rotate-secret"), None);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_ne!(r.json()["secret"].as_str(), Some(secret.as_str()));
    assert_eq!(server.admin("DELETE", &format!("/v1/targets/{id}"), None).status, 204);
    assert_eq!(server.admin("GET", &format!("/v1/targets/{id}"), None).status, 404);
}

#[test]
fn events_page_by_seq() {
    let server = Server::start();
    let acks: Vec<Value> =
        (0..5).map(|_| server.post_ok(&maia("crm_field_update", json!({})))["events"][0].clone()).collect();
    let page = server.admin("GET", "/v1/events?limit=2", None).json();
    let seqs: Vec<u64> = page["events"].as_array().expect("events").iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(seqs, [1, 2]);
    assert_eq!(page["next_after"], 2);
    let rest = server.admin("GET", "/v1/events?after=2&limit=10", None).json();
    let ids: Vec<&str> = rest["events"].as_array().expect("events").iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids, acks[2..].iter().filter_map(|a| a["id"].as_str()).collect::<Vec<_>>());
    assert!(rest["next_after"].is_null());
    let one = server.admin("GET", "/v1/events?type=ai_pause", None).json();
    assert_eq!(one["events"].as_array().map(Vec::len), Some(0));
    let e = &rest["events"][0];
    assert!(
        e["received_at"].as_str().is_some_and(|t| t.ends_with('Z')) && e["payload"]["eventType"] == "crm_field_update"
    );
}

#[test]
fn verify_checks_a_signature_by_hand() {
    let dir = tempfile::tempdir().expect("tempdir");
    let body = dir.path().join("body.json");
    std::fs::write(&body, br#"{"test": 2432232314}"#).expect("write");
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let run = |sig: &str, id: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_crmhook"));
        cmd.args(["verify", "--secret", secret, "--body"]).arg(&body).args([
            "--timestamp",
            "1614265330",
            "--signature",
            sig,
        ]);
        if let Some(id) = id {
            cmd.args(["--id", id]);
        }
        cmd.output().expect("runs").status.code()
    };
    assert_eq!(run("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", Some("msg_p5jXN8AQM9LWM0D4loKWxJek")), Some(0));
    // printf '%s' '{"test": 2432232314}' | openssl dgst -sha256 -hmac "$secret"
    assert_eq!(run("80ec8a89ce3cd22133a1066caecb4d04fea7467657c8514d717ec42c38a5c94c", None), Some(0));
    assert_eq!(run("00", None), Some(1));
    assert_eq!(run("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", Some("msg_other")), Some(1));
}

#[test]
fn invalid_configuration_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_crmhook"))
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("CRMHOOK_MAX_TARGETS", "many")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_targets") && err.contains("CRMHOOK_MAX_TARGETS"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening on"));
}

#[test]
fn retry_after_on_503_stretches_the_delay_up_to_twice_the_schedule() {
    let server = Server::start();
    let rcv = Receiver::start();
    rcv.program("/busy", &[Reply { retry_after: Some(1), ..status(503) }], status(200));
    server.wire(&rcv.url("/busy"), Some(json!({})), json!({"retry_schedule_ms": [600]}));
    server.post_ok(&maia("crm_field_update", json!({})));
    let reqs = rcv.wait_count("/busy", 2, DELIVERY);
    let gap = reqs[1].at - reqs[0].at;
    // Without Retry-After the gap is 600 ms, up to a tenth more (at most 660 ms); with
    // `Retry-After: 1` it is one second (twice the jittered delay is longer).
    assert!(gap >= Duration::from_millis(999), "Retry-After was not honoured: {gap:?}");
    assert!(gap <= Duration::from_millis(2500), "waited too long: {gap:?}");
}

#[test]
fn a_410_disables_the_target_until_it_is_enabled_again() {
    let server = Server::start();
    let rcv = Receiver::start();
    rcv.program("/gone", &[status(410)], status(200));
    let (tid, _) = server.wire(&rcv.url("/gone"), Some(json!({})), json!({"retry_schedule_ms": [100]}));
    let pending = |id: &str| {
        let r = server.admin("GET", &format!("/v1/targets/{tid}/deliveries?status=pending"), None);
        r.json()["deliveries"].as_array().is_some_and(|d| d.iter().any(|d| d["event_id"] == id))
    };
    let first = server.post_ok(&maia("crm_field_update", json!({})));
    rcv.wait_count("/gone", 1, DELIVERY);
    let target = wait_for(DELIVERY, "the target disabled", || {
        let t = server.admin("GET", &format!("/v1/targets/{tid}"), None).json();
        (t["enabled"] == false).then_some(t)
    });
    assert!(target["disabled_reason"].as_str().is_some_and(|r| r.contains("410")), "{target}");
    let second = server.post_ok(&maia("crm_field_update", json!({})));
    // Once the target has taken the new event on (its actor reads the log and starts what is
    // due in one step), it would be sending both events now were it not disabled: the 410'd one
    // is due at once. No later delivery can show that a disabled target stays silent, so this
    // stays a quiet period.
    let second_id = second["events"][0]["id"].as_str().expect("id");
    wait_for(DELIVERY, "the new event pending", || pending(second_id).then_some(()));
    let one = |got: &[Received]| got.iter().filter(|r| r.path == "/gone").count() == 1;
    assert!(rcv.holds_for(QUIET, one), "a disabled target was delivered to");
    let id = first["events"][0]["id"].as_str().expect("id");
    let shown = server.admin("GET", &format!("/v1/events/{id}"), None).json();
    assert_eq!(shown["deliveries"][0]["status"], "pending");
    assert_eq!(shown["deliveries"][0]["attempts"][0]["result"], "target_disabled");

    let enabled_at = std::time::Instant::now();
    let r = server.admin("PATCH", &format!("/v1/targets/{tid}"), Some(&json!({"enabled": true})));
    assert_eq!((r.status, r.json()["enabled"].as_bool()), (200, Some(true)), "{}", r.text);
    let reqs = rcv.wait_count("/gone", 3, DELIVERY);
    assert!(reqs[1..].iter().all(|r| r.at >= enabled_at), "a disabled target was delivered to");
    let first_retry = reqs.iter().skip(1).find(|r| r.header("webhook-id") == id).expect("the 410'd event again");
    assert_eq!(first_retry.header("x-crmhook-attempt"), "2");
    server.wait_settled(&tid, DELIVERY);
    assert_eq!(rcv.count("/gone"), 3);
}

#[test]
fn an_ordered_target_gets_its_events_one_at_a_time_in_log_order() {
    let server = Server::start();
    let rcv = Receiver::start();
    rcv.program("/ordered", &[status(500), status(500)], delayed(200, Duration::from_millis(30)));
    server.wire(&rcv.url("/ordered"), Some(json!({})), json!({"ordered": true, "retry_schedule_ms": [100, 100, 100]}));
    let events: Vec<Value> = (0..6).map(|_| maia("crm_field_update", json!({}))).collect();
    server.post_ok(&json!(events[..3]));
    server.post_ok(&json!(events[3..]));
    let reqs = rcv.wait_count("/ordered", 8, DELIVERY);
    let tags: Vec<String> = reqs.iter().map(Received::tag).collect();
    let want: Vec<String> = events.iter().map(|e| e["recordId"].as_str().expect("tag").to_owned()).collect();
    let mut expected = vec![want[0].clone(), want[0].clone()];
    expected.extend(want.iter().cloned());
    assert_eq!(tags, expected, "not strictly in log order");
    // One at a time: each request starts only after the previous one was answered (successes
    // take 30 ms to answer; failures are retried after 100 to 110 ms).
    for w in reqs.windows(2) {
        assert!(w[1].at - w[0].at >= Duration::from_millis(25), "two requests overlapped: {:?}", w[1].at - w[0].at);
    }
}

#[test]
fn a_duplicate_maximizer_id_is_acknowledged_and_not_delivered_twice() {
    let server = Server::start();
    let rcv = Receiver::start();
    let (tid, _) = server.wire(&rcv.url("/mx"), Some(json!({"event_types": ["Opportunity.*"]})), json!({}));
    let envelope: Value = serde_json::from_str(&sample("opportunity_stage_change")).expect("json");
    let first = server.post_ok(&envelope);
    let again = server.post_ok(&envelope);
    assert_eq!((first["accepted"].as_u64(), again["duplicates"].as_u64()), (Some(1), Some(1)));
    assert_eq!(first["events"][0]["type"], "Opportunity.Update");
    assert_eq!(again["events"][0]["seq"], first["events"][0]["seq"]);
    let got = rcv.wait_count("/mx", 1, DELIVERY);
    let delivered = got[0].json();
    assert!(delivered.is_array() && delivered[0] == envelope[0], "the element as posted");
    // A marker with another Id, posted last: once it has arrived and nothing is pending, a
    // second delivery of the duplicate would have arrived.
    let mut marker = envelope.clone();
    marker[0]["Id"] = json!(format!("marker-{}", unique()));
    server.post_ok(&marker);
    rcv.wait_tag("/mx", marker[0]["Id"].as_str().expect("Id"), DELIVERY);
    server.wait_settled(&tid, DELIVERY);
    assert_eq!(rcv.count("/mx"), 2, "the duplicate was delivered twice");
}
