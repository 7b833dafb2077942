//! The operators' API (contract section 5): reading the log, a target's deliveries, redeliver
//! and replay (and retries waiting sent now: a replay of `pending`); the audit trail newest
//! first.

mod support;

#[path = "operators/retry_now.rs"]
mod retry_now;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const DELIVERY: Duration = Duration::from_secs(10);

/// The id of an ingest answer's first event.
fn id(ack: &Value) -> String {
    ack["events"][0]["id"].as_str().expect("id").to_owned()
}

fn ids(page: &Value) -> Vec<String> {
    page["events"].as_array().expect("events").iter().map(|e| e["id"].as_str().expect("id").to_owned()).collect()
}

#[test]
fn an_events_payload_is_shown_as_its_exact_text() {
    // Contract section 5: `payload` is "the event as ingested". Whitespace, an escape, an
    // exponent and a decimal's zeros, as a CRM may send them.
    let server = Server::start();
    let body = "{ \"eventType\" : \"crm_field_update\",\n  \"recordId\": \"r\\u00e9\", \"kanbanId\": \"k\",\n  \"newValue\": [1e2, 12000.00, -0.0E+1] }";
    let bearer = format!("Bearer {INGEST}");
    let headers = [("Content-Type", "application/json"), ("Authorization", bearer.as_str())];
    let r = http("POST", &server.url("/v1/events"), &headers, Some(body.as_bytes()));
    assert_eq!(r.status, 202, "{}", r.text);
    let id = id(&r.json());
    let shown = server.admin("GET", &format!("/v1/events/{id}"), None);
    assert!(shown.text.contains(&format!("\"payload\":{body}")), "{}", shown.text);
    let listed = server.admin("GET", "/v1/events", None);
    assert!(listed.text.contains(&format!("\"payload\":{body}")), "{}", listed.text);
    // Read as JSON it is the same event.
    assert_eq!(shown.json()["payload"]["recordId"], "r\u{e9}");
}

#[test]
fn paging_edges() {
    let server = Server::start();
    let empty = server.admin("GET", "/v1/events", None);
    assert_eq!(empty.status, 200);
    assert_eq!(empty.json(), json!({"events": [], "next_after": null}));
    for bad in ["limit=1001", "limit=0", "limit=x", "after=-1", "after=x", "since=yesterday", "until=2024-13-01"] {
        let r = server.admin("GET", &format!("/v1/events?{bad}"), None);
        assert_eq!(r.status, 422, "{bad}: {}", r.text);
        assert!(r.content_type().starts_with("application/problem+json"));
    }
    for _ in 0..3 {
        server.post_ok(&maia("ai_pause", json!({})));
    }
    let past = server.admin("GET", "/v1/events?after=99", None).json();
    assert_eq!(past, json!({"events": [], "next_after": null}));
    let full = server.admin("GET", "/v1/events?limit=3", None).json();
    assert_eq!((ids(&full).len(), full["next_after"].as_u64()), (3, Some(3)), "a full page names its last seq");
    let after_full = server.admin("GET", "/v1/events?after=3&limit=3", None).json();
    assert_eq!(after_full, json!({"events": [], "next_after": null}));
    assert_eq!(ids(&server.admin("GET", "/v1/events?limit=1000", None).json()).len(), 3);
}

