//! Targets (with their deliveries, replays and secret rotation) and subscriptions.

use std::collections::HashMap;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use crmhook_core::samples;
use crmhook_core::sign::generate_secret;
use crmhook_core::subscription::Compiled;
use crmhook_core::time::{now_ms, rfc3339};
use crmhook_core::{Subscription, SubscriptionId, Target, TargetId};
use crmhook_store::{DeliveryStatus, Disabled, Log, Request};

use crate::api::audit::{record, scrubbed};
use crate::api::auth::{Admin, Operator};
use crate::api::forward::{forward, relay};
use crate::api::request::{optional_object, page_params, read_object, Replay, TargetPatch, TargetTest};
use crate::api::state::{requester, router_error, AppState, State};
use crate::api::views::{
    AttemptView, EventView, Queued, Status, SubscriptionView, Subscriptions, TargetDeliveries, TargetDelivery,
    TargetHealth, TargetView, Targets, TestDelivery,
};
use crate::error::ApiError;
use crmhook_dispatch::metrics::Metrics;
use crmhook_dispatch::router::RouterError;

/// How long the previous secret keeps signing after a rotation.
pub const ROTATION_OVERLAP_MS: u64 = 24 * 3_600_000;

// ---- targets -------------------------------------------------------------------------------

/// A target's health from the store and this process's counters.
fn health(store: &dyn Log, metrics: &Metrics, t: &Target) -> Result<TargetHealth, ApiError> {
    let counts = store.delivery_counts(&t.id)?;
    let health = metrics.stored_health(store, &t.id)?;
    Ok(TargetHealth::new(counts, &health))
}

/// Answers a target's view with its enabled state and health from the store.
fn stored_target(store: &dyn Log, metrics: &Metrics, t: &Target, show_secret: bool) -> Result<HttpResponse, ApiError> {
    let disabled = store.disabled(&t.id)?;
    let view = TargetView::new(t, disabled.as_ref(), show_secret).with_health(health(store, metrics, t)?);
    Ok(HttpResponse::Ok().json(view))
}

/// A target's URL may hold a receiver's credential (user info, a token in the query): only an
/// admin key sees it whole; an operator key sees it with those parts redacted.
fn for_caller<'a>(req: &HttpRequest, view: TargetView<'a>) -> TargetView<'a> {
    if crate::api::auth::caller(req).is_some_and(|c| c.role == crate::keys::Role::Admin) {
        view
    } else {
        view.without_credentials()
    }
}

fn target_id(raw: &str) -> Result<TargetId, ApiError> {
    TargetId::parse(raw).ok_or_else(|| ApiError::NotFound(format!("target {raw} not found")))
}

pub(crate) fn load_target(state: &AppState, raw: &str) -> Result<Target, ApiError> {
    state.store.target(&target_id(raw)?)?.ok_or_else(|| ApiError::NotFound(format!("target {raw} not found")))
}

pub(crate) async fn list_targets(_: Operator, req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    let targets = state.store.targets()?;
    let (disabled, healths): (Vec<_>, Vec<_>) = targets
        .iter()
        .map(|t| Ok((state.store.disabled(&t.id)?, health(&*state.store, &state.metrics, t)?)))
        .collect::<Result<Vec<_>, ApiError>>()?
        .into_iter()
        .unzip();
    let views = targets
        .iter()
        .zip(&disabled)
        .zip(healths)
        .map(|((t, d), h)| for_caller(&req, TargetView::new(t, d.as_ref(), false).with_health(h)))
        .collect();
    Ok(HttpResponse::Ok().json(Targets { targets: views }))
}

pub(crate) async fn create_target(
    _: Admin,
    req: HttpRequest,
    payload: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let body = read_object(&req, payload).await?;
    let mut target = Target::create(&body, state.guard.allow_private, generate_secret(), now_ms())?;
    crate::api::views::keep_redacted(None, &mut target.headers)?;
    state.guard.check_url(&target.url).await.map_err(|e| ApiError::unprocessable("url", e))?;
    state.router.create_target(target.clone()).await.map_err(router_error)?;
    let after = scrubbed(&TargetView::new(&target, None, false));
    record(&state, &req, "target.create", target.id.as_str(), None, after).await;
    // With its health, as every target view (it owes nothing yet).
    let view = TargetView::new(&target, None, true).with_health(health(&*state.store, &state.metrics, &target)?);
    Ok(HttpResponse::Created().insert_header((header::LOCATION, format!("/v1/targets/{}", target.id))).json(view))
}

