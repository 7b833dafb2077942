//! What the writer thread takes as its next group: the queues' requests ([`Queues`]) and the
//! held writes waiting beside them ([`Lazy`]), and when it wakes for them ([`next_group`]).

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use tokio::sync::mpsc;

use super::{Op, When};
use crate::{BULK_GROUP_SIZE, LAZY_HOLD, LIVE_INGEST, MAX_GROUP, MAX_GROUP_SIZE};

/// The writer's two queues: `rx` for every request, `bulk` for appends of [`crate::BULK_EVENTS`]
/// events or more. A group takes what `rx` holds first. With no small request in it, it takes
/// bulk appends while it holds fewer than [`BULK_GROUP_SIZE`] events. With small requests, it
/// takes no bulk append if the group before took one, and one otherwise (so that small requests
/// never hold them back for good): a small request waits for the group in progress, not for a
/// large request more, nor for every large one queued before it.
pub(crate) struct Queues {
    rx: mpsc::Receiver<Op>,
    bulk: mpsc::Receiver<Op>,
    /// Whether the last group took a bulk append.
    took_bulk: bool,
}

impl Queues {
    pub(crate) fn new(rx: mpsc::Receiver<Op>, bulk: mpsc::Receiver<Op>) -> Queues {
        Queues { rx, bulk, took_bulk: false }
    }

    /// Takes bulk appends while the group holds fewer than [`BULK_GROUP_SIZE`] events (at least
    /// one, if `first`); only one when `one`: a group that holds small requests takes a single
    /// large one, so that they are answered after it alone. Answers whether it took any.
    fn take_bulk(&mut self, ops: &mut Vec<Op>, size: &mut usize, mut first: bool, one: bool) -> bool {
        let before = ops.len();
        while first || (!one && ops.len() < MAX_GROUP && *size < BULK_GROUP_SIZE) {
            let Ok(op) = self.bulk.try_recv() else { break };
            *size += op.size();
            ops.push(op);
            first = false;
        }
        ops.len() > before
    }

    /// A group of what the bulk queue holds, once the writer has stopped (a stop comes after the
    /// requests queued before it); `None` once it is empty.
    pub(super) fn bulk_group(&mut self) -> Option<Vec<Op>> {
        let mut ops = Vec::new();
        self.take_bulk(&mut ops, &mut 0, true, false);
        (!ops.is_empty()).then_some(ops)
    }
}

