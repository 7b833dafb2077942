//! The operators' CLI against a real server: tables, `--json`, `tail`, clear errors, and the
//! offline `log export`.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

fn crmhook(server: &Server, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crmhook"))
        .args(args)
        .env_remove("CRMHOOK_URL")
        .env_remove("CRMHOOK_ADMIN_TOKEN")
        .env("CRMHOOK_URL", &server.base)
        .env("CRMHOOK_ADMIN_TOKEN", ADMIN)
        .output()
        .expect("crmhook runs")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn targets_subscriptions_events_and_deliveries_from_the_command_line() {
    let mut server = Server::start();
    let rcv = Receiver::start();
    let created = ok(&crmhook(
        &server,
        &["targets", "create", "--name", "crm-a", "--target-url", &rcv.url("/cli"), "--header", "X-Key: k1", "--json"],
    ));
    let target: Value = serde_json::from_str(&created).expect("json");
    let tid = target["id"].as_str().expect("id").to_owned();
    assert!(target["secret"].as_str().is_some_and(|s| s.starts_with("whsec_")));
    let table = ok(&crmhook(&server, &["targets", "list"]));
    assert!(
        table.starts_with("ID") && table.contains(&tid) && table.contains("crm-a") && !table.contains("whsec_"),
        "{table}"
    );

    let sub = ok(&crmhook(
        &server,
        &[
            "subscriptions",
            "create",
            "--target",
            &tid,
            "--event-type",
            "crm_field_update",
            "--filter",
            r#"{"path": "/fieldName", "op": "eq", "value": "Email"}"#,
            "--json",
        ],
    ));
    let sub: Value = serde_json::from_str(&sub).expect("json");
    assert_eq!(sub["filters"][0]["op"], "eq");
    assert!(ok(&crmhook(&server, &["subscriptions", "list"])).contains(sub["id"].as_str().expect("id")));

    let ev = maia("crm_field_update", json!({}));
    let eid = server.post_ok(&ev)["events"][0]["id"].as_str().expect("id").to_owned();
    rcv.wait_count("/cli", 1, Duration::from_secs(10));
    let list = ok(&crmhook(&server, &["events", "list"]));
    assert!(
        list.contains(&eid) && list.contains("crm_field_update") && list.contains(ev["recordId"].as_str().expect("r")),
        "{list}"
    );
    let listed: Value =
        serde_json::from_str(&ok(&crmhook(&server, &["events", "list", "--type", "ai_pause", "--json"])))
            .expect("json");
    assert_eq!(listed["events"], json!([]));
    let shown = wait_for(Duration::from_secs(10), "the event shown delivered", || {
        let out = ok(&crmhook(&server, &["events", "show", &eid]));
        out.contains("delivered").then_some(out)
    });
    assert!(shown.contains(&tid) && shown.contains("HTTP 200"), "{shown}");
    let deliveries = ok(&crmhook(&server, &["deliveries", "list", "--target", &tid, "--status", "delivered"]));
    assert!(deliveries.contains(&eid), "{deliveries}");
    let replay = ok(&crmhook(&server, &["replay", "--target", &tid]));
    assert_eq!(replay.trim(), "queued 0");
    let again = ok(&crmhook(&server, &["events", "redeliver", &eid]));
    assert_eq!(again.trim(), "queued 1");
    rcv.wait_count("/cli", 2, Duration::from_secs(10));
    let rotated: Value =
        serde_json::from_str(&ok(&crmhook(&server, &["targets", "rotate-secret", &tid, "--json"]))).expect("json");
    assert_ne!(rotated["secret"], target["secret"]);

    // Offline export of the stopped server's log.
    assert!(server.stop().success());
    let out = Command::new(env!("CARGO_BIN_EXE_crmhook"))
        .args(["log", "export", "--data-dir"])
        .arg(server.data_dir())
        .output()
        .expect("runs");
    let text = ok(&out);
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["id"], eid.as_str());
    assert_eq!(lines[0]["payload"], ev);
    assert_eq!(lines[0]["attempts"].as_array().map(Vec::len), Some(2));
    server.respawn();
    ok(&crmhook(&server, &["targets", "delete", &tid]));
    assert!(ok(&crmhook(&server, &["targets", "list"])).contains("(none)"));
}

#[test]
fn tail_follows_the_stream() {
    let server = Server::start();
    let mut child = Command::new(env!("CARGO_BIN_EXE_crmhook"))
        .args(["events", "tail"])
        .env("CRMHOOK_URL", &server.base)
        .env("CRMHOOK_ADMIN_TOKEN", ADMIN)
        .stdout(Stdio::piped())
        .spawn()
        .expect("tail runs");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The stream only carries what comes after it opened: post until tail prints it.
    let line = wait_for(Duration::from_secs(10), "tail to print an event", || {
        server.post_ok(&maia("ai_pause", json!({})));
        rx.recv_timeout(Duration::from_millis(300)).ok()
    });
    assert!(line.starts_with("event") && line.contains("ai_pause"), "{line}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn errors_are_clear() {
    let server = Server::start();
    let out = Command::new(env!("CARGO_BIN_EXE_crmhook"))
        .args(["targets", "list", "--url", "http://127.0.0.1:1", "--token", ADMIN])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach crmhook at http://127.0.0.1:1"), "{out:?}");
    let out = Command::new(env!("CARGO_BIN_EXE_crmhook"))
        .args(["targets", "list", "--url", &server.base, "--token", INGEST])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused the token"), "{out:?}");
    let out = Command::new(env!("CARGO_BIN_EXE_crmhook"))
        .args(["events", "list", "--url", &server.base])
        .env_remove("CRMHOOK_ADMIN_TOKEN")
        .output()
        .expect("runs");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no admin token"), "{out:?}");
    let out = crmhook(&server, &["events", "show", "evt_00000000000000000000000000"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("404"), "{out:?}");
}
