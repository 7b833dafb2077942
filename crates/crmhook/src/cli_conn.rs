//! How the operators' commands reach the server: the client's options (`--url`, `--token`,
//! `--json`, `--ca-file`, global so that they go before or after a command), an HTTP client per
//! request (no redirects, `https://` checked against the built-in roots or `--ca-file`), and the
//! request helpers that say a refused token, a failed TLS handshake or an unreachable server
//! plainly.

use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use serde_json::Value;

/// Global, so that they go before or after an operator's command; listed apart in every help,
/// since `serve`, `verify`, `receive`, `log export` and `cluster import` refuse them.
#[derive(Args, Clone)]
#[command(next_help_heading = "Client options (the commands that talk to a server)")]
pub struct Conn {
    /// The server's base URL.
    #[arg(long, global = true, env = "CRMHOOK_URL", default_value = "http://127.0.0.1:8080")]
    pub(crate) url: String,
    /// An API key: the admin token, or an operator key for reading the log, redelivering and
    /// replaying.
    #[arg(long, global = true, env = "CRMHOOK_ADMIN_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// For an `https://` URL: a PEM file of the certificates to trust instead of the built-in
    /// roots (the server's own self-signed certificate, or a private CA's).
    #[arg(long, global = true, env = "CRMHOOK_CA_FILE")]
    pub(crate) ca_file: Option<std::path::PathBuf>,
}

impl Conn {
    /// An HTTP client for the server: `timeout` for each request (none for a stream), no
    /// redirects, `https://` checked against `--ca-file` when given, else the built-in roots.
    pub(crate) fn agent(&self, timeout: Option<Duration>) -> anyhow::Result<ureq::Agent> {
        let mut agent = ureq::AgentBuilder::new().redirects(0);
        if let Some(timeout) = timeout {
            agent = agent.timeout(timeout);
        }
        if let Some(file) = &self.ca_file {
            agent = agent.tls_config(std::sync::Arc::new(trusting(file)?));
        }
        Ok(agent.build())
    }

    /// Why a request got no answer: TLS to an `http://` URL says to use `https://`, a TLS
    /// handshake that failed says so (the server is up; its certificate is not trusted),
    /// anything else asks whether the server is running.
    pub(crate) fn unreachable(&self, e: ureq::Error) -> anyhow::Error {
        if let Some(https) = self.url.strip_prefix("http://").filter(|_| answered_in_tls(&e)) {
            anyhow::anyhow!("crmhook at {} answered in TLS: use https://{https}", self.url)
        } else if tls_failure(&e) {
            anyhow::anyhow!(
                "no TLS connection to crmhook at {}: {e} (for a self-signed certificate or a private CA, give \
                 it with --ca-file or CRMHOOK_CA_FILE)",
                self.url
            )
        } else {
            anyhow::anyhow!("cannot reach crmhook at {}: {e} (is it running? set --url or CRMHOOK_URL)", self.url)
        }
    }
}

/// A TLS client configuration that trusts the certificates in the PEM file `file`, and only
/// them (as curl's `--cacert`).
fn trusting(file: &std::path::Path) -> anyhow::Result<rustls::ClientConfig> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let shown = file.display();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(file).with_context(|| format!("--ca-file {shown}"))? {
        let cert = cert.with_context(|| format!("--ca-file {shown}"))?;
        roots.add(cert).with_context(|| format!("--ca-file {shown}: a certificate that cannot be trusted"))?;
    }
    if roots.is_empty() {
        bail!("--ca-file {shown} holds no certificate (PEM, `-----BEGIN CERTIFICATE-----`)");
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Whether a plain HTTP request got TLS back: the answer's first bytes, which ureq quotes as a
/// list, are a TLS record's (an alert, 21, or a handshake, 22, of version 3.x).
fn answered_in_tls(e: &ureq::Error) -> bool {
    let text = e.to_string();
    text.contains(": [21, 3,") || text.contains(": [22, 3,")
}

/// Whether `e` is a failed TLS handshake: ureq gives rustls' error inside an I/O error.
fn tls_failure(e: &ureq::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cause {
        if c.is::<rustls::Error>() {
            return true;
        }
        // An I/O error's `source` skips the error it wraps: look at that one too.
        if let Some(inner) = c.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            if inner.is::<rustls::Error>() {
                return true;
            }
        }
        cause = c.source();
    }
    false
}

impl Conn {
    /// The API key to send: `--token` or `CRMHOOK_ADMIN_TOKEN`; one that is empty (as
    /// `CRMHOOK_ADMIN_TOKEN=` sets it) is said to be none, not sent.
    pub(crate) fn token(&self) -> anyhow::Result<&str> {
        match self.token.as_deref().map(str::trim) {
            None => bail!("no admin token: pass --token or set CRMHOOK_ADMIN_TOKEN"),
            Some("") => bail!("no admin token: the one given is empty; pass --token or set CRMHOOK_ADMIN_TOKEN"),
            Some(token) => Ok(token),
        }
    }

