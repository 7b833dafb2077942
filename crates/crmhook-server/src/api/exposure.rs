//! What the server shows, and to whom, beyond the API's tokens:
//!
//! - the `Host` check ([`AllowedHosts`], [`check_host`]): a page on another site that makes its
//!   name resolve to this server (DNS rebinding) sends its own name as `Host`; such a request is
//!   answered 421 problem+json. An IP literal is always accepted (a browser sends one only to a
//!   page served from that address), and so is a name without a dot (`localhost`, a name of the
//!   local network's search domain: no outside site controls one), `*.localhost`, the host of
//!   `public_url` and the names in `allowed_hosts`. The check is on when the server is bound to a loopback
//!   address, or when `public_url` or `allowed_hosts` is configured; `allowed_hosts = "*"` turns
//!   it off. The `Host` header is read as sent (`X-Forwarded-Host` and `Forwarded` are ignored).
//! - the headers every response carries ([`SECURITY_HEADERS`]), added in `lib.rs`;
//! - the `metrics_token`, which `GET /metrics` and `GET /readyz`'s detail need when it is set
//!   (`crate::api::auth::MetricsReader`, `crate::api::auth::sees_detail`).

use std::net::{IpAddr, SocketAddr};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;
use actix_web::web;

use crate::api::state::AppState;

/// Headers on every response (unless a handler set its own): no MIME sniffing, no `Referer`
/// leaking the console's or the API's URLs, and nothing kept by a cache on the way or the
/// browser's (answers carry secrets shown once, keys, URL credentials; since 2026-12-07). The
/// console's files and the stream say `no-cache` themselves.
pub const SECURITY_HEADERS: [(&str, &str); 3] =
    [("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"), ("Cache-Control", "no-store")];

/// The console's Content-Security-Policy: its script and style are files served by this binary
/// (`/console.js`, `/console-sources.js`, `/console-center.js`, `/console-charts.js`, `/console-keys.js`,
/// `/console.css`), nothing inline, nothing from elsewhere, never framed.
pub const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
     img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The `metrics_token` and the `Host` check.
#[derive(Debug, Clone, Default)]
pub struct Exposure {
    pub hosts: AllowedHosts,
    /// When set, `GET /metrics` needs it (or the admin token), and `GET /readyz` shows its
    /// detail only with it.
    pub metrics_token: Option<String>,
}

/// The host names a request's `Host` may name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    /// Off: every `Host` is accepted.
    check: bool,
    /// Lowercase names, without port or trailing dot.
    names: Vec<String>,
}

impl AllowedHosts {
    /// `bind`: the listener's address; `public_url`: as configured; `configured`: the
    /// `allowed_hosts` entries (`*` turns the check off).
    pub fn new(bind: SocketAddr, public_url: Option<&str>, configured: &[String]) -> Self {
        if configured.iter().any(|h| h.trim() == "*") {
            return AllowedHosts { check: false, names: Vec::new() };
        }
        let mut names: Vec<String> = configured.iter().map(|h| normalise(h)).filter(|h| !h.is_empty()).collect();
        if let Some(host) = public_url.and_then(|u| url::Url::parse(u).ok()).and_then(|u| u.host_str().map(normalise)) {
            names.push(host);
        }
        let check = !names.is_empty() || bind.ip().to_canonical().is_loopback();
        AllowedHosts { check, names }
    }

    /// Whether a request whose `Host` is `host` may be answered (no `Host` at all: yes; that is
    /// no browser).
    pub fn allows(&self, host: Option<&str>) -> bool {
        let Some(host) = host else { return true };
        if !self.check {
            return true;
        }
        let name = normalise(host);
        name.parse::<IpAddr>().is_ok()
            || !name.contains('.')
            || name.ends_with(".localhost")
            || self.names.contains(&name)
    }
}

/// `Host: Name.Example.:8080` → `name.example`; `[::1]:80` → `::1`.
fn normalise(host: &str) -> String {
    let host = host.trim();
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.contains(':') => name,
            _ => host,
        },
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Middleware (`actix_web::middleware::from_fn`): answers 421 problem+json to a request whose
/// `Host` names a host this server is not (see the module's documentation).
pub async fn check_host(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let host = req
        .headers()
        .get(header::HOST)
        .map(|v| v.to_str().unwrap_or("\u{0}"))
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    let allowed = match req.app_data::<web::Data<AppState>>() {
        Some(state) => state.exposure.hosts.allows(host),
        None => true,
    };
    if allowed {
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    }
    let detail = format!(
        "this server does not answer for the host {:?}; set `public_url` or `allowed_hosts` to the name clients use",
        host.unwrap_or_default()
    );
    tracing::warn!(host = host.unwrap_or_default(), path = req.path(), "refused a request for another host");
    let response =
        crate::error::problem(StatusCode::MISDIRECTED_REQUEST, "misdirected-request", "Misdirected request", &detail);
    Ok(req.into_response(response).map_into_right_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    #[test]
    fn a_loopback_bind_accepts_addresses_and_localhost_only() {
        let hosts = AllowedHosts::new(addr("127.0.0.1:8080"), None, &[]);
        for ok in [
            "127.0.0.1:8080",
            "127.0.0.1",
            "[::1]:8080",
            "localhost:8080",
            "LOCALHOST.",
            "10.1.2.3:1",
            "a.localhost",
            "x",
        ] {
            assert!(hosts.allows(Some(ok)), "{ok}");
        }
        assert!(hosts.allows(None));
        for refused in ["attacker.example", "attacker.example:8080", "127.0.0.1.attacker.example", "localhost.evil"] {
            assert!(!hosts.allows(Some(refused)), "{refused}");
        }
    }

    #[test]
    fn public_url_and_allowed_hosts_add_names() {
        let any = AllowedHosts::new(addr("0.0.0.0:8080"), None, &[]);
        assert!(any.allows(Some("whatever.example")), "no public_url on 0.0.0.0: off");
        let hosts = AllowedHosts::new(
            addr("0.0.0.0:8080"),
            Some("https://CRMHOOK.example.com/base"),
            &["other.example:8443".into(), " ".into()],
        );
        for ok in ["crmhook.example.com", "crmhook.example.com:443", "Other.Example", "192.0.2.1:8080"] {
            assert!(hosts.allows(Some(ok)), "{ok}");
        }
        assert!(!hosts.allows(Some("evil.example")));
        let off = AllowedHosts::new(addr("127.0.0.1:8080"), Some("https://a.example"), &["*".into()]);
        assert!(off.allows(Some("evil.example")));
    }
}
