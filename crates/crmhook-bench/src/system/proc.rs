//! What `/proc` tells of the server: its CPU time, its threads' switches, and each thread's
//! time on a CPU and moves between CPUs.

/// The process's user + system CPU in clock ticks (`/proc/<pid>/stat` fields 14 and 15).
pub(super) fn process_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0 };
    // The command name may hold spaces: the fields are counted after its closing parenthesis.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state): utime is field 14, stime 15.
    let get = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(14) + get(15)
}

/// Voluntary and involuntary context switches in a thread's `status`.
fn switches_in(status: &str) -> u64 {
    status
        .lines()
        .filter(|l| l.starts_with("voluntary_ctxt_switches:") || l.starts_with("nonvoluntary_ctxt_switches:"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// One thread of a process, as `/proc/<pid>/task/<tid>/` shows it so far.
#[derive(Debug, Clone, Default)]
pub(super) struct ThreadStat {
    pub(super) tid: u32,
    /// Its name (`comm`: at most 15 bytes, `crmhook-log-wri` for the log writer).
    pub(super) name: String,
    /// Time on a CPU, in nanoseconds (`schedstat`'s first field: exact, where the process's
    /// ticks count in 10 ms steps).
    pub(super) run_ns: u64,
    /// Moves between CPUs (`sched`'s `se.nr_migrations`; 0 where the kernel has no such file).
    pub(super) migrations: u64,
    /// Voluntary and involuntary context switches (`status`). Each is a wake-up paid for (a
    /// hand-off between threads, a sleep on a lock, a flush waited for); a thread that ends takes
    /// its count with it, so a row's sum over its threads is a lower bound.
    pub(super) switches: u64,
}

/// Every thread of `pid` (none if it is gone).
pub(super) fn threads(pid: u32) -> Vec<ThreadStat> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    let read = |dir: &std::path::Path, file: &str| std::fs::read_to_string(dir.join(file)).unwrap_or_default();
    tasks
        .flatten()
        .filter_map(|task| {
            let dir = task.path();
            let tid = dir.file_name()?.to_str()?.parse().ok()?;
            Some(ThreadStat {
                tid,
                name: read(&dir, "comm").trim().to_owned(),
                run_ns: read(&dir, "schedstat").split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0),
                migrations: sched_field(&read(&dir, "sched"), "se.nr_migrations"),
                switches: switches_in(&read(&dir, "status")),
            })
        })
        .collect()
}

/// A counter of a thread's `sched` file (`name : value` lines); 0 if it has none.
fn sched_field(sched: &str, name: &str) -> u64 {
    sched
        .lines()
        .find_map(|l| {
            let (key, value) = l.split_once(':')?;
            (key.trim() == name).then(|| value.trim().parse::<f64>().ok())?
        })
        .map_or(0, |v| v as u64)
}

/// What each thread did between two readings of the same processes (`before`, `after`), per
/// event: a thread that started in between counts from nothing, one that ended in between is
/// not seen, and threads with less than 1% of the time on a CPU are left out. The busiest first.
pub(super) fn thread_figures(before: &[ThreadStat], after: &[ThreadStat], events: usize) -> Vec<ThreadFigure> {
    let per = |x: u64| x as f64 / events.max(1) as f64;
    let mut figures: Vec<(u64, ThreadFigure)> = after
        .iter()
        .map(|a| {
            let b = before.iter().find(|b| b.tid == a.tid).cloned().unwrap_or_default();
            let run_ns = a.run_ns.saturating_sub(b.run_ns);
            let figure = ThreadFigure {
                thread: format!("{} {}", a.name, a.tid),
                cpu_ms_per_event: per(run_ns) / 1e6,
                migrations_per_event: per(a.migrations.saturating_sub(b.migrations)),
                switches_per_event: per(a.switches.saturating_sub(b.switches)),
            };
            (run_ns, figure)
        })
        .collect();
    let total: u64 = figures.iter().map(|(ns, _)| ns).sum();
    figures.retain(|(ns, _)| *ns * 100 >= total && *ns > 0);
    figures.sort_by_key(|f| std::cmp::Reverse(f.0));
    figures.into_iter().map(|(_, f)| f).collect()
}

/// A thread's share of a row (`system --threads`).
#[derive(Debug, Clone)]
pub(crate) struct ThreadFigure {
    /// Its name and id.
    pub(crate) thread: String,
    pub(crate) cpu_ms_per_event: f64,
    pub(crate) migrations_per_event: f64,
    pub(crate) switches_per_event: f64,
}

pub(super) fn clock_ticks_per_s() -> f64 {
    // Linux has reported 100 to user space on every architecture for a long time.
    100.0
}
