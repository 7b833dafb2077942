//! The layouts of sources: record versions 1 (in clear) and 2 (sealed), and their kind.

use serde::{Deserialize, Serialize};

use crmhook_core::source::SourceKind;
use crmhook_core::{Source, SourceId};

use super::place;
use crate::seal::SealKey;
use crate::StoreError;

/// A source (`Z` keys), record version 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SourceV1 {
    pub id: SourceId,
    pub name: String,
    pub kind: SourceKindV1,
    pub enabled: bool,
    pub maia_secret: Option<String>,
    pub key_sha256: Option<Vec<u8>>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

/// A source's kind; the quarantine's records keep it too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum SourceKindV1 {
    Maia,
    Maximizer,
}

impl From<SourceKind> for SourceKindV1 {
    fn from(k: SourceKind) -> Self {
        match k {
            SourceKind::Maia => SourceKindV1::Maia,
            SourceKind::Maximizer => SourceKindV1::Maximizer,
        }
    }
}

impl From<SourceKindV1> for SourceKind {
    fn from(k: SourceKindV1) -> Self {
        match k {
            SourceKindV1::Maia => SourceKind::Maia,
            SourceKindV1::Maximizer => SourceKind::Maximizer,
        }
    }
}

impl From<&Source> for SourceV1 {
    fn from(s: &Source) -> Self {
        SourceV1 {
            id: s.id.clone(),
            name: s.name.clone(),
            kind: s.kind.into(),
            enabled: s.enabled,
            maia_secret: s.maia_secret.clone(),
            key_sha256: s.key_sha256.clone(),
            created_at_ms: s.created_at_ms,
            updated_at_ms: s.updated_at_ms,
        }
    }
}

impl From<SourceV1> for Source {
    fn from(s: SourceV1) -> Self {
        Source {
            id: s.id,
            name: s.name,
            kind: s.kind.into(),
            enabled: s.enabled,
            maia_secret: s.maia_secret,
            key_sha256: s.key_sha256,
            created_at_ms: s.created_at_ms,
            updated_at_ms: s.updated_at_ms,
        }
    }
}

/// A source (`Z` keys), record version 2: [`SourceV1`] with a MAIA source's secret sealed by
/// the store's key. A Maximizer source's key was only ever kept as its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SourceV2 {
    pub id: SourceId,
    pub name: String,
    pub kind: SourceKindV1,
    pub enabled: bool,
    pub maia_secret: Option<Vec<u8>>,
    pub key_sha256: Option<Vec<u8>>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

impl SourceV2 {
    pub(crate) fn seal(s: SourceV1, key: &SealKey) -> Result<SourceV2, StoreError> {
        let maia_secret = match s.maia_secret {
            Some(secret) => Some(key.seal(&place('Z', s.id.as_str(), "maia_secret"), secret.as_bytes())?),
            None => None,
        };
        Ok(SourceV2 {
            maia_secret,
            id: s.id,
            name: s.name,
            kind: s.kind,
            enabled: s.enabled,
            key_sha256: s.key_sha256,
            created_at_ms: s.created_at_ms,
            updated_at_ms: s.updated_at_ms,
        })
    }

    pub(crate) fn open(self, key: &SealKey) -> Result<SourceV1, StoreError> {
        let maia_secret = match self.maia_secret {
            Some(sealed) => Some(key.open_string(&place('Z', self.id.as_str(), "maia_secret"), &sealed)?),
            None => None,
        };
        Ok(SourceV1 {
            maia_secret,
            id: self.id,
            name: self.name,
            kind: self.kind,
            enabled: self.enabled,
            key_sha256: self.key_sha256,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
        })
    }
}