#[test]
fn filters_by_type_record_kanban_and_time() {
    let server = Server::start();
    let a1 = maia("crm_field_update", json!({"kanbanId": "kanban_A"}));
    let a2 = maia("crm_record_created", json!({"kanbanId": "kanban_A"}));
    let b1 = maia("crm_field_update", json!({"kanbanId": "kanban_B"}));
    let pause = maia("ai_pause", json!({}));
    let acks: Vec<Value> = [&a1, &a2, &b1, &pause].iter().map(|e| server.post_ok(e)["events"][0].clone()).collect();
    let id = |i: usize| acks[i]["id"].as_str().expect("id").to_owned();
    let get = |q: &str| server.admin("GET", &format!("/v1/events?{q}"), None).json();

    assert_eq!(ids(&get("type=crm_field_update")), [id(0), id(2)]);
    assert_eq!(ids(&get("kanban_id=kanban_A")), [id(0), id(1)]);
    assert_eq!(ids(&get(&format!("record_id={}", a2["recordId"].as_str().expect("r")))), [id(1)]);
    assert_eq!(ids(&get("type=crm_field_update&kanban_id=kanban_B")), [id(2)]);
    assert_eq!(ids(&get("type=Opportunity.Update")), Vec::<String>::new());
    // Paging within a filter.
    let first = get("type=crm_field_update&limit=1");
    assert_eq!((ids(&first), first["next_after"].as_u64()), (vec![id(0)], Some(1)));
    assert_eq!(ids(&get("type=crm_field_update&limit=1&after=1")), [id(2)]);
    // Time ranges.
    assert_eq!(ids(&get("since=2000-01-01T00:00:00Z")).len(), 4);
    assert_eq!(ids(&get("until=2000-01-01T00:00:00Z")).len(), 0);
    assert_eq!(ids(&get("since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z&kanban_id=kanban_A")), [id(0), id(1)]);
    let at3 = server.admin("GET", &format!("/v1/events/{}", id(3)), None).json()["received_at"]
        .as_str()
        .expect("at")
        .to_owned();
    assert!(ids(&get(&format!("since={at3}"))).contains(&id(3)));
    assert!(!ids(&get(&format!("until={at3}"))).contains(&id(3)), "until is exclusive");
}

#[test]
fn events_page_newest_first_with_order_newest() {
    let server = Server::start();
    let get = |q: &str| server.admin("GET", &format!("/v1/events?{q}"), None);
    assert_eq!(get("order=newest").json(), json!({"events": [], "next_after": null}));
    let r = get("order=latest");
    assert_eq!((r.status, r.json()["field"].as_str()), (422, Some("order")), "{}", r.text);
    // Seven events, kanbans A and B in turn.
    let acks: Vec<String> = (0..7)
        .map(|i| {
            let kanban = ["kanban_A", "kanban_B"][i % 2];
            id(&server.post_ok(&maia("crm_field_update", json!({ "kanbanId": kanban }))))
        })
        .collect();
    let newest: Vec<String> = acks.iter().rev().cloned().collect();
    assert_eq!(ids(&get("order=newest").json()), newest);
    // Page by page, each `next_after` leading to older events, to the log's start.
    let mut seen = Vec::new();
    let mut query = "order=newest&limit=3".to_owned();
    loop {
        let page = get(&query).json();
        seen.extend(ids(&page));
        match page["next_after"].as_u64() {
            Some(after) => query = format!("order=newest&limit=3&after={after}"),
            None => break,
        }
    }
    assert_eq!(seen, newest);
    // Through an index, and bounded in time.
    assert_eq!(ids(&get("order=newest&kanban_id=kanban_A&limit=2").json()), [acks[6].clone(), acks[4].clone()]);
    assert_eq!(ids(&get("order=newest&kanban_id=kanban_B&after=4").json()), [acks[1].clone()]);
    let received = |i: usize| {
        server.admin("GET", &format!("/v1/events/{}", acks[i]), None).json()["received_at"]
            .as_str()
            .expect("at")
            .to_owned()
    };
    let (since, until) = (received(2), received(5));
    let bounded = ids(&get(&format!("order=newest&since={since}&until={until}")).json());
    let oldest = ids(&get(&format!("since={since}&until={until}")).json());
    assert_eq!(bounded, oldest.iter().rev().cloned().collect::<Vec<_>>());
    assert!(!bounded.contains(&acks[5]), "until is exclusive");
    // (Events received within one millisecond share their time: then the range is empty.)
    assert_eq!(bounded.contains(&acks[2]), since < until, "since is inclusive");
}

