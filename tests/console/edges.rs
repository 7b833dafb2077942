//! The console where an audit of 2026-12-07 found it wrong: an error about one header shown
//! beside the headers, a deleted target's pane and the keyboard's place after a deletion, a
//! record deleted meanwhile answered with its own problem (not "not available on this
//! server"), and an operator key's Events view starting from the newest events when
//! `metrics_token` keeps `/readyz`'s head from anonymous probes, a search listing the newest
//! matches first and paging back to the oldest (it listed the oldest 200, with no more), and a
//! long source name kept inside a phone-sized window; and the Webhook Center's list of many
//! targets narrowed by a filter (it listed them all, with no way to find one).

use super::*;

#[test]
fn the_console_places_errors_and_the_keyboard_and_shows_the_newest_events_to_an_operator() {
    let server = Server::start_with(&[
        TEST_ENV[0],
        TEST_ENV[1],
        TEST_ENV[2],
        ("CRMHOOK_METRICS_TOKEN", "met_test_0123456789abcdef0123"),
    ]);
    let rcv = Receiver::start();
    let browser = signed_in(&server);

    // A header the API refuses: its error is beside the headers, its row marked.
    browser.clicks("#tabs button[data-view='webhooks']");
    browser.enter("#t-new");
    browser.wait("#dlg-target[open]");
    browser.set("#target-form input[name=name]", "edges");
    browser.set("#target-form input[name=url]", &rcv.url("/edges"));
    browser.clicks("#t-header-add");
    browser.set("#t-headers .header-row .h-name", "X-Bad Name");
    browser.set("#t-headers .header-row .h-value", "v");
    browser.enter("#target-form input[name=name]");
    browser.wait_text("#target-form .field-error[data-for='headers']", "the header's error beside it", |t| {
        t.contains("422") && t.contains("X-Bad Name")
    });
    assert_eq!(browser.text(&browser.wait("#target-form .form-error")), "", "not at the form's foot");
    browser.wait("#t-headers .header-row.invalid");
    browser.clicks("#t-headers .header-row .h-remove");
    browser.enter("#target-form input[name=name]");
    browser.wait("#dlg-once[open]");
    browser.clicks("#once-done");
    let tid = browser.attr(&browser.wait("#target-pane .t-head[data-id]"), "data-id");

    // Deleted meanwhile: the test event says the target is not found, in the API's words.
    assert_eq!(server.admin("DELETE", &format!("/v1/targets/{tid}"), None).status, 204);
    browser.enter("#t-test button[type=submit]");
    let said = browser.text(&browser.wait_text("#t-test .form-error", "the problem's detail", |t| !t.is_empty()));
    assert!(said.contains("404") && said.contains("not found"), "{said}");
    assert!(!browser.page_html().contains("not available on this server"));

    // Deleted in the page: the pane lets go of it, and the keyboard lands on "New target".
    let (tid, _) = server.wire(&rcv.url("/edges"), None, json!({"name": "doomed"}));
    browser.clicks("#tabs button[data-view='events']");
    browser.clicks("#tabs button[data-view='webhooks']");
    browser.clicks(&format!("#center-targets li[data-id='{tid}'] .t-open"));
    browser.enter("#target-pane .t-delete");
    browser.wait("#dlg-confirm[open]");
    browser.enter("#confirm-yes");
    browser.wait_text("#target-pane", "the pane empty", |t| t.contains("Select a target."));
    assert!(browser.find("#target-pane .t-delete").is_none(), "no button left for a deleted target");
    let focused = browser.execute("return document.activeElement.id || document.activeElement.outerHTML.slice(0, 120)");
    assert_eq!(focused, json!("t-new"));

    // 60 events: an operator's Events view starts from the newest, as an admin's does.
    let mut last = 0;
    for i in 0..60 {
        last = server.post_ok(&maia("ai_pause", json!({"i": i})))["events"][0]["seq"].as_u64().expect("seq");
    }
    let long = format!("Maximizer {}", "north-west-region-".repeat(8));
    let r = server.admin("POST", "/v1/sources", Some(&json!({"name": long, "kind": "maximizer"})));
    assert_eq!(r.status, 201, "{}", r.text);
    let r = server.admin("POST", "/v1/keys", Some(&json!({"name": "watch", "role": "operator"})));
    let operator = r.json()["key"].as_str().expect("key").to_owned();
    let watcher = signed_in_as(&server, &operator);
    let newest = watcher.wait("#live tr.event");
    let seq: u64 = watcher.text(&newest).split_whitespace().next().and_then(|s| s.parse().ok()).expect("a seq");
    assert_eq!(seq, last, "the newest event first");
    assert!(!watcher.displayed("#tabs button[data-view='keys']"), "the Keys view is the admins'");

    // A search finds the newest matches first, and "Older" pages back to the oldest: 150
    // events of one type, pages of 100.
    for i in 60..150 {
        last = server.post_ok(&maia("ai_pause", json!({"i": i})))["events"][0]["seq"].as_u64().expect("seq");
    }
    let listed = server.admin("GET", "/v1/events?type=ai_pause&limit=1000", None).json();
    let mut every: Vec<u64> =
        listed["events"].as_array().expect("events").iter().map(|e| e["seq"].as_u64().expect("seq")).collect();
    every.reverse();
    assert_eq!((every.len(), every.first()), (150, Some(&last)));
    let seqs_shown = |b: &Driver| -> Vec<u64> {
        let v = b.execute("return [...document.querySelectorAll('#live tr.event')].map(r => r.cells[0].textContent)");
        v.as_array().expect("rows").iter().map(|s| s.as_str().and_then(|s| s.parse().ok()).expect("a seq")).collect()
    };
    watcher.type_into(&watcher.wait("#q-type"), "ai_pause");
    watcher.clicks("#search button[type=submit]");
    watcher.wait_text("#q-status", "the first page of the search", |t| t.starts_with("100 events found"));
    assert_eq!(seqs_shown(&watcher), every[..100], "the newest 100, newest first");
    watcher.enter("#q-older");
    watcher.wait_text("#q-status", "the second page", |t| t.starts_with("150 events found") && t.contains("oldest"));
    assert_eq!(seqs_shown(&watcher), every, "every match, newest first");
    let older_hidden = watcher.execute("return document.querySelector('#q-older').hidden");
    assert_eq!(older_hidden, json!(true), "no older page past the oldest match");
    watcher.clicks("#q-clear");

    // A phone-sized window: a source's long name in the search's picker widens no form past
    // its section.
    watcher.call("POST", "/window/rect", Some(json!({"width": 390, "height": 844})));
    watcher.wait_text("#q-source", "the long source in the picker", |t| t.contains("north-west-region"));
    let inside = watcher.execute(
        "const s = document.querySelector('#q-source'); \
         return s.getBoundingClientRect().right <= s.closest('section').getBoundingClientRect().right + 0.5",
    );
    assert_eq!(inside, json!(true), "the source picker sticks out of its section");
}

