//! A data dir written by the previous binary opens and delivers: the fixture of
//! `crates/crmhook-store/tests/fixtures/datadir-2026-12-02` (written by the binary of
//! 2026-12-02, before the store's modules, the dispatch crate and the window) is started on by
//! today's binary, which lists what it holds, redelivers an old event with its exact bytes, and
//! delivers a new one.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use support::{Receiver, Server};

const ADMIN: &str = "adm_fixture_0123456789abcdef";
const INGEST: &str = "ing_fixture_0123456789abcdef";

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crmhook-store/tests/fixtures/datadir-2026-12-02")
}

#[test]
fn a_data_dir_written_by_the_previous_binary_opens_and_delivers() {
    let server = Server::start_on_copy(
        &fixture(),
        &[("CRMHOOK_ADMIN_TOKEN", ADMIN), ("CRMHOOK_INGEST_TOKEN", INGEST), ("CRMHOOK_ALLOW_PRIVATE_TARGETS", "true")],
    );
    let admin = |method: &str, path: &str, body: Option<&Value>| server.request(method, path, Some(ADMIN), body);

    // What the old binary wrote reads back: its events, targets, subscriptions and source.
    let events = admin("GET", "/v1/events?limit=100", None).json();
    let events = events["events"].as_array().expect("events").clone();
    assert_eq!(events.len(), 5, "four MAIA samples and one Maximizer element: {events:?}");
    let targets = admin("GET", "/v1/targets", None).json();
    let targets = targets["targets"].as_array().expect("targets").clone();
    let delivered = targets.iter().find(|t| t["name"] == "delivered").expect("the `delivered` target");
    let dead = targets.iter().find(|t| t["name"] == "dead").expect("the `dead` target");
    assert_eq!(delivered["health"]["pending"], 0);
    assert_eq!(dead["health"]["dead"], 1, "the old binary's dead delivery: {dead}");
    assert_eq!(admin("GET", "/v1/subscriptions", None).json()["subscriptions"].as_array().map(Vec::len), Some(2));
    assert_eq!(admin("GET", "/v1/sources", None).json()["sources"].as_array().map(Vec::len), Some(1));

    // Its target now points at this test's receiver.
    let receiver = Receiver::start();
    let tid = delivered["id"].as_str().expect("id").to_owned();
    let patched = admin("PATCH", &format!("/v1/targets/{tid}"), Some(&json!({"url": receiver.url("/ok")})));
    assert_eq!(patched.status, 200, "{}", patched.text);

    // An old event, redelivered, arrives with the bytes the old binary logged.
    let old = &events[0];
    let old_id = old["id"].as_str().expect("id");
    let old_view = admin("GET", &format!("/v1/events/{old_id}"), None).json();
    let redelivered = admin("POST", &format!("/v1/events/{old_id}/redeliver"), Some(&json!({"target_id": tid})));
    assert_eq!(redelivered.status, 202, "{}", redelivered.text);
    let got = receiver.wait_count("/ok", 1, Duration::from_secs(20));
    assert_eq!(got[0].header("webhook-id"), old_id);
    let sent: Value = serde_json::from_slice(&got[0].body).expect("a JSON body");
    assert_eq!(sent, old_view["payload"], "the old event's payload, as logged");

    // A new event is logged after the old ones and delivered.
    let new = server.request("POST", "/v1/events", Some(INGEST), Some(&support::maia("crm_record_created", json!({}))));
    assert_eq!(new.status, 202, "{}", new.text);
    let new_id = new.json()["events"][0]["id"].as_str().expect("id").to_owned();
    assert!(new.json()["events"][0]["seq"].as_u64() > old["seq"].as_u64().map(|s| s.max(5)));
    let got = receiver.wait_until(Duration::from_secs(20), "the new event", |r| {
        r.iter().find(|r| r.header("webhook-id") == new_id).map(|r| r.header("webhook-id").to_owned())
    });
    assert_eq!(got, new_id);
}
