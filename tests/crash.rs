//! Crash tests: the real binary, killed with SIGKILL, restarted on the same data dir.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

/// A small xorshift generator: the test prints its seed so a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn seed() -> u64 {
    std::env::var("CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(7) | 1
    })
}

/// Concurrent clients post events; the server is killed at a random moment, several times in
/// a row, and restarted on the same data dir each time. Every acknowledged event must be in the
/// log and reach the receiver; duplicates are counted and reported.
#[test]
fn kill_9_at_random_moments_loses_no_acknowledged_event() {
    const KILLS: usize = 5;
    const CLIENTS: usize = 6;
    let seed = seed();
    let mut rng = Rng(seed);
    let mut server = Server::start();
    let rcv = Receiver::start();
    server.wire(&rcv.url("/crash"), Some(json!({})), json!({"retry_schedule_ms": [100, 200, 400, 800, 1600]}));
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut attempted = 0usize;
    for round in 0..KILLS {
        let stop = Arc::new(AtomicBool::new(false));
        let url = server.url("/v1/events");
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (stop, acked, url) = (stop.clone(), acked.clone(), url.clone());
                std::thread::spawn(move || {
                    let bearer = format!("Bearer {INGEST}");
                    let mut sent = 0usize;
                    let mut i = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        // Alternate single events and arrays of three.
                        let events: Vec<Value> = (0..if i.is_multiple_of(2) { 1 } else { 3 })
                            .map(|_| maia("crm_field_update", json!({})))
                            .collect();
                        let tags: Vec<String> =
                            events.iter().map(|e| e["recordId"].as_str().unwrap_or_default().to_owned()).collect();
                        let body =
                            if events.len() == 1 { events[0].to_string() } else { Value::Array(events).to_string() };
                        i += 1;
                        sent += tags.len();
                        let answer = ureq::post(&url)
                            .set("Authorization", &bearer)
                            .set("Content-Type", "application/json")
                            .timeout(Duration::from_secs(5))
                            .send_string(&body);
                        match answer {
                            Ok(r) if r.status() == 202 => acked.lock().expect("lock").extend(tags),
                            Ok(_) | Err(ureq::Error::Status(..)) => {}
                            Err(_) => break, // the server is gone
                        }
                        let _ = c;
                    }
                    sent
                })
            })
            .collect();
        // Let acknowledged events pile up, then kill at a random moment.
        let before = acked.lock().expect("lock").len();
        wait_for(Duration::from_secs(20), "some acknowledgements", || {
            (acked.lock().expect("lock").len() > before).then_some(())
        });
        // Not a wait for anything: the kill's random moment.
        std::thread::sleep(Duration::from_millis(50 + rng.below(400)));
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            attempted += c.join().expect("client");
        }
        eprintln!("round {round}: killed with {} events acknowledged so far", acked.lock().expect("lock").len());
        server.respawn();
    }
    let acked = acked.lock().expect("lock").clone();
    // Every acknowledged event reaches the receiver...
    let deadline = Duration::from_secs(90);
    rcv.wait_delivered("/crash", acked.iter(), deadline);
    let counts = rcv.tag_counts("/crash");
    let lost: Vec<&String> = acked.iter().filter(|t| !counts.contains_key(*t)).collect();
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    // ...and is in the log.
    let mut logged = HashSet::new();
    let mut after = 0u64;
    loop {
        let page = server.admin("GET", &format!("/v1/events?after={after}&limit=1000"), None).json();
        for e in page["events"].as_array().expect("events") {
            logged.insert(e["payload"]["recordId"].as_str().unwrap_or_default().to_owned());
        }
        match page["next_after"].as_u64() {
            Some(n) => after = n,
            None => break,
        }
    }
    let missing_from_log = acked.iter().filter(|t| !logged.contains(*t)).count();
    // The record-id index (its last window lives in memory and is read back from the log at
    // start-up) finds them too: a sample of up to 200.
    let mut sample: Vec<&String> = acked.iter().collect();
    sample.sort();
    let step = (sample.len() / 200).max(1);
    let unindexed: Vec<&String> = sample
        .iter()
        .step_by(step)
        .filter(|t| {
            let found = server.admin("GET", &format!("/v1/events?record_id={t}"), None).json();
            found["events"].as_array().is_none_or(|e| e.is_empty())
        })
        .copied()
        .collect();
    assert!(unindexed.is_empty(), "acknowledged events the record-id index misses: {unindexed:?}");
    eprintln!(
        "crash test (seed {seed}): {KILLS} kills survived, {attempted} events sent, {} acknowledged, lost {}, \
         missing from the log {missing_from_log}, duplicate deliveries {duplicates}",
        acked.len(),
        lost.len()
    );
    assert!(acked.len() > 100, "too few acknowledged events to mean anything: {}", acked.len());
    assert!(lost.is_empty(), "lost {} acknowledged events, e.g. {:?}", lost.len(), &lost[..lost.len().min(3)]);
    assert_eq!(missing_from_log, 0);
}

