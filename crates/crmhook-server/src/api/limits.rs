//! Limits on failed authentication, per client address and per presented key: a token bucket
//! each. A client may fail `burst` times at once; its allowance comes back at `refill_per_minute`
//! failures a minute. A client whose allowance is spent is *blocked*: every request it makes to a
//! route that takes a token answers 429 with `Retry-After` (the seconds until one failure is
//! allowed again), before any token is compared, so a blocked client learns nothing, not even
//! whether a token it guessed is right. A correct token is never counted, and a blocked client is
//! let in again as soon as its allowance refills: nobody is locked out for longer than
//! `60 / refill_per_minute` seconds after the failures stop.
//!
//! An IPv6 client is counted by its /64 (one host usually holds a whole /64). A presented key is
//! held only as a 64-bit keyed hash (the seed is random per process), never as the token.
//!
//! Memory is bounded: at most [`MAX_CLIENTS`] buckets. A full table first drops the buckets that
//! have refilled (they hold nothing); if it is still full, every new client shares one bucket,
//! so an attacker with many addresses still meets a limit and the memory stays fixed.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Buckets kept at most (clients and keys together).
pub const MAX_CLIENTS: usize = 10_000;

/// The configured limits (`auth_failure_burst`, `auth_failure_refill_per_minute`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Failures allowed at once; 0 turns the limit off.
    pub burst: u32,
    /// Failures allowed again per minute (at least 1).
    pub refill_per_minute: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { burst: 100, refill_per_minute: 10 }
    }
}

/// Who a bucket counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Who {
    Addr(IpAddr),
    Key(u64),
    /// Every client that found the table full.
    Overflow,
}

/// The client of one request: its address and the key it presented, as the limiter counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    addr: Option<IpAddr>,
    key: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Failures still allowed (fractional while refilling).
    allowance: f64,
    at: Instant,
}

/// The failed-authentication limiter (one per server, in `AppState`).
pub struct AuthLimiter {
    limits: Limits,
    seed: RandomState,
    buckets: Mutex<HashMap<Who, Bucket>>,
    /// How many buckets there are: with none, a request takes no lock.
    len: AtomicUsize,
    max: usize,
}

/// What counting a failure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    /// The client (or its key) has no allowance left: its next requests answer 429.
    pub now_blocked: bool,
}

impl AuthLimiter {
    pub fn new(limits: Limits) -> Self {
        AuthLimiter::with_capacity(limits, MAX_CLIENTS)
    }

    fn with_capacity(limits: Limits, max: usize) -> Self {
        AuthLimiter {
            limits,
            seed: RandomState::new(),
            buckets: Mutex::new(HashMap::new()),
            len: AtomicUsize::new(0),
            max: max.max(1),
        }
    }

    fn enabled(&self) -> bool {
        self.limits.burst > 0 && self.limits.refill_per_minute > 0
    }

    fn per_second(&self) -> f64 {
        f64::from(self.limits.refill_per_minute) / 60.0
    }

    /// The client of a request from `addr` presenting `token` (the bearer token, if any).
    pub fn client(&self, addr: Option<IpAddr>, token: Option<&str>) -> Client {
        Client { addr: addr.map(counted_addr), key: token.map(|t| self.seed.hash_one(t)) }
    }

    fn whos(client: &Client) -> impl Iterator<Item = Who> {
        client.addr.map(Who::Addr).into_iter().chain(client.key.map(Who::Key))
    }

    /// `Some(seconds)` while the client or its key is blocked: the seconds until it may try again.
    pub fn blocked(&self, client: &Client, now: Instant) -> Option<u64> {
        if !self.enabled() || self.len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let buckets = self.buckets.lock().ok()?;
        let mut wait: Option<f64> = None;
        for who in Self::whos(client) {
            let bucket = match buckets.get(&who) {
                Some(b) => *b,
                // A client without a bucket of its own shares the overflow one, if there is one.
                None if matches!(who, Who::Addr(_)) && buckets.len() >= self.max => match buckets.get(&Who::Overflow) {
                    Some(b) => *b,
                    None => continue,
                },
                None => continue,
            };
            let allowance = self.refilled(bucket, now);
            if allowance < 1.0 {
                let secs = (1.0 - allowance) / self.per_second();
                wait = Some(wait.map_or(secs, |w| w.max(secs)));
            }
        }
        wait.map(|s| (s.ceil() as u64).max(1))
    }

    /// Counts one failed authentication against the client's address and its key.
    pub fn failed(&self, client: &Client, now: Instant) -> Counted {
        if !self.enabled() {
            return Counted { now_blocked: false };
        }
        let Ok(mut buckets) = self.buckets.lock() else { return Counted { now_blocked: false } };
        let mut now_blocked = false;
        for who in Self::whos(client) {
            let who = if buckets.contains_key(&who) || self.make_room(&mut buckets, now) { who } else { Who::Overflow };
            let fresh = Bucket { allowance: f64::from(self.limits.burst), at: now };
            let bucket = buckets.get(&who).copied().unwrap_or(fresh);
            let allowance = self.refilled(bucket, now) - 1.0;
            now_blocked |= allowance < 1.0;
            buckets.insert(who, Bucket { allowance, at: now });
        }
        self.len.store(buckets.len(), Ordering::Relaxed);
        Counted { now_blocked }
    }