pub(crate) async fn get_target(
    _: Operator,
    req: HttpRequest,
    id: web::Path<String>,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let target = load_target(&state, &id)?;
    let disabled = state.store.disabled(&target.id)?;
    let view =
        TargetView::new(&target, disabled.as_ref(), false).with_health(health(&*state.store, &state.metrics, &target)?);
    Ok(HttpResponse::Ok().json(for_caller(&req, view)))
}

pub(crate) async fn patch_target(
    _: Admin,
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let current = load_target(&state, &id)?;
    let was_disabled = state.store.disabled(&current.id)?;
    let patch = TargetPatch::try_from(read_object(&req, payload).await?)?;
    let mut target = current.patched(&patch.fields, state.guard.allow_private, now_ms())?;
    crate::api::views::keep_redacted(Some(&current), &mut target.headers)?;
    if target.url != current.url {
        state.guard.check_url(&target.url).await.map_err(|e| ApiError::unprocessable("url", e))?;
    }
    if target != current {
        state.router.update_target(target.clone()).await.map_err(router_error)?;
    }
    let mut disabled = was_disabled.clone();
    if let Some(enabled) = patch.enabled {
        let reason = format!("disabled by {}", crate::api::state::who(&req));
        disabled = (!enabled).then(|| Disabled { at_ms: now_ms(), reason });
        state.router.set_enabled(target.id.clone(), disabled.clone()).await.map_err(router_error)?;
    }
    // With whether it was enabled before and after (until 2026-12-07 both read `true` whatever
    // the target was).
    let before = scrubbed(&TargetView::new(&current, was_disabled.as_ref(), false));
    let after = scrubbed(&TargetView::new(&target, disabled.as_ref(), false));
    let enabled = patch.enabled.map_or(String::new(), |e| format!(" (enabled: {e})"));
    record(&state, &req, &format!("target.update{enabled}"), target.id.as_str(), before, after).await;
    stored_target(&*state.store, &state.metrics, &target, false)
}

pub(crate) async fn delete_target(
    _: Admin,
    req: HttpRequest,
    id: web::Path<String>,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let id = target_id(&id)?;
    let disabled = state.store.disabled(&id)?;
    let before = state.store.target(&id)?.and_then(|t| scrubbed(&TargetView::new(&t, disabled.as_ref(), false)));
    state.router.delete_target(id.clone()).await.map_err(router_error)?;
    record(&state, &req, "target.delete", id.as_str(), before, None).await;
    Ok(HttpResponse::NoContent().finish())
}

pub(crate) async fn rotate_secret(
    _: Admin,
    req: HttpRequest,
    id: web::Path<String>,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let mut target = load_target(&state, &id)?;
    let now = now_ms();
    let old = std::mem::replace(&mut target.secret, generate_secret());
    target.previous_secret = Some((old, now + ROTATION_OVERLAP_MS));
    target.updated_at_ms = now;
    state.router.update_target(target.clone()).await.map_err(router_error)?;
    record(&state, &req, "target.rotate_secret", target.id.as_str(), None, None).await;
    stored_target(&*state.store, &state.metrics, &target, true)
}

