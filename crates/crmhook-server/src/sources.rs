//! Sources and the quarantine (contract section 2b): the CRUD of sources, the ingest URL each
//! CRM posts to as it really posts (`POST /in/{source_id}`), and the pieces of those requests
//! that were not events (`/v1/rejected`).
//!
//! A source's ingest never refuses what it cannot read: an element that breaks the rules, or a
//! body that does not parse, is kept in the quarantine with its exact bytes and the request
//! still answers 200 once everything is durable, so a CRM that discards failed batches
//! (Maximizer) loses none of the good events beside it. Only an unauthenticated request (401),
//! a body that stalls (408), too many requests of the source at once (503),
//! a body over `max_body_bytes` (413) or a server that cannot write (503) is refused, and then
//! nothing is stored.

use std::collections::HashMap;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use crmhook_core::event::{parse_source, parse_source_piece};
use crmhook_core::time::now_ms;
use crmhook_core::{RejectedId, Source, SourceId, SourceKind};
use crmhook_store::{Rejected, Retried};

use crate::api::audit::{record, scrubbed};
use crate::api::auth::{Admin, Operator};
use crate::api::events::ack_view;
use crate::api::request::{idempotency_key, ingest_slot, limit_param, off_worker, read_ingest, read_object};
use crate::api::state::{router_error, AppState, State};
use crate::api::views::{RejectedPage, RejectedView, Rejection, Retry, SourceAccepted, SourceView, Sources};
use crate::error::ApiError;

/// The header MAIA signs its webhooks with.
const MAIA_SIGNATURE: &str = "x-maia-signature";

/// The sources' routes, a source's ingest URL first (`api::routes` mounts them before its own
/// routes with a `{…}` segment: actix tries the routes in order, and each costs a regex match).
pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    use crate::api::resource;
    use actix_web::http::Method;
    cfg.service(resource("/in/{id}").on(Method::POST, source_ingest).done())
        .service(resource("/v1/sources").on(Method::GET, list_sources).on(Method::POST, create_source).done())
        .service(
            resource("/v1/sources/{id}")
                .on(Method::GET, get_source)
                .on(Method::PATCH, patch_source)
                .on(Method::DELETE, delete_source)
                .done(),
        )
        .service(resource("/v1/sources/{id}/rotate-key").on(Method::POST, rotate_key).done())
        .service(resource("/v1/rejected").on(Method::GET, list_rejected).done())
        .service(resource("/v1/rejected/{id}").on(Method::GET, get_rejected).done())
        .service(resource("/v1/rejected/{id}/retry").on(Method::POST, retry_rejected).done());
}

// ---- sources -------------------------------------------------------------------------------

fn source_view<'a>(state: &AppState, s: &'a Source, key: Option<&'a str>) -> SourceView<'a> {
    SourceView::new(&state.public_url, s, key)
}

fn load_source(state: &AppState, raw: &str) -> Result<Source, ApiError> {
    let not_found = || ApiError::NotFound(format!("source {raw} not found"));
    state.store.source(&SourceId::parse(raw).ok_or_else(not_found)?)?.ok_or_else(not_found)
}

async fn list_sources(_: Operator, state: State) -> Result<HttpResponse, ApiError> {
    let sources = state.store.sources()?;
    Ok(HttpResponse::Ok().json(Sources { sources: sources.iter().map(|s| source_view(&state, s, None)).collect() }))
}

async fn create_source(
    _: Admin,
    req: HttpRequest,
    payload: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let body = read_object(&req, payload).await?;
    let (source, key) = Source::create(&body, now_ms())?;
    state.store.put_source(&source).await?;
    tracing::info!(source_id = %source.id, kind = source.kind.as_str(), "source created");
    record(&state, &req, "source.create", source.id.as_str(), None, scrubbed(&source_view(&state, &source, None)))
        .await;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/sources/{}", source.id)))
        .json(source_view(&state, &source, key.as_deref())))
}

async fn get_source(_: Operator, id: web::Path<String>, state: State) -> Result<HttpResponse, ApiError> {
    let source = load_source(&state, &id)?;
    Ok(HttpResponse::Ok().json(source_view(&state, &source, None)))
}

