//! The web console in headless Chromium, driven over WebDriver (chromedriver): load the page,
//! enter the token, see a posted event appear live, open it, press redeliver, see the new
//! attempt; the sources, the quarantine of a source's rejected pieces and the event list's
//! source filter; and the audit trail, newest first, paged by keyboard in a narrow window. The
//! browser is found where Debian puts it, or installed (Debian's `chromium`
//! and `chromium-driver`, with apt-get as root or through passwordless sudo) the first time a
//! test here needs it, so that `cargo test --workspace` runs on a machine that never had it.
//! With `CRMHOOK_SCREENSHOT=<file.png>` the first test also saves a screenshot of the console,
//! with `CRMHOOK_SCREENSHOT_AUDIT=<file.png>` the audit test one of the Audit view (400 px wide).

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
    server.wire(&rcv.url("/console-hook"), Some(json!({})), json!({"name": "crm-demo"}));
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
    if let Ok(path) = std::env::var("CRMHOOK_SCREENSHOT") {
        use base64::Engine;
        let png = browser.call("GET", "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().expect("base64")).expect("png");
        std::fs::write(path, bytes).expect("screenshot written");
    }
}

/// Opens the console and signs in with the admin token; answers once it follows the stream.
fn signed_in(server: &Server) -> Driver {
    let browser = Driver::start();
    browser.call("POST", "/url", Some(json!({"url": server.url("/console")})));
    let token = browser.wait("#token");
    browser.type_into(&token, ADMIN);
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
