//! Finished deliveries: the `L` blocks (a target's finished deliveries of one state,
//! [`FINISHED_BLOCK`] seqs to a block, each with its last attempt) and the legacy `F` keys (one
//! per delivery, written before the blocks, still read). [`Blocks`] is how the writer thread changes a block;
//! the reads here answer a delivery's final attempt and a target's last success, and move a
//! target's finished attempts to `A` keys when it is deleted.
//!
//! A block is written whole each time one of its deliveries finishes, so what it holds per
//! delivery is written again with every later delivery of the block: at a low rate, where each
//! delivery finishes in a group of its own, up to 63 times. An attempt's answer longer than
//! [`ANSWER_IN_BLOCK_BYTES`] is therefore kept apart, in the attempt's own `A` record (written
//! once, after the block: a crash between the two leaves the entry without its answer, nothing
//! else), and the block's entry says so ([`BlockEntry::answer_apart`]); the reads here put it
//! back.

use std::collections::HashMap;

use crmhook_core::TargetId;

use crate::batch::Writes;
use crate::keys::{self, Key};
use crate::records::{Attempt, BlockEntry, Final};
use crate::{codec, Result, Store, StoreError};

/// Finished deliveries are kept in blocks of this many consecutive seqs.
pub const FINISHED_BLOCK: u64 = 64;

/// An answer whose kept body and headers are longer than this many bytes is kept apart from
/// its block, in its attempt's `A` record (a 204, or `{"ok":true}` with its `content-type`,
/// stays in the block).
pub const ANSWER_IN_BLOCK_BYTES: usize = 64;

/// Whether `attempt`'s answer is kept apart from its block.
fn answer_kept_apart(attempt: &Attempt) -> bool {
    attempt.response.as_ref().is_some_and(|r| {
        r.body.len() + r.headers.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() > ANSWER_IN_BLOCK_BYTES
    })
}

pub(crate) fn decode_block(v: &[u8]) -> Result<Vec<BlockEntry>> {
    codec::decode_block(v)
}

/// The attempt a final-state value holds (none in a value written before finished deliveries
/// kept their last attempt there).
pub(crate) fn held_attempt(value: &[u8]) -> Result<Option<Attempt>> {
    if value.len() <= 1 {
        return Ok(None);
    }
    codec::decode_attempt(value).map(Some)
}

/// The most blocks [`KeptBlocks`] holds; past it, it starts again empty.
const KEPT_BLOCKS: usize = 256;

type Entries = Vec<BlockEntry>;

/// The `L` blocks one group of writes changes, as it leaves them. Every change to a block goes
/// through the writer thread (the only writer of `L` keys but compaction, which only removes
/// blocks nothing can write to again), which reads a block, changes it and writes it whole.
/// A block the writer wrote lately comes from its [`KeptBlocks`] instead of sled.
#[derive(Default)]
pub(crate) struct Blocks {
    changed: HashMap<Vec<u8>, Entries>,
    /// The attempts whose answers are kept apart, by their `A` keys: written after the blocks.
    answers: Vec<(Vec<u8>, Attempt)>,
    kept: KeptBlocks,
}

/// The `L` blocks as the writer thread last wrote them (a target's current block of each
/// state, mostly), so that the next record for a block costs neither a read nor its decoding.
/// What is kept is what the tree holds: the writer keeps the blocks of a group only once the
/// group is applied, and starts again empty after a group that failed or restored records, and
/// once compaction has run (its `generation`, the chunk cache's: compaction removes blocks).
#[derive(Default)]
pub(crate) struct KeptBlocks {
    blocks: HashMap<Vec<u8>, Entries>,
    generation: u64,
}

impl KeptBlocks {
    /// These blocks, if nothing compacted since they were kept; else none.
    pub(crate) fn at(self, generation: u64) -> KeptBlocks {
        if self.generation == generation {
            self
        } else {
            KeptBlocks { blocks: HashMap::new(), generation }
        }
    }
}

impl Blocks {
    /// Blocks that read the blocks `kept` holds from it.
    pub(crate) fn with(kept: KeptBlocks) -> Blocks {
        Blocks { changed: HashMap::new(), answers: Vec::new(), kept }
    }

