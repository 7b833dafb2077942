//! Who a request comes from: the address the failed-authentication limits count
//! (`crate::api::limits`), a MAIA request's per-address places (`crate::sources`), the audit
//! trail's `from` and the operators' log lines.
//!
//! That is the TCP peer's address, unless the peer is one of the `trusted_proxies`: then it is
//! the address that proxy says it served, read from `X-Forwarded-For` right to left (each proxy
//! appends the address it was reached from). The first address there that is not a trusted
//! proxy is the client; entries to its left were written by the client itself and are never
//! believed. An entry that is not an address (`unknown`, an obfuscated name) ends the walk at
//! the last trusted hop, which is then the client; so does an empty or missing header. Only
//! `X-Forwarded-For` is read (nginx, Caddy, Traefik and HAProxy write it); `Forwarded` and
//! `X-Real-IP` are ignored. With no `trusted_proxies` (the default) no header is read at all.

use std::net::{IpAddr, SocketAddr};

use actix_web::{web, HttpRequest};

use crate::api::state::AppState;

/// The header a proxy names the client in.
pub const FORWARDED_FOR: &str = "x-forwarded-for";

/// The `trusted_proxies` setting: addresses and networks (`10.0.0.0/8`, `fd00::/8`, `127.0.0.1`)
/// whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Network>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    fn parse(text: &str) -> Result<Network, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| format!("{text:?} is not an IP address or network"))?;
        let addr = addr.to_canonical();
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {bits}"))?,
        };
        Ok(Network { addr, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl TrustedProxies {
    /// The setting's entries (comma-separated in the environment, an array in the file). An
    /// entry that is neither an address nor a network is refused, saying which.
    pub fn parse(entries: &[String]) -> Result<TrustedProxies, String> {
        entries
            .iter()
            .map(|e| e.trim())
            .filter(|e| !e.is_empty())
            .map(Network::parse)
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(ip))
    }

    /// The client's address, given the TCP peer's and the request's `X-Forwarded-For` values
    /// in the order they came.
    pub fn client<'a>(
        &self,
        peer: Option<IpAddr>,
        forwarded_for: impl DoubleEndedIterator<Item = &'a str>,
    ) -> Option<IpAddr> {
        let mut client = peer?.to_canonical();
        if !self.contains(client) {
            return Some(client);
        }
        for entry in forwarded_for.rev().flat_map(|value| value.rsplit(',')).map(str::trim).filter(|e| !e.is_empty()) {
            let Some(ip) = entry_address(entry) else { return Some(client) };
            client = ip.to_canonical();
            if !self.contains(client) {
                return Some(client);
            }
        }
        Some(client)
    }
}

/// An `X-Forwarded-For` entry's address: `192.0.2.1`, `2001:db8::1`, or with a port
/// (`192.0.2.1:5000`, `[2001:db8::1]:5000`, as some proxies write it).
fn entry_address(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| entry.strip_prefix('[').and_then(|e| e.strip_suffix(']')).and_then(|e| e.parse::<IpAddr>().ok()))
}

/// The address `req` comes from (see the module's docs); `None` only when the connection has
/// no peer address (a test request).
pub(crate) fn client_ip(req: &HttpRequest) -> Option<IpAddr> {
    let peer = req.peer_addr().map(|a| a.ip());
    match req.app_data::<web::Data<AppState>>() {
        Some(state) if !state.proxies.0.is_empty() => {
            let values = forwarded_for(req);
            state.proxies.client(peer, values.iter().map(String::as_str))
        }
        _ => peer.map(|ip| ip.to_canonical()),
    }
}

