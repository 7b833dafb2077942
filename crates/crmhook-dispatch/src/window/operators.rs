//! What operators ask of the window: queuing finished deliveries again (redeliver, replay), and
//! "retry now": bringing forward the deliveries waiting for a retry (`POST
//! /v1/targets/{id}/replay {"status": "pending"}`, or a redelivery of one), for a receiver that is
//! back before its deliveries' next attempts are due (hours away, later in the schedule), while
//! its window is full of them and nothing newer is even read.
//!
//! A delivery queued again joins the window once its pending entry is written. Each delivery
//! brought forward keeps its attempt number and round (the schedule goes on from where it was if
//! the attempt fails again); only its due time moves, to now. The new due time is written to its
//! pending entry before the delivery may start: until [`Window::hastened`] it is in no `due` set,
//! so no attempt of it can race the write (an attempt's own record, written after it, always
//! finds the new entry there). A write that fails leaves the old due time, in memory as on disk.

use super::{Pending, Window, FILL_STEP, WINDOW};

/// The deliveries waiting for a retry ([`Window::retries`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retries {
    pub waiting: usize,
    /// When the first of them is due.
    pub next_at_ms: Option<u64>,
}

impl Window {
    /// Whether a delivery to queue again (redeliver, replay) is skipped: the window holds it,
    /// it is being queued again already ([`Window::queue_again`]), it is pending elsewhere
    /// (`Store::is_pending`; true if unreadable), or it is not matched yet and matches (it will
    /// be delivered anyway). The shell skips, before this, an event no longer in the log.
    pub fn requeue_skips(
        &self,
        seq: u64,
        pending_elsewhere: impl FnOnce() -> bool,
        matches: impl FnOnce() -> bool,
    ) -> bool {
        self.holds(seq) || self.requeuing.contains(&seq) || pending_elsewhere() || (seq > self.scanned && matches())
    }

    /// A delivery that [`Window::requeue_skips`] did not skip is being queued again: the shell
    /// writes its pending entry, then calls [`Window::requeued`]. Until then another redelivery
    /// of it is skipped (this one will be made). Two redeliveries whose writes crossed were both
    /// queued: when the first was delivered before the second's write was answered, the second
    /// started it again over its own finished record, and after a crash the second was lost
    /// (that record came after the second's pending entry); both also had the same attempt
    /// number.
    pub fn queue_again(&mut self, seq: u64) {
        self.requeuing.insert(seq);
    }

    /// Deliveries queued again were written (`written`) or not. Written, they are taken into the
    /// window while it has room, the rest later from disk; one the window took meanwhile (from
    /// disk) is left as it is. Then the shell pumps.
    pub fn requeued(&mut self, queued: &[(u64, Pending)], written: bool) {
        for &(seq, p) in queued {
            self.requeuing.remove(&seq);
            if !written {
                continue;
            }
            if self.active() >= WINDOW {
                self.more_on_disk = true;
                continue;
            }
            if self.pending.contains_key(&seq) {
                continue;
            }
            self.pending.insert(seq, p);
            self.due.insert((p.due_at_ms, seq));
        }
    }

    /// The deliveries waiting for a retry due later than `now_ms` (not first attempts, not being
    /// brought forward already), in seq order, with those whose failed attempt's retry is being
    /// written: they are in flight until it is ([`Window::retry_recorded`]), and a shell that
    /// brings them forward waits for that first (as a redelivery waits for what is
    /// [`Window::settling`]).
    pub fn waiting_retries(&self, now_ms: u64) -> Vec<u64> {
        let waiting = self.pending.iter().filter(|(seq, p)| {
            p.due_at_ms > now_ms
                && !self.fresh.contains(seq)
                && !self.in_flight.contains(seq)
                && !self.hastening.contains_key(seq)
        });
        let written = self.flushing.iter().filter(|(_, f)| f.following.due_at_ms > now_ms && !f.disable);
        let mut seqs: Vec<u64> = waiting.map(|(seq, _)| *seq).chain(written.map(|(seq, _)| *seq)).collect();
        seqs.sort_unstable();
        seqs
    }

    /// How many of [`Window::waiting_retries`] there are, and when the first of them is due: the
    /// target's health (`retrying`, `next_retry_at`). Cheap enough for every pump: it walks only
    /// the due times later than `now_ms` (the retries themselves, parked or not) and those being
    /// written. A parked retry whose time has come is due, not waiting, though it is unparked
    /// only at the next start (a disabled target's stay parked until it is enabled).
    pub fn retries(&self, now_ms: u64) -> Retries {
        let later = (now_ms.saturating_add(1), 0)..;
        let waiting = self.due.range(later.clone()).filter(|(_, seq)| !self.fresh.contains(seq));
        let written = self.flushing.values().filter(|f| f.following.due_at_ms > now_ms && !f.disable);
        let mut retries = Retries::default();
        let dues = waiting.chain(self.parked.range(later)).map(|(due, _)| *due);
        for due in dues.chain(written.map(|f| f.following.due_at_ms)) {
            retries.waiting += 1;
            retries.next_at_ms = Some(retries.next_at_ms.map_or(due, |at: u64| at.min(due)));
        }
        retries
    }

    /// Brings forward, to `now_ms`, the [`Window::waiting_retries`] that `pick` takes (those
    /// still in flight are left). Answers their new pending entries: the shell writes them
    /// durably, then calls [`Window::hastened`] with their seqs. Meanwhile none of them starts.
    pub fn hasten(&mut self, now_ms: u64, mut pick: impl FnMut(u64) -> bool) -> Vec<(u64, Pending)> {
        let mut sooner = Vec::new();
        for seq in self.waiting_retries(now_ms) {
            if self.in_flight.contains(&seq) {
                continue;
            }
            let Some(p) = self.pending.get(&seq).copied().filter(|_| pick(seq)) else { continue };
            self.due.remove(&(p.due_at_ms, seq));
            self.parked.remove(&(p.due_at_ms, seq));
            let now = Pending { due_at_ms: now_ms, ..p };
            self.hastening.insert(seq, now);
            sooner.push((seq, now));
        }
        sooner
    }

    /// The new pending entries of [`Window::hasten`] were written (`ok`) or not: the deliveries
    /// are due at their new time, or at their old one. Then the shell pumps.
    pub fn hastened(&mut self, seqs: &[u64], ok: bool) {
        for seq in seqs {
            let Some(now) = self.hastening.remove(seq) else { continue };
            let Some(p) = self.pending.get_mut(seq) else { continue };
            if ok {
                *p = now;
            }
            self.due.insert((p.due_at_ms, *seq));
        }
    }

    /// When the window is too full to read the log (every slot but a [`FILL_STEP`] owed by
    /// deliveries not parked: [`PARKED`](super::PARKED) retries parked already, or those left due
    /// within [`PARK_AFTER_MS`](super::PARK_AFTER_MS)), none of it is in flight or due at
    /// `now_ms`, and the log holds events past what it has read (`head`, asked only then): when
    /// the next of them is due. Until then the target sends nothing, and events newer than its
    /// window wait: what an operator can end with "retry now" once the receiver answers again.
    pub fn blocked_until(&self, now_ms: u64, head: impl FnOnce() -> u64) -> Option<u64> {
        if self.active() + FILL_STEP <= WINDOW || !self.in_flight.is_empty() || self.disabled || self.draining {
            return None;
        }
        let due = self.next_wake()?;
        (due > now_ms && head() > self.scanned).then_some(due)
    }
}
