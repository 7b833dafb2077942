//! How many lines a target's failures write to the server's log.
//!
//! A failed attempt is an INFO line ("will retry") and a delivery whose schedule is spent a WARN
//! line ("delivery dead"). A receiver that is down while events flow would otherwise write one
//! line per attempt: at 200 events/s, 12,000 lines a minute for one target, which buries every
//! other line and makes journald drop lines of its own. So each target writes at most
//! [`FULL_PER_MINUTE`] lines of each kind in full per minute; the others are counted, and the
//! count is written in one line (same level, same `target_id`) when the minute is over. Every
//! attempt is in the log on disk whatever is written here (`crmhook attempts`, the console).
//!
//! [`Chatter`] is the bookkeeping alone (pure, unit-tested); the actor writes the lines and arms
//! one timer, only while lines are being held back.

use actix::{AsyncContext, Context};

use super::TargetActor;

/// Lines of each kind written in full per target per minute.
pub(super) const FULL_PER_MINUTE: u32 = 10;
/// The length of a count's minute.
pub(super) const MINUTE_MS: u64 = 60_000;

/// The two kinds of line a target's failures write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Line {
    /// An attempt failed and the delivery will be retried (INFO).
    Retrying,
    /// A delivery's retry schedule is spent (WARN).
    Dead,
}

/// What was held back in a minute that is over: how many lines of each kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Held {
    pub retrying: u64,
    pub dead: u64,
}

/// What [`Chatter::admit`] decides for one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admit {
    /// Write it in full.
    Write,
    /// Count it; the first line held back in a minute asks for the summary at `at_ms`.
    Hold { summary_at_ms: Option<u64> },
}

/// One target's count of lines per minute.
#[derive(Debug, Default)]
pub(super) struct Chatter {
    /// When the current minute began (the first line of it).
    since_ms: u64,
    written: [u32; 2],
    held: Held,
}

impl Chatter {
    /// Decides for one line of kind `line` at `now_ms`. A line after its minute is over starts a
    /// new one; what the old one held back must have been taken ([`Chatter::summary`]) first, and
    /// is otherwise taken into the new minute's count.
    pub fn admit(&mut self, line: Line, now_ms: u64) -> Admit {
        if now_ms >= self.since_ms.saturating_add(MINUTE_MS) || now_ms < self.since_ms {
            self.since_ms = now_ms;
            self.written = [0; 2];
        }
        let i = line as usize;
        if self.written[i] < FULL_PER_MINUTE {
            self.written[i] += 1;
            return Admit::Write;
        }
        let first = self.held == Held::default();
        match line {
            Line::Retrying => self.held.retrying += 1,
            Line::Dead => self.held.dead += 1,
        }
        Admit::Hold { summary_at_ms: first.then(|| self.since_ms + MINUTE_MS) }
    }

    /// Takes what was held back (to be written as one line per kind), if anything was.
    pub fn summary(&mut self) -> Option<Held> {
        let held = std::mem::take(&mut self.held);
        (held != Held::default()).then_some(held)
    }
}

/// Whether the actor writes a line of kind `line` now; arms the summary's timer when the first
/// line of a minute is held back.
pub(super) fn admit(chatter: &mut Chatter, line: Line, now_ms: u64, ctx: &mut Context<TargetActor>) -> bool {
    match chatter.admit(line, now_ms) {
        Admit::Write => true,
        Admit::Hold { summary_at_ms } => {
            if let Some(at) = summary_at_ms {
                let wait = std::time::Duration::from_millis(at.saturating_sub(now_ms));
                ctx.run_later(wait, |act, _| act.say_held());
            }
            false
        }
    }
}

impl TargetActor {
    /// Writes what the target's minute held back, one line per kind, if anything.
    pub(super) fn say_held(&mut self) {
        let Some(Held { retrying, dead }) = self.chatter.summary() else { return };
        let target_id = self.id();
        if retrying > 0 {
            tracing::info!(%target_id, more = retrying, "{retrying} more failed attempts, to be retried, were not logged one by one (at most {FULL_PER_MINUTE} a minute per target)");
        }
        if dead > 0 {
            tracing::warn!(%target_id, more = dead, "{dead} more deliveries dead (retry schedule spent) were not logged one by one (at most {FULL_PER_MINUTE} a minute per target)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000;

    #[test]
    fn the_first_ten_lines_of_each_kind_in_a_minute_are_written_and_the_rest_counted() {
        let mut c = Chatter::default();
        for i in 0..FULL_PER_MINUTE {
            assert_eq!(c.admit(Line::Retrying, T0 + u64::from(i)), Admit::Write);
        }
        // The first line held back asks for the summary at the minute's end; later ones do not.
        assert_eq!(c.admit(Line::Retrying, T0 + 100), Admit::Hold { summary_at_ms: Some(T0 + MINUTE_MS) });
        assert_eq!(c.admit(Line::Retrying, T0 + 200), Admit::Hold { summary_at_ms: None });
        // The other kind has its own ten, and the summary is asked for once.
        for _ in 0..FULL_PER_MINUTE {
            assert_eq!(c.admit(Line::Dead, T0 + 300), Admit::Write);
        }
        assert_eq!(c.admit(Line::Dead, T0 + 400), Admit::Hold { summary_at_ms: None });
        assert_eq!(c.summary(), Some(Held { retrying: 2, dead: 1 }));
        assert_eq!(c.summary(), None, "taken once");
    }

    #[test]
    fn a_new_minute_writes_lines_again_and_asks_for_a_new_summary() {
        let mut c = Chatter::default();
        for _ in 0..FULL_PER_MINUTE {
            c.admit(Line::Dead, T0);
        }
        assert_eq!(c.admit(Line::Dead, T0 + 1), Admit::Hold { summary_at_ms: Some(T0 + MINUTE_MS) });
        assert_eq!(c.summary(), Some(Held { retrying: 0, dead: 1 }));
        assert_eq!(c.admit(Line::Dead, T0 + MINUTE_MS - 1), Admit::Hold { summary_at_ms: Some(T0 + MINUTE_MS) });
        assert_eq!(c.admit(Line::Dead, T0 + MINUTE_MS), Admit::Write, "the minute is over");
        for _ in 1..FULL_PER_MINUTE {
            assert_eq!(c.admit(Line::Dead, T0 + MINUTE_MS + 5), Admit::Write);
        }
        // What the old minute held and nobody took is counted with the new one's.
        assert_eq!(c.admit(Line::Dead, T0 + MINUTE_MS + 6), Admit::Hold { summary_at_ms: None });
        assert_eq!(c.summary(), Some(Held { retrying: 0, dead: 2 }));
    }

    #[test]
    fn a_clock_that_goes_back_starts_a_new_minute() {
        let mut c = Chatter::default();
        for _ in 0..FULL_PER_MINUTE {
            c.admit(Line::Retrying, T0);
        }
        assert_eq!(c.admit(Line::Retrying, T0 - 1_000), Admit::Write);
    }

    #[test]
    fn failures_at_a_few_a_minute_are_all_written() {
        let mut c = Chatter::default();
        for i in 0..1_000 {
            assert_eq!(c.admit(Line::Retrying, T0 + i * 7_000), Admit::Write);
        }
        assert_eq!(c.summary(), None);
    }
}
