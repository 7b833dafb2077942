//! Delivery state: what each target owes and has done. Its reads (cursors, pending deliveries,
//! attempts, listings and counts for operators, operators' requests), the first attempts kept
//! in memory ([`Unrecorded`]), and the writes of a [`DeliveryBatch`] through the writer thread.

use std::sync::{Arc, Mutex};

use crmhook_core::TargetId;

use crate::batch::DeliveryBatch;
use crate::finished::decode_block;
use crate::keys::{self, Key, Tag};
use crate::records::{Attempt, Disabled, Final, Pending, Request};
use crate::writer::When;
use crate::{codec, read_u64, Result, Store, StoreError};

/// Which deliveries of a target to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Dead,
}

/// A target's first attempts that are owed and not written down: kept by its actor, read by
/// the store's readers (see the crate docs). Cheap to clone.
#[derive(Clone, Default)]
pub struct Unrecorded(Arc<Mutex<std::collections::BTreeSet<u64>>>);

impl Unrecorded {
    pub fn add(&self, seqs: &[u64]) {
        if let Ok(mut set) = self.0.lock() {
            set.extend(seqs);
        }
    }

    pub fn remove(&self, seq: u64) {
        if let Ok(mut set) = self.0.lock() {
            set.remove(&seq);
        }
    }

    pub fn clear(&self) {
        if let Ok(mut set) = self.0.lock() {
            set.clear();
        }
    }

    fn contains(&self, seq: u64) -> bool {
        self.0.lock().is_ok_and(|set| set.contains(&seq))
    }

    fn len(&self) -> usize {
        self.0.lock().map_or(0, |set| set.len())
    }

    fn after(&self, after: u64, limit: usize) -> Vec<u64> {
        self.0
            .lock()
            .map_or_else(|_| Vec::new(), |set| set.range(after.saturating_add(1)..).take(limit).copied().collect())
    }
}

impl Store {
    /// A target's cursor (0: nothing matched yet). A new target starts at the head.
    pub fn cursor(&self, target: &TargetId) -> Result<Option<u64>> {
        self.inner.tree.get(keys::id_key(Tag::Cursor, target.as_str()))?.map(|v| read_u64(&v)).transpose()
    }

    /// How far a target had matched, as its records tell (see the crate docs): its `W` (written
    /// with each retry's schedule), or the last seq in its blocks of finished deliveries if that
    /// is higher (a write of finished deliveries carries no `W`: its blocks bound themselves).
    /// `None` if it has neither. Three reads, whatever the history's length.
    pub fn scanned(&self, target: &TargetId) -> Result<Option<u64>> {
        let mut scanned =
            self.inner.tree.get(keys::id_key(Tag::Scanned, target.as_str()))?.map(|v| read_u64(&v)).transpose()?;
        for done in [Final::Delivered, Final::Dead] {
            scanned = scanned.max(self.last_block(target, done)?.last().map(|e| e.seq));
        }
        Ok(scanned)
    }

    /// The first attempts a target owes and has not written down (the target actor keeps them
    /// up to date); readers count them as pending.
    pub fn unrecorded(&self, target: &TargetId) -> Unrecorded {
        match self.inner.unrecorded.lock() {
            Ok(mut all) => all.entry(target.clone()).or_default().clone(),
            Err(_) => Unrecorded::default(),
        }
    }

    pub(crate) fn unrecorded_seqs(&self, target: &TargetId) -> Option<Unrecorded> {
        self.inner.unrecorded.lock().ok().and_then(|all| all.get(target).cloned())
    }

