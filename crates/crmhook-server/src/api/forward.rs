//! Cluster mode: a request that must reach the node delivering a target (a redelivery, a
//! replay, a test delivery: the target's actor runs there alone) is forwarded to that node's
//! URL (`cluster_advertise`) with the caller's own `Authorization` (the keys are the same on
//! every node) and the client's address in `X-Forwarded-For`, and its answer given back as it
//! came. A forwarded request carries
//! [`FORWARDED`]; a node that gets one for a target it does not deliver either (the lease moved
//! meanwhile) answers 503 with `Retry-After` instead of forwarding it again.

use std::time::Duration;

use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use crmhook_core::TargetId;
use serde_json::Value;

use crate::api::state::State;
use crate::error::ApiError;

/// The header of a forwarded request.
pub const FORWARDED: &str = "x-crmhook-forwarded";

/// How long a forwarded request may take: a test delivery waits for the receiver, up to the
/// longest `timeout_ms` a target may have, and a margin (it was 70 s, and a test of a target
/// with a longer timeout answered 503 on the node that forwarded it, though it was made).
const FORWARD_TIMEOUT: Duration = Duration::from_millis(crmhook_core::target::MAX_TIMEOUT_MS + 10_000);

/// The owner's answer: its status, its body, and its `Retry-After` if it sent one.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
    retry_after: Option<String>,
}

/// The answer of the node that delivers `target` to `POST <path>` with `body`, or 503 when no
/// node is known to deliver it now.
pub(crate) async fn forward(
    state: &State,
    req: &HttpRequest,
    target: &TargetId,
    path: String,
    body: Value,
) -> Result<Answer, ApiError> {
    let moving = || ApiError::Unavailable {
        detail: format!("target {target} is between nodes (its lease is moving); try again shortly"),
        retry_after_s: 1,
    };
    if req.headers().contains_key(FORWARDED) {
        return Err(moving());
    }
    let owner = state.backend.owner_url(target).ok_or_else(moving)?;
    let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let url = format!("{owner}{path}");
    // Who asked, for the owner's audit trail and log lines: believed there when this node is
    // one of its `trusted_proxies` (`crate::api::client`).
    let client = crate::api::client::client_ip(req).map(|ip| ip.to_string());
    web::block(move || {
        let agent = ureq::AgentBuilder::new().timeout(FORWARD_TIMEOUT).redirects(0).build();
        let mut request =
            agent.post(&url).set("authorization", &auth).set(FORWARDED, "1").set("content-type", "application/json");
        if let Some(client) = &client {
            request = request.set(crate::api::client::FORWARDED_FOR, client);
        }
        let answer = request.send_string(&body.to_string());
        let response = match answer {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => {
                return Err(ApiError::Unavailable {
                    detail: format!("the node delivering the target ({url}) did not answer: {e}"),
                    retry_after_s: 1,
                })
            }
        };
        let status = StatusCode::from_u16(response.status()).unwrap_or(StatusCode::BAD_GATEWAY);
        let retry_after = response.header("retry-after").map(str::to_owned);
        let body = response.into_json::<Value>().unwrap_or(Value::Null);
        Ok(Answer { status, body, retry_after })
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
}

/// [`forward`]'s answer, as this node's (its `Retry-After` too: a 503 or 429 of the owner's
/// tells the client when to try again).
pub(crate) fn relay(Answer { status, body, retry_after }: Answer) -> HttpResponse {
    let content_type = if status.is_success() { "application/json" } else { "application/problem+json" };
    let mut response = HttpResponse::build(status);
    response.content_type(content_type);
    if let Some(retry_after) = retry_after {
        response.insert_header((actix_web::http::header::RETRY_AFTER, retry_after));
    }
    response.body(body.to_string())
}

#[cfg(test)]
mod tests {
    use actix_web::http::header;
    use serde_json::json;

    use super::*;

    fn relayed(status: u16, retry_after: Option<&str>) -> HttpResponse {
        let status = StatusCode::from_u16(status).unwrap();
        relay(Answer { status, body: json!({"status": status.as_u16()}), retry_after: retry_after.map(str::to_owned) })
    }

    fn header_of(response: &HttpResponse, name: header::HeaderName) -> Option<&str> {
        response.headers().get(name).and_then(|v| v.to_str().ok())
    }

    #[test]
    fn the_owners_retry_after_reaches_the_client_with_its_status() {
        for status in [503, 429] {
            let r = relayed(status, Some("7"));
            assert_eq!(r.status().as_u16(), status);
            assert_eq!(header_of(&r, header::RETRY_AFTER), Some("7"), "{status}");
            assert_eq!(header_of(&r, header::CONTENT_TYPE), Some("application/problem+json"));
        }
        let r = relayed(202, None);
        assert_eq!(header_of(&r, header::RETRY_AFTER), None, "none made up");
        assert_eq!(header_of(&r, header::CONTENT_TYPE), Some("application/json"));
    }
}
