//! The router actor: the write path of the event log and the registry of target actors.
//!
//! Its handle appends validated events through the store's group commit (queued from the
//! HTTP worker's thread, so the acknowledgement does not cross the router's arbiter); once they
//! are durable, the router sees the log's head move and wakes every target actor that has a
//! subscription matching one of them. A wake-up carries no payload: the target reads what it
//! is owed from the log by its own cursor, so nothing here can grow without bound. Admin
//! changes (targets, subscriptions) also go through the router, one at a time, so that the
//! store and the running actors agree, and so that the caps on their number (`max_targets`,
//! the subscriptions per target) are checked against every change before them.
//!
//! The router spreads the target actors over the delivery arbiters' [`Lane`]s (each owns its
//! arbiter's awc client), and hands each actor its counters and the attempt feed.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use crmhook_core::subscription::{check_room, Compiled};
use crmhook_core::{CoreError, NewEvent, Subscription, SubscriptionId, Target, TargetId};
use std::time::Duration;

use crmhook_store::{AckEntry, Attempt, DeliveryBatch, Disabled, LogHandle, Request, StoreError};

use crate::delivery::Lane;
use crate::feed::Feed;
use crate::guard::Guard;
use crate::metrics::Metrics;
use crate::target::{TargetConfig, TargetHandle};

/// What the router starts with, besides the store and the delivery arbiters.
pub struct RouterConfig {
    /// At most this many targets may exist (`max_targets`).
    pub max_targets: usize,
    /// The address guard every delivery client checks with.
    pub guard: Guard,
    /// The counters: each target actor gets its own [`crate::metrics::TargetMetrics`].
    pub metrics: Arc<Metrics>,
    /// Where the target actors publish the attempts they have recorded.
    pub feed: Feed,
}

/// Why an admin change was refused.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0} not found")]
    NotFound(String),
    #[error("at most {0} targets may exist (max_targets)")]
    TooManyTargets(usize),
    /// The target already has as many subscriptions as one target may have
    /// ([`crmhook_core::subscription::MAX_PER_TARGET`]): the error is that rule's 422 (on
    /// `target_id`). Counted here, where creations are handled one at a time, so two creations
    /// at the same moment cannot both take the last place.
    #[error(transparent)]
    TooManySubscriptions(CoreError),
    /// An edit of a subscription broke a rule of subscriptions (a 422 naming the member).
    #[error(transparent)]
    Invalid(CoreError),
    #[error("the router has stopped")]
    Stopped,
}

/// Our handle on the router actor.
#[derive(Clone)]
pub struct RouterHandle {
    addr: Addr<Router>,
    store: LogHandle,
}

impl RouterHandle {
    /// Starts the router, a [`Lane`] on each of `arbiters`, and one actor per stored target,
    /// spread over the lanes.
    pub fn start(
        store: LogHandle,
        arbiters: &[ArbiterHandle],
        config: RouterConfig,
    ) -> Result<RouterHandle, StoreError> {
        let targets = store.targets()?;
        let subscriptions = store.subscriptions()?;
        let handle_store = store.clone();
        let lanes = arbiters.iter().map(|arbiter| Lane::start(arbiter, config.guard)).collect();
        let RouterConfig { max_targets, metrics, feed, .. } = config;
        let addr = Router::create(move |ctx| {
            ctx.set_mailbox_capacity(1024);
            let routed = store.head();
            let mut router =
                Router { store, lanes, next_lane: 0, targets: HashMap::new(), max_targets, metrics, feed, routed };
            for target in targets {
                let subs = subscriptions.iter().filter(|s| s.target_id == target.id).cloned().collect();
                router.spawn_target(target, subs);
            }
            router
        });
        Ok(RouterHandle { addr, store: handle_store })
    }

    /// Appends a request's events durably; answers their acknowledgement.
    pub async fn ingest(
        &self,
        events: Vec<NewEvent>,
        idempotency_key: Option<String>,
    ) -> Result<Vec<AckEntry>, RouterError> {
        // Straight to the log writer's queue, from the HTTP worker's thread: the writer gives the
        // order, and the answer comes back to this worker without a hop through the router's
        // arbiter. The router learns of the new events from the log's head (see `HeadMoved`).
        let queued = self.store.queue_append(events, idempotency_key)?;
        Ok(queued.wait().await?)
    }

    pub async fn create_target(&self, target: Target) -> Result<(), RouterError> {
        self.admin(AdminChange::CreateTarget(target)).await
    }

    pub async fn update_target(&self, target: Target) -> Result<(), RouterError> {
        self.admin(AdminChange::UpdateTarget(target)).await
    }

