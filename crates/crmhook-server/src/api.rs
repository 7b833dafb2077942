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
pub mod client;
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

/// A resource that says which methods it takes: a request with another one is answered 405
/// with `Allow` (RFC 9110 §15.5.6), from the routes given, so that the list cannot drift from
/// them. `done` makes the actix resource.
pub(crate) struct Resource {
    resource: actix_web::Resource,
    allow: Vec<String>,
}

/// [`Resource`] at `path`.
pub(crate) fn resource(path: &str) -> Resource {
    Resource { resource: web::resource(path), allow: Vec::new() }
}

impl Resource {
    /// Routes `method` to `handler`; a `GET` also takes `HEAD` (RFC 9110, 9.3.2: the same
    /// answer without its content, which actix's HTTP/1 layer leaves out).
    pub(crate) fn on<F, Args>(self, method: actix_web::http::Method, handler: F) -> Resource
    where
        F: actix_web::Handler<Args>,
        Args: actix_web::FromRequest + 'static,
        F::Output: actix_web::Responder + 'static,
    {
        if method == actix_web::http::Method::GET {
            self.route(method, handler.clone()).route(actix_web::http::Method::HEAD, handler)
        } else {
            self.route(method, handler)
        }
    }

    /// Routes `GET` alone to `handler`, with no `HEAD`: a stream, whose content never ends.
    pub(crate) fn get_only<F, Args>(self, handler: F) -> Resource
    where
        F: actix_web::Handler<Args>,
        Args: actix_web::FromRequest + 'static,
        F::Output: actix_web::Responder + 'static,
    {
        self.route(actix_web::http::Method::GET, handler)
    }

    fn route<F, Args>(mut self, method: actix_web::http::Method, handler: F) -> Resource
    where
        F: actix_web::Handler<Args>,
        Args: actix_web::FromRequest + 'static,
        F::Output: actix_web::Responder + 'static,
    {
        self.allow.push(method.as_str().to_owned());
        self.resource = self.resource.route(web::method(method).to(handler));
        self
    }

    pub(crate) fn done(self) -> actix_web::Resource {
        let allow = self.allow.join(", ");
        // An empty 405 with `Allow`: `error::to_problem` makes it the problem every 405 is.
        self.resource.default_service(web::to(move || {
            let allow = allow.clone();
            async move { actix_web::HttpResponse::MethodNotAllowed().insert_header(("Allow", allow)).finish() }
        }))
    }
}

/// Mounts the API on an actix `ServiceConfig`: every route but the sources' (and the
/// quarantine's), which `crate::sources` mounts. The role a route needs is its handler's first
/// argument.
pub fn routes(cfg: &mut web::ServiceConfig) {
    use actix_web::http::Method;
    use audit::list_audit;
    use builder::{event_facets, preview_subscription};
    use events::{get_event, ingest, list_events, redeliver};
    use keys::{create_key, get_key, list_keys, me, revoke_key, rotate_key};
    use system::{
        cluster, console, console_center_js, console_charts_js, console_css, console_icon, console_js, console_keys_js,
        console_sources_js, healthz, metrics, openapi, readyz, stream,
    };
    use targets::{
        create_subscription, create_target, delete_subscription, delete_target, get_subscription, get_target,
        list_subscriptions, list_targets, patch_subscription, patch_target, replay, rotate_secret, target_deliveries,
        test_target,
    };
    // Ingest first (`/v1/events`, then the sources' routes, `/in/{id}` first): actix tries the
    // routes in order, and each one with a `{…}` segment before a request's own costs a regex
    // match.
    cfg.service(resource("/v1/events").on(Method::POST, ingest).on(Method::GET, list_events).done())
        .configure(crate::sources::routes)
        // Probes may ask with HEAD, as every GET route takes it (`Resource::on`).
        .service(resource("/healthz").on(Method::GET, healthz).done())
        .service(resource("/readyz").on(Method::GET, readyz).done())
        .service(resource("/metrics").on(Method::GET, metrics).done())
        .service(resource("/v1/stream").get_only(stream).done())
        .service(resource("/console").on(Method::GET, console).done())
        .service(resource("/console.js").on(Method::GET, console_js).done())
        .service(resource("/console.css").on(Method::GET, console_css).done())
        .service(resource("/openapi.json").on(Method::GET, openapi).done())
        .service(resource("/v1/audit").on(Method::GET, list_audit).done())
        .service(resource("/v1/me").on(Method::GET, me).done())
        .service(resource("/v1/cluster").on(Method::GET, cluster).done())
        .service(resource("/v1/keys").on(Method::GET, list_keys).on(Method::POST, create_key).done())
        .service(resource("/v1/keys/{id}").on(Method::GET, get_key).on(Method::DELETE, revoke_key).done())
        .service(resource("/v1/keys/{id}/rotate").on(Method::POST, rotate_key).done())
        // Before `/v1/events/{id}`, which would take `facets` for an id.
        .service(resource("/v1/events/facets").on(Method::GET, event_facets).done())
        .service(resource("/v1/events/{id}").on(Method::GET, get_event).done())
        .service(resource("/v1/events/{id}/redeliver").on(Method::POST, redeliver).done())
        .service(resource("/v1/targets/{id}/deliveries").on(Method::GET, target_deliveries).done())
        .service(resource("/v1/targets/{id}/replay").on(Method::POST, replay).done())
        .service(resource("/v1/targets").on(Method::GET, list_targets).on(Method::POST, create_target).done())
        .service(
            resource("/v1/targets/{id}")
                .on(Method::GET, get_target)
                .on(Method::PATCH, patch_target)
                .on(Method::DELETE, delete_target)
                .done(),
        )
        .service(resource("/v1/targets/{id}/rotate-secret").on(Method::POST, rotate_secret).done())
        .service(resource("/v1/targets/{id}/test").on(Method::POST, test_target).done())
        .service(
            resource("/v1/subscriptions")
                .on(Method::GET, list_subscriptions)
                .on(Method::POST, create_subscription)
                .done(),
        )
        // Before `/v1/subscriptions/{id}`, which would take `preview` for an id.
        .service(resource("/v1/subscriptions/preview").on(Method::POST, preview_subscription).done())
        .service(
            resource("/v1/subscriptions/{id}")
                .on(Method::GET, get_subscription)
                .on(Method::PATCH, patch_subscription)
                .on(Method::DELETE, delete_subscription)
                .done(),
        )
        .service(resource("/console-center.js").on(Method::GET, console_center_js).done())
        .service(resource("/console-charts.js").on(Method::GET, console_charts_js).done())
        .service(resource("/console-keys.js").on(Method::GET, console_keys_js).done())
        .service(resource("/console-sources.js").on(Method::GET, console_sources_js).done())
        .service(resource("/console-icon.svg").on(Method::GET, console_icon).done())
        .service(resource("/v1/targets/{id}/stats").on(Method::GET, stats::target_stats).done())
        .service(resource("/v1/stats/ingest").on(Method::GET, stats::ingest_stats).done());
}
