//! TLS on the listener: with `tls_cert` and `tls_key` the server answers HTTPS only, with that
//! certificate; after the files change, SIGHUP makes new connections get the new certificate
//! (no restart), and a reload from broken files keeps the old one.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::tls::{connect, exchange, get, handshake, issue, issue_until};
use support::{wait_for, Server, ADMIN, INGEST, TEST_ENV};

/// A private CA's certificate for 127.0.0.1 in a new temporary dir ([`issue`]): the dir, the
/// CA's certificate (DER, for a client to trust), and the paths of cert.pem and key.pem.
fn certificate() -> (tempfile::TempDir, Vec<u8>, String, String) {
    let certs = tempfile::tempdir().expect("tempdir");
    let ca = issue(certs.path());
    let cert = certs.path().join("cert.pem").display().to_string();
    let key = certs.path().join("key.pem").display().to_string();
    (certs, ca, cert, key)
}

#[test]
fn the_listener_serves_tls_and_reloads_its_certificate_on_sighup() {
    let (certs, first, cert, key) = certificate();
    let mut server = Server::start_with(&[
        ("CRMHOOK_ADMIN_TOKEN", ADMIN),
        ("CRMHOOK_INGEST_TOKEN", INGEST),
        ("CRMHOOK_TLS_CERT", &cert),
        ("CRMHOOK_TLS_KEY", &key),
    ]);
    let addr = server.base.trim_start_matches("http://").to_owned();

    assert_eq!(get(&addr, &first, "/healthz").as_deref(), Ok("HTTP/1.1 200 OK"));
    // What the HTTP layer refuses inside TLS is a problem, as on plain HTTP.
    let refused = exchange(&addr, &first, b"GARBAGE\r\n\r\n").expect("an answer over TLS");
    assert!(refused.starts_with("HTTP/1.1 400"), "{refused}");
    assert!(refused.contains("content-type: application/problem+json"), "{refused}");
    assert!(
        refused.ends_with(r#""status":400,"detail":"the request is not valid HTTP/1.1: invalid Header provided"}"#),
        "{refused}"
    );
    // Plain HTTP gets no answer a client could take for one.
    let mut tcp = TcpStream::connect(&addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").expect("write");
    let mut plain = Vec::new();
    let _ = tcp.read_to_end(&mut plain);
    assert!(!plain.starts_with(b"HTTP/1.1 200"), "plain HTTP answered {:?}", String::from_utf8_lossy(&plain));

    // New files: until SIGHUP the old certificate is served; after it, the new one.
    let second = issue(certs.path());
    assert!(get(&addr, &second, "/healthz").is_err(), "the new certificate before SIGHUP");
    let pid = server.pid().to_string();
    let hup = std::process::Command::new("kill").args(["-HUP", &pid]).status().expect("kill -HUP");
    assert!(hup.success());
    wait_for(Duration::from_secs(10), "the new certificate after SIGHUP", || get(&addr, &second, "/healthz").ok());
    assert!(get(&addr, &first, "/healthz").is_err(), "the old certificate after the reload");

    // Broken files: the reload fails, the certificate being served stays.
    std::fs::write(certs.path().join("key.pem"), "not a key").expect("break the key");
    let hup = std::process::Command::new("kill").args(["-HUP", &pid]).status().expect("kill -HUP");
    assert!(hup.success());
    // The server is still up, still with the second certificate, for every new connection.
    for _ in 0..20 {
        assert_eq!(get(&addr, &second, "/healthz").as_deref(), Ok("HTTP/1.1 200 OK"));
    }
    // And the next good files are taken on the next SIGHUP: the failed reload was handled (the
    // signals are handled in order) and did not stop the reloading.
    let third = issue(certs.path());
    let hup = std::process::Command::new("kill").args(["-HUP", &pid]).status().expect("kill -HUP");
    assert!(hup.success());
    wait_for(Duration::from_secs(10), "the third certificate", || get(&addr, &third, "/healthz").ok());
    assert!(server.stop().success());
}

/// The operators' CLI reaches a server over `https://`: a certificate it does not trust is said
/// to be a TLS failure (not a server that is down), and `--ca-file` trusts a private CA's.
#[test]
fn the_cli_talks_to_a_tls_server() {
    let certs = tempfile::tempdir().expect("tempdir");
    issue(certs.path());
    let mut server = Server::start_with(&[
        ("CRMHOOK_ADMIN_TOKEN", ADMIN),
        ("CRMHOOK_INGEST_TOKEN", INGEST),
        ("CRMHOOK_TLS_CERT", &certs.path().join("cert.pem").display().to_string()),
        ("CRMHOOK_TLS_KEY", &certs.path().join("key.pem").display().to_string()),
    ]);
    let url = server.base.replace("http://", "https://");
    let cli = |extra: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_crmhook"));
        cmd.args(["targets", "list", "--url", &url, "--token", ADMIN]).args(extra);
        cmd.env_remove("CRMHOOK_CA_FILE").env_remove("CRMHOOK_ADMIN_TOKEN").env_remove("CRMHOOK_URL");
        cmd.output().expect("crmhook runs")
    };
    let out = cli(&[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no TLS connection") && err.contains("--ca-file"), "{err}");
    assert!(!err.contains("is it running"), "{err}");
    let ca = certs.path().join("ca.pem").display().to_string();
    let out = cli(&["--ca-file", &ca]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("(none)"), "{out:?}");
    // `http://` to a server that speaks TLS says so (until 2026-12-07: "Header field didn't end
    // with \n: [21, 3, 3, …] (is it running?)").
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_crmhook"))
        .args(["targets", "list", "--url", &server.base, "--token", ADMIN])
        .env_remove("CRMHOOK_CA_FILE")
        .env_remove("CRMHOOK_ADMIN_TOKEN")
        .env_remove("CRMHOOK_URL")
        .output()
        .expect("crmhook runs");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("answered in TLS: use {url}")), "{err}");
    assert!(server.stop().success());
}

#[test]
fn tls_needs_both_files() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_crmhook"))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("CRMHOOK_TLS_CERT", "/nonexistent/cert.pem")
        .output()
        .expect("crmhook runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tls_key") && err.contains("both"), "{err}");
}

