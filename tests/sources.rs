//! The real CRMs plug in unchanged (contract section 2b): the CRM simulator posts to a source's
//! ingest URL exactly as MAIA and Maximizer do, against the real binary, and a real receiver
//! checks every delivery the way MAIA's documentation describes (and Standard Webhooks').

mod support;

use std::time::Duration;

use base64::Engine;
use crmhook_crmsim::{maia as maia_crm, maximizer, Options};
use serde_json::{json, Value};
use support::*;

const DELIVERY: Duration = Duration::from_secs(10);
const MAIA_SECRET: &str = "maia-webhook-center-secret-7f3a";

/// Creates a source; answers its view (with `key` for Maximizer).
fn source(server: &Server, body: Value) -> Value {
    let r = server.admin("POST", "/v1/sources", Some(&body));
    assert_eq!(r.status, 201, "POST /v1/sources: {}", r.text);
    let v = r.json();
    assert!(v["id"].as_str().is_some_and(|id| id.starts_with("src_")), "{v}");
    assert_eq!(v["ingest_url"], server.url(&format!("/in/{}", v["id"].as_str().expect("id"))));
    v
}

fn maia_source(server: &Server) -> Value {
    source(server, json!({"name": "MAIA", "kind": "maia", "maia_secret": MAIA_SECRET}))
}

/// The Maximizer source's target URL, as registered in Maximizer: the key in the query string.
fn maximizer_url(src: &Value) -> String {
    format!("{}?key={}", src["ingest_url"].as_str().expect("url"), src["key"].as_str().expect("key"))
}

fn events(server: &Server, query: &str) -> Vec<Value> {
    server.admin("GET", &format!("/v1/events?{query}"), None).json()["events"].as_array().cloned().unwrap_or_default()
}

fn rejected(server: &Server) -> Vec<Value> {
    server.admin("GET", "/v1/rejected", None).json()["rejected"].as_array().cloned().unwrap_or_default()
}

#[test]
fn maia_posts_as_maia_does_and_every_delivery_passes_both_verifiers() {
    let server = Server::start();
    let rcv = Receiver::start();
    let (_, secret) = server.wire(&rcv.url("/hook"), Some(json!({})), json!({}));
    let src = maia_source(&server);
    let url = src["ingest_url"].as_str().expect("url");

    let names = ["crm_field_update", "crm_record_created", "crm_record_deleted", "ai_pause"];
    for name in names {
        // The sample file's exact bytes, one event per POST, signed, no other header.
        let body = sample(name);
        let report = maia_crm::post(url, MAIA_SECRET, body.as_bytes());
        assert!(report.delivered, "{name}: {report}");
        assert_eq!((report.tries.len(), report.last_status()), (1, Some(200)), "{name}: {report}");
        let ack = report.last_body_json().expect("json answer");
        assert_eq!((ack["accepted"].as_u64(), ack["rejected"].as_u64()), (Some(1), Some(0)), "{ack}");
    }
    let got = rcv.wait_count("/hook", names.len(), DELIVERY);
    for d in &got {
        assert!(maia_signature_valid(&secret, d), "X-Maia-Signature as MAIA documents it: {:?}", d.headers);
        assert!(standard_signature_valid(&secret, d), "webhook-signature: {:?}", d.headers);
        assert!(d.header("x-maia-timestamp").parse::<u64>().is_ok());
        // The file's last line feed included: the body is what MAIA sent (until 2026-12-07 the
        // whitespace around the object was left out).
        let sent = names.iter().map(|n| sample(n)).find(|s| s.as_bytes() == d.body.as_slice());
        assert!(
            sent.is_some(),
            "the body is one of the posted events, byte for byte: {:?}",
            String::from_utf8_lossy(&d.body)
        );
    }
    // Each event records its source, and the log filters on it.
    let listed = events(&server, &format!("source_id={}", src["id"].as_str().expect("id")));
    assert_eq!(listed.len(), names.len());
    assert!(listed.iter().all(|e| e["source_id"] == src["id"]));
    assert_eq!(events(&server, "source_id=src_00000000000000000000000000").len(), 0);
}

