//! The console's charts: `GET /v1/targets/{id}/stats` (a target's backlog, last success and
//! failure, its attempts by minute and by quarter hour) and `GET /v1/stats/ingest` (events by
//! type), read by an operator key, refused to an ingest key, and kept across a restart of the
//! real binary on the same data dir.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const DELIVERY: Duration = Duration::from_secs(10);

fn ok(r: Resp) -> Value {
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

/// The sum of `field` over a list of buckets.
fn sum(buckets: &Value, field: &str) -> u64 {
    buckets.as_array().expect("buckets").iter().map(|b| b[field].as_u64().expect("a count")).sum()
}

/// A type's count summed over a list of ingest buckets.
fn type_sum(buckets: &Value, event_type: &str) -> u64 {
    buckets.as_array().expect("buckets").iter().map(|b| b["types"][event_type].as_u64().unwrap_or(0)).sum()
}

/// The three counts of a target's stats over the hour and over the day.
fn counts(stats: &Value) -> [u64; 6] {
    let (m, d) = (&stats["minutes"], &stats["days"]);
    [sum(m, "succeeded"), sum(m, "failed"), sum(m, "dead"), sum(d, "succeeded"), sum(d, "failed"), sum(d, "dead")]
}

fn ms(rfc3339: &Value) -> i128 {
    let text = rfc3339.as_str().expect("a time");
    i128::from(crmhook_core::time::parse_rfc3339(text).unwrap_or_else(|| panic!("not RFC 3339: {text}")))
}

/// 60 minutes and 96 quarter hours, oldest first, each on its boundary, the last holding now.
fn check_buckets(stats: &Value, before_ms: i128) {
    for (field, len, period) in [("minutes", 60, 60_000), ("days", 96, 900_000)] {
        let buckets = stats[field].as_array().unwrap_or_else(|| panic!("{field}: {stats}"));
        assert_eq!(buckets.len(), len, "{field}");
        let starts: Vec<i128> = buckets.iter().map(|b| ms(&b["at"])).collect();
        assert!(starts.iter().all(|s| s % period == 0), "{field} on their boundaries: {starts:?}");
        assert!(starts.windows(2).all(|w| w[1] - w[0] == period), "{field} consecutive, oldest first");
        let last = *starts.last().expect("last");
        assert!(last <= now_ms() && now_ms() - last < period + 5_000, "{field}: the last bucket holds now");
        // Whatever was counted, was counted in a bucket of this test's time.
        for b in buckets.iter().filter(|b| b.as_object().expect("bucket").values().any(|v| v.as_u64() > Some(0))) {
            assert!(ms(&b["at"]) + period > before_ms, "{field}: {b} is older than the test");
        }
    }
}

fn now_ms() -> i128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i128
}

