//! `crmhook-bench system`: the whole system as a user runs it — a CRM posting while targets
//! receive, on the same machine — next to a bare handler in the same run.
//!
//! For one and for ten live targets (each subscribed to everything, answering at once), at fixed
//! rates (200, 1,000 and 5,000 events/s by default) and at saturation (`max`: 64 connections
//! posting as fast as they are answered), it reports:
//!
//! - ingest/s (acknowledged events) and deliveries/s (requests the receiver got while the load
//!   ran);
//! - the acknowledgement's latency (p50, p99, p99.9, max) and the end-to-end latency, from just
//!   before the POST to the delivery's arrival at the receiver (p50, p99, max), over every
//!   delivery of every acknowledged event;
//! - the server's CPU per event: its user + system time (`/proc/<pid>/stat`, which counts
//!   threads that ended too) from the start of the load until the last delivery arrived,
//!   divided by the events acknowledged;
//! - the server's thread switches per event (`sw/ev`: voluntary and involuntary context switches
//!   of all its threads, from `/proc/<pid>/task/*/status`), steadier than CPU time on a shared VM;
//! - at saturation, the ingest ÷ the bare handler's requests/s (64 connections, same bodies);
//! - at a fixed rate, the same row against the bare relay first (`relay.rs`: answers 202 and
//!   sends each body on with awc, nothing else, in its own process), and crmhook's CPU per event
//!   ÷ the relay's (`cpu÷relay`): two HTTP exchanges per event are the floor of any relay;
//!   then against the durable relay (`relay.rs --durable`: the same, but its 202 waits until a
//!   writer thread has inserted the body into sled and flushed, crmhook's group commit without
//!   anything else), and crmhook's CPU per event ÷ its (`cpu÷durable`): the floor of a relay
//!   that acknowledges only what is durable, as crmhook must.
//!
//! Each row also reads every thread of the process it loads (`/proc/<pid>/task/*/`: time on a
//! CPU from `schedstat`, moves between CPUs from `sched`, switches from `status`) before and
//! after, and keeps the busy ones' shares per event in its JSON; `--threads` prints them under
//! the row. Which thread costs what, and how often the kernel moved it, is what explains most of
//! a row's spread at low rates (docs/PERFORMANCE.md, issue 18's sixteenth step).
//!
//! With `--rounds N` every row is measured N times, one round after the other (each round all the
//! rows again, in the same order, on the same server), and the run ends with the medians over the
//! rounds of each kind's CPU and switches per event and of crmhook's `cpu÷relay` and
//! `cpu÷durable` (each round's ratio, then their median), with the lowest and highest: on a
//! shared VM one round's CPU figure moves by more than most changes do (`just bench-cpu`).
//!
//! A 503 (backpressure, `max_delivery_lag_ms`, which the server takes from the environment of
//! this command) is waited out as its `Retry-After: 1` asks.
//!
//! With `--via maia-source` crmhook's rows post as MAIA does, to a MAIA source's URL
//! (`/in/{id}`, each body signed with `X-Maia-Signature`, answered 200): each event is then
//! written with its idempotency key (the source and a hash of its bytes), as a real CRM's is.
//! The floors still take the same bodies as plain POSTs. By default (`api`) crmhook's rows post
//! to `/v1/events` with the ingest token, which writes no such key; `--via api-key` posts there
//! with an `Idempotency-Key` of its own on each request (written as the request's key).
//!
//! At a fixed rate each of a few connections sends its share of the events on a schedule (the
//! `i`-th event of the run is due at `i / rate`); a connection whose answer comes late sends its
//! next event late (the figure is then below the rate, and says so).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::deliver::percentile;
use crate::soak::{Conn, Server};

mod offer;
mod proc;
mod receiver;
mod targets;

pub(crate) use offer::Via;
use offer::{offer, Post};
use proc::{clock_ticks_per_s, process_ticks, thread_figures, threads, ThreadFigure, ThreadStat};
pub(crate) use receiver::{record_id, serve, Receiver};
use targets::{live_targets, wait_leased};