#[test]
fn an_unauthenticated_post_is_401_and_stores_nothing() {
    let server = Server::start();
    let src = maia_source(&server);
    let url = src["ingest_url"].as_str().expect("url").to_owned();
    let body = sample("crm_field_update");
    let once = Options { tries: 1, ..Options::maia() };

    // A wrong secret, a signature of another body, no signature at all.
    let wrong = maia_crm::post_with(&url, "not-the-secret", body.as_bytes(), &once);
    assert_eq!(wrong.last_status(), Some(401), "{wrong}");
    let other = crmhook_crmsim::maia_signature(MAIA_SECRET, b"{}");
    let r = http("POST", &url, &[("X-Maia-Signature", &other)], Some(body.as_bytes()));
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(r.content_type().starts_with("application/problem+json"));
    // Its title fits a signature as well as a token (it said "A valid token is required").
    assert_eq!(r.json()["title"], "Authentication failed", "{}", r.text);
    let r = http("POST", &url, &[("Content-Type", "application/json")], Some(body.as_bytes()));
    assert_eq!(r.status, 401, "{}", r.text);
    // Not authenticated is 401 whatever else is wrong: here a malformed `Idempotency-Key`.
    let r = http("POST", &url, &[("X-Maia-Signature", &other), ("Idempotency-Key", "")], Some(body.as_bytes()));
    assert_eq!(r.status, 401, "{}", r.text);
    // An unknown source; a disabled one.
    let r = maia_crm::post_with(&server.url("/in/src_00000000000000000000000000"), MAIA_SECRET, body.as_bytes(), &once);
    assert_eq!(r.last_status(), Some(401));
    let id = src["id"].as_str().expect("id");
    let off = server.admin("PATCH", &format!("/v1/sources/{id}"), Some(&json!({"enabled": false})));
    assert_eq!((off.status, off.json()["enabled"].as_bool()), (200, Some(false)), "{}", off.text);
    assert_eq!(maia_crm::post_with(&url, MAIA_SECRET, body.as_bytes(), &once).last_status(), Some(401));
    // A Maximizer source without its key, or with a wrong one.
    let mx = source(&server, json!({"name": "mx", "kind": "maximizer"}));
    let batch = maximizer::batch(&[maximizer::envelope("k-1", "Opportunity", "Update", "1")]);
    let mx_once = Options { tries: 1, ..Options::maximizer() };
    let no_key = mx["ingest_url"].as_str().expect("url");
    assert_eq!(maximizer::post_with(no_key, batch.as_bytes(), &mx_once).last_status(), Some(401));
    assert_eq!(
        maximizer::post_with(&format!("{no_key}?key=mxk_wrong"), batch.as_bytes(), &mx_once).last_status(),
        Some(401)
    );

    assert!(events(&server, "").is_empty(), "nothing was logged");
    assert!(rejected(&server).is_empty(), "nothing was quarantined");
    // Enabled again, the real CRM gets through.
    server.admin("PATCH", &format!("/v1/sources/{id}"), Some(&json!({"enabled": true})));
    assert!(maia_crm::post_with(&url, MAIA_SECRET, body.as_bytes(), &once).delivered);
}

#[test]
fn a_maia_retry_of_the_same_body_is_a_duplicate_and_delivered_once() {
    let server = Server::start();
    let rcv = Receiver::start();
    let (tid, _) = server.wire(&rcv.url("/once"), Some(json!({})), json!({}));
    let src = maia_source(&server);
    let url = src["ingest_url"].as_str().expect("url");
    let body = serde_json::to_vec(&maia("crm_field_update", json!({}))).expect("json");
    let first = maia_crm::post(url, MAIA_SECRET, &body).last_body_json().expect("answer");
    let again = maia_crm::post(url, MAIA_SECRET, &body).last_body_json().expect("answer");
    assert_eq!((again["accepted"].as_u64(), again["duplicates"].as_u64()), (Some(0), Some(1)), "{again}");
    assert_eq!(again["events"][0]["id"], first["events"][0]["id"]);
    // A marker, posted last: once it has arrived and nothing is pending, a second delivery of
    // the retried body would have arrived.
    let marker = maia("crm_field_update", json!({}));
    assert!(maia_crm::post(url, MAIA_SECRET, &serde_json::to_vec(&marker).expect("json")).delivered);
    rcv.wait_tag("/once", marker["recordId"].as_str().expect("tag"), DELIVERY);
    server.wait_settled(&tid, DELIVERY);
    assert_eq!(rcv.count("/once"), 2, "delivered twice");
    // Another source posting the same bytes is another event.
    let other = source(&server, json!({"name": "MAIA 2", "kind": "maia", "maia_secret": MAIA_SECRET}));
    let other_url = other["ingest_url"].as_str().expect("url");
    let ack = maia_crm::post(other_url, MAIA_SECRET, &body).last_body_json();
    assert_eq!(ack.expect("answer")["accepted"], 1);

    // An `Idempotency-Key` is its sender's own: the same key from another source, or on
    // `/v1/events`, is another request; from the same source again, a retry.
    let keyed = |url: &str, body: &[u8]| {
        let signature = crmhook_crmsim::maia_signature(MAIA_SECRET, body);
        let r = http("POST", url, &[("X-Maia-Signature", &signature), ("Idempotency-Key", "req-1")], Some(body));
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()
    };
    let one = serde_json::to_vec(&maia("crm_field_update", json!({}))).expect("json");
    let two = serde_json::to_vec(&maia("crm_field_update", json!({}))).expect("json");
    let first = keyed(url, &one);
    assert_eq!(first["accepted"], 1, "{first}");
    let elsewhere = keyed(other_url, &two);
    assert_eq!((elsewhere["accepted"].as_u64(), elsewhere["duplicates"].as_u64()), (Some(1), Some(0)), "{elsewhere}");
    assert_ne!(elsewhere["events"][0]["id"], first["events"][0]["id"]);
    let api = server.post_keyed(&maia("crm_field_update", json!({})), "req-1");
    assert_eq!(api["accepted"], 1, "{api}");
    let retry = keyed(url, &two);
    assert_eq!(
        (retry["duplicates"].as_u64(), &retry["events"][0]["id"]),
        (Some(1), &first["events"][0]["id"]),
        "{retry}"
    );
}