/// The request's `X-Forwarded-For` lines, in order. A line with bytes that are not text is
/// read as far as it is (they become a replacement character): the entries a proxy appended to
/// the right of a client's junk are still read (dropping the line would make the proxy the
/// client, and count a client's failures against every client of the proxy).
fn forwarded_for(req: &HttpRequest) -> Vec<String> {
    req.headers().get_all(FORWARDED_FOR).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn client(p: &TrustedProxies, peer: &str, headers: &[&str]) -> IpAddr {
        p.client(Some(ip(peer)), headers.iter().copied()).unwrap()
    }

    #[test]
    fn entries_are_addresses_or_networks() {
        let p = proxies(&["127.0.0.1", " 10.0.0.0/8 ", "fd00::/8", "::1"]);
        assert!(p.contains(ip("127.0.0.1")));
        assert!(!p.contains(ip("127.0.0.2")));
        assert!(p.contains(ip("10.255.1.2")));
        assert!(!p.contains(ip("11.0.0.1")));
        assert!(p.contains(ip("fd12::5")));
        assert!(p.contains(ip("::1")));
        assert!(!p.contains(ip("fe80::1")));
        // An IPv4 peer on a dual-stack socket is seen as ::ffff:a.b.c.d.
        assert!(p.contains(ip("::ffff:10.1.2.3")));
        assert!(proxies(&["0.0.0.0/0"]).contains(ip("203.0.113.9")));
        assert!(!proxies(&["0.0.0.0/0"]).contains(ip("2001:db8::1")));
        assert!(proxies(&["::/0"]).contains(ip("2001:db8::1")));
        assert_eq!(proxies(&[]), TrustedProxies::default());
        for bad in ["10.0.0.0/33", "fd00::/129", "proxy.example", "10.0.0/8", "10.0.0.0/x", "/8"] {
            let error = TrustedProxies::parse(&[bad.to_owned()]).unwrap_err();
            assert!(error.contains(bad), "{bad}: {error}");
        }
    }

    #[test]
    fn the_client_is_the_first_untrusted_address_from_the_right() {
        let p = proxies(&["127.0.0.1", "10.0.0.0/8"]);
        // Not from a proxy: the header is the client's own words.
        assert_eq!(client(&p, "203.0.113.5", &["198.51.100.1"]), ip("203.0.113.5"));
        // From the proxy: the address it appended.
        assert_eq!(client(&p, "127.0.0.1", &["198.51.100.1"]), ip("198.51.100.1"));
        // What the client wrote to the left of it is not believed.
        assert_eq!(client(&p, "127.0.0.1", &["6.6.6.6, 198.51.100.1"]), ip("198.51.100.1"));
        // Two proxies: the inner one's address is skipped.
        assert_eq!(client(&p, "127.0.0.1", &["6.6.6.6, 198.51.100.1, 10.1.1.1"]), ip("198.51.100.1"));
        // Several header lines are one list, in order.
        assert_eq!(client(&p, "127.0.0.1", &["6.6.6.6", "198.51.100.1, 10.1.1.1"]), ip("198.51.100.1"));
        // No header, an empty one, or only proxies: the last trusted hop.
        assert_eq!(client(&p, "127.0.0.1", &[]), ip("127.0.0.1"));
        assert_eq!(client(&p, "127.0.0.1", &[" , "]), ip("127.0.0.1"));
        assert_eq!(client(&p, "127.0.0.1", &["10.2.2.2"]), ip("10.2.2.2"));
        // Garbage ends the walk at the hop that passed it on.
        assert_eq!(client(&p, "127.0.0.1", &["198.51.100.1, unknown"]), ip("127.0.0.1"));
        assert_eq!(client(&p, "127.0.0.1", &["198.51.100.1, unknown, 10.3.3.3"]), ip("10.3.3.3"));
        // Ports and brackets, as some proxies write them; IPv6.
        assert_eq!(client(&p, "127.0.0.1", &["198.51.100.1:4711"]), ip("198.51.100.1"));
        assert_eq!(client(&p, "127.0.0.1", &["[2001:db8::7]:4711"]), ip("2001:db8::7"));
        assert_eq!(client(&p, "127.0.0.1", &["[2001:db8::7]"]), ip("2001:db8::7"));
        assert_eq!(client(&p, "127.0.0.1", &["2001:db8::7"]), ip("2001:db8::7"));
        // A mapped peer counts as its IPv4 address.
        assert_eq!(client(&p, "::ffff:127.0.0.1", &["198.51.100.1"]), ip("198.51.100.1"));
        // With no proxies trusted, nothing is read.
        assert_eq!(client(&proxies(&[]), "127.0.0.1", &["198.51.100.1"]), ip("127.0.0.1"));
        assert_eq!(p.client(None, std::iter::empty()), None);
    }

    #[test]
    fn a_line_with_bytes_that_are_no_text_is_read_as_far_as_it_is() {
        let value = actix_web::http::header::HeaderValue::from_bytes(b"\xff\xfe junk, 198.51.100.1").unwrap();
        let req = actix_web::test::TestRequest::default()
            .insert_header((FORWARDED_FOR, value))
            .append_header((FORWARDED_FOR, "10.1.1.1"))
            .to_http_request();
        let values = forwarded_for(&req);
        let p = proxies(&["127.0.0.1", "10.0.0.0/8"]);
        assert_eq!(p.client(Some(ip("127.0.0.1")), values.iter().map(String::as_str)), Some(ip("198.51.100.1")));
    }
}