/// How the load is offered.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mode {
    /// Events per second, on a schedule.
    Rate(u64),
    /// 64 connections, each posting as soon as its last answer came.
    Saturation,
}

pub(crate) struct Row {
    /// Attempts that failed and were scheduled again (from `/metrics`), during the row.
    pub(crate) retries: u64,
    pub(crate) targets: usize,
    pub(crate) mode: Mode,
    pub(crate) sent: usize,
    pub(crate) acked: usize,
    pub(crate) seconds: f64,
    pub(crate) ingest_per_s: f64,
    pub(crate) deliveries_per_s: f64,
    pub(crate) ack_ms: [f64; 4],
    pub(crate) e2e_ms: [f64; 3],
    pub(crate) delivered: usize,
    pub(crate) cpu_ms_per_event: f64,
    /// Thread switches in the server per acknowledged event (the sum of its threads' [`ThreadStat::switches`]).
    pub(crate) switches_per_event: f64,
    pub(crate) cores: f64,
    pub(crate) drain_s: f64,
    /// Each busy thread's share, per event (`--threads` prints them).
    pub(crate) threads: Vec<ThreadFigure>,
}

impl Mode {
    /// `--offered`'s values: rates (events/s) and `max`.
    pub(crate) fn parse_all(offered: &[String]) -> anyhow::Result<Vec<Mode>> {
        offered
            .iter()
            .map(|o| match o.as_str() {
                "max" => Ok(Mode::Saturation),
                r => r.parse().map(Mode::Rate).with_context(|| format!("--offered: {r:?} is neither a rate nor max")),
            })
            .collect()
    }
}

impl Row {
    /// What was offered: `200/s`, or `max`.
    pub(crate) fn offered(&self) -> String {
        match self.mode {
            Mode::Rate(x) => format!("{x}/s"),
            Mode::Saturation => "max".into(),
        }
    }

    /// The row's columns from what was offered to the cores used (the tables of `system` and
    /// `cluster`).
    pub(crate) fn figures(&self) -> String {
        format!(
            "{:>7} | {:>9.0} {:>9.0} | {:>6.2} {:>6.2} {:>6.2} {:>7.1} | {:>6.2} {:>6.2} {:>7.1} | {:>8.3} {:>5.2}",
            self.offered(),
            self.ingest_per_s,
            self.deliveries_per_s,
            self.ack_ms[0],
            self.ack_ms[1],
            self.ack_ms[2],
            self.ack_ms[3],
            self.e2e_ms[0],
            self.e2e_ms[1],
            self.e2e_ms[2],
            self.cpu_ms_per_event,
            self.cores,
        )
    }

    /// A line under the row for each of its busy threads (`--threads`).
    pub(crate) fn print_threads(&self) {
        for t in &self.threads {
            println!(
                "          {:<24} cpu ms/ev {:.3}  moves between CPUs/ev {:.2}  sw/ev {:.2}",
                t.thread, t.cpu_ms_per_event, t.migrations_per_event, t.switches_per_event
            );
        }
    }

    /// A line under the row when not everything was acknowledged and delivered at once.
    pub(crate) fn print_shortfall(&self) {
        if self.acked < self.sent || self.delivered < self.acked * self.targets || self.retries > 0 {
            println!(
                "          ({} of {} acknowledged, {} deliveries measured, {} attempts failed and retried, drained {:.1} s after the load)",
                self.acked, self.sent, self.delivered, self.retries, self.drain_s
            );
        }
    }

