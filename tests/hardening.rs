//! The smaller hardening of issue 14 (point 10), on the real binary: subscriptions and their
//! lists are bounded, a target cannot set hop-by-hop or oversized headers, an event with a
//! member name twice is refused (and quarantined when a source posts it), `log export` opens
//! nothing but a data dir, a data dir another process holds is said to be in use, and a target
//! on an IPv6 literal address gets its deliveries (over `https://` too: the TLS server name is
//! the address), and requests the HTTP layer cannot parse cannot fill the server's log.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv6Addr};
use std::process::Command;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

fn assert_422(r: &Resp, field: &str) {
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.content_type().starts_with("application/problem+json"), "{}", r.content_type());
    assert_eq!(r.json()["field"], field, "{}", r.text);
}

#[test]
fn subscriptions_per_target_and_their_lists_are_bounded() {
    let server = Server::start();
    let (tid, _) = server.wire("http://127.0.0.1:9/none", None, json!({}));
    let sub = |body: Value| server.admin("POST", "/v1/subscriptions", Some(&body));

    // An `in` list past 1,000 values, or a subscription past 2,000 values in all, is refused
    // at once (100k values once stalled admin changes for seconds).
    let values = |n: usize| (0..n).map(|i| json!(format!("v{i}"))).collect::<Vec<_>>();
    let huge = json!({"target_id": tid, "filters": [{"path": "/recordId", "op": "in", "value": values(10_000)}]});
    assert_422(&sub(huge), "filters[0]");
    // 100k values do not even fit in an admin request's body.
    let r = sub(json!({"target_id": tid, "filters": [{"path": "/recordId", "op": "in", "value": values(100_000)}]}));
    assert_eq!(r.status, 413, "{}", r.text);
    let past = json!({"target_id": tid, "filters": [{"path": "/recordId", "op": "nin", "value": values(1_001)}]});
    assert_422(&sub(past), "filters[0]");
    assert_422(&sub(json!({"target_id": tid, "kanban_ids": values(1_001)})), "kanban_ids");
    let total = json!({"target_id": tid, "kanban_ids": values(1_000), "field_names": values(1_000), "event_types": ["ai_pause"]});
    assert_422(&sub(total), "body");
    let listed = server.admin("GET", &format!("/v1/subscriptions?target_id={tid}"), None).json();
    assert_eq!(listed["subscriptions"].as_array().map(Vec::len), Some(0), "nothing refused was kept");

    // At the limits: accepted. Then up to 100 subscriptions for the target, and no more.
    let at_limit = json!({"target_id": tid, "filters": [{"path": "/recordId", "op": "in", "value": values(1_000)}]});
    assert_eq!(sub(at_limit).status, 201);
    for i in 1..100 {
        let r = sub(json!({"target_id": tid, "kanban_ids": [format!("k{i}")]}));
        assert_eq!(r.status, 201, "subscription {i}: {}", r.text);
    }
    let r = sub(json!({"target_id": tid}));
    assert_422(&r, "target_id");
    assert!(r.json()["detail"].as_str().unwrap_or_default().contains("100"), "{}", r.text);
    let listed = server.admin("GET", &format!("/v1/subscriptions?target_id={tid}"), None).json();
    assert_eq!(listed["subscriptions"].as_array().map(Vec::len), Some(100));
    // Another target has its own room.
    let (other, _) = server.wire("http://127.0.0.1:9/other", Some(json!({})), json!({}));
    assert_eq!(sub(json!({"target_id": other})).status, 201);
    // Listed by target: its own only; none for an id naming no target; 422 for one that is not
    // a target id (it listed nothing, as if it were one).
    let listed = server.admin("GET", &format!("/v1/subscriptions?target_id={other}"), None).json();
    assert_eq!(listed["subscriptions"].as_array().map(Vec::len), Some(2), "wire's and the one above");
    let nobody = "tgt_00000000000000000000000000";
    let listed = server.admin("GET", &format!("/v1/subscriptions?target_id={nobody}"), None);
    assert_eq!((listed.status, listed.json()["subscriptions"].as_array().map(Vec::len)), (200, Some(0)));
    assert_422(&server.admin("GET", "/v1/subscriptions?target_id=bogus", None), "target_id");
}

