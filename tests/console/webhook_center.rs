//! The Webhook Center in the console: a source, a target, a subscription built in the page with
//! its preview, a test event, deliveries and what the receiver answered, editing, disabling,
//! rotating (`webhook_center_flow`), and all of it refused to an operator key
//! (`webhook_center_operator_read_only`).

use super::*;

/// How long the Webhook Center's tests wait for a delivery at the receiver.
const WAIT: Duration = Duration::from_secs(15);

/// Posts `event` to a MAIA source's ingest URL as MAIA does: signed with its secret, no token.
fn post_as_maia(ingest_url: &str, secret: &str, event: &Value) -> Value {
    let body = serde_json::to_vec(event).expect("json");
    let signature = hex::encode(hmac_sha256(secret.as_bytes(), &body));
    let r = http("POST", ingest_url, &[("X-Maia-Signature", &signature)], Some(&body));
    assert_eq!(r.status, 200, "POST {ingest_url}: {}", r.text);
    assert_eq!(r.json()["accepted"], 1, "{}", r.text);
    r.json()
}

/// A field update of `kanban` whose `newValue` is `value`; answers it with its recordId.
fn stage_update(kanban: &str, value: &str) -> (Value, String) {
    let e = maia("crm_field_update", json!({"kanbanId": kanban, "fieldName": "Stage", "newValue": value}));
    let record = e["recordId"].as_str().expect("recordId").to_owned();
    (e, record)
}

