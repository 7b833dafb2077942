//! Bounded memory: a target that is down while a large backlog piles up holds a window in
//! memory, not the backlog, and drains it when it comes back. A test binary of its own.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

/// The stated memory bound for a 100k-event backlog (the process's whole resident set).
const BACKLOG_RSS_BOUND_KIB: u64 = 200 * 1024;

#[test]
fn a_target_down_for_100k_events_holds_a_window_and_drains() {
    const EVENTS: usize = 100_000;
    const BATCH: usize = 500;
    let server = Server::start();
    let rcv = Receiver::start();
    rcv.program("/down", &[], status(503));
    let schedule: Vec<u64> = vec![1000; 50];
    server.wire(&rcv.url("/down"), Some(json!({})), json!({"retry_schedule_ms": schedule}));
    let url = server.url("/v1/events");
    let bearer = format!("Bearer {INGEST}");
    let rss_before = server.rss_kib();
    let mut rss_max = rss_before;
    let started = Instant::now();
    for b in 0..EVENTS / BATCH {
        let events: Vec<String> = (0..BATCH)
            .map(|i| {
                format!(
                    r#"{{"eventType":"crm_field_update","recordId":"bk_{b}_{i}","kanbanId":"kanban_1","fieldName":"Email","newValue":"v{i}@example.com"}}"#
                )
            })
            .collect();
        let body = format!("[{}]", events.join(","));
        let r = http(
            "POST",
            &url,
            &[("Content-Type", "application/json"), ("Authorization", &bearer)],
            Some(body.as_bytes()),
        );
        assert_eq!(r.status, 202, "{}", r.text);
        if b % 10 == 0 {
            rss_max = rss_max.max(server.rss_kib());
        }
    }
    let ingest_time = started.elapsed();
    rss_max = rss_max.max(server.rss_kib());
    // While it is down, the target holds at most its window of deliveries.
    let tried_while_down = rcv.tags("/down").into_iter().collect::<std::collections::HashSet<_>>().len();
    rcv.set_default("/down", status(200));
    let drain_started = Instant::now();
    let deadline = drain_started + Duration::from_secs(300);
    // The resident set is sampled at every 2,000 events delivered.
    for delivered in (2000..=EVENTS).step_by(2000) {
        rcv.wait_distinct_delivered("/down", delivered, deadline.saturating_duration_since(Instant::now()));
        rss_max = rss_max.max(server.rss_kib());
    }
    let drain_time = drain_started.elapsed();
    let delivered = rcv.tag_counts("/down");
    eprintln!(
        "backlog: {EVENTS} events ingested in {ingest_time:?}; {tried_while_down} distinct events tried while down; \
         drained in {drain_time:?}; RSS before {} MiB, max {} MiB",
        rss_before / 1024,
        rss_max / 1024
    );
    assert_eq!(delivered.len(), EVENTS);
    assert!(tried_while_down <= 1024, "the target read past its window while down: {tried_while_down}");
    assert!(rss_max <= BACKLOG_RSS_BOUND_KIB, "RSS {} MiB over the bound", rss_max / 1024);
}
