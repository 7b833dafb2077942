//! Which targets this node delivers.
//!
//! A single node delivers every target ([`Ownership::all`]): nothing to watch, nothing that
//! changes, no cost. In cluster mode (issue 16) each target is delivered by exactly one node at
//! a time, the one holding the target's lease; the lease keeper (`crmhook-cluster`) publishes
//! the set of targets this node holds in a `watch` channel, and [`Ownership::watching`] follows
//! it. The router keeps every target's configuration on every node (admin checks and changes
//! work anywhere) but runs a target actor only for the targets this node owns, and starts or
//! stops actors as the set moves (`crate::router`).

use std::collections::BTreeSet;
use std::sync::Arc;

use crmhook_core::TargetId;
use tokio::sync::watch;

/// The set of targets a node owns, as the lease keeper publishes it.
pub type Owned = Arc<BTreeSet<TargetId>>;

/// Which targets this node delivers: a cheap handle (clone it freely).
#[derive(Clone)]
pub struct Ownership(Kind);

#[derive(Clone)]
enum Kind {
    All,
    Watching(watch::Receiver<Owned>),
}

impl Ownership {
    /// A single node: owns every target, for good.
    pub fn all() -> Ownership {
        Ownership(Kind::All)
    }

    /// Cluster mode: owns exactly the targets in the set `owned` holds, which changes over time.
    pub fn watching(owned: watch::Receiver<Owned>) -> Ownership {
        Ownership(Kind::Watching(owned))
    }

    /// Whether this node delivers `id` now.
    pub fn owns(&self, id: &TargetId) -> bool {
        match &self.0 {
            Kind::All => true,
            Kind::Watching(owned) => owned.borrow().contains(id),
        }
    }

    /// Whether the set can change at all (false for [`Ownership::all`]).
    pub fn changes(&self) -> bool {
        matches!(self.0, Kind::Watching(_))
    }

    /// Waits until the set has changed since this handle last looked (or was made): `true`.
    /// `false` at once for [`Ownership::all`], which never changes, and once the lease keeper
    /// is gone (the set stays as it was last).
    pub async fn changed(&mut self) -> bool {
        match &mut self.0 {
            Kind::All => false,
            Kind::Watching(owned) => owned.changed().await.is_ok(),
        }
    }
}

impl std::fmt::Debug for Ownership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
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
}
