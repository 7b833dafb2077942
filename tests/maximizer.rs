//! Maximizer envelopes and the filter language end to end, and secret rotation.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const DELIVERY: Duration = Duration::from_secs(10);

fn envelope(id: &str, revenue: f64, version: &str) -> Value {
    let mut e: Value = serde_json::from_str(&sample("opportunity_stage_change")).expect("json");
    e[0]["Id"] = json!(id);
    e[0]["Data"]["Original"]["Revenue"] = json!(revenue);
    e[0]["Data"]["Version"] = json!(version);
    e
}

#[test]
fn the_maximizer_sample_is_typed_filtered_and_delivered_as_its_exact_element() {
    let server = Server::start();
    let rcv = Receiver::start();
    let (gt, _) = server.wire(
        &rcv.url("/gt"),
        Some(json!({"filters": [{"path": "/Data/Original/Revenue", "op": "gt", "value": 10000}]})),
        json!({}),
    );
    let (v1, _) = server.wire(&rcv.url("/v1"), Some(json!({"version_major": 1})), json!({}));
    let (wild, _) = server.wire(&rcv.url("/wild"), Some(json!({"event_types": ["Opportunity.*"]})), json!({}));
    let (all, _) = server.wire(
        &rcv.url("/all"),
        Some(json!({"event_types": ["Opportunity.Update"], "version_major": 1, "filters": [
            {"path": "/Data/Original/Revenue", "op": "gte", "value": 12000},
            {"path": "/Data/New/SalesStageSetupName", "op": "in", "value": ["Presentation", "Closed"]},
            {"path": "/Data/New/Revenue", "op": "exists", "value": false}
        ]})),
        json!({}),
    );
    let (one_fails, _) = server.wire(
        &rcv.url("/one-fails"),
        Some(json!({"event_types": ["Opportunity.*"], "filters": [
            {"path": "/Data/Original/Revenue", "op": "gt", "value": 10000},
            {"path": "/Entity", "op": "eq", "value": "Contact"}
        ]})),
        json!({}),
    );
    let (other_entity, _) =
        server.wire(&rcv.url("/other-entity"), Some(json!({"event_types": ["Contact.*"]})), json!({}));

    let big = envelope("11111111-0000-0000-0000-000000000001", 12000.0, "1.1");
    let small = envelope("11111111-0000-0000-0000-000000000002", 500.0, "2.0");
    let ack = server.post_ok(&big);
    assert_eq!(ack["events"][0]["type"], "Opportunity.Update");
    let small_ack = server.post_ok(&small);

    let tag = |e: &Value| e[0]["Id"].as_str().expect("Id").to_owned();
    for (path, want) in [
        ("/gt", vec![tag(&big)]),
        ("/v1", vec![tag(&big)]),
        ("/wild", vec![tag(&big), tag(&small)]),
        ("/all", vec![tag(&big)]),
    ] {
        let got = rcv.wait_count(path, want.len(), DELIVERY);
        let mut tags: Vec<String> = got.iter().map(Received::tag).collect();
        tags.sort();
        assert_eq!(tags, want, "{path}");
    }
    // Markers, logged last: a Contact for /other-entity, then an Opportunity every other target
    // but /one-fails takes. Once a marker has arrived on a target and the target owes nothing
    // more, it has matched every event before the marker, and made each delivery it owed.
    let mut contact = envelope("11111111-0000-0000-0000-000000000003", 500.0, "2.0");
    contact[0]["Entity"] = json!("Contact");
    let opportunity = envelope("11111111-0000-0000-0000-000000000004", 20000.0, "1.5");
    let contact_ack = server.post_ok(&contact);
    assert_eq!(contact_ack["events"][0]["type"], "Contact.Update");
    let opportunity_ack = server.post_ok(&opportunity);
    for (path, tid, marker, want) in [
        ("/gt", &gt, &opportunity, vec![tag(&big)]),
        ("/v1", &v1, &opportunity, vec![tag(&big)]),
        ("/wild", &wild, &opportunity, vec![tag(&big), tag(&small)]),
        ("/all", &all, &opportunity, vec![tag(&big)]),
        ("/other-entity", &other_entity, &contact, vec![]),
    ] {
        rcv.wait_tag(path, &tag(marker), DELIVERY);
        server.wait_settled(tid, DELIVERY);
        let mut tags = rcv.tags(path);
        tags.sort();
        let mut want: Vec<String> = want.into_iter().chain([tag(marker)]).collect();
        want.sort();
        assert_eq!(tags, want, "{path}");
    }
    // No event can reach /one-fails (its filters contradict each other), so no marker either:
    // the server's view of each event names every target it owes that event to, and /one-fails
    // is never among them.
    for ack in [&ack, &small_ack, &contact_ack, &opportunity_ack] {
        let owed = server.delivered_to(ack["events"][0]["id"].as_str().expect("id"));
        assert!(!owed.is_empty() && !owed.contains(&one_fails), "{owed:?}");
    }
    assert_eq!(rcv.count("/one-fails"), 0, "a filter that fails was ignored");

    // The listing takes the subscriptions' type patterns: `Opportunity.*`, case ignored.
    let listed = |pattern: &str| -> Vec<u64> {
        let page = server.admin("GET", &format!("/v1/events?type={pattern}"), None).json();
        page["events"].as_array().expect("events").iter().map(|e| e["seq"].as_u64().expect("seq")).collect()
    };
    let seq = |a: &Value| a["events"][0]["seq"].as_u64().expect("seq");
    assert_eq!(listed("Opportunity.*"), [seq(&ack), seq(&small_ack), seq(&opportunity_ack)]);
    assert_eq!(listed("contact.UPDATE"), [seq(&contact_ack)]);
    assert_eq!(listed("Contact.Delete"), Vec::<u64>::new());

    // The element exactly as posted, wrapped as a one-element array: nothing is rewritten,
    // `ProcessedTimestamp` included (crmhook's dispatch time is `webhook-timestamp`).
    let posted = serde_json::to_vec(&big[0]).expect("json");
    let delivered = &rcv.requests("/gt")[0];
    assert_eq!(delivered.body, [b"[".as_slice(), &posted, b"]"].concat());
    assert!(delivered.header("webhook-timestamp").parse::<u64>().is_ok());
}

