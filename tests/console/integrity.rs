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
