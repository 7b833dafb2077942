//! The counts behind the console's charts: each target's attempts (succeeded, failed and
//! retried, dead) and the events logged by type, by minute over the last hour ([`MINUTES`]
//! buckets of [`MINUTE_MS`]) and by quarter hour over the last day ([`QUARTERS`] buckets of
//! [`QUARTER_MS`]).
//!
//! **Bounded.** Each series is two fixed rings of buckets ([`Ring`]): a bucket holds one
//! period and is reused, zeroed, when the ring comes round to it again. A target's rings hold
//! 3 counters a bucket; ingest's hold one per event type for the first [`TYPE_SLOTS`] types this
//! process has seen (or read back), and one more, `other`, for the rest. The answers show at
//! most [`TYPES_SHOWN`] types a bucket, the most frequent, the rest summed under `other`.
//!
//! **Cheap to count.** The counting paths are the existing ones: [`crate::metrics`] counts an
//! attempt once its record is written (the target actor's `recorded`) and an event once it is
//! acknowledged (the edge's `Metrics::ingested`); each also adds to its series. Adding is an
//! atomic load and an atomic add per ring; a lock is taken only when a bucket is reused (once a
//! period per ring) and to keep a target's last failure (failed attempts only, by its one actor).
//!
//! **Kept across restarts.** The counts are process memory, written now and then
//! ([`SAVE_EVERY`], and once more at a graceful stop) as one record per series
//! (`crmhook_store::Series`, `M stats:<name>`) with a lazy write, and read back at start-up
//! ([`load`]). A crash loses the counts of the last few seconds at most; deriving them from
//! the log instead would mean reading every attempt and event of the last day at start-up
//! (millions of records, and attempts are not kept in time order), see `docs/ARCHITECTURE.md`.
//!
//! **Time.** A count goes to the bucket of the period holding its time (an attempt's start, an
//! event's acknowledgement). If the clock went back further than a ring spans, a count whose
//! bucket already holds a later period is counted there; nothing panics, and the answers show
//! only the periods up to now.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::Duration;

use crmhook_store::{AttemptResult, LastFailure, Log, Series, SeriesBucket, StoreError};

use crate::metrics::Metrics;

/// One minute.
pub const MINUTE_MS: u64 = 60_000;
/// The minutes of the last hour.
pub const MINUTES: usize = 60;
/// A quarter hour.
pub const QUARTER_MS: u64 = 15 * MINUTE_MS;
/// The quarter hours of the last day.
pub const QUARTERS: usize = 96;
/// Event types counted on their own; later ones are counted under [`OTHER`].
pub const TYPE_SLOTS: usize = 64;
/// Event types shown per bucket, the most frequent; the rest are summed under [`OTHER`].
pub const TYPES_SHOWN: usize = 20;
/// What the types not shown on their own are counted under (no event type has this name:
/// MAIA's are fixed, Maximizer's hold a dot).
pub const OTHER: &str = "other";
/// How often the series are written to the store.
pub const SAVE_EVERY: Duration = Duration::from_secs(10);
/// The name ingest's series is kept under; targets' are kept under their ids.
pub const INGEST: &str = "ingest";
/// Longest error text kept as a target's last failure.
pub const MAX_ERROR_CHARS: usize = 256;

/// The names of a target's counters, by slot.
pub const ATTEMPT_NAMES: [&str; 3] = ["succeeded", "failed", "dead"];

/// The starts (ms since the epoch) of the `len` periods of `period_ms` that end with the one
/// holding `now_ms`, oldest first (fewer only within `len` periods of the epoch).
pub fn starts(now_ms: u64, period_ms: u64, len: usize) -> Vec<u64> {
    let last = now_ms / period_ms;
    (0..len as u64).filter_map(|i| (last + 1 + i).checked_sub(len as u64)).map(|p| p * period_ms).collect()
}

/// A ring of `len` buckets of `width` counters; the bucket of period `p` (`p` = time /
/// `period_ms`) is `p % len`, and it remembers which period it holds.
pub struct Ring {
    period_ms: u64,
    width: usize,
    /// Each bucket's period plus one (0: never used).
    tags: Box<[AtomicU64]>,
    /// `width` counters a bucket.
    counts: Box<[AtomicU64]>,
    /// Taken to reuse a bucket, and by readers (so that they never see one half reused).
    roll: Mutex<()>,
}

impl Ring {
    pub fn new(period_ms: u64, len: usize, width: usize) -> Ring {
        let zeros = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect::<Box<[_]>>();
        Ring {
            period_ms: period_ms.max(1),
            width,
            tags: zeros(len.max(1)),
            counts: zeros(len.max(1) * width),
            roll: Mutex::new(()),
        }
    }