#[test]
fn concurrent_creations_cannot_pass_the_subscriptions_per_target_limit() {
    let server = Server::start();
    let (tid, _) = server.wire("http://127.0.0.1:9/race", None, json!({}));
    for i in 0..99 {
        let r = server.admin(
            "POST",
            "/v1/subscriptions",
            Some(&json!({"target_id": tid, "kanban_ids": [format!("k{i}")]})),
        );
        assert_eq!(r.status, 201, "subscription {i}: {}", r.text);
    }
    // Ten creations at once for the last place: each on its own connection, released together.
    let start = std::sync::Arc::new(std::sync::Barrier::new(10));
    let answers: Vec<Resp> = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..10)
            .map(|i| {
                let (server, tid, start) = (&server, &tid, start.clone());
                scope.spawn(move || {
                    let body = json!({"target_id": tid, "kanban_ids": [format!("race{i}")]});
                    start.wait();
                    server.admin("POST", "/v1/subscriptions", Some(&body))
                })
            })
            .collect();
        racers.into_iter().map(|t| t.join().expect("racer")).collect()
    });
    let created: Vec<&Resp> = answers.iter().filter(|r| r.status == 201).collect();
    let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
    assert_eq!(created.len(), 1, "exactly one creation takes the last place, got {statuses:?}");
    for r in answers.iter().filter(|r| r.status != 201) {
        assert_422(r, "target_id");
        assert!(r.json()["detail"].as_str().unwrap_or_default().contains("100"), "{}", r.text);
    }
    let listed = server.admin("GET", &format!("/v1/subscriptions?target_id={tid}"), None).json();
    let listed = listed["subscriptions"].as_array().cloned().unwrap_or_default();
    assert_eq!(listed.len(), 100, "the list shows the limit");
    let winner = created[0].json()["id"].clone();
    assert!(listed.iter().any(|s| s["id"] == winner), "the one created is listed");
}

#[test]
fn targets_cannot_set_hop_by_hop_or_oversized_headers() {
    let server = Server::start();
    let create = |headers: Value| {
        let body = json!({"name": format!("h{}", unique()), "url": "http://127.0.0.1:9/h", "headers": headers});
        server.admin("POST", "/v1/targets", Some(&body))
    };
    for name in [
        "Expect",
        "Upgrade",
        "TE",
        "Proxy-Authorization",
        "Connection",
        "Keep-Alive",
        "Transfer-Encoding",
        "Host",
        "Content-Length",
        "Trailer",
    ] {
        assert_422(&create(json!({name: "x"})), &format!("headers.{name}"));
    }
    assert_422(&create(json!({"X".repeat(200 * 1024): "x"})), "headers");
    assert_422(&create(json!({"X".repeat(129): "x"})), "headers");
    assert_422(&create(json!({"X-Big": "v".repeat(8_193)})), "headers.X-Big");
    assert_422(&create(json!({"X-A": "v".repeat(8_192), "X-B": "v".repeat(8_192)})), "headers");
    let many: serde_json::Map<String, Value> = (0..51).map(|i| (format!("X-{i}"), json!("v"))).collect();
    assert_422(&create(Value::Object(many)), "headers");
    // A PATCH is held to the same rules; ordinary headers still pass.
    let r = create(json!({"X-Api-Key": "k", "Authorization": "Bearer abc"}));
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json()["id"].as_str().expect("id").to_owned();
    let r = server.admin("PATCH", &format!("/v1/targets/{id}"), Some(&json!({"headers": {"Upgrade": "h2c"}})));
    assert_422(&r, "headers.Upgrade");
}

