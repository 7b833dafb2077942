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
//! Everything is one JSON document in the store's meta records (`M api_keys`), written whole
//! by one change at a time (a lock), read from memory. The tokens kept by earlier builds
//! (`M admin_token`, `M ingest_token`, hashes) become the two bootstrap keys on the first
//! start of this build.

use std::sync::RwLock;

use crmhook_core::id::KeyId;
use crmhook_core::sign::{constant_time_eq, generate_token};
use crmhook_core::time::now_ms;
use crmhook_store::{LogHandle, StoreError};
use serde::{Deserialize, Serialize};

use crate::at_rest::{read_kept, token_hash};
use crate::error::ApiError;

/// The meta record holding every key.
const META: &str = "api_keys";
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

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Kept {
    version: u8,
    keys: Vec<ApiKey>,
    /// The hashes of secrets rotated away or revoked, newest last.
    #[serde(with = "hashed_list")]
    retired: Vec<[u8; 32]>,
}

impl Kept {
    fn retire(&mut self, hash: [u8; 32]) {
        if !self.retired.contains(&hash) {
            self.retired.push(hash);
        }
        let over = self.retired.len().saturating_sub(MAX_RETIRED);
        self.retired.drain(..over);
    }

    fn is_retired(&self, hash: &[u8; 32]) -> bool {
        self.retired.contains(hash)
    }

    fn active_admins(&self) -> usize {
        self.keys.iter().filter(|k| k.active() && k.role == Role::Admin).count()
    }

    fn bootstrap(&mut self, which: &str) -> Option<&mut ApiKey> {
        self.keys.iter_mut().find(|k| k.bootstrap.as_deref() == Some(which))
    }

    /// Forgets the oldest revoked keys past [`MAX_REVOKED_LISTED`] (their hashes stay retired).
    fn trim(&mut self) {
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

/// Every key, in memory, written through to the store.
pub struct Keys {
    store: LogHandle,
    kept: RwLock<Kept>,
    write: tokio::sync::Mutex<()>,
}

impl Keys {
    /// Loads the keys (or makes them from an earlier build's tokens), applies the configured
    /// bootstrap tokens, and generates the bootstrap keys a first start needs (pushed on
    /// `generated` as `(name, secret)`, to be shown once, and handed to `keep_generated` before
    /// their hashes are saved: when it fails, nothing is saved).
    pub async fn open(
        store: LogHandle,
        config: Bootstrap,
        generated: &mut Vec<(&'static str, String)>,
        keep_generated: impl FnOnce(&[(&'static str, String)]) -> Result<(), StoreError>,
    ) -> Result<Keys, KeysError> {
        let mut kept = match store.meta(META)? {
            Some(text) => serde_json::from_str::<Kept>(&text).map_err(|e| KeysError::Unreadable(e.to_string()))?,
            None => Kept { version: 1, ..Kept::default() },
        };
        let before = serde_json::to_string(&kept).unwrap_or_default();
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
                        kept.retire(old);
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
                Some(old) => kept.retire(old),
                None => kept.keys.push(bootstrap_key("admin_token", Role::Admin, &token_hash(&token), now)),
            }
            tracing::warn!("no admin key was active: generated a new admin_token");
            generated.push(("admin_token", token));
        }
        let keys = Keys { store, kept: RwLock::new(Kept::default()), write: tokio::sync::Mutex::new(()) };
        if !generated.is_empty() {
            // Before the hashes are saved: a token whose hash is kept but that was never written
            // anywhere could not be learnt (a failed start shows none). Nothing saved, the next
            // start generates them again.
            keep_generated(generated)?;
        }
        if serde_json::to_string(&kept).unwrap_or_default() != before {
            keys.save(&kept).await?;
        }
        *keys.kept.write().unwrap_or_else(|p| p.into_inner()) = kept;
        Ok(keys)
    }

    /// The active key whose secret is `token`, if any: its hash is compared with every active
    /// key's, in constant time, whatever the earlier comparisons said.
    pub fn find(&self, token: &str) -> Option<Caller> {
        let presented = token_hash(token);
        let kept = self.kept.read().unwrap_or_else(|p| p.into_inner());
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
        self.kept.read().unwrap_or_else(|p| p.into_inner()).keys.clone()
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
                let old = key.replace(token_hash(&token), now_ms());
                let key = key.clone();
                kept.retire(old);
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
            key.revoked_ms = Some(now_ms());
            let key = key.clone();
            kept.retire(key.hash);
            kept.trim();
            Ok(key)
        })
        .await
    }

    /// Runs one change on a copy of the keys, writes the copy, then makes it the keys in memory:
    /// one change at a time; a failed write changes nothing.
    async fn change<T>(&self, f: impl FnOnce(&mut Kept) -> Result<T, ApiError>) -> Result<T, ApiError> {
        let _one_at_a_time = self.write.lock().await;
        let mut kept = self.kept.read().unwrap_or_else(|p| p.into_inner()).clone();
        let out = f(&mut kept)?;
        self.save(&kept).await?;
        *self.kept.write().unwrap_or_else(|p| p.into_inner()) = kept;
        Ok(out)
    }

    async fn save(&self, kept: &Kept) -> Result<(), StoreError> {
        let text = serde_json::to_string(kept).map_err(|e| StoreError::Io(e.to_string()))?;
        self.store.put_meta(META, &text).await
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
            format!("`name` must be 1 to {MAX_NAME} characters, without control characters"),
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

mod hashed_list {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(hashes: &[[u8; 32]], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(hashes.iter().map(crate::at_rest::kept_form))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<[u8; 32]>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|t| super::hashed::parse(t).ok_or_else(|| serde::de::Error::custom("a hash must be sha256:<hex>")))
            .collect()
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("key {id} not found"))
}

#[cfg(test)]
pub(crate) mod tests;
