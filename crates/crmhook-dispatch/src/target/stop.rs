//! A target actor's stop and drain, and a graceful stop that cuts attempts off: those still in
//! flight when its grace runs out are recorded as failed ([`CUT_OFF`]), with their retry, so
//! that the receiver, which may have the request, gets the next attempt number after the
//! restart, not the same one again.

use std::sync::atomic::Ordering;

use actix::prelude::*;
use crmhook_core::time::now_ms;
use tokio::sync::oneshot;

use super::{TargetActor, TargetHandle};
use crate::delivery;

impl TargetHandle {
    /// Stops the actor; attempts in flight are abandoned (they stay pending on disk).
    pub async fn stop(&self) {
        let _ = self.addr.send(Stop).await;
    }

    /// Starts no new attempt from the moment it is called (not only once the actor reaches the
    /// message), and answers once the attempts in flight have finished and been recorded (each
    /// is bounded by the target's `timeout_ms`).
    pub fn drain(&self) -> impl std::future::Future<Output = ()> + 'static {
        self.draining.store(true, Ordering::Release);
        let asked = self.addr.send(Drain);
        async move {
            if let Ok(idle) = asked.await {
                let _ = idle.await;
            }
        }
    }

    /// Records each attempt still in flight as failed, cut off by the stop (`CUT_OFF`), with
    /// its retry: the receiver may have the request, and a restart makes the next attempt with
    /// the next number, not the same one again. Their reports, if they still come, are
    /// ignored. A drain answers once these records are written.
    pub async fn cut_off(&self) {
        let _ = self.addr.send(CutOff).await;
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Stop;

#[derive(Message)]
#[rtype(result = "oneshot::Receiver<()>")]
struct Drain;

#[derive(Message)]
#[rtype(result = "()")]
struct CutOff;

/// What an attempt cut off by a stop is recorded with.
pub const CUT_OFF: &str = "cut off: the server stopped before the receiver answered";

/// An attempt in flight, as a stop that cuts it off records it (its event is read again then).
pub(super) struct InFlight {
    pub(super) seq: u64,
    pub(super) n: u32,
    pub(super) round: u32,
    pub(super) at_ms: u64,
}

impl Handler<CutOff> for TargetActor {
    type Result = ();

    fn handle(&mut self, _: CutOff, ctx: &mut Context<Self>) {
        let now = now_ms();
        let mut cut = std::mem::take(&mut self.in_flight);
        cut.sort_by_key(|a| (a.seq, a.n));
        for InFlight { seq, n, round, at_ms } in cut {
            // Not found (compacted meanwhile) or not read: it stays pending on disk, as before.
            let Ok(Some(event)) = self.store.event_ref(seq) else { continue };
            tracing::warn!(target_id = %self.id(), seq, n, "{CUT_OFF}; recorded as failed, to be retried");
            let report = delivery::AttemptReport {
                event_id: event.id.clone(),
                received_at_ms: event.received_at_ms,
                at_ms,
                duration_ms: now.saturating_sub(at_ms),
                outcome: crmhook_core::retry::Outcome::Error(CUT_OFF.into()),
                retry_after_ms: None,
                response: None,
            };
            self.finished(seq, n, round, report, ctx);
        }
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
        self.window.drain();
        self.cancel_timer(ctx);
        self.idle.push(tx);
        self.pump(ctx);
        MessageResult(rx)
    }
}
