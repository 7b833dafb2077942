//! The operators' commands that change a target or a subscription in place, and try a
//! subscription out: `crmhook targets update`, `crmhook subscriptions update` (each a `PATCH`
//! of only the members given) and `crmhook subscriptions preview` (which of the last events a
//! subscription would match). Same style as the other commands: tables for people, JSON with
//! `--json`.

use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use serde_json::{json, Map, Value};

use crate::cli::{items, print_json, query, request, s, segment, table, Conn, TARGET};
use crate::cli_conn::SUBSCRIPTION;

/// What `crmhook targets update` changes: each flag given is one member of the `PATCH`.
#[derive(Args)]
pub struct TargetChanges {
    /// A new name (1 to 200 characters).
    #[arg(long)]
    name: Option<String>,
    /// Where deliveries go (`--url` is the crmhook server).
    #[arg(long = "target-url")]
    target_url: Option<String>,
    /// `Name=value` (or `Name: value`), repeatable: the target's headers become these. A value
    /// of `<redacted>` keeps that header's current value.
    #[arg(long = "header", conflicts_with = "clear_headers")]
    headers: Vec<String>,
    /// Remove every header.
    #[arg(long)]
    clear_headers: bool,
    /// How long an attempt may take, in ms (1 to 300000).
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Comma-separated delays in ms (`none`: one attempt, no retry).
    #[arg(long)]
    retry_schedule_ms: Option<String>,
    /// true: one delivery at a time, in log order.
    #[arg(long)]
    ordered: Option<bool>,
    /// The wrapping deliveries get (`none`: each CRM's own).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// false pauses deliveries, true resumes them.
    #[arg(long)]
    enabled: Option<bool>,
    /// At most this many attempts a second (1 to 10000; `none` lifts the limit).
    #[arg(long)]
    rate_limit_per_s: Option<String>,
    /// Bytes of each answer's body kept with its attempt (0 to 4096).
    #[arg(long)]
    response_body_bytes: Option<u32>,
}

/// A target's `format`, as `targets create` and `targets update` take it.
#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Maia,
    Maximizer,
    None,
}

impl Format {
    /// The API's value: `none` (each CRM's own) is `null`.
    pub(crate) fn value(self) -> Value {
        match self {
            Format::Maia => json!("maia"),
            Format::Maximizer => json!("maximizer"),
            Format::None => Value::Null,
        }
    }
}

/// A subscription's conditions, as `crmhook subscriptions create` takes them.
#[derive(Args)]
pub struct Conditions {
    /// An event type or pattern (`Opportunity.*`), repeatable: any of them.
    #[arg(long = "event-type")]
    pub event_types: Vec<String>,
    /// A MAIA `kanbanId`, repeatable: any of them.
    #[arg(long = "kanban-id")]
    pub kanban_ids: Vec<String>,
    /// A MAIA `fieldName` (of `crm_field_update`), repeatable: any of them.
    #[arg(long = "field-name")]
    pub field_names: Vec<String>,
    /// A filter as JSON, e.g. '{"path": "/Data/New/Revenue", "op": "gt", "value": 1000}',
    /// repeatable: all of them.
    #[arg(long = "filter")]
    pub filters: Vec<String>,
    /// Maximizer's `Data.Version` major number.
    #[arg(long)]
    pub version_major: Option<u32>,
}

/// `--filter` values, each parsed as JSON.
pub fn parse_filters(filters: &[String]) -> anyhow::Result<Vec<Value>> {
    filters.iter().map(|f| serde_json::from_str(f).with_context(|| format!("--filter {f:?} is not JSON"))).collect()
}

/// A subscription member `crmhook subscriptions update --clear` empties.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Member {
    EventTypes,
    KanbanIds,
    FieldNames,
    Filters,
    VersionMajor,
}

impl Member {
    fn name(self) -> &'static str {
        match self {
            Member::EventTypes => "event_types",
            Member::KanbanIds => "kanban_ids",
            Member::FieldNames => "field_names",
            Member::Filters => "filters",
            Member::VersionMajor => "version_major",
        }
    }
}

