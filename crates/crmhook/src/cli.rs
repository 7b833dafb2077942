//! The operators' commands: they talk to a running server over its HTTP API (`--url`,
//! `--token`, or `CRMHOOK_URL`, `CRMHOOK_ADMIN_TOKEN`), print tables for people and JSON with
//! `--json`; `log export` reads a stopped server's data dir directly.

use std::io::Write;
use std::process::ExitCode;

use anyhow::bail;
use clap::Subcommand;
use crmhook_server::api::views::{AttemptView, EventView};
use serde_json::{json, Value};

pub(crate) use crate::cli_conn::{call, items, query, request, request_done, segment, Conn, TARGET};
pub(crate) use crate::cli_text::{json_escaped, visible, visible_lines};

#[derive(Subcommand)]
pub enum Targets {
    /// Every target, with its state and what it owes.
    List,
    /// One target: its settings, health and what it owes.
    Show { id: String },
    /// Create a target; its secret is printed this once.
    Create {
        /// A name of your own (1 to 200 characters).
        #[arg(long)]
        name: String,
        /// Where deliveries go (`--url` is the crmhook server).
        #[arg(long = "target-url")]
        target_url: String,
        /// `Name: value` (or `Name=value`), repeatable: a header sent with every delivery.
        #[arg(long = "header")]
        headers: Vec<String>,
        /// How long an attempt may take, in ms (1 to 300000; default 2000).
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// Comma-separated delays in ms between attempts (`none`: one attempt, no retry; default
        /// 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h).
        #[arg(long)]
        retry_schedule_ms: Option<String>,
        /// One delivery at a time, in log order.
        #[arg(long)]
        ordered: bool,
        /// The wrapping deliveries get (`none`, the default: each CRM's own; refused until
        /// 2026-12-07).
        #[arg(long, value_enum)]
        format: Option<crate::cli_edit::Format>,
        /// Bytes of each answer's body kept with its attempt (0 to 4096; default 4096).
        #[arg(long)]
        response_body_bytes: Option<u32>,
        /// At most this many attempts a second to this target (1 to 10000; default or `none`: no
        /// limit).
        #[arg(long)]
        rate_limit_per_s: Option<String>,
    },
    /// Delete a target, its subscriptions and what it owes.
    Delete { id: String },
    /// A new secret (printed once); the old one keeps signing for 24 h.
    RotateSecret { id: String },
    /// Resume deliveries to a disabled target (what it owes is sent).
    Enable { id: String },
    /// Pause deliveries to a target (what it owes is kept).
    Disable { id: String },
    /// Change a target: only the fields given (e.g. `--timeout-ms 5000 --enabled false`).
    Update {
        id: String,
        #[command(flatten)]
        changes: crate::cli_edit::TargetChanges,
    },
    /// What it owes now, its last success and failure, its attempts over the last hour and day.
    Stats { id: String },
    /// Send the target a sample event now, once, and print the attempt: its status, latency
    /// and what the receiver answered.
    Test {
        id: String,
        /// The sample's event type (default: the target's format's first, `crm_field_update` or
        /// `Opportunity.Update`).
        #[arg(long = "type")]
        event_type: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum Deliveries {
    /// A target's deliveries.
    List {
        #[arg(long)]
        target: String,
        /// pending, delivered or dead.
        #[arg(long)]
        status: Option<String>,
        /// Start after this seq (the `more: --after …` of the previous page).
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Subcommand)]
pub enum Log {
    /// Dump the event log of a stopped server as JSON lines.
    Export {
        /// The stopped server's data dir.
        #[arg(long, default_value = "./data/db")]
        data_dir: std::path::PathBuf,
    },
}

pub(crate) fn print_json(v: &Value) -> anyhow::Result<ExitCode> {
    say!("{}", json_escaped(serde_json::to_string_pretty(v)?));
    Ok(ExitCode::SUCCESS)
}

/// Prints rows as aligned columns, each cell as `visible` shows it.
pub(crate) fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let rows: Vec<Vec<String>> =
        rows.into_iter().map(|row| row.iter().map(|cell| visible(cell).into_owned()).collect()).collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        say!("{}", padded.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_uppercase()).collect());
    if rows.is_empty() {
        say!("(none)");
    }
    for row in rows {
        line(row);
    }
}

