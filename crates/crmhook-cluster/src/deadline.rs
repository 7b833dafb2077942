//! Until when each lease this node holds lets it start deliveries, read by the target actors
//! before every start (`crmhook_dispatch::ownership::Fence`), without asking NATS.
//!
//! A lease's entry expires on the NATS servers a TTL after they wrote it, which is after this
//! node sent the write. So a renewal (or a take) sent at `t` on this node's clock keeps the
//! lease this node's until at least `t + TTL`; this node stops starting deliveries at
//! `t + 3/5 TTL` (the 2/5 left cover the attempts in flight and the clocks' drift). The lease
//! keeper (`leases.rs`) writes that deadline when a renewal is acknowledged, and 0 when it lets
//! the lease go. The actors read it with one atomic load and one clock read.
//!
//! The clock is `CLOCK_BOOTTIME` on Linux: like `CLOCK_MONOTONIC` (`std::time::Instant`) it
//! advances while the process is stopped (`SIGSTOP`, a debugger, a stall), and unlike it, it
//! also counts a system suspend; a node resumed after either finds its deadlines passed before
//! it starts anything. A hypervisor that stops a VM's clocks while the VM is paused (KVM's
//! kvmclock is restored to where it stopped) hides the pause from both: see docs/CLUSTER.md.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crmhook_core::TargetId;

/// Now, in nanoseconds on the lease clock (`CLOCK_BOOTTIME` on Linux; `CLOCK_MONOTONIC`
/// elsewhere). Comparable between threads and tasks of one process.
pub fn lease_clock() -> u64 {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let clock = rustix::time::ClockId::Boottime;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let clock = rustix::time::ClockId::Monotonic;
    let t = rustix::time::clock_gettime(clock);
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(t.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// `d` in nanoseconds (saturated).
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Each target's deadline, shared by the lease keeper (which writes them) and the target
/// actors (each holds its target's). One entry per target that exists (entries of deleted
/// targets are dropped at the next lease round), so it stays as small as the targets.
#[derive(Clone, Default)]
pub struct LeaseDeadlines(Arc<Mutex<HashMap<TargetId, Arc<AtomicU64>>>>);

impl LeaseDeadlines {
    /// `target`'s deadline, in nanoseconds on [`lease_clock`]: no delivery may start at or
    /// after it (0, past, until a lease is taken). The same cell for the life of the target, so
    /// an actor that holds it sees every renewal, even of a lease let go and taken again.
    pub fn of(&self, target: &TargetId) -> Arc<AtomicU64> {
        self.lock().entry(target.clone()).or_default().clone()
    }

    /// Sets `target`'s deadline (0: let go).
    pub(crate) fn set(&self, target: &TargetId, until: u64) {
        let cell = self.of(target);
        cell.store(until, Ordering::Release);
    }

    /// Drops the deadlines of targets that no longer exist.
    pub(crate) fn retain(&self, targets: &BTreeSet<TargetId>) {
        self.lock().retain(|t, _| targets.contains(t));
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<TargetId, Arc<AtomicU64>>> {
        // A panic while holding it leaves a map of plain numbers: nothing half-done to fear.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_moves_forward_and_counts_a_sleep() {
        let a = lease_clock();
        std::thread::sleep(Duration::from_millis(20));
        let b = lease_clock();
        assert!(b >= a + nanos(Duration::from_millis(20)), "{a} → {b}");
    }

    #[test]
    fn a_deadline_is_one_cell_per_target_kept_while_the_target_exists() {
        let (a, b) = (TargetId::generate(), TargetId::generate());
        let deadlines = LeaseDeadlines::default();
        let held = deadlines.of(&a);
        assert_eq!(held.load(Ordering::Acquire), 0, "no lease yet: past");
        deadlines.set(&a, 42);
        assert_eq!(held.load(Ordering::Acquire), 42, "the cell an actor holds sees the renewal");
        deadlines.set(&a, 0);
        deadlines.set(&a, 43);
        assert_eq!(held.load(Ordering::Acquire), 43, "let go and taken again: the same cell");
        deadlines.set(&b, 7);
        deadlines.retain(&[a.clone()].into_iter().collect());
        assert_eq!(deadlines.lock().len(), 1, "a deleted target's deadline is dropped");
        assert_eq!(deadlines.of(&b).load(Ordering::Acquire), 0, "asked again: a new cell, past");
    }
}