/// Many targets: the Webhook Center's list narrows to a name, URL or id as one types, and to
/// the failing ones with a tick; it says how many it shows.
#[test]
fn the_webhook_centers_list_of_targets_filters() {
    let server = Server::start_with(&[TEST_ENV[0], TEST_ENV[1], TEST_ENV[2], ("CRMHOOK_MAX_TARGETS", "50")]);
    let mut ids = Vec::new();
    for i in 0..30 {
        let name = if i % 10 == 3 { format!("Billing {i}") } else { format!("crm-sync-{i}") };
        let body = json!({"name": name, "url": format!("http://127.0.0.1:9/hook-{i}")});
        let r = server.admin("POST", "/v1/targets", Some(&body));
        assert_eq!(r.status, 201, "{}", r.text);
        ids.push(r.json()["id"].as_str().expect("id").to_owned());
    }
    let off = server.admin("PATCH", &format!("/v1/targets/{}", ids[13]), Some(&json!({"enabled": false})));
    assert_eq!(off.status, 200, "{}", off.text);
    let browser = signed_in(&server);
    browser.clicks("#tabs button[data-view='webhooks']");
    browser.wait_text("#t-count", "the count", |t| t == "30 targets");
    let shown = |b: &Driver| -> Vec<String> {
        let v = b.execute("return [...document.querySelectorAll('#center-targets li')].filter(li => !li.hidden).map(li => li.dataset.id)");
        v.as_array().expect("ids").iter().map(|s| s.as_str().expect("id").to_owned()).collect()
    };
    browser.set("#t-filter", "billing");
    browser.wait_text("#t-count", "the filtered count", |t| t == "3 of 30 targets");
    assert_eq!(shown(&browser), [ids[3].clone(), ids[13].clone(), ids[23].clone()]);
    browser.clicks("#t-failing");
    browser.wait_text("#t-count", "the disabled one", |t| t == "1 of 30 targets");
    assert_eq!(shown(&browser), [ids[13].clone()]);
    // By the URL, then by the id, the tick off.
    browser.clicks("#t-failing");
    browser.set("#t-filter", "hook-29");
    browser.wait_text("#t-count", "one by its URL", |t| t == "1 of 30 targets");
    assert_eq!(shown(&browser), [ids[29].clone()]);
    browser.set("#t-filter", &ids[7]);
    browser.wait_text("#t-count", "one by its id", |t| t == "1 of 30 targets");
    assert_eq!(shown(&browser), [ids[7].clone()]);
}

/// What reorders or hides text (a bidi override, a zero-width space) in what a CRM sent is
/// written out, as the CLI writes it: a record id `invoice-\u{202e}fdp.exe` would read as
/// `invoice-exe.pdf`, and `rec-\u{200b}42` as `rec-42`. In the JSON shown, as JSON's escapes.
#[test]
fn the_console_writes_out_what_reorders_or_hides_text() {
    let server = Server::start();
    let browser = signed_in(&server);
    let event = maia(
        "crm_record_created",
        json!({"recordId": "invoice-\u{202e}fdp.exe", "note": "rec-\u{200b}42 a\u{1d173}b"}),
    );
    let id = server.post_ok(&event)["events"][0]["id"].as_str().expect("id").to_owned();
    let row = format!("#live tr.event[data-id='{id}']");
    let listed = browser.text(&browser.wait_text(&row, "the event listed", |t| t.contains("fdp.exe")));
    assert!(listed.contains("invoice-\\u{202e}fdp.exe"), "{listed}");
    assert!(!listed.contains('\u{202e}'), "{listed:?}");
    browser.clicks(&row);
    let payload = browser.text(&browser.wait_text("#detail pre", "the payload", |t| t.contains("recordId")));
    for written in ["\"invoice-\\u202efdp.exe\"", "\"rec-\\u200b42 a\\ud834\\udd73b\""] {
        assert!(payload.contains(written), "{written} in {payload}");
    }
    let shown: Value = serde_json::from_str(&payload).expect("the JSON shown is JSON");
    assert_eq!(shown["recordId"], "invoice-\u{202e}fdp.exe", "and means what was sent");
    assert_eq!(shown["note"], "rec-\u{200b}42 a\u{1d173}b");
}
