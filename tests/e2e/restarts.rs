//! End to end across restarts: what a stop, a `kill -9` or a retention pass keeps, resumes
//! and numbers.

use super::*;

#[test]
fn a_restart_keeps_targets_subscriptions_events_and_tokens() {
    // No tokens configured: they are generated on the first start, kept in the 0600 tokens file,
    // and printed once (stdout here is a pipe, not the journal).
    let mut server = Server::start_with(&[("CRMHOOK_ALLOW_PRIVATE_TARGETS", "true")]);
    let printed = server.stdout.lock().expect("lock").clone();
    let file = server.data_dir().join("crmhook-tokens");
    let kept = std::fs::read_to_string(&file).expect("tokens file");
    let token = |name: &str| kept.lines().find_map(|l| l.strip_prefix(&format!("{name}="))).map(str::to_owned);
    let admin = token("admin_token").expect("admin token in the tokens file");
    let ingest = token("ingest_token").expect("ingest token in the tokens file");
    for (name, token) in [("admin_token", &admin), ("ingest_token", &ingest)] {
        let line = format!("generated {name}: {token}  (kept in the data dir; shown only this once)");
        assert!(printed.contains(&line), "{printed:?}");
    }
    assert_ne!(admin, ingest);

    let rcv = Receiver::start();
    let r =
        server.request("POST", "/v1/targets", Some(&admin), Some(&json!({"name": "keep", "url": rcv.url("/kept")})));
    assert_eq!(r.status, 201, "{}", r.text);
    let (tid, secret) =
        (r.json()["id"].as_str().expect("id").to_owned(), r.json()["secret"].as_str().expect("s").to_owned());
    let r = server.request(
        "POST",
        "/v1/subscriptions",
        Some(&admin),
        Some(&json!({"target_id": tid, "event_types": ["crm_record_created"]})),
    );
    assert_eq!(r.status, 201);
    let first = maia("crm_record_created", json!({}));
    let ack = server.request("POST", "/v1/events", Some(&ingest), Some(&first)).json();
    rcv.wait_count("/kept", 1, DELIVERY);

    server.restart();
    let lines = server.stdout.lock().expect("lock").clone();
    assert_eq!(lines.iter().filter(|l| l.starts_with("generated ")).count(), 2, "tokens are printed only once");
    assert_eq!(lines.iter().filter(|l| l.contains(&admin)).count(), 1, "{lines:?}");
    // ... and can be found again: every start names the file that holds them (0600).
    let named = format!("the generated tokens are in {}", file.display());
    assert_eq!(lines.iter().filter(|l| l.starts_with(&named)).count(), 2, "{lines:?}");
    // The later start says the file holds the first start's tokens (never read back).
    assert_eq!(lines.iter().filter(|l| l.contains("a key rotated since is not in it")).count(), 1, "{lines:?}");
    let kept = std::fs::read_to_string(&file).expect("tokens file");
    assert!(kept.contains(&format!("admin_token={admin}\n")) && kept.contains(&format!("ingest_token={ingest}\n")));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).expect("metadata").permissions().mode() & 0o777, 0o600);
    assert_eq!(server.request("GET", "/v1/targets", Some(&admin), None).json()["targets"][0]["id"], tid.as_str());
    let subs = server.request("GET", "/v1/subscriptions", Some(&admin), None).json();
    assert_eq!(subs["subscriptions"][0]["event_types"], json!(["crm_record_created"]));
    let events = server.request("GET", "/v1/events", Some(&admin), None).json();
    assert_eq!(events["events"][0]["id"], ack["events"][0]["id"]);
    // The log goes on numbering, the old delivery is not repeated, a new one is signed with the
    // same secret.
    let second = maia("crm_record_created", json!({}));
    let ack2 = server.request("POST", "/v1/events", Some(&ingest), Some(&second)).json();
    assert_eq!(ack2["events"][0]["seq"], 2);
    // `second` is the marker: once it has arrived and nothing is pending, the first event would
    // have been delivered again already, were it to be.
    let got = rcv.wait_tag("/kept", second["recordId"].as_str().expect("tag"), DELIVERY);
    server.wait_settled_as(&admin, &tid, DELIVERY);
    assert_eq!(rcv.count("/kept"), 2, "the old delivery was repeated");
    assert_eq!(got[1].tag(), second["recordId"].as_str().expect("tag"));
    assert!(maia_signature_valid(&secret, &got[1]) && standard_signature_valid(&secret, &got[1]));
}

