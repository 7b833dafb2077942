//! The window's rules one by one, then properties of random runs against a model of the store
//! (with crashes that keep what a real one may keep).

use std::collections::{BTreeMap, BTreeSet};

use crmhook_core::retry::Outcome;
use proptest::prelude::*;

use super::*;

const SCHEDULE: [u64; 3] = [1_000, 5_000, 20_000];

fn retry(attempt: u32, due_at_ms: u64) -> Pending {
    Pending { attempt, due_at_ms, round: 1 }
}

/// A target created when the log was empty.
fn new_target(ordered: bool) -> Window {
    Window::recover(ordered, Recovered { cursor: Some(0), ..Recovered::default() })
}

/// Matches and takes `seqs` (the last of them being the last event read).
fn take(window: &mut Window, seqs: &[u64], now_ms: u64) -> bool {
    let last = seqs.last().copied().unwrap_or(window.scanned());
    window.took(last, seqs, now_ms)
}

/// Every start at `now_ms`.
fn starts(window: &mut Window, now_ms: u64) -> Vec<u64> {
    std::iter::from_fn(|| window.next_start(now_ms).map(|s| s.seq)).collect()
}

fn end(window: &mut Window, seq: u64, n: u32, outcome: Outcome, retry_after_ms: Option<u64>, now_ms: u64) -> Finish {
    let ended = Ended { seq, n, round: 1, outcome: &outcome, retry_after_ms };
    window.attempt_finished(ended, now_ms, 0.0, &SCHEDULE)
}

fn ok(window: &mut Window, seq: u64, now_ms: u64) -> Finish {
    end(window, seq, 1, Outcome::Status(200), None, now_ms)
}

#[test]
fn an_unordered_target_starts_by_due_time_sixteen_at_a_time() {
    let mut w = Window::recover(
        false,
        Recovered {
            cursor: Some(10),
            pending: vec![(2, retry(2, 500)), (5, retry(2, 300)), (9, retry(2, 100))],
            ..Recovered::default()
        },
    );
    assert_eq!(starts(&mut w, 50), Vec::<u64>::new(), "nothing due yet");
    assert_eq!(starts(&mut w, 1_000), vec![9, 5, 2], "by due time, not by seq");
    let seqs: Vec<u64> = (11..=40).collect();
    take(&mut w, &seqs, 1_000);
    assert_eq!(starts(&mut w, 999), Vec::<u64>::new(), "first attempts are due when taken");
    assert_eq!(starts(&mut w, 1_000), (11..=23).collect::<Vec<_>>(), "16 in flight");
    assert_eq!(w.in_flight(), IN_FLIGHT);
    assert_eq!(ok(&mut w, 5, 1_000).then, Then::Finished { done: true }, "a retry's pending entry goes");
    assert_eq!(starts(&mut w, 1_000), vec![24], "a finished delivery frees its slot at once");
}

#[test]
fn an_ordered_target_starts_only_its_oldest_delivery_one_at_a_time() {
    let mut w = Window::recover(
        true,
        Recovered {
            cursor: Some(10),
            pending: vec![(2, retry(2, 500)), (5, retry(2, 300)), (9, retry(2, 100))],
            ..Recovered::default()
        },
    );
    assert_eq!(starts(&mut w, 400), Vec::<u64>::new(), "9 and 5 are due, but 2 is older and waits");
    assert_eq!(w.arm_timer(), Some(500), "the timer is for the oldest");
    assert_eq!(starts(&mut w, 500), vec![2]);
    assert_eq!(w.arm_timer(), None, "nothing may start while one is in flight");
    assert_eq!(starts(&mut w, 10_000), Vec::<u64>::new());
    // It fails: the retry keeps its place; nothing passes it.
    let f = end(&mut w, 2, 2, Outcome::Status(500), None, 1_000);
    assert_eq!(f.then, Then::Flush { following: retry(3, 6_000), scanned: 10, disable: false });
    assert_eq!(starts(&mut w, 1_000), Vec::<u64>::new(), "in flight until its retry is written");
    assert!(!w.retry_recorded(2, true), "not a first attempt");
    assert_eq!(starts(&mut w, 5_999), Vec::<u64>::new(), "5 and 9 are due, but wait for 2");
    assert_eq!(starts(&mut w, 6_000), vec![2]);
    ok(&mut w, 2, 6_000);
    assert_eq!(starts(&mut w, 6_000), vec![5]);
}

#[test]
fn retry_after_is_honoured_on_429_and_503_only_within_twice_the_delay() {
    let mut w = new_target(false);
    take(&mut w, &[1, 2, 3, 4], 0);
    assert_eq!(starts(&mut w, 0), vec![1, 2, 3, 4]);
    let due = |f: Finish| match f.then {
        Then::Flush { following, .. } => following.due_at_ms,
        other => panic!("{other:?}"),
    };
    assert_eq!(due(end(&mut w, 1, 1, Outcome::Status(429), Some(1_500), 100)), 1_600);
    assert_eq!(due(end(&mut w, 2, 1, Outcome::Status(503), Some(60_000), 100)), 2_100, "at most twice the delay");
    assert_eq!(due(end(&mut w, 3, 1, Outcome::Status(500), Some(1_500), 100)), 1_100, "not honoured on a 500");
    assert_eq!(due(end(&mut w, 4, 1, Outcome::Status(429), Some(10), 100)), 1_100, "never shorter");
    let f = end(&mut w, 9, 1, Outcome::Status(429), Some(1_500), 100);
    assert_eq!(f.result, AttemptResult::Retrying { next_at_ms: 1_600 });
    for seq in 1..=4 {
        w.retry_recorded(seq, true);
    }
    assert_eq!(starts(&mut w, 1_100), vec![3, 4]);
    assert_eq!(starts(&mut w, 1_600), vec![1]);
    assert_eq!(w.next_start(2_100), Some(Start { seq: 2, attempt: 2, round: 1 }));
}