#[test]
fn events_with_a_member_name_twice_are_refused_and_quarantined() {
    let server = Server::start();
    let rcv = Receiver::start();
    let (tid, _) = server.wire(&rcv.url("/dup"), Some(json!({})), json!({}));

    // POST /v1/events: 422, nothing stored, nothing delivered.
    let dup =
        br#"{"eventType":"crm_field_update","recordId":"r1","kanbanId":"k1","fieldName":"Email","fieldName":"Phone"}"#;
    let nested = br#"[{"eventType":"ai_pause","sessionId":"s1"},{"eventType":"crm_record_created","recordId":"r","kanbanId":"k","customFields":{"a":1,"a":2}}]"#;
    for body in [dup.as_slice(), nested.as_slice()] {
        let r = http(
            "POST",
            &server.url("/v1/events"),
            &[("Content-Type", "application/json"), ("Authorization", &format!("Bearer {INGEST}"))],
            Some(body),
        );
        assert_eq!(r.status, 422, "{}", r.text);
        assert!(r.content_type().starts_with("application/problem+json"));
        assert!(r.json()["detail"].as_str().unwrap_or_default().contains("appears twice"), "{}", r.text);
    }
    assert_eq!(server.admin("GET", "/v1/events", None).json()["events"], json!([]));

    // A MAIA source: the element goes to the quarantine, with its exact bytes.
    let secret = "maia-secret-for-the-test";
    let r = server.admin("POST", "/v1/sources", Some(&json!({"name": "maia", "kind": "maia", "maia_secret": secret})));
    assert_eq!(r.status, 201, "{}", r.text);
    let src = r.json()["id"].as_str().expect("id").to_owned();
    let signature = hex(&hmac_sha256(secret.as_bytes(), dup));
    let r = http(
        "POST",
        &server.url(&format!("/in/{src}")),
        &[("Content-Type", "application/json"), ("X-Maia-Signature", &signature)],
        Some(dup),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!((r.json()["accepted"].clone(), r.json()["rejected"].clone()), (json!(0), json!(1)), "{}", r.text);
    let rejected = server.admin("GET", "/v1/rejected", None);
    assert!(rejected.text.contains("appears twice"), "{}", rejected.text);

    // A later good event is delivered, and it is the only delivery the target ever made.
    let good = server.post_ok(&maia("crm_field_update", json!({})));
    let eid = good["events"][0]["id"].as_str().expect("id").to_owned();
    rcv.wait_count("/dup", 1, Duration::from_secs(20));
    server.wait_settled(&tid, Duration::from_secs(20));
    let got = rcv.requests("/dup");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("webhook-id"), eid);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn export(dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_crmhook")).args(["log", "export", "--data-dir"]).arg(dir).output().expect("runs")
}

#[test]
fn log_export_opens_nothing_but_a_data_dir() {
    let scratch = tempfile::tempdir().expect("tempdir");
    // An empty directory, a directory of other files, a file, a path that does not exist:
    // each refused with a clear error, and nothing written.
    let empty = scratch.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let other = scratch.path().join("other");
    std::fs::create_dir(&other).expect("mkdir");
    std::fs::write(other.join("notes.txt"), "mine").expect("write");
    let file = scratch.path().join("file");
    std::fs::write(&file, "x").expect("write");
    let missing = scratch.path().join("missing");
    for (dir, says) in [
        (&empty, "not a crmhook data dir"),
        (&other, "not a crmhook data dir"),
        (&file, "not a directory"),
        (&missing, "no data dir"),
    ] {
        let out = export(dir);
        assert!(!out.status.success(), "{}", dir.display());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{}: {stderr}", dir.display());
    }
    assert_eq!(std::fs::read_dir(&empty).expect("read").count(), 0, "nothing written into the empty dir");
    assert_eq!(std::fs::read_dir(&other).expect("read").count(), 1, "nothing written beside the notes");
    assert!(!missing.exists());

    // A real data dir (the server stopped) still exports.
    let mut server = Server::start();
    let posted = server.post_ok(&maia("ai_pause", json!({})));
    assert!(server.stop().success());
    let out = export(&server.data_dir());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line: Value =
        serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap_or_default()).expect("json");
    assert_eq!(line["id"], posted["events"][0]["id"]);
}

