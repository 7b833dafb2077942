//! `crmhook-bench`: measures crmhook against bare baselines on the same machine, in one run.
//!
//! - `crmhook-bench ingest` starts `crmhook serve` (the release binary next to this one) on a
//!   fresh data dir and a bare actix-web handler (parses the JSON, answers 202, stores nothing),
//!   drives both with the same keep-alive HTTP/1.1 load at 1, 16 and 64 connections, and prints
//!   requests/s, p50/p99 latency and each crmhook figure as a ratio of the bare one, as a table
//!   and as JSON.
//! - `crmhook-bench system` (in `system.rs`): ingest while 1 and 10 targets receive, at fixed
//!   rates and at saturation: ingest/s, deliveries/s, ack and end-to-end latency, the server's
//!   CPU per event, next to the bare handler and, at fixed rates, the bare relay.
//! - `crmhook-bench jetstream` (in `jetstream.rs`): the bare JetStream limit of cluster mode,
//!   R3 publish with acknowledgement and a durable pull consumer, on a NATS cluster.
//! - `crmhook-bench bare` runs only the bare handler; `crmhook-bench relay` only the bare relay
//!   (`relay.rs`, the floor of `system`'s CPU per event; with `--durable`, the floor of a relay
//!   that acknowledges only what is durable); `crmhook-bench load` only the load.
//!
//! The load generator is plain threads and sockets: one thread per connection, one request in
//! flight per connection, latencies kept in full for exact percentiles.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

mod batches;
mod cluster;
mod deliver;
mod jetstream;
mod outage;
mod process;
mod relay;
mod soak;
mod sources;
mod system;

pub(crate) use process::{server_exe, stop, Crmhook};

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::json;

