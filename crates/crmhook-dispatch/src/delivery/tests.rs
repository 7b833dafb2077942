//! The delivery unit tests: bodies, signatures, headers, the answers kept, TLS to IP literals.

use super::*;
use crate::tls::DeliveryTls;
use crmhook_core::event::parse_ingest;
use crmhook_core::sign;
use crmhook_core::EventId;
use std::net::IpAddr;
use std::sync::mpsc;

fn stored(body: &str) -> Event {
    let new = parse_ingest(body.as_bytes()).unwrap().remove(0);
    Event::from_new(new, 1, EventId::generate(), 0)
}

fn target(format: Option<Format>) -> Target {
    let body = serde_json::json!({"name": "t", "url": "https://example.com/"});
    let mut t = Target::create(body.as_object().unwrap(), false, sign::generate_secret(), 0).unwrap();
    t.format = format;
    t
}

/// A TLS receiver on [::1] (127.0.0.1 for an IPv4 `san`) whose certificate names one address,
/// signed by a CA of its own.
struct TlsReceiver {
    port: u16,
    /// A client configuration trusting that CA.
    trusting: Arc<ClientConfig>,
    /// That CA's certificate (PEM).
    ca_pem: String,
    /// For each connection it accepts, the request's head (answered 200) or why the
    /// handshake failed.
    heads: mpsc::Receiver<Result<String, String>>,
}

/// A [`TlsReceiver`] with a certificate for `san` (none when this machine has no IPv6
/// loopback).
fn tls_receiver(san: IpAddr) -> Option<TlsReceiver> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
    let bind = if san.is_ipv6() { "[::1]:0" } else { "127.0.0.1:0" };
    let listener = match std::net::TcpListener::bind(bind) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("SKIPPED: this machine has no IPv6 loopback ([::1]): {e}");
            return None;
        }
    };
    let port = listener.local_addr().expect("address").port();
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).expect("CA certificate");
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.subject_alt_names = vec![SanType::IpAddress(san)];
    let cert = params.signed_by(&key, &ca, &ca_key).expect("certificate");

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).expect("trust the CA");
    let mut client = ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .expect("server configuration");
    let server = Arc::new(server);

    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut tcp) = stream else { continue };
            let Ok(mut conn) = rustls::ServerConnection::new(server.clone()) else { continue };
            if tx.send(serve_one(&mut conn, &mut tcp)).is_err() {
                return;
            }
        }
    });
    Some(TlsReceiver { port, trusting: Arc::new(client), ca_pem: ca.pem(), heads: rx })
}

/// One request over TLS: the handshake, the request's head and body, a 200.
fn serve_one(conn: &mut rustls::ServerConnection, tcp: &mut std::net::TcpStream) -> Result<String, String> {
    use std::io::{Read, Write};
    while conn.is_handshaking() {
        conn.complete_io(tcp).map_err(|e| e.to_string())?;
    }
    let mut tls = rustls::Stream::new(conn, tcp);
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tls.read_exact(&mut byte).map_err(|e| e.to_string())?;
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let length = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0);
    let mut body = vec![0; length];
    tls.read_exact(&mut body).map_err(|e| e.to_string())?;
    tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").map_err(|e| e.to_string())?;
    tls.flush().map_err(|e| e.to_string())?;
    Ok(head)
}

fn target_at(url: &str) -> Arc<Target> {
    let body = serde_json::json!({"name": "t", "url": url});
    Arc::new(Target::create(body.as_object().unwrap(), true, sign::generate_secret(), 0).unwrap())
}

/// A client like [`Client::new`]'s, but whose client for `https://` to IPv6 literals trusts
/// `roots` (a test's own CA) instead of webpki's.
fn client_trusting(guard: Guard, roots: Arc<ClientConfig>) -> Client {
    Client { http: awc_client(guarded_tcp(guard), roots.clone()), ipv6_tls: ipv6_tls_client(guard, roots), guard }
}

