//! The layouts of targets: record versions 1 to 6, in clear and sealed, and their options.

use serde::{Deserialize, Serialize};

use crmhook_core::target::Format;
use crmhook_core::{Target, TargetId};

use super::place;
use crate::seal::SealKey;
use crate::StoreError;

/// A target (`T` keys), record version 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TargetV1 {
    pub id: TargetId,
    pub name: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub timeout_ms: u64,
    pub retry_schedule_ms: Vec<u64>,
    pub ordered: bool,
    pub format: Option<FormatV1>,
    pub secret: String,
    pub previous_secret: Option<(String, u64)>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum FormatV1 {
    Maia,
    Maximizer,
}

impl From<&Target> for TargetV1 {
    fn from(t: &Target) -> Self {
        TargetV1 {
            id: t.id.clone(),
            name: t.name.clone(),
            url: t.url.clone(),
            headers: t.headers.clone(),
            timeout_ms: t.timeout_ms,
            retry_schedule_ms: t.retry_schedule_ms.clone(),
            ordered: t.ordered,
            format: t.format.map(|f| match f {
                Format::Maia => FormatV1::Maia,
                Format::Maximizer => FormatV1::Maximizer,
            }),
            secret: t.secret.clone(),
            previous_secret: t.previous_secret.clone(),
            created_at_ms: t.created_at_ms,
            updated_at_ms: t.updated_at_ms,
        }
    }
}

impl From<TargetV1> for Target {
    fn from(t: TargetV1) -> Self {
        Target {
            id: t.id,
            name: t.name,
            url: t.url,
            headers: t.headers,
            timeout_ms: t.timeout_ms,
            retry_schedule_ms: t.retry_schedule_ms,
            ordered: t.ordered,
            format: t.format.map(|f| match f {
                FormatV1::Maia => Format::Maia,
                FormatV1::Maximizer => Format::Maximizer,
            }),
            secret: t.secret,
            previous_secret: t.previous_secret,
            created_at_ms: t.created_at_ms,
            updated_at_ms: t.updated_at_ms,
            // Versions 1 and 2 were written before the options: each takes its default.
            response_body_bytes: crmhook_core::target::MAX_RESPONSE_BODY_BYTES,
            rate_limit_per_s: None,
        }
    }
}

/// A target's options that came after its first layouts: record versions 3 ([`TargetV3`], in
/// clear) and 4 ([`TargetV4`], sealed) hold them after the target of version 1 or 2; a
/// record of version 1 or 2 reads with each at its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TargetOptionsV1 {
    pub response_body_bytes: u32,
}

impl TargetOptionsV1 {
    /// What a version 3 or 4 record holds for `t` (tests write such records as older builds did).
    #[cfg(test)]
    pub(crate) fn of(t: &Target) -> Self {
        TargetOptionsV1 { response_body_bytes: t.response_body_bytes }
    }

    /// `target` (read from a layout without options) with these.
    pub(crate) fn apply(self, target: Target) -> Target {
        Target { response_body_bytes: self.response_body_bytes, ..target }
    }
}

/// A target's options, second layout: [`TargetOptionsV1`] and `rate_limit_per_s`. Record
/// versions 5 ([`TargetV5`], in clear) and 6 ([`TargetV6`], sealed) hold them; versions 3 and
/// 4 read with no rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TargetOptionsV2 {
    pub response_body_bytes: u32,
    pub rate_limit_per_s: Option<u32>,
}

impl TargetOptionsV2 {
    pub(crate) fn of(t: &Target) -> Self {
        TargetOptionsV2 { response_body_bytes: t.response_body_bytes, rate_limit_per_s: t.rate_limit_per_s }
    }

    /// `target` (read from a layout without options) with these.
    pub(crate) fn apply(self, target: Target) -> Target {
        Target { response_body_bytes: self.response_body_bytes, rate_limit_per_s: self.rate_limit_per_s, ..target }
    }

    /// These options in the first layout, when it holds them all (no rate limit): such a
    /// target is written as version 3 or 4, which builds from before the rate limit read.
    pub(crate) fn first_layout(self) -> Option<TargetOptionsV1> {
        self.rate_limit_per_s.is_none().then_some(TargetOptionsV1 { response_body_bytes: self.response_body_bytes })
    }
}

impl From<TargetOptionsV1> for TargetOptionsV2 {
    fn from(o: TargetOptionsV1) -> Self {
        TargetOptionsV2 { response_body_bytes: o.response_body_bytes, rate_limit_per_s: None }
    }
}

/// The record version of targets in clear with their second options ([`TargetV5`]).
pub(crate) const CLEAR_OPTIONS2_VERSION: u8 = 5;
/// The record version of sealed targets with their second options ([`TargetV6`]).
pub(crate) const SEALED_OPTIONS2_VERSION: u8 = 6;

/// A target (`T` keys), record version 5: [`TargetV1`] (in clear) and its options of the second
/// layout. Written by a store opened without a key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TargetV5 {
    pub target: TargetV1,
    pub options: TargetOptionsV2,
}