#[test]
fn a_targets_deliveries_by_status_then_redeliver_and_replay() {
    let server = Server::start();
    let rcv = Receiver::start();
    rcv.program("/ops", &[status(200)], status(503));
    let (tid, _) = server.wire(&rcv.url("/ops"), Some(json!({})), json!({"retry_schedule_ms": []}));
    let delivered =
        server.post_ok(&maia("crm_field_update", json!({})))["events"][0]["id"].as_str().expect("id").to_owned();
    rcv.wait_count("/ops", 1, DELIVERY);
    let dead: Vec<String> = (0..3)
        .map(|_| {
            server.post_ok(&maia("crm_record_created", json!({})))["events"][0]["id"].as_str().expect("id").to_owned()
        })
        .collect();
    let list = |status: &str| {
        let r = server.admin("GET", &format!("/v1/targets/{tid}/deliveries?status={status}"), None);
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()["deliveries"]
            .as_array()
            .expect("deliveries")
            .iter()
            .map(|d| d["event_id"].as_str().expect("id").to_owned())
            .collect::<Vec<_>>()
    };
    wait_for(DELIVERY, "three dead deliveries", || (list("dead").len() == 3).then_some(()));
    assert_eq!(list("dead"), dead);
    assert_eq!(list("delivered"), std::slice::from_ref(&delivered));
    assert_eq!(list("pending"), Vec::<String>::new());
    assert_eq!(server.admin("GET", &format!("/v1/targets/{tid}/deliveries?status=lost"), None).status, 422);
    assert_eq!(server.admin("GET", "/v1/targets/tgt_00000000000000000000000000/deliveries", None).status, 404);

    // Redeliver the delivered event: a new attempt, numbered on, same webhook-id.
    rcv.set_default("/ops", status(200));
    let r = server.admin("POST", &format!("/v1/events/{delivered}/redeliver"), Some(&json!({"target_id": tid})));
    assert_eq!((r.status, r.json()["queued"].as_u64()), (202, Some(1)), "{}", r.text);
    let again = rcv.wait_count("/ops", 5, DELIVERY);
    let redelivery = again.iter().rev().find(|r| r.header("webhook-id") == delivered).expect("redelivered");
    assert_eq!(redelivery.header("x-crmhook-attempt"), "2");
    let shown = wait_for(DELIVERY, "the redelivery recorded", || {
        let e = server.admin("GET", &format!("/v1/events/{delivered}"), None).json();
        (e["deliveries"][0]["attempts"].as_array().map(Vec::len) == Some(2)).then_some(e)
    });
    assert_eq!(shown["deliveries"][0]["attempts"][1]["trigger"], "redelivery");
    assert_eq!(shown["deliveries"][0]["status"], "delivered");

    // A span that holds none of them (`until` is exclusive), and one that is backwards.
    let first_dead = server.event(&dead[0])["received_at"].as_str().expect("received_at").to_owned();
    let before = server.admin("POST", &format!("/v1/targets/{tid}/replay"), Some(&json!({"until": first_dead})));
    assert_eq!((before.status, before.json()["queued"].as_u64()), (202, Some(0)), "{}", before.text);
    let backwards = json!({"since": first_dead, "until": first_dead});
    let r = server.admin("POST", &format!("/v1/targets/{tid}/replay"), Some(&backwards));
    assert_eq!((r.status, r.json()["field"].as_str()), (422, Some("until")), "{}", r.text);
    // Replay the dead ones.
    let r = server.admin("POST", &format!("/v1/targets/{tid}/replay"), Some(&json!({"status": "dead"})));
    assert_eq!((r.status, r.json()["queued"].as_u64()), (202, Some(3)), "{}", r.text);
    wait_for(DELIVERY, "the dead deliveries replayed", || (list("delivered").len() == 4).then_some(()));
    assert_eq!(list("dead"), Vec::<String>::new());
    for id in &dead {
        let reqs = rcv.requests("/ops");
        let got: Vec<&str> =
            reqs.iter().filter(|r| r.header("webhook-id") == id).map(|r| r.header("x-crmhook-attempt")).collect();
        assert_eq!(got, ["1", "2"], "{id}");
    }
    // A second replay finds nothing dead; redelivering an unknown event is 404.
    assert_eq!(server.admin("POST", &format!("/v1/targets/{tid}/replay"), None).json()["queued"], 0);
    assert_eq!(server.admin("POST", "/v1/events/evt_00000000000000000000000000/redeliver", None).status, 404);
    // Every event was matched long ago; with nothing pending, nothing more is coming.
    server.wait_settled(&tid, DELIVERY);
    assert_eq!(rcv.count("/ops"), 8);
}

