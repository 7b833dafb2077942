//! Retries that wait out of the window's count ("parked"), so that newer events are read and
//! attempted while old ones wait for their next attempt.
//!
//! Without this a target whose window (every slot but a [`FILL_STEP`]) is owed to deliveries
//! waiting for a retry reads nothing newer until the next of them is due: after an outage of an
//! hour, a receiver that is back gets no new event for the hours the schedule's next delays
//! last. Now, when the window is too full to read the log and the log holds more, the retries due
//! [`PARK_AFTER_MS`] or more later (the latest first) are parked: they stay owed in memory as
//! before (a seq, a due time, an attempt number and a round each, no payload; their pending
//! entries on disk as ever) but no longer count against [`WINDOW`], and the fill reads newer
//! events into the room they leave. Each one counts again once it is due ([`Window::next_start`]
//! unparks it), and goes by due time as before.
//!
//! Memory stays bounded: at most [`PARKED`] retries park, so a target holds at most `WINDOW +
//! PARKED` deliveries (76 bytes each with the B-trees' nodes: 1.2 MiB); past that the window is
//! blocked as before (what [`Window::blocked_until`] tells). An ordered target never parks: its oldest delivery goes
//! first whatever it waits for. Parking writes nothing: which retries are parked is memory only,
//! and a restart takes up to `WINDOW + PARKED` pending entries and parks the latest due beyond
//! the window ([`Window::recover`]).

use super::{Window, FILL_STEP, WINDOW};

/// Most retries a target parks out of its window.
pub const PARKED: usize = 15 * WINDOW;
/// A retry parks only if it is due this long after now or later (the schedule's first delay,
/// 5 s, stays in the window).
pub const PARK_AFTER_MS: u64 = 60_000;

impl Window {
    /// Most deliveries this window holds in memory, parked ones included: what a restart reads
    /// of the pending entries on disk (`Store::pending(id, Window::holds_at_most(ordered))`).
    pub fn holds_at_most(ordered: bool) -> usize {
        if ordered {
            WINDOW
        } else {
            WINDOW + PARKED
        }
    }

    /// Deliveries that count against [`WINDOW`]: owed in memory and not parked.
    pub(super) fn active(&self) -> usize {
        self.pending.len() - self.parked.len()
    }

    /// Deliveries owed in memory that wait for a retry out of the window's count.
    pub fn parked(&self) -> usize {
        self.parked.len()
    }

    /// Parks the retries due [`PARK_AFTER_MS`] after `now_ms` or later, the latest first, while
    /// the window is too full to read the log and the log holds events past what it has read
    /// (`head`). The shell calls it before each fill.
    pub fn park(&mut self, now_ms: u64, head: u64) {
        if self.ordered || self.draining || head <= self.scanned {
            return;
        }
        let later = now_ms.saturating_add(PARK_AFTER_MS);
        while self.active() + FILL_STEP > WINDOW && self.parked.len() < PARKED {
            let Some(&(due, seq)) = self.due.last() else { break };
            if due < later || self.fresh.contains(&seq) {
                break;
            }
            self.due.remove(&(due, seq));
            self.parked.insert((due, seq));
        }
    }

    /// Parks the latest due deliveries beyond [`WINDOW`], whenever they are due (after a
    /// restart, which takes up to `WINDOW + PARKED` again); those due count again at the next
    /// start.
    pub(super) fn park_beyond_window(&mut self) {
        while !self.ordered && self.active() > WINDOW && self.parked.len() < PARKED {
            let Some(last) = self.due.pop_last() else { break };
            self.parked.insert(last);
        }
    }

    /// The parked retries due at `now_ms` count again.
    pub(super) fn unpark(&mut self, now_ms: u64) {
        while let Some(&first) = self.parked.first() {
            if first.0 > now_ms {
                break;
            }
            self.parked.remove(&first);
            self.due.insert(first);
        }
    }

    /// Every parked retry counts again (a target that became ordered).
    pub(super) fn unpark_all(&mut self) {
        self.due.append(&mut self.parked);
    }

    /// When the first parked retry is due.
    pub(super) fn first_parked(&self) -> Option<u64> {
        self.parked.first().map(|(due, _)| *due)
    }
}
