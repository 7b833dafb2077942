//! One actor per target: it owns the target's delivery window, its in-flight attempts and its
//! retry timer.
//!
//! The actor never holds a target's whole backlog. It reads the event log from where it has
//! matched (`scanned`), matches each event against the target's subscriptions, and takes at
//! most [`WINDOW`] owed deliveries at a time. A first attempt is not written down before it is
//! made (`fresh`; readers see these through the store's [`Unrecorded`]): a failed attempt
//! writes its retry's pending entry, flushed before the actor goes on; a finished delivery
//! (delivered or dead) frees its slot at once, and its record joins the target's next lazy
//! write (one write in progress at a time, at most `RECORDING` finished deliveries waiting for
//! it). Each of these writes also carries the cursor, the low-water mark below every first
//! attempt still in memory, and how far the actor has matched. A crash can only turn a
//! delivery into one more attempt. So the actor's memory can always be rebuilt from the store:
//! on start it loads its cursor and pending entries, matches again from the cursor (skipping
//! deliveries already recorded), and carries on.
//!
//! Its mailbox is small and carries only small messages (wake-ups, configuration, attempt
//! reports); payloads are read from the store when an attempt starts.
//!
//! An attempt is counted (its [`TargetMetrics`]) and published on the attempt [`Feed`] once its
//! record is written; one whose record cannot be written is neither (it will be made again).
//! The actor delivers with the awc client of the arbiter it runs on ([`delivery::Lane`]).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use crmhook_core::retry::{self, Next};
use crmhook_core::subscription::Compiled;
use crmhook_core::time::now_ms;
use crmhook_core::{Target, TargetId};
use crmhook_store::{Attempt, AttemptResult, DeliveryBatch, Disabled, Pending, Request, Store, Unrecorded};
use rand::RngExt;
use tokio::sync::oneshot;

use crate::delivery;
use crate::feed::{AttemptRecorded, Feed};
use crate::metrics::TargetMetrics;

/// Most deliveries a target holds in memory (pending, retrying or in flight).
pub const WINDOW: usize = 1024;
/// Most log events one fill step reads (a step runs on the arbiter thread, so it stays short).
const SCAN_STEP: usize = 1024;
/// A fill waits for at least this much room in the window.
const FILL_STEP: usize = WINDOW / 4;
/// Concurrent attempts per target (1 when `ordered`).
pub const IN_FLIGHT: usize = 16;
/// Most finished deliveries whose records are still on their way to the store; past it no new
/// attempt starts (the store sets the pace).
const RECORDING: usize = 64 * IN_FLIGHT;
/// The mailbox bound: only small messages travel here.
const MAILBOX: usize = 64;

/// A target's configuration and subscriptions, as the router hands them over.
#[derive(Clone)]
pub struct TargetConfig {
    pub target: Arc<Target>,
    pub subscriptions: Arc<Compiled>,
}

/// Our handle on a target actor; the only way other code talks to one.
#[derive(Clone)]
pub struct TargetHandle {
    addr: Addr<TargetActor>,
}

impl TargetHandle {
    /// Starts the actor for `config` on `lane`'s arbiter, with that arbiter's client; it counts
    /// into `metrics` and publishes on `feed`.
    pub fn start(
        lane: &delivery::Lane,
        store: Store,
        config: TargetConfig,
        metrics: Arc<TargetMetrics>,
        feed: Feed,
    ) -> TargetHandle {
        // The mailbox exists at once (messages wait in it); the actor starts on the arbiter.
        let (tx, rx) = actix::dev::channel::channel(MAILBOX);
        lane.run(move |client| {
            Context::with_receiver(rx).run(TargetActor::new(store, config, client.clone(), metrics, feed));
        });
        TargetHandle { addr: Addr::new(tx) }
    }

    /// Tells the actor the log may have grown. Dropped when the mailbox is full: a full mailbox
    /// already holds a wake-up, and every wake-up reads up to the log's head.
    pub fn wake(&self) {
        let _ = self.addr.try_send(Wake);
    }

