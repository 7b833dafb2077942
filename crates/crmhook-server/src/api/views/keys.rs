//! API keys, and the key that called.

use crmhook_core::time::rfc3339;
use serde::Serialize;

// ---- API keys ------------------------------------------------------------------------------

/// An API key (`GET /v1/keys`): never its secret, but in the answer that made it (`key`).
#[derive(Debug, Serialize)]
pub struct KeyView<'a> {
    pub id: &'a crmhook_core::id::KeyId,
    pub name: &'a str,
    pub role: &'static str,
    /// `admin_token` or `ingest_token` for the keys the configuration sets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<&'a str>,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// The secret, in the answer of a creation or a rotation only: shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<&'a str>,
}

impl<'a> KeyView<'a> {
    pub fn new(k: &'a crate::keys::ApiKey, secret: Option<&'a str>) -> Self {
        KeyView {
            id: &k.id,
            name: &k.name,
            role: k.role.as_str(),
            bootstrap: k.bootstrap.as_deref(),
            created_at: rfc3339(k.created_ms),
            rotated_at: k.rotated_ms.map(rfc3339),
            revoked_at: k.revoked_ms.map(rfc3339),
            key: secret,
        }
    }
}

/// `GET /v1/keys`.
#[derive(Debug, Serialize)]
pub struct Keys<'a> {
    pub keys: Vec<KeyView<'a>>,
}

/// `GET /v1/me`: the key that called.
#[derive(Debug, Serialize)]
pub struct Me<'a> {
    pub id: &'a crmhook_core::id::KeyId,
    pub name: &'a str,
    pub role: &'static str,
}
