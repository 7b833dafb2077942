//! `crmhook-bench soak`: the long reliability runs behind `just soak`, on the release binary.
//!
//! 1. Kills: concurrent clients post events while the server is killed with SIGKILL at random
//!    moments, many times, restarted each time on the same data dir; at the end every
//!    acknowledged event must have reached the receiver. Reports kills, acknowledged, lost,
//!    duplicates.
//! 2. Source kills (`sources`): the same through a MAIA and a Maximizer source, as the CRMs post
//!    (batches with bad elements kept in the quarantine, cut-off requests sent again); checks
//!    that nothing answered is lost and nothing is stored or kept twice.
//! 3. Backlog: a target is down (its receiver answers 503) while a million events pile up;
//!    reports the server's peak RSS, the restart time with that log, and the drain time once
//!    the receiver answers 200 again.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

mod sources;
pub use sources::source_kills;

pub const ADMIN: &str = "adm_soak_0123456789abcdef";
pub const INGEST: &str = "ing_soak_0123456789abcdef";

/// A keep-alive HTTP/1.1 connection.
pub struct Conn {
    addr: SocketAddr,
    stream: Option<BufReader<TcpStream>>,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Conn {
        Conn { addr, stream: None }
    }

    pub fn request(&mut self, method: &str, path: &str, token: &str, body: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
        self.request_with(method, path, &format!("Authorization: Bearer {token}\r\n"), body)
    }

    /// [`Conn::request`] with the header lines `headers` (each ending in CRLF) instead of a
    /// bearer token.
    pub fn request_with(
        &mut self,
        method: &str,
        path: &str,
        headers: &str,
        body: &[u8],
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(30)))?;
            self.stream = Some(BufReader::new(s));
        }
        let result = self.exchange(method, path, headers, body);
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    fn exchange(&mut self, method: &str, path: &str, headers: &str, body: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
        let stream = self.stream.as_mut().context("connected")?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        stream.get_mut().write_all(head.as_bytes())?;
        stream.get_mut().write_all(body)?;
        crate::read_response(stream)
    }
}

/// The release `crmhook serve` on a data dir that outlives restarts.
pub struct Server {
    exe: std::path::PathBuf,
    dir: std::path::PathBuf,
    child: Option<Child>,
    pub addr: SocketAddr,
    /// More environment for the process (cluster mode's keys).
    env: Vec<(String, String)>,
}

impl Server {
    pub fn start(dir: &std::path::Path) -> anyhow::Result<Server> {
        Server::start_with(dir, Vec::new())
    }

    /// [`Server::start`] with more environment.
    pub fn start_with(dir: &std::path::Path, env: Vec<(String, String)>) -> anyhow::Result<Server> {
        let exe = crate::server_exe()?;
        let mut s =
            Server { exe, dir: dir.to_path_buf(), child: None, addr: SocketAddr::from(([127, 0, 0, 1], 0)), env };
        s.spawn()?;
        Ok(s)
    }

    /// Starts the process; answers how long it took to print `listening on`.
    fn spawn(&mut self) -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        let mut child = Command::new(&self.exe)
            .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(self.dir.join("db"))
            .env("CRMHOOK_ADMIN_TOKEN", ADMIN)
            .env("CRMHOOK_INGEST_TOKEN", INGEST)
            .env("CRMHOOK_ALLOW_PRIVATE_TARGETS", "true")
            .env("CRMHOOK_LOG", std::env::var("CRMHOOK_BENCH_LOG").unwrap_or_else(|_| "error".into()))
            .env("CRMHOOK_MAX_TARGETS", "1000")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.dir)
            .stdout(Stdio::piped())
            .spawn()?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        self.addr = loop {
            let line = lines.next().context("crmhook exited before listening")??;
            if let Some(a) = line.split("listening on ").nth(1) {
                break a.trim().parse()?;
            }
        };
        std::thread::spawn(move || for _ in lines {});
        self.child = Some(child);
        Ok(t0.elapsed())
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The server process's id (0 when it is not running).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    pub fn rss_kib(&self) -> u64 {
        crate::proc_status_kib(self.child.as_ref().map(Child::id).unwrap_or(0), "VmRSS:")
    }

    /// CPU time (clock ticks) of the server's threads so far, summed by thread name.
    pub fn thread_ticks(&self) -> std::collections::BTreeMap<String, u64> {
        thread_ticks(self.child.as_ref().map(Child::id).unwrap_or(0))
    }

    /// The most resident memory the server has had so far.
    pub fn peak_rss_kib(&self) -> u64 {
        crate::proc_status_kib(self.child.as_ref().map(Child::id).unwrap_or(0), "VmHWM:")
    }

    pub fn admin(&self, method: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
        let (status, body) = Conn::new(self.addr).request(method, path, ADMIN, &serde_json::to_vec(body)?)?;
        if status >= 300 {
            bail!("{method} {path}: {status} {}", String::from_utf8_lossy(&body));
        }
        Ok(serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    fn target(&self, url: &str, schedule: &[u64]) -> anyhow::Result<()> {
        let t =
            self.admin("POST", "/v1/targets", &json!({"name": "soak", "url": url, "retry_schedule_ms": schedule}))?;
        self.admin("POST", "/v1/subscriptions", &json!({"target_id": t["id"]}))?;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            crate::stop(&mut c);
        }
    }
}

