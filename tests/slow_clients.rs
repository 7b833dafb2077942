//! Slow and greedy clients (issue 14, points 1 and 2): a body that trickles holds only what it
//! sent and ends in 408, while everyone else is served; ingest requests in progress are capped
//! per ingest token and per source; streams and pages of big events stay bounded in memory;
//! resumed streams catching up leave ingest and `/healthz` answering; `max_streams` caps the
//! open streams, and `max_streams_per_key` those of one key.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

/// A connection that sent a request's head (and maybe the start of its body), for the server
/// to answer later.
struct Raw {
    conn: TcpStream,
    got: Vec<u8>,
}

impl Raw {
    /// Sends `method path` with `headers` and a declared `Content-Length` of `declared`, then
    /// `start` of the body, and no more.
    fn open(server: &Server, method: &str, path: &str, headers: &[(&str, &str)], declared: usize, start: &[u8]) -> Raw {
        let addr = server.base.trim_start_matches("http://");
        let mut conn = TcpStream::connect(addr).expect("connect");
        conn.set_read_timeout(Some(Duration::from_millis(20))).expect("timeout");
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {declared}\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        conn.write_all(head.as_bytes()).expect("send the head");
        conn.write_all(start).expect("send the start of the body");
        Raw { conn, got: Vec::new() }
    }

    /// Reads what is there; answers true at the end of the connection.
    fn read_some(&mut self) -> bool {
        let mut buf = [0u8; 16 * 1024];
        match self.conn.read(&mut buf) {
            Ok(0) => true,
            Ok(n) => {
                self.got.extend_from_slice(&buf[..n]);
                false
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => false,
            Err(_) => true,
        }
    }

    /// The status of the answer, once its head has come.
    fn status(&self) -> Option<u16> {
        let text = String::from_utf8_lossy(&self.got);
        text.contains("\r\n\r\n").then(|| text.get(9..12).and_then(|s| s.parse().ok())).flatten()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.got).to_string()
    }

    /// `GET /v1/stream` with `token`, once the head of its answer has come.
    fn stream(server: &Server, token: &str) -> Raw {
        let bearer = format!("Bearer {token}");
        let mut raw = Raw::open(server, "GET", "/v1/stream", &[("Authorization", &bearer)], 0, b"");
        wait_for(Duration::from_secs(10), "a stream's head", || {
            raw.read_some();
            raw.status()
        });
        raw
    }
}

fn ingest_headers() -> Vec<(&'static str, String)> {
    vec![("Content-Type", "application/json".into()), ("Authorization", format!("Bearer {INGEST}"))]
}

fn ingest_one(server: &Server) -> Resp {
    server.request("POST", "/v1/events", Some(INGEST), Some(&maia("crm_record_created", json!({}))))
}

/// A Maximizer source; answers its id and key.
fn maximizer_source(server: &Server) -> (String, String) {
    let r = server.admin("POST", "/v1/sources", Some(&json!({"name": "mx", "kind": "maximizer"})));
    assert_eq!(r.status, 201, "{}", r.text);
    let v = r.json();
    (v["id"].as_str().expect("id").to_owned(), v["key"].as_str().expect("key").to_owned())
}

fn maximizer_batch(id: &str) -> Vec<u8> {
    serde_json::to_vec(&json!([{
        "Id": id, "Timestamp": "2026-01-05T10:00:00Z", "WorkspaceId": "ws-1", "Entity": "Opportunity",
        "Data": {"Op": "Update", "Original": {}, "New": {"Name": "A"}, "Version": "1"}
    }]))
    .expect("json")
}

fn post_source(server: &Server, src: &str, key: &str) -> Resp {
    http(
        "POST",
        &server.url(&format!("/in/{src}?key={key}")),
        &[("Content-Type", "application/json")],
        Some(&maximizer_batch(&unique())),
    )
}

