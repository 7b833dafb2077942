//! The entry point takes its listener and shutdown signal as arguments: start the real server
//! in-process on port 0, talk HTTP to it, stop it with our own signal.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use crmhook_server::{Config, Server};

fn get(addr: std::net::SocketAddr, path: &str, token: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    answer
}

#[test]
fn serves_on_port_0_and_stops_when_told() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A dir inside the temporary one: the key file sits beside the data dir.
    let data_dir = dir.path().join("db");
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let config = Config {
                data_dir,
                admin_token: Some("adm_entry_point_test_token".into()),
                ingest_token: Some("ing_entry_point_test_token".into()),
                workers: 1,
                ..Config::default()
            };
            let server = Server::start(listener, config).await.expect("start");
            assert!(server.generated_tokens().is_empty(), "configured tokens are not generated");
            addr_tx.send(server.local_addr()).expect("send addr");
            server
                .run_until(async {
                    let _ = stop_rx.await;
                })
                .await
        })
    });
    let addr = addr_rx.recv_timeout(Duration::from_secs(30)).expect("started");
    assert_ne!(addr.port(), 0);
    let health = get(addr, "/healthz", "");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let targets = get(addr, "/v1/targets", "adm_entry_point_test_token");
    assert!(targets.starts_with("HTTP/1.1 200") && targets.contains("\"targets\":[]"), "{targets}");
    let refused = get(addr, "/v1/targets", "ing_entry_point_test_token");
    assert!(refused.starts_with("HTTP/1.1 403") && refused.contains("application/problem+json"), "{refused}");
    stop_tx.send(()).expect("stop");
    thread.join().expect("server thread").expect("clean stop");
    assert!(TcpStream::connect(addr).is_err(), "still listening after the stop");
}
