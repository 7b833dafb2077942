//! The operators' commands for sources (where the CRMs post: `crmhook sources …`), the
//! quarantine of what they posted that was not an event (`crmhook rejected …`), and the audit
//! trail of admin changes (`crmhook audit`). Same style as the other commands: tables for
//! people, JSON with `--json`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::bail;
use clap::{Subcommand, ValueEnum};
use serde_json::{json, Value};

use crate::cli::{
    call, items, more, print_json, query, request, request_done, s, segment, table, visible, visible_lines, Conn,
};
use crate::cli_conn::{encoded, REJECTED, SOURCE};

/// Which CRM posts to a source.
#[derive(Clone, Copy, ValueEnum)]
pub enum Kind {
    /// MAIA: signs each webhook with `X-Maia-Signature`, keyed with the secret its Webhook
    /// Center shows.
    Maia,
    /// Maximizer: authenticated by a key crmhook generates (`?key=` in the URL).
    Maximizer,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Maia => "maia",
            Kind::Maximizer => "maximizer",
        }
    }
}

#[derive(Subcommand)]
pub enum Sources {
    /// The sources, with their ingest URLs.
    List,
    /// One source: its ingest URL and how to connect its CRM.
    Show { id: String },
    /// Create a source; a maximizer source's key is printed this once.
    Create {
        /// A name of your own (1 to 200 characters).
        #[arg(long)]
        name: String,
        /// Which CRM posts to it.
        #[arg(long, value_enum)]
        kind: Kind,
        /// The secret MAIA's Webhook Center shows (maia sources only).
        #[arg(long)]
        maia_secret: Option<String>,
    },
    /// Rename a source or set its MAIA secret.
    Update {
        id: String,
        /// A new name.
        #[arg(long)]
        name: Option<String>,
        /// The secret MAIA's Webhook Center shows (maia sources only).
        #[arg(long, conflicts_with = "clear_maia_secret")]
        maia_secret: Option<String>,
        /// Remove the MAIA secret: MAIA's posts are refused until a new one is set.
        #[arg(long)]
        clear_maia_secret: bool,
    },
    /// Accept posts to the source's ingest URL again.
    Enable { id: String },
    /// Refuse posts to the source's ingest URL (401), keeping the source.
    Disable { id: String },
    /// Delete a source: its ingest URL answers 401; the events it posted stay in the log.
    Delete { id: String },
    /// A new key for a maximizer source (printed once); the old one stops working at once.
    RotateKey { id: String },
}

#[derive(Subcommand)]
pub enum Rejected {
    /// What sources posted that was not an event, oldest first.
    List {
        /// Only what this source (`src_…`) posted.
        #[arg(long)]
        source: Option<String>,
        /// Start after this rejected piece (`rej_…`).
        #[arg(long)]
        after: Option<String>,
        /// At most this many (1 to 1000; the server's default is 100).
        #[arg(long)]
        limit: Option<u32>,
    },
    /// One rejected piece: why, and the exact text that was posted.
    Show { id: String },
    /// Read a rejected piece again with today's rules and log it if it is an event now
    /// (exit code 1 if it still is not).
    Retry { id: String },
}

const SOURCE_HEADERS: [&str; 5] = ["id", "name", "kind", "enabled", "ingest_url"];

fn source_rows(list: &[Value]) -> Vec<Vec<String>> {
    list.iter()
        .map(|v| vec![s(&v["id"]), s(&v["name"]), s(&v["kind"]), s(&v["enabled"]), s(&v["ingest_url"])])
        .collect()
}