#[test]
fn a_target_far_behind_lists_every_pending_delivery_page_by_page() {
    let server = Server::start();
    let rcv = Receiver::start();
    // Nothing is answered while the test runs: 16 attempts in flight, the target's window full
    // (1,024 events), the rest of what it owes not read from the log yet.
    rcv.program("/behind", &[], delayed(200, Duration::from_secs(60)));
    let (tid, _) = server.wire(&rcv.url("/behind"), Some(json!({})), json!({"timeout_ms": 60_000}));
    let events: Vec<Value> = (0..1_100).map(|_| maia("crm_record_created", json!({}))).collect();
    let ack = server.post_ok(&Value::Array(events));
    let seqs: Vec<u64> =
        ack["events"].as_array().expect("events").iter().map(|e| e["seq"].as_u64().expect("seq")).collect();
    let page = |after: u64| {
        let r =
            server.admin("GET", &format!("/v1/targets/{tid}/deliveries?status=pending&limit=1000&after={after}"), None);
        assert_eq!(r.status, 200, "{}", r.text);
        let v = r.json();
        let listed: Vec<u64> =
            v["deliveries"].as_array().expect("deliveries").iter().map(|d| d["seq"].as_u64().expect("seq")).collect();
        (listed, v["next_after"].as_u64())
    };
    rcv.wait_count("/behind", 1, DELIVERY);
    let (first, next) = page(0);
    assert_eq!((first.len(), next), (1_000, Some(seqs[999])));
    let (rest, end) = page(seqs[999]);
    assert_eq!((rest.len(), end), (100, None));
    assert_eq!([first, rest].concat(), seqs, "every owed delivery, once, in log order");
    // The last event's own view says the same.
    let last = ack["events"][1_099]["id"].as_str().expect("id");
    assert_eq!(server.admin("GET", &format!("/v1/events/{last}"), None).json()["deliveries"][0]["status"], "pending");
}

/// Five events, each asked for again (`ask(server, target, event id, received_at)`) as soon as
/// the receiver has it: the attempt has not ended yet (the receiver answers 300 ms after it has
/// the request), then its record may still be on its way to the log. Either way it is queued
/// again (`queued: 1`), not skipped, and goes as attempt 2.
fn asked_again_the_moment_it_arrived(ask: impl Fn(&Server, &str, &str, &str) -> Resp) {
    let server = Server::start();
    let rcv = Receiver::start();
    rcv.program("/now", &[], delayed(200, Duration::from_millis(300)));
    let (tid, _) = server.wire(&rcv.url("/now"), Some(json!({})), json!({}));
    for n in 1..=5 {
        let event = id(&server.post_ok(&maia("crm_field_update", json!({}))));
        let received_at = server.event(&event)["received_at"].as_str().expect("received_at").to_owned();
        rcv.wait_count("/now", 2 * n - 1, DELIVERY);
        let r = ask(&server, &tid, &event, &received_at);
        assert_eq!((r.status, r.json()["queued"].as_u64()), (202, Some(1)), "event {n}: {}", r.text);
        let got = rcv.wait_count("/now", 2 * n, DELIVERY);
        let again = got.last().expect("asked again");
        assert_eq!((again.header("webhook-id"), again.header("x-crmhook-attempt")), (event.as_str(), "2"));
    }
}

#[test]
fn a_redelivery_the_moment_the_delivery_arrived_is_queued() {
    asked_again_the_moment_it_arrived(|server, _, id, _| {
        server.admin("POST", &format!("/v1/events/{id}/redeliver"), None)
    });
}

