//! The router actor: the write path of the event log and the registry of target actors.
//!
//! Its handle appends validated events through the store's group commit (queued from the
//! HTTP worker's thread, so the acknowledgement does not cross the router's arbiter); once they
//! are durable, the router sees the log's head move and wakes every target actor that has a
//! subscription matching one of them. A wake-up carries no payload: the target reads what it
//! is owed from the log by its own cursor, so nothing here can grow without bound. Admin
//! changes (targets, subscriptions; `admin.rs`) also go through the router, one at a time, so
//! that the store and the running actors agree, and so that the caps on their number
//! (`max_targets`, the subscriptions per target) are checked against every change before them.
//!
//! The router spreads the target actors over the delivery arbiters' [`Lane`]s (each owns its
//! arbiter's awc client), each new one on the lane with the fewest, and hands each actor its
//! counters and the attempt feed. It runs on the first delivery arbiter, the one a new actor
//! goes on when the lanes are even: with one target (whatever targets came and went before it)
//! a move of the head then wakes one thread, not the router's and then the target's (issue 18:
//! 9.7 → 8.7 thread switches per event at 200 events/s with one target).
//!
//! **Ownership** (cluster mode, issue 16). The router holds an entry for every target, with its
//! configuration and subscriptions, on every node: the caps and the admin changes work
//! anywhere. But it runs a target's actor only where the target is owned ([`Ownership`]; on a
//! single node, [`Ownership::all`]: every target, always). When the node takes a target, its
//! actor starts fresh from the store's state, as after a restart (cursor, pending retries and
//! their due times); when it loses one, the actor finishes its attempts in flight and stops,
//! and the entry stays. Redeliveries and tests of a target owned elsewhere answer
//! [`RouterError::Elsewhere`].
//!
//! **Other nodes' admin changes** come through the store: [`crmhook_store::Log::watch_config`]
//! moves after a replicated entry changed targets, subscriptions or disabled targets, and the
//! router reconciles its entries with the store (adds, removes, and reconfigures running actors
//! exactly as a local change does). It compares before acting, so its own changes, which it has
//! applied already, change nothing. Not closed yet: another node's change reaches a running
//! actor a moment after this store applied it, and an actor that reads the log meanwhile
//! matches the events logged in between with the configuration before (a subscription created
//! elsewhere can miss them). Closing it needs the store to say at which event a configuration
//! change was applied, so that actors match no further until the router has reconciled.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use actix::prelude::*;
use crmhook_core::subscription::Compiled;
use crmhook_core::{CoreError, NewEvent, Subscription, SubscriptionId, Target, TargetId};

use crmhook_store::{AckEntry, Attempt, Disabled, LogHandle, Request, StoreError};
use tokio::sync::{oneshot, watch};

use crate::delivery::Lane;
use crate::feed::Feed;
use crate::guard::Guard;
use crate::metrics::Metrics;
use crate::ownership::Ownership;
use crate::target::{Origin, TargetConfig, TargetHandle};

use admin::{AdminChange, EditSubscription};
use cluster::{ConfigMoved, OwnershipMoved};

pub use stop::CUT_OFF_GRACE;