    /// The bucket's allowance at `now`, refilled since it was last counted, at most `burst`.
    fn refilled(&self, bucket: Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        (bucket.allowance + elapsed * self.per_second()).min(f64::from(self.limits.burst))
    }

    /// Whether a new bucket fits: when the table is full, the refilled buckets are dropped first.
    fn make_room(&self, buckets: &mut HashMap<Who, Bucket>, now: Instant) -> bool {
        if buckets.len() < self.max {
            return true;
        }
        let burst = f64::from(self.limits.burst);
        buckets.retain(|who, b| *who == Who::Overflow || self.refilled(*b, now) < burst);
        buckets.len() < self.max
    }

    /// Buckets held now (for tests and the docs' claim of a bound).
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The address a client is counted by: IPv4 as it is (an IPv4-mapped IPv6 address as its IPv4),
/// IPv6 by its /64.
fn counted_addr(addr: IpAddr) -> IpAddr {
    match addr.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        s.parse().ok()
    }

    #[test]
    fn a_client_is_blocked_after_its_burst_and_let_in_again_as_it_refills() {
        let limiter = AuthLimiter::new(Limits { burst: 3, refill_per_minute: 60 });
        let t0 = Instant::now();
        let c = limiter.client(ip("10.0.0.1"), Some("wrong"));
        assert!(limiter.is_empty());
        assert_eq!(limiter.blocked(&c, t0), None);
        assert!(!limiter.failed(&c, t0).now_blocked);
        assert!(!limiter.failed(&c, t0).now_blocked);
        assert!(limiter.failed(&c, t0).now_blocked);
        assert_eq!(limiter.blocked(&c, t0), Some(1));
        // The same address with the right token is blocked too (no oracle)...
        let right = limiter.client(ip("10.0.0.1"), Some("right"));
        assert_eq!(limiter.blocked(&right, t0), Some(1));
        // ...another address with the right token is not...
        assert_eq!(limiter.blocked(&limiter.client(ip("10.0.0.2"), Some("right")), t0), None);
        // ...another address with the same wrong key is.
        assert_eq!(limiter.blocked(&limiter.client(ip("10.0.0.2"), Some("wrong")), t0), Some(1));
        // One failure a second comes back.
        assert_eq!(limiter.blocked(&c, t0 + Duration::from_secs(1)), None);
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let limiter = AuthLimiter::new(Limits { burst: 1, refill_per_minute: 1 });
        let t0 = Instant::now();
        limiter.failed(&limiter.client(ip("2001:db8:1:2::1"), None), t0);
        assert_eq!(limiter.blocked(&limiter.client(ip("2001:db8:1:2:ffff::9"), None), t0), Some(60));
        assert_eq!(limiter.blocked(&limiter.client(ip("2001:db8:1:3::1"), None), t0), None);
        limiter.failed(&limiter.client(ip("::ffff:10.1.1.1"), None), t0);
        assert!(limiter.blocked(&limiter.client(ip("10.1.1.1"), None), t0).is_some());
    }

    #[test]
    fn the_table_is_bounded_and_a_full_one_shares_one_bucket() {
        let limiter = AuthLimiter::with_capacity(Limits { burst: 2, refill_per_minute: 1 }, 4);
        let t0 = Instant::now();
        for i in 0..100 {
            limiter.failed(&limiter.client(ip(&format!("10.0.{}.{}", i / 250, i % 250)), None), t0);
            assert!(limiter.len() <= 5, "at most the cap and the overflow bucket");
        }
        // The overflow bucket took the many newcomers' failures: a new address is blocked.
        assert!(limiter.blocked(&limiter.client(ip("192.0.2.1"), None), t0).is_some());
        // Refilled buckets make room again.
        let later = t0 + Duration::from_secs(600);
        limiter.failed(&limiter.client(ip("192.0.2.1"), None), later);
        assert!(limiter.len() <= 2, "{}", limiter.len());
        assert_eq!(limiter.blocked(&limiter.client(ip("192.0.2.2"), None), later), None);
    }

    #[test]
    fn a_zero_burst_turns_it_off() {
        let limiter = AuthLimiter::new(Limits { burst: 0, refill_per_minute: 10 });
        let t0 = Instant::now();
        let c = limiter.client(ip("10.0.0.1"), None);
        for _ in 0..100 {
            assert!(!limiter.failed(&c, t0).now_blocked);
        }
        assert_eq!(limiter.blocked(&c, t0), None);
    }
}
