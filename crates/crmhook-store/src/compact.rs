//! Retention: compaction of the log (the events whose deliveries are all finished, with what
//! only they name: index postings, final states, ids, attempts (with the receivers' answers they
//! keep), idempotency keys, and the
//! finished-delivery blocks wholly before the first event left) and of the quarantine. Neither
//! goes through the writer thread: they only remove keys the writer will never touch again, and
//! write `M head`, which only compaction writes. The one exception is a quarantined piece's `H`
//! key, which a request with the same bytes may point at a new piece: it is removed by compare
//! and swap, only while it names the removed piece.

use crmhook_core::subscription::Compiled;
use crmhook_core::{Event, TargetId};

use crate::batch::{Write, Writes};
use crate::finished::decode_block;
use crate::index::{index_prefixes, last_at_or_before, record_bucket, RecordPostings};
use crate::keys::{self, Tag};
use crate::records::{AckEntry, Final, Rejected};
use crate::{codec, Result, Store, StoreError};

/// Index values a compaction rewrites: key → what they keep.
#[derive(Default)]
pub(crate) struct Postings {
    terms: std::collections::BTreeMap<Vec<u8>, Vec<u64>>,
    records: std::collections::BTreeMap<Vec<u8>, RecordPostings>,
    /// The indexes on disk cover events up to this seq.
    through: u64,
}

/// The value at `k`, decoded once into `cache`.
pub(crate) fn decoded<'c, V: serde::de::DeserializeOwned>(
    tree: &sled::Tree,
    cache: &'c mut std::collections::BTreeMap<Vec<u8>, V>,
    k: sled::IVec,
) -> Result<&'c mut V> {
    Ok(match cache.entry(k.to_vec()) {
        std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
        std::collections::btree_map::Entry::Vacant(slot) => {
            let v = tree.get(&k)?.ok_or_else(|| StoreError::Codec("posting vanished".into()))?;
            slot.insert(codec::decode(&v)?)
        }
    })
}

/// The events a call of compaction removes, chosen by reading the log (which events no target
/// owes) without writing: a single node removes them at once, a node of a cluster publishes
/// them as an entry of the replicated log, and every copy removes them at its place
/// (`replica/retention.rs`).
#[derive(Default)]
pub(crate) struct Choice {
    pub(crate) seqs: std::collections::BTreeSet<u64>,
    /// The `Idempotency-Key` records that name only these events, or events gone: looked for
    /// only by the call that ends a pass (`scanned`), a walk of every such record.
    pub(crate) keys: Vec<Vec<u8>>,
    pub(crate) scanned: bool,
    /// Where the pass's next call goes on: 0 from the log's start.
    pub(crate) next_from: u64,
}

/// What a target may still owe past its cursor (`cursor`, the low mark below its first
/// delivery not yet recorded): the events its subscriptions match now, and those up to how far
/// it had matched (`scanned`), which its window may hold as first attempts with nothing on disk
/// yet, matched by the subscriptions of that time. A subscription edited since no longer
/// matching them, they are still owed (SUBSCRIPTIONS.md): until 2026-12-07 retention removed
/// them, and the target dropped them ("owed event is no longer in the log"; a cluster audit saw
/// 982 of an ordered target's window go so after an edit of its subscription). A subscription
/// matches only events logged after it was made (`from_seq`), so none made later can want an
/// event removed already.
struct Owing {
    target: TargetId,
    cursor: u64,
    scanned: u64,
    subscriptions: Compiled,
}

/// The writes that remove what a call of retention chose, read from the copy that makes them
/// (each copy writes out its own index postings and keeps its own blocks).
#[derive(Default)]
pub(crate) struct Plan {
    /// Records rewritten or removed (puts and removals only).
    pub(crate) records: Writes,
    /// The removed events' entries taken out of the blocks of finished deliveries that still
    /// cover events left: through the writer, which may be writing to the same blocks.
    pub(crate) unfinish: Writes,
    /// The quarantine's `H` keys that named removed pieces, with the value read: a single node
    /// removes each only if it still holds it ([`crate::quarantine::release_bytes`]).
    pub(crate) held: Vec<(Vec<u8>, sled::IVec)>,
    /// How many events (pieces, audit entries) go.
    pub(crate) removed: u64,
}

