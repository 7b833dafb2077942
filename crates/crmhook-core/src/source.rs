//! Sources: one CRM sending to crmhook (contract section 2b), how a source is validated, and how
//! a request to its ingest URL is authenticated.
//!
//! - A `maia` source is authenticated the way MAIA signs its webhooks: `X-Maia-Signature` is the
//!   lowercase hex HMAC-SHA256 of the raw body, keyed with the secret MAIA's Webhook Center
//!   showed (`maia_secret`, set at creation or later with PATCH; until it is set every post is
//!   refused).
//! - A `maximizer` source has a key that crmhook generates (`mxk_…`, shown once, kept only as its
//!   SHA-256), given as `?key=` in the URL Maximizer posts to, or as `Authorization: Bearer`.
//!
//! Comparisons are constant-time. The store keeps [`Source`]; the API never shows
//! `maia_secret` or the key's hash.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::CoreError;
use crate::id::SourceId;
use crate::sign::{constant_time_eq, generate_token, maia_verify};

/// The prefix of a Maximizer source's key.
pub const KEY_PREFIX: &str = "mxk_";

/// Which CRM a source is: it decides how its requests are authenticated and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourceKind {
    Maia,
    Maximizer,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Maia => "maia",
            SourceKind::Maximizer => "maximizer",
        }
    }

    fn parse(v: &Value) -> Result<SourceKind, CoreError> {
        match v.as_str() {
            Some("maia") => Ok(SourceKind::Maia),
            Some("maximizer") => Ok(SourceKind::Maximizer),
            _ => Err(CoreError::field("kind", "`kind` must be \"maia\" or \"maximizer\"")),
        }
    }
}

/// A source as kept in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub id: SourceId,
    pub name: String,
    pub kind: SourceKind,
    pub enabled: bool,
    /// `maia`: the secret MAIA's Webhook Center shows; never shown back.
    pub maia_secret: Option<String>,
    /// `maximizer`: SHA-256 of the key; the key itself is shown once.
    pub key_sha256: Option<Vec<u8>>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

/// What a caller may set on a source.
pub const SOURCE_FIELDS: [&str; 4] = ["name", "kind", "maia_secret", "enabled"];

