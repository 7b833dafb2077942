//! The operators' CLI against a real server: tables, `--json`, `tail`, clear errors, and the
//! offline `log export`.

mod support;

#[path = "cli/sources.rs"]
mod sources;

#[path = "cli/escapes.rs"]
mod escapes;

#[path = "cli/verify.rs"]
mod verify;

#[path = "cli/paths.rs"]
mod paths;

#[path = "cli/answers.rs"]
mod answers;

#[path = "cli/edits.rs"]
mod edits;

#[path = "cli/tail.rs"]
mod tail;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

#[test]
fn targets_subscriptions_events_and_deliveries_from_the_command_line() {
    let mut server = Server::start();
    let rcv = Receiver::start();
    let created = succeeded(&crmhook(
        &server,
        &["targets", "create", "--name", "crm-a", "--target-url", &rcv.url("/cli"), "--header", "X-Key: k1", "--json"],
    ));
    let target: Value = serde_json::from_str(&created).expect("json");
    let tid = target["id"].as_str().expect("id").to_owned();
    assert!(target["secret"].as_str().is_some_and(|s| s.starts_with("whsec_")));
    let table = succeeded(&crmhook(&server, &["targets", "list"]));
    assert!(
        table.starts_with("ID") && table.contains(&tid) && table.contains("crm-a") && !table.contains("whsec_"),
        "{table}"
    );
    // Its health: nothing owed, nothing waiting for a retry, no failure, nothing dead.
    let header: Vec<&str> = table.lines().next().expect("header").split_whitespace().collect();
    let row: Vec<&str> = table.lines().find(|l| l.contains(&tid)).expect("row").split_whitespace().collect();
    assert_eq!(header[5..], ["PENDING", "RETRYING", "FAILING", "DEAD"], "{table}");
    assert_eq!(row[5..], ["0", "0", "0", "0"], "{table}");
    let paced: Value = serde_json::from_str(&succeeded(&crmhook(
        &server,
        &["targets", "update", &tid, "--rate-limit-per-s", "50", "--json"],
    )))
    .expect("json");
    assert_eq!(paced["rate_limit_per_s"], 50, "{paced}");
    let lifted: Value = serde_json::from_str(&succeeded(&crmhook(
        &server,
        &["targets", "update", &tid, "--rate-limit-per-s", "none", "--json"],
    )))
    .expect("json");
    assert_eq!(lifted["rate_limit_per_s"], Value::Null, "{lifted}");
    assert!(!crmhook(&server, &["targets", "update", &tid, "--rate-limit-per-s", "fast"]).status.success());
    // Every member `PATCH` takes has its flag (README: "every field the API takes").
    let kept: Value = serde_json::from_str(&succeeded(&crmhook(
        &server,
        &["targets", "update", &tid, "--response-body-bytes", "100", "--json"],
    )))
    .expect("json");
    assert_eq!(kept["response_body_bytes"], 100, "{kept}");

    let sub = succeeded(&crmhook(
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
    assert!(succeeded(&crmhook(&server, &["subscriptions", "list"])).contains(sub["id"].as_str().expect("id")));

    let ev = maia("crm_field_update", json!({}));
    let eid = server.post_ok(&ev)["events"][0]["id"].as_str().expect("id").to_owned();
    rcv.wait_count("/cli", 1, Duration::from_secs(10));
    let list = succeeded(&crmhook(&server, &["events", "list"]));
    assert!(
        list.contains(&eid) && list.contains("crm_field_update") && list.contains(ev["recordId"].as_str().expect("r")),
        "{list}"
    );
    let listed: Value =
        serde_json::from_str(&succeeded(&crmhook(&server, &["events", "list", "--type", "ai_pause", "--json"])))
            .expect("json");
    assert_eq!(listed["events"], json!([]));
    let shown = wait_for(Duration::from_secs(10), "the event shown delivered", || {
        let out = succeeded(&crmhook(&server, &["events", "show", &eid]));
        out.contains("delivered").then_some(out)
    });
    assert!(shown.contains(&tid) && shown.contains("HTTP 200"), "{shown}");
    let deliveries = succeeded(&crmhook(&server, &["deliveries", "list", "--target", &tid, "--status", "delivered"]));
    assert!(deliveries.contains(&eid), "{deliveries}");
    let replay = succeeded(&crmhook(&server, &["replay", "--target", &tid]));
    assert_eq!(replay.trim(), "queued 0");
    let waiting = succeeded(&crmhook(&server, &["replay", "--target", &tid, "--status", "pending"]));
    assert_eq!(waiting.trim(), "queued 0", "nothing waits for a retry");
    let again = succeeded(&crmhook(&server, &["events", "redeliver", &eid]));
    assert_eq!(again.trim(), "queued 1");
    rcv.wait_count("/cli", 2, Duration::from_secs(10));
    let rotated: Value =
        serde_json::from_str(&succeeded(&crmhook(&server, &["targets", "rotate-secret", &tid, "--json"])))
            .expect("json");
    assert_ne!(rotated["secret"], target["secret"]);

    // Offline export of the stopped server's log: its attempts as the API shows them.
    let api_attempts = wait_for(Duration::from_secs(10), "both attempts in the event's view", || {
        let view = server.admin("GET", &format!("/v1/events/{eid}"), None).json();
        let attempts = view["deliveries"][0]["attempts"].clone();
        (attempts.as_array().map(Vec::len) == Some(2)).then_some(attempts)
    });
    let listed = server.admin("GET", "/v1/events", None).json()["events"][0].clone();
    let text = export_stopped(&mut server);
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["id"], eid.as_str());
    assert_eq!(lines[0]["payload"], ev);
    // The event as the API lists it (`source_id`, `test` when they apply), and its attempts.
    let mut event = lines[0].clone();
    event.as_object_mut().expect("an object").remove("attempts");
    assert_eq!(event, listed);
    let mut exported = lines[0]["attempts"].clone();
    for attempt in exported.as_array_mut().expect("attempts") {
        assert_eq!(attempt["target_id"], tid.as_str());
        attempt.as_object_mut().expect("an object").remove("target_id");
    }
    assert_eq!(exported, api_attempts);
    assert_eq!((exported[0]["result"].as_str(), exported[0]["status_code"].as_u64()), (Some("delivered"), Some(200)));
    // What opening the store wrote in the data dir is this user's alone, as the server's files.
    use std::os::unix::fs::PermissionsExt;
    for entry in walk(&server.data_dir()) {
        let mode = std::fs::metadata(&entry).expect("meta").permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} is {:o} after log export", entry.display(), mode & 0o777);
    }
    server.respawn();
    succeeded(&crmhook(&server, &["targets", "delete", &tid]));
    assert!(succeeded(&crmhook(&server, &["targets", "list"])).contains("(none)"));
}

