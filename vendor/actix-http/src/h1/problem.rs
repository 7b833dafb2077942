//! crmhook's addition (vendor/README.md): the answers this HTTP/1 dispatcher makes by itself,
//! before any service sees the request, carry an RFC 9457 `application/problem+json` body in
//! crmhook's form (`type`, `title`, `status`, `detail`), as every other error of crmhook does.
//!
//! As published, actix-http answers a request it cannot parse (400), a head past its limits
//! (431), a head that does not arrive in time (408) and its own internal failures (500) with an
//! empty body.

use bytes::Bytes;

use crate::{
    error::ParseError,
    header::{HeaderValue, CONTENT_TYPE},
    Response, StatusCode,
};

/// What went wrong, in words, put in the extensions of the answer where the dispatcher makes it.
pub(crate) struct Detail(pub(crate) String);

impl Detail {
    /// The detail of a request that does not parse.
    pub(crate) fn of(err: &ParseError) -> Detail {
        Detail(match err {
            ParseError::TooLarge => {
                "the request's head is over 128 KiB or has more than 96 headers".to_owned()
            }
            err => format!("the request is not valid HTTP/1.1: {err}"),
        })
    }
}

/// Gives `res` its problem body: sets the content type and the headers crmhook sends with
/// every answer, and returns the body to send.
pub(crate) fn body(res: &mut Response<()>) -> Bytes {
    let status = res.status();
    let (slug, title, default) = match status {
        StatusCode::BAD_REQUEST => (
            "bad-request",
            "The request is malformed",
            "the request is not valid HTTP/1.1",
        ),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => (
            "headers-too-large",
            "The request's headers are too large",
            "the request's head is over 128 KiB or has more than 96 headers",
        ),
        StatusCode::REQUEST_TIMEOUT => (
            "request-timeout",
            "The request arrived too slowly",
            "the request's head did not arrive in time",
        ),
        _ => ("internal", "Internal error", "the HTTP layer failed"),
    };
    let detail = res
        .extensions_mut()
        .remove::<Detail>()
        .map_or_else(|| default.to_owned(), |d| d.0);
    let headers = res.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ] {
        headers.insert(
            crate::header::HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    Bytes::from(format!(
        "{{\"type\":\"urn:crmhook:problem:{slug}\",\"title\":{},\"status\":{},\"detail\":{}}}",
        json_string(title),
        status.as_u16(),
        json_string(&detail),
    ))
}

/// `s` as a JSON string.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
