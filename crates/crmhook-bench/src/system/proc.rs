//! What `/proc` tells of the server: its CPU time and its threads' switches.

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

/// The thread switches the process's threads have made so far: the sum over
/// `/proc/<pid>/task/*/status` of voluntary and involuntary context switches. A thread that ends
/// takes its count with it, so a row's figure is a lower bound; each switch is a wake-up paid
/// for (a hand-off between threads, a sleep on a lock, a flush waited for).
pub(super) fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|l| l.starts_with("voluntary_ctxt_switches:") || l.starts_with("nonvoluntary_ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

pub(super) fn clock_ticks_per_s() -> f64 {
    // Linux has reported 100 to user space on every architecture for a long time.
    100.0
}
