//! Which targets this node delivers.
//!
//! A single node delivers every target ([`Ownership::all`]): nothing to watch, nothing that
//! changes, no cost. In cluster mode (issue 16) each target is delivered by exactly one node at
//! a time, the one holding the target's lease; the lease keeper (`crmhook-cluster`) publishes
//! the set of targets this node holds in a `watch` channel, and [`Ownership::watching`] follows
//! it. The router keeps every target's configuration on every node (admin checks and changes
//! work anywhere) but runs a target actor only for the targets this node owns, and starts or
//! stops actors as the set moves (`crate::router`).
//!
//! The set moves at the lease keeper's rounds, a fifth of the TTL apart, and only after their
//! NATS requests: too late after a pause of the process longer than the TTL, when another node
//! holds the lease already. So each target's actor also holds a [`Fence`]: the lease's deadline
//! (3/5 of the TTL after its last renewal was sent), which the keeper moves at each renewal and
//! which the actor checks, with one atomic load and a clock read, before it starts a delivery
//! (since 2026-12-07). A single node's fence is always open.
//!
//! The lease keeper also needs to know when a target it gives up has no actor here any more (a
//! handover to a node that has fewer targets: the lease is kept until this node's actor has
//! drained, so that the next node starts from every record this one wrote): the router reports
//! each actor it starts and each one it is done with through [`ActorsHere`] (since 2026-12-07).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crmhook_core::TargetId;
use tokio::sync::watch;

/// The set of targets a node owns, as the lease keeper publishes it.
pub type Owned = Arc<BTreeSet<TargetId>>;

/// Which targets this node delivers: a cheap handle (clone it freely).
#[derive(Clone)]
pub struct Ownership {
    kind: Kind,
    deadlines: Option<Deadlines>,
    here: Option<ActorsHere>,
}

#[derive(Clone)]
enum Kind {
    All,
    Watching(watch::Receiver<Owned>),
}

impl Ownership {
    /// A single node: owns every target, for good.
    pub fn all() -> Ownership {
        Ownership { kind: Kind::All, deadlines: None, here: None }
    }

    /// Cluster mode: owns exactly the targets in the set `owned` holds, which changes over time.
    pub fn watching(owned: watch::Receiver<Owned>) -> Ownership {
        Ownership { kind: Kind::Watching(owned), deadlines: None, here: None }
    }

    /// Each target's deliveries start only before its lease's deadline, as `deadlines` tells.
    pub fn fenced(self, deadlines: Deadlines) -> Ownership {
        Ownership { deadlines: Some(deadlines), ..self }
    }

    /// Each actor started here, and each one the router is done with, is told to `here`.
    pub fn reporting(self, here: ActorsHere) -> Ownership {
        Ownership { here: Some(here), ..self }
    }

    /// The router started an actor for `id` here (`true`), or is done with it (`false`: it
    /// stopped, or its target was deleted).
    pub(crate) fn actor_here(&self, id: &TargetId, here: bool) {
        if let Some(report) = &self.here {
            (report.0)(id, here);
        }
    }

    /// What `id`'s actor checks before each start: its lease's deadline, or nothing (open) on a
    /// node without deadlines.
    pub fn fence(&self, id: &TargetId) -> Fence {
        Fence(self.deadlines.as_ref().map(|d| Deadline { until: (d.of)(id), now: d.now }))
    }

    /// Whether this node delivers `id` now.
    pub fn owns(&self, id: &TargetId) -> bool {
        match &self.kind {
            Kind::All => true,
            Kind::Watching(owned) => owned.borrow().contains(id),
        }
    }

    /// Whether the set can change at all (false for [`Ownership::all`]).
    pub fn changes(&self) -> bool {
        matches!(self.kind, Kind::Watching(_))
    }

    /// Waits until the set has changed since this handle last looked (or was made): `true`.
    /// `false` at once for [`Ownership::all`], which never changes, and once the lease keeper
    /// is gone (the set stays as it was last).
    pub async fn changed(&mut self) -> bool {
        match &mut self.kind {
            Kind::All => false,
            Kind::Watching(owned) => owned.changed().await.is_ok(),
        }
    }
}

/// Where a node's lease deadlines are (cluster mode): each target's, a cell in nanoseconds on
/// the clock `now` reads, which the lease keeper moves (0: no lease).
#[derive(Clone)]
pub struct Deadlines {
    of: Arc<CellOf>,
    now: fn() -> u64,
}

