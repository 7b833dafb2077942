//! What the writer thread takes as its next group: the queue's requests and the held writes
//! waiting beside it ([`Lazy`]), and when it wakes for them ([`next_group`]).

use std::sync::Mutex;
use std::time::Instant;

use tokio::runtime::Runtime;
use tokio::sync::mpsc;

use super::{Op, When};
use crate::{LAZY_HOLD, LIVE_HOLD, LIVE_INGEST, MAX_GROUP};

/// Held writes ([`When::Held`]: records nobody waits for) wait here rather than in the writer's
/// queue, so that sending one does not wake the writer when it will take them anyway: while
/// events are being logged (a durable write within [`LIVE_INGEST`]) the writer takes them with
/// the first group once they have waited [`LIVE_HOLD`], or when that period ends; otherwise
/// they wait up to [`LAZY_HOLD`] for company (see [`rides`]). Only a writer asleep with nothing to wake it is woken ([`Op::Nudge`]). Each target
/// has at most one held write at a time, so this holds no more than one write per target
/// (and the charts' counts).
#[derive(Default)]
pub(crate) struct Lazy(Mutex<LazyState>);

#[derive(Default)]
struct LazyState {
    ops: Vec<Op>,
    /// When the oldest of `ops` came.
    since: Option<Instant>,
    /// The writer sleeps until a request comes: the next held write must nudge it.
    writer_asleep: bool,
    /// The writer has stopped: held writes are refused.
    closed: bool,
}

impl Lazy {
    fn state(&self) -> std::sync::MutexGuard<'_, LazyState> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues a held write; answers whether the writer must be nudged, or gives the write back
    /// if the writer has stopped.
    pub(super) fn push(&self, op: Op) -> std::result::Result<bool, Op> {
        let mut s = self.state();
        if s.closed {
            return Err(op);
        }
        s.since.get_or_insert_with(Instant::now);
        s.ops.push(op);
        Ok(std::mem::take(&mut s.writer_asleep))
    }

    fn take(&self) -> Vec<Op> {
        let mut s = self.state();
        s.since = None;
        std::mem::take(&mut s.ops)
    }

    /// When the oldest held write came, if any is held.
    fn since(&self) -> Option<Instant> {
        self.state().since
    }

    /// When the writer must wake without a request: at the end of the live period, or when the
    /// held writes have waited [`LAZY_HOLD`]; `None` (noted: the next held write nudges) when
    /// nothing is held and the period is over.
    fn wake_at(&self, live_until: Option<Instant>) -> Option<Instant> {
        let mut s = self.state();
        let now = Instant::now();
        match (live_until.filter(|at| *at > now), s.since) {
            (Some(at), _) => Some(at),
            (None, Some(since)) => Some(since + LAZY_HOLD),
            (None, None) => {
                s.writer_asleep = true;
                None
            }
        }
    }

    /// The writer woke from its sleep: held writes need not nudge it.
    fn awake(&self) {
        self.state().writer_asleep = false;
    }

    /// The writer stops: what is held is dropped (its requests answered `Closed`), and later
    /// held writes are refused.
    pub(super) fn close(&self) {
        let mut s = self.state();
        s.closed = true;
        s.ops.clear();
    }
}

/// The next group to commit: what is queued, up to [`MAX_GROUP`], and every held write (see
/// [`Lazy`]); held writes alone once their wait is over. Each sled batch costs two log-buffer
/// writes on sled's thread pool and each wake-up of this thread a switch, so held writes ride
/// with other groups where they can. `None` once the queue is closed and nothing is held.
pub(super) fn next_group(
    rx: &mut mpsc::Receiver<Op>,
    timer: &Runtime,
    lazy: &Lazy,
    last_durable: &mut Option<Instant>,
) -> Option<Vec<Op>> {
    loop {
        let live_until = last_durable.map(|at| at + LIVE_INGEST);
        let wake_at = lazy.wake_at(live_until);
        let (next, closed) = match wake_at {
            None => {
                let next = rx.blocking_recv();
                lazy.awake();
                let closed = next.is_none();
                (next, closed)
            }
            Some(at) => {
                let at = tokio::time::Instant::from_std(at);
                match timer.block_on(async { tokio::time::timeout_at(at, rx.recv()).await }) {
                    Ok(Some(op)) => (Some(op), false),
                    Ok(None) => (None, true),
                    Err(_) => (None, false),
                }
            }
        };
        let mut ops: Vec<Op> = next.into_iter().collect();
        while ops.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        ops.retain(|op| !matches!(op, Op::Nudge));
        if ops
            .iter()
            .any(|op| matches!(op, Op::Append { .. } | Op::Entry { .. } | Op::Write { when: When::Flushed, .. }))
        {
            *last_durable = Some(Instant::now());
        }
        let now = Instant::now();
        let due = wake_at.is_some_and(|at| now >= at);
        if due || closed || (!ops.is_empty() && rides(lazy.since(), live_until, now)) {
            ops.extend(lazy.take());
        }
        if !ops.is_empty() {
            return Some(ops);
        }
        if closed {
            return None;
        }
    }
}

/// Whether held writes that came at `since` ride with a group the writer takes at `now`. While
/// events are being logged (`live_until` ahead) they ride once they have waited [`LIVE_HOLD`]:
/// at a steady rate a target's finished deliveries then share one write (its `L` block
/// rewritten once for several, one answer) instead of one write each riding with every event's
/// group. Otherwise any group is the company they wait for.
fn rides(since: Option<Instant>, live_until: Option<Instant>, now: Instant) -> bool {
    let Some(since) = since else { return false };
    let live = live_until.is_some_and(|until| until > now);
    !live || now.saturating_duration_since(since) >= LIVE_HOLD
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn held_writes_ride_with_live_groups_only_once_they_have_waited() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let live_until = Some(ms(100));
        // Nothing held: nothing rides.
        assert!(!rides(None, live_until, ms(10)));
        // Events being logged: a fresh held write waits for a later group...
        assert!(!rides(Some(ms(10)), live_until, ms(11)));
        assert!(!rides(Some(ms(10)), live_until, ms(10) + LIVE_HOLD - Duration::from_micros(1)));
        // ...and rides with the first one once it has waited `LIVE_HOLD`.
        assert!(rides(Some(ms(10)), live_until, ms(10) + LIVE_HOLD));
        // No events being logged (never, or the period is over): any group is company.
        assert!(rides(Some(ms(10)), None, ms(11)));
        assert!(rides(Some(ms(10)), live_until, ms(100)));
    }
}
