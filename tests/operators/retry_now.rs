//! A receiver back before its retries are due: a replay of `pending` ("retry now") brings
//! them forward, parked or not, and what it brings forward stays due across a restart.

use super::*;

/// A retry an hour away: nothing in a test reaches it unless brought forward.
const AN_HOUR: u64 = 3_600_000;

fn attempts_of(rcv: &Receiver, path: &str, id: &str) -> Vec<String> {
    rcv.requests(path)
        .iter()
        .filter(|r| r.header("webhook-id") == id)
        .map(|r| r.header("x-crmhook-attempt").to_owned())
        .collect()
}

/// A receiver that fails every request on `path`, and a target sending it everything with
/// this retry schedule.
fn failing(server: &Server, path: &str, schedule: Value) -> (Receiver, String) {
    let rcv = Receiver::start();
    rcv.program(path, &[], status(500));
    let (tid, _) = server.wire(&rcv.url(path), Some(json!({})), json!({"retry_schedule_ms": schedule}));
    (rcv, tid)
}

#[test]
fn retries_waiting_go_now_when_asked_and_only_those_since_a_time_or_of_one_event() {
    let server = Server::start();
    let (rcv, tid) = failing(&server, "/back", json!([AN_HOUR, AN_HOUR]));
    // Not the waiting of a test on an outcome: each event's `received_at` (milliseconds) must
    // differ from the one before, or `since` the second's time takes the first too.
    let first = id(&server.post_ok(&maia("crm_field_update", json!({}))));
    std::thread::sleep(Duration::from_millis(5));
    let older = [first, id(&server.post_ok(&maia("crm_record_created", json!({}))))];
    rcv.wait_count("/back", 2, DELIVERY);
    let since = wait_for(DELIVERY, "the second event's received_at", || {
        server.event(&older[1])["received_at"].as_str().map(str::to_owned)
    });
    // As above: the third's `received_at` must differ from the second's.
    std::thread::sleep(Duration::from_millis(5));
    let newer = id(&server.post_ok(&maia("crm_record_deleted", json!({}))));
    rcv.wait_count("/back", 3, DELIVERY);
    let retrying = wait_for(DELIVERY, "the third's first attempt recorded as retrying", || {
        let e = server.event(&newer);
        (e["deliveries"][0]["attempts"][0]["result"] == "retrying").then_some(e)
    });
    assert_eq!(retrying["deliveries"][0]["status"], "pending");

    rcv.set_default("/back", status(200));
    let replay = |body: Value| {
        let r = server.admin("POST", &format!("/v1/targets/{tid}/replay"), Some(&body));
        assert_eq!(r.status, 202, "{}", r.text);
        r.json()["queued"].as_u64().expect("queued")
    };
    let third_at = server.event(&newer)["received_at"].as_str().expect("received_at").to_owned();
    assert!(third_at > since, "{third_at} after {since}");
    let first_at = server.event(&older[0])["received_at"].as_str().expect("received_at").to_owned();
    assert!(first_at < since, "{first_at} before {since}");
    // `since` is inclusive: since the third's time, the third alone.
    assert_eq!(replay(json!({"status": "pending", "since": third_at})), 1);
    rcv.wait_count("/back", 4, DELIVERY);
    assert_eq!(attempts_of(&rcv, "/back", &newer), ["1", "2"], "the third's retry, now, numbered on");
    assert_eq!(replay(json!({"status": "pending", "since": since})), 1, "the second only: the third is delivered");
    rcv.wait_count("/back", 5, DELIVERY);
    // Redelivering an event whose delivery waits for a retry brings that retry forward too.
    let r = server.admin("POST", &format!("/v1/events/{}/redeliver", older[0]), None);
    assert_eq!((r.status, r.json()["queued"].as_u64()), (202, Some(1)), "{}", r.text);
    rcv.wait_count("/back", 6, DELIVERY);
    for id in &older {
        assert_eq!(attempts_of(&rcv, "/back", id), ["1", "2"], "{id}");
    }
    server.wait_settled(&tid, DELIVERY);
    assert_eq!(replay(json!({"status": "pending"})), 0, "nothing is waiting any more");
    let shown = wait_for(DELIVERY, "the retry recorded", || {
        let e = server.event(&older[0]);
        (e["deliveries"][0]["status"] == "delivered").then_some(e)
    });
    let attempts = &shown["deliveries"][0]["attempts"];
    assert_eq!((attempts[1]["n"].as_u64(), attempts[1]["trigger"].as_str()), (Some(2), Some("retry")));
    // The operators' log and the audit trail say who asked.
    let audit = server.admin("GET", "/v1/audit?limit=100", None).json();
    assert!(audit["next_after"].is_null(), "one page: {audit}");
    let replays: Vec<&Value> =
        audit["entries"].as_array().expect("entries").iter().filter(|e| e["action"] == "target.replay").collect();
    assert_eq!(replays.len(), 3, "{audit}");
    assert!(replays.iter().all(|e| e["after"]["status"] == "pending"), "{audit}");
    // A status that is none of the three is refused, naming it.
    let r = server.admin("POST", &format!("/v1/targets/{tid}/replay"), Some(&json!({"status": "retrying"})));
    assert_eq!((r.status, r.json()["field"].as_str()), (422, Some("status")), "{}", r.text);
}

