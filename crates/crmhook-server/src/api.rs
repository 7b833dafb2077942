//! The HTTP API (contract sections 2, 3 and 5): handlers, authentication, and the JSON views
//! of targets, subscriptions and events.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use actix_web::http::header;
use actix_web::web::BytesMut;
use actix_web::{web, HttpRequest, HttpResponse};
use crmhook_core::event::parse_ingest;
use crmhook_core::retry::Outcome;
use crmhook_core::sign::{constant_time_eq, generate_secret};
use crmhook_core::subscription::Compiled;
use crmhook_core::time::{now_ms, parse_rfc3339, rfc3339};
use crmhook_core::{Event, EventId, Subscription, SubscriptionId, Target, TargetId};
use crmhook_store::{Attempt, AttemptResult, DeliveryStatus, Disabled, EventFilter, Request, Store};
use futures_util::StreamExt;
use serde_json::{json, Map, Value};
use tokio::sync::Semaphore;

use crate::error::ApiError;
use crmhook_dispatch::guard::Guard;
use crmhook_dispatch::metrics::Metrics;
use crmhook_dispatch::router::{RouterError, RouterHandle};

/// How long the previous secret keeps signing after a rotation.
pub const ROTATION_OVERLAP_MS: u64 = 24 * 3_600_000;
/// Largest body of an admin request.
const ADMIN_BODY_LIMIT: usize = 256 * 1024;
/// Largest and default page of `GET /v1/events`.
pub const MAX_PAGE: usize = 1000;
const DEFAULT_PAGE: usize = 100;

/// The two tokens.
#[derive(Clone)]
pub struct Tokens {
    pub admin: String,
    pub ingest: String,
}

/// What every handler shares.
pub struct AppState {
    pub store: Store,
    pub router: RouterHandle,
    pub tokens: Tokens,
    /// `allow_private_targets`: the same guard the delivery clients check with.
    pub guard: Guard,
    /// The counters `GET /metrics` shows.
    pub metrics: Arc<Metrics>,
    pub max_body_bytes: usize,
    /// Bytes of ingest bodies that may be in memory at once (read, queued or being written).
    pub ingest_budget: Arc<Semaphore>,
    /// Where CRMs reach this server: sources' `ingest_url` is `<public_url>/in/<id>`.
    pub public_url: String,
}

pub(crate) type State = web::Data<AppState>;

/// Mounts the API on an actix `ServiceConfig`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/healthz").route(web::get().to(healthz)))
        .service(web::resource("/readyz").route(web::get().to(readyz)))
        .service(web::resource("/metrics").route(web::get().to(metrics)))
        .service(web::resource("/v1/stream").route(web::get().to(stream)))
        .service(web::resource("/console").route(web::get().to(console)))
        .service(web::resource("/openapi.json").route(web::get().to(openapi)))
        .service(web::resource("/v1/events").route(web::post().to(ingest)).route(web::get().to(list_events)))
        .service(web::resource("/v1/events/{id}").route(web::get().to(get_event)))
        .service(web::resource("/v1/events/{id}/redeliver").route(web::post().to(redeliver)))
        .service(web::resource("/v1/targets/{id}/deliveries").route(web::get().to(target_deliveries)))
        .service(web::resource("/v1/targets/{id}/replay").route(web::post().to(replay)))
        .service(web::resource("/v1/targets").route(web::get().to(list_targets)).route(web::post().to(create_target)))
        .service(
            web::resource("/v1/targets/{id}")
                .route(web::get().to(get_target))
                .route(web::patch().to(patch_target))
                .route(web::delete().to(delete_target)),
        )
        .service(web::resource("/v1/targets/{id}/rotate-secret").route(web::post().to(rotate_secret)))
        .service(
            web::resource("/v1/subscriptions")
                .route(web::get().to(list_subscriptions))
                .route(web::post().to(create_subscription)),
        )
        .service(
            web::resource("/v1/subscriptions/{id}")
                .route(web::get().to(get_subscription))
                .route(web::delete().to(delete_subscription)),
        )
        .configure(crate::sources::routes);
}

// ---- authentication and bodies -----------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Admin,
    Ingest,
}

