//! The Events view where an audit of the console found it wrong: the live feed lost the events
//! posted while it was reconnecting (it reopened the stream with no resume point) and kept
//! targets deleted meanwhile; a redelivery's refusal was wiped 300 ms after it showed, and a
//! test event offered a redelivery the API always refuses; the targets table's Replay swallowed
//! its errors and kept targets deleted in the Webhooks view; and a long name without spaces
//! widened the sections past their window.

use super::*;

#[test]
fn the_live_feed_resumes_after_a_restart_with_what_it_missed() {
    let mut server = Server::start();
    let (kept, _) = server.wire("http://127.0.0.1:9/kept", None, json!({"name": "kept"}));
    let (gone, _) = server.wire("http://127.0.0.1:9/gone", None, json!({"name": "gone"}));
    let browser = signed_in(&server);
    let before =
        server.post_ok(&maia("crm_record_created", json!({})))["events"][0]["id"].as_str().expect("id").to_owned();
    browser.wait(&format!("#live tr[data-id='{before}']"));
    browser.wait(&format!("#targets tr[data-id='{gone}']"));

    // The server stops: the page says it is reconnecting. Back on the same port, an event is
    // posted and a target deleted before the page's next try (its pause is 2 s, then longer).
    assert!(server.stop().success(), "a graceful stop");
    browser.wait_text("#conn", "the page reconnecting", |t| t.starts_with("reconnecting"));
    server.respawn_on_the_same_port();
    let missed =
        server.post_ok(&maia("crm_field_update", json!({})))["events"][0]["id"].as_str().expect("id").to_owned();
    assert_eq!(server.admin("DELETE", &format!("/v1/targets/{gone}"), None).status, 204);

    // Back: the event missed is listed once, the deleted target no longer.
    wait_for(Duration::from_secs(90), "the event posted while the feed was down", || {
        browser.find(&format!("#live tr[data-id='{missed}']"))
    });
    browser.wait_text("#conn", "the live stream", |t| t == "live");
    wait_for(Duration::from_secs(15), "the deleted target gone from the table", || {
        browser.find(&format!("#targets tr[data-id='{gone}']")).is_none().then_some(())
    });
    browser.wait(&format!("#targets tr[data-id='{kept}']"));
    // And live again: the next one arrives by the stream, each listed once, newest first.
    let next =
        server.post_ok(&maia("crm_record_deleted", json!({})))["events"][0]["id"].as_str().expect("id").to_owned();
    browser.wait(&format!("#live tr[data-id='{next}']"));
    let ids: Vec<String> = browser.find_all("#live tr.event").iter().map(|r| browser.attr(r, "data-id")).collect();
    assert_eq!(ids, [next, missed, before], "the list after the restart");
}

#[test]
fn a_refused_redelivery_stays_said_and_a_test_event_offers_none() {
    let server = Server::start();
    let rcv = Receiver::start();
    let (doomed, _) = server.wire(&rcv.url("/doomed"), Some(json!({})), json!({"name": "doomed"}));
    let (live, _) = server.wire(&rcv.url("/live"), Some(json!({})), json!({"name": "live"}));
    let browser = signed_in(&server);
    let id = server.post_ok(&maia("crm_record_created", json!({})))["events"][0]["id"].as_str().expect("id").to_owned();
    browser.clicks(&format!("#live tr[data-id='{id}']"));
    wait_for(Duration::from_secs(15), "the first attempts", || {
        (browser.find_all("#detail tr.attempt").len() == 2).then_some(())
    });

    // The target deleted meanwhile: the redelivery is refused, and the refusal stays, however
    // the event is drawn again (it went after 300 ms).
    assert_eq!(server.admin("DELETE", &format!("/v1/targets/{doomed}"), None).status, 204);
    browser.clicks(&format!("#detail .redeliver[data-target='{doomed}']"));
    let said = browser.text(&browser.wait_text("#detail .redeliver-error", "the refusal", |t| t.contains("404")));
    // The other target's redelivery: drawn again once queued, and once its attempt arrives.
    browser.clicks(&format!("#detail .redeliver[data-target='{live}']"));
    rcv.wait_count("/live", 2, Duration::from_secs(10));
    wait_for(Duration::from_secs(15), "the redelivery in the page", || {
        (browser.find_all(&format!("#detail .delivery[data-target='{live}'] tr.attempt")).len() == 2).then_some(())
    });
    // (Read in one go in the page: the stream's attempts draw the event again at any time.)
    let still = browser.execute(&format!(
        "return document.querySelector(\"#detail .delivery[data-target='{doomed}'] .redeliver-error\")?.textContent ?? null"
    ));
    assert_eq!(still, json!(said), "the refusal was wiped");

    // A test event: its one delivery is shown, with no Redeliver (the API answers 409).
    let r = server.admin("POST", &format!("/v1/targets/{live}/test"), Some(&json!({})));
    assert_eq!(r.status, 200, "{}", r.text);
    let test_id = r.json()["event"]["id"].as_str().expect("id").to_owned();
    browser.clicks(&format!("#live tr[data-id='{test_id}']"));
    browser.wait(&format!("#detail[data-event='{test_id}'] .delivery[data-target='{live}'] tr.attempt"));
    assert!(browser.find("#detail .redeliver").is_none(), "a test event offers a redelivery");
}

