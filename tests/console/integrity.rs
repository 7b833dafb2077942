//! What the console keeps and shows exactly, where an audit of the console found it did not:
//! signing out leaves nothing of the session for the next key (the admin's audit trail, keys
//! and unredacted target URL stayed on screen for an operator signed in after); a subscription
//! saved unchanged keeps its filters' values (`null`, an object, a number past 2^53 were
//! rewritten) and is not sent at all; a number typed under `eq` stays a number under `gt`; and
//! an event's payload is shown as the CRM sent it (`12000.00`, `1e2`, `"\u00e9"` were
//! rewritten).

use super::*;

/// The page's own word on a script expression (its globals are shared with WebDriver's scripts).
fn page_value(browser: &Driver, expr: &str) -> Value {
    browser.execute(&format!("return {expr}"))
}

#[test]
fn signing_out_leaves_nothing_of_the_session_for_the_next_key() {
    let server = Server::start();
    // A URL with a query: an operator is shown it redacted.
    let (tid, _) = server.wire("http://127.0.0.1:9/in?token=q-s3cret&user=hook", None, json!({"name": "private"}));
    let r = server.admin("POST", "/v1/keys", Some(&json!({"name": "night-shift", "role": "operator"})));
    assert_eq!(r.status, 201, "{}", r.text);
    let operator = r.json()["key"].as_str().expect("key").to_owned();

    // The admin: the token gone from its field once signed in; the keys, the target (its whole
    // URL) and the audit trail on screen.
    let browser = signed_in(&server);
    assert_eq!(browser.property(&browser.wait("#token"), "value"), "", "the token stays in its field");
    browser.clicks("#tabs button[data-view='keys']");
    browser.wait("#keys tr.key .k-revoke");
    browser.clicks("#tabs button[data-view='webhooks']");
    browser.clicks(&format!("#center-targets li[data-id='{tid}'] .t-open"));
    browser.wait_text("#target-pane .t-url", "the whole URL", |t| t.contains("q-s3cret"));
    browser.clicks("#tabs button[data-view='audit']");
    browser.wait("#audit tr.audit");

    // Out, then in with the operator key in the same tab.
    browser.clicks("#signout");
    browser.wait_text("#conn", "signed out", |t| t == "signed out");
    browser.wait("#login:not([hidden]) #token");
    browser.set("#token", &operator);
    browser.clicks("#signin");
    browser.wait_text("#who", "the operator", |t| t.contains("night-shift") && t.contains("operator"));
    browser.wait_text("#conn", "the live stream", |t| t == "live");
    browser.wait(&format!("#targets tr[data-id='{tid}']"));

    // The Events view, and nothing of the admin's session.
    assert!(browser.displayed(&browser.wait("#view-events")), "the default view is shown");
    assert!(!browser.displayed(&browser.wait("#view-audit")), "the admin's audit view is still shown");
    assert!(browser.find_all("#audit tr, #keys tr").is_empty(), "the admin's audit entries or keys are in the page");
    assert!(browser.find("#target-pane .t-head").is_none(), "the admin's target pane is in the page");
    let html = browser.page_html();
    assert!(!html.contains("s3cret"), "the unredacted URL is in the page");
    assert_eq!(page_value(&browser, "openTarget"), Value::Null, "the script still holds the admin's target");
    assert_eq!(page_value(&browser, "centerTargets.length"), json!(0), "the script still holds the admin's targets");
    assert_eq!(browser.property(&browser.wait("#token"), "value"), "");
    // The operator's own view of the target: redacted.
    browser.clicks("#tabs button[data-view='webhooks']");
    browser.clicks(&format!("#center-targets li[data-id='{tid}'] .t-open"));
    let url = browser.wait_text("#target-pane .t-url", "the redacted URL", |t| t.contains("redacted"));
    assert!(!url.contains("s3cret"), "{url}");
}

/// `GET /v1/subscriptions/{id}`'s filters.
fn filters_of(server: &Server, sid: &str) -> Value {
    let r = server.admin("GET", &format!("/v1/subscriptions/{sid}"), None);
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["filters"].clone()
}

/// The audit trail's entries of `action` on `subject`.
fn audited(server: &Server, action: &str, subject: &str) -> usize {
    let page = server.admin("GET", "/v1/audit?limit=1000", None).json();
    let entries = page["entries"].as_array().expect("entries").iter();
    entries.filter(|e| e["action"] == action && e["subject"] == subject).count()
}

/// Opens the subscription's form from its target's pane; answers once its filters are drawn.
fn edit_subscription(browser: &Driver, tid: &str, sid: &str, rows: usize) {
    browser.clicks(&format!("#center-targets li[data-id='{tid}'] .t-open"));
    browser.clicks(&format!("#t-subs li.sub[data-id='{sid}'] .sub-edit"));
    browser.wait("#dlg-sub[open]");
    wait_for(Duration::from_secs(15), "the subscription's filters in the form", || {
        (browser.find_all("#sub-filters .filter-row").len() == rows).then_some(())
    });
}

/// Saves the subscription's form; answers once the dialog has closed.
fn save_subscription(browser: &Driver) {
    browser.clicks("#sub-form button[type=submit]");
    wait_for(Duration::from_secs(15), "the subscription's form closed", || {
        browser.find("#dlg-sub[open]").is_none().then_some(())
    });
}