/// Checks the bearer token: 401 when missing or unknown, 403 when it is the other role's.
/// Both tokens are compared, in constant time, whatever the first comparison says.
pub(crate) fn authorize(req: &HttpRequest, tokens: &Tokens, need: Role) -> Result<(), ApiError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthorized("missing `Authorization: Bearer <token>`".into()))?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .ok_or_else(|| ApiError::Unauthorized("`Authorization` must be `Bearer <token>`".into()))?;
    let is_admin = constant_time_eq(token.as_bytes(), tokens.admin.as_bytes());
    let is_ingest = constant_time_eq(token.as_bytes(), tokens.ingest.as_bytes());
    match (need, is_admin, is_ingest) {
        (Role::Admin, true, _) | (Role::Ingest, _, true) => Ok(()),
        (Role::Admin, false, true) => Err(ApiError::Forbidden("the ingest token cannot use the admin API".into())),
        (Role::Ingest, true, false) => {
            Err(ApiError::Forbidden("the admin token cannot post events; use the ingest token".into()))
        }
        _ => Err(ApiError::Unauthorized("the token is not valid".into())),
    }
}

/// 415 unless the body is declared JSON (`application/json` or `application/*+json`).
pub(crate) fn require_json(req: &HttpRequest) -> Result<(), ApiError> {
    let declared = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = declared.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
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

/// Reads the whole body, refusing with 413 as soon as it is known to exceed `limit`.
pub(crate) async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<BytesMut, ApiError> {
    let too_large = || ApiError::PayloadTooLarge(format!("the body is larger than {limit} bytes"));
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| match e {
            actix_web::error::PayloadError::Overflow => too_large(),
            other => ApiError::BadRequest(format!("the body could not be read: {other}")),
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads an admin request's body as a JSON object.
pub(crate) async fn read_object(req: &HttpRequest, payload: web::Payload) -> Result<Map<String, Value>, ApiError> {
    require_json(req)?;
    let body = read_body(req, payload, ADMIN_BODY_LIMIT).await?;
    parse_object(&body)
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(obj)) => Ok(obj),
        Ok(_) => Err(ApiError::BadRequest("the body must be a JSON object".into())),
        Err(e) => Err(ApiError::BadRequest(format!("malformed JSON: {e}"))),
    }
}

pub(crate) fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(v) if !v.trim().is_empty() && v.len() <= 255 => Ok(Some(v.trim().to_owned())),
        _ => Err(ApiError::BadRequest("`Idempotency-Key` must be 1 to 255 printable ASCII characters".into())),
    }
}

pub(crate) fn router_error(e: RouterError) -> ApiError {
    match e {
        RouterError::Store(e) => e.into(),
        RouterError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
        RouterError::TooManyTargets(_) => ApiError::Conflict(e.to_string()),
        RouterError::Stopped => {
            ApiError::Unavailable { detail: "the server is shutting down".into(), retry_after_s: 1 }
        }
    }
}

// ---- health --------------------------------------------------------------------------------

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn stream(
    req: HttpRequest,
    query: web::Query<HashMap<String, String>>,
    state: State,
    streams: web::Data<crate::stream::Streams>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state.tokens, Role::Admin)?;
    let resume = req.headers().get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let after = match resume.or_else(|| query.get("after").cloned()) {
        None => None,
        Some(v) if v.trim().is_empty() => None,
        Some(v) => Some(v.trim().parse::<u64>().map_err(|_| {
            ApiError::unprocessable("Last-Event-ID", format!("a stream resumes after a seq, not {v:?}"))
        })?),
    };
    // `Connection: close`: when the server stops it ends the stream, and the connection must
    // end with it rather than wait idle for a next request (a graceful stop waits for it).
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .force_close()
        .streaming(crate::stream::sse(state.store.clone(), after, event_view, streams.subscribe())))
}

/// The OpenAPI document of this API, the one checked in at `docs/openapi.json`.
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

async fn openapi() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(OPENAPI)
}

/// The web console: one self-contained page (no build step, nothing fetched from elsewhere).
async fn console() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((
            "Content-Security-Policy",
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
        ))
        .insert_header(("X-Frame-Options", "DENY"))
        .body(include_str!("../assets/console.html"))
}

async fn metrics(state: State) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::prometheus::render(&state.metrics, &state.store))
}

async fn readyz(state: State) -> HttpResponse {
    if state.store.is_failing() {
        return crate::error::problem(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Not ready",
            "the last write to the event log failed (disk full or I/O error); see docs/RELIABILITY.md",
        );
    }
    HttpResponse::Ok().json(json!({"status": "ready", "head": state.store.head()}))
}

