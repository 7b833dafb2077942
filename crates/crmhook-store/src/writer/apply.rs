//! How the writer thread applies a group to the tree: as ordered single inserts or as one sled
//! batch ([`apply`]), a group cut after each restore ([`restores_apart`]), and how a request's
//! writes go into the group's batch (`Writes::into_batch`).

use super::Op;
use crate::batch::{Write, Writes};
use crate::finished::Blocks;
use crate::keys::{self, Tag};
use crate::sources::SourceCache;
use crate::Result;

/// Applies a group's batch: as single writes in rank order when every write of it is an insert
/// of a key with a [`keys::single_write_rank`], its events are in one chunk (and `singles`),
/// else as one sled batch. A sled batch costs two writes of sled's log buffer (sled seals the
/// buffer around the batch's manifest) where single writes cost the one of the next flush, and
/// the groups that qualify are the common ones: events (a source's events with their own `X`
/// keys and requests with an `Idempotency-Key` included), and finished deliveries with their
/// cursor. A group that writes or removes a source (`Z`) makes `sources` forget them first.
pub(super) fn apply(tree: &sled::Tree, batch: sled::Batch, singles: bool, sources: &SourceCache) -> Result<()> {
    let writes = batch.into_writes();
    if writes.iter().any(|(k, _)| k.first() == Some(&Tag::Source.byte())) {
        sources.forget();
    }
    let ranked: Option<Vec<u8>> =
        writes.iter().map(|(k, v)| v.as_ref().and_then(|_| keys::single_write_rank(k))).collect();
    // A group's events in one chunk: one insert, so that no request is ever logged half-way
    // (a crash or a full disk between two chunks would keep the first).
    let one_chunk = |ranks: &[u8]| ranks.iter().filter(|r| **r == keys::CHUNK_RANK).count() <= 1;
    match ranked {
        Some(ranks) if singles && one_chunk(&ranks) => {
            let mut ordered: Vec<(u8, (sled::IVec, Option<sled::IVec>))> = ranks.into_iter().zip(writes).collect();
            ordered.sort_by(|a, b| (a.0, &a.1 .0).cmp(&(b.0, &b.1 .0)));
            for (_, (k, v)) in ordered {
                if let Some(v) = v {
                    tree.insert(k, v)?;
                }
            }
        }
        _ => {
            let mut batch = sled::Batch::default();
            for (k, v) in writes {
                match v {
                    Some(v) => batch.insert(k, v),
                    None => batch.remove(k),
                }
            }
            tree.apply_batch(batch)?;
        }
    }
    Ok(())
}

impl Op {
    /// Whether this is an entry that restores records: its group ends with it.
    fn restores(&self) -> bool {
        matches!(self, Op::Entry { ops, .. } if ops.iter().any(|op| matches!(op, Op::Restore { .. })))
    }
}

/// A group cut after each entry that restores records: the ops after it read what it wrote
/// (blocks, deduplication records) and the seqs read back after it, and each restore's sled
/// batch stays one entry's size.
pub(super) fn restores_apart(ops: Vec<Op>) -> Vec<Vec<Op>> {
    if !ops.iter().any(Op::restores) {
        return vec![ops];
    }
    let mut parts = vec![Vec::new()];
    for op in ops {
        let cut = op.restores();
        if let Some(part) = parts.last_mut() {
            part.push(op);
        }
        if cut {
            parts.push(Vec::new());
        }
    }
    parts.retain(|p| !p.is_empty());
    parts
}

/// How the writer thread applies a request's writes to its group's sled batch.
impl Writes {
    /// Adds these writes to `batch`; the changes to `L` blocks go to `blocks`, which the caller
    /// adds to the batch once the whole group is in it ([`Blocks::into_batch`]). `requests`
    /// numbers operators' requests (the `n` of their `O` keys).
    pub(crate) fn into_batch(
        self,
        batch: &mut sled::Batch,
        blocks: &mut Blocks,
        tree: &sled::Tree,
        requests: &mut u64,
    ) {
        for write in self.0 {
            match write {
                Write::Put(k, v) => batch.insert(k, v),
                Write::Numbered(tag, at_ms, v) => {
                    *requests += 1;
                    batch.insert(keys::numbered(tag, at_ms, *requests), v)
                }
                Write::Remove(k) if k.first() == Some(&Tag::Block.byte()) => blocks.entries(tree, k).clear(),
                Write::Remove(k) => batch.remove(k),
                Write::Finish(k, seq, attempt) => blocks.finish(tree, k, seq, attempt),
                Write::Unfinish(k, seq) => blocks.unfinish(tree, k, seq),
                Write::Expect(..) => {}
            }
        }
    }
}
