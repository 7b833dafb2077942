//! `pack_at_low_rates` (Linux): while the server is quiet, every thread of the process shares
//! one CPU, the one the log writer runs on after its flushes (on a VM, the CPU that takes the
//! disk's interrupts); once the server gets busy, or its threads wait for that CPU, they are
//! spread again over every CPU the process was given.
//!
//! Why (docs/PERFORMANCE.md, issue 18's sixteenth and seventeenth steps): at a few hundred
//! events a second each event wakes three threads in turn (the HTTP worker, the log writer, a
//! delivery arbiter), and the kernel scatters them: the HTTP worker's wake-up pulls the writer to
//! its CPU, the disk's interrupt wakes it on the other, and each hand-off across CPUs is an
//! inter-processor interrupt and a cold cache. On one CPU the same work costs about a sixth less.
//! Under load the server needs every core, so packing is for quiet times only.
//!
//! The decision is [`Policy::step`], a pure function of what was measured over the last
//! [`TICK`] ([`Sample`]); [`start`] runs it on a thread of its own that reads the threads'
//! figures from `/proc/self/task` and moves them with `sched_setaffinity`. Threads started while
//! the process is packed inherit the one CPU; a spread moves every thread back to the CPUs the
//! process started with (a `taskset` or systemd `CPUAffinity` given to crmhook is kept).

use std::collections::BTreeMap;
use std::time::Duration;

/// How often the process's threads are measured.
pub(crate) const TICK: Duration = Duration::from_millis(500);
/// Quiet ticks in a row before the threads are packed.
const QUIET_TICKS: u32 = 4;
/// At most this many quiet ticks are asked after spreads for want of the CPU (doubling each time).
const MOST_QUIET_TICKS: u32 = 256;
/// Packed this many ticks in a row, the quiet ticks asked fall back to [`QUIET_TICKS`].
const SETTLED_TICKS: u32 = 120;
/// Quiet: the process's threads used less CPU than this, in cores (CPU seconds per second).
const PACK_BELOW: f64 = 0.25;
/// Busy: more than this (one CPU cannot carry much more than this without queueing).
const SPREAD_ABOVE: f64 = 0.5;
/// Contended: the threads waited for a CPU (summed over them, per second) more than this plus
/// [`WAIT_PER_BUSY`] times their own CPU time. Threads that hand work to each other on one CPU
/// wait for each other, about as long as they run (measured: 0.2–0.3 s per CPU second at 200
/// events/s); threads that wait much longer than that wait for another program on the CPU.
const WAIT_FLOOR: f64 = 0.02;
const WAIT_PER_BUSY: f64 = 2.0;

/// What was measured over one tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sample {
    /// CPU time used by the process's threads per second of the tick (cores).
    pub busy: f64,
    /// Time its threads were runnable but waited for a CPU, per second of the tick.
    pub waited: f64,
    /// The CPU the log writer last ran on, if there is one.
    pub writer_cpu: Option<usize>,
}

/// What the policy asks of the threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Move {
    /// Every thread on this CPU.
    Pack(usize),
    /// Every thread back on the CPUs the process started with.
    Spread,
}

/// When to pack and when to spread: hysteresis between [`PACK_BELOW`] and [`SPREAD_ABOVE`],
/// [`QUIET_TICKS`] quiet ticks before a pack, and a back-off after spreads caused by waiting
/// (another program busy on that CPU would otherwise have the threads moved back and forth).
#[derive(Debug)]
pub(crate) struct Policy {
    /// The CPUs the process may run on.
    cpus: Vec<usize>,
    packed: Option<usize>,
    /// Quiet ticks in a row (spread), or ticks packed (packed).
    ticks: u32,
    /// Quiet ticks asked before the next pack.
    quiet_needed: u32,
    /// Where the writer was seen in the quiet ticks so far.
    votes: BTreeMap<usize, u32>,
}