/// `POST /v1/targets/{id}/test`: builds a sample event of the asked type (`{"type"?}`; by
/// default the target's format's first), logs it as a test event, delivers it to this target
/// alone, now, signed as every delivery and once (not through its queue, no retry), and
/// answers the event and the attempt, with what the receiver answered. A disabled target is
/// tested too: a test is how one checks a receiver before enabling it again.
pub(crate) async fn test_target(
    _: Admin,
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let target = load_target(&state, &id)?;
    let raw = optional_object(&req, payload).await?;
    let body = TargetTest::try_from(raw.clone())?;
    let event_type = body.event_type.as_deref().unwrap_or_else(|| samples::default_type(target.format));
    let sample = samples::sample(event_type).ok_or_else(|| {
        let known: Vec<&str> = samples::types().collect();
        ApiError::unprocessable("type", format!("no sample of type {event_type:?}; one of {}", known.join(", ")))
    })?;
    let (ack, attempt) = match state.router.test(target.id.clone(), sample).await {
        // Cluster mode: the node delivering the target tests it (and audits it).
        Err(RouterError::Elsewhere(_)) => {
            let path = format!("/v1/targets/{}/test", target.id);
            return Ok(relay(forward(&state, &req, &target.id, path, serde_json::Value::Object(raw)).await?));
        }
        result => result.map_err(router_error)?,
    };
    state.metrics.test_event();
    let event = state.store.event(ack.seq)?.ok_or_else(|| ApiError::NotFound(format!("event {} not found", ack.id)))?;
    let status_code = match attempt.outcome {
        crmhook_core::retry::Outcome::Status(code) => serde_json::json!(code),
        _ => serde_json::Value::Null,
    };
    let after = serde_json::json!({"event_id": ack.id, "type": event.event_type, "status_code": status_code});
    let after = Some(after.to_string());
    record(&state, &req, "target.test", target.id.as_str(), None, after).await;
    Ok(HttpResponse::Ok().json(TestDelivery { event: EventView::from(&event), attempt: AttemptView::from(&attempt) }))
}

// ---- a target's deliveries -----------------------------------------------------------------

pub(crate) async fn target_deliveries(
    _: Operator,
    id: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
    state: State,
) -> Result<HttpResponse, ApiError> {
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
    let mut rows = state.store.target_deliveries(&target.id, status, after, limit)?;
    // The records list what the target's actor has taken on; what it owes past its window (a
    // target far behind) is pending too, found in the log as an event's view finds it.
    let mut scanned_to = None;
    if status.is_none_or(|s| s == DeliveryStatus::Pending) {
        let (owed, stopped_at) = owed_unread(state.store.as_ref(), &target.id, after, limit)?;
        rows.extend(owed.into_iter().map(|seq| (seq, DeliveryStatus::Pending)));
        rows.sort_by_key(|(seq, _)| *seq);
        rows.dedup_by_key(|(seq, _)| *seq);
        if let Some(last) = stopped_at {
            rows.retain(|(seq, _)| *seq <= last);
        }
        rows.truncate(limit);
        scanned_to = stopped_at;
    }
    let mut found = Vec::with_capacity(rows.len());
    for (seq, status) in &rows {
        let Some(event) = state.store.event(*seq)? else { continue };
        found.push((event, Status::from(*status), state.store.attempts_to(&target.id, *seq)?));
    }
    let deliveries = found
        .iter()
        .map(|(event, status, attempts)| TargetDelivery {
            event_id: &event.id,
            seq: event.seq,
            event_type: &event.event_type,
            received_at: rfc3339(event.received_at_ms),
            status: *status,
            attempts: attempts.iter().map(AttemptView::from).collect(),
        })
        .collect();
    let next_after = if rows.len() == limit { rows.last().map(|(seq, _)| *seq) } else { scanned_to };
    Ok(HttpResponse::Ok().json(TargetDeliveries { target_id: &target.id, deliveries, next_after }))
}

/// How many events past a target's cursor one page of its pending deliveries reads at most.
const OWED_SCAN: usize = 100_000;

