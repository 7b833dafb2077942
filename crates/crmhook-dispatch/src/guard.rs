//! The address guard: unless `allow_private_targets` is on, crmhook never connects to a
//! loopback, private, link-local, CGNAT, multicast, documentation, reserved or unspecified
//! address (IPv4 and IPv6, IPv4-mapped and -embedded forms included).
//!
//! It is checked twice: when a target is created or changed (its URL's literal address, or every
//! address its host name resolves to then), and again at every connection, on the addresses the
//! name resolves to at that moment, so that a DNS answer that changes after creation (DNS
//! rebinding) gets nowhere. Numeric host forms like `http://2130706433` or `http://0x7f.1` are
//! normalised to their address by the URL parser before the check.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use futures_util::future::LocalBoxFuture;

/// The guard's one setting, `allow_private_targets`, passed as data: the server builds it from
/// its configuration and hands copies to the API (the check at creation) and to each delivery
/// client (the checks before an attempt and at connect time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Guard {
    /// Whether non-public addresses are allowed (`allow_private_targets`).
    pub allow_private: bool,
}

/// Whether an IPv4 address is a public unicast address.
fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || a == 0 // "this network"
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64.0.0/10
        || ip.is_multicast()
        || a >= 240 // reserved, and the broadcast address
        || ip.is_documentation()
        || (a == 198 && (b == 18 || b == 19)) // benchmarking 198.18.0.0/15
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments 192.0.0.0/24
        || (a == 192 && b == 88 && c == 99)) // 6to4 relay anycast
}

/// Whether an IPv6 address is a public unicast address.
fn public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return public_v4(v4);
    }
    let s = ip.segments();
    // 6to4 (2002::/16) carries an IPv4 address: judge that one.
    if s[0] == 0x2002 {
        return public_v4(Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8));
    }
    let global_unicast = (s[0] & 0xe000) == 0x2000; // 2000::/3
    global_unicast
        && !(s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        && !(s[0] == 0x2001 && s[1] < 0x0200) // IETF protocol assignments (Teredo, ORCHID, …)
        && !(s[0] == 0x3fff && s[1] < 0x1000) // documentation 3fff::/20
}

/// Whether crmhook may connect to `ip` as a public address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => public_v6(v6),
    }
}

/// The guard's refusal of an address, as the delivery client's resolver answers it: told apart
/// from a failure to resolve by its type (`delivery` words it `refused: …`).
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

fn refuse(host: &str, ip: IpAddr) -> String {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host == ip.to_string() {
        format!("{ip} is not a public address (allow_private_targets is off)")
    } else {
        format!("{host} is {ip}, not a public address (allow_private_targets is off)")
    }
}

