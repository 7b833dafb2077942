//! Finished deliveries: the `L` blocks (a target's finished deliveries of one state, [`FINISHED_BLOCK`]
//! seqs to a block, each with its last attempt) and the legacy `F` keys (one per delivery,
//! written before the blocks, still read). [`Blocks`] is how the writer thread changes a block;
//! the reads here answer a delivery's final attempt and a target's last success, and move a
//! target's finished attempts to `A` keys when it is deleted.

use crmhook_core::TargetId;

use crate::batch::Writes;
use crate::keys::{self, Key};
use crate::records::{Attempt, Final};
use crate::{codec, Result, Store, StoreError};

/// Finished deliveries are kept in blocks of this many consecutive seqs.
pub const FINISHED_BLOCK: u64 = 64;

pub(crate) fn decode_block(v: &[u8]) -> Result<Vec<(u64, Attempt)>> {
    codec::decode(v)
}

/// The attempt a final-state value holds (none in a value written before finished deliveries
/// kept their last attempt there).
pub(crate) fn held_attempt(value: &[u8]) -> Result<Option<Attempt>> {
    if value.len() <= 1 {
        return Ok(None);
    }
    codec::decode(value).map(Some)
}

/// The `L` blocks one group of writes changes, as it leaves them. Every change to a block goes
/// through the writer thread (the only writer of `L` keys but compaction, which only removes
/// blocks nothing can write to again), which reads a block, changes it and writes it whole.
#[derive(Default)]
pub(crate) struct Blocks(std::collections::HashMap<Vec<u8>, Vec<(u64, Attempt)>>);

impl Blocks {
    pub(crate) fn entries(&mut self, tree: &sled::Tree, k: Vec<u8>) -> &mut Vec<(u64, Attempt)> {
        self.0.entry(k).or_insert_with_key(|k| {
            match tree.get(k).map_err(StoreError::from).and_then(|v| v.map(|v| decode_block(&v)).transpose()) {
                Ok(entries) => entries.unwrap_or_default(),
                Err(e) => {
                    // Only history is lost: the block is written again with what this group sets.
                    tracing::error!(error = %e, "a block of finished deliveries is unreadable; writing it anew");
                    Vec::new()
                }
            }
        })
    }

    pub(crate) fn into_batch(self, batch: &mut sled::Batch) -> Result<()> {
        for (k, entries) in self.0 {
            if entries.is_empty() {
                batch.remove(k);
            } else {
                batch.insert(k, codec::encode(&entries)?);
            }
        }
        Ok(())
    }
}

impl Store {
    /// Queues the move of the attempt a final-state key `k` (value `v`) holds to an `A` key.
    pub(crate) fn keep_final_attempt(&self, target: &TargetId, k: &[u8], v: &[u8], batch: &mut Writes) -> Result<()> {
        let seq = match Key::parse(k) {
            Some(Key::Final { seq, .. }) => Some(seq),
            _ => None,
        };
        if let (Some(seq), Some(a)) = (seq, held_attempt(v)?) {
            batch.insert(keys::attempt(target, seq, a.n), codec::encode(&a)?);
        }
        Ok(())
    }

    /// Queues the move of the attempts an `L` block (value `v`) holds to `A` keys; answers how
    /// many.
    pub(crate) fn keep_block_attempts(&self, target: &TargetId, v: &[u8], batch: &mut Writes) -> Result<usize> {
        let entries = decode_block(v)?;
        for (seq, a) in &entries {
            batch.insert(keys::attempt(target, *seq, a.n), codec::encode(a)?);
        }
        Ok(entries.len())
    }

    /// The attempt that finished the delivery of `seq` to `target`, if it is finished (and was
    /// recorded with its attempt).
    pub fn final_attempt(&self, target: &TargetId, seq: u64) -> Result<Option<Attempt>> {
        for done in [Final::Delivered, Final::Dead] {
            if let Some(v) = self.inner.tree.get(keys::block_key(target, done, seq))? {
                let entries = decode_block(&v)?;
                if let Ok(i) = entries.binary_search_by_key(&seq, |(s, _)| *s) {
                    return Ok(Some(entries[i].1.clone()));
                }
            }
            // A delivery finished before blocks: one `F` key.
            if let Some(v) = self.inner.tree.get(keys::final_key(target, done, seq))? {
                return held_attempt(&v);
            }
        }
        Ok(None)
    }

    /// When a delivery to `target` last succeeded, as the log shows it (ms since the epoch, when
    /// that attempt started): the newest `at_ms` of the deliveries in the target's last block of
    /// delivered deliveries (`L` … `d`, the highest seqs), and of its last legacy `F` delivered
    /// key (one that holds its attempt). So it is the last success of the newest delivered
    /// block: a retry that finished an older seq later (in an earlier block) may be newer, and
    /// is not looked for. Two reads, whatever the history's length; `None` if nothing was ever
    /// delivered (or only before finished deliveries kept their attempt).
    pub fn last_delivered_at(&self, target: &TargetId) -> Result<Option<u64>> {
        let mut newest = None;
        // A block left empty is removed, so the last one holds an entry.
        if let Some(kv) = self.inner.tree.scan_prefix(keys::block_prefix(target, Final::Delivered)).next_back() {
            newest = decode_block(&kv?.1)?.iter().map(|(_, a)| a.at_ms).max();
        }
        if let Some(kv) = self.inner.tree.scan_prefix(keys::final_prefix(target, Final::Delivered)).next_back() {
            if let Some(a) = held_attempt(&kv?.1)? {
                newest = newest.max(Some(a.at_ms));
            }
        }
        Ok(newest)
    }
}