    /// Hands the actor a new configuration; waits for room in its mailbox.
    pub async fn configure(&self, config: TargetConfig) {
        let _ = self.addr.send(Configure(config)).await;
    }

    /// Stops the actor; attempts in flight are abandoned (they stay pending on disk).
    pub async fn stop(&self) {
        let _ = self.addr.send(Stop).await;
    }

    /// Starts no new attempt, and answers once the attempts in flight have finished and been
    /// recorded (each is bounded by the target's `timeout_ms`).
    pub async fn drain(&self) {
        if let Ok(idle) = self.addr.send(Drain).await {
            let _ = idle.await;
        }
    }

    /// Queues deliveries again (redeliver, replay), recording the request; answers how many
    /// were queued (deliveries already pending, or of events no longer in the log, are skipped).
    pub async fn requeue(&self, seqs: Vec<u64>, request: Request) -> u64 {
        self.addr.send(Requeue { seqs, request }).await.unwrap_or(0)
    }

    /// Enables or disables delivery (the store is written by the caller).
    pub async fn set_enabled(&self, enabled: bool) {
        let _ = self.addr.send(SetEnabled(enabled)).await;
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Wake;

#[derive(Message)]
#[rtype(result = "()")]
struct Configure(TargetConfig);

#[derive(Message)]
#[rtype(result = "()")]
struct Stop;

#[derive(Message)]
#[rtype(result = "oneshot::Receiver<()>")]
struct Drain;

#[derive(Message)]
#[rtype(result = "()")]
struct SetEnabled(bool);

/// An attempt is over.
#[derive(Message)]
#[rtype(result = "()")]
struct Finished {
    seq: u64,
    n: u32,
    round: u32,
    report: delivery::AttemptReport,
}

#[derive(Message)]
#[rtype(result = "u64")]
struct Requeue {
    seqs: Vec<u64>,
    request: Request,
}

struct TargetActor {
    store: Store,
    config: TargetConfig,
    /// The target prepared for attempts; rebuilt with each configuration.
    endpoint: Arc<delivery::Endpoint>,
    /// Every event up to here has been matched for this target.
    scanned: u64,
    /// Deliveries up to here may have been recorded by an earlier run: each is checked before
    /// it is taken again.
    checked_until: u64,
    /// The cursor and `scanned` as last written.
    saved: (u64, u64),
    pending: BTreeMap<u64, Pending>,
    /// (due time, seq) of the pending deliveries not in flight.
    due: BTreeSet<(u64, u64)>,
    in_flight: HashSet<u64>,
    /// Owed first attempts (pending or in flight) with nothing on disk yet; the cursor stays
    /// below the first of them.
    fresh: BTreeSet<u64>,
    /// What readers of the store see of `fresh` (and of finished ones not yet written).
    unrecorded: Unrecorded,
    /// This arbiter's delivery client.
    client: delivery::Client,
    metrics: Arc<TargetMetrics>,
    feed: Feed,
    timer: Option<(u64, SpawnHandle)>,
    /// 410 Gone or an operator: no attempts until enabled again.
    disabled: bool,
    /// Shutting down: no new work; `idle` is told when the last attempt is recorded.
    draining: bool,
    idle: Vec<oneshot::Sender<()>>,
    /// Pending records on disk that did not fit the window (a large replay).
    more_on_disk: bool,
    /// Finished deliveries (delivered or dead) whose records are not yet in the store: they
    /// are no longer pending in memory, but their pending entries on disk are.
    recording: HashSet<u64>,
    /// The records of finished deliveries waiting for the write in progress.
    unwritten: DeliveryBatch,
    /// Their attempts, counted and published once that write is done.
    unpublished: Vec<AttemptRecorded>,
    writing: bool,
}

impl TargetActor {
    fn new(
        store: Store,
        config: TargetConfig,
        client: delivery::Client,
        metrics: Arc<TargetMetrics>,
        feed: Feed,
    ) -> Self {
        let unrecorded = store.unrecorded(&config.target.id);
        TargetActor {
            store,
            endpoint: Arc::new(delivery::Endpoint::new(config.target.clone(), client.guard())),
            config,
            scanned: 0,
            checked_until: 0,
            saved: (0, 0),
            pending: BTreeMap::new(),
            due: BTreeSet::new(),
            in_flight: HashSet::new(),
            fresh: BTreeSet::new(),
            unrecorded,
            client,
            metrics,
            feed,
            timer: None,
            disabled: false,
            draining: false,
            idle: Vec::new(),
            more_on_disk: false,
            recording: HashSet::new(),
            unwritten: DeliveryBatch::default(),
            unpublished: Vec::new(),
            writing: false,
        }
    }

    fn id(&self) -> &TargetId {
        &self.config.target.id
    }

    fn limit(&self) -> usize {
        if self.config.target.ordered {
            1
        } else {
            IN_FLIGHT
        }
    }

    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.draining {
            if self.in_flight.is_empty() && self.recording.is_empty() {
                for idle in self.idle.drain(..) {
                    let _ = idle.send(());
                }
            }
            return;
        }
        self.reload();
        self.fill(ctx);
        if !self.disabled {
            self.dispatch(ctx);
            self.arm_timer(ctx);
        }
    }

    /// Takes pending records from disk that did not fit the window before, once there is room.
    fn reload(&mut self) {
        if !self.more_on_disk || self.pending.len() > WINDOW / 2 {
            return;
        }
        match self.store.pending(self.id(), WINDOW) {
            Ok(on_disk) => {
                self.more_on_disk = on_disk.len() >= WINDOW;
                for (seq, p) in on_disk {
                    if self.pending.len() >= WINDOW {
                        self.more_on_disk = true;
                        break;
                    }
                    if self.recording.contains(&seq) {
                        continue;
                    }
                    if let std::collections::btree_map::Entry::Vacant(slot) = self.pending.entry(seq) {
                        slot.insert(p);
                        self.due.insert((p.due_at_ms, seq));
                    }
                }
            }
            Err(e) => tracing::error!(target_id = %self.id(), error = %e, "reloading pending deliveries failed"),
        }
    }

    /// Reads the log past `scanned` and takes what this target is owed, up to the window. Nothing
    /// is written: the new marks go with the next write of the target's state.
    fn fill(&mut self, ctx: &mut Context<Self>) {
        let head = self.store.head();
        // Wait until a quarter of a full window is free rather than refill after every delivery.
        if self.pending.len() + FILL_STEP > WINDOW || self.scanned >= head {
            return;
        }
        let room = WINDOW - self.pending.len();
        let mut last = self.scanned;
        let mut taken = Vec::new();
        for event in self.store.event_refs_from(self.scanned + 1).take(SCAN_STEP) {
            match event {
                Ok(event) if event.seq <= head => {
                    last = event.seq;
                    if self.config.subscriptions.matches(&event) && self.owes(event.seq) {
                        taken.push(event.seq);
                        if taken.len() >= room {
                            break;
                        }
                    }
                }
                Ok(_) => break,
                Err(e) => {
                    tracing::error!(target_id = %self.id(), error = %e, "reading the log failed");
                    break;
                }
            }
        }
        if last == self.scanned {
            return;
        }
        self.scanned = last;
        let first = Pending::first(now_ms());
        for seq in &taken {
            self.pending.insert(*seq, first);
            self.due.insert((first.due_at_ms, *seq));
            self.fresh.insert(*seq);
        }
        self.unrecorded.add(&taken);
        // The new marks go with the records of these deliveries; a stretch of events that
        // matched nothing is written down at once, so the cursor keeps up on disk.
        if taken.is_empty() {
            self.write_state(ctx);
        }
    }

    /// Whether a matched event's delivery is still owed: not in the window already and, if an
    /// earlier run may have recorded it, neither pending on disk nor attempted.
    fn owes(&self, seq: u64) -> bool {
        if self.pending.contains_key(&seq) || self.recording.contains(&seq) {
            return false;
        }
        if seq > self.checked_until {
            return true;
        }
        match (self.store.is_pending_on_disk(self.id(), seq), self.store.last_attempt(self.id(), seq)) {
            (Ok(false), Ok(None)) => true,
            (Ok(_), Ok(_)) => false,
            // Unreadable: deliver again rather than maybe never.
            _ => true,
        }
    }

    /// Starts the attempts that are due, within the in-flight limit.
    fn dispatch(&mut self, ctx: &mut Context<Self>) {
        let now = now_ms();
        while self.in_flight.len() < self.limit() && self.recording.len() < RECORDING {
            let next = if self.config.target.ordered {
                // Strictly in log order: only the oldest owed delivery may go.
                self.pending
                    .first_key_value()
                    .map(|(seq, p)| (p.due_at_ms, *seq))
                    .filter(|(_, seq)| !self.in_flight.contains(seq))
            } else {
                self.due.first().copied()
            };
            let Some((due, seq)) = next else { break };
            if due > now {
                break;
            }
            self.due.remove(&(due, seq));
            self.start_attempt(seq, ctx);
        }
    }

    fn start_attempt(&mut self, seq: u64, ctx: &mut Context<Self>) {
        let Some(pending) = self.pending.get(&seq).copied() else {
            return;
        };
        let event = match self.store.event_ref(seq) {
            Ok(Some(event)) => event,
            Ok(None) => {
                tracing::warn!(target_id = %self.id(), seq, "owed event is no longer in the log; dropping the delivery");
                self.pending.remove(&seq);
                self.fresh.remove(&seq);
                self.unrecorded.remove(seq);
                let mut batch = DeliveryBatch::default();
                batch.done(self.id(), seq);
                let store = self.store.clone();
                actix::spawn(async move {
                    let _ = store.write_deliveries(batch).await;
                });
                return;
            }
            Err(e) => {
                tracing::error!(target_id = %self.id(), seq, error = %e, "reading an owed event failed");
                return;
            }
        };
        self.in_flight.insert(seq);
        let endpoint = self.endpoint.clone();
        let client = self.client.clone();
        let n = pending.attempt;
        let round = pending.round;
        let span = tracing::info_span!("attempt", event_id = %event.id, target_id = %self.id(), attempt = n);
        let fut = async move {
            let report = delivery::attempt(&client, &endpoint, &event, n).await;
            tracing::debug!(outcome = ?report.outcome, duration_ms = report.duration_ms, "attempt finished");
            report
        };
        // Its own task on this arbiter, not a future of the actor's context: actix polls every
        // future an actor spawned whenever any of them is woken, so 16 attempts in flight cost
        // 16 polls per answer. The report comes back through the bounded mailbox.
        let addr = ctx.address();
        actix_rt::spawn(async move {
            let report = tracing::Instrument::instrument(fut, span).await;
            let _ = addr.send(Finished { seq, n, round, report }).await;
        });
    }

    /// Records an attempt and what follows it, then updates memory once it is durable.
    fn finished(&mut self, seq: u64, n: u32, round: u32, report: delivery::AttemptReport, ctx: &mut Context<Self>) {
        let target = &self.config.target;
        let now = now_ms();
        let step = retry::Step {
            schedule: &target.retry_schedule_ms,
            attempt: n,
            round_start: round,
            now_ms: now,
            jitter: rand::rng().random_range(-1.0..=1.0),
            retry_after_ms: report.retry_after_ms.filter(|_| retry::honours_retry_after(&report.outcome)),
        };
        let next = retry::next_attempt(retry::classify(&report.outcome), step);
        let (result, following) = match next {
            Next::Delivered => (AttemptResult::Delivered, None),
            Next::RetryAt { attempt, at_ms } => {
                (AttemptResult::Retrying { next_at_ms: at_ms }, Some(Pending { attempt, due_at_ms: at_ms, round }))
            }
            Next::Disabled { attempt } => {
                (AttemptResult::TargetDisabled, Some(Pending { attempt, due_at_ms: now, round }))
            }
            Next::Dead => (AttemptResult::Dead, None),
        };
        match result {
            AttemptResult::Delivered => tracing::debug!(target_id = %target.id, seq, n, "delivered"),
            AttemptResult::Retrying { .. } => {
                tracing::info!(target_id = %target.id, seq, n, outcome = ?report.outcome, "attempt failed; will retry")
            }
            AttemptResult::TargetDisabled => {
                tracing::warn!(target_id = %target.id, seq, n, "receiver answered 410 Gone: target disabled")
            }
            AttemptResult::Dead => {
                tracing::warn!(target_id = %target.id, seq, n, outcome = ?report.outcome, "delivery dead: retry schedule spent")
            }
        }
        let code = match &report.outcome {
            crmhook_core::retry::Outcome::Status(code) => Some(*code),
            _ => None,
        };
        // Counted and published once the record below is written.
        let recorded = AttemptRecorded {
            event_id: report.event_id,
            seq,
            target_id: target.id.clone(),
            n,
            status_code: code,
            result,
            duration_ms: report.duration_ms,
            at_ms: report.at_ms,
        };
        let record =
            Attempt { n, at_ms: report.at_ms, duration_ms: report.duration_ms, outcome: report.outcome, result, round };
        let fresh = self.fresh.contains(&seq);
        let mut batch = DeliveryBatch::default();
        let mut encoded = batch.attempt(&target.id, seq, &record).and_then(|()| match following {
            // With how far the actor has matched: after a crash, the check for recorded
            // deliveries then covers this one.
            Some(p) => batch.pending(&target.id, seq, p).and_then(|()| batch.scanned(&target.id, self.scanned)),
            None => {
                if !fresh {
                    batch.done(&target.id, seq);
                }
                Ok(())
            }
        });
        let disable = result == AttemptResult::TargetDisabled;
        if disable {
            let reason = format!("the receiver answered 410 Gone to attempt {n} of event seq {seq}");
            encoded = encoded.and_then(|()| batch.disable(&target.id, &Disabled { at_ms: now, reason }));
        }
        if let Err(e) = encoded {
            tracing::error!(target_id = %target.id, error = %e, "encoding an attempt failed");
        }
        // A finished delivery's record may be lost in a crash only into one more attempt: the
        // slot is free at once, and the record joins the target's next lazy write.
        let Some(following) = following else {
            self.in_flight.remove(&seq);
            self.pending.remove(&seq);
            // The cursor may pass it in the write that carries its record.
            self.fresh.remove(&seq);
            self.recording.insert(seq);
            self.unwritten.append(batch);
            self.unpublished.push(recorded);
            self.write_state(ctx);
            self.pump(ctx);
            return;
        };
        // A retry's schedule (and a 410's disabling) is flushed before anything else happens.
        let store = self.store.clone();
        let write = async move { store.write_deliveries(batch).await };
        ctx.spawn(write.into_actor(self).map(move |written, act, ctx| {
            match written {
                // Now on disk: the cursor may pass it.
                Ok(()) if fresh => {
                    act.recorded(recorded);
                    act.fresh.remove(&seq);
                    act.unrecorded.remove(seq);
                    act.write_state(ctx);
                }
                Ok(()) => act.recorded(recorded),
                // Memory moves on; the store still holds the older pending entry (or, for a
                // first attempt, the cursor stays below it), so after a restart this delivery
                // is attempted again (at least once).
                Err(e) => tracing::error!(target_id = %act.id(), seq, error = %e, "recording an attempt failed"),
            }
            act.in_flight.remove(&seq);
            act.pending.insert(seq, following);
            act.due.insert((following.due_at_ms, seq));
            act.disabled |= disable;
            act.pump(ctx);
        }));
    }

    /// Writes the finished deliveries' records gathered so far and the marks (cursor, scanned)
    /// if they moved, one write at a time: what changes meanwhile goes in the next.
    fn write_state(&mut self, ctx: &mut Context<Self>) {
        if self.writing {
            return;
        }
        let low = self.fresh.first().map_or(self.scanned, |first| first - 1);
        let marks = (low, self.scanned);
        if self.unwritten.is_empty() && marks == self.saved {
            return;
        }
        let mut batch = std::mem::take(&mut self.unwritten);
        if marks != self.saved {
            let encoded = batch.cursor(self.id(), low).and_then(|()| batch.scanned(self.id(), self.scanned));
            if let Err(e) = encoded {
                tracing::error!(target_id = %self.id(), error = %e, "encoding delivery state failed");
            }
        }
        self.writing = true;
        let written: Vec<u64> = self.recording.iter().copied().collect();
        let attempts = std::mem::take(&mut self.unpublished);
        let store = self.store.clone();
        ctx.spawn(async move { store.write_deliveries_held(batch).await }.into_actor(self).map(
            move |result, act, ctx| {
                act.writing = false;
                match result {
                    Ok(()) => {
                        act.saved = marks;
                        for seq in &written {
                            act.unrecorded.remove(*seq);
                        }
                        for attempt in attempts {
                            act.recorded(attempt);
                        }
                    }
                    Err(e) => {
                        // Not recorded: the cursor stays below these deliveries, so after a
                        // restart they are attempted again (at least once).
                        tracing::error!(target_id = %act.id(), error = %e, "recording finished deliveries failed");
                        act.fresh.extend(&written);
                    }
                }
                for seq in written {
                    act.recording.remove(&seq);
                }
                act.write_state(ctx);
                act.pump(ctx);
            },
        ));
    }

    /// An attempt's record is written: count it, and publish it to whoever listens.
    fn recorded(&self, attempt: AttemptRecorded) {
        self.metrics.attempt(attempt.outcome(), attempt.duration_ms);
        self.feed.publish(|| attempt);
    }

    /// Sets the timer for the next due delivery that is waiting.
    fn arm_timer(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight.len() >= self.limit() {
            return;
        }
        let next_due = if self.config.target.ordered {
            self.pending.first_key_value().filter(|(seq, _)| !self.in_flight.contains(seq)).map(|(_, p)| p.due_at_ms)
        } else {
            self.due.first().map(|(due, _)| *due)
        };
        let Some(due) = next_due else { return };
        if let Some((at, handle)) = self.timer {
            if at <= due {
                return;
            }
            ctx.cancel_future(handle);
        }
        let wait = Duration::from_millis(due.saturating_sub(now_ms()));
        let handle = ctx.run_later(wait, |act, ctx| {
            act.timer = None;
            act.pump(ctx);
        });
        self.timer = Some((due, handle));
    }
}

impl Actor for TargetActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let id = self.id().clone();
        let loaded = self.store.cursor(&id).and_then(|c| {
            Ok((c, self.store.scanned(&id)?, self.store.pending(&id, WINDOW)?, self.store.disabled(&id)?))
        });
        self.unrecorded.clear();
        match loaded {
            Ok((cursor, scanned, pending, disabled)) => {
                self.disabled = disabled.is_some();
                self.more_on_disk = pending.len() >= WINDOW;
                self.scanned = cursor.unwrap_or_else(|| self.store.head());
                self.checked_until = scanned.unwrap_or(0).max(self.scanned);
                self.saved = (cursor.unwrap_or(0), scanned.unwrap_or(0));
                for (seq, p) in pending {
                    self.pending.insert(seq, p);
                    self.due.insert((p.due_at_ms, seq));
                }
                tracing::debug!(target_id = %id, cursor = self.scanned, pending = self.pending.len(), "target resumed");
            }
            Err(e) => tracing::error!(target_id = %id, error = %e, "loading delivery state failed"),
        }
        self.pump(ctx);
    }
}