/// `Name=value` or `Name: value`: a header name holds neither `=` nor `:`, so the first of
/// them ends it.
pub(crate) fn header(h: &str) -> anyhow::Result<(String, String)> {
    let at = h.find(['=', ':']).with_context(|| format!("--header {h:?}: a header is `Name=value`"))?;
    let (name, value) = (h[..at].trim(), h[at + 1..].trim());
    if name.is_empty() {
        bail!("--header {h:?}: the header has no name");
    }
    Ok((name.to_owned(), value.to_owned()))
}

pub(crate) fn schedule(raw: &str) -> anyhow::Result<Value> {
    if raw.trim().is_empty() || raw.trim() == "none" {
        return Ok(json!([]));
    }
    let delays: Vec<u64> = raw
        .split(',')
        .map(|d| d.trim().parse().with_context(|| format!("--retry-schedule-ms: {d:?} is not a delay in ms")))
        .collect::<anyhow::Result<_>>()?;
    Ok(json!(delays))
}

/// The body of `PATCH /v1/targets/{id}` for these flags.
fn target_patch(c: TargetChanges) -> anyhow::Result<Map<String, Value>> {
    let mut body = Map::new();
    if let Some(name) = c.name {
        body.insert("name".into(), json!(name));
    }
    if let Some(url) = c.target_url {
        body.insert("url".into(), json!(url));
    }
    if c.clear_headers {
        body.insert("headers".into(), json!({}));
    } else if !c.headers.is_empty() {
        let mut map = Map::new();
        for h in &c.headers {
            let (name, value) = header(h)?;
            map.insert(name, json!(value));
        }
        body.insert("headers".into(), Value::Object(map));
    }
    if let Some(t) = c.timeout_ms {
        body.insert("timeout_ms".into(), json!(t));
    }
    if let Some(r) = c.retry_schedule_ms {
        body.insert("retry_schedule_ms".into(), schedule(&r)?);
    }
    if let Some(o) = c.ordered {
        body.insert("ordered".into(), json!(o));
    }
    if let Some(f) = c.format {
        body.insert("format".into(), f.value());
    }
    if let Some(e) = c.enabled {
        body.insert("enabled".into(), json!(e));
    }
    if let Some(r) = c.rate_limit_per_s {
        body.insert("rate_limit_per_s".into(), rate_limit(&r)?);
    }
    if let Some(n) = c.response_body_bytes {
        body.insert("response_body_bytes".into(), json!(n));
    }
    Ok(body)
}

/// `--rate-limit-per-s`: a number, or `none` (no limit: `null`). The server checks the range.
pub(crate) fn rate_limit(text: &str) -> anyhow::Result<Value> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("none") {
        return Ok(Value::Null);
    }
    let n: u64 = text.parse().with_context(|| format!("--rate-limit-per-s {text:?} is neither a number nor none"))?;
    Ok(json!(n))
}

/// `crmhook targets update`: answers the target as the server shows it after the change.
pub fn update_target(conn: &Conn, id: &str, changes: TargetChanges) -> anyhow::Result<Value> {
    let path = format!("/v1/targets/{}", segment(&TARGET, id)?);
    let body = target_patch(changes)?;
    if body.is_empty() {
        bail!("nothing to change: give at least one of {}", flags::<TargetChanges>(&[]));
    }
    request(conn, "PATCH", &path, Some(&Value::Object(body)))
}

/// The long flags of `A` and then `more`, as a list for people (`--name, --target-url, …`):
/// read from the flags themselves, so that the list names every one (`--response-body-bytes`
/// was left out of `targets update`'s until 2026-12-07).
fn flags<A: Args>(more: &[&str]) -> String {
    let command = A::augment_args(clap::Command::new("flags"));
    let own = command.get_arguments().filter_map(|a| a.get_long()).map(|l| format!("--{l}"));
    own.chain(more.iter().map(|m| (*m).to_owned())).collect::<Vec<_>>().join(", ")
}

