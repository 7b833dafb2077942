//! The router's admin changes (targets, subscriptions, enabling), each handled one at a time
//! (an atomic response): stored first, then applied to the router's entries and handed to the
//! target's actor, so that the caps and the running actors agree with the store.

use std::sync::Arc;

use actix::prelude::*;
use crmhook_core::subscription::{check_room, Compiled};
use crmhook_core::{CoreError, Subscription, SubscriptionId, Target, TargetId};
use crmhook_store::{DeliveryBatch, Disabled, StoreError};

use super::{Handover, Router, RouterError};
use crate::target::{Origin, TargetConfig, TargetHandle};

/// Admin changes, handled one at a time (atomically) so that counts and actors stay in step.
#[derive(Message)]
#[rtype(result = "Result<(), RouterError>")]
pub(super) enum AdminChange {
    CreateTarget(Target),
    UpdateTarget(Target),
    DeleteTarget(TargetId),
    CreateSubscription(Subscription),
    DeleteSubscription(SubscriptionId),
    SetEnabled(TargetId, Option<Disabled>),
}

impl Handler<AdminChange> for Router {
    type Result = AtomicResponse<Self, Result<(), RouterError>>;

    fn handle(&mut self, change: AdminChange, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        match change {
            AdminChange::CreateTarget(target) => {
                // Every target counts, owned here or not: each node holds them all.
                if self.targets.len() >= self.max_targets {
                    return AtomicResponse::new(Box::pin(fut::ready(Err(RouterError::TooManyTargets(
                        self.max_targets,
                    )))));
                }
                let cursor = store.head();
                AtomicResponse::new(Box::pin(
                    async move { store.create_target(&target, cursor).await.map(|()| target) }.into_actor(self).map(
                        |result, act, _| {
                            act.add(result?, Vec::new(), false, Origin::Created);
                            Ok(())
                        },
                    ),
                ))
            }
            AdminChange::UpdateTarget(target) => {
                if let Err(e) = self.entry(&target.id) {
                    return AtomicResponse::new(Box::pin(fut::ready(Err(e))));
                }
                AtomicResponse::new(Box::pin(
                    async move { store.put_target(&target).await.map(|()| target) }.into_actor(self).then(
                        |result, act, _| {
                            let handover = result.map(|target| {
                                let id = target.id.clone();
                                act.change_config(&id, |config| config.target = Arc::new(target))
                            });
                            act.hand_over(handover)
                        },
                    ),
                ))
            }
            AdminChange::DeleteTarget(id) => {
                if let Err(e) = self.entry(&id) {
                    return AtomicResponse::new(Box::pin(fut::ready(Err(e))));
                }
                AtomicResponse::new(Box::pin(
                    async move { store.delete_target(&id).await.map(|()| id) }.into_actor(self).then(
                        |result, act, _| {
                            let removed = result.map(|id| act.remove(&id));
                            async move {
                                if let Some(handle) = removed? {
                                    handle.stop().await;
                                }
                                Ok(())
                            }
                            .into_actor(act)
                        },
                    ),
                ))
            }
            AdminChange::CreateSubscription(sub) => {
                // The count is the target's entry's, which changes only here, one admin change
                // at a time (this response is atomic): no other creation can come in between.
                let existing = match self.entry(&sub.target_id) {
                    Ok(e) => e.config.subscriptions.subscriptions().len(),
                    Err(e) => return AtomicResponse::new(Box::pin(fut::ready(Err(e)))),
                };
                if let Err(e) = check_room(existing) {
                    return AtomicResponse::new(Box::pin(fut::ready(Err(RouterError::TooManySubscriptions(e)))));
                }
                AtomicResponse::new(Box::pin(
                    async move { store.put_subscription(&sub).await.map(|()| sub) }.into_actor(self).then(
                        |result, act, _| {
                            let handover = result
                                .map(|sub| act.change_subscriptions(&sub.target_id.clone(), |subs| subs.push(sub)));
                            act.hand_over(handover)
                        },
                    ),
                ))
            }
            AdminChange::SetEnabled(id, disabled) => {
                if let Err(e) = self.entry(&id) {
                    return AtomicResponse::new(Box::pin(fut::ready(Err(e))));
                }
                let mut batch = DeliveryBatch::default();
                let encoded = match &disabled {
                    Some(d) => batch.disable(&id, d),
                    None => {
                        batch.enable(&id);
                        Ok(())
                    }
                };
                let enabled = disabled.is_none();
                AtomicResponse::new(Box::pin(
                    async move {
                        encoded?;
                        store.write_deliveries(batch).await?;
                        Ok::<_, RouterError>(id)
                    }
                    .into_actor(self)
                    .then(move |result, act, _| {
                        let tell = result.map(|id| act.mark_enabled(&id, enabled));
                        async move {
                            if let Some(handle) = tell? {
                                handle.set_enabled(enabled).await;
                            }
                            Ok(())
                        }
                        .into_actor(act)
                    }),
                ))
            }
            AdminChange::DeleteSubscription(id) => {
                let owner = self
                    .targets
                    .values()
                    .find(|e| e.config.subscriptions.subscriptions().iter().any(|s| s.id == id))
                    .map(|e| e.config.target.id.clone());
                let Some(owner) = owner else {
                    return AtomicResponse::new(Box::pin(fut::ready(Err(RouterError::NotFound(id.to_string())))));
                };
                AtomicResponse::new(Box::pin(
                    async move { store.delete_subscription(&id).await.map(|()| id) }.into_actor(self).then(
                        move |result, act, _| {
                            let handover =
                                result.map(|id| act.change_subscriptions(&owner, |subs| subs.retain(|s| s.id != id)));
                            act.hand_over(handover)
                        },
                    ),
                ))
            }
        }
    }
}