/// Answers a target's deadline cell.
type CellOf = dyn Fn(&TargetId) -> Arc<AtomicU64> + Send + Sync;

impl Deadlines {
    /// `of` answers a target's cell (the same one for the life of the target); `now` reads the
    /// clock the cells are on.
    pub fn new(of: impl Fn(&TargetId) -> Arc<AtomicU64> + Send + Sync + 'static, now: fn() -> u64) -> Deadlines {
        Deadlines { of: Arc::new(of), now }
    }
}

/// Where the router reports the actors it runs here (cluster mode): called with a target and
/// `true` when its actor starts, `false` when the router is done with it.
#[derive(Clone)]
pub struct ActorsHere(Arc<Report>);

/// Reports a target's actor started (`true`) or done with (`false`).
type Report = dyn Fn(&TargetId, bool) + Send + Sync;

impl ActorsHere {
    pub fn new(report: impl Fn(&TargetId, bool) + Send + Sync + 'static) -> ActorsHere {
        ActorsHere(Arc::new(report))
    }
}

/// Whether a target's actor may start a delivery now: before its lease's deadline. Cheap to
/// check (an atomic load and a clock read) and to clone.
#[derive(Clone)]
pub struct Fence(Option<Deadline>);

/// A target's deadline cell, and the clock it is on.
#[derive(Clone)]
struct Deadline {
    until: Arc<AtomicU64>,
    now: fn() -> u64,
}

impl Fence {
    /// No deadline: every start is allowed (a single node).
    pub fn open() -> Fence {
        Fence(None)
    }

    /// Whether a delivery may start now.
    pub fn allows(&self) -> bool {
        match &self.0 {
            None => true,
            Some(Deadline { until, now }) => now() < until.load(Ordering::Acquire),
        }
    }
}

impl std::fmt::Debug for Ownership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::All => f.write_str("Ownership::all"),
            Kind::Watching(owned) => f.debug_tuple("Ownership::watching").field(&*owned.borrow()).finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_owns_everything_and_never_changes() {
        let mut all = Ownership::all();
        assert!(all.owns(&TargetId::generate()));
        assert!(!all.changes());
        let never = futures_util::FutureExt::now_or_never(all.changed());
        assert_eq!(never, Some(false), "all() answers at once that it does not change");
    }

    #[test]
    fn watching_follows_the_set() {
        let (a, b) = (TargetId::generate(), TargetId::generate());
        let (tx, rx) = watch::channel(Owned::default());
        let mut own = Ownership::watching(rx);
        assert!(own.changes());
        assert!(!own.owns(&a) && !own.owns(&b));
        tx.send_replace(Arc::new([a.clone()].into_iter().collect()));
        assert_eq!(futures_util::FutureExt::now_or_never(own.changed()), Some(true));
        assert!(own.owns(&a) && !own.owns(&b));
        assert_eq!(futures_util::FutureExt::now_or_never(own.changed()), None, "nothing new: it waits");
        drop(tx);
        assert_eq!(futures_util::FutureExt::now_or_never(own.changed()), Some(false), "the keeper is gone");
        assert!(own.owns(&a), "the last set stays");
    }

    fn clock() -> u64 {
        1_000
    }

    #[test]
    fn a_fence_allows_starts_before_the_deadline_only() {
        let (a, b) = (TargetId::generate(), TargetId::generate());
        assert!(Ownership::all().fence(&a).allows(), "a single node is never fenced");
        let cell = Arc::new(AtomicU64::new(0));
        let (asked, answer) = (a.clone(), cell.clone());
        let deadlines = Deadlines::new(move |t| if *t == asked { answer.clone() } else { Arc::default() }, clock);
        let own = Ownership::watching(watch::channel(Owned::default()).1).fenced(deadlines);
        let fence = own.fence(&a);
        assert!(!fence.allows(), "no lease yet");
        cell.store(1_001, Ordering::Release);
        assert!(fence.allows(), "renewed: until 1001, now 1000");
        cell.store(1_000, Ordering::Release);
        assert!(!fence.allows(), "the deadline is reached");
        assert!(!own.fence(&b).allows(), "each target its own deadline");
    }
}