/// What the router starts with, besides the store and the delivery arbiters.
pub struct RouterConfig {
    /// At most this many targets may exist (`max_targets`).
    pub max_targets: usize,
    /// The address guard every delivery client checks with.
    pub guard: Guard,
    /// What every delivery client trusts (`delivery_ca_file`).
    pub tls: crate::tls::DeliveryTls,
    /// The counters: each target actor gets its own [`crate::metrics::TargetMetrics`].
    pub metrics: Arc<Metrics>,
    /// Where the target actors publish the attempts they have recorded.
    pub feed: Feed,
    /// Which targets this node delivers: [`Ownership::all`] on a single node.
    pub ownership: Ownership,
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
    /// The target exists, but another node delivers it (cluster mode): a redelivery or a test
    /// is that node's to make.
    #[error("target {0} is delivered by another node")]
    Elsewhere(TargetId),
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
    /// Starts the router, a [`Lane`] on each of `arbiters`, and one actor per stored target
    /// this node owns (`config.ownership`), spread over the lanes.
    pub fn start(
        store: LogHandle,
        arbiters: &[ArbiterHandle],
        config: RouterConfig,
    ) -> Result<RouterHandle, StoreError> {
        // Seen before the targets are read: any change after this read moves it again.
        let mut config_moves = store.watch_config();
        config_moves.borrow_and_update();
        let targets = store.targets()?;
        let subscriptions = store.subscriptions()?;
        let disabled =
            targets.iter().map(|t| store.disabled(&t.id).map(|d| d.is_some())).collect::<Result<Vec<_>, _>>()?;
        let handle_store = store.clone();
        let lanes: Vec<Lane> = arbiters
            .iter()
            .enumerate()
            .map(|(i, arbiter)| Lane::start(i, arbiter, config.guard, config.tls.clone()))
            .collect();
        let RouterConfig { max_targets, metrics, feed, ownership, .. } = config;
        let make = move |ctx: &mut Context<Router>| {
            ctx.set_mailbox_capacity(1024);
            let routed = store.head();
            let mut router = Router {
                store,
                lane_loads: vec![0; lanes.len()],
                lanes,
                targets: HashMap::new(),
                max_targets,
                metrics,
                feed,
                routed,
                ownership,
                config_moves: Some(config_moves),
            };
            for (target, disabled) in targets.into_iter().zip(disabled) {
                let subs = subscriptions.iter().filter(|s| s.target_id == target.id).cloned().collect();
                router.add(target, subs, disabled, Origin::TakenOver);
            }
            router
        };
        // On the first lane's arbiter (see the module's docs); on the caller's without lanes.
        let addr = match arbiters.first() {
            Some(arbiter) => Router::start_in_arbiter(arbiter, make),
            None => Router::create(make),
        };
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
    /// A target another node delivers answers [`RouterError::Elsewhere`].
    pub async fn requeue(&self, target: TargetId, seqs: Vec<u64>, request: Request) -> Result<u64, RouterError> {
        let handle = self.locate(target).await?;
        Ok(handle.requeue(seqs, request).await)
    }

    /// Answers once the target's deliveries being attempted now have ended and the records of
    /// those finished are in the store (up to 2 s): a listing of its finished deliveries then
    /// holds each that had arrived. A target another node delivers answers
    /// [`RouterError::Elsewhere`].
    pub async fn settled(&self, target: TargetId) -> Result<(), RouterError> {
        let handle = self.locate(target).await?;
        handle.settled().await;
        Ok(())
    }

    /// Brings forward a target's deliveries waiting for a retry (of events received within
    /// `received`, ms, if given) to now; answers how many. A target another node delivers answers
    /// [`RouterError::Elsewhere`].
    pub async fn hasten(
        &self,
        target: TargetId,
        received: Option<Range<u64>>,
        request: Request,
    ) -> Result<u64, RouterError> {
        let handle = self.locate(target).await?;
        Ok(handle.hasten(received, request).await)
    }

    /// Tests a target: logs `event` as a test event ([`NewEvent::test`]), delivers it to that
    /// target alone, at once and once, and records the attempt (`TargetHandle::test`).
    /// Answers the event's acknowledgement and the attempt. An unknown target, or one another
    /// node delivers ([`RouterError::Elsewhere`]), logs nothing.
    pub async fn test(&self, target: TargetId, event: NewEvent) -> Result<(AckEntry, Attempt), RouterError> {
        let event = NewEvent { test: true, external_id: None, ..event };
        let handle = self.locate(target).await?;
        // Straight to the log writer's queue, as ingest does; no target's window takes it (a
        // test event matches no subscription).
        let ack = self.store.queue_append(vec![event], None)?.wait().await?;
        let ack = ack.into_iter().next().ok_or(RouterError::Stopped)?;
        let attempt = handle.test(ack.seq).await?;
        Ok((ack, attempt))
    }

    /// The actor of a target this node delivers (once it has started, if it is being stopped
    /// and started again).
    async fn locate(&self, target: TargetId) -> Result<TargetHandle, RouterError> {
        let mut located = self.addr.send(HandleOf(target.clone())).await.map_err(|_| RouterError::Stopped)?;
        loop {
            located = match located {
                Located::Here(handle) => return Ok(handle),
                Located::Soon(later) => later.await.map_err(|_| RouterError::Stopped)?,
                Located::Elsewhere => return Err(RouterError::Elsewhere(target)),
                Located::NotFound => return Err(RouterError::NotFound(target.to_string())),
            };
        }
    }

    /// Enables a target (`None`) or disables it for the given reason.
    pub async fn set_enabled(&self, id: TargetId, disabled: Option<Disabled>) -> Result<(), RouterError> {
        self.admin(AdminChange::SetEnabled(id, disabled)).await
    }

    async fn admin(&self, change: AdminChange) -> Result<(), RouterError> {
        self.addr.send(change).await.map_err(|_| RouterError::Stopped)?
    }
}

/// What the router holds of a target: its configuration (on every node) and its actor (where
/// the target is owned).
struct Entry {
    config: TargetConfig,
    /// Whether the store holds the target disabled, as the router last saw or wrote it (an
    /// actor that disables its target on a 410 writes the store, and the next reconciliation
    /// sees it).
    disabled: bool,
    actor: Delivering,
}

/// Whether a target's actor runs here.
enum Delivering {
    /// Not here: the target is owned elsewhere (or by nobody yet).
    No,
    Yes(TargetHandle),
    /// Ownership was lost: the actor finishes its attempts in flight, then stops. Whoever asks
    /// for its actor meanwhile is answered once it has stopped (and, if the target is owned
    /// again by then, started again).
    Stopping {
        handle: TargetHandle,
        waiting: Vec<oneshot::Sender<Located>>,
    },
}

impl Entry {
    fn running(&self) -> Option<&TargetHandle> {
        match &self.actor {
            Delivering::Yes(handle) => Some(handle),
            _ => None,
        }
    }
}

/// What a target's configuration is handed to its actor with.
type Handover = (TargetHandle, TargetConfig);

struct Router {
    store: LogHandle,
    lanes: Vec<Lane>,
    /// How many actors (running or stopping) each lane has: one more when one starts
    /// ([`Router::spawn_actor`]), one fewer when its entry stops holding it ([`Router::stopped`],
    /// [`Router::remove`]).
    lane_loads: Vec<usize>,
    targets: HashMap<TargetId, Entry>,
    max_targets: usize,
    metrics: Arc<Metrics>,
    feed: Feed,
    /// Events up to here have been routed (targets woken).
    routed: u64,
    ownership: Ownership,
    /// The store's config watch, until `started` follows it.
    config_moves: Option<watch::Receiver<u64>>,
}

impl Router {
    /// Adds a target's entry, and starts its actor if this node owns it (`why`: whether the
    /// target was just created here, or another actor may have delivered to it until now).
    fn add(&mut self, target: Target, subscriptions: Vec<Subscription>, disabled: bool, why: Origin) {
        let config = TargetConfig { target: Arc::new(target), subscriptions: Arc::new(Compiled::new(subscriptions)) };
        let actor = match self.ownership.owns(&config.target.id) {
            true => Delivering::Yes(self.spawn_actor(config.clone(), why)),
            false => Delivering::No,
        };
        self.targets.insert(config.target.id.clone(), Entry { config, disabled, actor });
    }

