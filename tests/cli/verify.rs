//! `crmhook verify` and `crmhook receive`: a delivery's signatures checked as a receiver would,
//! and shown as a real delivery arrives, with the commands that check them.

use super::*;

/// MAIA's signature computed here, independently of crmhook: lowercase hex of HMAC-SHA256 over
/// the body, keyed with the secret string's bytes.
fn maia_hex(secret: &str, body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[test]
fn verify_checks_a_maia_signature_and_says_which_scheme() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = "whsec_c2VjcmV0LWZvci1tYWlhLXRlc3Rz";
    let body = br#"{"eventType":"crm_field_update","newValue":12000.00}"#;
    let sig = maia_hex(secret, body);
    let file = dir.path().join("body.json");
    std::fs::write(&file, body).expect("write");
    let path = file.to_str().expect("utf-8 path");
    // The contract's command line, with the X-Maia-Timestamp given (MAIA does not sign it) …
    let out =
        crmhook_bare(&["verify", "--secret", secret, "--body", path, "--timestamp", "1700000000", "--signature", &sig]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("valid") && text.contains("X-Maia-Signature"), "{text}");
    // … or without it.
    let out = crmhook_bare(&["verify", "--secret", secret, "--body", path, "--signature", &sig]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // A body changed by one byte, another secret, or the old `sha256=` form does not match.
    let tampered = dir.path().join("tampered.json");
    std::fs::write(&tampered, br#"{"eventType":"crm_field_update","newValue":12000.01}"#).expect("write");
    let tampered = tampered.to_str().expect("utf-8 path");
    let out =
        crmhook_bare(&["verify", "--secret", secret, "--body", tampered, "--timestamp", "1", "--signature", &sig]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("invalid") && text.contains("X-Maia-Signature"), "{text}");
    let out = crmhook_bare(&["verify", "--secret", "whsec_other", "--body", path, "--signature", &sig]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let out = crmhook_bare(&["verify", "--secret", secret, "--body", path, "--signature", &format!("sha256={sig}")]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("sha256="), "{out:?}");

    // A webhook-signature needs its id and timestamp, and says which scheme it checked.
    let out = crmhook_bare(&["verify", "--secret", secret, "--body", path, "--signature", "v1,abc", "--id", "evt_1"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--timestamp"), "{out:?}");
    let webhook_signature = |timestamp: &str| {
        crmhook_bare(&[
            "verify",
            "--secret",
            secret,
            "--body",
            path,
            "--timestamp",
            timestamp,
            "--signature",
            "v1,abc",
            "--id",
            "evt_1",
        ])
    };
    let out = webhook_signature("1");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("webhook-signature"), "{out:?}");
    // Timestamp 1 is long past: the note says so the right way round.
    assert!(String::from_utf8_lossy(&out.stderr).contains("note: the timestamp is 1"), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains(" s ago;"), "{out:?}");
    // A timestamp that is not one is a mistake in the command (2), not a mismatch (1).
    let out = webhook_signature("abc");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--timestamp \"abc\""), "{out:?}");
}

#[test]
fn receive_shows_the_signatures_of_a_real_delivery_and_how_to_check_them() {
    let server = Server::start();
    // A free port for `crmhook receive`, known before the target (whose secret it needs) exists.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let (_, secret) = server.wire(&format!("http://127.0.0.1:{port}/hook"), Some(json!({})), json!({}));
    let dir = tempfile::tempdir().expect("tempdir");
    let save = dir.path().join("last.json");
    let (mut child, rx) = receive(port, &["--secret", &secret], &save);

    let ev = maia("crm_field_update", json!({}));
    let eid = server.post_ok(&ev)["events"][0]["id"].as_str().expect("id").to_owned();
    let mut lines = Vec::new();
    wait_for(Duration::from_secs(15), "receive to print the verify commands", || {
        while let Ok(line) = rx.try_recv() {
            lines.push(line);
        }
        lines.iter().any(|l| l.contains("crmhook verify") && l.contains("--id")).then_some(())
    });
    let _ = child.kill();
    let _ = child.wait();
    let text = lines.join("\n");
    assert!(text.contains("POST /hook") && text.contains("attempt 1") && text.contains(&eid), "{text}");
    for header in ["X-Maia-Timestamp: ", "webhook-timestamp: "] {
        assert!(
            lines.iter().any(|l| l.trim().strip_prefix(header).is_some_and(|v| v.parse::<u64>().is_ok())),
            "{text}"
        );
    }
    let maia_line = lines.iter().find(|l| l.contains("X-Maia-Signature: ")).expect("X-Maia-Signature");
    assert!(maia_line.ends_with("  valid"), "{maia_line}");
    let saved = std::fs::read(&save).expect("the body is saved");
    let sig = maia_line.trim().trim_start_matches("X-Maia-Signature: ").split_whitespace().next().expect("sig");
    assert_eq!(sig, maia_hex(&secret, &saved), "the header shown is MAIA's signature of the saved body");
    let std_line = lines.iter().find(|l| l.contains("webhook-signature: ")).expect("webhook-signature");
    assert!(std_line.contains("v1,") && std_line.ends_with("  valid"), "{std_line}");
    assert_eq!(serde_json::from_slice::<Value>(&saved).expect("json"), ev);

    // The printed command lines work when pasted into a shell.
    let commands: Vec<&str> = lines.iter().map(|l| l.trim()).filter(|l| l.starts_with("crmhook verify")).collect();
    assert_eq!(commands.len(), 2, "{text}");
    for command in commands {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!("exec \"$0\" {}", command.trim_start_matches("crmhook ")))
            .arg(env!("CARGO_BIN_EXE_crmhook"))
            .output()
            .expect("bash runs");
        assert_eq!(out.status.code(), Some(0), "{command}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("valid"), "{out:?}");
    }
}