#[test]
fn maximizer_gets_exactly_200_and_receivers_get_each_element_byte_for_byte() {
    let server = Server::start();
    let rcv = Receiver::start();
    let (_, secret) = server.wire(&rcv.url("/mx"), Some(json!({"event_types": ["opportunity.update"]})), json!({}));
    let src = source(&server, json!({"name": "Maximizer", "kind": "maximizer"}));
    assert!(src["key"].as_str().is_some_and(|k| k.starts_with("mxk_")), "{src}");
    let elements = [
        maximizer::envelope("mx-1", "Opportunity", "Update", "12000.00"),
        maximizer::envelope("mx-2", "Opportunity", "Update", "9007199254740993"),
        maximizer::envelope("mx-3", "Opportunity", "Update", "0.1000000000000000055511151231257827"),
    ];
    let report = maximizer::post(&maximizer_url(&src), maximizer::batch(&elements).as_bytes());
    assert!(report.delivered, "{report}");
    assert_eq!((report.tries.len(), report.last_status()), (1, Some(200)), "exactly 200, first try: {report}");
    assert_eq!(report.last_body_json().expect("json")["accepted"], 3);

    let got = rcv.wait_count("/mx", 3, DELIVERY);
    for element in &elements {
        let want = format!("[{element}]");
        let d = got.iter().find(|d| d.body == want.as_bytes());
        let d = d.unwrap_or_else(|| panic!("no delivery is byte-identical to {want}"));
        assert!(maia_signature_valid(&secret, d) && standard_signature_valid(&secret, d));
    }
    // The key is not kept in clear: the source's views never show it again.
    let id = src["id"].as_str().expect("id");
    let shown = server.admin("GET", &format!("/v1/sources/{id}"), None).text;
    assert!(!shown.contains(src["key"].as_str().expect("key")), "{shown}");
    // A rotated key replaces the old one at once.
    let rotated = server.admin("POST", &format!("/v1/sources/{id}/rotate-key"), None).json();
    let once = Options { tries: 1, ..Options::maximizer() };
    let more = maximizer::batch(&[maximizer::envelope("mx-4", "Opportunity", "Update", "1")]);
    assert_eq!(maximizer::post_with(&maximizer_url(&src), more.as_bytes(), &once).last_status(), Some(401));
    let bearer = http(
        "POST",
        src["ingest_url"].as_str().expect("url"),
        &[("Authorization", &format!("Bearer {}", rotated["key"].as_str().expect("new key")))],
        Some(more.as_bytes()),
    );
    assert_eq!(bearer.status, 200, "the key as a bearer token: {}", bearer.text);
    // An empty `?key=` is no key: the bearer token is taken (it was refused until 2026-12-07).
    let again = maximizer::batch(&[maximizer::envelope("mx-5", "Opportunity", "Update", "1")]);
    let empty_query = http(
        "POST",
        &format!("{}?key=", src["ingest_url"].as_str().expect("url")),
        &[("Authorization", &format!("Bearer {}", rotated["key"].as_str().expect("new key")))],
        Some(again.as_bytes()),
    );
    assert_eq!(empty_query.status, 200, "an empty ?key= beside the bearer token: {}", empty_query.text);
}

#[test]
fn filters_compare_large_integers_exactly() {
    let server = Server::start();
    let rcv = Receiver::start();
    let filter = |value: u64| json!({"filters": [{"path": "/Data/Original/Revenue", "op": "eq", "value": value}]});
    server.wire(&rcv.url("/exact"), Some(filter(9_007_199_254_740_993)), json!({}));
    let (neighbour, _) = server.wire(&rcv.url("/neighbour"), Some(filter(9_007_199_254_740_992)), json!({}));
    let src = source(&server, json!({"name": "Maximizer", "kind": "maximizer"}));
    let body = maximizer::batch(&[maximizer::envelope("big-1", "Opportunity", "Update", "9007199254740993")]);
    assert!(maximizer::post(&maximizer_url(&src), body.as_bytes()).delivered);
    rcv.wait_count("/exact", 1, DELIVERY);
    // 2^53 itself, posted after, is the marker for /neighbour: once it has arrived and nothing
    // is pending, 2^53 + 1 was matched there, and would have arrived first had eq taken it.
    let body = maximizer::batch(&[maximizer::envelope("big-2", "Opportunity", "Update", "9007199254740992")]);
    assert!(maximizer::post(&maximizer_url(&src), body.as_bytes()).delivered);
    rcv.wait_tag("/neighbour", "big-2", DELIVERY);
    server.wait_settled(&neighbour, DELIVERY);
    assert_eq!(rcv.tags("/neighbour"), ["big-2"], "eq matched 2^53 for 2^53 + 1");
}

