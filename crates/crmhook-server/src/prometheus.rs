//! Prometheus metrics (`GET /metrics`, text format 0.0.4): the counters of the [`Metrics`]
//! handle (process memory: they restart at zero, as Prometheus expects of counters), and the
//! pending and dead gauges and the log's size, read from the store at scrape time (the
//! deliveries waiting for a retry from the target actors' counters).

use std::fmt::Write;

use crmhook_dispatch::metrics::{Metrics, OUTCOMES};
use crmhook_store::Log;

/// The text exposition.
pub fn render(metrics: &Metrics, store: &dyn Log) -> String {
    let snapshot = metrics.snapshot();
    let mut out = String::new();
    let _ = writeln!(out, "# HELP crmhook_events_ingested_total Events accepted into the log, by type.");
    let _ = writeln!(out, "# TYPE crmhook_events_ingested_total counter");
    for (t, n) in &snapshot.ingested {
        let _ = writeln!(out, "crmhook_events_ingested_total{{type=\"{}\"}} {n}", escape(t));
    }
    let _ = writeln!(
        out,
        "# HELP crmhook_events_rejected_total Pieces of sources' requests kept in the quarantine, by source."
    );
    let _ = writeln!(out, "# TYPE crmhook_events_rejected_total counter");
    for (source, n) in &snapshot.rejected {
        let _ = writeln!(out, "crmhook_events_rejected_total{{source=\"{}\"}} {n}", escape(source));
    }
    let _ = writeln!(out, "# HELP crmhook_deliveries_total Delivery attempts, by target and outcome.");
    let _ = writeln!(out, "# TYPE crmhook_deliveries_total counter");
    for (target, counts) in &snapshot.deliveries {
        for (outcome, n) in OUTCOMES.iter().zip(counts).filter(|(_, n)| **n > 0) {
            let _ =
                writeln!(out, "crmhook_deliveries_total{{target=\"{}\",outcome=\"{outcome}\"}} {n}", escape(target));
        }
    }
    let _ = writeln!(out, "# HELP crmhook_attempt_duration_seconds How long delivery attempts took.");
    let _ = writeln!(out, "# TYPE crmhook_attempt_duration_seconds histogram");
    for (bound, n) in &snapshot.buckets {
        let _ = writeln!(out, "crmhook_attempt_duration_seconds_bucket{{le=\"{bound}\"}} {n}");
    }
    let count = snapshot.attempts;
    let _ = writeln!(out, "crmhook_attempt_duration_seconds_bucket{{le=\"+Inf\"}} {count}");
    let sum = snapshot.attempt_ms_sum as f64 / 1000.0;
    let _ = writeln!(out, "crmhook_attempt_duration_seconds_sum {sum}");
    let _ = writeln!(out, "crmhook_attempt_duration_seconds_count {count}");
    let _ = writeln!(out, "# HELP crmhook_pending_deliveries Deliveries owed and not yet finished, by target.");
    let _ = writeln!(out, "# TYPE crmhook_pending_deliveries gauge");
    let (mut dead, mut retrying) = (String::new(), String::new());
    for target in store.targets().unwrap_or_default() {
        if let Ok((p, d)) = store.delivery_counts(&target.id) {
            let _ = writeln!(out, "crmhook_pending_deliveries{{target=\"{}\"}} {p}", target.id);
            let _ = writeln!(dead, "crmhook_dead_deliveries{{target=\"{}\"}} {d}", target.id);
            let r = metrics.health(target.id.as_str()).retrying;
            let _ = writeln!(retrying, "crmhook_retrying_deliveries{{target=\"{}\"}} {r}", target.id);
        }
    }
    let _ = writeln!(out, "# HELP crmhook_dead_deliveries Deliveries whose retry schedule is spent, by target.");
    let _ = writeln!(out, "# TYPE crmhook_dead_deliveries gauge");
    out.push_str(&dead);
    let _ = writeln!(
        out,
        "# HELP crmhook_retrying_deliveries Pending deliveries that failed and wait for their next attempt, by target."
    );
    let _ = writeln!(out, "# TYPE crmhook_retrying_deliveries gauge");
    out.push_str(&retrying);
    let scalars: [(&str, &str, &str, u64); 7] = [
        ("crmhook_auth_failures_total", "counter", "Requests refused for a missing or wrong token (401).", snapshot.auth_failures),
        (
            "crmhook_auth_rate_limited_total",
            "counter",
            "Requests refused (429) because their address or token failed too often.",
            snapshot.auth_rate_limited,
        ),
        (
            "crmhook_delivery_lag_ms",
            "gauge",
            "How old events are when live targets get them (the largest, over targets that delivered in the last second).",
            snapshot.delivery_lag_ms,
        ),
        (
            "crmhook_ingest_backpressured_total",
            "counter",
            "Ingest requests refused (503) because deliveries were further behind than max_delivery_lag_ms.",
            snapshot.backpressured,
        ),
        ("crmhook_log_bytes", "gauge", "Bytes the event log takes on disk.", store.size_on_disk()),
        ("crmhook_log_head_seq", "gauge", "The seq of the newest event.", store.head()),
        (
            "crmhook_test_events_total",
            "counter",
            "Test events sent to targets (POST /v1/targets/{id}/test); not in crmhook_events_ingested_total.",
            snapshot.test_events,
        ),
    ];
    for (name, kind, help, value) in scalars {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    }
    out
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
