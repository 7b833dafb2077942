//! What operators ask of a target beside its window: a test delivery (`POST
//! /v1/targets/{id}/test`, see the parent module's docs), queuing finished deliveries again
//! (redeliver, replay) and bringing forward the retries waiting (a replay of `pending`). Each is
//! a message to the target's actor, handled here.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use crmhook_core::retry::{classify, Verdict};
use crmhook_core::time::now_ms;
use crmhook_core::TargetId;
use crmhook_store::{Attempt, AttemptResult, DeliveryBatch, LogHandle, Pending, Request};
use tokio::sync::oneshot;

use super::{TargetActor, TargetHandle};
use crate::delivery;
use crate::feed::{AttemptRecorded, Feed};
use crate::router::RouterError;

impl TargetHandle {
    /// Delivers the test event at `seq` now, once, and records the attempt (see the parent
    /// module's docs); answers it, with its response.
    pub async fn test(&self, seq: u64) -> Result<Attempt, RouterError> {
        let answer = self.addr.send(Test { seq }).await.map_err(|_| RouterError::Stopped)?;
        answer.await.map_err(|_| RouterError::Stopped)?
    }

    /// Queues deliveries again (redeliver, replay), recording the request; answers how many
    /// were queued (deliveries already pending, or of events no longer in the log, are skipped).
    pub async fn requeue(&self, seqs: Vec<u64>, request: Request) -> u64 {
        self.addr.send(Requeue { seqs, request }).await.unwrap_or(0)
    }

    /// Brings forward the deliveries waiting for a retry (of events received within `received`,
    /// ms, if given) to now, recording the request; answers how many (see
    /// [`crate::window::Window::hasten`]).
    pub async fn hasten(&self, received: Option<Range<u64>>, request: Request) -> u64 {
        self.addr.send(Hasten { received, request }).await.unwrap_or(0)
    }

