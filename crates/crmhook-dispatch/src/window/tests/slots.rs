//! What holds one of a target's [`IN_FLIGHT`] slots: an attempt under way, not a retry whose
//! record is being written.

use super::*;

fn fail(window: &mut Window, seq: u64, now_ms: u64) -> Finish {
    end(window, seq, 1, Outcome::Status(500), None, now_ms)
}

#[test]
fn a_retry_being_written_holds_no_slot_and_is_not_attempted_again_until_written() {
    let mut w = new_target(false);
    let seqs: Vec<u64> = (1..=40).collect();
    take(&mut w, &seqs, 0);
    assert_eq!(starts(&mut w, 0), (1..=16).collect::<Vec<_>>());
    for seq in 1..=16 {
        assert!(matches!(fail(&mut w, seq, 0).then, Then::Flush { .. }));
    }
    // Their retries are being written (a cluster's write is a round trip to NATS): the next
    // deliveries go meanwhile.
    assert_eq!(starts(&mut w, 0), (17..=32).collect::<Vec<_>>(), "the slots are free");
    assert!(w.settling(1), "a retry being written is still settling");
    assert_eq!(w.waiting_retries(0), (1..=16).collect::<Vec<_>>());
    assert_eq!(starts(&mut w, 1_000), Vec::<u64>::new(), "due, but not before its record is down");
    for seq in 17..=32 {
        ok(&mut w, seq, 0);
    }
    assert_eq!(starts(&mut w, 1_000), (33..=40).collect::<Vec<_>>(), "the rest of the first attempts");
    for seq in 1..=16 {
        w.retry_recorded(seq, true);
    }
    assert_eq!(starts(&mut w, 999), Vec::<u64>::new(), "the schedule's first delay is 1 s");
    assert_eq!(starts(&mut w, 1_000), (1..=8).collect::<Vec<_>>(), "8 slots left beside 33..=40");
}

#[test]
fn an_ordered_target_waits_for_its_oldest_retry_to_be_written() {
    let mut w = new_target(true);
    take(&mut w, &[1, 2, 3], 0);
    assert_eq!(starts(&mut w, 0), vec![1]);
    assert!(matches!(fail(&mut w, 1, 0).then, Then::Flush { .. }));
    assert_eq!(starts(&mut w, 0), Vec::<u64>::new(), "2 never passes 1, written or not");
    assert_eq!(w.arm_timer(), None, "no timer for a delivery that cannot go");
    w.retry_recorded(1, true);
    assert_eq!(starts(&mut w, 999), Vec::<u64>::new());
    assert_eq!(starts(&mut w, 1_000), vec![1]);
}

#[test]
fn retries_being_written_count_against_the_records_on_their_way() {
    let (mut w, failed) = full_window_ending_each(fail);
    assert_eq!(failed, RECORDING.min(WINDOW), "every start's retry is on its way to the store");
    assert_eq!(w.arm_timer(), None, "the write's completion pumps");
    w.retry_recorded(1, true);
    assert_eq!(w.next_start(1_000).map(|s| s.seq), Some(1), "one record down, one attempt more");
    assert_eq!(w.next_start(1_000), None);
}