/// The whole Webhook Center through the page alone, as a MAIA user sets webhooks up. Steps that
/// need an endpoint, in order: the subscription builder's picks (`GET /v1/events/facets`) and
/// preview (`POST /v1/subscriptions/preview`), the test event (`POST /v1/targets/{id}/test`),
/// the receiver's answer in attempts (`response` in attempt views), editing a subscription
/// (`PATCH /v1/subscriptions/{id}`), the health and ingest pictures (`GET
/// /v1/targets/{id}/stats`, `GET /v1/stats/ingest`).
#[test]
fn webhook_center_flow() {
    let server = Server::start();
    let rcv = Receiver::start();
    let browser = signed_in(&server);
    let kanban = format!("kanban_console_{}", unique());

    // A MAIA source, made in the page: its ingest URL and the steps to paste into MAIA open.
    browser.clicks("#tabs button[data-view='sources']");
    browser.enter("#s-new");
    browser.wait("#dlg-source[open]");
    // No name: refused beside the field, nothing sent.
    browser.enter("#source-form input[name=name]");
    browser.wait_text("#source-form .field-error[data-for='name']", "the name's error", |t| !t.is_empty());
    browser.set("#source-form input[name=name]", "MAIA <prod>");
    browser.enter("#source-form input[name=name]");
    let row = browser.wait_text("#sources tr[data-id]", "the new source", |t| t.contains("MAIA <prod>"));
    let src = browser.attr(&row, "data-id");
    let source = server.admin("GET", &format!("/v1/sources/{src}"), None).json();
    let ingest_url = source["ingest_url"].as_str().expect("ingest_url").to_owned();
    assert!(ingest_url.ends_with(&format!("/in/{src}")), "{ingest_url}");
    let field = browser.wait(&format!("#sources tr[data-id='{src}'] input.url"));
    assert_eq!(browser.property(&field, "value"), ingest_url);
    let steps = browser.wait_text(&format!("#sources tr[data-id='{src}'] details.steps[open]"), "the steps", |t| {
        t.contains("Settings → Webhooks → Add Webhook")
    });
    let steps = browser.text(&steps);
    assert!(steps.contains(&ingest_url) && steps.contains("crm_field_update"), "{steps}");
    let row = browser.text(&browser.wait(&format!("#sources tr[data-id='{src}']")));
    assert!(row.contains("no maia_secret yet"), "{row}");
    // The secret MAIA showed, pasted into the page (Enter submits).
    let secret = format!("maia-secret-{}", unique());
    let input = format!("#sources tr[data-id='{src}'] form.s-secret input[name=maia_secret]");
    browser.set(&input, &secret);
    browser.enter(&input);
    browser.wait_text(&format!("#sources tr[data-id='{src}']"), "the secret set", |t| t.contains("secret set"));
    assert!(!browser.page_html().contains(&secret), "the MAIA secret is not shown back");

    // A Maximizer source: its key is shown once, with the URL to give Maximizer, which works.
    browser.enter("#s-new");
    browser.wait("#dlg-source[open]");
    browser.set("#source-form input[name=name]", "Maximizer EU");
    browser.clicks("#source-form input[name=kind][value=maximizer]");
    browser.enter("#source-form input[name=name]");
    let full = browser.property(&browser.wait("#dlg-once[open] input.once.full-url"), "value");
    let mx = full.split("/in/").nth(1).and_then(|rest| rest.split('?').next()).expect("a source id").to_owned();
    assert!(full.contains("?key=mxk_"), "{full}");
    let check = |url: &str| http("POST", url, &[("Content-Type", "application/json")], Some(b"[]")).status;
    assert_eq!(check(&full), 200, "the URL the page gave works");
    let key = browser.property(&browser.wait("#dlg-once[open] input.once.key"), "value");
    browser.clicks("#once-done");
    wait_for(Duration::from_secs(10), "the key gone from the page", || {
        (!browser.page_html().contains(&key)).then_some(())
    });
    // Renamed (a name taken by nothing else; the API's refusal of an empty one beside it),
    // disabled in the page (its URL refuses), enabled again, then deleted.
    let mx_row = format!("#sources tr[data-id='{mx}']");
    browser.clicks(&format!("{mx_row} .s-rename"));
    browser.wait("#dlg-rename[open]");
    browser.set("#rename-form input[name=name]", "   ");
    browser.enter("#rename-form input[name=name]");
    browser.wait_text("#rename-form .field-error[data-for='name']", "an empty name refused", |t| !t.is_empty());
    browser.set("#rename-form input[name=name]", "Maximizer Europe");
    browser.enter("#rename-form input[name=name]");
    browser.wait_text(&format!("{mx_row} td:first-child strong"), "the new name", |t| t == "Maximizer Europe");
    assert_eq!(server.admin("GET", &format!("/v1/sources/{mx}"), None).json()["name"], "Maximizer Europe");
    let focused = browser.execute("return document.activeElement.classList.contains('s-rename')");
    assert_eq!(focused, json!(true), "the keyboard back on the row's Rename");
    browser.clicks(&format!("{mx_row} .s-toggle"));
    browser.wait_text(&format!("{mx_row} td.state"), "the source disabled", |t| t == "disabled");
    assert_eq!(check(&full), 401);
    browser.clicks(&format!("{mx_row} .s-toggle"));
    browser.wait_text(&format!("{mx_row} td.state"), "the source enabled", |t| t == "enabled");
    assert_eq!(check(&full), 200);
    browser.enter(&format!("{mx_row} .s-delete"));
    browser.wait("#dlg-confirm[open]");
    browser.enter("#confirm-yes");
    wait_for(Duration::from_secs(10), "the source gone", || browser.find(&mx_row).is_none().then_some(()));
    assert_eq!(check(&full), 401);

    // The log has seen a won and a lost stage on the kanban (MAIA posting, signed).
    let (won, _) = stage_update(&kanban, "Won");
    let seed_won = post_as_maia(&ingest_url, &secret, &won)["events"][0]["id"].as_str().expect("id").to_owned();
    let (lost, _) = stage_update(&kanban, "Lost");
    let seed_lost = post_as_maia(&ingest_url, &secret, &lost)["events"][0]["id"].as_str().expect("id").to_owned();

    // A target, made in the page: a bad URL is refused beside its field; then its secret is
    // shown once, and never again; its header's value is never shown.
    browser.clicks("#tabs button[data-view='webhooks']");
    browser.enter("#t-new");
    browser.wait("#dlg-target[open]");
    browser.set("#target-form input[name=name]", "billing <svc>");
    browser.set("#target-form input[name=url]", "ftp://127.0.0.1/hook");
    browser.clicks("#t-header-add");
    browser.set("#t-headers .header-row .h-name", "X-Team");
    browser.set("#t-headers .header-row .h-value", "blue-team-credential");
    browser.set("#target-form input[name=timeout_ms]", "1000");
    browser.set("#target-form input[name=retry_schedule_ms]", "200, 400");
    browser.set("#target-form input[name=rate_limit_per_s]", "20");
    browser.enter("#target-form input[name=name]");
    browser.wait_text("#target-form .field-error[data-for='url']", "the URL refused beside it", |t| t.contains("422"));
    browser.set("#target-form input[name=url]", &rcv.url("/hook"));
    browser.enter("#target-form input[name=url]");
    let once = browser.wait("#dlg-once[open] input.once.secret");
    let target_secret = browser.property(&once, "value");
    assert!(target_secret.starts_with("whsec_"), "{target_secret}");
    browser.clicks("#once-done");
    let head = browser.wait("#target-pane .t-head[data-id]");
    let tid = browser.attr(&head, "data-id");
    browser.wait_text("#target-pane .t-headers", "the header's name", |t| t.contains("X-Team"));
    wait_for(Duration::from_secs(10), "the secret gone from the page once its dialog closed", || {
        (!browser.page_html().contains(&target_secret)).then_some(())
    });
    assert!(!browser.page_html().contains("blue-team-credential"), "a header's value is never shown");
    let t = server.admin("GET", &format!("/v1/targets/{tid}"), None).json();
    assert_eq!(t["headers"], json!({"X-Team": "<redacted>"}), "{t}");
    assert_eq!((t["timeout_ms"].as_u64(), t["retry_schedule_ms"].clone()), (Some(1000), json!([200, 400])));
    assert_eq!(t["rate_limit_per_s"], 20, "{t}");
    browser.wait_text("#target-pane .t-rate", "the rate limit shown", |t| t.contains("at most 20 attempts a second"));
    assert!(t.get("secret").is_none(), "{t}");

    // Disabled and enabled again, by keyboard.
    browser.enter("#target-pane .t-toggle");
    browser.wait_text("#target-pane .t-state", "disabled", |t| t == "disabled");
    assert_eq!(server.admin("GET", &format!("/v1/targets/{tid}"), None).json()["enabled"], false);
    browser.enter("#target-pane .t-toggle");
    browser.wait_text("#target-pane .t-state", "enabled again", |t| t == "enabled");
    assert_eq!(server.admin("GET", &format!("/v1/targets/{tid}"), None).json()["enabled"], true);

    // The secret rotated: a new one, shown once, the old one valid for 24 h.
    browser.enter("#target-pane .t-rotate");
    browser.wait_text("#dlg-once[open]", "the rotation dialog", |t| t.contains("24 hours"));
    let rotated = browser.property(&browser.wait("#dlg-once[open] input.once.secret"), "value");
    assert!(rotated.starts_with("whsec_") && rotated != target_secret, "{rotated}");
    browser.escape();
    wait_for(Duration::from_secs(10), "the dialog closed by Escape", || {
        browser.find("#dlg-once[open]").is_none().then_some(())
    });
    wait_for(Duration::from_secs(10), "the new secret gone from the page", || {
        (!browser.page_html().contains(&rotated)).then_some(())
    });
    let t = server.admin("GET", &format!("/v1/targets/{tid}"), None).json();
    assert!(t["previous_secret_expires_at"].is_string(), "{t}");

    // A subscription built in the page: the type and the kanban picked from what the log has
    // seen, a filter on the new value; the preview matches the won stage, not the lost one.
    browser.enter("#target-pane #sub-new");
    browser.wait("#dlg-sub[open]");
    browser.clicks("#sub-types input[value='crm_field_update']");
    browser.clicks(&format!("#sub-kanbans input[value='{kanban}']"));
    browser.clicks("#sub-filter-add");
    browser.set("#sub-filters .filter-row .f-path", "/newValue");
    browser.set("#sub-filters .filter-row .f-value", "Won");
    browser.wait_text("#sub-preview .preview-count", "the preview", |t| t.starts_with("1 of the last"));
    assert!(browser.find(&format!("#sub-preview tr[data-id='{seed_won}']")).is_some());
    assert!(browser.find(&format!("#sub-preview tr[data-id='{seed_lost}']")).is_none());
    browser.shot("console-subscription.png");
    browser.enter("#sub-filters .filter-row .f-value");
    let sub = browser.wait_text("#t-subs li.sub", "the subscription listed", |t| t.contains("/newValue eq \"Won\""));
    let sub_id = browser.attr(&sub, "data-id");
    let subs = server.admin("GET", &format!("/v1/subscriptions?target_id={tid}"), None).json();
    let s = &subs["subscriptions"][0];
    assert_eq!((s["event_types"].clone(), s["kanban_ids"].clone()), (json!(["crm_field_update"]), json!([kanban])));
    assert_eq!(s["filters"], json!([{"path": "/newValue", "op": "eq", "value": "Won"}]));

    // A test event: its status, latency and what the receiver said.
    rcv.set_default("/hook", with_body(200, "hello from <the receiver>"));
    browser.choose("#t-test select[name=type]", "crm_record_created");
    browser.enter("#t-test button[type=submit]");
    browser.wait_text("#t-test-result .test-outcome", "the test's outcome", |t| {
        t.contains("HTTP 200") && t.contains(" ms")
    });
    browser.wait_text("#t-test-result pre.response-body", "the receiver's body", |t| t == "hello from <the receiver>");
    // Only the headers that matter are kept (Content-Type, Retry-After, Location): not the
    // receiver's Content-Length.
    let headers = browser.text(&browser.wait("#t-test-result .resp-headers"));
    assert!(headers.contains("text/plain") && !headers.to_ascii_lowercase().contains("content-length"), "{headers}");
    rcv.set_default("/hook", with_body(200, "ok"));

    // A lost stage, then a won one, posted as MAIA would: only the won one is delivered.
    let (lost, lost_record) = stage_update(&kanban, "Lost");
    let lost_id = post_as_maia(&ingest_url, &secret, &lost)["events"][0]["id"].as_str().expect("id").to_owned();
    let (won, won_record) = stage_update(&kanban, "Won");
    let won_id = post_as_maia(&ingest_url, &secret, &won)["events"][0]["id"].as_str().expect("id").to_owned();
    rcv.wait_until(WAIT, "the won stage", |got| got.iter().any(|r| r.tag == won_record).then_some(()));
    server.wait_settled(&tid, Duration::from_secs(15));
    let counts = rcv.tag_counts("/hook");
    assert_eq!((counts.get(&won_record), counts.get(&lost_record)), (Some(&1), None), "exactly one delivery");
    browser.clicks("#tabs button[data-view='events']");
    browser.clicks(&format!("#live tr[data-id='{lost_id}']"));
    browser.wait_text("#detail", "no delivery of the lost stage", |t| t.contains("No target is owed this event"));
    browser.clicks(&format!("#live tr[data-id='{won_id}']"));
    browser.wait_text(&format!("#detail .delivery[data-target='{tid}']"), "the won stage delivered", |t| {
        t.contains("delivered")
    });

    // The receiver fails with a body: the attempt shows it, as text.
    let failure = "<b>database down</b> & out";
    rcv.set_default("/hook", with_body(500, failure));
    let (won, failing_record) = stage_update(&kanban, "Won");
    let failing_id = post_as_maia(&ingest_url, &secret, &won)["events"][0]["id"].as_str().expect("id").to_owned();
    rcv.wait_until(WAIT, "the failing delivery", |got| got.iter().any(|r| r.tag == failing_record).then_some(()));
    browser.clicks(&format!("#live tr[data-id='{failing_id}']"));
    browser.wait_text("#detail pre.response-body", "the receiver's 500 body", |t| t == failure);
    browser.wait_text("#detail details.response summary", "the status", |t| t.contains("HTTP 500"));
    assert!(browser.find_all("#detail pre.response-body b").is_empty(), "the body is text");
    browser.shot("console-attempt.png");
    rcv.set_default("/hook", with_body(200, "ok"));
    rcv.wait_until(WAIT, "the retry", |got| {
        (got.iter().filter(|r| r.tag == failing_record).count() >= 2).then_some(())
    });

    // The subscription edited in the page: lost stages now.
    browser.clicks("#tabs button[data-view='webhooks']");
    browser.clicks(&format!("#center-targets li[data-id='{tid}'] .t-open"));
    browser.clicks(&format!("#t-subs li.sub[data-id='{sub_id}'] .sub-edit"));
    wait_for(Duration::from_secs(15), "the filter in the form", || {
        let v = browser.find("#sub-filters .filter-row .f-value")?;
        (browser.property(&v, "value") == "Won").then_some(())
    });
    browser.set("#sub-filters .filter-row .f-value", "Lost");
    browser.wait_text("#sub-preview .preview-count", "the preview of lost stages", |t| t.starts_with("2 of the last"));
    browser.enter("#sub-filters .filter-row .f-value");
    browser.wait_text(&format!("#t-subs li.sub[data-id='{sub_id}']"), "the edited subscription", |t| {
        t.contains("/newValue eq \"Lost\"")
    });
    let s = server.admin("GET", &format!("/v1/subscriptions/{sub_id}"), None).json();
    assert_eq!(s["filters"][0]["value"], "Lost", "{s}");

    // The target's health: bars of the hour and of the day, the last failure's reason (read
    // again once the target owes nothing).
    server.wait_settled(&tid, Duration::from_secs(15));
    browser.clicks(&format!("#center-targets li[data-id='{tid}'] .t-open"));
    browser.wait("#t-health svg.bars rect.s-ok");
    browser.wait("#t-health svg.bars rect.s-failed");
    browser.wait_text("#t-health .last-failure", "the last failure", |t| t.contains("500"));
    browser.wait_text("#t-health .backlog", "the backlog", |t| t == "0");
    browser.enter("#t-health .chart-tabs button[data-period='days']");
    browser.wait("#t-health[data-period='days'] svg.bars rect.s-ok");
    browser.execute("document.querySelector('#target-pane').scrollIntoView()");
    browser.shot("console-targets.png");
    // Events in, per type.
    browser.clicks("#tabs button[data-view='events']");
    browser.wait("#ingest-chart svg.bars rect.s-t0");
    browser.wait_text("#ingest-chart .legend", "the types", |t| t.contains("crm_field_update"));

    // A phone-sized window: the Webhook Center fits, and a dialog still closes on Escape.
    browser.call("POST", "/window/rect", Some(json!({"width": 400, "height": 900})));
    browser.clicks("#tabs button[data-view='webhooks']");
    browser.clicks(&format!("#center-targets li[data-id='{tid}'] .t-open"));
    browser.wait("#t-health svg.bars");
    let fits = browser.execute("return document.documentElement.scrollWidth <= document.documentElement.clientWidth");
    assert_eq!(fits, Value::Bool(true), "the Webhook Center is wider than a 400 px window");
    browser.execute("window.scrollTo(0, 0)");
    browser.shot("console-phone.png");
    // The rate limit lifted in the form: an empty field is no limit.
    browser.enter("#target-pane .t-edit");
    let rate = browser.wait("#dlg-target[open] input[name=rate_limit_per_s]");
    assert_eq!(browser.property(&rate, "value"), "20");
    browser.set("#target-form input[name=rate_limit_per_s]", "");
    // And the answers' bodies kept no more (0), the default shown before.
    let kept = browser.wait("#dlg-target[open] input[name=response_body_bytes]");
    assert_eq!(browser.property(&kept, "value"), "4096");
    browser.set("#target-form input[name=response_body_bytes]", "0");
    browser.enter("#target-form input[name=rate_limit_per_s]");
    browser.wait_text("#target-pane .t-rate", "no rate limit shown", |t| t == "none");
    browser.wait_text("#target-pane .t-body-bytes", "no answer body kept", |t| t == "status and headers, no body");
    let t = server.admin("GET", &format!("/v1/targets/{tid}"), None).json();
    assert_eq!((t["rate_limit_per_s"].clone(), t["response_body_bytes"].as_u64()), (Value::Null, Some(0)), "{t}");
    browser.enter("#target-pane .t-edit");
    browser.wait("#dlg-target[open]");
    browser.escape();
    wait_for(Duration::from_secs(10), "Escape closing the form", || {
        browser.find("#dlg-target[open]").is_none().then_some(())
    });
}

