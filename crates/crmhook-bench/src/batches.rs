//! `crmhook-bench batches`: the memory a server needs for large requests. `concurrent` requests
//! of about 1 MB each (13,000 small MAIA events, every one distinct) are posted at once, twice,
//! through `/v1/events` and then through a MAIA source (whose events each carry their
//! deduplication key), each on a fresh server; the row is the server's peak resident memory
//! (`VmHWM`) and the time until every request is answered. There is no baseline beside it: the
//! figure to watch is how the peak grows with `concurrent` (RELIABILITY.md, "Memory").
//!
//! Meanwhile another CRM posts: one Maximizer event every 100 ms to a Maximizer source, each
//! request after the last one's answer; the row gives the slowest of those answers, to read
//! against Maximizer's limit of 2 s (OPERATIONS.md, "A source that posts large batches").

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};

use crate::sources::{admin, maximizer_batch, request, INGEST, MAIA_SECRET};
use crate::{proc_status_kib, read_response, Crmhook};

/// Events per request: about 1 MB of the bench's MAIA field updates is 3,300; the small
/// `crm_record_created` events below make 13,000 fit in 1 MB, as a CRM's batch of them would.
const EVENTS: u64 = 13_000;

/// A MAIA record creation, numbered `n` (77 bytes or so).
fn small_event(n: u64) -> String {
    format!(r#"{{"eventType":"crm_record_created","recordId":"r{n:012}","kanbanId":"k"}}"#)
}

/// The body of request `r`: `EVENTS` events no other request has.
fn body(r: u64) -> Vec<u8> {
    let events: Vec<String> = (0..EVENTS).map(|i| small_event(r * EVENTS + i)).collect();
    format!("[{}]", events.join(",")).into_bytes()
}

/// Posts `requests` at once, one connection each; answers the statuses.
fn post_all(addr: SocketAddr, requests: Vec<Vec<u8>>) -> anyhow::Result<Vec<u16>> {
    let threads: Vec<_> = requests
        .into_iter()
        .map(|r| {
            std::thread::spawn(move || -> anyhow::Result<u16> {
                let mut stream = BufReader::new(TcpStream::connect(addr)?);
                stream.get_mut().write_all(&r)?;
                Ok(read_response(&mut stream)?.0)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().map_err(|_| anyhow::anyhow!("a poster panicked"))?).collect()
}

/// Another CRM meanwhile: a one-event Maximizer request to `path` every 100 ms until `stop`,
/// each after the last one's answer; answers how long each took (ms), numbered from `first`.
fn probe(addr: SocketAddr, path: String, first: u64, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<f64>> {
    std::thread::spawn(move || {
        let mut took = Vec::new();
        let mut n = first;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let sent = Instant::now();
            let answered = (|| -> anyhow::Result<(u16, Vec<u8>)> {
                let mut stream = BufReader::new(TcpStream::connect(addr)?);
                stream.get_mut().write_all(&request(addr, &path, "", maximizer_batch(n).as_bytes()))?;
                read_response(&mut stream)
            })();
            if matches!(answered, Ok((200, _))) {
                took.push(sent.elapsed().as_secs_f64() * 1000.0);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        took
    })
}

pub(crate) fn run(concurrent: usize) -> anyhow::Result<Value> {
    let mut rows = Vec::new();
    println!("{concurrent} requests of {EVENTS} events (about 1 MB) at once, twice, each way on a fresh server:");
    for via in ["/v1/events", "MAIA source"] {
        let server = Crmhook::start()?;
        let addr = server.addr;
        let idle = proc_status_kib(server.pid(), "VmRSS:") / 1024;
        let (path, signed) = if via == "MAIA source" {
            let source =
                admin(addr, "/v1/sources", &json!({"name": "bench MAIA", "kind": "maia", "maia_secret": MAIA_SECRET}))?;
            (format!("/in/{}", source["id"].as_str().context("source id")?), true)
        } else {
            ("/v1/events".to_owned(), false)
        };
        let maximizer = admin(addr, "/v1/sources", &json!({"name": "bench Maximizer", "kind": "maximizer"}))?;
        let probe_path = format!(
            "/in/{}?key={}",
            maximizer["id"].as_str().context("source id")?,
            maximizer["key"].as_str().context("source key")?
        );
        let mut rounds = Vec::new();
        for round in 0..2u64 {
            let requests: Vec<Vec<u8>> = (0..concurrent as u64)
                .map(|i| {
                    let b = body(round * concurrent as u64 + i);
                    let headers = if signed {
                        format!("X-Maia-Signature: {}\r\n", crmhook_core::sign::maia_signature(MAIA_SECRET, &b))
                    } else {
                        format!("Authorization: Bearer {INGEST}\r\n")
                    };
                    request(addr, &path, &headers, &b)
                })
                .collect();
            let stop = Arc::new(AtomicBool::new(false));
            let prober = probe(addr, probe_path.clone(), (rows.len() as u64 * 2 + round) << 32, stop.clone());
            let started = Instant::now();
            let statuses = post_all(addr, requests)?;
            let seconds = started.elapsed().as_secs_f64();
            stop.store(true, Ordering::Relaxed);
            let probes = prober.join().map_err(|_| anyhow::anyhow!("the probe panicked"))?;
            let slowest = probes.iter().copied().fold(0.0, f64::max);
            let ok = statuses.iter().filter(|s| matches!(s, 200 | 202)).count();
            let peak = proc_status_kib(server.pid(), "VmHWM:") / 1024;
            println!(
                "  {via:>12} round {}: peak RSS {peak} MiB (idle {idle}), all answered in {seconds:.1} s, {ok}/{concurrent} accepted; \
                 a Maximizer event meanwhile answered in {slowest:.0} ms at most ({} posted)",
                round + 1,
                probes.len()
            );
            rounds.push(json!({"peak_rss_mib": peak, "seconds": seconds, "accepted": ok,
                "maximizer_meanwhile": {"answered": probes.len(), "slowest_ms": slowest}}));
        }
        rows.push(json!({"via": via, "idle_rss_mib": idle, "rounds": rounds}));
    }
    Ok(json!({"batches": rows, "concurrent": concurrent, "events_per_request": EVENTS}))
}
