//! What the console's subscription builder uses: a subscription edited in place
//! (`PATCH /v1/subscriptions/{id}`: the next events are matched with the edit, by the running
//! target, and after a restart), tried out on the last events (`POST /v1/subscriptions/preview`)
//! and the values the last events hold (`GET /v1/events/facets`); and their commands,
//! `crmhook subscriptions update|preview` and `crmhook targets update`.

mod support;

use std::process::Output;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const DELIVERY: Duration = Duration::from_secs(10);

fn ok(r: Resp, status: u16) -> Value {
    assert_eq!(r.status, status, "{}", r.text);
    r.json()
}

/// A 422 problem, answering the member it names.
fn field_of(r: Resp) -> String {
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.content_type().starts_with("application/problem+json"), "{}", r.content_type());
    r.json()["field"].as_str().unwrap_or_default().to_owned()
}

fn field_update(field: &str) -> Value {
    maia("crm_field_update", json!({"fieldName": field}))
}

fn tag(ev: &Value) -> String {
    ev["recordId"].as_str().or(ev[0]["Id"].as_str()).expect("tag").to_owned()
}

fn create_key(server: &Server, role: &str) -> String {
    let k = ok(server.admin("POST", "/v1/keys", Some(&json!({"name": format!("k{}", unique()), "role": role}))), 201);
    k["key"].as_str().expect("key").to_owned()
}

#[test]
fn an_edit_applies_to_the_next_events_at_once_is_stored_and_audited() {
    let mut server = Server::start();
    let rcv = Receiver::start();
    let (tid, _) = server.wire(
        &rcv.url("/r"),
        Some(json!({"event_types": ["crm_field_update"], "field_names": ["Email"], "kanban_ids": ["kanban_1704067200000_abc123def"]})),
        json!({}),
    );
    let subs = ok(server.admin("GET", &format!("/v1/subscriptions?target_id={tid}"), None), 200);
    let sid = subs["subscriptions"][0]["id"].as_str().expect("sub").to_owned();
    let before = subs["subscriptions"][0].clone();
    let email = field_update("Email");
    server.post_ok(&email);
    rcv.wait_tag("/r", &tag(&email), DELIVERY);

    let edited =
        ok(server.admin("PATCH", &format!("/v1/subscriptions/{sid}"), Some(&json!({"field_names": ["Phone"]}))), 200);
    assert_eq!(edited["id"], sid.as_str());
    assert_eq!(edited["target_id"], tid.as_str());
    assert_eq!(edited["field_names"], json!(["Phone"]));
    assert_eq!(edited["event_types"], before["event_types"], "members not given are kept");
    assert_eq!(edited["kanban_ids"], before["kanban_ids"]);
    assert_eq!(edited["created_at"], before["created_at"]);

    // The next events: one only the old conditions match, then one only the new ones match.
    let old_only = field_update("Email");
    let new_only = field_update("Phone");
    server.post_ok(&old_only);
    server.post_ok(&new_only);
    rcv.wait_tag("/r", &tag(&new_only), DELIVERY);
    server.wait_settled(&tid, DELIVERY);
    assert_eq!(rcv.tags("/r"), vec![tag(&email), tag(&new_only)], "the edit was not in force for the next events");

    // `null` clears a member; the answer is the whole subscription, and a read shows it.
    let cleared =
        ok(server.admin("PATCH", &format!("/v1/subscriptions/{sid}"), Some(&json!({"kanban_ids": null}))), 200);
    assert_eq!(cleared["kanban_ids"], json!([]));
    assert_eq!(cleared["field_names"], json!(["Phone"]));
    assert_eq!(ok(server.admin("GET", &format!("/v1/subscriptions/{sid}"), None), 200), cleared);

    // Audited with before and after.
    let audit = ok(server.admin("GET", "/v1/audit?limit=1000", None), 200);
    let updates: Vec<&Value> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["action"] == "subscription.update" && e["subject"] == sid.as_str())
        .collect();
    assert_eq!(updates.len(), 2, "{audit}");
    assert_eq!(updates[0]["before"]["field_names"], json!(["Email"]));
    assert_eq!(updates[0]["after"]["field_names"], json!(["Phone"]));

    // Stored: after a restart the edit is what the target matches with.
    server.restart();
    assert_eq!(ok(server.admin("GET", &format!("/v1/subscriptions/{sid}"), None), 200), cleared);
    let old_again = field_update("Email");
    let other_kanban = maia("crm_field_update", json!({"fieldName": "Phone", "kanbanId": "kanban_other"}));
    server.post_ok(&old_again);
    server.post_ok(&other_kanban);
    rcv.wait_tag("/r", &tag(&other_kanban), DELIVERY);
    server.wait_settled(&tid, DELIVERY);
    assert_eq!(rcv.tags("/r"), vec![tag(&email), tag(&new_only), tag(&other_kanban)]);
}