/// CRMs posting to their sources while the server is killed at random moments: batches of one
/// to three events, every third with an element that breaks the rules (kept in the
/// quarantine), half of the clients signed to a MAIA source (deduplicated by bytes), half with
/// the key in the URL to a Maximizer source (deduplicated by `Id`). As a CRM does, a client
/// sends the request a kill cut off again, byte for byte, once the server is back (its events
/// may be in the log already), and sends an answered batch again now and then. Every answered
/// event reaches the receiver and is in the log once; a resend of an answered batch accepts
/// nothing new; each bad element is held by one piece, the one its answers named.
#[test]
fn crms_batches_to_their_sources_survive_kill_9_each_once() {
    const KILLS: usize = 3;
    const CLIENTS: usize = 4;
    const SECRET: &str = "maia-crash-secret";
    let seed = seed();
    let mut rng = Rng(seed);
    let mut server = Server::start();
    let rcv = Receiver::start();
    server.wire(&rcv.url("/src"), Some(json!({})), json!({"retry_schedule_ms": [100, 200, 400, 800, 1600]}));
    let create = |body: Value| {
        let r = server.admin("POST", "/v1/sources", Some(&body));
        assert_eq!(r.status, 201, "{}", r.text);
        r.json()
    };
    let sources = [
        create(json!({"name": "MAIA", "kind": "maia", "maia_secret": SECRET})),
        create(json!({"name": "Maximizer", "kind": "maximizer"})),
    ];
    /// A batch: its body, its events' tags, its bad elements' tags.
    type Batch = (String, Vec<String>, Vec<String>);
    let make = |maia_kind: bool, i: usize| -> Batch {
        let tags: Vec<String> = (0..1 + i % 3).map(|_| format!("rec_{}", unique())).collect();
        let mut elements: Vec<Value> = tags
            .iter()
            .map(|t| match maia_kind {
                true => json!({"eventType": "crm_field_update", "recordId": t, "kanbanId": "k", "fieldName": "Email"}),
                false => {
                    serde_json::from_str(&crmhook_crmsim::maximizer::envelope(t, "Opportunity", "Update", "12000.00"))
                        .expect("JSON")
                }
            })
            .collect();
        let mut bad = Vec::new();
        if i.is_multiple_of(3) {
            bad.push(format!("bad_{}", unique()));
            elements.push(match maia_kind {
                true => json!({"eventType": "crm_record_moved", "recordId": bad[0]}),
                false => json!({"Id": bad[0], "Timestamp": "2024-09-20T00:01:29Z", "Entity": "Opportunity"}),
            });
        }
        (Value::Array(elements).to_string(), tags, bad)
    };
    /// What was answered: the events, and each bad element with the piece named for it.
    type Answered = (HashSet<String>, std::collections::HashMap<String, String>);
    // Per client: the batch a kill cut off.
    let mut carried: Vec<Option<Batch>> = vec![None; CLIENTS];
    let answered: Mutex<Answered> = Mutex::default();
    let breaches: Mutex<Vec<String>> = Mutex::default();
    // Client `c` posts `body` to its source, authenticated as that CRM does: answers the status
    // and body, or nothing when the server is gone.
    let post = |c: usize, base: &str, body: &str| -> Option<(u16, String)> {
        let source = &sources[c % 2];
        let id = source["id"].as_str().expect("id");
        let request = match source["key"].as_str() {
            None => ureq::post(&format!("{base}/in/{id}"))
                .set("X-Maia-Signature", &hex::encode(hmac_sha256(SECRET.as_bytes(), body.as_bytes()))),
            Some(key) => ureq::post(&format!("{base}/in/{id}?key={key}")),
        };
        match request.set("Content-Type", "application/json").timeout(Duration::from_secs(5)).send_string(body) {
            Ok(r) | Err(ureq::Error::Status(_, r)) => Some((r.status(), r.into_string().unwrap_or_default())),
            Err(_) => None,
        }
    };
    for _ in 0..KILLS {
        let stop = AtomicBool::new(false);
        let base = server.url("");
        let before = answered.lock().expect("lock").0.len();
        let previous = std::mem::take(&mut carried);
        carried = std::thread::scope(|scope| {
            let clients: Vec<_> = previous
                .into_iter()
                .enumerate()
                .map(|(c, mut cut_off)| {
                    let (stop, answered, breaches, base, make, post) =
                        (&stop, &answered, &breaches, &base, &make, &post);
                    scope.spawn(move || {
                        let mut last: Option<Batch> = None;
                        let mut i = 0usize;
                        while !stop.load(Ordering::Relaxed) {
                            i += 1;
                            let resend = cut_off.is_none() && i.is_multiple_of(4) && last.is_some();
                            let batch = match (cut_off.take(), &last) {
                                (Some(b), _) => b,
                                (None, Some(l)) if resend => l.clone(),
                                _ => make(c.is_multiple_of(2), i),
                            };
                            let r: Value = match post(c, base, &batch.0) {
                                Some((200, text)) => serde_json::from_str(&text).expect("JSON"),
                                // 503 while stopping or under backpressure: sent again.
                                Some((503, _)) => {
                                    cut_off = (!resend).then_some(batch);
                                    continue;
                                }
                                Some((status, text)) => panic!("{status}: {text}"),
                                None => {
                                    cut_off = (!resend).then_some(batch);
                                    break;
                                }
                            };
                            let mut said = breaches.lock().expect("lock");
                            let counted = (
                                r["accepted"].as_u64().unwrap_or(0) + r["duplicates"].as_u64().unwrap_or(0),
                                r["rejected"].as_u64(),
                            );
                            if counted != (batch.1.len() as u64, Some(batch.2.len() as u64)) {
                                said.push(format!("counts of {}: {r}", batch.0));
                            }
                            if resend && r["accepted"] != 0 {
                                said.push(format!("an answered batch sent again was accepted again: {r}"));
                            }
                            let mut answered = answered.lock().expect("lock");
                            answered.0.extend(batch.1.iter().cloned());
                            for (tag, piece) in batch.2.iter().zip(r["rejections"].as_array().expect("rejections")) {
                                let piece = piece["id"].as_str().expect("piece id").to_owned();
                                if *answered.1.entry(tag.clone()).or_insert_with(|| piece.clone()) != piece {
                                    said.push(format!("{tag} named by two pieces"));
                                }
                            }
                            last = Some(batch);
                        }
                        cut_off
                    })
                })
                .collect();
            wait_for(Duration::from_secs(20), "some answers", || {
                (answered.lock().expect("lock").0.len() > before).then_some(())
            });
            // Not a wait for anything: the kill's random moment.
            std::thread::sleep(Duration::from_millis(50 + rng.below(400)));
            server.kill9();
            stop.store(true, Ordering::Relaxed);
            clients.into_iter().map(|c| c.join().expect("client")).collect()
        });
        server.respawn();
    }
    // The batches the last kill cut off, sent again.
    for (c, cut_off) in carried.into_iter().enumerate() {
        if let Some((body, good, _)) = cut_off {
            assert_eq!(post(c, &server.url(""), &body).map(|(status, _)| status), Some(200), "a resend");
            answered.lock().expect("lock").0.extend(good);
        }
    }
    let breaches = breaches.lock().expect("lock").clone();
    let first = &breaches[..breaches.len().min(5)];
    assert!(breaches.is_empty(), "crash test (seed {seed}): {} breaches, the first: {first:?}", breaches.len());
    let (events, pieces) = answered.lock().expect("lock").clone();
    rcv.wait_delivered("/src", events.iter(), Duration::from_secs(90));
    // The log holds each answered event once, and the quarantine each bad element once.
    let tag = |v: &Value| {
        let v = if v.is_array() { &v[0] } else { v };
        v["recordId"].as_str().or(v["Id"].as_str()).expect("a tag").to_owned()
    };
    let mut logged: Vec<String> = Vec::new();
    let mut held: Vec<(String, String)> = Vec::new();
    for source in &sources {
        let id = source["id"].as_str().expect("id");
        let mut after = 0u64;
        loop {
            let page = server.admin("GET", &format!("/v1/events?source_id={id}&after={after}&limit=1000"), None).json();
            logged.extend(page["events"].as_array().expect("events").iter().map(|e| tag(&e["payload"])));
            match page["next_after"].as_u64() {
                Some(n) => after = n,
                None => break,
            }
        }
        let mut after = String::new();
        loop {
            let page = server.admin("GET", &format!("/v1/rejected?source_id={id}&limit=1000{after}"), None).json();
            for p in page["rejected"].as_array().expect("rejected") {
                let body: Value = serde_json::from_str(p["body"].as_str().expect("body")).expect("the element's JSON");
                held.push((tag(&body), p["id"].as_str().expect("id").to_owned()));
            }
            match page["next_after"].as_str() {
                Some(n) => after = format!("&after={n}"),
                None => break,
            }
        }
    }
    let distinct: HashSet<&String> = logged.iter().collect();
    assert_eq!(distinct.len(), logged.len(), "an event stored twice (seed {seed})");
    assert!(events.iter().all(|t| distinct.contains(t)), "an answered event missing from the log (seed {seed})");
    let by_tag: std::collections::HashMap<&String, &String> = held.iter().map(|(t, id)| (t, id)).collect();
    assert_eq!(by_tag.len(), held.len(), "bytes held by two pieces (seed {seed})");
    for (tag, piece) in &pieces {
        assert_eq!(by_tag.get(tag).copied(), Some(piece), "{tag}: the piece its answer named (seed {seed})");
    }
    eprintln!(
        "sources crash test (seed {seed}): {KILLS} kills, {} events answered and logged once, {} bad elements held once",
        events.len(),
        pieces.len()
    );
    assert!(events.len() > 100 && !pieces.is_empty(), "too little answered to mean anything");
}

