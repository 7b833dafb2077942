//! One actor per target: the shell around its [`Window`], the pure state machine of the
//! target's delivery window (see [`crate::window`] for its rules). The window decides: what the
//! target owes, which attempt starts when, what is written when, when the timer is due. The
//! actor feeds it its inputs (the store's facts, attempt reports, completed writes, its timer,
//! its messages) and carries out its decisions: it reads the log and the store, makes the
//! attempts, writes the records and marks, arms the timer, and keeps the store's
//! [`Unrecorded`] (what readers see of first attempts not written down yet).
//!
//! The actor never holds a target's whole backlog: the window takes at most [`WINDOW`] owed
//! deliveries at a time from the log, matched against the target's subscriptions (and keeps at
//! most [`PARKED`](crate::window::PARKED) more that wait for a retry out of its count). A retry's
//! schedule (and a 410's disabling) is flushed before the window moves on; a finished
//! delivery's record joins the target's next lazy write, which also carries the cursor and how
//! far the window has matched. A crash can only turn a delivery into one more attempt: on start
//! the actor loads its cursor and pending entries and rebuilds the window from them
//! ([`Window::recover`]).
//!
//! Its mailbox is small and carries only small messages (wake-ups, configuration, attempt
//! reports); payloads are read from the store when an attempt starts.
//!
//! An attempt is counted (its [`TargetMetrics`]) and published on the attempt [`Feed`] once its
//! record is written; one whose record cannot be written is neither (it will be made again).
//! The actor delivers with the awc client of the arbiter it runs on ([`delivery::Lane`]).
//!
//! A test delivery ([`TargetHandle::test`], `POST /v1/targets/{id}/test`) is made by the actor
//! too, with the same endpoint and client, but beside its window: at once, whatever is in
//! flight or due and whether the target is enabled, one attempt and no retry. Its record is an
//! attempt of its own (`DeliveryBatch::test_attempt`): the window, the cursor, the counters and
//! the target's health never see it (the test event matches no subscription, so no window
//! takes it either). It is published on the feed marked `test`. A graceful stop's records of
//! the attempts it cut off are `stop`'s.
//!
//! In cluster mode the actor starts a delivery only while its lease's [`Fence`] allows
//! (`fence.rs`): checked before each start, and again by the attempt's task before it sends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use crmhook_core::subscription::Compiled;
use crmhook_core::time::now_ms;
use crmhook_core::{Target, TargetId};
use crmhook_store::{Attempt, AttemptResult, DeliveryBatch, Disabled, LogHandle, Unrecorded};
use rand::RngExt;
use tokio::sync::oneshot;

use crate::delivery;
use crate::feed::{AttemptRecorded, Feed};
use crate::metrics::TargetMetrics;
use crate::ownership::Fence;
use crate::window::{Ended, Fill, Finish, OnDisk, Recovered, Start, Then, Window, SCAN_STEP};

mod chatter;
mod fence;
mod operator;
mod state;
#[cfg(test)]
pub(crate) use state::RECORDS_OVERDUE_MS;
mod stop;
pub use crate::window::{IN_FLIGHT, WINDOW};
use stop::InFlight;
pub use stop::CUT_OFF;

/// The mailbox bound: only small messages travel here.
const MAILBOX: usize = 64;

/// A target's configuration and subscriptions, as the router hands them over.
#[derive(Clone)]
pub struct TargetConfig {
    pub target: Arc<Target>,
    pub subscriptions: Arc<Compiled>,
}

/// Why a target's actor starts: for a target just created, or to take over one that another
/// actor may have delivered to until now (at a start-up, or from another node). A rate-limited
/// target taken over starts nothing for a second (`window::Pace::resume`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Created,
    TakenOver,
}