    /// A target's pending deliveries on disk (retries and deliveries queued again) in seq
    /// order, at most `limit`.
    pub fn pending(&self, target: &TargetId, limit: usize) -> Result<Vec<(u64, Pending)>> {
        let prefix = keys::id_key(Tag::Pending, target.as_str());
        self.inner
            .tree
            .scan_prefix(&prefix)
            .take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                let Some(Key::Pending { seq, .. }) = Key::parse(&k) else {
                    return Err(StoreError::Codec("bad pending key".into()));
                };
                Ok((seq, codec::decode(&v)?))
            })
            .collect()
    }

    /// Whether (and why) a target is disabled.
    pub fn disabled(&self, target: &TargetId) -> Result<Option<Disabled>> {
        self.one(Tag::Disabled, target.as_str())
    }

    /// Whether a delivery is owed: pending on disk, or a first attempt not yet made.
    pub fn is_pending(&self, target: &TargetId, seq: u64) -> Result<bool> {
        if self.unrecorded_seqs(target).is_some_and(|u| u.contains(seq)) {
            return Ok(true);
        }
        self.is_pending_on_disk(target, seq)
    }

    /// Whether a delivery has a pending entry on disk.
    pub fn is_pending_on_disk(&self, target: &TargetId, seq: u64) -> Result<bool> {
        Ok(self.inner.tree.contains_key(keys::pending(target, seq))?)
    }

    /// Every attempt at delivering event `seq`, by target, in attempt order. A final attempt
    /// whose answer is kept apart has an `A` record too: it is listed once.
    pub fn attempts(&self, seq: u64) -> Result<Vec<(TargetId, Attempt)>> {
        let mut out = self.attempt_records(&keys::attempts_of(seq))?;
        for kv in self.inner.tree.scan_prefix(Tag::Target.prefix()).keys() {
            let k = kv?;
            let Some(Key::Target(t)) = Key::parse(&k) else { continue };
            if let Some(a) = self.final_attempt(&t, seq)? {
                out.retain(|(u, b)| !(*u == t && b.n == a.n));
                out.push((t, a));
            }
        }
        out.sort_by(|(t, a), (u, b)| t.cmp(u).then(a.n.cmp(&b.n)));
        Ok(out)
    }

    /// Every attempt at delivering event `seq` to `target`, in attempt order (the final one
    /// once, as [`Store::attempts`]).
    pub fn attempts_to(&self, target: &TargetId, seq: u64) -> Result<Vec<Attempt>> {
        let mut out: Vec<Attempt> =
            self.attempt_records(&keys::attempts_to(target, seq))?.into_iter().map(|(_, a)| a).collect();
        if let Some(last) = self.final_attempt(target, seq)? {
            out.retain(|a| a.n != last.n);
            out.push(last);
        }
        Ok(out)
    }

    /// The `A` records under `prefix` (at least seq), with their targets.
    pub(crate) fn attempt_records(&self, prefix: &[u8]) -> Result<Vec<(TargetId, Attempt)>> {
        self.inner
            .tree
            .scan_prefix(prefix)
            .map(|kv| {
                let (k, v) = kv?;
                let Some(Key::Attempt { target, .. }) = Key::parse(&k) else {
                    return Err(StoreError::Codec("bad attempt key".into()));
                };
                Ok((target, codec::decode_attempt(&v)?))
            })
            .collect()
    }

    /// The last attempt at delivering event `seq` to `target`.
    pub fn last_attempt(&self, target: &TargetId, seq: u64) -> Result<Option<Attempt>> {
        if let Some(last) = self.final_attempt(target, seq)? {
            return Ok(Some(last));
        }
        let prefix = keys::attempts_to(target, seq);
        self.inner.tree.scan_prefix(prefix).next_back().map(|kv| codec::decode_attempt(&kv?.1)).transpose()
    }

    /// A target's deliveries after seq `after`, in seq order, at most `limit`: pending ones
    /// from the pending records, finished ones from their final records.
    pub fn target_deliveries(
        &self,
        target: &TargetId,
        status: Option<DeliveryStatus>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, DeliveryStatus)>> {
        let tree = &self.inner.tree;
        let mut out = Vec::new();
        let sources = [
            (DeliveryStatus::Pending, keys::id_key(Tag::Pending, target.as_str())),
            (DeliveryStatus::Delivered, keys::final_prefix(target, Final::Delivered)),
            (DeliveryStatus::Dead, keys::final_prefix(target, Final::Dead)),
        ];
        for (state, prefix) in sources {
            if status.is_some_and(|s| s != state) {
                continue;
            }
            let start = keys::at_seq(&prefix, after.saturating_add(1));
            let end = [prefix.as_slice(), &[0xff; 9]].concat();
            for kv in tree.range(start..end).take(limit) {
                let (k, _) = kv?;
                let seq = Key::parse(&k).and_then(|k| k.seq()).unwrap_or(0);
                out.push((seq, state));
            }
            let done = match state {
                DeliveryStatus::Pending => continue,
                DeliveryStatus::Delivered => Final::Delivered,
                DeliveryStatus::Dead => Final::Dead,
            };
            let prefix = keys::block_prefix(target, done);
            let (start, end) =
                (keys::block_key(target, done, after.saturating_add(1)), [prefix.as_slice(), &[0xff; 9]].concat());
            let mut taken = 0;
            for kv in tree.range(start..end) {
                let (_, v) = kv?;
                for seq in decode_block(&v)?.into_iter().map(|e| e.seq).filter(|seq| *seq > after) {
                    out.push((seq, state));
                    taken += 1;
                }
                if taken >= limit {
                    break;
                }
            }
        }
        if status.is_none_or(|s| s == DeliveryStatus::Pending) {
            if let Some(unrecorded) = self.unrecorded_seqs(target) {
                out.extend(unrecorded.after(after, limit).into_iter().map(|seq| (seq, DeliveryStatus::Pending)));
            }
        }
        out.sort_by_key(|(seq, _)| *seq);
        // A first attempt whose retry is being recorded is briefly in both.
        out.dedup_by_key(|(seq, _)| *seq);
        out.truncate(limit);
        Ok(out)
    }

    /// How many deliveries a target has pending, and dead. A dead delivery of an event that
    /// retention removed is not counted (until 2026-12-07 it was, and the count never came
    /// down): compaction has the writer take it out of its block, and one it left behind (a
    /// crash between the two, or a block of an earlier build) is skipped when it is before the
    /// first event left ([`Store::first_left`]).
    pub fn delivery_counts(&self, target: &TargetId) -> Result<(u64, u64)> {
        let count =
            |prefix: Vec<u8>| self.inner.tree.scan_prefix(prefix).keys().try_fold(0u64, |n, k| k.map(|_| n + 1));
        let unrecorded = self.unrecorded_seqs(target).map_or(0, |u| u.len() as u64);
        let mut dead = count(keys::final_prefix(target, Final::Dead))?;
        let first_left = self.first_left()?;
        for kv in self.inner.tree.scan_prefix(keys::block_prefix(target, Final::Dead)) {
            dead += decode_block(&kv?.1)?.iter().filter(|e| e.seq >= first_left).count() as u64;
        }
        Ok((count(keys::id_key(Tag::Pending, target.as_str()))? + unrecorded, dead))
    }

    /// Operators' requests, oldest first.
    pub fn requests(&self) -> Result<Vec<Request>> {
        self.all(Tag::Request)
    }

    /// Writes a batch of delivery state durably.
    pub async fn write_deliveries(&self, batch: DeliveryBatch) -> Result<()> {
        self.write(batch.batch).await
    }

    /// Writes a batch of delivery state that may be lost in a crash without losing anything
    /// but work: answers once applied, and is on disk within sled's `flush_every_ms` (500 ms)
    /// or the next durable write. For states a crash may only roll back into a repetition (a
    /// delivery made again), never into a loss.
    pub async fn write_deliveries_lazily(&self, batch: DeliveryBatch) -> Result<()> {
        self.write_with(batch.batch, When::Applied).await
    }

    /// [`Store::write_deliveries_lazily`] for records nobody waits on (finished deliveries):
    /// the write may wait up to 2 ms for others to share its sled batch (each batch costs sled
    /// two log-buffer writes on its thread pool, whatever its size).
    pub async fn write_deliveries_held(&self, batch: DeliveryBatch) -> Result<()> {
        self.write_with(batch.batch, When::Held).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;
    use crate::AttemptResult;

    #[test]
    fn how_far_a_target_matched_is_its_w_or_its_last_finished_delivery() {
        let dir = tempfile::tempdir().expect("tempdir");
        rt().block_on(async {
            let store = Store::open(dir.path()).expect("open");
            let t = stored_target(&store).await.id;
            assert_eq!(store.scanned(&t).expect("read"), None);
            // Finished deliveries with the cursor, and no `W` (a target's state write): the
            // blocks tell, the highest seq of either state.
            let mut b = DeliveryBatch::default();
            b.attempt(&t, 3, &attempt(1, AttemptResult::Delivered)).expect("encode");
            b.attempt(&t, 130, &attempt(4, AttemptResult::Dead)).expect("encode");
            b.attempt(&t, 70, &attempt(1, AttemptResult::Delivered)).expect("encode");
            b.cursor(&t, 3).expect("encode");
            store.write_deliveries(b).await.expect("write");
            assert_eq!(store.scanned(&t).expect("read"), Some(130));
            // A retry's `W` further on wins; one behind the blocks does not.
            let mut b = DeliveryBatch::default();
            b.scanned(&t, 200).expect("encode");
            store.write_deliveries(b).await.expect("write");
            assert_eq!(store.scanned(&t).expect("read"), Some(200));
            let mut b = DeliveryBatch::default();
            b.scanned(&t, 100).expect("encode");
            store.write_deliveries(b).await.expect("write");
            assert_eq!(store.scanned(&t).expect("read"), Some(130));
            // The dead one queued again: its block goes, the delivered block's last seq is next.
            let mut b = DeliveryBatch::default();
            b.requeue(&t, 130, Pending { attempt: 5, due_at_ms: 0, round: 5 }, None).expect("encode");
            store.write_deliveries(b).await.expect("write");
            assert_eq!(store.scanned(&t).expect("read"), Some(100));
            store.close().await;
        });
    }

    #[test]
    fn delivery_state_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        rt().block_on(async {
            let store = Store::open(dir.path()).expect("open");
            let target = stored_target(&store).await;
            let t = target.id;
            let mut b = DeliveryBatch::default();
            b.cursor(&t, 7).expect("encode");
            b.pending(&t, 5, Pending::first(10)).expect("encode");
            b.pending(&t, 7, Pending { attempt: 2, due_at_ms: 20, round: 1 }).expect("encode");
            store.write_deliveries(b).await.expect("write");
            assert_eq!(store.cursor(&t).expect("read"), Some(7));
            assert_eq!(store.pending(&t, 10).expect("read").len(), 2);
            let mut b = DeliveryBatch::default();
            b.done(&t, 5);
            let attempt = attempt(1, AttemptResult::Delivered);
            b.attempt(&t, 5, &attempt).expect("encode");
            store.write_deliveries(b).await.expect("write");
            assert_eq!(
                store.pending(&t, 10).expect("read"),
                vec![(7, Pending { attempt: 2, due_at_ms: 20, round: 1 })]
            );
            assert_eq!(store.attempts(5).expect("read"), vec![(t.clone(), attempt)]);
            assert!(!store.is_pending(&t, 5).expect("read"));
            // An attempt keeps its response, finished or not.
            let response = crate::Response {
                status: 503,
                headers: vec![("retry-after".into(), "30".into())],
                body: b"later".to_vec(),
                body_truncated: true,
            };
            let retrying = Attempt {
                response: Some(response.clone()),
                ..crate::test_support::attempt(1, AttemptResult::Retrying { next_at_ms: 9 })
            };
            let delivered = crate::test_support::attempt(2, AttemptResult::Delivered);
            let mut b = DeliveryBatch::default();
            b.attempt(&t, 6, &retrying).expect("encode");
            b.attempt(&t, 6, &delivered).expect("encode");
            store.write_deliveries(b).await.expect("write");
            assert_eq!(
                store.attempts(6).expect("read"),
                vec![(t.clone(), retrying.clone()), (t.clone(), delivered.clone())]
            );
            assert_eq!(store.attempts_to(&t, 6).expect("read"), vec![retrying.clone(), delivered]);
            let last = Attempt { response: Some(response), ..retrying };
            assert_eq!(store.last_attempt(&t, 6).expect("read").map(|a| a.n), Some(last.n + 1));
            store.close().await;
        });
    }
}