#[test]
fn a_replay_of_delivered_the_moment_a_delivery_arrived_takes_it() {
    // Each replay kept to its own event by `since`.
    asked_again_the_moment_it_arrived(|server, tid, _, since| {
        let body = json!({"status": "delivered", "since": since});
        server.admin("POST", &format!("/v1/targets/{tid}/replay"), Some(&body))
    });
}

#[test]
fn metrics_move_with_ingest_and_delivery() {
    let server = Server::start();
    let rcv = Receiver::start();
    rcv.program("/m", &[status(200)], status(500));
    let (tid, _) = server.wire(&rcv.url("/m"), Some(json!({})), json!({"retry_schedule_ms": []}));
    let scrape = || {
        let r = http("GET", &server.url("/metrics"), &[], None);
        assert_eq!(r.status, 200);
        assert!(r.content_type().starts_with("text/plain"), "{}", r.content_type());
        r.text
    };
    let before = scrape();
    assert_eq!(metric(&before, "crmhook_events_ingested_total{type=\"crm_field_update\"}"), 0.0);
    server.post_ok(&maia("crm_field_update", json!({})));
    server.post_ok(&maia("crm_field_update", json!({})));
    rcv.wait_count("/m", 2, DELIVERY);
    // The dead gauge reads the store, where a finished delivery's record lands a few ms after
    // its attempt is counted (it joins the target's next lazy write).
    let dead = format!("crmhook_dead_deliveries{{target=\"{tid}\"}}");
    let after = wait_for(DELIVERY, "both attempts counted and recorded", || {
        let t = scrape();
        (metric(&t, "crmhook_attempt_duration_seconds_count") >= 2.0 && metric(&t, &dead) >= 1.0).then_some(t)
    });
    assert_eq!(metric(&after, "crmhook_events_ingested_total{type=\"crm_field_update\"}"), 2.0);
    assert_eq!(metric(&after, &format!("crmhook_deliveries_total{{target=\"{tid}\",outcome=\"delivered\"}}")), 1.0);
    assert_eq!(metric(&after, &format!("crmhook_deliveries_total{{target=\"{tid}\",outcome=\"dead\"}}")), 1.0);
    assert_eq!(metric(&after, &dead), 1.0);
    assert_eq!(metric(&after, &format!("crmhook_pending_deliveries{{target=\"{tid}\"}}")), 0.0);
    assert_eq!(metric(&after, "crmhook_attempt_duration_seconds_bucket{le=\"+Inf\"}"), 2.0);
    assert!(metric(&after, "crmhook_log_bytes") > 0.0);
}

/// Reads an SSE stream on a thread; the lines seen so far are shared.
fn open_stream(server: &Server, last_event_id: Option<&str>) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    use std::io::BufRead;
    let mut req = ureq::get(&server.url("/v1/stream")).set("Authorization", &format!("Bearer {ADMIN}"));
    if let Some(id) = last_event_id {
        req = req.set("Last-Event-ID", id);
    }
    let resp = req.call().expect("stream opens");
    assert_eq!(resp.header("content-type"), Some("text/event-stream"));
    let lines: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(resp.into_reader()).lines().map_while(Result::ok) {
            sink.lock().expect("lock").push(line);
        }
    });
    lines
}

