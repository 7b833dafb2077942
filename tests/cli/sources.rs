//! Sources from the command line: creating, showing, rotating, disabling, updating and deleting
//! them, their events, and the pieces a source rejected (`rejected list`, `rejected show`).

use super::*;

/// A Maximizer element that is a valid event.
fn maximizer_element(id: &str) -> String {
    format!(
        r#"{{"Id":"{id}","Timestamp":"2024-09-20T00:01:29.5149836Z","WorkspaceId":"w1","Recipients":[],"Entity":"Opportunity","Data":{{"Op":"Update","Original":{{"Revenue":12000.00}},"New":{{}},"Version":"1.1"}}}}"#
    )
}

/// Posts `body` to a maximizer source's ingest URL with its key.
fn post_to_source(ingest_url: &str, key: &str, body: &str) -> Resp {
    http("POST", &format!("{ingest_url}?key={key}"), &[("Content-Type", "application/json")], Some(body.as_bytes()))
}

#[test]
fn sources_from_the_command_line() {
    let server = Server::start();
    // A maximizer source, created for people: the key and Maximizer's target URL are printed once.
    let text = succeeded(&crmhook(&server, &["sources", "create", "--name", "max-prod", "--kind", "maximizer"]));
    assert!(text.starts_with("ID") && text.contains("INGEST_URL") && text.contains("max-prod"), "{text}");
    let key = text
        .lines()
        .find_map(|l| l.strip_prefix("key: "))
        .and_then(|l| l.split_whitespace().next())
        .expect("the key is printed")
        .to_owned();
    assert!(key.starts_with("mxk_") && text.contains("shown only this once"), "{text}");
    let listed = server.admin("GET", "/v1/sources", None).json();
    let max = listed["sources"][0].clone();
    let (max_id, ingest_url) = (max["id"].as_str().expect("id"), max["ingest_url"].as_str().expect("url"));
    assert!(text.contains(&format!("ingest URL: {ingest_url}")), "{text}");
    assert!(text.contains(&format!("Maximizer's target URL: {ingest_url}?key={key}")), "{text}");
    assert_eq!(ingest_url, format!("{}/in/{max_id}", server.base));

    // A maia source with --json, checked against the API; neither shows a key or secret later.
    let maia_src = json_of(&crmhook(
        &server,
        &["sources", "create", "--name", "maia-prod", "--kind", "maia", "--maia-secret", "maia-s3cret", "--json"],
    ));
    let maia_id = maia_src["id"].as_str().expect("id").to_owned();
    assert_eq!(maia_src["kind"], "maia");
    assert_eq!(maia_src["maia_secret_set"], true);
    assert!(maia_src.get("key").is_none());
    let api = server.admin("GET", &format!("/v1/sources/{maia_id}"), None).json();
    assert_eq!(api, maia_src);
    let list = json_of(&crmhook(&server, &["sources", "list", "--json"]));
    assert_eq!(list, server.admin("GET", "/v1/sources", None).json());
    assert_eq!(list["sources"].as_array().map(Vec::len), Some(2));
    let table = succeeded(&crmhook(&server, &["sources", "list"]));
    assert!(table.starts_with("ID") && table.contains("ENABLED") && table.contains("INGEST_URL"), "{table}");
    assert!(table.contains(max_id) && table.contains(&maia_id) && table.contains(ingest_url), "{table}");
    assert!(!table.contains("mxk_") && !table.contains("maia-s3cret"), "{table}");
    let shown = succeeded(&crmhook(&server, &["sources", "show", &maia_id]));
    assert!(shown.contains(&maia_id) && shown.contains("maia-prod") && !shown.contains("maia-s3cret"), "{shown}");

    // The key works; rotate-key gives a new one and the old one stops at once.
    assert_eq!(post_to_source(ingest_url, &key, &format!("[{}]", maximizer_element("a1"))).status, 200);
    let rotated = json_of(&crmhook(&server, &["sources", "rotate-key", max_id, "--json"]));
    let new_key = rotated["key"].as_str().expect("a new key").to_owned();
    assert_ne!(new_key, key);
    assert_eq!(post_to_source(ingest_url, &key, &format!("[{}]", maximizer_element("a2"))).status, 401);
    assert_eq!(post_to_source(ingest_url, &new_key, &format!("[{}]", maximizer_element("a3"))).status, 200);
    // A maia source has no key to rotate.
    let out = crmhook(&server, &["sources", "rotate-key", &maia_id]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("409"), "{out:?}");

    // Disabled: the API says so and posts are refused; enabled again, they are taken.
    let disabled = json_of(&crmhook(&server, &["sources", "disable", max_id, "--json"]));
    assert_eq!(disabled["enabled"], false);
    assert_eq!(server.admin("GET", &format!("/v1/sources/{max_id}"), None).json()["enabled"], false);
    assert_eq!(post_to_source(ingest_url, &new_key, &format!("[{}]", maximizer_element("a4"))).status, 401);
    let text = succeeded(&crmhook(&server, &["sources", "enable", max_id]));
    assert!(text.contains(max_id) && text.contains("true"), "{text}");
    assert_eq!(server.admin("GET", &format!("/v1/sources/{max_id}"), None).json()["enabled"], true);

    // Update: a new name; the maia secret cleared, then set again.
    let updated = json_of(&crmhook(&server, &["sources", "update", &maia_id, "--name", "maia-eu", "--json"]));
    assert_eq!(updated["name"], "maia-eu");
    let cleared = succeeded(&crmhook(&server, &["sources", "update", &maia_id, "--clear-maia-secret"]));
    assert!(cleared.contains("no MAIA secret yet"), "{cleared}");
    assert_eq!(server.admin("GET", &format!("/v1/sources/{maia_id}"), None).json()["maia_secret_set"], false);
    succeeded(&crmhook(&server, &["sources", "update", &maia_id, "--maia-secret", "other-s3cret"]));
    let api = server.admin("GET", &format!("/v1/sources/{maia_id}"), None).json();
    assert_eq!((api["name"].as_str(), api["maia_secret_set"].as_bool()), (Some("maia-eu"), Some(true)));
    assert!(!crmhook(&server, &["sources", "update", &maia_id]).status.success(), "nothing to update is an error");

    // Events by source, and the source in `events show`.
    let events = json_of(&crmhook(&server, &["events", "list", "--source", max_id, "--json"]));
    let ids: Vec<&str> = events["events"].as_array().expect("events").iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids.len(), 2, "{events}");
    assert_eq!(json_of(&crmhook(&server, &["events", "list", "--source", &maia_id, "--json"]))["events"], json!([]));
    let shown = succeeded(&crmhook(&server, &["events", "show", ids[0]]));
    assert!(shown.contains(&format!("source {max_id}")), "{shown}");

    succeeded(&crmhook(&server, &["sources", "delete", &maia_id]));
    assert_eq!(server.admin("GET", &format!("/v1/sources/{maia_id}"), None).status, 404);
}

