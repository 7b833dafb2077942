//! What the receiver said: each attempt keeps the answer's status, its `Content-Type`,
//! `Retry-After` and `Location`, and the first bytes of its body (at most the target's
//! `response_body_bytes`, itself at most 4,096); with no answer, `error` says in words what
//! happened. Through the real binary and a real receiver on 127.0.0.1.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const DELIVERY: Duration = Duration::from_secs(15);

/// Posts one MAIA event and waits until its delivery to the one target is `status`; answers
/// the event's view.
fn delivered(server: &Server, status: &str) -> Value {
    let ack = server.post_ok(&maia("crm_field_update", json!({})));
    let id = ack["events"][0]["id"].as_str().expect("id").to_owned();
    wait_for(DELIVERY, &format!("the delivery {status}"), || {
        let e = server.event(&id);
        (e["deliveries"][0]["status"] == status).then_some(e)
    })
}

#[test]
fn a_failed_attempt_shows_what_the_receiver_answered() {
    let server = Server::start();
    let rcv = Receiver::start();
    let answer = Reply { retry_after: Some(30), ..with_body(500, "database is down\n") };
    rcv.program("/err", &[], answer);
    let (tid, _) = server.wire(&rcv.url("/err"), Some(json!({})), json!({"retry_schedule_ms": []}));
    let e = delivered(&server, "dead");
    let attempt = &e["deliveries"][0]["attempts"][0];
    assert_eq!(attempt["status_code"], 500, "{attempt}");
    assert_eq!(attempt["error"], "answered HTTP 500", "{attempt}");
    assert_eq!(
        attempt["response"],
        json!({"status": 500, "headers": {"content-type": "text/plain", "retry-after": "30"},
               "body": "database is down\n", "body_truncated": false}),
        "{attempt}"
    );
    // The target's deliveries list the same attempt.
    let listed = server.admin("GET", &format!("/v1/targets/{tid}/deliveries?status=dead"), None).json();
    assert_eq!(listed["deliveries"][0]["attempts"][0]["response"], attempt["response"], "{listed}");
    // A delivered attempt keeps its answer too.
    rcv.set_default("/err", with_body(200, "{\"ok\":true}"));
    let e = delivered(&server, "delivered");
    let response = &e["deliveries"][0]["attempts"][0]["response"];
    assert_eq!((response["status"].as_u64(), response["body"].as_str()), (Some(200), Some("{\"ok\":true}")));
    assert!(e["deliveries"][0]["attempts"][0].get("error").is_none(), "{e}");
}

#[test]
fn at_most_4096_bytes_of_a_body_are_kept() {
    let server = Server::start();
    let rcv = Receiver::start();
    let long: &'static str = Box::leak("0123456789".repeat(600).into_boxed_str());
    rcv.program("/long", &[], with_body(502, long));
    let (tid, _) = server.wire(&rcv.url("/long"), Some(json!({})), json!({"retry_schedule_ms": []}));
    let e = delivered(&server, "dead");
    let response = &e["deliveries"][0]["attempts"][0]["response"];
    assert_eq!(response["body"].as_str(), Some(&long[..4096]), "{response}");
    assert_eq!(response["body_truncated"], true, "{response}");
    // Such an answer is kept apart from the block of finished deliveries, in the attempt's own
    // record: the event and the target's deliveries show the attempt once, with it.
    assert_eq!(e["deliveries"][0]["attempts"].as_array().map(Vec::len), Some(1), "{e}");
    let listed = server.admin("GET", &format!("/v1/targets/{tid}/deliveries?status=dead"), None).json();
    let attempts = listed["deliveries"][0]["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{listed}");
    assert_eq!(&attempts[0]["response"], response, "{listed}");
}

