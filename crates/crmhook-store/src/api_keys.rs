//! API keys as the edge keeps them: one record per key (`V` key_id, [`ApiKeyRecord`]) and one
//! per retired secret's hash (`J` sha256, with when it was retired), so that two changes to two
//! keys never overwrite each other, on one node or on several (cluster mode: each change is an
//! op of the replicated log like any other write).
//!
//! A change ([`KeyChange`]) is applied whole or not at all, and may name what it expects a key's
//! record to be when the writer applies it ([`KeyChange::expect`]): a compare-and-set. The writer
//! checks the expectations against the tree and the writes of its group before it (so that two
//! changes in one group, or in one entry of the replicated log, see each other), and a change
//! whose expectations no longer hold is skipped and answered [`StoreError::Changed`]: the
//! caller reads the keys again and decides again. Every node checks the same expectations
//! against the same copy at the same point of the log, so every node skips the same changes.
//!
//! [`Store::watch_keys`] moves after every group that changed a `V` or `J` record (its own
//! changes, another node's, a restore): the edge keeps the keys in memory and reads them again
//! when it moves.
//!
//! Before 2026-12-07 the edge kept every key in one JSON document, `M api_keys`; it moves them
//! to these records at its first start of a build with them (the document is removed in the
//! same change, which expects none of its keys to have a record yet).

use tokio::sync::watch;

use crate::batch::{Write, Writes};
use crate::keys::{self, Key, Tag};
use crate::stored::ApiKeyV1;
use crate::{codec, read_u64, Result, Store, StoreError};

/// An API key as kept: never its secret, the SHA-256 of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub name: String,
    /// `admin`, `operator` or `ingest`.
    pub role: String,
    pub hash: [u8; 32],
    pub created_ms: u64,
    pub rotated_ms: Option<u64>,
    pub revoked_ms: Option<u64>,
    /// `admin_token` or `ingest_token` for the bootstrap keys.
    pub bootstrap: Option<String>,
}

impl From<&ApiKeyRecord> for ApiKeyV1 {
    fn from(k: &ApiKeyRecord) -> ApiKeyV1 {
        ApiKeyV1 {
            id: k.id.clone(),
            name: k.name.clone(),
            role: k.role.clone(),
            hash: k.hash,
            created_ms: k.created_ms,
            rotated_ms: k.rotated_ms,
            revoked_ms: k.revoked_ms,
            bootstrap: k.bootstrap.clone(),
        }
    }
}

impl From<ApiKeyV1> for ApiKeyRecord {
    fn from(k: ApiKeyV1) -> ApiKeyRecord {
        ApiKeyRecord {
            id: k.id,
            name: k.name,
            role: k.role,
            hash: k.hash,
            created_ms: k.created_ms,
            rotated_ms: k.rotated_ms,
            revoked_ms: k.revoked_ms,
            bootstrap: k.bootstrap,
        }
    }
}

fn encode_key(key: &ApiKeyRecord) -> Result<Vec<u8>> {
    codec::encode(&ApiKeyV1::from(key))
}

/// Changes to the API keys, applied together or not at all ([`Store::change_api_keys`]).
#[derive(Default)]
pub struct KeyChange {
    writes: Writes,
}

impl KeyChange {
    /// The change applies only if the record of key `id` is still `before` (`None`: no record).
    pub fn expect(&mut self, id: &str, before: Option<&ApiKeyRecord>) -> Result<()> {
        let value = before.map(encode_key).transpose()?;
        self.writes.0.push(Write::Expect(keys::api_key(id), value));
        Ok(())
    }

    /// Writes a key's record (a new key, or a key changed).
    pub fn put(&mut self, key: &ApiKeyRecord) -> Result<()> {
        self.writes.insert(keys::api_key(&key.id), encode_key(key)?);
        Ok(())
    }

    /// Forgets a key.
    pub fn remove(&mut self, id: &str) {
        self.writes.remove(keys::api_key(id));
    }

