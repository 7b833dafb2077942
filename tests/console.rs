//! The web console in headless Chromium, driven over WebDriver (chromedriver): load the page,
//! enter the token, see a posted event appear live, open it, press redeliver, see the new
//! attempt. `.ci/run` installs Debian's `chromium` and `chromium-driver` when they are missing.
//! With `CRMHOOK_SCREENSHOT=<file.png>` the test also saves a screenshot of the console.

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

impl Driver {
    fn start() -> Driver {
        let driver = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("chromedriver is missing: install Debian's chromium and chromium-driver (.ci/run does)");
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
            "binary": "/usr/bin/chromium",
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
