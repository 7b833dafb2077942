//! What the window answers about itself: what it holds, what is settling, its counts.

use super::*;

impl Window {
    /// Attempts under way: those in flight but for the retries whose records are being
    /// written. Only these count against [`Window::limit`]: a retry being written holds no
    /// connection, and holding its slot until its record is down made a failing target's
    /// retries as slow as the store's writes (a cluster's most: a failing target fell behind
    /// its schedule by seconds).
    pub(super) fn attempting(&self) -> usize {
        self.in_flight.len().saturating_sub(self.flushing.len())
    }

    /// Records on their way to the store: finished deliveries and retries being written. Past
    /// [`RECORDING`] no attempt starts (the store sets the pace).
    pub(super) fn records_owed(&self) -> usize {
        self.recording.len() + self.flushing.len()
    }

    /// Whether the window holds this delivery (owed in memory, or finished and being recorded).
    pub fn holds(&self, seq: u64) -> bool {
        self.pending.contains_key(&seq) || self.recording.contains(&seq)
    }

    /// Whether this delivery is being attempted, or finished with its record still on its way to
    /// the store: it is about to be finished on disk or owed again, and is neither yet.
    pub fn settling(&self, seq: u64) -> bool {
        self.in_flight.contains(&seq) || self.recording.contains(&seq)
    }

    /// The deliveries being attempted, and the finished ones whose records are on their way to
    /// the store ([`Window::settling`]).
    pub fn settling_now(&self) -> Vec<u64> {
        self.in_flight.iter().chain(&self.recording).copied().collect()
    }

    /// Every event up to here has been matched.
    pub fn scanned(&self) -> u64 {
        self.scanned
    }

    /// Deliveries owed in memory (pending, retrying or in flight).
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    pub fn is_disabled(&self) -> bool {
        self.disabled
    }

    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// No attempt in flight and no finished delivery waiting for its record.
    pub fn is_idle(&self) -> bool {
        self.in_flight.is_empty() && self.recording.is_empty()
    }
}