    /// Records that the delivery of `seq` finished with `attempt`, in the block `k` (a
    /// `keys::block_key`): its entry, and its answer apart if that is long.
    pub(crate) fn finish(&mut self, tree: &sled::Tree, k: Vec<u8>, seq: u64, attempt: Attempt) {
        let target = match answer_kept_apart(&attempt).then(|| Key::parse(&k)).flatten() {
            Some(Key::Block { target, .. }) => Some(target),
            _ => None,
        };
        let entry = match target {
            Some(target) => {
                let in_block = Attempt { response: None, ..attempt.clone() };
                self.answers.push((keys::attempt(&target, seq, attempt.n), attempt));
                BlockEntry { seq, attempt: in_block, answer_apart: true }
            }
            None => BlockEntry { seq, attempt, answer_apart: false },
        };
        let entries = self.entries(tree, k);
        match entries.binary_search_by_key(&seq, |e| e.seq) {
            Ok(i) => entries[i] = entry,
            Err(i) => entries.insert(i, entry),
        }
    }

    /// Removes the delivery of `seq` from the block `k` (it is owed again).
    pub(crate) fn unfinish(&mut self, tree: &sled::Tree, k: Vec<u8>, seq: u64) {
        let entries = self.entries(tree, k);
        if let Ok(i) = entries.binary_search_by_key(&seq, |e| e.seq) {
            entries.remove(i);
        }
    }