    /// Brings a target's actor in line with ownership: starts one (fresh: it reads its state from
    /// the store) if the target is owned and none runs; begins stopping it if the target is no
    /// longer owned. Answers the actor that stops, for the caller to drain and stop.
    #[must_use]
    fn settle(&mut self, id: &TargetId) -> Option<TargetHandle> {
        let owns = self.ownership.owns(id);
        let entry = self.targets.get_mut(id)?;
        match (&entry.actor, owns) {
            (Delivering::No, true) => {
                let config = entry.config.clone();
                let handle = self.spawn_actor(config, Origin::TakenOver);
                if let Some(entry) = self.targets.get_mut(id) {
                    entry.actor = Delivering::Yes(handle);
                }
                None
            }
            (Delivering::Yes(handle), false) => {
                let handle = handle.clone();
                entry.actor = Delivering::Stopping { handle: handle.clone(), waiting: Vec::new() };
                Some(handle)
            }
            _ => None,
        }
    }

    /// [`Router::settle`], with the stopping actor drained and stopped without holding up the
    /// router; once it has stopped the target is settled again.
    fn settle_now(&mut self, id: &TargetId, ctx: &mut Context<Self>) {
        let Some(handle) = self.settle(id) else { return };
        tracing::info!(target_id = %id, "target no longer owned here: stopping its deliveries");
        let id = id.clone();
        // Asked now, not when the router next polls its futures: from here on the actor starts
        // nothing new, whatever is ahead of the request in its mailbox.
        let drained = handle.drain();
        ctx.spawn(
            async move {
                drained.await;
                handle.stop().await;
            }
            .into_actor(self)
            .map(move |(), act, ctx| act.stopped(&id, ctx)),
        );
    }

