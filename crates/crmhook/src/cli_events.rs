//! `crmhook events …`: the log, read over the HTTP API: list, show one event with its
//! deliveries and attempts, follow new events and attempts as they happen (`tail`, the
//! server-sent event stream), and queue an event again.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use anyhow::bail;
use clap::Subcommand;
use serde_json::{json, Value};

use crate::cli::{
    items, json_escaped, more, print_attempt, print_json, query, request, s, segment, table, visible, Conn,
};
use crate::cli_conn::EVENT;

#[derive(Subcommand)]
pub enum Events {
    /// List events in log order (`--newest`: newest first).
    List {
        /// A type, or a pattern as subscriptions take it (`Opportunity.*`); case is ignored.
        #[arg(long = "type")]
        event_type: Option<String>,
        /// MAIA's `recordId`, Maximizer's `Data.New.Key` (or `Data.Original.Key`).
        #[arg(long)]
        record_id: Option<String>,
        /// MAIA's `kanbanId`.
        #[arg(long)]
        kanban_id: Option<String>,
        /// Only events posted by this source (`src_…`).
        #[arg(long)]
        source: Option<String>,
        /// Received at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Received before this RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
        /// Start after this seq (the `more: --after …` of the previous page; with `--newest`,
        /// the page holds the events before it).
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Newest first: from the newest event (or from before `--after`) back.
        #[arg(long)]
        newest: bool,
    },
    /// One event with its deliveries and attempts.
    Show { id: String },
    /// Follow new events and attempts as they happen.
    Tail {
        /// Start after this seq (default: only what comes next).
        #[arg(long)]
        after: Option<u64>,
    },
    /// Queue the event again for its targets (or one).
    Redeliver {
        id: String,
        #[arg(long)]
        target: Option<String>,
    },
}

