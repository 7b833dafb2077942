//! The edge: every error of every endpoint becomes an RFC 9457 `application/problem+json`
//! answer with `type`, `title`, `status` and `detail` (and `index`/`field` when one event or
//! field is to blame). This is the only place that maps errors to HTTP.

use actix_web::body::{BoxBody, EitherBody};
use actix_web::dev::ServiceResponse;
use actix_web::http::{header, StatusCode};
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{HttpResponse, ResponseError};
use crmhook_core::CoreError;
use crmhook_store::StoreError;
use serde::Serialize;

/// An error answered to a client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A body that stalled (408; the connection is closed).
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{detail}")]
    Unprocessable { detail: String, field: Option<String>, index: Option<usize> },
    #[error("{detail}")]
    Unavailable { detail: String, retry_after_s: u32 },
    #[error("{0}")]
    Internal(String),
    /// 429 with `Retry-After`: the client (or its key) failed authentication too often.
    #[error("{detail}")]
    TooManyRequests { detail: String, retry_after_s: u64 },
}

impl ApiError {
    pub fn unprocessable(field: &str, detail: impl Into<String>) -> Self {
        ApiError::Unprocessable { detail: detail.into(), field: Some(field.into()), index: None }
    }

    fn slug_and_title(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::BadRequest(_) => ("bad-request", "The request is malformed"),
            // A token, a MAIA signature or a Maximizer key: `detail` says which and why.
            ApiError::Unauthorized(_) => ("unauthorized", "Authentication failed"),
            ApiError::Forbidden(_) => ("forbidden", "This token may not do that"),
            ApiError::NotFound(_) => ("not-found", "Not found"),
            ApiError::Conflict(_) => ("conflict", "Conflict"),
            ApiError::PayloadTooLarge(_) => ("payload-too-large", "The body is too large"),
            ApiError::UnsupportedMediaType(_) => ("unsupported-media-type", "The content type is not accepted"),
            ApiError::RequestTimeout(_) => ("request-timeout", "The body arrived too slowly"),
            ApiError::Unprocessable { .. } => ("invalid", "The request breaks a rule"),
            ApiError::Unavailable { .. } => ("unavailable", "Try again shortly"),
            ApiError::Internal(_) => ("internal", "Internal error"),
            ApiError::TooManyRequests { .. } => ("too-many-requests", "Too many failed authentications"),
        }
    }
}

/// The body of every error answer (RFC 9457).
#[derive(Debug, Serialize)]
pub struct Problem<'a> {
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: &'a str,
    pub status: u16,
    pub detail: String,
    /// The field to blame, for a 422.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'a str>,
    /// The event to blame (its index in the body), for a 422.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
}

/// The longest `detail` answered: one that quotes what the client sent (an id, a path, a
/// value) does not echo an unbounded amount of it.
const DETAIL_CHARS: usize = 500;

impl<'a> Problem<'a> {
    fn new(status: StatusCode, slug: &str, title: &'a str, mut detail: String) -> Self {
        if let Some((cut, _)) = detail.char_indices().nth(DETAIL_CHARS) {
            detail.truncate(cut);
            detail.push('…');
        }
        Problem {
            problem_type: format!("urn:crmhook:problem:{slug}"),
            title,
            status: status.as_u16(),
            detail,
            field: None,
            index: None,
        }
    }
}

/// A problem+json response with the given status, type slug, title and detail.
pub fn problem(status: StatusCode, slug: &str, title: &str, detail: &str) -> HttpResponse {
    HttpResponse::build(status).content_type("application/problem+json").json(Problem::new(
        status,
        slug,
        title,
        detail.to_owned(),
    ))
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let (slug, title) = self.slug_and_title();
        let mut body = Problem::new(status, slug, title, self.to_string());
        let mut builder = HttpResponse::build(status);
        builder.content_type("application/problem+json");
        match self {
            ApiError::Unprocessable { field, index, .. } => {
                body.field = field.as_deref();
                body.index = *index;
            }
            ApiError::Unauthorized(_) => {
                builder.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            ApiError::Unavailable { retry_after_s, .. } => {
                builder.insert_header((header::RETRY_AFTER, retry_after_s.to_string()));
            }
            ApiError::RequestTimeout(_) => {
                // The rest of the body is not read: the connection cannot carry another request.
                builder.force_close();
            }
            ApiError::TooManyRequests { retry_after_s, .. } => {
                builder.insert_header((header::RETRY_AFTER, retry_after_s.to_string()));
            }
            _ => {}
        }
        builder.json(body)
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::Malformed(d) => ApiError::BadRequest(format!("malformed JSON: {d}")),
            CoreError::Shape(d) => ApiError::BadRequest(d),
            CoreError::Invalid(f) => ApiError::Unprocessable { detail: f.detail, field: f.field, index: f.index },
        }
    }
}