/// A value of the server's answer as one line of text for people (`visible`).
pub(crate) fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => visible(s).into_owned(),
        Value::Array(a) if a.is_empty() => "-".into(),
        Value::Array(a) => a.iter().map(s).collect::<Vec<_>>().join(","),
        other => visible(&other.to_string()).into_owned(),
    }
}

/// The hint that ends a page that has more: `more: --after <next>`, with `--newest` and the
/// flags given that choose what is listed (each value as one shell word), so that it is the next
/// page of the same listing (until 2026-12-07 it said `--after` alone, and the next page was of
/// everything).
pub(crate) fn more(next: &str, newest: bool, flags: &[(&str, Option<String>)]) {
    let mut line = format!("more: --after {next}");
    if newest {
        line.push_str(" --newest");
    }
    for (flag, value) in flags {
        if let Some(value) = value {
            line.push_str(&format!(" {flag} {}", crate::shell_word(value)));
        }
    }
    say!("{line}");
}

/// One attempt for people: its number, time, answer and duration, what it led to; then why it
/// failed and what the receiver answered (headers kept, and the body), each line indented by
/// `indent`.
pub(crate) fn print_attempt(a: &Value, indent: &str) {
    let what = a["status_code"].as_u64().map(|c| format!("HTTP {c}")).unwrap_or_else(|| "no answer".into());
    say!("{indent}#{} {} {} {} ms  {}", s(&a["n"]), s(&a["at"]), what, s(&a["duration_ms"]), s(&a["result"]));
    if let Some(error) = a["error"].as_str() {
        say!("{indent}   error: {}", visible(error));
    }
    let r = &a["response"];
    if r.is_object() {
        let headers: Vec<String> = r["headers"]
            .as_object()
            .map(|h| h.iter().map(|(k, v)| format!("{}: {}", visible(k), visible(v.as_str().unwrap_or("")))).collect())
            .unwrap_or_default();
        if !headers.is_empty() {
            say!("{indent}   headers: {}", headers.join("; "));
        }
        let body = r["body"].as_str().unwrap_or("");
        let cut = if r["body_truncated"] == true { " (truncated)" } else { "" };
        if body.is_empty() {
            say!("{indent}   body: none{cut}");
        } else {
            // Lines as the receiver sent them; `say!` escapes what is not text (`visible_lines`).
            say!("{indent}   body{cut}:");
            for line in body.lines() {
                say!("{indent}     {line}");
            }
        }
    }
}

/// The columns of `targets list` and of one target shown.
const TARGET_COLUMNS: [&str; 9] = ["id", "name", "url", "state", "ordered", "pending", "retrying", "failing", "dead"];

/// One row per target: its health (what it is owed, how much of it waits for a retry, failures in
/// a row, dead deliveries) says whether it is stuck, e.g. with retries waiting (`crmhook replay
/// --status pending`).
fn target_rows(list: &[Value]) -> Vec<Vec<String>> {
    list.iter()
        .map(|t| {
            let state = if t["enabled"] == false { "disabled" } else { "enabled" };
            let h = &t["health"];
            vec![
                s(&t["id"]),
                s(&t["name"]),
                s(&t["url"]),
                state.to_owned(),
                s(&t["ordered"]),
                s(&h["pending"]),
                s(&h["retrying"]),
                s(&h["failures_in_a_row"]),
                s(&h["dead"]),
            ]
        })
        .collect()
}