async fn patch_source(
    _: Admin,
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let current = load_source(&state, &id)?;
    let body = read_object(&req, payload).await?;
    let source = current.patched(&body, now_ms())?;
    state.store.put_source(&source).await?;
    let secret = if source.maia_secret != current.maia_secret { " (new maia_secret)" } else { "" };
    let (before, after) =
        (scrubbed(&source_view(&state, &current, None)), scrubbed(&source_view(&state, &source, None)));
    record(&state, &req, &format!("source.update{secret}"), source.id.as_str(), before, after).await;
    Ok(HttpResponse::Ok().json(source_view(&state, &source, None)))
}

async fn delete_source(
    _: Admin,
    req: HttpRequest,
    id: web::Path<String>,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let source = load_source(&state, &id)?;
    state.store.delete_source(&source.id).await?;
    record(&state, &req, "source.delete", source.id.as_str(), scrubbed(&source_view(&state, &source, None)), None)
        .await;
    Ok(HttpResponse::NoContent().finish())
}

async fn rotate_key(_: Admin, req: HttpRequest, id: web::Path<String>, state: State) -> Result<HttpResponse, ApiError> {
    let mut source = load_source(&state, &id)?;
    if source.kind != SourceKind::Maximizer {
        return Err(ApiError::Conflict(format!(
            "source {} is a maia source: it is authenticated by MAIA's own secret; set a new one with PATCH {{\"maia_secret\"}}",
            source.id
        )));
    }
    let key = source.new_key();
    source.updated_at_ms = now_ms();
    state.store.put_source(&source).await?;
    record(&state, &req, "source.rotate_key", source.id.as_str(), None, None).await;
    Ok(HttpResponse::Ok().json(source_view(&state, &source, Some(&key))))
}

// ---- ingest from a source ------------------------------------------------------------------

/// The key a Maximizer source was given: `?key=` in the URL, or `Authorization: Bearer`. An
/// empty `?key=` is no key (until 2026-12-07 it was taken, and refused, before the header).
fn maximizer_key(req: &HttpRequest) -> Option<String> {
    let from_query = url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, v)| k == "key" && !v.is_empty())
        .map(|(_, v)| v.into_owned());
    from_query.or_else(|| crate::api::auth::bearer(req).map(str::to_owned))
}

/// 401 with a detail that names what is missing and never echoes a key or signature.
fn unauthenticated(detail: &str) -> ApiError {
    ApiError::Unauthorized(detail.to_owned())
}

/// `POST /in/{id}` under the failed-authentication limits of the API (`crate::api::limits`), by
/// client address: an address past its allowance is answered 429 before anything is checked;
/// each 401 (an unknown source, a wrong key or signature) is counted, logged without the key
/// or signature, and audited (`auth.failed`).
async fn source_ingest(
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let addr = crate::api::client::client_ip(&req);
    let client = state.limiter.client(addr, None);
    if let Some(retry_after_s) = state.limiter.blocked(&client, std::time::Instant::now()) {
        state.metrics.auth_rate_limited();
        return Err(ApiError::TooManyRequests {
            detail: format!("too many failed authentications from this address; try again in {retry_after_s} s"),
            retry_after_s,
        });
    }
    let answer = ingest_to_source(&req, addr, id, payload, &state).await;
    if let Err(ApiError::Unauthorized(reason)) = &answer {
        state.metrics.auth_failed();
        state.limiter.failed(&client, std::time::Instant::now());
        let client = addr.map(|a| a.to_string()).unwrap_or_else(|| "unknown".into());
        tracing::warn!(%client, path = req.path(), %reason, "a source's authentication failed");
        crate::api::audit::auth_failed(&state, &req, reason);
    }
    answer
}

