//! TLS on the listener (rustls): the certificate chain and private key are read from PEM files
//! (`tls_cert`, `tls_key`) at start, and again whenever [`TlsReload::reload`] is called (the
//! binary calls it on SIGHUP), so a renewed certificate is served to new connections without a
//! restart. A reload that fails (a missing file, a key that does not match, a certificate that
//! has expired while the one served has not) keeps the certificate being served and says why.
//! A start or reload whose certificate is expired or not valid yet says so in the log.

mod validity;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

pub use validity::Validity;

/// Why a certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
#[error("TLS: {reason}")]
pub struct TlsError {
    /// The configuration key of the file at fault: `tls_cert` or `tls_key`.
    key: &'static str,
    reason: String,
}

impl TlsError {
    fn cert(reason: String) -> Self {
        TlsError { key: "tls_cert", reason }
    }

    fn key(reason: String) -> Self {
        TlsError { key: "tls_key", reason }
    }

    fn delivery_ca(reason: String) -> Self {
        TlsError { key: "delivery_ca_file", reason }
    }

    /// The configuration key of the file at fault: `tls_cert`, `tls_key` or `delivery_ca_file`.
    pub fn config_key(&self) -> &'static str {
        self.key
    }

    /// Why, without the `TLS: ` of the message.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// The certificate served now; replaced whole on reload.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.read().ok().map(|key| key.clone())
    }
}

/// Reloads the served certificate from its files; a handle (clone it freely).
#[derive(Clone, Debug)]
pub struct TlsReload {
    current: Arc<Current>,
    cert: PathBuf,
    key: PathBuf,
}

impl TlsReload {
    /// Reads the files again and serves the new certificate to new connections; answers its
    /// validity, when its dates can be read. A certificate that has expired is refused while
    /// the one served has not (until 2026-12-07 it replaced it, and every client failed from
    /// then on); once both have, the newer files are taken.
    pub fn reload(&self) -> Result<Option<Validity>, TlsError> {
        let key = load(&self.cert, &self.key)?;
        let validity = validity_of(&key);
        let mut current = self.current.0.write().map_err(|_| TlsError::cert("certificate lock poisoned".into()))?;
        let now = crmhook_core::time::now_ms();
        if let Some(new) = validity.filter(|v| v.expired(now)) {
            if validity_of(&current).is_some_and(|served| !served.expired(now)) {
                return Err(TlsError::cert(format!(
                    "the certificate {} expired at {}",
                    self.cert.display(),
                    crmhook_core::time::rfc3339(new.not_after_ms)
                )));
            }
        }
        *current = key;
        Ok(validity)
    }
}

/// Reads and checks the certificate and key as a start would, and uses nothing: start-up checks
/// its configuration with it before it creates anything.
pub fn check(cert: &Path, key: &Path) -> Result<(), TlsError> {
    load(cert, key).map(drop)
}

/// What deliveries trust: webpki's roots, and the certificates of `delivery_ca_file` if set
/// (`crmhook_dispatch::DeliveryTls`). Read at start only.
pub fn delivery_tls(ca_file: Option<&Path>) -> Result<crmhook_dispatch::DeliveryTls, TlsError> {
    match ca_file {
        None => Ok(crmhook_dispatch::DeliveryTls::default()),
        Some(file) => crmhook_dispatch::DeliveryTls::with_ca_file(file).map_err(TlsError::delivery_ca),
    }
}

/// The rustls configuration of the listener, and its reload handle.
pub(crate) fn server_config(cert: &Path, key: &Path) -> Result<(rustls::ServerConfig, TlsReload), TlsError> {
    let served = load(cert, key)?;
    if let Some(trouble) = validity_of(&served).and_then(|v| v.trouble(crmhook_core::time::now_ms())) {
        tracing::warn!(tls_cert = %cert.display(), "{trouble}");
    }
    let current = Arc::new(Current(RwLock::new(served)));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::cert(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(current.clone());
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((config, TlsReload { current, cert: cert.to_owned(), key: key.to_owned() }))
}

/// The validity of the certificate `key` serves (the chain's first), if its dates can be read.
fn validity_of(key: &CertifiedKey) -> Option<Validity> {
    key.end_entity_cert().ok().and_then(|der| Validity::of(der))
}

fn load(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| TlsError::cert(format!("cannot read the certificate {}: {e}", cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::cert(format!("cannot read the certificate {}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(TlsError::cert(format!("{} holds no certificate", cert.display())));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| TlsError::key(format!("cannot read the private key {}: {e}", key.display())))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&private)
        .map_err(|e| TlsError::key(format!("the private key {} cannot be used: {e}", key.display())))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        TlsError::key(format!(
            "the private key {} does not match the certificate {}: {e}",
            key.display(),
            cert.display()
        ))
    })?;
    Ok(Arc::new(certified))
}
