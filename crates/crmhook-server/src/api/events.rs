//! Events: ingest with the ingest token (`POST /v1/events`), the log (`GET /v1/events`, one
//! event with its deliveries), and redelivery of one event.

use std::collections::{BTreeMap, HashMap};

use actix_web::{web, HttpRequest, HttpResponse};
use crmhook_core::event::parse_ingest;
use crmhook_core::subscription::Compiled;
use crmhook_core::time::now_ms;
use crmhook_core::{Event, EventId, Subscription, TargetId};
use crmhook_dispatch::metrics::Metrics;
use crmhook_dispatch::router::RouterError;
use crmhook_dispatch::window::{self, OnDisk};
use crmhook_store::{Attempt, EventFilter, Log, Request};

use crate::api::auth::{Ingest, Operator};
use crate::api::forward::{forward, relay};
use crate::api::request::{
    idempotency_key, ingest_slot, off_worker, optional_object, page_params, read_ingest, require_json, time_param,
    token_key, Intake, Redeliver,
};
use crate::api::state::{requester, router_error, State};
use crate::api::targets::load_target;
use crate::api::views::{Accepted, Ack, DeliveryView, EventDetail, EventPage, EventView, Queued};
use crate::error::ApiError;

// ---- ingest --------------------------------------------------------------------------------

pub(crate) async fn ingest(
    _: Ingest,
    req: HttpRequest,
    payload: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    require_json(&req)?;
    let key = idempotency_key(&req)?;
    // Held until the events are durable: a slot of this token's, and the bytes read.
    let _slot = ingest_slot(&req, token_key(&req))?;
    let (body, _share) = read_ingest(&req, payload, &state).await?;
    let body = body.freeze();
    let events = off_worker(&state, body.len(), move || parse_ingest(&body)).await??;
    let acks = state.router.ingest(events, key).await.map_err(router_error)?;
    let (events, duplicates) = ack_view(&state.metrics, &acks);
    Ok(HttpResponse::Accepted().json(Accepted { accepted: acks.len() - duplicates, duplicates, events }))
}

/// The `events` member of an ingest answer, and how many of them were duplicates. Counts the
/// new ones in the metrics.
pub(crate) fn ack_view<'a>(metrics: &Metrics, acks: &'a [crmhook_store::AckEntry]) -> (Vec<Ack<'a>>, usize) {
    let now = now_ms();
    for ack in acks.iter().filter(|a| !a.duplicate) {
        metrics.ingested_at(&ack.event_type, now);
    }
    let duplicates = acks.iter().filter(|a| a.duplicate).count();
    (acks.iter().map(Ack::from).collect(), duplicates)
}

// ---- the log -------------------------------------------------------------------------------

/// One entry per target that was, is or will be delivered this event (what a target owes, by
/// dispatch's one rule, [`window::owed`]).
fn deliveries(store: &dyn Log, event: &Event) -> Result<Vec<DeliveryView>, ApiError> {
    let mut attempts: BTreeMap<TargetId, Vec<Attempt>> = BTreeMap::new();
    for (target, attempt) in store.attempts(event.seq)? {
        attempts.entry(target).or_default().push(attempt);
    }
    let subscriptions = store.subscriptions()?;
    let mut out = Vec::new();
    for target in store.targets()? {
        let list = attempts.remove(&target.id).unwrap_or_default();
        let pending = store.is_pending(&target.id, event.seq)?;
        let past_cursor = store.cursor(&target.id)?.is_some_and(|c| c < event.seq);
        let on_disk = if pending || !list.is_empty() { OnDisk::Recorded } else { OnDisk::Nothing };
        let owed = window::owed(past_cursor, on_disk, || {
            let subs: Vec<Subscription> = subscriptions.iter().filter(|s| s.target_id == target.id).cloned().collect();
            Compiled::new(subs).matches(event)
        });
        if list.is_empty() && !pending && !owed {
            continue;
        }
        out.push(DeliveryView::new(target.id, Some(target.name), pending || owed, &list));
    }
    for (id, list) in attempts {
        // Attempts of targets deleted since.
        out.push(DeliveryView::new(id, None, false, &list));
    }
    Ok(out)
}

fn load_event(state: &State, raw: &str) -> Result<Event, ApiError> {
    let not_found = || ApiError::NotFound(format!("event {raw} not found"));
    state.store.event_by_id(&EventId::parse(raw).ok_or_else(not_found)?)?.ok_or_else(not_found)
}

