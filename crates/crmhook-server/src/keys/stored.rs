//! The keys as the store holds them (`Kept`: each key a record of its own, `V` key_id, and
//! each retired hash, `J`), what turns one state of them into another (`Kept::change_to`, a
//! compare-and-set `KeyChange`), and the move of the document earlier builds kept them in
//! (`M api_keys`) to those records.

use std::collections::{HashMap, HashSet};

use crmhook_core::time::now_ms;
use crmhook_store::{ApiKeyRecord, KeyChange, LogHandle, StoreError};
use serde::{Deserialize, Serialize};

use crmhook_core::id::KeyId;

use super::{ApiKey, KeysError, Role, LEGACY_META, MAX_RETIRED, MAX_REVOKED_LISTED};

/// The keys as the store holds them, in memory.
#[derive(Debug, Default, Clone)]
pub(super) struct Kept {
    /// Oldest first.
    pub(super) keys: Vec<ApiKey>,
    /// The hashes of secrets rotated away or revoked, with when, oldest first.
    pub(super) retired: Vec<([u8; 32], u64)>,
}

/// The document earlier builds kept every key in (`M api_keys`).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Legacy {
    version: u8,
    keys: Vec<ApiKey>,
    #[serde(with = "hashed_list")]
    retired: Vec<[u8; 32]>,
}

impl Kept {
    /// The keys the store holds now.
    pub(super) fn load(store: &LogHandle) -> Result<Kept, KeysError> {
        let mut keys = Vec::new();
        for record in store.api_keys()? {
            keys.push(ApiKey::try_from(record).map_err(KeysError::Unreadable)?);
        }
        keys.sort_by(|a, b| {
            let rank = |k: &ApiKey| match k.bootstrap.as_deref() {
                Some("admin_token") => 0,
                Some(_) => 1,
                None => 2,
            };
            (a.created_ms, rank(a), a.id.as_str()).cmp(&(b.created_ms, rank(b), b.id.as_str()))
        });
        let mut retired = store.retired_hashes()?;
        retired.sort_by_key(|(hash, at)| (*at, *hash));
        Ok(Kept { keys, retired })
    }

    pub(super) fn retire(&mut self, hash: [u8; 32], now: u64) {
        if !self.is_retired(&hash) {
            self.retired.push((hash, now));
        }
        let over = self.retired.len().saturating_sub(MAX_RETIRED);
        self.retired.drain(..over);
    }

    pub(super) fn is_retired(&self, hash: &[u8; 32]) -> bool {
        self.retired.iter().any(|(h, _)| h == hash)
    }

    pub(super) fn active_admins(&self) -> usize {
        self.keys.iter().filter(|k| k.active() && k.role == Role::Admin).count()
    }

    pub(super) fn bootstrap(&mut self, which: &str) -> Option<&mut ApiKey> {
        self.keys.iter_mut().find(|k| k.bootstrap.as_deref() == Some(which))
    }

    /// Forgets the oldest revoked keys past [`MAX_REVOKED_LISTED`] (their hashes stay retired).
    pub(super) fn trim(&mut self) {
        let revoked = self.keys.iter().filter(|k| !k.active()).count();
        let mut over = revoked.saturating_sub(MAX_REVOKED_LISTED);
        self.keys.retain(|k| {
            if over > 0 && !k.active() {
                over -= 1;
                return false;
            }
            true
        });
    }

    /// What turns `self` into `after` in the store: the records of the keys added, changed or
    /// forgotten and of the hashes retired or forgotten. With `expect`, the change applies only
    /// if each key it writes is still as `self` has it, and, when it leaves fewer active admin
    /// keys, every admin key `self` has too (two nodes revoking the last two admins at once: the
    /// second is refused, and computed again, finds the last one).
    pub(super) fn change_to(&self, after: &Kept, expect: bool) -> Result<KeyChange, StoreError> {
        let mut change = KeyChange::default();
        let before: HashMap<&str, ApiKeyRecord> =
            self.keys.iter().map(|k| (k.id.as_str(), ApiKeyRecord::from(k))).collect();
        let mut expected = HashSet::new();
        for key in &after.keys {
            let record = ApiKeyRecord::from(key);
            let was = before.get(key.id.as_str());
            if was != Some(&record) {
                if expect {
                    change.expect(key.id.as_str(), was)?;
                    expected.insert(key.id.as_str());
                }
                change.put(&record)?;
            }
        }
        let kept: HashSet<&str> = after.keys.iter().map(|k| k.id.as_str()).collect();
        for (id, was) in &before {
            if !kept.contains(id) {
                if expect {
                    change.expect(id, Some(was))?;
                    expected.insert(id);
                }
                change.remove(id);
            }
        }
        if expect && after.active_admins() < self.active_admins() {
            for key in self.keys.iter().filter(|k| k.active() && k.role == Role::Admin) {
                if expected.insert(key.id.as_str()) {
                    change.expect(key.id.as_str(), before.get(key.id.as_str()))?;
                }
            }
        }
        let retired_before: HashSet<&[u8; 32]> = self.retired.iter().map(|(h, _)| h).collect();
        let retired_after: HashSet<&[u8; 32]> = after.retired.iter().map(|(h, _)| h).collect();
        for (hash, at) in &after.retired {
            if !retired_before.contains(hash) {
                change.retire(hash, *at)?;
            }
        }
        for (hash, _) in &self.retired {
            if !retired_after.contains(hash) {
                change.forget_retired(hash);
            }
        }
        Ok(change)
    }
}