#[test]
fn slow_senders_hold_only_what_they_sent_end_in_408_and_others_are_served() {
    // A budget of one body: were a request to reserve its declared size before reading, one
    // slow sender would take all of it and every other ingest would answer 503.
    let server = Server::start_with(&[
        ("CRMHOOK_ADMIN_TOKEN", ADMIN),
        ("CRMHOOK_INGEST_TOKEN", INGEST),
        ("CRMHOOK_MAX_BODY_BYTES", "65536"),
        ("CRMHOOK_INGEST_BUFFER_BYTES", "65536"),
        ("CRMHOOK_BODY_TIMEOUT_MS", "3000"),
    ]);
    let (src, key) = maximizer_source(&server);
    let ingest: Vec<(&str, String)> = ingest_headers();
    let ingest: Vec<(&str, &str)> = ingest.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let admin = format!("Bearer {ADMIN}");
    let mut slow: Vec<Raw> = Vec::new();
    for _ in 0..16 {
        slow.push(Raw::open(&server, "POST", "/v1/events", &ingest, 65536, b"["));
    }
    for _ in 0..6 {
        let path = format!("/in/{src}?key={key}");
        slow.push(Raw::open(&server, "POST", &path, &[("Content-Type", "application/json")], 65536, b"["));
    }
    // An admin body stalls the same way.
    let admin_headers = [("Content-Type", "application/json"), ("Authorization", admin.as_str())];
    slow.push(Raw::open(&server, "POST", "/v1/targets", &admin_headers, 4000, b"{"));

    // They trickle a byte every 100 ms (never a whole body) while others ingest; every other
    // ingest is answered at once, until every slow sender has had its 408.
    let mut served = 0;
    let started = std::time::Instant::now();
    wait_for(Duration::from_secs(30), "every slow sender's answer", || {
        for s in slow.iter_mut().filter(|s| s.status().is_none()) {
            let _ = s.conn.write_all(b" ");
            s.read_some();
        }
        let r = ingest_one(&server);
        assert_eq!(r.status, 202, "an ingest beside {} slow senders: {}", slow.len(), r.text);
        let r = post_source(&server, &src, &key);
        assert_eq!(r.status, 200, "a source's ingest beside slow senders: {}", r.text);
        served += 1;
        std::thread::sleep(Duration::from_millis(100)); // the trickle's pace, not a wait
        slow.iter().all(|s| s.status().is_some()).then_some(())
    });
    // Answered at the deadline (3 s), not at the first pause.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(2500), "the slow senders were answered after {took:?}");
    assert!(served >= 3, "others were served while the slow senders trickled ({served} rounds)");
    for s in &mut slow {
        let text = s.text();
        assert_eq!(s.status(), Some(408), "a stalled body answers 408: {text}");
        assert!(text.to_ascii_lowercase().contains("content-type: application/problem+json"), "{text}");
        assert!(text.contains("body_timeout_ms"), "the detail names the setting: {text}");
        // The connection is closed after the 408 (the rest of the body is never read).
        wait_for(Duration::from_secs(5), "the 408's connection to close", || s.read_some().then_some(()));
    }
    // What the slow senders sent was never stored; the others' events were.
    let page = server.admin("GET", "/v1/events?limit=1000", None).json();
    assert_eq!(page["events"].as_array().map(Vec::len), Some(served * 2), "{page}");
}

/// Opens again each slow request that was already answered (refused: a probe had taken its
/// slot first; or, on a loaded machine, timed out after its 10 s pause); answers whether any was.
fn refresh(slow: &mut [Raw], open: impl Fn() -> Raw) -> bool {
    let mut any = false;
    for s in slow.iter_mut() {
        s.read_some();
        if s.status().is_some() {
            assert!(matches!(s.status(), Some(503 | 408)), "a slow request is refused or timed out: {}", s.text());
            *s = open();
            any = true;
        }
    }
    any
}