#[test]
fn response_body_bytes_0_keeps_none_and_can_be_changed() {
    let server = Server::start();
    let rcv = Receiver::start();
    rcv.program("/quiet", &[], with_body(500, "secret details"));
    let (tid, _) =
        server.wire(&rcv.url("/quiet"), Some(json!({})), json!({"retry_schedule_ms": [], "response_body_bytes": 0}));
    assert_eq!(server.admin("GET", &format!("/v1/targets/{tid}"), None).json()["response_body_bytes"], 0);
    let e = delivered(&server, "dead");
    let response = &e["deliveries"][0]["attempts"][0]["response"];
    assert_eq!(
        response,
        &json!({"status": 500, "headers": {"content-type": "text/plain"}, "body": "", "body_truncated": true})
    );
    // PATCH keeps less than the default, and refuses more than 4,096 naming the field.
    let patched = server.admin("PATCH", &format!("/v1/targets/{tid}"), Some(&json!({"response_body_bytes": 6})));
    assert_eq!((patched.status, patched.json()["response_body_bytes"].as_u64()), (200, Some(6)), "{}", patched.text);
    let e = delivered(&server, "dead");
    assert_eq!(e["deliveries"][0]["attempts"][0]["response"]["body"], "secret");
    for bad in [json!(4097), json!(-1), json!("all")] {
        let r = server.admin("PATCH", &format!("/v1/targets/{tid}"), Some(&json!({"response_body_bytes": bad})));
        assert_eq!((r.status, r.json()["field"].as_str()), (422, Some("response_body_bytes")), "{}", r.text);
    }
    let r = server.admin(
        "POST",
        "/v1/targets",
        Some(&json!({"name": "big", "url": rcv.url("/x"), "response_body_bytes": 5000})),
    );
    assert_eq!((r.status, r.json()["field"].as_str()), (422, Some("response_body_bytes")), "{}", r.text);
}

#[test]
fn a_refused_connection_reads_connection_refused() {
    let server = Server::start();
    // A port nothing listens on any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port();
    server.wire(&format!("http://127.0.0.1:{port}/gone"), Some(json!({})), json!({"retry_schedule_ms": []}));
    let e = delivered(&server, "dead");
    let attempt = &e["deliveries"][0]["attempts"][0];
    assert_eq!(attempt["error"], "connection refused", "{attempt}");
    assert!(attempt["response"].is_null() && attempt.get("status_code").is_none(), "{attempt}");
}

#[test]
fn a_timeout_reads_timed_out_after_its_milliseconds() {
    let server = Server::start();
    let rcv = Receiver::start();
    rcv.program("/slow", &[], delayed(200, Duration::from_secs(2)));
    server.wire(&rcv.url("/slow"), Some(json!({})), json!({"retry_schedule_ms": [], "timeout_ms": 300}));
    let e = delivered(&server, "dead");
    let attempt = &e["deliveries"][0]["attempts"][0];
    let error = attempt["error"].as_str().unwrap_or_default();
    let ms: u64 = error
        .strip_prefix("timed out after ")
        .and_then(|rest| rest.strip_suffix(" ms"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{attempt}"));
    assert!((300..2000).contains(&ms), "{attempt}");
    assert!(attempt["response"].is_null(), "{attempt}");
}

/// Reads one request's head and body from `reader`; `false` once the connection has ended.
fn read_request(reader: &mut impl std::io::BufRead) -> bool {
    let (mut line, mut length) = (String::new(), 0usize);
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return false;
        }
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().expect("a length");
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).is_ok()
}

/// A receiver on 127.0.0.1 that answers each request with `answer` as it stands: interim
/// (1xx) answers, then the final one. Answers its port.
fn raw_receiver(answer: &'static str) -> u16 {
    use std::io::{BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().expect("clone"));
                let mut out = conn;
                while read_request(&mut reader) && out.write_all(answer.as_bytes()).is_ok() {}
            });
        }
    });
    port
}