#[test]
fn a_bad_element_is_quarantined_with_its_bytes_and_the_rest_of_the_batch_delivered() {
    let server = Server::start();
    let rcv = Receiver::start();
    server.wire(&rcv.url("/batch"), Some(json!({})), json!({}));
    let src = source(&server, json!({"name": "Maximizer", "kind": "maximizer"}));
    let good_1 = maximizer::envelope("b-1", "Opportunity", "Update", "1.50");
    let good_2 = maximizer::envelope("b-2", "Contact", "Insert", "2");
    let bad = r#"{"Id": "b-bad", "Entity": "Opportunity",  "Data": {"Op": "Update"}}"#;
    let body = format!("[{good_1},{bad},\n{good_2}]");
    let report = maximizer::post(&maximizer_url(&src), body.as_bytes());
    assert_eq!((report.tries.len(), report.last_status()), (1, Some(200)), "{report}");
    let ack = report.last_body_json().expect("json");
    assert_eq!((ack["accepted"].as_u64(), ack["rejected"].as_u64()), (Some(2), Some(1)), "{ack}");
    assert_eq!(ack["rejections"][0]["index"], 1);

    let got = rcv.wait_count("/batch", 2, DELIVERY);
    let mut bodies: Vec<Vec<u8>> = got.iter().map(|d| d.body.clone()).collect();
    bodies.sort();
    let mut want = vec![format!("[{good_1}]").into_bytes(), format!("[{good_2}]").into_bytes()];
    want.sort();
    assert_eq!(bodies, want);

    let kept = rejected(&server);
    assert_eq!(kept.len(), 1);
    let item = &kept[0];
    assert_eq!((item["source_id"].clone(), item["index"].as_u64()), (src["id"].clone(), Some(1)));
    assert!(item["reason"].as_str().is_some_and(|r| r.contains("Timestamp")), "{item}");
    let exact = base64::engine::general_purpose::STANDARD.decode(item["body_base64"].as_str().expect("b64"));
    assert_eq!(exact.expect("base64"), bad.as_bytes(), "the element's exact bytes");
    assert_eq!(item["body"], bad);
    let id = item["id"].as_str().expect("id");
    assert_eq!(server.admin("GET", &format!("/v1/rejected/{id}"), None).json()["id"], id);
    // Retried with today's rules it is still not an event: 422, and it stays.
    let retry = server.admin("POST", &format!("/v1/rejected/{id}/retry"), None);
    assert_eq!(retry.status, 422, "{}", retry.text);
    assert!(retry.json()["detail"].as_str().is_some_and(|d| d.contains("Timestamp")), "{}", retry.text);
    assert_eq!(rejected(&server).len(), 1);

    // A body that does not parse at all is kept whole, and still answered 200.
    let torn = b"[{\"Id\": \"b-3\", \"Entity\": ";
    let report = maximizer::post(&maximizer_url(&src), torn);
    assert_eq!(report.last_status(), Some(200), "{report}");
    let kept = rejected(&server);
    assert_eq!(kept.len(), 2);
    assert!(kept[1]["index"].is_null());
    assert_eq!(kept[1]["body"], String::from_utf8_lossy(torn).as_ref());
    let metrics = http("GET", &server.url("/metrics"), &[], None).text;
    assert!(
        metrics.contains(&format!("crmhook_events_rejected_total{{source=\"{}\"}} 2", src["id"].as_str().expect("id")))
    );
    // POST /v1/events stays all or nothing for API clients.
    let r = server.request(
        "POST",
        "/v1/events",
        Some(INGEST),
        Some(&serde_json::from_str::<Value>(&format!("[{good_1},{bad}]")).expect("json")),
    );
    assert_eq!(r.status, 422, "{}", r.text);
}

#[test]
fn ai_pause_passes_a_kanban_filtered_subscription() {
    let server = Server::start();
    let rcv = Receiver::start();
    let (tid, _) = server.wire(&rcv.url("/kanban"), Some(json!({"kanban_ids": ["kanban_A"]})), json!({}));
    let src = maia_source(&server);
    let url = src["ingest_url"].as_str().expect("url");
    let pause = serde_json::to_vec(&maia("ai_pause", json!({}))).expect("json");
    let other_kanban = serde_json::to_vec(&maia("crm_record_created", json!({"kanbanId": "kanban_B"}))).expect("json");
    let this_kanban = serde_json::to_vec(&maia("crm_record_created", json!({"kanbanId": "kanban_A"}))).expect("json");
    for body in [&pause, &other_kanban, &this_kanban] {
        assert!(maia_crm::post(url, MAIA_SECRET, body).delivered);
    }
    // The last event posted is the marker: once it has arrived and nothing is pending, the other
    // kanban's event was matched, and would have arrived had the filter let it through.
    let marker: Value = serde_json::from_slice(&this_kanban).expect("json");
    rcv.wait_tag("/kanban", marker["recordId"].as_str().expect("tag"), DELIVERY);
    server.wait_settled(&tid, DELIVERY);
    let got = rcv.requests("/kanban");
    let mut bodies: Vec<&[u8]> = got.iter().map(|d| d.body.as_slice()).collect();
    bodies.sort();
    let mut want = vec![pause.as_slice(), this_kanban.as_slice()];
    want.sort();
    assert_eq!(bodies, want);
}

