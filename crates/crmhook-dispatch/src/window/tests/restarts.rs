//! The window after a restart, while it matches the log again from the cursor.

use super::*;

#[test]
fn a_failed_write_after_a_restart_keeps_the_cursor_below_what_is_not_matched_again() {
    // The last run matched up to 1,000: 1 owed with nothing on disk yet (its first attempt not
    // recorded), 2..=800 waiting for retries. The window is too full to match the log again.
    let pending = (2..=800).map(|s| (s, retry(2, 0))).collect();
    let mut w =
        Window::recover(false, Recovered { cursor: Some(0), scanned: Some(1_000), pending, ..Recovered::default() });
    assert_eq!(w.wants_fill(1_000), None, "no room to match again yet");
    assert_eq!(w.next_start(0).map(|s| s.seq), Some(2));
    ok(&mut w, 2, 0);
    assert!(w.start_write().is_some());
    assert_eq!(w.write_done(false), Vec::<u64>::new(), "its record is not written");
    // 2 is fresh again, beyond what this run has matched (nothing yet): the cursor may not pass
    // 1, which a restart would then never match again.
    assert!(w.fresh.contains(&2));
    assert_eq!(w.marks(), (0, 1_000));
    assert_eq!(w.start_write(), None, "the marks did not move");
    // Once matched again, 1 is taken, and the cursor stays below it.
    for seq in 3..=300 {
        assert_eq!(w.next_start(0).map(|s| s.seq), Some(seq));
        ok(&mut w, seq, 0);
        if seq % 16 == 0 {
            assert!(w.start_write().is_some());
            w.write_done(true);
        }
    }
    let fill = w.wants_fill(1_000).expect("room");
    assert_eq!(fill.from, 1);
    assert!(w.owes(1, || OnDisk::of::<(), ()>(Ok(false), Ok(false))));
    take(&mut w, &[1], 0);
    assert_eq!(w.marks(), (0, 1_000));
}
