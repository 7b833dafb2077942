//! The audit trail: every admin route leaves an entry (who, from where, what, on what, before
//! and after) with no secret in it, `GET /v1/audit` pages through them, and `crmhook audit`
//! lists them.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

fn entries(server: &Server) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after = String::new();
    loop {
        let page = server.admin("GET", &format!("/v1/audit?limit=3{after}"), None);
        assert_eq!(page.status, 200, "{}", page.text);
        let page = page.json();
        all.extend(page["entries"].as_array().expect("entries").iter().cloned());
        match page["next_after"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => return all,
        }
    }
}

#[test]
fn every_admin_change_is_audited_without_its_secrets() {
    let server = Server::start();
    let rcv = Receiver::start();
    let ok = |r: Resp, status: u16| {
        assert_eq!(r.status, status, "{}", r.text);
        r
    };
    let target = ok(
        server.admin(
            "POST",
            "/v1/targets",
            Some(&json!({"name": "a", "url": rcv.url("/a"), "headers": {"Authorization": "Bearer receiver-credential-1"}})),
        ),
        201,
    )
    .json();
    let tid = target["id"].as_str().expect("id").to_owned();
    let first_secret = target["secret"].as_str().expect("secret").to_owned();
    ok(server.admin("PATCH", &format!("/v1/targets/{tid}"), Some(&json!({"name": "b", "enabled": false}))), 200);
    let rotated = ok(server.admin("POST", &format!("/v1/targets/{tid}/rotate-secret"), None), 200).json();
    let second_secret = rotated["secret"].as_str().expect("secret").to_owned();
    let sub = ok(server.admin("POST", "/v1/subscriptions", Some(&json!({"target_id": tid}))), 201).json();
    let sid = sub["id"].as_str().expect("id").to_owned();
    let maia_source = ok(
        server.admin(
            "POST",
            "/v1/sources",
            Some(&json!({"name": "m", "kind": "maia", "maia_secret": "maia-secret-1234567890"})),
        ),
        201,
    )
    .json();
    let mid = maia_source["id"].as_str().expect("id").to_owned();
    ok(
        server.admin("PATCH", &format!("/v1/sources/{mid}"), Some(&json!({"maia_secret": "maia-secret-0987654321"}))),
        200,
    );
    let mx = ok(server.admin("POST", "/v1/sources", Some(&json!({"name": "x", "kind": "maximizer"}))), 201).json();
    let xid = mx["id"].as_str().expect("id").to_owned();
    let key = ok(server.admin("POST", &format!("/v1/sources/{xid}/rotate-key"), None), 200).json();
    let ev = server.post_ok(&maia("crm_record_created", json!({})));
    let eid = ev["events"][0]["id"].as_str().expect("id").to_owned();
    ok(server.admin("POST", &format!("/v1/events/{eid}/redeliver"), Some(&json!({"target_id": tid}))), 202);
    ok(server.admin("POST", &format!("/v1/targets/{tid}/replay"), Some(&json!({"status": "dead"}))), 202);
    ok(server.admin("DELETE", &format!("/v1/subscriptions/{sid}"), None), 204);
    ok(server.admin("DELETE", &format!("/v1/sources/{xid}"), None), 204);
    ok(server.admin("DELETE", &format!("/v1/targets/{tid}"), None), 204);

    let all = entries(&server);
    let got: Vec<(String, String)> = all
        .iter()
        .map(|e| (e["action"].as_str().unwrap_or("").to_owned(), e["subject"].as_str().unwrap_or("").to_owned()))
        .collect();
    let want = [
        ("target.create", &tid),
        ("target.update (enabled: false)", &tid),
        ("target.rotate_secret", &tid),
        ("subscription.create", &sid),
        ("source.create", &mid),
        ("source.update (new maia_secret)", &mid),
        ("source.create", &xid),
        ("source.rotate_key", &xid),
        ("event.redeliver", &eid),
        ("target.replay", &tid),
        ("subscription.delete", &sid),
        ("source.delete", &xid),
        ("target.delete", &tid),
    ];
    let want: Vec<(String, String)> = want.iter().map(|(a, s)| (a.to_string(), s.to_string())).collect();
    assert_eq!(got, want);
    // Who: the key that called, by name and id (here the bootstrap admin key).
    let me = server.admin("GET", "/v1/me", None).json();
    let who = format!("admin_token ({})", me["id"].as_str().expect("the key's id"));
    for e in &all {
        assert_eq!(e["who"], who.as_str());
        assert_eq!(e["from"], "127.0.0.1");
        assert!(e["at"].as_str().is_some_and(|t| t.ends_with('Z')), "{e}");
    }
    // Before and after are there where they make sense...
    assert_eq!(all[1]["before"]["name"], "a");
    assert_eq!(all[1]["after"]["name"], "b");
    // ... with whether the target was enabled, before and after (both read `true` until
    // 2026-12-07)...
    assert_eq!((&all[1]["before"]["enabled"], &all[1]["after"]["enabled"]), (&json!(true), &json!(false)));
    assert_eq!(all[1]["after"]["disabled_reason"], format!("disabled by {who}").as_str());
    assert_eq!(all[12]["before"]["name"], "b");
    assert_eq!(all[12]["before"]["enabled"], false);
    assert!(all[12]["after"].is_null());
    // ... and no secret is anywhere in the trail.
    let text = serde_json::to_string(&all).expect("JSON");
    let maximizer_key = key["key"].as_str().or(mx["key"].as_str()).unwrap_or("no key shown");
    for secret in [
        first_secret.as_str(),
        second_secret.as_str(),
        "receiver-credential-1",
        "maia-secret-1234567890",
        "maia-secret-0987654321",
        maximizer_key,
    ] {
        assert!(!text.contains(secret), "{secret} is in the audit trail: {text}");
    }
    assert!(text.contains("Authorization"), "the header's name is kept: {text}");

    // The CLI lists the same entries.
    let out = Command::new(env!("CARGO_BIN_EXE_crmhook"))
        .args(["--url", &server.base, "--token", ADMIN, "audit", "--limit", "1000"])
        .output()
        .expect("crmhook audit");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains("target.rotate_secret") && listed.contains(&tid), "{listed}");
    assert_eq!(listed.lines().filter(|l| l.contains(&who)).count(), 13, "{listed}");
    // Newest first: the last change (the target's deletion) comes first.
    let out = Command::new(env!("CARGO_BIN_EXE_crmhook"))
        .args(["--url", &server.base, "--token", ADMIN, "audit", "--newest", "--limit", "1"])
        .output()
        .expect("crmhook audit --newest");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let newest = String::from_utf8_lossy(&out.stdout);
    assert!(newest.contains("target.delete") && newest.contains("more: --after"), "{newest}");
}

#[test]
fn failed_authentications_are_audited_without_the_token_and_a_bad_cursor_is_a_problem() {
    let server = Server::start();
    let r = server.admin("GET", "/v1/audit?after=yesterday", None);
    assert_eq!(r.status, 422, "{}", r.text);
    // A wrong role is a valid token: answered 403, not a failed authentication.
    assert_eq!(server.request("GET", "/v1/audit", Some(INGEST), None).status, 403);
    let wrong = "adm_guessed_0123456789abcdef0123";
    assert_eq!(server.request("GET", "/v1/targets", Some(wrong), None).status, 401);
    let failed = wait_for(Duration::from_secs(10), "the failed authentication's entry", || {
        entries(&server).into_iter().find(|e| e["action"] == "auth.failed")
    });
    assert_eq!(failed["who"], "unauthenticated");
    assert_eq!(failed["from"], "127.0.0.1");
    assert_eq!(failed["subject"], "GET /v1/targets");
    let all = serde_json::to_string(&entries(&server)).expect("JSON");
    assert!(!all.contains(wrong), "the presented token is in the trail: {all}");
    assert_eq!(all.matches("auth.failed").count(), 1, "only the 401 is an entry: {all}");
}
