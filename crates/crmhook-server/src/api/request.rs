//! Reading requests: bodies (content type, size, JSON), `Idempotency-Key`, the ingest memory
//! budget, large bodies parsed off the HTTP workers ([`off_worker`]), paging parameters, and
//! (in `request/typed.rs`) the typed bodies of the requests the API reads itself.
//!
//! The bodies that create or change targets, subscriptions and sources are read as a JSON
//! object and given to crmhook-core, whose rules name the field at fault (and refuse unknown
//! ones); the API does not read them twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::web::BytesMut;
use actix_web::{web, HttpRequest};
use crmhook_core::time::parse_rfc3339;
use futures_util::StreamExt;
use serde_json::{Map, Value};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::api::state::AppState;
use crate::error::ApiError;
use crate::per_key::{PerKey, Place};

/// Largest body of an admin request.
const ADMIN_BODY_LIMIT: usize = 256 * 1024;
/// Largest and default page of `GET /v1/events`.
pub const MAX_PAGE: usize = 1000;
const DEFAULT_PAGE: usize = 100;

// ---- bodies --------------------------------------------------------------------------------

/// 415 unless the body is declared JSON (`application/json` or `application/*+json`), in UTF-8
/// (no other `charset`) and as it is (no `Content-Encoding` but `identity`).
pub(crate) fn require_json(req: &HttpRequest) -> Result<(), ApiError> {
    // A body is taken as sent: a compressed one would only fail later as malformed JSON.
    if let Some(coding) = req.headers().get(header::CONTENT_ENCODING) {
        let coding = coding.to_str().unwrap_or("").trim();
        if !coding.eq_ignore_ascii_case("identity") {
            return Err(ApiError::UnsupportedMediaType(format!(
                "`Content-Encoding: {coding}` is not taken: send the JSON as it is"
            )));
        }
    }
    let declared = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut parts = declared.split(';');
    let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    // JSON is UTF-8 (RFC 8259): another charset declared is another encoding.
    let charset = parts
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("charset"))
        .map(|(_, v)| v.trim().trim_matches('"').to_ascii_lowercase());
    if charset.as_deref().is_some_and(|c| c != "utf-8" && c != "utf8") {
        return Err(ApiError::UnsupportedMediaType(format!("JSON is UTF-8, not {declared:?}")));
    }
    if essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json")) {
        Ok(())
    } else if declared.is_empty() {
        Err(ApiError::UnsupportedMediaType("`Content-Type: application/json` is required".into()))
    } else {
        Err(ApiError::UnsupportedMediaType(format!("`Content-Type` must be application/json, not {declared:?}")))
    }
}

pub(crate) fn declared_length(req: &HttpRequest) -> Option<usize> {
    req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok())
}

/// How request bodies are read (shared by every handler, from the app's data; see
/// `Intake::of`): the deadlines of a body, the cap on concurrent ingest requests per ingest
/// token and per source, and how many bytes of events a page of `GET /v1/events` holds.
pub struct Intake {
    /// The whole body must have arrived within this time of the handler starting to read it.
    pub body_timeout: Duration,
    /// The longest wait for the next piece of a body (`min(10 s, body_timeout)`).
    pub body_gap: Duration,
    /// Ingest requests that may be in progress at once for one ingest token, or one source.
    pub concurrency: usize,
    /// A page of `GET /v1/events` ends once its events' payloads reach this many bytes.
    pub page_bytes: usize,
    /// `max_delivery_lag_ms`: ingest answers 503 while the live targets are further behind
    /// than this (0: never).
    pub max_delivery_lag_ms: u64,
    busy: Arc<PerKey>,
}

/// The longest gap between two pieces of a body, unless `body_timeout` is shorter.
pub const BODY_GAP: Duration = Duration::from_secs(10);
/// Default of `body_timeout_ms`.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default of `ingest_concurrency`.
pub const INGEST_CONCURRENCY: usize = 128;
/// Default of `max_page_bytes`.
pub const PAGE_BYTES: usize = 4 * 1024 * 1024;

impl Default for Intake {
    fn default() -> Self {
        Intake::new(BODY_TIMEOUT, INGEST_CONCURRENCY, PAGE_BYTES)
    }
}

