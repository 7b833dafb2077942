//! Who may call what: the API keys' roles as actix-web extractors. A handler that takes
//! [`Admin`] runs only for an admin key, one that takes [`Operator`] for an admin or an operator
//! key, one that takes [`Ingest`] only for an ingest key (`crate::keys`: the bootstrap
//! `admin_token` and `ingest_token` are keys of those roles). Any other request is answered
//! before the handler runs: 401 (with `WWW-Authenticate: Bearer`) without a token or with one
//! that is no active key, 403 with a key of a role the route does not take. The check comes
//! first, before the body is read (docs/API.md: token, content type, size, JSON, rules), so a
//! handler takes its role as its first argument. The key that called ([`Caller`]) is put in
//! the request's extensions, where the audit trail and the operators' request records find it
//! (`caller`).
//!
//! `POST /in/{id}` takes no token: a source authenticates its own requests (`crate::sources`).
//!
//! Failed authentication is limited per client address and per presented key
//! (`crate::api::limits`): a missing or wrong token (401) is counted (`crmhook_auth_failures_total`)
//! and logged at warn, with the address and the route, never the token; a client or key past its
//! allowance is answered 429 with `Retry-After` before any token is compared
//! (`crmhook_auth_rate_limited_total`). A wrong role (403) is a valid key and is not counted.
//! Each counted failure is also an entry of the audit trail (`auth.failed`); the answers 429
//! are only counted, so the limit bounds what one client can write there.
//!
//! [`MetricsReader`] guards `GET /metrics` when `metrics_token` is configured (the metrics token
//! or an admin key); `sees_detail` tells `GET /readyz` whether to show its detail.

use std::future::{ready, Ready};
use std::time::Instant;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use crmhook_core::sign::constant_time_eq;

use crate::api::state::AppState;
use crate::error::ApiError;
use crate::keys::{Caller, Keys, Role};

/// An admin key: everything (the configuration, secrets, keys, the audit trail).
#[derive(Debug, Clone, Copy)]
pub struct Admin;

/// An admin or an operator key: reading the log, the deliveries, the quarantine and the
/// configuration (no secret is ever shown), redelivery, replay, retrying quarantined pieces.
#[derive(Debug, Clone, Copy)]
pub struct Operator;

/// An ingest key: `POST /v1/events`.
#[derive(Debug, Clone, Copy)]
pub struct Ingest;

/// Any active key, whatever its role: `GET /v1/me`.
#[derive(Debug, Clone, Copy)]
pub struct AnyKey;

/// `GET /metrics`: anyone when no `metrics_token` is configured (the contract's default), else
/// the metrics token or the admin token.
#[derive(Debug, Clone, Copy)]
pub struct MetricsReader;

/// What a route takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Admin,
    Operator,
    Ingest,
    Any,
}

macro_rules! role_extractor {
    ($name:ident, $need:expr) => {
        impl FromRequest for $name {
            type Error = ApiError;
            type Future = Ready<Result<$name, ApiError>>;

            fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
                ready(check(req, $need).map(|()| $name))
            }
        }
    };
}

role_extractor!(Admin, Need::Admin);
role_extractor!(Operator, Need::Operator);
role_extractor!(Ingest, Need::Ingest);
role_extractor!(AnyKey, Need::Any);

/// The key that called, once a role extractor let the request in.
pub(crate) fn caller(req: &HttpRequest) -> Option<Caller> {
    req.extensions().get::<Caller>().cloned()
}

impl FromRequest for MetricsReader {
    type Error = ApiError;
    type Future = Ready<Result<MetricsReader, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(check_metrics(req).map(|()| MetricsReader))
    }
}

fn app_state(req: &HttpRequest) -> Result<&web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::Internal("the API is mounted without its state".into()))
}

fn check(req: &HttpRequest, need: Need) -> Result<(), ApiError> {
    let state = app_state(req)?;
    let mut caller = None;
    limited(req, state, |req| {
        caller = Some(authorize(req, &state.keys, need)?);
        Ok(())
    })?;
    if let Some(caller) = caller {
        req.extensions_mut().insert(caller);
    }
    Ok(())
}

fn check_metrics(req: &HttpRequest) -> Result<(), ApiError> {
    let state = app_state(req)?;
    let Some(metrics_token) = state.exposure.metrics_token.as_deref() else { return Ok(()) };
    limited(req, state, |req| authorize_metrics(req, metrics_token, &state.keys, &[Role::Admin]))
}

