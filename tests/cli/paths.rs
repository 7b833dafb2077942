//! What the operator types reaches the API as typed, and only where it was meant to go: an id
//! is one segment of the path (`/`, `..`, `?`, `#` in it change no route) and of its kind
//! (`sub_…` for a subscription), and a filter's value is one value of the query.

use super::*;

/// The exit code and stderr of a command that failed.
fn refused(out: &Output) -> (Option<i32>, String) {
    assert!(!out.status.success(), "succeeded: {}", String::from_utf8_lossy(&out.stdout));
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn an_id_is_one_segment_of_the_path_and_of_its_kind() {
    let server = Server::start();
    let (tid, _) = server.wire("http://127.0.0.1:9/hook", Some(json!({})), json!({}));
    let target_there = || server.admin("GET", &format!("/v1/targets/{tid}"), None).status == 200;

    // `..` reaches no target: refused here, as not a subscription's id …
    let (code, said) = refused(&crmhook(&server, &["subscriptions", "delete", &format!("../targets/{tid}")]));
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("is not the id of a subscription (`sub_…`)"), "{said}");
    assert!(target_there(), "`subscriptions delete ../targets/{tid}` deleted the target");
    // … or, with the right prefix, sent as one segment the server knows no subscription by.
    let (code, said) = refused(&crmhook(&server, &["subscriptions", "delete", &format!("sub_x/../../targets/{tid}")]));
    assert_eq!(code, Some(2), "{said}");
    assert!(target_there(), "`subscriptions delete sub_x/../../targets/{tid}` deleted the target");

    // `/stats` is part of the id, not another route: no target has it.
    let out = crmhook(&server, &["targets", "show", &format!("{tid}/stats")]);
    let (code, said) = refused(&out);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("404"), "{said}");
    for (args, kind) in [
        (vec!["events", "show", "../targets"], "an event"),
        (vec!["targets", "stats", "sub_1"], "a target"),
        (vec!["deliveries", "list", "--target", "../events"], "a target"),
        (vec!["keys", "revoke", "tgt_1"], "a key"),
        (vec!["sources", "delete", "../targets"], "a source"),
        (vec!["rejected", "show", "evt_1"], "a rejected piece"),
    ] {
        let (code, said) = refused(&crmhook(&server, &args));
        assert_eq!(code, Some(2), "{args:?}: {said}");
        assert!(said.contains(&format!("is not the id of {kind}")), "{args:?}: {said}");
    }
    // `?` and `#` are in the id too.
    for id in ["evt_1?limit=1", "evt_1#x"] {
        let (code, said) = refused(&crmhook(&server, &["events", "show", id]));
        assert_eq!(code, Some(2), "{id}: {said}");
        assert!(said.contains("404"), "{id}: {said}");
    }
    assert!(target_there());
}

/// The record ids, kanban ids and types a CRM sends hold any character: each listing finds
/// the events with that value, and only them.
#[test]
fn a_filter_value_is_one_value_of_the_query() {
    let server = Server::start();
    let records = ["x", "x#y", "a&b=c", "p+q", "100%", "50%25", "two words", "Müller ☃"];
    let ids: Vec<String> = records
        .iter()
        .map(|r| {
            let ev = maia("crm_field_update", json!({"recordId": r, "kanbanId": format!("kb{r}")}));
            server.post_ok(&ev)["events"][0]["id"].as_str().expect("id").to_owned()
        })
        .collect();
    for (record, id) in records.iter().zip(&ids) {
        for args in [["--record-id", record].map(str::to_owned), ["--kanban-id".into(), format!("kb{record}")]] {
            let listed = json_of(&crmhook(&server, &["events", "list", &args[0], &args[1], "--json"]));
            let found: Vec<&str> =
                listed["events"].as_array().expect("events").iter().filter_map(|e| e["id"].as_str()).collect();
            assert_eq!(found, [id.as_str()], "{args:?}");
        }
    }
}

/// Every listing's query, as the server gets it: each name and value percent-encoded whole.
#[test]
fn every_listing_escapes_its_query() {
    let rcv = Receiver::start();
    let odd = "a#b&c=d+e%f g/é";
    let sent = "a%23b%26c%3Dd%2Be%25f%20g%2F%C3%A9";
    for (args, want) in [
        (vec!["events", "list", "--type", odd], format!("/v1/events?type={sent}&after=0&limit=50")),
        (vec!["subscriptions", "list", "--target", odd], format!("/v1/subscriptions?target_id={sent}")),
        (
            vec!["deliveries", "list", "--target", "tgt_1", "--status", odd],
            format!("/v1/targets/tgt_1/deliveries?status={sent}&after=0&limit=50"),
        ),
        (vec!["rejected", "list", "--source", odd], format!("/v1/rejected?source_id={sent}")),
        (vec!["audit", "--after", odd], format!("/v1/audit?after={sent}")),
    ] {
        let before = rcv.count(want.split('?').next().expect("a path"));
        let _ = Command::new(env!("CARGO_BIN_EXE_crmhook"))
            .args(&args)
            .env("CRMHOOK_URL", rcv.url(""))
            .env("CRMHOOK_ADMIN_TOKEN", ADMIN)
            .output()
            .expect("crmhook runs");
        let got = rcv.requests(want.split('?').next().expect("a path"));
        assert_eq!(got.len(), before + 1, "{args:?}");
        assert_eq!(got[before].uri, want, "{args:?}");
    }
}
