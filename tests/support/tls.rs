//! TLS for the tests: a private CA's certificate for 127.0.0.1, and a client that trusts only it.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};

/// A CA, and a certificate for 127.0.0.1 it signed, written to `dir` as cert.pem and key.pem
/// (and the CA's as ca.pem); answers the CA's certificate (DER), which a client trusts.
pub fn issue(dir: &Path) -> Vec<u8> {
    issue_until(dir, (4096, 1, 1))
}

/// [`issue`], the certificate for 127.0.0.1 valid until the day `(year, month, day)` (expired
/// when past).
pub fn issue_until(dir: &Path, (year, month, day): (i32, u8, u8)) -> Vec<u8> {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.subject_alt_names = vec![SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST))];
    params.not_after = rcgen::date_time_ymd(year, month, day);
    let cert = params.signed_by(&key, &ca_cert, &ca_key).expect("certificate");
    std::fs::write(dir.join("cert.pem"), cert.pem()).expect("write cert");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write key");
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("write CA");
    ca_cert.der().to_vec()
}

/// `GET path` over TLS, trusting only `ca`; the status line, or why the handshake failed.
pub fn get(addr: &str, ca: &[u8], path: &str) -> Result<String, String> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let answer = exchange(addr, ca, request.as_bytes())?;
    Ok(answer.lines().next().unwrap_or("").to_owned())
}

/// Sends `request` over TLS, trusting only `ca`, and reads to the end of the connection; the
/// whole answer, or why the handshake failed.
pub fn exchange(addr: &str, ca: &[u8], request: &[u8]) -> Result<String, String> {
    let mut tls = connect(addr, ca, Vec::new(), Duration::from_secs(10))?;
    tls.write_all(request).map_err(|e| e.to_string())?;
    let mut answer = String::new();
    tls.read_to_string(&mut answer)
        .or_else(|e| if answer.is_empty() { Err(e) } else { Ok(0) })
        .map_err(|e| e.to_string())?;
    Ok(answer)
}

/// A TLS connection to `addr`, trusting only `ca`, offering the ALPN protocols `alpn` (none when
/// empty), each read waiting at most `timeout`; the handshake is made with the first write or
/// read, or by [`handshake`].
pub fn connect(
    addr: &str,
    ca: &[u8],
    alpn: Vec<Vec<u8>>,
    timeout: Duration,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from(ca.to_vec())).map_err(|e| e.to_string())?;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn;
    let name = rustls::pki_types::ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    Ok(rustls::StreamOwned::new(conn, tcp))
}

/// Completes the handshake of a [`connect`]ed stream; answers the protocol the server chose.
pub fn handshake(
    tls: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
) -> Result<Option<Vec<u8>>, String> {
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).map_err(|e| e.to_string())?;
    }
    Ok(tls.conn.alpn_protocol().map(<[u8]>::to_vec))
}
