//! Delivery signatures (contract section 4) and the secrets they use.
//!
//! Two schemes are sent on every delivery:
//! - MAIA, exactly as MAIA documents it: `X-Maia-Signature: <lowercase hex HMAC-SHA256>`
//!   (64 characters, no prefix), key = the UTF-8 bytes of the secret string exactly as shown
//!   (`whsec_…` included), message = the raw body and nothing else (the timestamp is not
//!   signed);
//! - Standard Webhooks: `webhook-signature: v1,<base64 HMAC-SHA256>`, key = base64-decode of the
//!   secret after `whsec_`, message = `<webhook-id>.<timestamp>.<body>`.
//!
//! During a rotation `webhook-signature` carries one value per secret, new first,
//! space-separated; `X-Maia-Signature` carries one value, by the new secret only, because MAIA's
//! receivers compare the whole header (they check both secrets during the overlap).
//!
//! The same MAIA scheme authenticates what a MAIA source posts to crmhook ([`maia_signature`]
//! keyed with the source's `maia_secret`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use rand::Rng;
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The prefix of every secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// A fresh secret: `whsec_` and 24 random bytes in base64.
pub fn generate_secret() -> String {
    let mut key = [0u8; 24];
    rand::rng().fill_bytes(&mut key);
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

/// A fresh random token with a prefix (`adm_`, `ing_`): 32 hex digits of randomness.
pub fn generate_token(prefix: &str) -> String {
    let mut key = [0u8; 16];
    rand::rng().fill_bytes(&mut key);
    format!("{prefix}{}", hex::encode(key))
}

fn keyed(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; new_from_slice cannot fail for it.
    match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    }
}

/// The MAC of `parts` under a keyed HMAC (cloned: the key's two blocks are hashed once).
fn mac_of(keyed: &HmacSha256, parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = keyed.clone();
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    mac_of(&keyed(key), parts)
}

fn push_maia(out: &mut String, mac: &[u8; 32]) {
    let mut hex = [0u8; 64];
    if hex::encode_to_slice(mac, &mut hex).is_ok() {
        out.extend(hex.iter().map(|b| *b as char));
    }
}

fn push_standard(out: &mut String, mac: &[u8; 32]) {
    out.push_str("v1,");
    STANDARD.encode_string(mac, out);
}

/// MAIA's signature: lowercase hex of HMAC-SHA256 over the raw body, keyed with the UTF-8 bytes
/// of the secret string.
pub fn maia_signature(secret: &str, body: &[u8]) -> String {
    let mut out = String::with_capacity(64);
    push_maia(&mut out, &hmac(secret.as_bytes(), &[body]));
    out
}

/// Whether `header` is MAIA's signature of `body` under `secret` (constant time; surrounding
/// spaces and the case of the hex digits do not matter).
pub fn maia_verify(secret: &str, body: &[u8], header: &str) -> bool {
    let got = header.trim().to_ascii_lowercase();
    constant_time_eq(got.as_bytes(), maia_signature(secret, body).as_bytes())
}

/// The Standard Webhooks key: base64-decode of what follows `whsec_`.
pub fn standard_key(secret: &str) -> Option<Vec<u8>> {
    let b64 = secret.strip_prefix(SECRET_PREFIX)?;
    base64::engine::general_purpose::STANDARD_NO_PAD.decode(b64.trim_end_matches('=')).ok()
}

/// `v1,<base64>` over `<id>.<timestamp>.<body>`; `None` if the secret is not `whsec_<base64>`.
pub fn standard_signature(secret: &str, msg_id: &str, timestamp: &str, body: &[u8]) -> Option<String> {
    let key = standard_key(secret)?;
    let mac = hmac(&key, &[msg_id.as_bytes(), b".", timestamp.as_bytes(), b".", body]);
    let mut out = String::with_capacity(47);
    push_standard(&mut out, &mac);
    Some(out)
}

/// The signature headers of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signatures {
    /// `X-Maia-Signature`: by the current secret only.
    pub maia: String,
    /// `webhook-signature`.
    pub standard: String,
}

/// Signs a delivery with every secret in `secrets` (new first).
pub fn sign(secrets: &[&str], msg_id: &str, timestamp: &str, body: &[u8]) -> Signatures {
    Signer::new(secrets.iter().map(|s| (*s, None))).sign(0, msg_id, timestamp, body)
}

/// One secret, keyed for both schemes.
#[derive(Clone)]
struct Key {
    maia: HmacSha256,
    /// `None` when the secret is not `whsec_<base64>`.
    standard: Option<HmacSha256>,
    /// Signs only before this time (a rotated-out secret).
    until_ms: Option<u64>,
}

/// A target's secrets made ready to sign: each key is decoded and its HMAC keyed once, not per
/// delivery. Signs exactly as [`sign`] does.
#[derive(Clone)]
pub struct Signer {
    keys: Vec<Key>,
}

