//! The web console in headless Chromium, driven over WebDriver (chromedriver): load the page,
//! enter the token, see a posted event appear live, open it, press redeliver, see the new
//! attempt; the sources, the quarantine of a source's rejected pieces and the event list's
//! source filter; the audit trail, newest first, paged by keyboard in a narrow window; and the
//! Webhook Center: a source, a target, a subscription built in the page with its preview, a
//! test event, deliveries and what the receiver answered, editing, disabling, rotating
//! (`webhook_center_flow`), and all of it refused to an operator key
//! (`webhook_center_operator_read_only`). The browser is found where Debian puts it, or
//! installed (Debian's `chromium` and `chromium-driver`, with apt-get as root or through
//! passwordless sudo) the first time a test here needs it, so that `cargo test --workspace` runs
//! on a machine that never had it.
//!
//! Screenshots are taken only when asked for, by environment variables:
//! - `CRMHOOK_SCREENSHOT=<file.png>`: the first test saves one of the console (`docs/console.png`);
//! - `CRMHOOK_SCREENSHOT_AUDIT=<file.png>`: the audit test one of the Audit view (400 px wide);
//! - `CRMHOOK_SCREENSHOTS=<dir>`: `webhook_center_flow` saves `console-targets.png`,
//!   `console-subscription.png`, `console-attempt.png` and `console-phone.png` there (a relative
//!   dir is taken from the workspace's root: `CRMHOOK_SCREENSHOTS=docs cargo test --test console
//!   webhook_center_flow` regenerates the ones in `docs/`).

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

// The browser and the Webhook Center's tests, a file each in tests/console/.
#[path = "console/driver.rs"]
mod driver;
#[path = "console/edges.rs"]
mod edges;
#[path = "console/feed.rs"]
mod feed;
#[path = "console/integrity.rs"]
mod integrity;
#[path = "console/keys.rs"]
mod keys;
#[path = "console/webhook_center.rs"]
mod webhook_center;

use driver::*;

