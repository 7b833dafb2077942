//! Issue 14, points 7 and 8, through the real binary: failed authentication is limited per
//! client address and per presented key (429 with `Retry-After`, counted in `/metrics`); every
//! answer carries `nosniff` and `Referrer-Policy`; the console's policy allows no inline script;
//! the `Host` header is checked; target header values are write-only; `/metrics` and `/readyz`'s
//! detail are behind a key when one is configured.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const DELIVERY: Duration = Duration::from_secs(20);

/// One request from the local address `from` to `server` ([`http_from`]).
fn raw(server: &Server, from: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    http_from(from, method, &server.url(path), headers, None)
}

fn host(server: &Server) -> String {
    server.base.trim_start_matches("http://").to_owned()
}

fn metric(server: &Server, name: &str) -> u64 {
    let text = http("GET", &server.url("/metrics"), &[], None).text;
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in /metrics:\n{text}"))
}

fn assert_problem(r: &Resp, status: u16) -> Value {
    assert_eq!(r.status, status, "{}", r.text);
    assert!(
        r.headers.get("content-type").is_some_and(|c| c.starts_with("application/problem+json")),
        "{:?}",
        r.headers
    );
    let body: Value = serde_json::from_str(&r.text).expect("problem JSON");
    assert_eq!(body["status"], status);
    body
}

#[test]
fn failed_tokens_are_limited_per_address_and_per_key_with_retry_after_and_counted() {
    let server = Server::start_with(&[
        ("CRMHOOK_ADMIN_TOKEN", ADMIN),
        ("CRMHOOK_INGEST_TOKEN", INGEST),
        ("CRMHOOK_AUTH_FAILURE_BURST", "5"),
        ("CRMHOOK_AUTH_FAILURE_REFILL_PER_MINUTE", "1"),
    ]);
    let h = host(&server);
    let wrong = "Bearer adm_wrong_0123456789abcdef";
    let admin = format!("Bearer {ADMIN}");
    assert_eq!(metric(&server, "crmhook_auth_failures_total"), 0);
    for i in 0..5 {
        let r = raw(&server, "127.0.0.1", "GET", "/v1/targets", &[("Host", &h), ("Authorization", wrong)]);
        assert_problem(&r, 401);
        assert!(!r.text.contains("adm_wrong"), "failure {i} echoes no token: {}", r.text);
    }
    // The allowance is spent: 429 with Retry-After, for a wrong token and, from the same address,
    // for the right one too (a blocked client learns nothing of the tokens it tries).
    let r = raw(&server, "127.0.0.1", "GET", "/v1/targets", &[("Host", &h), ("Authorization", wrong)]);
    let problem = assert_problem(&r, 429);
    assert_eq!(problem["type"], "urn:crmhook:problem:too-many-requests");
    let retry: u64 = r.headers.get("retry-after").and_then(|v| v.parse().ok()).expect("Retry-After");
    assert!((1..=60).contains(&retry), "one failure a minute comes back within 60 s: {retry}");
    let r = raw(&server, "127.0.0.1", "GET", "/v1/targets", &[("Host", &h), ("Authorization", &admin)]);
    assert_problem(&r, 429);
    let r = raw(&server, "127.0.0.1", "POST", "/v1/events", &[("Host", &h), ("Authorization", wrong)]);
    assert_problem(&r, 429);
    // Another address with the right token is served...
    let r = raw(&server, "127.0.0.2", "GET", "/v1/targets", &[("Host", &h), ("Authorization", &admin)]);
    assert_eq!(r.status, 200, "{}", r.text);
    // ...but the key that failed is blocked from any address.
    let r = raw(&server, "127.0.0.2", "GET", "/v1/targets", &[("Host", &h), ("Authorization", wrong)]);
    assert_problem(&r, 429);
    // The probes take no token and stay open.
    assert_eq!(raw(&server, "127.0.0.1", "GET", "/healthz", &[("Host", &h)]).status, 200);
    assert_eq!(metric(&server, "crmhook_auth_failures_total"), 5);
    assert_eq!(metric(&server, "crmhook_auth_rate_limited_total"), 4);
}