#[test]
fn events_list_newest_first_a_page_at_a_time() {
    let server = Server::start();
    let ids: Vec<String> = (0..3)
        .map(|_| server.post_ok(&maia("ai_pause", json!({})))["events"][0]["id"].as_str().expect("id").to_owned())
        .collect();
    let newest = succeeded(&crmhook(&server, &["events", "list", "--newest", "--limit", "2"]));
    let at = |id: &str| newest.find(id);
    assert!(at(&ids[2]) < at(&ids[1]) && at(&ids[1]).is_some() && at(&ids[0]).is_none(), "{newest}");
    assert!(newest.contains("more: --after 2 --newest"), "{newest}");
    let older = succeeded(&crmhook(&server, &["events", "list", "--newest", "--after", "2"]));
    assert!(older.contains(&ids[0]) && !older.contains(&ids[1]) && !older.contains("more:"), "{older}");
}

/// The record a listing shows is the one `--record-id` finds: a Maximizer event's
/// `Data.New.Key`, not its envelope's `Id`; none for `ai_pause`.
#[test]
fn events_list_shows_the_record_id_the_filter_takes() {
    let server = Server::start();
    let envelope = crmhook_crmsim::maximizer::envelope("envelope-id-7", "Opportunity", "Update", "12000.00");
    let envelope: Value = serde_json::from_str(&envelope).expect("json");
    let key = envelope["Data"]["New"]["Key"].as_str().expect("Data.New.Key").to_owned();
    let id = server.post_ok(&json!([envelope]))["events"][0]["id"].as_str().expect("id").to_owned();
    server.post_ok(&maia("ai_pause", json!({"sessionId": "session-9"})));
    let listed = succeeded(&crmhook(&server, &["events", "list"]));
    assert!(listed.contains(&key) && !listed.contains("envelope-id-7") && !listed.contains("session-9"), "{listed}");
    let found = succeeded(&crmhook(&server, &["events", "list", "--record-id", &key]));
    assert!(found.contains(&id), "{found}");
    let view = server.admin("GET", &format!("/v1/events/{id}"), None).json();
    assert_eq!(view["record_id"], key.as_str());
}

