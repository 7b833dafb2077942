//! The random runs: the operations a run is made of, and the properties over runs of them.

use super::*;

#[derive(Debug, Clone)]
enum Op {
    /// Events appended to the log (whether each matches), then a wake-up.
    Append(Vec<bool>),
    Wake,
    /// An attempt in flight ends: which one, its outcome, its `Retry-After`, the jitter.
    Finish(usize, u8, Option<u64>, i8),
    /// The oldest write in progress completes, or fails.
    Complete(bool),
    Advance(u64),
    Crash(usize),
    Enable,
    Requeue(usize),
    /// Retries waiting brought forward.
    Hasten(usize),
    /// An event becomes unreadable, or readable again.
    Unreadable(usize),
    /// The receiver is down for this many rounds of attempts a second apart: every attempt
    /// fails (a 500), every write completes. Retries pile up, the later ones waiting long enough
    /// to park once more events come.
    Outage(u8),
}

fn op(most_events: usize) -> impl Strategy<Value = Op> {
    // Outages fill a window with retries only when as many events come.
    let outages = if most_events > WINDOW { 4 } else { 1 };
    prop_oneof![
        3 => prop::collection::vec(any::<bool>(), 1..most_events).prop_map(Op::Append),
        1 => Just(Op::Wake),
        8 => (any::<usize>(), 0u8..7, prop::option::of(0u64..30_000), 0i8..=1)
            .prop_map(|(pick, outcome, ra, jitter)| Op::Finish(pick, outcome, ra, jitter)),
        6 => (0u8..5).prop_map(|x| Op::Complete(x != 0)),
        2 => (0u64..8_000).prop_map(Op::Advance),
        1 => any::<usize>().prop_map(Op::Crash),
        1 => Just(Op::Enable),
        1 => any::<usize>().prop_map(Op::Requeue),
        2 => any::<usize>().prop_map(Op::Hasten),
        1 => any::<usize>().prop_map(Op::Unreadable),
        outages => (2u8..5).prop_map(Op::Outage),
    ]
}

fn run(ordered: bool, rate: Option<u32>, ops: Vec<Op>) {
    let mut sim = Sim::new(ordered, rate);
    for op in ops {
        match op {
            Op::Append(matches) => {
                sim.matches.extend(matches);
                sim.pump();
            }
            Op::Wake => sim.pump(),
            Op::Finish(pick, outcome, ra, jitter) => {
                let outcome = match outcome {
                    0..=2 => Outcome::Status(200),
                    3 => Outcome::Status(500),
                    4 => Outcome::Status(429),
                    5 => Outcome::Status(410),
                    _ => Outcome::Timeout,
                };
                sim.finish(pick, outcome, ra, f64::from(jitter));
            }
            Op::Complete(ok) => sim.complete(ok),
            Op::Advance(ms) => sim.advance(ms),
            Op::Crash(keep) => sim.crash(keep),
            Op::Enable => sim.enable(),
            Op::Requeue(pick) => sim.requeue(pick),
            Op::Hasten(pick) => sim.hasten(pick),
            Op::Unreadable(pick) => sim.toggle_unreadable(pick),
            Op::Outage(rounds) => sim.outage(rounds),
        }
        sim.check();
    }
    sim.settle();
}

/// Cases per run: proptest's own default (256, or `PROPTEST_CASES`: `just properties` runs them
/// at length), a `share` of it for the runs of large backlogs.
fn cases(share: u32) -> ProptestConfig {
    let default = ProptestConfig::default();
    ProptestConfig { cases: (default.cases / share).max(1), ..default }
}

proptest! {
    #![proptest_config(cases(1))]

    /// Random runs of a few events at a time: the invariants hold after every step, nothing is
    /// lost in a crash, and everything owed is delivered in the end; with a rate limit, no
    /// second holds more starts than it allows.
    #[test]
    fn a_window_keeps_its_rules_and_loses_nothing(
        ordered in any::<bool>(),
        rate in prop::option::of(1u32..6),
        ops in prop::collection::vec(op(40), 1..120),
    ) {
        run(ordered, rate, ops);
    }
}

proptest! {
    #![proptest_config(cases(10))]

    /// The same with backlogs larger than the window.
    #[test]
    fn a_full_window_keeps_its_rules_and_loses_nothing(
        ordered in any::<bool>(),
        rate in prop::option::of(1u32..50),
        ops in prop::collection::vec(op(2_500), 1..60),
    ) {
        run(ordered, rate, ops);
    }

    /// The same for an unordered target without a rate limit, whose outages fill its window
    /// with retries waiting fast enough to park them.
    #[test]
    fn parked_retries_keep_the_rules_and_lose_nothing(ops in prop::collection::vec(op(2_500), 1..60)) {
        run(false, None, ops);
    }
}