/// The attempt numbers each event got on `path`, in order of arrival.
fn attempts_by_event(rcv: &Receiver, path: &str) -> std::collections::HashMap<String, Vec<String>> {
    let mut by_event: std::collections::HashMap<String, Vec<String>> = Default::default();
    for r in rcv.requests(path) {
        by_event.entry(r.header("webhook-id").to_owned()).or_default().push(r.header("x-crmhook-attempt").to_owned());
    }
    by_event
}

#[test]
fn newer_events_go_while_a_windows_worth_of_retries_waits() {
    let mut server = Server::start();
    let (rcv, tid) = failing(&server, "/outage", json!([AN_HOUR]));
    // More than the target's window of 1,024 fail and wait an hour: the ones beyond the window
    // are attempted all the same (the retries waiting park out of its count).
    let ids = server.post_many(1_030);
    rcv.wait_count("/outage", 1_030, DELIVERY);
    wait_for(DELIVERY, "the last retry recorded", || {
        let e = server.event(&ids[1_029]);
        (e["deliveries"][0]["attempts"][0]["result"] == "retrying").then_some(())
    });
    // The target's health counts them, and says when the first is due.
    let retrying = |server: &Server, n: u64| {
        wait_for(DELIVERY, &format!("{n} retrying in the health"), || {
            let health = server.admin("GET", &format!("/v1/targets/{tid}"), None).json()["health"].clone();
            (health["retrying"] == n).then_some(health)
        })
    };
    let health = retrying(&server, 1_030);
    assert_eq!(health["blocked_by_retries_until"], Value::Null, "{health}");
    let next = health["next_retry_at"].as_str().expect("next_retry_at").to_owned();
    let ms = |at: &str| crmhook_core::time::parse_rfc3339(at).unwrap_or_else(|| panic!("RFC 3339: {at}"));
    let first = server.event(&ids[0])["deliveries"][0]["attempts"][0]["at"].as_str().map(ms).expect("at");
    // An hour, up to a tenth more (the schedule's jitter), never less.
    let (early, late) = (first + AN_HOUR, crmhook_core::time::now_ms() + AN_HOUR * 11 / 10);
    assert!((early - 1_000..=late).contains(&ms(&next)), "the first retry, {next}, is about an hour away");
    let metrics = server.request("GET", "/metrics", None, None).text;
    assert!(metrics.contains(&format!("crmhook_retrying_deliveries{{target=\"{tid}\"}} 1030\n")), "{metrics}");
    let shown = succeeded(&crmhook(&server, &["targets", "show", &tid]));
    assert!(shown.contains(&format!("1030 waiting for a retry, the next at {next}")), "{shown}");
    let table = succeeded(&crmhook(&server, &["targets", "list"]));
    let row: Vec<&str> = table.lines().find(|l| l.contains(&tid)).expect("its row").split_whitespace().collect();
    assert_eq!(row[row.len() - 4..row.len() - 2], ["1030", "1030"], "PENDING and RETRYING: {table}");
    // A restart takes them all again (those beyond the window parked), and still reads on.
    server.kill9();
    server.respawn();
    retrying(&server, 1_030);
    // The receiver is back: a new event goes at once, the old ones wait for their hour.
    rcv.set_default("/outage", status(200));
    let fresh = id(&server.post_ok(&maia("crm_record_created", json!({}))));
    let got = rcv.wait_count("/outage", 1_031, DELIVERY);
    assert_eq!((got[1_030].header("webhook-id"), got[1_030].header("x-crmhook-attempt")), (fresh.as_str(), "1"));
    let e = server.event(&ids[0]);
    assert_eq!(e["deliveries"][0]["status"], "pending", "{e}");
    // Retry now sends every one of them, parked or not.
    let r = server.admin("POST", &format!("/v1/targets/{tid}/replay"), Some(&json!({"status": "pending"})));
    assert_eq!((r.status, r.json()["queued"].as_u64()), (202, Some(1_030)), "{}", r.text);
    rcv.wait_count("/outage", 1_031 + 1_030, DELIVERY);
    server.wait_settled(&tid, DELIVERY);
    assert_eq!(retrying(&server, 0)["next_retry_at"], Value::Null);
    let by_event = attempts_by_event(&rcv, "/outage");
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(by_event[id], ["1", "2"], "event {n}");
    }
}