#[test]
fn a_data_dir_in_use_is_said_plainly_once() {
    let server = Server::start();
    let mut second = Command::new(env!("CARGO_BIN_EXE_crmhook"));
    second.args(["serve", "--bind", "127.0.0.1:0", "--data-dir"]).arg(server.data_dir());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CRMHOOK_")) {
        second.env_remove(k);
    }
    let outs = [second.output().expect("runs"), export(&server.data_dir())];
    for out in &outs {
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let says = "in use by another process (another crmhook may be running on it)";
        assert_eq!(stderr.matches(says).count(), 1, "{stderr}");
        assert!(!stderr.contains("WouldBlock") && !stderr.contains("I/O error"), "{stderr}");
    }
    // The second server found the lock before it bound its port, and says who holds it.
    let stderr = String::from_utf8_lossy(&outs[0].stderr);
    let holder = format!("process {} holds {}", server.pid(), server.data_dir().join("crmhook.lock").display());
    assert!(stderr.contains(&holder), "{stderr}");
    assert!(!stderr.contains("listening"), "{stderr}");
}

/// A receiver on [::1]: answers 200 to every request and sends each body (with its
/// `webhook-id`) down the channel.
fn ipv6_receiver(listener: std::net::TcpListener) -> mpsc::Receiver<(String, Vec<u8>)> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let Ok(mut out) = stream.try_clone() else { return };
                let mut conn = BufReader::new(stream);
                loop {
                    let (mut length, mut id) = (0usize, String::new());
                    let mut line = String::new();
                    if conn.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        let mut h = String::new();
                        if conn.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = h.split_once(':') {
                            match name.trim().to_ascii_lowercase().as_str() {
                                "content-length" => length = value.trim().parse().unwrap_or(0),
                                "webhook-id" => id = value.trim().to_owned(),
                                _ => {}
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    if conn.read_exact(&mut body).is_err() {
                        return;
                    }
                    let _ = tx.send((id, body));
                    if out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").is_err() {
                        return;
                    }
                }
            });
        }
    });
    rx
}

#[test]
fn a_target_on_an_ipv6_literal_address_gets_its_deliveries() {
    let listener = match std::net::TcpListener::bind("[::1]:0") {
        Ok(l) => l,
        Err(e) => {
            eprintln!("SKIPPED: this machine has no IPv6 loopback ([::1]): {e}");
            return;
        }
    };
    let port = listener.local_addr().expect("address").port();
    let arrivals = ipv6_receiver(listener);
    let server = Server::start();
    let (tid, _) = server.wire(&format!("http://[::1]:{port}/v6"), Some(json!({})), json!({}));
    let event = maia("crm_record_created", json!({}));
    let posted = server.post_ok(&event);
    let eid = posted["events"][0]["id"].as_str().expect("id").to_owned();
    let (id, body) = arrivals.recv_timeout(Duration::from_secs(20)).expect("a delivery to [::1] within 20 s");
    assert_eq!(id, eid);
    assert_eq!(serde_json::from_slice::<Value>(&body).expect("json"), event);
    server.wait_settled(&tid, Duration::from_secs(20));
    assert_eq!(server.event(&eid)["deliveries"][0]["status"], "delivered");
}

/// A TLS receiver on [::1] with a self-signed certificate for the address ::1: sends down the
/// channel, for each connection it accepts, how the TLS handshake ended.
fn ipv6_tls_receiver(listener: std::net::TcpListener) -> mpsc::Receiver<Result<(), String>> {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.subject_alt_names = vec![rcgen::SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST))];
    let cert = params.self_signed(&key).expect("certificate");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .expect("server configuration");
    let config = Arc::new(config);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut tcp) = stream else { continue };
            let Ok(mut conn) = rustls::ServerConnection::new(config.clone()) else { continue };
            let mut handshake = Ok(());
            while handshake.is_ok() && conn.is_handshaking() {
                handshake = conn.complete_io(&mut tcp).map(|_| ()).map_err(|e| e.to_string());
            }
            if tx.send(handshake).is_err() {
                return;
            }
        }
    });
    rx
}