#[test]
fn a_malformed_envelope_names_the_index_and_the_field() {
    let server = Server::start();
    let mut two = envelope("a", 1.0, "1.0");
    let mut second = two[0].clone();
    second["Id"] = json!("b");
    second["Data"].as_object_mut().expect("object").remove("Op");
    two.as_array_mut().expect("array").push(second);
    let r = server.request("POST", "/v1/events", Some(INGEST), Some(&two));
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!((r.json()["index"].as_u64(), r.json()["field"].as_str()), (Some(1), Some("Data.Op")));
    assert_eq!(server.admin("GET", "/v1/events", None).json()["events"].as_array().map(Vec::len), Some(0));
    let r = server.admin("POST", "/v1/subscriptions", Some(&json!({"target_id": "tgt_00000000000000000000000000", "filters": [{"path": "/x", "op": "like", "value": 1}]})));
    assert_eq!((r.status, r.json()["field"].as_str()), (422, Some("filters[0]")), "{}", r.text);
}

/// A receiver that only knows `secret` verifies a delivery (either header; MAIA's as MAIA
/// documents it: the whole header is the hex HMAC of the body).
fn verifies(secret: &str, r: &Received) -> (bool, bool) {
    (maia_signature_valid(secret, r), standard_signature_valid(secret, r))
}

#[test]
fn during_a_rotation_either_secret_verifies() {
    let server = Server::start();
    let rcv = Receiver::start();
    let (tid, old) = server.wire(&rcv.url("/rot"), Some(json!({})), json!({}));
    let r = server.admin("POST", &format!("/v1/targets/{tid}/rotate-secret"), None);
    assert_eq!(r.status, 200, "{}", r.text);
    let new = r.json()["secret"].as_str().expect("new secret").to_owned();
    assert_ne!(new, old);
    assert!(r.json()["previous_secret_expires_at"].is_string(), "{}", r.text);
    assert!(
        !server.admin("GET", &format!("/v1/targets/{tid}"), None).text.contains(&new[6..]),
        "the new secret is shown again"
    );
    server.post_ok(&maia("crm_field_update", json!({})));
    let got = rcv.wait_count("/rot", 1, DELIVERY);
    let d = &got[0];
    // MAIA's receivers compare the whole header: one signature, by the new secret (they check
    // both secrets during the overlap); Standard Webhooks carries both, new first.
    assert_eq!(d.header("x-maia-signature").len(), 64, "one MAIA signature");
    assert_eq!(d.header("webhook-signature").split(' ').count(), 2, "two v1 signatures, new first");
    assert_eq!(verifies(&new, d), (true, true), "a receiver with the new secret");
    assert_eq!(verifies(&old, d), (false, true), "a receiver with the old secret");
    assert_eq!(verifies("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", d), (false, false));
}

#[test]
fn custom_headers_are_sent_and_query_strings_kept() {
    let server = Server::start();
    let rcv = Receiver::start();
    let r = server.admin(
        "POST",
        "/v1/targets",
        Some(&json!({"name": "h", "url": rcv.url("/hdr?tenant=42&x=y"), "headers": {"X-Api-Key": "k123", "X-Tenant": "acme"}})),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json()["url"], rcv.url("/hdr?tenant=42&x=y"));
    let id = r.json()["id"].as_str().expect("id").to_owned();
    assert_eq!(server.admin("POST", "/v1/subscriptions", Some(&json!({"target_id": id}))).status, 201);
    for reserved in ["Content-Type", "X-Maia-Signature", "webhook-id", "X-Crmhook-Attempt"] {
        let r = server.admin("PATCH", &format!("/v1/targets/{id}"), Some(&json!({"headers": {reserved: "evil"}})));
        assert_eq!(r.status, 422, "{reserved} must not be settable: {}", r.text);
    }
    server.post_ok(&maia("ai_pause", json!({})));
    let got = rcv.wait_count("/hdr", 1, DELIVERY);
    assert_eq!((got[0].header("x-api-key"), got[0].header("x-tenant")), ("k123", "acme"));
    assert_eq!(got[0].header("content-type"), "application/json");
    assert_eq!(got[0].uri, "/hdr?tenant=42&x=y", "the query string is kept");
}
