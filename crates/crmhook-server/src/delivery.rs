//! One delivery attempt over HTTP: the body a target gets, the signature headers, and the POST
//! itself with awc.
//!
//! Each arbiter thread has one awc client (`thread_local!`), with redirects off (a 3xx is a
//! failed attempt), a connect timeout, and the target's `timeout_ms` around the whole exchange.

use std::time::{Duration, Instant};

use actix_web::http::header;
use awc::error::SendRequestError;
use crmhook_core::retry::Outcome;
use crmhook_core::sign;
use crmhook_core::target::Format;
use crmhook_core::time::{now_ms, rfc3339};
use crmhook_core::{Event, EventKind, Target};

/// How long connecting may take at most (the target's timeout still bounds the whole attempt).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a response body is read (and dropped) so the connection can be reused.
const RESPONSE_BODY_LIMIT: usize = 64 * 1024;

thread_local! {
    static CLIENT: awc::Client = awc::Client::builder()
        .disable_redirects()
        .add_default_header((header::USER_AGENT, concat!("crmhook/", env!("CARGO_PKG_VERSION"))))
                .connector(
            awc::Connector::new()
                .connector(
                    actix_tls::connect::Connector::new(actix_tls::connect::Resolver::custom(crate::guard::GuardResolver))
                        .service(),
                )
                .timeout(CONNECT_TIMEOUT)
                .limit(1024),
        )
        .timeout(Duration::from_secs(600))
        .finish();
}

/// The body a target receives for an event at `now_ms`: a MAIA event as the object that was
/// ingested; a Maximizer event as a one-event array with `ProcessedTimestamp` set to now. A
/// target's `format` overrides the wrapping: `maia` sends a bare object, `maximizer` an array.
pub fn body_for(target: &Target, event: &Event, now_ms: u64) -> Vec<u8> {
    let format = target.format.unwrap_or(match event.kind {
        EventKind::Maia => Format::Maia,
        EventKind::Maximizer => Format::Maximizer,
    });
    let object = match event.kind {
        EventKind::Maia => event.payload.clone(),
        EventKind::Maximizer => {
            let mut value = event.payload_json();
            if let Some(obj) = value.as_object_mut() {
                obj.insert("ProcessedTimestamp".into(), serde_json::Value::String(rfc3339(now_ms)));
            }
            serde_json::to_vec(&value).unwrap_or_else(|_| event.payload.clone())
        }
    };
    match format {
        Format::Maia => object,
        Format::Maximizer => {
            let mut out = Vec::with_capacity(object.len() + 2);
            out.push(b'[');
            out.extend_from_slice(&object);
            out.push(b']');
            out
        }
    }
}

/// What was attempted and how it went.
#[derive(Debug, Clone)]
pub struct AttemptReport {
    /// The event attempted.
    pub event_id: crmhook_core::EventId,
    pub at_ms: u64,
    pub duration_ms: u64,
    pub outcome: Outcome,
    /// The answer's `Retry-After`, in ms from now, when it had one.
    pub retry_after_ms: Option<u64>,
}

/// `Retry-After` as delay-seconds or an HTTP date.
fn retry_after(value: &str, now_ms: u64) -> Option<u64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds.saturating_mul(1000));
    }
    let date: header::HttpDate = value.parse().ok()?;
    let at = std::time::SystemTime::from(date).duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64;
    Some(at.saturating_sub(now_ms))
}

/// Delivers `event` to `target` as attempt number `attempt`.
pub async fn attempt(target: &Target, event: &Event, attempt: u32) -> AttemptReport {
    let at_ms = now_ms();
    let started = Instant::now();
    let body = body_for(target, event, at_ms);
    let timestamp = (at_ms / 1000).to_string();
    let signatures = sign::sign(&target.signing_secrets(at_ms), event.id.as_str(), &timestamp, &body);
    let timeout = Duration::from_millis(target.timeout_ms);

    let mut request = CLIENT.with(|c| c.post(target.url.as_str())).timeout(timeout);
    // The target's own headers first: ours are inserted after them and cannot be replaced
    // (validation also refuses reserved names).
    for (name, value) in &target.headers {
        request = request.insert_header((name.as_str(), value.as_str()));
    }
    let request = request
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .insert_header(("X-Maia-Timestamp", timestamp.as_str()))
        .insert_header(("X-Maia-Signature", signatures.maia.as_str()))
        .insert_header(("webhook-id", event.id.as_str()))
        .insert_header(("webhook-timestamp", timestamp.as_str()))
        .insert_header(("webhook-signature", signatures.standard.as_str()))
        .insert_header(("X-Crmhook-Attempt", attempt.to_string()));

    let mut retry_after_ms = None;
    if let Err(refused) = crate::guard::check_literal(&target.url) {
        let duration_ms = started.elapsed().as_millis() as u64;
        return AttemptReport {
            event_id: event.id.clone(),
            at_ms,
            duration_ms,
            outcome: Outcome::Error(refused),
            retry_after_ms,
        };
    }
    let outcome = match actix_rt::time::timeout(timeout, request.send_body(body)).await {
        Err(_) | Ok(Err(SendRequestError::Timeout)) => Outcome::Timeout,
        Ok(Err(e)) => Outcome::Error(e.to_string()),
        Ok(Ok(mut response)) => {
            let status = response.status().as_u16();
            retry_after_ms = response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| retry_after(v, now_ms()));
            let left = timeout.saturating_sub(started.elapsed()).min(Duration::from_secs(1));
            let _ = actix_rt::time::timeout(left, response.body().limit(RESPONSE_BODY_LIMIT)).await;
            Outcome::Status(status)
        }
    };
    AttemptReport {
        event_id: event.id.clone(),
        at_ms,
        duration_ms: started.elapsed().as_millis() as u64,
        outcome,
        retry_after_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crmhook_core::event::parse_ingest;
    use crmhook_core::EventId;

    fn stored(body: &str) -> Event {
        let new = parse_ingest(body.as_bytes()).unwrap().remove(0);
        Event::from_new(new, 1, EventId::generate(), 0)
    }

    fn target(format: Option<Format>) -> Target {
        let body = serde_json::json!({"name": "t", "url": "https://example.com/"});
        let mut t = Target::create(body.as_object().unwrap(), false, sign::generate_secret(), 0).unwrap();
        t.format = format;
        t
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        assert_eq!(retry_after("30", 0), Some(30_000));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1_445_412_470_000), Some(10_000));
        assert_eq!(retry_after("soon", 0), None);
    }

    #[test]
    fn maia_events_are_delivered_as_ingested() {
        let text = r#"{"eventType":"ai_pause","sessionId":"s", "z": 1, "a": 2}"#;
        assert_eq!(body_for(&target(None), &stored(text), 0), text.as_bytes());
    }

    #[test]
    fn maximizer_events_are_a_one_event_array_with_processed_timestamp() {
        let text = include_str!("../../../data/samples/maximizer/opportunity_stage_change.json");
        let body = body_for(&target(None), &stored(text), 1_700_000_000_000);
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let items = value.as_array().unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["ProcessedTimestamp"], "2023-11-14T22:13:20.000Z");
        assert_eq!(items[0]["Data"]["Original"]["Revenue"], 12000.0);
        let keys: Vec<&String> = items[0].as_object().unwrap().keys().collect();
        assert_eq!(keys[0], "Id", "key order is kept");
        let bare = body_for(&target(Some(Format::Maia)), &stored(text), 0);
        assert!(serde_json::from_slice::<serde_json::Value>(&bare).unwrap().is_object());
    }
}
