//! The OpenAPI document is served, equals `docs/openapi.json`, and is in step with the code:
//! every route in the source is documented, every documented operation is answered by a route,
//! and no undocumented method is.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;
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
