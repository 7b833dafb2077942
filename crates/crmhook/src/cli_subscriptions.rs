//! `crmhook subscriptions …`: which events a target gets. List, show one with every condition it
//! holds, create, change (`cli_edit`), try conditions out (`preview`) and delete. Same style as the
//! other commands: tables for people, JSON with `--json`.

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::{json, Value};

use crate::cli::{items, json_escaped, print_json, query, request, request_done, s, segment, table, Conn};
use crate::cli_conn::SUBSCRIPTION;

#[derive(Subcommand)]
pub enum Subscriptions {
    /// Every subscription, or a target's.
    List {
        /// Only this target's.
        #[arg(long)]
        target: Option<String>,
    },
    /// One subscription and its conditions.
    Show { id: String },
    /// Subscribe a target to the events that meet every condition given (none: every event).
    Create {
        /// The target that gets the matching events.
        #[arg(long)]
        target: String,
        #[command(flatten)]
        conditions: crate::cli_edit::Conditions,
    },
    /// Delete a subscription (what its target owes is kept).
    Delete { id: String },
    /// Change a subscription: only the conditions given replace its own; `--clear` empties one.
    Update {
        id: String,
        /// Its target (it cannot change; giving its own is allowed).
        #[arg(long)]
        target: Option<String>,
        #[command(flatten)]
        conditions: crate::cli_edit::Conditions,
        /// A member to empty, repeatable.
        #[arg(long, value_enum)]
        clear: Vec<crate::cli_edit::Member>,
    },
    /// Which of the last events a subscription with these conditions would match, newest first.
    Preview {
        /// A target the subscription would be for (optional; it must exist).
        #[arg(long)]
        target: Option<String>,
        #[command(flatten)]
        conditions: crate::cli_edit::Conditions,
        /// How many of the latest events to read (server default 100, at most 1000).
        #[arg(long)]
        last: Option<u32>,
    },
}

/// The columns of `subscriptions list` and of one subscription shown.
const COLUMNS: [&str; 7] = ["id", "target", "event_types", "kanban_ids", "field_names", "version_major", "filters"];

/// One row per subscription: its lists, its `version_major`, and how many filters it has
/// (`subscriptions show` prints them).
fn rows(list: &[Value]) -> Vec<Vec<String>> {
    list.iter()
        .map(|x| {
            let filters = x["filters"].as_array().map_or(0, Vec::len);
            vec![
                s(&x["id"]),
                s(&x["target_id"]),
                s(&x["event_types"]),
                s(&x["kanban_ids"]),
                s(&x["field_names"]),
                s(&x["version_major"]),
                filters.to_string(),
            ]
        })
        .collect()
}

pub fn subscriptions(conn: &Conn, cmd: Subscriptions) -> anyhow::Result<ExitCode> {
    let v = match cmd {
        Subscriptions::List { target } => {
            let v = request(conn, "GET", &format!("/v1/subscriptions{}", query(&[("target_id", target)])), None)?;
            let list = items(conn, &v, "subscriptions")?;
            if conn.json {
                return print_json(&v);
            }
            table(&COLUMNS, rows(list));
            return Ok(ExitCode::SUCCESS);
        }
        Subscriptions::Show { id } => {
            request(conn, "GET", &format!("/v1/subscriptions/{}", segment(&SUBSCRIPTION, &id)?), None)?
        }
        Subscriptions::Create { target, conditions } => {
            let crate::cli_edit::Conditions { event_types, kanban_ids, field_names, filters, version_major } =
                conditions;
            let filters = crate::cli_edit::parse_filters(&filters)?;
            let mut body = json!({"target_id": target, "event_types": event_types, "kanban_ids": kanban_ids,
                                  "field_names": field_names, "filters": filters});
            if let Some(m) = version_major {
                body["version_major"] = json!(m);
            }
            request(conn, "POST", "/v1/subscriptions", Some(&body))?
        }
        Subscriptions::Delete { id } => {
            request_done(conn, "DELETE", &format!("/v1/subscriptions/{}", segment(&SUBSCRIPTION, &id)?))?;
            say!("deleted {id}");
            return Ok(ExitCode::SUCCESS);
        }
        Subscriptions::Update { id, target, conditions, clear } => {
            crate::cli_edit::update_subscription(conn, &id, target, conditions, &clear)?
        }
        Subscriptions::Preview { target, conditions, last } => {
            return crate::cli_edit::preview(conn, target, conditions, last)
        }
    };
    if conn.json {
        return print_json(&v);
    }
    shown(&v)
}

/// One subscription for people: its row, then each filter as compact JSON and when it was
/// created (until 2026-12-07 only the row, with the filters' count: what they were was not said).
fn shown(v: &Value) -> anyhow::Result<ExitCode> {
    table(&COLUMNS, rows(std::slice::from_ref(v)));
    for filter in v["filters"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        say!("filter: {}", json_escaped(serde_json::to_string(filter)?));
    }
    say!("created_at: {}", s(&v["created_at"]));
    Ok(ExitCode::SUCCESS)
}