    /// Answers once the deliveries being attempted now have ended and the records of those
    /// finished are in the store (at most `SETTLE_WAIT` later): what a listing of the target's
    /// finished deliveries reads next then holds every delivery that had arrived, also one
    /// whose receiver had it before crmhook read the answer.
    pub async fn settled(&self) {
        let _ = self.addr.send(Settle).await;
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Settle;

#[derive(Message)]
#[rtype(result = "oneshot::Receiver<Result<Attempt, RouterError>>")]
struct Test {
    seq: u64,
}

#[derive(Message)]
#[rtype(result = "u64")]
struct Requeue {
    seqs: Vec<u64>,
    request: Request,
}

#[derive(Message)]
#[rtype(result = "u64")]
struct Hasten {
    /// Only events received within this span (ms), if given.
    received: Option<Range<u64>>,
    request: Request,
}

impl Handler<Test> for TargetActor {
    type Result = MessageResult<Test>;

    fn handle(&mut self, Test { seq }: Test, _: &mut Context<Self>) -> MessageResult<Test> {
        let (tx, rx) = oneshot::channel();
        let test = TestDelivery {
            store: self.store.clone(),
            endpoint: self.endpoint.clone(),
            client: self.client.clone(),
            feed: self.feed.clone(),
            target: self.id().clone(),
        };
        // Its own task on this arbiter, like every attempt; the window is not involved.
        actix_rt::spawn(async move {
            let _ = tx.send(test.run(seq).await);
        });
        MessageResult(rx)
    }
}

/// What a test delivery needs of its target's actor.
struct TestDelivery {
    store: LogHandle,
    endpoint: Arc<delivery::Endpoint>,
    client: delivery::Client,
    feed: Feed,
    target: TargetId,
}

impl TestDelivery {
    async fn run(self, seq: u64) -> Result<Attempt, RouterError> {
        let event = self.store.event_ref(seq)?.ok_or_else(|| RouterError::NotFound(format!("event seq {seq}")))?;
        if !event.test {
            return Err(RouterError::NotFound(format!("test event seq {seq}")));
        }
        let report = delivery::attempt(&self.client, &self.endpoint, &event, 1).await;
        // One attempt, no retry; a 410 does not disable the target.
        let result = match classify(&report.outcome) {
            Verdict::Delivered => AttemptResult::Delivered,
            Verdict::Retry | Verdict::Disable => AttemptResult::Dead,
        };
        tracing::info!(target_id = %self.target, seq, outcome = ?report.outcome, "test delivery");
        let attempt = Attempt {
            n: 1,
            at_ms: report.at_ms,
            duration_ms: report.duration_ms,
            outcome: report.outcome,
            result,
            round: 1,
            response: report.response,
        };
        let mut batch = DeliveryBatch::default();
        batch.test_attempt(&self.target, seq, &attempt)?;
        self.store.write_deliveries(batch).await?;
        let status_code = match &attempt.outcome {
            crmhook_core::retry::Outcome::Status(code) => Some(*code),
            _ => None,
        };
        self.feed.publish(|| AttemptRecorded {
            event_id: report.event_id,
            seq,
            target_id: self.target.clone(),
            n: 1,
            status_code,
            result,
            duration_ms: attempt.duration_ms,
            at_ms: attempt.at_ms,
            error: crmhook_store::attempt_error(&attempt.outcome, attempt.duration_ms, attempt.response.as_ref()),
            outcome: attempt.outcome.clone(),
            response: attempt.response.clone(),
            test: true,
        });
        Ok(attempt)
    }
}

/// A window blocked by retries waiting at least this long is worth a line in the log.
const BLOCKED_WARN_MS: u64 = 60_000;
/// At most one such line per target in this long.
const BLOCKED_WARN_EVERY_MS: u64 = 10 * 60_000;

/// How long a redelivery waits for deliveries of it that are being attempted, or whose record
/// is on its way to the log, to settle (see [`TargetActor::requeue`]); past it they are skipped.
const SETTLE_WAIT: Duration = Duration::from_secs(2);
/// How often it looks again meanwhile.
const SETTLE_POLL: Duration = Duration::from_millis(5);

impl Handler<Requeue> for TargetActor {
    type Result = ResponseActFuture<Self, u64>;

    fn handle(&mut self, Requeue { seqs, request }: Requeue, _: &mut Context<Self>) -> Self::Result {
        self.requeue(seqs, request, Instant::now() + SETTLE_WAIT, Queue::Again)
    }
}

/// What [`TargetActor::requeue`] does with the deliveries it is asked for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Queue {
    /// A redelivery or a replay: those waiting for a retry are brought forward, the others
    /// (finished) queued again.
    Again,
    /// Retry now: those waiting for a retry are brought forward, and nothing else is queued.
    /// Until 2026-12-07 it queued again the finished ones too, as a replay does: a delivery that
    /// ended dead while the call waited for the attempts under way (two calls at once, or its
    /// last retry brought forward by another) was sent again with a new schedule, and on an
    /// ordered target after newer events.
    SoonerOnly,
}

impl TargetActor {
    /// Queues `seqs` again. A delivery being attempted, or finished with its record still on its
    /// way to the log (held writes ride with the next group, up to 50 ms), is neither owed nor
    /// finished on disk yet: the redelivery waits for it to settle (until `deadline`), so that
    /// an operator who redelivers an event the moment its delivery arrived gets a new one, not
    /// `queued: 0`. A delivery waiting for a retry is brought forward to now instead (its
    /// schedule goes on), and counted as queued.
    fn requeue(
        &mut self,
        seqs: Vec<u64>,
        mut request: Request,
        deadline: Instant,
        queue: Queue,
    ) -> ResponseActFuture<Self, u64> {
        if Instant::now() < deadline && seqs.iter().any(|seq| self.window.settling(*seq)) {
            return Box::pin(
                actix::clock::sleep(SETTLE_POLL)
                    .into_actor(self)
                    .then(move |(), act, _| act.requeue(seqs, request, deadline, queue)),
            );
        }
        let now = now_ms();
        let mut batch = DeliveryBatch::default();
        let mut asked = seqs.clone();
        asked.sort_unstable();
        let sooner = self.hasten_into(&mut batch, now, |seq| asked.binary_search(&seq).is_ok());
        let mut queued = Vec::new();
        let again = if queue == Queue::Again { seqs } else { Vec::new() };
        for seq in again {
            let Ok(Some(event)) = self.store.event_ref(seq) else { continue };
            // Held already, pending, or not matched yet and owed: it will be delivered anyway.
            let pending_elsewhere = || self.store.is_pending(self.id(), seq).unwrap_or(true);
            if self.window.requeue_skips(seq, pending_elsewhere, || self.config.subscriptions.matches(&event)) {
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
                self.window.queue_again(seq);
                queued.push((seq, p));
            }
        }
        request.queued = (queued.len() + sooner.len()) as u64;
        if let Err(e) = batch.request(&request) {
            tracing::error!(error = %e, "encoding an operator request failed");
        }
        let store = self.store.clone();
        Box::pin(async move { store.write_deliveries(batch).await }.into_actor(self).map(move |written, act, ctx| {
            act.window.hastened(&sooner, written.is_ok());
            act.window.requeued(&queued, written.is_ok());
            if let Err(e) = written {
                tracing::error!(target_id = %act.id(), error = %e, "queuing deliveries again failed");
                act.pump(ctx);
                return 0;
            }
            tracing::info!(target_id = %act.id(), queued = queued.len(), sooner = sooner.len(), by = %request.by, action = %request.action, "deliveries queued again");
            act.pump(ctx);
            (queued.len() + sooner.len()) as u64
        }))
    }