/// With an operator key the page disables every change control and, when a change is
/// attempted anyway, shows the API's refusal; the API refuses each change itself.
#[test]
fn webhook_center_operator_read_only() {
    let server = Server::start();
    let r = server.admin("POST", "/v1/keys", Some(&json!({"name": "night-shift", "role": "operator"})));
    assert_eq!(r.status, 201, "{}", r.text);
    let operator = r.json()["key"].as_str().expect("key").to_owned();
    let (tid, _) =
        server.wire("http://127.0.0.1:9/hook", Some(json!({"event_types": ["ai_pause"]})), json!({"name": "watched"}));
    let sub = server.admin("GET", &format!("/v1/subscriptions?target_id={tid}"), None).json();
    let sub_id = sub["subscriptions"][0]["id"].as_str().expect("sub").to_owned();
    let r = server.admin("POST", "/v1/sources", Some(&json!({"name": "Maximizer", "kind": "maximizer"})));
    let src = r.json()["id"].as_str().expect("id").to_owned();

    let browser = signed_in_as(&server, &operator);
    browser.wait_text("#who", "the role", |t| t.contains("night-shift") && t.contains("operator"));
    assert!(browser.displayed(&browser.wait("#read-only")), "the page says it is read only");
    assert!(!browser.displayed(&browser.wait("#tabs button[data-view='audit']")), "no audit trail for operators");
    let enabled_changes = |scope: &str| -> Vec<String> {
        let script = format!(
            "return [...document.querySelectorAll('{scope} [data-change]')].filter(e => !e.disabled).map(e => e.outerHTML)"
        );
        browser.execute(&script).as_array().cloned().unwrap_or_default().iter().map(|v| v.to_string()).collect()
    };

    // Sources: seen, with their URLs; no change control works.
    browser.clicks("#tabs button[data-view='sources']");
    browser.wait(&format!("#sources tr[data-id='{src}'] input.url"));
    assert!(browser.find_all("#view-sources [data-change]").len() >= 4);
    assert_eq!(enabled_changes("#view-sources"), Vec::<String>::new());
    // Forced anyway: the API's 403 is shown in the row.
    browser.execute(&format!("document.querySelector(\"#sources tr[data-id='{src}'] .s-rotate\").disabled = false"));
    browser.clicks(&format!("#sources tr[data-id='{src}'] .s-rotate"));
    browser.wait_text(&format!("#sources tr[data-id='{src}'] .row-error"), "the 403", |t| t.contains("403"));

    // Targets and subscriptions: seen, none changeable.
    browser.clicks("#tabs button[data-view='webhooks']");
    browser.clicks(&format!("#center-targets li[data-id='{tid}'] .t-open"));
    browser.wait(&format!("#t-subs li.sub[data-id='{sub_id}']"));
    browser.wait_text("#target-pane .t-url", "the URL", |t| t.contains("127.0.0.1:9"));
    assert!(browser.find_all("#view-webhooks [data-change]").len() >= 8);
    assert_eq!(enabled_changes("#view-webhooks"), Vec::<String>::new());
    // A new target forced through the form: refused, the 403 shown in the form.
    browser.execute("document.querySelector('#t-new').disabled = false");
    browser.clicks("#t-new");
    browser.wait("#dlg-target[open]");
    assert_eq!(enabled_changes("#dlg-target"), Vec::<String>::new(), "the form's submit is disabled too");
    browser.set("#target-form input[name=name]", "sneaky");
    browser.set("#target-form input[name=url]", "http://127.0.0.1:9/other");
    browser.execute("document.querySelector('#target-form button[type=submit]').disabled = false");
    browser.clicks("#target-form button[type=submit]");
    browser.wait_text("#target-form .form-error", "the form's 403", |t| t.contains("Refused (403)"));
    browser.escape();
    // Disabling forced: refused, shown beside the buttons.
    browser.execute("document.querySelector('#target-pane .t-toggle').disabled = false");
    browser.clicks("#target-pane .t-toggle");
    browser.wait_text("#target-pane .t-error", "the toggle's 403", |t| t.contains("Refused (403)"));
    // A deletion forced: refused in the confirmation.
    browser.execute(&format!(
        "document.querySelector(\"#t-subs li.sub[data-id='{sub_id}'] .sub-delete\").disabled = false"
    ));
    browser.clicks(&format!("#t-subs li.sub[data-id='{sub_id}'] .sub-delete"));
    browser.wait("#dlg-confirm[open]");
    browser.execute("document.querySelector('#confirm-yes').disabled = false");
    browser.clicks("#confirm-yes");
    browser.wait_text("#confirm-form .form-error", "the deletion's 403", |t| t.contains("Refused (403)"));
    browser.escape();

    // The API refuses each change to the operator key, and nothing changed.
    let refused = |method: &str, path: &str, body: Value| {
        let r = server.request(method, path, Some(&operator), Some(&body));
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text);
        assert_eq!(r.content_type(), "application/problem+json");
    };
    refused("POST", "/v1/sources", json!({"name": "x", "kind": "maia"}));
    refused("PATCH", &format!("/v1/sources/{src}"), json!({"enabled": false}));
    refused("POST", &format!("/v1/sources/{src}/rotate-key"), json!({}));
    refused("DELETE", &format!("/v1/sources/{src}"), json!({}));
    refused("POST", "/v1/targets", json!({"name": "x", "url": "http://127.0.0.1:9/x"}));
    refused("PATCH", &format!("/v1/targets/{tid}"), json!({"enabled": false}));
    refused("POST", &format!("/v1/targets/{tid}/rotate-secret"), json!({}));
    refused("DELETE", &format!("/v1/targets/{tid}"), json!({}));
    refused("POST", "/v1/subscriptions", json!({"target_id": tid}));
    refused("DELETE", &format!("/v1/subscriptions/{sub_id}"), json!({}));
    let t = server.admin("GET", &format!("/v1/targets/{tid}"), None).json();
    assert_eq!((t["enabled"].as_bool(), t["previous_secret_expires_at"].is_null()), (Some(true), true), "{t}");
    assert_eq!(server.admin("GET", "/v1/targets", None).json()["targets"].as_array().map(Vec::len), Some(1));
    assert_eq!(server.admin("GET", &format!("/v1/subscriptions/{sub_id}"), None).status, 200);
    // The endpoints of the Webhook Center's newer parts refuse it too.
    refused("PATCH", &format!("/v1/subscriptions/{sub_id}"), json!({"event_types": []}));
    refused("POST", &format!("/v1/targets/{tid}/test"), json!({}));
}