#[test]
fn sources_are_managed_like_targets() {
    let server = Server::start();
    let src = source(&server, json!({"name": "MAIA", "kind": "maia"}));
    assert_eq!(src["maia_secret_set"], false);
    assert!(src.get("key").is_none(), "a maia source has no key of ours");
    let id = src["id"].as_str().expect("id");
    let set = server.admin("PATCH", &format!("/v1/sources/{id}"), Some(&json!({"maia_secret": "s3cret-value"})));
    assert_eq!((set.status, set.json()["maia_secret_set"].as_bool()), (200, Some(true)), "{}", set.text);
    assert!(!set.text.contains("s3cret-value"), "the MAIA secret is never shown back");
    let list = server.admin("GET", "/v1/sources", None);
    assert_eq!(list.json()["sources"].as_array().map(Vec::len), Some(1));
    assert!(!list.text.contains("s3cret-value"));
    for (body, field) in [
        (json!({"name": "x", "kind": "hubspot"}), "kind"),
        (json!({"kind": "maia"}), "name"),
        (json!({"name": "x", "kind": "maximizer", "maia_secret": "s"}), "maia_secret"),
    ] {
        let r = server.admin("POST", "/v1/sources", Some(&body));
        assert_eq!((r.status, r.json()["field"].as_str()), (422, Some(field)), "{}", r.text);
    }
    // A member named twice is refused, as in an ingested event: the last value would win unseen.
    let auth = format!("Bearer {ADMIN}");
    let twice = br#"{"name": "x", "kind": "maia", "kind": "maximizer"}"#;
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    let r = http("POST", &server.url("/v1/sources"), &headers, Some(twice));
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.json()["detail"].as_str().is_some_and(|d| d.contains("\"kind\" appears twice")), "{}", r.text);
    assert_eq!(server.admin("GET", "/v1/sources", None).json()["sources"].as_array().map(Vec::len), Some(1));
    assert_eq!(server.admin("POST", &format!("/v1/sources/{id}/rotate-key"), None).status, 409);
    assert_eq!(server.request("GET", "/v1/sources", Some(INGEST), None).status, 403);
    assert_eq!(server.admin("DELETE", &format!("/v1/sources/{id}"), None).status, 204);
    assert_eq!(server.admin("GET", &format!("/v1/sources/{id}"), None).status, 404);
}

#[test]
fn quarantined_pieces_are_covered_by_retention() {
    let server = Server::start_with(&[
        ("CRMHOOK_ADMIN_TOKEN", ADMIN),
        ("CRMHOOK_INGEST_TOKEN", INGEST),
        ("CRMHOOK_RETENTION_DAYS", "0"),
        ("CRMHOOK_COMPACTION_INTERVAL_S", "1"),
    ]);
    let src = source(&server, json!({"name": "Maximizer", "kind": "maximizer"}));
    let report = maximizer::post(&maximizer_url(&src), b"[{\"Id\": 1}]");
    assert_eq!(report.last_body_json().expect("json")["rejected"], 1, "{report}");
    // Kept until the next compaction, then gone with the retention of 0 days.
    wait_for(Duration::from_secs(15), "the quarantine emptied by retention", || {
        rejected(&server).is_empty().then_some(())
    });
}

#[test]
fn a_request_with_more_bad_elements_than_the_bound_is_kept_whole_as_one_piece() {
    let server = Server::start();
    let rcv = Receiver::start();
    server.wire(&rcv.url("/many"), Some(json!({})), json!({}));
    let src = source(&server, json!({"name": "Maximizer", "kind": "maximizer"}));
    let good_1 = maximizer::envelope("m-1", "Opportunity", "Update", "1");
    let good_2 = maximizer::envelope("m-2", "Opportunity", "Update", "2");
    let bad = vec!["{}"; crmhook_core::event::MAX_PIECES_PER_REQUEST + 1].join(",");
    let body = format!("[{good_1},{bad},{good_2}]");
    let report = maximizer::post(&maximizer_url(&src), body.as_bytes());
    assert_eq!((report.tries.len(), report.last_status()), (1, Some(200)), "{report}");
    let ack = report.last_body_json().expect("json");
    let over = crmhook_core::event::MAX_PIECES_PER_REQUEST as u64 + 1;
    assert_eq!((ack["accepted"].as_u64(), ack["rejected"].as_u64()), (Some(2), Some(over)), "{}", ack["accepted"]);
    let listed = ack["rejections"].as_array().expect("rejections");
    assert_eq!(listed.len(), 1, "one piece: {}", listed.len());
    assert!(listed[0]["index"].is_null());
    // The good events are delivered; the quarantine holds the whole body, once.
    assert_eq!(rcv.wait_count("/many", 2, DELIVERY).len(), 2);
    let kept = rejected(&server);
    assert_eq!(kept.len(), 1);
    let exact = base64::engine::general_purpose::STANDARD.decode(kept[0]["body_base64"].as_str().expect("b64"));
    assert_eq!(exact.expect("base64"), body.as_bytes());
    let reason = kept[0]["reason"].as_str().expect("reason");
    assert!(reason.starts_with(&format!("{over} of its {} elements break the rules", over + 2)), "{reason}");
    // Retried, it is still not all events: 422 saying why, and nothing changes.
    let id = kept[0]["id"].as_str().expect("id");
    let retry = server.admin("POST", &format!("/v1/rejected/{id}/retry"), None);
    assert_eq!(retry.status, 422, "{}", retry.text);
    assert!(retry.json()["detail"].as_str().is_some_and(|d| d.contains("at index 1:")), "{}", retry.text);
    assert_eq!(rejected(&server).len(), 1);
    assert_eq!(events(&server, "").len(), 2);
}