/// What a client is told when the log could not be written (here and by the stand-in).
pub(crate) const STORAGE_FAILED: &str =
    "the log could not be written (a full disk or a failing device: see the server's log); nothing was stored";

/// What a client is told when the cluster's log did not acknowledge its write (cluster mode).
pub(crate) const UNACKNOWLEDGED: &str = "the cluster's log did not acknowledge the write in time (no NATS quorum, or \
     NATS out of reach: see the server's log); it may still be stored once the log takes writes again: retry \
     with the same Idempotency-Key (a source's retry is recognised by its Maximizer Id or MAIA body)";

/// The `Retry-After` of a 503 for a log that cannot be written: seconds.
pub(crate) const UNAVAILABLE_RETRY_AFTER_S: u32 = 5;

/// A 503 problem with the `Retry-After` of a log that cannot be written (`/readyz`, the
/// stand-in).
pub(crate) fn unavailable(title: &str, detail: &str) -> HttpResponse {
    let mut response = problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable", title, detail);
    response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(UNAVAILABLE_RETRY_AFTER_S));
    response
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Busy => ApiError::Unavailable { detail: e.to_string(), retry_after_s: 1 },
            StoreError::Io(_) | StoreError::NoSpace(_) | StoreError::InUse => {
                // The device's own words (sled's, an OS error's debug form at times) go to the
                // server's log, not to the client.
                tracing::error!(error = %e, "storage failure");
                ApiError::Unavailable { detail: STORAGE_FAILED.into(), retry_after_s: UNAVAILABLE_RETRY_AFTER_S }
            }
            StoreError::Closed => {
                ApiError::Unavailable { detail: "the server is shutting down".into(), retry_after_s: 1 }
            }
            StoreError::Codec(_) | StoreError::Key(_) => {
                tracing::error!(error = %e, "undecodable record");
                ApiError::Internal(e.to_string())
            }
            StoreError::Changed => ApiError::Conflict("the record changed meanwhile; try again".into()),
            StoreError::Unacknowledged(_) => {
                tracing::error!(error = %e, "the cluster's log did not acknowledge a write");
                ApiError::Unavailable { detail: UNACKNOWLEDGED.into(), retry_after_s: UNAVAILABLE_RETRY_AFTER_S }
            }
        }
    }
}

/// Middleware hook: any error answer that is not already problem+json (actix's own 404, 405,
/// payload and extractor errors) is replaced by one with the same status.
pub fn to_problem<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/problem+json"));
    if is_problem {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    if status == StatusCode::NOT_FOUND {
        // The same type and title as a handler's 404 for an unknown id.
        let response = ApiError::NotFound(format!("no resource at {}", res.request().path())).error_response();
        let (req, _) = res.into_parts();
        return Ok(ErrorHandlerResponse::Response(ServiceResponse::new(req, response).map_into_right_body()));
    }
    let title = status.canonical_reason().unwrap_or("Error");
    let detail = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            format!("{} is not allowed on {}", res.request().method(), res.request().path())
        }
        _ => title.to_owned(),
    };
    let slug = title.to_ascii_lowercase().replace(' ', "-");
    // A 405's `Allow` (set by the resource, `api::resource`) stays.
    let allow = res.headers().get(header::ALLOW).cloned();
    let (req, _) = res.into_parts();
    let mut response: HttpResponse<BoxBody> = problem(status, &slug, title, &detail);
    if let Some(allow) = allow {
        response.headers_mut().insert(header::ALLOW, allow);
    }
    let res = ServiceResponse::new(req, response).map_body(|_, b| EitherBody::right(b));
    Ok(ErrorHandlerResponse::Response(res))
}