#[test]
fn the_jitter_and_the_round_are_the_schedules() {
    let mut w = new_target(false);
    take(&mut w, &[1], 0);
    starts(&mut w, 0);
    let ended = Ended { seq: 1, n: 5, round: 4, outcome: &Outcome::Timeout, retry_after_ms: None };
    let f = w.attempt_finished(ended, 1_000, 1.0, &SCHEDULE);
    // Attempt 5 of a round begun at 4 waits the schedule's second delay, plus a fifth.
    assert_eq!(
        f.then,
        Then::Flush { following: Pending { attempt: 6, due_at_ms: 7_000, round: 4 }, scanned: 1, disable: false }
    );
}

#[test]
fn a_spent_schedule_is_dead_and_finished() {
    let mut w = new_target(false);
    take(&mut w, &[1], 0);
    starts(&mut w, 0);
    let f = end(&mut w, 1, 4, Outcome::Status(500), None, 0);
    assert_eq!(f, Finish { result: AttemptResult::Dead, then: Then::Finished { done: false } });
    assert!(w.is_empty());
}

#[test]
fn gone_410_disables_the_target_and_the_delivery_waits_for_it() {
    let mut w = new_target(false);
    take(&mut w, &[1, 2], 0);
    assert_eq!(starts(&mut w, 0), vec![1, 2]);
    let f = end(&mut w, 1, 1, Outcome::Status(410), Some(5_000), 300);
    assert_eq!(f.result, AttemptResult::TargetDisabled);
    assert_eq!(f.then, Then::Flush { following: retry(2, 300), scanned: 2, disable: true });
    assert!(f.flushes());
    assert!(w.is_disabled(), "at once in memory, while the disabling is written");
    take(&mut w, &[3], 300);
    assert_eq!((w.next_start(300), w.arm_timer()), (None, None), "nothing starts meanwhile");
    w.set_enabled(true);
    assert!(w.is_disabled(), "nor after an enable asked before the 410 came back");
    assert_eq!(w.next_start(300), None);
    assert!(w.retry_recorded(1, true), "a first attempt now on disk");
    assert!(w.is_disabled());
    assert_eq!(starts(&mut w, 1_000), Vec::<u64>::new());
    assert_eq!(w.arm_timer(), None);
    // The attempt in flight still ends.
    ok(&mut w, 2, 400);
    w.set_enabled(true);
    assert_eq!(w.next_start(1_000), Some(Start { seq: 1, attempt: 2, round: 1 }));
}

#[test]
fn the_window_never_holds_more_than_1024_deliveries() {
    let mut w = new_target(false);
    let fill = w.wants_fill(5_000).expect("room");
    assert_eq!(fill, Fill { from: 1, head: 5_000, room: WINDOW });
    let seqs: Vec<u64> = (1..=WINDOW as u64).collect();
    take(&mut w, &seqs, 0);
    assert_eq!((w.len(), w.wants_fill(5_000)), (WINDOW, None));
    // Deliveries queued again beyond it wait on disk.
    w.requeued(&[(4_000, retry(2, 0))]);
    assert_eq!(w.len(), WINDOW);
    assert!(w.more_on_disk && !w.wants_reload());
    // As do pending entries read from disk.
    let on_disk: Vec<(u64, Pending)> = (2_000..2_000 + WINDOW as u64).map(|s| (s, retry(2, 0))).collect();
    w.reloaded(on_disk);
    assert_eq!(w.len(), WINDOW);
}

#[test]
fn a_fill_waits_for_a_quarter_of_the_window_and_reads_from_scanned() {
    let mut w = new_target(false);
    let seqs: Vec<u64> = (1..=WINDOW as u64).collect();
    take(&mut w, &seqs, 0);
    let mut now = 0;
    let mut finished = 0;
    while finished < FILL_STEP {
        for seq in starts(&mut w, now) {
            if finished < FILL_STEP {
                ok(&mut w, seq, now);
                finished += 1;
                assert_eq!(w.wants_fill(2_000).is_some(), finished == FILL_STEP, "{finished}");
            }
        }
        now += 1;
    }
    assert_eq!(w.wants_fill(2_000), Some(Fill { from: WINDOW as u64 + 1, head: 2_000, room: FILL_STEP }));
    assert_eq!(w.wants_fill(WINDOW as u64), None, "nothing past scanned");
}

#[test]
fn a_stretch_that_matched_nothing_writes_the_marks_at_once() {
    let mut w = new_target(false);
    assert!(!w.took(0, &[], 0), "nothing read");
    assert!(w.took(700, &[], 0));
    assert_eq!(w.start_write(), Some(StateWrite { marks: Some((700, 700)), finished: vec![] }));
    assert_eq!(w.start_write(), None, "one write at a time");
    assert!(!w.took(800, &[750], 0), "what was taken carries the marks later");
    assert_eq!(w.write_done(true), Vec::<u64>::new());
    assert_eq!(w.saved, (700, 700));
    assert_eq!(w.marks(), (749, 800), "below the first fresh delivery");
    assert_eq!(w.start_write(), Some(StateWrite { marks: Some((749, 800)), finished: vec![] }));
}