impl Policy {
    pub(crate) fn new(cpus: Vec<usize>) -> Policy {
        Policy { cpus, packed: None, ticks: 0, quiet_needed: QUIET_TICKS, votes: BTreeMap::new() }
    }

    /// The CPU the threads are packed on, if they are.
    #[cfg(test)]
    pub(crate) fn packed(&self) -> Option<usize> {
        self.packed
    }

    /// One tick: what to do with the threads, if anything.
    pub(crate) fn step(&mut self, sample: Sample) -> Option<Move> {
        let waited = sample.waited > WAIT_FLOOR + WAIT_PER_BUSY * sample.busy;
        if self.packed.is_some() {
            if sample.busy > SPREAD_ABOVE || waited {
                self.quiet_needed = if waited && sample.busy <= SPREAD_ABOVE {
                    (self.quiet_needed * 2).min(MOST_QUIET_TICKS)
                } else {
                    QUIET_TICKS
                };
                self.packed = None;
                self.ticks = 0;
                self.votes.clear();
                return Some(Move::Spread);
            }
            self.ticks = self.ticks.saturating_add(1);
            if self.ticks >= SETTLED_TICKS {
                self.quiet_needed = QUIET_TICKS;
            }
            return None;
        }
        if self.cpus.len() < 2 || sample.busy >= PACK_BELOW || waited {
            self.ticks = 0;
            self.votes.clear();
            return None;
        }
        if let Some(cpu) = sample.writer_cpu.filter(|cpu| self.cpus.contains(cpu)) {
            *self.votes.entry(cpu).or_default() += 1;
        }
        self.ticks = self.ticks.saturating_add(1);
        if self.ticks < self.quiet_needed {
            return None;
        }
        // The CPU the writer was seen on most (the lowest on a tie); none seen yet: wait on.
        let (&cpu, _) = self.votes.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))?;
        self.packed = Some(cpu);
        self.ticks = 0;
        self.votes.clear();
        Some(Move::Pack(cpu))
    }
}

