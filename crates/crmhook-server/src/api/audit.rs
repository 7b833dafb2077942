//! The audit trail at the edge: every admin change is recorded after it is made, and every
//! failed authentication (`auth.failed`, from `crate::api::auth`) as it is answered (who, from
//! where, what, the record before and after with its secrets left out), and `GET /v1/audit`
//! reads it back by page. The entries are the store's `U` records; retention removes them
//! with the events. Pages go oldest first, or newest first with `order=newest` (the console's
//! Audit view); either way `next_after`, passed as `after`, gives the next page in that order.
//!
//! An entry is written once its change is durable, in a write of its own: a crash between the
//! two can lose that one entry, never record a change that was not made. A failed audit write
//! is logged as an error and does not undo the change.

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};
use crmhook_core::time::{now_ms, rfc3339};
use crmhook_store::{AuditCursor, AuditEntry};
use serde::Serialize;
use serde_json::Value;

use crate::api::auth::Admin;
use crate::api::request::limit_param;
use crate::api::state::{AppState, State};
use crate::error::ApiError;

/// Members that hold secrets, left out of an entry's before and after.
const SECRET_MEMBERS: [&str; 4] = ["secret", "maia_secret", "key", "previous_secret"];

/// What is written of a record: its JSON view without secrets and with header values redacted.
pub(crate) fn scrubbed(view: &impl Serialize) -> Option<String> {
    let mut value = serde_json::to_value(view).ok()?;
    if let Value::Object(members) = &mut value {
        for name in SECRET_MEMBERS {
            members.remove(name);
        }
        if let Some(Value::String(url)) = members.get_mut("url") {
            *url = url_without_credentials(url);
        }
        if let Some(Value::Object(headers)) = members.get_mut("headers") {
            for v in headers.values_mut() {
                *v = Value::String("(redacted)".into());
            }
        }
    }
    Some(value.to_string())
}

/// A URL with what may hold a credential redacted: its user info and its query string.
pub(crate) fn url_without_credentials(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(q) = out.find('?') {
        out.replace_range(q.., "?(redacted)");
    }
    if let Some(scheme_end) = out.find("://").map(|i| i + 3) {
        let authority_end = out[scheme_end..].find(['/', '?']).map_or(out.len(), |i| scheme_end + i);
        if let Some(at) = out[scheme_end..authority_end].rfind('@') {
            out.replace_range(scheme_end..scheme_end + at, "(redacted)");
        }
    }
    out
}

/// Records one admin change, made by the key that called (`crate::api::auth::caller`).
pub(crate) async fn record(
    state: &AppState,
    req: &HttpRequest,
    action: &str,
    subject: &str,
    before: Option<String>,
    after: Option<String>,
) {
    let entry = AuditEntry {
        at_ms: now_ms(),
        who: crate::api::state::who(req),
        from: crate::api::client::client_ip(req).map(|a| a.to_string()),
        action: action.into(),
        subject: subject.into(),
        before,
        after,
    };
    if let Err(e) = state.store.audit(std::slice::from_ref(&entry)).await {
        tracing::error!(error = %e, action, subject, "writing an audit entry failed (the change itself was made)");
    }
}

/// Records a failed authentication (`auth.failed`: who is `unauthenticated`, the subject the
/// request's method and path, `after` the reason), written in the background: the 401 does
/// not wait for it.
pub(crate) fn auth_failed(state: &AppState, req: &HttpRequest, reason: &str) {
    let entry = AuditEntry {
        at_ms: now_ms(),
        who: "unauthenticated".into(),
        from: crate::api::client::client_ip(req).map(|a| a.to_string()),
        action: "auth.failed".into(),
        subject: format!("{} {}", req.method(), req.path()),
        before: None,
        after: Some(serde_json::json!({ "reason": reason }).to_string()),
    };
    let store = state.store.clone();
    actix_rt::spawn(async move {
        if let Err(e) = store.audit(std::slice::from_ref(&entry)).await {
            tracing::error!(error = %e, "writing the audit entry of a failed authentication failed");
        }
    });
}

#[derive(Serialize)]
struct EntryView<'a> {
    cursor: String,
    at: String,
    who: &'a str,
    from: Option<&'a str>,
    action: &'a str,
    subject: &'a str,
    before: Option<Value>,
    after: Option<Value>,
}

#[derive(Serialize)]
struct Page<'a> {
    entries: Vec<EntryView<'a>>,
    /// Where the next page starts (`?after=`), when this one is full.
    next_after: Option<String>,
}

/// `GET /v1/audit?after=<cursor>&limit=<n>&order=oldest|newest`: the audit trail, oldest first
/// (the default), or newest first; `after` is the last cursor of the previous page in the same
/// order (so with `newest`, the page holds the entries older than it).
pub(crate) async fn list_audit(
    _: Admin,
    query: web::Query<HashMap<String, String>>,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let text = |name: &str| query.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    let after = match text("after") {
        None => None,
        Some(a) => Some(AuditCursor::parse(a).ok_or_else(|| {
            ApiError::unprocessable("after", format!("`after` must be a cursor from an earlier page, not {a:?}"))
        })?),
    };
    let limit = limit_param(&query)?;
    let page = match query.get("order").map(String::as_str) {
        None | Some("" | "oldest") => state.store.audit_page(after, limit)?,
        Some("newest") => state.store.audit_page_newest(after, limit)?,
        Some(other) => {
            return Err(ApiError::unprocessable("order", format!("`order` must be oldest or newest, not {other:?}")))
        }
    };
    let json = |s: &Option<String>| s.as_deref().and_then(|s| serde_json::from_str(s).ok());
    let entries: Vec<EntryView<'_>> = page
        .iter()
        .map(|(cursor, e)| EntryView {
            cursor: cursor.to_text(),
            at: rfc3339(e.at_ms),
            who: &e.who,
            from: e.from.as_deref(),
            action: &e.action,
            subject: &e.subject,
            before: json(&e.before),
            after: json(&e.after),
        })
        .collect();
    let next_after = (entries.len() == limit).then(|| entries.last().map(|e| e.cursor.clone())).flatten();
    Ok(HttpResponse::Ok().json(Page { entries, next_after }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_a_url_are_redacted() {
        assert_eq!(url_without_credentials("https://r.example/hook"), "https://r.example/hook");
        assert_eq!(url_without_credentials("https://r.example/hook?token=abc"), "https://r.example/hook?(redacted)");
        assert_eq!(url_without_credentials("https://u:p@r.example/h?x=1"), "https://(redacted)@r.example/h?(redacted)");
        let view =
            serde_json::json!({"url": "http://127.0.0.1:9/a?k=s3cret", "secret": "whsec_x", "headers": {"A": "v"}});
        let text = scrubbed(&view).unwrap_or_default();
        assert!(!text.contains("s3cret") && !text.contains("whsec_x") && !text.contains("\"v\""), "{text}");
    }
}