#[test]
fn interim_answers_before_the_final_one_are_skipped() {
    // RFC 9110, 15.2: a client must read past 1xx answers, asked for or not. As published, awc
    // took the first head for the answer: `answered HTTP 103`, retried until dead.
    let server = Server::start();
    let answers = [
        ("HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 200),
        ("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", 201),
        ("HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", 204),
    ];
    let mut targets = Vec::new();
    for (answer, status) in answers {
        let port = raw_receiver(answer);
        let (tid, _) =
            server.wire(&format!("http://127.0.0.1:{port}/hook"), Some(json!({})), json!({"retry_schedule_ms": []}));
        targets.push((tid, status));
    }
    let ack = server.post_ok(&maia("crm_field_update", json!({})));
    let id = ack["events"][0]["id"].as_str().expect("id").to_owned();
    let e = wait_for(DELIVERY, "three deliveries finished", || {
        let e = server.event(&id);
        let finished =
            e["deliveries"].as_array().is_some_and(|d| d.len() == 3 && d.iter().all(|d| d["status"] != "pending"));
        finished.then_some(e)
    });
    for (tid, status) in targets {
        let d = e["deliveries"]
            .as_array()
            .expect("deliveries")
            .iter()
            .find(|d| d["target_id"] == tid.as_str())
            .expect("its delivery");
        assert_eq!(d["status"], "delivered", "{d}");
        assert_eq!(d["attempts"][0]["status_code"], status, "{d}");
    }
}

#[test]
fn a_failing_target_logs_ten_lines_of_each_kind_a_minute_then_counts_the_rest() {
    // The server's stderr, at `info`, goes to a file of the test's directory.
    let env = [TEST_ENV[0], TEST_ENV[1], TEST_ENV[2], ("CRMHOOK_LOG", "info")];
    let mut server = Server::start_wrapped(&env, "exec 2>stderr.log");
    let rcv = Receiver::start();
    rcv.program("/down", &[], with_body(500, "down"));
    // Two attempts per event: a failure to retry, then a dead delivery.
    let (tid, _) = server.wire(&rcv.url("/down"), Some(json!({})), json!({"retry_schedule_ms": [1]}));
    let events = 25;
    for i in 0..events {
        server.post_ok(&maia("crm_field_update", json!({"i": i})));
    }
    rcv.wait_count("/down", 2 * events, DELIVERY);
    server.wait_settled(&tid, DELIVERY);
    let dead = server.admin("GET", &format!("/v1/targets/{tid}/deliveries?status=dead&limit=100"), None).json();
    assert_eq!(dead["deliveries"].as_array().map(Vec::len), Some(events), "{dead}");
    // What was held back is written when the minute is over, or at the latest by the stop.
    assert!(server.stop().success());
    let log = std::fs::read_to_string(server.dir.path().join("stderr.log")).expect("the server's stderr");
    let count = |what: &str| log.lines().filter(|l| l.contains(what) && l.contains(&tid)).count();
    assert_eq!(count("attempt failed; will retry"), 10, "{log}");
    assert_eq!(count("delivery dead: retry schedule spent"), 10, "{log}");
    let held = |what: &str| log.lines().filter(|l| l.contains(what) && l.contains(&tid)).collect::<Vec<_>>();
    let retrying = held("more failed attempts, to be retried, were not logged one by one");
    let dead = held("more deliveries dead (retry schedule spent) were not logged one by one");
    assert!(matches!(retrying[..], [line] if line.contains(" INFO ") && line.contains("more=15")), "{retrying:#?}");
    assert!(matches!(dead[..], [line] if line.contains(" WARN ") && line.contains("more=15")), "{dead:#?}");
}

/// A receiver on 127.0.0.1 that speaks HTTP/1.0, as Python's `http.server` does: one request
/// per connection, answered `HTTP/1.0 200 OK` with a `Content-Length`, then the connection is
/// closed half a second later. A request sent on a connection after its answer is counted in
/// the second number (and never answered). Answers its port and the counts: connections,
/// requests sent after an answer.
fn http_1_0_receiver() -> (u16, std::sync::Arc<[std::sync::atomic::AtomicUsize; 2]>) {
    use std::io::{BufReader, Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let counts = std::sync::Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let seen = counts.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            seen[0].fetch_add(1, Ordering::SeqCst);
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().expect("clone"));
                let mut out = conn;
                let answer = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok";
                if !read_request(&mut reader) || out.write_all(answer.as_bytes()).is_err() {
                    return;
                }
                let _ = out.set_read_timeout(Some(Duration::from_millis(500)));
                let mut more = [0u8; 1];
                if matches!(reader.read(&mut more), Ok(n) if n > 0) {
                    seen[1].fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    (port, counts)
}

#[test]
fn a_receiver_speaking_http_1_0_gets_each_delivery_on_a_connection_of_its_own() {
    // RFC 9112, 9.3: an HTTP/1.0 answer without `Connection: keep-alive` ends its connection.
    // As published, awc kept such a connection when the answer had a `Content-Length`, and sent
    // the next delivery on it: the receiver had closed it (`connection closed by the
    // receiver`), the attempt failed and was retried 5 s later.
    let server = Server::start();
    let (port, counts) = http_1_0_receiver();
    server.wire(&format!("http://127.0.0.1:{port}/hook"), Some(json!({})), json!({}));
    let ids: Vec<String> = (0..20)
        .map(|_| {
            server.post_ok(&maia("crm_field_update", json!({})))["events"][0]["id"].as_str().expect("id").to_owned()
        })
        .collect();
    for id in &ids {
        let e = wait_for(DELIVERY, "the delivery delivered", || {
            let e = server.event(id);
            (e["deliveries"][0]["status"] == "delivered").then_some(e)
        });
        assert_eq!(e["deliveries"][0]["attempts"].as_array().map(Vec::len), Some(1), "{e}");
    }
    use std::sync::atomic::Ordering;
    assert_eq!(counts[1].load(Ordering::SeqCst), 0, "requests sent on a connection after its HTTP/1.0 answer");
    assert!(counts[0].load(Ordering::SeqCst) >= 20, "a connection per delivery");
}
