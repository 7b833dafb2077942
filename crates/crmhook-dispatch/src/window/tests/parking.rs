//! Retries parked out of the window's count (`window/parking.rs`).

use super::*;

const HOURS: u64 = 3_600_000;

/// A target that has matched up to 2,000 and owes `n` retries (seqs 1..=n) due at `due(seq)`.
fn owing(ordered: bool, n: u64, due: impl Fn(u64) -> u64) -> Window {
    let pending = (1..=n).map(|s| (s, retry(2, due(s)))).collect();
    Window::recover(ordered, Recovered { cursor: Some(2_000), scanned: Some(2_000), pending, ..Recovered::default() })
}

/// Starts and delivers everything due at `now_ms`.
fn deliver_due(w: &mut Window, now_ms: u64) -> usize {
    let mut delivered = 0;
    loop {
        let started = starts(w, now_ms);
        if started.is_empty() {
            return delivered;
        }
        for seq in started {
            ok(w, seq, now_ms);
            delivered += 1;
        }
        w.start_write();
        w.write_done(true);
    }
}

#[test]
fn retries_due_later_park_so_that_the_window_reads_newer_events() {
    let mut w = owing(false, WINDOW as u64, |_| HOURS);
    assert_eq!(w.wants_fill(5_000), None, "a window full of retries reads nothing");
    assert_eq!(w.blocked_until(1_000, || 5_000), Some(HOURS));
    w.park(1_000, 5_000);
    assert_eq!((w.parked(), w.len()), (FILL_STEP, WINDOW), "a fill step's worth, still owed");
    assert_eq!(w.wants_fill(5_000), Some(Fill { from: 2_001, head: 5_000, room: FILL_STEP }));
    assert_eq!(w.blocked_until(1_000, || 5_000), None);
    // The newer events are owed, and the next fill parks what it needs.
    let newer: Vec<u64> = (2_001..2_001 + FILL_STEP as u64).collect();
    take(&mut w, &newer, 1_000);
    w.park(1_000, 5_000);
    assert_eq!((w.parked(), w.len()), (2 * FILL_STEP, WINDOW + FILL_STEP));
    assert_eq!(w.wants_fill(5_000), Some(Fill { from: 2_001 + FILL_STEP as u64, head: 5_000, room: FILL_STEP }));
    // They go at once, while the retries wait.
    assert_eq!(deliver_due(&mut w, 1_000), FILL_STEP);
    assert_eq!(w.len(), WINDOW);
    // Nothing parks once the log has nothing newer.
    let mut idle = owing(false, WINDOW as u64, |_| HOURS);
    idle.park(1_000, 2_000);
    assert_eq!(idle.parked(), 0);
}

#[test]
fn only_retries_due_a_minute_or_more_later_park_and_never_an_ordered_targets() {
    let mut soon = owing(false, WINDOW as u64, |s| if s <= 900 { 1_000 + PARK_AFTER_MS - 1 } else { HOURS });
    soon.park(1_000, 5_000);
    assert_eq!(soon.parked(), 124, "the latest due first; none due within the minute");
    assert_eq!(soon.blocked_until(1_000, || 5_000), Some(PARK_AFTER_MS + 999), "until they are due");
    let mut ordered = owing(true, WINDOW as u64, |_| HOURS);
    ordered.park(1_000, 5_000);
    assert_eq!(ordered.parked(), 0);
    assert_eq!(ordered.blocked_until(1_000, || 5_000), Some(HOURS));
    // A target made ordered counts its parked retries again.
    let mut w = owing(false, WINDOW as u64, |_| HOURS);
    w.park(1_000, 5_000);
    w.configure(true, None);
    assert_eq!((w.parked(), w.len()), (0, WINDOW));
    assert_eq!(w.next_start(HOURS).map(|s| s.seq), Some(1), "the oldest first");
}

