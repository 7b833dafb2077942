//! The API keys' routes (admin only, but `GET /v1/me`): list, show, create, rotate and revoke
//! (`crate::keys` keeps them). A key's secret is in the answer that made it and nowhere else;
//! every change is in the audit trail, without the secret.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::api::audit::{record, scrubbed};
use crate::api::auth::{caller, Admin, AnyKey};
use crate::api::request::read_object;
use crate::api::state::State;
use crate::api::views::{KeyView, Keys, Me};
use crate::error::ApiError;

/// `GET /v1/me`: the key that called (any role), so a client can tell what it may do.
pub(crate) async fn me(_: AnyKey, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let caller = caller(&req).ok_or_else(|| ApiError::Internal("no caller after authentication".into()))?;
    Ok(HttpResponse::Ok().json(Me { id: &caller.id, name: &caller.name, role: caller.role.as_str() }))
}

/// `GET /v1/keys`: every key, active and revoked, oldest first.
pub(crate) async fn list_keys(_: Admin, state: State) -> Result<HttpResponse, ApiError> {
    let keys = state.keys.list();
    Ok(HttpResponse::Ok().json(Keys { keys: keys.iter().map(|k| KeyView::new(k, None)).collect() }))
}

pub(crate) async fn get_key(_: Admin, id: web::Path<String>, state: State) -> Result<HttpResponse, ApiError> {
    let key = state.keys.get(&id)?;
    Ok(HttpResponse::Ok().json(KeyView::new(&key, None)))
}

/// `POST /v1/keys` `{"name", "role"}`: 201 with the secret (`key`), shown this once.
pub(crate) async fn create_key(
    _: Admin,
    req: HttpRequest,
    payload: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let body = read_object(&req, payload).await?;
    let (key, secret) = state.keys.create(&body).await?;
    tracing::info!(key_id = %key.id, name = %key.name, role = key.role.as_str(), "API key created");
    record(&state, &req, "key.create", key.id.as_str(), None, scrubbed(&KeyView::new(&key, None))).await;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/keys/{}", key.id)))
        .json(KeyView::new(&key, Some(&secret))))
}

/// `POST /v1/keys/{id}/rotate`: a new secret (shown this once); the old one stops at once.
pub(crate) async fn rotate_key(
    _: Admin,
    req: HttpRequest,
    id: web::Path<String>,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let (key, secret) = state.keys.rotate(&id).await?;
    tracing::info!(key_id = %key.id, name = %key.name, "API key rotated");
    record(&state, &req, "key.rotate", key.id.as_str(), None, scrubbed(&KeyView::new(&key, None))).await;
    Ok(HttpResponse::Ok().json(KeyView::new(&key, Some(&secret))))
}

/// `DELETE /v1/keys/{id}`: revokes the key for good (409 for the last active admin key);
/// answers it, revoked.
pub(crate) async fn revoke_key(
    _: Admin,
    req: HttpRequest,
    id: web::Path<String>,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let before = state.keys.get(&id)?;
    let key = state.keys.revoke(&id).await?;
    if before.active() {
        tracing::info!(key_id = %key.id, name = %key.name, "API key revoked");
        let (before, after) = (scrubbed(&KeyView::new(&before, None)), scrubbed(&KeyView::new(&key, None)));
        record(&state, &req, "key.revoke", key.id.as_str(), before, after).await;
    }
    Ok(HttpResponse::Ok().json(KeyView::new(&key, None)))
}