#[test]
fn the_quarantine_lists_one_requests_pieces_in_their_order() {
    let server = Server::start();
    let src = source(&server, json!({"name": "Maximizer", "kind": "maximizer"}));
    let pieces: Vec<String> = (0..30).map(|i| i.to_string()).collect();
    let body = format!("[{}]", pieces.join(","));
    let report = maximizer::post(&maximizer_url(&src), body.as_bytes());
    assert_eq!(report.last_body_json().expect("json")["rejected"], 30, "{report}");
    let listed: Vec<u64> = rejected(&server).iter().map(|r| r["index"].as_u64().expect("index")).collect();
    assert_eq!(listed, (0..30).collect::<Vec<u64>>());
}

#[test]
fn a_crm_s_retry_of_a_batch_keeps_its_bad_elements_once() {
    let server = Server::start();
    let src = source(&server, json!({"name": "Maximizer", "kind": "maximizer"}));
    let other = source(&server, json!({"name": "Other", "kind": "maximizer"}));
    let good = maximizer::envelope("r-1", "Opportunity", "Update", "1");
    let bad = r#"{"Id": "r-bad", "Entity": "Opportunity"}"#;
    let body = format!("[{good},{bad}]");
    let post = |src: &Value, body: &[u8], key: Option<&str>| {
        let mut headers = vec![("Content-Type", "application/json")];
        headers.extend(key.map(|k| ("Idempotency-Key", k)));
        let r = http("POST", &maximizer_url(src), &headers, Some(body));
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()
    };
    let pieces = |ack: &Value| -> Vec<Value> {
        ack["rejections"].as_array().expect("rejections").iter().map(|r| r["id"].clone()).collect()
    };
    let first = post(&src, body.as_bytes(), Some("batch-1"));
    assert_eq!((first["accepted"].as_u64(), first["rejected"].as_u64()), (Some(1), Some(1)), "{first}");
    // Sent again, with its key and without: the event is a duplicate, the bad element is held by
    // the piece it made the first time.
    for key in [Some("batch-1"), None] {
        let again = post(&src, body.as_bytes(), key);
        assert_eq!((again["duplicates"].as_u64(), again["rejected"].as_u64()), (Some(1), Some(1)), "{again}");
        assert_eq!(pieces(&again), pieces(&first));
        assert_eq!(again["rejections"][0]["index"], 1);
    }
    // At another index of another request, too.
    let moved = post(&src, format!("[{bad}]").as_bytes(), None);
    assert_eq!((pieces(&moved), moved["rejections"][0]["index"].as_u64()), (pieces(&first), Some(0)));
    // A request none of whose elements is an event, sent again with its key: the same pieces.
    let all_bad = br#"[{"Id": "x-1"}, 7]"#;
    let kept = pieces(&post(&src, all_bad, Some("batch-2")));
    assert_eq!(kept.len(), 2);
    assert_eq!(pieces(&post(&src, all_bad, Some("batch-2"))), kept);
    // Another source's same bytes are its own piece.
    let theirs = pieces(&post(&other, body.as_bytes(), None));
    assert_ne!(theirs, pieces(&first));

    assert_eq!(rejected(&server).len(), 4);
    let listed = server.admin("GET", &format!("/v1/rejected?source_id={}", other["id"].as_str().expect("id")), None);
    let listed: Vec<Value> =
        listed.json()["rejected"].as_array().expect("page").iter().map(|r| r["id"].clone()).collect();
    assert_eq!(listed, theirs);
    let metrics = http("GET", &server.url("/metrics"), &[], None).text;
    let counted = format!("crmhook_events_rejected_total{{source=\"{}\"}} 3", src["id"].as_str().expect("id"));
    assert!(metrics.contains(&counted), "the pieces kept, not the elements sent: {counted}");
}

