//! `crmhook-bench soak --source-kills N`: the kill soak through a MAIA source, the path a real
//! CRM takes. Concurrent clients post signed batches (one to three events, now and then an
//! element that breaks the rules) while the server is killed with SIGKILL at random moments and
//! started again on the same data dir. They behave as a CRM does:
//!
//! - a request that got no answer (the kill cut it off) is sent again, byte for byte, once the
//!   server is back: its events may or may not be in the log already;
//! - now and then a request that was answered is sent again too (a CRM that thought it lost).
//!
//! At the end it checks what the contract and API.md promise, and counts each breach:
//!
//! - `lost`: an event of an answered request that never reached the receiver;
//! - `stored_twice`: an event's bytes twice in the log (deduplication by bytes failed);
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

use super::{wait_until, Conn, Receiver, Server};

const MAIA_SECRET: &str = "soak-maia-secret";

/// One request's body and what is in it.
#[derive(Clone)]
struct Batch {
    body: Vec<u8>,
    /// The recordIds of its events.
    good: Vec<String>,
    /// The recordIds of its elements that break the rules (an unknown `eventType`).
    bad: Vec<String>,
}

impl Batch {
    fn new(tag: &str, events: u64, with_bad: bool) -> Batch {
        let good: Vec<String> = (0..events).map(|k| format!("{tag}k{k}")).collect();
        let bad: Vec<String> = if with_bad { vec![format!("bad-{tag}")] } else { Vec::new() };
        let mut elements: Vec<String> = good.iter().map(|t| super::event(t)).collect();
        for t in &bad {
            // After the first event, so that the element's index is not always 0.
            elements.insert(1.min(elements.len()), format!(r#"{{"eventType":"crm_record_moved","recordId":"{t}"}}"#));
        }
        Batch { body: format!("[{}]", elements.join(",")).into_bytes(), good, bad }
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

/// Kill soak through a MAIA source; answers its JSON report.
pub fn source_kills(kills: usize, clients: usize) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir()?;
    let rcv = Receiver::start()?;
    let mut server = Server::start(dir.path())?;
    server.target(&rcv.url(), &[100, 200, 400, 800, 1600, 3200])?;
    let source = server.admin(
        "POST",
        "/v1/sources",
        &json!({"name": "soak MAIA", "kind": "maia", "maia_secret": MAIA_SECRET}),
    )?;
    let source_id = source["id"].as_str().context("the source's id")?.to_owned();
    let path = format!("/in/{source_id}");
    let mut seen: Vec<Seen> = (0..clients).map(|_| Seen::default()).collect();
    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos() as u64 | 1;
    for round in 0..kills {
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = seen
            .drain(..)
            .enumerate()
            .map(|(c, mut seen)| {
                let (stop, addr, path) = (stop.clone(), server.addr, path.clone());
                std::thread::spawn(move || {
                    let mut conn = Conn::new(addr);
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let (batch, resend) = match (seen.unanswered.take(), &seen.last_answered) {
                            (Some(b), _) => (b, false),
                            (None, Some(last)) if i.is_multiple_of(5) => (last.clone(), true),
                            _ => (Batch::new(&format!("s{round}c{c}i{i}"), 1 + i % 3, i % 4 == 1), false),
                        };
                        let signature = crmhook_core::sign::maia_signature(MAIA_SECRET, &batch.body);
                        let headers = format!("X-Maia-Signature: {signature}\r\n");
                        match conn.request_with("POST", &path, &headers, &batch.body) {
                            Ok((200, answer)) => {
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
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(200 + seed % 1500));
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            seen.push(t.join().map_err(|_| anyhow::anyhow!("a client panicked"))?);
        }
        server.spawn()?;
    }
    // The requests the last kill cut off, sent again: a CRM would.
    let mut conn = Conn::new(server.addr);
    for s in &mut seen {
        if let Some(batch) = s.unanswered.take() {
            let signature = crmhook_core::sign::maia_signature(MAIA_SECRET, &batch.body);
            let (status, answer) =
                conn.request_with("POST", &path, &format!("X-Maia-Signature: {signature}\r\n"), &batch.body)?;
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

    // The log: each event's bytes once.
    let mut in_log: HashMap<String, u32> = HashMap::new();
    let mut after = 0u64;
    loop {
        let page =
            server.admin("GET", &format!("/v1/events?source_id={source_id}&after={after}&limit=1000"), &json!(null))?;
        for e in page["events"].as_array().context("events")? {
            *in_log.entry(e["payload"]["recordId"].as_str().unwrap_or_default().to_owned()).or_insert(0) += 1;
        }
        match page["next_after"].as_u64() {
            Some(next) => after = next,
            None => break,
        }
    }
    let stored_twice = in_log.values().filter(|n| **n > 1).count();
    let not_in_log = acked.iter().filter(|t| !in_log.contains_key(**t)).count();

    // The quarantine: each bad element's bytes held once, and every answered one held.
    let mut held: HashMap<String, u32> = HashMap::new();
    let mut after = String::new();
    loop {
        let query = if after.is_empty() { String::new() } else { format!("&after={after}") };
        let page =
            server.admin("GET", &format!("/v1/rejected?source_id={source_id}&limit=1000{query}"), &json!(null))?;
        for p in page["rejected"].as_array().context("rejected")? {
            let body: Value = serde_json::from_str(p["body"].as_str().unwrap_or_default()).unwrap_or(Value::Null);
            *held.entry(body["recordId"].as_str().unwrap_or_default().to_owned()).or_insert(0) += 1;
        }
        match page["next_after"].as_str() {
            Some(next) => after = next.to_owned(),
            None => break,
        }
    }
    let answered_bad: HashSet<&String> = seen.iter().flat_map(|s| s.pieces.keys()).collect();
    let pieces_twice = held.values().filter(|n| **n > 1).count();
    let pieces_missing = answered_bad.iter().filter(|t| !held.contains_key(**t)).count();
    let resent_accepted: usize = seen.iter().map(|s| s.resent_accepted).sum();
    let piece_changed: usize = seen.iter().map(|s| s.piece_changed).sum();
    let unexpected: Vec<&String> = seen.iter().flat_map(|s| &s.unexpected).collect();

    let report = json!({
        "kills": kills, "acknowledged": acked.len(), "lost": lost, "not_in_log": not_in_log,
        "all_arrived": all_arrived, "duplicate_deliveries": duplicate_deliveries,
        "events_in_log": in_log.len(), "stored_twice": stored_twice, "resent_accepted": resent_accepted,
        "bad_elements_answered": answered_bad.len(), "pieces": held.len(), "pieces_twice": pieces_twice,
        "pieces_missing": pieces_missing, "piece_changed": piece_changed,
        "unexpected": unexpected.len(), "unexpected_first": unexpected.first(),
    });
    println!(
        "source kills: {kills} kills survived; {} events answered, lost {lost}, not in the log {not_in_log}; \
         stored twice {stored_twice}, resends accepted again {resent_accepted}; {} bad elements answered, \
         {} pieces, twice {pieces_twice}, missing {pieces_missing}, named another {piece_changed}; \
         unexpected answers {}; duplicate deliveries {duplicate_deliveries}",
        acked.len(),
        answered_bad.len(),
        held.len(),
        unexpected.len()
    );
    Ok(report)
}
