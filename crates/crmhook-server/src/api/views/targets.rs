//! Targets: their views (headers redacted), and their health.

use std::borrow::Cow;

use crmhook_core::time::{now_ms, rfc3339};
use crmhook_core::{Target, TargetId};
use crmhook_store::Disabled;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crmhook_dispatch::metrics::Health;

// ---- targets -------------------------------------------------------------------------------

/// What every answer shows instead of a target's header value.
pub const REDACTED: &str = "<redacted>";

/// A target's `headers`, as an object in the order they were given, each value shown as
/// [`REDACTED`]: header values often hold a receiver's credentials, so they are write-only
/// (set by `POST` and `PATCH`, sent with each delivery, never shown again).
#[derive(Debug)]
pub struct Headers<'a>(pub &'a [(String, String)]);

impl Serialize for Headers<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, _) in self.0 {
            map.serialize_entry(name, REDACTED)?;
        }
        map.end()
    }
}

/// A `POST` or `PATCH` may send [`REDACTED`] back as a header's value (a client that edits what
/// it read): that header keeps the value it has in `current` (the same name, in any case). A
/// header that has no current value cannot take the placeholder: 422 on `headers.<name>`.
pub fn keep_redacted(current: Option<&Target>, headers: &mut [(String, String)]) -> Result<(), crate::error::ApiError> {
    for (name, value) in headers.iter_mut().filter(|(_, v)| v == REDACTED) {
        let kept = current
            .and_then(|t| t.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)))
            .map(|(_, v)| v.clone())
            .ok_or_else(|| {
                crate::error::ApiError::unprocessable(
                    &format!("headers.{name}"),
                    format!("`{REDACTED}` keeps a header's current value, and `{name}` has none; send its value"),
                )
            })?;
        *value = kept;
    }
    Ok(())
}

/// A target's health, from the store and this process's counters.
#[derive(Debug, Serialize)]
pub struct TargetHealth {
    pub pending: u64,
    pub dead: u64,
    pub last_success_at: Option<String>,
    pub failures_in_a_row: u64,
    /// While the window is full of deliveries waiting for retries (newer events wait behind
    /// them): when the next is due. `null` otherwise, and on a cluster node that does not
    /// deliver the target.
    pub blocked_by_retries_until: Option<String>,
    /// Pending deliveries that failed and wait for their next attempt, and when the first of them
    /// is due (0 and `null` on a cluster node that does not deliver the target).
    pub retrying: u64,
    pub next_retry_at: Option<String>,
}

impl TargetHealth {
    pub fn new((pending, dead): (u64, u64), health: &Health) -> Self {
        TargetHealth {
            pending,
            dead,
            last_success_at: health.last_success_ms.map(rfc3339),
            failures_in_a_row: health.failures_in_a_row,
            blocked_by_retries_until: health.blocked_until_ms.map(rfc3339),
            retrying: health.retrying,
            next_retry_at: health.next_retry_ms.map(rfc3339),
        }
    }
}

/// A target.
#[derive(Debug, Serialize)]
pub struct TargetView<'a> {
    pub id: &'a TargetId,
    pub name: &'a str,
    pub url: Cow<'a, str>,
    pub headers: Headers<'a>,
    pub timeout_ms: u64,
    pub retry_schedule_ms: &'a [u64],
    pub ordered: bool,
    pub format: Option<&'static str>,
    /// How many bytes of each answer's body are kept with its attempt.
    pub response_body_bytes: u32,
    /// At most this many attempts start in a second; `null`: no limit.
    pub rate_limit_per_s: Option<u32>,
    pub created_at: String,
    pub updated_at: String,
    /// While the secret before the last rotation still signs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at: Option<String>,
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<&'a str>,
    /// Only when it is created and when its secret is rotated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<&'a str>,
    /// Absent from the creation's answer (nothing is known yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<TargetHealth>,
}

impl<'a> TargetView<'a> {
    pub fn new(t: &'a Target, disabled: Option<&'a Disabled>, show_secret: bool) -> Self {
        TargetView {
            id: &t.id,
            name: &t.name,
            url: Cow::Borrowed(&t.url),
            headers: Headers(&t.headers),
            timeout_ms: t.timeout_ms,
            retry_schedule_ms: &t.retry_schedule_ms,
            ordered: t.ordered,
            format: t.format.map(|f| f.as_str()),
            response_body_bytes: t.response_body_bytes,
            rate_limit_per_s: t.rate_limit_per_s,
            created_at: rfc3339(t.created_at_ms),
            updated_at: rfc3339(t.updated_at_ms),
            previous_secret_expires_at: t
                .previous_secret
                .as_ref()
                .filter(|(_, until)| *until > now_ms())
                .map(|(_, until)| rfc3339(*until)),
            enabled: disabled.is_none(),
            disabled_at: disabled.map(|d| rfc3339(d.at_ms)),
            disabled_reason: disabled.map(|d| d.reason.as_str()),
            secret: show_secret.then_some(t.secret.as_str()),
            health: None,
        }
    }

    /// The view with the URL's user info and query redacted (what may hold a credential).
    pub fn without_credentials(mut self) -> Self {
        self.url = Cow::Owned(crate::api::audit::url_without_credentials(&self.url));
        self
    }

    pub fn with_health(self, health: TargetHealth) -> Self {
        TargetView { health: Some(health), ..self }
    }
}

/// `GET /v1/targets`.
#[derive(Debug, Serialize)]
pub struct Targets<'a> {
    pub targets: Vec<TargetView<'a>>,
}
