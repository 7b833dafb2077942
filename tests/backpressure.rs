//! `max_delivery_lag_ms`: ingest answers 503 with `Retry-After` while a live target delivers
//! events older than the setting, and 202 again once it caught up; a failing target does not
//! hold ingest back; off by default. And the other way round, a receiver's pace: a target's
//! `rate_limit_per_s`.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

/// A server whose ingest waits while a live target's deliveries lag by more than 100 ms.
fn lagging_server() -> Server {
    Server::start_with(&[
        ("CRMHOOK_ADMIN_TOKEN", ADMIN),
        ("CRMHOOK_INGEST_TOKEN", INGEST),
        ("CRMHOOK_ALLOW_PRIVATE_TARGETS", "true"),
        ("CRMHOOK_MAX_DELIVERY_LAG_MS", "100"),
    ])
}

fn post(server: &Server) -> Resp {
    server.request("POST", "/v1/events", Some(INGEST), Some(&maia("crm_record_created", json!({}))))
}

#[test]
fn ingest_waits_while_a_live_target_is_behind_and_resumes_once_it_caught_up() {
    let server = lagging_server();
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
    let server = lagging_server();
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

#[test]
fn a_rate_limited_target_behind_by_its_limit_does_not_hold_ingest_back() {
    let server = lagging_server();
    let rcv = Receiver::start();
    server.wire(&rcv.url("/paced"), Some(json!({})), json!({"rate_limit_per_s": 2}));
    for _ in 0..8 {
        assert_eq!(post(&server).status, 202);
    }
    // The fifth goes in the third second: it was about 2 s old when delivered.
    rcv.wait_count("/paced", 5, Duration::from_secs(20));
    let r = post(&server);
    assert_eq!(r.status, 202, "{}", r.text);
}

#[test]
fn a_rate_limited_target_gets_no_more_than_its_rate_in_any_second_and_keeps_it_over_a_restart() {
    let mut server = Server::start();
    let rcv = Receiver::start();
    let (limited, _) = server.wire(&rcv.url("/limited"), Some(json!({})), json!({"rate_limit_per_s": 5}));
    server.wire(&rcv.url("/free"), Some(json!({})), json!({}));
    let view = server.admin("GET", &format!("/v1/targets/{limited}"), None).json();
    assert_eq!(view["rate_limit_per_s"], 5, "{view}");
    let refused = server.admin("PATCH", &format!("/v1/targets/{limited}"), Some(&json!({"rate_limit_per_s": 0})));
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert!(refused.text.contains("rate_limit_per_s"), "{}", refused.text);

    let events: Vec<serde_json::Value> = (0..15).map(|_| maia("crm_record_created", json!({}))).collect();
    server.post_ok(&json!(events));
    assert_eq!(rcv.wait_count("/free", 15, Duration::from_secs(20)).len(), 15, "the target beside it is not held");
    let got = rcv.wait_count("/limited", 15, Duration::from_secs(20));
    // Started no more than 5 in any second: any 6 in a row arrive most of a second apart (the
    // margin is for the way from crmhook to the receiver), and the 15 take 2 s at least.
    let at: Vec<_> = got.iter().map(|r| r.at).collect();
    for six in at.windows(6) {
        let span = six[5].duration_since(six[0]);
        assert!(span >= Duration::from_millis(900), "6 deliveries within {span:?}");
    }
    let whole = at[14].duration_since(at[0]);
    assert!(whole >= Duration::from_millis(1_900), "15 deliveries within {whole:?}");

    // Killed right after its last five, and started again at once: the new server cannot see
    // what the old one started, so it waits a second before its first. (The old one's last
    // deliveries may come again: their records ride with a later write.)
    server.kill9();
    server.respawn();
    let tags: Vec<String> = (0..5)
        .map(|_| {
            let ev = maia("crm_record_created", json!({}));
            server.post_ok(&json!([ev.clone()]));
            ev["recordId"].as_str().expect("a MAIA sample with a recordId").to_owned()
        })
        .collect();
    let mut got = Vec::new();
    for tag in &tags {
        got = rcv.wait_tag("/limited", tag, Duration::from_secs(20));
    }
    let at: Vec<_> = got.iter().map(|r| r.at).collect();
    for six in at.windows(6) {
        let span = six[5].duration_since(six[0]);
        assert!(span >= Duration::from_millis(900), "6 deliveries within {span:?}, across a kill -9");
    }

    // Kept in the store: the same after a restart. `null` lifts it.
    server.restart();
    let view = server.admin("GET", &format!("/v1/targets/{limited}"), None).json();
    assert_eq!(view["rate_limit_per_s"], 5, "{view}");
    let lifted = server.admin("PATCH", &format!("/v1/targets/{limited}"), Some(&json!({"rate_limit_per_s": null})));
    assert_eq!(lifted.status, 200, "{}", lifted.text);
    assert_eq!(lifted.json()["rate_limit_per_s"], serde_json::Value::Null, "{}", lifted.text);
}