/// An operator's redeliveries and replay, answered 202 while the target is paused (so that
/// nothing is attempted before the kill: what was queued is only on disk), then SIGKILL: after
/// the restart, once the target is resumed, every delivery queued arrives again, numbered on.
#[test]
fn redeliveries_and_replays_answered_before_a_kill_are_made_after_it() {
    let mut server = Server::start();
    let rcv = Receiver::start();
    // One target delivers; the other's receiver fails, with no retries: its deliveries die.
    let (fine, _) = server.wire(&rcv.url("/fine"), Some(json!({})), json!({}));
    rcv.set_default("/dies", status(500));
    let (dies, _) = server.wire(&rcv.url("/dies"), Some(json!({})), json!({"retry_schedule_ms": []}));
    let ids: Vec<String> = (0..6)
        .map(|_| {
            server.post_ok(&maia("crm_field_update", json!({})))["events"][0]["id"].as_str().expect("id").to_owned()
        })
        .collect();
    rcv.wait_count("/fine", 6, Duration::from_secs(10));
    wait_for(Duration::from_secs(10), "six dead deliveries", || {
        let dead = server.admin("GET", &format!("/v1/targets/{dies}/deliveries?status=dead"), None).json();
        (dead["deliveries"].as_array().map_or(0, Vec::len) == 6).then_some(())
    });
    for tid in [&fine, &dies] {
        let r = server.admin("PATCH", &format!("/v1/targets/{tid}"), Some(&json!({"enabled": false})));
        assert_eq!(r.status, 200, "{}", r.text);
    }
    for id in &ids[..4] {
        let r = server.admin("POST", &format!("/v1/events/{id}/redeliver"), Some(&json!({"target_id": fine})));
        assert_eq!((r.status, r.json()["queued"].as_u64()), (202, Some(1)), "{}", r.text);
    }
    let r = server.admin("POST", &format!("/v1/targets/{dies}/replay"), Some(&json!({"status": "dead"})));
    assert_eq!((r.status, r.json()["queued"].as_u64()), (202, Some(6)), "{}", r.text);
    server.kill9();
    server.respawn();
    rcv.set_default("/dies", status(200));
    for tid in [&fine, &dies] {
        let r = server.admin("PATCH", &format!("/v1/targets/{tid}"), Some(&json!({"enabled": true})));
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let again = rcv.wait_count("/fine", 10, Duration::from_secs(10));
    let redelivered: Vec<(&str, &str)> =
        again[6..].iter().map(|r| (r.header("webhook-id"), r.header("x-crmhook-attempt"))).collect();
    for id in &ids[..4] {
        assert!(redelivered.contains(&(id.as_str(), "2")), "{id} redelivered as attempt 2: {redelivered:?}");
    }
    let replayed = rcv.wait_until(Duration::from_secs(10), "six replays answered 200", |got| {
        let ok: Vec<&Received> = got.iter().filter(|r| r.path == "/dies" && r.status == 200).collect();
        (ok.len() >= 6).then(|| {
            ok.iter()
                .map(|r| (r.header("webhook-id").to_owned(), r.header("x-crmhook-attempt").to_owned()))
                .collect::<Vec<_>>()
        })
    });
    for id in &ids {
        assert!(replayed.contains(&(id.clone(), "2".to_owned())), "{id} replayed as attempt 2: {replayed:?}");
    }
    server.wait_settled(&fine, Duration::from_secs(10));
    server.wait_settled(&dies, Duration::from_secs(10));
    assert_eq!((rcv.count("/fine"), rcv.count("/dies")), (10, 12), "nothing more, nothing twice");
}

/// Every admin change answered before a SIGKILL is kept after it: a target patched and its
/// secret rotated, another deleted, a subscription narrowed by a second one deleted, a MAIA
/// source's secret changed, a Maximizer source's key rotated.
#[test]
fn admin_changes_answered_before_a_kill_are_all_kept() {
    let mut server = Server::start();
    let rcv = Receiver::start();
    let (kept, _) = server.wire(&rcv.url("/kept"), Some(json!({"event_types": ["crm_record_created"]})), json!({}));
    let (gone, _) = server.wire(&rcv.url("/gone"), Some(json!({})), json!({}));
    let ok = |r: Resp, status: u16| {
        assert_eq!(r.status, status, "{}", r.text);
        r.json()
    };
    let wide = ok(server.admin("POST", "/v1/subscriptions", Some(&json!({"target_id": kept}))), 201);
    let patched = json!({"timeout_ms": 1500, "headers": {"X-Tenant": "acme"}});
    ok(server.admin("PATCH", &format!("/v1/targets/{kept}"), Some(&patched)), 200);
    let secret = ok(server.admin("POST", &format!("/v1/targets/{kept}/rotate-secret"), None), 200)["secret"]
        .as_str()
        .expect("the new secret")
        .to_owned();
    ok(server.admin("DELETE", &format!("/v1/targets/{gone}"), None), 204);
    ok(server.admin("DELETE", &format!("/v1/subscriptions/{}", wide["id"].as_str().expect("id")), None), 204);
    let maia_src = ok(
        server.admin("POST", "/v1/sources", Some(&json!({"name": "MAIA", "kind": "maia", "maia_secret": "before"}))),
        201,
    );
    let maia_id = maia_src["id"].as_str().expect("id").to_owned();
    ok(server.admin("PATCH", &format!("/v1/sources/{maia_id}"), Some(&json!({"maia_secret": "after"}))), 200);
    let mx = ok(server.admin("POST", "/v1/sources", Some(&json!({"name": "Maximizer", "kind": "maximizer"}))), 201);
    let mx_id = mx["id"].as_str().expect("id").to_owned();
    let key = ok(server.admin("POST", &format!("/v1/sources/{mx_id}/rotate-key"), None), 200)["key"]
        .as_str()
        .expect("the new key")
        .to_owned();
    server.kill9();
    server.respawn();

    let targets = ok(server.admin("GET", "/v1/targets", None), 200);
    let ids: Vec<&str> =
        targets["targets"].as_array().expect("targets").iter().filter_map(|t| t["id"].as_str()).collect();
    assert_eq!(ids, [kept.as_str()], "the deleted target stays deleted");
    let t = &targets["targets"][0];
    // (A header's value is not shown back; the delivery below carries it.)
    assert_eq!((&t["timeout_ms"], t["headers"].get("X-Tenant").is_some()), (&json!(1500), true), "{t}");
    let subs = ok(server.admin("GET", "/v1/subscriptions", None), 200);
    assert_eq!(subs["subscriptions"].as_array().map(Vec::len), Some(1), "{subs}");
    // The narrow subscription alone: a field update is not delivered, a created record is, signed
    // with the rotated secret and carrying the patched header.
    let skipped = maia("crm_field_update", json!({}));
    server.post_ok(&skipped);
    let created = maia("crm_record_created", json!({}));
    server.post_ok(&created);
    let got = rcv.wait_tag("/kept", created["recordId"].as_str().expect("tag"), Duration::from_secs(10));
    server.wait_settled(&kept, Duration::from_secs(10));
    assert_eq!(rcv.count("/kept"), 1, "only the subscribed type");
    assert!(maia_signature_valid(&secret, &got[0]) && standard_signature_valid(&secret, &got[0]));
    assert_eq!(got[0].header("x-tenant"), "acme");
    assert_eq!(rcv.count("/gone"), 0);
    // The sources: MAIA's changed secret, Maximizer's rotated key (the old one refused).
    let body = maia("crm_record_created", json!({})).to_string();
    let url = server.url(&format!("/in/{maia_id}"));
    for (secret, status) in [("before", 401), ("after", 200)] {
        let signature = hex::encode(hmac_sha256(secret.as_bytes(), body.as_bytes()));
        let r = http("POST", &url, &[("X-Maia-Signature", &signature)], Some(body.as_bytes()));
        assert_eq!(r.status, status, "signed with {secret}: {}", r.text);
    }
    let envelope = crmhook_crmsim::maximizer::batch(&[crmhook_crmsim::maximizer::envelope(
        "mx-k",
        "Opportunity",
        "Update",
        "1.0",
    )]);
    for (key, status) in [(mx["key"].as_str().expect("first key"), 401), (key.as_str(), 200)] {
        let r = http("POST", &server.url(&format!("/in/{mx_id}?key={key}")), &[], Some(envelope.as_bytes()));
        assert_eq!(r.status, status, "{}", r.text);
    }
}

/// A request with an `Idempotency-Key` (its record a single write right after its events'
/// chunk), killed with SIGKILL once acknowledged: the client's retry after the restart is
/// answered with the same events, and the log goes on after them.
#[test]
fn an_idempotency_key_acknowledged_before_a_kill_answers_the_retry() {
    let mut server = Server::start();
    let body = json!([maia("crm_field_update", json!({})), maia("ai_pause", json!({}))]);
    let first = server.post_keyed(&body, "order-9");
    assert_eq!((first["accepted"].as_u64(), first["duplicates"].as_u64()), (Some(2), Some(0)));
    server.kill9();
    server.respawn();
    let again = server.post_keyed(&body, "order-9");
    assert_eq!((again["accepted"].as_u64(), again["duplicates"].as_u64()), (Some(0), Some(2)));
    assert_eq!(again["events"], first["events"], "the same ids and seqs");
    let next = server.post_keyed(&body, "order-10");
    assert_eq!(next["accepted"].as_u64(), Some(2));
    assert_eq!(next["events"][0]["seq"].as_u64(), first["events"][1]["seq"].as_u64().map(|s| s + 1));
}

/// The receiver is down; a retry is scheduled; the server is killed and restarted; the
/// receiver comes back: every delivery arrives, as attempt 2, on its schedule.
#[test]
fn retries_pending_at_a_kill_arrive_on_schedule() {
    let mut server = Server::start();
    // A port with nothing listening: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let url = format!("http://127.0.0.1:{port}/back");
    let (tid, _) = server.wire(&url, Some(json!({})), json!({"retry_schedule_ms": [5000, 5000]}));
    let ids: Vec<String> = (0..5)
        .map(|_| {
            server.post_ok(&maia("crm_field_update", json!({})))["events"][0]["id"].as_str().expect("id").to_owned()
        })
        .collect();
    // Wait until every first attempt has failed and its retry is on disk. The API shows a record
    // as soon as it is applied, before the group commit's flush; the metrics count it once
    // flushed. (Until 2026-12-07 this waited on the API alone: on CI's slower disk a kill then
    // came before the last record's flush, and that event was attempted as attempt 1 again.)
    let retries = format!("crmhook_deliveries_total{{target=\"{tid}\",outcome=\"retry\"}}");
    wait_for(Duration::from_secs(10), "five failed first attempts on disk", || {
        let scrape = http("GET", &server.url("/metrics"), &[], None).text;
        (metric(&scrape, &retries) >= 5.0).then_some(())
    });
    let first_at: Vec<u64> = ids
        .iter()
        .map(|id| {
            wait_for(Duration::from_secs(10), "a failed first attempt", || {
                let e = server.admin("GET", &format!("/v1/events/{id}"), None).json();
                let a = &e["deliveries"][0]["attempts"][0];
                (a["result"] == "retrying").then(|| a["at"].as_str().map(parse_ms)).flatten()
            })
        })
        .collect();
    server.kill9();
    server.respawn();
    let rcv = Receiver::start_on(port);
    let got = rcv.wait_count("/back", 5, Duration::from_secs(20));
    let by_id: std::collections::HashMap<&str, u64> = got.iter().map(|r| (r.header("webhook-id"), r.wall_ms)).collect();
    let seen: Vec<(&str, &str, i64)> = ids
        .iter()
        .zip(&first_at)
        .map(|(id, at1)| {
            let r = got.iter().find(|r| r.header("webhook-id") == id.as_str());
            (
                id.as_str(),
                r.map_or("-", |r| r.header("x-crmhook-attempt")),
                by_id.get(id.as_str()).map_or(-1, |at2| *at2 as i64 - *at1 as i64),
            )
        })
        .collect();
    assert!(
        got.iter().all(|r| r.header("x-crmhook-attempt") == "2"),
        "attempt numbers resumed: (id, attempt, ms after attempt 1) {seen:?}"
    );
    for (id, at1) in ids.iter().zip(&first_at) {
        let at2 = by_id[id.as_str()];
        let gap = at2.saturating_sub(*at1);
        // 5000 ms, up to a tenth more (the jitter); the restart may only add a little. (It was 3000 ms until
        // 2026-12-06: on a loaded host the five first attempts could take longer than that to be
        // seen, and a retry then came before the kill, as attempt 3 after it.)
        assert!((4990..=9000).contains(&gap), "attempt 2 of {id} came {gap} ms after attempt 1");
    }
    // This run of the target matched the whole log when it started, before these attempts; with
    // nothing pending, nothing more is coming.
    server.wait_settled(&tid, Duration::from_secs(10));
    assert_eq!(rcv.count("/back"), 5, "delivered twice");
}

fn parse_ms(rfc3339: &str) -> u64 {
    // 2026-11-25T11:31:29.888Z
    let (date, time) = rfc3339.trim_end_matches('Z').split_once('T').expect("T");
    let d: Vec<i64> = date.split('-').map(|x| x.parse().expect("date")).collect();
    let (hms, ms) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(|x| x.parse().expect("time")).collect();
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m) = if d[1] <= 2 { (d[0] - 1, d[1] + 9) } else { (d[0], d[1] - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]) * 1000 + ms.parse::<i64>().expect("ms")) as u64
}

#[test]
fn parse_ms_reads_rfc3339() {
    assert_eq!(parse_ms("1970-01-01T00:00:00.000Z"), 0);
    assert_eq!(parse_ms("2024-01-15T10:30:00.123Z"), 1_705_314_600_123);
    let _ = Instant::now();
}
