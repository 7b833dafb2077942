//! Health, metrics, the web console, the OpenAPI document, and `GET /v1/stream`.

use std::collections::HashMap;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::api::auth::{sees_detail, MetricsReader, Operator};
use crate::api::exposure::CONSOLE_CSP;
use crate::api::state::State;
use crate::api::views::{Alive, Ready};
use crate::error::ApiError;
use crate::keys::Role;
use crate::stream::Refused;

/// `GET /v1/cluster`: `{"mode": "single"}`, or in cluster mode this node, the stream, how far
/// this node's copy has applied it, and the nodes alive with the targets each delivers.
pub(crate) async fn cluster(_: crate::api::auth::Operator, state: State) -> HttpResponse {
    HttpResponse::Ok().json(state.backend.status())
}

pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Alive { status: "ok" })
}

pub(crate) async fn stream(
    _: Operator,
    req: HttpRequest,
    query: web::Query<HashMap<String, String>>,
    streams: web::Data<crate::stream::Streams>,
    state: State,
) -> Result<HttpResponse, ApiError> {
    // The header (a reconnecting client's) first, then `?after=`; an error names the one given.
    let resume =
        req.headers().get("last-event-id").and_then(|v| v.to_str().ok()).map(|v| ("Last-Event-ID", v.to_owned()));
    let after = match resume.or_else(|| query.get("after").map(|v| ("after", v.clone()))) {
        None => None,
        Some((_, v)) if v.trim().is_empty() => None,
        Some((field, v)) => Some(
            v.trim()
                .parse::<u64>()
                .map_err(|_| ApiError::unprocessable(field, format!("a stream resumes after a seq, not {v:?}")))?,
        ),
    };
    // The stream lasts as long as its key: a revoked or rotated one ends it before its next frame.
    let keys = state.keys.clone();
    let token = crate::api::auth::bearer(&req).unwrap_or_default().to_owned();
    let allowed = move || keys.find(&token).is_some_and(|c| matches!(c.role, Role::Admin | Role::Operator));
    // Counted per key (its id, which a rotation keeps), so that one key cannot take every place.
    let caller = crate::api::auth::caller(&req).ok_or_else(|| ApiError::Internal("a stream without its key".into()))?;
    let body = streams.sse(caller.id.to_string(), after, allowed).map_err(|refused| ApiError::Unavailable {
        detail: match refused {
            Refused::Full { open } => format!("{open} streams are open already (max_streams)"),
            Refused::KeyFull { held } => format!(
                "the key {} holds {held} streams already, the most one key may hold (max_streams_per_key): \
                 close one of them first",
                caller.who()
            ),
        },
        retry_after_s: 5,
    })?;
    // A chunked body on a connection kept alive, as any HTTP/1.1 client expects of an
    // `EventSource` stream (no `Connection: close`: Python's `http.client`, for one, then hands
    // the socket to the response and the client's connection has none). When the server stops
    // it ends the body, and its graceful stop closes the idle connection (`tests/shutdown.rs`).
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

/// The OpenAPI document of this API, the one checked in at `docs/openapi.json`.
pub const OPENAPI: &str = include_str!("../../../../docs/openapi.json");

pub(crate) async fn openapi() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(OPENAPI)
}

/// The web console: a page, its script and its style, all embedded in the binary (no build
/// step, nothing fetched from elsewhere). No script or style is inline: the policy allows only
/// these files.
pub(crate) async fn console() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Content-Security-Policy", CONSOLE_CSP))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(include_str!("../../assets/console.html"))
}

/// The console's script.
pub(crate) async fn console_js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(include_str!("../../assets/console.js"))
}

/// The console's Webhook Center (targets, subscriptions, test events), a second script.
pub(crate) async fn console_center_js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(include_str!("../../assets/console-center.js"))
}

/// The console's pictures (inline SVG charts), a third script.
pub(crate) async fn console_charts_js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(include_str!("../../assets/console-charts.js"))
}

/// The console's API keys (admins only), a fourth script.
pub(crate) async fn console_keys_js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(include_str!("../../assets/console-keys.js"))
}

/// The console's sources and quarantine, a fifth script.
pub(crate) async fn console_sources_js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(include_str!("../../assets/console-sources.js"))
}

/// The console's style.
pub(crate) async fn console_css() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(include_str!("../../assets/console.css"))
}

/// The console's icon (the browser asks for one; without it, `/favicon.ico` answered 404 in
/// every session's console).
pub(crate) async fn console_icon() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("image/svg+xml")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(include_str!("../../assets/console-icon.svg"))
}

/// Open by default (the contract); with a `metrics_token`, only for it or the admin token.
pub(crate) async fn metrics(_: MetricsReader, state: State) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::prometheus::render(&state.metrics, &*state.store))
}

/// The probe is always open; its detail (the log's head) is shown to everyone without a
/// `metrics_token`, and with one only to a request that presents it.
pub(crate) async fn readyz(req: HttpRequest, state: State) -> HttpResponse {
    if state.store.is_failing() {
        let detail = if state.backend.ownership().is_some() {
            "the cluster's log does not take writes (no NATS quorum, or NATS out of reach); see docs/CLUSTER.md"
        } else {
            "the last write to the event log failed (disk full or I/O error); see docs/RELIABILITY.md"
        };
        return crate::error::unavailable("Not ready", detail);
    }
    let head = sees_detail(&req).then(|| state.store.head());
    HttpResponse::Ok().json(Ready { status: "ready", head })
}

#[cfg(test)]
mod tests {
    /// The console writes out the characters that reorder or hide text by a table of its own
    /// (`HIDES_TEXT` in `console.js`): it must be the names' (`crmhook_core::name`).
    #[test]
    fn the_consoles_table_of_what_hides_text_is_the_names() {
        let script = include_str!("../../assets/console.js");
        let line = script.lines().find(|l| l.starts_with("const HIDES_TEXT = /[")).expect("HIDES_TEXT in console.js");
        let class = line.trim_start_matches("const HIDES_TEXT = /[").trim_end_matches("]/gu;");
        let expected: String = crmhook_core::name::hides_text_ranges()
            .iter()
            .map(|&(first, last)| match first == last {
                true => format!("\\u{{{:x}}}", u32::from(first)),
                false => format!("\\u{{{:x}}}-\\u{{{:x}}}", u32::from(first), u32::from(last)),
            })
            .collect();
        assert_eq!(class, expected);
    }
}