/// A body with a byte order mark before its JSON (as .NET's writers may put) is refused as
/// malformed, with words that name the mark: 400 on `/v1/events`, the quarantine on a source
/// (which still answers 200).
#[test]
fn a_byte_order_mark_before_the_json_is_named_in_the_refusal() {
    let server = Server::start();
    let src = source(&server, json!({"name": "Maximizer", "kind": "maximizer"}));
    let good = maximizer::envelope("r-1", "Opportunity", "Update", "1");
    let body = [b"\xEF\xBB\xBF".as_slice(), format!("[{good}]").as_bytes()].concat();
    let names_it = |why: &str| why.contains("byte order mark (bytes EF BB BF)");
    let auth = format!("Bearer {INGEST}");
    let headers = [("Content-Type", "application/json"), ("Authorization", auth.as_str())];
    let r = http("POST", &server.url("/v1/events"), &headers, Some(&body));
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(names_it(r.json()["detail"].as_str().unwrap_or_default()), "{}", r.text);
    let r = http("POST", &maximizer_url(&src), &[("Content-Type", "application/json")], Some(&body));
    assert_eq!(r.status, 200, "{}", r.text);
    let ack = r.json();
    assert_eq!((ack["accepted"].as_u64(), ack["rejected"].as_u64()), (Some(0), Some(1)), "{ack}");
    assert!(names_it(ack["rejections"][0]["reason"].as_str().unwrap_or_default()), "{ack}");
    assert!(events(&server, "limit=10").is_empty());
}

/// Bodies of 64 KiB or more are checked and parsed on tokio's blocking pool, not on the HTTP
/// worker (`api::request::off_worker`): the answers are the same as for a small body, through
/// a MAIA source (signed, wrongly signed, with a bad element), a Maximizer source and
/// `/v1/events` (a batch; a body that is not JSON).
#[test]
fn large_bodies_are_checked_and_parsed_off_the_workers_with_the_same_answers() {
    const N: usize = 600;
    let server = Server::start();
    let src = maia_source(&server);
    let url = src["ingest_url"].as_str().expect("url").to_owned();
    let mut elements: Vec<String> = (0..N).map(|_| maia("crm_field_update", json!({})).to_string()).collect();
    let body = format!("[{}]", elements.join(","));
    assert!(body.len() >= 64 * 1024, "a large body: {} bytes", body.len());
    let signed = |secret: &str, body: &str| crmhook_crmsim::maia_signature(secret, body.as_bytes());
    let post =
        |signature: &str, body: &str| http("POST", &url, &[("X-Maia-Signature", signature)], Some(body.as_bytes()));

    let wrong = post(&signed("not-the-secret", &body), &body);
    assert_eq!(wrong.status, 401, "{}", wrong.text);
    assert!(wrong.content_type().starts_with("application/problem+json"));
    let ok = post(&signed(MAIA_SECRET, &body), &body);
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!((ok.json()["accepted"].as_u64(), ok.json()["rejected"].as_u64()), (Some(N as u64), Some(0)));
    // One element that is not an event: kept in the quarantine, the others accepted.
    elements[7] = "[1]".into();
    let with_bad = format!("[{}]", elements.join(","));
    let r = post(&signed(MAIA_SECRET, &with_bad), &with_bad);
    assert_eq!(r.status, 200, "{}", r.text);
    let ack = r.json();
    assert_eq!((ack["rejected"].as_u64(), ack["rejections"][0]["index"].as_u64()), (Some(1), Some(7)), "{ack}");
    assert_eq!(ack["duplicates"].as_u64(), Some(N as u64 - 1), "the same bytes as before, but element 7");

    let mx = source(&server, json!({"name": "mx", "kind": "maximizer"}));
    let envelopes: Vec<String> =
        (0..N).map(|i| maximizer::envelope(&format!("big-{i}"), "Opportunity", "Update", "1")).collect();
    let batch = maximizer::batch(&envelopes);
    assert!(batch.len() >= 64 * 1024, "a large body: {} bytes", batch.len());
    let r = http("POST", &maximizer_url(&mx), &[], Some(batch.as_bytes()));
    assert_eq!((r.status, r.json()["accepted"].as_u64()), (200, Some(N as u64)), "{}", r.text);

    let events: Vec<Value> = (0..N).map(|_| maia("crm_record_created", json!({}))).collect();
    assert_eq!(server.post_ok(&Value::Array(events))["accepted"].as_u64(), Some(N as u64));
    let bearer = format!("Bearer {INGEST}");
    let headers = [("Content-Type", "application/json"), ("Authorization", bearer.as_str())];
    let not_json = vec![b'x'; 70 * 1024];
    let r = http("POST", &server.url("/v1/events"), &headers, Some(&not_json));
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.content_type().starts_with("application/problem+json"));
}

/// A MAIA post from `from` (a loopback address) whose body never finishes arriving: it sends
/// its head and the first bytes of 1,000, then waits. Answers the connection (open while the
/// server reads the body) and what the server answered within `wait`, if anything.
fn stalled_post(server: &Server, path: &str, from: &str, wait: Duration) -> (std::net::TcpStream, Option<String>) {
    stalled_post_for(server, path, from, None, wait)
}

