//! A target's rate limit (`rate_limit_per_s`) as a sliding log of its last attempts' start
//! times: a start at `now` may go when fewer than `per_s` attempts started in the second before
//! it, so no span of one second ever holds more than `per_s` starts. Pure: the clock is an
//! argument. It lives in memory only: after a restart a target may start up to `per_s` attempts
//! at once again (at most one second's worth more than the limit, once per start).

use std::collections::VecDeque;

/// One second, in the window's milliseconds.
const SECOND_MS: u64 = 1_000;

/// The start times (ms) of a target's last attempts, at most `per_s` of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pace {
    per_s: u32,
    starts: VecDeque<u64>,
}

impl Pace {
    /// A pace of at most `per_s` starts a second; `per_s` of 0 is taken as 1.
    pub fn new(per_s: u32) -> Pace {
        let per_s = per_s.max(1);
        Pace { per_s, starts: VecDeque::with_capacity((per_s as usize).min(64)) }
    }

    pub fn per_s(&self) -> u32 {
        self.per_s
    }

    /// The earliest time a next attempt may start (0 while fewer than `per_s` have started).
    pub fn earliest(&self) -> u64 {
        if self.starts.len() < self.per_s as usize {
            return 0;
        }
        self.starts.front().map_or(0, |first| first.saturating_add(SECOND_MS))
    }

    /// The clock reads `now_ms`: if it went back behind the last start (the wall clock was set
    /// back), the starts counted are forgotten. Otherwise the limit would hold every attempt
    /// until the clock caught up again, for as long as it had gone back.
    pub fn at(&mut self, now_ms: u64) {
        if self.starts.back().is_some_and(|&last| now_ms < last) {
            self.starts.clear();
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
