//! `crmhook-bench soak --source-kills N`: the kill soak through the sources, the path real CRMs
//! take. Concurrent clients post batches of one to three events, now and then with an element
//! that breaks the rules, half of them signed to a MAIA source (deduplicated by their bytes),
//! half with the key to a Maximizer source (deduplicated by `Id`), while the server is killed
//! with SIGKILL at random moments and started again on the same data dir. They behave as a CRM
//! does:
//!
//! - a request that got no answer (the kill cut it off) is sent again, byte for byte, once the
//!   server is back: its events may or may not be in the log already;
//! - now and then a request that was answered is sent again too (a CRM that thought it lost).
//!
//! At the end it checks what the contract and API.md promise, and counts each breach:
//!
//! - `lost`: an event of an answered request that never reached the receiver;
//! - `stored_twice`: an event twice in the log (deduplication failed);
//! - `resent_accepted`: a resend of an answered request that had an event accepted again;
//! - `pieces_twice`: a bad element's bytes held by two pieces of the quarantine;
//! - `pieces_missing`: a bad element of an answered request that no piece holds;
//! - `piece_changed`: a resend of an answered request whose bad element was named by another
//!   piece than the first answer's;
//! - `unexpected`: an answer other than 200 or 503, or a 200 whose counts do not add up.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};

use super::{kill_at_random, tag_of, wait_until, Conn, Receiver, Server};

const MAIA_SECRET: &str = "soak-maia-secret";

/// The two sources.
#[derive(Clone, Copy)]
enum Kind {
    Maia,
    Maximizer,
}

/// One request's body and what is in it.
#[derive(Clone)]
struct Batch {
    body: Vec<u8>,
    /// The tags (MAIA `recordId`, Maximizer `Id`) of its events.
    good: Vec<String>,
    /// The tags of its elements that break the rules.
    bad: Vec<String>,
}

impl Batch {
    fn new(kind: Kind, tag: &str, events: u64, with_bad: bool) -> Batch {
        let good: Vec<String> = (0..events).map(|k| format!("{tag}k{k}")).collect();
        let bad: Vec<String> = if with_bad { vec![format!("bad-{tag}")] } else { Vec::new() };
        let mut elements: Vec<String> = good.iter().map(|t| element(kind, t, true)).collect();
        for t in &bad {
            // After the first event, so that the element's index is not always 0.
            elements.insert(1.min(elements.len()), element(kind, t, false));
        }
        Batch { body: format!("[{}]", elements.join(",")).into_bytes(), good, bad }
    }
}