/// `https://` to an IPv6 literal reaches the TLS handshake, with the address as the server name:
/// the receiver's self-signed certificate (for ::1) is then refused as untrusted, as any
/// certificate that does not chain to a public root is. (Before, awc named the server `[::1]`,
/// which rustls cannot read, and no connection was made.)
#[test]
fn https_to_an_ipv6_literal_reaches_the_handshake_and_verifies_the_certificate() {
    let listener = match std::net::TcpListener::bind("[::1]:0") {
        Ok(l) => l,
        Err(e) => {
            eprintln!("SKIPPED: this machine has no IPv6 loopback ([::1]): {e}");
            return;
        }
    };
    let port = listener.local_addr().expect("address").port();
    let handshakes = ipv6_tls_receiver(listener);
    let server = Server::start();
    let url = format!("https://[::1]:{port}/v6tls");
    let (tid, _) = server.wire(&url, Some(json!({})), json!({"retry_schedule_ms": []}));
    let posted = server.post_ok(&maia("crm_record_created", json!({})));
    let eid = posted["events"][0]["id"].as_str().expect("id").to_owned();

    let handshake = handshakes.recv_timeout(Duration::from_secs(20)).expect("a TLS connection to [::1] within 20 s");
    // crmhook refused the certificate (rustls answers an unknown issuer with this alert).
    let refused = handshake.expect_err("a handshake with an untrusted certificate completed");
    assert!(refused.contains("UnknownCA"), "{refused}");

    server.wait_settled(&tid, Duration::from_secs(20));
    let delivery = &server.event(&eid)["deliveries"][0];
    assert_eq!(delivery["status"], "dead", "{delivery}");
    let error = delivery["attempts"][0]["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("TLS: invalid peer certificate: UnknownIssuer"), "{delivery}");
}

#[test]
fn requests_the_http_layer_cannot_parse_write_one_log_line_a_minute() {
    // The server's stderr goes to a file of the test's directory.
    let server =
        Server::start_wrapped(&[("CRMHOOK_ADMIN_TOKEN", ADMIN), ("CRMHOOK_INGEST_TOKEN", INGEST)], "exec 2>stderr.log");
    let addr = server.base.trim_start_matches("http://").to_owned();
    for _ in 0..20 {
        // Read to the end: the connection is closed after its error was logged (or held back).
        assert_problem(&raw_exchange(&addr, b"GARBAGE\r\n\r\n"), 400, "bad-request");
    }
    assert_eq!(server.request("GET", "/healthz", None, None).status, 200);
    let log = std::fs::read_to_string(server.dir.path().join("stderr.log")).expect("the server's stderr");
    let lines: Vec<_> = log.lines().filter(|l| l.contains("stream error")).collect();
    assert_eq!(lines.len(), 1, "one line for 20 unparsable requests: {lines:#?}");
    assert!(lines[0].contains("request parse error"), "{}", lines[0]);
}

/// An answer read off the wire: its status, headers (names lowercased) and body.
type Answer = (u16, Vec<(String, String)>, Vec<u8>);

/// Sends `bytes` on a new connection to `addr` and reads the answer to the end of the connection.
fn raw_exchange(addr: &str, bytes: &[u8]) -> Answer {
    let mut tcp = std::net::TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    tcp.write_all(bytes).expect("write");
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).expect("the answer, then the end of the connection");
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").expect("an answer's head");
    let head = String::from_utf8_lossy(&answer[..split]).to_string();
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.get(9..12)).and_then(|s| s.parse().ok()).expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, answer[split + 4..].to_vec())
}

/// Checks an answer is the problem `slug` with `status`, and answers its detail.
fn assert_problem(answer: &Answer, status: u16, slug: &str) -> String {
    let (got, headers, body) = answer;
    let text = String::from_utf8_lossy(body);
    assert_eq!(*got, status, "{headers:?} {text}");
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    assert_eq!(header("content-type"), Some("application/problem+json"), "{headers:?}");
    assert_eq!(header("x-content-type-options"), Some("nosniff"), "{headers:?}");
    assert_eq!(header("cache-control"), Some("no-store"), "{headers:?}");
    assert_eq!(header("content-length"), Some(body.len().to_string().as_str()), "{headers:?}");
    let problem: Value = serde_json::from_slice(body).expect("a JSON body");
    assert_eq!(problem["type"], format!("urn:crmhook:problem:{slug}"), "{problem}");
    assert_eq!(problem["status"], status, "{problem}");
    assert!(problem["title"].as_str().is_some_and(|t| !t.is_empty()), "{problem}");
    problem["detail"].as_str().expect("a detail").to_owned()
}