/// [`stalled_post`] with `X-Forwarded-For: <forwarded_for>` (a proxy's request for a client).
fn stalled_post_for(
    server: &Server,
    path: &str,
    from: &str,
    forwarded_for: Option<&str>,
    wait: Duration,
) -> (std::net::TcpStream, Option<String>) {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = server.base.trim_start_matches("http://").parse().expect("address");
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().expect("runtime");
    let tcp = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind(format!("{from}:0").parse().expect("from")).expect("bind the sender's address");
        socket.connect(addr).await.expect("connect")
    });
    let mut tcp = tcp.into_std().expect("std stream");
    tcp.set_nonblocking(false).expect("blocking");
    let forwarded = forwarded_for.map(|f| format!("X-Forwarded-For: {f}\r\n")).unwrap_or_default();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nX-Maia-Signature: {}\r\n\
         {forwarded}Content-Length: 1000\r\n\r\n{{\"eventType\"",
        "0".repeat(64)
    );
    tcp.write_all(head.as_bytes()).expect("send");
    tcp.set_read_timeout(Some(wait)).expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match tcp.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let answer = (!got.is_empty()).then(|| String::from_utf8_lossy(&got).into_owned());
    (tcp, answer)
}

/// Slow bodies sent to a MAIA source's URL, which anyone who knows it can send (the signature
/// needs the body), hold their own address's slots, not the source's: MAIA's posts still go.
#[test]
fn slow_unsigned_bodies_cannot_take_a_maia_sources_places() {
    let server = Server::start_with(&[TEST_ENV[0], TEST_ENV[1], TEST_ENV[2], ("CRMHOOK_INGEST_CONCURRENCY", "4")]);
    let src = maia_source(&server);
    let url = src["ingest_url"].as_str().expect("url").to_owned();
    let path = url.trim_start_matches(&server.base).to_owned();
    // Four stalled bodies from one address take its four places: the fifth is refused at once.
    let mut held = Vec::new();
    for _ in 0..4 {
        let (tcp, answer) = stalled_post(&server, &path, "127.0.0.2", Duration::from_millis(300));
        assert_eq!(answer, None, "a stalled body is read, not answered");
        held.push(tcp);
    }
    let (_, fifth) = stalled_post(&server, &path, "127.0.0.2", Duration::from_secs(10));
    let fifth = fifth.expect("an answer");
    assert!(fifth.starts_with("HTTP/1.1 503"), "{fifth}");
    // MAIA, from another address, is served meanwhile.
    let body = serde_json::to_vec(&maia("crm_field_update", json!({}))).expect("json");
    let once = Options { tries: 1, ..Options::maia() };
    let posted = maia_crm::post_with(&url, MAIA_SECRET, &body, &once);
    assert!(posted.delivered, "MAIA's post while the slow bodies wait: {:?}", posted.last_body_json());
    drop(held);
}

/// Behind a proxy named in `trusted_proxies`, the places are the client's the proxy names, not
/// the proxy's: one client's slow bodies leave the proxy's other clients theirs.
#[test]
fn behind_a_trusted_proxy_a_maia_requests_places_are_its_clients() {
    let server = Server::start_with(&[
        TEST_ENV[0],
        TEST_ENV[1],
        TEST_ENV[2],
        ("CRMHOOK_INGEST_CONCURRENCY", "4"),
        ("CRMHOOK_TRUSTED_PROXIES", "127.0.0.1"),
    ]);
    let src = maia_source(&server);
    let url = src["ingest_url"].as_str().expect("url").to_owned();
    let path = url.trim_start_matches(&server.base).to_owned();
    let (slow, other) = (Some("198.51.100.7"), Some("198.51.100.8"));
    let mut held = Vec::new();
    for _ in 0..4 {
        let (tcp, answer) = stalled_post_for(&server, &path, "127.0.0.1", slow, Duration::from_millis(300));
        assert_eq!(answer, None, "a stalled body is read, not answered");
        held.push(tcp);
    }
    let (_, fifth) = stalled_post_for(&server, &path, "127.0.0.1", slow, Duration::from_secs(10));
    assert!(fifth.expect("an answer").starts_with("HTTP/1.1 503"));
    // Another client of the same proxy still has places of its own: its body is read.
    let (tcp, answer) = stalled_post_for(&server, &path, "127.0.0.1", other, Duration::from_millis(300));
    assert_eq!(answer, None, "another client's body is read, not refused");
    held.push(tcp);
    // And MAIA through the proxy is served.
    let body = serde_json::to_vec(&maia("crm_field_update", json!({}))).expect("json");
    let once = Options { tries: 1, ..Options::maia() };
    let posted = maia_crm::post_with(&url, MAIA_SECRET, &body, &once);
    assert!(posted.delivered, "MAIA's post while the slow bodies wait: {:?}", posted.last_body_json());
    drop(held);
}