/// One source as a one-row table, then its key (shown once) and what is left to set up.
fn show_source(conn: &Conn, v: &Value, created: bool) -> anyhow::Result<ExitCode> {
    if conn.json {
        return print_json(v);
    }
    table(&SOURCE_HEADERS, source_rows(std::slice::from_ref(v)));
    let id = s(&v["id"]);
    let ingest_url = s(&v["ingest_url"]);
    if created {
        say!("ingest URL: {ingest_url}");
    }
    if let Some(key) = v["key"].as_str() {
        say!("key: {key}  (shown only this once; `crmhook sources rotate-key {id}` makes a new one)");
        say!("Maximizer's target URL: {ingest_url}?key={}", encoded(key));
    }
    if v["kind"] == "maia" {
        if v["maia_secret_set"] == false {
            say!(
                "note: no MAIA secret yet: MAIA's posts are refused until \
                 `crmhook sources update {id} --maia-secret <the secret MAIA's Webhook Center shows>`"
            );
        } else if created {
            say!("MAIA's webhook URL: {ingest_url}  (MAIA signs each post with X-Maia-Signature)");
        } else {
            say!("MAIA secret: set (crmhook checks each post's X-Maia-Signature with it)");
        }
    }
    if v["enabled"] == false {
        say!("disabled: posts to the ingest URL are refused (401)");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn sources(conn: &Conn, cmd: Sources) -> anyhow::Result<ExitCode> {
    let path = |id: &str| anyhow::Ok(format!("/v1/sources/{}", segment(&SOURCE, id)?));
    match cmd {
        Sources::List => {
            let v = request(conn, "GET", "/v1/sources", None)?;
            let list = items(conn, &v, "sources")?;
            if conn.json {
                return print_json(&v);
            }
            table(&SOURCE_HEADERS, source_rows(list));
            Ok(ExitCode::SUCCESS)
        }
        Sources::Show { id } => show_source(conn, &request(conn, "GET", &path(&id)?, None)?, false),
        Sources::Create { name, kind, maia_secret } => {
            let mut body = json!({"name": name, "kind": kind.as_str()});
            if let Some(secret) = maia_secret {
                body["maia_secret"] = json!(secret);
            }
            show_source(conn, &request(conn, "POST", "/v1/sources", Some(&body))?, true)
        }
        Sources::Update { id, name, maia_secret, clear_maia_secret } => {
            let mut body = json!({});
            if let Some(name) = name {
                body["name"] = json!(name);
            }
            if let Some(secret) = maia_secret {
                body["maia_secret"] = json!(secret);
            }
            if clear_maia_secret {
                body["maia_secret"] = Value::Null;
            }
            if body.as_object().is_some_and(serde_json::Map::is_empty) {
                bail!("nothing to update: give --name, --maia-secret or --clear-maia-secret");
            }
            show_source(conn, &request(conn, "PATCH", &path(&id)?, Some(&body))?, false)
        }
        Sources::Enable { id } => {
            show_source(conn, &request(conn, "PATCH", &path(&id)?, Some(&json!({"enabled": true})))?, false)
        }
        Sources::Disable { id } => {
            show_source(conn, &request(conn, "PATCH", &path(&id)?, Some(&json!({"enabled": false})))?, false)
        }
        Sources::Delete { id } => {
            request_done(conn, "DELETE", &path(&id)?)?;
            say!("deleted {id}");
            Ok(ExitCode::SUCCESS)
        }
        Sources::RotateKey { id } => {
            show_source(conn, &request(conn, "POST", &format!("{}/rotate-key", path(&id)?), None)?, false)
        }
    }
}

/// The first `max` characters of `text` on one line, with `…` when cut.
fn cut(text: &str, max: usize) -> String {
    let line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if line.chars().count() <= max {
        return line;
    }
    let mut short: String = line.chars().take(max.saturating_sub(1)).collect();
    short.push('…');
    short
}

pub fn rejected(conn: &Conn, cmd: Rejected) -> anyhow::Result<ExitCode> {
    match cmd {
        Rejected::List { source, after, limit } => {
            let limit = limit.map(|l| l.to_string());
            let q = query(&[("source_id", source.clone()), ("after", after), ("limit", limit.clone())]);
            let v = request(conn, "GET", &format!("/v1/rejected{q}"), None)?;
            let list = items(conn, &v, "rejected")?;
            if conn.json {
                return print_json(&v);
            }
            let rows = list
                .iter()
                .map(|r| {
                    vec![
                        s(&r["id"]),
                        s(&r["source_id"]),
                        s(&r["received_at"]),
                        s(&r["index"]),
                        cut(r["reason"].as_str().unwrap_or("-"), 60),
                    ]
                })
                .collect();
            table(&["id", "source", "received_at", "index", "reason"], rows);
            if let Some(next) = v["next_after"].as_str() {
                more(next, false, &[("--source", source), ("--limit", limit)]);
            }
            Ok(ExitCode::SUCCESS)
        }
        Rejected::Show { id } => {
            let r = request(conn, "GET", &format!("/v1/rejected/{}", segment(&REJECTED, &id)?), None)?;
            if conn.json {
                return print_json(&r);
            }
            let index = match r["index"].as_u64() {
                Some(i) => format!("element {i} of the request"),
                None => "the whole request".to_owned(),
            };
            say!(
                "{}  source {} ({})  received {}  {index}",
                s(&r["id"]),
                s(&r["source_id"]),
                s(&r["kind"]),
                s(&r["received_at"])
            );
            let retried = &r["retried"];
            if retried.is_object() {
                say!(
                    "retried {}: logged as {} (seq {})",
                    s(&retried["at"]),
                    s(&retried["event_id"]),
                    s(&retried["seq"])
                );
            }
            say!("reason: {}", s(&r["reason"]));
            let body = r["body"].as_str().unwrap_or("");
            say!("body ({} bytes as posted):", body.len());
            let mut out = std::io::stdout().lock();
            out.write_all(visible_lines(body).as_bytes())?;
            if !body.ends_with('\n') {
                out.write_all(b"\n")?;
            }
            if body.contains('\u{FFFD}') {
                writeln!(out, "note: the body is not all UTF-8 text; `--json` has its exact bytes in `body_base64`")?;
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Rejected::Retry { id } => {
            let path = format!("/v1/rejected/{}/retry", segment(&REJECTED, &id)?);
            let (code, v) = call(conn, "POST", &path, None)?;
            match code {
                200..=299 => {
                    let v = crate::cli_conn::answer(conn, "POST", &path, code, v)?;
                    if conn.json {
                        return print_json(&v);
                    }
                    let duplicate = v["duplicates"].as_u64().unwrap_or(0) > 0;
                    for e in v["events"].as_array().cloned().unwrap_or_default() {
                        let what = if duplicate { "already logged" } else { "logged" };
                        say!("{what} {}  seq {}  {}", s(&e["id"]), s(&e["seq"]), s(&e["type"]));
                    }
                    Ok(ExitCode::SUCCESS)
                }
                422 => {
                    if conn.json {
                        print_json(&v)?;
                    } else {
                        say!("{}", visible(v["detail"].as_str().unwrap_or("still not an event")));
                    }
                    Ok(ExitCode::from(1))
                }
                _ => bail!(
                    "POST {path}: {code} {}: {}",
                    v["title"].as_str().unwrap_or("error"),
                    v["detail"].as_str().unwrap_or("")
                ),
            }
        }
    }
}

/// `crmhook audit`: a page of the audit trail.
pub fn audit(conn: &Conn, after: Option<String>, limit: Option<u32>, newest: bool) -> anyhow::Result<ExitCode> {
    let order = newest.then(|| "newest".to_owned());
    let limit = limit.map(|l| l.to_string());
    let q = query(&[("after", after), ("limit", limit.clone()), ("order", order)]);
    let v = request(conn, "GET", &format!("/v1/audit{q}"), None)?;
    let list = items(conn, &v, "entries")?;
    if conn.json {
        return print_json(&v);
    }
    let rows = list
        .iter()
        .map(|e| vec![s(&e["at"]), s(&e["who"]), s(&e["from"]), s(&e["action"]), s(&e["subject"])])
        .collect();
    table(&["at", "who", "from", "action", "subject"], rows);
    if let Some(next) = v["next_after"].as_str() {
        more(next, newest, &[("--limit", limit)]);
    }
    Ok(ExitCode::SUCCESS)
}