impl Handler<Wake> for TargetActor {
    type Result = ();

    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        self.pump(ctx);
    }
}

impl Handler<Configure> for TargetActor {
    type Result = ();

    fn handle(&mut self, Configure(config): Configure, ctx: &mut Context<Self>) {
        self.endpoint = Arc::new(delivery::Endpoint::new(config.target.clone(), self.client.guard()));
        self.config = config;
        if let Some((_, handle)) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        self.pump(ctx);
    }
}

impl Handler<Stop> for TargetActor {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<Drain> for TargetActor {
    type Result = MessageResult<Drain>;

    fn handle(&mut self, _: Drain, ctx: &mut Context<Self>) -> MessageResult<Drain> {
        let (tx, rx) = oneshot::channel();
        self.draining = true;
        if let Some((_, handle)) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        self.idle.push(tx);
        self.pump(ctx);
        MessageResult(rx)
    }
}

impl Handler<Finished> for TargetActor {
    type Result = ();

    fn handle(&mut self, Finished { seq, n, round, report }: Finished, ctx: &mut Context<Self>) {
        self.finished(seq, n, round, report, ctx);
    }
}

impl Handler<SetEnabled> for TargetActor {
    type Result = ();

    fn handle(&mut self, SetEnabled(enabled): SetEnabled, ctx: &mut Context<Self>) {
        self.disabled = !enabled;
        if let Some((_, handle)) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        self.pump(ctx);
    }
}

impl Handler<Requeue> for TargetActor {
    type Result = ResponseActFuture<Self, u64>;