/// The deliveries a target owes after seq `after` that have no record yet (the events past its
/// cursor that match its subscriptions, with nothing recorded of them: dispatch's
/// `window::owed`, the rule an event's view applies), at most `limit`, in seq order. A target far behind owes events its actor has not read yet. The
/// read stops after [`OWED_SCAN`] events; then the second value is the last seq read (the page
/// ends there, and goes on from it).
fn owed_unread(
    store: &dyn Log,
    target: &TargetId,
    after: u64,
    limit: usize,
) -> Result<(Vec<u64>, Option<u64>), ApiError> {
    let Some(cursor) = store.cursor(target)? else { return Ok((Vec::new(), None)) };
    let subscriptions: Vec<Subscription> =
        store.subscriptions()?.into_iter().filter(|s| &s.target_id == target).collect();
    let compiled = Compiled::new(subscriptions);
    let recorded = |seq| -> Result<bool, ApiError> {
        Ok(store.is_pending(target, seq)? || !store.attempts_to(target, seq)?.is_empty())
    };
    let head = store.head();
    let mut owed = Vec::new();
    for (read, event) in store.event_refs_from(after.max(cursor).saturating_add(1)).enumerate() {
        let event = event?;
        if event.seq > head {
            break;
        }
        if read == OWED_SCAN {
            return Ok((owed, Some(event.seq - 1)));
        }
        // Past the cursor; matching first, as it reads nothing from the store.
        if compiled.matches(&event) && !recorded(event.seq)? {
            owed.push(event.seq);
            if owed.len() == limit {
                break;
            }
        }
    }
    Ok((owed, None))
}

pub(crate) async fn replay(
    _: Operator,
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let target = load_target(&state, &id)?;
    let raw = optional_object(&req, payload).await?;
    let body = Replay::try_from(raw.clone())?;
    // The target's actor counts what it queued (`queued`).
    let request = || Request {
        at_ms: now_ms(),
        by: requester(&req),
        action: "replay".into(),
        target: target.id.to_string(),
        detail: format!(
            "status {}{}{}",
            body.status_name(),
            body.since_ms.map(|s| format!(", since {}", rfc3339(s))).unwrap_or_default(),
            body.until_ms.map(|u| format!(", until {}", rfc3339(u))).unwrap_or_default()
        ),
        queued: 0,
    };
    let queued = if body.status == DeliveryStatus::Pending {
        // The retries waiting are in the target's window: its actor brings them forward.
        state.router.hasten(target.id.clone(), body.received(), request()).await
    } else {
        requeue_finished(&state, &target.id, &body, request).await
    };
    let queued = match queued {
        // Cluster mode: the node delivering the target replays (and audits it).
        Err(RouterError::Elsewhere(_)) => {
            let path = format!("/v1/targets/{}/replay", target.id);
            return Ok(relay(forward(&state, &req, &target.id, path, serde_json::Value::Object(raw)).await?));
        }
        result => result.map_err(router_error)?,
    };
    let after = Some(format!("{{\"status\":\"{}\",\"queued\":{queued}}}", body.status_name()));
    record(&state, &req, "target.replay", target.id.as_str(), None, after).await;
    Ok(HttpResponse::Accepted().json(Queued { queued }))
}

/// Queues a target's finished deliveries (of `body.status`, received in `body.received()`) again, a
/// page of the store's listing at a time; answers how many were queued.
async fn requeue_finished(
    state: &State,
    target: &TargetId,
    body: &Replay,
    request: impl Fn() -> Request,
) -> Result<u64, RouterError> {
    // A delivery that has arrived but whose record is on its way is listed once it is written.
    state.router.settled(target.clone()).await?;
    let received = body.received();
    let mut queued = 0;
    let mut after = 0;
    loop {
        let rows = state.store.target_deliveries(target, Some(body.status), after, 10_000)?;
        let Some((last, _)) = rows.last().copied() else { break };
        after = last;
        let mut seqs = Vec::with_capacity(rows.len());
        for (seq, _) in rows {
            let recent = match &received {
                None => true,
                Some(span) => state.store.event(seq)?.is_some_and(|e| span.contains(&e.received_at_ms)),
            };
            if recent {
                seqs.push(seq);
            }
        }
        // Cluster mode: another node delivers the target (`Elsewhere`); the caller forwards.
        queued += state.router.requeue(target.clone(), seqs, request()).await?;
    }
    Ok(queued)
}

// ---- subscriptions -------------------------------------------------------------------------