/// Starts the thread that packs and spreads the process's threads (Linux; elsewhere nothing).
#[cfg(target_os = "linux")]
pub(crate) fn start() {
    let started = std::thread::Builder::new().name("crmhook-placement".into()).spawn(linux::run);
    if let Err(e) = started {
        tracing::warn!(error = %e, "could not start the placement thread (pack_at_low_rates); the threads stay spread");
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn start() {}

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::HashMap;
    use std::fs::File;
    use std::os::unix::fs::FileExt;
    use std::time::Instant;

    use rustix::process::Pid;
    use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet};

    use super::{Move, Policy, Sample, TICK};

    /// The log writer's name as the kernel keeps it (15 bytes at most).
    fn writer_comm() -> &'static str {
        let name = crmhook_store::WRITER_THREAD;
        &name[..name.len().min(15)]
    }

    /// A `/proc` file kept open and read again from its start at each tick (an open per read
    /// cost ten times the read: the thread's own CPU is part of what it measures).
    struct ProcFile {
        file: File,
        buf: Vec<u8>,
    }

    impl ProcFile {
        fn open(path: &str) -> Option<ProcFile> {
            Some(ProcFile { file: File::open(path).ok()?, buf: vec![0; 512] })
        }

        fn read(&mut self) -> Option<&str> {
            let n = self.file.read_at(&mut self.buf, 0).ok()?;
            std::str::from_utf8(&self.buf[..n]).ok()
        }
    }

    /// A thread as measured: its `schedstat` (CPU time and time waiting for a CPU, in ns), and
    /// for the log writer its `stat` (the CPU it last ran on, the 39th field).
    struct Thread {
        schedstat: ProcFile,
        stat: Option<ProcFile>,
        last: (u64, u64),
    }

    impl Thread {
        fn open(tid: i32) -> Option<Thread> {
            let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).ok()?;
            let stat = (comm.trim_end() == writer_comm())
                .then(|| ProcFile::open(&format!("/proc/self/task/{tid}/stat")))
                .flatten();
            Some(Thread { schedstat: ProcFile::open(&format!("/proc/self/task/{tid}/schedstat"))?, stat, last: (0, 0) })
        }

        /// CPU time and waiting since the last call; `None` once the thread has ended.
        fn delta(&mut self) -> Option<(u64, u64)> {
            let mut fields = self.schedstat.read()?.split_whitespace().map(|f| f.parse::<u64>().ok());
            let now = (fields.next()??, fields.next()??);
            let delta = (now.0.saturating_sub(self.last.0), now.1.saturating_sub(self.last.1));
            self.last = now;
            Some(delta)
        }

        fn last_cpu(&mut self) -> Option<usize> {
            // The name (field 2) is in parentheses and may hold spaces: count from after it.
            self.stat.as_mut()?.read()?.rsplit_once(')')?.1.split_whitespace().nth(36)?.parse().ok()
        }
    }

    fn threads() -> Vec<i32> {
        let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return Vec::new() };
        dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok()).collect()
    }

    /// How many threads the process has (`/proc/self/stat`'s 20th field).
    fn thread_count(stat: &mut ProcFile) -> Option<usize> {
        stat.read()?.rsplit_once(')')?.1.split_whitespace().nth(17)?.parse().ok()
    }

    /// Moves every thread of the process to `cpus` (threads that ended meanwhile are skipped).
    fn move_all(cpus: &CpuSet) {
        for tid in threads() {
            if let Some(pid) = Pid::from_raw(tid) {
                let _ = sched_setaffinity(Some(pid), cpus);
            }
        }
    }

    pub(super) fn run() {
        let Ok(started_on) = sched_getaffinity(None) else { return };
        let Some(mut process) = ProcFile::open("/proc/self/stat") else { return };
        let cpus: Vec<usize> = (0..CpuSet::MAX_CPU).filter(|&cpu| started_on.is_set(cpu)).collect();
        let mut policy = Policy::new(cpus);
        // The threads measured, listed again when their number changes; a thread that started
        // since the last tick counts from zero.
        let mut measured: HashMap<i32, Thread> = HashMap::new();
        let mut at = Instant::now();
        loop {
            std::thread::sleep(TICK);
            let now = Instant::now();
            let wall = now.duration_since(at).as_nanos().max(1) as f64;
            at = now;
            if thread_count(&mut process) != Some(measured.len()) {
                let listed = threads();
                measured.retain(|tid, _| listed.contains(tid));
                for tid in listed {
                    if let (std::collections::hash_map::Entry::Vacant(slot), Some(thread)) =
                        (measured.entry(tid), Thread::open(tid))
                    {
                        slot.insert(thread);
                    }
                }
            }
            let (mut run, mut wait, mut writer_cpu) = (0u64, 0u64, None);
            measured.retain(|_, thread| {
                let Some((r, w)) = thread.delta() else { return false };
                run += r;
                wait += w;
                writer_cpu = writer_cpu.or_else(|| thread.last_cpu());
                true
            });
            let sample = Sample { busy: run as f64 / wall, waited: wait as f64 / wall, writer_cpu };
            match policy.step(sample) {
                Some(Move::Pack(cpu)) => {
                    let mut one = CpuSet::new();
                    one.set(cpu);
                    move_all(&one);
                    tracing::debug!(cpu, busy = sample.busy, "quiet: every thread packed on one CPU");
                }
                Some(Move::Spread) => {
                    move_all(&started_on);
                    tracing::debug!(busy = sample.busy, waited = sample.waited, "busy: threads spread over every CPU");
                }
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet(writer_cpu: usize) -> Sample {
        Sample { busy: 0.06, waited: 0.001, writer_cpu: Some(writer_cpu) }
    }

    const BUSY: Sample = Sample { busy: 0.9, waited: 0.0, writer_cpu: Some(0) };

    #[test]
    fn a_quiet_process_is_packed_on_the_cpu_the_writer_is_seen_on_most() {
        let mut policy = Policy::new(vec![0, 1]);
        assert_eq!(policy.step(quiet(1)), None);
        assert_eq!(policy.step(quiet(0)), None);
        assert_eq!(policy.step(quiet(1)), None);
        assert_eq!(policy.step(quiet(1)), Some(Move::Pack(1)));
        assert_eq!(policy.packed(), Some(1));
        // Quiet on: nothing more to do.
        assert_eq!(policy.step(quiet(1)), None);
    }

    #[test]
    fn a_busy_tick_starts_the_quiet_count_again() {
        let mut policy = Policy::new(vec![0, 1]);
        for _ in 0..3 {
            assert_eq!(policy.step(quiet(1)), None);
        }
        assert_eq!(policy.step(Sample { busy: 0.3, ..quiet(1) }), None, "between the thresholds is not quiet");
        for _ in 0..3 {
            assert_eq!(policy.step(quiet(0)), None);
        }
        assert_eq!(policy.step(quiet(0)), Some(Move::Pack(0)), "the votes before the busy tick are forgotten");
    }

    #[test]
    fn a_packed_process_spreads_when_busy_and_stays_packed_between_the_thresholds() {
        let mut policy = Policy::new(vec![0, 1]);
        for _ in 0..4 {
            policy.step(quiet(1));
        }
        assert_eq!(policy.packed(), Some(1));
        assert_eq!(policy.step(Sample { busy: 0.4, ..quiet(1) }), None, "hysteresis: 0.4 cores keeps it packed");
        assert_eq!(policy.step(BUSY), Some(Move::Spread));
        assert_eq!(policy.packed(), None);
        // After a spread for load, the usual quiet ticks pack it again.
        for _ in 0..3 {
            assert_eq!(policy.step(quiet(0)), None);
        }
        assert_eq!(policy.step(quiet(0)), Some(Move::Pack(0)));
    }

    #[test]
    fn waiting_for_the_cpu_spreads_and_backs_off() {
        let mut policy = Policy::new(vec![0, 1]);
        let waiting = Sample { busy: 0.06, waited: 0.2, writer_cpu: Some(1) };
        for _ in 0..4 {
            policy.step(quiet(1));
        }
        assert_eq!(policy.step(waiting), Some(Move::Spread));
        // Waiting while spread: never packed.
        for _ in 0..20 {
            assert_eq!(policy.step(waiting), None);
        }
        // The next pack asks twice the quiet ticks.
        for _ in 0..7 {
            assert_eq!(policy.step(quiet(1)), None);
        }
        assert_eq!(policy.step(quiet(1)), Some(Move::Pack(1)));
        assert_eq!(policy.step(waiting), Some(Move::Spread));
        for _ in 0..15 {
            assert_eq!(policy.step(quiet(1)), None);
        }
        assert_eq!(policy.step(quiet(1)), Some(Move::Pack(1)));
        // Packed long enough, the back-off is forgotten.
        for _ in 0..SETTLED_TICKS {
            assert_eq!(policy.step(quiet(1)), None);
        }
        assert_eq!(policy.step(BUSY), Some(Move::Spread));
        for _ in 0..3 {
            assert_eq!(policy.step(quiet(1)), None);
        }
        assert_eq!(policy.step(quiet(1)), Some(Move::Pack(1)));
    }

    #[test]
    fn one_cpu_or_no_writer_seen_never_packs() {
        let mut one = Policy::new(vec![3]);
        for _ in 0..50 {
            assert_eq!(one.step(quiet(3)), None);
        }
        let mut blind = Policy::new(vec![0, 1]);
        for _ in 0..50 {
            assert_eq!(blind.step(Sample { writer_cpu: None, ..quiet(0) }), None);
        }
        // A CPU the process may not use is not voted for.
        let mut elsewhere = Policy::new(vec![0, 1]);
        for _ in 0..50 {
            assert_eq!(elsewhere.step(quiet(5)), None);
        }
        assert_eq!(blind.step(quiet(1)), Some(Move::Pack(1)), "quiet long enough, the first CPU seen");
    }
}