#[test]
fn retries_pending_at_a_restart_resume() {
    let mut server = Server::start();
    let rcv = Receiver::start();
    rcv.program("/resume", &[status(500)], status(200));
    server.wire(&rcv.url("/resume"), Some(json!({})), json!({"retry_schedule_ms": [1500]}));
    let ack = server.post_ok(&maia("crm_field_update", json!({})));
    rcv.wait_count("/resume", 1, DELIVERY);
    server.restart();
    let reqs = rcv.wait_count("/resume", 2, DELIVERY);
    assert_eq!(reqs[1].header("x-crmhook-attempt"), "2");
    assert_eq!(reqs[1].header("webhook-id"), ack["events"][0]["id"].as_str().expect("id"));
}

#[test]
fn sigterm_lets_an_attempt_in_flight_finish() {
    let mut server = Server::start();
    let rcv = Receiver::start();
    rcv.program("/inflight", &[delayed(200, Duration::from_millis(1500))], status(200));
    let (tid, _) = server.wire(&rcv.url("/inflight"), Some(json!({})), json!({"timeout_ms": 5000}));
    let ack = server.post_ok(&maia("crm_field_update", json!({})));
    rcv.wait_count("/inflight", 1, DELIVERY);
    // The attempt is in flight now: stop gracefully.
    let status = server.stop();
    assert!(status.success(), "graceful stop exits 0: {status:?}");
    server.respawn();
    let id = ack["events"][0]["id"].as_str().expect("id");
    let shown = server.admin("GET", &format!("/v1/events/{id}"), None).json();
    assert_eq!(shown["deliveries"][0]["status"], "delivered", "the in-flight attempt was recorded: {shown}");
    // A marker logged after the restart: once it has arrived and nothing is pending, the target
    // has matched again from its cursor, and a repeat would have arrived.
    let marker = maia("crm_field_update", json!({}));
    server.post_ok(&marker);
    rcv.wait_tag("/inflight", marker["recordId"].as_str().expect("tag"), DELIVERY);
    server.wait_settled(&tid, DELIVERY);
    assert_eq!(rcv.count("/inflight"), 2, "delivered again after the restart");
}

#[test]
fn an_idempotency_key_is_acknowledged_again_across_a_restart() {
    let mut server = Server::start();
    let rcv = Receiver::start();
    let (tid, _) = server.wire(&rcv.url("/idem"), Some(json!({})), json!({}));
    let body = json!([maia("crm_field_update", json!({})), maia("ai_pause", json!({}))]);
    let first = server.post_keyed(&body, "order-42");
    assert_eq!((first["accepted"].as_u64(), first["duplicates"].as_u64()), (Some(2), Some(0)));
    server.restart();
    let again = server.post_keyed(&body, "order-42");
    assert_eq!((again["accepted"].as_u64(), again["duplicates"].as_u64()), (Some(0), Some(2)));
    assert_eq!(again["events"], first["events"], "the same ids and seqs");
    // A marker logged after the second post: once it has arrived and nothing is pending, every
    // delivery the two posts caused has arrived.
    let marker = maia("crm_field_update", json!({}));
    server.post_ok(&marker);
    rcv.wait_tag("/idem", marker["recordId"].as_str().expect("tag"), DELIVERY);
    server.wait_settled(&tid, DELIVERY);
    let counts = rcv.tag_counts("/idem");
    assert_eq!((counts.len(), rcv.count("/idem")), (3, 3), "delivered twice: {counts:?}");
}