/// A start that fails on what the configuration names (a certificate that is not there, a key
/// file that cannot be created) says which key and where it was set, and makes nothing: no data
/// dir, no key file, no tokens, which the next start would take for its own.
#[test]
fn a_start_refused_on_its_files_makes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("db");
    let certs = tempfile::tempdir().expect("tempdir");
    issue(certs.path());
    let key = certs.path().join("key.pem");
    let empty = certs.path().join("empty.pem");
    std::fs::write(&empty, "no certificate in here\n").expect("write");
    let missing = dir.path().join("nonexistent.pem");
    let no_dir = dir.path().join("none/db.key");
    for (env, key, why) in [
        (vec![("CRMHOOK_TLS_CERT", &missing), ("CRMHOOK_TLS_KEY", &key)], "tls_cert", "cannot read the certificate"),
        (vec![("CRMHOOK_TLS_CERT", &empty), ("CRMHOOK_TLS_KEY", &key)], "tls_cert", "holds no certificate"),
        (vec![("CRMHOOK_KEY_FILE", &no_dir)], "key_file", "cannot create the key file"),
    ] {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_crmhook"));
        cmd.args(["serve", "--bind", "127.0.0.1:0", "--data-dir"]).arg(&data).current_dir(dir.path());
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CRMHOOK_")) {
            cmd.env_remove(k);
        }
        for (var, value) in env {
            cmd.env(var, value);
        }
        let out = cmd.output().expect("crmhook runs");
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        let var = format!("CRMHOOK_{}", key.to_ascii_uppercase());
        assert!(err.contains(&format!("invalid configuration: key `{key}` (from environment {var})")), "{err}");
        assert!(err.contains(why), "{err}");
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").map(|e| e.expect("entry").file_name()).collect();
        assert!(left.is_empty(), "a refused start left {left:?}");
    }
}

/// Deliveries trust the public roots, and the certificates of `delivery_ca_file` beside them: a
/// receiver whose certificate a private CA signed (here another crmhook serving TLS, which
/// answers a POST to `/healthz` with 405) is refused without the file, and reached with it.
#[test]
fn deliveries_trust_the_delivery_ca_file_beside_the_public_roots() {
    let certs = tempfile::tempdir().expect("tempdir");
    issue(certs.path());
    let cert = certs.path().join("cert.pem").display().to_string();
    let key = certs.path().join("key.pem").display().to_string();
    let ca = certs.path().join("ca.pem").display().to_string();
    let receiver = Server::start_with(&[
        ("CRMHOOK_ADMIN_TOKEN", ADMIN),
        ("CRMHOOK_INGEST_TOKEN", INGEST),
        ("CRMHOOK_TLS_CERT", &cert),
        ("CRMHOOK_TLS_KEY", &key),
    ]);
    let port = receiver.base.rsplit(':').next().expect("port").to_owned();
    let url = format!("https://127.0.0.1:{port}/healthz");
    for (file, said) in [(None, "TLS: invalid peer certificate: UnknownIssuer"), (Some(&ca), "answered HTTP 405")] {
        let mut env = TEST_ENV.to_vec();
        env.extend(file.map(|f| ("CRMHOOK_DELIVERY_CA_FILE", f.as_str())));
        let server = Server::start_with(&env);
        let (tid, _) = server.wire(&url, Some(serde_json::json!({})), serde_json::json!({"retry_schedule_ms": []}));
        let posted = server.post_ok(&support::maia("ai_pause", serde_json::json!({})));
        let id = posted["events"][0]["id"].as_str().expect("id").to_owned();
        server.wait_settled(&tid, Duration::from_secs(20));
        let delivery = &server.event(&id)["deliveries"][0];
        let error = delivery["attempts"][0]["error"].as_str().unwrap_or_default();
        assert!(error.starts_with(said), "with the CA file {file:?}: {delivery}");
    }
}