// ---- ingest --------------------------------------------------------------------------------

async fn ingest(req: HttpRequest, payload: web::Payload, state: State) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state.tokens, Role::Ingest)?;
    require_json(&req)?;
    let key = idempotency_key(&req)?;
    let _share = ingest_share(&req, &state)?;
    let body = read_body(&req, payload, state.max_body_bytes).await?;
    let events = parse_ingest(&body)?;
    let acks = state.router.ingest(events, key).await.map_err(router_error)?;
    let (events, duplicates) = ack_view(&state.metrics, &acks);
    Ok(HttpResponse::Accepted()
        .json(json!({"accepted": acks.len() - duplicates, "duplicates": duplicates, "events": events})))
}

/// Memory for ingest is bounded: a request holds its share of the budget until its events are
/// durable; when the log writer falls behind, the budget runs out and ingest says 503.
pub(crate) fn ingest_share(req: &HttpRequest, state: &AppState) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    let share = declared_length(req).unwrap_or(state.max_body_bytes).clamp(1, state.max_body_bytes);
    state.ingest_budget.clone().try_acquire_many_owned(u32::try_from(share).unwrap_or(u32::MAX)).map_err(|_| {
        ApiError::Unavailable { detail: "too many events are waiting to be written".into(), retry_after_s: 1 }
    })
}

/// The `events` member of an ingest answer, and how many of them were duplicates.
pub(crate) fn ack_view(metrics: &Metrics, acks: &[crmhook_store::AckEntry]) -> (Vec<Value>, usize) {
    for ack in acks.iter().filter(|a| !a.duplicate) {
        metrics.ingested(&ack.event_type);
    }
    let duplicates = acks.iter().filter(|a| a.duplicate).count();
    (acks.iter().map(|a| json!({"id": a.id, "seq": a.seq, "type": a.event_type})).collect(), duplicates)
}

// ---- targets -------------------------------------------------------------------------------

fn target_view(t: &Target, disabled: Option<&Disabled>, show_secret: bool) -> Value {
    let headers: Map<String, Value> = t.headers.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    let mut view = json!({
        "id": t.id,
        "name": t.name,
        "url": t.url,
        "headers": headers,
        "timeout_ms": t.timeout_ms,
        "retry_schedule_ms": t.retry_schedule_ms,
        "ordered": t.ordered,
        "format": t.format.map(|f| f.as_str()),
        "created_at": rfc3339(t.created_at_ms),
        "updated_at": rfc3339(t.updated_at_ms),
    });
    if let Some((_, until)) = t.previous_secret.as_ref().filter(|(_, until)| *until > now_ms()) {
        view["previous_secret_expires_at"] = json!(rfc3339(*until));
    }
    view["enabled"] = json!(disabled.is_none());
    if let Some(d) = disabled {
        view["disabled_at"] = json!(rfc3339(d.at_ms));
        view["disabled_reason"] = json!(d.reason);
    }
    if show_secret {
        view["secret"] = json!(t.secret);
    }
    view
}

/// A target's view with its enabled state and health from the store.
fn stored_target_view(store: &Store, metrics: &Metrics, t: &Target, show_secret: bool) -> Result<Value, ApiError> {
    let mut view = target_view(t, store.disabled(&t.id)?.as_ref(), show_secret);
    let (pending, dead) = store.delivery_counts(&t.id)?;
    let health = metrics.stored_health(store, &t.id)?;
    view["health"] = json!({
        "pending": pending,
        "dead": dead,
        "last_success_at": health.last_success_ms.map(rfc3339),
        "failures_in_a_row": health.failures_in_a_row,
    });
    Ok(view)
}

fn target_id(raw: &str) -> Result<TargetId, ApiError> {
    TargetId::parse(raw).ok_or_else(|| ApiError::NotFound(format!("target {raw} not found")))
}

fn load_target(state: &AppState, raw: &str) -> Result<Target, ApiError> {
    state.store.target(&target_id(raw)?)?.ok_or_else(|| ApiError::NotFound(format!("target {raw} not found")))
}

async fn list_targets(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state.tokens, Role::Admin)?;
    let targets = state
        .store
        .targets()?
        .iter()
        .map(|t| stored_target_view(&state.store, &state.metrics, t, false))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(json!({ "targets": targets })))
}

