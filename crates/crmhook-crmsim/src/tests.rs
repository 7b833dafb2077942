//! Tests against a tiny HTTP server on 127.0.0.1:0, written by hand on `std::net`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use crate::{maia, maia_signature, maximizer, Options};

/// A request as the server received it; header names lowercased.
struct Seen {
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Serves one connection per reply `(status, delay before answering)`, then stops listening.
/// Each request is on the channel before its answer is written.
fn server(replies: Vec<(u16, Duration)>) -> (String, mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for (n, (status, delay)) in replies.into_iter().enumerate() {
            let (stream, _) = listener.accept().expect("accept");
            stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            reader.read_line(&mut line).expect("request line");
            let target = line.split_whitespace().nth(1).unwrap_or_default().to_owned();
            let mut headers = Vec::new();
            loop {
                line.clear();
                reader.read_line(&mut line).expect("header");
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                let (name, value) = l.split_once(':').expect("header colon");
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
            let len = headers.iter().find(|(n, _)| n == "content-length");
            let len: usize = len.map_or(0, |(_, v)| v.parse().expect("content-length"));
            let mut body = vec![0; len];
            reader.read_exact(&mut body).expect("body");
            let _ = tx.send(Seen { target, headers, body });
            std::thread::sleep(delay);
            let text = format!(r#"{{"try":{}}}"#, n + 1);
            let extra = if status == 302 { "Location: http://127.0.0.1:1/elsewhere\r\n" } else { "" };
            let (len, text) = if status == 204 { (0, "") } else { (text.len(), text.as_str()) };
            let resp = format!(
                "HTTP/1.1 {status} X\r\n{extra}Content-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n{text}"
            );
            let mut stream = stream;
            let _ = stream.write_all(resp.as_bytes());
        }
    });
    (base, rx)
}

fn quick(n: u16) -> Vec<(u16, Duration)> {
    vec![(n, Duration::ZERO)]
}

const BODY: &[u8] = br#"{"eventType":"ai_pause"}"#;

#[test]
fn maia_signature_matches_openssl_vector() {
    // printf '%s' '{"eventType":"ai_pause"}' | openssl dgst -sha256 -hmac 'whsec_test'
    let want = "04ea030ad7a6c3fb0698636e18045766ea0e1a68cf92511e96bc811a4047e3c3";
    assert_eq!(maia_signature("whsec_test", BODY), want);
}

#[test]
fn defaults_are_the_crms() {
    assert_eq!((Options::maia().tries, Options::maia().timeout), (3, Duration::from_secs(10)));
    let m = Options::maximizer();
    assert_eq!((m.tries, m.timeout, m.pause), (3, Duration::from_secs(2), Duration::ZERO));
}

#[test]
fn maia_sends_exact_body_signature_and_no_authorization() {
    let (base, rx) = server(quick(200));
    let body = b"{\n  \"eventType\": \"crm_field_update\",  \"n\": 1.50\n}\n";
    let report = maia::post(&format!("{base}/v1/events"), "whsec_test", body);
    assert!(report.delivered && !report.discarded, "{report}");
    assert_eq!(report.tries.len(), 1);
    assert_eq!(report.last_body_json(), Some(serde_json::json!({"try": 1})));
    let seen = rx.recv().expect("request");
    assert_eq!(seen.target, "/v1/events");
    assert_eq!(seen.body, body);
    assert_eq!(seen.header("content-type"), Some("application/json"));
    assert_eq!(seen.header("x-maia-signature"), Some(maia_signature("whsec_test", body).as_str()));
    assert_eq!(seen.header("authorization"), None);
}

#[test]
fn maia_takes_any_2xx_and_retries_the_rest() {
    let (base, _rx) = server(quick(202));
    assert!(maia::post(&base, "s", BODY).delivered);

    let (base, rx) = server(vec![(500, Duration::ZERO), (302, Duration::ZERO), (201, Duration::ZERO)]);
    let report = maia::post(&base, "s", BODY);
    assert!(report.delivered, "{report}");
    let statuses: Vec<_> = report.tries.iter().map(|t| t.status).collect();
    assert_eq!(statuses, [Some(500), Some(302), Some(201)], "redirects are not followed");
    assert_eq!(rx.try_iter().count(), 3);

    let (base, _rx) = server(vec![(503, Duration::ZERO); 3]);
    let report = maia::post(&base, "s", BODY);
    assert!(!report.delivered && report.discarded && report.tries.len() == 3, "{report}");
    assert!(report.to_string().ends_with("; failed, tried 3 times, discarded"), "{report}");
}

#[test]
fn maximizer_counts_202_as_failure_and_discards_after_3_tries() {
    let (base, rx) = server(vec![(202, Duration::ZERO); 3]);
    let body = maximizer::batch(&[maximizer::envelope("e1", "Opportunity", "Update", "12000.00")]);
    let report = maximizer::post(&format!("{base}/v1/sources/max?key=k3y"), body.as_bytes());
    assert!(!report.delivered && report.discarded, "{report}");
    assert_eq!(report.tries.len(), 3);
    assert!(report.tries.iter().all(|t| t.status == Some(202) && t.error.is_none()));
    let seen: Vec<Seen> = rx.try_iter().collect();
    assert_eq!(seen.len(), 3);
    for s in &seen {
        assert_eq!(s.target, "/v1/sources/max?key=k3y");
        assert_eq!(s.body, body.as_bytes());
        assert_eq!(s.header("content-type"), Some("application/json"));
        assert_eq!(s.header("authorization"), None);
    }
}

#[test]
fn maximizer_200_is_success_after_one_try() {
    let (base, rx) = server(quick(200));
    let report = maximizer::post(&format!("{base}/?key=k"), b"[]");
    assert!(report.delivered && !report.discarded, "{report}");
    assert_eq!(report.tries.len(), 1);
    assert_eq!(report.last_status(), Some(200));
    assert_eq!(rx.try_iter().count(), 1);
}

#[test]
fn maximizer_fails_on_204_and_redirect_without_following() {
    let one = Options { tries: 1, ..Options::maximizer() };
    for status in [204, 302] {
        let (base, _rx) = server(quick(status));
        let report = maximizer::post_with(&format!("{base}/?key=k"), b"[]", &one);
        assert!(!report.delivered && report.discarded, "{report}");
        assert_eq!(report.last_status(), Some(status));
    }
}

#[test]
fn connection_refused_is_a_failure_tried_3_times() {
    let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let report = maximizer::post(&format!("http://127.0.0.1:{port}/?key=s3cr3t"), b"[]");
    assert_eq!(report.tries.len(), 3);
    assert!(!report.to_string().contains("s3cr3t"), "errors must not echo the keyed URL: {report}");
    assert!(report.discarded && report.tries.iter().all(|t| t.status.is_none() && t.error.is_some()));
}

#[test]
fn maximizer_slow_answer_is_a_failure() {
    let (base, _rx) = server(vec![(200, Duration::from_millis(2500))]);
    let one = Options { tries: 1, ..Options::maximizer() };
    let report = maximizer::post_with(&format!("{base}/?key=k"), b"[]", &one);
    assert!(!report.delivered && report.discarded, "{report}");
    let t = &report.tries[0];
    assert!(t.status.is_none() && t.error.is_some(), "{report}");
    assert!(t.elapsed >= Duration::from_millis(1900) && t.elapsed < Duration::from_millis(2500));
}

#[test]
fn envelope_matches_the_sample_shape_and_keeps_the_literal() {
    let e = maximizer::envelope("id-\"1\"", "Opportunity", "Update", "12000.00");
    assert!(e.contains(r#""Revenue":12000.00,"#), "{e}");
    let batch = maximizer::batch(&[e.clone(), maximizer::envelope("2", "Contact", "Insert", "1e3")]);
    assert!(batch.starts_with(&format!("[{e},")));
    let got: serde_json::Value = serde_json::from_str(&batch).expect("valid JSON");
    assert_eq!(got[0]["Id"], "id-\"1\"");
    assert_eq!(got[1]["Entity"], "Contact");
    assert_eq!(got[1]["Data"]["Op"], "Insert");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/samples/maximizer/opportunity_stage_change.json");
    let text = std::fs::read_to_string(path).expect("sample");
    let sample: serde_json::Value = serde_json::from_str(&text).expect("sample JSON");
    let ours = maximizer::envelope("d81f9d6e-8afc-4fa4-9052-2af207494e5d", "Opportunity", "Update", "12000.00");
    let ours: serde_json::Value = serde_json::from_str(&ours).expect("envelope JSON");
    assert_eq!(ours, sample[0], "same fields and values as the sample");
}