impl Intake {
    pub fn new(body_timeout: Duration, concurrency: usize, page_bytes: usize) -> Intake {
        Intake {
            body_timeout,
            body_gap: BODY_GAP.min(body_timeout),
            concurrency: concurrency.max(1),
            page_bytes: page_bytes.max(1),
            max_delivery_lag_ms: 0,
            busy: Arc::default(),
        }
    }

    /// The app's intake rules (the defaults when the app has none).
    pub(crate) fn of(req: &HttpRequest) -> web::Data<Intake> {
        req.app_data::<web::Data<Intake>>().cloned().unwrap_or_else(|| web::Data::new(Intake::default()))
    }
}

/// One ingest request in progress for a key (an ingest token, a source); the slot is given
/// back when this is dropped.
pub(crate) type IngestSlot = Place;

/// Takes one of the `ingest_concurrency` slots of `key`; 503 with `Retry-After` when all are
/// taken (slow or stalled senders cannot hold more than their key's slots).
pub(crate) fn ingest_slot(req: &HttpRequest, key: String) -> Result<IngestSlot, ApiError> {
    let intake = Intake::of(req);
    if intake.max_delivery_lag_ms > 0 {
        behind(req, intake.max_delivery_lag_ms)?;
    }
    intake.busy.take(key, intake.concurrency).map_err(|held| ApiError::Unavailable {
        detail: format!("{held} ingest requests of this sender are already in progress (ingest_concurrency)"),
        retry_after_s: 1,
    })
}

/// Backpressure (`max_delivery_lag_ms`): 503 with `Retry-After: 1` while a live target (one
/// that delivered something in the last second) delivers events older than `limit_ms`, so that
/// ingest cannot run ahead of delivery by more than that. A failing or idle target does not
/// count: its backlog waits in the log, as it always does.
fn behind(req: &HttpRequest, limit_ms: u64) -> Result<(), ApiError> {
    let Some(state) = req.app_data::<web::Data<crate::api::state::AppState>>() else { return Ok(()) };
    let lag = state.metrics.delivery_lag_ms(crmhook_core::time::now_ms());
    if lag > limit_ms {
        state.metrics.backpressured();
        return Err(ApiError::Unavailable {
            detail: format!(
                "deliveries are {lag} ms behind ingest, past max_delivery_lag_ms ({limit_ms} ms): try again shortly"
            ),
            retry_after_s: 1,
        });
    }
    Ok(())
}

/// The key of `POST /v1/events`' slots: the bearer token it was authenticated with (as a hash:
/// the map keeps no token).
pub(crate) fn token_key(req: &HttpRequest) -> String {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    h.write(req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes()).unwrap_or_default());
    format!("token:{:016x}", h.finish())
}

/// Reads the whole body, refusing with 413 as soon as it is known to exceed `limit`, and with
/// 408 when it stalls (see [`Intake`]).
pub(crate) async fn read_body(req: &HttpRequest, payload: web::Payload, limit: usize) -> Result<BytesMut, ApiError> {
    read_within(req, payload, limit, None).await.map(|(body, _)| body)
}

/// An ingest body of this many bytes or more is checked and parsed on tokio's blocking pool
/// ([`off_worker`]), not on the HTTP worker that read it.
pub(crate) const OFF_WORKER_BYTES: usize = 64 * 1024;

/// Runs `work` on a body of `len` bytes: on the HTTP worker when the body is small, else on
/// tokio's blocking pool, at most [`AppState::parsing`] at once (the others wait without holding
/// a thread). Parsing 1 MB of events takes a worker 30–40 ms; a burst of such bodies parsed on
/// the workers held every small request that came to them meanwhile, a Maximizer event among
/// them, up to a second (PERFORMANCE.md, "Large bodies parsed off the HTTP workers").
pub(crate) async fn off_worker<T: Send + 'static>(
    state: &AppState,
    len: usize,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    if len < OFF_WORKER_BYTES {
        return Ok(work());
    }
    let stopping = || ApiError::Unavailable { detail: "the server is shutting down".into(), retry_after_s: 1 };
    let _turn = state.parsing.acquire().await.map_err(|_| stopping())?;
    tokio::task::spawn_blocking(work).await.map_err(|e| match e.is_cancelled() {
        true => stopping(),
        false => ApiError::Internal(format!("parsing the body failed: {e}")),
    })
}

