//! The writer's `slow group commit` warnings, bounded: each one is logged in full up to
//! [`SHOWN_PER_MINUTE`] a minute, and the rest of the minute is counted and said in one line
//! (with the slowest of them) at the next slow commit after the minute, or at the stop. A disk
//! that is slow for an hour (an HDD's fsync, a noisy neighbour) then writes ten lines a minute,
//! not one per commit. Pure bookkeeping ([`SlowCommits::note`]), unit-tested; the writer logs.

use std::time::{Duration, Instant};

/// A group commit that takes this long (applying the batch and flushing) is logged as a
/// warning: every request of its group waited for it.
pub(crate) const SLOW_COMMIT: Duration = Duration::from_millis(20);

/// Slow commits logged in full in one minute.
pub(crate) const SHOWN_PER_MINUTE: u32 = 10;

const MINUTE: Duration = Duration::from_secs(60);

/// What to log for a slow commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Say {
    /// The commits held back in the minute that ended (0: none), and the slowest of them.
    pub(crate) held: u32,
    pub(crate) slowest: Duration,
    /// Whether this commit is logged in full.
    pub(crate) this_one: bool,
}

#[derive(Debug, Default)]
pub(crate) struct SlowCommits {
    /// When the minute being counted began.
    since: Option<Instant>,
    shown: u32,
    held: u32,
    slowest: Duration,
}

impl SlowCommits {
    /// A commit that took `took`, at `now`: what to log, if anything.
    pub(crate) fn note(&mut self, now: Instant, took: Duration) -> Option<Say> {
        if took < SLOW_COMMIT {
            return None;
        }
        let mut say = Say { held: 0, slowest: Duration::ZERO, this_one: false };
        if self.since.is_none_or(|since| now.duration_since(since) >= MINUTE) {
            (say.held, say.slowest) = self.take_held();
            self.since = Some(now);
            self.shown = 0;
        }
        if self.shown < SHOWN_PER_MINUTE {
            self.shown += 1;
            say.this_one = true;
        } else {
            self.held += 1;
            self.slowest = self.slowest.max(took);
        }
        (say.this_one || say.held > 0).then_some(say)
    }

    /// The commits held back and not said yet (at the stop), and the slowest of them.
    pub(crate) fn take_held(&mut self) -> (u32, Duration) {
        (std::mem::take(&mut self.held), std::mem::take(&mut self.slowest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLOW: Duration = Duration::from_millis(30);

    #[test]
    fn ten_slow_commits_a_minute_are_said_then_the_rest_counted_once_the_minute_is_over() {
        let start = Instant::now();
        let mut slow = SlowCommits::default();
        assert_eq!(slow.note(start, Duration::from_millis(19)), None, "not slow");
        let at = |s: u64| start + Duration::from_secs(s);
        for i in 0..10 {
            assert_eq!(
                slow.note(at(i), SLOW),
                Some(Say { held: 0, slowest: Duration::ZERO, this_one: true }),
                "commit {i}"
            );
        }
        assert_eq!(slow.note(at(20), Duration::from_millis(80)), None, "held back");
        assert_eq!(slow.note(at(59), SLOW), None, "held back");
        // The next minute: the held ones said with this one.
        assert_eq!(slow.note(at(61), SLOW), Some(Say { held: 2, slowest: Duration::from_millis(80), this_one: true }));
        assert_eq!(slow.take_held(), (0, Duration::ZERO));
        for i in 0..12 {
            slow.note(at(62 + i), SLOW);
        }
        // Nothing after: the stop says the three held back.
        assert_eq!(slow.take_held(), (3, SLOW));
    }
}
