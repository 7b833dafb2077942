//! Retry as data: what an attempt's outcome means ([`classify`]) is kept apart from when the
//! next attempt is due ([`next_attempt`]). Both are pure functions: the random jitter and the
//! receiver's `Retry-After` are passed in.

use serde::{Deserialize, Serialize};

/// The default schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (eight attempts, ~28 h).
pub const DEFAULT_SCHEDULE_MS: [u64; 7] = [5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000];

/// What happened to one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The receiver answered with this status within the timeout.
    Status(u16),
    /// No answer within `timeout_ms`.
    Timeout,
    /// No HTTP answer at all: refused connection, reset, DNS failure, TLS failure…
    Error(String),
}

/// How far the jitter moves a delay: up to a tenth later, never earlier (the contract retries
/// "after the next delay"; the jitter only keeps many failing deliveries from retrying in
/// lock-step).
pub const JITTER: f64 = 0.1;

/// What an outcome means for the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A 2xx answer: delivered.
    Delivered,
    /// 410 Gone: the receiver says this endpoint is gone; disable the target.
    Disable,
    /// Anything else: try again if the schedule allows.
    Retry,
}

/// Classifies an outcome. Only 2xx counts as delivered; redirects are not followed and count
/// as failures, like every other status, a timeout or a connection error; 410 disables.
pub fn classify(outcome: &Outcome) -> Verdict {
    match outcome {
        Outcome::Status(code) if (200..300).contains(code) => Verdict::Delivered,
        Outcome::Status(410) => Verdict::Disable,
        _ => Verdict::Retry,
    }
}

/// Whether a `Retry-After` of this outcome is honoured (429 and 503 only).
pub fn honours_retry_after(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Status(429 | 503))
}

/// What comes after attempt number `attempt` (1-based) of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Delivered,
    /// Attempt `attempt` is due at `at_ms`.
    RetryAt {
        attempt: u32,
        at_ms: u64,
    },
    /// The target is disabled; attempt `attempt` waits until it is enabled again.
    Disabled {
        attempt: u32,
    },
    /// The schedule is spent.
    Dead,
}

/// The inputs of [`next_attempt`] besides the verdict.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    /// The delays between attempts: attempt `n` failing waits `schedule[n - 1]`.
    pub schedule: &'a [u64],
    /// The attempt that just ended (1-based).
    pub attempt: u32,
    /// The attempt that began this round of the schedule: 1, or the first attempt of a
    /// redelivery or replay (which walks the schedule again while its numbers go on counting).
    pub round_start: u32,
    /// When it ended, ms since the epoch.
    pub now_ms: u64,
    /// A random number in [0, 1]: the delay grows by `jitter * JITTER` of itself.
    pub jitter: f64,
    /// The receiver's `Retry-After`, when it is to be honoured.
    pub retry_after_ms: Option<u64>,
}

/// A delay grown by `jitter` (in [0, 1]) times [`JITTER`] of itself: never shorter than the
/// schedule's.
pub fn jittered(delay_ms: u64, jitter: f64) -> u64 {
    let factor = 1.0 + JITTER * jitter.clamp(0.0, 1.0);
    (delay_ms as f64 * factor).round() as u64
}

