//! The console tests' browser: headless Chromium driven over WebDriver (chromedriver), found
//! where Debian puts it or installed the first time a test needs it.

use super::*;

pub(crate) const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub(crate) struct Driver {
    pub(crate) child: Child,
    pub(crate) base: String,
    pub(crate) session: String,
    pub(crate) _profile: tempfile::TempDir,
    /// chromedriver's and the browser's `TMPDIR`: Chromium leaves a directory of its own in it
    /// (`org.chromium.Chromium.scoped_dir.*`) when its session ends; removed with the driver,
    /// after the processes (fields are dropped after [`Drop::drop`]).
    pub(crate) _tmp: tempfile::TempDir,
}

/// Where Debian puts chromedriver.
pub(crate) const DRIVERS: [&str; 2] = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"];
pub(crate) const CHROMIUM: &str = "/usr/bin/chromium";

pub(crate) fn found_driver() -> Option<&'static str> {
    DRIVERS.into_iter().find(|p| std::path::Path::new(p).exists()).filter(|_| std::path::Path::new(CHROMIUM).exists())
}

/// chromedriver, installed first if this machine has none (once per test process: the tests
/// of this file share it).
pub(crate) fn driver_path() -> &'static str {
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
pub(crate) fn install_browser() -> Result<(), String> {
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
    pub(crate) fn start() -> Driver {
        let driver = driver_path();
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let tmp = tempfile::tempdir().expect("tempdir");
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .env("TMPDIR", tmp.path())
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
        Driver { child, base, session, _profile: profile, _tmp: tmp }
    }

    pub(crate) fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
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

    pub(crate) fn find(&self, css: &str) -> Option<String> {
        let v = self.call("POST", "/element", Some(json!({"using": "css selector", "value": css})));
        v[ELEMENT].as_str().map(str::to_owned)
    }

    pub(crate) fn find_all(&self, css: &str) -> Vec<String> {
        let v = self.call("POST", "/elements", Some(json!({"using": "css selector", "value": css})));
        v.as_array()
            .map(|a| a.iter().filter_map(|e| e[ELEMENT].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }

    pub(crate) fn wait(&self, css: &str) -> String {
        wait_for(Duration::from_secs(15), css, || self.find(css))
    }

    pub(crate) fn click(&self, element: &str) {
        self.call("POST", &format!("/element/{element}/click"), Some(json!({})));
    }

    pub(crate) fn type_into(&self, element: &str, text: &str) {
        self.call("POST", &format!("/element/{element}/value"), Some(json!({"text": text})));
    }

    pub(crate) fn text(&self, element: &str) -> String {
        self.call("GET", &format!("/element/{element}/text"), None).as_str().unwrap_or("").to_owned()
    }

    pub(crate) fn property(&self, element: &str, name: &str) -> String {
        self.call("GET", &format!("/element/{element}/property/{name}"), None).as_str().unwrap_or("").to_owned()
    }

    /// Whether the element is shown (WebDriver's "is displayed").
    pub(crate) fn displayed(&self, element: &str) -> bool {
        self.call("GET", &format!("/element/{element}/displayed"), None).as_bool().unwrap_or(false)
    }

    /// Presses Enter on the element (focused first): how a keyboard user activates a button.
    pub(crate) fn press_enter(&self, element: &str) {
        self.type_into(element, "\u{E007}");
    }

    /// Runs `script` in the page (WebDriver's own channel, outside the page's CSP); answers its
    /// value.
    pub(crate) fn execute(&self, script: &str) -> Value {
        self.call("POST", "/execute/sync", Some(json!({"script": script, "args": []})))
    }

    /// Waits until an element matching `css` has a text for which `f` holds; answers it.
    pub(crate) fn wait_text(&self, css: &str, what: &str, f: impl Fn(&str) -> bool) -> String {
        wait_for(Duration::from_secs(15), what, || self.find(css).filter(|e| f(&self.text(e))))
    }

    /// An attribute of the element (`data-id`, …), empty when it has none.
    pub(crate) fn attr(&self, element: &str, name: &str) -> String {
        self.call("GET", &format!("/element/{element}/attribute/{name}"), None).as_str().unwrap_or("").to_owned()
    }

    pub(crate) fn clear(&self, element: &str) {
        self.call("POST", &format!("/element/{element}/clear"), Some(json!({})));
    }

    /// Replaces the text of an input (found again if the page redrew it meanwhile).
    pub(crate) fn set(&self, css: &str, text: &str) {
        wait_for(Duration::from_secs(15), css, || {
            let e = self.find(css)?;
            self.clear(&e);
            self.type_into(&e, text);
            (self.property(&e, "value") == text).then_some(())
        });
    }

    /// Presses Escape on whatever has the focus.
    pub(crate) fn escape(&self) {
        let active = self.call("GET", "/element/active", None);
        let e = active[ELEMENT].as_str().expect("an active element").to_owned();
        self.type_into(&e, "\u{E00C}");
    }

    /// Chooses `value` in a `<select>`, by clicking its option.
    pub(crate) fn choose(&self, select: &str, value: &str) {
        self.click(&self.wait(&format!("{select} option[value='{value}']")));
    }

    /// Clicks the element `css` finds, again if the page redrew it before the click landed.
    pub(crate) fn clicks(&self, css: &str) {
        wait_for(Duration::from_secs(15), css, || {
            let e = self.find(css)?;
            let answer = self.call("POST", &format!("/element/{e}/click"), Some(json!({})));
            answer.get("error").is_none().then_some(())
        });
    }

    /// Presses Enter on the element `css` finds, again if the page redrew it meanwhile.
    pub(crate) fn enter(&self, css: &str) {
        wait_for(Duration::from_secs(15), css, || {
            let e = self.find(css)?;
            let answer = self.call("POST", &format!("/element/{e}/value"), Some(json!({"text": "\u{E007}"})));
            answer.get("error").is_none().then_some(())
        });
    }

    /// The whole page's markup as it stands (what a secret must no longer be in).
    pub(crate) fn page_html(&self) -> String {
        self.execute("return document.documentElement.outerHTML").as_str().unwrap_or("").to_owned()
    }

    pub(crate) fn screenshot(&self, path: &std::path::Path) {
        use base64::Engine;
        let png = self.call("GET", "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().expect("base64")).expect("png");
        std::fs::write(path, bytes).expect("screenshot written");
    }

    /// Saves `name` into `CRMHOOK_SCREENSHOTS`, when that is set.
    pub(crate) fn shot(&self, name: &str) {
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