    /// The URL of `path` (which starts with `/`) on the server.
    pub(crate) fn url_of(&self, path: &str) -> String {
        format!("{}{path}", self.url.trim_end_matches('/'))
    }
}

/// One request to the server: answers the status and the JSON body (`Null` when empty) for
/// any HTTP status but 401/403; a refused token or an unreachable server is said plainly. So is
/// an answer that cannot be crmhook's (since 2026-12-07; before, such an answer was taken for
/// a success): a redirect (the CLI follows none; it names where it leads), or a 2xx whose
/// content is not JSON (another server at `--url`).
pub(crate) fn call(conn: &Conn, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<(u16, Value)> {
    let token = conn.token()?;
    let url = conn.url_of(path);
    let agent = conn.agent(Some(Duration::from_secs(30)))?;
    let req = agent.request(method, &url).set("Authorization", &format!("Bearer {token}"));
    let result = match body {
        Some(b) => req.set("Content-Type", "application/json").send_string(&b.to_string()),
        None => req.call(),
    };
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(code @ (401 | 403), r)) => {
            let problem: Value = r.into_json().unwrap_or(Value::Null);
            let detail = problem["detail"].as_str().unwrap_or("");
            bail!(
                "the server refused the token ({code}: {detail}); use an admin key such as the admin token, or an operator key for reading (--token or CRMHOOK_ADMIN_TOKEN)"
            )
        }
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(conn.unreachable(e)),
    };
    let status = response.status();
    if (300..400).contains(&status) {
        return Err(redirected(conn, path, status, response.header("location")));
    }
    let content_type = response.header("content-type").map(str::to_owned);
    let text = response.into_string().unwrap_or_default();
    if text.trim().is_empty() {
        return Ok((status, Value::Null));
    }
    let parsed = serde_json::from_str(&text).ok().filter(|_| content_type.as_deref().is_some_and(is_json));
    match parsed {
        Some(value) => Ok((status, value)),
        None if status < 300 => {
            let shown: String = text.chars().take(60).collect();
            let cut = if shown.len() < text.len() { "…" } else { "" };
            let what = format!("{}: {shown:?}{cut}", content_type.as_deref().unwrap_or("no content-type"));
            Err(not_crmhook(conn, method, path, status, &what))
        }
        None => Ok((status, Value::String(text))),
    }
}

/// Whether a `Content-Type` is JSON's: `application/json` or a `+json` type
/// (`application/problem+json`), whatever its parameters.
fn is_json(content_type: &str) -> bool {
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// A redirect, which the CLI does not follow (the token would go wherever it points): where it
/// leads, and the `--url` that would reach crmhook when it leads to the same path elsewhere
/// (`http://` to `https://`, another host).
pub(crate) fn redirected(conn: &Conn, path: &str, status: u16, location: Option<&str>) -> anyhow::Error {
    let Some(location) = location else {
        return anyhow::anyhow!(
            "{} answered a redirect ({status}) with no Location; set --url to crmhook's URL",
            conn.url
        );
    };
    match location.strip_suffix(path).filter(|base| base.starts_with("http://") || base.starts_with("https://")) {
        Some(base) => anyhow::anyhow!(
            "redirected ({status}) to {location}: crmhook's URL is {base}; set --url (or CRMHOOK_URL) to it"
        ),
        None => anyhow::anyhow!(
            "redirected ({status}) to {location}, which the CLI does not follow: is {} crmhook's URL? set --url (or \
             CRMHOOK_URL) to it",
            conn.url
        ),
    }
}

/// An answer that cannot be crmhook's: `what` says what it was.
pub(crate) fn not_crmhook(conn: &Conn, method: &str, path: &str, status: u16, what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "not a crmhook answer to {method} {path} (HTTP {status}, {what}): is {} crmhook's URL? set --url or CRMHOOK_URL",
        conn.url
    )
}

/// What a request that succeeded answered, once it is an answer crmhook gives: a JSON object.
pub(crate) fn answer(conn: &Conn, method: &str, path: &str, status: u16, value: Value) -> anyhow::Result<Value> {
    match value {
        Value::Object(_) => Ok(value),
        Value::Null => Err(not_crmhook(conn, method, path, status, "no content, where crmhook answers JSON")),
        _ => Err(not_crmhook(conn, method, path, status, "JSON that is not an object")),
    }
}

