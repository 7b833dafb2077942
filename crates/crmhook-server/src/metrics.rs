//! Prometheus metrics (`GET /metrics`, text format 0.0.4). Counters live in process memory
//! (they restart at zero, as Prometheus expects of counters); the pending and dead gauges and
//! the log size are read from the store at scrape time. A target's last success is read from
//! the log when the process has seen none ([`Metrics::stored_health`]).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use crmhook_core::TargetId;
use crmhook_store::{Store, StoreError};

/// Upper bounds (seconds) of the attempt-duration histogram buckets.
const BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// A target's recent health, as seen since the process started.
#[derive(Debug, Clone, Copy, Default)]
pub struct Health {
    /// The last success this process saw (when its attempt ended); before the first, the one
    /// the log shows, with [`Metrics::stored_health`].
    pub last_success_ms: Option<u64>,
    pub failures_in_a_row: u64,
}

/// The outcomes an attempt is counted under, in `crmhook_deliveries_total`.
pub const OUTCOMES: [&str; 4] = ["delivered", "retry", "dead", "disabled"];

#[derive(Default)]
pub struct Metrics {
    /// Counters by event type; a new type takes the write lock once.
    ingested: RwLock<BTreeMap<String, Arc<AtomicU64>>>,
    /// Pieces of sources' requests kept in the quarantine, by source.
    rejected: RwLock<BTreeMap<String, Arc<AtomicU64>>>,
    /// Each target's counters; its actor holds them, so counting an attempt takes no lock.
    targets: RwLock<BTreeMap<String, Arc<TargetMetrics>>>,
    buckets: [AtomicU64; BUCKETS.len()],
    attempts: AtomicU64,
    attempt_ms_sum: AtomicU64,
}

/// One target's counters and health (atomics: its actor counts, scrapes read).
#[derive(Default)]
pub struct TargetMetrics {
    /// By outcome, in the order of [`OUTCOMES`].
    outcomes: [AtomicU64; OUTCOMES.len()],
    /// 0 until the first success.
    last_success_ms: AtomicU64,
    failures_in_a_row: AtomicU64,
}

impl TargetMetrics {
    /// An attempt ended with `outcome` (one of [`OUTCOMES`]) after `duration_ms`.
    pub fn attempt(&self, outcome: &'static str, duration_ms: u64) {
        if let Some(i) = OUTCOMES.iter().position(|o| *o == outcome) {
            self.outcomes[i].fetch_add(1, Ordering::Relaxed);
        }
        if outcome == "delivered" {
            self.last_success_ms.store(crmhook_core::time::now_ms(), Ordering::Relaxed);
            self.failures_in_a_row.store(0, Ordering::Relaxed);
        } else {
            self.failures_in_a_row.fetch_add(1, Ordering::Relaxed);
        }
        metrics().duration(duration_ms);
    }

    /// A success known from the store, kept unless this process has seen one.
    fn seed_last_success(&self, at_ms: u64) {
        let _ = self.last_success_ms.compare_exchange(0, at_ms, Ordering::Relaxed, Ordering::Relaxed);
    }

    fn health(&self) -> Health {
        let last = self.last_success_ms.load(Ordering::Relaxed);
        Health {
            last_success_ms: (last > 0).then_some(last),
            failures_in_a_row: self.failures_in_a_row.load(Ordering::Relaxed),
        }
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::default)
}

impl Metrics {
    /// An event of this type was accepted (not a duplicate).
    pub fn ingested(&self, event_type: &str) {
        entry(&self.ingested, event_type).fetch_add(1, Ordering::Relaxed);
    }

    /// `n` pieces of a source's request went to the quarantine.
    pub fn rejected(&self, source: &str, n: u64) {
        entry(&self.rejected, source).fetch_add(n, Ordering::Relaxed);
    }

    /// A target's counters, created on first use.
    pub fn target(&self, target: &str) -> Arc<TargetMetrics> {
        entry(&self.targets, target)
    }

    fn duration(&self, duration_ms: u64) {
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
        self.targets.read().ok().and_then(|m| m.get(target).map(|t| t.health())).unwrap_or_default()
    }

    /// A target's health, its last success read from the store's finished deliveries when this
    /// process has seen none (after a restart), and then kept: a restart does not lose it.
    pub fn stored_health(&self, store: &Store, target: &TargetId) -> Result<Health, StoreError> {
        let mut health = self.health(target.as_str());
        if health.last_success_ms.is_none() {
            if let Some(at_ms) = store.last_delivered_at(target)? {
                self.target(target.as_str()).seed_last_success(at_ms);
                health.last_success_ms = Some(at_ms);
            }
        }
        Ok(health)
    }

    /// The text exposition.
    pub fn render(&self, store: &Store) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP crmhook_events_ingested_total Events accepted into the log, by type.");
        let _ = writeln!(out, "# TYPE crmhook_events_ingested_total counter");
        if let Ok(m) = self.ingested.read() {
            for (t, n) in m.iter() {
                let n = n.load(Ordering::Relaxed);
                let _ = writeln!(out, "crmhook_events_ingested_total{{type=\"{}\"}} {n}", escape(t));
            }
        }
        let _ = writeln!(
            out,
            "# HELP crmhook_events_rejected_total Pieces of sources' requests kept in the quarantine, by source."
        );
        let _ = writeln!(out, "# TYPE crmhook_events_rejected_total counter");
        if let Ok(m) = self.rejected.read() {
            for (source, n) in m.iter() {
                let n = n.load(Ordering::Relaxed);
                let _ = writeln!(out, "crmhook_events_rejected_total{{source=\"{}\"}} {n}", escape(source));
            }
        }
        let _ = writeln!(out, "# HELP crmhook_deliveries_total Delivery attempts, by target and outcome.");
        let _ = writeln!(out, "# TYPE crmhook_deliveries_total counter");
        if let Ok(m) = self.targets.read() {
            for (target, counts) in m.iter() {
                let counts = OUTCOMES.iter().zip(&counts.outcomes).map(|(o, n)| (o, n.load(Ordering::Relaxed)));
                for (outcome, n) in counts.filter(|(_, n)| *n > 0) {
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

/// The value under `key`, created on first use: a shared lock for the lookup, the exclusive
/// one only to add a key.
fn entry<T: Default>(map: &RwLock<BTreeMap<String, Arc<T>>>, key: &str) -> Arc<T> {
    if let Some(found) = map.read().ok().and_then(|m| m.get(key).cloned()) {
        return found;
    }
    match map.write() {
        Ok(mut m) => m.entry(key.to_owned()).or_default().clone(),
        Err(_) => Arc::default(),
    }
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