    pub async fn delete_target(&self, id: TargetId) -> Result<(), RouterError> {
        self.admin(AdminChange::DeleteTarget(id)).await
    }

    pub async fn create_subscription(&self, sub: Subscription) -> Result<(), RouterError> {
        self.admin(AdminChange::CreateSubscription(sub)).await
    }

    pub async fn delete_subscription(&self, id: SubscriptionId) -> Result<(), RouterError> {
        self.admin(AdminChange::DeleteSubscription(id)).await
    }

    /// Edits a subscription, one admin change among the others: `edit` is given the
    /// subscription as it is now and answers it edited (its id and target unchanged), or the
    /// rule it breaks ([`RouterError::Invalid`]). The edit is stored, then handed to the
    /// target's actor, which matches the events it reads from then on with it. Answers the
    /// subscription before and after.
    pub async fn update_subscription(
        &self,
        id: SubscriptionId,
        edit: impl FnOnce(&Subscription) -> Result<Subscription, CoreError> + Send + 'static,
    ) -> Result<(Subscription, Subscription), RouterError> {
        let edit = EditSubscription { id, edit: Box::new(edit) };
        self.addr.send(edit).await.map_err(|_| RouterError::Stopped)?
    }

    /// Queues deliveries of these events to a target again; answers how many were queued.
    pub async fn requeue(&self, target: TargetId, seqs: Vec<u64>, request: Request) -> Result<u64, RouterError> {
        let handle = self.addr.send(HandleOf(target.clone())).await.map_err(|_| RouterError::Stopped)?;
        let handle = handle.ok_or_else(|| RouterError::NotFound(target.to_string()))?;
        Ok(handle.requeue(seqs, request).await)
    }

    /// Tests a target: logs `event` as a test event ([`NewEvent::test`]), delivers it to that
    /// target alone, at once and once, and records the attempt (`TargetHandle::test`).
    /// Answers the event's acknowledgement and the attempt. An unknown target logs nothing.
    pub async fn test(&self, target: TargetId, event: NewEvent) -> Result<(AckEntry, Attempt), RouterError> {
        let event = NewEvent { test: true, external_id: None, ..event };
        let handle = self.addr.send(HandleOf(target.clone())).await.map_err(|_| RouterError::Stopped)?;
        let handle = handle.ok_or_else(|| RouterError::NotFound(target.to_string()))?;
        // Straight to the log writer's queue, as ingest does; no target's window takes it (a
        // test event matches no subscription).
        let ack = self.store.queue_append(vec![event], None)?.wait().await?;
        let ack = ack.into_iter().next().ok_or(RouterError::Stopped)?;
        let attempt = handle.test(ack.seq).await?;
        Ok((ack, attempt))
    }

    /// Enables a target (`None`) or disables it for the given reason.
    pub async fn set_enabled(&self, id: TargetId, disabled: Option<Disabled>) -> Result<(), RouterError> {
        self.admin(AdminChange::SetEnabled(id, disabled)).await
    }

    /// Lets every target actor finish the attempts it has in flight (at most `grace`), then
    /// stops them and the router. Undelivered events stay pending on disk.
    pub async fn shutdown(&self, grace: Duration) {
        if let Ok(handles) = self.addr.send(Handles).await {
            let drains = futures_util::future::join_all(handles.iter().map(TargetHandle::drain));
            if actix_rt::time::timeout(grace, drains).await.is_err() {
                tracing::warn!("attempts still in flight after {grace:?}; they stay pending on disk");
            }
        }
        let _ = self.addr.send(Shutdown).await;
    }

    async fn admin(&self, change: AdminChange) -> Result<(), RouterError> {
        self.addr.send(change).await.map_err(|_| RouterError::Stopped)?
    }
}

struct Running {
    config: TargetConfig,
    handle: TargetHandle,
}

struct Router {
    store: LogHandle,
    lanes: Vec<Lane>,
    next_lane: usize,
    targets: HashMap<TargetId, Running>,
    max_targets: usize,
    metrics: Arc<Metrics>,
    feed: Feed,
    /// Events up to here have been routed (targets woken).
    routed: u64,
}

impl Router {
    fn spawn_target(&mut self, target: Target, subscriptions: Vec<Subscription>) {
        let config = TargetConfig { target: Arc::new(target), subscriptions: Arc::new(Compiled::new(subscriptions)) };
        let lane = &self.lanes[self.next_lane % self.lanes.len()];
        self.next_lane += 1;
        let metrics = self.metrics.target(config.target.id.as_str());
        let handle = TargetHandle::start(lane, self.store.clone(), config.clone(), metrics, self.feed.clone());
        self.targets.insert(config.target.id.clone(), Running { config, handle });
    }