/// Our handle on a target actor; the only way other code talks to one.
#[derive(Clone)]
pub struct TargetHandle {
    addr: Addr<TargetActor>,
    /// Set by [`TargetHandle::drain`] before its message is queued: the actor looks at it each
    /// time it would start something, so the messages ahead of the drain in its mailbox start
    /// nothing new either.
    draining: Arc<AtomicBool>,
    /// The index of the lane (delivery arbiter) the actor runs on.
    lane: usize,
}

impl TargetHandle {
    /// Starts the actor for `config` on `lane`'s arbiter, with that arbiter's client, for the
    /// reason `why`, starting deliveries only while `fence` allows; it counts into `metrics` and
    /// publishes on `feed`.
    pub fn start(
        lane: &delivery::Lane,
        store: LogHandle,
        config: TargetConfig,
        fence: Fence,
        why: Origin,
        metrics: Arc<TargetMetrics>,
        feed: Feed,
    ) -> TargetHandle {
        // The mailbox exists at once (messages wait in it); the actor starts on the arbiter.
        let (tx, rx) = actix::dev::channel::channel(MAILBOX);
        let draining = Arc::new(AtomicBool::new(false));
        let asked = draining.clone();
        lane.run(move |client| {
            let actor = TargetActor::new(store, config, why, client.clone(), metrics, feed, asked);
            Context::with_receiver(rx).run(actor.fenced(fence));
        });
        TargetHandle { addr: Addr::new(tx), draining, lane: lane.index() }
    }