    fn bucket(&self, at_ms: u64) -> (usize, u64) {
        let period = at_ms / self.period_ms;
        ((period % self.tags.len() as u64) as usize, period + 1)
    }

    /// Adds `n` to counter `slot` of the bucket holding `at_ms`.
    pub fn add(&self, at_ms: u64, slot: usize, n: u64) {
        if slot >= self.width {
            return;
        }
        let (i, tag) = self.bucket(at_ms);
        if self.tags[i].load(Ordering::Acquire) < tag {
            let _guard = self.roll.lock().unwrap_or_else(PoisonError::into_inner);
            if self.tags[i].load(Ordering::Relaxed) < tag {
                for c in &self.counts[i * self.width..(i + 1) * self.width] {
                    c.store(0, Ordering::Relaxed);
                }
                self.tags[i].store(tag, Ordering::Release);
            }
        }
        self.counts[i * self.width + slot].fetch_add(n, Ordering::Relaxed);
    }

    /// The buckets of the periods up to the one holding `now_ms`, oldest first, as (start,
    /// counters): zeros where the bucket holds another period.
    pub fn read(&self, now_ms: u64) -> Vec<(u64, Vec<u64>)> {
        let _guard = self.roll.lock().unwrap_or_else(PoisonError::into_inner);
        starts(now_ms, self.period_ms, self.tags.len())
            .into_iter()
            .map(|start| {
                let (i, tag) = self.bucket(start);
                let counts = if self.tags[i].load(Ordering::Acquire) == tag {
                    self.counts[i * self.width..(i + 1) * self.width]
                        .iter()
                        .map(|c| c.load(Ordering::Relaxed))
                        .collect()
                } else {
                    vec![0; self.width]
                };
                (start, counts)
            })
            .collect()
    }
}

/// The non-zero buckets of a ring, as kept in a [`Series`]; `index` maps a slot to the
/// record's name index (`None`: not kept).
fn kept(ring: &Ring, now_ms: u64, index: impl Fn(usize) -> Option<u32>) -> Vec<SeriesBucket> {
    ring.read(now_ms)
        .into_iter()
        .filter_map(|(at_ms, counts)| {
            let counts: Vec<(u32, u64)> = counts
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .filter_map(|(slot, n)| Some((index(slot)?, *n)))
                .collect();
            (!counts.is_empty()).then_some(SeriesBucket { at_ms, counts })
        })
        .collect()
}

/// A bucket of a target's attempts: its start, and the attempts that succeeded, failed (to be
/// retried, or waiting for a disabled target), and gave up (dead).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AttemptCounts {
    pub at_ms: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub dead: u64,
}

/// A target's attempts by minute and quarter hour, and its last failure.
pub struct TargetSeries {
    minutes: Ring,
    quarters: Ring,
    /// When the last successful attempt started (0: none yet).
    last_success_ms: AtomicU64,
    last_failure: Mutex<Option<LastFailure>>,
}

impl Default for TargetSeries {
    fn default() -> Self {
        TargetSeries {
            minutes: Ring::new(MINUTE_MS, MINUTES, ATTEMPT_NAMES.len()),
            quarters: Ring::new(QUARTER_MS, QUARTERS, ATTEMPT_NAMES.len()),
            last_success_ms: AtomicU64::new(0),
            last_failure: Mutex::new(None),
        }
    }
}

impl TargetSeries {
    /// An attempt that started at `at_ms` led to `result`; a successful one is the last
    /// success, a failed one the last failure, with the receiver's status if it answered and
    /// why it failed.
    pub fn attempt(&self, at_ms: u64, result: &AttemptResult, status_code: Option<u16>, error: Option<&str>) {
        let slot = match result {
            AttemptResult::Delivered => 0,
            AttemptResult::Retrying { .. } | AttemptResult::TargetDisabled => 1,
            AttemptResult::Dead => 2,
        };
        self.minutes.add(at_ms, slot, 1);
        self.quarters.add(at_ms, slot, 1);
        if slot == 0 {
            self.last_success_ms.fetch_max(at_ms, Ordering::Relaxed);
        } else {
            let error = error.map(|e| e.chars().take(MAX_ERROR_CHARS).collect());
            *self.last_failure.lock().unwrap_or_else(PoisonError::into_inner) =
                Some(LastFailure { at_ms, status_code, error });
        }
    }

    /// The last hour by minute, oldest first.
    pub fn minutes(&self, now_ms: u64) -> Vec<AttemptCounts> {
        attempt_counts(&self.minutes, now_ms)
    }

    /// The last day by quarter hour, oldest first.
    pub fn quarters(&self, now_ms: u64) -> Vec<AttemptCounts> {
        attempt_counts(&self.quarters, now_ms)
    }