/// Reads an ingest body, taking its bytes from the ingest budget as they arrive (a slow sender
/// holds only what it has sent): the returned share is held until the events are durable. 503
/// when the budget runs out (the log writer is behind), 408 on a stalled body, 413 past
/// `max_body_bytes`.
pub(crate) async fn read_ingest(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<(BytesMut, Option<OwnedSemaphorePermit>), ApiError> {
    read_within(req, payload, state.max_body_bytes, Some(&state.ingest_budget)).await
}

async fn read_within(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
    budget: Option<&Arc<Semaphore>>,
) -> Result<(BytesMut, Option<OwnedSemaphorePermit>), ApiError> {
    let too_large = || ApiError::PayloadTooLarge(format!("the body is larger than {limit} bytes"));
    let declared = declared_length(req);
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let intake = Intake::of(req);
    let deadline = tokio::time::Instant::now() + intake.body_timeout;
    // What a sender declares is not reserved up front: memory grows with what arrives.
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0).min(64 * 1024));
    let mut share: Option<OwnedSemaphorePermit> = None;
    loop {
        let wait = intake.body_gap.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        let next = match tokio::time::timeout(wait, payload.next()).await {
            Ok(next) => next,
            Err(_) if tokio::time::Instant::now() >= deadline => {
                return Err(ApiError::RequestTimeout(format!(
                    "the body did not arrive within {} ms (body_timeout_ms); {} bytes came",
                    intake.body_timeout.as_millis(),
                    body.len()
                )))
            }
            Err(_) => {
                return Err(ApiError::RequestTimeout(format!(
                    "no byte of the body came for {} ms; {} bytes came",
                    intake.body_gap.as_millis(),
                    body.len()
                )))
            }
        };
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|e| match e {
            actix_web::error::PayloadError::Overflow => too_large(),
            actix_web::error::PayloadError::Incomplete(_) => ApiError::BadRequest(
                "the body ended before it was whole: fewer bytes than its Content-Length, or a chunked \
                 encoding that does not parse or has no last chunk"
                    .into(),
            ),
            other => ApiError::BadRequest(format!("the body could not be read: {other}")),
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        if let (Some(budget), Ok(n @ 1..)) = (budget, u32::try_from(chunk.len())) {
            let more = budget.clone().try_acquire_many_owned(n).map_err(|_| ApiError::Unavailable {
                detail: "too many events are waiting to be written".into(),
                retry_after_s: 1,
            })?;
            match share.as_mut() {
                Some(held) => held.merge(more),
                None => share = Some(more),
            }
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, share))
}

/// Reads an admin request's body as a JSON object.
pub(crate) async fn read_object(req: &HttpRequest, payload: web::Payload) -> Result<Map<String, Value>, ApiError> {
    require_json(req)?;
    let body = read_body(req, payload, ADMIN_BODY_LIMIT).await?;
    parse_object(&body)
}

/// An optional JSON object body (an empty body is `{}`).
pub(crate) async fn optional_object(req: &HttpRequest, payload: web::Payload) -> Result<Map<String, Value>, ApiError> {
    let body = read_body(req, payload, ADMIN_BODY_LIMIT).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    require_json(req)?;
    parse_object(&body)
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    // A name twice in an object is refused (422), as in an ingested event.
    match crmhook_core::event::parse_json_unique(body)? {
        Value::Object(obj) => Ok(obj),
        _ => Err(ApiError::BadRequest("the body must be a JSON object".into())),
    }
}

pub(crate) fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let mut values = req.headers().get_all("idempotency-key");
    let Some(value) = values.next() else {
        return Ok(None);
    };
    // Which of two keys would a retry send? Neither is taken.
    if values.next().is_some() {
        return Err(ApiError::BadRequest("send one `Idempotency-Key` header, not several".into()));
    }
    match value.to_str() {
        Ok(v) if !v.trim().is_empty() && v.len() <= 255 => Ok(Some(v.trim().to_owned())),
        _ => Err(ApiError::BadRequest("`Idempotency-Key` must be 1 to 255 printable ASCII characters".into())),
    }
}