#[test]
fn every_answer_says_nosniff_no_referrer_and_no_store_and_the_console_runs_no_inline_script() {
    let server = Server::start();
    let h = host(&server);
    let admin = format!("Bearer {ADMIN}");
    let ingest = format!("Bearer {INGEST}");
    let cases: [(&str, &str, Option<&str>, u16); 13] = [
        ("GET", "/healthz", None, 200),
        ("HEAD", "/healthz", None, 200),
        ("HEAD", "/readyz", None, 200),
        ("HEAD", "/metrics", None, 200),
        ("GET", "/readyz", None, 200),
        ("GET", "/metrics", None, 200),
        ("GET", "/console", None, 200),
        ("GET", "/console.js", None, 200),
        ("GET", "/console-icon.svg", None, 200),
        ("GET", "/v1/targets", None, 401),
        ("GET", "/v1/targets", Some(admin.as_str()), 200),
        ("POST", "/v1/events", Some(admin.as_str()), 403),
        ("GET", "/nowhere", Some(ingest.as_str()), 404),
    ];
    for (method, path, auth, status) in cases {
        let mut headers = vec![("Host", h.as_str())];
        headers.extend(auth.map(|a| ("Authorization", a)));
        let r = raw(&server, "127.0.0.1", method, path, &headers);
        assert_eq!(r.status, status, "{method} {path}: {}", r.text);
        assert!(method != "HEAD" || r.text.is_empty(), "HEAD {path} answered a body");
        assert_eq!(r.headers.get("x-content-type-options").map(String::as_str), Some("nosniff"), "{method} {path}");
        assert_eq!(r.headers.get("referrer-policy").map(String::as_str), Some("no-referrer"), "{method} {path}");
        let cache = if path.starts_with("/console") { "no-cache" } else { "no-store" };
        assert_eq!(r.headers.get("cache-control").map(String::as_str), Some(cache), "{method} {path}");
    }
    // An answer with a secret shown once is no cache's either.
    let k = server.admin("POST", "/v1/keys", Some(&json!({"name": "cached", "role": "operator"})));
    assert_eq!((k.status, k.headers.get("cache-control").map(String::as_str)), (201, Some("no-store")), "{}", k.text);
    let page = raw(&server, "127.0.0.1", "GET", "/console", &[("Host", &h)]);
    let csp = page.headers.get("content-security-policy").expect("a CSP on the console");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
    // Nothing inline that the policy would have to allow: the script and the style are files.
    assert!(page.text.contains(r#"<script src="/console.js"></script>"#), "the page loads its script");
    // Its icon is this server's (the browser asks for `/favicon.ico` otherwise, a 404).
    assert!(page.text.contains(r#"<link rel="icon" href="/console-icon.svg""#), "the page names its icon");
    let icon = raw(&server, "127.0.0.1", "GET", "/console-icon.svg", &[("Host", &h)]);
    assert_eq!(icon.headers.get("content-type").map(String::as_str), Some("image/svg+xml"));
    // Its other scripts are files of this server too, and no script element is inline.
    let scripts =
        ["/console.js", "/console-sources.js", "/console-center.js", "/console-charts.js", "/console-keys.js"];
    for src in scripts {
        assert!(page.text.contains(&format!(r#"<script src="{src}"></script>"#)), "the page loads {src}");
        let js = raw(&server, "127.0.0.1", "GET", src, &[("Host", &h)]);
        assert_eq!(js.status, 200, "{src}");
        assert!(js.headers.get("content-type").is_some_and(|c| c.starts_with("text/javascript")), "{src}");
    }
    assert_eq!(page.text.matches("<script").count(), scripts.len(), "no other script element");
    assert!(!page.text.contains("<style") && !page.text.contains(" style="), "no inline style");
    let lower = page.text.to_ascii_lowercase();
    assert!(!lower.contains(" onclick=") && !lower.contains(" onload=") && !lower.contains(" onsubmit="));
    let js = raw(&server, "127.0.0.1", "GET", "/console.js", &[("Host", &h)]);
    assert!(js.headers.get("content-type").is_some_and(|c| c.starts_with("text/javascript")), "{:?}", js.headers);
    assert!(js.text.contains("/v1/stream"), "the console's script");
    let css = raw(&server, "127.0.0.1", "GET", "/console.css", &[("Host", &h)]);
    assert!(css.headers.get("content-type").is_some_and(|c| c.starts_with("text/css")), "{:?}", css.headers);
}

#[test]
fn a_host_that_is_not_this_server_is_misdirected() {
    // Bound to loopback, the check is on by default: a rebound name is refused, addresses and
    // localhost are served.
    let server = Server::start();
    let h = host(&server);
    let admin = format!("Bearer {ADMIN}");
    let port = h.rsplit(':').next().expect("port").to_owned();
    for ok in [h.clone(), format!("localhost:{port}"), format!("[::1]:{port}")] {
        assert_eq!(raw(&server, "127.0.0.1", "GET", "/readyz", &[("Host", &ok)]).status, 200, "{ok}");
    }
    let rebound = format!("attacker.example:{port}");
    for path in ["/metrics", "/readyz", "/console", "/v1/targets"] {
        let r = raw(&server, "127.0.0.1", "GET", path, &[("Host", &rebound), ("Authorization", &admin)]);
        let problem = assert_problem(&r, 421);
        assert!(problem["detail"].as_str().is_some_and(|d| d.contains("allowed_hosts")), "{problem}");
        assert!(!r.text.contains("crmhook_"), "{path} shows nothing");
    }

    // With a public_url, its host is served; other names are not.
    let server = Server::start_with(&[
        ("CRMHOOK_ADMIN_TOKEN", ADMIN),
        ("CRMHOOK_INGEST_TOKEN", INGEST),
        ("CRMHOOK_PUBLIC_URL", "https://crmhook.example.com"),
        ("CRMHOOK_ALLOWED_HOSTS", "hooks.internal"),
    ]);
    let own = host(&server);
    for ok in ["crmhook.example.com", "CRMHOOK.example.com:443", "hooks.internal:8080", own.as_str()] {
        let r = raw(&server, "127.0.0.1", "GET", "/v1/targets", &[("Host", ok), ("Authorization", &admin)]);
        assert_eq!(r.status, 200, "{ok}: {}", r.text);
    }
    let r = raw(&server, "127.0.0.1", "GET", "/v1/targets", &[("Host", "evil.example"), ("Authorization", &admin)]);
    assert_problem(&r, 421);
    assert_eq!(r.headers.get("x-content-type-options").map(String::as_str), Some("nosniff"));
}

#[test]
fn target_header_values_are_write_only_and_patch_can_keep_or_replace_them() {
    let server = Server::start();
    let rcv = Receiver::start();
    let secret = "sk_live_the_receivers_credential";
    let r = server.admin(
        "POST",
        "/v1/targets",
        Some(&json!({"name": "h", "url": rcv.url("/hdr"), "headers": {"X-Api-Key": secret, "X-Tenant": "acme"}})),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(!r.text.contains(secret), "{}", r.text);
    assert_eq!(r.json()["headers"], json!({"X-Api-Key": "<redacted>", "X-Tenant": "<redacted>"}));
    let id = r.json()["id"].as_str().expect("id").to_owned();
    for path in [format!("/v1/targets/{id}"), "/v1/targets".to_owned()] {
        let r = server.admin("GET", &path, None);
        assert_eq!(r.status, 200);
        assert!(
            r.text.contains("X-Api-Key") && !r.text.contains(secret) && !r.text.contains("acme"),
            "{path}: {}",
            r.text
        );
    }
    // A client that sends back what it read keeps the values; a new value replaces one.
    let r = server.admin(
        "PATCH",
        &format!("/v1/targets/{id}"),
        Some(&json!({"headers": {"X-Api-Key": "<redacted>", "x-tenant": "globex"}})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(!r.text.contains(secret) && !r.text.contains("globex"), "{}", r.text);
    // The placeholder for a header that has no value is refused.
    let r = server.admin("PATCH", &format!("/v1/targets/{id}"), Some(&json!({"headers": {"X-New": "<redacted>"}})));
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.json()["field"], "headers.X-New");
    assert_eq!(server.admin("POST", "/v1/subscriptions", Some(&json!({"target_id": id}))).status, 201);
    server.post_ok(&maia("ai_pause", json!({})));
    let got = rcv.wait_count("/hdr", 1, DELIVERY);
    assert_eq!((got[0].header("x-api-key"), got[0].header("x-tenant")), (secret, "globex"));
}

#[test]
fn metrics_and_readyz_detail_need_the_metrics_token_when_one_is_configured() {
    // By default (the contract) both are open, with their detail.
    let open = Server::start();
    assert!(http("GET", &open.url("/metrics"), &[], None).text.contains("crmhook_log_bytes"));
    assert!(http("GET", &open.url("/readyz"), &[], None).json()["head"].is_u64());

    let metrics_token = "met_test_0123456789abcdef0123";
    let server = Server::start_with(&[
        ("CRMHOOK_ADMIN_TOKEN", ADMIN),
        ("CRMHOOK_INGEST_TOKEN", INGEST),
        ("CRMHOOK_METRICS_TOKEN", metrics_token),
    ]);
    let url = server.url("/metrics");
    let r = http("GET", &url, &[], None);
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(r.content_type().starts_with("application/problem+json") && !r.text.contains("crmhook_"), "{}", r.text);
    // A valid key of another role is refused, and not counted as a failure.
    let ingest = format!("Bearer {INGEST}");
    let r = http("GET", &url, &[("Authorization", &ingest)], None);
    assert_eq!(r.status, 403, "the ingest token is not enough: {}", r.text);
    for token in [metrics_token, ADMIN] {
        let bearer = format!("Bearer {token}");
        let r = http("GET", &url, &[("Authorization", &bearer)], None);
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(r.text.contains("crmhook_log_bytes") && r.text.contains("crmhook_auth_failures_total 1"), "{}", r.text);
    }
    // The probe stays open; its detail is for the metrics token and the keys that read the log.
    let r = http("GET", &server.url("/readyz"), &[], None);
    assert_eq!((r.status, r.json()), (200, json!({"status": "ready"})));
    let k = server.admin("POST", "/v1/keys", Some(&json!({"name": "console", "role": "operator"})));
    assert_eq!(k.status, 201, "{}", k.text);
    let operator = k.json()["key"].as_str().expect("key").to_owned();
    for token in [metrics_token, ADMIN, &operator] {
        let bearer = format!("Bearer {token}");
        assert!(http("GET", &server.url("/readyz"), &[("Authorization", &bearer)], None).json()["head"].is_u64());
    }
    assert_eq!(http("GET", &server.url("/healthz"), &[], None).status, 200);
}

/// A probe set up with a valid key that may not see `/readyz`'s detail (the ingest key) gets the
/// probe's answer without it, and is no failed authentication: it never locks its address out.
#[test]
fn a_probe_with_a_key_of_another_role_is_no_failed_authentication() {
    let server = Server::start_with(&[
        ("CRMHOOK_ADMIN_TOKEN", ADMIN),
        ("CRMHOOK_INGEST_TOKEN", INGEST),
        ("CRMHOOK_METRICS_TOKEN", "met_test_0123456789abcdef0123"),
        ("CRMHOOK_AUTH_FAILURE_BURST", "3"),
    ]);
    let h = host(&server);
    let ingest = format!("Bearer {INGEST}");
    for _ in 0..10 {
        let r = raw(&server, "127.0.0.7", "GET", "/readyz", &[("Host", &h), ("Authorization", &ingest)]);
        assert_eq!((r.status, r.text.as_str()), (200, r#"{"status":"ready"}"#));
    }
    let admin = format!("Bearer {ADMIN}");
    let r = raw(&server, "127.0.0.7", "GET", "/v1/me", &[("Host", &h), ("Authorization", &admin)]);
    assert_eq!(r.status, 200, "{}", r.text);
    let metrics = raw(&server, "127.0.0.1", "GET", "/metrics", &[("Host", &h), ("Authorization", &admin)]);
    assert!(metrics.text.contains("crmhook_auth_failures_total 0"), "{}", metrics.text);
}

#[test]
fn a_sources_wrong_keys_and_signatures_are_limited_counted_and_audited_like_tokens() {
    let server = Server::start_with(&[
        ("CRMHOOK_ADMIN_TOKEN", ADMIN),
        ("CRMHOOK_INGEST_TOKEN", INGEST),
        ("CRMHOOK_AUTH_FAILURE_BURST", "3"),
        ("CRMHOOK_AUTH_FAILURE_REFILL_PER_MINUTE", "1"),
    ]);
    let h = host(&server);
    let source = server.admin("POST", "/v1/sources", Some(&json!({"name": "mx", "kind": "maximizer"}))).json();
    let path = format!("/in/{}", source["id"].as_str().expect("id"));
    let guessed = "mxk_guessed_0123456789abcdef";
    for _ in 0..3 {
        let r = raw(&server, "127.0.0.1", "POST", &format!("{path}?key={guessed}"), &[("Host", &h)]);
        assert_problem(&r, 401);
    }
    // Spent: 429 before any key is checked, for the right key too.
    let key = source["key"].as_str().expect("key shown once");
    let r = raw(&server, "127.0.0.1", "POST", &format!("{path}?key={key}"), &[("Host", &h)]);
    let problem = assert_problem(&r, 429);
    assert_eq!(problem["type"], "urn:crmhook:problem:too-many-requests");
    assert!(r.headers.contains_key("retry-after"));
    // Each 401 is an audit entry, without the key that was tried.
    let audited = wait_for(Duration::from_secs(10), "three auth.failed entries", || {
        // From another address: 127.0.0.1 is the one blocked.
        let admin = format!("Bearer {ADMIN}");
        let r = raw(&server, "127.0.0.2", "GET", "/v1/audit", &[("Host", &h), ("Authorization", &admin)]);
        let entries = serde_json::from_str::<Value>(&r.text).ok()?["entries"].clone();
        let failed: Vec<Value> = entries
            .as_array()
            .map(|a| a.iter().filter(|e| e["action"] == "auth.failed").cloned().collect())
            .unwrap_or_default();
        (failed.len() == 3).then_some(failed)
    });
    assert!(audited.iter().all(|e| e["subject"] == format!("POST {path}")), "{audited:?}");
    let text = serde_json::to_string(&audited).expect("JSON");
    assert!(!text.contains(guessed), "the tried key is in the trail: {text}");
    assert_eq!(metric(&server, "crmhook_auth_failures_total"), 3);
    assert_eq!(metric(&server, "crmhook_auth_rate_limited_total"), 1);
}

#[test]
fn behind_a_trusted_proxy_failed_tokens_count_against_the_client_it_names() {
    let server = Server::start_with(&[
        ("CRMHOOK_ADMIN_TOKEN", ADMIN),
        ("CRMHOOK_INGEST_TOKEN", INGEST),
        ("CRMHOOK_AUTH_FAILURE_BURST", "3"),
        ("CRMHOOK_AUTH_FAILURE_REFILL_PER_MINUTE", "1"),
        // 127.0.0.1 plays the proxy; 127.0.0.2 is a client that reaches the server directly.
        ("CRMHOOK_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8"),
    ]);
    let h = host(&server);
    let admin = format!("Bearer {ADMIN}");
    let attacker = "198.51.100.7";
    for i in 0..3 {
        let wrong = format!("Bearer adm_wrong_{i}_0123456789abcdef");
        // What the client wrote itself (left of the proxy's entry) is not believed.
        let forwarded = format!("203.0.113.1, {attacker}");
        let r = raw(
            &server,
            "127.0.0.1",
            "GET",
            "/v1/targets",
            &[("Host", &h), ("Authorization", &wrong), ("X-Forwarded-For", &forwarded)],
        );
        assert_problem(&r, 401);
    }
    // The client the proxy named is blocked, through the proxy, with the right token too...
    let r = raw(
        &server,
        "127.0.0.1",
        "GET",
        "/v1/targets",
        &[("Host", &h), ("Authorization", &admin), ("X-Forwarded-For", attacker)],
    );
    assert_problem(&r, 429);
    // ...and so is it behind a second, inner proxy the first one trusts.
    let via_two = format!("{attacker}, 10.1.2.3");
    let r = raw(
        &server,
        "127.0.0.1",
        "GET",
        "/v1/targets",
        &[("Host", &h), ("Authorization", &admin), ("X-Forwarded-For", &via_two)],
    );
    assert_problem(&r, 429);
    // Every other client of the same proxy is served: the CRM, the operators, the proxy's own
    // requests (no header), and the address the attacker wrote to the left of the proxy's entry.
    for forwarded in [Some("198.51.100.8"), None, Some("203.0.113.1")] {
        let mut headers = vec![("Host", h.as_str()), ("Authorization", admin.as_str())];
        headers.extend(forwarded.map(|f| ("X-Forwarded-For", f)));
        let r = raw(&server, "127.0.0.1", "GET", "/v1/targets", &headers);
        assert_eq!(r.status, 200, "{forwarded:?}: {}", r.text);
    }
    // A client that is no trusted proxy cannot pass its failures on to someone else by naming
    // them: its own address is counted, whatever it says.
    for i in 0..3 {
        let wrong = format!("Bearer adm_other_{i}_0123456789abcdef");
        let r = raw(
            &server,
            "127.0.0.2",
            "GET",
            "/v1/targets",
            &[("Host", &h), ("Authorization", &wrong), ("X-Forwarded-For", "198.51.100.9")],
        );
        assert_problem(&r, 401);
    }
    let r = raw(
        &server,
        "127.0.0.2",
        "GET",
        "/v1/targets",
        &[("Host", &h), ("Authorization", &admin), ("X-Forwarded-For", "198.51.100.10")],
    );
    assert_problem(&r, 429);
    let r = raw(
        &server,
        "127.0.0.1",
        "GET",
        "/v1/targets",
        &[("Host", &h), ("Authorization", &admin), ("X-Forwarded-For", "198.51.100.9")],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    // The audit trail says who failed: the client the proxy named, and the direct client itself.
    let audited = wait_for(Duration::from_secs(10), "six auth.failed entries", || {
        let r = raw(&server, "127.0.0.1", "GET", "/v1/audit", &[("Host", &h), ("Authorization", &admin)]);
        let entries = serde_json::from_str::<Value>(&r.text).ok()?["entries"].clone();
        let from: Vec<String> = entries
            .as_array()?
            .iter()
            .filter(|e| e["action"] == "auth.failed")
            .map(|e| e["from"].as_str().unwrap_or_default().to_owned())
            .collect();
        (from.len() == 6).then_some(from)
    });
    assert_eq!(audited.iter().filter(|f| *f == attacker).count(), 3, "{audited:?}");
    assert_eq!(audited.iter().filter(|f| *f == "127.0.0.2").count(), 3, "{audited:?}");
}