/// Held writes ([`When::Held`]: records nobody waits for) wait here rather than in the writer's
/// queue, so that sending one does not wake the writer when it will take them anyway: while
/// events are being logged (a durable write within [`LIVE_INGEST`]) the writer takes them with
/// the next group, or when that period ends; otherwise they wait up to [`LAZY_HOLD`] for
/// company. Only a writer asleep with nothing to wake it is woken ([`Op::Nudge`]). Each target
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
    queues: &mut Queues,
    waker: &Waker,
    lazy: &Lazy,
    last_durable: &mut Option<Instant>,
) -> Option<Vec<Op>> {
    loop {
        let wake_at = lazy.wake_at(last_durable.map(|at| at + LIVE_INGEST));
        let (next, closed) = match recv_until(queues, waker, wake_at) {
            Some(next) => {
                if wake_at.is_none() {
                    lazy.awake();
                }
                let closed = next.is_none();
                (next, closed)
            }
            None => (None, false),
        };
        let from_bulk = next.as_ref().is_some_and(|(_, bulk)| *bulk);
        let mut ops: Vec<Op> = next.map(|(op, _)| op).into_iter().collect();
        let mut size: usize = ops.iter().map(Op::size).sum();
        while ops.len() < MAX_GROUP && size < MAX_GROUP_SIZE {
            match queues.rx.try_recv() {
                Ok(op) => {
                    size += op.size();
                    ops.push(op);
                }
                Err(_) => break,
            }
        }
        // Whether the group holds requests of the main queue (all but a bulk first one): then it
        // takes one bulk append, or none if the group before took one.
        let holds_small = ops.len() > usize::from(from_bulk);
        let took = !(holds_small && queues.took_bulk) && queues.take_bulk(&mut ops, &mut size, !from_bulk, holds_small);
        queues.took_bulk = from_bulk || took;
        ops.retain(|op| !matches!(op, Op::Nudge));
        if ops
            .iter()
            .any(|op| matches!(op, Op::Append { .. } | Op::Entry { .. } | Op::Write { when: When::Flushed, .. }))
        {
            *last_durable = Some(Instant::now());
        }
        let due = wake_at.is_some_and(|at| Instant::now() >= at);
        if !ops.is_empty() || due || closed {
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

impl Op {
    /// How much this puts in a group, in events and other writes (see [`MAX_GROUP_SIZE`]).
    fn size(&self) -> usize {
        match self {
            Op::Append { events, .. } => events.len().max(1),
            Op::Entry { ops, .. } => ops.iter().map(Op::size).sum::<usize>().max(1),
            Op::Write { writes, .. } => writes.0.len().max(1),
            Op::Restore { records, .. } => records.len().max(1),
            Op::Stop(_) | Op::Nudge => 1,
        }
    }
}

/// Wakes the writer thread, parked in [`recv_until`].
pub(super) struct Unpark(pub(super) std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// The next request, the main queue's first, with whether it came from the bulk queue; waited
/// for on this thread, parked (`waker` unparks it; no runtime): `Some(None)` once the queues are
/// closed (and the bulk queue empty), `None` if `until` came first. The queues are polled
/// before each park, so a wake-up between the two only makes the park return at once. Waiting
/// in a tokio runtime with a timer, as before, cost the runtime's park and its time driver on
/// each wake-up besides the futex.
fn recv_until(queues: &mut Queues, waker: &Waker, until: Option<Instant>) -> Option<Option<(Op, bool)>> {
    let mut cx = Context::from_waker(waker);
    loop {
        let main = queues.rx.poll_recv(&mut cx);
        if let Poll::Ready(Some(op)) = main {
            return Some(Some((op, false)));
        }
        if let Poll::Ready(Some(op)) = queues.bulk.poll_recv(&mut cx) {
            return Some(Some((op, true)));
        }
        if main.is_ready() {
            return Some(None);
        }
        match until {
            None => std::thread::park(),
            Some(at) => {
                let now = Instant::now();
                if now >= at {
                    return None;
                }
                std::thread::park_timeout(at - now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_writer_waits_for_a_request_parked_until_one_comes_or_its_time_is_up() {
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let (tx, rx) = mpsc::channel(4);
        let (_bulk, bulk) = mpsc::channel(4);
        let mut queues = Queues::new(rx, bulk);
        // Nothing comes: the wait ends at its time, not before.
        let until = Instant::now() + Duration::from_millis(5);
        assert!(recv_until(&mut queues, &waker, Some(until)).is_none());
        assert!(Instant::now() >= until);
        // A request sent from another thread while this one is parked wakes it.
        let sender = std::thread::spawn(move || {
            tx.blocking_send(Op::Nudge).expect("send");
            tx
        });
        assert!(matches!(recv_until(&mut queues, &waker, None), Some(Some((Op::Nudge, false)))));
        // The queue closed: answered at once.
        drop(sender.join().expect("join"));
        assert!(matches!(recv_until(&mut queues, &waker, None), Some(None)));
    }

    /// Large requests queued together (a CRM's big batches posted at once) make groups of about
    /// [`MAX_GROUP_SIZE`] events, not one group of all of them: sled holds what a batch changes
    /// in memory until it is applied (64 batches of 13,000 events queued at once went to 12 GB).
    #[test]
    fn a_group_takes_no_request_once_it_holds_max_group_size_events() {
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let (tx, rx) = mpsc::channel(16);
        let (_bulk, bulk) = mpsc::channel(16);
        let mut queues = Queues::new(rx, bulk);
        let big = crate::test_support::events(MAX_GROUP_SIZE / 2 + 1);
        for _ in 0..5 {
            let (reply, _) = tokio::sync::oneshot::channel();
            let op = Op::Append { events: big.clone(), idempotency_key: None, stamp: None, reply };
            tx.try_send(op).unwrap_or_else(|_| panic!("room"));
        }
        let (lazy, mut last_durable) = (Lazy::default(), None);
        let mut sizes = Vec::new();
        while sizes.iter().sum::<usize>() < 5 {
            let group = next_group(&mut queues, &waker, &lazy, &mut last_durable).expect("a group");
            sizes.push(group.len());
        }
        assert_eq!(sizes, [2, 2, 1], "a group stops at the request that takes it past the limit");
        // Small requests still share a group, up to MAX_GROUP of them.
        for _ in 0..10 {
            let (reply, _) = tokio::sync::oneshot::channel();
            let op = Op::Append { events: crate::test_support::events(1), idempotency_key: None, stamp: None, reply };
            tx.try_send(op).unwrap_or_else(|_| panic!("room"));
        }
        assert_eq!(next_group(&mut queues, &waker, &lazy, &mut last_durable).expect("a group").len(), 10);
    }

    /// A small request queued behind large ones (a CRM's big batches posted at once) goes with
    /// the next group, not after all of them, and beside no large one if the group before took
    /// one: 16 requests of 8,500 events posted at once through a MAIA source held a one-event
    /// Maximizer request 2 s, Maximizer's limit. Small requests never hold the large ones back
    /// for good: every other group takes one.
    #[test]
    fn a_small_request_waits_for_the_group_in_progress_not_for_large_ones_queued() {
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let (tx, rx) = mpsc::channel(2 * MAX_GROUP + 16);
        let (bulk_tx, bulk) = mpsc::channel(16);
        let mut queues = Queues::new(rx, bulk);
        let append = |n: usize| {
            let (reply, _) = tokio::sync::oneshot::channel();
            Op::Append { events: crate::test_support::events(n), idempotency_key: None, stamp: None, reply }
        };
        for _ in 0..5 {
            bulk_tx.try_send(append(BULK_GROUP_SIZE / 2 + 1)).unwrap_or_else(|_| panic!("room"));
        }
        tx.try_send(append(1)).unwrap_or_else(|_| panic!("room"));
        let (lazy, mut last_durable) = (Lazy::default(), None);
        let sizes = |group: Vec<Op>| group.iter().map(Op::size).collect::<Vec<_>>();
        let mut next = || sizes(next_group(&mut queues, &waker, &lazy, &mut last_durable).expect("a group"));
        let big = BULK_GROUP_SIZE / 2 + 1;
        // The small one first, then one large one (the group before took none).
        assert_eq!(next(), [1, big]);
        // Groups of large ones alone take them while they hold fewer than BULK_GROUP_SIZE events.
        assert_eq!(next(), [big, big]);
        // A small one that comes meanwhile goes with the next group, alone: the group before
        // took large ones.
        tx.try_send(append(1)).unwrap_or_else(|_| panic!("room"));
        assert_eq!(next(), [1]);
        assert_eq!(next(), [big, big]);
        // Small requests that fill every group: a large one goes in every other group.
        bulk_tx.try_send(append(big)).unwrap_or_else(|_| panic!("room"));
        bulk_tx.try_send(append(big)).unwrap_or_else(|_| panic!("room"));
        let mut groups = Vec::new();
        for _ in 0..3 {
            for _ in 0..MAX_GROUP {
                tx.try_send(append(1)).unwrap_or_else(|_| panic!("room"));
            }
            let group = next();
            groups.push((group.len(), group.last().copied()));
        }
        assert_eq!(groups, [(MAX_GROUP, Some(1)), (MAX_GROUP + 1, Some(big)), (MAX_GROUP, Some(1))]);
        // Once the writer stops, what the bulk queue holds is still taken.
        assert_eq!(queues.bulk_group().map(sizes), Some(vec![big]));
        assert!(queues.bulk_group().is_none());
    }
}