impl From<&ApiKey> for ApiKeyRecord {
    fn from(k: &ApiKey) -> ApiKeyRecord {
        ApiKeyRecord {
            id: k.id.as_str().to_owned(),
            name: k.name.clone(),
            role: k.role.as_str().to_owned(),
            hash: k.hash,
            created_ms: k.created_ms,
            rotated_ms: k.rotated_ms,
            revoked_ms: k.revoked_ms,
            bootstrap: k.bootstrap.clone(),
        }
    }
}

impl TryFrom<ApiKeyRecord> for ApiKey {
    type Error = String;

    fn try_from(k: ApiKeyRecord) -> Result<ApiKey, String> {
        Ok(ApiKey {
            id: KeyId::parse(&k.id).ok_or_else(|| format!("{:?} is not a key id", k.id))?,
            role: Role::parse(&k.role).ok_or_else(|| format!("key {}: no role {:?}", k.id, k.role))?,
            name: k.name,
            hash: k.hash,
            created_ms: k.created_ms,
            rotated_ms: k.rotated_ms,
            revoked_ms: k.revoked_ms,
            bootstrap: k.bootstrap,
        })
    }
}

/// Moves the keys of the document earlier builds kept (`M api_keys`) to records of their own,
/// removing the document in the same change, which expects none of its keys to have a record
/// yet: when another node of a cluster moved them first, this one changes nothing.
///
/// A document found beside records was written by an earlier build run again after a later
/// one had moved the keys (going back, then forward again): that build knew nothing of the
/// records, made bootstrap keys of its own and answered to them alone. Its active keys are the
/// newer ones, so an active record of the same name is revoked with the move (its secret
/// retired): an active key's name stays unique, and the tokens in use last keep working. (Until
/// 2026-12-07 both stayed active: two `admin_token` keys, and a token set in the configuration
/// rotated only one of them.) A key made again from the same secret (a token set in the
/// configuration of both builds) is the record's own: the record stays as it is, and the
/// document's copy goes with the document (retiring that secret would refuse every start
/// configured with it).
pub(super) async fn move_legacy(store: &LogHandle) -> Result<(), KeysError> {
    let Some(text) = store.meta(LEGACY_META)? else { return Ok(()) };
    let legacy = serde_json::from_str::<Legacy>(&text).map_err(|e| KeysError::Unreadable(e.to_string()))?;
    let records = store.api_keys()?;
    let now = now_ms();
    let mut change = KeyChange::default();
    for key in &legacy.keys {
        let moved = ApiKeyRecord::from(key);
        let same_key = |r: &ApiKeyRecord| r.hash == moved.hash && r.role == moved.role && r.name == moved.name;
        if moved.revoked_ms.is_none() && records.iter().any(|r| r.revoked_ms.is_none() && same_key(r)) {
            continue;
        }
        if moved.revoked_ms.is_none() {
            for older in records.iter().filter(|r| r.revoked_ms.is_none() && r.name == moved.name && r.id != moved.id) {
                change.expect(&older.id, Some(older))?;
                change.put(&ApiKeyRecord { revoked_ms: Some(now), ..older.clone() })?;
                change.retire(&older.hash, now)?;
                tracing::warn!(key = %older.id, name = %older.name, "an earlier build made a key of this name meanwhile; the older one is revoked");
            }
        }
        change.expect(key.id.as_str(), None)?;
        change.put(&moved)?;
    }
    // Their order is kept; when each was retired is not known.
    let n = legacy.retired.len() as u64;
    for (i, hash) in legacy.retired.iter().enumerate() {
        change.retire(hash, now.saturating_sub(n - i as u64))?;
    }
    change.remove_meta(LEGACY_META);
    match store.change_api_keys(change).await {
        Ok(()) => {
            tracing::info!(keys = legacy.keys.len(), "moved the API keys to records of their own");
            Ok(())
        }
        Err(e) if e.is_changed() => {
            tracing::info!("the API keys were moved to records of their own already (by another node)");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

mod hashed_list {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(hashes: &[[u8; 32]], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(hashes.iter().map(crate::at_rest::kept_form))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<[u8; 32]>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|t| {
                super::super::hashed::parse(t).ok_or_else(|| serde::de::Error::custom("a hash must be sha256:<hex>"))
            })
            .collect()
    }
}
