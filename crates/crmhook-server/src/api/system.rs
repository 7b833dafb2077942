//! Health, metrics, the web console, the OpenAPI document, and `GET /v1/stream`.

use std::collections::HashMap;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::api::auth::Admin;
use crate::api::state::State;
use crate::api::views::{Alive, Ready};
use crate::error::ApiError;

pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Alive { status: "ok" })
}

pub(crate) async fn stream(
    _: Admin,
    req: HttpRequest,
    query: web::Query<HashMap<String, String>>,
    streams: web::Data<crate::stream::Streams>,
) -> Result<HttpResponse, ApiError> {
    let resume = req.headers().get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let after = match resume.or_else(|| query.get("after").cloned()) {
        None => None,
        Some(v) if v.trim().is_empty() => None,
        Some(v) => Some(v.trim().parse::<u64>().map_err(|_| {
            ApiError::unprocessable("Last-Event-ID", format!("a stream resumes after a seq, not {v:?}"))
        })?),
    };
    let body = streams.sse(after).ok_or_else(|| ApiError::Unavailable {
        detail: format!("{} streams are open already (max_streams)", streams.open()),
        retry_after_s: 5,
    })?;
    // `Connection: close`: when the server stops it ends the stream, and the connection must
    // end with it rather than wait idle for a next request (a graceful stop waits for it).
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .force_close()
        .streaming(body))
}

/// The OpenAPI document of this API, the one checked in at `docs/openapi.json`.
pub const OPENAPI: &str = include_str!("../../../../docs/openapi.json");

pub(crate) async fn openapi() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(OPENAPI)
}

/// The web console: one self-contained page (no build step, nothing fetched from elsewhere).
pub(crate) async fn console() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((
            "Content-Security-Policy",
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
        ))
        .insert_header(("X-Frame-Options", "DENY"))
        .body(include_str!("../../assets/console.html"))
}

pub(crate) async fn metrics(state: State) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::prometheus::render(&state.metrics, &*state.store))
}

pub(crate) async fn readyz(state: State) -> HttpResponse {
    if state.store.is_failing() {
        return crate::error::problem(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Not ready",
            "the last write to the event log failed (disk full or I/O error); see docs/RELIABILITY.md",
        );
    }
    HttpResponse::Ok().json(Ready { status: "ready", head: state.store.head() })
}