#[test]
fn the_console_shows_events_live_and_redelivers() {
    let server = Server::start();
    let rcv = Receiver::start();
    // A retry an hour after a failure: the page has time to show it (the end of the test).
    let (tid, _) = server.wire(
        &rcv.url("/console-hook"),
        Some(json!({})),
        json!({"name": "crm-demo", "retry_schedule_ms": [3_600_000]}),
    );
    let browser = Driver::start();
    browser.call("POST", "/url", Some(json!({"url": server.url("/console")})));

    // A wrong token is refused; the right one opens the console.
    let token = browser.wait("#token");
    browser.type_into(&token, "adm_not_the_token_at_all");
    browser.click(&browser.wait("#signin"));
    wait_for(Duration::from_secs(10), "the refusal", || {
        browser.find("#login-error").filter(|e| browser.text(e).contains("not the admin token")).map(|_| ())
    });
    let token = browser.wait("#token");
    browser.call("POST", &format!("/element/{token}/clear"), Some(json!({})));
    browser.type_into(&token, ADMIN);
    browser.click(&browser.wait("#signin"));
    browser.wait("#targets tr[data-id]");
    wait_for(Duration::from_secs(10), "the live stream", || {
        browser.find("#conn").filter(|e| browser.text(e) == "live").map(|_| ())
    });

    // An event posted now appears live.
    let ack = server.post_ok(&maia("crm_field_update", json!({})));
    let id = ack["events"][0]["id"].as_str().expect("id").to_owned();
    let row = browser.wait(&format!("#live tr[data-id='{id}']"));
    rcv.wait_count("/console-hook", 1, Duration::from_secs(10));

    // Open it: its delivery and first attempt are shown.
    browser.click(&row);
    wait_for(Duration::from_secs(10), "the first attempt", || {
        (browser.find_all("#detail tr.attempt").len() == 1).then_some(())
    });
    let redeliver = browser.wait("#detail .redeliver");
    browser.click(&redeliver);
    // The redelivery reaches the receiver and shows as attempt 2.
    rcv.wait_count("/console-hook", 2, Duration::from_secs(10));
    wait_for(Duration::from_secs(10), "the second attempt in the page", || {
        let rows = browser.find_all("#detail tr.attempt");
        (rows.len() == 2 && browser.text(&rows[1]).contains("redelivery")).then_some(())
    });
    // The receiver fails: the targets table counts the delivery waiting for its retry.
    rcv.set_default("/console-hook", status(500));
    server.post_ok(&maia("crm_record_created", json!({})));
    let shown = browser.wait_text(
        &format!("#targets tr[data-id='{tid}'] .retrying"),
        "the delivery waiting for a retry",
        |t| t.starts_with("1 waiting for a retry, the next "),
    );
    let health = server.admin("GET", &format!("/v1/targets/{tid}"), None).json()["health"].clone();
    assert_eq!(
        (health["retrying"].as_u64(), health["failures_in_a_row"].as_u64()),
        (Some(1), Some(1)),
        "{health} {shown}"
    );
    if let Ok(path) = std::env::var("CRMHOOK_SCREENSHOT") {
        use base64::Engine;
        let png = browser.call("GET", "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().expect("base64")).expect("png");
        std::fs::write(path, bytes).expect("screenshot written");
    }
}

/// A receiver back before its deliveries' next retries (an hour away), its target's window full
/// of them: the targets table says so, an event view's "Retry now" sends one delivery at once
/// (`POST /v1/events/{id}/redeliver`), the targets table's the rest (`POST
/// /v1/targets/{id}/replay {"status": "pending"}`), and the target goes on beyond its window.
#[test]
fn the_console_shows_a_window_blocked_by_retries_and_sends_them_now() {
    const HELD: usize = 16_384; // what a target holds: its window and the retries parked
    let server = Server::start();
    let rcv = Receiver::start();
    rcv.program("/back", &[], status(500));
    let (tid, _) = server.wire(&rcv.url("/back"), Some(json!({})), json!({"retry_schedule_ms": [3_600_000]}));
    let ids = server.post_many(HELD + 6);
    wait_for(Duration::from_secs(120), "the window blocked by its retries", || {
        let t = server.admin("GET", &format!("/v1/targets/{tid}"), None).json();
        t["health"]["blocked_by_retries_until"].as_str().map(|_| ())
    });
    let held = rcv.count("/back");
    rcv.set_default("/back", status(200));
    let browser = signed_in(&server);
    browser.wait_text(&format!("#targets tr[data-id='{tid}'] .blocked"), "the blocked window", |t| {
        t.starts_with("waiting for retries until")
    });
    // One event's delivery, from its view (the last one held, found by its record id): the
    // button says what it does.
    let one = &ids[held - 1];
    let record = server.event(one)["payload"]["recordId"].as_str().expect("recordId").to_owned();
    browser.type_into(&browser.wait("#q-record"), &record);
    browser.clicks("#search button[type=submit]");
    browser.clicks(&format!("#live tr[data-id='{one}']"));
    browser.wait_text("#detail .redeliver", "the event's retry button", |t| t == "Retry now");
    browser.clicks("#detail .redeliver");
    let got = rcv.wait_count("/back", held + 1, Duration::from_secs(10));
    assert_eq!((got[held].header("webhook-id"), got[held].header("x-crmhook-attempt")), (one.as_str(), "2"));
    // The rest, from the targets table; then the six and more beyond, first attempts.
    browser.clicks(&format!("#targets .retry-now[data-id='{tid}']"));
    let got = rcv.wait_count("/back", held + HELD + 6, Duration::from_secs(120));
    let again: std::collections::HashSet<(&str, &str)> =
        got[held..].iter().map(|r| (r.header("webhook-id"), r.header("x-crmhook-attempt"))).collect();
    for (n, id) in ids.iter().enumerate() {
        let attempt = if n < held { "2" } else { "1" };
        assert!(again.contains(&(id.as_str(), attempt)), "event {n}: {id} as attempt {attempt}");
    }
    server.wait_settled(&tid, Duration::from_secs(60));
}

/// Opens the console and signs in with the admin token; answers once it follows the stream.
fn signed_in(server: &Server) -> Driver {
    signed_in_as(server, ADMIN)
}

/// Opens the console and signs in with `key`; answers once it follows the stream.
fn signed_in_as(server: &Server, key: &str) -> Driver {
    let browser = Driver::start();
    browser.call("POST", "/url", Some(json!({"url": server.url("/console")})));
    let token = browser.wait("#token");
    browser.type_into(&token, key);
    browser.click(&browser.wait("#signin"));
    browser.wait_text("#conn", "the live stream", |t| t == "live");
    browser
}

#[test]
fn the_console_shows_sources_the_quarantine_and_filters_events_by_source() {
    let server = Server::start();
    let browser = signed_in(&server);

    // An event from no source, then a Maximizer source (made after the page loaded) posting a
    // batch with one good and one bad element: 200, the bad one kept in the quarantine.
    let other = server.post_ok(&maia("crm_field_update", json!({})));
    let other_id = other["events"][0]["id"].as_str().expect("id").to_owned();
    let r = server.admin("POST", "/v1/sources", Some(&json!({"name": "Maximizer <EU>", "kind": "maximizer"})));
    assert_eq!(r.status, 201, "POST /v1/sources: {}", r.text);
    let src = r.json();
    let (src_id, ingest_url) = (src["id"].as_str().expect("id"), src["ingest_url"].as_str().expect("ingest_url"));
    let good =
        crmhook_crmsim::maximizer::envelope(&format!("console-{}", unique()), "Opportunity", "Update", "12000.00");
    // No Timestamp, and markup that must show as text.
    let bad = r#"{"Id": "console-bad", "Entity": "Opportunity", "Data": {"Op": "Update", "Note": "<b>not bold</b> & <script>x</script>"}}"#;
    let body = format!("[{good},\n{bad}]");
    let key = src["key"].as_str().expect("key");
    let r = http(
        "POST",
        &format!("{ingest_url}?key={key}"),
        &[("Content-Type", "application/json")],
        Some(body.as_bytes()),
    );
    assert_eq!(r.status, 200, "POST {ingest_url}: {}", r.text);
    let ack = r.json();
    assert_eq!((ack["accepted"].as_u64(), ack["rejected"].as_u64()), (Some(1), Some(1)), "{ack}");
    let good_id = ack["events"][0]["id"].as_str().expect("event id").to_owned();
    let rej_id = ack["rejections"][0]["id"].as_str().expect("rejection id").to_owned();
    let reason = ack["rejections"][0]["reason"].as_str().expect("reason").to_owned();

    // The Rejected view lists the piece with its source and reason; opened, it shows the exact
    // body as text, and a retry says why it is still not an event.
    browser.click(&browser.wait("#tabs button[data-view='rejected']"));
    let row = format!("#rejected tr.reject[data-id='{rej_id}']");
    browser.wait_text(&row, "the rejected row with its source and reason", |t| {
        t.contains(&reason) && t.contains("Maximizer <EU>")
    });
    browser.click(&browser.wait(&row));
    browser.wait_text("#rejected-body", "the rejected body", |t| t == bad);
    assert!(browser.find_all("#rejected-body b, #rejected-body script").is_empty(), "the body is shown as text");
    browser.click(&browser.wait("#r-retry"));
    browser.wait_text("#r-result", "the retry's answer", |t| t.contains("still not an event"));

    // The Sources view lists the source with its ingest URL in a copyable field.
    browser.click(&browser.wait("#tabs button[data-view='sources']"));
    // (Each view reloads the sources when shown, so elements are looked up again while waiting.)
    browser.wait_text(&format!("#sources tr[data-id='{src_id}']"), "the source row", |t| {
        t.contains("Maximizer <EU>") && t.contains("maximizer") && t.contains("enabled")
    });
    wait_for(Duration::from_secs(10), "the ingest URL field", || {
        let field = browser.find(&format!("#sources tr[data-id='{src_id}'] input.url"))?;
        (browser.property(&field, "value") == ingest_url).then_some(())
    });

    // The event list filtered by the source shows the good event only, named by its source.
    browser.click(&browser.wait("#tabs button[data-view='events']"));
    browser.wait(&format!("#live tr[data-id='{other_id}']"));
    wait_for(Duration::from_secs(10), "the source chosen in the filter", || {
        let select = browser.find("#q-source")?;
        if browser.property(&select, "value") == src_id {
            return Some(());
        }
        if let Some(option) = browser.find(&format!("#q-source option[value='{src_id}']")) {
            browser.click(&option);
        }
        None
    });
    wait_for(Duration::from_secs(10), "only the source's event in the list", || {
        let rows = browser.find_all("#live tr");
        let only = rows.len() == 1 && browser.find(&format!("#live tr[data-id='{good_id}']")).is_some();
        only.then_some(())
    });
    let row = browser.wait(&format!("#live tr[data-id='{good_id}']"));
    assert!(browser.text(&row).contains("Maximizer <EU>"), "{}", browser.text(&row));
    browser.click(&row);
    browser.wait_text("#detail .source", "the event's source", |t| t.contains("Maximizer <EU>") && t.contains(src_id));
}

#[test]
fn the_console_shows_the_audit_trail_newest_first_and_pages_to_older_entries() {
    let server = Server::start();
    // Admin changes through the API: a target, then 55 subscriptions, so that the trail holds
    // more than the console's page of 50 and the target's creation is on the second page.
    let (tid, _) = server.wire("http://127.0.0.1:9/audited", None, json!({"name": "audited <target>"}));
    let mut subs = Vec::new();
    for i in 0..55 {
        let r = server.admin(
            "POST",
            "/v1/subscriptions",
            Some(&json!({"target_id": tid, "kanban_ids": [format!("k{i}")]})),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        subs.push(r.json()["id"].as_str().expect("id").to_owned());
    }
    let browser = signed_in(&server);
    // A narrow window (a phone's width).
    browser.call("POST", "/window/rect", Some(json!({"width": 400, "height": 900})));

    // The Audit tab, by keyboard: newest first, one page.
    browser.press_enter(&browser.wait("#tabs button[data-view='audit']"));
    wait_for(Duration::from_secs(15), "the first page of the audit trail", || {
        (browser.find_all("#audit tr.audit").len() == 50).then_some(())
    });
    let rows = browser.find_all("#audit tr.audit");
    let newest = browser.text(&rows[0]);
    assert!(newest.contains("subscription.create") && newest.contains(&subs[54]), "newest first: {newest}");
    assert!(browser.text(&rows[49]).contains(&subs[5]), "{}", browser.text(&rows[49]));
    let target_row = format!("#audit tr.audit[data-action='target.create'][data-subject='{tid}']");
    assert!(browser.find(&target_row).is_none(), "the target's creation is older than the first page");
    assert!(browser.displayed(&rows[0]), "the newest entry is shown in a narrow window");

    // "Older", by keyboard: the rest, down to the target's creation, its summary naming it.
    let older = browser.wait("#a-older");
    assert!(browser.displayed(&older));
    browser.press_enter(&older);
    let row = browser.wait(&target_row);
    wait_for(Duration::from_secs(15), "the second page", || {
        (browser.find_all("#audit tr.audit").len() == 56).then_some(())
    });
    let text = browser.text(&row);
    assert!(text.contains("target.create") && text.contains(&tid) && text.contains("admin_token (key_"), "{text}");
    assert!(text.contains("audited <target>"), "the summary names the target, as text: {text}");
    let rows = browser.find_all("#audit tr.audit");
    assert!(browser.text(&rows[55]).contains(&tid), "the oldest entry is last");
    assert!(!browser.displayed(&older), "no older page after the oldest entry");
    // The record itself opens below the summary, with no secret in it.
    let summary = browser.wait(&format!("{target_row} details summary"));
    browser.press_enter(&summary);
    let record = browser.wait_text(&format!("{target_row} details pre"), "the record after", |t| t.contains("\"url\""));
    assert!(!record.contains("whsec_"), "{record}");

    if let Ok(path) = std::env::var("CRMHOOK_SCREENSHOT_AUDIT") {
        use base64::Engine;
        let png = browser.call("GET", "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().expect("base64")).expect("png");
        std::fs::write(path, bytes).expect("screenshot written");
    }
    // The page fits the narrow window: nothing wider than it.
    let fits = browser.execute("return document.documentElement.scrollWidth <= document.documentElement.clientWidth");
    assert_eq!(fits, Value::Bool(true), "the audit view is wider than a 400 px window");
}