pub fn targets(conn: &Conn, cmd: Targets) -> anyhow::Result<ExitCode> {
    let shown = |v: Value| -> anyhow::Result<ExitCode> {
        if conn.json {
            return print_json(&v);
        }
        table(&TARGET_COLUMNS, target_rows(std::slice::from_ref(&v)));
        // The settings the table has no room for (what `targets update` changes).
        say!(
            "settings: timeout_ms={} retry_schedule_ms={} ordered={} format={} rate_limit_per_s={} \
             response_body_bytes={}",
            s(&v["timeout_ms"]),
            if v["retry_schedule_ms"].as_array().is_some_and(Vec::is_empty) {
                "none".into()
            } else {
                s(&v["retry_schedule_ms"])
            },
            s(&v["ordered"]),
            s(&v["format"]),
            s(&v["rate_limit_per_s"]),
            s(&v["response_body_bytes"]),
        );
        if let Some(headers) = v["headers"].as_object().filter(|h| !h.is_empty()) {
            let names: Vec<&str> = headers.keys().map(String::as_str).collect();
            say!("headers: {}  (values are write-only)", visible(&names.join(", ")));
        }
        if let Some(secret) = v["secret"].as_str() {
            say!("secret: {secret}  (shown only this once)");
        }
        if let Some(reason) = v["disabled_reason"].as_str() {
            say!("disabled: {}", visible(reason));
        }
        if let Some(until) = v["health"]["blocked_by_retries_until"].as_str() {
            say!(
                "waiting for retries until {until}: its window is full of them and newer events wait; \
                 once the receiver answers, `crmhook replay --target {} --status pending` sends them now",
                s(&v["id"])
            );
        } else if let (Some(n @ 1..), Some(next)) =
            (v["health"]["retrying"].as_u64(), v["health"]["next_retry_at"].as_str())
        {
            say!(
                "{n} waiting for a retry, the next at {next}; once the receiver answers, \
                 `crmhook replay --target {} --status pending` sends them now",
                s(&v["id"])
            );
        }
        Ok(ExitCode::SUCCESS)
    };
    match cmd {
        Targets::List => {
            let v = request(conn, "GET", "/v1/targets", None)?;
            let list = items(conn, &v, "targets")?;
            if conn.json {
                return print_json(&v);
            }
            table(&TARGET_COLUMNS, target_rows(list));
            Ok(ExitCode::SUCCESS)
        }
        Targets::Show { id } => shown(request(conn, "GET", &format!("/v1/targets/{}", segment(&TARGET, &id)?), None)?),
        Targets::Create {
            name,
            target_url,
            headers,
            timeout_ms,
            retry_schedule_ms,
            ordered,
            format,
            response_body_bytes,
            rate_limit_per_s,
        } => {
            let mut body = json!({"name": name, "url": target_url, "ordered": ordered});
            if !headers.is_empty() {
                let mut map = serde_json::Map::new();
                for h in headers {
                    let (k, v) = crate::cli_edit::header(&h)?;
                    map.insert(k, json!(v));
                }
                body["headers"] = Value::Object(map);
            }
            if let Some(t) = timeout_ms {
                body["timeout_ms"] = json!(t);
            }
            if let Some(r) = retry_schedule_ms {
                body["retry_schedule_ms"] = crate::cli_edit::schedule(&r)?;
            }
            if let Some(f) = format {
                body["format"] = f.value();
            }
            if let Some(n) = response_body_bytes {
                body["response_body_bytes"] = json!(n);
            }
            if let Some(n) = rate_limit_per_s {
                body["rate_limit_per_s"] = crate::cli_edit::rate_limit(&n)?;
            }
            shown(request(conn, "POST", "/v1/targets", Some(&body))?)
        }
        Targets::Delete { id } => {
            request_done(conn, "DELETE", &format!("/v1/targets/{}", segment(&TARGET, &id)?))?;
            say!("deleted {id}");
            Ok(ExitCode::SUCCESS)
        }
        Targets::RotateSecret { id } => {
            shown(request(conn, "POST", &format!("/v1/targets/{}/rotate-secret", segment(&TARGET, &id)?), None)?)
        }
        Targets::Enable { id } => {
            let path = format!("/v1/targets/{}", segment(&TARGET, &id)?);
            shown(request(conn, "PATCH", &path, Some(&json!({"enabled": true})))?)
        }
        Targets::Disable { id } => {
            let path = format!("/v1/targets/{}", segment(&TARGET, &id)?);
            shown(request(conn, "PATCH", &path, Some(&json!({"enabled": false})))?)
        }
        Targets::Update { id, changes } => shown(crate::cli_edit::update_target(conn, &id, changes)?),
        Targets::Stats { id } => {
            let v = request(conn, "GET", &format!("/v1/targets/{}/stats", segment(&TARGET, &id)?), None)?;
            if conn.json {
                return print_json(&v);
            }
            let stats = target_stats(&v);
            say!("{}", stats.strip_suffix('\n').unwrap_or(&stats));
            Ok(ExitCode::SUCCESS)
        }
        Targets::Test { id, event_type } => {
            let body = event_type.map_or_else(|| json!({}), |t| json!({"type": t}));
            let v = request(conn, "POST", &format!("/v1/targets/{}/test", segment(&TARGET, &id)?), Some(&body))?;
            // 1 when the attempt was not delivered, with `--json` too (until 2026-12-07 `--json`
            // exited 0 whatever the answer).
            let code = if v["attempt"]["result"] == "delivered" { ExitCode::SUCCESS } else { ExitCode::FAILURE };
            if conn.json {
                print_json(&v)?;
                return Ok(code);
            }
            let e = &v["event"];
            say!("test event {}  seq {}  {}", s(&e["id"]), s(&e["seq"]), s(&e["type"]));
            print_attempt(&v["attempt"], "");
            Ok(code)
        }
    }
}

