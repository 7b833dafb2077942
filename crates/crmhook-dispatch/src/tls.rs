//! `https://` to an IPv6 literal address (`https://[2001:db8::1]/hook`), which awc cannot reach
//! on its own.
//!
//! awc's TLS step (actix-tls 3.6's rustls connector, which an awc client cannot replace) takes
//! the TLS server name from the URL's host as `http::Uri` writes it: `[2001:db8::1]`, brackets
//! and all. rustls reads that neither as a DNS name nor as an address, and the connection fails
//! ("invalid server name") before any handshake. What awc does let a client replace is its TCP
//! step. So each delivery arbiter has a second awc client for these targets, whose TCP step is
//! [`LiteralTls`]: the guarded TCP connection (the address guard's resolver, as for every other
//! connection), then the TLS handshake with the server name [`server_name`] derives (the address
//! without its brackets, which rustls takes as `ServerName::IpAddress`: the certificate must name
//! that IP address), the same trusted roots as every other delivery ([`DeliveryTls`]: webpki's,
//! and the `delivery_ca_file`'s certificates if set), and rustls's full verification. awc gets the TLS stream as if it were the TCP connection, and speaks HTTP/1.1
//! over it (the only protocol offered by ALPN).
//!
//! awc sends requests through its TCP step alone only for `http://` URLs, so such a target's
//! [`Endpoint`](crate::delivery::Endpoint) addresses its requests to [`over_tls_uri`]'s
//! `http://[addr]:port/path` (the `Host` header awc writes for it is the same as for the
//! `https://` URL). That client is used for nothing else, and its connector makes every connection
//! TLS whatever the URL's scheme says: nothing it sends can leave in the clear.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_rt::net::{ActixStream, Ready, TcpStream};
use actix_service::Service;
use actix_tls::connect::rustls_0_23::reexports::{AsyncTlsStream, ClientConfig};
use actix_tls::connect::rustls_0_23::{webpki_roots_cert_store, TlsConnector, TlsConnectorService};
use actix_tls::connect::{ConnectError, ConnectInfo, Connection, ConnectorService, Host};
use awc::http::Uri;
use futures_util::future::LocalBoxFuture;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The TLS server name for a URL's host as `http::Uri::host` writes it: an IPv6 literal without
/// its brackets (`[2001:db8::1]` → `2001:db8::1`, which rustls reads as an address); an IPv4
/// address or a DNS name as it is.
pub fn server_name(host: &str) -> &str {
    host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host)
}

/// Whether a URL is `https://` to an IPv6 literal: its attempts go through the arbiter's client
/// for those ([`LiteralTls`]).
pub fn is_https_to_ipv6_literal(uri: &Uri) -> bool {
    uri.scheme_str() == Some("https") && uri.host().is_some_and(|h| h.starts_with('['))
}

/// The URL an `https://` IPv6-literal target's requests are given to awc: the same address,
/// port (443 when the URL has none) and path, as `http://`, so that awc takes its TCP step
/// alone, which in that client is [`LiteralTls`] (always TLS).
pub fn over_tls_uri(https: &Uri) -> Option<Uri> {
    let host = https.host()?;
    let port = https.port_u16().unwrap_or(443);
    let path = https.path_and_query().map_or("/", |p| p.as_str());
    format!("http://{host}:{port}{path}").parse().ok()
}

/// What deliveries trust, and the two TLS configurations built on it once per server (cheap to
/// clone): webpki's roots, as awc's own TLS step trusts by default, and the certificates of the
/// `delivery_ca_file` if one is set (a private CA's, for receivers whose certificates it signed;
/// since 2026-12-07, before which only public roots were trusted). No client certificate.
#[derive(Clone)]
pub struct DeliveryTls {
    /// awc's own TLS step (`https://` to a name or an IPv4 address): HTTP/2 or HTTP/1.1 by
    /// ALPN, as awc offers by default.
    pub(crate) awc: Arc<ClientConfig>,
    /// [`LiteralTls`] (`https://` to an IPv6 literal): HTTP/1.1.
    pub(crate) literal: Arc<ClientConfig>,
}

impl Default for DeliveryTls {
    /// webpki's roots alone.
    fn default() -> Self {
        DeliveryTls::trusting(webpki_roots_cert_store())
    }
}

impl DeliveryTls {
    /// webpki's roots and every certificate of the PEM file `ca_file` (a private CA's); an
    /// unreadable file, one with no certificate or one that cannot be trusted is refused, with
    /// why.
    pub fn with_ca_file(ca_file: &std::path::Path) -> Result<DeliveryTls, String> {
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        let shown = ca_file.display();
        let mut roots = webpki_roots_cert_store();
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(ca_file).map_err(|e| format!("cannot read {shown}: {e}"))? {
            let cert = cert.map_err(|e| format!("{shown}: {e}"))?;
            roots.add(cert).map_err(|e| format!("{shown}: a certificate that cannot be trusted: {e}"))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!("{shown} holds no certificate (PEM, `-----BEGIN CERTIFICATE-----`)"));
        }
        Ok(DeliveryTls::trusting(roots))
    }

    fn trusting(roots: rustls::RootCertStore) -> DeliveryTls {
        let config = |alpn: &[&[u8]]| {
            let mut config = ClientConfig::builder().with_root_certificates(roots.clone()).with_no_client_auth();
            config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Arc::new(config)
        };
        DeliveryTls { awc: config(&[b"h2", b"http/1.1"]), literal: config(&[b"http/1.1"]) }
    }
}