#[test]
fn a_window_full_past_its_parked_retries_waits_and_moves_on_once_they_go() {
    const HELD: usize = 16_384; // the window's 1,024 and 15,360 parked
                                // The server's log in a file, to read what it says of the blocked window.
    let logs = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("stderr.log");
    let server = Server::start_wrapped(&TEST_ENV, &format!("exec 2>>'{}'", log.display()));
    let blocked = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines().filter(|l| l.contains("window is full of deliveries waiting for retries")).count()
    };
    let (rcv, tid) = failing(&server, "/full", json!([AN_HOUR]));
    // More than a target holds: every one it holds fails and waits an hour, and the rest are
    // not even attempted meanwhile. It holds the 15,360 parked and all but a fill step of its
    // window at least (a fill waits for a fill step's room).
    let ids = server.post_many(HELD + 6);
    let long = Duration::from_secs(120);
    wait_for(long, "the health of a blocked window", || {
        let t = server.admin("GET", &format!("/v1/targets/{tid}"), None).json();
        t["health"]["blocked_by_retries_until"].as_str().map(|_| ())
    });
    let held = rcv.count("/full");
    assert!((HELD - 255..=HELD).contains(&held), "{held} attempted");
    let last = &ids[HELD + 5];
    let waiting = server.event(last);
    assert_eq!(waiting["deliveries"][0]["status"], "pending");
    assert_eq!(waiting["deliveries"][0]["attempts"], json!([]), "beyond what it holds: not attempted");
    // The target's health says why, and the log says what to do, once.
    let health = || server.admin("GET", &format!("/v1/targets/{tid}"), None).json()["health"].clone();
    let until = health()["blocked_by_retries_until"].as_str().expect("blocked").to_owned();
    let received = waiting["received_at"].as_str().expect("received_at");
    assert!(until.as_str() > received, "the next retry, {until}, is after the events came, {received}");
    let shown = succeeded(&crmhook(&server, &["targets", "show", &tid]));
    assert!(shown.contains(&format!("waiting for retries until {until}")), "{shown}");
    assert!(shown.contains(&format!("crmhook replay --target {tid} --status pending")), "{shown}");
    wait_for(DELIVERY, "the log line of a blocked window", || (blocked() > 0).then_some(()));
    let said = std::fs::read_to_string(&log).expect("log");
    assert!(said.contains(&format!("POST /v1/targets/{tid}/replay")), "{said}");

    rcv.set_default("/full", status(200));
    let r = server.admin("POST", &format!("/v1/targets/{tid}/replay"), Some(&json!({"status": "pending"})));
    assert_eq!((r.status, r.json()["queued"].as_u64()), (202, Some(held as u64)), "{}", r.text);
    rcv.wait_count("/full", held + HELD + 6, long);
    assert_eq!(blocked(), 1, "said once");
    server.wait_settled(&tid, long);
    assert_eq!(health()["blocked_by_retries_until"], Value::Null);
    let by_event = attempts_by_event(&rcv, "/full");
    for (n, id) in ids.iter().enumerate() {
        let expected: &[&str] = if n < held { &["1", "2"] } else { &["1"] };
        assert_eq!(by_event[id], expected, "event {n}");
    }
}