pub fn events(conn: &Conn, cmd: Events) -> anyhow::Result<ExitCode> {
    match cmd {
        Events::List { event_type, record_id, kanban_id, source, since, until, after, limit, newest } => {
            // The flags that choose what is listed, and their names in the query.
            let filters = [
                ("--type", "type", event_type),
                ("--record-id", "record_id", record_id),
                ("--kanban-id", "kanban_id", kanban_id),
                ("--source", "source_id", source),
                ("--since", "since", since),
                ("--until", "until", until),
            ];
            let mut pairs: Vec<(&str, Option<String>)> = filters.iter().map(|(_, q, v)| (*q, v.clone())).collect();
            pairs.extend([
                ("after", Some(after.to_string())),
                ("limit", Some(limit.to_string())),
                ("order", newest.then(|| "newest".to_owned())),
            ]);
            let page = request(conn, "GET", &format!("/v1/events{}", query(&pairs)), None)?;
            let list = items(conn, &page, "events")?;
            if conn.json {
                return print_json(&page);
            }
            let rows = list
                .iter()
                .map(|e| {
                    // The record id `--record-id` finds (none for `ai_pause`), as the
                    // CRM sent it: `table` escapes its control characters.
                    let record = e["record_id"].as_str();
                    let test = if e["test"] == true { " (test)" } else { "" };
                    vec![
                        s(&e["seq"]),
                        s(&e["id"]),
                        format!("{}{test}", s(&e["type"])),
                        record.unwrap_or("-").to_owned(),
                        s(&e["received_at"]),
                    ]
                })
                .collect();
            table(&["seq", "id", "type", "record", "received_at"], rows);
            if let Some(next) = page["next_after"].as_u64() {
                let mut flags: Vec<(&str, Option<String>)> = filters.into_iter().map(|(f, _, v)| (f, v)).collect();
                flags.push(("--limit", (limit != 50).then(|| limit.to_string())));
                more(&next.to_string(), newest, &flags);
            }
            Ok(ExitCode::SUCCESS)
        }
        Events::Show { id } => {
            let e = request(conn, "GET", &format!("/v1/events/{}", segment(&EVENT, &id)?), None)?;
            if conn.json {
                return print_json(&e);
            }
            say!("{}  seq {}  {}  received {}", s(&e["id"]), s(&e["seq"]), s(&e["type"]), s(&e["received_at"]));
            if let Some(source) = e["source_id"].as_str() {
                say!("source {}", visible(source));
            }
            if e["test"] == true {
                say!("a test event (POST /v1/targets/{{id}}/test): delivered to the target it tested only");
            }
            say!("{}", json_escaped(serde_json::to_string_pretty(&e["payload"])?));
            for d in e["deliveries"].as_array().cloned().unwrap_or_default() {
                let name = visible(d["target_name"].as_str().unwrap_or(""));
                say!("\n{} {name}: {}", s(&d["target_id"]), s(&d["status"]));
                for a in d["attempts"].as_array().cloned().unwrap_or_default() {
                    print_attempt(&a, "  ");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Events::Redeliver { id, target } => {
            let body = target.map(|t| json!({"target_id": t})).unwrap_or(json!({}));
            let path = format!("/v1/events/{}/redeliver", segment(&EVENT, &id)?);
            let r = request(conn, "POST", &path, Some(&body))?;
            if conn.json {
                return print_json(&r);
            }
            say!("queued {}", s(&r["queued"]));
            Ok(ExitCode::SUCCESS)
        }
        Events::Tail { after } => tail(conn, after),
    }
}

/// How long `tail` waits before it connects again to a stream that ended (the stream's own
/// `retry:`).
const RECONNECT_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Follows `/v1/stream` (server-sent events) and prints each new event and attempt. When the
/// stream ends (the server stopped or restarted, or stands in while its disk is full) it
/// connects again every 2 s, from the last event it printed (`Last-Event-ID`, as a browser's
/// `EventSource` does) or, before it printed any, from where it started: `--after`, else the
/// log's newest event when it started (since 2026-12-07; before, a tail that had printed nothing
/// connected again with no position and skipped what was posted while it was away). It says so
/// on stderr; it stops on Ctrl-C, on a refused token, or when the first connection fails.
fn tail(conn: &Conn, after: Option<u64>) -> anyhow::Result<ExitCode> {
    let token = conn.token()?;
    // Asked before the stream opens, which then starts after it: nothing posted in between is
    // missed, nothing printed twice.
    let mut last = match after {
        Some(seq) => seq,
        None => newest_seq(conn)?,
    };
    let url = conn.url_of("/v1/stream");
    let agent = conn.agent(None)?;
    // Whether a stream was open once, and whether its end was said.
    let (mut followed, mut said) = (false, false);
    loop {
        let req =
            agent.get(&url).set("Authorization", &format!("Bearer {token}")).set("Last-Event-ID", &last.to_string());
        match req.call() {
            Ok(resp) if resp.content_type() == "text/event-stream" => {
                if said {
                    eprintln!("tail: following the stream again");
                } else if !followed {
                    eprintln!("tail: following the stream after seq {last} (Ctrl-C stops)");
                }
                (followed, said) = (true, false);
                print_stream(conn, resp, &mut last)?;
            }
            Ok(resp) if !followed => {
                let status = resp.status();
                if (300..400).contains(&status) {
                    return Err(crate::cli_conn::redirected(conn, "/v1/stream", status, resp.header("location")));
                }
                let what = format!("{}, not a stream of events", resp.content_type());
                return Err(crate::cli_conn::not_crmhook(conn, "GET", "/v1/stream", status, &what));
            }
            Err(ureq::Error::Status(code @ (401 | 403), _)) => {
                bail!("the server refused the token ({code}); use the admin token (--token or CRMHOOK_ADMIN_TOKEN)")
            }
            Err(ureq::Error::Status(code, resp)) if !followed => {
                // The server's reason: too many streams open (`max_streams`), or of this key.
                let problem: Value = resp.into_json().unwrap_or(Value::Null);
                let title = problem["title"].as_str().unwrap_or("error");
                bail!("GET /v1/stream: {code} {title}: {}", problem["detail"].as_str().unwrap_or(""))
            }
            Err(e) if !followed => return Err(conn.unreachable(e)),
            Ok(_) | Err(_) => {}
        }
        if !said {
            eprintln!(
                "tail: the stream ended (the server stopped?); connecting again every {} s after seq {last} \
                 (Ctrl-C stops)",
                RECONNECT_EVERY.as_secs()
            );
            said = true;
        }
        std::thread::sleep(RECONNECT_EVERY);
    }
}

/// The seq of the log's newest event (0 when it has none).
fn newest_seq(conn: &Conn) -> anyhow::Result<u64> {
    let page = request(conn, "GET", "/v1/events?order=newest&limit=1", None)?;
    Ok(items(conn, &page, "events")?.first().and_then(|e| e["seq"].as_u64()).unwrap_or(0))
}

/// Prints one stream's events and attempts until it ends; `last` follows the events' seqs.
fn print_stream(conn: &Conn, resp: ureq::Response, last: &mut u64) -> anyhow::Result<()> {
    let mut kind = String::new();
    let stdout = std::io::stdout();
    // A read error is the stream's end as much as its close is.
    for line in std::io::BufReader::new(resp.into_reader()).lines().map_while(Result::ok) {
        if let Some(k) = line.strip_prefix("event: ") {
            kind = k.to_owned();
        } else if let Some(id) = line.strip_prefix("id: ") {
            if let Ok(seq) = id.trim().parse() {
                *last = seq;
            }
        } else if let Some(data) = line.strip_prefix("data: ") {
            let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
            let mut out = stdout.lock();
            if conn.json {
                writeln!(out, "{}", json_escaped(json!({"kind": kind, "record": v}).to_string()))?;
            } else if kind == "event" {
                let test = if v["test"] == true { "  (test)" } else { "" };
                writeln!(out, "event    seq {}  {}  {}{test}", s(&v["seq"]), s(&v["id"]), s(&v["type"]))?;
            } else {
                let code = v["status_code"].as_u64().map(|c| format!("HTTP {c}")).unwrap_or_else(|| s(&v["error"]));
                let test = if v["test"] == true { "  (test)" } else { "" };
                writeln!(
                    out,
                    "attempt  {} -> {}  #{}  {}  {}{test}",
                    s(&v["event_id"]),
                    s(&v["target_id"]),
                    s(&v["n"]),
                    code,
                    s(&v["result"])
                )?;
            }
            out.flush()?;
        }
    }
    Ok(())
}