#[test]
fn ingest_requests_in_progress_are_capped_per_token_and_per_source() {
    let server = Server::start_with(&[
        ("CRMHOOK_ADMIN_TOKEN", ADMIN),
        ("CRMHOOK_INGEST_TOKEN", INGEST),
        ("CRMHOOK_INGEST_CONCURRENCY", "3"),
    ]);
    let (src, key) = maximizer_source(&server);
    let ingest: Vec<(&str, String)> = ingest_headers();
    let ingest: Vec<(&str, &str)> = ingest.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let open_token = || Raw::open(&server, "POST", "/v1/events", &ingest, 1000, b"[");
    let mut token_slow: Vec<Raw> = (0..3).map(|_| open_token()).collect();
    // Once the three are in progress, the token's fourth request is refused, and says when to
    // come back. (A probe may take a slot before a slow one does: that slow one is refused, and
    // opened again.)
    let refused = wait_for(Duration::from_secs(30), "the token's 4th request refused", || {
        let r = ingest_one(&server);
        let answered = refresh(&mut token_slow, open_token);
        (r.status != 202 && !answered).then_some(r)
    });
    assert_eq!(refused.status, 503, "{}", refused.text);
    assert!(refused.content_type().starts_with("application/problem+json"), "{}", refused.content_type());
    assert!(refused.headers.contains_key("retry-after"), "{:?}", refused.headers);
    assert!(refused.text.contains("ingest_concurrency"), "{}", refused.text);
    // Another sender (a source) is not held up by the token's slow requests.
    assert_eq!(post_source(&server, &src, &key).status, 200);

    // The same for one source: its own cap, the token's unchanged.
    let path = format!("/in/{src}?key={key}");
    let open_source = || Raw::open(&server, "POST", &path, &[("Content-Type", "application/json")], 1000, b"[");
    let mut source_slow: Vec<Raw> = (0..3).map(|_| open_source()).collect();
    let refused = wait_for(Duration::from_secs(30), "the source's 4th request refused", || {
        let r = post_source(&server, &src, &key);
        let answered = refresh(&mut source_slow, open_source);
        (r.status != 200 && !answered).then_some(r)
    });
    assert_eq!(refused.status, 503, "{}", refused.text);
    assert!(refused.headers.contains_key("retry-after"), "{:?}", refused.headers);

    // A sender that goes away gives its slot back.
    drop(token_slow);
    wait_for(Duration::from_secs(10), "the token's slots back", || (ingest_one(&server).status == 202).then_some(()));
    drop(source_slow);
    wait_for(Duration::from_secs(10), "the source's slots back", || {
        (post_source(&server, &src, &key).status == 200).then_some(())
    });
}