async fn create_target(req: HttpRequest, payload: web::Payload, state: State) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state.tokens, Role::Admin)?;
    let body = read_object(&req, payload).await?;
    let target = Target::create(&body, state.guard.allow_private, generate_secret(), now_ms())?;
    state.guard.check_url(&target.url).await.map_err(|e| ApiError::unprocessable("url", e))?;
    state.router.create_target(target.clone()).await.map_err(router_error)?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/targets/{}", target.id)))
        .json(target_view(&target, None, true)))
}

async fn get_target(req: HttpRequest, id: web::Path<String>, state: State) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state.tokens, Role::Admin)?;
    Ok(HttpResponse::Ok().json(stored_target_view(&state.store, &state.metrics, &load_target(&state, &id)?, false)?))
}

async fn patch_target(
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state.tokens, Role::Admin)?;
    let current = load_target(&state, &id)?;
    let mut body = read_object(&req, payload).await?;
    let enabled = match body.remove("enabled") {
        None => None,
        Some(Value::Bool(b)) => Some(b),
        Some(_) => return Err(ApiError::unprocessable("enabled", "`enabled` must be true or false")),
    };
    let target = current.patched(&body, state.guard.allow_private, now_ms())?;
    if target.url != current.url {
        state.guard.check_url(&target.url).await.map_err(|e| ApiError::unprocessable("url", e))?;
    }
    if target != current {
        state.router.update_target(target.clone()).await.map_err(router_error)?;
    }
    if let Some(enabled) = enabled {
        let disabled = (!enabled).then(|| Disabled { at_ms: now_ms(), reason: "disabled by an operator".into() });
        state.router.set_enabled(target.id.clone(), disabled).await.map_err(router_error)?;
    }
    Ok(HttpResponse::Ok().json(stored_target_view(&state.store, &state.metrics, &target, false)?))
}

async fn delete_target(req: HttpRequest, id: web::Path<String>, state: State) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state.tokens, Role::Admin)?;
    state.router.delete_target(target_id(&id)?).await.map_err(router_error)?;
    Ok(HttpResponse::NoContent().finish())
}

async fn rotate_secret(req: HttpRequest, id: web::Path<String>, state: State) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state.tokens, Role::Admin)?;
    let mut target = load_target(&state, &id)?;
    let now = now_ms();
    let old = std::mem::replace(&mut target.secret, generate_secret());
    target.previous_secret = Some((old, now + ROTATION_OVERLAP_MS));
    target.updated_at_ms = now;
    state.router.update_target(target.clone()).await.map_err(router_error)?;
    Ok(HttpResponse::Ok().json(stored_target_view(&state.store, &state.metrics, &target, true)?))
}

// ---- subscriptions -------------------------------------------------------------------------

fn subscription_view(s: &Subscription) -> Value {
    let filters: Vec<Value> = s
        .filters
        .iter()
        .map(|f| {
            let value: Value = serde_json::from_str(&f.value_json).unwrap_or(Value::Null);
            json!({"path": f.path, "op": f.op.as_str(), "value": value})
        })
        .collect();
    json!({
        "id": s.id,
        "target_id": s.target_id,
        "event_types": s.event_types,
        "kanban_ids": s.kanban_ids,
        "field_names": s.field_names,
        "filters": filters,
        "version_major": s.version_major,
        "created_at": rfc3339(s.created_at_ms),
    })
}

fn subscription_id(raw: &str) -> Result<SubscriptionId, ApiError> {
    SubscriptionId::parse(raw).ok_or_else(|| ApiError::NotFound(format!("subscription {raw} not found")))
}

async fn list_subscriptions(
    req: HttpRequest,
    query: web::Query<HashMap<String, String>>,
    state: State,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state.tokens, Role::Admin)?;
    let only = query.get("target_id");
    let subs: Vec<Value> = state
        .store
        .subscriptions()?
        .iter()
        .filter(|s| only.is_none_or(|t| s.target_id.as_str() == t))
        .map(subscription_view)
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "subscriptions": subs })))
}

