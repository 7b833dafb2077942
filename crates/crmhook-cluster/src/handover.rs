//! Rebalancing: a node that holds more leases than its share gives one up per lease round, so
//! that a node that joins (or came back) takes its part of the targets, instead of every target
//! staying where it was until its node leaves (before 2026-12-07 nothing moved; after a rolling
//! restart one node could deliver every target).
//!
//! A lease given up is handed over without a gap in the records: this node unpublishes the
//! target at once (its actor starts nothing more and drains: its attempts in flight finish and
//! are recorded, through the log) but keeps renewing the lease until the router reports the
//! actor gone ([`ActorsHere`]), and only then deletes the lease's key. The node that takes it
//! next waits until its copy has applied the stream as it was at the take (`leases.rs`), so its
//! actor starts from every record this node wrote: no delivery is repeated by the move. A
//! drain is bounded by the attempts' timeouts; past [`HANDOVER_BOUND`] the key is deleted
//! anyway.
//!
//! The share is the targets divided by the nodes alive, rounded up, as for taking leases: a
//! node over it gives one up; the nodes under it take the free leases at their rounds. If one
//! node is over its share another is under it (the shares add up to at least the targets), so a
//! lease given up always has a taker, unless the node under its share is a dead one whose
//! heartbeat has not expired yet: then it waits for that (a TTL) and the next round's share.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crmhook_core::TargetId;

/// How long a lease given up is kept for its actor to drain, at most: the longest timeout a
/// target's attempt may have (`crmhook_core::target::MAX_TIMEOUT_MS`), and its records' writes.
pub(crate) const HANDOVER_BOUND: Duration = Duration::from_secs(330);

/// The targets with an actor on this node (running, or draining after its lease was given up
/// or lost), as the router reports them (`crmhook_dispatch::ownership::ActorsHere`).
#[derive(Clone, Default)]
pub struct ActorsHere(Arc<Mutex<HashSet<TargetId>>>);

impl ActorsHere {
    /// The router started an actor for `target` here (`true`) or is done with it (`false`).
    pub fn set(&self, target: &TargetId, here: bool) {
        let mut actors = self.lock();
        if here {
            actors.insert(target.clone());
        } else {
            actors.remove(target);
        }
    }

    /// Whether `target` has an actor here.
    pub(crate) fn has(&self, target: &TargetId) -> bool {
        self.lock().contains(target)
    }

    fn lock(&self) -> MutexGuard<'_, HashSet<TargetId>> {
        // A set of ids: nothing half-done to fear after a panic.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A node's share of `targets` among `alive` nodes: the most leases it takes, and keeps.
pub(crate) fn share(targets: usize, alive: usize) -> usize {
    targets.div_ceil(alive.max(1))
}

/// Whether a node delivering `held` of `targets` (not counting leases it is giving up already),
/// with `alive` nodes in the cluster, gives a lease up this round: one at a time, while it
/// holds more than its share.
pub(crate) fn gives_one_up(held: usize, targets: usize, alive: usize) -> bool {
    alive > 1 && held > share(targets, alive)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_is_the_targets_divided_by_the_nodes_rounded_up() {
        assert_eq!(share(6, 3), 2);
        assert_eq!(share(7, 3), 3);
        assert_eq!(share(1, 3), 1);
        assert_eq!(share(0, 3), 0);
        assert_eq!(share(5, 0), 5, "no node seen alive yet (this one's first round): all of them");
    }

    #[test]
    fn a_node_over_its_share_gives_one_up_and_a_lone_node_never() {
        assert!(gives_one_up(6, 6, 2), "a second node joined: 3 each");
        assert!(gives_one_up(4, 6, 2));
        assert!(!gives_one_up(3, 6, 2), "at its share");
        assert!(!gives_one_up(3, 7, 3), "7 over 3 nodes: 3, 2, 2 is balanced");
        assert!(!gives_one_up(6, 6, 1), "alone: it keeps every target");
        assert!(gives_one_up(2, 3, 3), "a target deleted elsewhere: 2, 1, 0 → 1, 1, 1");
    }

    /// Rounds of every node, as the lease rounds run them (each gives up at most one lease and
    /// takes free ones up to its share): from any start, the holdings settle within a bound of
    /// rounds at no node over its share, and never lose or double a lease.
    #[test]
    fn rounds_settle_every_split_at_the_shares() {
        for nodes in 1..=5usize {
            for targets in 0..=12usize {
                for first in 0..=targets {
                    // One node holds `first`, the others none, the rest free (a node died).
                    let mut held = vec![0usize; nodes];
                    held[0] = first;
                    let mut free = targets - first;
                    let mut rounds = 0;
                    while held.iter().any(|&h| h > share(targets, nodes)) || free > 0 {
                        rounds += 1;
                        assert!(rounds <= targets + 2, "{nodes} nodes, {targets} targets: {held:?}, {free} free");
                        let mut given = 0;
                        for h in &mut held {
                            let take = share(targets, nodes).saturating_sub(*h).min(free);
                            *h += take;
                            free -= take;
                            if gives_one_up(*h, targets, nodes) {
                                *h -= 1;
                                given += 1;
                            }
                        }
                        free += given;
                    }
                    assert_eq!(held.iter().sum::<usize>(), targets);
                }
            }
        }
    }
}
