//! A target's delivery window as a pure state machine: what the target owes in memory, what is
//! in flight, what is due, what is finished and waiting for its record; the cursor and the
//! marks written with it. No I/O: no store, no actix, no clock (`now_ms` is an argument), no
//! randomness (the retry's jitter is an argument). The target actor is the shell around it: it
//! reads the store and the log where a method asks for facts, and carries out what a method
//! answers (writes, attempts, the timer, the store's [`Unrecorded`](crmhook_store::Unrecorded)).
//!
//! The rules, as the actor has kept them:
//!
//! - The window holds at most [`WINDOW`] owed deliveries (pending, retrying or in flight). It is
//!   filled from the log past `scanned`, at most [`SCAN_STEP`] events a step, once a
//!   [`FILL_STEP`] of it is free; pending entries on disk that did not fit (a large replay) are
//!   taken again once it is half empty.
//! - An ordered target sends only its oldest owed delivery, one at a time; an unordered one sends
//!   by due time, [`IN_FLIGHT`] at a time. A retry whose record is being written holds no
//!   slot (it is not attempted again before its record is down). No attempt starts while
//!   [`RECORDING`] records (finished deliveries, retries) are on their way to the store. A
//!   target with a rate limit starts no more attempts in any second than it allows
//!   ([`Pace`]); the rest wait, due, in the window.
//! - A first attempt is not written down before it is made (`fresh`): the cursor (the low mark)
//!   stays below the first fresh delivery. A finished delivery (delivered or dead) frees its
//!   slot at once and its record joins the next lazy write of the target's state (one write at
//!   a time, carrying the marks when they moved); a retry's schedule, or a 410's disabling, is
//!   flushed before the window moves on (a 410 stops new attempts at once, in memory). If a lazy
//!   write fails, its first attempts are fresh again (the cursor stays below them, and a restart
//!   attempts them again: at least once); its retries still have their pending entries on disk,
//!   which a restart (or a reload) takes again. Neither is attempted again before then.
//! - On start the window is rebuilt from the cursor, how far the last run had matched
//!   (`checked_until`) and the pending entries on disk; a delivery up to `checked_until` is
//!   taken again only if nothing was recorded of it ([`Window::owes`]). How far it had matched
//!   is written no lower meanwhile ([`Window::scanned_mark`]), so a later crash checks them too.
//! - Retries waiting a minute or more may leave the window's count ("park", at most [`PARKED`])
//!   while it is too full to read newer events: see `window/parking.rs`.
//! - An operator may queue finished deliveries again ([`Window::requeued`]) and bring forward
//!   the deliveries waiting for a retry ([`Window::hasten`]): each starts nothing until its new
//!   pending entry is on disk, and a delivery is queued again once at a time.

use std::collections::{BTreeMap, BTreeSet};

use crmhook_core::retry::{self, Next, Outcome};
use crmhook_store::{AttemptResult, Pending};

mod operators;
mod pace;
mod parking;
mod reading;
mod recovery;
mod state;
pub use operators::Retries;
pub use pace::Pace;
pub use parking::{PARKED, PARK_AFTER_MS};
pub use recovery::{owed, OnDisk, Recovered};

/// Most deliveries a target holds in memory (pending, retrying or in flight), retries parked
/// out of its count aside ([`PARKED`]).
pub const WINDOW: usize = 1024;
/// Most log events one fill step reads (a step runs on the arbiter thread, so it stays short).
pub const SCAN_STEP: usize = 1024;
/// A fill waits for at least this much room in the window.
pub const FILL_STEP: usize = WINDOW / 4;
/// Concurrent attempts per target (1 when `ordered`).
pub const IN_FLIGHT: usize = 16;
/// How long a delivery whose event could not be read waits before it is tried again.
pub const UNREADABLE_WAIT_MS: u64 = 1_000;
/// Most records still on their way to the store (finished deliveries, and retries whose
/// schedules are being written); past it no new attempt starts (the store sets the pace).
pub const RECORDING: usize = 64 * IN_FLIGHT;

/// A fill the window wants: the shell reads the log from `from`, at most [`SCAN_STEP`] events
/// and none past `head`, matches each against the subscriptions and [`Window::owes`], and stops
/// once it has taken `room`; then it calls [`Window::took`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fill {
    pub from: u64,
    pub head: u64,
    pub room: usize,
}

/// An attempt to start: read event `seq` and attempt it as number `attempt` of its round
/// `round`. The window counts it in flight already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    pub seq: u64,
    pub attempt: u32,
    pub round: u32,
}

