//! What every handler shares: the app state, and how the router's errors and the requester are
//! told.

use std::sync::Arc;

use actix_web::{web, HttpRequest};
use crmhook_store::LogHandle;
use tokio::sync::Semaphore;

use crate::error::ApiError;
use crmhook_dispatch::guard::Guard;
use crmhook_dispatch::metrics::Metrics;
use crmhook_dispatch::router::{RouterError, RouterHandle};

/// What every handler shares.
pub struct AppState {
    pub store: LogHandle,
    pub router: RouterHandle,
    /// The API keys (`crate::keys`): who may call what.
    pub keys: Arc<crate::keys::Keys>,
    /// `allow_private_targets`: the same guard the delivery clients check with.
    pub guard: Guard,
    /// The counters `GET /metrics` shows.
    pub metrics: Arc<Metrics>,
    pub max_body_bytes: usize,
    /// Bytes of ingest bodies that may be in memory at once (read, queued or being written).
    pub ingest_budget: Arc<Semaphore>,
    /// Large ingest bodies checked and parsed at once, off the HTTP workers
    /// (`api::request::off_worker`): as many as there are workers.
    pub parsing: Arc<Semaphore>,
    /// Where CRMs reach this server: sources' `ingest_url` is `<public_url>/in/<id>`.
    pub public_url: String,
    /// Failed authentication, limited per client address and per presented key.
    pub limiter: crate::api::limits::AuthLimiter,
    /// The `Host` check and the `metrics_token`.
    pub exposure: crate::api::exposure::Exposure,
    /// `trusted_proxies`: whose `X-Forwarded-For` names the client (`crate::api::client`).
    pub proxies: crate::api::client::TrustedProxies,
    /// Where the log came from: in cluster mode, which node delivers which target.
    pub backend: Arc<dyn crate::Backend>,
}

pub(crate) type State = web::Data<AppState>;

pub(crate) fn router_error(e: RouterError) -> ApiError {
    match e {
        RouterError::Store(e) => e.into(),
        // Said as the handlers that read the record first say it: "target tgt_… not found".
        RouterError::NotFound(what) => {
            let kind = [("tgt_", "target "), ("sub_", "subscription ")]
                .into_iter()
                .find_map(|(prefix, kind)| what.starts_with(prefix).then_some(kind))
                .unwrap_or("");
            ApiError::NotFound(format!("{kind}{what} not found"))
        }
        RouterError::TooManyTargets(_) => ApiError::Conflict(e.to_string()),
        RouterError::TooManySubscriptions(e) | RouterError::Invalid(e) => e.into(),
        // Cluster mode only (a single node owns every target): the handlers that can forward
        // the request to the owner node (`api::forward`) do; elsewhere the client tries again.
        RouterError::Elsewhere(_) => ApiError::Unavailable { detail: e.to_string(), retry_after_s: 1 },
        RouterError::Stopped => {
            ApiError::Unavailable { detail: "the server is shutting down".into(), retry_after_s: 1 }
        }
    }
}

/// Who asked (the key's name and id), for the audit trail.
pub(crate) fn who(req: &HttpRequest) -> String {
    crate::api::auth::caller(req).map_or_else(|| "unknown key".to_owned(), |c| c.who())
}

/// Who asked and from where, for the log of operators' requests.
pub(crate) fn requester(req: &HttpRequest) -> String {
    match crate::api::client::client_ip(req) {
        Some(addr) => format!("{} from {addr}", who(req)),
        None => who(req),
    }
}