/// `crmhook targets stats`: a target's figures as lines of text.
fn target_stats(v: &Value) -> String {
    let or_none = |x: &Value| x.as_str().map_or_else(|| "none".to_owned(), |x| visible(x).into_owned());
    let mut out = format!("backlog: {}", v["backlog"]);
    if let (Some(at), Some(age)) = (v["backlog_oldest_at"].as_str(), v["backlog_age_ms"].as_u64()) {
        out.push_str(&format!(" (oldest received {at}, {:.1} s ago)", age as f64 / 1000.0));
    }
    out.push_str(&format!("\nlast success: {}\n", or_none(&v["last_success_at"])));
    let failure = &v["last_failure"];
    match failure["at"].as_str() {
        Some(at) => out.push_str(&format!("last failure: {at} {}\n", or_none(&failure["error"]))),
        None => out.push_str("last failure: none\n"),
    }
    for (label, field) in [("last hour", "minutes"), ("last 24 h", "days")] {
        let total = |count: &str| -> u64 {
            v[field].as_array().map_or(0, |b| b.iter().filter_map(|x| x[count].as_u64()).sum())
        };
        out.push_str(&format!(
            "{label}: {} succeeded, {} failed, {} dead\n",
            total("succeeded"),
            total("failed"),
            total("dead")
        ));
    }
    out
}

