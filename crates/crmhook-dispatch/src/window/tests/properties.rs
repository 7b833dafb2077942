//! Properties of random runs of the window against a model of the store's delivery state, with
//! crashes that keep what a real one may keep.

use super::*;

mod runs;

/// The retry schedule of the runs: its second delay is long enough for the retries waiting it
/// to park out of a full window ([`PARK_AFTER_MS`]).
const SIM_SCHEDULE: [u64; 3] = [1_000, 2 * PARK_AFTER_MS, 5_000];

/// A model of the store's delivery state for one target.
#[derive(Debug, Clone, Default)]
struct Disk {
    cursor: Option<u64>,
    scanned: Option<u64>,
    pending: BTreeMap<u64, Pending>,
    /// Deliveries with an attempt that did not finish them (`A`).
    attempted: BTreeSet<u64>,
    /// Finished deliveries (`L`).
    finished: BTreeSet<u64>,
    disabled: bool,
}

#[derive(Debug, Clone)]
enum Put {
    Cursor(u64),
    Scanned(u64),
    Pending(u64, Pending),
    Done(u64),
    Attempt(u64),
    Finished(u64),
    Unfinish(u64),
    Disable,
    Enable,
}

impl Disk {
    fn apply(&mut self, puts: &[Put]) {
        for put in puts {
            match *put {
                Put::Cursor(c) => self.cursor = Some(c),
                Put::Scanned(s) => {
                    assert!(Some(s) >= self.scanned, "scanned moves back from {:?} to {s}", self.scanned);
                    self.scanned = Some(s);
                }
                Put::Pending(seq, p) => {
                    self.pending.insert(seq, p);
                }
                Put::Done(seq) => {
                    self.pending.remove(&seq);
                }
                Put::Attempt(seq) => {
                    self.attempted.insert(seq);
                }
                Put::Finished(seq) => {
                    self.finished.insert(seq);
                }
                Put::Unfinish(seq) => {
                    if self.finished.remove(&seq) {
                        self.attempted.insert(seq);
                    }
                }
                Put::Disable => self.disabled = true,
                Put::Enable => self.disabled = false,
            }
        }
    }

    fn on_disk(&self, seq: u64) -> OnDisk {
        let attempted = self.attempted.contains(&seq) || self.finished.contains(&seq);
        OnDisk::of::<(), ()>(Ok(self.pending.contains_key(&seq)), Ok(attempted))
    }

