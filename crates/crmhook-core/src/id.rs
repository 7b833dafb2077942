//! Typed, prefixed ids: `evt_…`, `tgt_…`, `sub_…`, `src_…`, `rej_…`, `key_…`.
//!
//! The suffix is 26 characters of Crockford base32: 48 bits of milliseconds then 80 random bits
//! (the ULID layout), so ids of one kind sort roughly by creation time and never collide in
//! practice. Every id of one kind has the same length, which the store relies on for its keys.

use rand::Rng;
use serde::{Deserialize, Serialize};

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// Length of the suffix after the prefix.
pub const SUFFIX_LEN: usize = 26;

/// A fresh id's suffix value: `ms` in the top 48 bits, 80 random bits below.
fn fresh(ms: u64) -> u128 {
    let mut random = [0u8; 10];
    rand::rng().fill_bytes(&mut random);
    let mut value: u128 = u128::from(ms & 0xFFFF_FFFF_FFFF) << 80;
    for (i, b) in random.iter().enumerate() {
        value |= u128::from(*b) << (8 * (9 - i));
    }
    value
}

/// `prefix` and `value`'s suffix as one string, built in place (one allocation).
fn encode(prefix: &str, mut value: u128) -> String {
    let mut out = [0u8; SUFFIX_LEN];
    for i in (0..SUFFIX_LEN).rev() {
        out[i] = ALPHABET[(value & 31) as usize];
        value >>= 5;
    }
    let mut id = String::with_capacity(prefix.len() + SUFFIX_LEN);
    id.push_str(prefix);
    // The alphabet is ASCII: every byte is a char of its own.
    id.extend(out.iter().map(|&c| char::from(c)));
    id
}

fn decode(s: &str) -> Option<u128> {
    s.bytes().try_fold(0u128, |v, c| {
        let digit = ALPHABET.iter().position(|&a| a == c)?;
        Some((v << 5) | digit as u128)
    })
}

fn valid_suffix(s: &str) -> bool {
    s.len() == SUFFIX_LEN && s.bytes().all(|b| ALPHABET.contains(&b))
}

macro_rules! typed_id {
    ($name:ident, $prefix:literal, $what:literal) => {
        #[doc = concat!("The id of ", $what, ": `", $prefix, "` and a 26-character suffix.")]
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;
            /// Total length in bytes.
            pub const LEN: usize = $prefix.len() + SUFFIX_LEN;

            /// A fresh id.
            pub fn generate() -> Self {
                Self(encode($prefix, fresh(crate::time::now_ms())))
            }

            /// Parses an id, refusing anything that is not of this kind.
            pub fn parse(s: &str) -> Option<Self> {
                s.strip_prefix($prefix).filter(|rest| valid_suffix(rest)).map(|_| Self(s.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

typed_id!(EventId, "evt_", "an event");

impl EventId {
    /// The id of the event at `seq` in the log, received at `ms`: 48 bits of milliseconds, 16
    /// random bits, then the seq in the low 64 bits, so the store finds an event from its id
    /// without an index (and checks the whole id against the event it finds there).
    pub fn with_seq(ms: u64, seq: u64) -> Self {
        Self::with_parts(ms, rand::rng().next_u32() as u16, seq)
    }

    /// [`EventId::with_seq`] with its random bits given: every copy of a replicated log (cluster
    /// mode) makes the same id from the same parts.
    pub fn with_parts(ms: u64, random: u16, seq: u64) -> Self {
        let random = u128::from(random);
        let value = (u128::from(ms & 0xFFFF_FFFF_FFFF) << 80) | (random << 64) | u128::from(seq);
        Self(encode(Self::PREFIX, value))
    }

    /// The seq this id names if it was made by [`EventId::with_seq`] (any other id of the
    /// right shape names some seq too; the store compares the whole id).
    pub fn seq(&self) -> u64 {
        decode(&self.0[Self::PREFIX.len()..]).map_or(0, |v| v as u64)
    }
}
typed_id!(TargetId, "tgt_", "a target");
typed_id!(SubscriptionId, "sub_", "a subscription");
typed_id!(SourceId, "src_", "a source (one CRM sending to crmhook)");
typed_id!(RejectedId, "rej_", "a quarantined (rejected) piece of a source's request");
typed_id!(KeyId, "key_", "an API key (its name, role and hash; never the key itself)");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_their_prefix_and_length_and_parse_back() {
        let e = EventId::generate();
        assert!(e.as_str().starts_with("evt_"));
        assert_eq!(e.as_str().len(), EventId::LEN);
        assert_eq!(EventId::parse(e.as_str()), Some(e.clone()));
        assert_eq!(TargetId::parse(e.as_str()), None);
        assert_eq!(EventId::parse("evt_short"), None);
        assert_ne!(EventId::generate(), EventId::generate());
    }

    #[test]
    fn event_ids_carry_their_seq() {
        for seq in [0, 1, 42, u64::MAX / 3, u64::MAX] {
            let id = EventId::with_seq(1_764_000_000_000, seq);
            assert_eq!(EventId::parse(id.as_str()), Some(id.clone()));
            assert_eq!(id.seq(), seq);
        }
        assert!(EventId::with_seq(1_000, 9) < EventId::with_seq(2_000, 1));
    }

    #[test]
    fn ids_sort_by_time() {
        let a = encode("", fresh(1_000));
        let b = encode("", fresh(2_000));
        assert!(a < b);
    }

    /// The ids already in data dirs: the same parts give the same characters as before.
    #[test]
    fn ids_are_spelled_as_on_disk() {
        let id = EventId::with_parts(1_764_000_000_000, 0xBEEF, 41);
        assert_eq!(id.as_str(), "evt_01kav9ft00qvqg000000000019");
        assert_eq!(encode("tgt_", u128::MAX), "tgt_7zzzzzzzzzzzzzzzzzzzzzzzzz");
        assert_eq!(encode("sub_", 0), format!("sub_{}", "0".repeat(SUFFIX_LEN)));
    }
}
