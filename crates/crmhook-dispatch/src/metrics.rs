//! The process's counters, behind one [`Metrics`] handle: the server creates it at start and
//! passes it (an `Arc`) to the router, which gives each target actor its own
//! [`TargetMetrics`], and to the API, which counts ingest and the quarantine and renders them
//! all at `GET /metrics`. Counters live in process memory (they restart at zero, as Prometheus
//! expects of counters). A target's last success is read from the log when the process has
//! seen none ([`Metrics::stored_health`]). The same counting paths feed the console's charts
//! ([`crate::stats`]): each target's attempts and the events logged by type, by minute and
//! quarter hour.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crmhook_core::TargetId;
use crmhook_store::{AttemptResult, Log, StoreError};

use crate::feed::AttemptRecorded;
use crate::stats::{IngestSeries, TargetSeries};
use crate::window::Retries;

/// Upper bounds (seconds) of the attempt-duration histogram buckets.
pub const BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// A target's recent health, as seen since the process started.
#[derive(Debug, Clone, Copy, Default)]
pub struct Health {
    /// The last success this process saw (when its attempt ended); before the first, the one
    /// the log shows, with [`Metrics::stored_health`].
    pub last_success_ms: Option<u64>,
    pub failures_in_a_row: u64,
    /// While the target's window is full of deliveries waiting for retries and newer events wait
    /// behind them: when the next retry is due (see `Window::blocked_until`).
    pub blocked_until_ms: Option<u64>,
    /// Deliveries that failed and wait for their next attempt, and when the first is due (see
    /// `Window::retries`).
    pub retrying: u64,
    pub next_retry_ms: Option<u64>,
}

/// The outcomes an attempt is counted under, in `crmhook_deliveries_total`.
pub const OUTCOMES: [&str; 4] = ["delivered", "retry", "dead", "disabled"];

/// The outcome an attempt that led to `result` is counted under (one of [`OUTCOMES`]).
pub fn outcome(result: &AttemptResult) -> &'static str {
    match result {
        AttemptResult::Delivered => "delivered",
        AttemptResult::Retrying { .. } => "retry",
        AttemptResult::Dead => "dead",
        AttemptResult::TargetDisabled => "disabled",
    }
}

/// The process's counters (a handle: share it as `Arc<Metrics>`).
#[derive(Default)]
pub struct Metrics {
    /// Counters by event type; a new type takes the write lock once.
    ingested: RwLock<BTreeMap<String, Arc<TypeCount>>>,
    /// The events logged by type, by minute and quarter hour (the console's charts).
    ingest: IngestSeries,
    /// Pieces of sources' requests kept in the quarantine, by source.
    rejected: RwLock<BTreeMap<String, Arc<AtomicU64>>>,
    /// Each target's counters; its actor holds them, so counting an attempt takes no lock.
    targets: RwLock<BTreeMap<String, Arc<TargetMetrics>>>,
    /// The attempt-duration histogram, shared with every target's counters.
    durations: Arc<Durations>,
    /// Requests to the API refused for a missing or wrong token (401).
    auth_failures: AtomicU64,
    /// Requests refused (429) because their client or key failed too often.
    auth_rate_limited: AtomicU64,
    /// Ingest requests refused (503) because deliveries were too far behind.
    backpressured: AtomicU64,
    /// Test events sent (`POST /v1/targets/{id}/test`): counted here, not as ingested events
    /// nor as a target's deliveries.
    test_events: AtomicU64,
}

/// The events of one type accepted, and the type's slot in the ingest series.
struct TypeCount {
    n: AtomicU64,
    slot: usize,
}

/// How long attempts took, over all targets.
#[derive(Default)]
struct Durations {
    buckets: [AtomicU64; BUCKETS.len()],
    attempts: AtomicU64,
    attempt_ms_sum: AtomicU64,
}

