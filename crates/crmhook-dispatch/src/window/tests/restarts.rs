//! The window after a restart, while it matches the log again from the cursor.

use super::*;

/// The last run matched up to 1,000: 1 owed with nothing on disk yet (its first attempt not
/// recorded), 2..=800 waiting for retries. The window is too full to match the log again.
fn restarted() -> Window {
    let pending = (2..=800).map(|s| (s, retry(2, 0))).collect();
    let w =
        Window::recover(false, Recovered { cursor: Some(0), scanned: Some(1_000), pending, ..Recovered::default() });
    assert_eq!(w.wants_fill(1_000), None, "no room to match again yet");
    w
}

#[test]
fn a_retry_whose_record_failed_is_taken_again_as_a_retry() {
    let mut w = restarted();
    assert_eq!(w.next_start(0).map(|s| s.seq), Some(2));
    assert_eq!(ok(&mut w, 2, 0).then, Then::Finished { done: true });
    assert!(w.start_write().is_some());
    assert_eq!(w.write_done(false), Vec::<u64>::new(), "its record is not written");
    // Its pending entry is still on disk: not fresh (nothing holds the cursor for it).
    assert!(!w.fresh.contains(&2));
    assert_eq!(w.marks(), (0, 1_000));
    assert_eq!(w.start_write(), None, "the marks did not move");
    // Taken again from disk, its next success removes that entry with its record.
    w.more_on_disk = true;
    for seq in 3..=600 {
        assert_eq!(w.next_start(0).map(|s| s.seq), Some(seq));
        ok(&mut w, seq, 0);
    }
    assert!(w.start_write().is_some());
    w.write_done(true);
    let limit = w.wants_reload().expect("half empty");
    w.reloaded(vec![(2, retry(2, 0))], limit);
    assert_eq!(w.next_start(0).map(|s| s.seq), Some(2));
    assert_eq!(ok(&mut w, 2, 0).then, Then::Finished { done: true });
}

#[test]
fn the_cursor_never_passes_what_is_not_matched_again() {
    let mut w = restarted();
    // However a delivery beyond what this run has matched comes to be fresh (a failed write
    // made retries fresh until 2026-12-05), the cursor stays at `scanned`.
    w.fresh.insert(900);
    assert_eq!(w.marks(), (0, 1_000));
    // Once 1 is matched again, it holds the cursor below itself.
    for seq in 2..=300 {
        assert_eq!(w.next_start(0).map(|s| s.seq), Some(seq));
        ok(&mut w, seq, 0);
    }
    assert!(w.start_write().is_some());
    w.write_done(true);
    assert_eq!(w.wants_fill(1_000).map(|f| f.from), Some(1));
    assert!(w.owes(1, || OnDisk::of::<(), ()>(Ok(false), Ok(false))));
    take(&mut w, &[1], 0);
    assert_eq!(w.marks(), (0, 1_000));
}
