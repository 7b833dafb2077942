//! Writing a target's state: the finished deliveries' records and the marks, one lazy write
//! at a time, sent again until written; while one fails, the actor starts no delivery.

use std::time::Duration;

use actix::prelude::*;
use crmhook_store::DeliveryBatch;

use super::TargetActor;
use crate::feed::AttemptRecorded;
use crate::window::StateWrite;

/// How long a write of the finished deliveries' records may go unanswered before the actor
/// starts no more deliveries until it is (ms). A write takes milliseconds; one that does not
/// come back is a log that takes no writes (a cluster's NATS quorum lost: its publish fails only
/// after its timeout, 5 s, by when an actor had made many deliveries it could not record, which
/// the next owner made again).
pub(crate) const RECORDS_OVERDUE_MS: u64 = 1_000;

/// How long a failed write of delivery state waits before it is tried again.
const WRITE_RETRY: Duration = Duration::from_millis(250);
/// One failed try of a write of a target's state in this many is logged (every ten seconds).
const WRITE_RETRIES_LOGGED: u32 = 40;

impl TargetActor {
    /// Writes the finished deliveries' records gathered so far and the cursor if the marks
    /// moved, one write at a time: what changes meanwhile goes in the next. No `W`: the only
    /// records this write makes past the cursor are its blocks of finished deliveries, and a
    /// restart reads how far those go (`Store::scanned`); a retry's schedule is written with
    /// its `W` ([`Then::Flush`]).
    pub(super) fn write_state(&mut self, ctx: &mut Context<Self>) {
        let Some(StateWrite { marks, .. }) = self.window.start_write() else { return };
        let mut batch = std::mem::take(&mut self.unwritten);
        if let Some((low, _)) = marks {
            if let Err(e) = batch.cursor(self.id(), low) {
                tracing::error!(target_id = %self.id(), error = %e, "encoding delivery state failed");
            }
        }
        let attempts = std::mem::take(&mut self.unpublished);
        self.recording_since = Some(crmhook_core::time::now_ms());
        self.send_state(batch, attempts, 0, ctx);
    }

    /// Whether starts are held for the records: a write of them failed and is being tried
    /// again, or has gone unanswered for [`RECORDS_OVERDUE_MS`]. What could not be recorded
    /// would be made again by whichever node delivers the target next; held, a receiver gets
    /// again at most what was started before.
    pub(super) fn records_held(&self, now: u64) -> bool {
        self.records_failing
            || self.recording_since.is_some_and(|since| now.saturating_sub(since) >= RECORDS_OVERDUE_MS)
    }

    /// Sends a write of the target's state ([`TargetActor::write_state`]), the `tries`-th time.
    /// A write that fails is sent again, the same, until it is written: a log that refused it
    /// for a moment (a cluster's stream between leaders) must not leave deliveries that were
    /// made shown as pending, and sent again at the next restart or lease move (until
    /// 2026-12-07 the records were dropped). The window's write stays in progress meanwhile,
    /// and what finishes meanwhile waits for the next write. A log that stays broken (a full
    /// disk) stops the server's store, and this actor with it.
    fn send_state(
        &mut self,
        batch: DeliveryBatch,
        attempts: Vec<AttemptRecorded>,
        tries: u32,
        ctx: &mut Context<Self>,
    ) {
        let again = batch.clone();
        let store = self.store.clone();
        ctx.spawn(async move { store.write_deliveries_held(batch).await }.into_actor(self).map(
            move |result, act, ctx| match result {
                Ok(()) => {
                    act.recording_since = None;
                    if std::mem::take(&mut act.records_failing) {
                        tracing::info!(target_id = %act.id(), "finished deliveries recorded: deliveries resume");
                    }
                    for seq in act.window.write_done(true) {
                        act.unrecorded.remove(seq);
                    }
                    for attempt in attempts {
                        act.recorded(attempt);
                    }
                    act.write_state(ctx);
                    act.pump(ctx);
                }
                // The next try waits a little: a log that is not taking writes is not asked
                // again in a hot loop (nor its failure logged at every try: the first, then
                // one every ten seconds).
                // Meanwhile no delivery starts: what cannot be recorded would be made again by
                // whichever node delivers the target next (an audit saw 50 repeats, attempt 1
                // again, after a NATS quorum loss), and a receiver sees at most the attempts
                // that were in flight.
                Err(e) => {
                    if tries.is_multiple_of(WRITE_RETRIES_LOGGED) {
                        tracing::error!(target_id = %act.id(), error = %e, tries = tries + 1, "recording finished deliveries failed; trying again (no delivery starts meanwhile)");
                    }
                    act.records_failing = true;
                    ctx.run_later(WRITE_RETRY, move |act, ctx| act.send_state(again, attempts, tries + 1, ctx));
                }
            },
        ));
    }
}