/// `addr`: the client's address (`crate::api::client`), as the limits counted it.
async fn ingest_to_source(
    req: &HttpRequest,
    addr: Option<std::net::IpAddr>,
    id: web::Path<String>,
    payload: web::Payload,
    state: &State,
) -> Result<HttpResponse, ApiError> {
    let unknown = "no enabled source has this ingest URL; check the URL (POST /v1/sources answers it)";
    let source = match SourceId::parse(&id) {
        Some(id) => state.store.source(&id)?.filter(|s| s.enabled).ok_or_else(|| unauthenticated(unknown))?,
        None => return Err(unauthenticated(unknown)),
    };
    // Maximizer's key is checked before the body is read; MAIA's signature needs the body.
    let signature =
        match source.kind {
            SourceKind::Maximizer => {
                let key = maximizer_key(req).ok_or_else(|| {
                    unauthenticated(
                        "a maximizer source needs its key: `?key=<key>` in the URL or `Authorization: Bearer <key>`",
                    )
                })?;
                if !source.key_matches(&key) {
                    return Err(unauthenticated("the key is not this source's key"));
                }
                None
            }
            SourceKind::Maia => {
                Some(req.headers().get(MAIA_SIGNATURE).and_then(|v| v.to_str().ok()).map(str::to_owned).ok_or_else(
                    || unauthenticated("a maia source needs `X-Maia-Signature` (MAIA signs every webhook)"),
                )?)
            }
        };
    // A source's `Idempotency-Key`s are its own: another CRM (or an API client) that happens to
    // send the same key is another sender, not a retry. A header value holds no line feed, so no
    // key of `/v1/events` can be one of these. A malformed key is refused (400) only once the
    // request is authenticated: before, the answer is 401 whatever else is wrong.
    let key = idempotency_key(req).map(|k| k.map(|k| format!("{}\n{k}", source.id)));
    // Held until the events are durable: a slot of this source's, and the bytes read. A MAIA
    // request is not authenticated until its body is in, so it reads its body under a slot of
    // its address's instead, and takes the source's once its signature matched: anyone who
    // knows the ingest URL can hold its own address's slots with slow bodies, not the source's
    // (until 2026-12-07 they took the source's, and its CRM's posts got 503).
    let sender = match &signature {
        None => format!("source:{}", source.id),
        Some(_) => format!("source:{}:{}", source.id, addr.map_or_else(String::new, |a| a.to_string())),
    };
    let mut _slot = ingest_slot(req, sender)?;
    let (body, _share) = read_ingest(req, payload, state).await?;
    // MAIA's signature (over the whole body) is checked, and then the body parsed, in one hop:
    // a large body's both run on the blocking pool in one turn. `None`: the signature is wrong.
    let (len, checked, signature_checked) = (body.len(), source.clone(), signature.is_some());
    let batch = off_worker(state, len, move || {
        let matches = signature.is_none_or(|signature| checked.maia_signature_matches(&body, &signature));
        matches.then(|| parse_source(checked.kind, &checked.id, &body))
    })
    .await?;
    let Some(batch) = batch else {
        let detail = match source.maia_secret {
            None => "this source has no `maia_secret` yet: set the secret MAIA's Webhook Center shows",
            Some(_) => "`X-Maia-Signature` is not the HMAC-SHA256 of this body with the source's `maia_secret`",
        };
        return Err(unauthenticated(detail));
    };
    if signature_checked {
        _slot = ingest_slot(req, format!("source:{}", source.id))?;
    }
    let key = key?;
    let at_ms = now_ms();
    // The quarantine lists by id: one request's pieces in their order (ids made in one
    // millisecond differ in random bits only).
    let mut ids: Vec<RejectedId> = batch.rejected.iter().map(|_| RejectedId::generate()).collect();
    ids.sort();
    let rejected: Vec<Rejected> = batch
        .rejected
        .into_iter()
        .zip(ids)
        .map(|(r, id)| Rejected {
            id,
            source_id: source.id.clone(),
            kind: source.kind,
            at_ms,
            index: r.index.and_then(|i| u32::try_from(i).ok()),
            reason: r.reason,
            bytes: r.bytes,
            retried: None,
        })
        .collect();
    // The events and the quarantine are written side by side; both are durable before the 200.
    let append = async {
        if batch.events.is_empty() {
            return Ok(Vec::new());
        }
        state.router.ingest(batch.events, key).await.map_err(router_error)
    };
    let quarantine = async {
        if rejected.is_empty() {
            return Ok(Vec::new());
        }
        state.store.quarantine(&rejected).await.map_err(ApiError::from)
    };
    let (acks, held) = futures_util::future::join(append, quarantine).await;
    let acks = acks?;
    // The piece that holds each: its own, or the one the same bytes made before.
    let held = held?;
    let new = rejected.iter().zip(&held).filter(|(r, id)| r.id == **id).count();
    if new > 0 {
        state.metrics.rejected(source.id.as_str(), new as u64);
        tracing::warn!(source_id = %source.id, rejected = new, "kept pieces of a source's request in the quarantine");
    }
    let (events, duplicates) = ack_view(&state.metrics, &acks);
    Ok(HttpResponse::Ok().json(SourceAccepted {
        accepted: acks.len() - duplicates,
        duplicates,
        // The elements, also when more than `MAX_PIECES_PER_REQUEST` of them are kept as one piece.
        rejected: batch.elements_rejected,
        events,
        rejections: rejected
            .iter()
            .zip(&held)
            .map(|(r, id)| Rejection { id, index: r.index, reason: &r.reason })
            .collect(),
    }))
}