#[test]
fn the_stream_carries_new_events_and_attempts_and_resumes() {
    let server = Server::start();
    let rcv = Receiver::start();
    // The first attempt fails: the stream shows it retrying, as the API does.
    rcv.program("/s", &[status(500)], status(200));
    server.wire(&rcv.url("/s"), Some(json!({})), json!({}));
    assert_eq!(server.request("GET", "/v1/stream", Some(INGEST), None).status, 403);
    let bad = server.admin("GET", "/v1/stream?after=abc", None);
    assert_eq!((bad.status, bad.json()["field"].as_str()), (422, Some("after")), "{}", bad.text);
    let lines = open_stream(&server, None);
    let first = server.post_ok(&maia("crm_field_update", json!({})));
    server.post_ok(&maia("ai_pause", json!({})));
    let data = |l: &[String]| -> Vec<Value> {
        l.iter().filter_map(|l| l.strip_prefix("data: ")).filter_map(|d| serde_json::from_str(d).ok()).collect()
    };
    let seen = wait_for(DELIVERY, "two events and their attempts on the stream", || {
        let l = lines.lock().expect("lock").clone();
        let delivered = data(&l).iter().filter(|d| d["result"] == "delivered").count();
        (l.contains(&"id: 2".to_owned()) && delivered == 2).then_some(l)
    });
    assert!(seen.contains(&"id: 1".to_owned()) && seen.contains(&"event: event".to_owned()));
    let data = data(&seen);
    assert!(data
        .iter()
        .any(|d| d["id"] == first["events"][0]["id"] && d["payload"]["eventType"] == "crm_field_update"));
    let retrying: Vec<&Value> = data.iter().filter(|d| d["result"] == "retrying").collect();
    assert_eq!(retrying.len(), 1, "{data:?}");
    assert!(retrying[0]["next_attempt_at"].is_string() && retrying[0]["error"] == "answered HTTP 500", "{data:?}");
    // Resuming after seq 1 replays seq 2 only.
    let resumed = open_stream(&server, Some("1"));
    let again = wait_for(DELIVERY, "the resumed stream", || {
        let l = resumed.lock().expect("lock").clone();
        l.contains(&"id: 2".to_owned()).then_some(l)
    });
    assert!(!again.contains(&"id: 1".to_owned()));
}

#[test]
fn a_targets_last_success_survives_a_restart() {
    let mut server = Server::start();
    let rcv = Receiver::start();
    let (tid, _) = server.wire(&rcv.url("/last"), Some(json!({})), json!({}));
    let health = |server: &Server| {
        let r = server.admin("GET", &format!("/v1/targets/{tid}"), None);
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()["health"].clone()
    };
    assert_eq!(health(&server)["last_success_at"], Value::Null, "nothing delivered yet");
    let before = std::time::SystemTime::now();
    server.post_ok(&maia("crm_field_update", json!({})));
    rcv.wait_count("/last", 1, DELIVERY);
    wait_for(DELIVERY, "the delivery recorded", || {
        let r = server.admin("GET", &format!("/v1/targets/{tid}/deliveries?status=delivered"), None);
        (r.json()["deliveries"].as_array().map(Vec::len) == Some(1)).then_some(())
    });
    server.restart();
    let shown = health(&server);
    let at = shown["last_success_at"].as_str().unwrap_or_else(|| panic!("a last success after restart: {shown}"));
    let at_ms = crmhook_core::time::parse_rfc3339(at).unwrap_or_else(|| panic!("RFC 3339: {at}"));
    let before_ms = before.duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64;
    assert!(at_ms + 1000 >= before_ms, "{at} is the delivery's time");
    assert_eq!(shown["pending"], 0);
}

#[test]
fn the_audit_trail_pages_newest_first_with_order_newest() {
    let server = Server::start();
    let mut made = Vec::new();
    for i in 0..5 {
        let (tid, _) = server.wire("http://127.0.0.1:9/a", None, json!({"name": format!("t{i}")}));
        made.push(tid);
    }
    let page = |query: &str| {
        let r = server.admin("GET", &format!("/v1/audit?{query}"), None);
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()
    };
    let subjects = |page: &Value| -> Vec<String> {
        page["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| e["subject"].as_str().expect("subject").to_owned())
            .collect()
    };
    // Newest first, two at a time, each page going on from the last cursor of the one before.
    let mut seen = Vec::new();
    let mut next = page("order=newest&limit=2");
    loop {
        seen.extend(subjects(&next));
        match next["next_after"].as_str() {
            Some(after) => next = page(&format!("order=newest&limit=2&after={after}")),
            None => break,
        }
    }
    let newest_first: Vec<String> = made.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);
    // The default is unchanged: oldest first.
    assert_eq!(subjects(&page("limit=10")), made);
    assert_eq!(subjects(&page("order=oldest&limit=10")), made);
    let r = server.admin("GET", "/v1/audit?order=sideways", None);
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.content_type().starts_with("application/problem+json"));
    assert_eq!(r.json()["field"], "order");
}