    /// A target's actor has stopped after its ownership was lost.
    fn stopped(&mut self, id: &TargetId, ctx: &mut Context<Self>) {
        // Deleted meanwhile: its waiters were answered then.
        let Some(entry) = self.targets.get_mut(id) else { return };
        let Delivering::Stopping { waiting, handle } = std::mem::replace(&mut entry.actor, Delivering::No) else {
            return;
        };
        self.unseat(id, &handle);
        // What it had taken from the log and not written down is owed again, by whichever
        // node owns the target (an actor started here again clears it too).
        self.store.unrecorded(id).clear();
        self.settle_now(id, ctx);
        for waiter in waiting {
            let _ = waiter.send(self.locate(id));
        }
    }

    /// Where a target's actor is, as far as the router knows now.
    fn locate(&self, id: &TargetId) -> Located {
        match self.targets.get(id).map(|e| &e.actor) {
            None => Located::NotFound,
            Some(Delivering::Yes(handle)) => Located::Here(handle.clone()),
            Some(_) => Located::Elsewhere,
        }
    }

    /// Removes a target's entry; answers its running actor, to stop.
    fn remove(&mut self, id: &TargetId) -> Option<TargetHandle> {
        match self.targets.remove(id)?.actor {
            Delivering::Yes(handle) => {
                self.unseat(id, &handle);
                Some(handle)
            }
            Delivering::No => None,
            // It is stopping already; whoever waits for it learns the target is gone.
            Delivering::Stopping { waiting, handle } => {
                self.unseat(id, &handle);
                for waiter in waiting {
                    let _ = waiter.send(Located::NotFound);
                }
                None
            }
        }
    }

    fn entry(&self, id: &TargetId) -> Result<&Entry, RouterError> {
        self.targets.get(id).ok_or_else(|| RouterError::NotFound(id.to_string()))
    }
}

impl Actor for Router {
    type Context = Context<Self>;

    /// Follows the log's head: each move is a `HeadMoved` in the mailbox (`try_send`: when the
    /// mailbox is full one is already queued, and each routes up to the current head). Follows
    /// the store's config watch (`ConfigMoved`) and, in cluster mode, ownership
    /// (`OwnershipMoved`): each in a task of its own that waits for its message to be handled
    /// before it looks again (moves meanwhile are one), so a quiet watch costs the router
    /// nothing.
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
        if let Some(mut config) = self.config_moves.take() {
            let me = ctx.address().downgrade();
            actix_rt::spawn(async move {
                while config.changed().await.is_ok() {
                    let Some(me) = me.upgrade() else { break };
                    if me.send(ConfigMoved).await.is_err() {
                        break;
                    }
                }
            });
        }
        if self.ownership.changes() {
            let mut ownership = self.ownership.clone();
            let me = ctx.address().downgrade();
            actix_rt::spawn(async move {
                while ownership.changed().await {
                    let Some(me) = me.upgrade() else { break };
                    if me.send(OwnershipMoved).await.is_err() {
                        break;
                    }
                }
            });
        }
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
    /// Wakes each running target that has a subscription matching one of the events `from..=to`.
    fn wake_interested(&self, from: u64, to: u64) {
        if !self.targets.values().any(|e| e.running().is_some()) {
            return;
        }
        let events: Vec<_> =
            self.store.event_refs_from(from).take_while(|e| e.as_ref().is_ok_and(|e| e.seq <= to)).flatten().collect();
        for entry in self.targets.values() {
            let Some(handle) = entry.running() else { continue };
            if events.iter().any(|e| entry.config.subscriptions.matches(e)) {
                handle.wake();
            }
        }
    }
}

/// Where a target's actor is.
enum Located {
    Here(TargetHandle),
    /// Stopping after ownership was lost while the target is owned again: answered once it
    /// has stopped.
    Soon(oneshot::Receiver<Located>),
    Elsewhere,
    NotFound,
}

#[derive(Message)]
#[rtype(result = "Located")]
struct HandleOf(TargetId);

impl Handler<HandleOf> for Router {
    type Result = MessageResult<HandleOf>;

    fn handle(&mut self, HandleOf(id): HandleOf, ctx: &mut Context<Self>) -> MessageResult<HandleOf> {
        // Ownership as it is now, even if its move is still in the mailbox.
        self.settle_now(&id, ctx);
        let owns = self.ownership.owns(&id);
        if let Some(Entry { actor: Delivering::Stopping { waiting, .. }, .. }) = self.targets.get_mut(&id) {
            if owns {
                let (tx, rx) = oneshot::channel();
                waiting.push(tx);
                return MessageResult(Located::Soon(rx));
            }
        }
        MessageResult(self.locate(&id))
    }
}

mod admin;
mod cluster;
mod lanes;
mod stop;
#[cfg(test)]
mod tests;