#[test]
fn a_targets_stats_count_its_attempts_show_its_backlog_and_last_failure_and_survive_a_restart() {
    let before = now_ms();
    let mut server = Server::start();
    let rcv = Receiver::start();
    // A target whose retries are far off, so failed deliveries stay owed; and one that gives up
    // after one retry.
    let (tid, _) = server.wire(
        &rcv.url("/flaky"),
        Some(json!({"event_types": ["crm_record_created"]})),
        json!({"retry_schedule_ms": [600_000]}),
    );
    let (dead_tid, _) =
        server.wire(&rcv.url("/down"), Some(json!({"event_types": ["ai_pause"]})), json!({"retry_schedule_ms": [50]}));
    rcv.set_default("/down", status(500));

    let fresh = ok(server.admin("GET", &format!("/v1/targets/{tid}/stats"), None));
    assert_eq!(fresh["target_id"], tid.as_str());
    assert_eq!((fresh["backlog"].as_u64(), counts(&fresh)), (Some(0), [0; 6]));
    for nothing_yet in ["backlog_oldest_at", "backlog_age_ms", "last_success_at", "last_failure"] {
        assert_eq!(fresh[nothing_yet], Value::Null, "{nothing_yet}: {fresh}");
    }
    check_buckets(&fresh, before);

    // Three delivered.
    for _ in 0..3 {
        server.post_ok(&maia("crm_record_created", json!({})));
    }
    rcv.wait_distinct_delivered("/flaky", 3, DELIVERY);
    // Then the receiver fails: two deliveries fail once each and wait for their retry.
    rcv.set_default("/flaky", status(500));
    let failing = server.post_ok(&maia("crm_record_created", json!({})));
    server.post_ok(&maia("crm_record_created", json!({})));
    rcv.wait_count("/flaky", 5, DELIVERY);
    // And one delivery to the other target fails, is retried, and is dead.
    server.post_ok(&maia("ai_pause", json!({})));
    rcv.wait_count("/down", 2, DELIVERY);

    let stats = wait_for(DELIVERY, "the failed attempts counted", || {
        let s = ok(server.admin("GET", &format!("/v1/targets/{tid}/stats"), None));
        (counts(&s) == [3, 2, 0, 3, 2, 0]).then_some(s)
    });
    check_buckets(&stats, before);
    assert_eq!(stats["backlog"], 2, "{stats}");
    let first_failing = server.event(failing["events"][0]["id"].as_str().expect("id"));
    assert_eq!(stats["backlog_oldest_at"], first_failing["received_at"], "{stats}");
    assert!(stats["backlog_age_ms"].as_u64().is_some(), "{stats}");
    assert!(stats["last_success_at"].is_string(), "{stats}");
    let failure = &stats["last_failure"];
    assert_eq!((failure["status_code"].as_u64(), failure["error"].as_str()), (Some(500), Some("answered HTTP 500")));
    assert!(ms(&failure["at"]) >= ms(&stats["last_success_at"]) - 1_000, "{stats}");
    // The target's own listing agrees on what is owed.
    let target = ok(server.admin("GET", &format!("/v1/targets/{tid}"), None));
    assert_eq!(target["health"]["pending"], stats["backlog"]);

    // A finished delivery is counted when its attempt ends and leaves the backlog when its
    // record is written, which may wait for the next ingest group (up to 50 ms): wait for both.
    let dead = wait_for(DELIVERY, "the dead delivery counted and recorded", || {
        let s = ok(server.admin("GET", &format!("/v1/targets/{dead_tid}/stats"), None));
        (counts(&s) == [0, 1, 1, 0, 1, 1] && s["backlog"] == 0).then_some(s)
    });
    assert_eq!((dead["backlog"].as_u64(), dead["backlog_oldest_at"].clone()), (Some(0), Value::Null));
    assert_eq!(dead["last_failure"]["status_code"], 500);
    assert_eq!(dead["last_success_at"], Value::Null);

    let ingest = ok(server.admin("GET", "/v1/stats/ingest", None));
    check_buckets(&ingest, before);
    assert_eq!((sum(&ingest["minutes"], "total"), sum(&ingest["days"], "total")), (6, 6), "{ingest}");
    assert_eq!(type_sum(&ingest["minutes"], "crm_record_created"), 5);
    assert_eq!(type_sum(&ingest["days"], "ai_pause"), 1);

    // The CLI prints the same figures.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_crmhook"))
        .args(["--url", &server.base, "--token", ADMIN, "targets", "stats", &tid])
        .env_remove("CRMHOOK_ADMIN_TOKEN")
        .output()
        .expect("crmhook runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.starts_with("backlog: 2 (oldest received "), "{text}");
    assert!(text.contains("answered HTTP 500") && text.contains("last hour: 3 succeeded, 2 failed, 0 dead"), "{text}");
    assert!(text.contains("last 24 h: 3 succeeded, 2 failed, 0 dead"), "{text}");

    // A graceful restart of the binary on the same data dir keeps every figure.
    let day_ingest = ingest["days"].clone();
    server.restart();
    let again = ok(server.admin("GET", &format!("/v1/targets/{tid}/stats"), None));
    assert_eq!(counts(&again), [3, 2, 0, 3, 2, 0], "{again}");
    assert_eq!(again["last_failure"], stats["last_failure"]);
    assert_eq!(again["last_success_at"], stats["last_success_at"]);
    assert_eq!(
        (again["backlog"].clone(), again["backlog_oldest_at"].clone()),
        (json!(2), stats["backlog_oldest_at"].clone())
    );
    let dead_again = ok(server.admin("GET", &format!("/v1/targets/{dead_tid}/stats"), None));
    assert_eq!(counts(&dead_again), [0, 1, 1, 0, 1, 1]);
    let ingest_again = ok(server.admin("GET", "/v1/stats/ingest", None));
    assert_eq!(ingest_again["days"], day_ingest, "the quarter hours are the same");
    assert_eq!(type_sum(&ingest_again["minutes"], "crm_record_created"), 5);

    // Counting goes on from there.
    server.post_ok(&maia("ai_pause", json!({})));
    let ingest = wait_for(DELIVERY, "the new event counted", || {
        let s = ok(server.admin("GET", "/v1/stats/ingest", None));
        (sum(&s["days"], "total") == 7).then_some(s)
    });
    assert_eq!(type_sum(&ingest["minutes"], "ai_pause"), 2);
}

#[test]
fn stats_are_for_operators_and_admins_and_an_unknown_target_is_404() {
    let server = Server::start();
    let rcv = Receiver::start();
    let (tid, _) = server.wire(&rcv.url("/r"), Some(json!({})), json!({}));
    let operator = server.admin("POST", "/v1/keys", Some(&json!({"name": "wall screen", "role": "operator"})));
    assert_eq!(operator.status, 201, "{}", operator.text);
    let operator = operator.json()["key"].as_str().expect("key").to_owned();
    // Two events accepted; a duplicate is not counted.
    server.post_ok(&maia("crm_field_update", json!({})));
    let event = maia("crm_field_update", json!({}));
    let first = server.post_keyed(&event, "once");
    let dup = server.post_keyed(&event, "once");
    assert_eq!((first["accepted"].as_u64(), dup["duplicates"].as_u64()), (Some(1), Some(1)), "{dup}");
    rcv.wait_count("/r", 2, DELIVERY);

    for path in [format!("/v1/targets/{tid}/stats"), "/v1/stats/ingest".to_owned()] {
        let as_operator = server.request("GET", &path, Some(&operator), None);
        assert_eq!(as_operator.status, 200, "{path}: {}", as_operator.text);
        let as_ingest = server.request("GET", &path, Some(INGEST), None);
        assert_eq!(as_ingest.status, 403, "{path}: {}", as_ingest.text);
        assert!(as_ingest.content_type().starts_with("application/problem+json"));
        assert_eq!(server.request("GET", &path, None, None).status, 401, "{path}");
    }
    let ingest = ok(server.request("GET", "/v1/stats/ingest", Some(&operator), None));
    assert_eq!(type_sum(&ingest["minutes"], "crm_field_update"), 2, "two accepted, one duplicate: {ingest}");
    for unknown in ["tgt_00000000000000000000000000", "nonsense"] {
        let r = server.admin("GET", &format!("/v1/targets/{unknown}/stats"), None);
        assert_eq!(r.status, 404, "{unknown}: {}", r.text);
        assert!(r.content_type().starts_with("application/problem+json"));
    }
}
