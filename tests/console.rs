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

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    child: Child,
    base: String,
    session: String,
    _profile: tempfile::TempDir,
}

/// Where Debian puts chromedriver.
const DRIVERS: [&str; 2] = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"];
const CHROMIUM: &str = "/usr/bin/chromium";

fn found_driver() -> Option<&'static str> {
    DRIVERS.into_iter().find(|p| std::path::Path::new(p).exists()).filter(|_| std::path::Path::new(CHROMIUM).exists())
}

/// chromedriver, installed first if this machine has none (once per test process: the tests
/// of this file share it).
fn driver_path() -> &'static str {
    static INSTALLED: std::sync::OnceLock<Result<&'static str, String>> = std::sync::OnceLock::new();
    let found = INSTALLED.get_or_init(|| {
        if let Some(found) = found_driver() {
            return Ok(found);
        }
        install_browser()?;
        found_driver().ok_or_else(|| "apt-get ran, but chromium or chromedriver is still missing".to_owned())
    });
    match found {
        Ok(path) => path,
        Err(why) => panic!(
            "the console tests need Debian's chromium and chromium-driver, and they could not be installed: {why}\n\
             install them (apt-get install chromium chromium-driver) and run the tests again"
        ),
    }
}

/// `apt-get install chromium chromium-driver`, as root or with passwordless sudo.
fn install_browser() -> Result<(), String> {
    let root = Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false);
    let sudo = !root && Command::new("sudo").args(["-n", "true"]).status().is_ok_and(|s| s.success());
    if !root && !sudo {
        return Err("not root, and sudo asks for a password".into());
    }
    eprintln!("console tests: installing Debian's chromium and chromium-driver (once; about a minute)");
    let script = "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver";
    let mut cmd = if root { Command::new("sh") } else { Command::new("sudo") };
    if !root {
        cmd.arg("sh");
    }
    let out = cmd.args(["-c", script]).stdout(Stdio::null()).output().map_err(|e| format!("apt-get: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("apt-get failed: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl Driver {
    fn start() -> Driver {
        let driver = driver_path();
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs");
        let base = format!("http://127.0.0.1:{port}");
        wait_for(Duration::from_secs(20), "chromedriver to answer", || {
            ureq::get(&format!("{base}/status")).call().ok().map(|_| ())
        });
        let profile = tempfile::tempdir().expect("tempdir");
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                     "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--window-size=1400,900", format!("--user-data-dir={}", profile.path().display())]
        }}}});
        let created: Value = ureq::post(&format!("{base}/session"))
            .send_json(caps)
            .expect("a browser session")
            .into_json()
            .expect("json");
        let session = created["value"]["sessionId"].as_str().expect("sessionId").to_owned();
        Driver { child, base, session, _profile: profile }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let req = ureq::request(method, &url);
        let resp = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        match resp {
            Ok(r) => r.into_json::<Value>().expect("json")["value"].clone(),
            Err(ureq::Error::Status(_, r)) => r.into_json::<Value>().map(|v| v["value"].clone()).unwrap_or(Value::Null),
            Err(e) => panic!("webdriver {method} {path}: {e}"),
        }
    }

    fn find(&self, css: &str) -> Option<String> {
        let v = self.call("POST", "/element", Some(json!({"using": "css selector", "value": css})));
        v[ELEMENT].as_str().map(str::to_owned)
    }

    fn find_all(&self, css: &str) -> Vec<String> {
        let v = self.call("POST", "/elements", Some(json!({"using": "css selector", "value": css})));
        v.as_array()
            .map(|a| a.iter().filter_map(|e| e[ELEMENT].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }

    fn wait(&self, css: &str) -> String {
        wait_for(Duration::from_secs(15), css, || self.find(css))
    }

    fn click(&self, element: &str) {
        self.call("POST", &format!("/element/{element}/click"), Some(json!({})));
    }

    fn type_into(&self, element: &str, text: &str) {
        self.call("POST", &format!("/element/{element}/value"), Some(json!({"text": text})));
    }

    fn text(&self, element: &str) -> String {
        self.call("GET", &format!("/element/{element}/text"), None).as_str().unwrap_or("").to_owned()
    }

    fn property(&self, element: &str, name: &str) -> String {
        self.call("GET", &format!("/element/{element}/property/{name}"), None).as_str().unwrap_or("").to_owned()
    }

    /// Whether the element is shown (WebDriver's "is displayed").
    fn displayed(&self, element: &str) -> bool {
        self.call("GET", &format!("/element/{element}/displayed"), None).as_bool().unwrap_or(false)
    }

    /// Presses Enter on the element (focused first): how a keyboard user activates a button.
    fn press_enter(&self, element: &str) {
        self.type_into(element, "\u{E007}");
    }

    /// Runs `script` in the page (WebDriver's own channel, outside the page's CSP); answers its
    /// value.
    fn execute(&self, script: &str) -> Value {
        self.call("POST", "/execute/sync", Some(json!({"script": script, "args": []})))
    }

    /// Waits until an element matching `css` has a text for which `f` holds; answers it.
    fn wait_text(&self, css: &str, what: &str, f: impl Fn(&str) -> bool) -> String {
        wait_for(Duration::from_secs(15), what, || self.find(css).filter(|e| f(&self.text(e))))
    }

    /// An attribute of the element (`data-id`, …), empty when it has none.
    fn attr(&self, element: &str, name: &str) -> String {
        self.call("GET", &format!("/element/{element}/attribute/{name}"), None).as_str().unwrap_or("").to_owned()
    }

    fn clear(&self, element: &str) {
        self.call("POST", &format!("/element/{element}/clear"), Some(json!({})));
    }

    /// Replaces the text of an input (found again if the page redrew it meanwhile).
    fn set(&self, css: &str, text: &str) {
        wait_for(Duration::from_secs(15), css, || {
            let e = self.find(css)?;
            self.clear(&e);
            self.type_into(&e, text);
            (self.property(&e, "value") == text).then_some(())
        });
    }

    /// Presses Escape on whatever has the focus.
    fn escape(&self) {
        let active = self.call("GET", "/element/active", None);
        let e = active[ELEMENT].as_str().expect("an active element").to_owned();
        self.type_into(&e, "\u{E00C}");
    }

    /// Chooses `value` in a `<select>`, by clicking its option.
    fn choose(&self, select: &str, value: &str) {
        self.click(&self.wait(&format!("{select} option[value='{value}']")));
    }

    /// Clicks the element `css` finds, again if the page redrew it before the click landed.
    fn clicks(&self, css: &str) {
        wait_for(Duration::from_secs(15), css, || {
            let e = self.find(css)?;
            let answer = self.call("POST", &format!("/element/{e}/click"), Some(json!({})));
            answer.get("error").is_none().then_some(())
        });
    }

    /// Presses Enter on the element `css` finds, again if the page redrew it meanwhile.
    fn enter(&self, css: &str) {
        wait_for(Duration::from_secs(15), css, || {
            let e = self.find(css)?;
            let answer = self.call("POST", &format!("/element/{e}/value"), Some(json!({"text": "\u{E007}"})));
            answer.get("error").is_none().then_some(())
        });
    }

    /// The whole page's markup as it stands (what a secret must no longer be in).
    fn page_html(&self) -> String {
        self.execute("return document.documentElement.outerHTML").as_str().unwrap_or("").to_owned()
    }

    fn screenshot(&self, path: &std::path::Path) {
        use base64::Engine;
        let png = self.call("GET", "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().expect("base64")).expect("png");
        std::fs::write(path, bytes).expect("screenshot written");
    }

    /// Saves `name` into `CRMHOOK_SCREENSHOTS`, when that is set.
    fn shot(&self, name: &str) {
        if let Ok(dir) = std::env::var("CRMHOOK_SCREENSHOTS") {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(dir);
            std::fs::create_dir_all(&dir).expect("screenshot dir");
            self.screenshot(&dir.join(name));
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = ureq::delete(&format!("{}/session/{}", self.base, self.session)).call();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

// ---- the Webhook Center ---------------------------------------------------------------------

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
    // Disabled in the page (its URL refuses), enabled again, then deleted.
    let mx_row = format!("#sources tr[data-id='{mx}']");
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
    browser.enter("#target-form input[name=rate_limit_per_s]");
    browser.wait_text("#target-pane .t-rate", "no rate limit shown", |t| t == "none");
    assert_eq!(server.admin("GET", &format!("/v1/targets/{tid}"), None).json()["rate_limit_per_s"], Value::Null);
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