async fn create_subscription(req: HttpRequest, payload: web::Payload, state: State) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state.tokens, Role::Admin)?;
    let body = read_object(&req, payload).await?;
    let mut sub = Subscription::create(&body, now_ms())?;
    if state.store.target(&sub.target_id)?.is_none() {
        return Err(ApiError::unprocessable("target_id", format!("no target {} exists", sub.target_id)));
    }
    // It applies to the events after this moment, never to older ones.
    sub.from_seq = state.store.head();
    state.router.create_subscription(sub.clone()).await.map_err(|e| match e {
        RouterError::NotFound(_) => ApiError::unprocessable("target_id", format!("no target {} exists", sub.target_id)),
        other => router_error(other),
    })?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/subscriptions/{}", sub.id)))
        .json(subscription_view(&sub)))
}

async fn get_subscription(req: HttpRequest, id: web::Path<String>, state: State) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state.tokens, Role::Admin)?;
    let sub = state
        .store
        .subscription(&subscription_id(&id)?)?
        .ok_or_else(|| ApiError::NotFound(format!("subscription {id} not found")))?;
    Ok(HttpResponse::Ok().json(subscription_view(&sub)))
}

async fn delete_subscription(req: HttpRequest, id: web::Path<String>, state: State) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state.tokens, Role::Admin)?;
    state.router.delete_subscription(subscription_id(&id)?).await.map_err(router_error)?;
    Ok(HttpResponse::NoContent().finish())
}

// ---- events --------------------------------------------------------------------------------

fn event_view(e: &Event) -> Value {
    // serde_json keeps each number's text (`arbitrary_precision`): `12000.00` is shown as sent.
    let payload: Value = e.payload_json();
    let mut view = json!({
        "id": e.id,
        "seq": e.seq,
        "type": e.event_type,
        "received_at": rfc3339(e.received_at_ms),
        "payload": payload,
    });
    if let Some(source) = &e.source_id {
        view["source_id"] = json!(source);
    }
    view
}

fn attempt_view(a: &Attempt) -> Value {
    let trigger = match (a.n == a.round, a.round > 1) {
        (true, false) => "first",
        (true, true) => "redelivery",
        (false, _) => "retry",
    };
    let mut view = json!({"n": a.n, "at": rfc3339(a.at_ms), "duration_ms": a.duration_ms, "trigger": trigger});
    match &a.outcome {
        Outcome::Status(code) => {
            view["status_code"] = json!(code);
            if !(200..300).contains(code) {
                view["error"] = json!(format!("answered HTTP {code}"));
            }
        }
        Outcome::Timeout => view["error"] = json!("timed out"),
        Outcome::Error(e) => view["error"] = json!(e),
    }
    match a.result {
        AttemptResult::Delivered => view["result"] = json!("delivered"),
        AttemptResult::Retrying { next_at_ms } => {
            view["result"] = json!("retrying");
            view["next_attempt_at"] = json!(rfc3339(next_at_ms));
        }
        AttemptResult::Dead => view["result"] = json!("dead"),
        AttemptResult::TargetDisabled => view["result"] = json!("target_disabled"),
    }
    view
}

/// One entry per target that was, is or will be delivered this event.
fn deliveries(store: &Store, event: &Event) -> Result<Vec<Value>, ApiError> {
    let mut attempts: BTreeMap<TargetId, Vec<Attempt>> = BTreeMap::new();
    for (target, attempt) in store.attempts(event.seq)? {
        attempts.entry(target).or_default().push(attempt);
    }
    let subscriptions = store.subscriptions()?;
    let mut out = Vec::new();
    for target in store.targets()? {
        let list = attempts.remove(&target.id).unwrap_or_default();
        let pending = store.is_pending(&target.id, event.seq)?;
        let not_yet_matched = store.cursor(&target.id)?.is_some_and(|c| c < event.seq);
        let owed = list.is_empty() && !pending && not_yet_matched && {
            let subs: Vec<Subscription> = subscriptions.iter().filter(|s| s.target_id == target.id).cloned().collect();
            Compiled::new(subs).matches(event)
        };
        if list.is_empty() && !pending && !owed {
            continue;
        }
        out.push(delivery_view(&target.id, Some(&target.name), pending || owed, &list));
    }
    for (id, list) in attempts {
        // Attempts of targets deleted since.
        out.push(delivery_view(&id, None, false, &list));
    }
    Ok(out)
}

