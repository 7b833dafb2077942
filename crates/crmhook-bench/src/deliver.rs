//! `crmhook-bench deliver`: delivery throughput and end-to-end latency, each next to its bare
//! limit, measured in one run on one machine:
//!
//! - deliveries/s to one fast target vs raw awc POSTs (16 in flight, like a target) to the
//!   same receiver;
//! - one event fanned out to 10 targets, deliveries/s, vs the same raw limit;
//! - end-to-end latency (acknowledgement → receiver) at a steady 1,000 events/s.
//!
//! For throughput the targets are paused (`enabled: false`) while the events are ingested and
//! resumed together, so the figure is delivery alone, not ingest. Each throughput figure is the
//! median of three rounds, crmhook and its baseline taking turns.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::soak::{event, Conn, Server, INGEST};

/// A fast receiver: answers 204 and notes when each recordId arrived.
struct Receiver {
    addr: SocketAddr,
    arrivals: Arc<Mutex<HashMap<String, Instant>>>,
    count: Arc<std::sync::atomic::AtomicU64>,
}

impl Receiver {
    fn start() -> anyhow::Result<Receiver> {
        let arrivals: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (a, c) = (arrivals.clone(), count.clone());
        let addr = crate::system::serve(move |_, body, at| {
            c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Some(tag) = crate::system::record_id(body) {
                a.lock().expect("lock").entry(tag).or_insert(at);
            }
            actix_web::HttpResponse::NoContent().finish()
        })?;
        Ok(Receiver { addr, arrivals, count })
    }