fn subscription_id(raw: &str) -> Result<SubscriptionId, ApiError> {
    SubscriptionId::parse(raw).ok_or_else(|| ApiError::NotFound(format!("subscription {raw} not found")))
}

pub(crate) async fn list_subscriptions(
    _: Operator,
    query: web::Query<HashMap<String, String>>,
    state: State,
) -> Result<HttpResponse, ApiError> {
    // A target id that is not one is refused, as `GET /v1/events` refuses a `source_id`; one
    // naming no target lists nothing (until 2026-12-07 anything listed nothing).
    let only = match query.get("target_id") {
        None => None,
        Some(raw) => Some(TargetId::parse(raw).ok_or_else(|| {
            ApiError::unprocessable("target_id", format!("`target_id` must be a target id (tgt_…), not {raw:?}"))
        })?),
    };
    let subs = state.store.subscriptions()?;
    let subscriptions =
        subs.iter().filter(|s| only.as_ref().is_none_or(|t| &s.target_id == t)).map(SubscriptionView::from).collect();
    Ok(HttpResponse::Ok().json(Subscriptions { subscriptions }))
}

pub(crate) async fn create_subscription(
    _: Admin,
    req: HttpRequest,
    payload: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let body = read_object(&req, payload).await?;
    let mut sub = Subscription::create(&body, now_ms())?;
    if state.store.target(&sub.target_id)?.is_none() {
        return Err(ApiError::unprocessable("target_id", format!("no target {} exists", sub.target_id)));
    }
    // At most `MAX_PER_TARGET` subscriptions per target: the router counts them, as it handles
    // creations one at a time (422 on `target_id`, `RouterError::TooManySubscriptions`).
    // It applies to the events after this moment, never to older ones.
    sub.from_seq = state.store.head();
    state.router.create_subscription(sub.clone()).await.map_err(|e| match e {
        RouterError::NotFound(_) => ApiError::unprocessable("target_id", format!("no target {} exists", sub.target_id)),
        other => router_error(other),
    })?;
    record(&state, &req, "subscription.create", sub.id.as_str(), None, scrubbed(&SubscriptionView::from(&sub))).await;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/subscriptions/{}", sub.id)))
        .json(SubscriptionView::from(&sub)))
}

pub(crate) async fn get_subscription(
    _: Operator,
    id: web::Path<String>,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let sub = state
        .store
        .subscription(&subscription_id(&id)?)?
        .ok_or_else(|| ApiError::NotFound(format!("subscription {id} not found")))?;
    Ok(HttpResponse::Ok().json(SubscriptionView::from(&sub)))
}

pub(crate) async fn delete_subscription(
    _: Admin,
    req: HttpRequest,
    id: web::Path<String>,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let id = subscription_id(&id)?;
    let before = state.store.subscription(&id)?.and_then(|s| scrubbed(&SubscriptionView::from(&s)));
    state.router.delete_subscription(id.clone()).await.map_err(router_error)?;
    record(&state, &req, "subscription.delete", id.as_str(), before, None).await;
    Ok(HttpResponse::NoContent().finish())
}

/// `PATCH /v1/subscriptions/{id}`: the members given replace the subscription's (`null`
/// clears one), checked as a creation is; `target_id` cannot change. The router reads, edits,
/// stores and hands the subscription to its target's actor as one admin change, so the events
/// the target matches from then on are matched with the edit (see `docs/SUBSCRIPTIONS.md`).
pub(crate) async fn patch_subscription(
    _: Admin,
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let id = subscription_id(&id)?;
    let body = read_object(&req, payload).await?;
    let (before, after) =
        state.router.update_subscription(id.clone(), move |current| current.patched(&body)).await.map_err(
            |e| match e {
                RouterError::NotFound(_) => ApiError::NotFound(format!("subscription {id} not found")),
                other => router_error(other),
            },
        )?;
    let (b, a) = (scrubbed(&SubscriptionView::from(&before)), scrubbed(&SubscriptionView::from(&after)));
    record(&state, &req, "subscription.update", after.id.as_str(), b, a).await;
    Ok(HttpResponse::Ok().json(SubscriptionView::from(&after)))
}
