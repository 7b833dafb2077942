//! The window's rules one by one; properties of random runs against a model of the store (with
//! crashes that keep what a real one may keep) in `tests/properties.rs`.

use std::collections::{BTreeMap, BTreeSet};

use crmhook_core::retry::Outcome;
use proptest::prelude::*;

use super::*;

mod parking;
mod properties;
mod restarts;
mod slots;

const SCHEDULE: [u64; 3] = [1_000, 5_000, 20_000];

fn retry(attempt: u32, due_at_ms: u64) -> Pending {
    Pending { attempt, due_at_ms, round: 1 }
}

/// A target created when the log was empty.
fn new_target(ordered: bool) -> Window {
    Window::recover(ordered, Recovered { cursor: Some(0), ..Recovered::default() })
}

/// A target whose cursor is at 10, restarted with these deliveries pending on disk.
fn with_pending(ordered: bool, pending: Vec<(u64, Pending)>) -> Window {
    Window::recover(ordered, Recovered { cursor: Some(10), pending, ..Recovered::default() })
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
    let mut w = with_pending(false, vec![(2, retry(2, 500)), (5, retry(2, 300)), (9, retry(2, 100))]);
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
fn a_rate_limited_target_starts_at_most_its_rate_in_any_second() {
    let mut w = new_target(false);
    w.configure(false, Some(3));
    let seqs: Vec<u64> = (1..=10).collect();
    take(&mut w, &seqs, 1_000);
    assert_eq!(starts(&mut w, 1_000), vec![1, 2, 3], "three in the first second");
    assert_eq!(w.arm_timer(), Some(2_000), "the timer waits for the limit, not for the due time");
    for seq in 1..=3 {
        ok(&mut w, seq, 1_100);
    }
    assert_eq!(starts(&mut w, 1_999), Vec::<u64>::new(), "finished attempts free no rate");
    w.timer_fired();
    assert_eq!(starts(&mut w, 2_000), vec![4, 5, 6]);
    // Lifting the limit lets the rest go at once (16 in flight at most, as ever).
    w.configure(false, None);
    assert_eq!(starts(&mut w, 2_001), vec![7, 8, 9, 10]);
}

#[test]
fn a_rate_limited_retry_waits_for_its_due_time_and_for_the_limit() {
    let mut w = with_pending(false, vec![(2, retry(2, 5_000)), (5, retry(2, 5_000))]);
    w.configure(false, Some(1));
    assert_eq!(w.arm_timer(), Some(5_000), "nothing has started: only the due time counts");
    w.timer_fired();
    assert_eq!(starts(&mut w, 5_000), vec![2]);
    assert_eq!(w.arm_timer(), Some(6_000));
    w.timer_fired();
    assert_eq!(starts(&mut w, 6_000), vec![5]);
}

#[test]
fn an_ordered_target_starts_only_its_oldest_delivery_one_at_a_time() {
    let mut w = with_pending(true, vec![(2, retry(2, 500)), (5, retry(2, 300)), (9, retry(2, 100))]);
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
    // Attempt 5 of a round begun at 4 waits the schedule's second delay, plus a tenth.
    assert_eq!(
        f.then,
        Then::Flush { following: Pending { attempt: 6, due_at_ms: 6_500, round: 4 }, scanned: 1, disable: false }
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
    w.requeued(&[(4_000, retry(2, 0))], true);
    assert_eq!(w.len(), WINDOW);
    assert!(w.more_on_disk && w.wants_reload().is_none());
    // As do pending entries read from disk.
    let on_disk: Vec<(u64, Pending)> = (2_000..2_000 + WINDOW as u64).map(|s| (s, retry(2, 0))).collect();
    w.reloaded(on_disk, WINDOW);
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
        assert!(w.wants_reload().is_none());
        assert_eq!(w.next_start(0).map(|s| s.seq), Some(seq));
        ok(&mut w, seq, 0);
    }
    // It reads as many as it holds and a window more: a full read finds a window it lacks.
    assert_eq!(w.wants_reload(), Some(WINDOW / 2 + WINDOW));
    let on_disk: Vec<(u64, Pending)> = (500..=1_600).map(|s| (s, retry(2, 0))).collect();
    w.reloaded(on_disk[..WINDOW].to_vec(), WINDOW);
    assert!(!w.pending.contains_key(&500), "finished, its record on its way");
    assert_eq!(w.len(), 512 + 499, "the ones it holds are not taken twice");
    assert!(w.more_on_disk, "a full read: there may be more");
    w.reloaded(on_disk[..10].to_vec(), 11);
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
    w.requeued(&[(1, Pending { attempt: 2, due_at_ms: 5, round: 2 })], true);
    assert_eq!(w.next_start(5), Some(Start { seq: 1, attempt: 2, round: 2 }));
    w.requeued(&[(1, Pending { attempt: 3, due_at_ms: 5, round: 3 })], true);
    assert_eq!(w.next_start(5), None, "one the window holds is not started twice");
}

#[test]
fn a_delivery_is_queued_again_once_at_a_time() {
    let mut w = new_target(false);
    take(&mut w, &[1], 0);
    starts(&mut w, 0);
    ok(&mut w, 1, 0);
    assert!(w.start_write().is_some());
    assert_eq!(w.write_done(true), vec![1]);
    // A redelivery of 1: its pending entry is being written.
    assert!(!w.requeue_skips(1, || false, || false));
    w.queue_again(1);
    // A second one meanwhile is skipped: the first will be made.
    assert!(w.requeue_skips(1, || false, || false), "being queued again");
    let p = Pending { attempt: 2, due_at_ms: 5, round: 2 };
    w.requeued(&[(1, p)], true);
    assert_eq!(starts(&mut w, 5), vec![1]);
    ok(&mut w, 1, 5);
    assert!(w.requeue_skips(1, || false, || false), "its record on its way");
    assert!(w.start_write().is_some());
    assert_eq!(w.write_done(true), vec![1]);
    // A write that failed queued nothing: the next redelivery is made.
    w.queue_again(1);
    w.requeued(&[(1, Pending { attempt: 3, due_at_ms: 6, round: 3 })], false);
    assert_eq!(starts(&mut w, 6), Vec::<u64>::new());
    assert!(!w.requeue_skips(1, || false, || false));
}

#[test]
fn drain_starts_nothing_and_is_idle_once_in_flight_and_recording_are_empty() {
    let mut w = new_target(false);
    take(&mut w, &[1, 2, 3], 0);
    assert_eq!(starts(&mut w, 0), vec![1, 2, 3]);
    take(&mut w, &[4], 0);
    w.drain();
    assert!(w.is_draining() && !w.is_idle());
    assert_eq!((w.next_start(0), w.arm_timer(), w.wants_fill(100), w.wants_reload()), (None, None, None, None));
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

/// A window full of first attempts, each started attempt ended at once by `end` until none
/// starts: the window and how many started.
fn full_window_ending_each(end: fn(&mut Window, u64, u64) -> Finish) -> (Window, usize) {
    let mut w = new_target(false);
    let seqs: Vec<u64> = (1..=WINDOW as u64).collect();
    take(&mut w, &seqs, 0);
    let mut started = 0;
    while let Some(s) = w.next_start(0) {
        end(&mut w, s.seq, 0);
        started += 1;
    }
    (w, started)
}

#[test]
fn no_attempt_starts_while_too_many_records_wait() {
    let (mut w, done) = full_window_ending_each(ok);
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
    w.requeued(&[(2, retry(2, 500))], true);
    assert_eq!(w.arm_timer(), Some(500), "moved earlier");
    w.requeued(&[(3, retry(2, 700))], true);
    assert_eq!(w.arm_timer(), None);
    w.timer_fired();
    assert_eq!(starts(&mut w, 500), vec![2]);
    assert_eq!(w.arm_timer(), Some(700));
    w.configure(true, None);
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

#[test]
fn waiting_retries_are_brought_forward_once_their_new_time_is_written() {
    let mut w =
        with_pending(false, vec![(2, retry(2, 50_000)), (5, Pending { attempt: 4, due_at_ms: 90_000, round: 2 })]);
    take(&mut w, &[11, 12], 1_000);
    assert_eq!(w.next_start(1_000).map(|s| s.seq), Some(11));
    // 11 is in flight and 12 a first attempt due already: neither is waiting for a retry.
    let sooner = w.hasten(2_000, |_| true);
    assert_eq!(sooner, vec![(2, retry(2, 2_000)), (5, Pending { attempt: 4, due_at_ms: 2_000, round: 2 })]);
    assert_eq!(starts(&mut w, 2_000), vec![12], "none goes before its new time is written");
    assert_eq!(w.hasten(2_000, |_| true), vec![], "nor is one brought forward twice");
    w.hastened(&[2, 5], true);
    assert_eq!(w.next_start(2_000), Some(Start { seq: 2, attempt: 2, round: 1 }));
    assert_eq!(w.next_start(2_000), Some(Start { seq: 5, attempt: 4, round: 2 }), "its schedule goes on");
}

#[test]
fn a_retry_brought_forward_keeps_its_time_when_the_write_fails() {
    let mut w = with_pending(false, vec![(2, retry(2, 50_000)), (5, retry(2, 90_000))]);
    let sooner = w.hasten(2_000, |seq| seq == 5);
    assert_eq!(sooner, vec![(5, retry(2, 2_000))], "only what the operator picked");
    w.hastened(&[5], false);
    assert_eq!(starts(&mut w, 2_000), Vec::<u64>::new());
    assert_eq!(w.arm_timer(), Some(50_000));
    assert_eq!(starts(&mut w, 90_000), vec![2, 5]);
}

#[test]
fn an_ordered_target_brings_forward_in_order_and_starts_none_while_writing() {
    let mut w = with_pending(true, vec![(2, retry(2, 50_000)), (5, retry(2, 9_000))]);
    assert_eq!(w.hasten(2_000, |seq| seq == 5).len(), 1);
    w.hastened(&[5], true);
    assert_eq!(starts(&mut w, 2_000), Vec::<u64>::new(), "5 waits for 2, the oldest");
    assert_eq!(w.hasten(2_000, |_| true), vec![(2, retry(2, 2_000))]);
    assert_eq!(starts(&mut w, 60_000), Vec::<u64>::new(), "2 is past its old time, and its new one is being written");
    assert_eq!(w.arm_timer(), None);
    w.hastened(&[2], true);
    assert_eq!(starts(&mut w, 2_000), vec![2], "one at a time");
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

#[test]
fn a_window_full_of_retries_waiting_is_blocked_until_the_next_is_due() {
    // Retries of seqs 11.. waiting until 100 s; the log's head far past them.
    let full = |n: u64| with_pending(false, (11..11 + n).map(|s| (s, retry(2, 100_000))).collect());
    let w = full(WINDOW as u64);
    assert_eq!(w.blocked_until(1_000, || 5_000), Some(100_000));
    assert_eq!(w.blocked_until(1_000, || 10), None, "nothing newer in the log");
    assert_eq!(w.blocked_until(100_000, || 5_000), None, "due now");
    // Too full to read the log: more than all but a fill step owed.
    let fill_step = FILL_STEP as u64;
    assert_eq!(full(WINDOW as u64 - fill_step).blocked_until(1_000, || 5_000), None, "room to read");
    assert_eq!(full(WINDOW as u64 - fill_step + 1).blocked_until(1_000, || 5_000), Some(100_000));
    // An attempt in flight, or a disabled target: not blocked by the retries.
    let mut one_due = with_pending(
        false,
        (11..11 + WINDOW as u64).map(|s| (s, retry(2, if s == 11 { 500 } else { 100_000 }))).collect(),
    );
    assert_eq!(starts(&mut one_due, 1_000), vec![11]);
    assert_eq!(one_due.blocked_until(1_000, || 5_000), None);
    let mut w = full(WINDOW as u64);
    w.set_enabled(false);
    assert_eq!(w.blocked_until(1_000, || 5_000), None);
    // Brought forward, they are due at once.
    let mut w = full(WINDOW as u64);
    let sooner: Vec<u64> = w.hasten(1_000, |_| true).into_iter().map(|(s, _)| s).collect();
    w.hastened(&sooner, true);
    assert_eq!(w.blocked_until(1_000, || 5_000), None);
}

#[test]
fn a_retry_being_written_is_waiting_and_brought_forward_once_written() {
    let mut w = new_target(false);
    take(&mut w, &[1, 2], 0);
    assert_eq!(starts(&mut w, 0), vec![1, 2]);
    let finish = end(&mut w, 1, 1, Outcome::Status(500), None, 10);
    assert!(finish.flushes());
    // 1's retry is being written, 2 is still being attempted: only 1 is waiting for a retry.
    assert_eq!(w.waiting_retries(10), vec![1]);
    assert_eq!(w.hasten(10, |_| true), vec![], "not while it is being written");
    w.retry_recorded(1, true);
    assert_eq!(w.waiting_retries(10), vec![1]);
    assert_eq!(w.hasten(10, |_| true), vec![(1, retry(2, 10))]);
}