    /// When the last successful attempt started, as attempt listings show it.
    pub fn last_success_ms(&self) -> Option<u64> {
        Some(self.last_success_ms.load(Ordering::Relaxed)).filter(|at| *at > 0)
    }

    pub fn last_failure(&self) -> Option<LastFailure> {
        self.last_failure.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// As kept in the store.
    pub fn to_series(&self, now_ms: u64) -> Series {
        let index = |slot: usize| Some(slot as u32);
        Series {
            names: ATTEMPT_NAMES.iter().map(|n| (*n).to_owned()).collect(),
            minutes: kept(&self.minutes, now_ms, index),
            quarters: kept(&self.quarters, now_ms, index),
            last_success_ms: self.last_success_ms(),
            last_failure: self.last_failure(),
        }
    }

    /// Adds what the store kept (at start-up).
    pub fn restore(&self, series: &Series) {
        let slot = |i: u32| series.names.get(i as usize).and_then(|n| ATTEMPT_NAMES.iter().position(|a| a == n));
        restore_ring(&self.minutes, &series.minutes, slot);
        restore_ring(&self.quarters, &series.quarters, slot);
        self.last_success_ms.fetch_max(series.last_success_ms.unwrap_or(0), Ordering::Relaxed);
        let mut last = self.last_failure.lock().unwrap_or_else(PoisonError::into_inner);
        if last.is_none() {
            *last = series.last_failure.clone();
        }
    }
}

fn attempt_counts(ring: &Ring, now_ms: u64) -> Vec<AttemptCounts> {
    ring.read(now_ms)
        .into_iter()
        .map(|(at_ms, c)| AttemptCounts { at_ms, succeeded: c[0], failed: c[1], dead: c[2] })
        .collect()
}

fn restore_ring(ring: &Ring, buckets: &[SeriesBucket], slot: impl Fn(u32) -> Option<usize>) {
    for bucket in buckets {
        for (i, n) in &bucket.counts {
            if let Some(slot) = slot(*i) {
                ring.add(bucket.at_ms, slot, *n);
            }
        }
    }
}

/// A bucket of ingest: its start, the events logged, and the most frequent types with their
/// counts (the rest under [`OTHER`]), most frequent first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TypeCounts {
    pub at_ms: u64,
    pub total: u64,
    pub types: Vec<(String, u64)>,
}

/// The events logged, by type, by minute and quarter hour.
pub struct IngestSeries {
    /// The types with a counter of their own, by slot ([`TYPE_SLOTS`] at most); slot
    /// `TYPE_SLOTS` is [`OTHER`].
    types: RwLock<Vec<String>>,
    minutes: Ring,
    quarters: Ring,
}

impl Default for IngestSeries {
    fn default() -> Self {
        IngestSeries {
            types: RwLock::new(Vec::new()),
            minutes: Ring::new(MINUTE_MS, MINUTES, TYPE_SLOTS + 1),
            quarters: Ring::new(QUARTER_MS, QUARTERS, TYPE_SLOTS + 1),
        }
    }
}

impl IngestSeries {
    /// The counter slot of an event type: its own while there is room, else [`OTHER`]'s.
    /// Callers keep it (the metrics keep it with the type's counter).
    pub fn slot(&self, event_type: &str) -> usize {
        if event_type == OTHER {
            return TYPE_SLOTS;
        }
        let find = |types: &Vec<String>| types.iter().position(|t| t == event_type);
        if let Some(i) = find(&self.types.read().unwrap_or_else(PoisonError::into_inner)) {
            return i;
        }
        let mut types = self.types.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = find(&types) {
            return i;
        }
        if types.len() >= TYPE_SLOTS {
            return TYPE_SLOTS;
        }
        types.push(event_type.to_owned());
        types.len() - 1
    }

    /// An event of the type in `slot` was logged at `at_ms`.
    pub fn add(&self, at_ms: u64, slot: usize) {
        self.minutes.add(at_ms, slot, 1);
        self.quarters.add(at_ms, slot, 1);
    }

    pub fn minutes(&self, now_ms: u64) -> Vec<TypeCounts> {
        self.type_counts(&self.minutes, now_ms)
    }

    pub fn quarters(&self, now_ms: u64) -> Vec<TypeCounts> {
        self.type_counts(&self.quarters, now_ms)
    }

