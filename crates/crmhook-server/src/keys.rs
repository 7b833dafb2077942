//! API keys: who may call the API, as named keys with a role, kept as hashes.
//!
//! - A key has an id (`key_…`), a name, a role and the SHA-256 of its secret (`adm_…`,
//!   `opr_…` or `ing_…`, 128 random bits); the secret itself is shown once, when the key is
//!   created or rotated, and never kept.
//! - Roles ([`Role`]): `admin` may do everything; `operator` reads the log, the deliveries,
//!   the quarantine and the configuration (targets, subscriptions and sources, which never
//!   show a secret), redelivers, replays and retries quarantined pieces, and changes nothing
//!   else; `ingest` only posts events. The route table (`crate::api::routes`) says which role
//!   each route needs: its handler's first argument (`crate::api::auth`).
//! - Two keys are the bootstrap keys, named `admin_token` and `ingest_token`: the tokens the
//!   configuration sets (`CRMHOOK_ADMIN_TOKEN`, `CRMHOOK_INGEST_TOKEN`), or the ones the first
//!   start generated. A token set in the configuration replaces its bootstrap key's hash.
//! - Rotation never brings an old key back: a key that is rotated or revoked has its old hash
//!   kept in a list of retired hashes (the last [`MAX_RETIRED`]), and a configured token whose
//!   hash is retired refuses the start, with a message saying so.
//! - There is always an admin: the last active admin key cannot be revoked; a data dir whose
//!   admin keys were all revoked some other way gets a new bootstrap admin token at start
//!   (written to the tokens file, like the first start's).
//!
//! Each key is a record of its own in the store (`V` key_id), and each retired hash too (`J`):
//! a change writes only the keys it changes, with what it expects each of them to be when the
//! store applies it (a compare-and-set: `crmhook_store::KeyChange`). In cluster mode a change
//! is an op of the replicated log like any other, applied on every node; two changes to two
//! keys never overwrite each other, and a change computed from a key that another node changed
//! meanwhile is refused by every node and computed again here from the new state. The keys are
//! held in memory and read from the store again whenever its keys' watch moved
//! (`Log::watch_keys`: a change made here, or another node's), before the next look-up.
//!
//! Until 2026-12-07 every key was one JSON document in the store's meta records (`M api_keys`),
//! written whole: in cluster mode the last node to write it won, and no node read another's
//! changes. A data dir with the document has it moved to the records at its first start of a
//! build with them. The tokens kept by earlier builds still (`M admin_token`, `M ingest_token`,
//! hashes) become the two bootstrap keys on the first start.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crmhook_core::id::KeyId;
use crmhook_core::sign::{constant_time_eq, generate_token};
use crmhook_core::time::now_ms;
use crmhook_store::{LogHandle, StoreError};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::at_rest::{read_kept, token_hash};
use crate::error::ApiError;
use stored::{move_legacy, Kept};

/// The meta record that held every key before 2026-12-07 (moved to records of their own).
const LEGACY_META: &str = "api_keys";
/// How many times a change is computed again when another node changed its keys meanwhile.
const TRIES: usize = 5;
/// Active keys at most.
pub const MAX_KEYS: usize = 100;
/// Revoked keys still listed (the oldest are forgotten first; their hashes stay retired).
const MAX_REVOKED_LISTED: usize = 100;
/// Retired hashes remembered, so that no configured token brings one back.
pub const MAX_RETIRED: usize = 1_000;
/// A key's name, in characters.
const MAX_NAME: usize = 100;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Operator,
    Ingest,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Ingest => "ingest",
        }
    }

    fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "operator" => Some(Role::Operator),
            "ingest" => Some(Role::Ingest),
            _ => None,
        }
    }

    /// The secret's prefix, which tells a person the role of a key they hold.
    fn prefix(self) -> &'static str {
        match self {
            Role::Admin => "adm_",
            Role::Operator => "opr_",
            Role::Ingest => "ing_",
        }
    }
}

/// One key as kept: never its secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: KeyId,
    pub name: String,
    pub role: Role,
    /// The SHA-256 of the secret (kept as `sha256:<hex>`).
    #[serde(with = "hashed")]
    hash: [u8; 32],
    pub created_ms: u64,
    pub rotated_ms: Option<u64>,
    pub revoked_ms: Option<u64>,
    /// `admin_token` or `ingest_token` for the bootstrap keys.
    pub bootstrap: Option<String>,
}