/// A subscription's edit, handled one at a time with the other admin changes (atomically): the
/// subscription is read, edited, stored and handed to its target's actor with no other change
/// in between. Answers the subscription before and after.
#[derive(Message)]
#[rtype(result = "Result<(Subscription, Subscription), RouterError>")]
pub(super) struct EditSubscription {
    pub(super) id: SubscriptionId,
    pub(super) edit: Edit,
}

/// How a subscription is edited: given it as it is, answers it edited or the rule broken.
pub(super) type Edit = Box<dyn FnOnce(&Subscription) -> Result<Subscription, CoreError> + Send>;

impl Handler<EditSubscription> for Router {
    type Result = AtomicResponse<Self, Result<(Subscription, Subscription), RouterError>>;

    fn handle(&mut self, EditSubscription { id, edit }: EditSubscription, _: &mut Context<Self>) -> Self::Result {
        let refuse = |e| AtomicResponse::new(Box::pin(fut::ready(Err(e))));
        let current = self
            .targets
            .values()
            .find_map(|e| e.config.subscriptions.subscriptions().iter().find(|s| s.id == id))
            .cloned();
        let Some(current) = current else { return refuse(RouterError::NotFound(id.to_string())) };
        let edited = match edit(&current) {
            Ok(edited) => edited,
            Err(e) => return refuse(RouterError::Invalid(e)),
        };
        if edited.id != current.id || edited.target_id != current.target_id {
            let detail = "`target_id` cannot change; create a subscription for the other target";
            return refuse(RouterError::Invalid(CoreError::field("target_id", detail)));
        }
        if edited == current {
            return AtomicResponse::new(Box::pin(fut::ready(Ok((current, edited)))));
        }
        let store = self.store.clone();
        AtomicResponse::new(Box::pin(
            async move { store.put_subscription(&edited).await.map(|()| edited) }.into_actor(self).then(
                move |result, act, _| {
                    let written = result.map(|edited| {
                        let handover = act.change_subscriptions(&current.target_id, |subs| {
                            if let Some(s) = subs.iter_mut().find(|s| s.id == edited.id) {
                                *s = edited.clone();
                            }
                        });
                        (handover, edited)
                    });
                    async move {
                        let (handover, edited) = written?;
                        if let Some((handle, config)) = handover {
                            handle.configure(config).await;
                        }
                        Ok((current, edited))
                    }
                    .into_actor(act)
                },
            ),
        ))
    }
}

impl Router {
    /// Changes a target's configuration as the router holds it; answers what to hand its actor,
    /// if one runs here (one that does not will read its entry when it starts).
    pub(super) fn change_config(&mut self, id: &TargetId, change: impl FnOnce(&mut TargetConfig)) -> Option<Handover> {
        let entry = self.targets.get_mut(id)?;
        change(&mut entry.config);
        Some((entry.running()?.clone(), entry.config.clone()))
    }

    /// Applies `change` to a target's subscriptions; answers what to hand its actor.
    fn change_subscriptions(&mut self, id: &TargetId, change: impl FnOnce(&mut Vec<Subscription>)) -> Option<Handover> {
        self.change_config(id, |config| {
            let mut subs = config.subscriptions.subscriptions().to_vec();
            change(&mut subs);
            config.subscriptions = Arc::new(Compiled::new(subs));
        })
    }

    /// Hands a changed configuration to the target's actor.
    fn hand_over(
        &self,
        change: Result<Option<Handover>, StoreError>,
    ) -> impl ActorFuture<Self, Output = Result<(), RouterError>> + 'static {
        async move {
            if let Some((handle, config)) = change? {
                handle.configure(config).await;
            }
            Ok(())
        }
        .into_actor(self)
    }

    /// Notes that the store holds a target enabled or not; answers its actor, to tell, if one
    /// runs here.
    pub(super) fn mark_enabled(&mut self, id: &TargetId, enabled: bool) -> Option<TargetHandle> {
        let entry = self.targets.get_mut(id)?;
        entry.disabled = !enabled;
        entry.running().cloned()
    }
}