#[actix_rt::test]
async fn https_to_an_ipv6_literal_delivers_to_a_certificate_for_that_address() {
    let loopback: IpAddr = "::1".parse().expect("address");
    let Some(TlsReceiver { port, trusting, heads, .. }) = tls_receiver(loopback) else { return };
    let open = Guard { allow_private: true };
    let endpoint = Endpoint::new(target_at(&format!("https://[::1]:{port}/hook?x=1")), open);
    let event = stored(r#"{"eventType":"ai_pause","sessionId":"s"}"#);
    let report = attempt(&client_trusting(open, trusting), &endpoint, &event, 1).await;
    assert_eq!(report.outcome, Outcome::Status(200));
    let head = heads.recv_timeout(Duration::from_secs(10)).expect("a connection").expect("a handshake");
    assert!(head.starts_with("POST /hook?x=1 HTTP/1.1\r\n"), "{head}");
    // The Host header is the https:// URL's, as awc writes it for any URL.
    assert!(head.to_ascii_lowercase().contains(&format!("\r\nhost: [::1]:{port}\r\n")), "{head}");
}

#[actix_rt::test]
async fn https_to_an_ipv6_literal_refuses_a_certificate_for_another_address() {
    let other: IpAddr = "::2".parse().expect("address");
    let Some(TlsReceiver { port, trusting, heads, .. }) = tls_receiver(other) else { return };
    let open = Guard { allow_private: true };
    let endpoint = Endpoint::new(target_at(&format!("https://[::1]:{port}/hook")), open);
    let event = stored(r#"{"eventType":"ai_pause","sessionId":"s"}"#);
    let report = attempt(&client_trusting(open, trusting), &endpoint, &event, 1).await;
    let Outcome::Error(error) = report.outcome else { panic!("delivered: {:?}", report.outcome) };
    // The name checked is the address itself: the certificate's other address does not do.
    assert!(error.starts_with("TLS: "), "{error}");
    assert!(error.contains(r#"certificate not valid for name "::1""#), "{error}");
    let refused = heads.recv_timeout(Duration::from_secs(10)).expect("a connection");
    assert!(refused.is_err(), "the receiver got a request: {refused:?}");
}

#[actix_rt::test]
async fn https_to_an_ipv6_literal_is_guarded_at_connect_time() {
    let loopback: IpAddr = "::1".parse().expect("address");
    let Some(TlsReceiver { port, trusting, .. }) = tls_receiver(loopback) else { return };
    // Prepared while private targets were allowed; the client's guard is on.
    let endpoint = Endpoint::new(target_at(&format!("https://[::1]:{port}/hook")), Guard { allow_private: true });
    let event = stored(r#"{"eventType":"ai_pause","sessionId":"s"}"#);
    let report = attempt(&client_trusting(Guard::default(), trusting), &endpoint, &event, 1).await;
    let Outcome::Error(error) = report.outcome else { panic!("delivered: {:?}", report.outcome) };
    assert!(error.starts_with("refused: ::1 is not a public address"), "{error}");
}

/// A receiver on 127.0.0.1 that answers each connection's request with `answer`'s bytes,
/// then closes it.
fn answering(answer: Vec<u8>) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut tcp) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && tcp.read_exact(&mut byte).is_ok() {
                head.push(byte[0]);
            }
            let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
            let length = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                .unwrap_or(0);
            let _ = tcp.read_exact(&mut vec![0; length]);
            let _ = tcp.write_all(&answer);
        }
    });
    port
}

fn local_target(port: u16, keep: u32, timeout_ms: u64) -> Endpoint {
    let mut target = (*target_at(&format!("http://127.0.0.1:{port}/hook"))).clone();
    target.response_body_bytes = keep;
    target.timeout_ms = timeout_ms;
    Endpoint::new(Arc::new(target), Guard { allow_private: true })
}

