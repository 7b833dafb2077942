//! The OpenAPI document is served, equals `docs/openapi.json`, and is in step with the code:
//! every route in the source is documented, every documented operation is answered by a route,
//! and no undocumented method is.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

fn doc() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("docs/openapi.json")).expect("valid JSON")
}

/// Paths registered in the API's source (`web::resource("…")` and `.route("…", …)`): the
/// `routes` functions of `api.rs` and of `sources.rs` (which `api.rs` mounts).
fn source_paths() -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    for file in ["api.rs", "sources.rs"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crmhook-server/src");
        let src = std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let start = src.find("fn routes(").unwrap_or_else(|| panic!("routes() in {file}"));
        let end = src[start..].find("\n}\n").unwrap_or_else(|| panic!("end of routes() in {file}"));
        let body = &src[start..start + end];
        paths.extend(body.split('"').skip(1).step_by(2).filter(|s| s.starts_with('/')).map(str::to_owned));
    }
    paths
}

#[test]
fn the_served_document_is_the_checked_in_one() {
    let server = Server::start();
    let r = http("GET", &server.url("/openapi.json"), &[], None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), doc());
    assert_eq!(doc()["openapi"], "3.1.0");
}

#[test]
fn the_document_and_the_routes_agree() {
    let doc = doc();
    let documented: BTreeMap<String, BTreeSet<String>> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .map(|(p, ops)| (p.clone(), ops.as_object().expect("operations").keys().cloned().collect()))
        .collect();
    let in_source = source_paths();
    let documented_paths: BTreeSet<String> = documented.keys().cloned().collect();
    assert_eq!(in_source, documented_paths, "routes in api.rs and sources.rs and paths in docs/openapi.json differ");

    let server = Server::start();
    let concrete = |p: &str| {
        p.replace("/v1/events/{id}", "/v1/events/evt_00000000000000000000000000")
            .replace("/v1/targets/{id}", "/v1/targets/tgt_00000000000000000000000000")
            .replace("/v1/subscriptions/{id}", "/v1/subscriptions/sub_00000000000000000000000000")
            .replace("/v1/sources/{id}", "/v1/sources/src_00000000000000000000000000")
            .replace("/v1/rejected/{id}", "/v1/rejected/rej_00000000000000000000000000")
            .replace("/v1/keys/{id}", "/v1/keys/key_00000000000000000000000000")
            .replace("/in/{id}", "/in/src_00000000000000000000000000")
    };
    for (path, methods) in &documented {
        let url = server.url(&concrete(path));
        for method in ["get", "post", "patch", "delete", "put"] {
            let token = if path == "/v1/events" && method == "post" { INGEST } else { ADMIN };
            let bearer = format!("Bearer {token}");
            let headers = [("Authorization", bearer.as_str()), ("Content-Type", "application/json")];
            let body = (method != "get" && method != "delete").then_some(&b"{}"[..]);
            if path == "/v1/stream" && method == "get" {
                let r = ureq::get(&url).set("Authorization", &bearer).call().expect("stream opens");
                assert_eq!(r.status(), 200);
                continue;
            }
            let r = http(&method.to_uppercase(), &url, &headers, body);
            let unrouted = r.status == 405 || (r.status == 404 && r.text.contains("no resource at"));
            if methods.contains(method) {
                assert!(!unrouted, "{method} {path} is documented but not routed: {} {}", r.status, r.text);
            } else {
                assert_eq!(r.status, 405, "{method} {path} is not documented but answers {}", r.status);
            }
        }
    }
}