/// An attempt that is over, as its report tells it.
#[derive(Debug, Clone, Copy)]
pub struct Ended<'a> {
    pub seq: u64,
    pub n: u32,
    pub round: u32,
    pub outcome: &'a Outcome,
    /// The receiver's `Retry-After`, whatever the status (the window honours it on 429 and 503
    /// only).
    pub retry_after_ms: Option<u64>,
}

/// What an ended attempt means, and what to record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Finish {
    /// The attempt's record's result.
    pub result: AttemptResult,
    pub then: Then,
}

/// What the shell does with an ended attempt's record (the `Attempt` itself always goes in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Delivered or dead: the slot is free already. The record (and the removal of the pending
    /// entry on disk when `done`) joins the next lazy write: append it to the unwritten batch,
    /// then write the state and pump.
    Finished { done: bool },
    /// A retry, or a 410's wait: write the pending entry `following` and `scanned` (and the
    /// target's disabling when `disable`) durably, then call [`Window::retry_recorded`].
    Flush { following: Pending, scanned: u64, disable: bool },
}

impl Finish {
    /// The attempt's write must be flushed before the window moves on.
    pub fn flushes(&self) -> bool {
        matches!(self.then, Then::Flush { .. })
    }
}

/// A write of the target's state to start: the finished deliveries' records gathered since the
/// last one (the shell's unwritten batch) and, when they moved, the marks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateWrite {
    /// `(cursor, scanned)` to write, if they differ from the last written.
    pub marks: Option<(u64, u64)>,
    /// The finished deliveries whose records the write carries.
    pub finished: Vec<u64>,
}

/// A retry being flushed: what the window does once it is written.
#[derive(Debug, Clone, Copy)]
struct Flushing {
    following: Pending,
    fresh: bool,
    disable: bool,
}

/// The write of the target's state in progress.
#[derive(Debug, Clone)]
struct Writing {
    marks: (u64, u64),
    seqs: Vec<u64>,
}

/// A target's delivery window. See the module docs.
#[derive(Debug, Clone)]
pub struct Window {
    ordered: bool,
    /// Every event up to here has been matched for this target.
    scanned: u64,
    /// Deliveries up to here may have been recorded by an earlier run: each is checked before
    /// it is taken again.
    checked_until: u64,
    /// The cursor and `scanned` as last written.
    saved: (u64, u64),
    pending: BTreeMap<u64, Pending>,
    /// (due time, seq) of the pending deliveries not in flight and not parked.
    due: BTreeSet<(u64, u64)>,
    /// (due time, seq) of the retries parked out of the window's count (`window/parking.rs`):
    /// pending, in none of `due` until they are due.
    parked: BTreeSet<(u64, u64)>,
    /// Attempts started and not yet over, retries being flushed included.
    in_flight: BTreeSet<u64>,
    /// The retries of `in_flight` whose records are being written.
    flushing: BTreeMap<u64, Flushing>,
    /// Owed first attempts (pending or in flight) with nothing on disk yet; the cursor stays
    /// below the first of them.
    fresh: BTreeSet<u64>,
    /// Finished deliveries (delivered or dead) whose records are not yet in the store: they are
    /// no longer pending in memory, but their pending entries on disk are.
    recording: BTreeSet<u64>,
    /// Those of `recording` finished at their first attempt (nothing of them on disk).
    recording_first: BTreeSet<u64>,
    writing: Option<Writing>,
    /// 410 Gone or an operator: no attempts until enabled again.
    disabled: bool,
    /// Shutting down: no new work.
    draining: bool,
    /// Pending records on disk that did not fit the window (a large replay).
    more_on_disk: bool,
    /// Deliveries brought forward whose new pending entries are being written, with them: they
    /// are pending and in none of `due` (so none starts) until [`Window::hastened`].
    hastening: BTreeMap<u64, Pending>,
    /// Deliveries queued again whose pending entries are being written ([`Window::queue_again`]):
    /// a redelivery of one meanwhile is skipped, as one the window holds.
    requeuing: BTreeSet<u64>,
    /// When the armed timer fires.
    timer: Option<u64>,
    /// The target's rate limit, if it has one.
    pace: Option<Pace>,
}

