//! Who may call what: the API's two tokens as actix-web extractors. A handler that takes
//! [`Admin`] runs only for the admin token, one that takes [`Ingest`] only for the ingest
//! token; any other request is answered before the handler runs: 401 (with
//! `WWW-Authenticate: Bearer`) without a token or with one that is neither, 403 with the other
//! role's. The check comes first, before the body is read (docs/API.md: token, content type,
//! size, JSON, rules), so a handler takes its role as its first argument.
//!
//! `POST /in/{id}` takes no token: a source authenticates its own requests (`crate::sources`).
//!
//! Failed authentication is limited per client address and per presented key
//! (`crate::api::limits`): a missing or wrong token (401) is counted (`crmhook_auth_failures_total`)
//! and logged at warn, with the address and the route, never the token; a client or key past its
//! allowance is answered 429 with `Retry-After` before any token is compared
//! (`crmhook_auth_rate_limited_total`). A wrong role (403) is a valid token and is not counted.
//! Each counted failure is also an entry of the audit trail (`auth.failed`); the answers 429
//! are only counted, so the limit bounds what one client can write there.
//!
//! [`MetricsReader`] guards `GET /metrics` when `metrics_token` is configured (the metrics token
//! or the admin token); [`sees_detail`] tells `GET /readyz` whether to show its detail.

use std::future::{ready, Ready};
use std::time::Instant;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use crmhook_core::sign::constant_time_eq;

use crate::api::state::{AppState, Tokens};
use crate::error::ApiError;

/// The admin token: the admin API (targets, subscriptions, events, sources, the quarantine,
/// the stream).
#[derive(Debug, Clone, Copy)]
pub struct Admin;

/// The ingest token: `POST /v1/events`.
#[derive(Debug, Clone, Copy)]
pub struct Ingest;

/// `GET /metrics`: anyone when no `metrics_token` is configured (the contract's default), else
/// the metrics token or the admin token.
#[derive(Debug, Clone, Copy)]
pub struct MetricsReader;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Admin,
    Ingest,
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Admin, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(check(req, Role::Admin).map(|()| Admin))
    }
}

impl FromRequest for Ingest {
    type Error = ApiError;
    type Future = Ready<Result<Ingest, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(check(req, Role::Ingest).map(|()| Ingest))
    }
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

fn check(req: &HttpRequest, need: Role) -> Result<(), ApiError> {
    let state = app_state(req)?;
    limited(req, state, |req| authorize(req, &state.tokens, need))
}

fn check_metrics(req: &HttpRequest) -> Result<(), ApiError> {
    let state = app_state(req)?;
    let Some(metrics_token) = state.exposure.metrics_token.as_deref() else { return Ok(()) };
    limited(req, state, |req| authorize_metrics(req, metrics_token, &state.tokens.admin))
}

/// Whether `GET /readyz` shows its detail: always without a `metrics_token`; with one, only to a
/// request that presents it (or the admin token). A wrong token is counted as a failure, but
/// the probe itself is never refused.
pub(crate) fn sees_detail(req: &HttpRequest) -> bool {
    let Ok(state) = app_state(req) else { return false };
    let Some(metrics_token) = state.exposure.metrics_token.as_deref() else { return true };
    if req.headers().get(header::AUTHORIZATION).is_none() {
        return false;
    }
    limited(req, state, |req| authorize_metrics(req, metrics_token, &state.tokens.admin)).is_ok()
}

/// Runs `verify` under the failed-authentication limits: a blocked client or key is answered
/// 429 before `verify` runs; a 401 from `verify` is counted, logged and answered.
fn limited(
    req: &HttpRequest,
    state: &AppState,
    verify: impl FnOnce(&HttpRequest) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    let now = Instant::now();
    let addr = req.peer_addr().map(|a| a.ip());
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

/// The bearer token a request presents, if it presents one.
fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")).map(str::trim)
}

