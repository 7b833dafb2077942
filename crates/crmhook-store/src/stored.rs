//! The store's own layouts of the core types it keeps, and the explicit conversions between the
//! two.
//!
//! bincode is positional: a field added to, moved in or removed from a struct changes what
//! every record already on disk decodes to. So the store never encodes `crmhook_core`'s types
//! directly: it encodes these structs, whose fields are in the order of the records on disk and
//! change only with a new version (a new struct beside the old one, and a version byte that
//! says which; see `codec`). A new field on a core type is a compile error here, not silent
//! corruption. Enums are encoded by variant index: a variant is only ever added at the end.
//! Ids stay the core's typed ids: they are serialised as their plain string.
//!
//! Targets and sources have a second version whose secrets are sealed ([`TargetV2`],
//! [`SourceV2`], record version [`SEALED_VERSION`]): they are converted to and from version 1
//! with the store's key (`seal`), and version 1 records, in clear, are still read.
//!
//! `tests/fixture.rs` reads a data dir written on 2026-12-02 with these layouts.

use serde::{Deserialize, Serialize};

use crmhook_core::retry::Outcome;
use crmhook_core::source::SourceKind;

mod api_keys;
mod events;
mod sources;
mod subscriptions;
mod targets;

pub(crate) use api_keys::*;
pub(crate) use events::*;
pub(crate) use sources::*;
pub(crate) use subscriptions::*;
pub(crate) use targets::*;

/// Where a sealed field is kept: its record's tag and id, and the field, bound to the sealed
/// bytes as associated data.
fn place(tag: char, id: &str, field: &str) -> Vec<u8> {
    format!("{tag}/{id}/{field}").into_bytes()
}

/// An attempt's outcome inside the store's attempt records (`#[serde(with)]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum OutcomeV1 {
    Status(u16),
    Timeout,
    Error(String),
}

/// `Outcome` through [`OutcomeV1`], for the fields of the store's own records.
pub(crate) mod outcome_v1 {
    use super::{Outcome, OutcomeV1};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(o: &Outcome, serializer: S) -> Result<S::Ok, S::Error> {
        match o {
            Outcome::Status(code) => OutcomeV1::Status(*code),
            Outcome::Timeout => OutcomeV1::Timeout,
            Outcome::Error(e) => OutcomeV1::Error(e.clone()),
        }
        .serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Outcome, D::Error> {
        Ok(match OutcomeV1::deserialize(deserializer)? {
            OutcomeV1::Status(code) => Outcome::Status(code),
            OutcomeV1::Timeout => Outcome::Timeout,
            OutcomeV1::Error(e) => Outcome::Error(e),
        })
    }
}

/// `SourceKind` through [`SourceKindV1`], for the fields of the store's own records.
pub(crate) mod source_kind_v1 {
    use super::{SourceKind, SourceKindV1};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(k: &SourceKind, serializer: S) -> Result<S::Ok, S::Error> {
        SourceKindV1::from(*k).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SourceKind, D::Error> {
        SourceKindV1::deserialize(deserializer).map(SourceKind::from)
    }
}

#[cfg(test)]
mod tests;