/// A server whose retention removes finished events at once, every second.
fn retention_server() -> Server {
    Server::start_with(&[
        ("CRMHOOK_ADMIN_TOKEN", ADMIN),
        ("CRMHOOK_INGEST_TOKEN", INGEST),
        ("CRMHOOK_ALLOW_PRIVATE_TARGETS", "true"),
        ("CRMHOOK_RETENTION_DAYS", "0"),
        ("CRMHOOK_COMPACTION_INTERVAL_S", "1"),
    ])
}

#[test]
fn retention_compacts_finished_events_and_keeps_numbering() {
    let server = retention_server();
    let rcv = Receiver::start();
    rcv.program("/ret", &[], status(503));
    server.wire(
        &rcv.url("/ret"),
        Some(json!({"event_types": ["ai_pause"]})),
        json!({"retry_schedule_ms": [300, 300, 300, 300, 300, 300, 300, 300, 300, 300]}),
    );
    server.post_ok(&json!([maia("crm_field_update", json!({})), maia("ai_pause", json!({}))]));
    // The field update is owed to nobody: compacted. The pause is still owed: kept.
    let listed = wait_for(Duration::from_secs(10), "compaction of the finished event", || {
        let events = server.admin("GET", "/v1/events", None).json()["events"].clone();
        (events.as_array().map(Vec::len) == Some(1)).then_some(events)
    });
    assert_eq!(listed[0]["type"], "ai_pause");
    rcv.set_default("/ret", status(200));
    rcv.wait_count("/ret", 1, DELIVERY);
    wait_for(Duration::from_secs(10), "compaction of the delivered event", || {
        (server.admin("GET", "/v1/events", None).json()["events"].as_array().map(Vec::len) == Some(0)).then_some(())
    });
    let next = server.post_ok(&maia("ai_pause", json!({})));
    assert_eq!(next["events"][0]["seq"], 3, "seqs are never reused");
}

#[test]
fn a_disabled_target_keeps_only_the_events_it_is_owed_and_dead_counts_follow_retention() {
    // An audit of 2026-12-07: compaction stopped at the lowest cursor of any target, so one
    // disabled target kept every later event, of every target, matched or not; and a dead
    // delivery stayed counted after retention removed its event.
    let server = retention_server();
    let rcv = Receiver::start();
    rcv.program("/dead", &[], status(500));
    let (paused, _) = server.wire(&rcv.url("/paused"), Some(json!({"event_types": ["crm_field_update"]})), json!({}));
    let r = server.admin("PATCH", &format!("/v1/targets/{paused}"), Some(&json!({"enabled": false})));
    assert_eq!(r.status, 200, "{}", r.text);
    let (dead, _) =
        server.wire(&rcv.url("/dead"), Some(json!({"event_types": ["ai_pause"]})), json!({"retry_schedule_ms": []}));
    let owed = server.post_ok(&maia("crm_field_update", json!({})))["events"][0]["id"].clone();
    server.post_ok(&json!([maia("ai_pause", json!({})), maia("ai_pause", json!({}))]));
    rcv.wait_count("/dead", 2, DELIVERY);
    // The pauses, which the paused target is not owed, go; the field update it is owed stays.
    let listed = wait_for(Duration::from_secs(10), "compaction of the pauses", || {
        let events = server.admin("GET", "/v1/events", None).json()["events"].clone();
        (events.as_array().map(Vec::len) == Some(1)).then_some(events)
    });
    assert_eq!(listed[0]["id"], owed);
    // Their dead deliveries went with them: not counted any more.
    let health = server.admin("GET", &format!("/v1/targets/{dead}"), None).json()["health"].clone();
    assert_eq!(health["dead"], 0, "{health}");
    let metrics = server.request("GET", "/metrics", None, None).text;
    assert!(metrics.contains(&format!("crmhook_dead_deliveries{{target=\"{dead}\"}} 0")), "{metrics}");
}

/// Posts `n` MAIA events one by one; answers their recordIds.
pub(crate) fn post_tagged(server: &Server, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let event = maia("crm_field_update", json!({}));
            server.post_ok(&event);
            event["recordId"].as_str().expect("tag").to_owned()
        })
        .collect()
}