/// A receiver counting deliveries per recordId (a Maximizer event's: per `Id`); its answer can
/// be switched.
struct Receiver {
    addr: SocketAddr,
    counts: Arc<Mutex<HashMap<String, u32>>>,
    answer: Arc<AtomicU16>,
}

impl Receiver {
    fn start() -> anyhow::Result<Receiver> {
        let counts: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
        let answer = Arc::new(AtomicU16::new(200));
        let (c, a) = (counts.clone(), answer.clone());
        let addr = crate::system::serve(move |_, body, _| {
            let status = a.load(Ordering::Relaxed);
            if status == 200 {
                let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                if let Some(tag) = tag_of(&v) {
                    *c.lock().expect("lock").entry(tag.to_owned()).or_insert(0) += 1;
                }
            }
            actix_web::HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or_default()).finish()
        })?;
        Ok(Receiver { addr, counts, answer })
    }

    fn url(&self) -> String {
        format!("http://{}/soak", self.addr)
    }
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

/// The tag of an event or piece as crmhook shows it or delivers it: a MAIA event's `recordId`,
/// or a Maximizer envelope's `Id`, alone or in its one-element array.
fn tag_of(v: &Value) -> Option<&str> {
    let v = if v.is_array() { &v[0] } else { v };
    v["recordId"].as_str().or_else(|| v["Id"].as_str())
}

/// Waits a random 0.2–1.7 s (`seed`: xorshift), kills the server with SIGKILL and tells the
/// clients to stop.
fn kill_at_random(server: &mut Server, seed: &mut u64, stop: &AtomicBool) {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    std::thread::sleep(Duration::from_millis(200 + *seed % 1500));
    server.kill9();
    stop.store(true, Ordering::Relaxed);
}

/// A MAIA `crm_field_update` event with this recordId, the load of the benches.
pub(crate) fn event(tag: &str) -> String {
    format!(
        r#"{{"eventType":"crm_field_update","recordId":"{tag}","kanbanId":"kanban_1","fieldName":"Email","newValue":"x@example.com"}}"#
    )
}

/// Kill soak; answers its JSON report.
pub fn kills(kills: usize, clients: usize) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir()?;
    let rcv = Receiver::start()?;
    let mut server = Server::start(dir.path())?;
    server.target(&rcv.url(), &[100, 200, 400, 800, 1600, 3200])?;
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos() as u64 | 1;
    for round in 0..kills {
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..clients)
            .map(|c| {
                let (stop, acked, addr) = (stop.clone(), acked.clone(), server.addr);
                std::thread::spawn(move || {
                    let mut conn = Conn::new(addr);
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let tags: Vec<String> = (0..1 + i % 3).map(|k| format!("r{round}c{c}i{i}k{k}")).collect();
                        let body = format!("[{}]", tags.iter().map(|t| event(t)).collect::<Vec<_>>().join(","));
                        i += 1;
                        match conn.request("POST", "/v1/events", INGEST, body.as_bytes()) {
                            Ok((202, _)) => acked.lock().expect("lock").extend(tags),
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                })
            })
            .collect();
        kill_at_random(&mut server, &mut seed, &stop);
        for t in threads {
            let _ = t.join();
        }
        server.spawn()?;
    }
    let acked = acked.lock().expect("lock").clone();
    let all_arrived = wait_until(Duration::from_secs(300), || {
        let counts = rcv.counts.lock().expect("lock");
        acked.iter().all(|t| counts.contains_key(t))
    });
    let counts = rcv.counts.lock().expect("lock");
    let lost = acked.iter().filter(|t| !counts.contains_key(*t)).count();
    let duplicates: u32 = counts.values().map(|n| n - 1).sum();
    let report = json!({"kills": kills, "acknowledged": acked.len(), "lost": lost, "duplicates": duplicates, "all_arrived": all_arrived});
    println!(
        "kills: {kills} kills survived; {} events acknowledged; lost {lost}; duplicate deliveries {duplicates}",
        acked.len()
    );
    Ok(report)
}

