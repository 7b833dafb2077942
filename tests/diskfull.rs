//! Disk trouble: when the disk refuses writes, ingest answers 503, stores nothing half-way, and
//! the server keeps running; after a restart with room again, every acknowledged event is there.
//! The full disk is a file-size limit (`ulimit -f`, with SIGXFSZ ignored so writes fail with
//! EFBIG as they would with ENOSPC).

mod support;

use std::collections::HashMap;

use serde_json::json;
use support::*;

#[test]
fn a_full_disk_answers_503_and_stores_nothing_half_way() {
    let env = [("CRMHOOK_ADMIN_TOKEN", ADMIN), ("CRMHOOK_INGEST_TOKEN", INGEST)];
    let mut server = Server::start_wrapped(&env, "ulimit -f 6000; trap '' XFSZ");
    let bearer = format!("Bearer {INGEST}");
    let headers = [("Content-Type", "application/json"), ("Authorization", bearer.as_str())];
    let padding = "x".repeat(2000);
    let mut acked = Vec::new();
    let mut refused = None;
    for i in 0..20_000 {
        let events: Vec<_> = (0..10)
            .map(|k| json!({"eventType": "crm_field_update", "recordId": format!("r{i}_{k}"), "kanbanId": "k", "newValue": padding}))
            .collect();
        let r = http("POST", &server.url("/v1/events"), &headers, Some(json!(events).to_string().as_bytes()));
        match r.status {
            202 => acked.push(i),
            503 => {
                refused = Some(r);
                break;
            }
            other => panic!("unexpected {other}: {}", r.text),
        }
    }
    let refused = refused.expect("the disk never filled up");
    assert!(refused.content_type().starts_with("application/problem+json"));
    assert_eq!(refused.headers.get("retry-after").map(String::as_str), Some("5"));
    let detail = refused.json()["detail"].as_str().map(str::to_owned).unwrap_or_default();
    assert!(detail.contains("nothing was stored") && !detail.contains("os error"), "{}", refused.text);
    assert_eq!(server.request("GET", "/readyz", None, None).status, 503, "readyz reports the failing store");
    assert_eq!(server.request("GET", "/healthz", None, None).status, 200, "the process is alive");

    // The operator frees space and restarts: the stop (SIGTERM) ends although the log writer's
    // last flush may never end.
    assert!(server.stop().success(), "a graceful stop");
    server.wrapper.clear();
    server.respawn();
    assert_eq!(server.request("GET", "/readyz", None, None).status, 200);
    let mut per_request: HashMap<usize, usize> = HashMap::new();
    let mut after = 0;
    loop {
        let page = server.admin("GET", &format!("/v1/events?after={after}&limit=1000"), None).json();
        for e in page["events"].as_array().expect("events") {
            let tag = e["payload"]["recordId"].as_str().expect("tag");
            let i: usize = tag[1..tag.find('_').expect("_")].parse().expect("number");
            *per_request.entry(i).or_insert(0) += 1;
        }
        match page["next_after"].as_u64() {
            Some(n) => after = n,
            None => break,
        }
    }
    eprintln!(
        "disk full after {} acknowledged requests; {} requests in the log after the restart",
        acked.len(),
        per_request.len()
    );
    assert!(acked.len() > 10, "the limit left too little room to mean anything");
    for i in &acked {
        assert_eq!(per_request.get(i), Some(&10), "acknowledged request {i} is not whole in the log");
    }
    assert!(per_request.values().all(|n| *n == 10), "a request is in the log half-way: {per_request:?}");
    let r = http(
        "POST",
        &server.url("/v1/events"),
        &headers,
        Some(json!({"eventType": "ai_pause", "sessionId": "s"}).to_string().as_bytes()),
    );
    assert_eq!(r.status, 202, "ingest works again: {}", r.text);
}