// ---- query parameters ----------------------------------------------------------------------

/// `after` (a seq) and `limit` (1 to [`MAX_PAGE`]) of a page of events or deliveries.
pub(crate) fn page_params(q: &HashMap<String, String>) -> Result<(u64, usize), ApiError> {
    let after = match q.get("after").map(String::as_str) {
        None | Some("") => 0,
        Some(v) => v.parse().map_err(|_| {
            ApiError::unprocessable("after", format!("`after` must be a seq (an integer ≥ 0), not {v:?}"))
        })?,
    };
    Ok((after, limit_param(q)?))
}

/// `limit`, 1 to [`MAX_PAGE`] ([`DEFAULT_PAGE`] when absent), of any page.
pub(crate) fn limit_param(q: &HashMap<String, String>) -> Result<usize, ApiError> {
    match q.get("limit").map(String::as_str) {
        None | Some("") => Ok(DEFAULT_PAGE),
        Some(v) => v.parse::<usize>().ok().filter(|n| (1..=MAX_PAGE).contains(n)).ok_or_else(|| {
            ApiError::unprocessable("limit", format!("`limit` must be an integer from 1 to {MAX_PAGE}, not {v:?}"))
        }),
    }
}

/// `last`, how many of the log's latest events to read: 1 to `max` (`default` when absent).
pub(crate) fn last_param(q: &HashMap<String, String>, default: usize, max: usize) -> Result<usize, ApiError> {
    match q.get("last").map(String::as_str) {
        None | Some("") => Ok(default),
        Some(v) => v.parse::<usize>().ok().filter(|n| (1..=max).contains(n)).ok_or_else(|| {
            ApiError::unprocessable("last", format!("`last` must be an integer from 1 to {max}, not {v:?}"))
        }),
    }
}

pub(crate) fn time_param(q: &HashMap<String, String>, name: &str) -> Result<Option<u64>, ApiError> {
    match q.get(name).map(String::as_str) {
        None | Some("") => Ok(None),
        Some(v) => parse_rfc3339(v)
            .map(Some)
            .ok_or_else(|| ApiError::unprocessable(name, format!("`{name}` must be an RFC 3339 time, not {v:?}"))),
    }
}

// ---- typed bodies (`request/typed.rs`) -----------------------------------------------------

mod typed;
pub(crate) use typed::{Redeliver, Replay, TargetPatch, TargetTest};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_in_utf_8_as_sent_is_taken() {
        use actix_web::test::TestRequest;
        let check = |headers: &[(&str, &str)]| {
            let mut req = TestRequest::default();
            for h in headers {
                req = req.append_header(*h);
            }
            require_json(&req.to_http_request())
        };
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "application/json;charset=\"UTF-8\"",
            "application/cloudevents+json",
        ] {
            assert!(check(&[("Content-Type", ok)]).is_ok(), "{ok}");
        }
        assert!(check(&[("Content-Type", "application/json"), ("Content-Encoding", "identity")]).is_ok());
        for refused in [
            &[("Content-Type", "application/json; charset=utf-16")][..],
            &[("Content-Type", "text/plain")],
            &[],
            &[("Content-Type", "application/json"), ("Content-Encoding", "gzip")],
        ] {
            assert!(matches!(check(refused), Err(ApiError::UnsupportedMediaType(_))), "{refused:?}");
        }
    }

    #[test]
    fn one_idempotency_key_is_taken_two_are_refused() {
        use actix_web::test::TestRequest;
        let key = |values: &[&str]| {
            let mut req = TestRequest::default();
            for v in values {
                req = req.append_header(("Idempotency-Key", *v));
            }
            idempotency_key(&req.to_http_request())
        };
        assert_eq!(key(&[]).ok(), Some(None));
        assert_eq!(key(&[" k-1 "]).ok(), Some(Some("k-1".into())));
        assert!(matches!(key(&["k-1", "k-2"]), Err(ApiError::BadRequest(_))));
        assert!(matches!(key(&[""]), Err(ApiError::BadRequest(_))));
    }
}
