//! Targets as the CLI makes, changes and tests them: what the help offers is taken, a change of
//! nothing names what can change, and exit codes say what happened.

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
