//! What counting for the console's charts adds to the hot paths (`crmhook_dispatch::stats`):
//! `cargo run --release -p crmhook-dispatch --example stats_cost`. Prints ns per call of the
//! ingest count (`Metrics::ingested_at`), of the two ring adds alone, and of an attempt counted
//! for `/metrics` only (`TargetMetrics::attempt`, the path before the charts) and with its series
//! (`TargetMetrics::recorded`).

use std::hint::black_box;
use std::time::Instant;

use crmhook_core::{EventId, TargetId};
use crmhook_dispatch::feed::AttemptRecorded;
use crmhook_dispatch::metrics::Metrics;
use crmhook_dispatch::stats::IngestSeries;
use crmhook_store::AttemptResult;

const N: u64 = 10_000_000;
const T0: u64 = 1_700_000_000_000;

fn per_call(what: &str, mut f: impl FnMut(u64)) {
    let start = Instant::now();
    for i in 0..N {
        f(i);
    }
    println!("{what}: {:.1} ns", start.elapsed().as_nanos() as f64 / N as f64);
}

fn main() {
    let metrics = Metrics::new();
    let series = IngestSeries::default();
    let slot = series.slot("crm_field_update");
    let target = metrics.target("tgt_x");
    let attempt = AttemptRecorded {
        event_id: EventId::generate(),
        seq: 1,
        target_id: TargetId::generate(),
        n: 1,
        status_code: Some(200),
        result: AttemptResult::Delivered,
        duration_ms: 3,
        at_ms: T0,
        error: None,
        outcome: crmhook_core::retry::Outcome::Status(200),
        response: None,
        test: false,
    };
    for round in 1..=3 {
        println!("round {round}");
        // The time moves on by a minute every 60,000 calls: buckets are reused as in service.
        per_call("  an event counted (Metrics::ingested_at)", |i| metrics.ingested_at("crm_field_update", T0 + i));
        per_call("  the two ring adds alone (IngestSeries::add)", |i| series.add(T0 + i, slot));
        per_call("  an attempt, /metrics only (TargetMetrics::attempt)", |_| target.attempt("delivered", 3));
        per_call("  an attempt with its series (TargetMetrics::recorded)", |_| target.recorded(black_box(&attempt)));
    }
}