impl Durations {
    fn add(&self, duration_ms: u64) {
        let seconds = duration_ms as f64 / 1000.0;
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.attempts.fetch_add(1, Ordering::Relaxed);
        self.attempt_ms_sum.fetch_add(duration_ms, Ordering::Relaxed);
    }
}

/// How long a target's lag stays telling after its last delivery: a target that delivered
/// nothing for this long is idle (or failing), not behind.
pub const LAG_FRESH_MS: u64 = 1_000;

/// One target's counters and health (atomics: its actor counts, scrapes read).
pub struct TargetMetrics {
    /// By outcome, in the order of [`OUTCOMES`].
    outcomes: [AtomicU64; OUTCOMES.len()],
    /// How old the event of its last delivery was when it was delivered (ms), and when.
    lag_ms: AtomicU64,
    lag_at_ms: AtomicU64,
    /// 0 until the first success.
    last_success_ms: AtomicU64,
    failures_in_a_row: AtomicU64,
    /// 0 when not blocked by retries waiting.
    blocked_until_ms: AtomicU64,
    /// Deliveries waiting for a retry, and when the first is due (0: none).
    retrying: AtomicU64,
    next_retry_ms: AtomicU64,
    durations: Arc<Durations>,
    /// Its attempts by minute and quarter hour, and its last failure (the console's charts).
    series: TargetSeries,
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
        self.durations.add(duration_ms);
    }

    /// An attempt's record was written: counts it by outcome ([`TargetMetrics::attempt`]) and
    /// in the target's series.
    pub fn recorded(&self, attempt: &AttemptRecorded) {
        self.attempt(attempt.outcome(), attempt.duration_ms);
        self.series.attempt(attempt.at_ms, &attempt.result, attempt.status_code, attempt.error.as_deref());
    }

    /// Whether (until when) the target's window is blocked by retries waiting; its actor says
    /// after every pump.
    pub fn blocked_until(&self, until_ms: Option<u64>) {
        self.blocked_until_ms.store(until_ms.unwrap_or(0), Ordering::Relaxed);
    }

    /// The deliveries waiting for a retry; its actor says after every pump.
    pub fn retries(&self, retries: Retries) {
        self.retrying.store(retries.waiting as u64, Ordering::Relaxed);
        self.next_retry_ms.store(retries.next_at_ms.unwrap_or(0), Ordering::Relaxed);
    }

    /// Its attempts by minute and quarter hour, and its last failure.
    pub fn series(&self) -> &TargetSeries {
        &self.series
    }

    /// A delivery of an event logged at `received_at_ms` succeeded at `now_ms`: how far behind
    /// ingest this target is.
    pub fn delivered_event(&self, received_at_ms: u64, now_ms: u64) {
        self.lag_ms.store(now_ms.saturating_sub(received_at_ms), Ordering::Relaxed);
        self.lag_at_ms.store(now_ms, Ordering::Relaxed);
    }

    /// The target's lag, if it delivered something in the last [`LAG_FRESH_MS`].
    fn fresh_lag(&self, now_ms: u64) -> Option<u64> {
        let at = self.lag_at_ms.load(Ordering::Relaxed);
        (at > 0 && now_ms.saturating_sub(at) <= LAG_FRESH_MS).then(|| self.lag_ms.load(Ordering::Relaxed))
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
            blocked_until_ms: Some(self.blocked_until_ms.load(Ordering::Relaxed)).filter(|at| *at > 0),
            retrying: self.retrying.load(Ordering::Relaxed),
            next_retry_ms: Some(self.next_retry_ms.load(Ordering::Relaxed)).filter(|at| *at > 0),
        }
    }
}

impl Metrics {
    /// A new set of counters, all at zero.
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    /// An event of this type was accepted (not a duplicate), now.
    pub fn ingested(&self, event_type: &str) {
        self.ingested_at(event_type, crmhook_core::time::now_ms());
    }

