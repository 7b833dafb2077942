//! The lease's fence (cluster mode): a target's actor starts a delivery only before its
//! lease's deadline ([`Fence`]), which the lease keeper moves at each renewal. A node whose
//! process was stopped longer than the lease's TTL (`SIGSTOP`, a stall) resumes with its
//! deadlines passed, and its actors start nothing, instead of delivering, until the keeper's
//! next round, deliveries that the node which took the lease meanwhile makes too. Past the
//! deadline the actor holds its starts, checks again every [`RECHECK`], and resumes once the
//! lease is renewed; if the lease was lost the router drains and stops it. An attempt whose
//! task finds the deadline passed before it sends (the process stopped between the start and
//! the send) is handed back, not sent: it stays owed, due again a moment later
//! ([`crate::window::Window::unstarted`]).

use std::time::Duration;

use actix::prelude::*;
use crmhook_core::time::now_ms;

use super::TargetActor;
use crate::ownership::Fence;

/// How often an actor past its lease's deadline looks again (a renewal takes a lease round, a
/// fifth of the TTL, at least 200 ms).
pub(super) const RECHECK: Duration = Duration::from_millis(25);

/// An actor's fence and its state.
pub(super) struct Held {
    pub(super) fence: Fence,
    /// The re-check armed while starts are held.
    timer: Option<SpawnHandle>,
    /// Whether starts are held now (said once in the log when it begins, once when it ends).
    holding: bool,
}

impl Held {
    pub(super) fn new(fence: Fence) -> Held {
        Held { fence, timer: None, holding: false }
    }
}

/// An attempt's task found the deadline passed before it sent anything.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Fenced {
    pub(super) seq: u64,
    pub(super) n: u32,
}

impl TargetActor {
    /// The actor, starting deliveries only while `fence` allows.
    pub(super) fn fenced(mut self, fence: Fence) -> TargetActor {
        self.fence = Held::new(fence);
        self
    }

    /// Whether deliveries may start now; if not, arms the re-check.
    pub(super) fn may_start(&mut self, ctx: &mut Context<Self>) -> bool {
        if self.fence.fence.allows() {
            if std::mem::take(&mut self.fence.holding) {
                tracing::info!(target_id = %self.id(), "lease renewed: deliveries resume");
            }
            return true;
        }
        if !std::mem::replace(&mut self.fence.holding, true) {
            tracing::warn!(target_id = %self.id(), "lease past its deadline (not renewed in time): no delivery starts until it is");
        }
        if self.fence.timer.is_none() {
            self.fence.timer = Some(ctx.run_later(RECHECK, |act, ctx| {
                act.fence.timer = None;
                act.pump(ctx);
            }));
        }
        false
    }
}

impl Handler<Fenced> for TargetActor {
    type Result = ();

    fn handle(&mut self, Fenced { seq, n }: Fenced, ctx: &mut Context<Self>) {
        if let Some(at) = self.in_flight.iter().position(|a| a.seq == seq && a.n == n) {
            self.in_flight.swap_remove(at);
            tracing::debug!(target_id = %self.id(), seq, n, "attempt not sent: the lease is past its deadline");
            self.window.unstarted(seq, now_ms());
            self.pump(ctx);
        }
    }
}