#[test]
fn parked_retries_count_again_and_go_when_due() {
    let mut w = owing(false, WINDOW as u64, |s| if s <= 768 { HOURS } else { 2 * HOURS });
    w.park(1_000, 5_000);
    assert_eq!(w.parked(), FILL_STEP);
    // The others are brought forward and delivered: only parked ones are left.
    let sooner: Vec<u64> = w.hasten(1_000, |s| s <= 768).into_iter().map(|(s, _)| s).collect();
    assert_eq!(sooner.len(), 768);
    w.hastened(&sooner, true);
    assert_eq!(deliver_due(&mut w, 1_000), 768);
    assert_eq!((w.len(), w.parked()), (FILL_STEP, FILL_STEP));
    assert_eq!(w.arm_timer(), Some(2 * HOURS), "the timer is armed for the first parked retry");
    assert_eq!(starts(&mut w, 2 * HOURS - 1), Vec::<u64>::new(), "not before it is due");
    w.timer_fired();
    assert_eq!(starts(&mut w, 2 * HOURS), (769..769 + IN_FLIGHT as u64).collect::<Vec<_>>());
    assert_eq!(w.parked(), 0, "due: they count again");
    // The rest go as the in-flight limit lets them.
    let mut now = 2 * HOURS;
    for seq in 769..769 + IN_FLIGHT as u64 {
        ok(&mut w, seq, now);
    }
    now += 1;
    assert_eq!(deliver_due(&mut w, now), FILL_STEP - IN_FLIGHT);
    assert!(w.is_empty());
}

#[test]
fn retry_now_brings_forward_parked_retries_too() {
    let mut w = owing(false, WINDOW as u64, |_| HOURS);
    w.park(1_000, 5_000);
    let sooner: Vec<u64> = w.hasten(1_000, |_| true).into_iter().map(|(s, _)| s).collect();
    assert_eq!((sooner.len(), w.parked()), (WINDOW, 0));
    w.hastened(&sooner, true);
    assert_eq!(deliver_due(&mut w, 1_000), WINDOW);
}

#[test]
fn a_restart_takes_the_parked_retries_again_and_parks_those_beyond_the_window() {
    let n = (WINDOW + 10) as u64;
    // The later the seq, the later it is due: the last ten park.
    let w = owing(false, n, |s| HOURS + s);
    assert_eq!((w.len(), w.parked(), w.more_on_disk), (WINDOW + 10, 10, false));
    assert_eq!(w.first_parked(), Some(HOURS + WINDOW as u64 + 1));
    // An ordered target takes a window's worth, and the rest later.
    let w = owing(true, n, |s| HOURS + s);
    assert_eq!((w.len(), w.parked(), w.more_on_disk), (WINDOW, 0, true));
    // Those parked that are due count again at the first start.
    let mut w = owing(false, n, |_| 500);
    assert_eq!(w.parked(), 10);
    // Until then they are due, not waiting: the health counts none of them as retrying.
    assert_eq!(w.retries(499), Retries { waiting: WINDOW + 10, next_at_ms: Some(500) });
    assert_eq!(w.retries(1_000), Retries::default(), "parked or not");
    assert_eq!(starts(&mut w, 1_000).len(), IN_FLIGHT);
    assert_eq!(w.parked(), 0);
}

#[test]
fn past_its_parked_retries_a_window_is_blocked_as_before() {
    let most = Window::holds_at_most(false) as u64;
    assert_eq!(most, (WINDOW + PARKED) as u64);
    let mut w = owing(false, most, |_| HOURS);
    assert_eq!((w.len(), w.parked()), (WINDOW + PARKED, PARKED));
    w.park(1_000, 5_000);
    assert_eq!(w.parked(), PARKED, "no more");
    assert_eq!(w.wants_fill(5_000), None);
    assert_eq!(w.blocked_until(1_000, || 5_000), Some(HOURS));
    // A full read: there may be more on disk, taken once the window is half empty.
    assert!(w.more_on_disk);
    assert_eq!(w.wants_reload(), None);
}
