//! The router in cluster mode: following which targets this node owns (`OwnershipMoved`: actors
//! started and stopped to match), and reconciling with the store when another node changed the
//! configuration (`ConfigMoved`). On a single node neither message is ever sent.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use actix::prelude::*;
use crmhook_core::subscription::Compiled;
use crmhook_core::{Subscription, TargetId};
use crmhook_store::StoreError;

use super::{Handover, Router};
use crate::target::{Origin, TargetHandle};

/// The set of targets this node owns moved: start and stop actors to match it.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct OwnershipMoved;

impl Handler<OwnershipMoved> for Router {
    type Result = ();

    fn handle(&mut self, _: OwnershipMoved, ctx: &mut Context<Self>) {
        let ids: Vec<TargetId> = self.targets.keys().cloned().collect();
        for id in &ids {
            self.settle_now(id, ctx);
        }
    }
}

/// The store's configuration changed (cluster mode: a replicated entry changed targets,
/// subscriptions or disabled targets; this node's own changes too): reconcile with it. Answers
/// how many targets it changed (0 when the router agreed with the store already).
#[derive(Message)]
#[rtype(result = "usize")]
pub(super) struct ConfigMoved;

/// What a reconciliation tells the running actors, in order.
enum Tell {
    Configure(Handover),
    Enable(TargetHandle, bool),
    Stop(TargetHandle),
}

impl Handler<ConfigMoved> for Router {
    /// Atomic, like an admin change: the actors are told in the order of the changes.
    type Result = AtomicResponse<Self, usize>;

    fn handle(&mut self, _: ConfigMoved, _: &mut Context<Self>) -> Self::Result {
        let (changed, tells) = match self.reconcile() {
            Ok(reconciled) => reconciled,
            Err(e) => {
                // The next move reads the store again.
                tracing::error!(error = %e, "reading the configuration after another node's change failed");
                (0, Vec::new())
            }
        };
        AtomicResponse::new(Box::pin(
            async move {
                for tell in tells {
                    match tell {
                        Tell::Configure((handle, config)) => handle.configure(config).await,
                        Tell::Enable(handle, enabled) => handle.set_enabled(enabled).await,
                        Tell::Stop(handle) => handle.stop().await,
                    }
                }
                changed
            }
            .into_actor(self),
        ))
    }
}

impl Router {
    /// Brings the entries in line with the store's targets, subscriptions and disabled targets,
    /// as the local admin changes would have: answers how many targets changed, and what to
    /// tell the running actors. What already agrees is left alone (this node's own changes are
    /// applied already).
    fn reconcile(&mut self) -> Result<(usize, Vec<Tell>), StoreError> {
        let targets = self.store.targets()?;
        let mut subscriptions: HashMap<TargetId, Vec<Subscription>> = HashMap::new();
        for sub in self.store.subscriptions()? {
            subscriptions.entry(sub.target_id.clone()).or_default().push(sub);
        }
        let mut stored = Vec::with_capacity(targets.len());
        for target in targets {
            let disabled = self.store.disabled(&target.id)?.is_some();
            let subs = subscriptions.remove(&target.id).unwrap_or_default();
            stored.push((target, subs, disabled));
        }
        let kept: HashSet<&TargetId> = stored.iter().map(|(t, ..)| &t.id).collect();
        let gone: Vec<TargetId> = self.targets.keys().filter(|id| !kept.contains(id)).cloned().collect();
        let mut changed = gone.len();
        let mut tells = Vec::new();
        for id in gone {
            tracing::info!(target_id = %id, "target deleted on another node");
            if let Some(handle) = self.remove(&id) {
                tells.push(Tell::Stop(handle));
            }
        }
        for (target, subs, disabled) in stored {
            let id = target.id.clone();
            let Some(entry) = self.targets.get(&id) else {
                tracing::info!(target_id = %id, "target created on another node");
                // Its creator delivered to it if it owned it, until now: taken over.
                self.add(target, subs, disabled, Origin::TakenOver);
                changed += 1;
                continue;
            };
            let same_target = *entry.config.target == target;
            let same_subs = same_subscriptions(entry.config.subscriptions.subscriptions(), &subs);
            let same_state = entry.disabled == disabled;
            changed += usize::from(!(same_target && same_subs && same_state));
            if !same_target || !same_subs {
                tracing::info!(target_id = %id, "target or subscriptions changed on another node");
                let handover = self.change_config(&id, |config| {
                    if !same_target {
                        config.target = Arc::new(target);
                    }
                    if !same_subs {
                        config.subscriptions = Arc::new(Compiled::new(subs));
                    }
                });
                tells.extend(handover.map(Tell::Configure));
            }
            if !same_state {
                tracing::info!(target_id = %id, enabled = !disabled, "target enabled or disabled on another node");
                tells.extend(self.mark_enabled(&id, !disabled).map(|h| Tell::Enable(h, !disabled)));
            }
        }
        Ok((changed, tells))
    }
}

/// Whether two lists hold the same subscriptions, whatever their order.
fn same_subscriptions(held: &[Subscription], stored: &[Subscription]) -> bool {
    held.len() == stored.len() && held.iter().all(|h| stored.iter().any(|s| s == h))
}