#[test]
fn a_finished_delivery_joins_the_next_lazy_write_and_the_cursor_follows_fresh_ones() {
    let mut w = new_target(false);
    take(&mut w, &[1, 2, 3], 0);
    starts(&mut w, 0);
    assert_eq!(ok(&mut w, 2, 0).then, Then::Finished { done: false }, "a first attempt has no pending entry");
    assert_eq!((w.len(), w.in_flight()), (2, 2));
    assert_eq!(
        w.start_write(),
        Some(StateWrite { marks: Some((0, 3)), finished: vec![2] }),
        "the cursor stays below 1"
    );
    ok(&mut w, 1, 0);
    assert_eq!(w.start_write(), None, "waits for the write in progress");
    assert_eq!(w.write_done(true), vec![2]);
    assert_eq!(w.start_write(), Some(StateWrite { marks: Some((2, 3)), finished: vec![1] }));
    assert_eq!(w.write_done(true), vec![1]);
    // A retry of a first attempt lets the cursor pass it once written.
    end(&mut w, 3, 1, Outcome::Timeout, None, 0);
    assert_eq!(w.start_write(), None, "nothing moved: 3 is fresh until its retry is written");
    assert!(w.retry_recorded(3, true));
    assert_eq!(w.start_write(), Some(StateWrite { marks: Some((3, 3)), finished: vec![] }));
}

#[test]
fn a_failed_write_makes_its_deliveries_fresh_again() {
    let mut w = new_target(false);
    take(&mut w, &[1, 2, 3], 0);
    starts(&mut w, 0);
    ok(&mut w, 1, 0);
    assert_eq!(w.start_write(), Some(StateWrite { marks: Some((1, 3)), finished: vec![1] }));
    assert_eq!(w.write_done(false), Vec::<u64>::new(), "nothing recorded");
    assert_eq!(w.marks(), (0, 3), "the cursor stays below it");
    ok(&mut w, 2, 0);
    ok(&mut w, 3, 0);
    assert_eq!(w.start_write(), Some(StateWrite { marks: Some((0, 3)), finished: vec![2, 3] }));
    assert_eq!(w.write_done(true), vec![2, 3]);
    assert_eq!(w.marks(), (0, 3), "until a restart attempts it again");
    assert!(w.is_idle() && w.is_empty());
    // A retry whose write failed moves on in memory; a first attempt stays fresh.
    take(&mut w, &[4], 0);
    starts(&mut w, 0);
    end(&mut w, 4, 1, Outcome::Status(500), None, 0);
    assert!(!w.retry_recorded(4, false));
    assert!(w.fresh.contains(&4));
    assert_eq!(w.next_start(1_000), Some(Start { seq: 4, attempt: 2, round: 1 }));
}

#[test]
fn recovery_resumes_every_unfinished_delivery_and_checks_what_may_be_recorded() {
    let w = Window::recover(
        false,
        Recovered {
            cursor: Some(10),
            scanned: Some(20),
            pending: vec![(7, retry(3, 50)), (12, retry(2, 80))],
            disabled: false,
            head: 30,
        },
    );
    assert_eq!((w.scanned(), w.checked_until, w.saved, w.len()), (10, 20, (10, 20), 2));
    assert_eq!(w.wants_fill(30), Some(Fill { from: 11, head: 30, room: WINDOW - 2 }));
    assert!(!w.owes(12, || panic!("pending in the window: not read")));
    assert!(w.owes(11, || OnDisk::Nothing));
    assert!(!w.owes(13, || OnDisk::Recorded), "finished or pending by an earlier run");
    assert!(w.owes(14, || OnDisk::Unreadable), "deliver again rather than maybe never");
    assert!(w.owes(21, || panic!("past what the last run matched: not read")));
    assert_eq!(OnDisk::of::<(), ()>(Ok(false), Ok(false)), OnDisk::Nothing);
    assert_eq!(OnDisk::of::<(), ()>(Ok(true), Ok(false)), OnDisk::Recorded);
    assert_eq!(OnDisk::of::<(), ()>(Ok(false), Ok(true)), OnDisk::Recorded);
    assert_eq!(OnDisk::of::<(), &str>(Ok(true), Err("io")), OnDisk::Unreadable);
    let mut w = w;
    assert_eq!(starts(&mut w, 100), vec![7, 12], "the pending ones resume");
    assert_eq!(w.next_start(100), None);

    // Without a cursor the target starts at the head; a full window's worth on disk means
    // there may be more.
    let pending: Vec<(u64, Pending)> = (1..=WINDOW as u64).map(|s| (s, retry(2, 0))).collect();
    let w = Window::recover(true, Recovered { head: 5_000, pending, disabled: true, ..Recovered::default() });
    assert_eq!((w.scanned(), w.saved, w.more_on_disk, w.is_disabled()), (5_000, (0, 0), true, true));
    // The window is half empty before it reloads.
    let mut w = w;
    w.disabled = false;
    for seq in 1..=(WINDOW as u64 / 2) {
        assert!(!w.wants_reload());
        assert_eq!(w.next_start(0).map(|s| s.seq), Some(seq));
        ok(&mut w, seq, 0);
    }
    assert!(w.wants_reload());
    let on_disk: Vec<(u64, Pending)> = (500..=1_600).map(|s| (s, retry(2, 0))).collect();
    w.reloaded(on_disk[..WINDOW].to_vec());
    assert!(!w.pending.contains_key(&500), "finished, its record on its way");
    assert_eq!(w.len(), 512 + 499, "the ones it holds are not taken twice");
    assert!(w.more_on_disk, "a full read: there may be more");
    w.reloaded(on_disk[..10].to_vec());
    assert!(!w.more_on_disk);
}