impl ApiKey {
    /// Gives the key a new secret's hash (and makes it active): answers the old hash.
    fn replace(&mut self, hash: [u8; 32], now: u64) -> [u8; 32] {
        self.rotated_ms = Some(now);
        self.revoked_ms = None;
        std::mem::replace(&mut self.hash, hash)
    }

    pub fn active(&self) -> bool {
        self.revoked_ms.is_none()
    }
}

/// Who called: the key a request presented.
#[derive(Debug, Clone)]
pub struct Caller {
    pub id: KeyId,
    pub name: String,
    pub role: Role,
}

impl Caller {
    /// As the audit trail and the operators' request records name it.
    pub fn who(&self) -> String {
        format!("{} ({})", self.name, self.id)
    }
}

/// The tokens the configuration sets, if it sets them.
#[derive(Debug, Clone, Default)]
pub struct Bootstrap {
    pub admin_token: Option<String>,
    pub ingest_token: Option<String>,
}

/// Why the keys could not be loaded at start.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the API keys kept in the data dir cannot be read: {0}")]
    Unreadable(String),
    #[error(
        "the {0} set in the configuration was rotated or revoked earlier and is no longer valid: set the new one (or remove the setting to keep the key the server has)"
    )]
    Retired(&'static str),
    #[error(
        "the {0} set in the configuration is the secret of another key, {1}: a configured token must be a secret of its own (CRMHOOK_ADMIN_TOKEN is also the key the CLI presents: set it for `crmhook serve` to the admin token only)"
    )]
    Taken(&'static str, String),
}

/// Every key, in memory, read again from the store whenever its keys changed.
pub struct Keys {
    store: LogHandle,
    kept: RwLock<Arc<Kept>>,
    /// The store's keys' watch, and its value when `kept` was read.
    moves: watch::Receiver<u64>,
    seen: AtomicU64,
    /// One change at a time from this node.
    write: tokio::sync::Mutex<()>,
}