#[test]
fn a_bad_edit_is_a_422_naming_the_member_and_changes_nothing() {
    let server = Server::start();
    let rcv = Receiver::start();
    let (tid, _) = server.wire(&rcv.url("/r"), Some(json!({"event_types": ["ai_pause"]})), json!({}));
    let (other, _) = server.wire(&rcv.url("/o"), None, json!({}));
    let sub =
        ok(server.admin("GET", &format!("/v1/subscriptions?target_id={tid}"), None), 200)["subscriptions"][0].clone();
    let sid = sub["id"].as_str().expect("sub").to_owned();
    let path = format!("/v1/subscriptions/{sid}");
    let patch = |body: Value| server.admin("PATCH", &path, Some(&body));
    for (body, member) in [
        (json!({"target_id": other}), "target_id"),
        (json!({"event_types": ["crm_field_exploded"]}), "event_types"),
        (json!({"kanban_ids": "k1"}), "kanban_ids"),
        (
            json!({"filters": [{"path": "/a", "op": "eq", "value": 1}, {"path": "a", "op": "eq", "value": 1}]}),
            "filters[1]",
        ),
        (json!({"filters": [{"path": "/a", "op": "like", "value": 1}]}), "filters[0]"),
        (json!({"version_major": -1}), "version_major"),
        (json!({"colour": "red"}), "colour"),
        (json!({"id": "sub_00000000000000000000000000"}), "id"),
    ] {
        assert_eq!(field_of(patch(body.clone())), member, "{body}");
    }
    // The same target may be named; a body that is not an object is a 4xx too.
    ok(patch(json!({"target_id": tid})), 200);
    let r = server.admin("PATCH", &path, Some(&json!([1])));
    assert!((400..500).contains(&r.status), "{}", r.text);
    assert_eq!(ok(server.admin("GET", &path, None), 200), sub, "a refused edit changed the subscription");

    // Unknown ids.
    assert_eq!(server.admin("PATCH", "/v1/subscriptions/sub_00000000000000000000000000", Some(&json!({}))).status, 404);
    assert_eq!(server.admin("PATCH", "/v1/subscriptions/nope", Some(&json!({}))).status, 404);
    ok(server.admin("DELETE", &path, None), 204);
    assert_eq!(patch(json!({"event_types": ["ai_pause"]})).status, 404);

    // An operator key reads but does not edit.
    let operator = create_key(&server, "operator");
    let sub2 = ok(server.admin("POST", "/v1/subscriptions", Some(&json!({"target_id": other}))), 201)["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let r = server.request(
        "PATCH",
        &format!("/v1/subscriptions/{sub2}"),
        Some(&operator),
        Some(&json!({"event_types": ["ai_pause"]})),
    );
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(ok(server.admin("GET", &format!("/v1/subscriptions/{sub2}"), None), 200)["event_types"], json!([]));
}

fn envelope(id: &str, entity: &str, revenue: f64) -> Value {
    let mut e: Value = serde_json::from_str(&sample("opportunity_stage_change")).expect("json");
    e[0]["Id"] = json!(id);
    e[0]["Entity"] = json!(entity);
    e[0]["Data"]["Original"]["Revenue"] = json!(revenue);
    e
}