/// The TCP step of the client for `https://` to IPv6 literals: connects with `tcp` (the guarded
/// connector), then makes the connection TLS with the server name [`server_name`] gives.
#[derive(Clone)]
pub struct LiteralTls {
    tcp: ConnectorService,
    tls: TlsConnectorService,
}

impl LiteralTls {
    pub fn new(tcp: ConnectorService, config: Arc<ClientConfig>) -> LiteralTls {
        LiteralTls { tcp, tls: TlsConnector::service(config) }
    }
}

/// A host as TLS is to name it (what [`server_name`] gives).
struct TlsName(String);

impl Host for TlsName {
    fn hostname(&self) -> &str {
        &self.0
    }
}

impl Service<ConnectInfo<Uri>> for LiteralTls {
    type Response = Connection<Uri, TlsIo>;
    type Error = ConnectError;
    type Future = LocalBoxFuture<'static, Result<Connection<Uri, TlsIo>, ConnectError>>;

    actix_service::always_ready!();

    fn call(&self, info: ConnectInfo<Uri>) -> Self::Future {
        let tcp = self.tcp.call(info);
        let tls = self.tls.clone();
        Box::pin(async move {
            let (stream, uri) = tcp.await?.into_parts();
            let name = TlsName(server_name(uri.host().unwrap_or_default()).to_owned());
            // A name rustls cannot read, or a certificate it does not accept, is an I/O error here
            // as in awc's own TLS step ("invalid peer certificate: …").
            let (stream, _) = tls.call(Connection::new(name, stream)).await.map_err(ConnectError::Io)?.into_parts();
            Ok(Connection::new(uri, TlsIo(stream)))
        })
    }
}

/// A client TLS stream over TCP, as awc's connector takes a connection (an `ActixStream`, which
/// tokio-rustls's stream is not).
pub struct TlsIo(AsyncTlsStream<TcpStream>);

impl fmt::Debug for TlsIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TlsIo").field(self.0.get_ref().0).finish()
    }
}

impl AsyncRead for TlsIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// Readiness is the TCP socket's, as actix-tls answers for its own TLS streams.
impl ActixStream for TlsIo {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        ActixStream::poll_read_ready(self.0.get_ref().0, cx)
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        ActixStream::poll_write_ready(self.0.get_ref().0, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::ServerName;

    #[test]
    fn the_server_name_is_an_ipv6_literal_without_brackets_and_anything_else_as_it_is() {
        assert_eq!(server_name("[::1]"), "::1");
        assert_eq!(server_name("[2001:db8::1]"), "2001:db8::1");
        assert_eq!(server_name("192.0.2.1"), "192.0.2.1");
        assert_eq!(server_name("example.com"), "example.com");
        assert_eq!(server_name("hooks.example.com."), "hooks.example.com.");
        // What rustls makes of them: addresses for both literals, a DNS name for the name; the
        // bracketed form (what awc's own TLS step hands it) is no name at all.
        let name = |host: &str| ServerName::try_from(server_name(host)).map(|n| n.to_owned()).ok();
        let v6: std::net::IpAddr = "2001:db8::1".parse().expect("address");
        assert_eq!(name("[2001:db8::1]"), Some(ServerName::IpAddress(v6.into())));
        let v4: std::net::IpAddr = "192.0.2.1".parse().expect("address");
        assert_eq!(name("192.0.2.1"), Some(ServerName::IpAddress(v4.into())));
        assert!(matches!(name("example.com"), Some(ServerName::DnsName(_))));
        assert!(ServerName::try_from("[::1]").is_err(), "rustls now reads a bracketed literal");
    }

    #[test]
    fn only_https_to_ipv6_literals_take_the_tls_path_and_keep_their_address_port_and_path() {
        let uri = |s: &str| s.parse::<Uri>().expect("uri");
        assert!(is_https_to_ipv6_literal(&uri("https://[2001:db8::1]/hook")));
        assert!(is_https_to_ipv6_literal(&uri("https://[::1]:8443/")));
        for other in ["http://[::1]:8080/", "https://192.0.2.1/", "https://example.com/", "https://example.com:8443/"] {
            assert!(!is_https_to_ipv6_literal(&uri(other)), "{other}");
        }
        let over = |s: &str| over_tls_uri(&uri(s)).map(|u| u.to_string());
        assert_eq!(over("https://[2001:db8::1]/hook").as_deref(), Some("http://[2001:db8::1]:443/hook"));
        assert_eq!(over("https://[::1]:8443/a/b?c=d&e").as_deref(), Some("http://[::1]:8443/a/b?c=d&e"));
        assert_eq!(over("https://[::1]").as_deref(), Some("http://[::1]:443/"));
    }
}