fn delivery_view(id: &TargetId, name: Option<&str>, pending: bool, attempts: &[Attempt]) -> Value {
    let status = match attempts.last().map(|a| a.result) {
        _ if pending => "pending",
        Some(AttemptResult::Delivered) => "delivered",
        Some(AttemptResult::Dead) => "dead",
        Some(AttemptResult::Retrying { .. } | AttemptResult::TargetDisabled) | None => "pending",
    };
    let mut view = json!({
        "target_id": id,
        "status": status,
        "attempts": attempts.iter().map(attempt_view).collect::<Vec<_>>(),
    });
    match name {
        Some(name) => view["target_name"] = json!(name),
        None => view["target_deleted"] = json!(true),
    }
    view
}

async fn get_event(req: HttpRequest, id: web::Path<String>, state: State) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state.tokens, Role::Admin)?;
    let not_found = || ApiError::NotFound(format!("event {id} not found"));
    let event_id = EventId::parse(&id).ok_or_else(not_found)?;
    let event = state.store.event_by_id(&event_id)?.ok_or_else(not_found)?;
    let mut view = event_view(&event);
    view["deliveries"] = Value::Array(deliveries(&state.store, &event)?);
    Ok(HttpResponse::Ok().json(view))
}

/// The filters of `GET /v1/events`.
struct EventQuery {
    after: u64,
    limit: usize,
    filter: EventFilter,
}

pub(crate) fn page_params(q: &HashMap<String, String>) -> Result<(u64, usize), ApiError> {
    let after = match q.get("after").map(String::as_str) {
        None | Some("") => 0,
        Some(v) => v.parse().map_err(|_| {
            ApiError::unprocessable("after", format!("`after` must be a seq (an integer ≥ 0), not {v:?}"))
        })?,
    };
    let limit = match q.get("limit").map(String::as_str) {
        None | Some("") => DEFAULT_PAGE,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return Err(ApiError::unprocessable(
                    "limit",
                    format!("`limit` must be an integer from 1 to {MAX_PAGE}, not {v:?}"),
                ))
            }
        },
    };
    Ok((after, limit))
}

impl EventQuery {
    fn parse(q: &HashMap<String, String>) -> Result<EventQuery, ApiError> {
        let (after, limit) = page_params(q)?;
        let text = |name: &str| q.get(name).filter(|v| !v.is_empty()).cloned();
        Ok(EventQuery {
            after,
            limit,
            filter: EventFilter {
                event_type: text("type"),
                record_id: text("record_id"),
                kanban_id: text("kanban_id"),
                source_id: match text("source_id") {
                    None => None,
                    Some(s) => Some(crmhook_core::SourceId::parse(&s).ok_or_else(|| {
                        ApiError::unprocessable(
                            "source_id",
                            format!("`source_id` must be a source id (src_…), not {s:?}"),
                        )
                    })?),
                },
                since_ms: time_param(q, "since")?,
                until_ms: time_param(q, "until")?,
            },
        })
    }
}

fn time_param(q: &HashMap<String, String>, name: &str) -> Result<Option<u64>, ApiError> {
    match q.get(name).map(String::as_str) {
        None | Some("") => Ok(None),
        Some(v) => parse_rfc3339(v)
            .map(Some)
            .ok_or_else(|| ApiError::unprocessable(name, format!("`{name}` must be an RFC 3339 time, not {v:?}"))),
    }
}

async fn list_events(
    req: HttpRequest,
    query: web::Query<HashMap<String, String>>,
    state: State,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state.tokens, Role::Admin)?;
    let q = EventQuery::parse(&query)?;
    let events = state.store.events_page(&q.filter, q.after, q.limit)?;
    // A full page may have a next one; a short page is the end of the log.
    let next_after = if events.len() == q.limit { events.last().map(|e| e.seq) } else { None };
    let page: Vec<Value> = events.iter().map(event_view).collect();
    Ok(HttpResponse::Ok().json(json!({"events": page, "next_after": next_after})))
}

/// Who asked, for the log of operators' requests.
pub(crate) fn requester(req: &HttpRequest) -> String {
    match req.peer_addr() {
        Some(addr) => format!("admin token from {}", addr.ip()),
        None => "admin token".to_owned(),
    }
}

