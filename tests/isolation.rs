//! Isolation: a target that hangs does not change another target's delivery latency. A test
//! binary of its own, so that no other suite's load runs beside it.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// The stated bound: with a target hanging on every request, another target's p99 delivery
/// latency (acknowledgement → receiver) stays under this, in a debug build on 2 cores.
const FAST_P99_BOUND: Duration = Duration::from_millis(150);

#[test]
fn a_hanging_target_does_not_slow_a_fast_one() {
    let server = Server::start();
    let rcv = Receiver::start();
    rcv.program("/hang", &[], delayed(200, Duration::from_secs(60)));
    server.wire(&rcv.url("/hang"), Some(json!({})), json!({"timeout_ms": 20000, "retry_schedule_ms": [1000]}));
    server.wire(&rcv.url("/fast"), Some(json!({})), json!({}));
    let mut acked_at = HashMap::new();
    let mut ack_latency = Vec::new();
    for _ in 0..400 {
        let ev = maia("crm_field_update", json!({}));
        let t0 = Instant::now();
        server.post_ok(&ev);
        ack_latency.push(t0.elapsed());
        acked_at.insert(ev["recordId"].as_str().expect("tag").to_owned(), Instant::now());
        // About 100 events/s: a steady load, not a burst.
        std::thread::sleep(Duration::from_millis(10));
    }
    let got = rcv.wait_count("/fast", 400, Duration::from_secs(30));
    let mut latency: Vec<Duration> =
        got.iter().filter_map(|r| acked_at.get(&r.tag).map(|acked| r.at.saturating_duration_since(*acked))).collect();
    latency.sort();
    ack_latency.sort();
    let hanging = rcv.count("/hang");
    let (p50, p99) = (percentile(&latency, 0.50), percentile(&latency, 0.99));
    eprintln!(
        "isolation: fast target p50 {p50:?} p99 {p99:?} over {} deliveries; ingest ack p99 {:?}; {hanging} requests hanging on the other target",
        latency.len(),
        percentile(&ack_latency, 0.99)
    );
    assert_eq!(latency.len(), 400);
    assert_eq!(hanging, 16, "the hanging target should have exactly its in-flight limit of attempts open");
    assert!(p99 <= FAST_P99_BOUND, "fast target p99 {p99:?} over the bound {FAST_P99_BOUND:?}");
}
