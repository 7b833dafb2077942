//! The records operators configure: targets (with their deletion, which keeps a target's
//! attempts as history), subscriptions, sources and meta (the quarantine is `quarantine`'s).
//! Targets and sources are sealed here on the way in and opened on the way out (`seal`,
//! `stored::TargetV2`, `stored::SourceV2`).

use crmhook_core::target::Target;
use crmhook_core::{Source, SourceId, Subscription, SubscriptionId, TargetId};

use crate::batch::Writes;
use crate::keys::{self, Tag};
use crate::seal::Seal;
use crate::sources::Lookup;
use crate::{codec, stored, Result, Store};

/// Most finished deliveries one batch of a target's deletion moves.
pub(crate) const DELETE_STEP: usize = 1024;

impl Store {
    pub(crate) fn all<R: serde::de::DeserializeOwned>(&self, tag: Tag) -> Result<Vec<R>> {
        self.inner.tree.scan_prefix(tag.prefix()).map(|kv| codec::decode(&kv?.1)).collect()
    }

    pub(crate) fn one<R: serde::de::DeserializeOwned>(&self, tag: Tag, id: &str) -> Result<Option<R>> {
        self.inner.tree.get(keys::id_key(tag, id))?.map(|v| codec::decode(&v)).transpose()
    }

    pub fn targets(&self) -> Result<Vec<Target>> {
        self.inner.tree.scan_prefix(Tag::Target.prefix()).map(|kv| self.decode_target(&kv?.1)).collect()
    }

    pub fn target(&self, id: &TargetId) -> Result<Option<Target>> {
        self.inner.tree.get(keys::id_key(Tag::Target, id.as_str()))?.map(|v| self.decode_target(&v)).transpose()
    }

    /// A target's record: version 6 (sealed, with its options) with the store's key, version 5
    /// (in clear, with its options) on a store opened without one (`seal::Seal::Clear`); none on
    /// a locked store. A target without a rate limit is written as before it (version 4, or 3
    /// in clear), which a build from before the rate limit still reads.
    pub(crate) fn encode_target(&self, target: &Target) -> Result<Vec<u8>> {
        let clear = stored::TargetV1::from(target);
        let options = stored::TargetOptionsV2::of(target);
        match &self.inner.seal {
            Seal::Clear => stored::clear_record(clear, options),
            seal => stored::sealed_record(stored::TargetV2::seal(clear, seal.key()?)?, options),
        }
    }

    /// A target's record of any version (1 and 2 without options: each takes its default; 3
    /// and 4 without a rate limit).
    pub(crate) fn decode_target(&self, bytes: &[u8]) -> Result<Target> {
        match bytes.first() {
            Some(&stored::SEALED_OPTIONS2_VERSION) => {
                let v6: stored::TargetV6 = codec::decode_as(stored::SEALED_OPTIONS2_VERSION, bytes)?;
                Ok(v6.options.apply(v6.target.open(self.inner.seal.key()?)?.into()))
            }
            Some(&stored::CLEAR_OPTIONS2_VERSION) => {
                let v5: stored::TargetV5 = codec::decode_as(stored::CLEAR_OPTIONS2_VERSION, bytes)?;
                Ok(v5.options.apply(v5.target.into()))
            }
            Some(&stored::SEALED_OPTIONS_VERSION) => {
                let v4: stored::TargetV4 = codec::decode_as(stored::SEALED_OPTIONS_VERSION, bytes)?;
                Ok(v4.options.apply(v4.target.open(self.inner.seal.key()?)?.into()))
            }
            Some(&stored::CLEAR_OPTIONS_VERSION) => {
                let v3: stored::TargetV3 = codec::decode_as(stored::CLEAR_OPTIONS_VERSION, bytes)?;
                Ok(v3.options.apply(v3.target.into()))
            }
            Some(&stored::SEALED_VERSION) => {
                let sealed: stored::TargetV2 = codec::decode_as(stored::SEALED_VERSION, bytes)?;
                Ok(sealed.open(self.inner.seal.key()?)?.into())
            }
            _ => Ok(codec::decode::<stored::TargetV1>(bytes)?.into()),
        }
    }

    /// A source's record: as [`Store::encode_target`].
    pub(crate) fn encode_source(&self, source: &Source) -> Result<Vec<u8>> {
        let clear = stored::SourceV1::from(source);
        match &self.inner.seal {
            Seal::Clear => codec::encode(&clear),
            seal => codec::encode_as(stored::SEALED_VERSION, &stored::SourceV2::seal(clear, seal.key()?)?),
        }
    }

    /// A source's record of either version.
    pub(crate) fn decode_source(&self, bytes: &[u8]) -> Result<Source> {
        match bytes.first() {
            Some(&stored::SEALED_VERSION) => {
                let sealed: stored::SourceV2 = codec::decode_as(stored::SEALED_VERSION, bytes)?;
                Ok(sealed.open(self.inner.seal.key()?)?.into())
            }
            _ => Ok(codec::decode::<stored::SourceV1>(bytes)?.into()),
        }
    }

    pub fn subscriptions(&self) -> Result<Vec<Subscription>> {
        Ok(self.all::<stored::SubscriptionV1>(Tag::Subscription)?.into_iter().map(Subscription::from).collect())
    }

    pub fn subscription(&self, id: &SubscriptionId) -> Result<Option<Subscription>> {
        Ok(self.one::<stored::SubscriptionV1>(Tag::Subscription, id.as_str())?.map(Subscription::from))
    }