pub(crate) async fn get_event(_: Operator, id: web::Path<String>, state: State) -> Result<HttpResponse, ApiError> {
    let event = load_event(&state, &id)?;
    let deliveries = deliveries(&*state.store, &event)?;
    Ok(HttpResponse::Ok().json(EventDetail { event: EventView::from(&event), deliveries }))
}

/// The filters of `GET /v1/events`.
struct EventQuery {
    after: u64,
    limit: usize,
    /// `order=newest`: the page goes backwards from `after` (from the head when it is 0 or
    /// missing), and `next_after` leads to older events.
    newest: bool,
    filter: EventFilter,
}

impl EventQuery {
    fn parse(q: &HashMap<String, String>) -> Result<EventQuery, ApiError> {
        let (after, limit) = page_params(q)?;
        let text = |name: &str| q.get(name).filter(|v| !v.is_empty()).cloned();
        let newest = match q.get("order").map(|v| v.trim()) {
            None | Some("" | "oldest") => false,
            Some("newest") => true,
            Some(other) => {
                return Err(ApiError::unprocessable(
                    "order",
                    format!("`order` must be oldest or newest, not {other:?}"),
                ))
            }
        };
        Ok(EventQuery {
            after,
            limit,
            newest,
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

pub(crate) async fn list_events(
    _: Operator,
    req: HttpRequest,
    query: web::Query<HashMap<String, String>>,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let q = EventQuery::parse(&query)?;
    let page_bytes = Intake::of(&req).page_bytes;
    // A page ends at `limit` events or once its payloads reach `max_page_bytes`, whichever
    // comes first (but holds at least one event). The log is read a few events at a time, no
    // more than could fill the room left even if each were as large as a body may be.
    let mut events: Vec<Event> = Vec::new();
    let mut bytes = 0usize;
    let mut after = q.after;
    let mut end = false;
    while events.len() < q.limit && bytes < page_bytes {
        let room = page_bytes - bytes;
        let n = (room / state.max_body_bytes.max(1)).clamp(1, q.limit - events.len());
        let batch = if q.newest {
            state.store.events_page_newest(&q.filter, (after > 0).then_some(after), n)?
        } else {
            state.store.events_page(&q.filter, after, n)?
        };
        end = batch.len() < n;
        for e in batch {
            bytes = bytes.saturating_add(e.payload.len());
            after = e.seq;
            events.push(e);
        }
        if end {
            break;
        }
    }
    // A page cut by its limit or its bytes may have a next one; a short page is the end of the
    // log (or, newest first, its start).
    let next_after = if end { None } else { events.last().map(|e| e.seq) };
    Ok(HttpResponse::Ok().json(EventPage { events: events.iter().map(EventView::from).collect(), next_after }))
}

// ---- redelivery ----------------------------------------------------------------------------

pub(crate) async fn redeliver(
    _: Operator,
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let event = load_event(&state, &id)?;
    if event.test {
        return Err(ApiError::Conflict(format!(
            "{} is a test event: it is not redelivered; send another with POST /v1/targets/{{id}}/test",
            event.id
        )));
    }
    let body = Redeliver::try_from(optional_object(&req, payload).await?)?;
    let targets: Vec<TargetId> = match body.target_id {
        Some(t) => vec![load_target(&state, &t)?.id],
        // Every target that was, is or would be delivered this event.
        None => {
            deliveries(&*state.store, &event)?.into_iter().filter(|d| !d.target_deleted).map(|d| d.target_id).collect()
        }
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
        queued += match state.router.requeue(target.clone(), vec![event.seq], request).await {
            // Cluster mode: the node delivering the target queues it.
            Err(RouterError::Elsewhere(_)) => {
                let path = format!("/v1/events/{}/redeliver", event.id);
                let body = serde_json::json!({ "target_id": target });
                match forward(&state, &req, &target, path, body).await? {
                    answer if answer.status.is_success() => answer.body["queued"].as_u64().unwrap_or(0),
                    answer => return Ok(relay(answer)),
                }
            }
            result => result.map_err(router_error)?,
        };
    }
    let after = Some(format!("{{\"queued\":{queued}}}"));
    crate::api::audit::record(&state, &req, "event.redeliver", event.id.as_str(), None, after).await;
    Ok(HttpResponse::Accepted().json(Queued { queued }))
}