/// The metrics token or the admin token, in constant time (both compared).
/// `admin` is the admin token's SHA-256 (only hashes are kept).
fn authorize_metrics(req: &HttpRequest, metrics_token: &str, admin: &[u8; 32]) -> Result<(), ApiError> {
    if req.headers().get(header::AUTHORIZATION).is_none() {
        return Err(ApiError::Unauthorized("missing `Authorization: Bearer <metrics_token>`".into()));
    }
    let token = bearer(req).ok_or_else(|| ApiError::Unauthorized("`Authorization` must be `Bearer <token>`".into()))?;
    let is_metrics = constant_time_eq(token.as_bytes(), metrics_token.as_bytes());
    let is_admin = constant_time_eq(&crate::at_rest::token_hash(token), admin);
    if is_metrics | is_admin {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("the token is not valid".into()))
    }
}

/// Checks the bearer token: 401 when missing or unknown, 403 when it is the other role's.
/// The token's SHA-256 is compared with both tokens' (only hashes are kept), in constant time,
/// whatever the first comparison says.
fn authorize(req: &HttpRequest, tokens: &Tokens, need: Role) -> Result<(), ApiError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthorized("missing `Authorization: Bearer <token>`".into()))?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .ok_or_else(|| ApiError::Unauthorized("`Authorization` must be `Bearer <token>`".into()))?;
    let presented = crate::at_rest::token_hash(token);
    let is_admin = constant_time_eq(&presented, &tokens.admin);
    let is_ingest = constant_time_eq(&presented, &tokens.ingest);
    match (need, is_admin, is_ingest) {
        (Role::Admin, true, _) | (Role::Ingest, _, true) => Ok(()),
        (Role::Admin, false, true) => Err(ApiError::Forbidden("the ingest token cannot use the admin API".into())),
        (Role::Ingest, true, false) => {
            Err(ApiError::Forbidden("the admin token cannot post events; use the ingest token".into()))
        }
        _ => Err(ApiError::Unauthorized("the token is not valid".into())),
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn tokens() -> Tokens {
        Tokens { admin: crate::at_rest::token_hash("adm_a"), ingest: crate::at_rest::token_hash("ing_i") }
    }

    fn answer(authorization: Option<&str>, need: Role) -> Result<(), String> {
        let mut req = TestRequest::default();
        if let Some(value) = authorization {
            req = req.insert_header((header::AUTHORIZATION, value));
        }
        authorize(&req.to_http_request(), &tokens(), need).map_err(|e| match e {
            ApiError::Unauthorized(d) => format!("401 {d}"),
            ApiError::Forbidden(d) => format!("403 {d}"),
            other => format!("other {other}"),
        })
    }

    #[test]
    fn each_role_takes_its_own_token_only() {
        assert_eq!(answer(Some("Bearer adm_a"), Role::Admin), Ok(()));
        assert_eq!(answer(Some("bearer  adm_a "), Role::Admin), Ok(()));
        assert_eq!(answer(Some("Bearer ing_i"), Role::Ingest), Ok(()));
        assert_eq!(
            answer(Some("Bearer ing_i"), Role::Admin),
            Err("403 the ingest token cannot use the admin API".into())
        );
        assert_eq!(
            answer(Some("Bearer adm_a"), Role::Ingest),
            Err("403 the admin token cannot post events; use the ingest token".into())
        );
    }

    #[test]
    fn no_token_or_an_unknown_one_is_401() {
        assert_eq!(answer(None, Role::Admin), Err("401 missing `Authorization: Bearer <token>`".into()));
        assert_eq!(answer(Some("Basic abc"), Role::Ingest), Err("401 `Authorization` must be `Bearer <token>`".into()));
        assert_eq!(answer(Some("Bearer adm_"), Role::Admin), Err("401 the token is not valid".into()));
        assert_eq!(answer(Some("Bearer nope"), Role::Ingest), Err("401 the token is not valid".into()));
    }

    #[test]
    fn without_the_app_state_the_extractor_fails_closed() {
        let req = TestRequest::default().insert_header((header::AUTHORIZATION, "Bearer adm_a")).to_http_request();
        assert!(matches!(check(&req, Role::Admin), Err(ApiError::Internal(_))));
    }
}