    /// Keeps a secret's hash as retired, since `at_ms`.
    pub fn retire(&mut self, hash: &[u8; 32], at_ms: u64) -> Result<()> {
        self.writes.insert(keys::retired(hash), codec::encode(&at_ms)?);
        Ok(())
    }

    /// Forgets a retired hash (the oldest, past the number kept).
    pub fn forget_retired(&mut self, hash: &[u8; 32]) {
        self.writes.remove(keys::retired(hash));
    }

    /// Removes a meta record (`M api_keys`, the keys' document of earlier builds) with the change.
    pub fn remove_meta(&mut self, name: &str) {
        self.writes.remove(keys::meta(name));
    }

    pub fn is_empty(&self) -> bool {
        self.writes.0.is_empty()
    }
}

/// Whether a key is one of the API keys' records (what [`Store::watch_keys`] follows).
pub(crate) fn is_key_record(k: &[u8]) -> bool {
    matches!(k.first(), Some(&b) if b == Tag::ApiKey.byte() || b == Tag::Retired.byte())
}

impl Store {
    /// Every API key kept, in key order (by id).
    pub fn api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        self.inner
            .tree
            .scan_prefix(Tag::ApiKey.prefix())
            .map(|kv| Ok(codec::decode::<ApiKeyV1>(&kv?.1)?.into()))
            .collect()
    }

    /// Every retired hash kept, with when it was retired, in key order.
    pub fn retired_hashes(&self) -> Result<Vec<([u8; 32], u64)>> {
        let mut out = Vec::new();
        for kv in self.inner.tree.scan_prefix(Tag::Retired.prefix()) {
            let (k, v) = kv?;
            if let Some(Key::Retired(hash)) = Key::parse(&k) {
                out.push((hash, read_u64(&v)?));
            }
        }
        Ok(out)
    }

    /// Applies `change` whole, once its expectations hold, durably; answers
    /// [`StoreError::Changed`], having written nothing, when one no longer held.
    pub async fn change_api_keys(&self, change: KeyChange) -> Result<()> {
        if change.is_empty() {
            return Ok(());
        }
        self.write(change.writes).await
    }

    /// Moves after every change of the API keys' records applied here (this node's or, in
    /// cluster mode, another's).
    pub fn watch_keys(&self) -> watch::Receiver<u64> {
        self.inner.keys_rx.clone()
    }
}

/// How the writer checks a request's expectations: against the writes to the keys' records of
/// its group so far (`keyed`: a key's value, `None` once removed), then the tree.
impl Writes {
    pub(crate) fn expectations_hold(
        &self,
        tree: &sled::Tree,
        keyed: &std::collections::HashMap<Vec<u8>, Option<Vec<u8>>>,
    ) -> Result<bool> {
        for write in &self.0 {
            if let Write::Expect(k, want) = write {
                let now = match keyed.get(k) {
                    Some(v) => v.clone(),
                    None => tree.get(k)?.map(|v| v.to_vec()),
                };
                if now != *want {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Notes this request's writes to the keys' records in `keyed`; answers whether it has any.
    pub(crate) fn note_keys(&self, keyed: &mut std::collections::HashMap<Vec<u8>, Option<Vec<u8>>>) -> bool {
        let mut any = false;
        for write in &self.0 {
            match write {
                Write::Put(k, v) if is_key_record(k) => {
                    keyed.insert(k.clone(), Some(v.clone()));
                    any = true;
                }
                Write::Remove(k) if is_key_record(k) => {
                    keyed.insert(k.clone(), None);
                    any = true;
                }
                _ => {}
            }
        }
        any
    }
}

impl StoreError {
    /// A change's expectation no longer held ([`KeyChange::expect`]).
    pub fn is_changed(&self) -> bool {
        matches!(self, StoreError::Changed)
    }
}

#[cfg(test)]
mod tests;
