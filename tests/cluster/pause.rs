//! A node paused longer than the lease TTL (SIGSTOP, then SIGCONT) must not deliver after it
//! resumes the target that another node took meanwhile.
//!
//! One NATS server (replicas 1: the leases are the point, not the quorum) and two nodes, A and
//! B. A alone takes the lease of a target limited to [`PAUSE_RATE`] deliveries a second, which
//! the nodes then make in bursts of that many, a second apart; [`PAUSE_EVENTS`] events are
//! logged, A delivers its first burst and is stopped right after it (nothing in flight), with
//! the rest due in its window. B takes the lease once it expires and delivers every event. Then
//! A is continued: until 2026-12-07 its actor, whose pace let it start a burst at once, made
//! [`PAUSE_RATE`] repeats before its lease round found the lease taken; now it finds its lease's
//! deadline passed, starts nothing, and its round lets the target go.

use super::*;

const PAUSED: &str = "/paused";
const PAUSE_RATE: usize = 10;
const PAUSE_EVENTS: usize = 60;

/// Continues a stopped process when dropped (a failed test leaves no stopped node behind).
struct Stopped(u32);

impl Stopped {
    fn stop(pid: u32) -> Stopped {
        signal("-STOP", pid);
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        signal("-CONT", self.0);
    }
}

fn signal(which: &str, pid: u32) {
    let status = Command::new("kill").arg(which).arg(pid.to_string()).status().expect("kill runs");
    assert!(status.success(), "kill {which} {pid}");
}

pub(crate) fn pause_scenario(cluster: &mut Cluster) {
    let mut env = cluster.env();
    env.push(("CRMHOOK_CLUSTER_REPLICAS".into(), "1".into()));
    let rcv = Receiver::start();
    rcv.set_default(PAUSED, status(200));

    let target = a_holds_a_target_b_is_up(
        cluster,
        &env,
        &rcv.url(PAUSED),
        json!({"rate_limit_per_s": PAUSE_RATE, "retry_schedule_ms": [1000], "timeout_ms": 2000}),
    );
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let b_url = b.url();
    phase("A holds the target, B is up");

    b.server.post_many(PAUSE_EVENTS);
    // A's first burst, all answered: the next one is a second after it started.
    rcv.wait_count(PAUSED, PAUSE_RATE, Duration::from_secs(30));
    let stopped = Stopped::stop(a.server.pid());
    let paused_at = Instant::now();
    phase("A stopped (SIGSTOP) after its first burst");

    wait_for(Duration::from_secs(30), "B holds the target", || {
        (owner_url(&b.cluster(), &target).as_deref() == Some(b_url.as_str())).then_some(())
    });
    let taken = paused_at.elapsed();
    rcv.wait_distinct_delivered(PAUSED, PAUSE_EVENTS, Duration::from_secs(60));
    phase(&format!("B took the target {} ms after the stop and delivered every event", taken.as_millis()));

    drop(stopped);
    let resumed = Instant::now();
    phase(&format!("A continued (SIGCONT) after {} ms", paused_at.elapsed().as_millis()));
    wait_for(Duration::from_secs(30), "A's round sees B hold the target", || {
        (owner_url(&a.cluster(), &target).as_deref() == Some(b_url.as_str())).then_some(())
    });
    let gone = "target no longer owned here: stopping its deliveries";
    wait_for(Duration::from_secs(30), "A stops the target's actor", || tail(&a.log, 200).contains(gone).then_some(()));
    let let_go = resumed.elapsed();
    // A quiet moment for an attempt A would have started before its router stopped the actor
    // to reach the receiver (on 127.0.0.1: microseconds); nothing later can prove its absence.
    rcv.holds_for(Duration::from_millis(300), |_| true);
    let after: Vec<String> = rcv
        .requests(PAUSED)
        .iter()
        .filter(|r| r.at >= resumed)
        .map(|r| format!("{} (+{} ms)", r.tag, r.at.duration_since(resumed).as_millis()))
        .collect();
    phase(&format!("A let the target go {} ms after SIGCONT; {} deliveries after it", let_go.as_millis(), after.len()));
    let (_, _, repeated) = duplicates(&rcv, PAUSED);
    eprintln!("cluster test: {repeated} events delivered more than once in all (the takeover may repeat a few)");
    assert!(after.is_empty(), "deliveries after A was continued, by A: {after:?}");
}

/// Starts node A, wires a target to `url` (with `extra`) through it, waits until A holds the
/// target, then starts node B and waits until B sees A hold it. Returns the target's id.
pub(crate) fn a_holds_a_target_b_is_up(
    cluster: &mut Cluster,
    env: &[(String, String)],
    url: &str,
    extra: Value,
) -> String {
    cluster.nodes.push(Node::start("crmhook-a", env, cluster.logs.path()));
    let a = &cluster.nodes[0];
    let (target, _) = a.server.wire(url, Some(json!({})), extra);
    let a_url = a.url();
    wait_for(Duration::from_secs(30), "A holds the target", || {
        (owner_url(&a.cluster(), &target).as_deref() == Some(a_url.as_str())).then_some(())
    });
    cluster.nodes.push(Node::start("crmhook-b", env, cluster.logs.path()));
    let b = &cluster.nodes[1];
    wait_for(Duration::from_secs(30), "B sees A hold the target", || {
        (owner_url(&b.cluster(), &target).as_deref() == Some(a_url.as_str())).then_some(())
    });
    target
}
