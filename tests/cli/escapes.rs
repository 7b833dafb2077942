//! What a CRM, a key holder or a receiver sent reaches the operator's terminal as text: the CLI
//! escapes its control characters (`\u{1b}`), so none is taken as a command (colours, a window
//! title, a cleared screen); `--json` stays JSON meaning the same. Names are refused with them.

use super::*;

/// A recordId that colours the terminal red, sets its title and rings its bell, with a C1 CSI.
const HOSTILE_RECORD: &str = "r\u{1b}[31mRED\u{1b}]0;pwned\u{7}\u{9b}2J";
/// The same as the CLI shows it.
const SHOWN_RECORD: &str = r"r\u{1b}[31mRED\u{1b}]0;pwned\u{7}\u{9b}2J";

/// Fails unless `text` holds no control character but line feeds (no ESC, BEL, CR, C1, …).
fn assert_no_control(what: &str, text: &str) {
    let found: Vec<char> = text.chars().filter(|c| c.is_control() && *c != '\n').collect();
    assert!(found.is_empty(), "{what} printed {found:?} as it is: {text:?}");
}

#[test]
fn events_and_attempts_are_printed_with_their_control_characters_escaped() {
    let server = Server::start();
    let rcv = Receiver::start();
    // The receiver's answer clears the screen, sets the title and moves back over its line.
    rcv.program("/esc", &[], with_body(200, "ok\u{1b}[2J\u{1b}]0;owned\u{7}\r\nline two\u{85}"));
    let (tid, _) = server.wire(&rcv.url("/esc"), Some(json!({})), json!({}));
    let ev = maia("crm_record_created", json!({"recordId": HOSTILE_RECORD}));
    let eid = server.post_ok(&ev)["events"][0]["id"].as_str().expect("id").to_owned();
    rcv.wait_count("/esc", 1, Duration::from_secs(10));

    let list = succeeded(&crmhook(&server, &["events", "list"]));
    assert_no_control("events list", &list);
    let row = list.lines().find(|l| l.contains(&eid)).expect("the event is listed");
    assert!(row.contains(SHOWN_RECORD), "{list}");

    let shown = wait_for(Duration::from_secs(10), "the event shown delivered", || {
        let out = succeeded(&crmhook(&server, &["events", "show", &eid]));
        out.contains("delivered").then_some(out)
    });
    assert_no_control("events show", &shown);
    // The payload as JSON text, and the receiver's body as lines (line feeds kept).
    assert!(shown.contains(r#""recordId": "r\u001b[31mRED\u001b]0;pwned\u0007\u009b2J""#), "{shown}");
    assert!(shown.contains("ok\\u{1b}[2J\\u{1b}]0;owned\\u{7}\n") && shown.contains("line two\\u{85}"), "{shown}");

    let tested = succeeded(&crmhook(&server, &["targets", "test", &tid]));
    assert_no_control("targets test", &tested);
    assert!(tested.contains(r"ok\u{1b}[2J"), "{tested}");

    // `--json` is JSON meaning exactly what was posted, with nothing a terminal acts on.
    let listed = succeeded(&crmhook(&server, &["events", "list", "--json"]));
    assert_no_control("events list --json", &listed);
    let listed: Value = serde_json::from_str(&listed).expect("JSON");
    let posted = listed["events"].as_array().expect("events").iter().find(|e| e["id"] == eid.as_str());
    assert_eq!(posted.expect("the event")["payload"], ev);
}

/// Fails unless `text` holds none of the characters that reorder a line or hide text.
fn assert_no_invisible(what: &str, text: &str) {
    let hiding = |c: &char| matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200b}'..='\u{200f}' | '\u{2060}' | '\u{feff}');
    let found: Vec<char> = text.chars().filter(hiding).collect();
    assert!(found.is_empty(), "{what} printed {found:?} as it is: {text:?}");
}

#[test]
fn names_that_reorder_or_hide_text_are_refused_and_events_are_printed_with_them_escaped() {
    let server = Server::start();
    // A target's name that a terminal draws as "billing-exe.pdf", and one with a zero-width
    // space that looks like "billing": refused since 2026-12-07 (the CLI showed them escaped).
    for name in ["billing-\u{202e}fdp.exe", "bill\u{200b}ing"] {
        let r = server.admin("POST", "/v1/targets", Some(&json!({"name": name, "url": "http://127.0.0.1:9/hook"})));
        assert_eq!((r.status, r.json()["field"].as_str()), (422, Some("name")), "{name:?}: {}", r.text);
        let out = crmhook(&server, &["targets", "create", "--name", name, "--target-url", "http://127.0.0.1:9/hook"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains("`name`"), "{stderr}");
        assert_no_invisible("the refusal", &stderr);
    }
    // An event whose recordId hides its end, and a field that reorders its line.
    let ev = maia(
        "crm_record_created",
        json!({"recordId": "r1\u{2066}\u{feff}\u{2060}hidden\u{2069}\u{200f}", "file": "billing-\u{202e}fdp.exe"}),
    );
    let eid = server.post_ok(&ev)["events"][0]["id"].as_str().expect("id").to_owned();
    let list = succeeded(&crmhook(&server, &["events", "list"]));
    assert_no_invisible("events list", &list);
    let row = list.lines().find(|l| l.contains(&eid)).expect("the event is listed");
    assert!(row.contains(r"r1\u{2066}\u{feff}\u{2060}hidden\u{2069}\u{200f}"), "{list}");
    let shown = succeeded(&crmhook(&server, &["events", "show", &eid]));
    assert_no_invisible("events show", &shown);
    // `--json` writes them as JSON escapes: the same JSON, shown in the order it is written.
    let listed = succeeded(&crmhook(&server, &["events", "list", "--json"]));
    assert_no_invisible("events list --json", &listed);
    assert!(listed.contains(r#""billing-\u202efdp.exe""#), "{listed}");
    let listed: Value = serde_json::from_str(&listed).expect("JSON");
    assert_eq!(listed["events"][0]["payload"], ev);
}

#[test]
fn receive_prints_a_body_with_its_control_characters_escaped() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let save = dir.path().join("last.json");
    let (mut child, rx) = receive(port, &[], &save);

    let body = format!("{{\"recordId\":\"{HOSTILE_RECORD}\"}}\n\tsecond line\r");
    let url = format!("http://127.0.0.1:{port}/hook");
    let answer = http("POST", &url, &[("X-Maia-Signature", "a\tb")], Some(body.as_bytes()));
    assert_eq!(answer.status, 200);
    let mut lines = Vec::new();
    wait_for(Duration::from_secs(10), "receive to print the body", || {
        while let Ok(line) = rx.try_recv() {
            lines.push(line);
        }
        lines.iter().any(|l| l.contains("second line")).then_some(())
    });
    let _ = child.kill();
    let _ = child.wait();
    let text = lines.join("\n");
    // The body's line feed and tab are kept, everything else shown; its bytes are saved as sent.
    assert!(!text.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\t')), "{text:?}");
    assert!(text.contains(&format!("{{\"recordId\":\"{SHOWN_RECORD}\"}}\n\tsecond line\\u{{d}}")), "{text}");
    assert!(text.contains(r"X-Maia-Signature: a\u{9}b"), "{text}");
    assert_eq!(std::fs::read(&save).expect("saved"), body.as_bytes());
}

#[test]
fn names_with_control_characters_are_refused() {
    let server = Server::start();
    let refused = |r: Resp| {
        assert_eq!(r.status, 422, "{}", r.text);
        assert_eq!(r.json()["field"], "name", "{}", r.text);
        assert!(r.json()["detail"].as_str().is_some_and(|d| d.contains("control characters")), "{}", r.text);
    };
    let url = "http://127.0.0.1:9/hook";
    for name in ["a\u{0}b", "crm\u{1b}[2J", "a\nb", "a\u{7f}", "a\u{9b}31m"] {
        refused(server.admin("POST", "/v1/targets", Some(&json!({"name": name, "url": url}))));
        refused(server.admin("POST", "/v1/sources", Some(&json!({"name": name, "kind": "maia"}))));
    }
    // A rename is held to the same rule; the name around spaces is trimmed as before.
    let (tid, _) = server.wire(url, None, json!({"name": "  crm eu  "}));
    refused(server.admin("PATCH", &format!("/v1/targets/{tid}"), Some(&json!({"name": "x\u{7}"}))));
    assert_eq!(server.admin("GET", &format!("/v1/targets/{tid}"), None).json()["name"], "crm eu");
    let r = server.admin("POST", "/v1/sources", Some(&json!({"name": "maia", "kind": "maia"})));
    assert_eq!(r.status, 201, "{}", r.text);
    let src = r.json()["id"].as_str().expect("id").to_owned();
    refused(server.admin("PATCH", &format!("/v1/sources/{src}"), Some(&json!({"name": "m\u{1b}]0;t\u{7}"}))));
}

#[test]
fn log_export_writes_del_c1_and_what_hides_text_as_json_escapes() {
    let mut server = Server::start();
    let note = "del\u{7f} nel\u{85} csi\u{9b}2J";
    let ev = maia("crm_record_created", json!({"recordId": HOSTILE_RECORD, "note": note, "file": "a\u{202e}fdp.exe"}));
    let eid = server.post_ok(&ev)["events"][0]["id"].as_str().expect("id").to_owned();
    let text = export_stopped(&mut server);
    assert_no_control("log export", &text);
    assert!(text.contains(r#""note":"del\u007f nel\u0085 csi\u009b2J""#), "{text}");
    assert_no_invisible("log export", &text);
    assert!(text.contains(r#""file":"a\u202efdp.exe""#), "{text}");
    // Still one JSON line per event, meaning exactly what was posted.
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!((lines.len(), lines[0]["id"].as_str()), (1, Some(eid.as_str())));
    assert_eq!(lines[0]["payload"], ev);
}