#[test]
fn after_a_restart_scanned_is_written_no_lower_than_the_last_run_had_it() {
    // The last run matched up to 20; this one matches again from its cursor, 10.
    let mut w = Window::recover(false, Recovered { cursor: Some(10), scanned: Some(20), ..Recovered::default() });
    assert_eq!(w.start_write(), None, "nothing moved: no write (it wrote (10, 10) before)");
    assert!(w.took(12, &[], 0));
    assert_eq!(w.start_write(), Some(StateWrite { marks: Some((12, 20)), finished: vec![] }), "not (12, 12)");
    w.write_done(true);
    take(&mut w, &[13, 14], 0);
    assert_eq!(starts(&mut w, 0), vec![13, 14]);
    let f = end(&mut w, 13, 1, Outcome::Status(500), None, 0);
    assert_eq!(f.then, Then::Flush { following: retry(2, 1_000), scanned: 20, disable: false }, "nor 14");
    // Past it, the run's own.
    assert!(w.took(25, &[], 0));
    assert_eq!(w.marks(), (12, 25));
}

#[test]
fn requeued_deliveries_join_the_window_or_wait_on_disk() {
    let mut w = new_target(false);
    take(&mut w, &[1, 2, 3], 0);
    starts(&mut w, 0);
    ok(&mut w, 1, 0);
    assert!(w.requeue_skips(2, || false, || false), "in the window");
    assert!(w.requeue_skips(1, || false, || false), "its record on its way");
    assert!(w.requeue_skips(7, || true, || false), "pending on disk");
    assert!(w.requeue_skips(9, || false, || true), "not matched yet, and matches");
    assert!(!w.requeue_skips(9, || false, || false), "not matched yet, and does not match");
    assert!(w.start_write().is_some());
    assert_eq!(w.write_done(true), vec![1]);
    assert!(!w.requeue_skips(1, || false, || panic!("matched already: not asked")));
    w.requeued(&[(1, Pending { attempt: 2, due_at_ms: 5, round: 2 })]);
    assert_eq!(w.next_start(5), Some(Start { seq: 1, attempt: 2, round: 2 }));
    w.requeued(&[(1, Pending { attempt: 3, due_at_ms: 5, round: 3 })]);
    assert_eq!(w.next_start(5), None, "one the window holds is not started twice");
}

#[test]
fn drain_starts_nothing_and_is_idle_once_in_flight_and_recording_are_empty() {
    let mut w = new_target(false);
    take(&mut w, &[1, 2, 3], 0);
    assert_eq!(starts(&mut w, 0), vec![1, 2, 3]);
    take(&mut w, &[4], 0);
    w.drain();
    assert!(w.is_draining() && !w.is_idle());
    assert_eq!((w.next_start(0), w.arm_timer(), w.wants_fill(100), w.wants_reload()), (None, None, None, false));
    ok(&mut w, 1, 0);
    end(&mut w, 2, 1, Outcome::Status(500), None, 0);
    ok(&mut w, 3, 0);
    let write = w.start_write().expect("the records");
    assert_eq!(write.finished, vec![1, 3]);
    assert!(!w.is_idle());
    w.retry_recorded(2, true);
    assert!(!w.is_idle(), "the records are on their way");
    w.write_done(true);
    assert!(w.is_idle());
}

#[test]
fn no_attempt_starts_while_too_many_records_wait() {
    let mut w = new_target(false);
    let seqs: Vec<u64> = (1..=WINDOW as u64).collect();
    take(&mut w, &seqs, 0);
    let mut done = 0;
    while let Some(s) = w.next_start(0) {
        ok(&mut w, s.seq, 0);
        done += 1;
    }
    assert_eq!(done, RECORDING.min(WINDOW));
    let more: Vec<u64> = (WINDOW as u64 + 1..=WINDOW as u64 + 10).collect();
    take(&mut w, &more, 0);
    assert_eq!(w.next_start(0), None, "{RECORDING} records wait");
    assert_eq!(w.arm_timer(), None, "no timer either: the write's completion pumps");
    w.start_write();
    w.write_done(true);
    assert_eq!(w.arm_timer(), Some(0));
    assert!(w.next_start(0).is_some());
}

#[test]
fn the_timer_is_armed_for_the_next_due_delivery_and_only_moved_earlier() {
    let mut w = Window::recover(
        false,
        Recovered { cursor: Some(0), pending: vec![(1, retry(2, 900))], ..Recovered::default() },
    );
    assert_eq!(w.arm_timer(), Some(900));
    assert_eq!(w.arm_timer(), None, "armed already");
    w.requeued(&[(2, retry(2, 500))]);
    assert_eq!(w.arm_timer(), Some(500), "moved earlier");
    w.requeued(&[(3, retry(2, 700))]);
    assert_eq!(w.arm_timer(), None);
    w.timer_fired();
    assert_eq!(starts(&mut w, 500), vec![2]);
    assert_eq!(w.arm_timer(), Some(700));
    w.configure(true);
    assert_eq!(w.arm_timer(), None, "ordered, and one in flight");
    w.set_enabled(false);
    assert_eq!(w.timer, None);
}