/// An element tagged `tag`: an event, or one that breaks the rules (a MAIA event of an unknown
/// `eventType`, a Maximizer envelope without its `WorkspaceId`).
fn element(kind: Kind, tag: &str, good: bool) -> String {
    match (kind, good) {
        (Kind::Maia, true) => super::event(tag),
        (Kind::Maia, false) => format!(r#"{{"eventType":"crm_record_moved","recordId":"{tag}"}}"#),
        (Kind::Maximizer, good) => format!(
            r#"{{"Id":"{tag}","Timestamp":"2024-09-20T00:01:29.5149836Z",{}"Entity":"Opportunity","Data":{{"Op":"Update","Original":{{"Revenue":12000.00}},"New":{{"SalesStageSetupName":"Presentation"}},"Version":"1.1"}}}}"#,
            if good { r#""WorkspaceId":"108F314C-6787-4EE6-BE49-C0E0C651F039","# } else { "" }
        ),
    }
}

/// A source the clients post to: its id, its kind, and a Maximizer source's key.
struct Source {
    id: String,
    kind: Kind,
    key: String,
}

impl Source {
    fn path(&self) -> String {
        format!("/in/{}", self.id)
    }

    /// The header lines that authenticate `body` here, as the source's CRM sends them.
    fn headers(&self, body: &[u8]) -> String {
        match self.kind {
            Kind::Maia => format!("X-Maia-Signature: {}\r\n", crmhook_core::sign::maia_signature(MAIA_SECRET, body)),
            Kind::Maximizer => format!("Authorization: Bearer {}\r\n", self.key),
        }
    }
}

/// What one client saw, kept across the rounds.
#[derive(Default)]
struct Seen {
    /// The events of answered requests.
    acked: Vec<String>,
    /// The bad elements of answered requests, with the piece the first answer named.
    pieces: HashMap<String, String>,
    /// The request the last kill cut off, to send again first.
    unanswered: Option<Batch>,
    /// The last answered request, sent again now and then.
    last_answered: Option<Batch>,
    resent_accepted: usize,
    piece_changed: usize,
    unexpected: Vec<String>,
    /// How long each request answered 200 took (ms): a Maximizer wants its 200 within 2 s.
    answer_ms: Vec<f64>,
}

impl Seen {
    /// Takes an answer of 200 to `batch`; `resend` when the batch was answered before.
    fn answered(&mut self, batch: &Batch, answer: &Value, resend: bool) {
        let (accepted, duplicates, rejected) =
            (answer["accepted"].as_u64(), answer["duplicates"].as_u64(), answer["rejected"].as_u64());
        let counts = (accepted.unwrap_or(0) + duplicates.unwrap_or(0), rejected.unwrap_or(0));
        if counts != (batch.good.len() as u64, batch.bad.len() as u64) {
            self.unexpected.push(format!("counts {counts:?} for {} + {}: {answer}", batch.good.len(), batch.bad.len()));
        }
        if resend && accepted != Some(0) {
            self.resent_accepted += 1;
        }
        let named: Vec<&str> = answer["rejections"]
            .as_array()
            .map(|r| r.iter().filter_map(|p| p["id"].as_str()).collect())
            .unwrap_or_default();
        for (tag, id) in batch.bad.iter().zip(named) {
            match self.pieces.get(tag) {
                Some(first) if first != id => self.piece_changed += 1,
                Some(_) => {}
                None => {
                    self.pieces.insert(tag.clone(), id.to_owned());
                }
            }
        }
        if !resend {
            self.acked.extend(batch.good.iter().cloned());
        }
        self.last_answered = Some(batch.clone());
    }
}

/// Kill soak through the two sources; answers its JSON report.
pub fn source_kills(kills: usize, clients: usize) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir()?;
    let rcv = Receiver::start()?;
    let mut server = Server::start(dir.path())?;
    server.target(&rcv.url(), &[100, 200, 400, 800, 1600, 3200])?;
    let maia = server.admin(
        "POST",
        "/v1/sources",
        &json!({"name": "soak MAIA", "kind": "maia", "maia_secret": MAIA_SECRET}),
    )?;
    let maximizer = server.admin("POST", "/v1/sources", &json!({"name": "soak Maximizer", "kind": "maximizer"}))?;
    let sources = Arc::new([
        Source {
            id: maia["id"].as_str().context("the MAIA source's id")?.to_owned(),
            kind: Kind::Maia,
            key: String::new(),
        },
        Source {
            id: maximizer["id"].as_str().context("the Maximizer source's id")?.to_owned(),
            kind: Kind::Maximizer,
            key: maximizer["key"].as_str().context("the Maximizer source's key")?.to_owned(),
        },
    ]);
    let mut seen: Vec<Seen> = (0..clients).map(|_| Seen::default()).collect();
    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos() as u64 | 1;
    for round in 0..kills {
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = seen
            .drain(..)
            .enumerate()
            .map(|(c, mut seen)| {
                let (stop, addr, sources) = (stop.clone(), server.addr, sources.clone());
                std::thread::spawn(move || {
                    let source = &sources[c % 2];
                    let mut conn = Conn::new(addr);
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let (batch, resend) = match (seen.unanswered.take(), &seen.last_answered) {
                            (Some(b), _) => (b, false),
                            (None, Some(last)) if i.is_multiple_of(5) => (last.clone(), true),
                            _ => (Batch::new(source.kind, &format!("s{round}c{c}i{i}"), 1 + i % 3, i % 4 == 1), false),
                        };
                        let sent = std::time::Instant::now();
                        match conn.request_with("POST", &source.path(), &source.headers(&batch.body), &batch.body) {
                            Ok((200, answer)) => {
                                seen.answer_ms.push(sent.elapsed().as_secs_f64() * 1000.0);
                                let answer: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
                                seen.answered(&batch, &answer, resend);
                            }
                            // Backpressure or a stop: the CRM sends it again.
                            Ok((503, _)) => seen.unanswered = (!resend).then_some(batch),
                            Ok((status, answer)) => {
                                seen.unexpected.push(format!("{status}: {}", String::from_utf8_lossy(&answer)));
                            }
                            Err(_) => {
                                seen.unanswered = (!resend).then_some(batch);
                                break;
                            }
                        }
                    }
                    seen
                })
            })
            .collect();
        kill_at_random(&mut server, &mut seed, &stop);
        for t in threads {
            seen.push(t.join().map_err(|_| anyhow::anyhow!("a client panicked"))?);
        }
        server.spawn()?;
    }
    // The requests the last kill cut off, sent again: a CRM would.
    let mut conn = Conn::new(server.addr);
    for (c, s) in seen.iter_mut().enumerate() {
        if let Some(batch) = s.unanswered.take() {
            let source = &sources[c % 2];
            let (status, answer) =
                conn.request_with("POST", &source.path(), &source.headers(&batch.body), &batch.body)?;
            anyhow::ensure!(status == 200, "a resend after the last kill: {status}");
            s.answered(&batch, &serde_json::from_slice(&answer)?, false);
        }
    }

    let acked: Vec<&String> = seen.iter().flat_map(|s| &s.acked).collect();
    let all_arrived = wait_until(Duration::from_secs(300), || {
        let counts = rcv.counts.lock().expect("lock");
        acked.iter().all(|t| counts.contains_key(*t))
    });
    let lost = {
        let counts = rcv.counts.lock().expect("lock");
        acked.iter().filter(|t| !counts.contains_key(**t)).count()
    };
    let duplicate_deliveries: u32 = rcv.counts.lock().expect("lock").values().map(|n| n - 1).sum();

    // The log: each event once; the quarantine: each bad element held once.
    let mut in_log: HashMap<String, u32> = HashMap::new();
    let mut held: HashMap<String, u32> = HashMap::new();
    for source in sources.iter() {
        let mut after = 0u64;
        loop {
            let page = server.admin(
                "GET",
                &format!("/v1/events?source_id={}&after={after}&limit=1000", source.id),
                &json!(null),
            )?;
            for e in page["events"].as_array().context("events")? {
                *in_log.entry(tag_of(&e["payload"]).unwrap_or_default().to_owned()).or_insert(0) += 1;
            }
            match page["next_after"].as_u64() {
                Some(next) => after = next,
                None => break,
            }
        }
        let mut after = String::new();
        loop {
            let page = server.admin(
                "GET",
                &format!("/v1/rejected?source_id={}&limit=1000{after}", source.id),
                &json!(null),
            )?;
            for p in page["rejected"].as_array().context("rejected")? {
                let body: Value = serde_json::from_str(p["body"].as_str().unwrap_or_default()).unwrap_or(Value::Null);
                *held.entry(tag_of(&body).unwrap_or_default().to_owned()).or_insert(0) += 1;
            }
            match page["next_after"].as_str() {
                Some(next) => after = format!("&after={next}"),
                None => break,
            }
        }
    }
    let stored_twice = in_log.values().filter(|n| **n > 1).count();
    let not_in_log = acked.iter().filter(|t| !in_log.contains_key(**t)).count();
    let answered_bad: HashSet<&String> = seen.iter().flat_map(|s| s.pieces.keys()).collect();
    let pieces_twice = held.values().filter(|n| **n > 1).count();
    let pieces_missing = answered_bad.iter().filter(|t| !held.contains_key(**t)).count();
    let resent_accepted: usize = seen.iter().map(|s| s.resent_accepted).sum();
    let piece_changed: usize = seen.iter().map(|s| s.piece_changed).sum();
    let unexpected: Vec<&String> = seen.iter().flat_map(|s| &s.unexpected).collect();
    // The answers' times per source: clients of even number post to MAIA, odd to Maximizer.
    let answers = |kind: usize| {
        let mut ms: Vec<f64> =
            seen.iter().enumerate().filter(|(c, _)| c % 2 == kind).flat_map(|(_, s)| s.answer_ms.clone()).collect();
        ms.sort_by(f64::total_cmp);
        let at = |p| crate::deliver::percentile(&ms, p);
        json!({"answered": ms.len(), "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": ms.last().copied().unwrap_or(0.0)})
    };
    let (maia_answers, maximizer_answers) = (answers(0), answers(1));

    let report = json!({
        "kills": kills, "acknowledged": acked.len(), "lost": lost, "not_in_log": not_in_log,
        "all_arrived": all_arrived, "duplicate_deliveries": duplicate_deliveries,
        "events_in_log": in_log.len(), "stored_twice": stored_twice, "resent_accepted": resent_accepted,
        "bad_elements_answered": answered_bad.len(), "pieces": held.len(), "pieces_twice": pieces_twice,
        "pieces_missing": pieces_missing, "piece_changed": piece_changed,
        "unexpected": unexpected.len(), "unexpected_first": unexpected.first(),
        "answers": {"maia": maia_answers, "maximizer": maximizer_answers},
    });
    println!(
        "source kills: {kills} kills survived; {} events answered, lost {lost}, not in the log {not_in_log}; \
         stored twice {stored_twice}, resends accepted again {resent_accepted}; {} bad elements answered, \
         {} pieces, twice {pieces_twice}, missing {pieces_missing}, named another {piece_changed}; \
         unexpected answers {}; duplicate deliveries {duplicate_deliveries}; answered in (p50 / p99 / max ms) \
         MAIA {:.1} / {:.1} / {:.1}, Maximizer {:.1} / {:.1} / {:.1}",
        acked.len(),
        answered_bad.len(),
        held.len(),
        unexpected.len(),
        maia_answers["p50_ms"].as_f64().unwrap_or(0.0),
        maia_answers["p99_ms"].as_f64().unwrap_or(0.0),
        maia_answers["max_ms"].as_f64().unwrap_or(0.0),
        maximizer_answers["p50_ms"].as_f64().unwrap_or(0.0),
        maximizer_answers["p99_ms"].as_f64().unwrap_or(0.0),
        maximizer_answers["max_ms"].as_f64().unwrap_or(0.0),
    );
    Ok(report)
}