/// Where `value` breaks `schema` (the subset of JSON Schema the document uses: `$ref`, `type`,
/// `const`, `enum`, `properties`, `required`, `additionalProperties`, `items`, `allOf`,
/// `oneOf`, `anyOf`, `minimum`, `maximum`), each as a JSON pointer and why; empty when it holds.
fn breaks(doc: &Value, schema: &Value, value: &Value, at: &str) -> Vec<String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/");
        return breaks(doc, &doc["components"]["schemas"][name], value, at);
    }
    let mut out = Vec::new();
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let is = |t: &str| match t {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => false,
    };
    if !types.is_empty() && !types.iter().any(|t| is(t)) {
        out.push(format!("{at}: {value} is not of type {types:?}"));
        return out;
    }
    if let Some(c) = schema.get("const") {
        if c != value {
            out.push(format!("{at}: {value} is not {c}"));
        }
    }
    if let Some(e) = schema["enum"].as_array() {
        if !e.contains(value) {
            out.push(format!("{at}: {value} is not one of {e:?}"));
        }
    }
    if let (Some(n), Some(min)) = (value.as_f64(), schema["minimum"].as_f64()) {
        if n < min {
            out.push(format!("{at}: {n} < {min}"));
        }
    }
    if let (Some(n), Some(max)) = (value.as_f64(), schema["maximum"].as_f64()) {
        if n > max {
            out.push(format!("{at}: {n} > {max}"));
        }
    }
    for sub in schema["allOf"].as_array().into_iter().flatten() {
        out.extend(breaks(doc, sub, value, at));
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(subs) = schema[key].as_array() {
            if !subs.iter().any(|s| breaks(doc, s, value, at).is_empty()) {
                out.push(format!("{at}: {value} matches none of its {key}"));
            }
        }
    }
    if let Some(object) = value.as_object() {
        for name in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if !object.contains_key(name) {
                out.push(format!("{at}: `{name}` is required but missing"));
            }
        }
        let properties = schema["properties"].as_object();
        for (name, v) in object {
            let here = format!("{at}/{name}");
            match (properties.and_then(|p| p.get(name)), &schema["additionalProperties"]) {
                (Some(s), _) => out.extend(breaks(doc, s, v, &here)),
                (None, Value::Bool(false)) => out.push(format!("{here}: not a documented member")),
                (None, extra @ Value::Object(_)) => out.extend(breaks(doc, extra, v, &here)),
                (None, _) => {}
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, v) in array.iter().enumerate() {
            out.extend(breaks(doc, items, v, &format!("{at}/{i}")));
        }
    }
    out
}

#[test]
fn the_schema_checker_finds_what_breaks_a_schema() {
    let doc = doc();
    let sub = json!({"$ref": "#/components/schemas/Subscription"});
    let good = json!({"id": "sub_x", "target_id": "tgt_x", "event_types": [], "kanban_ids": [],
        "field_names": [], "filters": [], "version_major": null, "created_at": "2026-12-07T00:00:00Z"});
    assert_eq!(breaks(&doc, &sub, &good, ""), Vec::<String>::new());
    let mut bad = good.clone();
    bad["version_major"] = Value::String("1".into());
    bad["extra"] = Value::Bool(true);
    bad.as_object_mut().expect("object").remove("id");
    assert_eq!(breaks(&doc, &sub, &bad, "").len(), 3, "{:?}", breaks(&doc, &sub, &bad, ""));
}