/// A request that must succeed: an error status becomes an error naming it; a success must
/// answer a JSON object.
pub(crate) fn request(conn: &Conn, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
    let (code, value) = call(conn, method, path, body)?;
    failed(method, path, code, &value)?;
    answer(conn, method, path, code, value)
}

/// A request that must succeed with no content (`204`, as crmhook answers a `DELETE`).
pub(crate) fn request_done(conn: &Conn, method: &str, path: &str) -> anyhow::Result<()> {
    let (code, value) = call(conn, method, path, None)?;
    failed(method, path, code, &value)?;
    if code == 204 {
        return Ok(());
    }
    answer(conn, method, path, code, value).map(drop)
}

/// An error status as an error naming it, with the problem's title and detail.
fn failed(method: &str, path: &str, code: u16, value: &Value) -> anyhow::Result<()> {
    if code >= 400 {
        let detail = value["detail"].as_str().unwrap_or("");
        bail!("{method} {path}: {code} {}: {detail}", value["title"].as_str().unwrap_or("error"));
    }
    Ok(())
}

/// The list `member` of a crmhook answer (`targets` of `GET /v1/targets`): an answer without
/// it is not crmhook's.
pub(crate) fn items<'a>(conn: &Conn, v: &'a Value, member: &str) -> anyhow::Result<&'a [Value]> {
    v[member].as_array().map(Vec::as_slice).with_context(|| {
        format!(
            "not a crmhook answer: it has no `{member}` list; is {} crmhook's URL? set --url or CRMHOOK_URL",
            conn.url
        )
    })
}

/// `text` percent-encoded as one component of a URL (RFC 3986): every byte of its UTF-8 but
/// the unreserved characters (letters, digits, `-`, `.`, `_`, `~`) written `%XX`, so that
/// neither `/`, `?`, `#`, `&`, `=`, `+` nor `%` in it changes what the URL says.
pub(crate) fn encoded(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(char::from(b)),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// A kind of id a command takes in its path: its prefix and what it names (with its article).
pub(crate) struct IdKind {
    prefix: &'static str,
    what: &'static str,
}

pub(crate) const TARGET: IdKind = IdKind { prefix: "tgt_", what: "a target" };
pub(crate) const SUBSCRIPTION: IdKind = IdKind { prefix: "sub_", what: "a subscription" };
pub(crate) const EVENT: IdKind = IdKind { prefix: "evt_", what: "an event" };
pub(crate) const SOURCE: IdKind = IdKind { prefix: "src_", what: "a source" };
pub(crate) const KEY: IdKind = IdKind { prefix: "key_", what: "a key" };
pub(crate) const REJECTED: IdKind = IdKind { prefix: "rej_", what: "a rejected piece" };

/// An id the user typed as one segment of a request's path: refused unless it has its kind's
/// prefix (`tgt_…`), then percent-encoded ([`encoded`]), so that nothing in it (`/`, `..`, `?`,
/// `#`) changes the route. Until 2026-12-07 ids went into the path as typed:
/// `crmhook subscriptions delete ../targets/tgt_…` deleted a target.
pub(crate) fn segment(kind: &IdKind, id: &str) -> anyhow::Result<String> {
    let IdKind { prefix, what } = kind;
    if !id.starts_with(prefix) || id.len() == prefix.len() {
        bail!("{id:?} is not the id of {what} (`{prefix}…`)");
    }
    Ok(encoded(id))
}

/// A query string (`?name=value&…`, empty when no pair has a value) of the pairs that have a
/// value, each name and value percent-encoded ([`encoded`]); until 2026-12-07 `#` and other
/// characters went as typed (`--record-id 'x#y'` listed record `x`'s events).
pub(crate) fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> =
        pairs.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{}={}", encoded(k), encoded(v)))).collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_typed_stays_one_segment_or_one_value() {
        assert_eq!(encoded("aZ09-._~"), "aZ09-._~");
        assert_eq!(encoded("x#y&z+w% é/..?="), "x%23y%26z%2Bw%25%20%C3%A9%2F..%3F%3D");
        assert_eq!(segment(&TARGET, "tgt_x/stats").ok(), Some("tgt_x%2Fstats".to_owned()));
        assert!(segment(&SUBSCRIPTION, "../targets/tgt_1").is_err());
        assert!(segment(&EVENT, "evt_").is_err());
        assert!(segment(&EVENT, "..").is_err());
        let q = query(&[("record_id", Some("x#y".into())), ("type", None), ("limit", Some("5".into()))]);
        assert_eq!(q, "?record_id=x%23y&limit=5");
        assert_eq!(query(&[("a", None)]), "");
    }

    #[test]
    fn json_is_told_by_its_content_type() {
        assert!(is_json("application/json") && is_json("application/problem+json; charset=utf-8"));
        assert!(!is_json("text/plain") && !is_json("text/json+html"));
    }
}
