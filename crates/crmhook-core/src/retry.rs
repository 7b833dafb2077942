//! Retry as data: what an attempt's outcome means ([`classify`]) is kept apart from when the
//! next attempt is due ([`next_attempt`]). Both are pure functions.

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

/// What an outcome means for the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A 2xx answer: delivered.
    Delivered,
    /// Anything else: try again if the schedule allows.
    Retry,
}

/// Classifies an outcome. Only 2xx counts as delivered; redirects are not followed and count
/// as failures, like every other status, a timeout or a connection error.
pub fn classify(outcome: &Outcome) -> Verdict {
    match outcome {
        Outcome::Status(code) if (200..300).contains(code) => Verdict::Delivered,
        _ => Verdict::Retry,
    }
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
    /// The schedule is spent.
    Dead,
}

/// The step after attempt `attempt` ended with `verdict` at `now_ms`, on `schedule` (the delays
/// between attempts: attempt `n` failing waits `schedule[n-1]`, counted from the start of this
/// delivery's schedule; redeliveries that continue the count past its end get no retries).
/// `schedule_pos` is which delay of the schedule applies, normally `attempt - 1`.
pub fn next_attempt(verdict: Verdict, schedule: &[u64], attempt: u32, schedule_pos: usize, now_ms: u64) -> Next {
    match verdict {
        Verdict::Delivered => Next::Delivered,
        Verdict::Retry => match schedule.get(schedule_pos) {
            Some(delay) => Next::RetryAt { attempt: attempt + 1, at_ms: now_ms.saturating_add(*delay) },
            None => Next::Dead,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_2xx_is_delivered() {
        for code in [200, 201, 204, 299] {
            assert_eq!(classify(&Outcome::Status(code)), Verdict::Delivered);
        }
        for code in [100, 301, 302, 400, 404, 410, 429, 500, 503] {
            assert_eq!(classify(&Outcome::Status(code)), Verdict::Retry, "{code}");
        }
        assert_eq!(classify(&Outcome::Timeout), Verdict::Retry);
        assert_eq!(classify(&Outcome::Error("refused".into())), Verdict::Retry);
    }

    #[test]
    fn the_schedule_is_walked_then_spent() {
        let s = [200, 400];
        assert_eq!(next_attempt(Verdict::Retry, &s, 1, 0, 1000), Next::RetryAt { attempt: 2, at_ms: 1200 });
        assert_eq!(next_attempt(Verdict::Retry, &s, 2, 1, 2000), Next::RetryAt { attempt: 3, at_ms: 2400 });
        assert_eq!(next_attempt(Verdict::Retry, &s, 3, 2, 3000), Next::Dead);
        assert_eq!(next_attempt(Verdict::Delivered, &s, 3, 2, 3000), Next::Delivered);
        assert_eq!(next_attempt(Verdict::Retry, &[], 1, 0, 0), Next::Dead);
    }

    #[test]
    fn the_default_schedule_is_eight_attempts_over_about_28_hours() {
        let mut now = 0;
        let mut attempt = 1;
        while let Next::RetryAt { attempt: a, at_ms } =
            next_attempt(Verdict::Retry, &DEFAULT_SCHEDULE_MS, attempt, attempt as usize - 1, now)
        {
            attempt = a;
            now = at_ms;
        }
        assert_eq!(attempt, 8);
        let hours = now as f64 / 3_600_000.0;
        assert!((27.0..29.0).contains(&hours), "{hours}");
    }
}