#[test]
fn what_the_http_layer_refuses_by_itself_is_a_problem_too() {
    let server = Server::start();
    // A head that never ends, begun first: the HTTP layer gives it 5 s (actix-web's default).
    let addr = server.base.trim_start_matches("http://").to_owned();
    let slow = {
        let addr = addr.clone();
        std::thread::spawn(move || raw_exchange(&addr, b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"))
    };

    let detail = assert_problem(&raw_exchange(&addr, b"GARBAGE\r\n\r\n"), 400, "bad-request");
    assert!(detail.starts_with("the request is not valid HTTP/1.1: "), "{detail}");
    // A header value with a control character in it.
    let bad_value = format!(
        "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: a\u{1}b\r\nAuthorization: Bearer {INGEST}\r\n\r\n"
    );
    let detail = assert_problem(&raw_exchange(&addr, bad_value.as_bytes()), 400, "bad-request");
    assert!(detail.contains("invalid Header"), "{detail}");
    // Two lengths: a request smuggler's favourite.
    let two_lengths =
        "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}";
    assert_problem(&raw_exchange(&addr, two_lengths.as_bytes()), 400, "bad-request");
    // A chunk size that is not hexadecimal (answered by the HTTP layer or, once the route reads
    // the body, by crmhook: either way a problem).
    let bad_chunk = format!(
        "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {INGEST}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n"
    );
    assert_problem(&raw_exchange(&addr, bad_chunk.as_bytes()), 400, "bad-request");
    // 97 headers, one more than the HTTP layer takes.
    let mut many = String::from("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for i in 0..96 {
        many.push_str(&format!("X-H{i}: {i}\r\n"));
    }
    many.push_str("\r\n");
    let detail = assert_problem(&raw_exchange(&addr, many.as_bytes()), 431, "headers-too-large");
    assert!(detail.contains("96 headers"), "{detail}");

    assert_problem(&slow.join().expect("the slow client"), 408, "request-timeout");

    // Nothing of it was stored, and the server goes on.
    assert_eq!(server.request("GET", "/healthz", None, None).status, 200);
    assert_eq!(server.admin("GET", "/v1/events", None).json()["events"], json!([]));
}

/// The `Date` header of crmhook's answers and of its deliveries is the time now, and the
/// answers' date moves on. The vendored actix-http reads the clock for the first two reads of a
/// configuration's date and only then spawns the task that keeps it up to date (awc makes a
/// configuration for every request it sends and reads its date once: vendor/README.md).
#[test]
fn answers_and_deliveries_carry_the_date_of_now() {
    let is_now = |header: &str| {
        let date = httpdate::parse_http_date(header).unwrap_or_else(|e| panic!("Date {header:?}: {e}"));
        let now = std::time::SystemTime::now();
        let off = now.duration_since(date).unwrap_or_else(|e| e.duration());
        assert!(off < Duration::from_secs(60), "Date {header:?} is not the time now");
    };
    let server = Server::start();
    let rcv = Receiver::start();
    server.wire(&rcv.url("/hook"), Some(json!({})), json!({}));
    for i in 0..3 {
        server.post_ok(&json!({"eventType": "ai_pause", "sessionId": format!("s{i}")}));
    }
    for delivery in rcv.wait_count("/hook", 3, Duration::from_secs(10)) {
        is_now(delivery.header("date"));
    }
    let date = || http("GET", &server.url("/healthz"), &[], None).headers.get("date").cloned().expect("a Date header");
    let first = date();
    is_now(&first);
    // Each HTTP worker keeps its own date, up to half a second old: an answer from another
    // worker may carry the second before (seen once in a full run), so the test waits for a
    // later one rather than for any other.
    let parsed = |d: &str| httpdate::parse_http_date(d).expect("date");
    let later = wait_for(Duration::from_secs(10), "an answer dated later than the first", || {
        Some(date()).filter(|d| parsed(d) > parsed(&first))
    });
    is_now(&later);
}