/// SHA-256 of a key, as kept.
fn digest(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

impl Source {
    /// A new source from a creation request, with the key to show once (`maximizer` only).
    pub fn create(body: &Map<String, Value>, now_ms: u64) -> Result<(Source, Option<String>), CoreError> {
        for required in ["name", "kind"] {
            if body.get(required).is_none_or(Value::is_null) {
                return Err(CoreError::field(required, format!("`{required}` is required")));
            }
        }
        let kind = SourceKind::parse(&body["kind"])?;
        let mut source = Source {
            id: SourceId::generate(),
            name: String::new(),
            kind,
            enabled: true,
            maia_secret: None,
            key_sha256: None,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        };
        source.apply(body)?;
        let key = (kind == SourceKind::Maximizer).then(|| source.new_key());
        Ok((source, key))
    }

    /// This source with the fields of a PATCH request applied; `self` is untouched on error.
    pub fn patched(&self, body: &Map<String, Value>, now_ms: u64) -> Result<Source, CoreError> {
        let mut source = self.clone();
        source.apply(body)?;
        source.updated_at_ms = now_ms;
        Ok(source)
    }

    /// Gives a `maximizer` source a new key (the old one stops working) and answers it.
    pub fn new_key(&mut self) -> String {
        let key = generate_token(KEY_PREFIX);
        self.key_sha256 = Some(digest(&key));
        key
    }

    /// Whether `key` is this source's key (constant time).
    pub fn key_matches(&self, key: &str) -> bool {
        let given = digest(key.trim());
        self.key_sha256.as_ref().is_some_and(|kept| constant_time_eq(&given, kept))
    }

    /// Whether `signature` (the `X-Maia-Signature` header) signs `body` with `maia_secret`.
    pub fn maia_signature_matches(&self, body: &[u8], signature: &str) -> bool {
        self.maia_secret.as_ref().is_some_and(|secret| maia_verify(secret, body, signature))
    }

    fn apply(&mut self, body: &Map<String, Value>) -> Result<(), CoreError> {
        for (key, value) in body {
            match key.as_str() {
                "name" => {
                    self.name = match value.as_str().and_then(|s| crate::name::checked(s, 200)) {
                        Some(s) => s.to_owned(),
                        None => return Err(CoreError::field(
                            "name",
                            "`name` must be a non-empty string of at most 200 characters, without control characters or characters that reorder or hide text (bidi controls, zero-width characters)",
                        )),
                    }
                }
                "kind" if SourceKind::parse(value)? == self.kind => {}
                "kind" => return Err(CoreError::field("kind", "`kind` cannot be changed; create another source")),
                "enabled" => {
                    self.enabled =
                        value.as_bool().ok_or_else(|| CoreError::field("enabled", "`enabled` must be true or false"))?
                }
                "maia_secret" if self.kind == SourceKind::Maximizer && !value.is_null() => {
                    return Err(CoreError::field(
                        "maia_secret",
                        "`maia_secret` is for maia sources; a maximizer source has a key",
                    ))
                }
                "maia_secret" => {
                    self.maia_secret = match value {
                        Value::Null => None,
                        Value::String(s) if !s.trim().is_empty() && s.len() <= 1024 => Some(s.trim().to_owned()),
                        _ => {
                            return Err(CoreError::field(
                                "maia_secret",
                                "`maia_secret` must be the secret MAIA's Webhook Center shows (a non-empty string)",
                            ))
                        }
                    }
                }
                "id" | "key" | "ingest_url" | "created_at" | "updated_at" => {
                    return Err(CoreError::field(key, format!("`{key}` cannot be set")))
                }
                other => {
                    return Err(CoreError::field(
                        other,
                        format!("unknown field `{other}`; a source has {}", SOURCE_FIELDS.join(", ")),
                    ))
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::maia_signature;
    use serde_json::json;

    fn create(v: Value) -> Result<(Source, Option<String>), CoreError> {
        Source::create(v.as_object().expect("object"), 0)
    }

    fn field(r: Result<impl std::fmt::Debug, CoreError>) -> String {
        match r {
            Err(CoreError::Invalid(e)) => e.field.unwrap_or_default(),
            other => panic!("expected a 422, got {other:?}"),
        }
    }

    #[test]
    fn a_maximizer_source_has_a_key_kept_as_a_hash() {
        let (mut s, key) = create(json!({"name": "mx", "kind": "maximizer"})).expect("valid");
        let key = key.expect("a key");
        assert!(key.starts_with(KEY_PREFIX));
        assert!(s.key_matches(&key));
        assert!(!s.key_matches("mxk_nope"));
        assert_ne!(s.key_sha256.as_deref(), Some(key.as_bytes()));
        let newer = s.new_key();
        assert!(s.key_matches(&newer) && !s.key_matches(&key));
        assert!(s.enabled && s.id.as_str().starts_with("src_"));
    }

    #[test]
    fn a_maia_source_checks_maias_signature() {
        let (s, key) = create(json!({"name": "m", "kind": "maia"})).expect("valid");
        assert!(key.is_none());
        // No secret yet: nothing is authenticated.
        assert!(!s.maia_signature_matches(b"{}", &maia_signature("", b"{}")));
        let s = s.patched(json!({"maia_secret": "maia-secret-1"}).as_object().expect("object"), 1).expect("valid");
        assert!(s.maia_signature_matches(b"{\"a\":1}", &maia_signature("maia-secret-1", b"{\"a\":1}")));
        assert!(!s.maia_signature_matches(b"{\"a\":2}", &maia_signature("maia-secret-1", b"{\"a\":1}")));
        assert!(!s.key_matches(""));
    }

    #[test]
    fn bad_sources_name_their_field() {
        assert_eq!(field(create(json!({"kind": "maia"}))), "name");
        assert_eq!(field(create(json!({"name": "a\u{1b}[2Jb", "kind": "maia"}))), "name");
        assert_eq!(field(create(json!({"name": "x", "kind": "hubspot"}))), "kind");
        assert_eq!(field(create(json!({"name": "x", "kind": "maximizer", "maia_secret": "s"}))), "maia_secret");
        assert_eq!(field(create(json!({"name": "x", "kind": "maia", "maia_secret": ""}))), "maia_secret");
        assert_eq!(field(create(json!({"name": "x", "kind": "maia", "colour": 1}))), "colour");
        let (s, _) = create(json!({"name": "x", "kind": "maia"})).expect("valid");
        assert_eq!(field(s.patched(json!({"kind": "maximizer"}).as_object().expect("object"), 1)), "kind");
        assert_eq!(field(s.patched(json!({"enabled": "no"}).as_object().expect("object"), 1)), "enabled");
    }
}