/// A target (`T` keys), record version 6: [`TargetV2`] (sealed) and its options of the second
/// layout. What a store with its key writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TargetV6 {
    pub target: TargetV2,
    pub options: TargetOptionsV2,
}

/// A target's record in clear: version 3 when its options fit the first layout (no rate
/// limit: builds from before the limit read it), else version 5.
pub(crate) fn clear_record(target: TargetV1, options: TargetOptionsV2) -> Result<Vec<u8>, StoreError> {
    match options.first_layout() {
        Some(options) => crate::codec::encode_as(CLEAR_OPTIONS_VERSION, &TargetV3 { target, options }),
        None => crate::codec::encode_as(CLEAR_OPTIONS2_VERSION, &TargetV5 { target, options }),
    }
}

/// A sealed target's record: version 4 when its options fit the first layout, else version 6.
pub(crate) fn sealed_record(target: TargetV2, options: TargetOptionsV2) -> Result<Vec<u8>, StoreError> {
    match options.first_layout() {
        Some(options) => crate::codec::encode_as(SEALED_OPTIONS_VERSION, &TargetV4 { target, options }),
        None => crate::codec::encode_as(SEALED_OPTIONS2_VERSION, &TargetV6 { target, options }),
    }
}

/// The record version of targets in clear with their options ([`TargetV3`]).
pub(crate) const CLEAR_OPTIONS_VERSION: u8 = 3;
/// The record version of sealed targets with their options ([`TargetV4`]).
pub(crate) const SEALED_OPTIONS_VERSION: u8 = 4;

/// A target (`T` keys), record version 3: [`TargetV1`] (in clear) and its options. Written by
/// a store opened without a key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TargetV3 {
    pub target: TargetV1,
    pub options: TargetOptionsV1,
}

/// A target (`T` keys), record version 4: [`TargetV2`] (sealed) and its options. What a store
/// with its key writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TargetV4 {
    pub target: TargetV2,
    pub options: TargetOptionsV1,
}

/// The record version of targets and sources whose secrets are sealed ([`TargetV2`],
/// [`SourceV2`](super::SourceV2)); version 1 ([`TargetV1`], [`SourceV1`](super::SourceV1)) holds them in clear and is still read.
/// Targets are now written as version 6 ([`TargetV6`]), or 5 without a key.
pub(crate) const SEALED_VERSION: u8 = 2;

/// A target (`T` keys), record version 2: [`TargetV1`] with its URL, its header values and its
/// secrets sealed by the store's key (`seal`); header names, the schedule and the rest stay
/// in clear.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TargetV2 {
    pub id: TargetId,
    pub name: String,
    pub url: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub timeout_ms: u64,
    pub retry_schedule_ms: Vec<u64>,
    pub ordered: bool,
    pub format: Option<FormatV1>,
    pub secret: Vec<u8>,
    pub previous_secret: Option<(Vec<u8>, u64)>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

impl TargetV2 {
    pub(crate) fn seal(t: TargetV1, key: &SealKey) -> Result<TargetV2, StoreError> {
        let id = t.id.as_str();
        let at = |field: &str| place('T', id, field);
        let headers = t
            .headers
            .into_iter()
            .map(|(name, value)| {
                let sealed = key.seal(&at(&format!("header/{name}")), value.as_bytes())?;
                Ok((name, sealed))
            })
            .collect::<Result<_, StoreError>>()?;
        let previous_secret = match t.previous_secret {
            Some((s, until)) => Some((key.seal(&at("previous_secret"), s.as_bytes())?, until)),
            None => None,
        };
        Ok(TargetV2 {
            url: key.seal(&at("url"), t.url.as_bytes())?,
            headers,
            secret: key.seal(&at("secret"), t.secret.as_bytes())?,
            previous_secret,
            id: t.id,
            name: t.name,
            timeout_ms: t.timeout_ms,
            retry_schedule_ms: t.retry_schedule_ms,
            ordered: t.ordered,
            format: t.format,
            created_at_ms: t.created_at_ms,
            updated_at_ms: t.updated_at_ms,
        })
    }

    pub(crate) fn open(self, key: &SealKey) -> Result<TargetV1, StoreError> {
        let id = self.id.as_str();
        let at = |field: &str| place('T', id, field);
        let headers = self
            .headers
            .into_iter()
            .map(|(name, sealed)| {
                let value = key.open_string(&at(&format!("header/{name}")), &sealed)?;
                Ok((name, value))
            })
            .collect::<Result<_, StoreError>>()?;
        let previous_secret = match self.previous_secret {
            Some((s, until)) => Some((key.open_string(&at("previous_secret"), &s)?, until)),
            None => None,
        };
        Ok(TargetV1 {
            url: key.open_string(&at("url"), &self.url)?,
            headers,
            secret: key.open_string(&at("secret"), &self.secret)?,
            previous_secret,
            id: self.id,
            name: self.name,
            timeout_ms: self.timeout_ms,
            retry_schedule_ms: self.retry_schedule_ms,
            ordered: self.ordered,
            format: self.format,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
        })
    }
}