    fn running(&self, id: &TargetId) -> Result<&Running, RouterError> {
        self.targets.get(id).ok_or_else(|| RouterError::NotFound(id.to_string()))
    }
}

impl Actor for Router {
    type Context = Context<Self>;

    /// Follows the log's head: each move is a `HeadMoved` in the mailbox (`try_send`: when the
    /// mailbox is full one is already queued, and each routes up to the current head).
    fn started(&mut self, ctx: &mut Context<Self>) {
        let mut head = self.store.watch_head();
        let me = ctx.address();
        ctx.spawn(
            async move {
                while head.changed().await.is_ok() {
                    let _ = me.try_send(HeadMoved);
                }
            }
            .into_actor(self),
        );
    }
}

/// The log's head moved: route the new events.
#[derive(Message)]
#[rtype(result = "()")]
struct HeadMoved;

impl Handler<HeadMoved> for Router {
    type Result = ();

    fn handle(&mut self, _: HeadMoved, _: &mut Context<Self>) {
        let head = self.store.head();
        if head > self.routed {
            let from = self.routed + 1;
            self.routed = head;
            self.wake_interested(from, head);
        }
    }
}

impl Router {
    /// Wakes each target that has a subscription matching one of the events `from..=to`.
    fn wake_interested(&self, from: u64, to: u64) {
        if self.targets.is_empty() {
            return;
        }
        let events: Vec<_> =
            self.store.event_refs_from(from).take_while(|e| e.as_ref().is_ok_and(|e| e.seq <= to)).flatten().collect();
        for running in self.targets.values() {
            if events.iter().any(|e| running.config.subscriptions.matches(e)) {
                running.handle.wake();
            }
        }
    }
}