/// The members of a subscription's body for the conditions given (only those given).
fn conditions(c: Conditions) -> anyhow::Result<Map<String, Value>> {
    let mut body = Map::new();
    for (name, list) in [("event_types", c.event_types), ("kanban_ids", c.kanban_ids), ("field_names", c.field_names)] {
        if !list.is_empty() {
            body.insert(name.into(), json!(list));
        }
    }
    if !c.filters.is_empty() {
        body.insert("filters".into(), json!(parse_filters(&c.filters)?));
    }
    if let Some(m) = c.version_major {
        body.insert("version_major".into(), json!(m));
    }
    Ok(body)
}

/// `crmhook subscriptions update`: answers the whole subscription after the change.
pub fn update_subscription(
    conn: &Conn,
    id: &str,
    target: Option<String>,
    given: Conditions,
    clear: &[Member],
) -> anyhow::Result<Value> {
    let path = format!("/v1/subscriptions/{}", segment(&SUBSCRIPTION, id)?);
    let mut body = conditions(given)?;
    if let Some(t) = target {
        body.insert("target_id".into(), json!(t));
    }
    for member in clear {
        if body.insert(member.name().into(), Value::Null).is_some_and(|v| !v.is_null()) {
            bail!("--clear {} and a value for it were both given", member.name().replace('_', "-"));
        }
    }
    if body.is_empty() {
        bail!("nothing to change: give at least one of {}", flags::<Conditions>(&["--clear"]));
    }
    request(conn, "PATCH", &path, Some(&Value::Object(body)))
}

/// `crmhook subscriptions preview`: which of the last events a subscription would match,
/// newest first.
pub fn preview(conn: &Conn, target: Option<String>, given: Conditions, last: Option<u32>) -> anyhow::Result<ExitCode> {
    let mut body = conditions(given)?;
    if let Some(t) = target {
        body.insert("target_id".into(), json!(t));
    }
    let q = query(&[("last", last.map(|n| n.to_string()))]);
    let v = request(conn, "POST", &format!("/v1/subscriptions/preview{q}"), Some(&Value::Object(body)))?;
    let list = items(conn, &v, "events")?;
    if conn.json {
        return print_json(&v);
    }
    let rows = list
        .iter()
        .map(|e| vec![s(&e["seq"]), s(&e["id"]), s(&e["type"]), s(&e["record_id"]), s(&e["received_at"])])
        .collect();
    table(&["seq", "id", "type", "record", "received_at"], rows);
    say!("matched {} of the last {} events", s(&v["matched"]), s(&v["scanned"]));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_read_either_separator_and_keep_the_rest_of_the_value() {
        assert_eq!(header("X-Key=k1").ok(), Some(("X-Key".into(), "k1".into())));
        assert_eq!(header("Authorization: Bearer a=b").ok(), Some(("Authorization".into(), "Bearer a=b".into())));
        assert_eq!(header("X-Sig=a:b").ok(), Some(("X-Sig".into(), "a:b".into())));
        assert!(header("nothing").is_err());
        assert!(header("=v").is_err());
    }

    #[test]
    fn nothing_to_change_names_every_flag() {
        let listed = flags::<TargetChanges>(&[]);
        assert!(listed.starts_with("--name, --target-url, --header, --clear-headers"), "{listed}");
        assert!(listed.ends_with("--rate-limit-per-s, --response-body-bytes"), "{listed}");
        let conditions = flags::<Conditions>(&["--clear"]);
        assert_eq!(conditions, "--event-type, --kanban-id, --field-name, --filter, --version-major, --clear");
    }

    #[test]
    fn a_schedule_is_delays_or_none() {
        assert_eq!(schedule("5000, 60000").ok(), Some(json!([5000, 60000])));
        assert_eq!(schedule("none").ok(), Some(json!([])));
        assert!(schedule("5s").is_err());
    }
}