#[test]
fn the_targets_table_says_a_replay_failed_and_follows_deletions() {
    let server = Server::start();
    let (first, _) = server.wire("http://127.0.0.1:9/first", None, json!({"name": "first"}));
    let (second, _) = server.wire("http://127.0.0.1:9/second", None, json!({"name": "second"}));
    let (third, _) = server.wire("http://127.0.0.1:9/third", None, json!({"name": "third"}));
    let browser = signed_in(&server);
    browser.wait(&format!("#targets tr[data-id='{first}']"));

    // Replay on a target deleted elsewhere: the API's 404 said, and the table follows.
    assert_eq!(server.admin("DELETE", &format!("/v1/targets/{first}"), None).status, 204);
    browser.clicks(&format!("#targets .replay[data-id='{first}']"));
    browser.wait_text("#targets-note", "the replay's refusal", |t| t.contains("404") && t.contains("not found"));
    wait_for(Duration::from_secs(15), "the deleted target gone", || {
        browser.find(&format!("#targets tr[data-id='{first}']")).is_none().then_some(())
    });

    // Deleted while another view was shown: gone when the Events view is shown again.
    browser.clicks("#tabs button[data-view='webhooks']");
    browser.wait(&format!("#center-targets li[data-id='{second}']"));
    assert_eq!(server.admin("DELETE", &format!("/v1/targets/{second}"), None).status, 204);
    browser.clicks("#tabs button[data-view='events']");
    wait_for(Duration::from_secs(15), "the target deleted meanwhile gone", || {
        browser.find(&format!("#targets tr[data-id='{second}']")).is_none().then_some(())
    });
    browser.wait(&format!("#targets tr[data-id='{third}']"));
}

/// The sections of the view shown that are wider inside than they are (they would scroll),
/// and the page if it is wider than the window.
const TOO_WIDE: &str = "const bad = [];
  for (const s of document.querySelectorAll('main:not([hidden]) section')) {
    if (s.scrollWidth > s.clientWidth + 1) bad.push(`${s.id || s.querySelector('h2')?.textContent} ${s.scrollWidth} > ${s.clientWidth}`);
  }
  const page = document.documentElement;
  if (page.scrollWidth > page.clientWidth) bad.push(`the page ${page.scrollWidth} > ${page.clientWidth}`);
  return bad;";

#[test]
fn a_long_name_without_spaces_wraps_inside_its_section() {
    let server = Server::start();
    let name = "x".repeat(150);
    let url = format!("http://127.0.0.1:9/{}", "y".repeat(150));
    let (tid, _) = server.wire(&url, Some(json!({"kanban_ids": ["k".repeat(150)]})), json!({"name": name}));
    let browser = signed_in(&server);
    for (width, height) in [(1400, 900), (400, 800)] {
        browser.call("POST", "/window/rect", Some(json!({"width": width, "height": height})));
        browser.clicks("#tabs button[data-view='events']");
        browser.wait(&format!("#targets tr[data-id='{tid}']"));
        let bad = browser.execute(TOO_WIDE);
        assert_eq!(bad, json!([]), "the Events view at {width} px");
        browser.clicks("#tabs button[data-view='webhooks']");
        browser.clicks(&format!("#center-targets li[data-id='{tid}'] .t-open"));
        browser.wait("#target-pane #t-subs li.sub");
        let bad = browser.execute(TOO_WIDE);
        assert_eq!(bad, json!([]), "the Webhooks view at {width} px");
    }
}
