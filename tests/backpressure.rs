//! `max_delivery_lag_ms`: ingest answers 503 with `Retry-After` while a live target delivers
//! events older than the setting, and 202 again once it caught up; a failing target does not
//! hold ingest back; off by default.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

fn post(server: &Server) -> Resp {
    server.request("POST", "/v1/events", Some(INGEST), Some(&maia("crm_record_created", json!({}))))
}

#[test]
fn ingest_waits_while_a_live_target_is_behind_and_resumes_once_it_caught_up() {
    let server = Server::start_with(&[
        ("CRMHOOK_ADMIN_TOKEN", ADMIN),
        ("CRMHOOK_INGEST_TOKEN", INGEST),
        ("CRMHOOK_ALLOW_PRIVATE_TARGETS", "true"),
        ("CRMHOOK_MAX_DELIVERY_LAG_MS", "100"),
    ]);
    let rcv = Receiver::start();
    // Each delivery takes 400 ms: every delivered event is at least 400 ms old.
    rcv.program("/slow", &[], delayed(200, Duration::from_millis(400)));
    server.wire(&rcv.url("/slow"), Some(json!({})), json!({"timeout_ms": 2000}));
    assert_eq!(post(&server).status, 202, "nothing is behind yet");
    let refused = wait_for(Duration::from_secs(15), "ingest refused while deliveries lag", || {
        let r = post(&server);
        assert!(r.status == 202 || r.status == 503, "{} {}", r.status, r.text);
        (r.status == 503).then_some(r)
    });
    assert_eq!(refused.headers.get("retry-after").map(String::as_str), Some("1"), "{:?}", refused.headers);
    assert!(refused.text.contains("max_delivery_lag_ms"), "{}", refused.text);
    // The receiver answers at once from now on: the backlog drains and ingest resumes.
    rcv.set_default("/slow", status(200));
    wait_for(Duration::from_secs(30), "ingest accepted again", || (post(&server).status == 202).then_some(()));
    let metrics = http("GET", &server.url("/metrics"), &[], None).text;
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("crmhook_ingest_backpressured_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the counter");
    assert!(refused >= 1, "{metrics}");
}

#[test]
fn a_failing_target_does_not_hold_ingest_back() {
    let server = Server::start_with(&[
        ("CRMHOOK_ADMIN_TOKEN", ADMIN),
        ("CRMHOOK_INGEST_TOKEN", INGEST),
        ("CRMHOOK_ALLOW_PRIVATE_TARGETS", "true"),
        ("CRMHOOK_MAX_DELIVERY_LAG_MS", "100"),
    ]);
    let rcv = Receiver::start();
    rcv.program("/down", &[], status(500));
    server.wire(&rcv.url("/down"), Some(json!({})), json!({}));
    for _ in 0..20 {
        assert_eq!(post(&server).status, 202);
    }
    // Its attempts failed (the retries keep coming): none of them counts as a lag.
    rcv.wait_count("/down", 20, Duration::from_secs(10));
    assert_eq!(post(&server).status, 202);
}
