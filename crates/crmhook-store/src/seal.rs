//! Sealing: the secrets the store keeps, encrypted at rest under a key that is not in the data
//! dir, so that a copied data dir or a backup of it leaks none of them.
//!
//! What is sealed: a target's URL, its header values (receivers' credentials), its current and
//! previous `whsec_` secrets (`stored::TargetV2`), and a MAIA source's secret
//! (`stored::SourceV2`). Each is sealed on its own with XChaCha20-Poly1305 (RustCrypto's
//! `chacha20poly1305`): a random 24-byte nonce from the operating system, then the ciphertext
//! and its 16-byte tag. The associated data names the record and the field (`T/<id>/secret`),
//! so a sealed value moved to another record or field does not open.
//!
//! The key is 32 random bytes, kept in a key file outside the data dir (the server's
//! `key_file`; its text form is what [`SealKey::generate`] answers and [`SealKey::from_text`] reads). The store gets it through
//! [`Options::key`](crate::Options::key) as a [`SealKey`] handle. A data dir that has sealed
//! records keeps `M sealed`: a known value sealed by its key, opened at start-up, so a missing
//! or wrong key is refused at once (see `open`), never found out at the first delivery.

use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};

use crate::StoreError;

/// Bytes of a key.
pub const KEY_BYTES: usize = 32;
/// Bytes of the nonce in front of every sealed value.
const NONCE_BYTES: usize = 24;
/// The first word of a key file's key line: the cipher and the version of the text form.
const TEXT_PREFIX: &str = "crmhook-key-v1:xchacha20poly1305:";
/// What `M sealed` holds, sealed.
const CHECK: &[u8] = b"crmhook sealed records, version 1";
/// The associated data of `M sealed`.
pub(crate) const CHECK_AAD: &[u8] = b"M/sealed";

/// The key that seals the store's secrets. Cheap to clone; its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct SealKey {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(…)")
    }
}

impl SealKey {
    /// A new random key, and its text form (what the key file holds).
    pub fn generate() -> Result<(SealKey, String), StoreError> {
        let key = Key::try_generate().map_err(|e| StoreError::Key(format!("no random numbers for a key: {e}")))?;
        let text = format!(
            "# crmhook's key: it seals the secrets in the data dir. Back it up apart from the data dir;\n\
             # without it the targets' and sources' secrets cannot be read (docs/SECURITY.md).\n\
             {TEXT_PREFIX}{}\n",
            hex::encode(key.as_slice())
        );
        Ok((SealKey { cipher: XChaCha20Poly1305::new(&key) }, text))
    }

    /// Reads a key file's text: comment lines (`#`) and blank lines, and one key line.
    pub fn from_text(text: &str) -> Result<SealKey, StoreError> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
        let (Some(line), None) = (lines.next(), lines.next()) else {
            return Err(StoreError::Key("a key file holds exactly one key line".into()));
        };
        let bytes = line
            .strip_prefix(TEXT_PREFIX)
            .and_then(|h| hex::decode(h).ok())
            .filter(|b| b.len() == KEY_BYTES)
            .ok_or_else(|| {
            StoreError::Key(format!("the key line must be `{TEXT_PREFIX}` and {} hex digits", KEY_BYTES * 2))
        })?;
        let cipher = XChaCha20Poly1305::new_from_slice(&bytes).map_err(|e| StoreError::Key(e.to_string()))?;
        Ok(SealKey { cipher })
    }

    /// `plain` sealed: the nonce, then the ciphertext and tag. `aad` names where it is kept.
    pub(crate) fn seal(&self, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, StoreError> {
        let nonce =
            XNonce::try_generate().map_err(|e| StoreError::Key(format!("no random numbers for a nonce: {e}")))?;
        let sealed = self
            .cipher
            .encrypt(&nonce, Payload { msg: plain, aad })
            .map_err(|_| StoreError::Key("a value could not be sealed".into()))?;
        Ok([nonce.as_slice(), &sealed].concat())
    }

    /// Opens what [`SealKey::seal`] sealed with the same `aad`; fails for another key, another
    /// place, or altered bytes.
    pub(crate) fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        let wrong = || StoreError::Key(format!("a sealed value ({}) does not open with this key", show(aad)));
        if sealed.len() < NONCE_BYTES {
            return Err(wrong());
        }
        let (nonce, rest) = sealed.split_at(NONCE_BYTES);
        let nonce = XNonce::try_from(nonce).map_err(|_| wrong())?;
        self.cipher.decrypt(&nonce, Payload { msg: rest, aad }).map_err(|_| wrong())
    }

    /// A sealed string, opened.
    pub(crate) fn open_string(&self, aad: &[u8], sealed: &[u8]) -> Result<String, StoreError> {
        String::from_utf8(self.open(aad, sealed)?)
            .map_err(|_| StoreError::Codec(format!("a sealed value ({}) is not UTF-8", show(aad))))
    }

    /// The value of `M sealed`.
    pub(crate) fn check(&self) -> Result<Vec<u8>, StoreError> {
        self.seal(CHECK_AAD, CHECK)
    }

    /// Whether `M sealed` was sealed by this key.
    pub(crate) fn opens_check(&self, sealed: &[u8]) -> bool {
        self.open(CHECK_AAD, sealed).is_ok_and(|v| v == CHECK)
    }
}