/// `targets create` takes what `targets update` takes (`Name=value` headers, `none` for the
/// retries and the rate limit), and a target shown prints the settings its table has no room
/// for, so a change is seen; an unknown target is named as such.
#[test]
fn targets_create_and_update_show_every_setting() {
    let server = Server::start();
    let created = succeeded(&crmhook(
        &server,
        &[
            "targets",
            "create",
            "--name",
            "settings",
            "--target-url",
            "http://127.0.0.1:9/hook",
            "--header",
            "X-Team=blue",
            "--retry-schedule-ms",
            "none",
            "--rate-limit-per-s",
            "none",
        ],
    ));
    assert!(
        created.contains(
            "settings: timeout_ms=2000 retry_schedule_ms=none ordered=false format=- rate_limit_per_s=- \
             response_body_bytes=4096"
        ),
        "{created}"
    );
    assert!(created.contains("headers: X-Team  (values are write-only)") && !created.contains("blue"), "{created}");
    let id = created.split_whitespace().find(|w| w.starts_with("tgt_")).expect("the target's id").to_owned();
    let t = server.admin("GET", &format!("/v1/targets/{id}"), None).json();
    assert_eq!((t["retry_schedule_ms"].clone(), t["rate_limit_per_s"].clone()), (json!([]), Value::Null), "{t}");
    let updated =
        succeeded(&crmhook(&server, &["targets", "update", &id, "--timeout-ms", "5000", "--rate-limit-per-s", "7"]));
    assert!(updated.contains("timeout_ms=5000") && updated.contains("rate_limit_per_s=7"), "{updated}");
    let gone = "tgt_00000000000000000000000000";
    let out = crmhook(&server, &["targets", "delete", gone]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains(&format!("target {gone} not found")), "{stderr}");
}