impl Guard {
    /// The check at creation: a literal address must be public; a name must not be `localhost`
    /// and must not resolve to a non-public address now. A name that does not resolve is let
    /// through: the check at connect time still applies.
    pub async fn check_url(&self, url: &str) -> Result<(), String> {
        if self.allow_private {
            return Ok(());
        }
        let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
        let port = parsed.port_or_known_default().unwrap_or(443);
        match parsed.host() {
            Some(url::Host::Ipv4(ip)) if !public_v4(ip) => Err(refuse(&ip.to_string(), IpAddr::V4(ip))),
            Some(url::Host::Ipv6(ip)) if !public_v6(ip) => Err(refuse(&format!("[{ip}]"), IpAddr::V6(ip))),
            Some(url::Host::Domain(name)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                if name == "localhost" || name.ends_with(".localhost") {
                    return Err(format!("{name} is a loopback name (allow_private_targets is off)"));
                }
                let lookup = tokio::net::lookup_host((name.as_str(), port));
                if let Ok(Ok(addrs)) = tokio::time::timeout(Duration::from_secs(3), lookup).await {
                    for addr in addrs {
                        if !is_public(addr.ip()) {
                            return Err(format!(
                                "{name} resolves to {}, not a public address (allow_private_targets is off)",
                                addr.ip()
                            ));
                        }
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The check before each attempt, for a URL whose host is a literal address (names are
    /// checked by [`GuardResolver`] when the connection is made).
    pub fn check_literal(&self, url: &str) -> Result<(), String> {
        if self.allow_private {
            return Ok(());
        }
        match url::Url::parse(url).ok().and_then(|u| u.host().map(|h| h.to_owned())) {
            Some(url::Host::Ipv4(ip)) if !public_v4(ip) => Err(refuse(&ip.to_string(), IpAddr::V4(ip))),
            Some(url::Host::Ipv6(ip)) if !public_v6(ip) => Err(refuse(&format!("[{ip}]"), IpAddr::V6(ip))),
            _ => Ok(()),
        }
    }
}

/// The address of a host written as an IPv6 literal, with or without its brackets.
fn literal_v6(host: &str) -> Option<IpAddr> {
    let inner = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

/// The DNS resolver of the delivery client: resolves, then refuses the connection if any
/// address is not public (unless its guard allows private targets).
pub struct GuardResolver(pub Guard);

impl actix_tls::connect::Resolve for GuardResolver {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> LocalBoxFuture<'a, Result<Vec<SocketAddr>, Box<dyn std::error::Error>>> {
        Box::pin(async move {
            // An IPv6 literal reaches the resolver in its URL form, `[::1]` (actix-tls takes
            // the bracketed text for a name): it is an address, connected to as it is, and
            // checked like every other.
            if let Some(ip) = literal_v6(host) {
                if !self.0.allow_private && !is_public(ip) {
                    return Err(Refused(refuse(host, ip)).into());
                }
                return Ok(vec![SocketAddr::new(ip, port)]);
            }
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
            if !self.0.allow_private {
                if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
                    return Err(Refused(refuse(host, bad.ip())).into());
                }
            }
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn non_public_addresses_are_refused() {
        for s in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "198.51.100.1",
            "203.0.113.1",
            "198.18.0.1",
            "192.0.0.8",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "2001:db8::1",
            "2001::1",
            "2002:7f00:1::1",
            "64:ff9b::7f00:1",
            "100::1",
        ] {
            assert!(!is_public(ip(s)), "{s} should be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for s in [
            "1.1.1.1",
            "8.8.8.8",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700::1111",
            "2a00:1450::1",
            "::ffff:8.8.8.8",
            "2002:808:808::1",
        ] {
            assert!(is_public(ip(s)), "{s} should pass");
        }
    }

    #[actix_rt::test]
    async fn ipv6_literals_are_addresses_not_names() {
        use actix_tls::connect::Resolve;
        let open = GuardResolver(Guard { allow_private: true });
        let addrs = open.lookup("[::1]", 8080).await.expect("an IPv6 literal resolves to itself");
        assert_eq!(addrs, vec!["[::1]:8080".parse::<SocketAddr>().unwrap()]);
        let public = open.lookup("[2606:4700::1111]", 443).await.expect("resolves to itself");
        assert_eq!(public, vec!["[2606:4700::1111]:443".parse::<SocketAddr>().unwrap()]);
        let guarded = GuardResolver(Guard { allow_private: false });
        for host in ["[::1]", "[2001:db8::1]", "[fe80::1]", "[::ffff:127.0.0.1]"] {
            let refused = guarded.lookup(host, 443).await.expect_err("non-public literal is refused");
            assert!(refused.to_string().contains("not a public address"), "{host}: {refused}");
        }
        assert!(guarded.lookup("[2606:4700::1111]", 443).await.is_ok());
        assert_eq!(literal_v6("[::1]"), Some(ip("::1")));
        assert_eq!(literal_v6("::1"), Some(ip("::1")));
        assert_eq!(literal_v6("example.com"), None);
        assert_eq!(literal_v6("[example.com]"), None);
    }

    #[actix_rt::test]
    async fn numeric_and_named_forms_are_refused_at_creation() {
        for url in [
            "https://2130706433/",
            "https://0x7f.1/",
            "https://0177.0.0.1/",
            "https://127.1/",
            "https://[::ffff:7f00:1]/",
            "https://localhost:8443/",
            "https://api.localhost/",
            "https://[fe80::1]/",
            "https://169.254.169.254/latest/meta-data",
        ] {
            assert!(Guard { allow_private: false }.check_url(url).await.is_err(), "{url} should be refused");
            let allowed = Guard { allow_private: true }.check_url(url).await;
            assert!(allowed.is_ok(), "{url} is allowed with allow_private_targets");
        }
        assert!(Guard::default().check_url("https://93.184.215.14/hook").await.is_ok());
    }
}