impl Window {
    /// An empty window, nothing matched (what the actor has until its state is loaded, and
    /// keeps if loading fails).
    pub fn new(ordered: bool) -> Window {
        Window {
            ordered,
            scanned: 0,
            checked_until: 0,
            saved: (0, 0),
            pending: BTreeMap::new(),
            due: BTreeSet::new(),
            parked: BTreeSet::new(),
            in_flight: BTreeSet::new(),
            flushing: BTreeMap::new(),
            fresh: BTreeSet::new(),
            recording: BTreeSet::new(),
            recording_first: BTreeSet::new(),
            writing: None,
            disabled: false,
            draining: false,
            more_on_disk: false,
            hastening: BTreeMap::new(),
            requeuing: BTreeSet::new(),
            timer: None,
            pace: None,
        }
    }

    /// The window rebuilt from the store: it matches again from the cursor (from the head for a
    /// target without one), checking the deliveries up to how far the last run had matched,
    /// with the pending entries on disk (at most [`Window::holds_at_most`]; more are taken
    /// later), those beyond [`WINDOW`] parked.
    pub fn recover(ordered: bool, recovered: Recovered) -> Window {
        let Recovered { cursor, scanned, pending, disabled, head } = recovered;
        let mut window = Window::new(ordered);
        let most = Window::holds_at_most(ordered);
        window.disabled = disabled;
        window.more_on_disk = pending.len() >= most;
        window.scanned = cursor.unwrap_or(head);
        window.checked_until = scanned.unwrap_or(0).max(window.scanned);
        window.saved = (cursor.unwrap_or(0), scanned.unwrap_or(0));
        for (seq, p) in pending.into_iter().take(most) {
            window.pending.insert(seq, p);
            window.due.insert((p.due_at_ms, seq));
        }
        window.park_beyond_window();
        window
    }

    /// This window with the target's rate limit (see [`Window::configure`]).
    pub fn paced(mut self, per_s: Option<u32>) -> Window {
        self.configure(self.ordered, per_s);
        self
    }

    /// This window taking its target over from an earlier actor at `now_ms` (after a restart,
    /// or from another node): a rate-limited target starts nothing for a second ([`Pace::resume`]).
    pub fn resumed(mut self, now_ms: u64) -> Window {
        if let Some(pace) = &mut self.pace {
            pace.resume(now_ms);
        }
        self
    }

    /// A new configuration: whether the target is ordered, and its rate limit (at most `per_s`
    /// attempts start in any second; `None`: no limit; the newest starts already counted are
    /// kept when the limit changes, up to the new limit). The timer is forgotten (the shell
    /// cancels its own), then the shell pumps.
    pub fn configure(&mut self, ordered: bool, per_s: Option<u32>) {
        self.ordered = ordered;
        if ordered {
            self.unpark_all();
        }
        match (&mut self.pace, per_s) {
            (Some(pace), Some(per_s)) => pace.relimit(per_s),
            (pace, per_s) => *pace = per_s.map(Pace::new),
        }
        self.timer = None;
    }

    /// Attempts in flight at once.
    pub fn limit(&self) -> usize {
        if self.ordered {
            1
        } else {
            IN_FLIGHT
        }
    }

    // ---- filling ----------------------------------------------------------------------------

    /// Whether to take pending entries on disk that did not fit before, and how many to read:
    /// the shell reads `Store::pending(id, limit)` (as many as the window holds, and a window
    /// more) and calls [`Window::reloaded`] (on a read error, nothing).
    pub fn wants_reload(&self) -> Option<usize> {
        (!self.draining && self.more_on_disk && self.active() <= WINDOW / 2).then(|| self.pending.len() + WINDOW)
    }

