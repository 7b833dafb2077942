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

/// What is wrong with a PEM file, in words: rustls's own name the marker it missed as a list of
/// bytes (`[67, 69, 82, …]`) and a file with no key or certificate of the kind asked for as
/// "no items found" (an encrypted key, a certificate in the key's file).
fn pem_words(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::MissingSectionEnd { end_marker } => {
            format!("it is cut short: no `-----END {}-----` line", String::from_utf8_lossy(end_marker).trim())
        }
        Error::IllegalSectionStart { line } => {
            format!("a `-----BEGIN` line is not valid: `{}`", String::from_utf8_lossy(line).trim())
        }
        Error::NoItemsFound => "it holds no unencrypted private key (PKCS#8, PKCS#1 or SEC1 PEM; an encrypted key \
                                (`ENCRYPTED PRIVATE KEY`) must be decrypted first)"
            .to_owned(),
        other => other.to_string(),
    }
}

/// The validity of the certificate `key` serves (the chain's first), if its dates can be read.
fn validity_of(key: &CertifiedKey) -> Option<Validity> {
    key.end_entity_cert().ok().and_then(|der| Validity::of(der))
}

fn load(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| TlsError::cert(format!("cannot read the certificate {}: {}", cert.display(), pem_words(&e))))?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::cert(format!("cannot read the certificate {}: {}", cert.display(), pem_words(&e))))?;
    if chain.is_empty() {
        return Err(TlsError::cert(format!("{} holds no certificate", cert.display())));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| TlsError::key(format!("cannot read the private key {}: {}", key.display(), pem_words(&e))))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate and its key, written to `dir` as cert.pem and key.pem.
    fn files(dir: &Path) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("certificate");
        std::fs::write(dir.join("cert.pem"), cert.pem()).expect("write");
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write");
        (dir.join("cert.pem"), dir.join("key.pem"))
    }

    #[test]
    fn broken_pem_files_are_said_in_words() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = files(dir.path());
        assert!(check(&cert, &key).is_ok());
        // A certificate cut short (a copy that stopped half way).
        let text = std::fs::read_to_string(&cert).expect("read");
        std::fs::write(&cert, &text[..text.len() / 2]).expect("write");
        let why = check(&cert, &key).expect_err("a cut certificate").to_string();
        assert!(why.contains("it is cut short: no `-----END CERTIFICATE-----` line"), "{why}");
        // A certificate where the key should be: no key in it.
        std::fs::write(&cert, text).expect("write");
        std::fs::copy(&cert, &key).expect("copy");
        let why = check(&cert, &key).expect_err("no key").to_string();
        assert!(why.contains("holds no unencrypted private key"), "{why}");
        assert_eq!(check(&cert, &key).expect_err("no key").config_key(), "tls_key");
    }
}
