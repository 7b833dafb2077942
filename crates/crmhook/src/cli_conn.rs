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

    /// Why a request got no answer: a TLS handshake that failed says so (the server is up;
    /// its certificate is not trusted), anything else asks whether the server is running.
    pub(crate) fn unreachable(&self, e: ureq::Error) -> anyhow::Error {
        if tls_failure(&e) {
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

/// One request to the server: answers the status and the JSON body (`Null` when empty) for
/// any HTTP status but 401/403; a refused token or an unreachable server is said plainly.
pub(crate) fn call(conn: &Conn, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<(u16, Value)> {
    let token = conn.token.as_deref().context("no admin token: pass --token or set CRMHOOK_ADMIN_TOKEN")?;
    let url = format!("{}{path}", conn.url.trim_end_matches('/'));
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
    let text = response.into_string().unwrap_or_default();
    let value =
        if text.trim().is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    Ok((status, value))
}

/// A request that must succeed: an error status becomes an error naming it.
pub(crate) fn request(conn: &Conn, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
    let (code, value) = call(conn, method, path, body)?;
    if code >= 400 {
        let detail = value["detail"].as_str().unwrap_or("");
        bail!("{method} {path}: {code} {}: {detail}", value["title"].as_str().unwrap_or("error"));
    }
    Ok(value)
}