fn show(aad: &[u8]) -> String {
    String::from_utf8_lossy(aad).into_owned()
}

/// How a store holds the secrets of its records.
#[derive(Debug, Clone)]
pub(crate) enum Seal {
    /// Opened without a key on a data dir that has no sealed records: targets and sources are
    /// written in clear (record version 1), as before sealing existed. Tests and tools.
    Clear,
    /// Opened with its key: targets and sources are written sealed (record version 2).
    Key(SealKey),
    /// Opened without a key on a data dir with sealed records (`crmhook log export`): the log
    /// reads, but sealed records neither read nor write.
    Locked,
}

impl Seal {
    /// The key, or why there is none.
    pub(crate) fn key(&self) -> Result<&SealKey, StoreError> {
        match self {
            Seal::Key(k) => Ok(k),
            Seal::Clear | Seal::Locked => Err(StoreError::Key(
                "this data dir's secrets are sealed, and the store was opened without the key".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_place() {
        let (key, text) = SealKey::generate().expect("key");
        let again = SealKey::from_text(&text).expect("the text form reads back");
        let sealed = key.seal(b"T/x/secret", b"whsec_abc").expect("seal");
        assert!(!sealed.windows(9).any(|w| w == b"whsec_abc"), "sealed bytes hold no clear text");
        assert_eq!(again.open(b"T/x/secret", &sealed).expect("open"), b"whsec_abc");
        assert_ne!(key.seal(b"T/x/secret", b"whsec_abc").expect("seal"), sealed, "a fresh nonce each time");
        assert!(key.open(b"T/y/secret", &sealed).is_err(), "another record");
        let (other, _) = SealKey::generate().expect("key");
        assert!(other.open(b"T/x/secret", &sealed).is_err(), "another key");
        let mut altered = sealed.clone();
        if let Some(b) = altered.last_mut() {
            *b ^= 1;
        }
        assert!(key.open(b"T/x/secret", &altered).is_err(), "altered bytes");
        assert!(key.open(b"T/x/secret", &sealed[..10]).is_err(), "too short");
        assert!(key.opens_check(&key.check().expect("check")));
        assert!(!other.opens_check(&key.check().expect("check")));
    }

    #[test]
    fn key_files_that_are_not_keys_are_refused() {
        for text in ["", "# only a comment\n", "crmhook-key-v1:xchacha20poly1305:abcd\n", "0123456789abcdef\n"] {
            assert!(matches!(SealKey::from_text(text), Err(StoreError::Key(_))), "{text:?}");
        }
        let (_, text) = SealKey::generate().expect("key");
        let twice = format!("{text}{text}");
        assert!(SealKey::from_text(&twice).is_err(), "two keys");
        assert!(format!("{:?}", SealKey::from_text(&text).expect("key")).contains('…'));
    }

    /// Every byte of every file under `dir`.
    fn all_bytes(dir: &std::path::Path) -> Vec<u8> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                out.extend(all_bytes(&path));
            } else {
                out.extend(std::fs::read(&path).expect("read file"));
            }
        }
        out
    }

    fn holds(haystack: &[u8], needle: &str) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
    }

    /// A target with a header, a URL with a query, and a previous secret, and a MAIA source.
    fn secrets() -> (crmhook_core::Target, crmhook_core::Source) {
        let mut target = crmhook_core::Target::create(
            serde_json::json!({"name": "t", "url": "https://a.example/hook?token=URLSECRET0001",
                               "headers": {"Authorization": "Bearer HEADERSECRET0001"}})
            .as_object()
            .expect("object"),
            false,
            "whsec_CURRENTSECRET0001".into(),
            1,
        )
        .expect("valid");
        target.previous_secret = Some(("whsec_PREVIOUSSECRET0001".into(), 99));
        let (source, _) = crmhook_core::Source::create(
            serde_json::json!({"name": "s", "kind": "maia", "maia_secret": "MAIASECRET0001"})
                .as_object()
                .expect("object"),
            1,
        )
        .expect("valid");
        (target, source)
    }

    const CLEAR: [&str; 5] =
        ["URLSECRET0001", "HEADERSECRET0001", "whsec_CURRENTSECRET0001", "whsec_PREVIOUSSECRET0001", "MAIASECRET0001"];

    fn keyed(key: &SealKey) -> crate::Options {
        crate::Options { key: Some(key.clone()), ..Default::default() }
    }