#[test]
fn a_delivery_whose_event_is_gone_is_dropped_and_one_unreadable_waits() {
    let mut w = new_target(false);
    take(&mut w, &[1, 2], 0);
    assert_eq!(w.next_start(0).map(|s| s.seq), Some(1));
    w.gone(1);
    assert_eq!((w.len(), w.in_flight(), w.marks()), (1, 0, (1, 2)));
    assert_eq!(w.next_start(0).map(|s| s.seq), Some(2));
    // An unreadable event stays owed, and is tried again a little later.
    w.unstarted(2, 0);
    assert_eq!((w.len(), w.in_flight(), w.next_start(0)), (1, 0, None));
    assert_eq!(w.arm_timer(), Some(UNREADABLE_WAIT_MS));
    assert_eq!(w.next_start(UNREADABLE_WAIT_MS), Some(Start { seq: 2, attempt: 1, round: 1 }));
}

#[test]
fn an_ordered_target_waits_on_an_unreadable_event_without_spinning() {
    let mut w = new_target(true);
    take(&mut w, &[1, 2], 0);
    assert_eq!(w.next_start(100).map(|s| s.seq), Some(1));
    w.unstarted(1, 100);
    assert_eq!(w.next_start(100), None, "1 is not due again at once, and 2 waits for it");
    assert_eq!(w.arm_timer(), Some(100 + UNREADABLE_WAIT_MS));
    assert_eq!(starts(&mut w, 100 + UNREADABLE_WAIT_MS), vec![1]);
}

// ---- properties -----------------------------------------------------------------------------

/// A model of the store's delivery state for one target.
#[derive(Debug, Clone, Default)]
struct Disk {
    cursor: Option<u64>,
    scanned: Option<u64>,
    pending: BTreeMap<u64, Pending>,
    /// Deliveries with an attempt that did not finish them (`A`).
    attempted: BTreeSet<u64>,
    /// Finished deliveries (`L`).
    finished: BTreeSet<u64>,
    disabled: bool,
}

#[derive(Debug, Clone)]
enum Put {
    Cursor(u64),
    Scanned(u64),
    Pending(u64, Pending),
    Done(u64),
    Attempt(u64),
    Finished(u64),
    Unfinish(u64),
    Disable,
    Enable,
}

impl Disk {
    fn apply(&mut self, puts: &[Put]) {
        for put in puts {
            match *put {
                Put::Cursor(c) => self.cursor = Some(c),
                Put::Scanned(s) => {
                    assert!(Some(s) >= self.scanned, "scanned moves back from {:?} to {s}", self.scanned);
                    self.scanned = Some(s);
                }
                Put::Pending(seq, p) => {
                    self.pending.insert(seq, p);
                }
                Put::Done(seq) => {
                    self.pending.remove(&seq);
                }
                Put::Attempt(seq) => {
                    self.attempted.insert(seq);
                }
                Put::Finished(seq) => {
                    self.finished.insert(seq);
                }
                Put::Unfinish(seq) => {
                    if self.finished.remove(&seq) {
                        self.attempted.insert(seq);
                    }
                }
                Put::Disable => self.disabled = true,
                Put::Enable => self.disabled = false,
            }
        }
    }

    fn on_disk(&self, seq: u64) -> OnDisk {
        let attempted = self.attempted.contains(&seq) || self.finished.contains(&seq);
        OnDisk::of::<(), ()>(Ok(self.pending.contains_key(&seq)), Ok(attempted))
    }

