//! The HTTP API (contract sections 2, 3 and 5), one module per part:
//!
//! - [`state`]: what every handler shares ([`AppState`]); [`auth`]: the tokens, as extractors
//!   ([`auth::Admin`], [`auth::Ingest`]); [`request`]: reading bodies, headers and query
//!   parameters; [`views`]: the answers, as types. These know no handler.
//! - [`system`] (health, metrics, the console, the OpenAPI document, the stream), [`events`]
//!   (ingest with the ingest token, the log, redelivery), [`targets`] (targets, their
//!   deliveries and replays, subscriptions), [`builder`] (a subscription's preview and the
//!   log's facets, for the console's subscription builder), [`stats`] (the console's charts),
//!   and `crate::sources` (sources, their ingest URL, the quarantine): the handlers, which take
//!   their role as an argument.
//!
//! Dependencies point one way: [`routes`], here, is the one table of the API's routes (but the
//! sources', which it mounts from `crate::sources`); the parts use the shared modules, never
//! this file (the sources use `events::ack_view`; nothing of the sources is used here but
//! their routes).

pub mod audit;
pub mod auth;
pub mod builder;
pub mod events;
pub mod exposure;
pub mod forward;
pub mod keys;
pub mod limits;
pub mod request;
pub mod state;
pub mod stats;
pub mod system;
pub mod targets;
pub mod views;

use actix_web::web;

pub use request::MAX_PAGE;
pub use state::AppState;
pub use system::OPENAPI;
pub use targets::ROTATION_OVERLAP_MS;

/// Mounts the API on an actix `ServiceConfig`: every route but the sources' (and the
/// quarantine's), which `crate::sources` mounts. The role a route needs is its handler's first
/// argument.
pub fn routes(cfg: &mut web::ServiceConfig) {
    use audit::list_audit;
    use builder::{event_facets, preview_subscription};
    use events::{get_event, ingest, list_events, redeliver};
    use keys::{create_key, get_key, list_keys, me, revoke_key, rotate_key};
    use system::{
        cluster, console, console_center_js, console_charts_js, console_css, console_js, healthz, metrics, openapi,
        readyz, stream,
    };
    use targets::{
        create_subscription, create_target, delete_subscription, delete_target, get_subscription, get_target,
        list_subscriptions, list_targets, patch_subscription, patch_target, replay, rotate_secret, target_deliveries,
        test_target,
    };
    // Ingest first (`/v1/events`, then the sources' routes, `/in/{id}` first): actix tries the
    // routes in order, and each one with a `{…}` segment before a request's own costs a regex
    // match.
    cfg.service(web::resource("/v1/events").route(web::post().to(ingest)).route(web::get().to(list_events)))
        .configure(crate::sources::routes)
        // Probes may ask with HEAD: the same answer, without its body (actix drops it).
        .service(web::resource("/healthz").route(web::get().to(healthz)).route(web::head().to(healthz)))
        .service(web::resource("/readyz").route(web::get().to(readyz)).route(web::head().to(readyz)))
        .service(web::resource("/metrics").route(web::get().to(metrics)).route(web::head().to(metrics)))
        .service(web::resource("/v1/stream").route(web::get().to(stream)))
        .service(web::resource("/console").route(web::get().to(console)))
        .service(web::resource("/console.js").route(web::get().to(console_js)))
        .service(web::resource("/console.css").route(web::get().to(console_css)))
        .service(web::resource("/openapi.json").route(web::get().to(openapi)))
        .service(web::resource("/v1/audit").route(web::get().to(list_audit)))
        .service(web::resource("/v1/me").route(web::get().to(me)))
        .service(web::resource("/v1/cluster").route(web::get().to(cluster)))
        .service(web::resource("/v1/keys").route(web::get().to(list_keys)).route(web::post().to(create_key)))
        .service(web::resource("/v1/keys/{id}").route(web::get().to(get_key)).route(web::delete().to(revoke_key)))
        .service(web::resource("/v1/keys/{id}/rotate").route(web::post().to(rotate_key)))
        // Before `/v1/events/{id}`, which would take `facets` for an id.
        .service(web::resource("/v1/events/facets").route(web::get().to(event_facets)))
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
        .service(web::resource("/v1/targets/{id}/test").route(web::post().to(test_target)))
        .service(
            web::resource("/v1/subscriptions")
                .route(web::get().to(list_subscriptions))
                .route(web::post().to(create_subscription)),
        )
        // Before `/v1/subscriptions/{id}`, which would take `preview` for an id.
        .service(web::resource("/v1/subscriptions/preview").route(web::post().to(preview_subscription)))
        .service(
            web::resource("/v1/subscriptions/{id}")
                .route(web::get().to(get_subscription))
                .route(web::patch().to(patch_subscription))
                .route(web::delete().to(delete_subscription)),
        )
        .service(web::resource("/console-center.js").route(web::get().to(console_center_js)))
        .service(web::resource("/console-charts.js").route(web::get().to(console_charts_js)))
        .service(web::resource("/v1/targets/{id}/stats").route(web::get().to(stats::target_stats)))
        .service(web::resource("/v1/stats/ingest").route(web::get().to(stats::ingest_stats)));
}