/// Whether `GET /readyz` shows its detail: always without a `metrics_token`; with one, only to a
/// request that presents it or a key that reads the log (an admin or operator key: the head is
/// the last event's seq, which they read anyway). A wrong token is counted as a failure, another
/// role's key is not, and the probe itself is never refused.
pub(crate) fn sees_detail(req: &HttpRequest) -> bool {
    let Ok(state) = app_state(req) else { return false };
    let Some(metrics_token) = state.exposure.metrics_token.as_deref() else { return true };
    if req.headers().get(header::AUTHORIZATION).is_none() {
        return false;
    }
    let readers = [Role::Admin, Role::Operator];
    limited(req, state, |req| authorize_metrics(req, metrics_token, &state.keys, &readers)).is_ok()
}

/// Runs `verify` under the failed-authentication limits: a blocked client or key is answered
/// 429 before `verify` runs; a 401 from `verify` is counted, logged and answered.
fn limited(
    req: &HttpRequest,
    state: &AppState,
    verify: impl FnOnce(&HttpRequest) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    let now = Instant::now();
    let addr = crate::api::client::client_ip(req);
    let client = state.limiter.client(addr, bearer(req));
    if let Some(retry_after_s) = state.limiter.blocked(&client, now) {
        state.metrics.auth_rate_limited();
        return Err(ApiError::TooManyRequests {
            detail: format!(
                "too many failed authentications from this address or with this token; try again in {retry_after_s} s"
            ),
            retry_after_s,
        });
    }
    match verify(req) {
        Err(ApiError::Unauthorized(reason)) => {
            state.metrics.auth_failed();
            let counted = state.limiter.failed(&client, now);
            let client = addr.map(|a| a.to_string()).unwrap_or_else(|| "unknown".into());
            tracing::warn!(%client, method = %req.method(), path = req.path(), %reason, "authentication failed");
            if counted.now_blocked {
                tracing::warn!(%client, "too many failed authentications: requests from this client or with this token answer 429 until its allowance refills");
            }
            crate::api::audit::auth_failed(state, req, &reason);
            Err(ApiError::Unauthorized(reason))
        }
        other => other,
    }
}

/// The bearer token a request presents, if it presents one. The scheme's name is matched in
/// any case (RFC 9110, 11.1: `BEARER` is `Bearer`).
pub(crate) fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The metrics token or a key of one of `roles`, in constant time (both compared). Another
/// active key is a valid token of the wrong role: 403, not counted as a failure (a probe set up
/// with the ingest key must not lock its own address out of the API).
fn authorize_metrics(req: &HttpRequest, metrics_token: &str, keys: &Keys, roles: &[Role]) -> Result<(), ApiError> {
    if req.headers().get(header::AUTHORIZATION).is_none() {
        return Err(ApiError::Unauthorized("missing `Authorization: Bearer <metrics_token>`".into()));
    }
    let token = bearer(req).ok_or_else(|| ApiError::Unauthorized("`Authorization` must be `Bearer <token>`".into()))?;
    let is_metrics = constant_time_eq(token.as_bytes(), metrics_token.as_bytes());
    let key = keys.find(token).map(|c| c.role);
    match (is_metrics, key) {
        (true, _) => Ok(()),
        (false, Some(role)) if roles.contains(&role) => Ok(()),
        (false, Some(role)) => {
            Err(ApiError::Forbidden(format!("an {} key cannot read this; use the metrics token", role.as_str())))
        }
        (false, None) => Err(ApiError::Unauthorized("the token is not valid".into())),
    }
}