#[test]
fn resumed_streams_and_pages_of_big_events_stay_bounded() {
    let server = Server::start_with(&[
        ("CRMHOOK_ADMIN_TOKEN", ADMIN),
        ("CRMHOOK_INGEST_TOKEN", INGEST),
        ("CRMHOOK_MAX_PAGE_BYTES", "2097152"),
    ]);
    // 40 events of ~900 KB: 36 MB of log.
    const EVENTS: usize = 40;
    let big = "x".repeat(900_000);
    for _ in 0..EVENTS {
        let r = server.request(
            "POST",
            "/v1/events",
            Some(INGEST),
            Some(&maia("crm_field_update", json!({"newValue": big}))),
        );
        assert_eq!(r.status, 202, "{}", r.text);
    }
    let before = server.rss_kib();

    // 20 streams resume from the start and then read no more: each holds a bounded chunk, not
    // the whole backlog (which was 20 × 36 MB).
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut streams = Vec::new();
    for _ in 0..20 {
        let mut conn = TcpStream::connect(&addr).expect("connect");
        conn.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
        write!(conn, "GET /v1/stream?after=0 HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ADMIN}\r\n\r\n")
            .expect("send");
        let mut raw = Raw { conn, got: Vec::new() };
        // Read until the first event has begun to come: the server is sending this stream.
        wait_for(Duration::from_secs(20), "a resumed stream's first event", || {
            raw.read_some();
            raw.text().contains("id: 1\n").then_some(())
        });
        assert_eq!(raw.status(), Some(200), "{}", raw.text().chars().take(300).collect::<String>());
        streams.push(raw);
    }
    let health = http("GET", &server.url("/healthz"), &[], None);
    assert_eq!(health.status, 200, "/healthz answers with 20 stalled streams open");
    let grown_mib = server.rss_kib().saturating_sub(before) / 1024;
    assert!(grown_mib < 250, "20 stalled resumed streams grew the server by {grown_mib} MiB");

    // A list page of big events is cut by its bytes (2 MiB here), not only by `limit`; the
    // client pages on with `next_after` and sees every event once.
    let mut seen = Vec::new();
    let mut after = 0u64;
    loop {
        let r = server.admin("GET", &format!("/v1/events?limit=1000&after={after}"), None);
        assert_eq!(r.status, 200);
        assert!(r.text.len() < 4 * 1024 * 1024, "a page of {} bytes", r.text.len());
        let page = r.json();
        let events = page["events"].as_array().expect("events").clone();
        assert!(!events.is_empty() && events.len() < 5, "{} events on a page", events.len());
        seen.extend(events.iter().filter_map(|e| e["seq"].as_u64()));
        match page["next_after"].as_u64() {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(seen, (1..=EVENTS as u64).collect::<Vec<_>>());
    drop(streams);
}

/// A stream read as its client would (the chunked body decoded), by a thread of its own: it
/// records each event's `id:` until it has seen `stop_at` (which the test may lower later).
fn follow_stream(
    server: &Server,
    after: u64,
    stop_at: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> (std::sync::Arc<std::sync::Mutex<Vec<u64>>>, std::thread::JoinHandle<()>) {
    use std::io::BufRead;
    use std::sync::atomic::Ordering;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let url = server.url(&format!("/v1/stream?after={after}"));
    let r = ureq::AgentBuilder::new()
        .timeout_read(Duration::from_secs(60))
        .build()
        .get(&url)
        .set("Authorization", &format!("Bearer {ADMIN}"))
        .call()
        .expect("the stream opens");
    assert_eq!(r.status(), 200);
    let ids = seen.clone();
    let reader = std::thread::spawn(move || {
        let mut body = std::io::BufReader::new(r.into_reader());
        let mut line = Vec::new();
        loop {
            line.clear();
            // A closed stream or a read error ends the reader; the test then finds ids missing.
            if body.read_until(b'\n', &mut line).map_or(true, |n| n == 0) {
                return;
            }
            if let Some(id) = line.strip_prefix(b"id: ") {
                let id: u64 = String::from_utf8_lossy(id).trim().parse().expect("an id is a seq");
                ids.lock().expect("lock").push(id);
                if id >= stop_at.load(Ordering::SeqCst) {
                    return;
                }
            }
        }
    });
    (seen, reader)
}

#[test]
fn ingest_and_healthz_answer_while_many_resumed_streams_catch_up() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    // One HTTP worker: every stream and every probe below share it.
    let server = Server::start_with(&[
        ("CRMHOOK_ADMIN_TOKEN", ADMIN),
        ("CRMHOOK_INGEST_TOKEN", INGEST),
        ("CRMHOOK_WORKERS", "1"),
    ]);
    // 60 events of ~900 KB: each of 20 resumed streams has ~54 MB (60 chunks) to catch up.
    const EVENTS: u64 = 60;
    const STREAMS: usize = 20;
    let big = "x".repeat(900_000);
    for _ in 0..EVENTS {
        let r = server.request(
            "POST",
            "/v1/events",
            Some(INGEST),
            Some(&maia("crm_field_update", json!({"newValue": big}))),
        );
        assert_eq!(r.status, 202, "{}", r.text);
    }
    let stop_at = Arc::new(AtomicU64::new(u64::MAX));
    let streams: Vec<_> = (0..STREAMS).map(|_| follow_stream(&server, 0, stop_at.clone())).collect();
    let reached = |seq: u64| streams.iter().filter(|(seen, _)| seen.lock().expect("lock").last() >= Some(&seq)).count();
    wait_for(Duration::from_secs(30), "every stream's first event", || (reached(1) == STREAMS).then_some(()));

    // While they catch up, ingest and /healthz are answered; their events come after the
    // backlog on every stream.
    let mut during = 0;
    let mut probes = 0;
    loop {
        let catching_up = reached(EVENTS) < STREAMS;
        let r = ingest_one(&server);
        assert_eq!(r.status, 202, "an ingest while {STREAMS} streams catch up: {}", r.text);
        let health = http("GET", &server.url("/healthz"), &[], None);
        assert_eq!(health.status, 200, "/healthz while {STREAMS} streams catch up: {}", health.text);
        probes += 1;
        if catching_up && reached(EVENTS) < STREAMS {
            // Both answers came while some stream was still catching up.
            during += 1;
        }
        if !catching_up {
            break;
        }
        assert!(probes < 100_000, "the streams never caught up");
    }
    eprintln!("resumed streams: {probes} probes answered, {during} of them while {STREAMS} streams caught up");
    assert!(during >= 1, "no probe was answered while the streams caught up");

    // Every stream then has the whole log once, in order: the backlog, then the probes' events.
    let head = EVENTS + probes;
    stop_at.store(head, Ordering::SeqCst);
    // One more event wakes a stream already past `head` before it read `stop_at`.
    assert_eq!(ingest_one(&server).status, 202);
    for (seen, reader) in streams {
        reader.join().expect("reader");
        let seen = seen.lock().expect("lock").clone();
        let want: Vec<u64> = (1..=head).collect();
        assert_eq!(seen.get(..head as usize), Some(&want[..]), "a stream's ids, in order, each once");
    }
}

#[test]
fn live_streams_share_each_record_and_a_stream_past_max_streams_is_refused() {
    let server = Server::start_with(&[
        ("CRMHOOK_ADMIN_TOKEN", ADMIN),
        ("CRMHOOK_INGEST_TOKEN", INGEST),
        ("CRMHOOK_MAX_STREAMS", "2"),
        // Both places to one key (by default a key may hold a quarter of them, at least 1).
        ("CRMHOOK_MAX_STREAMS_PER_KEY", "2"),
    ]);
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut first = Raw::stream(&server, ADMIN);
    let mut second = Raw::stream(&server, ADMIN);
    assert_eq!((first.status(), second.status()), (Some(200), Some(200)));
    let third = http("GET", &server.url("/v1/stream"), &[("Authorization", &format!("Bearer {ADMIN}"))], None);
    assert_eq!(third.status, 503, "{}", third.text);
    assert!(third.content_type().starts_with("application/problem+json"));
    assert!(third.headers.contains_key("retry-after"), "{:?}", third.headers);
    assert!(third.text.contains("max_streams"), "{}", third.text);

    // Both live streams get every new event, in order, with its seq.
    let mut seqs = Vec::new();
    for _ in 0..5 {
        let r = ingest_one(&server);
        assert_eq!(r.status, 202, "{}", r.text);
        seqs.push(r.json()["events"][0]["seq"].as_u64().expect("seq"));
    }
    for s in [&mut first, &mut second] {
        wait_for(Duration::from_secs(10), "the live events on a stream", || {
            s.read_some();
            let ids: Vec<u64> =
                s.text().lines().filter_map(|l| l.strip_prefix("id: ")).filter_map(|v| v.parse().ok()).collect();
            (ids == seqs).then_some(())
        });
        let text = s.text();
        let data: Vec<Value> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str(d).ok())
            .filter(|v: &Value| v.get("seq").is_some())
            .collect();
        assert_eq!(data.len(), 5, "{text}");
    }

    // A stream that ends gives its place back.
    drop(first);
    wait_for(Duration::from_secs(30), "a stream's place back", || {
        // An event makes the server write to the closed stream, which ends it.
        ingest_one(&server);
        let r = http("GET", &server.url("/readyz"), &[], None);
        assert_eq!(r.status, 200);
        let mut conn = TcpStream::connect(&addr).expect("connect");
        conn.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        write!(conn, "GET /v1/stream HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ADMIN}\r\n\r\n").expect("send");
        let mut raw = Raw { conn, got: Vec::new() };
        wait_for(Duration::from_secs(5), "an answer", || {
            raw.read_some();
            raw.status()
        });
        (raw.status() == Some(200)).then_some(())
    });
}

/// A stream refused: 503 problem+json with `Retry-After: 5`, its detail holding `says`.
fn assert_stream_refused(server: &Server, token: &str, says: &str) {
    let r = http("GET", &server.url("/v1/stream"), &[("Authorization", &format!("Bearer {token}"))], None);
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.content_type().starts_with("application/problem+json"), "{}", r.content_type());
    assert_eq!(r.headers.get("retry-after").map(String::as_str), Some("5"), "{:?}", r.headers);
    assert_eq!(r.json()["type"], "urn:crmhook:problem:unavailable", "{}", r.text);
    assert!(r.json()["detail"].as_str().is_some_and(|d| d.contains(says)), "{}", r.text);
}

