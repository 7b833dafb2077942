//! Who may call what: the API's two tokens as actix-web extractors. A handler that takes
//! [`Admin`] runs only for the admin token, one that takes [`Ingest`] only for the ingest
//! token; any other request is answered before the handler runs: 401 (with
//! `WWW-Authenticate: Bearer`) without a token or with one that is neither, 403 with the other
//! role's. The check comes first, before the body is read (docs/API.md: token, content type,
//! size, JSON, rules), so a handler takes its role as its first argument.
//!
//! `POST /in/{id}` takes no token: a source authenticates its own requests (`crate::sources`).

use std::future::{ready, Ready};

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

fn check(req: &HttpRequest, need: Role) -> Result<(), ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::Internal("the API is mounted without its state".into()))?;
    authorize(req, &state.tokens, need)
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