pub fn deliveries(conn: &Conn, cmd: Deliveries) -> anyhow::Result<ExitCode> {
    let Deliveries::List { target, status, after, limit } = cmd;
    let q =
        query(&[("status", status.clone()), ("after", Some(after.to_string())), ("limit", Some(limit.to_string()))]);
    let v = request(conn, "GET", &format!("/v1/targets/{}/deliveries{q}", segment(&TARGET, &target)?), None)?;
    let list = items(conn, &v, "deliveries")?;
    if conn.json {
        return print_json(&v);
    }
    let rows = list
        .iter()
        .map(|d| {
            let attempts = d["attempts"].as_array().cloned().unwrap_or_default();
            let last = attempts.last().cloned().unwrap_or(Value::Null);
            let what = last["status_code"].as_u64().map(|c| format!("HTTP {c}")).unwrap_or_else(|| s(&last["error"]));
            vec![s(&d["seq"]), s(&d["event_id"]), s(&d["type"]), s(&d["status"]), attempts.len().to_string(), what]
        })
        .collect();
    table(&["seq", "event", "type", "status", "attempts", "last"], rows);
    if let Some(next) = v["next_after"].as_u64() {
        let limit = (limit != 50).then(|| limit.to_string());
        more(&next.to_string(), false, &[("--target", Some(target)), ("--status", status), ("--limit", limit)]);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn replay(
    conn: &Conn,
    target: &str,
    status: &str,
    since: Option<String>,
    until: Option<String>,
) -> anyhow::Result<ExitCode> {
    let mut body = json!({"status": status});
    for (name, time) in [("since", since), ("until", until)] {
        if let Some(t) = time {
            body[name] = json!(t);
        }
    }
    let v = request(conn, "POST", &format!("/v1/targets/{}/replay", segment(&TARGET, target)?), Some(&body))?;
    if conn.json {
        return print_json(&v);
    }
    say!("queued {}", s(&v["queued"]));
    Ok(ExitCode::SUCCESS)
}

/// Refuses a directory that is not an existing crmhook data dir before the store is opened:
/// opening one creates a database wherever it is pointed. A data dir is a directory holding
/// sled's `conf` and `db` files (crmhook keeps its log in sled).
fn check_data_dir(data_dir: &std::path::Path) -> anyhow::Result<()> {
    let shown = data_dir.display();
    match std::fs::metadata(data_dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!("no data dir at {shown}"),
        Err(e) => bail!("cannot read {shown}: {e}"),
        Ok(m) if !m.is_dir() => bail!("{shown} is not a directory, so not a crmhook data dir"),
        Ok(_) => {}
    }
    let is_file = |name: &str| std::fs::metadata(data_dir.join(name)).is_ok_and(|m| m.is_file());
    if !is_file("conf") || !is_file("db") {
        bail!(
            "{shown} is not a crmhook data dir (it has no event log: sled's `conf` and `db` files); \
             nothing was written there. Pass the `data_dir` the server runs with"
        );
    }
    Ok(())
}

/// Offline: the event log as JSON lines, one event per line with its deliveries' attempts.
pub fn export(data_dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    check_data_dir(data_dir)?;
    // What opening the store writes in the data dir (a sled snapshot) is this user's alone, as
    // the server's files are (docs/SECURITY.md); it was 0644 until 2026-12-07.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let store = crmhook_store::Store::open(data_dir).map_err(|e| match e {
        crmhook_store::StoreError::InUse => anyhow::anyhow!("cannot open {}: {e}; stop it first", data_dir.display()),
        e => anyhow::anyhow!("cannot open {}: {e} (is the server still running? stop it first)", data_dir.display()),
    })?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for event in store.events_from(1) {
        let e = event?;
        // Each attempt as the API shows it (`AttemptView`: `status_code`, `error` in words,
        // `result`, `next_attempt_at`, …), with the target it was for.
        let attempts = store
            .attempts(e.seq)?
            .into_iter()
            .map(|(t, a)| {
                let mut attempt = serde_json::Map::from_iter([("target_id".to_owned(), json!(t))]);
                if let Value::Object(view) = serde_json::to_value(AttemptView::from(&a))? {
                    attempt.extend(view);
                }
                Ok(Value::Object(attempt))
            })
            .collect::<anyhow::Result<Vec<Value>>>()?;
        // The event as the API shows it (`source_id` and `test` when they apply), then its attempts.
        let mut line = serde_json::to_value(EventView::from(&e))?;
        line["attempts"] = Value::Array(attempts);
        // DEL and C1 escaped too (serde_json escapes C0 only), as `--json` writes them.
        writeln!(out, "{}", json_escaped(line.to_string()))?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