/// The answers of a running server match the document: each request's status is one the
/// document lists for its operation, and each JSON answer holds to the operation's schema for
/// that status (a docs audit, 2026-12-07, found every subscription's answer outside its schema:
/// `version_major: null` where an integer was documented).
#[test]
fn the_answers_hold_to_the_documented_schemas() {
    let doc = doc();
    let server = Server::start();
    let rcv = Receiver::start();
    rcv.set_default("/ok", status(200));
    // What the answers are read from: a target, subscriptions (one with every member null), an
    // event delivered, a source with a rejected piece, a key.
    let mut checked = 0;
    let mut check = |method: &str, template: &str, path: &str, token: &str, body: Option<Value>| -> Value {
        let bearer = format!("Bearer {token}");
        let headers = [("Authorization", bearer.as_str()), ("Content-Type", "application/json")];
        let bytes = body.map(|b| serde_json::to_vec(&b).expect("json"));
        let r = http(method, &server.url(path), &headers, bytes.as_deref());
        let op = &doc["paths"][template][method.to_lowercase()];
        assert!(op.is_object(), "{method} {template} is not documented");
        let documented = &op["responses"][r.status.to_string()];
        assert!(documented.is_object(), "{method} {path} answered {} (not documented): {}", r.status, r.text);
        checked += 1;
        let schema = &documented["content"]["application/json"]["schema"];
        if schema.is_null() || r.text.is_empty() {
            return Value::Null;
        }
        let answer = r.json();
        let broken = breaks(&doc, schema, &answer, "");
        assert!(broken.is_empty(), "{method} {path} ({}): {broken:#?}\n{answer:#}", r.status);
        answer
    };
    let target = check("POST", "/v1/targets", "/v1/targets", ADMIN, Some(json!({"name": "t", "url": rcv.url("/ok")})));
    let tid = target["id"].as_str().expect("id").to_owned();
    // Every target view has its health (API.md), the creation's answer too (not before 2026-12-07).
    assert_eq!(target["health"]["pending"], 0, "{target}");
    let t = format!("/v1/targets/{tid}");
    let sub = check("POST", "/v1/subscriptions", "/v1/subscriptions", ADMIN, Some(json!({"target_id": tid})));
    let nulls = json!({"target_id": tid, "event_types": null, "kanban_ids": null, "field_names": null, "filters": null, "version_major": null});
    check("POST", "/v1/subscriptions", "/v1/subscriptions", ADMIN, Some(nulls));
    let s = format!("/v1/subscriptions/{}", sub["id"].as_str().expect("id"));
    let ack = check("POST", "/v1/events", "/v1/events", INGEST, Some(maia("crm_field_update", json!({}))));
    let eid = ack["events"][0]["id"].as_str().expect("id").to_owned();
    rcv.wait_count("/ok", 1, Duration::from_secs(20));
    let source = check("POST", "/v1/sources", "/v1/sources", ADMIN, Some(json!({"name": "mx", "kind": "maximizer"})));
    let src = source["id"].as_str().expect("id").to_owned();
    let key = source["key"].as_str().unwrap_or_default().to_owned();
    // A Maximizer request with one envelope and one piece that is not one: the piece is kept.
    let mx = json!([{"Id": "x1", "Entity": "Opportunity", "Data": {"Op": "Update", "New": {}, "Original": {}, "Version": 1}}, 5]);
    check("POST", "/in/{id}", &format!("/in/{src}?key={key}"), "", Some(mx));
    let rejected = check("GET", "/v1/rejected", "/v1/rejected", ADMIN, None);
    let new_key = check("POST", "/v1/keys", "/v1/keys", ADMIN, Some(json!({"name": "ops", "role": "operator"})));
    let kid = new_key["id"].as_str().expect("id").to_owned();
    for (template, path) in [
        ("/v1/targets", "/v1/targets".to_owned()),
        ("/v1/targets/{id}", t.clone()),
        ("/v1/targets/{id}/deliveries", format!("{t}/deliveries")),
        ("/v1/targets/{id}/stats", format!("{t}/stats")),
        ("/v1/subscriptions", "/v1/subscriptions".to_owned()),
        ("/v1/subscriptions/{id}", s.clone()),
        ("/v1/events", "/v1/events".to_owned()),
        ("/v1/events/{id}", format!("/v1/events/{eid}")),
        ("/v1/events/facets", "/v1/events/facets".to_owned()),
        ("/v1/stats/ingest", "/v1/stats/ingest".to_owned()),
        ("/v1/sources", "/v1/sources".to_owned()),
        ("/v1/sources/{id}", format!("/v1/sources/{src}")),
        ("/v1/audit", "/v1/audit".to_owned()),
        ("/v1/keys", "/v1/keys".to_owned()),
        ("/v1/keys/{id}", format!("/v1/keys/{kid}")),
        ("/v1/me", "/v1/me".to_owned()),
        ("/healthz", "/healthz".to_owned()),
        ("/readyz", "/readyz".to_owned()),
    ] {
        check("GET", template, &path, ADMIN, None);
    }
    if let Some(rid) = rejected["rejected"][0]["id"].as_str().or(rejected["items"][0]["id"].as_str()) {
        check("GET", "/v1/rejected/{id}", &format!("/v1/rejected/{rid}"), ADMIN, None);
    }
    check("PATCH", "/v1/targets/{id}", &t, ADMIN, Some(json!({"timeout_ms": 2000})));
    check("PATCH", "/v1/subscriptions/{id}", &s, ADMIN, Some(json!({"version_major": null})));
    check("POST", "/v1/subscriptions/preview", "/v1/subscriptions/preview", ADMIN, Some(json!({"target_id": tid})));
    check("POST", "/v1/events/{id}/redeliver", &format!("/v1/events/{eid}/redeliver"), ADMIN, Some(json!({})));
    check("POST", "/v1/targets/{id}/test", &format!("{t}/test"), ADMIN, Some(json!({})));
    check("POST", "/v1/targets/{id}/rotate-secret", &format!("{t}/rotate-secret"), ADMIN, Some(json!({})));
    check("POST", "/v1/sources/{id}/rotate-key", &format!("/v1/sources/{src}/rotate-key"), ADMIN, Some(json!({})));
    // Refusals are documented too: a target that does not exist, a body that is not valid.
    check("GET", "/v1/targets/{id}", "/v1/targets/tgt_00000000000000000000000000", ADMIN, None);
    check("POST", "/v1/targets", "/v1/targets", ADMIN, Some(json!({"name": "t"})));
    check("DELETE", "/v1/subscriptions/{id}", &s, ADMIN, None);
    check("DELETE", "/v1/targets/{id}", &t, ADMIN, None);
    assert!(checked >= 35, "{checked} answers checked");
}
