//! Stopping the server: SIGTERM ends the open streams at once, and the graceful stop does not
//! wait for them.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::*;

/// `GET /v1/stream` on a raw connection, read until its headers arrived; answers the connection
/// and what was read so far.
fn open_stream(server: &Server) -> (TcpStream, Vec<u8>) {
    let addr = server.base.trim_start_matches("http://");
    let mut conn = TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
    write!(conn, "GET /v1/stream HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ADMIN}\r\n\r\n").expect("send");
    let mut got = Vec::new();
    wait_for(Duration::from_secs(10), "the stream's headers", || {
        read_some(&mut conn, &mut got);
        got.windows(4).any(|w| w == b"\r\n\r\n").then_some(())
    });
    let head = String::from_utf8_lossy(&got).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("content-type: text/event-stream"), "{head}");
    // A chunked body on a connection kept alive: a `Connection: close` made Python's
    // `http.client` give the socket to the response, leaving its client none (`sock` is None).
    assert!(lower.contains("transfer-encoding: chunked"), "{head}");
    assert!(!lower.contains("connection: close"), "{head}");
    (conn, got)
}

/// Reads what is there (up to the read timeout); answers true at end of stream.
fn read_some(conn: &mut TcpStream, into: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 4096];
    match conn.read(&mut buf) {
        Ok(0) => true,
        Ok(n) => {
            into.extend_from_slice(&buf[..n]);
            false
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => false,
        Err(e) => panic!("the stream's connection failed instead of closing: {e}"),
    }
}

#[test]
fn sigterm_ends_open_streams_and_stops_at_once() {
    let mut server = Server::start();
    let (mut first, mut got) = open_stream(&server);
    let (mut second, _) = open_stream(&server);

    let started = Instant::now();
    let status = server.stop();
    let took = started.elapsed();
    assert!(status.success(), "graceful stop exits 0, got {status:?}");
    assert!(took < Duration::from_secs(2), "stopped in {took:?} with two streams open");

    // The server ended the body (the last chunk of a chunked body), then closed the connection.
    wait_for(Duration::from_secs(5), "the stream's connection to close", || {
        read_some(&mut first, &mut got).then_some(())
    });
    assert!(got.ends_with(b"0\r\n\r\n"), "the body ends with its last chunk: {:?}", String::from_utf8_lossy(&got));
    let mut rest = Vec::new();
    wait_for(Duration::from_secs(5), "the second stream to close", || read_some(&mut second, &mut rest).then_some(()));
}

#[test]
fn a_stopping_server_refuses_new_connections_at_once() {
    let mut server = Server::start();
    // A receiver that takes connections and never answers: the delivery stays in flight, and
    // the graceful stop waits for it (up to the target's timeout).
    let receiver = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = receiver.local_addr().expect("addr").port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in receiver.incoming().map_while(Result::ok) {
            held.push(conn);
            let _ = tx.send(());
        }
    });
    let target = server.admin(
        "POST",
        "/v1/targets",
        Some(&serde_json::json!({"name": "hangs", "url": format!("http://127.0.0.1:{port}/x"), "timeout_ms": 4000})),
    );
    assert_eq!(target.status, 201, "{}", target.text);
    let sub = server.admin("POST", "/v1/subscriptions", Some(&serde_json::json!({"target_id": target.json()["id"]})));
    assert_eq!(sub.status, 201, "{}", sub.text);
    server.post_ok(&maia("ai_pause", serde_json::json!({})));
    rx.recv_timeout(Duration::from_secs(10)).expect("the delivery to reach the receiver");

    let addr = server.base.trim_start_matches("http://").to_owned();
    let _ = std::process::Command::new("kill").arg("-TERM").arg(server.pid().to_string()).status();
    // A client that comes while the stop waits for the delivery is refused at once (it may go
    // elsewhere or retry), not held unanswered in the listener's backlog until the exit.
    wait_for(Duration::from_secs(3), "the port to refuse connections", || match TcpStream::connect(&addr) {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Some(()),
        _ => None,
    });
    let running = server.child.as_mut().expect("child").try_wait().expect("status").is_none();
    assert!(running, "the server had exited already: the test saw nothing of its stop");
    assert!(server.stop().success(), "a graceful stop");
}

#[test]
fn sighup_without_tls_leaves_the_server_serving() {
    // The systemd unit's `ExecReload` sends SIGHUP; its default action ends the process, which
    // it did to a server without TLS (exit 129) until 2026-12-07.
    let mut server = Server::start();
    let hup = std::process::Command::new("kill").args(["-HUP", &server.pid().to_string()]).status();
    assert!(hup.is_ok_and(|s| s.success()), "kill -HUP");
    server.post_ok(&maia("crm_field_update", serde_json::json!({})));
    assert_eq!(server.request("GET", "/healthz", None, None).status, 200);
    let status = server.stop();
    assert!(status.success(), "a graceful stop, not the end SIGHUP gives: {status:?}");
}

#[test]
fn sighup_while_the_server_starts_does_not_end_it() {
    // `systemctl reload` right after a start: until 2026-12-07 SIGHUP was caught only once the
    // server served, and one sent while it started (reading its configuration, opening its log,
    // joining a cluster) ended the process.
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_crmhook"));
    cmd.args(["serve", "--bind", "127.0.0.1:0", "--data-dir"]).arg(&data).current_dir(dir.path());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CRMHOOK_")) {
        cmd.env_remove(k);
    }
    cmd.envs(TEST_ENV).env("CRMHOOK_LOG", "warn").stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("crmhook runs");
    let pid = child.id().to_string();
    let listening = follow_stdout(&mut child, Default::default());
    // The data dir's lock is taken once the process is under way (the first SIGHUPs of its life,
    // before `main` runs, cannot be caught by any program); from then on it gets SIGHUP after
    // SIGHUP until it says it listens.
    wait_for(Duration::from_secs(30), "the data dir's lock", || data.join("crmhook.lock").exists().then_some(()));
    let mut sent = 0;
    let addr = loop {
        match listening.try_recv() {
            Ok(addr) => break addr,
            Err(std::sync::mpsc::TryRecvError::Empty) => {}
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                panic!("the server ended after {sent} SIGHUPs while it started: {:?}", child.wait())
            }
        }
        let hup = std::process::Command::new("kill").args(["-HUP", &pid]).status().expect("kill -HUP");
        assert!(hup.success(), "kill -HUP {pid}: the server is gone after {sent} SIGHUPs ({:?})", child.try_wait());
        sent += 1;
    };
    assert!(sent > 0, "no SIGHUP was sent while the server started");
    assert_eq!(child.try_wait().expect("try_wait"), None, "the server ended");
    assert_eq!(http("GET", &format!("http://{addr}/healthz"), &[], None).status, 200);
    let _ = std::process::Command::new("kill").args(["-TERM", &pid]).status();
    assert!(child.wait().expect("wait").success(), "a graceful stop");
}