impl Store {
    /// Removes up to `max` events received before `cutoff_ms` that no target owes (none has
    /// them pending, and none whose cursor is behind them has a subscription that matches
    /// them), with their id index, Maximizer id, attempt records, their entries in the blocks of
    /// finished deliveries, and the idempotency keys that only named removed events. Answers
    /// how many events were removed. Safe beside the writer: it only removes keys of events the
    /// writer will never touch again (the blocks' entries go through the writer), and a crash
    /// before sled's next flush merely leaves them for the next run.
    ///
    /// Until 2026-12-07 the walk stopped at the lowest cursor of any target: one disabled
    /// target, or one whose oldest delivery waited for a retry (its cursor read back from
    /// disk), kept every later event of every target, however old, matched or not.
    ///
    /// A pass calls this until it answers 0. A call that stops at `max` leaves a mark, and the
    /// next one goes on from there rather than reading again what an earlier call kept (a
    /// lagging target's events: 200 calls would read its million events 200 times); a call
    /// that reaches the cutoff or the end clears the mark, so the next pass starts from the
    /// log's start.
    ///
    /// In replica mode (cluster) the events chosen are an entry of the replicated log, and
    /// every copy removes them at its place (`replica/retention.rs`).
    pub fn compact(&self, cutoff_ms: u64, max: usize) -> Result<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let from = self.inner.compact_from.swap(0, Relaxed);
        let choice = self.choose(cutoff_ms, max, from, self.inner.keys_owed.load(Relaxed))?;
        self.inner.compact_from.store(choice.next_from, Relaxed);
        let (scanned, removes_events) = (choice.scanned, !choice.seqs.is_empty());
        if !removes_events && choice.keys.is_empty() {
            if scanned {
                self.inner.keys_owed.store(false, Relaxed);
            }
            return Ok(0);
        }
        let removed = if self.inner.replica.is_some() {
            self.compact_replicated(crate::replica::Retain::Events, cutoff_ms, max, choice)?
        } else {
            let plan = self.removal(&choice)?;
            self.apply_records(plan.records)?;
            self.forget_chunks();
            if !plan.unfinish.0.is_empty() {
                // On this node only, durably.
                block_on_apart(self.write_here(plan.unfinish, crate::writer::When::Flushed))?;
            }
            plan.removed
        };
        // The records of the keys of the events removed are looked for by the pass's last call.
        if scanned {
            self.inner.keys_owed.store(false, Relaxed);
        } else if removes_events {
            self.inner.keys_owed.store(true, Relaxed);
        }
        Ok(removed)
    }

    /// The events [`Store::compact`] removes, from the seq `from` on (0: the log's start), and,
    /// when the call ends its pass (reaches the cutoff or the log's end) and it removes events
    /// or `keys_owed` (earlier calls of the pass removed some), the idempotency keys that name
    /// only events gone or chosen. Until 2026-12-07 every call walked every key's record: a
    /// pass over 100,000 events walked them ten times (100 times in cluster mode, 1,000 events
    /// a call). Meanwhile a retry of a removed event's key is still answered as a duplicate.
    pub(crate) fn choose(&self, cutoff_ms: u64, max: usize, from: u64, keys_owed: bool) -> Result<Choice> {
        let targets: Vec<TargetId> = self.targets()?.into_iter().map(|t| t.id).collect();
        let owing = self.owing(&targets)?;
        let tree = &self.inner.tree;
        let mut choice = Choice::default();
        let start = if from == 0 { Tag::Event.prefix() } else { crate::index::chunk_start(tree, from)? };
        'chunks: for kv in tree.range(start..Tag::Event.end()) {
            let chunk: Vec<Event> = codec::decode_events(&kv?.1)?;
            for event in chunk.iter().filter(|e| e.seq >= from) {
                if choice.seqs.len() >= max {
                    // Stopped by `max`: the pass's next call goes on from here.
                    choice.next_from = event.seq;
                    break 'chunks;
                }
                if event.received_at_ms >= cutoff_ms {
                    break 'chunks;
                }
                if !self.owes(&owing, event)? {
                    choice.seqs.insert(event.seq);
                }
            }
        }
        if choice.next_from != 0 || (choice.seqs.is_empty() && !keys_owed) {
            return Ok(choice);
        }
        choice.scanned = true;
        for kv in tree.scan_prefix(Tag::Idempotency.prefix()) {
            let (k, v) = kv?;
            let acks: Vec<AckEntry> = codec::decode(&v)?;
            if acks.iter().all(|a| choice.seqs.contains(&a.seq) || self.event(a.seq).map_or(true, |e| e.is_none())) {
                choice.keys.push(k.to_vec());
            }
        }
        Ok(choice)
    }

    /// The writes that remove the events `choice` names (those still in the log), read from this
    /// store as it stands: their chunks rewritten, their index postings, final states, ids and
    /// attempts, the head kept, the blocks of finished deliveries wholly before the first event
    /// left, and the chosen idempotency keys.
    pub(crate) fn removal(&self, choice: &Choice) -> Result<Plan> {
        let mut plan = Plan::default();
        let (Some(&first), Some(&last)) = (choice.seqs.first(), choice.seqs.last()) else {
            for k in &choice.keys {
                plan.records.remove(k.clone());
            }
            return Ok(plan);
        };
        let targets: Vec<TargetId> = self.targets()?.into_iter().map(|t| t.id).collect();
        // Asked again here (in cluster mode at the entry's place, the same on every copy): what
        // became owed since the choice stays (a redelivery's pending entry, a window that read
        // further, a subscription widened).
        let owing = self.owing(&targets)?;
        let tree = &self.inner.tree;
        let batch = &mut plan.records;
        let mut removed = std::collections::HashSet::new();
        // Chosen, but owed by now: kept, with the keys that name them.
        let mut spared = std::collections::HashSet::new();
        // Postings that lose seqs: key → the seqs they keep.
        let mut postings = Postings { through: self.index_window()?.through, ..Default::default() };
        for kv in tree.range(crate::index::chunk_start(tree, first)?..Tag::Event.end()) {
            let (chunk_key, v) = kv?;
            let chunk: Vec<Event> = codec::decode_events(&v)?;
            if chunk.first().is_some_and(|e| e.seq > last) {
                break;
            }
            let before = chunk.len();
            let mut kept = Vec::with_capacity(before);
            for event in chunk {
                let chosen = choice.seqs.contains(&event.seq);
                if !chosen || self.owes(&owing, &event)? {
                    if chosen {
                        spared.insert(event.seq);
                    }
                    kept.push(event);
                    continue;
                }
                self.compact_event(&event, &targets, &mut postings, batch)?;
                removed.insert(event.seq);
            }
            if kept.is_empty() {
                batch.remove(chunk_key.to_vec());
            } else if kept.len() < before {
                batch.insert(chunk_key.to_vec(), codec::encode_events(&kept)?);
            }
        }
        for k in &choice.keys {
            let names_spared = !spared.is_empty()
                && match tree.get(k)? {
                    Some(v) => codec::decode::<Vec<AckEntry>>(&v)?.iter().any(|a| spared.contains(&a.seq)),
                    None => false,
                };
            if !names_spared {
                batch.remove(k.clone());
            }
        }
        let Some(&last_removed) = removed.iter().max() else { return Ok(plan) };
        plan.removed = removed.len() as u64;
        // The head is read back from the last chunk at open: once the newest events may be
        // gone, `M head` keeps the last seq given (seqs are never given twice). Past a format-1
        // migration at open, only compaction writes it, one at a time (the retention task, or
        // the replicated log's order), so it never moves back.
        let kept_head = tree.get(keys::head())?.map(|v| crate::read_u64(&v)).transpose()?.unwrap_or(0);
        if last_removed > kept_head {
            batch.insert(keys::head(), codec::encode(&last_removed)?);
        }
        for (k, seqs) in postings.terms {
            if seqs.is_empty() {
                batch.remove(k);
            } else {
                batch.insert(k, codec::encode(&seqs)?);
            }
        }
        for (k, mut records) in postings.records {
            records.retain(|(_, seqs)| !seqs.is_empty());
            if records.is_empty() {
                batch.remove(k);
            } else {
                batch.insert(k, codec::encode(&records)?);
            }
        }
        // The blocks of finished deliveries wholly before the first event left go: nothing can
        // write to them again (no event, so no delivery owed or queued again). A block that
        // also covers events still in the log loses the removed events' entries through the
        // writer (`unfinish`).
        let first_left = self.first_left_but(&removed)?;
        let first_removed = removed.iter().min().copied().unwrap_or(last_removed);
        for t in &targets {
            for done in [Final::Delivered, Final::Dead] {
                let kept_from = keys::block_key(t, done, first_left);
                for k in tree.range(keys::block_prefix(t, done)..kept_from.clone()).keys() {
                    batch.remove(k?.to_vec());
                }
                let blocks =
                    keys::block_key(t, done, first_removed).max(kept_from)..=keys::block_key(t, done, last_removed);
                if blocks.is_empty() {
                    continue;
                }
                for kv in tree.range(blocks) {
                    let (k, v) = kv?;
                    for entry in decode_block(&v)?.into_iter().filter(|e| removed.contains(&e.seq)) {
                        plan.unfinish.0.push(Write::Unfinish(k.to_vec(), entry.seq));
                    }
                }
            }
        }
        Ok(plan)
    }

    /// What each target may still owe past its cursor (see [`Owing`]).
    fn owing(&self, targets: &[TargetId]) -> Result<Vec<Owing>> {
        let subscriptions = self.subscriptions()?;
        targets
            .iter()
            .map(|t| {
                let own = subscriptions.iter().filter(|s| s.target_id == *t).cloned().collect();
                Ok(Owing {
                    target: t.clone(),
                    cursor: self.cursor(t)?.unwrap_or(0),
                    scanned: self.scanned(t)?.unwrap_or(0),
                    subscriptions: Compiled::new(own),
                })
            })
            .collect()
    }

    /// Whether a target owes `event`: it is past a target's cursor and either that target's
    /// window may hold it (up to how far it had matched) or its subscriptions match it now, or
    /// a target has it pending.
    fn owes(&self, owing: &[Owing], event: &Event) -> Result<bool> {
        if owing.iter().any(|o| event.seq > o.cursor && (event.seq <= o.scanned || o.subscriptions.matches(event))) {
            return Ok(true);
        }
        for o in owing {
            if self.is_pending(&o.target, event.seq)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The seq of the first event still in the log (the head's next when none is): a finished
    /// delivery of an earlier seq is of an event retention removed. Its block may still hold it
    /// (a block goes only once every event it covers has gone), so counts skip it.
    pub(crate) fn first_left(&self) -> Result<u64> {
        self.first_left_but(&std::collections::HashSet::new())
    }

    /// [`Store::first_left`] once the events `removed` are gone.
    fn first_left_but(&self, removed: &std::collections::HashSet<u64>) -> Result<u64> {
        for event in self.event_refs_from(0) {
            let seq = event?.seq;
            if !removed.contains(&seq) {
                return Ok(seq);
            }
        }
        Ok(self.head() + 1)
    }

    /// Queues the removal of one event's index entries, final states, Maximizer id and
    /// attempts (its chunk is rewritten by the caller).
    pub(crate) fn compact_event(
        &self,
        event: &Event,
        targets: &[TargetId],
        postings: &mut Postings,
        batch: &mut Writes,
    ) -> Result<()> {
        let tree = &self.inner.tree;
        // An event still in the memory window has no posting on disk (one written out later
        // names a removed event, which readers skip).
        for prefix in index_prefixes(event).into_iter().filter(|_| event.seq <= postings.through) {
            let at = keys::at_seq(&prefix, event.seq);
            let Some(k) = last_at_or_before(tree, &prefix, &at)? else { continue };
            decoded(tree, &mut postings.terms, k)?.retain(|s| *s != event.seq);
        }
        if let Some(r) = event.record_id.as_ref().filter(|_| event.seq <= postings.through) {
            let prefix = keys::record_prefix(record_bucket(r));
            if let Some(k) = last_at_or_before(tree, &prefix, &keys::record_key(record_bucket(r), event.seq))? {
                let records = decoded(tree, &mut postings.records, k)?;
                if let Ok(i) = records.binary_search_by(|(x, _)| x.cmp(r)) {
                    records[i].1.retain(|s| *s != event.seq);
                }
            }
        }
        for t in targets {
            for done in [Final::Delivered, Final::Dead] {
                batch.remove(keys::final_key(t, done, event.seq));
            }
        }
        if let Some(x) = &event.external_id {
            batch.remove(keys::id_key(Tag::External, x));
        }
        batch.remove(keys::legacy_id(&event.id));
        for kv in tree.scan_prefix(keys::attempts_of(event.seq)) {
            batch.remove(kv?.0.to_vec());
        }
        Ok(())
    }

    /// Removes up to `max` quarantined pieces kept before `cutoff_ms` (retention); answers how
    /// many. Their ids sort by time, so the walk stops at the first one to keep.
    pub fn compact_quarantine(&self, cutoff_ms: u64, max: usize) -> Result<u64> {
        if self.inner.replica.is_some() {
            return self.trim_replicated(crate::replica::Retain::Quarantine, cutoff_ms, max);
        }
        let removal = self.quarantine_removal(cutoff_ms, max)?;
        self.remove_quarantined(removal)
    }

    /// What [`Store::compact_quarantine`] removes, read without writing: the pieces' records
    /// and `B` keys, and the `H` keys that named them when read (`held`).
    pub(crate) fn quarantine_removal(&self, cutoff_ms: u64, max: usize) -> Result<Plan> {
        let mut plan = Plan::default();
        for kv in self.inner.tree.scan_prefix(Tag::Rejected.prefix()) {
            let (k, v) = kv?;
            let item: Rejected = codec::decode(&v)?;
            if item.at_ms >= cutoff_ms || plan.removed >= max as u64 {
                break;
            }
            plan.held.extend(crate::quarantine::unindex(&self.inner.tree, &item, &mut plan.records)?);
            plan.records.remove(k.to_vec());
            plan.removed += 1;
        }
        Ok(plan)
    }

    /// Applies a [`Store::quarantine_removal`] on a single node: the records in one batch, then
    /// each `H` key only if it still names the piece it named when read.
    pub(crate) fn remove_quarantined(&self, removal: Plan) -> Result<u64> {
        self.apply_records(removal.records)?;
        crate::quarantine::release_bytes(&self.inner.tree, removal.held)?;
        Ok(removal.removed)
    }

    /// Puts and removes `records` in one sled batch, straight to the tree (a single node's
    /// retention, beside the writer).
    pub(crate) fn apply_records(&self, records: Writes) -> Result<()> {
        let mut batch = sled::Batch::default();
        for write in records.0 {
            match write {
                Write::Put(k, v) => batch.insert(k, v),
                Write::Remove(k) => batch.remove(k),
                _ => return Err(StoreError::Codec("retention's records are puts and removals".into())),
            }
        }
        Ok(self.inner.tree.apply_batch(batch)?)
    }
}

/// Waits for `future` on a thread of its own, in a runtime of its own: retention runs on a
/// thread of its own, but its tests call it from inside a runtime, where a blocking wait is
/// refused.
pub(crate) fn block_on_apart<T: Send>(future: impl std::future::Future<Output = Result<T>> + Send) -> Result<T> {
    let wait = || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| StoreError::io(e.to_string(), e.kind()))?;
        runtime.block_on(future)
    };
    std::thread::scope(|scope| scope.spawn(wait).join()).unwrap_or(Err(StoreError::Closed))
}

#[cfg(test)]
mod tests;
