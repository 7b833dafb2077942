//! What a CRM, a key holder or a receiver sent reaches the operator's terminal as text; names
//! an admin gives are refused with control characters.

use super::*;

#[test]
fn names_with_control_characters_are_refused() {
    let server = Server::start();
    let refused = |r: Resp| {
        assert_eq!(r.status, 422, "{}", r.text);
        assert_eq!(r.json()["field"], "name", "{}", r.text);
        assert!(r.json()["detail"].as_str().is_some_and(|d| d.contains("control characters")), "{}", r.text);
    };
    let url = "http://127.0.0.1:9/hook";
    for name in ["a\u{0}b", "crm\u{1b}[2J", "a\nb", "a\u{7f}", "a\u{9b}31m"] {
        refused(server.admin("POST", "/v1/targets", Some(&json!({"name": name, "url": url}))));
        refused(server.admin("POST", "/v1/sources", Some(&json!({"name": name, "kind": "maia"}))));
    }
    // A rename is held to the same rule; the name around spaces is trimmed as before.
    let (tid, _) = server.wire(url, None, json!({"name": "  crm eu  "}));
    refused(server.admin("PATCH", &format!("/v1/targets/{tid}"), Some(&json!({"name": "x\u{7}"}))));
    assert_eq!(server.admin("GET", &format!("/v1/targets/{tid}"), None).json()["name"], "crm eu");
    let r = server.admin("POST", "/v1/sources", Some(&json!({"name": "maia", "kind": "maia"})));
    assert_eq!(r.status, 201, "{}", r.text);
    let src = r.json()["id"].as_str().expect("id").to_owned();
    refused(server.admin("PATCH", &format!("/v1/sources/{src}"), Some(&json!({"name": "m\u{1b}]0;t\u{7}"}))));
}
