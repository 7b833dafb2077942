//! `crmhook-bench outage`: a receiver's outage as a user meets it, on the release binary. A CRM
//! posts one event at a time at a steady rate to one target with the default retry schedule;
//! its receiver answers 500 for the first `outage` seconds, then 200. Reported: how soon the
//! events posted once it is back arrive (from just before each POST to the first 200), and how
//! many of the outage's events were attempted while it lasted and delivered by the end of the
//! run (the rest wait for their next retry, minutes away on the default schedule).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::deliver::percentile;
use crate::soak::{event, Conn, Server, INGEST};

/// What the receiver saw of each event (by recordId): whether it was attempted, and when it
/// first answered 200.
#[derive(Default)]
struct Seen {
    attempted: HashMap<String, Instant>,
    delivered: HashMap<String, Instant>,
}

/// A receiver that answers 500 while `down`, else 200.
struct Receiver {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    down: Arc<AtomicBool>,
}

impl Receiver {
    fn start() -> anyhow::Result<Receiver> {
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let down = Arc::new(AtomicBool::new(true));
        let (s, d) = (seen.clone(), down.clone());
        let addr = crate::system::serve(move |_, body, at| {
            let down = d.load(Ordering::Relaxed);
            if let Some(tag) = crate::system::record_id(body) {
                let mut seen = s.lock().expect("lock");
                seen.attempted.entry(tag.clone()).or_insert(at);
                if !down {
                    seen.delivered.entry(tag).or_insert(at);
                }
            }
            if down {
                actix_web::HttpResponse::InternalServerError().finish()
            } else {
                actix_web::HttpResponse::Ok().finish()
            }
        })?;
        Ok(Receiver { addr, seen, down })
    }
}

/// Runs the outage; answers its JSON report.
pub fn run(rate: u64, seconds: u64, outage: u64) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir()?;
    let rcv = Receiver::start()?;
    let server = Server::start(dir.path())?;
    let url = format!("http://{}/hook", rcv.addr);
    let t = server.admin("POST", "/v1/targets", &json!({"name": "outage", "url": url}))?;
    server.admin("POST", "/v1/subscriptions", &json!({"target_id": t["id"]}))?;

    let mut conn = Conn::new(server.addr);
    let mut posted: Vec<(String, Instant)> = Vec::new();
    let begun = Instant::now();
    let back_at = begun + Duration::from_secs(outage);
    let end = begun + Duration::from_secs(seconds);
    let mut back = false;
    for i in 0.. {
        let due = begun + Duration::from_secs_f64(i as f64 / rate.max(1) as f64);
        if due >= end {
            break;
        }
        let now = Instant::now();
        if now < due {
            std::thread::sleep(due - now);
        }
        if !back && Instant::now() >= back_at {
            rcv.down.store(false, Ordering::Relaxed);
            back = true;
        }
        let tag = format!("outage{i}");
        let body = event(&tag);
        let at = Instant::now();
        let (status, answer) = conn.request("POST", "/v1/events", INGEST, body.as_bytes())?;
        anyhow::ensure!(status == 202, "POST /v1/events: {status} {}", String::from_utf8_lossy(&answer));
        posted.push((tag, at));
    }
    rcv.down.store(false, Ordering::Relaxed);
    // The last events' deliveries, and the retries due meanwhile.
    std::thread::sleep(Duration::from_secs(3));

    let seen = rcv.seen.lock().expect("lock");
    let (during, after): (Vec<_>, Vec<_>) = posted.iter().partition(|(_, at)| *at < back_at);
    let mut latencies: Vec<f64> = after
        .iter()
        .filter_map(|(tag, at)| seen.delivered.get(tag).map(|d| d.saturating_duration_since(*at).as_secs_f64() * 1e3))
        .collect();
    latencies.sort_by(f64::total_cmp);
    let after_delivered = latencies.len();
    let attempted_during_outage =
        during.iter().filter(|(tag, _)| seen.attempted.get(tag).is_some_and(|at| *at < back_at)).count();
    let during_delivered = during.iter().filter(|(tag, _)| seen.delivered.contains_key(tag)).count();
    // None when nothing arrived.
    let ms = |p: f64| (!latencies.is_empty()).then(|| (percentile(&latencies, p) * 100.0).round() / 100.0);
    let shown = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), |v| format!("{v} ms"));
    println!(
        "outage: {} events at {rate}/s for {seconds} s, the receiver answering 500 for the first {outage} s \
         (default retry schedule)",
        posted.len()
    );
    println!(
        "  posted once it was back: {}, delivered {after_delivered}; from POST to arrival p50 {}, p99 {}, max {}",
        after.len(),
        shown(ms(0.5)),
        shown(ms(0.99)),
        shown(ms(1.0))
    );
    println!(
        "  posted during the outage: {}, attempted during it {attempted_during_outage}, delivered by the end {during_delivered}",
        during.len()
    );
    Ok(json!({
        "rate": rate, "seconds": seconds, "outage_s": outage, "posted": posted.len(),
        "after": {"posted": after.len(), "delivered": after_delivered,
                  "p50_ms": ms(0.5), "p99_ms": ms(0.99), "max_ms": ms(1.0)},
        "during": {"posted": during.len(), "attempted": attempted_during_outage, "delivered": during_delivered},
    }))
}