/// The same allocator as the server, so that the bare limits measured in this process (raw
/// sled, raw awc, the bare handler) are not handicapped by glibc's malloc.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(about = "crmhook benchmarks: crmhook against bare baselines, in one run")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Durable ingest against a bare actix-web handler.
    Ingest {
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Connection counts to measure.
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        connections: Vec<usize>,
        /// Where to write the JSON report.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// The long reliability runs: kills under load (through `/v1/events`, then through the
    /// sources), and a large backlog.
    Soak {
        /// How many times the server is killed.
        #[arg(long, default_value_t = 20)]
        kills: usize,
        /// Concurrent ingest clients during the kills.
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// How many times the server is killed while clients post through a MAIA and a Maximizer source.
        #[arg(long, default_value_t = 20)]
        source_kills: usize,
        /// Events piled up for a target that is down.
        #[arg(long, default_value_t = 1_000_000)]
        backlog: usize,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// A receiver's outage as a user meets it: one target with the default retry schedule, a CRM
    /// posting at a steady rate, the receiver answering 500 for the first `outage` seconds;
    /// how soon events arrive once it is back.
    Outage {
        /// Events per second, one per request.
        #[arg(long, default_value_t = 20)]
        rate: u64,
        /// Seconds of posting in all.
        #[arg(long, default_value_t = 100)]
        seconds: u64,
        /// Seconds the receiver answers 500 from the start.
        #[arg(long, default_value_t = 60)]
        outage: u64,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Delivery throughput and end-to-end latency against raw awc POSTs.
    Deliver {
        /// Events for the one-target run (a tenth of them fan out to 10 targets).
        #[arg(long, default_value_t = 20_000)]
        events: usize,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// The whole system: ingest while 1 and 10 targets receive, at fixed rates and at
    /// saturation, with end-to-end latency and the server's CPU per event, next to the bare
    /// handler.
    System {
        /// Seconds per row.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// What to offer: fixed rates (events/s) and `max` (saturation, 64 connections).
        #[arg(long, value_delimiter = ',', default_value = "200,1000,5000,max")]
        offered: Vec<String>,
        /// Live targets, each subscribed to everything.
        #[arg(long, value_delimiter = ',', default_value = "1,10")]
        targets: Vec<usize>,
        /// Every row this many times over, one round after the other, then the medians of the
        /// CPU and switches per event and of crmhook's CPU ÷ each floor's.
        #[arg(long, default_value_t = 1)]
        rounds: usize,
        /// The receiver answers 200 with a JSON body of this many bytes (0: 204, no body).
        #[arg(long, default_value_t = 0)]
        response_bytes: usize,
        /// How crmhook's rows post: `api` (`/v1/events` with the ingest token), `maia-source`
        /// (a MAIA source's URL, each body signed: every event then has its idempotency key,
        /// as a real CRM's has) or `api-key` (`/v1/events`, each request with an
        /// `Idempotency-Key`).
        #[arg(long, value_enum, default_value = "api")]
        via: system::Via,
        /// Under each row, each busy thread of the server's (and of the relays'): its CPU, moves
        /// between CPUs and switches per event (`/proc/<pid>/task/*/`).
        #[arg(long)]
        threads: bool,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// The bare JetStream limit: R3 publish awaiting each acknowledgement, then a durable pull
    /// consumer reading and acking every message.
    /// Cluster mode: a raw JetStream publish/consume on a 3-node cluster, three crmhook nodes in
    /// cluster mode on it, and one single-node crmhook, with one live target, in one run.
    Cluster {
        /// Seconds per row.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// What to offer: fixed rates (events/s) and `max` (saturation, 64 connections).
        #[arg(long, value_delimiter = ',', default_value = "200,1000,max")]
        offered: Vec<String>,
        /// Publishers of the bare JetStream row (as the saturation rows' connections).
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    Jetstream {
        /// The cluster's client URLs, comma-separated; without it a 3-node cluster is started.
        #[arg(long)]
        nats: Option<String>,
        /// Seconds of publishing per round (each row is the median of three).
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Concurrent publishers, each with one publish in flight.
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        connections: Vec<usize>,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Memory under large requests: `concurrent` requests of about 1 MB (13,000 small MAIA
    /// events each) at once, twice, through `/v1/events` and through a MAIA source, each on a
    /// fresh server; its peak RSS and the time to answer them all.
    Batches {
        #[arg(long, default_value_t = 64)]
        concurrent: usize,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Only the sources' rows of `ingest` (a CRM posting to its source against `/v1/events`).
    Sources {
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        #[arg(long, default_value_t = 64)]
        connections: usize,
    },
    /// Only the bare handler, for use with an outside load tool.
    Bare {
        #[arg(long, default_value = "127.0.0.1:8090")]
        bind: String,
    },
    /// Only the bare relay (`relay.rs`): answers 202 and sends each body on to `--to`.
    Relay {
        #[arg(long, default_value = "127.0.0.1:8091")]
        bind: String,
        /// Where each body is sent (repeat for more targets).
        #[arg(long)]
        to: Vec<String>,
        /// Answer 202 only once the body is durable in a sled database in this directory.
        #[arg(long)]
        durable: Option<PathBuf>,
    },
    /// Only the load, against any URL.
    Load {
        #[arg(long)]
        url: String,
        #[arg(long, default_value = "")]
        token: String,
        #[arg(long, default_value_t = 16)]
        connections: usize,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Events per request (1 sends one object, more an array).
        #[arg(long, default_value_t = 1)]
        batch: usize,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Bare { bind } => {
            let (addr, _guard) = start_bare(&bind)?;
            println!("bare handler listening on {addr}");
            loop {
                std::thread::park();
            }
        }
        Cmd::Relay { bind, to, durable } => relay::serve(&bind, to, durable),
        Cmd::Load { url, token, connections, seconds, batch } => {
            let addr = url.trim_start_matches("http://").split('/').next().unwrap_or("").parse()?;
            let r = load(addr, &token, &bodies(batch), connections, Duration::from_secs(seconds))?;
            println!(
                "{connections} connections: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
                r.rps, r.p50_ms, r.p99_ms, r.errors
            );
            Ok(())
        }
        Cmd::Ingest { seconds, connections, json } => ingest(seconds, &connections, json),
        Cmd::Sources { seconds, connections } => {
            let (bare_addr, _bare) = start_bare("127.0.0.1:0")?;
            let crmhook = Crmhook::start()?;
            sources::rows(&crmhook, bare_addr, connections, Duration::from_secs(seconds))?;
            Ok(())
        }
        Cmd::System { seconds, offered, targets, rounds, response_bytes, via, threads, json } => {
            write_report(json, &system::run(seconds, &offered, &targets, rounds, response_bytes, via, threads)?)
        }
        Cmd::Cluster { seconds, offered, connections, json } => {
            write_report(json, &cluster::run(seconds, &offered, connections)?)
        }
        Cmd::Jetstream { nats, seconds, connections, json } => {
            write_report(json, &jetstream::run_command(nats, seconds, &connections)?)
        }
        Cmd::Batches { concurrent, json } => write_report(json, &batches::run(concurrent)?),
        Cmd::Outage { rate, seconds, outage, json } => write_report(json, &outage::run(rate, seconds, outage)?),
        Cmd::Deliver { events, json } => write_report(json, &deliver::run(events)?),
        Cmd::Soak { kills, clients, source_kills, backlog, json } => {
            let report = json!({
                "kills": soak::kills(kills, clients)?,
                "source_kills": soak::source_kills(source_kills, clients)?,
                "backlog": soak::backlog(backlog)?,
            });
            match json {
                Some(path) => std::fs::write(path, serde_json::to_vec_pretty(&report)?)?,
                None => println!("{report}"),
            }
            Ok(())
        }
    }
}

/// Writes a command's JSON report where `--json` says, if it says.
fn write_report(json: Option<PathBuf>, report: &serde_json::Value) -> anyhow::Result<()> {
    if let Some(path) = json {
        std::fs::write(path, serde_json::to_vec_pretty(report)?)?;
    }
    Ok(())
}

/// Distinct request bodies the load cycles through.
const BODIES: usize = 512;

/// [`BODIES`] request bodies of `batch` events each (one object for 1, else an array): every
/// event names its own record, on one of 8 kanbans, as a CRM's stream of field updates does.
fn bodies(batch: usize) -> Vec<Vec<u8>> {
    (0..BODIES)
        .map(|b| {
            let events: Vec<String> = (0..batch).map(|i| event_json(b * batch + i)).collect();
            match batch {
                1 => events.concat().into_bytes(),
                _ => format!("[{}]", events.join(",")).into_bytes(),
            }
        })
        .collect()
}

/// The MAIA crm_field_update sample for record `n`.
fn event_json(n: usize) -> String {
    let ev = json!({
        "eventType": "crm_field_update", "recordId": format!("record_1704067200000_{n:06}"),
        "kanbanId": format!("kanban_1704067200000_{}", n % 8), "kanbanName": "Sales Pipeline",
        "externalUserId": "user-123", "fieldName": "Email", "fieldType": "email",
        "previousValue": "old@example.com", "newValue": "new@example.com",
        "updatedBy": "user_abc123", "updatedAt": "2024-01-15T10:30:00.000Z", "sessionId": "session_xyz789"
    });
    ev.to_string()
}

/// The bare limit: parse the JSON, answer 202, store nothing. Same worker count as crmhook.
fn start_bare(bind: &str) -> anyhow::Result<(SocketAddr, std::thread::JoinHandle<()>)> {
    use actix_web::{web, App, HttpResponse, HttpServer};
    let listener = std::net::TcpListener::bind(bind)?;
    let addr = listener.local_addr()?;
    let workers = std::thread::available_parallelism().map(usize::from).unwrap_or(2);
    let handle = std::thread::spawn(move || {
        let _ = actix_rt::System::new().block_on(async move {
            HttpServer::new(|| {
                // Any path: the sources' rows post to `/in/…`.
                App::new().default_service(web::post().to(|body: web::Bytes| async move {
                    match serde_json::from_slice::<serde_json::Value>(&body) {
                        Ok(_) => HttpResponse::Accepted().json(json!({"accepted": 1, "duplicates": 0, "events": []})),
                        Err(_) => HttpResponse::BadRequest().finish(),
                    }
                }))
            })
            .workers(workers)
            .listen(listener)?
            .run()
            .await
        });
    });
    Ok((addr, handle))
}

/// A `kB` figure of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`), 0 if unreadable.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix(field).map(str::to_owned)))
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct LoadResult {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

/// Rounds of each throughput figure: a small machine's figures vary from run to run, so each
/// is the median of `ROUNDS`, crmhook and its baseline taking turns.
pub const ROUNDS: usize = 3;

pub fn median(mut runs: Vec<f64>) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs.get(runs.len() / 2).copied().unwrap_or(0.0)
}

/// The median of each figure of `rounds`; errors summed.
pub(crate) fn median_load(rounds: &[LoadResult]) -> LoadResult {
    LoadResult {
        rps: median(rounds.iter().map(|r| r.rps).collect()),
        p50_ms: median(rounds.iter().map(|r| r.p50_ms).collect()),
        p99_ms: median(rounds.iter().map(|r| r.p99_ms).collect()),
        errors: rounds.iter().map(|r| r.errors).sum(),
    }
}

/// Keep-alive POSTs of `bodies` (in turn) to /v1/events on `connections` connections for
/// `duration`.
pub(crate) fn load(
    addr: SocketAddr,
    token: &str,
    bodies: &[Vec<u8>],
    connections: usize,
    duration: Duration,
) -> anyhow::Result<LoadResult> {
    let request = |body: &[u8]| {
        let mut r = format!(
            "POST /v1/events HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        if !token.is_empty() {
            r.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        r.push_str("\r\n");
        let mut bytes = r.into_bytes();
        bytes.extend_from_slice(body);
        bytes
    };
    let requests: std::sync::Arc<Vec<Vec<u8>>> = std::sync::Arc::new(bodies.iter().map(|b| request(b)).collect());
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let threads: Vec<_> = (0..connections)
        .map(|c| {
            let requests = requests.clone();
            let mut next = c * requests.len() / connections.max(1);
            std::thread::spawn(move || {
                drive(addr, deadline, |stream| {
                    next = (next + 1) % requests.len();
                    stream.write_all(&requests[next])
                })
            })
        })
        .collect();
    summarize(threads, started)
}

/// One keep-alive connection until `deadline`, one request in flight: `send` writes the next
/// request; answers the latencies (µs) of the 200 and 202 answers and how many others came.
pub(crate) fn drive(
    addr: SocketAddr,
    deadline: Instant,
    mut send: impl FnMut(&mut TcpStream) -> std::io::Result<()>,
) -> anyhow::Result<(Vec<u32>, u64)> {
    let mut latencies = Vec::with_capacity(100_000);
    let mut errors = 0;
    let mut stream = BufReader::new(TcpStream::connect(addr)?);
    stream.get_ref().set_nodelay(true)?;
    while Instant::now() < deadline {
        let t0 = Instant::now();
        send(stream.get_mut())?;
        let (status, _) = read_response(&mut stream)?;
        if status == 202 || status == 200 {
            latencies.push(t0.elapsed().as_micros() as u32);
        } else {
            errors += 1;
        }
    }
    Ok((latencies, errors))
}

/// A load thread that answers its items and a count.
pub(crate) type Loader<T, N> = std::thread::JoinHandle<anyhow::Result<(Vec<T>, N)>>;

/// A load thread: it answers its latencies in µs and its error count.
pub(crate) type LoadThread = Loader<u32, u64>;

/// Joins load threads that each answer their items and a count: all the items, the counts
/// summed.
pub(crate) fn join_load<T, N: Default + std::ops::AddAssign>(
    threads: Vec<Loader<T, N>>,
) -> anyhow::Result<(Vec<T>, N)> {
    let mut all = Vec::new();
    let mut count = N::default();
    for t in threads {
        let (items, n) = t.join().map_err(|_| anyhow::anyhow!("load thread panicked"))??;
        all.extend(items);
        count += n;
    }
    Ok((all, count))
}

/// Joins load threads into one result.
pub(crate) fn summarize(threads: Vec<LoadThread>, started: Instant) -> anyhow::Result<LoadResult> {
    let (mut all, errors) = join_load(threads)?;
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or(0) as f64
            / 1000.0
    };
    Ok(LoadResult { rps: all.len() as f64 / elapsed, p50_ms: pct(0.50), p99_ms: pct(0.99), errors })
}

/// Reads one HTTP/1.1 response with a Content-Length body; answers its status.
pub(crate) fn read_response(stream: &mut BufReader<TcpStream>) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut line = String::new();
    stream.read_line(&mut line)?;
    let status: u16 = line.split_whitespace().nth(1).context("no status line")?.parse()?;
    let mut length = 0usize;
    loop {
        line.clear();
        stream.read_line(&mut line)?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse()?;
            }
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body)?;
    Ok((status, body))
}

fn ingest(seconds: u64, connections: &[usize], json_out: Option<PathBuf>) -> anyhow::Result<()> {
    let body = bodies(1);
    let duration = Duration::from_secs(seconds);
    let (bare_addr, _bare) = start_bare("127.0.0.1:0")?;
    let crmhook = Crmhook::start()?;
    println!(
        "durable single-event ingest, median of {ROUNDS} rounds of {seconds} s, crmhook vs a bare actix-web handler \
         (same machine, same run, taking turns)"
    );
    println!(
        "{:>5} | {:>12} {:>9} {:>9} | {:>12} {:>9} {:>9} | {:>6}",
        "conns", "bare req/s", "p50 ms", "p99 ms", "crmhook/s", "p50 ms", "p99 ms", "ratio"
    );
    let mut rows = Vec::new();
    for &c in connections {
        let (mut bare, mut ours) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            bare.push(load(bare_addr, "", &body, c, duration)?);
            ours.push(load(crmhook.addr, "ing_bench_0123456789abcdef", &body, c, duration)?);
        }
        let runs = json!({"bare_rps": bare.iter().map(|r| r.rps).collect::<Vec<_>>(),
                          "crmhook_rps": ours.iter().map(|r| r.rps).collect::<Vec<_>>()});
        let (bare, ours) = (median_load(&bare), median_load(&ours));
        let ratio = ours.rps / bare.rps;
        println!(
            "{c:>5} | {:>12.0} {:>9.2} {:>9.2} | {:>12.0} {:>9.2} {:>9.2} | {:>5.0}%",
            bare.rps,
            bare.p50_ms,
            bare.p99_ms,
            ours.rps,
            ours.p50_ms,
            ours.p99_ms,
            ratio * 100.0
        );
        if bare.errors + ours.errors > 0 {
            println!("      (non-202 answers: bare {}, crmhook {})", bare.errors, ours.errors);
        }
        rows.push(json!({
            "connections": c,
            "bare": {"rps": bare.rps, "p50_ms": bare.p50_ms, "p99_ms": bare.p99_ms, "errors": bare.errors},
            "crmhook": {"rps": ours.rps, "p50_ms": ours.p50_ms, "p99_ms": ours.p99_ms, "errors": ours.errors},
            "ratio": ratio,
            "runs": runs,
        }));
    }
    // 100-event requests against raw sled appends with the same flush grouping.
    let (mut ours, mut raws) = (Vec::new(), Vec::new());
    let batches = bodies(100);
    for _ in 0..ROUNDS {
        ours.push(load(crmhook.addr, "ing_bench_0123456789abcdef", &batches, 16, duration)?);
        let raw_dir = tempfile::tempdir()?;
        raws.push(
            crmhook_store::baseline::raw_appends(raw_dir.path(), 16, 100, body[0].len() + 120, duration)
                .map_err(|e| anyhow::anyhow!("raw sled appends: {e}"))?,
        );
    }
    let batch_runs = json!({"crmhook_events_per_s": ours.iter().map(|r| r.rps * 100.0).collect::<Vec<_>>(), "raw_sled_records_per_s": raws});
    let (ours, raw) = (median_load(&ours), median(raws));
    let ratio = ours.rps * 100.0 / raw;
    println!(
        "batches of 100 events, 16 connections: crmhook {:.0} events/s (p50 {:.2} ms, p99 {:.2} ms per request) \
         vs raw sled appends with the same flush grouping {raw:.0} records/s: {:.0}%",
        ours.rps * 100.0,
        ours.p50_ms,
        ours.p99_ms,
        ratio * 100.0
    );
    rows.push(json!({
        "batch": 100, "connections": 16,
        "crmhook": {"events_per_s": ours.rps * 100.0, "p50_ms": ours.p50_ms, "p99_ms": ours.p99_ms},
        "raw_sled": {"records_per_s": raw}, "ratio": ratio, "runs": batch_runs,
    }));
    let top = connections.iter().copied().max().unwrap_or(64);
    rows.push(sources::rows(&crmhook, bare_addr, top, duration)?);
    let peak_rss_kib = proc_status_kib(crmhook.pid(), "VmHWM:");
    println!("crmhook peak RSS over the ingest rows: {} MiB", peak_rss_kib / 1024);
    let report = json!({"benchmark": "ingest", "seconds": seconds, "rows": rows, "peak_rss_mib": peak_rss_kib / 1024});
    match json_out {
        Some(path) => std::fs::write(&path, serde_json::to_vec_pretty(&report)?)?,
        None => println!("{}", serde_json::to_string(&report)?),
    }
    Ok(())
}