    fn handle(&mut self, Requeue { seqs, mut request }: Requeue, _: &mut Context<Self>) -> Self::Result {
        let now = now_ms();
        let mut batch = DeliveryBatch::default();
        let mut queued = Vec::new();
        for seq in seqs {
            let owed = self.pending.contains_key(&seq)
                || self.recording.contains(&seq)
                || self.store.is_pending(self.id(), seq).unwrap_or(true);
            let Ok(Some(event)) = self.store.event_ref(seq) else { continue };
            // Not matched yet, and owed: it will be delivered anyway.
            if owed || (seq > self.scanned && self.config.subscriptions.matches(&event)) {
                continue;
            }
            // The attempt a finished delivery's final state holds is its last one.
            let Ok(held) = self.store.final_attempt(self.id(), seq) else { continue };
            let last = match &held {
                Some(a) => Ok(Some(a.n)),
                None => self.store.last_attempt(self.id(), seq).map(|a| a.map(|a| a.n)),
            };
            let Ok(last) = last else { continue };
            let next = last.map_or(1, |n| n + 1);
            let p = Pending { attempt: next, due_at_ms: now, round: next };
            if batch.requeue(self.id(), seq, p, held.as_ref()).is_ok() {
                queued.push((seq, p));
            }
        }
        request.queued = queued.len() as u64;
        if let Err(e) = batch.request(&request) {
            tracing::error!(error = %e, "encoding an operator request failed");
        }
        let store = self.store.clone();
        Box::pin(async move { store.write_deliveries(batch).await }.into_actor(self).map(move |written, act, ctx| {
            if let Err(e) = written {
                tracing::error!(target_id = %act.id(), error = %e, "queuing deliveries again failed");
                return 0;
            }
            tracing::info!(target_id = %act.id(), queued = queued.len(), by = %request.by, action = %request.action, "deliveries queued again");
            let count = queued.len() as u64;
            for (seq, p) in queued {
                if act.pending.len() >= WINDOW {
                    act.more_on_disk = true;
                    continue;
                }
                act.pending.insert(seq, p);
                act.due.insert((p.due_at_ms, seq));
            }
            act.pump(ctx);
            count
        }))
    }
}