    /// Takes the pending entries read from disk (at most `limit`) that are not in the window,
    /// up to its size.
    pub fn reloaded(&mut self, on_disk: Vec<(u64, Pending)>, limit: usize) {
        self.more_on_disk = on_disk.len() >= limit;
        for (seq, p) in on_disk {
            if self.active() >= WINDOW {
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

    /// The fill to make, if any: the log has grown past `scanned` and a [`FILL_STEP`] of the
    /// window is free (rather than refill after every delivery).
    pub fn wants_fill(&self, head: u64) -> Option<Fill> {
        if self.draining || self.active() + FILL_STEP > WINDOW || self.scanned >= head {
            return None;
        }
        Some(Fill { from: self.scanned + 1, head, room: WINDOW - self.active() })
    }

    /// Whether a matched event's delivery is still owed: not in the window already and, if an
    /// earlier run may have recorded it (up to `checked_until`), nothing recorded of it.
    /// `on_disk` is read only then.
    pub fn owes(&self, seq: u64, on_disk: impl FnOnce() -> OnDisk) -> bool {
        if self.pending.contains_key(&seq) || self.recording.contains(&seq) {
            return false;
        }
        if seq > self.checked_until {
            return true;
        }
        // The window reads the log past its cursor only, and asks only of matched events.
        owed(true, on_disk(), || true)
    }

    /// The fill read the log up to `last` (the last event it read; `scanned` if none) and took
    /// the deliveries `taken`, first attempts due at `now_ms`. Nothing is written: the new marks
    /// go with the next write of the target's state, except that a stretch of events that
    /// matched nothing is written down at once, so the cursor keeps up on disk: when this
    /// answers true the shell writes the state. The shell adds `taken` to the store's
    /// `Unrecorded`.
    pub fn took(&mut self, last: u64, taken: &[u64], now_ms: u64) -> bool {
        if last <= self.scanned {
            return false;
        }
        self.scanned = last;
        let first = Pending::first(now_ms);
        for seq in taken {
            self.pending.insert(*seq, first);
            self.due.insert((first.due_at_ms, *seq));
            self.fresh.insert(*seq);
        }
        taken.is_empty()
    }

    // ---- attempts ---------------------------------------------------------------------------

    /// The next attempt to start at `now_ms`, counted in flight at once; `None` when none may
    /// start (disabled, draining, the in-flight limit, [`RECORDING`], nothing due). An ordered
    /// target starts only its oldest owed delivery; an unordered one the first due. The shell
    /// calls it until `None`, reading each one's event: if the event is no longer in the log it
    /// calls [`Window::gone`], if it cannot be read [`Window::unstarted`].
    pub fn next_start(&mut self, now_ms: u64) -> Option<Start> {
        self.unpark(now_ms);
        if self.disabled || self.draining {
            return None;
        }
        if let Some(pace) = &mut self.pace {
            pace.at(now_ms);
            if !pace.allows(now_ms) {
                return None;
            }
        }
        while self.attempting() < self.limit() && self.records_owed() < RECORDING {
            let (due, seq) = self.next_due()?;
            if due > now_ms {
                return None;
            }
            self.due.remove(&(due, seq));
            let Some(p) = self.pending.get(&seq).copied() else { continue };
            self.in_flight.insert(seq);
            if let Some(pace) = &mut self.pace {
                pace.started(now_ms);
            }
            return Some(Start { seq, attempt: p.attempt, round: p.round });
        }
        None
    }

    /// When the next delivery is due, parked ones included.
    fn next_wake(&self) -> Option<u64> {
        let due = self.next_due().map(|(due, _)| due);
        match (due, self.first_parked()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// (due time, seq) of the delivery that goes next, parked ones aside.
    fn next_due(&self) -> Option<(u64, u64)> {
        if self.ordered {
            // Strictly in log order: only the oldest owed delivery may go.
            self.pending
                .first_key_value()
                .map(|(seq, p)| (p.due_at_ms, *seq))
                .filter(|(_, seq)| !self.in_flight.contains(seq) && !self.hastening.contains_key(seq))
        } else {
            self.due.first().copied()
        }
    }

    /// A started delivery's event is no longer in the log: the delivery is dropped. The shell
    /// removes `seq` from the store's `Unrecorded` and writes its `done` (without waiting).
    pub fn gone(&mut self, seq: u64) {
        self.in_flight.remove(&seq);
        self.pending.remove(&seq);
        self.fresh.remove(&seq);
    }

    /// A started delivery's event could not be read at `now_ms` (or the lease's fence held it
    /// back: `target/fence.rs`): it is not in flight, stays
    /// owed, and is due again [`UNREADABLE_WAIT_MS`] later (in memory only), so the shell's start
    /// loop moves on (an ordered target's oldest delivery would otherwise be due at once again,
    /// for ever) and the timer tries it again.
    pub fn unstarted(&mut self, seq: u64, now_ms: u64) {
        self.in_flight.remove(&seq);
        if let Some(p) = self.pending.get_mut(&seq) {
            p.due_at_ms = now_ms.saturating_add(UNREADABLE_WAIT_MS);
            self.due.insert((p.due_at_ms, seq));
        }
    }

    /// An attempt is over at `now_ms`: what follows it (the retry schedule, `Retry-After` on 429
    /// and 503, 410 disabling, with `jitter` in [0, 1]) and what to record. A finished delivery
    /// frees its slot at once; a retry frees its slot too, but stays in flight (not attempted
    /// again, not brought forward) until [`Window::retry_recorded`].
    pub fn attempt_finished(&mut self, ended: Ended<'_>, now_ms: u64, jitter: f64, schedule: &[u64]) -> Finish {
        let Ended { seq, n, round, outcome, retry_after_ms } = ended;
        let step = retry::Step {
            schedule,
            attempt: n,
            round_start: round,
            now_ms,
            jitter,
            retry_after_ms: retry_after_ms.filter(|_| retry::honours_retry_after(outcome)),
        };
        let (result, following) = match retry::next_attempt(retry::classify(outcome), step) {
            Next::Delivered => (AttemptResult::Delivered, None),
            Next::RetryAt { attempt, at_ms } => {
                (AttemptResult::Retrying { next_at_ms: at_ms }, Some(Pending { attempt, due_at_ms: at_ms, round }))
            }
            Next::Disabled { attempt } => {
                (AttemptResult::TargetDisabled, Some(Pending { attempt, due_at_ms: now_ms, round }))
            }
            Next::Dead => (AttemptResult::Dead, None),
        };
        let fresh = self.fresh.contains(&seq);
        let Some(following) = following else {
            self.in_flight.remove(&seq);
            self.pending.remove(&seq);
            // The cursor may pass it in the write that carries its record.
            self.fresh.remove(&seq);
            self.recording.insert(seq);
            if fresh {
                self.recording_first.insert(seq);
            }
            // A first attempt has no pending entry on disk to remove.
            return Finish { result, then: Then::Finished { done: !fresh } };
        };
        let disable = result == AttemptResult::TargetDisabled;
        // A 410: nothing more starts from now on, in memory; on disk once the write is done.
        self.disabled |= disable;
        self.flushing.insert(seq, Flushing { following, fresh, disable });
        // With how far the window has matched: after a crash, the check for recorded
        // deliveries then covers this one.
        Finish { result, then: Then::Flush { following, scanned: self.scanned_mark(), disable } }
    }

    /// A retry's record was written (`ok`) or not. Memory moves on either way: if the write
    /// failed the store still holds the older pending entry (or, for a first attempt, the cursor
    /// stays below it), so after a restart the delivery is attempted again. Answers true when a
    /// first attempt is now on disk: the shell removes `seq` from the store's `Unrecorded` and
    /// writes the state (the cursor may pass it). Then the shell pumps.
    pub fn retry_recorded(&mut self, seq: u64, ok: bool) -> bool {
        let Some(Flushing { following, fresh, disable }) = self.flushing.remove(&seq) else {
            return false;
        };
        let recorded = ok && fresh;
        if recorded {
            self.fresh.remove(&seq);
        }
        self.in_flight.remove(&seq);
        self.pending.insert(seq, following);
        self.due.insert((following.due_at_ms, seq));
        self.disabled |= disable;
        recorded
    }

    // ---- writing the state (`window/state.rs`) ---------------------------------------------

    // ---- the timer --------------------------------------------------------------------------

    /// When the next waiting delivery is due, if the timer must be (re)armed for it: the shell
    /// cancels the timer it holds, if any, and arms one for then. `None`: leave it as it is.
    /// No timer while nothing may start: disabled, draining, at the in-flight limit, or while
    /// [`RECORDING`] records wait (the write in progress pumps when it completes; a timer would
    /// only fire again and again until then).
    pub fn arm_timer(&mut self) -> Option<u64> {
        if self.disabled || self.draining || self.attempting() >= self.limit() || self.records_owed() >= RECORDING {
            return None;
        }
        let due = self.next_wake()?;
        // Due, but the rate limit holds it: the timer fires when the limit lets it go.
        let due = self.pace.as_ref().map_or(due, |pace| due.max(pace.earliest()));
        if self.timer.is_some_and(|at| at <= due) {
            return None;
        }
        self.timer = Some(due);
        Some(due)
    }

    /// The timer fired; the shell pumps.
    pub fn timer_fired(&mut self) {
        self.timer = None;
    }

    // ---- operators (queuing again and bringing forward: `window/operators.rs`) --------------

    /// Enables or disables attempts. The timer is forgotten (the shell cancels its own); the
    /// shell pumps. While a 410's disabling is being written the target stays disabled: that
    /// write disables it once done anyway, and meanwhile nothing may reach the receiver.
    pub fn set_enabled(&mut self, enabled: bool) {
        self.disabled = !enabled || self.flushing.values().any(|f| f.disable);
        self.timer = None;
    }

    /// Starts no new work from now on. The timer is forgotten (the shell cancels its own); the
    /// shell pumps, and answers its waiters once [`Window::is_idle`].
    pub fn drain(&mut self) {
        self.draining = true;
        self.timer = None;
    }
}

#[cfg(test)]
mod tests;