    /// Stores a new target with its cursor: it is owed the events after `cursor`.
    pub async fn create_target(&self, target: &Target, cursor: u64) -> Result<()> {
        let mut batch = Writes::default();
        batch.insert(keys::id_key(Tag::Target, target.id.as_str()), self.encode_target(target)?);
        batch.insert(keys::id_key(Tag::Cursor, target.id.as_str()), codec::encode(&cursor)?);
        self.write(batch).await
    }

    pub async fn put_target(&self, target: &Target) -> Result<()> {
        let mut batch = Writes::default();
        batch.insert(keys::id_key(Tag::Target, target.id.as_str()), self.encode_target(target)?);
        self.write(batch).await
    }

    /// Writes one record under `tag` + `id`, durably.
    pub(crate) async fn put_record<R: serde::Serialize>(&self, tag: Tag, id: &str, record: &R) -> Result<()> {
        let mut batch = Writes::default();
        batch.insert(keys::id_key(tag, id), codec::encode(record)?);
        self.write(batch).await
    }

    /// Deletes a target with its subscriptions, cursor and pending deliveries. Its attempt
    /// records stay: they are history. A target may have millions of finished deliveries:
    /// their last attempts first move from the `F` keys to `A` keys a bounded batch at a time,
    /// then one batch removes the target (a crash in between leaves the target in place, with
    /// some of its finished deliveries known only by their attempts).
    pub async fn delete_target(&self, id: &TargetId) -> Result<()> {
        loop {
            let mut batch = Writes::default();
            let mut moved = 0;
            for kv in self.inner.tree.scan_prefix(keys::id_key(Tag::Final, id.as_str())).take(DELETE_STEP) {
                let (k, v) = kv?;
                self.keep_final_attempt(id, &k, &v, &mut batch)?;
                batch.remove(k.to_vec());
                moved += 1;
            }
            for kv in self.inner.tree.scan_prefix(keys::id_key(Tag::Block, id.as_str())) {
                if moved >= DELETE_STEP {
                    break;
                }
                let (k, v) = kv?;
                moved += self.keep_block_attempts(id, &v, &mut batch)?;
                batch.remove(k.to_vec());
            }
            self.write(batch).await?;
            if moved < DELETE_STEP {
                break;
            }
        }
        let mut batch = Writes::default();
        batch.remove(keys::id_key(Tag::Target, id.as_str()));
        batch.remove(keys::id_key(Tag::Cursor, id.as_str()));
        batch.remove(keys::id_key(Tag::Scanned, id.as_str()));
        batch.remove(keys::id_key(Tag::Disabled, id.as_str()));
        for sub in self.subscriptions()?.into_iter().filter(|s| &s.target_id == id) {
            batch.remove(keys::id_key(Tag::Subscription, sub.id.as_str()));
        }
        for tag in [Tag::Pending, Tag::Final, Tag::Block] {
            for kv in self.inner.tree.scan_prefix(keys::id_key(tag, id.as_str())) {
                let (k, v) = kv?;
                match tag {
                    Tag::Final => self.keep_final_attempt(id, &k, &v, &mut batch)?,
                    Tag::Block => _ = self.keep_block_attempts(id, &v, &mut batch)?,
                    _ => {}
                }
                batch.remove(k.to_vec());
            }
        }
        self.write(batch).await?;
        if let Ok(mut all) = self.inner.unrecorded.lock() {
            all.remove(id);
        }
        Ok(())
    }

    pub async fn put_subscription(&self, sub: &Subscription) -> Result<()> {
        self.put_record(Tag::Subscription, sub.id.as_str(), &stored::SubscriptionV1::from(sub)).await
    }

    pub async fn delete_subscription(&self, id: &SubscriptionId) -> Result<()> {
        let mut batch = Writes::default();
        batch.remove(keys::id_key(Tag::Subscription, id.as_str()));
        self.write(batch).await
    }

    pub fn sources(&self) -> Result<Vec<Source>> {
        self.inner.tree.scan_prefix(Tag::Source.prefix()).map(|kv| self.decode_source(&kv?.1)).collect()
    }

    /// A source by id: kept decoded after the first read (`sources`), read from sled again
    /// once the writer changed any source.
    pub fn source(&self, id: &SourceId) -> Result<Option<Source>> {
        let generation = match self.inner.sources.get(id) {
            Lookup::Kept(source) => return Ok(Some(source)),
            Lookup::Missing(generation) => generation,
        };
        let source =
            self.inner.tree.get(keys::id_key(Tag::Source, id.as_str()))?.map(|v| self.decode_source(&v)).transpose()?;
        if let Some(s) = &source {
            self.inner.sources.keep(generation, s);
        }
        Ok(source)
    }

    pub async fn put_source(&self, source: &Source) -> Result<()> {
        let mut batch = Writes::default();
        batch.insert(keys::id_key(Tag::Source, source.id.as_str()), self.encode_source(source)?);
        self.write(batch).await
    }

    /// Deletes a source. Its events and quarantined pieces stay: they are history.
    pub async fn delete_source(&self, id: &SourceId) -> Result<()> {
        let mut batch = Writes::default();
        batch.remove(keys::id_key(Tag::Source, id.as_str()));
        self.write(batch).await
    }

    pub fn meta(&self, name: &str) -> Result<Option<String>> {
        self.one(Tag::Meta, name)
    }

    pub async fn put_meta(&self, name: &str, value: &str) -> Result<()> {
        self.put_record(Tag::Meta, name, &value).await
    }
}