impl Keys {
    /// Loads the keys (moving an earlier build's document to records of their own, or making
    /// them from an earlier build's tokens), applies the configured bootstrap tokens, and
    /// generates the bootstrap keys a first start needs (pushed on `generated` as `(name,
    /// secret)`, to be shown once, and handed to `keep_generated` before their hashes are
    /// saved: when it fails, nothing is saved).
    pub async fn open(
        store: LogHandle,
        config: Bootstrap,
        generated: &mut Vec<(&'static str, String)>,
        keep_generated: impl FnOnce(&[(&'static str, String)]) -> Result<(), StoreError>,
    ) -> Result<Keys, KeysError> {
        let moves = store.watch_keys();
        let seen = *moves.borrow();
        move_legacy(&store).await?;
        let loaded = Kept::load(&store)?;
        let mut kept = loaded.clone();
        let now = now_ms();
        for (which, role, configured) in
            [("admin_token", Role::Admin, config.admin_token), ("ingest_token", Role::Ingest, config.ingest_token)]
        {
            if kept.bootstrap(which).is_none() {
                // An earlier build's token (a hash, or in clear before that), kept under its name.
                if let Some(old) = store.meta(which)? {
                    let (hash, hashed) = read_kept(which, &old)?;
                    if !hashed {
                        store.put_meta(which, &crate::at_rest::kept_form(&hash)).await?;
                    }
                    kept.keys.push(bootstrap_key(which, role, &hash, now));
                }
            }
            match configured {
                Some(token) => {
                    let hash = token_hash(&token);
                    if kept.is_retired(&hash) {
                        return Err(KeysError::Retired(which));
                    }
                    // Taken as the bootstrap key's, it would move that secret to another key
                    // and role, leaving the key that had it without one.
                    let other = kept
                        .keys
                        .iter()
                        .find(|k| k.active() && k.hash == hash && k.bootstrap.as_deref() != Some(which));
                    if let Some(other) = other {
                        return Err(KeysError::Taken(
                            which,
                            format!("`{}` ({}, {})", other.name, other.id, other.role.as_str()),
                        ));
                    }
                    let replaced = match kept.bootstrap(which) {
                        Some(key) if key.hash == hash && key.active() => None,
                        // A new token in the configuration: it replaces the kept one for good.
                        Some(key) => Some(key.replace(hash, now)),
                        None => {
                            kept.keys.push(bootstrap_key(which, role, &hash, now));
                            None
                        }
                    };
                    if let Some(old) = replaced {
                        kept.retire(old, now);
                    }
                }
                None if kept.bootstrap(which).is_none() => {
                    let token = generate_token(role.prefix());
                    kept.keys.push(bootstrap_key(which, role, &token_hash(&token), now));
                    generated.push((which, token));
                }
                None => {}
            }
        }
        if kept.active_admins() == 0 {
            // Every admin key was revoked (only possible by editing the store): a new bootstrap
            // admin token, shown like a first start's, is the way back in.
            let token = generate_token(Role::Admin.prefix());
            match kept.bootstrap("admin_token").map(|key| key.replace(token_hash(&token), now)) {
                Some(old) => kept.retire(old, now),
                None => kept.keys.push(bootstrap_key("admin_token", Role::Admin, &token_hash(&token), now)),
            }
            tracing::warn!("no admin key was active: generated a new admin_token");
            generated.push(("admin_token", token));
        }
        if !generated.is_empty() {
            // Before the hashes are saved: a token whose hash is kept but that was never written
            // anywhere could not be learnt (a failed start shows none). Nothing saved, the next
            // start generates them again.
            keep_generated(generated)?;
        }
        // A start's own changes expect nothing: what the configuration sets wins.
        store.change_api_keys(loaded.change_to(&kept, false)?).await?;
        let keys = Keys {
            store,
            kept: RwLock::new(Arc::new(kept)),
            moves,
            seen: AtomicU64::new(seen),
            write: tokio::sync::Mutex::new(()),
        };
        // Read again from the store (with any change another node made meanwhile).
        keys.reload();
        Ok(keys)
    }

    /// The keys as the store holds them: read again if they changed since they were last read.
    fn current(&self) -> Arc<Kept> {
        if *self.moves.borrow() != self.seen.load(Ordering::Acquire) {
            self.reload();
        }
        self.kept.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reads the keys from the store again. (Two at once are harmless: one that read an older
    /// state notes the older move, and the next look-up reads again.)
    fn reload(&self) {
        let moved = *self.moves.borrow();
        match Kept::load(&self.store) {
            Ok(kept) => {
                *self.kept.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(kept);
                self.seen.store(moved, Ordering::Release);
            }
            // The keys held stay (the next look-up tries again).
            Err(e) => tracing::error!(error = %e, "cannot read the API keys again"),
        }
    }

    /// The active key whose secret is `token`, if any: its hash is compared with every active
    /// key's, in constant time, whatever the earlier comparisons said.
    pub fn find(&self, token: &str) -> Option<Caller> {
        let presented = token_hash(token);
        let kept = self.current();
        let mut found = None;
        for key in kept.keys.iter().filter(|k| k.active()) {
            if constant_time_eq(&presented, &key.hash) {
                found = Some(Caller { id: key.id.clone(), name: key.name.clone(), role: key.role });
            }
        }
        found
    }

    /// Every key, active and revoked, oldest first.
    pub fn list(&self) -> Vec<ApiKey> {
        self.current().keys.clone()
    }

    pub fn get(&self, id: &str) -> Result<ApiKey, ApiError> {
        self.list().into_iter().find(|k| k.id.as_str() == id).ok_or_else(|| not_found(id))
    }

    /// A new key: `{"name", "role"}`. Answers it with its secret, to be shown this once.
    pub async fn create(
        &self,
        body: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(ApiKey, String), ApiError> {
        let name = match body.get("name") {
            Some(serde_json::Value::String(n)) => valid_name(n)?,
            Some(_) => return Err(ApiError::unprocessable("name", "`name` must be a string")),
            None => return Err(ApiError::unprocessable("name", "`name` is required")),
        };
        let role = match body.get("role") {
            Some(serde_json::Value::String(r)) => Role::parse(r).ok_or_else(|| {
                ApiError::unprocessable("role", format!("`role` must be admin, operator or ingest, not {r:?}"))
            })?,
            Some(_) => return Err(ApiError::unprocessable("role", "`role` must be a string")),
            None => return Err(ApiError::unprocessable("role", "`role` is required (admin, operator or ingest)")),
        };
        if let Some(other) = body.keys().find(|k| !matches!(k.as_str(), "name" | "role")) {
            return Err(ApiError::unprocessable(
                other,
                format!("unknown member `{other}`: a key has a name and a role"),
            ));
        }
        let token = generate_token(role.prefix());
        let key = self
            .change(|kept| {
                let active = kept.keys.iter().filter(|k| k.active()).count();
                if active >= MAX_KEYS {
                    return Err(ApiError::Conflict(format!(
                        "{active} keys are active, the most there may be; revoke one first"
                    )));
                }
                if kept.keys.iter().any(|k| k.active() && k.name == name) {
                    return Err(ApiError::Conflict(format!("an active key is already named {name:?}")));
                }
                let key = ApiKey {
                    id: KeyId::generate(),
                    name: name.clone(),
                    role,
                    hash: token_hash(&token),
                    created_ms: now_ms(),
                    rotated_ms: None,
                    revoked_ms: None,
                    bootstrap: None,
                };
                kept.keys.push(key.clone());
                Ok(key)
            })
            .await?;
        Ok((key, token))
    }

    /// A new secret for the key; the old one stops working at once and is never valid again.
    pub async fn rotate(&self, id: &str) -> Result<(ApiKey, String), ApiError> {
        let key = self
            .change(|kept| {
                let key = kept.keys.iter_mut().find(|k| k.id.as_str() == id).ok_or_else(|| not_found(id))?;
                if !key.active() {
                    return Err(ApiError::Conflict(format!("key {id} is revoked; create a new one")));
                }
                let token = generate_token(key.role.prefix());
                let now = now_ms();
                let old = key.replace(token_hash(&token), now);
                let key = key.clone();
                kept.retire(old, now);
                Ok((key, token))
            })
            .await?;
        Ok(key)
    }

    /// Revokes the key: it stops working at once, for good. The last active admin key cannot be
    /// revoked (nobody could manage the server any more).
    pub async fn revoke(&self, id: &str) -> Result<ApiKey, ApiError> {
        self.change(|kept| {
            let admins = kept.active_admins();
            let key = kept.keys.iter_mut().find(|k| k.id.as_str() == id).ok_or_else(|| not_found(id))?;
            if !key.active() {
                return Ok(key.clone());
            }
            if key.role == Role::Admin && admins <= 1 {
                return Err(ApiError::Conflict(format!(
                    "key {id} is the last active admin key; create another admin key before revoking it"
                )));
            }
            let now = now_ms();
            key.revoked_ms = Some(now);
            let key = key.clone();
            kept.retire(key.hash, now);
            kept.trim();
            Ok(key)
        })
        .await
    }

    /// Runs one change on a copy of the keys as the store holds them, and writes what it
    /// changed, expecting the keys it changes to be as they were read: when another node
    /// changed one first, the change is computed again on the new state (a few times). One
    /// change at a time from this node; a failed write changes nothing.
    async fn change<T>(&self, f: impl Fn(&mut Kept) -> Result<T, ApiError>) -> Result<T, ApiError> {
        let _one_at_a_time = self.write.lock().await;
        for _ in 0..TRIES {
            let before = Kept::load(&self.store).map_err(|e| match e {
                KeysError::Store(e) => ApiError::from(e),
                other => ApiError::Internal(other.to_string()),
            })?;
            let mut after = before.clone();
            let out = f(&mut after)?;
            match self.store.change_api_keys(before.change_to(&after, true)?).await {
                Ok(()) => return Ok(out),
                Err(e) if e.is_changed() => {
                    tracing::info!("the API keys changed meanwhile (another node): computing the change again");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::Conflict("the API keys kept changing meanwhile (other nodes); try again".into()))
    }
}

fn bootstrap_key(which: &str, role: Role, hash: &[u8; 32], now: u64) -> ApiKey {
    ApiKey {
        id: KeyId::generate(),
        name: which.to_owned(),
        role,
        hash: *hash,
        created_ms: now,
        rotated_ms: None,
        revoked_ms: None,
        bootstrap: Some(which.to_owned()),
    }
}

fn valid_name(name: &str) -> Result<String, ApiError> {
    let Some(name) = crmhook_core::name::checked(name, MAX_NAME) else {
        return Err(ApiError::unprocessable(
            "name",
            format!(
                "`name` must be 1 to {MAX_NAME} characters, without control characters or characters that reorder \
                 or hide text (bidi controls, zero-width characters)"
            ),
        ));
    };
    Ok(name.to_owned())
}

/// A hash as text: `sha256:<hex>`, the form `at_rest` keeps tokens in.
mod hashed {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(hash: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::at_rest::kept_form(hash))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).ok_or_else(|| serde::de::Error::custom("a hash must be sha256:<64 hex digits>"))
    }

    pub fn parse(text: &str) -> Option<[u8; 32]> {
        let hex = text.strip_prefix("sha256:")?;
        hex::decode(hex).ok()?.try_into().ok()
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("key {id} not found"))
}

mod stored;
#[cfg(test)]
pub(crate) mod tests;