/// Backlog soak; answers its JSON report.
pub fn backlog(events: usize) -> anyhow::Result<Value> {
    const BATCH: usize = 1000;
    let dir = tempfile::tempdir()?;
    let rcv = Receiver::start()?;
    rcv.answer.store(503, Ordering::Relaxed);
    let mut server = Server::start(dir.path())?;
    server.target(&rcv.url(), &[5_000; 50])?;
    let rss_idle = server.rss_kib();
    let mut rss_max = rss_idle;
    let t0 = Instant::now();
    let mut conn = Conn::new(server.addr);
    for b in 0..events.div_ceil(BATCH) {
        let body = format!("[{}]", (0..BATCH).map(|i| event(&format!("b{b}i{i}"))).collect::<Vec<_>>().join(","));
        loop {
            match conn.request("POST", "/v1/events", INGEST, body.as_bytes())? {
                (202, _) => break,
                (503, _) => std::thread::sleep(Duration::from_millis(50)),
                (s, b) => bail!("ingest answered {s}: {}", String::from_utf8_lossy(&b)),
            }
        }
        if b % 50 == 0 {
            rss_max = rss_max.max(server.rss_kib());
        }
    }
    let ingest_s = t0.elapsed().as_secs_f64();
    let rss_after_ingest = server.rss_kib();
    rss_max = rss_max.max(rss_after_ingest);
    let disk = dir_size(&dir.path().join("db"));
    server.kill9();
    let listening = server.spawn()?;
    let t1 = Instant::now();
    let ready = wait_until(Duration::from_secs(60), || {
        Conn::new(server.addr).request("GET", "/readyz", "", b"").map(|(s, _)| s == 200).unwrap_or(false)
    });
    let restart_ms = (listening + t1.elapsed()).as_millis();
    let rss_after_restart = server.rss_kib();
    // Reading the log's newest page, plain and through each index, with `events` in it.
    let newest = events.saturating_sub(100);
    let last_batch = events.div_ceil(BATCH) - 1;
    let mut reads = serde_json::Map::new();
    for (name, path) in [
        ("newest_page", format!("/v1/events?after={newest}&limit=100")),
        ("newest_page_by_type", format!("/v1/events?type=crm_field_update&after={newest}&limit=100")),
        ("by_record_id", format!("/v1/events?record_id=b{last_batch}i999")),
        ("by_kanban_newest", format!("/v1/events?kanban_id=kanban_1&after={newest}&limit=100")),
        ("since_a_minute_ago", format!("/v1/events?since={}&limit=100", rfc3339_minus(60))),
    ] {
        let mut conn = Conn::new(server.addr);
        conn.request("GET", &path, ADMIN, b"")?; // warm the connection and the cache once
        let t = Instant::now();
        let runs = 20;
        for _ in 0..runs {
            let (status, _) = conn.request("GET", &path, ADMIN, b"")?;
            if status != 200 {
                bail!("GET {path}: {status}");
            }
        }
        let ms = t.elapsed().as_secs_f64() * 1000.0 / runs as f64;
        println!("read {name}: {ms:.2} ms ({path})");
        reads.insert(name.to_owned(), json!(ms));
    }
    rcv.answer.store(200, Ordering::Relaxed);
    let t2 = Instant::now();
    let mut rss_drain = rss_after_restart;
    let drained = wait_until(Duration::from_secs(1800), || {
        rss_drain = rss_drain.max(server.rss_kib());
        rcv.counts.lock().expect("lock").len() >= events
    });
    let drain_s = t2.elapsed().as_secs_f64();
    println!(
                "backlog: {events} events ingested in {ingest_s:.1} s with the target down; RSS idle {} MiB, peak while \
         ingesting {} MiB, after ingesting {} MiB; {:.0} MiB on disk; restart to ready {restart_ms} ms (ready: {ready}); \
         RSS after restart {} MiB, peak while draining {} MiB; drained in {drain_s:.1} s ({drained})",
        rss_idle / 1024,
        rss_max / 1024,
        rss_after_ingest / 1024,
        disk as f64 / 1_048_576.0,
        rss_after_restart / 1024,
        rss_drain / 1024
    );
    Ok(json!({
                "events": events, "ingest_s": ingest_s, "rss_idle_mib": rss_idle / 1024, "rss_peak_ingest_mib": rss_max / 1024,
        "rss_after_ingest_mib": rss_after_ingest / 1024, "rss_after_restart_mib": rss_after_restart / 1024,
                "rss_peak_drain_mib": rss_drain / 1024, "read_ms": reads,
        "disk_mib": disk as f64 / 1_048_576.0, "restart_to_ready_ms": restart_ms, "drain_s": drain_s, "drained": drained,
    }))
}

/// Now minus `seconds`, as RFC 3339 UTC (for the `since` filter).
fn rfc3339_minus(seconds: u64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let t = now.saturating_sub(seconds);
    let (days, rem) = (t / 86_400, t % 86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// CPU time (clock ticks) of a process's threads so far, summed by thread name.
pub fn thread_ticks(pid: u32) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return out };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        // pid (comm) state ... utime stime: fields 14 and 15; comm may hold spaces.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let name = stat[open + 1..close].trim_end_matches(|c: char| c.is_ascii_digit()).to_owned();
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let ticks: u64 = fields.get(11..13).map_or(0, |f| f.iter().filter_map(|t| t.parse::<u64>().ok()).sum());
        *out.entry(name).or_default() += ticks;
    }
    out
}
