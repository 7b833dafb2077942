//! The typed bodies of the requests the API reads itself (redeliver, replay, a target's test and
//! patch): each refuses a member it does not know, and names the field at fault.

use serde_json::{Map, Value};

use crmhook_core::time::parse_rfc3339;
use crmhook_store::DeliveryStatus;

use crate::error::ApiError;

/// Refuses a member of an operator's request body other than `known` (422 naming it), as a
/// target's or a subscription's body does: a misspelt member would otherwise be read as absent.
fn known_members(body: &Map<String, Value>, known: &[&str], what: &str) -> Result<(), ApiError> {
    match body.keys().find(|k| !known.contains(&k.as_str())) {
        Some(other) => Err(ApiError::unprocessable(other, format!("unknown field `{other}`; {what}"))),
        None => Ok(()),
    }
}

/// A body whose one member, `name`, is an optional string: absent or null is `None`; another
/// type is refused with `wrong` (422 naming it), as is another member (`takes`).
fn one_optional_string(
    body: &Map<String, Value>,
    name: &str,
    takes: &str,
    wrong: &str,
) -> Result<Option<String>, ApiError> {
    known_members(body, &[name], takes)?;
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(t)) => Ok(Some(t.clone())),
        Some(_) => Err(ApiError::unprocessable(name, wrong)),
    }
}

/// The body of `POST /v1/events/{id}/redeliver` (optional; another member is refused).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Redeliver {
    /// One target; without it, every target that was, is or would be delivered the event.
    pub target_id: Option<String>,
}

impl TryFrom<Map<String, Value>> for Redeliver {
    type Error = ApiError;

    fn try_from(body: Map<String, Value>) -> Result<Self, ApiError> {
        let target_id = one_optional_string(
            &body,
            "target_id",
            "a redelivery takes `target_id`",
            "`target_id` must be a target id",
        )?;
        Ok(Redeliver { target_id })
    }
}

/// The body of `POST /v1/targets/{id}/test` (optional): `{"type"?: string}`, the sample's
/// event type (default: the target's format's first; `crmhook_core::samples`). Another member
/// is refused (422 naming it).
#[derive(Debug, PartialEq)]
pub(crate) struct TargetTest {
    pub event_type: Option<String>,
}

impl TryFrom<Map<String, Value>> for TargetTest {
    type Error = ApiError;

    fn try_from(body: Map<String, Value>) -> Result<Self, ApiError> {
        let event_type =
            one_optional_string(&body, "type", "a test takes `type`", "`type` must be an event type (a string)")?;
        Ok(TargetTest { event_type })
    }
}

/// The body of `POST /v1/targets/{id}/replay` (optional; another member is refused).
#[derive(Debug, PartialEq)]
pub(crate) struct Replay {
    /// The deliveries to send again: dead (the default) or delivered; or pending: the retries
    /// waiting are brought forward to now.
    pub status: DeliveryStatus,
    /// Only events received at or after this time (ms).
    pub since_ms: Option<u64>,
    /// Only events received before this time (ms).
    pub until_ms: Option<u64>,
}

impl TryFrom<Map<String, Value>> for Replay {
    type Error = ApiError;

    fn try_from(body: Map<String, Value>) -> Result<Self, ApiError> {
        known_members(&body, &["status", "since", "until"], "a replay takes `status`, `since` and `until`")?;
        let status = match body.get("status") {
            None | Some(Value::Null) => DeliveryStatus::Dead,
            Some(Value::String(s)) if s == "dead" => DeliveryStatus::Dead,
            Some(Value::String(s)) if s == "delivered" => DeliveryStatus::Delivered,
            Some(Value::String(s)) if s == "pending" => DeliveryStatus::Pending,
            Some(other) => {
                return Err(ApiError::unprocessable(
                    "status",
                    format!("`status` must be dead, delivered or pending, not {other}"),
                ))
            }
        };
        let time = |name: &str| match body.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => parse_rfc3339(s)
                .map(Some)
                .ok_or_else(|| ApiError::unprocessable(name, format!("`{name}` must be an RFC 3339 time, not {s:?}"))),
            Some(_) => Err(ApiError::unprocessable(name, format!("`{name}` must be an RFC 3339 time"))),
        };
        let (since_ms, until_ms) = (time("since")?, time("until")?);
        if let (Some(since), Some(until)) = (since_ms, until_ms) {
            if until <= since {
                return Err(ApiError::unprocessable("until", "`until` must be later than `since`"));
            }
        }
        Ok(Replay { status, since_ms, until_ms })
    }
}

impl Replay {
    /// The span of reception (ms) it keeps the events of, if it names one: `since` inclusive,
    /// `until` exclusive, as `GET /v1/events` takes them.
    pub fn received(&self) -> Option<std::ops::Range<u64>> {
        (self.since_ms.is_some() || self.until_ms.is_some())
            .then(|| self.since_ms.unwrap_or(0)..self.until_ms.unwrap_or(u64::MAX))
    }