#[test]
fn one_key_holds_at_most_a_quarter_of_the_streams_until_they_end() {
    let server = Server::start_with(&[
        ("CRMHOOK_ADMIN_TOKEN", ADMIN),
        ("CRMHOOK_INGEST_TOKEN", INGEST),
        ("CRMHOOK_MAX_STREAMS", "8"),
    ]);
    let key = |name: &str| {
        let r = server.admin("POST", "/v1/keys", Some(&json!({"name": name, "role": "operator"})));
        assert_eq!(r.status, 201, "{}", r.text);
        (r.json()["id"].as_str().expect("id").to_owned(), r.json()["key"].as_str().expect("key").to_owned())
    };
    // A key holds 2 of the 8 places at most; the third stream it asks for is refused, the
    // others' are not.
    let admin = [Raw::stream(&server, ADMIN), Raw::stream(&server, ADMIN)];
    assert_eq!(admin.iter().map(Raw::status).collect::<Vec<_>>(), [Some(200), Some(200)]);
    assert_stream_refused(&server, ADMIN, "holds 2 streams already, the most one key may hold (max_streams_per_key)");
    let (a, a_secret) = key("dashboard a");
    let (b, b_secret) = key("dashboard b");
    let (_, c_secret) = key("dashboard c");
    let mut a_streams = vec![Raw::stream(&server, &a_secret), Raw::stream(&server, &a_secret)];
    let b_streams = [Raw::stream(&server, &b_secret), Raw::stream(&server, &b_secret)];
    let c_streams = [Raw::stream(&server, &c_secret), Raw::stream(&server, &c_secret)];
    for s in a_streams.iter().chain(&b_streams).chain(&c_streams) {
        assert_eq!(s.status(), Some(200), "{}", s.text());
    }
    assert_stream_refused(&server, &a_secret, &format!("the key dashboard a ({a}) holds 2 streams"));

    // All 8 are open: a key that holds none meets the pool's limit, as before.
    let (_, d_secret) = key("dashboard d");
    assert_stream_refused(&server, &d_secret, "8 streams are open already (max_streams)");

    // A stream that ends gives its key's place back: the key is rotated, its old secret's
    // streams end at their next frame (an event), and the new secret has both places again.
    let rotated = server.admin("POST", &format!("/v1/keys/{a}/rotate"), None);
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    let a_new = rotated.json()["key"].as_str().expect("key").to_owned();
    assert_eq!(ingest_one(&server).status, 202);
    for s in &mut a_streams {
        wait_for(Duration::from_secs(10), "the rotated key's stream to end", || s.read_some().then_some(()));
    }
    let again = wait_for(Duration::from_secs(10), "the rotated key's places back", || {
        let s = Raw::stream(&server, &a_new);
        (s.status() == Some(200)).then_some(s)
    });
    let again = [again, Raw::stream(&server, &a_new)];
    assert_eq!(again[1].status(), Some(200), "{}", again[1].text());
    assert_stream_refused(&server, &a_new, "holds 2 streams already");

    // A revoked key's streams end the same way, and give their places back to the pool.
    let revoked = server.admin("DELETE", &format!("/v1/keys/{b}"), None);
    assert_eq!(revoked.status, 200, "{}", revoked.text);
    assert_eq!(ingest_one(&server).status, 202);
    let d_stream = wait_for(Duration::from_secs(10), "the revoked key's places back", || {
        let s = Raw::stream(&server, &d_secret);
        (s.status() == Some(200)).then_some(s)
    });
    drop((admin, b_streams, c_streams, again, d_stream));
}