    #[test]
    fn a_keyed_store_writes_no_secret_in_clear_and_reads_them_back_with_its_key_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = crate::test_support::rt();
        let (key, _) = SealKey::generate().expect("key");
        let (target, source) = secrets();
        {
            let store = crate::Store::open_with(dir.path(), keyed(&key)).expect("open");
            rt.block_on(store.create_target(&target, 0)).expect("target");
            rt.block_on(store.put_source(&source)).expect("source");
            rt.block_on(store.append(crate::test_support::events(1), None)).expect("append");
            assert_eq!(store.target(&target.id).expect("read"), Some(target.clone()));
            rt.block_on(store.close());
        }
        let bytes = all_bytes(dir.path());
        assert!(holds(&bytes, target.id.as_str()), "the files were read (the id is in clear)");
        for secret in CLEAR {
            assert!(!holds(&bytes, secret), "{secret} is in the data dir in clear");
        }
        {
            let store = crate::Store::open_with(dir.path(), keyed(&key)).expect("reopen");
            assert_eq!(store.targets().expect("targets"), vec![target.clone()]);
            assert_eq!(store.source(&source.id).expect("source"), Some(source.clone()));
            rt.block_on(store.close());
        }
        {
            // Without the key: the log reads, the sealed records neither read nor write.
            let store = crate::Store::open(dir.path()).expect("open locked");
            assert_eq!(store.events_from(1).count(), 1);
            assert!(matches!(store.targets(), Err(StoreError::Key(_))));
            assert!(matches!(store.sources(), Err(StoreError::Key(_))));
            assert!(matches!(rt.block_on(store.put_target(&target)), Err(StoreError::Key(_))));
            rt.block_on(store.close());
        }
        let (other, _) = SealKey::generate().expect("key");
        match crate::Store::open_with(dir.path(), keyed(&other)) {
            Err(StoreError::Key(m)) => assert!(m.contains("another key"), "{m}"),
            Err(e) => panic!("a wrong key is refused as such, not {e}"),
            Ok(_) => panic!("a wrong key is refused"),
        }
    }

    #[test]
    fn a_rate_limited_target_is_kept_in_the_second_layout_in_clear_and_sealed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = crate::test_support::rt();
        let (target, _) = secrets();
        let target = crmhook_core::Target { rate_limit_per_s: Some(40), ..target };
        {
            let store = crate::Store::open(dir.path()).expect("open without a key");
            rt.block_on(store.create_target(&target, 0)).expect("target");
            rt.block_on(store.close());
        }
        let raw = |key: Option<&SealKey>| {
            let options = crate::Options { key: key.cloned(), ..Default::default() };
            let store = crate::Store::open_with(dir.path(), options).expect("open");
            let versions: Vec<u8> = store
                .inner
                .tree
                .scan_prefix(crate::keys::Tag::Target.prefix())
                .values()
                .map(|v| v.expect("value")[0])
                .collect();
            let read = store.targets().expect("targets");
            rt.block_on(store.close());
            (versions, read)
        };
        assert_eq!(raw(None), (vec![crate::stored::CLEAR_OPTIONS2_VERSION], vec![target.clone()]));
        let (key, _) = SealKey::generate().expect("key");
        assert_eq!(
            raw(Some(&key)),
            (vec![crate::stored::SEALED_OPTIONS2_VERSION], vec![target.clone()]),
            "sealed on open"
        );
        // Its limit lifted, it is written as before the limit (version 4), which older builds read.
        let store =
            crate::Store::open_with(dir.path(), crate::Options { key: Some(key.clone()), ..Default::default() })
                .expect("open");
        let lifted = crmhook_core::Target { rate_limit_per_s: None, ..target };
        rt.block_on(store.put_target(&lifted)).expect("update");
        rt.block_on(store.close());
        drop(store);
        assert_eq!(raw(Some(&key)), (vec![crate::stored::SEALED_OPTIONS_VERSION], vec![lifted]));
    }

    #[test]
    fn records_in_clear_are_sealed_when_the_store_first_opens_with_a_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = crate::test_support::rt();
        let (target, source) = secrets();
        {
            let store = crate::Store::open(dir.path()).expect("open without a key");
            rt.block_on(store.create_target(&target, 0)).expect("target");
            rt.block_on(store.put_source(&source)).expect("source");
            rt.block_on(store.close());
        }
        let raw = |dir: &std::path::Path, key: Option<&SealKey>| {
            let options = crate::Options { key: key.cloned(), ..Default::default() };
            let store = crate::Store::open_with(dir, options).expect("open");
            let versions: Vec<u8> = [crate::keys::Tag::Target, crate::keys::Tag::Source]
                .iter()
                .flat_map(|tag| store.inner.tree.scan_prefix(tag.prefix()).values())
                .map(|v| v.expect("value")[0])
                .collect();
            let read = (store.targets().expect("targets"), store.sources().expect("sources"));
            rt.block_on(store.close());
            (versions, read)
        };
        let (versions, read) = raw(dir.path(), None);
        assert_eq!(versions, vec![crate::stored::CLEAR_OPTIONS_VERSION, 1], "written in clear without a key");
        assert_eq!(read, (vec![target.clone()], vec![source.clone()]));
        let (key, _) = SealKey::generate().expect("key");
        let (versions, read) = raw(dir.path(), Some(&key));
        assert_eq!(
            versions,
            vec![crate::stored::SEALED_OPTIONS_VERSION, crate::stored::SEALED_VERSION],
            "sealed on open"
        );
        assert_eq!(read, (vec![target], vec![source]));
    }
}
