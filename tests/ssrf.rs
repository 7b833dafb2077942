//! The address guard: with `allow_private_targets` off, non-public targets are refused when
//! created, and again when connecting, so that nothing reaches a listener on loopback.

mod support;

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use support::*;

#[test]
fn non_public_target_urls_are_refused_at_creation() {
    let server = Server::start_with(&[("CRMHOOK_ADMIN_TOKEN", ADMIN), ("CRMHOOK_INGEST_TOKEN", INGEST)]);
    for url in [
        "http://example.com/hook",
        "https://127.0.0.1/",
        "https://127.0.0.1:8443/x",
        "https://10.1.2.3/",
        "https://172.16.0.1/",
        "https://192.168.0.10/",
        "https://169.254.169.254/latest/meta-data/",
        "https://100.64.0.1/",
        "https://224.0.0.1/",
        "https://192.0.2.10/",
        "https://198.51.100.7/",
        "https://203.0.113.9/",
        "https://0.0.0.0/",
        "https://2130706433/",
        "https://0x7f000001/",
        "https://0177.0.0.1/",
        "https://127.1/",
        "https://[::1]/",
        "https://[::]/",
        "https://[::ffff:127.0.0.1]/",
        "https://[::ffff:a9fe:a9fe]/",
        "https://[fe80::1]/",
        "https://[fd00::1]/",
        "https://[ff02::1]/",
        "https://[2001:db8::1]/",
        "https://localhost/",
        "https://LOCALHOST./",
        "https://svc.localhost/",
    ] {
        let r = server.admin("POST", "/v1/targets", Some(&json!({"name": "x", "url": url})));
        assert_eq!(r.status, 422, "{url} was not refused: {}", r.text);
        assert_eq!(r.json()["field"], "url", "{url}: {}", r.text);
        // And a PATCH cannot point an existing target there either.
    }
    let ok = server.admin("POST", "/v1/targets", Some(&json!({"name": "ok", "url": "https://93.184.215.14/hook"})));
    assert_eq!(ok.status, 201, "{}", ok.text);
    let id = ok.json()["id"].as_str().expect("id").to_owned();
    let r = server.admin("PATCH", &format!("/v1/targets/{id}"), Some(&json!({"url": "https://[::ffff:10.0.0.1]/"})));
    assert_eq!(r.status, 422, "{}", r.text);
}

/// Targets that were allowed when created (private targets on) are refused at connect time
/// once the guard is on: by name through the resolver, by literal address before connecting.
#[test]
fn the_guard_is_checked_again_at_connect_time() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        for _ in listener.incoming() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });

    let mut server = Server::start();
    for url in [format!("https://localhost:{port}/by-name"), format!("https://127.0.0.1:{port}/by-address")] {
        let r = server.admin(
            "POST",
            "/v1/targets",
            Some(&json!({"name": "was-allowed", "url": url, "retry_schedule_ms": []})),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        let id = r.json()["id"].as_str().expect("id").to_owned();
        assert_eq!(server.admin("POST", "/v1/subscriptions", Some(&json!({"target_id": id}))).status, 201);
    }
    // The operator turns the guard on.
    assert!(server.stop().success());
    server.env.retain(|(k, _)| k != "CRMHOOK_ALLOW_PRIVATE_TARGETS");
    server.respawn();
    let ack = server.post_ok(&maia("crm_field_update", json!({})));
    let id = ack["events"][0]["id"].as_str().expect("id");
    let shown = wait_for(Duration::from_secs(10), "both deliveries dead", || {
        let e = server.admin("GET", &format!("/v1/events/{id}"), None).json();
        let d = e["deliveries"].as_array().cloned().unwrap_or_default();
        (d.len() == 2 && d.iter().all(|d| d["status"] == "dead")).then_some(d)
    });
    for d in &shown {
        let error = d["attempts"][0]["error"].as_str().unwrap_or_default();
        assert!(error.starts_with("refused: ") && error.contains("not a public address"), "{d}");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "a connection reached the loopback listener");
}