    pub(crate) fn entries(&mut self, tree: &sled::Tree, k: Vec<u8>) -> &mut Entries {
        let kept = &mut self.kept.blocks;
        self.changed.entry(k).or_insert_with_key(|k| {
            if let Some(entries) = kept.remove(k) {
                return entries;
            }
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

    /// Adds the changed blocks and the answers kept apart to `batch`; answers the blocks to keep
    /// once it is applied.
    pub(crate) fn into_batch(self, batch: &mut sled::Batch) -> Result<KeptBlocks> {
        let Blocks { changed, answers, mut kept } = self;
        for (k, attempt) in answers {
            batch.insert(k, codec::encode_attempt(&attempt)?);
        }
        for (k, entries) in changed {
            if entries.is_empty() {
                batch.remove(k);
            } else {
                batch.insert(k.clone(), codec::encode_block(&entries)?);
                kept.blocks.insert(k, entries);
            }
        }
        if kept.blocks.len() > KEPT_BLOCKS {
            kept.blocks.clear();
        }
        Ok(kept)
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
            batch.insert(keys::attempt(target, seq, a.n), codec::encode_attempt(&a)?);
        }
        Ok(())
    }

    /// Queues the move of the attempts an `L` block (value `v`) holds to `A` keys; answers how
    /// many. An attempt whose answer is kept apart already has its `A` record, with the answer.
    pub(crate) fn keep_block_attempts(&self, target: &TargetId, v: &[u8], batch: &mut Writes) -> Result<usize> {
        let entries = decode_block(v)?;
        for e in &entries {
            let k = keys::attempt(target, e.seq, e.attempt.n);
            if !(e.answer_apart && self.inner.tree.contains_key(&k)?) {
                batch.insert(k, codec::encode_attempt(&e.attempt)?);
            }
        }
        Ok(entries.len())
    }

    /// A block entry's attempt with its answer: from its `A` record when the answer is kept
    /// apart (without one if that record is missing: a crash came between the two writes).
    fn with_answer(&self, target: &TargetId, entry: BlockEntry) -> Result<Attempt> {
        let BlockEntry { seq, mut attempt, answer_apart } = entry;
        if answer_apart {
            if let Some(v) = self.inner.tree.get(keys::attempt(target, seq, attempt.n))? {
                attempt.response = codec::decode_attempt(&v)?.response;
            }
        }
        Ok(attempt)
    }

    /// The attempt that finished the delivery of `seq` to `target`, if it is finished (and was
    /// recorded with its attempt).
    pub fn final_attempt(&self, target: &TargetId, seq: u64) -> Result<Option<Attempt>> {
        for done in [Final::Delivered, Final::Dead] {
            if let Some(v) = self.inner.tree.get(keys::block_key(target, done, seq))? {
                let mut entries = decode_block(&v)?;
                if let Ok(i) = entries.binary_search_by_key(&seq, |e| e.seq) {
                    return self.with_answer(target, entries.swap_remove(i)).map(Some);
                }
            }
            // A delivery finished before blocks: one `F` key.
            if let Some(v) = self.inner.tree.get(keys::final_key(target, done, seq))? {
                return held_attempt(&v);
            }
        }
        Ok(None)
    }

    /// The entries of `target`'s last block of finished deliveries in state `done` (its highest
    /// seqs, in seq order; answers kept apart are not read); empty if it has none. One read: a
    /// block left empty is removed, so the last one holds an entry.
    pub(crate) fn last_block(&self, target: &TargetId, done: Final) -> Result<Vec<BlockEntry>> {
        match self.inner.tree.scan_prefix(keys::block_prefix(target, done)).next_back() {
            Some(kv) => decode_block(&kv?.1),
            None => Ok(Vec::new()),
        }
    }

    /// When a delivery to `target` last succeeded, as the log shows it (ms since the epoch, when
    /// that attempt started): the newest `at_ms` of the deliveries in the target's last block of
    /// delivered deliveries (`L` … `d`, the highest seqs), and of its last legacy `F` delivered
    /// key (one that holds its attempt). So it is the last success of the newest delivered
    /// block: a retry that finished an older seq later (in an earlier block) may be newer, and
    /// is not looked for. Two reads, whatever the history's length; `None` if nothing was ever
    /// delivered (or only before finished deliveries kept their attempt).
    pub fn last_delivered_at(&self, target: &TargetId) -> Result<Option<u64>> {
        let mut newest = self.last_block(target, Final::Delivered)?.iter().map(|e| e.attempt.at_ms).max();
        if let Some(kv) = self.inner.tree.scan_prefix(keys::final_prefix(target, Final::Delivered)).next_back() {
            if let Some(a) = held_attempt(&kv?.1)? {
                newest = newest.max(Some(a.at_ms));
            }
        }
        Ok(newest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DELETE_STEP;
    use crate::keys::Tag;
    use crate::test_support::*;
    use crate::{AttemptResult, DeliveryBatch, DeliveryStatus, Pending};

    #[test]
    fn a_finished_deliverys_last_attempt_survives_requeue_and_target_deletion() {
        let dir = tempfile::tempdir().expect("tempdir");
        rt().block_on(async {
            let store = Store::open(dir.path()).expect("open");
            let t = stored_target(&store).await;
            let id = &t.id;
            let retrying = attempt(1, AttemptResult::Retrying { next_at_ms: 5 });
            let delivered = attempt(2, AttemptResult::Delivered);
            // 3 deliveries (seqs 1–3), each finished on its second attempt.
            let mut b = DeliveryBatch::default();
            for seq in 1..=3 {
                b.attempt(id, seq, &retrying).expect("encode");
                b.attempt(id, seq, &delivered).expect("encode");
            }
            store.write_deliveries(b).await.expect("write");
            assert_eq!(
                store.attempts(2).expect("read"),
                vec![(id.clone(), retrying.clone()), (id.clone(), delivered.clone())]
            );
            assert_eq!(store.final_attempt(id, 2).expect("read"), Some(delivered.clone()));
            assert_eq!(store.last_attempt(id, 2).expect("read"), Some(delivered.clone()));
            let listed = store.target_deliveries(id, Some(DeliveryStatus::Delivered), 0, 10).expect("read");
            assert_eq!(listed.len(), 3);

            // Queued again: pending, no longer final, and both attempts still listed.
            let mut b = DeliveryBatch::default();
            b.requeue(id, 2, Pending { attempt: 3, due_at_ms: 0, round: 3 }, Some(&delivered)).expect("encode");
            store.write_deliveries(b).await.expect("write");
            assert_eq!(store.final_attempt(id, 2).expect("read"), None);
            assert_eq!(store.last_attempt(id, 2).expect("read"), Some(delivered.clone()));
            assert_eq!(store.attempts_to(id, 2).expect("read"), vec![retrying.clone(), delivered.clone()]);
            assert!(store.is_pending(id, 2).expect("read"));

            // Deleted: every attempt stays, as history.
            store.delete_target(id).await.expect("delete");
            for seq in 1..=3 {
                assert_eq!(
                    store.attempts(seq).expect("read"),
                    vec![(id.clone(), retrying.clone()), (id.clone(), delivered.clone())]
                );
            }
            store.close().await;
        });
    }

    /// An attempt that finished its delivery with an answer of `body` bytes.
    fn answered(n: u32, body: usize) -> Attempt {
        let response = crate::Response {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: vec![b'x'; body],
            body_truncated: false,
        };
        Attempt { response: Some(response), ..attempt(n, AttemptResult::Delivered) }
    }

    #[test]
    fn a_long_answer_is_kept_apart_from_its_block_and_read_back_with_its_attempt() {
        let dir = tempfile::tempdir().expect("tempdir");
        rt().block_on(async {
            let store = Store::open(dir.path()).expect("open");
            let t = stored_target(&store).await;
            let id = &t.id;
            let (long, short) = (answered(1, 4096), answered(1, 11));
            // Seqs 1–40 finish one at a time, as at a low rate; even seqs with a short answer.
            for seq in 1..=40u64 {
                let mut b = DeliveryBatch::default();
                b.attempt(id, seq, if seq % 2 == 0 { &short } else { &long }).expect("encode");
                store.write_deliveries(b).await.expect("write");
            }
            // The block holds no long answer: much less than one of them.
            let block = store.inner.tree.get(keys::block_key(id, Final::Delivered, 1)).expect("read").expect("block");
            assert!(block.len() < 4096, "the block is {} bytes", block.len());
            let entries = decode_block(&block).expect("decode");
            assert_eq!(entries.len(), 40);
            assert!(entries.iter().all(|e| e.answer_apart == (e.seq % 2 == 1)));
            // Read back, each attempt has its answer, and is listed once.
            for (seq, a) in [(1, &long), (2, &short), (39, &long)] {
                assert_eq!(store.final_attempt(id, seq).expect("read").as_ref(), Some(a));
                assert_eq!(store.last_attempt(id, seq).expect("read").as_ref(), Some(a));
                assert_eq!(store.attempts_to(id, seq).expect("read"), vec![a.clone()]);
                assert_eq!(store.attempts(seq).expect("read"), vec![(id.clone(), a.clone())]);
            }

            // Queued again and finished again: both attempts, each with its answer.
            let mut b = DeliveryBatch::default();
            let last = store.final_attempt(id, 1).expect("read");
            b.requeue(id, 1, Pending { attempt: 2, due_at_ms: 0, round: 2 }, last.as_ref()).expect("encode");
            store.write_deliveries(b).await.expect("write");
            assert_eq!(store.final_attempt(id, 1).expect("read"), None);
            assert_eq!(store.attempts_to(id, 1).expect("read"), vec![long.clone()]);
            let again = answered(2, 300);
            let mut b = DeliveryBatch::default();
            b.attempt(id, 1, &again).expect("encode");
            store.write_deliveries(b).await.expect("write");
            assert_eq!(store.attempts_to(id, 1).expect("read"), vec![long.clone(), again.clone()]);

            // A crash between the block and the answer: the entry reads without its answer.
            store.inner.tree.remove(keys::attempt(id, 3, 1)).expect("remove");
            assert_eq!(store.final_attempt(id, 3).expect("read"), Some(Attempt { response: None, ..long.clone() }));

            // Deleted: every attempt stays, with its answer.
            store.delete_target(id).await.expect("delete");
            assert_eq!(store.attempts(1).expect("read"), vec![(id.clone(), long.clone()), (id.clone(), again)]);
            assert_eq!(store.attempts(2).expect("read"), vec![(id.clone(), short.clone())]);
            assert_eq!(store.attempts(5).expect("read"), vec![(id.clone(), long.clone())]);
            store.close().await;
        });
    }

    #[test]
    fn finished_deliveries_live_in_blocks_and_older_final_keys_still_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        rt().block_on(async {
            let store = Store::open(dir.path()).expect("open");
            store.append(events(200), None).await.expect("append");
            let t = stored_target(&store).await;
            let id = &t.id;
            let (delivered, dead) = (attempt(1, AttemptResult::Delivered), attempt(3, AttemptResult::Dead));
            // 200 deliveries over four blocks, in lazy writes sent at once: a group may change
            // one block several times.
            let mut writes = Vec::new();
            for seqs in (1..=200u64).collect::<Vec<_>>().chunks(7) {
                let mut b = DeliveryBatch::default();
                for &seq in seqs {
                    b.attempt(id, seq, if seq % 10 == 0 { &dead } else { &delivered }).expect("encode");
                }
                let store = store.clone();
                writes.push(tokio::spawn(async move { store.write_deliveries_held(b).await }));
            }
            for w in writes {
                w.await.expect("join").expect("write");
            }
            assert!(store.inner.tree.scan_prefix(Tag::Block.prefix()).count() <= 8, "one key per block and state");
            // A delivery finished before blocks: its own `F` key.
            put_older_final(&store, id, 300, &delivered);
            assert_eq!(store.final_attempt(id, 10).expect("read"), Some(dead.clone()));
            assert_eq!(store.final_attempt(id, 11).expect("read"), Some(delivered.clone()));
            assert_eq!(store.final_attempt(id, 300).expect("read"), Some(delivered.clone()));
            assert_eq!(store.final_attempt(id, 201).expect("read"), None);
            assert_eq!(store.delivery_counts(id).expect("read"), (0, 20));
            let pages = |status| {
                let (mut after, mut all) = (0, Vec::new());
                loop {
                    let page = store.target_deliveries(id, Some(status), after, 50).expect("read");
                    all.extend(page.iter().map(|(seq, _)| *seq));
                    match page.last() {
                        Some((seq, _)) if page.len() == 50 => after = *seq,
                        _ => return all,
                    }
                }
            };
            let mut want: Vec<u64> = (1..=200).filter(|s| s % 10 != 0).collect();
            want.push(300);
            assert_eq!(pages(DeliveryStatus::Delivered), want);
            assert_eq!(pages(DeliveryStatus::Dead), (1..=20).map(|i| i * 10).collect::<Vec<u64>>());

            // Queued again, from a block and from an older key: no longer final.
            let mut b = DeliveryBatch::default();
            for seq in [11, 300] {
                b.requeue(id, seq, Pending { attempt: 2, due_at_ms: 0, round: 2 }, Some(&delivered)).expect("encode");
            }
            b.requeue(id, 20, Pending { attempt: 4, due_at_ms: 0, round: 4 }, Some(&dead)).expect("encode");
            store.write_deliveries(b).await.expect("write");
            for seq in [11, 20, 300] {
                assert_eq!(store.final_attempt(id, seq).expect("read"), None);
                assert!(store.is_pending(id, seq).expect("read"));
            }
            assert_eq!(store.final_attempt(id, 12).expect("read"), Some(delivered.clone()));
            assert_eq!(store.delivery_counts(id).expect("read"), (3, 19));
            let mut b = DeliveryBatch::default();
            for seq in [11, 20, 300] {
                b.done(id, seq);
            }
            b.cursor(id, 200).expect("encode");
            store.write_deliveries(b).await.expect("write");

            // Compaction of the first 130 events: the blocks wholly before the first event left
            // (seqs 1–127) go; the block of 128–191 stays, without the entries of 128–130.
            assert_eq!(store.compact(u64::MAX, 130).expect("compact"), 130);
            assert_eq!(store.final_attempt(id, 5).expect("read"), None);
            assert_eq!(store.final_attempt(id, 127).expect("read"), None);
            assert_eq!(store.final_attempt(id, 129).expect("read"), None);
            assert_eq!(store.final_attempt(id, 131).expect("read"), Some(delivered.clone()));
            assert_eq!(store.final_attempt(id, 150).expect("read"), Some(dead.clone()));
            // The dead ones left: 140 … 200.
            assert_eq!(store.delivery_counts(id).expect("read").1, 7);

            // Deletion keeps every finished delivery's attempt under `A`.
            store.delete_target(id).await.expect("delete");
            assert_eq!(store.inner.tree.scan_prefix(Tag::Block.prefix()).count(), 0);
            assert_eq!(store.attempts(150).expect("read"), vec![(id.clone(), dead.clone())]);
            assert_eq!(store.attempts(199).expect("read"), vec![(id.clone(), delivered.clone())]);
            store.close().await;
        });
    }

    #[test]
    fn blocks_the_writer_keeps_read_as_sled_holds_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        rt().block_on(async {
            let store = Store::open(dir.path()).expect("open");
            store.append(events(140), None).await.expect("append");
            let t = stored_target(&store).await;
            let id = &t.id;
            let (delivered, dead) = (attempt(1, AttemptResult::Delivered), attempt(3, AttemptResult::Dead));
            let mut want = std::collections::BTreeMap::new();
            let check = |want: &std::collections::BTreeMap<u64, Attempt>| {
                for seq in 1..=140 {
                    assert_eq!(store.final_attempt(id, seq).expect("read"), want.get(&seq).cloned(), "seq {seq}");
                }
            };
            // One write per group: from the second on, the writer takes the block it keeps. Every
            // seventh write also queues an earlier delivery again (out of its block).
            for seq in 1..=140u64 {
                let a = if seq % 10 == 0 { &dead } else { &delivered };
                let mut b = DeliveryBatch::default();
                b.attempt(id, seq, a).expect("encode");
                want.insert(seq, a.clone());
                if seq % 7 == 0 {
                    b.requeue(id, seq - 3, Pending { attempt: 2, due_at_ms: 0, round: 2 }, want.get(&(seq - 3)))
                        .expect("encode");
                    want.remove(&(seq - 3));
                }
                store.write_deliveries(b).await.expect("write");
            }
            check(&want);
            // The ones queued again end with no attempt (as a target's deletion leaves them).
            let mut b = DeliveryBatch::default();
            for seq in (7..=140).step_by(7) {
                b.done(id, seq - 3);
            }
            b.cursor(id, 140).expect("encode");
            store.write_deliveries(b).await.expect("write");
            // Compaction removes the blocks of seqs 1–127 behind the writer's back: the blocks it
            // kept are no longer what sled holds, and it must read sled again. (The entries of
            // 128–130 it takes out through the writer.)
            assert_eq!(store.compact(u64::MAX, 130).expect("compact"), 130);
            want.retain(|seq, _| *seq >= 131);
            let mut b = DeliveryBatch::default();
            for seq in [5, 100, 135] {
                let again = attempt(2, AttemptResult::Delivered);
                b.attempt(id, seq, &again).expect("encode");
                want.insert(seq, again);
            }
            store.write_deliveries(b).await.expect("write");
            check(&want);
            store.close().await;
        });
    }

    #[test]
    fn the_last_delivery_is_read_from_the_newest_block_and_older_final_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        rt().block_on(async {
            let store = Store::open(dir.path()).expect("open");
            let t = stored_target(&store).await;
            let id = &t.id;
            assert_eq!(store.last_delivered_at(id).expect("read"), None);
            let at = |n: u32, at_ms: u64, result| Attempt { at_ms, ..attempt(n, result) };
            // Only a dead delivery: no success.
            let mut b = DeliveryBatch::default();
            b.attempt(id, 1, &at(3, 50, AttemptResult::Dead)).expect("encode");
            store.write_deliveries(b).await.expect("write");
            assert_eq!(store.last_delivered_at(id).expect("read"), None);
            // An older `F` key alone, then blocks: the newest of the last block, and of `F`.
            put_older_final(&store, id, 2, &at(1, 70, AttemptResult::Delivered));
            assert_eq!(store.last_delivered_at(id).expect("read"), Some(70));
            let mut b = DeliveryBatch::default();
            b.attempt(id, 3, &at(1, 500, AttemptResult::Delivered)).expect("encode");
            b.attempt(id, 70, &at(1, 100, AttemptResult::Delivered)).expect("encode");
            b.attempt(id, 71, &at(2, 300, AttemptResult::Delivered)).expect("encode");
            b.attempt(id, 72, &at(1, 200, AttemptResult::Delivered)).expect("encode");
            store.write_deliveries(b).await.expect("write");
            assert_eq!(store.last_delivered_at(id).expect("read"), Some(300), "the last block's newest");
            // Its entries queued again: the block goes, the one before is the last.
            let mut b = DeliveryBatch::default();
            for seq in 70..=72 {
                b.requeue(id, seq, Pending { attempt: 2, due_at_ms: 0, round: 2 }, None).expect("encode");
            }
            store.write_deliveries(b).await.expect("write");
            assert_eq!(store.last_delivered_at(id).expect("read"), Some(500));
            store.close().await;
        });
    }

    #[test]
    fn deleting_a_target_moves_its_blocks_in_bounded_steps() {
        let dir = tempfile::tempdir().expect("tempdir");
        rt().block_on(async {
            let store = Store::open(dir.path()).expect("open");
            let t = stored_target(&store).await;
            let id = &t.id;
            let delivered = attempt(1, AttemptResult::Delivered);
            // More finished deliveries than one deletion step moves, and an older `F` key.
            let n = 3 * DELETE_STEP as u64 + 10;
            let mut b = DeliveryBatch::default();
            for seq in 1..=n {
                b.attempt(id, seq, &delivered).expect("encode");
            }
            store.write_deliveries(b).await.expect("write");
            put_older_final(&store, id, n + 1, &delivered);
            assert_eq!(store.target_deliveries(id, None, n - 2, 10).expect("read").len(), 3);
            store.delete_target(id).await.expect("delete");
            assert_eq!(
                store.inner.tree.scan_prefix(Tag::Block.prefix()).count()
                    + store.inner.tree.scan_prefix(Tag::Final.prefix()).count(),
                0
            );
            for seq in [1, DELETE_STEP as u64, n, n + 1] {
                assert_eq!(store.attempts(seq).expect("read"), vec![(id.clone(), delivered.clone())], "seq {seq}");
            }
            assert_eq!(store.inner.tree.scan_prefix(Tag::Attempt.prefix()).count() as u64, n + 1);
            store.close().await;
        });
    }
}