    fn recovered(&self, ordered: bool, head: u64) -> Recovered {
        Recovered {
            cursor: self.cursor,
            // `Store::scanned`: `W`, or the last finished delivery if higher.
            scanned: self.scanned.max(self.finished.last().copied()),
            pending: self.pending.iter().take(Window::holds_at_most(ordered)).map(|(s, p)| (*s, *p)).collect(),
            disabled: self.disabled,
            head,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    State,
    Retry(u64),
    Requeue(u64, Pending),
    /// Enabling, with how many 410s had come back when the operator asked.
    Enable(u64),
    /// Retries brought forward (the seqs are the write's pending entries).
    Hasten,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Queued,
    Applied,
    Failed,
}

#[derive(Debug)]
struct Submitted {
    puts: Vec<Put>,
    durable: bool,
    kind: Kind,
    status: Status,
}

/// The window in a model shell, as the actor is to drive it, against a model store: writes
/// are applied in the order they are submitted, when they complete (ok or failed as the test
/// says); a crash keeps every durable write and any prefix of the others that followed.
struct Sim {
    ordered: bool,
    /// The target's `rate_limit_per_s`.
    rate: Option<u32>,
    /// When each attempt started, across crashes (a restart's pace waits a second for what
    /// the crashed one started).
    started_at: Vec<u64>,
    /// Whether each event (seq - 1) matches the target's subscriptions.
    matches: Vec<bool>,
    /// The store as of the last crash, and the writes submitted since.
    base: Disk,
    writes: Vec<Submitted>,
    /// The writes before this one are durable (if applied).
    durable: usize,
    /// The store as readers see it.
    disk: Disk,
    window: Window,
    now: u64,
    unwritten: Vec<Put>,
    /// Attempts started and not reported on; those being flushed.
    attempts: BTreeMap<u64, Start>,
    flushing: BTreeSet<u64>,
    /// The store's `Unrecorded`, as the shell keeps it.
    unrecorded: BTreeSet<u64>,
    /// Events that cannot be read (a start of theirs fails).
    unreadable: BTreeSet<u64>,
    /// 410s reported so far; whether one was reported since an operator last asked to enable
    /// the target (nothing may start then).
    gone: u64,
    silenced: bool,
}

impl Sim {
    fn new(ordered: bool, rate: Option<u32>) -> Sim {
        let base = Disk { cursor: Some(0), ..Disk::default() };
        let mut sim = Sim {
            ordered,
            rate,
            started_at: Vec::new(),
            matches: Vec::new(),
            disk: base.clone(),
            window: Window::recover(ordered, base.recovered(ordered, 0)).paced(rate),
            base,
            writes: Vec::new(),
            durable: 0,
            now: 1_000,
            unwritten: Vec::new(),
            attempts: BTreeMap::new(),
            flushing: BTreeSet::new(),
            unrecorded: BTreeSet::new(),
            unreadable: BTreeSet::new(),
            gone: 0,
            silenced: false,
        };
        sim.pump();
        sim
    }

    fn head(&self) -> u64 {
        self.matches.len() as u64
    }

    fn matches(&self, seq: u64) -> bool {
        self.matches[(seq - 1) as usize]
    }

    fn submit(&mut self, puts: Vec<Put>, durable: bool, kind: Kind) {
        self.writes.push(Submitted { puts, durable, kind, status: Status::Queued });
    }

    fn queued(&self) -> bool {
        self.writes.iter().any(|w| w.status == Status::Queued)
    }

    /// `TargetActor::pump`.
    fn pump(&mut self) {
        if self.window.is_draining() {
            return;
        }
        if let Some(limit) = self.window.wants_reload() {
            let on_disk = self.disk.pending.iter().take(limit).map(|(s, p)| (*s, *p)).collect();
            self.window.reloaded(on_disk, limit);
        }
        self.window.park(self.now, self.head());
        if let Some(fill) = self.window.wants_fill(self.head()) {
            let mut last = self.window.scanned();
            let mut taken = Vec::new();
            for seq in (fill.from..=fill.head).take(SCAN_STEP) {
                last = seq;
                if self.matches(seq) && self.window.owes(seq, || self.disk.on_disk(seq)) {
                    taken.push(seq);
                    if taken.len() >= fill.room {
                        break;
                    }
                }
            }
            self.unrecorded.extend(&taken);
            if self.window.took(last, &taken, self.now) {
                self.write_state();
            }
        }
        let mut started = 0;
        while let Some(start) = self.window.next_start(self.now) {
            // Each owed delivery starts, or fails to and waits: no busy loop.
            started += 1;
            assert!(started <= WINDOW + IN_FLIGHT, "the start loop spins: {:?}", self.window);
            assert!(!self.attempts.contains_key(&start.seq), "{} started twice", start.seq);
            let due = self.window.pending[&start.seq].due_at_ms;
            assert!(due <= self.now, "{} started at {}, due at {due} (parked or not)", start.seq, self.now);
            assert!(!self.disk.finished.contains(&start.seq), "{} started again, finished on disk", start.seq);
            assert!(!self.silenced, "{} started after a 410, before an operator enabled the target", start.seq);
            if self.ordered {
                assert_eq!(self.window.pending.keys().next(), Some(&start.seq), "ordered: the oldest owed goes");
            }
            self.started_at.push(self.now);
            if let Some(rate) = self.rate {
                let in_second = self.started_at.iter().rev().take_while(|&&t| t + 1_000 > self.now).count();
                assert!(in_second <= rate as usize, "{in_second} attempts started within a second, at most {rate}");
            }
            if self.unreadable.contains(&start.seq) {
                self.window.unstarted(start.seq, self.now);
                continue;
            }
            self.attempts.insert(start.seq, start);
        }
        self.window.arm_timer();
    }

    /// `TargetActor::write_state`.
    fn write_state(&mut self) {
        let Some(write) = self.window.start_write() else { return };
        let mut puts = std::mem::take(&mut self.unwritten);
        if let Some((low, _)) = write.marks {
            puts.push(Put::Cursor(low));
        }
        self.submit(puts, false, Kind::State);
    }

    /// `TargetActor::finished` for one of the attempts in flight.
    fn finish(&mut self, pick: usize, outcome: Outcome, retry_after_ms: Option<u64>, jitter: f64) {
        let ready: Vec<u64> = self.attempts.keys().filter(|s| !self.flushing.contains(s)).copied().collect();
        let Some(&seq) = ready.get(pick % ready.len().max(1)) else { return };
        let start = self.attempts[&seq];
        let ended = Ended { seq, n: start.attempt, round: start.round, outcome: &outcome, retry_after_ms };
        let finish = self.window.attempt_finished(ended, self.now, jitter, &SIM_SCHEDULE);
        if finish.result == AttemptResult::TargetDisabled {
            self.gone += 1;
            self.silenced = true;
        }
        let record = match finish.result {
            AttemptResult::Delivered | AttemptResult::Dead => Put::Finished(seq),
            AttemptResult::Retrying { .. } | AttemptResult::TargetDisabled => Put::Attempt(seq),
        };
        match finish.then {
            Then::Finished { done } => {
                self.attempts.remove(&seq);
                self.unwritten.push(record);
                if done {
                    self.unwritten.push(Put::Done(seq));
                }
                self.write_state();
                self.pump();
            }
            Then::Flush { following, scanned, disable } => {
                let mut puts = vec![record, Put::Pending(seq, following), Put::Scanned(scanned)];
                if disable {
                    puts.push(Put::Disable);
                }
                self.flushing.insert(seq);
                self.submit(puts, true, Kind::Retry(seq));
            }
        }
    }

    /// The oldest write in progress completes.
    fn complete(&mut self, ok: bool) {
        let Some(i) = self.writes.iter().position(|w| w.status == Status::Queued) else { return };
        let write = &mut self.writes[i];
        write.status = if ok { Status::Applied } else { Status::Failed };
        if ok {
            let passed = self.disk.cursor.unwrap_or(0);
            self.disk.apply(&write.puts);
            if write.durable {
                self.durable = i + 1;
            }
            // What this write changed: the seqs it names, those the cursor passed.
            let named = write.puts.iter().filter_map(|put| match *put {
                Put::Pending(seq, _) | Put::Done(seq) | Put::Attempt(seq) | Put::Finished(seq) | Put::Unfinish(seq) => {
                    Some(seq)
                }
                _ => None,
            });
            let cursor = self.disk.cursor.unwrap_or(0);
            let changed: Vec<u64> = named.chain(passed + 1..=cursor).collect();
            self.check_disk(&self.disk, changed);
        }
        let kind = self.writes[i].kind;
        match kind {
            Kind::State => {
                for seq in self.window.write_done(ok) {
                    self.unrecorded.remove(&seq);
                }
                self.write_state();
                self.pump();
            }
            Kind::Retry(seq) => {
                self.flushing.remove(&seq);
                self.attempts.remove(&seq);
                if self.window.retry_recorded(seq, ok) {
                    self.unrecorded.remove(&seq);
                    self.write_state();
                }
                self.pump();
            }
            Kind::Requeue(seq, p) => {
                self.window.requeued(&[(seq, p)], ok);
                self.pump();
            }
            Kind::Enable(gone) if ok => {
                if gone == self.gone {
                    self.silenced = false;
                }
                self.window.set_enabled(true);
                self.pump();
            }
            Kind::Hasten => {
                let seqs: Vec<u64> = self.writes[i]
                    .puts
                    .iter()
                    .filter_map(|put| if let Put::Pending(seq, _) = put { Some(*seq) } else { None })
                    .collect();
                self.window.hastened(&seqs, ok);
                self.pump();
            }
            Kind::Enable(_) => {}
        }
    }

    /// `Op::Outage`.
    fn outage(&mut self, rounds: u8) {
        for _ in 0..rounds {
            for _ in 0..10_000 {
                if self.queued() {
                    self.complete(true);
                } else if self.attempts.len() > self.flushing.len() {
                    self.finish(0, Outcome::Status(500), None, 0.0);
                } else {
                    break;
                }
            }
            self.advance(SIM_SCHEDULE[0] + 1);
            self.pump();
        }
    }

    fn advance(&mut self, ms: u64) {
        self.now += ms;
        if self.window.timer.is_some_and(|at| at <= self.now) {
            self.window.timer_fired();
            self.pump();
        }
    }

    /// The process dies: the store keeps every durable write, and maybe more of those that
    /// followed (in order); the actor starts again from it.
    fn crash(&mut self, keep: usize) {
        let kept = self.durable + keep % (self.writes.len() - self.durable + 1);
        let mut disk = self.base.clone();
        for write in &self.writes[..kept] {
            if write.status != Status::Failed {
                disk.apply(&write.puts);
            }
        }
        self.check_disk(&disk, 1..=self.head());
        self.base = disk.clone();
        self.disk = disk;
        self.writes.clear();
        self.durable = 0;
        self.unwritten.clear();
        self.attempts.clear();
        self.flushing.clear();
        self.unrecorded.clear();
        // What the store kept of a 410 decides now.
        self.silenced = false;
        self.window = Window::recover(self.ordered, self.disk.recovered(self.ordered, self.head()))
            .paced(self.rate)
            .resumed(self.now);
        // At least once: every delivery owed and not recorded as finished is owed again.
        for seq in (1..=self.head()).filter(|s| self.matches(*s) && !self.disk.finished.contains(s)) {
            let owed = self.window.pending.contains_key(&seq)
                || (self.disk.pending.contains_key(&seq) && self.window.more_on_disk)
                || (seq > self.window.scanned() && self.window.owes(seq, || self.disk.on_disk(seq)));
            assert!(owed, "delivery {seq} is lost after a crash: {:?}", self.disk);
        }
        self.pump();
    }

    /// An operator enables the target (the API writes the store, then tells the actor).
    fn enable(&mut self) {
        self.submit(vec![Put::Enable], true, Kind::Enable(self.gone));
    }

    /// An operator queues a delivery again (the actor's `Requeue` handler).
    fn requeue(&mut self, pick: usize) {
        if self.head() == 0 {
            return;
        }
        let seq = 1 + pick as u64 % self.head();
        // One waiting for a retry is brought forward instead.
        let sooner = self.window.hasten(self.now, |s| s == seq);
        if !sooner.is_empty() {
            self.write_sooner(sooner);
            return;
        }
        let elsewhere = || self.unrecorded.contains(&seq) || self.disk.pending.contains_key(&seq);
        if self.window.requeue_skips(seq, elsewhere, || self.matches(seq)) {
            return;
        }
        let p = Pending { attempt: 9, due_at_ms: self.now, round: 9 };
        self.window.queue_again(seq);
        self.submit(vec![Put::Unfinish(seq), Put::Pending(seq, p)], true, Kind::Requeue(seq, p));
    }

    /// An operator brings forward some of the retries waiting (the actor's `Hasten` handler):
    /// those whose seq has the bit `pick` picks.
    fn hasten(&mut self, pick: usize) {
        let bit = pick % 3;
        let sooner = self.window.hasten(self.now, |seq| bit == 2 || seq % 2 == bit as u64);
        if sooner.is_empty() {
            return;
        }
        for (seq, p) in &sooner {
            assert!(p.due_at_ms == self.now && !self.unrecorded.contains(seq), "{seq} is no retry waiting");
        }
        self.write_sooner(sooner);
    }

    /// Writes the new pending entries of retries brought forward, durably.
    fn write_sooner(&mut self, sooner: Vec<(u64, Pending)>) {
        let puts = sooner.into_iter().map(|(seq, p)| Put::Pending(seq, p)).collect();
        self.submit(puts, true, Kind::Hasten);
    }

    /// An event becomes unreadable, or readable again (then the actor is woken).
    fn toggle_unreadable(&mut self, pick: usize) {
        if self.head() == 0 {
            return;
        }
        let seq = 1 + pick as u64 % self.head();
        if !self.unreadable.remove(&seq) {
            self.unreadable.insert(seq);
        }
        self.pump();
    }

    /// What the store must hold of `seqs`, whatever it keeps of a crash: the cursor passes only
    /// deliveries finished or pending, and one attempted is finished or pending.
    fn check_disk(&self, disk: &Disk, seqs: impl IntoIterator<Item = u64>) {
        let cursor = disk.cursor.unwrap_or(0);
        for seq in seqs {
            let held = disk.finished.contains(&seq) || disk.pending.contains_key(&seq);
            let matched = seq <= self.head() && self.matches(seq);
            assert!(held || !matched || seq > cursor, "the cursor {cursor} passed {seq}, neither finished nor pending");
            assert!(held || !disk.attempted.contains(&seq), "{seq} attempted, neither finished nor pending");
        }
    }

    /// What holds of the window after every step.
    fn check(&self) {
        let w = &self.window;
        assert!(w.pending.len() <= Window::holds_at_most(self.ordered));
        // A retry being written holds no slot (it is in flight until written, not attempted).
        assert!(w.attempting() <= w.limit());
        assert!(w.records_owed() <= RECORDING);
        // Ordered: one at a time, and the oldest owed when it started (checked in `pump`); a
        // delivery queued again may be older than the one in flight, and goes next.
        if self.ordered {
            assert!(w.attempting() <= 1);
        }
        assert_eq!(w.in_flight.iter().collect::<Vec<_>>(), self.attempts.keys().collect::<Vec<_>>());
        assert_eq!(w.flushing.keys().collect::<Vec<_>>(), self.flushing.iter().collect::<Vec<_>>());
        let waiting: BTreeSet<(u64, u64)> = w
            .pending
            .iter()
            .filter(|(s, _)| !w.in_flight.contains(s) && !w.hastening.contains_key(s))
            .map(|(s, p)| (p.due_at_ms, *s))
            .collect();
        let due_or_parked: BTreeSet<(u64, u64)> = w.due.union(&w.parked).copied().collect();
        assert_eq!(
            due_or_parked, waiting,
            "due or parked is what is pending, not in flight and not being brought forward"
        );
        assert!(w.due.is_disjoint(&w.parked), "parked and due");
        // The health's count of retries waiting is what retry now would bring forward.
        let retrying = w.waiting_retries(self.now);
        let due_at = |s: &u64| w.flushing.get(s).map_or_else(|| w.pending[s].due_at_ms, |f| f.following.due_at_ms);
        let next_at_ms = retrying.iter().map(due_at).min();
        assert_eq!(w.retries(self.now), Retries { waiting: retrying.len(), next_at_ms }, "the health's retries");
        assert!(w.parked.iter().all(|(_, s)| !w.fresh.contains(s)), "a first attempt parked");
        assert!(!self.ordered || w.parked.is_empty(), "an ordered target parks");
        for seq in w.hastening.keys() {
            assert!(w.pending.contains_key(seq) && !w.in_flight.contains(seq), "{seq} brought forward and not waiting");
        }
        for seq in w.fresh.iter().filter(|s| w.pending.contains_key(s)) {
            assert!(self.unrecorded.contains(seq), "{seq} fresh and not shown as owed");
        }
        for seq in &w.fresh {
            let on_disk = self.disk.pending.contains_key(seq) || self.disk.finished.contains(seq);
            assert!(!on_disk, "{seq} fresh, with a record on disk");
        }
        for seq in &self.unrecorded {
            assert!(w.pending.contains_key(seq) || w.recording.contains(seq) || w.fresh.contains(seq), "{seq}");
        }
        let (low, scanned) = w.marks();
        assert!(low <= w.scanned && scanned <= self.head().max(w.scanned), "the cursor passes what is not matched");
        assert!(w.writing.is_some() == self.writes.iter().any(|x| x.kind == Kind::State && x.status == Status::Queued));
        // Queued again: exactly the redeliveries whose writes are in progress.
        let requeuing: BTreeSet<u64> = self
            .writes
            .iter()
            .filter(|x| x.status == Status::Queued)
            .filter_map(|x| if let Kind::Requeue(seq, _) = x.kind { Some(seq) } else { None })
            .collect();
        assert_eq!(w.requeuing, requeuing, "queued again");
    }

    /// After a crash, with the target enabled and every attempt succeeding, time passing: every
    /// delivery owed is made, driven only by what the actor gets (attempt reports, written
    /// records, its timer).
    fn settle(&mut self) {
        self.unreadable.clear();
        self.crash(usize::MAX);
        self.enable();
        for step in 0..1_000_000 {
            if self.queued() {
                self.complete(true);
            } else if self.attempts.len() > self.flushing.len() {
                self.finish(0, Outcome::Status(200), None, 0.0);
            } else if self.window.is_empty()
                && self.attempts.is_empty()
                && self.window.scanned() == self.head()
                && !self.window.more_on_disk
            {
                break;
            } else {
                let at = self.window.timer.unwrap_or_else(|| panic!("stuck without a timer: {:?}", self.window));
                self.now = self.now.max(at);
                self.window.timer_fired();
                self.pump();
            }
            if step % 64 == 0 {
                self.check();
            }
        }
        self.check();
        for seq in (1..=self.head()).filter(|s| self.matches(*s)) {
            assert!(self.disk.finished.contains(&seq), "{seq} never delivered");
        }
        assert!(self.disk.pending.is_empty(), "{:?}", self.disk.pending);
        assert_eq!(self.disk.cursor, Some(self.head()));
        assert!(self.window.is_idle());
    }
}