// ---- the quarantine ------------------------------------------------------------------------

fn load_rejected(state: &AppState, raw: &str) -> Result<Rejected, ApiError> {
    let not_found = || ApiError::NotFound(format!("rejected piece {raw} not found"));
    state.store.rejected(&RejectedId::parse(raw).ok_or_else(not_found)?)?.ok_or_else(not_found)
}

async fn list_rejected(
    _: Operator,
    query: web::Query<HashMap<String, String>>,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let text = |name: &str| query.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    let source = match text("source_id") {
        None => None,
        Some(s) => Some(SourceId::parse(s).ok_or_else(|| {
            ApiError::unprocessable("source_id", format!("`source_id` must be a source id (src_…), not {s:?}"))
        })?),
    };
    let after = match text("after") {
        None => None,
        Some(a) => Some(RejectedId::parse(a).ok_or_else(|| {
            ApiError::unprocessable("after", format!("`after` must be the id of a rejected piece (rej_…), not {a:?}"))
        })?),
    };
    let limit = limit_param(&query)?;
    let page = state.store.rejected_page(source.as_ref(), after.as_ref(), limit)?;
    let next_after = if page.len() == limit { page.last().map(|r| &r.id) } else { None };
    Ok(HttpResponse::Ok().json(RejectedPage { rejected: page.iter().map(RejectedView::from).collect(), next_after }))
}

async fn get_rejected(_: Operator, id: web::Path<String>, state: State) -> Result<HttpResponse, ApiError> {
    let item = load_rejected(&state, &id)?;
    Ok(HttpResponse::Ok().json(RejectedView::from(&item)))
}

/// Reads a quarantined piece again with today's rules: if it is an event now (a whole body: if
/// every element of it is), it is logged (as if its source had just posted it, deduplicated
/// the same way: the good events of a body kept whole are already in the log) and the piece is
/// marked retried; if not, 422 says why and nothing changes.
async fn retry_rejected(
    _: Operator,
    req: HttpRequest,
    id: web::Path<String>,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let mut item = load_rejected(&state, &id)?;
    let events =
        parse_source_piece(item.kind, &item.source_id, &item.bytes, item.index.is_none()).map_err(|reason| {
            ApiError::Unprocessable { detail: format!("still not an event: {reason}"), field: None, index: None }
        })?;
    let acks = state.router.ingest(events, None).await.map_err(router_error)?;
    let (events, duplicates) = ack_view(&state.metrics, &acks);
    if let Some(ack) = acks.first() {
        item.retried = Some(Retried { at_ms: now_ms(), event_id: ack.id.clone(), seq: ack.seq });
        state.store.mark_retried(&item).await?;
        record(
            &state,
            &req,
            "rejected.retry",
            item.id.as_str(),
            None,
            Some(format!("{{\"event_id\":\"{}\"}}", ack.id)),
        )
        .await;
    }
    Ok(HttpResponse::Ok().json(Retry {
        accepted: acks.len() - duplicates,
        duplicates,
        events,
        rejected: RejectedView::from(&item),
    }))
}
