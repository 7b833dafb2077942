//! The console's charts (`GET /v1/targets/{id}/stats`, `GET /v1/stats/ingest`): the series
//! dispatch keeps ([`crmhook_dispatch::stats`]) with what the store says a target owes now.

use actix_web::{web, HttpResponse};
use crmhook_core::time::{now_ms, rfc3339};
use crmhook_store::DeliveryStatus;

use crate::api::auth::Operator;
use crate::api::state::State;
use crate::api::targets::load_target;
use crate::api::views::{IngestStats, TargetStats};
use crate::error::ApiError;

pub(crate) async fn target_stats(_: Operator, id: web::Path<String>, state: State) -> Result<HttpResponse, ApiError> {
    let target = load_target(&state, &id)?;
    let store = &*state.store;
    let now = now_ms();
    // What `crmhook_pending_deliveries` counts: pending entries and first attempts not yet made.
    let (backlog, _dead) = store.delivery_counts(&target.id)?;
    let oldest = match store.target_deliveries(&target.id, Some(DeliveryStatus::Pending), 0, 1)?.first() {
        Some((seq, _)) => store.event_ref(*seq)?.map(|e| e.received_at_ms),
        None => None,
    };
    let counted = state.metrics.target(target.id.as_str());
    let series = counted.series();
    // When its attempt started, as attempt listings say; before this data dir kept series, the
    // log's last delivery.
    let last_success = match series.last_success_ms() {
        Some(at) => Some(at),
        None => state.metrics.stored_health(store, &target.id)?.last_success_ms,
    };
    Ok(HttpResponse::Ok().json(TargetStats {
        target_id: &target.id,
        backlog,
        backlog_oldest_at: oldest.map(rfc3339),
        backlog_age_ms: oldest.map(|at| now.saturating_sub(at)),
        last_success_at: last_success.map(rfc3339),
        last_failure: series.last_failure().map(Into::into),
        minutes: series.minutes(now).into_iter().map(Into::into).collect(),
        days: series.quarters(now).into_iter().map(Into::into).collect(),
    }))
}

pub(crate) async fn ingest_stats(_: Operator, state: State) -> Result<HttpResponse, ApiError> {
    let now = now_ms();
    let series = state.metrics.ingest_series();
    Ok(HttpResponse::Ok().json(IngestStats {
        minutes: series.minutes(now).into_iter().map(Into::into).collect(),
        days: series.quarters(now).into_iter().map(Into::into).collect(),
    }))
}