impl Signer {
    /// `secrets` new first, each with the time it stops signing, if any.
    pub fn new<'a>(secrets: impl IntoIterator<Item = (&'a str, Option<u64>)>) -> Signer {
        let keys = secrets
            .into_iter()
            .map(|(secret, until_ms)| Key {
                maia: keyed(secret.as_bytes()),
                standard: standard_key(secret).map(|k| keyed(&k)),
                until_ms,
            })
            .collect();
        Signer { keys }
    }

    /// The signature headers of a delivery at `now_ms`: MAIA's by the first (current) secret,
    /// Standard Webhooks' by every secret still signing then.
    pub fn sign(&self, now_ms: u64, msg_id: &str, timestamp: &str, body: &[u8]) -> Signatures {
        let mut sigs = Signatures { maia: String::with_capacity(64), standard: String::with_capacity(48) };
        for (i, key) in self.keys.iter().enumerate().filter(|(_, k)| k.until_ms.is_none_or(|until| now_ms < until)) {
            if i == 0 {
                push_maia(&mut sigs.maia, &mac_of(&key.maia, &[body]));
            }
            if let Some(standard) = &key.standard {
                if !sigs.standard.is_empty() {
                    sigs.standard.push(' ');
                }
                let mac = mac_of(standard, &[msg_id.as_bytes(), b".", timestamp.as_bytes(), b".", body]);
                push_standard(&mut sigs.standard, &mac);
            }
        }
        sigs
    }
}

/// Compares two byte strings in constant time (for their common length).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Checks a signature header value against a secret: MAIA's (64 hex digits over the body) or
/// Standard Webhooks' (one or more space-separated `v1,` entries over `<id>.<timestamp>.<body>`;
/// `msg_id` and `timestamp` are needed for those).
pub fn verify(secret: &str, msg_id: Option<&str>, timestamp: &str, body: &[u8], header: &str) -> bool {
    let mut entries = header.split(' ').map(str::trim).filter(|e| !e.is_empty()).peekable();
    if entries.peek().is_some_and(|e| !e.starts_with("v1,")) {
        return maia_verify(secret, body, header);
    }
    let Some(want) = msg_id.and_then(|id| standard_signature(secret, id, timestamp, body)) else {
        return false;
    };
    let mut ok = false;
    for entry in entries {
        ok |= constant_time_eq(entry.as_bytes(), want.as_bytes());
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    // Standard Webhooks' published test vector.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: &str = "1614265330";
    const BODY: &[u8] = br#"{"test": 2432232314}"#;

    #[test]
    fn standard_webhooks_vector() {
        assert_eq!(
            standard_signature(SECRET, ID, TS, BODY).as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
    }

    #[test]
    fn maia_vector() {
        // printf '%s' '{"test": 2432232314}' | openssl dgst -sha256 -hmac "$SECRET"
        assert_eq!(maia_signature(SECRET, BODY), "80ec8a89ce3cd22133a1066caecb4d04fea7467657c8514d717ec42c38a5c94c");
        assert!(maia_verify(SECRET, BODY, "80ec8a89ce3cd22133a1066caecb4d04fea7467657c8514d717ec42c38a5c94c"));
        assert!(maia_verify(
            SECRET,
            BODY,
            &" 80ec8a89ce3cd22133a1066caecb4d04fea7467657c8514d717ec42c38a5c94c ".to_ascii_uppercase()
        ));
        assert!(!maia_verify(SECRET, b"{}", "80ec8a89ce3cd22133a1066caecb4d04fea7467657c8514d717ec42c38a5c94c"));
        assert!(!maia_verify(SECRET, BODY, "sha256=80ec8a89ce3cd22133a1066caecb4d04fea7467657c8514d717ec42c38a5c94c"));
        assert!(!maia_verify(SECRET, BODY, ""));
    }

    #[test]
    fn two_secrets_sign_new_first_and_either_verifies() {
        let old = generate_secret();
        let sigs = sign(&[SECRET, &old], ID, TS, BODY);
        // MAIA's header holds one signature, by the new secret: its receivers compare it whole.
        assert_eq!(sigs.maia, maia_signature(SECRET, BODY));
        assert!(verify(SECRET, None, TS, BODY, &sigs.maia));
        assert!(!verify(&old, None, TS, BODY, &sigs.maia));
        assert!(verify(SECRET, Some(ID), TS, BODY, &sigs.standard));
        assert!(verify(&old, Some(ID), TS, BODY, &sigs.standard));
        assert!(!verify(&generate_secret(), Some(ID), TS, BODY, &sigs.standard));
        assert!(!verify(SECRET, Some(ID), TS, b"{}", &sigs.standard));
    }

    #[test]
    fn a_signer_drops_a_secret_once_it_expires() {
        let old = generate_secret();
        let signer = Signer::new([(SECRET, None), (old.as_str(), Some(100))]);
        assert_eq!(signer.sign(99, ID, TS, BODY), sign(&[SECRET, &old], ID, TS, BODY));
        let after = signer.sign(100, ID, TS, BODY);
        assert_eq!(after, sign(&[SECRET], ID, TS, BODY));
        assert_eq!(after.standard, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert_eq!(after.maia, maia_signature(SECRET, BODY));
        // A secret that is not `whsec_<base64>` signs the MAIA scheme only.
        let plain = Signer::new([("not-base64!", None)]).sign(0, ID, TS, BODY);
        assert_eq!(plain.maia, maia_signature("not-base64!", BODY));
        assert_eq!(plain.standard, "");
    }

    #[test]
    fn generated_secrets_have_a_standard_key() {
        let s = generate_secret();
        assert!(s.starts_with(SECRET_PREFIX));
        assert_eq!(standard_key(&s).map(|k| k.len()), Some(24));
        assert_ne!(s, generate_secret());
        assert_eq!(generate_token("adm_").len(), 36);
    }
}
