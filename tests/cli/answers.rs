//! An answer that cannot be crmhook's is an error, never a success: `--url` pointed at another
//! HTTP server (one that answers `200 ok` to anything), or at one that redirects (the CLI
//! follows no redirect: its token would go wherever it points).

use super::*;

/// Runs the CLI against `url` with the admin token.
fn against(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crmhook"))
        .args(args)
        .env("CRMHOOK_URL", url)
        .env("CRMHOOK_ADMIN_TOKEN", ADMIN)
        .output()
        .expect("crmhook runs")
}

#[test]
fn another_servers_ok_is_not_a_success() {
    let rcv = Receiver::start();
    // `ok` as text/plain on these paths, and with no content type at all on every other.
    rcv.program("/v1/targets", &[], with_body(200, "ok"));
    rcv.program("/v1/events", &[], with_body(200, "ok"));
    for args in [
        &["targets", "delete", "tgt_1"][..],
        &["subscriptions", "delete", "sub_1"],
        &["--json", "targets", "list"],
        &["targets", "list"],
        &["events", "list"],
        &["targets", "show", "tgt_1"],
        &["events", "redeliver", "evt_1"],
        &["rejected", "retry", "rej_1"],
    ] {
        let out = against(&rcv.url(""), args);
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stdout}{stderr}");
        assert!(stderr.contains("not a crmhook answer") && stderr.contains(&rcv.url("")), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?} printed {stdout}");
    }
}

#[test]
fn a_redirect_is_an_error_that_says_where_it_leads() {
    let rcv = Receiver::start();
    // The same path elsewhere: the URL to use instead is said.
    rcv.program("/v1/targets/tgt_1", &[], redirect(301, "http://127.0.0.1:1/v1/targets/tgt_1"));
    // Somewhere else altogether (a proxy's login page).
    rcv.program("/v1/events", &[], redirect(302, "/login"));
    let out = against(&rcv.url(""), &["targets", "delete", "tgt_1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "redirected (301) to http://127.0.0.1:1/v1/targets/tgt_1: crmhook's URL is http://127.0.0.1:1; set --url"
        ),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    let out = against(&rcv.url(""), &["events", "list"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("redirected (302) to /login") && stderr.contains("set --url"), "{stderr}");
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
}

/// `CRMHOOK_ADMIN_TOKEN=` (set, but empty) is no token: said so, nothing sent.
#[test]
fn an_empty_token_is_no_token() {
    let rcv = Receiver::start();
    let out = Command::new(env!("CARGO_BIN_EXE_crmhook"))
        .args(["targets", "list"])
        .env("CRMHOOK_URL", rcv.url(""))
        .env("CRMHOOK_ADMIN_TOKEN", "")
        .output()
        .expect("crmhook runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no admin token"), "{stderr}");
    assert_eq!(rcv.count("/v1/targets"), 0, "a request was sent");
}
