//! The HTTP API (contract sections 2, 3 and 5), one module per part:
//!
//! - [`state`]: what every handler shares ([`AppState`]); [`auth`]: the tokens, as extractors
//!   ([`auth::Admin`], [`auth::Ingest`]); [`request`]: reading bodies, headers and query
//!   parameters; [`views`]: the answers, as types. These know no handler.
//! - [`system`] (health, metrics, the console, the OpenAPI document, the stream), [`events`]
//!   (ingest with the ingest token, the log, redelivery), [`targets`] (targets, their
//!   deliveries and replays, subscriptions), and `crate::sources` (sources, their ingest URL,
//!   the quarantine): the handlers, which take their role as an argument.
//!
//! Dependencies point one way: [`routes`] mounts every part's routes, and no part uses this
//! file or another part's handlers (the sources use `events::ack_view`, events nothing of
//! theirs).

pub mod auth;
pub mod events;
pub mod request;
pub mod state;
pub mod system;
pub mod targets;
pub mod views;

use actix_web::web;

pub use request::MAX_PAGE;
pub use state::{AppState, Tokens};
pub use system::OPENAPI;
pub use targets::ROTATION_OVERLAP_MS;

/// Mounts the API on an actix `ServiceConfig`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.configure(system::routes)
        .configure(events::routes)
        .configure(targets::routes)
        .configure(crate::sources::routes);
}
