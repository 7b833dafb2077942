//! A target's rate limit (`rate_limit_per_s`) as a sliding log of its last attempts' start
//! times: a start at `now` may go when fewer than `per_s` attempts started in the second before
//! it, so no span of one second ever holds more than `per_s` starts. Pure: the clock is an
//! argument.
//!
//! The log lives in memory only. An actor that takes a target over (after a restart, or from
//! another node in a cluster) cannot know what its predecessor started in the second before,
//! up to `per_s` attempts, so it starts none before a second has passed ([`Pace::resume`]):
//! with the predecessor's starts all before that moment and its own all a second after, no
//! second holds more than `per_s` of them together. An actor started for a target just created
//! has no predecessor and does not wait.

use std::collections::VecDeque;

/// One second, in the window's milliseconds.
const SECOND_MS: u64 = 1_000;

/// The start times (ms) of a target's last attempts, at most `per_s` of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pace {
    per_s: u32,
    starts: VecDeque<u64>,
    /// When this actor took the target over ([`Pace::resume`]): nothing starts within the
    /// second after it.
    resumed_at: Option<u64>,
}

impl Pace {
    /// A pace of at most `per_s` starts a second; `per_s` of 0 is taken as 1.
    pub fn new(per_s: u32) -> Pace {
        let per_s = per_s.max(1);
        Pace { per_s, starts: VecDeque::with_capacity((per_s as usize).min(64)), resumed_at: None }
    }

    pub fn per_s(&self) -> u32 {
        self.per_s
    }

    /// A new limit, keeping the newest starts counted (up to `per_s`) and the wait after a
    /// take-over: lowering the limit does not let a burst through in the second after.
    pub fn relimit(&mut self, per_s: u32) {
        self.per_s = per_s.max(1);
        while self.starts.len() > self.per_s as usize {
            self.starts.pop_front();
        }
    }

    /// This actor takes the target over at `now_ms` from one whose starts it cannot see (see
    /// the module's docs): none starts before `now_ms` + 1 s.
    pub fn resume(&mut self, now_ms: u64) {
        self.resumed_at = Some(now_ms);
    }

    /// The earliest time a next attempt may start (0 while fewer than `per_s` have started and
    /// no take-over is within the last second).
    pub fn earliest(&self) -> u64 {
        let after_resume = self.resumed_at.map_or(0, |at| at.saturating_add(SECOND_MS));
        if self.starts.len() < self.per_s as usize {
            return after_resume;
        }
        self.starts.front().map_or(0, |first| first.saturating_add(SECOND_MS)).max(after_resume)
    }

    /// The clock reads `now_ms`: if it went back behind the last start or the take-over (the
    /// wall clock was set back), both are forgotten. Otherwise the limit would hold every
    /// attempt until the clock caught up again, for as long as it had gone back.
    pub fn at(&mut self, now_ms: u64) {
        let last = self.starts.back().copied().into_iter().chain(self.resumed_at).max();
        if last.is_some_and(|last| now_ms < last) {
            self.starts.clear();
            self.resumed_at = None;
        }
    }

    /// Whether an attempt may start at `now_ms`.
    pub fn allows(&self, now_ms: u64) -> bool {
        self.earliest() <= now_ms
    }

    /// An attempt started at `now_ms` (which [`Pace::allows`]).
    pub fn started(&mut self, now_ms: u64) {
        self.starts.push_back(now_ms);
        while self.starts.len() > self.per_s as usize {
            self.starts.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_second_holds_at_most_per_s_starts() {
        let mut pace = Pace::new(3);
        for t in [0, 10, 20] {
            assert!(pace.allows(t));
            pace.started(t);
        }
        assert!(!pace.allows(999), "a fourth start within the first start's second");
        assert_eq!(pace.earliest(), 1_000);
        assert!(pace.allows(1_000));
        pace.started(1_000);
        assert_eq!(pace.earliest(), 1_010, "then the second start's second");
    }

    #[test]
    fn a_clock_set_back_forgets_the_starts_counted() {
        let mut pace = Pace::new(2);
        pace.started(3_600_000);
        pace.started(3_600_001);
        assert!(!pace.allows(1_000), "without noticing, the limit would hold for an hour");
        pace.at(1_000);
        assert!(pace.allows(1_000));
        pace.started(1_000);
        pace.started(1_001);
        pace.at(1_500);
        assert!(!pace.allows(1_500), "a clock going forward keeps the count");
    }

    #[test]
    fn an_actor_that_takes_a_target_over_starts_nothing_for_a_second() {
        let mut pace = Pace::new(3);
        pace.resume(10_000);
        assert!(!pace.allows(10_999), "the predecessor may have started 3 in the second before");
        assert!(pace.allows(11_000));
        for t in [11_000, 11_001, 11_002] {
            pace.started(t);
        }
        assert_eq!(pace.earliest(), 12_000, "then its own starts count");
        // A clock set back behind the take-over forgets it too.
        let mut pace = Pace::new(3);
        pace.resume(3_600_000);
        pace.at(1_000);
        assert!(pace.allows(1_000));
    }

    #[test]
    fn a_new_limit_keeps_the_newest_starts() {
        let mut pace = Pace::new(4);
        for t in [0, 10, 20, 30] {
            pace.started(t);
        }
        pace.relimit(2);
        assert_eq!(pace.earliest(), 1_020, "the two newest starts count against the new limit");
        pace.relimit(5);
        assert!(pace.allows(40), "a higher limit lets more in");
        pace.resume(100);
        pace.relimit(1);
        assert_eq!(pace.earliest(), 1_100, "the wait after a take-over stays");
    }

    #[test]
    fn zero_is_one() {
        let mut pace = Pace::new(0);
        assert_eq!(pace.per_s(), 1);
        pace.started(5);
        assert!(!pace.allows(1_004));
        assert!(pace.allows(1_005));
    }

    proptest! {
        /// Starting whenever it allows, at any times, never puts more than `per_s` starts in a
        /// one-second span, and never refuses a start that would not.
        #[test]
        fn no_second_ever_holds_more_than_per_s(per_s in 1u32..20, gaps in proptest::collection::vec(0u64..400, 1..200)) {
            let mut pace = Pace::new(per_s);
            let mut started: Vec<u64> = Vec::new();
            let mut now = 0;
            for gap in gaps {
                now += gap;
                let in_last_second = started.iter().filter(|&&t| t + SECOND_MS > now).count();
                prop_assert_eq!(pace.allows(now), in_last_second < per_s as usize);
                if pace.allows(now) {
                    pace.started(now);
                    started.push(now);
                }
            }
            for (i, &t) in started.iter().enumerate() {
                let within = started[i..].iter().take_while(|&&u| u < t + SECOND_MS).count();
                prop_assert!(within <= per_s as usize, "{} starts in the second from {}", within, t);
            }
        }
    }
}