#[test]
fn tail_follows_the_stream() {
    let server = Server::start();
    let (mut child, rx) = tail::tail(&server);
    // The stream only carries what comes after it opened: post until tail prints it.
    let line = wait_for(Duration::from_secs(10), "tail to print an event", || {
        server.post_ok(&maia("ai_pause", json!({})));
        rx.recv_timeout(Duration::from_millis(300)).ok().filter(|l| !l.starts_with("tail:"))
    });
    assert!(line.starts_with("event") && line.contains("ai_pause"), "{line}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn tail_follows_the_stream_across_a_restart() {
    let mut server = Server::start();
    let (mut child, rx) = tail::tail(&server);
    let first = wait_for(Duration::from_secs(10), "tail to print an event", || {
        server.post_ok(&maia("ai_pause", json!({})));
        rx.recv_timeout(Duration::from_millis(300)).ok().filter(|l| l.starts_with("event"))
    });
    let seq = |line: &str| -> u64 {
        line.split_whitespace().nth(2).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no seq in {line:?}"))
    };
    let mut seen = seq(&first);

    // The server stops: tail says the stream ended, and does not exit while the port is closed.
    assert!(server.stop().success(), "a graceful stop");
    let ended = wait_for(Duration::from_secs(10), "tail to say the stream ended", || {
        rx.recv_timeout(Duration::from_millis(300)).ok().filter(|l| l.contains("the stream ended"))
    });
    assert!(ended.starts_with("tail:"), "{ended}");
    assert!(child.try_wait().expect("tail's status").is_none(), "tail exited when the server stopped");

    // Started again on the same port: events posted now are printed, in order and each once.
    server.respawn_on_the_same_port();
    let mut posted: Vec<u64> = (0..3)
        .map(|_| server.post_ok(&maia("ai_pause", json!({})))["events"][0]["seq"].as_u64().expect("seq"))
        .collect();
    while !posted.is_empty() {
        let line = wait_for(Duration::from_secs(15), "tail to print the events posted after the restart", || {
            rx.recv_timeout(Duration::from_millis(300)).ok().filter(|l| l.starts_with("event"))
        });
        let got = seq(&line);
        assert!(got > seen, "seq {got} printed after {seen}: again, or out of order");
        seen = got;
        posted.retain(|p| *p != got);
    }
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

/// A reader that stops reading (`crmhook events list | head`) ends a command quietly, with
/// the status of a command a closed pipe stopped (141), not a panic and its backtrace.
#[test]
fn a_reader_that_goes_away_ends_a_command_quietly() {
    let server = Server::start();
    let ack = server.post_ok(&json!({"eventType": "ai_pause", "sessionId": "s-1"}));
    let id = ack["events"][0]["id"].as_str().expect("id").to_owned();
    for args in [vec!["events", "list"], vec!["events", "show", &id], vec!["events", "list", "--json"]] {
        // Every write to this pipe fails: its reading end is closed before the command starts.
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_crmhook"))
            .args(&args)
            .env("CRMHOOK_URL", &server.base)
            .env("CRMHOOK_ADMIN_TOKEN", ADMIN)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(141), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// `--url`, `--token`, `--json` and `--ca-file` are the options of the commands that talk to a
/// server (before or after the command): `serve` (whose admin token is the `admin_token` key),
/// `verify` and `log export` refuse them on their command line, not take and ignore them.
#[test]
fn client_flags_are_refused_by_commands_that_talk_to_no_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("db").display().to_string();
    for (args, named) in [
        (&["serve", "--bind", "127.0.0.1:0", "--data-dir", &data, "--token", ADMIN][..], "--token"),
        (&["--url", "http://127.0.0.1:1", "serve", "--bind", "127.0.0.1:0", "--data-dir", &data], "--url"),
        (&["verify", "--json", "--secret", "s", "--body", "b", "--signature", "x"], "--json"),
        (&["log", "export", "--data-dir", &data, "--ca-file", "ca.pem"], "--ca-file"),
    ] {
        let out = crmhook_bare(args);
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(said.contains(&format!("does not take {named}")), "{args:?}: {said}");
    }
    assert!(!dir.path().join("db").exists(), "nothing was started");
    // The environment's CRMHOOK_ADMIN_TOKEN is serve's own setting, not a misplaced option.
    let out = Command::new(env!("CARGO_BIN_EXE_crmhook"))
        .args(["verify", "--secret", "s", "--body", "/nonexistent", "--signature", "x"])
        .env("CRMHOOK_ADMIN_TOKEN", ADMIN)
        .output()
        .expect("crmhook runs");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("does not take"), "{out:?}");
}

/// Runs the binary with these arguments and no server settings at all.
fn crmhook_bare(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crmhook"))
        .args(args)
        .env_remove("CRMHOOK_URL")
        .env_remove("CRMHOOK_ADMIN_TOKEN")
        .output()
        .expect("crmhook runs")
}

/// Stops `server` and answers what `crmhook log export` writes of its data dir.
fn export_stopped(server: &mut Server) -> String {
    assert!(server.stop().success());
    let out = Command::new(env!("CARGO_BIN_EXE_crmhook"))
        .args(["log", "export", "--data-dir"])
        .arg(server.data_dir())
        .output()
        .expect("runs");
    succeeded(&out)
}

fn json_of(out: &Output) -> Value {
    let text = succeeded(out);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// `crmhook receive --bind 127.0.0.1:<port> <args> --save <save>`, once it says it is receiving:
/// the child, and its stdout's lines as they come.
fn receive(
    port: u16,
    args: &[&str],
    save: &std::path::Path,
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crmhook"))
        .args(["receive", "--bind", &format!("127.0.0.1:{port}")])
        .args(args)
        .arg("--save")
        .arg(save)
        .stdout(Stdio::piped())
        .spawn()
        .expect("receive runs");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(10)).expect("receive starts");
    assert!(first.contains(&format!("receiving on http://127.0.0.1:{port}/")), "{first}");
    (child, rx)
}

#[test]
fn targets_test_prints_the_attempt_and_what_the_receiver_answered() {
    let server = Server::start();
    let rcv = Receiver::start();
    rcv.program("/tt", &[Reply { retry_after: Some(30), ..with_body(503, "try later") }], status(200));
    let (tid, _) = server.wire(&rcv.url("/tt"), None, json!({}));
    let failed = crmhook(&server, &["targets", "test", &tid]);
    assert!(!failed.status.success(), "a test that was not delivered exits non-zero");
    let text = String::from_utf8_lossy(&failed.stdout).into_owned();
    assert!(text.starts_with("test event evt_") && text.contains("crm_field_update"), "{text}");
    assert!(text.contains("#1 ") && text.contains("HTTP 503") && text.contains(" ms  dead"), "{text}");
    assert!(text.contains("error: answered HTTP 503"), "{text}");
    assert!(text.contains("headers: content-type: text/plain; retry-after: 30"), "{text}");
    assert!(text.contains("body:\n     try later"), "{text}");
    let test_id = text.split_whitespace().nth(2).expect("the event id").to_owned();

    let delivered = succeeded(&crmhook(&server, &["targets", "test", &tid, "--type", "ai_pause", "--json"]));
    let v: Value = serde_json::from_str(&delivered).expect("json");
    assert_eq!((v["event"]["type"].as_str(), v["event"]["test"].as_bool()), (Some("ai_pause"), Some(true)), "{v}");
    assert_eq!(
        (v["attempt"]["result"].as_str(), v["attempt"]["response"]["body"].as_str()),
        (Some("delivered"), Some("ok"))
    );
    assert_eq!(rcv.count("/tt"), 2);

    // The event's own view says it is a test, with the answer.
    let shown = succeeded(&crmhook(&server, &["events", "show", &test_id]));
    assert!(shown.contains("a test event") && shown.contains("try later"), "{shown}");
    let listed = succeeded(&crmhook(&server, &["events", "list"]));
    assert!(listed.contains("ai_pause (test)"), "{listed}");
    let bad = crmhook(&server, &["targets", "test", &tid, "--type", "nothing"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("422"), "{}", String::from_utf8_lossy(&bad.stderr));
}

/// Every file and directory under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir").map(|e| e.expect("entry").path()) {
        if entry.is_dir() {
            found.extend(walk(&entry));
        }
        found.push(entry);
    }
    found
}