/// A client that offers HTTP/2 gets HTTP/1.1, whose limits and problem answers are the server's
/// (more than 96 headers: 431, a head or body too slow: 408). Until 2026-12-07 the listener
/// chose `h2` when offered (awc's client turns actix's HTTP/2 on for the whole build), and over
/// HTTP/2 those limits did not hold: 2,000 headers were taken, and a slow body got no answer.
#[test]
fn the_listener_speaks_http_1_1_whatever_the_client_offers() {
    let (_certs, ca, cert, key) = certificate();
    let mut server = Server::start_with(&[("CRMHOOK_TLS_CERT", &cert), ("CRMHOOK_TLS_KEY", &key)]);
    let addr = server.base.trim_start_matches("http://").to_owned();
    let offered = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut tls = connect(&addr, &ca, offered, Duration::from_secs(10)).expect("connect");
    assert_eq!(handshake(&mut tls).expect("a handshake").as_deref(), Some(&b"http/1.1"[..]));
    // And HTTP/1.1 it speaks on that connection, with its limit on headers.
    let headers: String = (0..120).map(|i| format!("X-Many-{i}: {i}\r\n")).collect();
    tls.write_all(format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Connection: close\r\n\r\n").as_bytes())
        .expect("write");
    let mut answer = String::new();
    let _ = tls.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    // A client that offers only HTTP/2 is refused at the handshake (no protocol in common).
    let mut h2_only = connect(&addr, &ca, vec![b"h2".to_vec()], Duration::from_secs(10)).expect("connect");
    assert!(handshake(&mut h2_only).is_err(), "an h2-only client got a connection");
    assert!(server.stop().success());
}

/// Connections that say nothing (no TLS handshake) do not hold up other clients' handshakes:
/// until 2026-12-07 a worker took at most 256 handshakes at once and stopped accepting past
/// them, so a client holding a few hundred idle connections made every other client wait for
/// them to time out (3 s each round), past a Maximizer's 2 s.
#[test]
fn idle_connections_do_not_hold_up_other_clients_handshakes() {
    let (_certs, ca, cert, key) = certificate();
    let mut server =
        Server::start_with(&[("CRMHOOK_TLS_CERT", &cert), ("CRMHOOK_TLS_KEY", &key), ("CRMHOOK_WORKERS", "1")]);
    let addr = server.base.trim_start_matches("http://").to_owned();
    // 600 idle connections: more than twice the old cap of the one worker.
    let idle: Vec<TcpStream> = (0..600).map(|_| TcpStream::connect(&addr).expect("an idle connection")).collect();
    // A client behind them completes its handshake and its request, well within the 3 s an idle
    // connection's handshake is given (the read timeout: a server that does not answer fails).
    let mut tls = connect(&addr, &ca, Vec::new(), Duration::from_millis(2_500)).expect("connect");
    handshake(&mut tls).expect("a handshake while 600 connections are idle");
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").expect("write");
    let mut answer = String::new();
    let _ = tls.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(idle);
    assert!(server.stop().success());
}

/// A reload from a certificate that has expired keeps the one served while that one has not
/// (until 2026-12-07 it took it, and every client failed from then on), and the next good files
/// are taken on the next SIGHUP.
#[test]
fn a_reload_keeps_the_certificate_served_rather_than_one_expired() {
    let (certs, served, cert, key) = certificate();
    // Its log (stderr) in a file, to see the reload refused.
    let log = certs.path().join("stderr.log");
    let env = [("CRMHOOK_TLS_CERT", cert.as_str()), ("CRMHOOK_TLS_KEY", key.as_str())];
    let mut server = Server::start_wrapped(&env, &format!("exec 2>>'{}'", log.display()));
    let addr = server.base.trim_start_matches("http://").to_owned();
    let hup = |pid: u32| {
        let sent = std::process::Command::new("kill").args(["-HUP", &pid.to_string()]).status().expect("kill -HUP");
        assert!(sent.success());
    };
    let expired = issue_until(certs.path(), (2020, 2, 1));
    hup(server.pid());
    wait_for(Duration::from_secs(10), "the reload refused in the log", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines().find(|l| l.contains("was not reloaded") && l.contains("expired at 2020-02-01")).map(drop)
    });
    assert_eq!(get(&addr, &served, "/healthz").as_deref(), Ok("HTTP/1.1 200 OK"));
    assert!(get(&addr, &expired, "/healthz").is_err(), "the expired certificate is served");
    let third = issue(certs.path());
    hup(server.pid());
    wait_for(Duration::from_secs(10), "the third certificate", || get(&addr, &third, "/healthz").ok());
    assert!(server.stop().success());
}