#[actix_rt::test]
async fn the_answer_is_kept_with_the_attempt() {
    let body = "x".repeat(5000);
    let answer = format!(
        "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nRetry-After: 30\r\nX-Other: 1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let port = answering(answer.into_bytes());
    let event = stored(r#"{"eventType":"ai_pause","sessionId":"s"}"#);
    let client = Client::new(Guard { allow_private: true }, &DeliveryTls::default());
    let report = attempt(&client, &local_target(port, 4096, 2000), &event, 1).await;
    assert_eq!(report.outcome, Outcome::Status(500));
    assert_eq!(report.retry_after_ms, Some(30_000));
    let response = report.response.expect("a response");
    assert_eq!(response.status, 500);
    let headers = vec![("content-type".to_owned(), "text/plain".to_owned()), ("retry-after".into(), "30".into())];
    assert_eq!(response.headers, headers);
    assert_eq!((response.body.len(), response.body_truncated), (4096, true));
    // A target that keeps none.
    let report = attempt(&client, &local_target(port, 0, 2000), &event, 1).await;
    let response = report.response.expect("a response");
    assert_eq!((response.body.len(), response.body_truncated, response.status), (0, true, 500));
}

#[actix_rt::test]
async fn an_answer_cut_off_before_its_declared_length_is_kept_as_truncated() {
    let client = Client::new(Guard { allow_private: true }, &DeliveryTls::default());
    let event = stored(r#"{"eventType":"ai_pause","sessionId":"s"}"#);
    // 6 of the 50 bytes it declares, then the connection closes.
    let port = answering(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{\"ok\":".to_vec());
    let report = attempt(&client, &local_target(port, 4096, 2000), &event, 1).await;
    assert_eq!(report.outcome, Outcome::Status(200), "the receiver answered 200");
    let response = report.response.expect("a response");
    assert_eq!((response.body.as_slice(), response.body_truncated), (&b"{\"ok\":"[..], true));
}

#[actix_rt::test]
async fn no_answer_is_said_in_words() {
    let client = Client::new(Guard { allow_private: true }, &DeliveryTls::default());
    let event = stored(r#"{"eventType":"ai_pause","sessionId":"s"}"#);
    // A port nothing listens on any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port();
    let report = attempt(&client, &local_target(port, 4096, 2000), &event, 1).await;
    assert_eq!(report.outcome, Outcome::Error("connection refused".into()));
    assert!(report.response.is_none());
    // The guard, for a literal address (a name is checked by the client's resolver, and
    // words the same; `https_to_an_ipv6_literal_is_guarded_at_connect_time`).
    let guarded = Client::new(Guard::default(), &DeliveryTls::default());
    let endpoint = Endpoint::new(target_at(&format!("http://127.0.0.1:{port}/")), Guard::default());
    let report = attempt(&guarded, &endpoint, &event, 1).await;
    let Outcome::Error(error) = report.outcome else { panic!("{:?}", report.outcome) };
    assert!(error.starts_with("refused: 127.0.0.1 is not a public address"), "{error}");
    // Not HTTP.
    let port = answering(b"hello\r\n\r\n".to_vec());
    let report = attempt(&client, &local_target(port, 4096, 2000), &event, 1).await;
    let Outcome::Error(error) = report.outcome else { panic!("{:?}", report.outcome) };
    assert!(error.starts_with("the answer is not HTTP"), "{error}");
    // The request read, the connection closed without a word.
    let port = answering(Vec::new());
    let report = attempt(&client, &local_target(port, 4096, 2000), &event, 1).await;
    assert_eq!(report.outcome, Outcome::Error("connection closed by the receiver".into()));
}

/// A body of `chunk`-byte pieces, `pieces` of them (`None`: endless), counting what was read.
fn pieces(
    chunk: usize,
    pieces: Option<usize>,
    read: Arc<std::sync::atomic::AtomicUsize>,
) -> impl Stream<Item = Result<Vec<u8>, ()>> + Unpin {
    let all = futures_util::stream::repeat_with(move || {
        read.fetch_add(chunk, std::sync::atomic::Ordering::Relaxed);
        Ok(vec![b'a'; chunk])
    });
    all.take(pieces.unwrap_or(usize::MAX))
}

#[actix_rt::test]
async fn a_body_is_read_no_further_than_needed() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let soon = || Instant::now() + Duration::from_secs(5);
    // Endless: the first 4,096 bytes are kept; no more than the read limit (and one piece) is read.
    let read = Arc::new(AtomicUsize::new(0));
    let (kept, truncated) = read_body(&mut pieces(1000, None, read.clone()), 4096, None, soon()).await;
    assert_eq!((kept.len(), truncated), (4096, true));
    assert!(read.load(Ordering::Relaxed) <= RESPONSE_READ_LIMIT + 1000, "{}", read.load(Ordering::Relaxed));
    // Declared past the read limit: read only as far as what is kept.
    let read = Arc::new(AtomicUsize::new(0));
    let (kept, truncated) = read_body(&mut pieces(1000, None, read.clone()), 100, Some(1 << 40), soon()).await;
    assert_eq!((kept.len(), truncated, read.load(Ordering::Relaxed)), (100, true, 1000));
    let read = Arc::new(AtomicUsize::new(0));
    let (kept, truncated) = read_body(&mut pieces(1000, None, read.clone()), 0, Some(1 << 40), soon()).await;
    assert_eq!((kept.len(), truncated, read.load(Ordering::Relaxed)), (0, true, 0));
    // Short bodies are read to their end: whole, or (keeping none) known to be longer.
    let read = Arc::new(AtomicUsize::new(0));
    let (kept, truncated) = read_body(&mut pieces(10, Some(3), read.clone()), 4096, None, soon()).await;
    assert_eq!((kept.len(), truncated), (30, false));
    let (kept, truncated) = read_body(&mut pieces(10, Some(3), read.clone()), 0, Some(30), soon()).await;
    assert_eq!((kept.len(), truncated), (0, true));
    let (kept, truncated) = read_body(&mut pieces(10, Some(0), read.clone()), 0, None, soon()).await;
    assert_eq!((kept.len(), truncated), (0, false));
    // Ended before the length it declared: what came, and not the whole body.
    let (kept, truncated) = read_body(&mut pieces(6, Some(1), read), 4096, Some(50), soon()).await;
    assert_eq!((kept.len(), truncated), (6, true));
    // A body that stops coming: what came by the deadline.
    let mut stalled = futures_util::stream::iter([Ok::<_, ()>(b"ab".to_vec())]).chain(futures_util::stream::pending());
    let started = Instant::now();
    let (kept, truncated) = read_body(&mut stalled, 4096, None, started + Duration::from_millis(100)).await;
    assert_eq!((kept, truncated), (b"ab".to_vec(), true));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn retry_after_takes_seconds_or_a_date() {
    assert_eq!(retry_after("30", 0), Some(30_000));
    assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1_445_412_470_000), Some(10_000));
    assert_eq!(retry_after("soon", 0), None);
}

#[test]
fn maia_events_are_delivered_as_ingested() {
    let text = r#"{"eventType":"ai_pause","sessionId":"s", "z": 1, "a": 2}"#;
    assert_eq!(body_for(&target(None), &stored(text)), text.as_bytes());
    let wrapped = body_for(&target(Some(Format::Maximizer)), &stored(text));
    assert_eq!(wrapped, format!("[{text}]").as_bytes());
}

#[test]
fn maximizer_events_are_their_exact_element_in_an_array() {
    let text = include_str!("../../../../data/samples/maximizer/opportunity_stage_change.json");
    let event = stored(text);
    let body = body_for(&target(None), &event);
    assert_eq!(body, [b"[".as_slice(), &event.payload, b"]"].concat());
    let body = String::from_utf8(body).unwrap();
    assert!(body.contains("12000.00"), "numbers keep their text: {body}");
    assert!(body.contains(r#""ProcessedTimestamp": "2024-09-20T00:02:45.8974002Z""#), "{body}");
    let bare = body_for(&target(Some(Format::Maia)), &event);
    assert_eq!(bare, event.payload);
}

#[actix_rt::test]
async fn a_receiver_whose_certificate_a_ca_of_the_delivery_ca_file_signed_is_trusted() {
    let loopback: IpAddr = "127.0.0.1".parse().expect("address");
    let Some(TlsReceiver { port, ca_pem, heads, .. }) = tls_receiver(loopback) else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("ca.pem");
    std::fs::write(&file, &ca_pem).expect("write the CA");
    let open = Guard { allow_private: true };
    let endpoint = Endpoint::new(target_at(&format!("https://127.0.0.1:{port}/hook")), open);
    let event = stored(r#"{"eventType":"ai_pause","sessionId":"s"}"#);
    // Public roots alone: the receiver's certificate is refused.
    let report = attempt(&Client::new(open, &DeliveryTls::default()), &endpoint, &event, 1).await;
    assert!(matches!(&report.outcome, Outcome::Error(e) if e.contains("UnknownIssuer")), "{:?}", report.outcome);
    assert!(heads.recv_timeout(Duration::from_secs(10)).expect("a connection").is_err());
    // With the CA in the file: delivered.
    let tls = DeliveryTls::with_ca_file(&file).expect("the CA file");
    let report = attempt(&Client::new(open, &tls), &endpoint, &event, 1).await;
    assert_eq!(report.outcome, Outcome::Status(200));
    let head = heads.recv_timeout(Duration::from_secs(10)).expect("a connection").expect("a request");
    assert!(head.starts_with("POST /hook HTTP/1.1"), "{head}");
    // A file that is not one is refused, with why.
    std::fs::write(&file, "not a certificate\n").expect("write");
    assert!(DeliveryTls::with_ca_file(&file).err().is_some_and(|e| e.contains("holds no certificate")));
    let missing = DeliveryTls::with_ca_file(&dir.path().join("missing.pem")).err();
    assert!(missing.is_some_and(|e| e.starts_with("cannot read")));
}