    /// Brings forward to `now_ms` the deliveries waiting for a retry that `pick` takes
    /// ([`Window::hasten`](crate::window::Window::hasten)), their new pending entries put in
    /// `batch`; answers their seqs, for `Window::hastened` once `batch` is written.
    fn hasten_into(&mut self, batch: &mut DeliveryBatch, now_ms: u64, pick: impl FnMut(u64) -> bool) -> Vec<u64> {
        let mut seqs = Vec::new();
        for (seq, p) in self.window.hasten(now_ms, pick) {
            match batch.pending(self.id(), seq, p) {
                Ok(()) => seqs.push(seq),
                Err(e) => {
                    tracing::error!(target_id = %self.id(), error = %e, "encoding a pending delivery failed");
                    self.window.hastened(&[seq], false);
                }
            }
        }
        seqs
    }
}

impl Handler<Settle> for TargetActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Settle, _: &mut Context<Self>) -> Self::Result {
        self.settle(self.window.settling_now(), Instant::now() + SETTLE_WAIT)
    }
}

impl TargetActor {
    /// Answers once none of `seqs` is being attempted or has its record on its way to the store,
    /// or at `deadline`.
    fn settle(&mut self, seqs: Vec<u64>, deadline: Instant) -> ResponseActFuture<Self, ()> {
        if Instant::now() < deadline && seqs.iter().any(|seq| self.window.settling(*seq)) {
            return Box::pin(
                actix::clock::sleep(SETTLE_POLL).into_actor(self).then(move |(), act, _| act.settle(seqs, deadline)),
            );
        }
        Box::pin(actix::fut::ready(()))
    }
}

impl Handler<Hasten> for TargetActor {
    type Result = ResponseActFuture<Self, u64>;

    /// Brings forward every delivery of the window waiting for a retry (of an event received
    /// within `received`) to now, as a redelivery of each would ([`TargetActor::requeue`]).
    /// Deliveries not in the window yet are waiting for room in it, not for a time: they go as
    /// soon as there is room.
    fn handle(&mut self, Hasten { received, request }: Hasten, _: &mut Context<Self>) -> Self::Result {
        let recent = |seq: &u64| {
            received.as_ref().is_none_or(|span| {
                self.store.event_ref(*seq).ok().flatten().is_some_and(|e| span.contains(&e.received_at_ms))
            })
        };
        // Those whose retry is being written, and the attempts under way (one that fails now
        // is waiting for its retry once over: until 2026-12-07 it was left out, and waited its
        // whole delay right after an operator asked for now), are waited for, as a redelivery
        // waits; then those of them waiting for a retry are brought forward.
        let mut asked = self.window.waiting_retries(now_ms());
        asked.extend(self.window.settling_now());
        asked.sort_unstable();
        asked.dedup();
        asked.retain(recent);
        self.requeue(asked, request, Instant::now() + SETTLE_WAIT, Queue::SoonerOnly)
    }
}

impl TargetActor {
    /// Shows in the target's health the deliveries waiting for a retry
    /// ([`Window::retries`](crate::window::Window::retries)) and whether its window is blocked by
    /// them, and says in the log, at most once every ten minutes, that the target's window is full
    /// of deliveries waiting for retries a minute or more away while newer events wait behind them
    /// ([`Window::blocked_until`](crate::window::Window::blocked_until)), and what ends it once
    /// the receiver answers again.
    pub(super) fn report_health(&mut self, now_ms: u64) {
        self.metrics.retries(self.window.retries(now_ms));
        let blocked = self.window.blocked_until(now_ms, || self.store.head());
        self.metrics.blocked_until(blocked);
        let Some(due) = blocked else { return };
        let recently = self.blocked_warned_at.is_some_and(|at| now_ms < at + BLOCKED_WARN_EVERY_MS);
        if due < now_ms + BLOCKED_WARN_MS || recently {
            return;
        }
        self.blocked_warned_at = Some(now_ms);
        tracing::warn!(
            target_id = %self.id(),
            owed = self.window.len(),
            parked = self.window.parked(),
            next_retry_in_s = (due - now_ms) / 1_000,
            "the target's window is full of deliveries waiting for retries; newer events wait behind them. \
             If the receiver answers again, send them now: POST /v1/targets/{id}/replay {{\"status\": \"pending\"}} \
             (crmhook replay --target {id} --status pending, or the console's Retry now)",
            id = self.id()
        );
    }
}