    fn names(&self) -> Vec<String> {
        self.types.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn type_counts(&self, ring: &Ring, now_ms: u64) -> Vec<TypeCounts> {
        let names = self.names();
        ring.read(now_ms)
            .into_iter()
            .map(|(at_ms, counts)| {
                let total = counts.iter().sum();
                let mut named: Vec<(&str, u64)> =
                    names.iter().zip(&counts).filter(|(_, n)| **n > 0).map(|(t, n)| (t.as_str(), *n)).collect();
                named.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
                let rest: u64 = named.iter().skip(TYPES_SHOWN).map(|(_, n)| n).sum::<u64>() + counts[TYPE_SLOTS];
                let mut types: Vec<(String, u64)> =
                    named.into_iter().take(TYPES_SHOWN).map(|(t, n)| (t.to_owned(), n)).collect();
                if rest > 0 {
                    types.push((OTHER.to_owned(), rest));
                }
                TypeCounts { at_ms, total, types }
            })
            .collect()
    }

    /// As kept in the store: only the types counted in the buckets kept, so a type seen once
    /// long ago does not keep a slot across restarts.
    pub fn to_series(&self, now_ms: u64) -> Series {
        let names = self.names();
        let minutes = self.minutes.read(now_ms);
        let quarters = self.quarters.read(now_ms);
        let used: Vec<usize> = (0..=TYPE_SLOTS)
            .filter(|slot| minutes.iter().chain(&quarters).any(|(_, c)| c[*slot] > 0))
            .filter(|slot| *slot == TYPE_SLOTS || *slot < names.len())
            .collect();
        let index = |slot: usize| used.iter().position(|s| *s == slot).map(|i| i as u32);
        Series {
            names: used.iter().map(|s| names.get(*s).cloned().unwrap_or_else(|| OTHER.to_owned())).collect(),
            minutes: kept(&self.minutes, now_ms, index),
            quarters: kept(&self.quarters, now_ms, index),
            last_success_ms: None,
            last_failure: None,
        }
    }

    /// Adds what the store kept (at start-up).
    pub fn restore(&self, series: &Series) {
        let slots: Vec<usize> = series.names.iter().map(|n| self.slot(n)).collect();
        let slot = |i: u32| slots.get(i as usize).copied();
        restore_ring(&self.minutes, &series.minutes, slot);
        restore_ring(&self.quarters, &series.quarters, slot);
    }
}

/// Whether a series holds nothing worth keeping.
fn is_empty(series: &Series) -> bool {
    series.minutes.is_empty()
        && series.quarters.is_empty()
        && series.last_success_ms.is_none()
        && series.last_failure.is_none()
}

/// What the last save wrote, so that the next writes only what changed.
#[derive(Default)]
pub struct Saved {
    written: HashMap<String, Series>,
}

/// Reads the series the store keeps into `metrics`, at start-up (before anything is
/// counted): ingest's, and each existing target's. Those of targets deleted since are removed
/// by the next [`save`].
pub fn load(metrics: &Metrics, store: &dyn Log) -> Result<Saved, StoreError> {
    let targets: HashSet<String> = store.targets()?.into_iter().map(|t| t.id.as_str().to_owned()).collect();
    let mut saved = Saved::default();
    for (name, series) in store.stats()? {
        if name == INGEST {
            metrics.ingest_series().restore(&series);
        } else if targets.contains(&name) {
            metrics.target(&name).series().restore(&series);
        }
        saved.written.insert(name, series);
    }
    Ok(saved)
}

/// Writes the series that changed since the last save (one lazy write), removes those of
/// targets that are gone (and forgets their counters), and answers how many it wrote.
pub async fn save(metrics: &Metrics, store: &dyn Log, saved: &mut Saved, now_ms: u64) -> Result<usize, StoreError> {
    let mut current = HashMap::new();
    // The counters first, then the targets: a target's counters exist only once its record
    // does, so one missing from the store was deleted.
    let counted = metrics.targets_counted();
    let live: HashSet<String> = store.targets()?.into_iter().map(|t| t.id.as_str().to_owned()).collect();
    for (id, target) in counted {
        if live.contains(&id) {
            current.insert(id, target.series().to_series(now_ms));
        } else {
            metrics.forget_target(&id);
        }
    }
    current.insert(INGEST.to_owned(), metrics.ingest_series().to_series(now_ms));
    current.retain(|_, s| !is_empty(s));
    let put: Vec<(String, Series)> = current
        .iter()
        .filter(|(n, s)| saved.written.get(*n) != Some(*s))
        .map(|(n, s)| (n.clone(), s.clone()))
        .collect();
    let remove: Vec<String> = saved.written.keys().filter(|n| !current.contains_key(*n)).cloned().collect();
    if put.is_empty() && remove.is_empty() {
        return Ok(0);
    }
    let written = put.len();
    store.put_stats(put, remove).await?;
    saved.written = current;
    Ok(written)
}

#[cfg(test)]
mod tests;
