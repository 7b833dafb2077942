//! Targets and subscriptions as the CLI makes, changes, tests and shows them: what the help
//! offers is taken, what a subscription holds is shown, and exit codes say what happened.

use super::*;

/// `targets test --json` exits as `targets test` does: 1 when the attempt was not delivered.
#[test]
fn targets_test_json_exits_1_when_not_delivered() {
    let server = Server::start();
    let rcv = Receiver::start();
    rcv.program("/down", &[], status(503));
    let (tid, _) = server.wire(&rcv.url("/down"), None, json!({}));
    let out = crmhook(&server, &["--json", "targets", "test", &tid]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("the answer as JSON still");
    assert_eq!(v["attempt"]["status_code"], 503, "{v}");
    rcv.set_default("/down", status(200));
    let out = crmhook(&server, &["--json", "targets", "test", &tid]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `--format none` (each CRM's own), as the help offers it, creates as it updates.
#[test]
fn targets_create_takes_every_format_the_help_offers() {
    let server = Server::start();
    for (format, want) in [("none", Value::Null), ("maia", json!("maia")), ("maximizer", json!("maximizer"))] {
        let name = format!("fmt-{format}");
        let args = ["targets", "create", "--name", &name, "--target-url", "http://127.0.0.1:9/h", "--format", format];
        let created = json_of(&crmhook(&server, &[&args[..], &["--json"]].concat()));
        assert_eq!(created["format"], want, "{format}: {created}");
    }
    let out = crmhook(
        &server,
        &["targets", "create", "--name", "x", "--target-url", "http://127.0.0.1:9/h", "--format", "xml"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("maia, maximizer, none"), "{out:?}");
}

/// A subscription shown says every condition it holds: its filters (as JSON) and its
/// `version_major`; the list says `version_major` too.
#[test]
fn a_subscription_shown_holds_its_conditions() {
    let server = Server::start();
    let (tid, _) = server.wire("http://127.0.0.1:9/hook", None, json!({}));
    let filter = r#"{"path": "/Data/New/Revenue", "op": "gt", "value": 1000}"#;
    let sub = json_of(&crmhook(
        &server,
        &["subscriptions", "create", "--target", &tid, "--filter", filter, "--version-major", "3", "--json"],
    ));
    let sid = sub["id"].as_str().expect("id");
    let shown = succeeded(&crmhook(&server, &["subscriptions", "show", sid]));
    assert!(shown.contains(r#"filter: {"path":"/Data/New/Revenue","op":"gt","value":1000}"#), "{shown}");
    assert_eq!(column(&shown, sid, "VERSION_MAJOR"), "3", "{shown}");
    let list = succeeded(&crmhook(&server, &["subscriptions", "list"]));
    assert_eq!(column(&list, sid, "VERSION_MAJOR"), "3", "{list}");
}

/// The cell of a table's `column` on the row that holds `id`.
fn column(table: &str, id: &str, column: &str) -> String {
    let header: Vec<&str> = table.lines().next().expect("header").split_whitespace().collect();
    let row: Vec<&str> = table.lines().find(|l| l.contains(id)).expect("row").split_whitespace().collect();
    let at = header.iter().position(|h| *h == column).unwrap_or_else(|| panic!("no {column} column"));
    row[at].to_owned()
}

/// `targets update` with nothing to change names every flag it takes.
#[test]
fn targets_update_with_nothing_to_change_names_every_flag() {
    let server = Server::start();
    let out = crmhook(&server, &["targets", "update", "tgt_00000000000000000000000000"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    // Every flag `targets update --help` lists before the client options.
    let help = succeeded(&crmhook(&server, &["targets", "update", "--help"]));
    let own = help.split("Client options").next().expect("the command's own options");
    let flags: Vec<&str> = own
        .split_whitespace()
        .filter(|w| w.starts_with("--") && !["--help", "--log-format"].contains(&w.trim_end_matches(',')))
        .collect();
    assert!(flags.contains(&"--response-body-bytes"), "{help}");
    for flag in flags {
        assert!(said.contains(flag), "{flag} is not named: {said}");
    }
}

/// The `more: --after N` of a page keeps the filters given, so that it is the next page of
/// the same listing.
#[test]
fn the_next_page_keeps_the_filters() {
    let server = Server::start();
    for _ in 0..2 {
        server.post_ok(&maia("ai_pause", json!({})));
    }
    server.post_ok(&maia("crm_record_created", json!({})));
    let page = succeeded(&crmhook(&server, &["events", "list", "--type", "ai_pause", "--limit", "1"]));
    assert!(page.contains("more: --after 1 --type ai_pause --limit 1"), "{page}");
    // A target that waits (disabled), owed the next two events.
    let (tid, _) = server.wire("http://127.0.0.1:9/h", Some(json!({})), json!({}));
    assert_eq!(server.admin("PATCH", &format!("/v1/targets/{tid}"), Some(&json!({"enabled": false}))).status, 200);
    for _ in 0..2 {
        server.post_ok(&maia("ai_pause", json!({})));
    }
    let page =
        succeeded(&crmhook(&server, &["deliveries", "list", "--target", &tid, "--status", "pending", "--limit", "1"]));
    assert!(page.contains(&format!("more: --after 4 --target {tid} --status pending --limit 1")), "{page}");
}