#[test]
fn retries_brought_forward_stay_due_across_a_restart() {
    let mut server = Server::start();
    let (rcv, tid) = failing(&server, "/later", json!([AN_HOUR]));
    let ids: Vec<String> = (0..3).map(|_| id(&server.post_ok(&maia("crm_record_created", json!({}))))).collect();
    rcv.wait_count("/later", 3, DELIVERY);
    wait_for(DELIVERY, "three retries recorded", || {
        ids.iter().all(|id| server.event(id)["deliveries"][0]["attempts"][0]["result"] == "retrying").then_some(())
    });
    // Paused, so that nothing goes before the restart: the new due times must be on disk.
    let pause = server.admin("PATCH", &format!("/v1/targets/{tid}"), Some(&json!({"enabled": false})));
    assert_eq!(pause.status, 200, "{}", pause.text);
    let r = server.admin("POST", &format!("/v1/targets/{tid}/replay"), Some(&json!({"status": "pending"})));
    assert_eq!((r.status, r.json()["queued"].as_u64()), (202, Some(3)), "{}", r.text);
    server.kill9();
    server.respawn();
    rcv.set_default("/later", status(200));
    let resume = server.admin("PATCH", &format!("/v1/targets/{tid}"), Some(&json!({"enabled": true})));
    assert_eq!(resume.status, 200, "{}", resume.text);
    rcv.wait_count("/later", 6, DELIVERY);
    for id in &ids {
        assert_eq!(attempts_of(&rcv, "/later", id), ["1", "2"], "{id}");
    }
}

/// Asks for "retry now" on `tid`: answers `queued`.
fn retry_now(server: &Server, tid: &str) -> u64 {
    let r = server.admin("POST", &format!("/v1/targets/{tid}/replay"), Some(&json!({"status": "pending"})));
    assert_eq!(r.status, 202, "{}", r.text);
    r.json()["queued"].as_u64().expect("queued")
}

/// An answer held this long: the attempt is under way when the test asks (a receiver records a
/// request before it answers), and over within the 2 s a replay waits for attempts under way.
const UNDER_WAY: Duration = Duration::from_millis(1_000);

#[test]
fn retry_now_waits_for_an_attempt_under_way_and_brings_it_forward_once_it_fails() {
    let server = Server::start();
    let rcv = Receiver::start();
    rcv.program("/busy", &[delayed(500, UNDER_WAY)], status(200));
    let (tid, _) = server.wire(&rcv.url("/busy"), Some(json!({})), json!({"retry_schedule_ms": [AN_HOUR]}));
    let event = id(&server.post_ok(&maia("crm_field_update", json!({}))));
    rcv.wait_count("/busy", 1, DELIVERY);
    // Until 2026-12-07 the attempt under way was left out (`queued: 0`) and, once failed,
    // waited its hour, right after an operator asked for now.
    assert_eq!(retry_now(&server, &tid), 1, "brought forward once its attempt failed");
    rcv.wait_count("/busy", 2, DELIVERY);
    assert_eq!(attempts_of(&rcv, "/busy", &event), ["1", "2"]);
}

#[test]
fn retry_now_queues_again_no_delivery_that_ends_while_it_waits() {
    let server = Server::start();
    let rcv = Receiver::start();
    // The first attempt fails at once; the second, the schedule's last, fails after `UNDER_WAY`.
    rcv.program("/last", &[status(500), delayed(500, UNDER_WAY)], status(200));
    let schedule = json!({"retry_schedule_ms": [AN_HOUR], "ordered": true});
    let (tid, _) = server.wire(&rcv.url("/last"), Some(json!({})), schedule);
    let first = id(&server.post_ok(&maia("crm_field_update", json!({}))));
    rcv.wait_count("/last", 1, DELIVERY);
    assert_eq!(retry_now(&server, &tid), 1, "its retry, an hour away, brought forward");
    rcv.wait_count("/last", 2, DELIVERY);
    // Asked again while the last attempt is under way: the call waits for it, and it ends dead.
    // Retry now brings forward what waits for a retry and queues nothing again: before
    // 2026-12-07 it queued a delivery that had ended meanwhile, as a replay does, with a new
    // schedule (on an ordered target after newer events).
    assert_eq!(retry_now(&server, &tid), 0, "nothing waits for a retry any more");
    let later = id(&server.post_ok(&maia("crm_record_created", json!({}))));
    // Ordered: a delivery of `first` queued again would go before `later`.
    let got = rcv.wait_count("/last", 3, DELIVERY);
    assert_eq!(got[2].header("webhook-id"), later);
    assert_eq!(attempts_of(&rcv, "/last", &first), ["1", "2"]);
    let shown = wait_for(DELIVERY, "the last attempt recorded", || {
        let e = server.event(&first);
        (e["deliveries"][0]["status"] == "dead").then_some(e)
    });
    assert_eq!(shown["deliveries"][0]["attempts"].as_array().map(Vec::len), Some(2), "{shown}");
}