    /// An event of this type was accepted at `at_ms`: counted, and added to the ingest series.
    pub fn ingested_at(&self, event_type: &str, at_ms: u64) {
        let count = entry(&self.ingested, event_type, || TypeCount {
            n: AtomicU64::new(0),
            slot: self.ingest.slot(event_type),
        });
        count.n.fetch_add(1, Ordering::Relaxed);
        self.ingest.add(at_ms, count.slot);
    }

    /// The events logged by type, by minute and quarter hour.
    pub fn ingest_series(&self) -> &IngestSeries {
        &self.ingest
    }

    /// `n` pieces of a source's request went to the quarantine.
    pub fn rejected(&self, source: &str, n: u64) {
        entry(&self.rejected, source, AtomicU64::default).fetch_add(n, Ordering::Relaxed);
    }

    /// A request to the API was refused for a missing or wrong token.
    pub fn auth_failed(&self) {
        self.auth_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// A request was refused because its client or key failed authentication too often.
    pub fn auth_rate_limited(&self) {
        self.auth_rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    /// An ingest request was refused because deliveries were too far behind.
    pub fn backpressured(&self) {
        self.backpressured.fetch_add(1, Ordering::Relaxed);
    }

    /// A test event was sent to a target.
    pub fn test_event(&self) {
        self.test_events.fetch_add(1, Ordering::Relaxed);
    }

    /// A target's counters, created on first use.
    pub fn target(&self, target: &str) -> Arc<TargetMetrics> {
        entry(&self.targets, target, || TargetMetrics {
            outcomes: Default::default(),
            lag_ms: AtomicU64::new(0),
            lag_at_ms: AtomicU64::new(0),
            last_success_ms: AtomicU64::new(0),
            failures_in_a_row: AtomicU64::new(0),
            blocked_until_ms: AtomicU64::new(0),
            retrying: AtomicU64::new(0),
            next_retry_ms: AtomicU64::new(0),
            durations: self.durations.clone(),
            series: TargetSeries::default(),
        })
    }

    /// A target's counters, if it has any.
    pub fn target_if_counted(&self, target: &str) -> Option<Arc<TargetMetrics>> {
        self.targets.read().ok().and_then(|m| m.get(target).cloned())
    }

    /// Every target's counters.
    pub fn targets_counted(&self) -> Vec<(String, Arc<TargetMetrics>)> {
        self.targets.read().map(|m| m.iter().map(|(k, t)| (k.clone(), t.clone())).collect()).unwrap_or_default()
    }

    /// Drops a deleted target's counters (its series and its lines in `GET /metrics`).
    pub fn forget_target(&self, target: &str) {
        if let Ok(mut m) = self.targets.write() {
            m.remove(target);
        }
    }

    /// How far the live targets are behind ingest: the largest age an event had when it was
    /// delivered, over the targets that delivered something in the last [`LAG_FRESH_MS`]
    /// (a failing or idle target does not count). 0 when none did.
    pub fn delivery_lag_ms(&self, now_ms: u64) -> u64 {
        self.targets.read().map(|m| m.values().filter_map(|t| t.fresh_lag(now_ms)).max().unwrap_or(0)).unwrap_or(0)
    }

    /// A target's health since the process started.
    pub fn health(&self, target: &str) -> Health {
        self.targets.read().ok().and_then(|m| m.get(target).map(|t| t.health())).unwrap_or_default()
    }

    /// A target's health, its last success read from the store's finished deliveries when this
    /// process has seen none (after a restart), and then kept: a restart does not lose it.
    pub fn stored_health(&self, store: &dyn Log, target: &TargetId) -> Result<Health, StoreError> {
        let mut health = self.health(target.as_str());
        if health.last_success_ms.is_none() {
            if let Some(at_ms) = store.last_delivered_at(target)? {
                self.target(target.as_str()).seed_last_success(at_ms);
                health.last_success_ms = Some(at_ms);
            }
        }
        Ok(health)
    }

    /// The counters as they are now, for the exposition (the edge's `GET /metrics`).
    pub fn snapshot(&self) -> Snapshot {
        let ingested = self
            .ingested
            .read()
            .map(|m| m.iter().map(|(k, c)| (k.clone(), c.n.load(Ordering::Relaxed))).collect())
            .unwrap_or_default();
        let rejected = self
            .rejected
            .read()
            .map(|m| m.iter().map(|(k, n)| (k.clone(), n.load(Ordering::Relaxed))).collect())
            .unwrap_or_default();
        let deliveries = self
            .targets
            .read()
            .map(|m| {
                m.iter()
                    .map(|(k, t)| (k.clone(), std::array::from_fn(|i| t.outcomes[i].load(Ordering::Relaxed))))
                    .collect()
            })
            .unwrap_or_default();
        Snapshot {
            ingested,
            rejected,
            deliveries,
            buckets: BUCKETS
                .iter()
                .zip(&self.durations.buckets)
                .map(|(b, n)| (*b, n.load(Ordering::Relaxed)))
                .collect(),
            attempts: self.durations.attempts.load(Ordering::Relaxed),
            attempt_ms_sum: self.durations.attempt_ms_sum.load(Ordering::Relaxed),
            auth_failures: self.auth_failures.load(Ordering::Relaxed),
            auth_rate_limited: self.auth_rate_limited.load(Ordering::Relaxed),
            backpressured: self.backpressured.load(Ordering::Relaxed),
            test_events: self.test_events.load(Ordering::Relaxed),
            delivery_lag_ms: self.delivery_lag_ms(crmhook_core::time::now_ms()),
        }
    }
}

/// The counters at one moment, sorted by key.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Events accepted, by type.
    pub ingested: Vec<(String, u64)>,
    /// Pieces of sources' requests quarantined, by source.
    pub rejected: Vec<(String, u64)>,
    /// Attempts by target, counted by outcome in the order of [`OUTCOMES`].
    pub deliveries: Vec<(String, [u64; OUTCOMES.len()])>,
    /// The attempt-duration histogram: (upper bound in seconds, attempts at most that long).
    pub buckets: Vec<(f64, u64)>,
    pub attempts: u64,
    pub attempt_ms_sum: u64,
    /// Requests refused for a missing or wrong token.
    pub auth_failures: u64,
    /// Requests refused because their client or key failed too often.
    pub auth_rate_limited: u64,
    /// Ingest requests refused because deliveries were too far behind (`max_delivery_lag_ms`).
    pub backpressured: u64,
    /// How far the live targets are behind ingest ([`Metrics::delivery_lag_ms`]).
    pub delivery_lag_ms: u64,
    /// Test events sent ([`Metrics::test_event`]).
    pub test_events: u64,
}

/// The value under `key`, created on first use: a shared lock for the lookup, the exclusive
/// one only to add a key.
fn entry<T>(map: &RwLock<BTreeMap<String, Arc<T>>>, key: &str, new: impl FnOnce() -> T) -> Arc<T> {
    if let Some(found) = map.read().ok().and_then(|m| m.get(key).cloned()) {
        return found;
    }
    match map.write() {
        Ok(mut m) => m.entry(key.to_owned()).or_insert_with(|| Arc::new(new())).clone(),
        Err(_) => Arc::new(new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delivery_lag_counts_only_targets_that_delivered_lately() {
        let metrics = Metrics::new();
        assert_eq!(metrics.delivery_lag_ms(10_000), 0);
        metrics.target("tgt_a").delivered_event(9_000, 10_000);
        metrics.target("tgt_b").delivered_event(9_900, 10_000);
        assert_eq!(metrics.delivery_lag_ms(10_000), 1_000);
        // tgt_a delivered nothing since: idle or failing, no longer behind.
        metrics.target("tgt_b").delivered_event(10_900, 11_050);
        assert_eq!(metrics.delivery_lag_ms(11_050 + 1), 150);
        assert_eq!(metrics.delivery_lag_ms(11_050 + LAG_FRESH_MS + 1), 0);
    }
}
