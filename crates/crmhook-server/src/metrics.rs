//! Prometheus metrics (`GET /metrics`, text format 0.0.4). Counters live in process memory
//! (they restart at zero, as Prometheus expects of counters); the pending and dead gauges and
//! the log size are read from the store at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use crmhook_store::Store;

/// Upper bounds (seconds) of the attempt-duration histogram buckets.
const BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// A target's recent health, as seen since the process started.
#[derive(Debug, Clone, Copy, Default)]
pub struct Health {
    pub last_success_ms: Option<u64>,
    pub failures_in_a_row: u64,
}

#[derive(Default)]
pub struct Metrics {
    health: Mutex<BTreeMap<String, Health>>,
    ingested: Mutex<BTreeMap<String, u64>>,
    /// target → outcome → count (keyed by target first, so counting needs no allocation).
    deliveries: Mutex<BTreeMap<String, BTreeMap<&'static str, u64>>>,
    buckets: [AtomicU64; BUCKETS.len()],
    attempts: AtomicU64,
    attempt_ms_sum: AtomicU64,
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::default)
}

impl Metrics {
    /// An event of this type was accepted (not a duplicate).
    pub fn ingested(&self, event_type: &str) {
        if let Ok(mut m) = self.ingested.lock() {
            *m.entry(event_type.to_owned()).or_insert(0) += 1;
        }
    }

    /// An attempt to `target` ended with `outcome` (`delivered`, `retry`, `dead`, `disabled`)
    /// after `duration_ms`.
    pub fn attempt(&self, target: &str, outcome: &'static str, duration_ms: u64) {
        if let Ok(mut m) = self.deliveries.lock() {
            if !m.contains_key(target) {
                m.insert(target.to_owned(), BTreeMap::new());
            }
            if let Some(counts) = m.get_mut(target) {
                *counts.entry(outcome).or_insert(0) += 1;
            }
        }
        if let Ok(mut h) = self.health.lock() {
            if !h.contains_key(target) {
                h.insert(target.to_owned(), Health::default());
            }
            let Some(h) = h.get_mut(target) else { return };
            if outcome == "delivered" {
                h.last_success_ms = Some(crmhook_core::time::now_ms());
                h.failures_in_a_row = 0;
            } else {
                h.failures_in_a_row += 1;
            }
        }
        let seconds = duration_ms as f64 / 1000.0;
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.attempts.fetch_add(1, Ordering::Relaxed);
        self.attempt_ms_sum.fetch_add(duration_ms, Ordering::Relaxed);
    }

    /// A target's health since the process started.
    pub fn health(&self, target: &str) -> Health {
        self.health.lock().ok().and_then(|h| h.get(target).copied()).unwrap_or_default()
    }

    /// The text exposition.
    pub fn render(&self, store: &Store) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP crmhook_events_ingested_total Events accepted into the log, by type.");
        let _ = writeln!(out, "# TYPE crmhook_events_ingested_total counter");
        if let Ok(m) = self.ingested.lock() {
            for (t, n) in m.iter() {
                let _ = writeln!(out, "crmhook_events_ingested_total{{type=\"{}\"}} {n}", escape(t));
            }
        }
        let _ = writeln!(out, "# HELP crmhook_deliveries_total Delivery attempts, by target and outcome.");
        let _ = writeln!(out, "# TYPE crmhook_deliveries_total counter");
        if let Ok(m) = self.deliveries.lock() {
            for (target, counts) in m.iter() {
                for (outcome, n) in counts {
                    let _ = writeln!(
                        out,
                        "crmhook_deliveries_total{{target=\"{}\",outcome=\"{outcome}\"}} {n}",
                        escape(target)
                    );
                }
            }
        }
        let _ = writeln!(out, "# HELP crmhook_attempt_duration_seconds How long delivery attempts took.");
        let _ = writeln!(out, "# TYPE crmhook_attempt_duration_seconds histogram");
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "crmhook_attempt_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.attempts.load(Ordering::Relaxed);
        let _ = writeln!(out, "crmhook_attempt_duration_seconds_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.attempt_ms_sum.load(Ordering::Relaxed) as f64 / 1000.0;
        let _ = writeln!(out, "crmhook_attempt_duration_seconds_sum {sum}");
        let _ = writeln!(out, "crmhook_attempt_duration_seconds_count {count}");
        let _ = writeln!(out, "# HELP crmhook_pending_deliveries Deliveries owed and not yet finished, by target.");
        let _ = writeln!(out, "# TYPE crmhook_pending_deliveries gauge");
        let mut dead = String::new();
        for target in store.targets().unwrap_or_default() {
            if let Ok((p, d)) = store.delivery_counts(&target.id) {
                let _ = writeln!(out, "crmhook_pending_deliveries{{target=\"{}\"}} {p}", target.id);
                let _ = writeln!(dead, "crmhook_dead_deliveries{{target=\"{}\"}} {d}", target.id);
            }
        }
        let _ = writeln!(out, "# HELP crmhook_dead_deliveries Deliveries whose retry schedule is spent, by target.");
        let _ = writeln!(out, "# TYPE crmhook_dead_deliveries gauge");
        out.push_str(&dead);
        let _ = writeln!(out, "# HELP crmhook_log_bytes Bytes the event log takes on disk.");
        let _ = writeln!(out, "# TYPE crmhook_log_bytes gauge");
        let _ = writeln!(out, "crmhook_log_bytes {}", store.size_on_disk());
        let _ = writeln!(out, "# HELP crmhook_log_head_seq The seq of the newest event.");
        let _ = writeln!(out, "# TYPE crmhook_log_head_seq gauge");
        let _ = writeln!(out, "crmhook_log_head_seq {}", store.head());
        out
    }
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