    /// How the operators' log names the request.
    pub fn status_name(&self) -> &'static str {
        match self.status {
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Dead => "dead",
        }
    }
}

/// `PATCH /v1/targets/{id}`: `enabled`, and the target's own fields (read by crmhook-core).
#[derive(Debug, PartialEq)]
pub(crate) struct TargetPatch {
    pub enabled: Option<bool>,
    pub fields: Map<String, Value>,
}

impl TryFrom<Map<String, Value>> for TargetPatch {
    type Error = ApiError;

    fn try_from(mut fields: Map<String, Value>) -> Result<Self, ApiError> {
        let enabled = match fields.remove("enabled") {
            None => None,
            Some(Value::Bool(b)) => Some(b),
            Some(_) => return Err(ApiError::unprocessable("enabled", "`enabled` must be true or false")),
        };
        Ok(TargetPatch { enabled, fields })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn field(e: ApiError) -> Option<String> {
        match e {
            ApiError::Unprocessable { field, .. } => field,
            _ => None,
        }
    }

    #[test]
    fn replay_reads_status_since_and_until_and_nothing_else() {
        let r = |v| Replay::try_from(object(v));
        assert_eq!(r(json!({})).ok(), Some(Replay { status: DeliveryStatus::Dead, since_ms: None, until_ms: None }));
        assert_eq!(r(json!({"status": 5})).err().and_then(field).as_deref(), Some("status"));
        assert_eq!(r(json!({"stauts": "dead"})).err().and_then(field).as_deref(), Some("stauts"));
        assert_eq!(r(json!({"status": "delivered", "since": null})).ok().map(|r| r.status_name()), Some("delivered"));
        assert_eq!(r(json!({"status": "pending"})).ok().map(|r| r.status_name()), Some("pending"));
        assert_eq!(r(json!({"status": "retrying"})).err().and_then(field).as_deref(), Some("status"));
        assert_eq!(r(json!({"since": 5})).err().and_then(field).as_deref(), Some("since"));
        assert_eq!(r(json!({"since": "x"})).err().and_then(field).as_deref(), Some("since"));
        assert!(r(json!({"since": "2026-01-05T10:00:00Z"})).is_ok_and(|r| r.since_ms.is_some()));
        let window = r(json!({"since": "2026-01-05T10:00:00Z", "until": "2026-01-05T11:00:00Z"})).ok();
        let (since, until) = (1_767_607_200_000, 1_767_610_800_000);
        assert_eq!(window.and_then(|r| r.received()), Some(since..until), "since inclusive, until exclusive");
        assert_eq!(r(json!({"until": "2026-01-05T10:00:00Z"})).ok().and_then(|r| r.received()), Some(0..since));
        assert_eq!(r(json!({"status": "dead"})).ok().map(|r| r.received()), Some(None), "no span: every event");
        assert_eq!(r(json!({"until": "soon"})).err().and_then(field).as_deref(), Some("until"));
        let backwards = json!({"since": "2026-01-05T10:00:00Z", "until": "2026-01-05T10:00:00Z"});
        assert_eq!(r(backwards).err().and_then(field).as_deref(), Some("until"));
    }

    #[test]
    fn redeliver_and_target_patch_read_their_one_field() {
        assert_eq!(Redeliver::try_from(object(json!({}))).ok(), Some(Redeliver { target_id: None }));
        assert_eq!(Redeliver::try_from(object(json!({"x": 1}))).err().and_then(field).as_deref(), Some("x"));
        assert_eq!(
            Redeliver::try_from(object(json!({"target_id": 1}))).err().and_then(field).as_deref(),
            Some("target_id")
        );
        let t = |v| TargetTest::try_from(object(v));
        assert_eq!(t(json!({})).ok(), Some(TargetTest { event_type: None }));
        assert_eq!(t(json!({"type": "ai_pause"})).ok(), Some(TargetTest { event_type: Some("ai_pause".into()) }));
        assert_eq!(t(json!({"type": 3})).err().and_then(field).as_deref(), Some("type"));
        assert_eq!(t(json!({"tpye": "x"})).err().and_then(field).as_deref(), Some("tpye"));
        let patch = TargetPatch::try_from(object(json!({"enabled": false, "name": "n"}))).ok();
        assert_eq!(patch.as_ref().and_then(|p| p.enabled), Some(false));
        assert_eq!(patch.map(|p| p.fields.len()), Some(1));
        assert_eq!(
            TargetPatch::try_from(object(json!({"enabled": 1}))).err().and_then(field).as_deref(),
            Some("enabled")
        );
    }
}