    fn recovered(&self, head: u64) -> Recovered {
        Recovered {
            cursor: self.cursor,
            // `Store::scanned`: `W`, or the last finished delivery if higher.
            scanned: self.scanned.max(self.finished.last().copied()),
            pending: self.pending.iter().take(WINDOW).map(|(s, p)| (*s, *p)).collect(),
            disabled: self.disabled,
            head,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    State,
    Retry(u64),
    Requeue(u64, Pending),
    /// Enabling, with how many 410s had come back when the operator asked.
    Enable(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Queued,
    Applied,
    Failed,
}

#[derive(Debug)]
struct Submitted {
    puts: Vec<Put>,
    durable: bool,
    kind: Kind,
    status: Status,
}

/// The window in a model shell, as the actor is to drive it, against a model store: writes
/// are applied in the order they are submitted, when they complete (ok or failed as the test
/// says); a crash keeps every durable write and any prefix of the others that followed.
struct Sim {
    ordered: bool,
    /// Whether each event (seq - 1) matches the target's subscriptions.
    matches: Vec<bool>,
    /// The store as of the last crash, and the writes submitted since.
    base: Disk,
    writes: Vec<Submitted>,
    /// The writes before this one are durable (if applied).
    durable: usize,
    /// The store as readers see it.
    disk: Disk,
    window: Window,
    now: u64,
    unwritten: Vec<Put>,
    /// Attempts started and not reported on; those being flushed.
    attempts: BTreeMap<u64, Start>,
    flushing: BTreeSet<u64>,
    /// The store's `Unrecorded`, as the shell keeps it.
    unrecorded: BTreeSet<u64>,
    /// Events that cannot be read (a start of theirs fails).
    unreadable: BTreeSet<u64>,
    /// 410s reported so far; whether one was reported since an operator last asked to enable
    /// the target (nothing may start then).
    gone: u64,
    silenced: bool,
}

impl Sim {
    fn new(ordered: bool) -> Sim {
        let base = Disk { cursor: Some(0), ..Disk::default() };
        let mut sim = Sim {
            ordered,
            matches: Vec::new(),
            disk: base.clone(),
            window: Window::recover(ordered, base.recovered(0)),
            base,
            writes: Vec::new(),
            durable: 0,
            now: 1_000,
            unwritten: Vec::new(),
            attempts: BTreeMap::new(),
            flushing: BTreeSet::new(),
            unrecorded: BTreeSet::new(),
            unreadable: BTreeSet::new(),
            gone: 0,
            silenced: false,
        };
        sim.pump();
        sim
    }

    fn head(&self) -> u64 {
        self.matches.len() as u64
    }

    fn matches(&self, seq: u64) -> bool {
        self.matches[(seq - 1) as usize]
    }

    fn submit(&mut self, puts: Vec<Put>, durable: bool, kind: Kind) {
        self.writes.push(Submitted { puts, durable, kind, status: Status::Queued });
    }

    fn queued(&self) -> bool {
        self.writes.iter().any(|w| w.status == Status::Queued)
    }

    /// `TargetActor::pump`.
    fn pump(&mut self) {
        if self.window.is_draining() {
            return;
        }
        if self.window.wants_reload() {
            let on_disk = self.disk.pending.iter().take(WINDOW).map(|(s, p)| (*s, *p)).collect();
            self.window.reloaded(on_disk);
        }
        if let Some(fill) = self.window.wants_fill(self.head()) {
            let mut last = self.window.scanned();
            let mut taken = Vec::new();
            for seq in (fill.from..=fill.head).take(SCAN_STEP) {
                last = seq;
                if self.matches(seq) && self.window.owes(seq, || self.disk.on_disk(seq)) {
                    taken.push(seq);
                    if taken.len() >= fill.room {
                        break;
                    }
                }
            }
            self.unrecorded.extend(&taken);
            if self.window.took(last, &taken, self.now) {
                self.write_state();
            }
        }
        let mut started = 0;
        while let Some(start) = self.window.next_start(self.now) {
            // Each owed delivery starts, or fails to and waits: no busy loop.
            started += 1;
            assert!(started <= WINDOW + IN_FLIGHT, "the start loop spins: {:?}", self.window);
            assert!(!self.attempts.contains_key(&start.seq), "{} started twice", start.seq);
            assert!(!self.disk.finished.contains(&start.seq), "{} started again, finished on disk", start.seq);
            assert!(!self.silenced, "{} started after a 410, before an operator enabled the target", start.seq);
            if self.ordered {
                assert_eq!(self.window.pending.keys().next(), Some(&start.seq), "ordered: the oldest owed goes");
            }
            if self.unreadable.contains(&start.seq) {
                self.window.unstarted(start.seq, self.now);
                continue;
            }
            self.attempts.insert(start.seq, start);
        }
        self.window.arm_timer();
    }

    /// `TargetActor::write_state`.
    fn write_state(&mut self) {
        let Some(write) = self.window.start_write() else { return };
        let mut puts = std::mem::take(&mut self.unwritten);
        if let Some((low, _)) = write.marks {
            puts.push(Put::Cursor(low));
        }
        self.submit(puts, false, Kind::State);
    }

    /// `TargetActor::finished` for one of the attempts in flight.
    fn finish(&mut self, pick: usize, outcome: Outcome, retry_after_ms: Option<u64>, jitter: f64) {
        let ready: Vec<u64> = self.attempts.keys().filter(|s| !self.flushing.contains(s)).copied().collect();
        let Some(&seq) = ready.get(pick % ready.len().max(1)) else { return };
        let start = self.attempts[&seq];
        let ended = Ended { seq, n: start.attempt, round: start.round, outcome: &outcome, retry_after_ms };
        let finish = self.window.attempt_finished(ended, self.now, jitter, &SCHEDULE);
        if finish.result == AttemptResult::TargetDisabled {
            self.gone += 1;
            self.silenced = true;
        }
        let record = match finish.result {
            AttemptResult::Delivered | AttemptResult::Dead => Put::Finished(seq),
            AttemptResult::Retrying { .. } | AttemptResult::TargetDisabled => Put::Attempt(seq),
        };
        match finish.then {
            Then::Finished { done } => {
                self.attempts.remove(&seq);
                self.unwritten.push(record);
                if done {
                    self.unwritten.push(Put::Done(seq));
                }
                self.write_state();
                self.pump();
            }
            Then::Flush { following, scanned, disable } => {
                let mut puts = vec![record, Put::Pending(seq, following), Put::Scanned(scanned)];
                if disable {
                    puts.push(Put::Disable);
                }
                self.flushing.insert(seq);
                self.submit(puts, true, Kind::Retry(seq));
            }
        }
    }

    /// The oldest write in progress completes.
    fn complete(&mut self, ok: bool) {
        let Some(i) = self.writes.iter().position(|w| w.status == Status::Queued) else { return };
        let write = &mut self.writes[i];
        write.status = if ok { Status::Applied } else { Status::Failed };
        if ok {
            let passed = self.disk.cursor.unwrap_or(0);
            self.disk.apply(&write.puts);
            if write.durable {
                self.durable = i + 1;
            }
            // What this write changed: the seqs it names, those the cursor passed.
            let named = write.puts.iter().filter_map(|put| match *put {
                Put::Pending(seq, _) | Put::Done(seq) | Put::Attempt(seq) | Put::Finished(seq) | Put::Unfinish(seq) => {
                    Some(seq)
                }
                _ => None,
            });
            let cursor = self.disk.cursor.unwrap_or(0);
            let changed: Vec<u64> = named.chain(passed + 1..=cursor).collect();
            self.check_disk(&self.disk, changed);
        }
        let kind = self.writes[i].kind;
        match kind {
            Kind::State => {
                for seq in self.window.write_done(ok) {
                    self.unrecorded.remove(&seq);
                }
                self.write_state();
                self.pump();
            }
            Kind::Retry(seq) => {
                self.flushing.remove(&seq);
                self.attempts.remove(&seq);
                if self.window.retry_recorded(seq, ok) {
                    self.unrecorded.remove(&seq);
                    self.write_state();
                }
                self.pump();
            }
            Kind::Requeue(seq, p) if ok => {
                self.window.requeued(&[(seq, p)]);
                self.pump();
            }
            Kind::Enable(gone) if ok => {
                if gone == self.gone {
                    self.silenced = false;
                }
                self.window.set_enabled(true);
                self.pump();
            }
            Kind::Requeue(..) | Kind::Enable(_) => {}
        }
    }

    fn advance(&mut self, ms: u64) {
        self.now += ms;
        if self.window.timer.is_some_and(|at| at <= self.now) {
            self.window.timer_fired();
            self.pump();
        }
    }

    /// The process dies: the store keeps every durable write, and maybe more of those that
    /// followed (in order); the actor starts again from it.
    fn crash(&mut self, keep: usize) {
        let kept = self.durable + keep % (self.writes.len() - self.durable + 1);
        let mut disk = self.base.clone();
        for write in &self.writes[..kept] {
            if write.status != Status::Failed {
                disk.apply(&write.puts);
            }
        }
        self.check_disk(&disk, 1..=self.head());
        self.base = disk.clone();
        self.disk = disk;
        self.writes.clear();
        self.durable = 0;
        self.unwritten.clear();
        self.attempts.clear();
        self.flushing.clear();
        self.unrecorded.clear();
        // What the store kept of a 410 decides now.
        self.silenced = false;
        self.window = Window::recover(self.ordered, self.disk.recovered(self.head()));
        // At least once: every delivery owed and not recorded as finished is owed again.
        for seq in (1..=self.head()).filter(|s| self.matches(*s) && !self.disk.finished.contains(s)) {
            let owed = self.window.pending.contains_key(&seq)
                || (self.disk.pending.contains_key(&seq) && self.window.more_on_disk)
                || (seq > self.window.scanned() && self.window.owes(seq, || self.disk.on_disk(seq)));
            assert!(owed, "delivery {seq} is lost after a crash: {:?}", self.disk);
        }
        self.pump();
    }

    /// An operator enables the target (the API writes the store, then tells the actor).
    fn enable(&mut self) {
        self.submit(vec![Put::Enable], true, Kind::Enable(self.gone));
    }

    /// An operator queues a delivery again (the actor's `Requeue` handler).
    fn requeue(&mut self, pick: usize) {
        if self.head() == 0 {
            return;
        }
        let seq = 1 + pick as u64 % self.head();
        let elsewhere = || self.unrecorded.contains(&seq) || self.disk.pending.contains_key(&seq);
        if self.window.requeue_skips(seq, elsewhere, || self.matches(seq)) {
            return;
        }
        let p = Pending { attempt: 9, due_at_ms: self.now, round: 9 };
        self.submit(vec![Put::Unfinish(seq), Put::Pending(seq, p)], true, Kind::Requeue(seq, p));
    }

    /// An event becomes unreadable, or readable again (then the actor is woken).
    fn toggle_unreadable(&mut self, pick: usize) {
        if self.head() == 0 {
            return;
        }
        let seq = 1 + pick as u64 % self.head();
        if !self.unreadable.remove(&seq) {
            self.unreadable.insert(seq);
        }
        self.pump();
    }

    /// What the store must hold of `seqs`, whatever it keeps of a crash: the cursor passes only
    /// deliveries finished or pending, and one attempted is finished or pending.
    fn check_disk(&self, disk: &Disk, seqs: impl IntoIterator<Item = u64>) {
        let cursor = disk.cursor.unwrap_or(0);
        for seq in seqs {
            let held = disk.finished.contains(&seq) || disk.pending.contains_key(&seq);
            let matched = seq <= self.head() && self.matches(seq);
            assert!(held || !matched || seq > cursor, "the cursor {cursor} passed {seq}, neither finished nor pending");
            assert!(held || !disk.attempted.contains(&seq), "{seq} attempted, neither finished nor pending");
        }
    }

    /// What holds of the window after every step.
    fn check(&self) {
        let w = &self.window;
        assert!(w.pending.len() <= WINDOW);
        assert!(w.in_flight.len() <= w.limit());
        // Ordered: one at a time, and the oldest owed when it started (checked in `pump`); a
        // delivery queued again may be older than the one in flight, and goes next.
        if self.ordered {
            assert!(w.in_flight.len() <= 1);
        }
        assert_eq!(w.in_flight.iter().collect::<Vec<_>>(), self.attempts.keys().collect::<Vec<_>>());
        assert_eq!(w.flushing.keys().collect::<Vec<_>>(), self.flushing.iter().collect::<Vec<_>>());
        let waiting: BTreeSet<(u64, u64)> =
            w.pending.iter().filter(|(s, _)| !w.in_flight.contains(s)).map(|(s, p)| (p.due_at_ms, *s)).collect();
        assert_eq!(w.due, waiting, "due is what is pending and not in flight");
        for seq in w.fresh.iter().filter(|s| w.pending.contains_key(s)) {
            assert!(self.unrecorded.contains(seq), "{seq} fresh and not shown as owed");
        }
        for seq in &self.unrecorded {
            assert!(w.pending.contains_key(seq) || w.recording.contains(seq) || w.fresh.contains(seq), "{seq}");
        }
        let (low, scanned) = w.marks();
        assert!(low <= scanned && scanned <= self.head().max(w.scanned));
        assert!(w.writing.is_some() == self.writes.iter().any(|x| x.kind == Kind::State && x.status == Status::Queued));
    }

    /// After a crash, with the target enabled and every attempt succeeding, time passing: every
    /// delivery owed is made, driven only by what the actor gets (attempt reports, written
    /// records, its timer).
    fn settle(&mut self) {
        self.unreadable.clear();
        self.crash(usize::MAX);
        self.enable();
        for step in 0..1_000_000 {
            if self.queued() {
                self.complete(true);
            } else if self.attempts.len() > self.flushing.len() {
                self.finish(0, Outcome::Status(200), None, 0.0);
            } else if self.window.is_empty()
                && self.attempts.is_empty()
                && self.window.scanned() == self.head()
                && !self.window.more_on_disk
            {
                break;
            } else {
                let at = self.window.timer.unwrap_or_else(|| panic!("stuck without a timer: {:?}", self.window));
                self.now = self.now.max(at);
                self.window.timer_fired();
                self.pump();
            }
            if step % 64 == 0 {
                self.check();
            }
        }
        self.check();
        for seq in (1..=self.head()).filter(|s| self.matches(*s)) {
            assert!(self.disk.finished.contains(&seq), "{seq} never delivered");
        }
        assert!(self.disk.pending.is_empty(), "{:?}", self.disk.pending);
        assert_eq!(self.disk.cursor, Some(self.head()));
        assert!(self.window.is_idle());
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// Events appended to the log (whether each matches), then a wake-up.
    Append(Vec<bool>),
    Wake,
    /// An attempt in flight ends: which one, its outcome, its `Retry-After`, the jitter.
    Finish(usize, u8, Option<u64>, i8),
    /// The oldest write in progress completes, or fails.
    Complete(bool),
    Advance(u64),
    Crash(usize),
    Enable,
    Requeue(usize),
    /// An event becomes unreadable, or readable again.
    Unreadable(usize),
}

fn op(most_events: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => prop::collection::vec(any::<bool>(), 1..most_events).prop_map(Op::Append),
        1 => Just(Op::Wake),
        8 => (any::<usize>(), 0u8..7, prop::option::of(0u64..30_000), -1i8..=1)
            .prop_map(|(pick, outcome, ra, jitter)| Op::Finish(pick, outcome, ra, jitter)),
        6 => (0u8..5).prop_map(|x| Op::Complete(x != 0)),
        2 => (0u64..8_000).prop_map(Op::Advance),
        1 => any::<usize>().prop_map(Op::Crash),
        1 => Just(Op::Enable),
        1 => any::<usize>().prop_map(Op::Requeue),
        1 => any::<usize>().prop_map(Op::Unreadable),
    ]
}

fn run(ordered: bool, ops: Vec<Op>) {
    let mut sim = Sim::new(ordered);
    for op in ops {
        match op {
            Op::Append(matches) => {
                sim.matches.extend(matches);
                sim.pump();
            }
            Op::Wake => sim.pump(),
            Op::Finish(pick, outcome, ra, jitter) => {
                let outcome = match outcome {
                    0..=2 => Outcome::Status(200),
                    3 => Outcome::Status(500),
                    4 => Outcome::Status(429),
                    5 => Outcome::Status(410),
                    _ => Outcome::Timeout,
                };
                sim.finish(pick, outcome, ra, f64::from(jitter));
            }
            Op::Complete(ok) => sim.complete(ok),
            Op::Advance(ms) => sim.advance(ms),
            Op::Crash(keep) => sim.crash(keep),
            Op::Enable => sim.enable(),
            Op::Requeue(pick) => sim.requeue(pick),
            Op::Unreadable(pick) => sim.toggle_unreadable(pick),
        }
        sim.check();
    }
    sim.settle();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random runs of a few events at a time: the invariants hold after every step, nothing is
    /// lost in a crash, and everything owed is delivered in the end.
    #[test]
    fn a_window_keeps_its_rules_and_loses_nothing(ordered in any::<bool>(), ops in prop::collection::vec(op(40), 1..120)) {
        run(ordered, ops);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The same with backlogs larger than the window.
    #[test]
    fn a_full_window_keeps_its_rules_and_loses_nothing(ordered in any::<bool>(), ops in prop::collection::vec(op(2_500), 1..60)) {
        run(ordered, ops);
    }
}

#[test]
fn what_a_target_owes_by_the_log_alone() {
    // Past the cursor, nothing recorded, matching: owed.
    assert!(owed(true, OnDisk::Nothing, || true));
    // Unreadable records: delivered again rather than maybe never.
    assert!(owed(true, OnDisk::Unreadable, || true));
    // Recorded (pending or finished), at or below the cursor, or not matching: not owed.
    assert!(!owed(true, OnDisk::Recorded, || true));
    assert!(!owed(false, OnDisk::Nothing, || true));
    assert!(!owed(true, OnDisk::Nothing, || false));
    // Matching is asked last, and only when the rest says owed.
    assert!(!owed(false, OnDisk::Nothing, || panic!("matched though not past the cursor")));
}