/// Checks the bearer token: 401 when missing or no active key's, 403 when its key's role does
/// not take this route. Answers the key that called.
fn authorize(req: &HttpRequest, keys: &Keys, need: Need) -> Result<Caller, ApiError> {
    if req.headers().get(header::AUTHORIZATION).is_none() {
        return Err(ApiError::Unauthorized("missing `Authorization: Bearer <token>`".into()));
    }
    let token = bearer(req).ok_or_else(|| ApiError::Unauthorized("`Authorization` must be `Bearer <token>`".into()))?;
    let caller = keys.find(token).ok_or_else(|| ApiError::Unauthorized("the token is not valid".into()))?;
    match (need, caller.role) {
        (Need::Admin, Role::Admin)
        | (Need::Operator, Role::Admin | Role::Operator)
        | (Need::Ingest, Role::Ingest)
        | (Need::Any, _) => Ok(caller),
        (Need::Admin | Need::Operator, Role::Ingest) => {
            Err(ApiError::Forbidden("an ingest key (the ingest token) cannot use the admin API".into()))
        }
        (Need::Admin, Role::Operator) => Err(ApiError::Forbidden(
            "an operator key cannot change targets, subscriptions, sources or keys, see secrets or read the audit trail; use an admin key".into(),
        )),
        (Need::Ingest, role) => Err(ApiError::Forbidden(format!(
            "an {} key cannot post events; use an ingest key (the ingest token)",
            role.as_str()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;
    use crate::keys::tests::{configured, open};

    async fn keys() -> (Keys, String, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let (keys, _) = open(dir.path(), configured("adm_a", "ing_i")).await;
        let (_, operator) =
            keys.create(serde_json::json!({"name": "op", "role": "operator"}).as_object().unwrap()).await.unwrap();
        (keys, operator, dir)
    }

    fn answer(keys: &Keys, authorization: Option<&str>, need: Need) -> Result<String, String> {
        let mut req = TestRequest::default();
        if let Some(value) = authorization {
            req = req.insert_header((header::AUTHORIZATION, value));
        }
        authorize(&req.to_http_request(), keys, need).map(|c| c.name).map_err(|e| match e {
            ApiError::Unauthorized(d) => format!("401 {d}"),
            ApiError::Forbidden(d) => format!("403 {d}"),
            other => format!("other {other}"),
        })
    }

    #[actix_rt::test]
    async fn each_route_takes_its_roles_only() {
        let (keys, operator, _dir) = keys().await;
        let op = format!("Bearer {operator}");
        assert_eq!(answer(&keys, Some("Bearer adm_a"), Need::Admin), Ok("admin_token".into()));
        assert_eq!(answer(&keys, Some("bearer  adm_a "), Need::Operator), Ok("admin_token".into()));
        // The scheme in any case; another scheme is no token.
        assert_eq!(answer(&keys, Some("BEARER adm_a"), Need::Admin), Ok("admin_token".into()));
        assert_eq!(answer(&keys, Some("bEaReR adm_a"), Need::Admin), Ok("admin_token".into()));
        assert!(answer(&keys, Some("Basic adm_a"), Need::Admin).is_err_and(|e| e.starts_with("401 ")));
        assert!(answer(&keys, Some("Beareradm_a"), Need::Admin).is_err_and(|e| e.starts_with("401 ")));
        assert_eq!(answer(&keys, Some(&op), Need::Operator), Ok("op".into()));
        assert_eq!(answer(&keys, Some("Bearer ing_i"), Need::Ingest), Ok("ingest_token".into()));
        let forbidden = |r: Result<String, String>| r.is_err_and(|e| e.starts_with("403 "));
        assert!(forbidden(answer(&keys, Some(&op), Need::Admin)));
        assert!(forbidden(answer(&keys, Some(&op), Need::Ingest)));
        assert!(forbidden(answer(&keys, Some("Bearer ing_i"), Need::Admin)));
        assert!(forbidden(answer(&keys, Some("Bearer ing_i"), Need::Operator)));
        assert_eq!(
            answer(&keys, Some("Bearer adm_a"), Need::Ingest),
            Err("403 an admin key cannot post events; use an ingest key (the ingest token)".into())
        );
    }

    #[actix_rt::test]
    async fn no_token_or_an_unknown_one_is_401() {
        let (keys, _, _dir) = keys().await;
        assert_eq!(answer(&keys, None, Need::Admin), Err("401 missing `Authorization: Bearer <token>`".into()));
        assert_eq!(
            answer(&keys, Some("Basic abc"), Need::Ingest),
            Err("401 `Authorization` must be `Bearer <token>`".into())
        );
        assert_eq!(answer(&keys, Some("Bearer adm_"), Need::Admin), Err("401 the token is not valid".into()));
        assert_eq!(answer(&keys, Some("Bearer nope"), Need::Operator), Err("401 the token is not valid".into()));
    }

    #[test]
    fn without_the_app_state_the_extractor_fails_closed() {
        let req = TestRequest::default().insert_header((header::AUTHORIZATION, "Bearer adm_a")).to_http_request();
        assert!(matches!(check(&req, Need::Admin), Err(ApiError::Internal(_))));
    }
}