    /// The index of the lane the actor runs on ([`delivery::Lane::index`]).
    pub fn lane(&self) -> usize {
        self.lane
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

struct TargetActor {
    store: LogHandle,
    config: TargetConfig,
    /// The target prepared for attempts; rebuilt with each configuration.
    endpoint: Arc<delivery::Endpoint>,
    /// What readers of the store see of the window's first attempts with nothing on disk yet
    /// (and of finished ones not yet written).
    unrecorded: Unrecorded,
    /// This arbiter's delivery client.
    client: delivery::Client,
    metrics: Arc<TargetMetrics>,
    feed: Feed,
    /// Told when the last attempt is recorded, once draining.
    idle: Vec<oneshot::Sender<()>>,
    /// The window's attempts in flight (at most its in-flight limit: a short list).
    in_flight: Vec<InFlight>,
    /// The records of finished deliveries waiting for the next write of the target's state.
    unwritten: DeliveryBatch,
    /// Their attempts, counted and published once that write is done.
    unpublished: Vec<AttemptRecorded>,
    /// The armed timer (the window knows when it fires).
    timer: Option<SpawnHandle>,
    window: Window,
    /// Set when a drain is asked ([`TargetHandle::drain`]), before its message arrives.
    drain_asked: Arc<AtomicBool>,
    /// When the log last said the window is blocked by retries waiting (`report_health`).
    blocked_warned_at: Option<u64>,
    /// How many failure lines the log got this minute (at most ten of each kind in full).
    chatter: chatter::Chatter,
    why: Origin,
    /// The lease's deadline, and the re-check while it holds starts back.
    fence: fence::Held,
    /// A write of the finished deliveries' records failed and is being tried again: no
    /// delivery starts until it is written (`target/state.rs`).
    records_failing: bool,
    /// When the write of the finished deliveries' records under way was first sent (ms): one
    /// unanswered for [`state::RECORDS_OVERDUE_MS`] holds the starts too.
    recording_since: Option<u64>,
}

impl TargetActor {
    fn new(
        store: LogHandle,
        config: TargetConfig,
        why: Origin,
        client: delivery::Client,
        metrics: Arc<TargetMetrics>,
        feed: Feed,
        drain_asked: Arc<AtomicBool>,
    ) -> Self {
        let unrecorded = store.unrecorded(&config.target.id);
        TargetActor {
            store,
            endpoint: Arc::new(delivery::Endpoint::new(config.target.clone(), client.guard())),
            window: Window::new(config.target.ordered).paced(config.target.rate_limit_per_s),
            config,
            unrecorded,
            client,
            metrics,
            feed,
            idle: Vec::new(),
            in_flight: Vec::new(),
            unwritten: DeliveryBatch::default(),
            unpublished: Vec::new(),
            timer: None,
            drain_asked,
            blocked_warned_at: None,
            chatter: chatter::Chatter::default(),
            why,
            fence: fence::Held::new(Fence::open()),
            records_failing: false,
            recording_since: None,
        }
    }

    fn id(&self) -> &TargetId {
        &self.config.target.id
    }

    fn pump(&mut self, ctx: &mut Context<Self>) {
        if !self.window.is_draining() && self.drain_asked.load(Ordering::Acquire) {
            self.window.drain();
            self.cancel_timer(ctx);
        }
        if self.window.is_draining() {
            if self.window.is_idle() {
                for idle in self.idle.drain(..) {
                    let _ = idle.send(());
                }
            }
            return;
        }
        if let Some(limit) = self.window.wants_reload() {
            // Pending records on disk that did not fit the window before, now that it has room.
            match self.store.pending(self.id(), limit) {
                Ok(on_disk) => self.window.reloaded(on_disk, limit),
                Err(e) => tracing::error!(target_id = %self.id(), error = %e, "reloading pending deliveries failed"),
            }
        }
        let now = now_ms();
        self.window.park(now, self.store.head());
        self.fill(ctx);
        if !self.records_held(now) && self.may_start(ctx) {
            while let Some(start) = self.window.next_start(now) {
                self.start_attempt(start, ctx);
            }
        }
        self.arm_timer(ctx);
        self.report_health(now);
    }

    /// Reads the log past how far the window has matched and takes what this target is owed,
    /// up to the window's room. Nothing is written but a stretch that matched nothing: the new
    /// marks go with the next write of the target's state.
    fn fill(&mut self, ctx: &mut Context<Self>) {
        let Some(Fill { from, head, room }) = self.window.wants_fill(self.store.head()) else { return };
        let mut last = self.window.scanned();
        let mut taken = Vec::new();
        for event in self.store.event_refs_from(from).take(SCAN_STEP) {
            match event {
                Ok(event) if event.seq <= head => {
                    last = event.seq;
                    let seq = event.seq;
                    let owed = self.config.subscriptions.matches(&event)
                        && self.window.owes(seq, || {
                            let id = &self.config.target.id;
                            let attempted = self.store.last_attempt(id, seq).map(|a| a.is_some());
                            OnDisk::of(self.store.is_pending_on_disk(id, seq), attempted)
                        });
                    if owed {
                        taken.push(seq);
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
        let write_now = self.window.took(last, &taken, now_ms());
        self.unrecorded.add(&taken);
        if write_now {
            self.write_state(ctx);
        }
    }

    /// Reads a started delivery's event and makes the attempt (the window counts it in flight).
    fn start_attempt(&mut self, Start { seq, attempt: n, round }: Start, ctx: &mut Context<Self>) {
        let event = match self.store.event_ref(seq) {
            Ok(Some(event)) => event,
            Ok(None) => {
                tracing::warn!(target_id = %self.id(), seq, "owed event is no longer in the log; dropping the delivery");
                self.window.gone(seq);
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
                self.window.unstarted(seq, now_ms());
                return;
            }
        };
        self.in_flight.push(InFlight { seq, n, round, at_ms: now_ms() });
        let endpoint = self.endpoint.clone();
        let client = self.client.clone();
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
        let fence = self.fence.fence.clone();
        actix_rt::spawn(async move {
            // The process may have been stopped since the start (SIGSTOP, a frozen VM).
            if !fence.allows() {
                let _ = addr.send(fence::Fenced { seq, n }).await;
                return;
            }
            let report = tracing::Instrument::instrument(fut, span).await;
            let _ = addr.send(Finished { seq, n, round, report }).await;
        });
    }

    /// Records an attempt and what follows it, as the window decides.
    fn finished(&mut self, seq: u64, n: u32, round: u32, report: delivery::AttemptReport, ctx: &mut Context<Self>) {
        let target = &self.config.target;
        let now = now_ms();
        let ended = Ended { seq, n, round, outcome: &report.outcome, retry_after_ms: report.retry_after_ms };
        let jitter = rand::rng().random_range(0.0..=1.0);
        let Finish { result, then } = self.window.attempt_finished(ended, now, jitter, &target.retry_schedule_ms);
        match result {
            AttemptResult::Delivered => tracing::debug!(target_id = %target.id, seq, n, "delivered"),
            AttemptResult::Retrying { .. } => {
                if chatter::admit(&mut self.chatter, chatter::Line::Retrying, now, ctx) {
                    tracing::info!(target_id = %target.id, seq, n, outcome = ?report.outcome, "attempt failed; will retry")
                }
            }
            AttemptResult::TargetDisabled => {
                tracing::warn!(target_id = %target.id, seq, n, "receiver answered 410 Gone: target disabled")
            }
            AttemptResult::Dead => {
                if chatter::admit(&mut self.chatter, chatter::Line::Dead, now, ctx) {
                    tracing::warn!(target_id = %target.id, seq, n, outcome = ?report.outcome, "delivery dead: retry schedule spent")
                }
            }
        }
        // A rate-limited target is behind by the operator's choice: its lag holds no ingest back
        // (`max_delivery_lag_ms`).
        if matches!(result, AttemptResult::Delivered) && target.rate_limit_per_s.is_none() {
            self.metrics.delivered_event(report.received_at_ms, now);
        }
        let code = match &report.outcome {
            crmhook_core::retry::Outcome::Status(code) => Some(*code),
            _ => None,
        };
        let record = Attempt {
            n,
            at_ms: report.at_ms,
            duration_ms: report.duration_ms,
            outcome: report.outcome,
            result,
            round,
            response: report.response,
        };
        let mut batch = DeliveryBatch::default();
        let encoded = batch.attempt(&target.id, seq, &record);
        // Counted and published once the record is written; its response (encoded into the
        // batch already) goes to the feed only while someone listens.
        let recorded = AttemptRecorded {
            event_id: report.event_id,
            seq,
            target_id: target.id.clone(),
            n,
            status_code: code,
            result,
            duration_ms: report.duration_ms,
            at_ms: report.at_ms,
            error: crmhook_store::attempt_error(&record.outcome, record.duration_ms, record.response.as_ref()),
            outcome: record.outcome,
            response: record.response.filter(|_| self.feed.listening()),
            test: false,
        };
        let (following, scanned, disable) = match then {
            // A finished delivery's record may be lost in a crash only into one more attempt: the
            // slot is free already, and the record joins the target's next lazy write.
            Then::Finished { done } => {
                if let Err(e) = encoded {
                    tracing::error!(target_id = %target.id, error = %e, "encoding an attempt failed");
                }
                if done {
                    batch.done(&target.id, seq);
                }
                self.unwritten.append(batch);
                self.unpublished.push(recorded);
                self.write_state(ctx);
                self.pump(ctx);
                return;
            }
            Then::Flush { following, scanned, disable } => (following, scanned, disable),
        };
        // A retry's schedule (and a 410's disabling) is flushed before the window moves on, with
        // how far the window has matched: after a crash, the check for recorded deliveries then
        // covers this one.
        let mut encoded = encoded
            .and_then(|()| batch.pending(&target.id, seq, following))
            .and_then(|()| batch.scanned(&target.id, scanned));
        if disable {
            let reason = format!("the receiver answered 410 Gone to attempt {n} of event seq {seq}");
            encoded = encoded.and_then(|()| batch.disable(&target.id, &Disabled { at_ms: now, reason }));
        }
        if let Err(e) = encoded {
            tracing::error!(target_id = %target.id, error = %e, "encoding an attempt failed");
        }
        let store = self.store.clone();
        let write = async move { store.write_deliveries(batch).await };
        ctx.spawn(write.into_actor(self).map(move |written, act, ctx| {
            // Memory moves on either way: if the write failed the store still holds the older
            // pending entry (or, for a first attempt, the cursor stays below it), so after a
            // restart this delivery is attempted again (at least once).
            match &written {
                Ok(()) => act.recorded(recorded),
                Err(e) => tracing::error!(target_id = %act.id(), seq, error = %e, "recording an attempt failed"),
            }
            // A first attempt now on disk: the cursor may pass it.
            if act.window.retry_recorded(seq, written.is_ok()) {
                act.unrecorded.remove(seq);
                act.write_state(ctx);
            }
            act.pump(ctx);
        }));
    }

    /// An attempt's record is written: count it, and publish it to whoever listens.
    fn recorded(&self, attempt: AttemptRecorded) {
        self.metrics.recorded(&attempt);
        self.feed.publish(|| attempt);
    }

    /// Sets the timer for the next due delivery that is waiting, if the window asks.
    fn arm_timer(&mut self, ctx: &mut Context<Self>) {
        let Some(due) = self.window.arm_timer() else { return };
        self.cancel_timer(ctx);
        let wait = Duration::from_millis(due.saturating_sub(now_ms()));
        self.timer = Some(ctx.run_later(wait, |act, ctx| {
            act.timer = None;
            act.window.timer_fired();
            act.pump(ctx);
        }));
    }

    fn cancel_timer(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.timer.take() {
            ctx.cancel_future(handle);
        }
    }
}

impl Actor for TargetActor {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.say_held();
    }

    fn started(&mut self, ctx: &mut Context<Self>) {
        let id = self.id().clone();
        let loaded = self.store.cursor(&id).and_then(|c| {
            Ok((
                c,
                self.store.scanned(&id)?,
                self.store.pending(&id, Window::holds_at_most(self.config.target.ordered))?,
                self.store.disabled(&id)?,
            ))
        });
        self.unrecorded.clear();
        match loaded {
            Ok((cursor, scanned, pending, disabled)) => {
                let recovered =
                    Recovered { cursor, scanned, pending, disabled: disabled.is_some(), head: self.store.head() };
                let window =
                    Window::recover(self.config.target.ordered, recovered).paced(self.config.target.rate_limit_per_s);
                self.window = match self.why {
                    Origin::Created => window,
                    Origin::TakenOver => window.resumed(now_ms()),
                };
                tracing::debug!(target_id = %id, cursor = self.window.scanned(), pending = self.window.len(), "target resumed");
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
        self.window.configure(config.target.ordered, config.target.rate_limit_per_s);
        self.config = config;
        self.cancel_timer(ctx);
        self.pump(ctx);
    }
}

impl Handler<Finished> for TargetActor {
    type Result = ();

    fn handle(&mut self, Finished { seq, n, round, report }: Finished, ctx: &mut Context<Self>) {
        // An attempt a stop cut off is recorded already.
        if let Some(at) = self.in_flight.iter().position(|a| a.seq == seq && a.n == n) {
            self.in_flight.swap_remove(at);
            // Back past the lease's deadline (cluster mode: the process was paused, or NATS out
            // of reach): another node may hold the target now and deliver this event. Recording
            // the outcome would write, into every copy, a retry (a timeout, as the pause made
            // it) that node does not know of, and the next owner would make it again, after
            // newer events. It stays owed here, as an attempt never sent.
            if !self.fence.fence.allows() {
                tracing::info!(target_id = %self.id(), seq, n, "attempt back past the lease's deadline: not recorded");
                self.window.unstarted(seq, now_ms());
                self.pump(ctx);
                return;
            }
            self.finished(seq, n, round, report, ctx);
        }
    }
}

impl Handler<SetEnabled> for TargetActor {
    type Result = ();

    fn handle(&mut self, SetEnabled(enabled): SetEnabled, ctx: &mut Context<Self>) {
        self.window.set_enabled(enabled);
        self.cancel_timer(ctx);
        self.pump(ctx);
    }
}