    fn count(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Raw awc POSTs of `n` event bodies to the receiver, `in_flight` at once: the limit of any
/// HTTP delivery from this process to that receiver.
fn raw_awc(addr: SocketAddr, n: usize, in_flight: usize) -> anyhow::Result<f64> {
    let url = format!("http://{addr}/raw");
    let result = std::thread::spawn(move || -> anyhow::Result<f64> {
        actix_rt::System::new().block_on(async move {
            let client = awc::Client::builder().disable_redirects().timeout(Duration::from_secs(10)).finish();
            let t0 = Instant::now();
            let next = std::rc::Rc::new(std::cell::Cell::new(0usize));
            let workers = (0..in_flight).map(|_| {
                let (client, url, next) = (client.clone(), url.clone(), next.clone());
                async move {
                    loop {
                        let i = next.get();
                        if i >= n {
                            break;
                        }
                        next.set(i + 1);
                        let body = event(&format!("raw{i}"));
                        let r =
                            client.post(&url).insert_header(("Content-Type", "application/json")).send_body(body).await;
                        if let Ok(mut r) = r {
                            let _ = r.body().await;
                        }
                    }
                }
            });
            futures_util::future::join_all(workers).await;
            Ok(n as f64 / t0.elapsed().as_secs_f64())
        })
    });
    result.join().map_err(|_| anyhow::anyhow!("raw awc thread panicked"))?
}

/// Creates `targets` targets on the receiver, each subscribed to everything, paused.
fn paused_targets(server: &Server, rcv: &Receiver, targets: usize) -> anyhow::Result<Vec<String>> {
    (0..targets)
        .map(|i| {
            let t = server.admin(
                "POST",
                "/v1/targets",
                &json!({"name": format!("bench{i}"), "url": format!("http://{}/t{i}", rcv.addr)}),
            )?;
            let id = t["id"].as_str().context("target id")?.to_owned();
            server.admin("POST", "/v1/subscriptions", &json!({"target_id": id}))?;
            server.admin("PATCH", &format!("/v1/targets/{id}"), &json!({"enabled": false}))?;
            Ok(id)
        })
        .collect()
}

fn ingest_batches(server: &Server, prefix: &str, n: usize) -> anyhow::Result<()> {
    let mut conn = Conn::new(server.addr);
    for b in 0..n.div_ceil(100) {
        let body = format!(
            "[{}]",
            (0..100.min(n - b * 100)).map(|i| event(&format!("{prefix}{b}_{i}"))).collect::<Vec<_>>().join(",")
        );
        let (status, text) = conn.request("POST", "/v1/events", INGEST, body.as_bytes())?;
        if status != 202 {
            bail!("ingest answered {status}: {}", String::from_utf8_lossy(&text));
        }
    }
    Ok(())
}

/// Resumes the targets and answers deliveries/s until the receiver has `total` more requests.
fn drain(server: &Server, rcv: &Receiver, targets: &[String], total: u64) -> anyhow::Result<f64> {
    let start_count = rcv.count();
    let ticks = server.thread_ticks();
    let own = crate::soak::thread_ticks(std::process::id());
    let t0 = Instant::now();
    for id in targets {
        server.admin("PATCH", &format!("/v1/targets/{id}"), &json!({"enabled": true}))?;
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while rcv.count() < start_count + total {
        if Instant::now() > deadline {
            bail!("only {} of {total} deliveries in 10 minutes", rcv.count() - start_count);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let elapsed = t0.elapsed().as_secs_f64();
    if std::env::var_os("CRMHOOK_BENCH_CPU").is_some() {
        // Where the server's CPU went during the drain, by thread name (% of one core).
        let (threads, sum) = cpu_by_thread(&ticks, &server.thread_ticks(), elapsed);
        let (bench, _) = cpu_by_thread(&own, &crate::soak::thread_ticks(std::process::id()), elapsed);
        println!(
            "    cpu during drain of {total} ({:.0}/s):{threads} | total {:.0}%, {:.1} us/delivery | bench:{bench}",
            total as f64 / elapsed,
            sum as f64 / elapsed,
            sum as f64 * 1e4 / total as f64
        );
    }
    Ok(total as f64 / elapsed)
}

/// Each thread's CPU between two readings of [`crate::soak::thread_ticks`], as " name N%" (of
/// one core), and the ticks in all.
fn cpu_by_thread(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
    elapsed: f64,
) -> (String, u64) {
    let mut line = String::new();
    let mut sum = 0;
    for (name, t) in after {
        let d = t - before.get(name).copied().unwrap_or(0);
        sum += d;
        if d > 0 {
            line += &format!(" {name} {:.0}%", d as f64 / elapsed);
        }
    }
    (line, sum)
}

use crate::{median, ROUNDS};

/// The `p` quantile (0–1) of sorted values (0 when there are none).
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted.get(((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len().max(1)) - 1).copied().unwrap_or(0.0)
}

pub fn run(events: usize) -> anyhow::Result<Value> {
    // awc's TLS side needs a process-wide crypto provider even for plain HTTP.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rcv = Receiver::start()?;
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path())?;

    // Throughput varies from run to run on a small machine: each figure is the median of
    // `ROUNDS` runs, crmhook and its baseline taking turns.
    let (mut ours_one, mut raw, mut ours_fan, mut raw_fan) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // One target.
        let one = paused_targets(&server, &rcv, 1)?;
        ingest_batches(&server, &format!("one{round}_"), events)?;
        ours_one.push(drain(&server, &rcv, &one, events as u64)?);
        server.admin("DELETE", &format!("/v1/targets/{}", one[0]), &json!({}))?;
        raw.push(raw_awc(rcv.addr, events, 16)?);
        // Fan-out: each event to 10 targets.
        let ten = paused_targets(&server, &rcv, 10)?;
        let fan_events = events / 10;
        ingest_batches(&server, &format!("fan{round}_"), fan_events)?;
        ours_fan.push(drain(&server, &rcv, &ten, (fan_events * 10) as u64)?);
        raw_fan.push(raw_awc(rcv.addr, events, 160)?);
        for id in &ten {
            server.admin("DELETE", &format!("/v1/targets/{id}"), &json!({}))?;
        }
    }
    let runs = json!({"one_target": {"crmhook": ours_one, "raw_awc": raw}, "ten_targets": {"crmhook": ours_fan, "raw_awc": raw_fan}});
    let (ours_one, raw, ours_fan, raw_fan) = (median(ours_one), median(raw), median(ours_fan), median(raw_fan));

    // End-to-end latency at a steady 1,000 events/s through one live target.
    let live = paused_targets(&server, &rcv, 1)?;
    server.admin("PATCH", &format!("/v1/targets/{}", live[0]), &json!({"enabled": true}))?;
    let n = 5_000;
    let mut acked = Vec::with_capacity(n);
    let mut conn = Conn::new(server.addr);
    let t0 = Instant::now();
    for i in 0..n {
        let due = t0 + Duration::from_micros(1_000 * i as u64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let tag = format!("lat{i}");
        let (status, _) = conn.request("POST", "/v1/events", INGEST, event(&tag).as_bytes())?;
        if status == 202 {
            acked.push((tag, Instant::now()));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let arrived = rcv.arrivals.lock().expect("lock");
        if acked.iter().all(|(t, _)| arrived.contains_key(t)) {
            break;
        }
        drop(arrived);
        std::thread::sleep(Duration::from_millis(20));
    }
    let arrivals = rcv.arrivals.lock().expect("lock");
    let mut latency: Vec<f64> = acked
        .iter()
        .filter_map(|(t, ack)| arrivals.get(t).map(|at| at.saturating_duration_since(*ack).as_secs_f64() * 1000.0))
        .collect();
    latency.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&latency, 0.50), percentile(&latency, 0.99));
    let peak_rss = server.peak_rss_kib();

    drop(arrivals);

    // 1,000 idle targets: one actor each, subscribed, owed nothing.
    let idle_dir = tempfile::tempdir()?;
    let idle = Server::start(idle_dir.path())?;
    let rss_empty = idle.rss_kib();
    for i in 0..1000 {
        let t = idle.admin(
            "POST",
            "/v1/targets",
            &json!({"name": format!("idle{i}"), "url": format!("http://{}/idle{i}", rcv.addr)}),
        )?;
        idle.admin("POST", "/v1/subscriptions", &json!({"target_id": t["id"], "event_types": ["ai_pause"]}))?;
    }
    let rss_idle = idle.rss_kib();

    println!("deliveries, crmhook vs raw awc POSTs to the same receiver (same machine, same run, median of {ROUNDS})");
    println!("  1 target:    {ours_one:>8.0}/s vs {raw:>8.0}/s  ({:.0}%)", ours_one / raw * 100.0);
    println!("  10 targets:  {ours_fan:>8.0}/s vs {raw_fan:>8.0}/s  ({:.0}%)", ours_fan / raw_fan * 100.0);
    println!("  end to end at 1,000 events/s: p50 {p50:.2} ms, p99 {p99:.2} ms ({} of {} measured)", latency.len(), n);
    println!("  1,000 idle targets: RSS {} MiB (empty server {} MiB)", rss_idle / 1024, rss_empty / 1024);
    println!("  peak RSS of the server over the delivery runs: {} MiB", peak_rss / 1024);
    Ok(json!({
        "events": events,
        "one_target": {"crmhook_per_s": ours_one, "raw_awc_per_s": raw, "ratio": ours_one / raw},
        "ten_targets": {"crmhook_per_s": ours_fan, "raw_awc_per_s": raw_fan, "ratio": ours_fan / raw_fan},
        "end_to_end_ms": {"p50": p50, "p99": p99, "measured": latency.len()},
        "idle_targets_1000_rss_mib": rss_idle / 1024,
        "peak_rss_mib": peak_rss / 1024,
        "runs": runs,
    }))
}