async fn target_deliveries(
    req: HttpRequest,
    id: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
    state: State,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state.tokens, Role::Admin)?;
    let target = load_target(&state, &id)?;
    let (after, limit) = page_params(&query)?;
    let status = match query.get("status").map(String::as_str) {
        None | Some("") => None,
        Some("pending") => Some(DeliveryStatus::Pending),
        Some("delivered") => Some(DeliveryStatus::Delivered),
        Some("dead") => Some(DeliveryStatus::Dead),
        Some(other) => {
            return Err(ApiError::unprocessable(
                "status",
                format!("`status` must be pending, delivered or dead, not {other:?}"),
            ))
        }
    };
    let rows = state.store.target_deliveries(&target.id, status, after, limit)?;
    let mut out = Vec::with_capacity(rows.len());
    for (seq, status) in &rows {
        let Some(event) = state.store.event(*seq)? else { continue };
        let attempts: Vec<Value> = state.store.attempts_to(&target.id, *seq)?.iter().map(attempt_view).collect();
        let status = match status {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        };
        out.push(json!({
            "event_id": event.id, "seq": seq, "type": event.event_type,
            "received_at": rfc3339(event.received_at_ms), "status": status, "attempts": attempts,
        }));
    }
    let next_after = if rows.len() == limit { rows.last().map(|(seq, _)| *seq) } else { None };
    Ok(HttpResponse::Ok().json(json!({"target_id": target.id, "deliveries": out, "next_after": next_after})))
}

async fn redeliver(
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state.tokens, Role::Admin)?;
    let not_found = || ApiError::NotFound(format!("event {id} not found"));
    let event = state.store.event_by_id(&EventId::parse(&id).ok_or_else(not_found)?)?.ok_or_else(not_found)?;
    let body = optional_object(&req, payload).await?;
    let targets: Vec<TargetId> = match body.get("target_id") {
        Some(Value::String(t)) => vec![load_target(&state, t)?.id],
        Some(_) => return Err(ApiError::unprocessable("target_id", "`target_id` must be a target id")),
        // Every target that was, is or would be delivered this event.
        None => deliveries(&state.store, &event)?
            .iter()
            .filter(|d| d.get("target_deleted").is_none())
            .filter_map(|d| d["target_id"].as_str().and_then(TargetId::parse))
            .collect(),
    };
    let mut queued = 0;
    for target in targets {
        let request = Request {
            at_ms: now_ms(),
            by: requester(&req),
            action: "redeliver".into(),
            target: target.to_string(),
            detail: format!("event {}", event.id),
            queued: 0,
        };
        queued += state.router.requeue(target, vec![event.seq], request).await.map_err(router_error)?;
    }
    Ok(HttpResponse::Accepted().json(json!({ "queued": queued })))
}

async fn replay(
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state.tokens, Role::Admin)?;
    let target = load_target(&state, &id)?;
    let body = optional_object(&req, payload).await?;
    let status = match body.get("status").and_then(Value::as_str) {
        None | Some("dead") => DeliveryStatus::Dead,
        Some("delivered") => DeliveryStatus::Delivered,
        Some(other) => {
            return Err(ApiError::unprocessable("status", format!("`status` must be dead or delivered, not {other:?}")))
        }
    };
    let since =
        match body.get("since") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(parse_rfc3339(s).ok_or_else(|| {
                ApiError::unprocessable("since", format!("`since` must be an RFC 3339 time, not {s:?}"))
            })?),
            Some(_) => return Err(ApiError::unprocessable("since", "`since` must be an RFC 3339 time")),
        };
    let mut queued = 0;
    let mut after = 0;
    loop {
        let rows = state.store.target_deliveries(&target.id, Some(status), after, 10_000)?;
        let Some((last, _)) = rows.last().copied() else { break };
        after = last;
        let mut seqs = Vec::with_capacity(rows.len());
        for (seq, _) in rows {
            let recent = match since {
                Some(since) => state.store.event(seq)?.is_some_and(|e| e.received_at_ms >= since),
                None => true,
            };
            if recent {
                seqs.push(seq);
            }
        }
        let request = Request {
            at_ms: now_ms(),
            by: requester(&req),
            action: "replay".into(),
            target: target.id.to_string(),
            detail: format!(
                "status {}{}",
                body.get("status").and_then(Value::as_str).unwrap_or("dead"),
                since.map(|s| format!(", since {}", rfc3339(s))).unwrap_or_default()
            ),
            queued: 0,
        };
        queued += state.router.requeue(target.id.clone(), seqs, request).await.map_err(router_error)?;
    }
    Ok(HttpResponse::Accepted().json(json!({ "queued": queued })))
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