#[test]
fn rejected_pieces_from_the_command_line() {
    let server = Server::start();
    let r = server.admin("POST", "/v1/sources", Some(&json!({"name": "max", "kind": "maximizer"})));
    assert_eq!(r.status, 201, "{}", r.text);
    let source = r.json();
    let src = source["id"].as_str().expect("id");
    let (ingest_url, key) = (source["ingest_url"].as_str().expect("url"), source["key"].as_str().expect("key"));
    // The second element has no WorkspaceId: it is kept in the quarantine with its exact bytes.
    let bad = r#"{"Id":"b1","Timestamp":"t" ,  "Entity":"Opportunity", "Note": "12000.00"}"#;
    let body = format!("[{},\n {bad}]", maximizer_element("g1"));
    let resp = post_to_source(ingest_url, key, &body);
    assert_eq!(resp.status, 200, "{}", resp.text);
    let ack = resp.json();
    assert_eq!((ack["accepted"].as_u64(), ack["rejected"].as_u64()), (Some(1), Some(1)), "{ack}");
    let rej = ack["rejections"][0]["id"].as_str().expect("rej id").to_owned();

    let table = succeeded(&crmhook(&server, &["rejected", "list"]));
    assert!(table.starts_with("ID") && table.contains("SOURCE") && table.contains("REASON"), "{table}");
    let row = table.lines().find(|l| l.contains(&rej)).expect("the piece is listed");
    assert!(row.contains(src) && row.contains("WorkspaceId"), "{row}");
    let listed = json_of(&crmhook(&server, &["rejected", "list", "--source", src, "--limit", "10", "--json"]));
    assert_eq!(listed, server.admin("GET", &format!("/v1/rejected?source_id={src}&limit=10"), None).json());
    assert_eq!(listed["rejected"][0]["id"], rej.as_str());
    assert_eq!(listed["rejected"][0]["index"], 1);
    let after = json_of(&crmhook(&server, &["rejected", "list", "--after", &rej, "--json"]));
    assert_eq!(after["rejected"], json!([]));

    let shown = succeeded(&crmhook(&server, &["rejected", "show", &rej]));
    assert!(shown.contains(&rej) && shown.contains(src) && shown.contains("WorkspaceId"), "{shown}");
    assert!(shown.lines().any(|l| l == bad), "the exact bytes are shown: {shown}");
    let shown = json_of(&crmhook(&server, &["rejected", "show", &rej, "--json"]));
    assert_eq!(shown["body"], bad);

    // Still not an event: exit code 1 and the server's reason.
    let out = crmhook(&server, &["rejected", "retry", &rej]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("still not an event") && text.contains("WorkspaceId"), "{text}");
    let out = crmhook(&server, &["rejected", "retry", &rej, "--json"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let problem: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(problem["status"], 422);
    let out = crmhook(&server, &["rejected", "show", "rej_00000000000000000000000000"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("404"), "{out:?}");
}