    pub(crate) fn json(&self) -> Value {
        json!({
            "targets": self.targets,
            "offered_per_s": match self.mode { Mode::Rate(x) => json!(x), Mode::Saturation => json!("max") },
            "sent": self.sent, "acked": self.acked, "seconds": self.seconds,
            "ingest_per_s": self.ingest_per_s, "deliveries_per_s": self.deliveries_per_s,
            "ack_ms": {"p50": self.ack_ms[0], "p99": self.ack_ms[1], "p99_9": self.ack_ms[2], "max": self.ack_ms[3]},
            "e2e_ms": {"p50": self.e2e_ms[0], "p99": self.e2e_ms[1], "max": self.e2e_ms[2], "measured": self.delivered},
            "cpu_ms_per_event": self.cpu_ms_per_event, "switches_per_event": self.switches_per_event,
            "cores": self.cores, "drain_s": self.drain_s,
            "retried_attempts": self.retries,
            "threads": self.threads.iter().map(|t| json!({
                "thread": t.thread, "cpu_ms_per_event": t.cpu_ms_per_event,
                "migrations_per_event": t.migrations_per_event, "switches_per_event": t.switches_per_event,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Attempts counted as `retry` in `/metrics` so far, over all targets and nodes.
fn retries(servers: &[&Server]) -> u64 {
    servers.iter().map(|s| retries_of(s)).sum()
}

fn retries_of(server: &Server) -> u64 {
    let Ok((_, body)) = Conn::new(server.addr).request("GET", "/metrics", "", b"") else { return 0 };
    String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| l.starts_with("crmhook_deliveries_total{") && l.contains("outcome=\"retry\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// One row against one node or a cluster of nodes: the load spread over `servers` (one
/// connection to each in turn), admin changes through the first, CPU and thread switches summed
/// over all of them. `label` keeps rows of the same shape apart on one receiver.
pub(crate) fn measure_on(
    servers: &[&Server],
    rcv: &Receiver,
    label: &str,
    targets: usize,
    mode: Mode,
    duration: Duration,
    via: Via,
) -> anyhow::Result<Row> {
    let server = servers[0];
    let run = run_name(label, targets, mode);
    let post = match via {
        Via::Api => Post::api(),
        Via::MaiaSource => Post::maia_source(server, &run)?,
        Via::ApiKey => Post::api_key(),
    };
    let ids = live_targets(server, rcv, targets, &run)?;
    if servers.len() > 1 {
        wait_leased(server, &ids)?;
    }
    // Let the new target actors settle before the clock starts.
    std::thread::sleep(Duration::from_millis(300));
    let subject = Subject {
        pids: servers.iter().map(|s| s.pid()).collect(),
        addrs: servers.iter().map(|s| s.addr).collect(),
        post,
        retries: Box::new(|| retries(servers)),
    };
    let row = load_row(&subject, rcv, &run, targets, mode, duration)?;
    for id in ids {
        server.admin("DELETE", &format!("/v1/targets/{id}"), &json!({}))?;
    }
    Ok(row)
}

/// The same row against the bare relay (`relay.rs`), started for it in its own process and
/// sending to `targets` paths of the receiver (`label`: the round's, as [`measure_on`]'s).
/// A durable relay (`--durable`) appends to a database in a directory of its own.
fn measure_relay(
    rcv: &Receiver,
    label: &str,
    targets: usize,
    mode: Mode,
    duration: Duration,
    durable: bool,
) -> anyhow::Result<Row> {
    let run = run_name(&format!("{}-{label}", if durable { "durable" } else { "relay" }), targets, mode);
    let to: Vec<String> = (0..targets).map(|i| format!("http://{}/{run}/t{i}", rcv.addr)).collect();
    let dir = tempfile::tempdir()?;
    let relay = crate::relay::Relay::start(&to, durable.then(|| dir.path()))?;
    let subject =
        Subject { pids: vec![relay.pid()], addrs: vec![relay.addr], post: Post::api(), retries: Box::new(|| 0) };
    load_row(&subject, rcv, &run, targets, mode, duration)
}

fn run_name(label: &str, targets: usize, mode: Mode) -> String {
    format!(
        "{label}r{}x{}",
        match mode {
            Mode::Rate(r) => r.to_string(),
            Mode::Saturation => "max".into(),
        },
        targets
    )
}

/// What a row loads and measures: its processes, where they listen and how it posts to them, and
/// how many attempts they have retried so far.
struct Subject<'a> {
    pids: Vec<u32>,
    addrs: Vec<SocketAddr>,
    post: Post,
    retries: Box<dyn Fn() -> u64 + 'a>,
}

/// Offers the load to `subject`, waits for every delivery of every acknowledged event at the
/// receiver's paths `/{run}/t{i}`, and measures the row.
fn load_row(
    subject: &Subject<'_>,
    rcv: &Receiver,
    run: &str,
    targets: usize,
    mode: Mode,
    duration: Duration,
) -> anyhow::Result<Row> {
    let pids = &subject.pids;
    let retries0 = (subject.retries)();
    let ticks0: u64 = pids.iter().map(|p| process_ticks(*p)).sum();
    let threads0: Vec<_> = pids.iter().flat_map(|p| threads(*p)).collect();
    let count0 = rcv.count.load(Ordering::Relaxed);
    let firsts0 = rcv.firsts.load(Ordering::Relaxed);
    let start = Instant::now();
    let (sent, tried) = offer(&subject.addrs, &subject.post, &format!("{run}_"), mode, duration)?;
    let load_s = start.elapsed().as_secs_f64();
    let delivered_during = rcv.count.load(Ordering::Relaxed) - count0;
    // Wait for every delivery of every acknowledged event.
    let paths: Vec<String> = (0..targets).map(|i| format!("/{run}/t{i}")).collect();
    let want = sent.len() * targets;
    // An overloaded row leaves a backlog: wait for it at a pace no slower than 2,000 deliveries/s.
    let patience = Duration::from_secs(60.max(want as u64 / 2_000));
    let deadline = Instant::now() + patience;
    loop {
        // Every row drains before the next starts: the first arrivals since this one began are
        // its own. (Counting them in `arrivals` held its lock long enough to stall the receiver.)
        let arrived = (rcv.firsts.load(Ordering::Relaxed) - firsts0) as usize;
        if arrived >= want {
            break;
        }
        if Instant::now() > deadline {
            bail!("{run}: only {arrived} of {want} deliveries within {} s", patience.as_secs());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let all_in = start.elapsed().as_secs_f64();
    let ticks = pids.iter().map(|p| process_ticks(*p)).sum::<u64>().saturating_sub(ticks0);
    let threads1: Vec<_> = pids.iter().flat_map(|p| threads(*p)).collect();
    let switches_of = |threads: &[ThreadStat]| threads.iter().map(|t| t.switches).sum::<u64>();
    let switches = switches_of(&threads1).saturating_sub(switches_of(&threads0));
    let arrivals = rcv.arrivals.lock().expect("lock");
    let mut e2e: Vec<f64> = Vec::with_capacity(want);
    for s in &sent {
        for p in &paths {
            if let Some(at) = arrivals.get(&(p.clone(), s.tag.clone())) {
                e2e.push(at.saturating_duration_since(s.at).as_secs_f64() * 1000.0);
            }
        }
    }
    drop(arrivals);
    e2e.sort_by(f64::total_cmp);
    let mut ack: Vec<f64> = sent.iter().map(|s| s.acked.duration_since(s.at).as_secs_f64() * 1000.0).collect();
    ack.sort_by(f64::total_cmp);
    let cpu_s = ticks as f64 / clock_ticks_per_s();
    Ok(Row {
        retries: (subject.retries)().saturating_sub(retries0),
        targets,
        mode,
        sent: tried,
        acked: sent.len(),
        seconds: load_s,
        ingest_per_s: sent.len() as f64 / load_s,
        deliveries_per_s: delivered_during as f64 / load_s,
        ack_ms: [
            percentile(&ack, 0.5),
            percentile(&ack, 0.99),
            percentile(&ack, 0.999),
            ack.last().copied().unwrap_or(0.0),
        ],
        e2e_ms: [percentile(&e2e, 0.5), percentile(&e2e, 0.99), e2e.last().copied().unwrap_or(0.0)],
        delivered: e2e.len(),
        cpu_ms_per_event: cpu_s * 1000.0 / sent.len().max(1) as f64,
        switches_per_event: switches as f64 / sent.len().max(1) as f64,
        cores: cpu_s / all_in,
        drain_s: all_in - load_s,
        threads: thread_figures(&threads0, &threads1, sent.len()),
    })
}

/// Runs every row: each of `offered` (events/s, or `max` for saturation) with each count of
/// `targets`, `rounds` times over (each round all the rows again, in the same order), and after
/// more than one round the medians ([`print_medians`]). The receiver answers each delivery
/// with a body of `response_bytes` (0: 204, no body).
pub fn run(
    seconds: u64,
    offered: &[String],
    target_counts: &[usize],
    rounds: usize,
    response_bytes: usize,
    via: Via,
    show_threads: bool,
) -> anyhow::Result<Value> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let duration = Duration::from_secs(seconds);
    let rcv = Receiver::answering(response_bytes)?;
    let (bare_addr, _bare) = crate::start_bare("127.0.0.1:0")?;
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path())?;
    let bare = crate::load(bare_addr, "", &crate::bodies(1), 64, duration)?;
    let modes = Mode::parse_all(offered)?;
    println!(
        "the whole system: ingest while targets receive ({seconds} s per row; bare handler at 64 connections: {:.0} req/s; {})",
        bare.rps,
        match response_bytes {
            0 => "the receiver answers 204".to_owned(),
            n => format!("the receiver answers 200 with {n} bytes"),
        }
    );
    println!(
        "{:>9} {:>7} | {:>9} {:>9} | {:>28} | {:>22} | {:>8} {:>5} {:>6} | {:>6} {:>9} {:>11}",
        "targets",
        "offered",
        "ingest/s",
        "deliv/s",
        "ack ms p50/p99/p99.9/max",
        "e2e ms p50/p99/max",
        "cpu ms/ev",
        "cores",
        "sw/ev",
        "÷bare",
        "cpu÷relay",
        "cpu÷durable"
    );
    let over = |r: &Row, floor: Option<&Row>| floor.map(|f| r.cpu_ms_per_event / f.cpu_ms_per_event.max(1e-9));
    let mut rows = Vec::new();
    for round in 1..=rounds.max(1) {
        if rounds > 1 {
            println!("round {round} of {rounds}");
        }
        // Each round's rows have their own paths at the receiver (whose first arrivals a row
        // waits for); the first round's are those of a run of one round.
        let label = if round == 1 { String::new() } else { format!("n{round}-") };
        for &targets in target_counts {
            for &mode in &modes {
                // At a fixed rate, the bare relay and the durable relay first: the floors of the
                // CPU per event without and with a durable acknowledgement.
                let mut floor = |durable: bool| -> anyhow::Result<Row> {
                    let r = measure_relay(&rcv, &label, targets, mode, duration, durable)?;
                    let name = if durable { "durable" } else { "relay" };
                    println!(
                        "{:>9} {} {:>6.1} | {:>6}",
                        format!("{name} {targets}"),
                        r.figures(),
                        r.switches_per_event,
                        "-"
                    );
                    r.print_shortfall();
                    if show_threads {
                        r.print_threads();
                    }
                    let mut row = r.json();
                    row[if durable { "durable_relay" } else { "bare_relay" }] = json!(true);
                    row["round"] = json!(round);
                    rows.push(row);
                    Ok(r)
                };
                let floors = match mode {
                    Mode::Rate(_) => Some((floor(false)?, floor(true)?)),
                    Mode::Saturation => None,
                };
                let r = measure_on(&[&server], &rcv, &label, targets, mode, duration, via)?;
                let ratio = matches!(r.mode, Mode::Saturation).then(|| r.ingest_per_s / bare.rps);
                let (over_relay, over_durable) =
                    (over(&r, floors.as_ref().map(|f| &f.0)), over(&r, floors.as_ref().map(|f| &f.1)));
                let times = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x:.2}x"));
                println!(
                    "{:>9} {} {:>6.1} | {:>6} {:>9} {:>11}",
                    r.targets,
                    r.figures(),
                    r.switches_per_event,
                    ratio.map_or("-".into(), |x| format!("{:.0}%", x * 100.0)),
                    times(over_relay),
                    times(over_durable),
                );
                r.print_shortfall();
                if show_threads {
                    r.print_threads();
                }
                let mut row = r.json();
                row["ingest_over_bare"] = json!(ratio);
                row["cpu_over_relay"] = json!(over_relay);
                row["cpu_over_durable_relay"] = json!(over_durable);
                row["round"] = json!(round);
                rows.push(row);
            }
        }
    }
    let medians = if rounds > 1 { print_medians(&rows, rounds) } else { Vec::new() };
    Ok(json!({
        "benchmark": "system", "seconds": seconds, "rounds": rounds.max(1), "bare_rps_64": bare.rps,
        "response_bytes": response_bytes, "via": format!("{via:?}"), "rows": rows, "medians": medians,
    }))
}

/// The kinds of row a round has for one count of targets and one rate: crmhook's, and at a
/// fixed rate the two floors' (the JSON key that marks a floor's row).
const KINDS: [(&str, Option<&str>); 3] =
    [("relay", Some("bare_relay")), ("durable", Some("durable_relay")), ("crmhook", None)];

/// After several rounds: per count of targets and offered rate, the median over the rounds of
/// each kind's CPU per event and thread switches per event, and of crmhook's CPU ÷ each floor's
/// (the ratio of each round, then its median), with the lowest and highest; printed and
/// answered for the JSON. One round's CPU figure moves with what else the host runs, the
/// median of several less so.
fn print_medians(rows: &[Value], rounds: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut shapes: Vec<(u64, Value)> = Vec::new();
    for row in rows {
        let shape = (row["targets"].as_u64().unwrap_or(0), row["offered_per_s"].clone());
        if !shapes.contains(&shape) {
            shapes.push(shape);
        }
    }
    println!("medians over {rounds} rounds (lowest–highest):");
    for (targets, offered) in shapes {
        let of_shape = |kind: Option<&str>| -> Vec<&Value> {
            rows.iter()
                .filter(|r| r["targets"].as_u64() == Some(targets) && r["offered_per_s"] == offered)
                .filter(|r| match kind {
                    Some(flag) => r[flag] == json!(true),
                    None => KINDS.iter().filter_map(|(_, f)| *f).all(|flag| r[flag].is_null()),
                })
                .collect()
        };
        let mut shape = json!({"targets": targets, "offered_per_s": offered});
        for (name, kind) in KINDS {
            let kind_rows = of_shape(kind);
            if kind_rows.is_empty() {
                continue;
            }
            let figure = |key: &str| spread(kind_rows.iter().filter_map(|r| r[key].as_f64()).collect());
            let (cpu, switches) = (figure("cpu_ms_per_event"), figure("switches_per_event"));
            let mut line = format!(
                "{:>9} {:>7} | cpu ms/ev {:.3} ({:.3}–{:.3}) | sw/ev {:.1}",
                format!("{} {targets}", if kind.is_some() { name } else { "" }),
                offered.as_u64().map_or("max".into(), |r| format!("{r}/s")),
                cpu[1],
                cpu[0],
                cpu[2],
                switches[1],
            );
            shape[name] = json!({"cpu_ms_per_event": cpu, "switches_per_event": switches});
            if kind.is_none() {
                for (key, label) in [("cpu_over_relay", "cpu÷relay"), ("cpu_over_durable_relay", "cpu÷durable")] {
                    let ratio = figure(key);
                    if ratio.iter().all(|x| x.is_finite()) {
                        line += &format!(" | {label} {:.2}x ({:.2}–{:.2})", ratio[1], ratio[0], ratio[2]);
                        shape[name][key] = json!(ratio);
                    }
                }
            }
            println!("{line}");
        }
        out.push(shape);
    }
    out
}

/// The lowest, the median ([`crate::median`]) and the highest; NaN for none.
fn spread(xs: Vec<f64>) -> [f64; 3] {
    if xs.is_empty() {
        return [f64::NAN; 3];
    }
    let (low, high) = xs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| (l.min(*x), h.max(*x)));
    [low, crate::median(xs), high]
}