/// The step after an attempt ended with `verdict`. The schedule's delay is jittered; a
/// `Retry-After` replaces it when longer, but never beyond twice the (jittered) delay.
pub fn next_attempt(verdict: Verdict, step: Step<'_>) -> Next {
    let following = step.attempt.saturating_add(1);
    match verdict {
        Verdict::Delivered => Next::Delivered,
        Verdict::Disable => Next::Disabled { attempt: following },
        Verdict::Retry => match step.schedule.get(step.attempt.saturating_sub(step.round_start) as usize) {
            Some(&delay) => {
                let base = jittered(delay, step.jitter);
                let wait = step.retry_after_ms.map_or(base, |ra| ra.clamp(base, base.saturating_mul(2)));
                Next::RetryAt { attempt: following, at_ms: step.now_ms.saturating_add(wait) }
            }
            None => Next::Dead,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(schedule: &[u64], attempt: u32, now_ms: u64) -> Step<'_> {
        Step { schedule, attempt, round_start: 1, now_ms, jitter: 0.0, retry_after_ms: None }
    }

    #[test]
    fn a_redelivery_walks_the_schedule_again_and_goes_on_counting() {
        let s = [200, 400];
        let redo = |attempt| Step { round_start: 4, ..step(&s, attempt, 1000) };
        assert_eq!(next_attempt(Verdict::Retry, redo(4)), Next::RetryAt { attempt: 5, at_ms: 1200 });
        assert_eq!(next_attempt(Verdict::Retry, redo(5)), Next::RetryAt { attempt: 6, at_ms: 1400 });
        assert_eq!(next_attempt(Verdict::Retry, redo(6)), Next::Dead);
    }

    #[test]
    fn only_2xx_is_delivered_and_410_disables() {
        for code in [200, 201, 204, 299] {
            assert_eq!(classify(&Outcome::Status(code)), Verdict::Delivered);
        }
        for code in [100, 301, 302, 400, 404, 429, 500, 503] {
            assert_eq!(classify(&Outcome::Status(code)), Verdict::Retry, "{code}");
        }
        assert_eq!(classify(&Outcome::Status(410)), Verdict::Disable);
        assert_eq!(classify(&Outcome::Timeout), Verdict::Retry);
        assert_eq!(classify(&Outcome::Error("refused".into())), Verdict::Retry);
        assert!(honours_retry_after(&Outcome::Status(429)) && honours_retry_after(&Outcome::Status(503)));
        assert!(!honours_retry_after(&Outcome::Status(500)));
    }

    #[test]
    fn the_schedule_is_walked_then_spent() {
        let s = [200, 400];
        assert_eq!(next_attempt(Verdict::Retry, step(&s, 1, 1000)), Next::RetryAt { attempt: 2, at_ms: 1200 });
        assert_eq!(next_attempt(Verdict::Retry, step(&s, 2, 2000)), Next::RetryAt { attempt: 3, at_ms: 2400 });
        assert_eq!(next_attempt(Verdict::Retry, step(&s, 3, 3000)), Next::Dead);
        assert_eq!(next_attempt(Verdict::Delivered, step(&s, 3, 3000)), Next::Delivered);
        assert_eq!(next_attempt(Verdict::Disable, step(&s, 1, 3000)), Next::Disabled { attempt: 2 });
        assert_eq!(next_attempt(Verdict::Retry, step(&[], 1, 0)), Next::Dead);
    }

    #[test]
    fn jitter_makes_a_delay_at_most_a_tenth_longer_and_never_shorter() {
        assert_eq!(jittered(1000, 0.0), 1000);
        assert_eq!(jittered(1000, 1.0), 1100);
        assert_eq!(jittered(1000, 0.5), 1050);
        assert_eq!(jittered(1000, 7.0), 1100, "out-of-range jitter is clamped");
        assert_eq!(jittered(1000, -1.0), 1000, "never earlier than the schedule");
        let s = [1000];
        let at = |jitter| match next_attempt(Verdict::Retry, Step { jitter, ..step(&s, 1, 0) }) {
            Next::RetryAt { at_ms, .. } => at_ms,
            other => panic!("{other:?}"),
        };
        assert_eq!((at(-1.0), at(0.0), at(1.0)), (1000, 1000, 1100));
    }

    #[test]
    fn retry_after_is_clamped_between_the_delay_and_twice_it() {
        let s = [1000];
        let at = |ra| match next_attempt(Verdict::Retry, Step { retry_after_ms: Some(ra), ..step(&s, 1, 0) }) {
            Next::RetryAt { at_ms, .. } => at_ms,
            other => panic!("{other:?}"),
        };
        assert_eq!(at(10), 1000, "shorter than the schedule: the schedule wins");
        assert_eq!(at(1500), 1500);
        assert_eq!(at(60_000), 2000, "never beyond twice the delay");
    }

    #[test]
    fn the_default_schedule_is_eight_attempts_over_about_28_hours() {
        let mut now = 0;
        let mut attempt = 1;
        while let Next::RetryAt { attempt: a, at_ms } =
            next_attempt(Verdict::Retry, step(&DEFAULT_SCHEDULE_MS, attempt, now))
        {
            attempt = a;
            now = at_ms;
        }
        assert_eq!(attempt, 8);
        let hours = now as f64 / 3_600_000.0;
        assert!((27.0..29.0).contains(&hours), "{hours}");
    }
}