/// How many of a target's deliveries `GET /v1/targets/{id}/deliveries?status=` lists (up to
/// 1,000).
pub(crate) fn listed(server: &Server, tid: &str, status: &str) -> usize {
    let r = server.admin("GET", &format!("/v1/targets/{tid}/deliveries?status={status}&limit=1000"), None);
    r.json()["deliveries"].as_array().map_or(0, Vec::len)
}

#[test]
fn first_attempts_in_memory_count_as_pending_and_are_not_repeated_after_a_restart() {
    let mut server = Server::start();
    let rcv = Receiver::start();
    // Every answer takes 600 ms: 16 attempts are in flight, the others wait in memory (a first
    // attempt is not written down before it is made).
    rcv.program("/slow", &[], delayed(200, Duration::from_millis(600)));
    let (tid, _) = server.wire(&rcv.url("/slow"), Some(json!({})), json!({"timeout_ms": 5000}));
    let tags = post_tagged(&server, 40);
    let pending = || {
        let health = server.admin("GET", &format!("/v1/targets/{tid}"), None).json()["health"]["pending"].clone();
        (listed(&server, &tid, "pending"), health.as_u64().unwrap_or(0))
    };
    wait_for(DELIVERY, "all 40 pending", || (pending() == (40, 40)).then_some(()));
    let metrics = server.request("GET", "/metrics", None, None).text;
    assert!(metrics.contains(&format!("crmhook_pending_deliveries{{target=\"{tid}\"}} 40")), "{metrics}");

    rcv.wait_count("/slow", 40, Duration::from_secs(20));
    wait_for(DELIVERY, "nothing pending", || (pending() == (0, 0)).then_some(()));
    assert_eq!(listed(&server, &tid, "delivered"), 40);

    // After a restart the target matches again from its cursor: what was delivered is skipped.
    server.restart();
    rcv.set_default("/slow", status(200));
    // `last` is the marker: once it has arrived and nothing is pending, the target has matched
    // everything before it again, and a repeat would have arrived.
    let last = maia("crm_field_update", json!({}));
    server.post_ok(&last);
    rcv.wait_tag("/slow", last["recordId"].as_str().expect("tag"), DELIVERY);
    server.wait_settled(&tid, DELIVERY);
    assert_eq!(rcv.count("/slow"), 41);
    let counts = rcv.tag_counts("/slow");
    assert!(tags.iter().all(|t| counts.get(t) == Some(&1)), "{counts:?}");
}

#[test]
fn after_a_crash_deliveries_recorded_past_the_cursor_are_skipped_and_the_one_in_flight_is_made_again() {
    let mut server = Server::start();
    let rcv = Receiver::start();
    // The first request hangs: the cursor stays below it while the 39 others are delivered
    // and recorded past it.
    rcv.program("/crash", &[delayed(200, Duration::from_secs(30))], status(200));
    let (tid, _) = server.wire(
        &rcv.url("/crash"),
        Some(json!({"event_types": ["crm_field_update"]})),
        json!({"timeout_ms": 60_000}),
    );
    let tags = post_tagged(&server, 40);
    let hanging = rcv.wait_count("/crash", 40, DELIVERY)[0].tag();
    wait_for(DELIVERY, "39 delivered, one hanging", || (listed(&server, &tid, "delivered") == 39).then_some(()));
    // An acknowledged event is flushed, and with it every write before it.
    server.post_ok(&maia("crm_record_created", json!({})));
    server.kill9();
    server.respawn();

    // The hanging delivery is made again; the 39 recorded ones are not.
    // `last` is the marker, as above.
    let last = maia("crm_field_update", json!({}));
    server.post_ok(&last);
    rcv.wait_tag("/crash", last["recordId"].as_str().expect("tag"), DELIVERY);
    server.wait_settled(&tid, DELIVERY);
    assert_eq!(rcv.count("/crash"), 42);
    let counts = rcv.tag_counts("/crash");
    for tag in tags.iter().chain([&last["recordId"].as_str().expect("tag").to_owned()]) {
        assert_eq!(counts.get(tag), Some(&if *tag == hanging { 2 } else { 1 }), "{tag}: {counts:?}");
    }
}