/// Admin changes, handled one at a time (atomically) so that counts and actors stay in step.
#[derive(Message)]
#[rtype(result = "Result<(), RouterError>")]
enum AdminChange {
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
                if self.targets.len() >= self.max_targets {
                    return AtomicResponse::new(Box::pin(fut::ready(Err(RouterError::TooManyTargets(
                        self.max_targets,
                    )))));
                }
                let cursor = store.head();
                AtomicResponse::new(Box::pin(
                    async move { store.create_target(&target, cursor).await.map(|()| target) }.into_actor(self).map(
                        |result, act, _| {
                            act.spawn_target(result?, Vec::new());
                            Ok(())
                        },
                    ),
                ))
            }
            AdminChange::UpdateTarget(target) => {
                let subs = match self.running(&target.id) {
                    Ok(r) => r.config.subscriptions.clone(),
                    Err(e) => return AtomicResponse::new(Box::pin(fut::ready(Err(e)))),
                };
                AtomicResponse::new(Box::pin(
                    async move { store.put_target(&target).await.map(|()| target) }.into_actor(self).then(
                        move |result, act, _| {
                            let reconfigure = result.map(|target| {
                                let config = TargetConfig { target: Arc::new(target), subscriptions: subs };
                                act.targets.get_mut(&config.target.id).map(|running| {
                                    running.config = config.clone();
                                    (running.handle.clone(), config)
                                })
                            });
                            async move {
                                if let Some((handle, config)) = reconfigure? {
                                    handle.configure(config).await;
                                }
                                Ok(())
                            }
                            .into_actor(act)
                        },
                    ),
                ))
            }
            AdminChange::DeleteTarget(id) => {
                if let Err(e) = self.running(&id) {
                    return AtomicResponse::new(Box::pin(fut::ready(Err(e))));
                }
                AtomicResponse::new(Box::pin(
                    async move { store.delete_target(&id).await.map(|()| id) }.into_actor(self).then(
                        |result, act, _| {
                            let removed = result.map(|id| act.targets.remove(&id));
                            async move {
                                if let Some(running) = removed? {
                                    running.handle.stop().await;
                                }
                                Ok(())
                            }
                            .into_actor(act)
                        },
                    ),
                ))
            }
            AdminChange::CreateSubscription(sub) => {
                // The count is the running target's, which changes only here, one admin change
                // at a time (this response is atomic): no other creation can come in between.
                let existing = match self.running(&sub.target_id) {
                    Ok(r) => r.config.subscriptions.subscriptions().len(),
                    Err(e) => return AtomicResponse::new(Box::pin(fut::ready(Err(e)))),
                };
                if let Err(e) = check_room(existing) {
                    return AtomicResponse::new(Box::pin(fut::ready(Err(RouterError::TooManySubscriptions(e)))));
                }
                AtomicResponse::new(Box::pin(
                    async move { store.put_subscription(&sub).await.map(|()| sub) }.into_actor(self).then(
                        |result, act, _| {
                            let reconfigure = result
                                .map(|sub| act.change_subscriptions(&sub.target_id.clone(), |subs| subs.push(sub)));
                            act.reconfigure(reconfigure)
                        },
                    ),
                ))
            }
            AdminChange::SetEnabled(id, disabled) => {
                let handle = match self.running(&id) {
                    Ok(r) => r.handle.clone(),
                    Err(e) => return AtomicResponse::new(Box::pin(fut::ready(Err(e)))),
                };
                let mut batch = DeliveryBatch::default();
                let encoded = match &disabled {
                    Some(d) => batch.disable(&id, d),
                    None => {
                        batch.enable(&id);
                        Ok(())
                    }
                };
                AtomicResponse::new(Box::pin(
                    async move {
                        encoded?;
                        store.write_deliveries(batch).await?;
                        handle.set_enabled(disabled.is_none()).await;
                        Ok(())
                    }
                    .into_actor(self),
                ))
            }
            AdminChange::DeleteSubscription(id) => {
                let owner = self
                    .targets
                    .values()
                    .find(|r| r.config.subscriptions.subscriptions().iter().any(|s| s.id == id))
                    .map(|r| r.config.target.id.clone());
                let Some(owner) = owner else {
                    return AtomicResponse::new(Box::pin(fut::ready(Err(RouterError::NotFound(id.to_string())))));
                };
                AtomicResponse::new(Box::pin(
                    async move { store.delete_subscription(&id).await.map(|()| id) }.into_actor(self).then(
                        move |result, act, _| {
                            let reconfigure =
                                result.map(|id| act.change_subscriptions(&owner, |subs| subs.retain(|s| s.id != id)));
                            act.reconfigure(reconfigure)
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
struct EditSubscription {
    id: SubscriptionId,
    edit: Edit,
}

/// How a subscription is edited: given it as it is, answers it edited or the rule broken.
type Edit = Box<dyn FnOnce(&Subscription) -> Result<Subscription, CoreError> + Send>;

impl Handler<EditSubscription> for Router {
    type Result = AtomicResponse<Self, Result<(Subscription, Subscription), RouterError>>;

    fn handle(&mut self, EditSubscription { id, edit }: EditSubscription, _: &mut Context<Self>) -> Self::Result {
        let refuse = |e| AtomicResponse::new(Box::pin(fut::ready(Err(e))));
        let current = self
            .targets
            .values()
            .find_map(|r| r.config.subscriptions.subscriptions().iter().find(|s| s.id == id))
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
    /// Applies `change` to a target's subscriptions; answers what to hand its actor.
    fn change_subscriptions(
        &mut self,
        id: &TargetId,
        change: impl FnOnce(&mut Vec<Subscription>),
    ) -> Option<(TargetHandle, TargetConfig)> {
        let running = self.targets.get_mut(id)?;
        let mut subs = running.config.subscriptions.subscriptions().to_vec();
        change(&mut subs);
        running.config.subscriptions = Arc::new(Compiled::new(subs));
        Some((running.handle.clone(), running.config.clone()))
    }

    fn reconfigure(
        &self,
        change: Result<Option<(TargetHandle, TargetConfig)>, StoreError>,
    ) -> impl ActorFuture<Self, Output = Result<(), RouterError>> + 'static {
        async move {
            if let Some((handle, config)) = change? {
                handle.configure(config).await;
            }
            Ok(())
        }
        .into_actor(self)
    }
}

#[derive(Message)]
#[rtype(result = "Option<TargetHandle>")]
struct HandleOf(TargetId);

impl Handler<HandleOf> for Router {
    type Result = MessageResult<HandleOf>;

    fn handle(&mut self, HandleOf(id): HandleOf, _: &mut Context<Self>) -> MessageResult<HandleOf> {
        MessageResult(self.targets.get(&id).map(|r| r.handle.clone()))
    }
}

#[derive(Message)]
#[rtype(result = "Vec<TargetHandle>")]
struct Handles;

impl Handler<Handles> for Router {
    type Result = MessageResult<Handles>;

    fn handle(&mut self, _: Handles, _: &mut Context<Self>) -> MessageResult<Handles> {
        MessageResult(self.targets.values().map(|r| r.handle.clone()).collect())
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Shutdown;

impl Handler<Shutdown> for Router {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Shutdown, _: &mut Context<Self>) -> Self::Result {
        let handles: Vec<TargetHandle> = self.targets.drain().map(|(_, r)| r.handle).collect();
        Box::pin(
            async move {
                for handle in handles {
                    handle.stop().await;
                }
            }
            .into_actor(self)
            .map(|(), _, ctx| ctx.stop()),
        )
    }
}