#[test]
fn a_preview_shows_which_of_the_last_events_a_subscription_would_match() {
    let server = Server::start();
    let big = envelope("22222222-0000-0000-0000-000000000001", "Opportunity", 50000.0);
    let small = envelope("22222222-0000-0000-0000-000000000002", "Opportunity", 10.0);
    let contact = envelope("22222222-0000-0000-0000-000000000003", "Contact", 90000.0);
    let email = field_update("Email");
    let pause = maia("ai_pause", json!({}));
    let bigger = envelope("22222222-0000-0000-0000-000000000004", "Opportunity", 70000.0);
    let mut seqs = Vec::new();
    for ev in [&big, &email, &small, &contact, &pause, &bigger] {
        seqs.push(server.post_ok(ev)["events"][0]["seq"].as_u64().expect("seq"));
    }
    let preview = |last: Option<&str>, body: Value| {
        let q = last.map(|n| format!("?last={n}")).unwrap_or_default();
        server.admin("POST", &format!("/v1/subscriptions/preview{q}"), Some(&body))
    };
    let big_ones = json!({"event_types": ["Opportunity.*"], "filters": [{"path": "/Data/Original/Revenue", "op": "gt", "value": 10000}]});
    let r = ok(preview(None, big_ones.clone()), 200);
    assert_eq!(r["scanned"], 6);
    assert_eq!(r["matched"], 2);
    let got: Vec<u64> =
        r["events"].as_array().expect("events").iter().map(|e| e["seq"].as_u64().expect("seq")).collect();
    assert_eq!(got, vec![seqs[5], seqs[0]], "newest first");
    let first = &r["events"][0];
    assert_eq!(first["type"], "Opportunity.Update");
    assert!(first["id"].as_str().is_some_and(|i| i.starts_with("evt_")), "{first}");
    assert!(first["received_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{first}");
    assert!(first["record_id"].is_string(), "{first}");
    assert!(first.get("payload").is_none(), "no payload in a preview: {first}");

    // MAIA conditions, over the same mix: the field update, and what passes `field_names`.
    let r = ok(preview(None, json!({"field_names": ["Email"], "event_types": ["crm_field_update", "ai_pause"]})), 200);
    let got: Vec<u64> =
        r["events"].as_array().expect("events").iter().map(|e| e["seq"].as_u64().expect("seq")).collect();
    assert_eq!(got, vec![seqs[4], seqs[1]]);
    assert_eq!(r["events"][1]["record_id"], email["recordId"]);
    let r = ok(preview(None, json!({"field_names": ["Phone"], "event_types": ["crm_field_update"]})), 200);
    assert_eq!((r["matched"].clone(), r["events"].clone()), (json!(0), json!([])));

    // `last` bounds what is read: the last 2 events, of which one matches.
    let r = ok(preview(Some("2"), big_ones.clone()), 200);
    assert_eq!((r["scanned"].as_u64(), r["matched"].as_u64()), (Some(2), Some(1)));
    assert_eq!(r["events"][0]["seq"].as_u64(), Some(seqs[5]));
    assert_eq!(ok(preview(Some("1000"), json!({})), 200)["scanned"], 6);
    assert_eq!(field_of(preview(Some("1001"), json!({}))), "last");
    assert_eq!(field_of(preview(Some("0"), json!({}))), "last");
    assert_eq!(field_of(preview(Some("x"), json!({}))), "last");

    // The body is checked as a creation's; a target, when named, must exist.
    assert_eq!(field_of(preview(None, json!({"filters": [{"path": "/a", "op": "like", "value": 1}]}))), "filters[0]");
    assert_eq!(field_of(preview(None, json!({"event_types": ["nope"]}))), "event_types");
    assert_eq!(field_of(preview(None, json!({"target_id": "tgt_00000000000000000000000000"}))), "target_id");
    assert_eq!(field_of(preview(None, json!({"colour": 1}))), "colour");
    let rcv = Receiver::start();
    let (tid, _) = server.wire(&rcv.url("/r"), None, json!({}));
    let r = ok(preview(None, json!({"target_id": tid, "event_types": ["ai_pause"]})), 200);
    assert_eq!(r["events"][0]["seq"].as_u64(), Some(seqs[4]));
    // Nothing was stored, and an operator key may preview.
    assert_eq!(ok(server.admin("GET", "/v1/subscriptions", None), 200)["subscriptions"], json!([]));
    let operator = create_key(&server, "operator");
    let r = server.request("POST", "/v1/subscriptions/preview?last=3", Some(&operator), Some(&big_ones));
    assert_eq!(ok(r, 200)["matched"], 1);
}

#[test]
fn facets_count_the_values_of_the_last_events() {
    let server = Server::start();
    let empty = ok(server.admin("GET", "/v1/events/facets", None), 200);
    assert_eq!(empty["scanned"], 0);
    assert_eq!(empty["types"], json!([]));
    assert_eq!(
        empty["known_types"],
        json!(["crm_field_update", "crm_record_created", "crm_record_deleted", "ai_pause"])
    );
    for ev in [
        field_update("Email"),
        field_update("Email"),
        maia("crm_field_update", json!({"fieldName": "Phone", "kanbanId": "kanban_b"})),
        maia("crm_record_created", json!({"kanbanId": "kanban_b"})),
        maia("ai_pause", json!({})),
        envelope("33333333-0000-0000-0000-000000000001", "Opportunity", 1.0),
    ] {
        server.post_ok(&ev);
    }
    let f = ok(server.admin("GET", "/v1/events/facets", None), 200);
    assert_eq!(f["scanned"], 6);
    assert_eq!(
        f["types"],
        json!([
            {"type": "crm_field_update", "count": 3},
            {"type": "Opportunity.Update", "count": 1},
            {"type": "ai_pause", "count": 1},
            {"type": "crm_record_created", "count": 1}
        ])
    );
    assert_eq!(
        f["kanban_ids"],
        json!([{"value": "kanban_1704067200000_abc123def", "count": 2}, {"value": "kanban_b", "count": 2}])
    );
    assert_eq!(f["field_names"], json!([{"value": "Email", "count": 2}, {"value": "Phone", "count": 1}]));
    assert_eq!(f["known_types"], empty["known_types"]);
    let f_all = f;

    // `last` bounds what is read.
    let f = ok(server.admin("GET", "/v1/events/facets?last=2", None), 200);
    assert_eq!(f["scanned"], 2);
    assert_eq!(f["types"], json!([{"type": "Opportunity.Update", "count": 1}, {"type": "ai_pause", "count": 1}]));
    assert_eq!((f["kanban_ids"].clone(), f["field_names"].clone()), (json!([]), json!([])));
    assert_eq!(ok(server.admin("GET", "/v1/events/facets?last=10000", None), 200)["scanned"], 6);
    assert_eq!(field_of(server.admin("GET", "/v1/events/facets?last=10001", None)), "last");
    assert_eq!(field_of(server.admin("GET", "/v1/events/facets?last=-1", None)), "last");
    // An operator key may read them; an ingest key may not.
    let operator = create_key(&server, "operator");
    assert_eq!(ok(server.request("GET", "/v1/events/facets", Some(&operator), None), 200)["scanned"], 6);
    assert_eq!(server.request("GET", "/v1/events/facets", Some(INGEST), None).status, 403);

    // A test event is read but not counted: no subscription matches one (until 2026-12-07 the
    // console's pickers counted them among the values seen).
    let target =
        ok(server.admin("POST", "/v1/targets", Some(&json!({"name": "t", "url": "http://127.0.0.1:9/none"}))), 201);
    let test = format!("/v1/targets/{}/test", target["id"].as_str().expect("id"));
    assert!(server.admin("POST", &test, Some(&json!({"type": "crm_field_update"}))).json()["event"]["test"] == true);
    let with_test = ok(server.admin("GET", "/v1/events/facets", None), 200);
    assert_eq!(with_test["scanned"], 7);
    for list in ["types", "kanban_ids", "field_names"] {
        assert_eq!(with_test[list], f_all[list], "{list}");
    }
}

// ---- the commands --------------------------------------------------------------------------

/// A command that fails, answering what it said on stderr.
fn failed(out: &Output) -> String {
    assert!(!out.status.success(), "succeeded: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json_of(out: &Output) -> Value {
    serde_json::from_str(&succeeded(out)).expect("JSON output")
}

#[test]
fn targets_update_changes_the_fields_given_from_the_command_line() {
    let server = Server::start();
    let rcv = Receiver::start();
    let (tid, _) = server.wire(&rcv.url("/a"), Some(json!({})), json!({"headers": {"X-Old": "o"}}));
    let t = json_of(&crmhook(
        &server,
        &[
            "targets",
            "update",
            &tid,
            "--name",
            "renamed",
            "--timeout-ms",
            "5000",
            "--retry-schedule-ms",
            "100,200,300",
            "--ordered",
            "true",
            "--format",
            "maximizer",
            "--header",
            "X-A=1",
            "--header",
            "X-B: two=2",
            "--json",
        ],
    ));
    assert_eq!(t["id"], tid.as_str());
    assert_eq!(t["name"], "renamed");
    assert_eq!(t["timeout_ms"], 5000);
    assert_eq!(t["retry_schedule_ms"], json!([100, 200, 300]));
    assert_eq!(t["ordered"], true);
    assert_eq!(t["format"], "maximizer");
    assert_eq!(t["headers"], json!({"X-A": "<redacted>", "X-B": "<redacted>"}));
    // The headers are the receiver's to see.
    let ev = maia("crm_record_created", json!({}));
    server.post_ok(&ev);
    let got = rcv.wait_tag("/a", &tag(&ev), DELIVERY);
    assert_eq!((got[0].header("x-a"), got[0].header("x-b"), got[0].header("x-old")), ("1", "two=2", ""));

    // Paused and resumed; the table says so.
    let table = succeeded(&crmhook(&server, &["targets", "update", &tid, "--enabled", "false"]));
    assert!(table.contains(&tid) && table.contains("disabled"), "{table}");
    let t = json_of(&crmhook(
        &server,
        &["targets", "update", &tid, "--enabled", "true", "--clear-headers", "--format", "none", "--json"],
    ));
    assert_eq!(
        (t["enabled"].clone(), t["headers"].clone(), t["format"].clone()),
        (json!(true), json!({}), Value::Null)
    );
    let t = json_of(&crmhook(
        &server,
        &["targets", "update", &tid, "--target-url", &rcv.url("/b"), "--retry-schedule-ms", "none", "--json"],
    ));
    assert_eq!((t["url"].clone(), t["retry_schedule_ms"].clone()), (json!(rcv.url("/b")), json!([])));
    assert_eq!(ok(server.admin("GET", &format!("/v1/targets/{tid}"), None), 200)["name"], "renamed");

    // What cannot be sent is said plainly.
    assert!(failed(&crmhook(&server, &["targets", "update", &tid])).contains("nothing to change"));
    assert!(failed(&crmhook(&server, &["targets", "update", &tid, "--timeout-ms", "0"])).contains("timeout_ms"));
    assert!(failed(&crmhook(&server, &["targets", "update", &tid, "--header", "X-A=1", "--clear-headers"]))
        .contains("cannot be used with"));
    assert!(failed(&crmhook(&server, &["targets", "update", &tid, "--header", "nothing"])).contains("Name=value"));
    let unknown = failed(&crmhook(&server, &["targets", "update", "tgt_00000000000000000000000000", "--name", "x"]));
    assert!(unknown.contains("404"), "{unknown}");
}

#[test]
fn subscriptions_update_and_preview_from_the_command_line() {
    let server = Server::start();
    let rcv = Receiver::start();
    let (tid, _) = server.wire(
        &rcv.url("/r"),
        Some(json!({"event_types": ["crm_field_update"], "field_names": ["Email"], "version_major": 1})),
        json!({}),
    );
    let sid = ok(server.admin("GET", &format!("/v1/subscriptions?target_id={tid}"), None), 200)["subscriptions"][0]
        ["id"]
        .as_str()
        .expect("sub")
        .to_owned();
    let email = field_update("Email");
    let email_id = server.post_ok(&email)["events"][0]["id"].as_str().expect("id").to_owned();
    let phone = field_update("Phone");
    let phone_id = server.post_ok(&phone)["events"][0]["id"].as_str().expect("id").to_owned();
    server.post_ok(&maia("ai_pause", json!({})));

    // Preview: a table, newest first, then the counts; JSON with --json.
    let table = succeeded(&crmhook(
        &server,
        &["subscriptions", "preview", "--event-type", "crm_field_update", "--field-name", "Email", "--last", "10"],
    ));
    assert!(table.starts_with("SEQ") && table.contains(&email_id) && !table.contains(&phone_id), "{table}");
    assert!(table.contains(email["recordId"].as_str().expect("record")), "{table}");
    assert!(table.contains("matched 1 of the last 3 events"), "{table}");
    let v = json_of(&crmhook(
        &server,
        &[
            "subscriptions",
            "preview",
            "--target",
            &tid,
            "--filter",
            r#"{"path": "/fieldName", "op": "in", "value": ["Email", "Phone"]}"#,
            "--json",
        ],
    ));
    assert_eq!(v["matched"], 2);
    assert_eq!(
        (v["events"][0]["id"].as_str(), v["events"][1]["id"].as_str()),
        (Some(phone_id.as_str()), Some(email_id.as_str()))
    );
    let v = json_of(&crmhook(&server, &["subscriptions", "preview", "--last", "1", "--json"]));
    assert_eq!((v["scanned"].clone(), v["matched"].clone()), (json!(1), json!(1)));
    assert!(failed(&crmhook(&server, &["subscriptions", "preview", "--last", "5000"])).contains("last"));
    assert!(failed(&crmhook(
        &server,
        &["subscriptions", "preview", "--filter", r#"{"path": "x", "op": "eq", "value": 1}"#]
    ))
    .contains("filters[0]"));

    // Update: only what is given changes; --clear empties a member.
    let v = json_of(&crmhook(
        &server,
        &[
            "subscriptions",
            "update",
            &sid,
            "--field-name",
            "Phone",
            "--field-name",
            "Email",
            "--clear",
            "version-major",
            "--json",
        ],
    ));
    assert_eq!(v["id"], sid.as_str());
    assert_eq!(v["field_names"], json!(["Phone", "Email"]));
    assert_eq!(v["event_types"], json!(["crm_field_update"]));
    assert_eq!(v["version_major"], Value::Null);
    let table =
        succeeded(&crmhook(&server, &["subscriptions", "update", &sid, "--kanban-id", "kanban_b", "--target", &tid]));
    assert!(table.starts_with("ID") && table.contains(&sid) && table.contains("kanban_b"), "{table}");
    assert_eq!(
        ok(server.admin("GET", &format!("/v1/subscriptions/{sid}"), None), 200)["kanban_ids"],
        json!(["kanban_b"])
    );
    // The edit is in force: a Phone update on kanban_b is delivered.
    let next = maia("crm_field_update", json!({"fieldName": "Phone", "kanbanId": "kanban_b"}));
    server.post_ok(&next);
    rcv.wait_tag("/r", &tag(&next), DELIVERY);

    assert!(failed(&crmhook(&server, &["subscriptions", "update", &sid])).contains("nothing to change"));
    assert!(failed(&crmhook(&server, &["subscriptions", "update", &sid, "--kanban-id", "k", "--clear", "kanban-ids"]))
        .contains("--clear kanban-ids"));
    let (other, _) = server.wire(&rcv.url("/o"), None, json!({}));
    assert!(failed(&crmhook(&server, &["subscriptions", "update", &sid, "--target", &other])).contains("target_id"));
    assert!(failed(&crmhook(&server, &["subscriptions", "update", &sid, "--event-type", "nope"]))
        .contains("422 The request breaks a rule: unknown event type"));
    let unknown =
        failed(&crmhook(&server, &["subscriptions", "update", "sub_00000000000000000000000000", "--clear", "filters"]));
    assert!(unknown.contains("404"), "{unknown}");
}