#[test]
fn a_subscription_saved_unchanged_keeps_its_filter_values_exactly() {
    let server = Server::start();
    let (tid, _) = server.wire("http://127.0.0.1:9/subs", None, json!({}));
    // Written as text: `12000.00` as it stands, and a number past 2^53.
    let body = format!(
        r#"{{"target_id": "{tid}", "filters": [{{"path": "/a", "op": "eq", "value": null}},
            {{"path": "/b", "op": "eq", "value": {{"a": 1, "b": [2.50, "x"]}}}},
            {{"path": "/c", "op": "gt", "value": 12345678901234567890}},
            {{"path": "/d", "op": "gte", "value": 12000.00}}]}}"#
    );
    let r = post_text(&server, "/v1/subscriptions", ADMIN, &body);
    assert_eq!(r.status, 201, "{}", r.text);
    let sid = r.json()["id"].as_str().expect("id").to_owned();
    let before = filters_of(&server, &sid);
    let text_before = server.admin("GET", &format!("/v1/subscriptions/{sid}"), None).text;
    assert!(text_before.contains("12345678901234567890"), "{text_before}");

    let browser = signed_in(&server);
    browser.clicks("#tabs button[data-view='webhooks']");
    edit_subscription(&browser, &tid, &sid, 4);
    let shown = browser.execute(
        "return [...document.querySelectorAll('#sub-filters .filter-row')]\
           .map((r) => [r.querySelector('.f-kind').value, r.querySelector('.f-value').value])",
    );
    let shown: Vec<(String, String)> = serde_json::from_value(shown).expect("kinds and values");
    let kinds: Vec<&str> = shown.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["json", "json", "number", "number"], "{shown:?}");
    assert_eq!(shown[0].1, "null");
    let object: Value = serde_json::from_str(&shown[1].1).expect("the object as JSON");
    assert_eq!(object, before[1]["value"], "{shown:?}");
    assert_eq!(shown[2].1, "12345678901234567890");

    // Saved without a change: nothing sent, nothing rewritten, nothing audited.
    save_subscription(&browser);
    assert_eq!(filters_of(&server, &sid), before, "the filters were rewritten");
    assert_eq!(audited(&server, "subscription.update", &sid), 0, "an unchanged subscription was sent");

    // Two filters more, typed under eq then switched to gt and lt: numbers, exactly.
    edit_subscription(&browser, &tid, &sid, 4);
    for (path, number, op) in [("/e", "10000", 3), ("/f", "12345678901234567891", 5)] {
        browser.clicks("#sub-filter-add");
        let row = "#sub-filters .filter-row:last-child";
        browser.set(&format!("{row} .f-path"), path);
        browser.set(&format!("{row} .f-value"), number);
        // The options are in OPS's order: eq, ne, gt, gte, lt…
        browser.clicks(&format!("{row} .f-op option:nth-child({op})"));
        wait_for(Duration::from_secs(15), "the number kind chosen", || {
            let kind = browser.execute(&format!("return document.querySelector('{row} .f-kind').value"));
            (kind == json!("number")).then_some(())
        });
    }
    save_subscription(&browser);
    let after = server.admin("GET", &format!("/v1/subscriptions/{sid}"), None);
    let filters = after.json()["filters"].clone();
    assert_eq!(
        filters.as_array().expect("filters")[..4],
        before.as_array().expect("filters")[..],
        "the first four filters were rewritten: {}",
        after.text
    );
    assert_eq!(filters[4], json!({"path": "/e", "op": "gt", "value": 10000}), "{}", after.text);
    assert_eq!(filters[5]["op"], json!("lt"), "{}", after.text);
    assert!(after.text.contains("12345678901234567891"), "the number typed was not kept exactly: {}", after.text);
    assert_eq!(audited(&server, "subscription.update", &sid), 1);
}

#[test]
fn an_event_shows_its_payload_as_the_crm_sent_it() {
    let server = Server::start();
    let browser = signed_in(&server);
    // A MAIA event with members whose spelling JSON.parse would lose.
    let base = serde_json::to_string(&maia("crm_record_created", json!({}))).expect("json");
    let extra = r#"{"big": 12345678901234567890, "money": 12000.00, "sci": 1e2, "name": "caf\u00e9",
        "nested": {"a": [1, 2.50], "empty": {}, "none": []}, "#;
    let body = format!("{extra}{}", &base[1..]);
    let r = post_text(&server, "/v1/events", INGEST, &body);
    assert_eq!(r.status, 202, "{}", r.text);
    let id = r.json()["events"][0]["id"].as_str().expect("id").to_owned();

    browser.clicks(&format!("#live tr[data-id='{id}']"));
    let shown = browser.text(&browser.wait_text("#detail pre.payload", "the payload", |t| t.contains("\"big\"")));
    for want in [
        "{\n  \"big\": 12345678901234567890,\n  \"money\": 12000.00,\n  \"sci\": 1e2,\n  \"name\": \"caf\\u00e9\",\n",
        "  \"nested\": {\n    \"a\": [\n      1,\n      2.50\n    ],\n    \"empty\": {},\n    \"none\": []\n  },\n",
        "  \"assignedUserIds\": [\n    \"user_abc123\"\n  ],\n",
    ] {
        assert!(shown.contains(want), "the payload as shown:\n{shown}\nlacks:\n{want}");
    }
    assert!(shown.ends_with("\n}"), "{shown}");
}

/// `POST path` with `body` sent as written (JSON's spelling kept, which `serde_json` would not
/// keep) and `token` as the bearer.
fn post_text(server: &Server, path: &str, token: &str, body: &str) -> Resp {
    let bearer = format!("Bearer {token}");
    http(
        "POST",
        &server.url(path),
        &[("Content-Type", "application/json"), ("Authorization", bearer.as_str())],
        Some(body.as_bytes()),
    )
}
