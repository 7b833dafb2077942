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
    pub fn compact(&self, cutoff_ms: u64, max: usize) -> Result<u64> {
        let targets: Vec<TargetId> = self.targets()?.into_iter().map(|t| t.id).collect();
        let owing = self.owing(&targets)?;
        let tree = &self.inner.tree;
        let mut batch = sled::Batch::default();
        let mut removed = std::collections::HashSet::new();
        // Postings that lose seqs: key → the seqs they keep.
        let mut postings = Postings { through: self.index_window()?.through, ..Default::default() };
        let mut done = false;
        let from = self.inner.compact_from.swap(0, std::sync::atomic::Ordering::Relaxed);
        let start = if from == 0 { Tag::Event.prefix() } else { crate::index::chunk_start(tree, from)? };
        for kv in tree.range(start..Tag::Event.end()) {
            let (chunk_key, v) = kv?;
            let chunk: Vec<Event> = codec::decode_events(&v)?;
            let before = chunk.len();
            let mut kept = Vec::with_capacity(before);
            for event in chunk {
                if event.seq < from {
                    kept.push(event);
                    continue;
                }
                if !done && removed.len() >= max {
                    // Stopped by `max`: the pass's next call goes on from here.
                    self.inner.compact_from.store(event.seq, std::sync::atomic::Ordering::Relaxed);
                }
                done |= event.received_at_ms >= cutoff_ms || removed.len() >= max;
                let mut owed = done
                    || owing.iter().any(|(cursor, subscriptions)| event.seq > *cursor && subscriptions.matches(&event));
                for t in &targets {
                    if owed {
                        break;
                    }
                    owed = self.is_pending(t, event.seq)?;
                }
                if owed {
                    kept.push(event);
                    continue;
                }
                self.compact_event(&event, &targets, &mut postings, &mut batch)?;
                removed.insert(event.seq);
            }
            if kept.is_empty() {
                batch.remove(chunk_key);
            } else if kept.len() < before {
                batch.insert(chunk_key, codec::encode_events(&kept)?);
            }
            if done {
                break;
            }
        }
        let Some(&last_removed) = removed.iter().max() else { return Ok(0) };
        // The head is read back from the last chunk at open: once the newest events may be
        // gone, `M head` keeps the last seq given (seqs are never given twice). Past a format-1
        // migration at open, only compaction writes it, one at a time (the retention task), so
        // it never moves back.
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
        for kv in tree.scan_prefix(Tag::Idempotency.prefix()) {
            let (k, v) = kv?;
            let acks: Vec<AckEntry> = codec::decode(&v)?;
            if acks.iter().all(|a| removed.contains(&a.seq) || self.event(a.seq).map_or(true, |e| e.is_none())) {
                batch.remove(k);
            }
        }
        tree.apply_batch(batch)?;
        self.forget_chunks();
        // The blocks of finished deliveries wholly before the first event left go: nothing can
        // write to them again (no event, so no delivery owed or queued again). A block that
        // also covers events still in the log loses the removed events' entries through the
        // writer (`unfinish_removed`).
        let first_left = self.first_left()?;
        let mut blocks = sled::Batch::default();
        for t in &targets {
            for done in [Final::Delivered, Final::Dead] {
                for k in tree.range(keys::block_prefix(t, done)..keys::block_key(t, done, first_left)).keys() {
                    blocks.remove(k?);
                }
            }
        }
        tree.apply_batch(blocks)?;
        self.unfinish_removed(&targets, &removed)?;
        Ok(removed.len() as u64)
    }

    /// Each target's cursor and its subscriptions: an event past the cursor that they match is
    /// still owed (the target has not read it yet). A subscription matches only events logged
    /// after it was made (`from_seq`), so none made later can want an event removed now.
    fn owing(&self, targets: &[TargetId]) -> Result<Vec<(u64, Compiled)>> {
        let subscriptions = self.subscriptions()?;
        targets
            .iter()
            .map(|t| {
                let own = subscriptions.iter().filter(|s| s.target_id == *t).cloned().collect();
                Ok((self.cursor(t)?.unwrap_or(0), Compiled::new(own)))
            })
            .collect()
    }

    /// Takes the removed events' finished deliveries out of the blocks that still cover events
    /// left (those wholly before the first event left are gone already), through the writer,
    /// which may be writing to the same blocks. Without it their entries stayed until every
    /// event of their block had gone: in the dead counts, and on disk for as long as an older
    /// event was still owed.
    fn unfinish_removed(&self, targets: &[TargetId], removed: &std::collections::HashSet<u64>) -> Result<()> {
        let (Some(&first), Some(&last)) = (removed.iter().min(), removed.iter().max()) else { return Ok(()) };
        let mut writes = crate::batch::Writes::default();
        for t in targets {
            for done in [Final::Delivered, Final::Dead] {
                let blocks = keys::block_key(t, done, first)..=keys::block_key(t, done, last);
                for kv in self.inner.tree.range(blocks) {
                    let (k, v) = kv?;
                    for entry in decode_block(&v)?.into_iter().filter(|e| removed.contains(&e.seq)) {
                        writes.0.push(crate::batch::Write::Unfinish(k.to_vec(), entry.seq));
                    }
                }
            }
        }
        if writes.0.is_empty() {
            return Ok(());
        }
        // On this node only (each node compacts its own copy), durably. Compaction runs on a
        // thread of its own, but its tests call it from inside a runtime, where a blocking wait
        // is refused: the write is waited for on a thread of its own, in a runtime of its own.
        let write = || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .map_err(|e| StoreError::io(e.to_string(), e.kind()))?;
            runtime.block_on(self.write_here(writes, crate::writer::When::Flushed))
        };
        std::thread::scope(|scope| scope.spawn(write).join()).unwrap_or(Err(StoreError::Closed))
    }

    /// The seq of the first event still in the log (the head's next when none is): a finished
    /// delivery of an earlier seq is of an event retention removed. Its block may still hold it
    /// (a block goes only once every event it covers has gone), so counts skip it.
    pub(crate) fn first_left(&self) -> Result<u64> {
        match self.event_refs_from(0).next() {
            Some(event) => Ok(event?.seq),
            None => Ok(self.head() + 1),
        }
    }

    /// Queues the removal of one event's index entries, final states, Maximizer id and
    /// attempts (its chunk is rewritten by the caller).
    pub(crate) fn compact_event(
        &self,
        event: &Event,
        targets: &[TargetId],
        postings: &mut Postings,
        batch: &mut sled::Batch,
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
            batch.remove(kv?.0);
        }
        Ok(())
    }

    /// Removes up to `max` quarantined pieces kept before `cutoff_ms` (retention); answers how
    /// many. Their ids sort by time, so the walk stops at the first one to keep.
    pub fn compact_quarantine(&self, cutoff_ms: u64, max: usize) -> Result<u64> {
        let removal = self.quarantine_removal(cutoff_ms, max)?;
        self.remove_quarantined(removal)
    }

    /// What [`Store::compact_quarantine`] removes, read without writing.
    pub(crate) fn quarantine_removal(&self, cutoff_ms: u64, max: usize) -> Result<QuarantineRemoval> {
        let mut removal = QuarantineRemoval::default();
        for kv in self.inner.tree.scan_prefix(Tag::Rejected.prefix()) {
            let (k, v) = kv?;
            let item: Rejected = codec::decode(&v)?;
            if item.at_ms >= cutoff_ms || removal.pieces >= max {
                break;
            }
            removal.bytes.extend(crate::quarantine::unindex(&self.inner.tree, &item, &mut removal.batch)?);
            removal.batch.remove(k);
            removal.pieces += 1;
        }
        Ok(removal)
    }

    pub(crate) fn remove_quarantined(&self, removal: QuarantineRemoval) -> Result<u64> {
        self.inner.tree.apply_batch(removal.batch)?;
        crate::quarantine::release_bytes(&self.inner.tree, removal.bytes)?;
        Ok(removal.pieces as u64)
    }
}

/// The pieces a retention run removes: their records and `B` keys (one batch), and the `H` keys
/// that named them when read (each removed after the batch only if it still does).
#[derive(Default)]
pub(crate) struct QuarantineRemoval {
    batch: sled::Batch,
    bytes: Vec<(Vec<u8>, sled::IVec)>,
    pieces: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;
    use crate::{DeliveryBatch, EventFilter, Options, Pending};

    #[test]
    fn compaction_removes_finished_old_events_and_never_reuses_seqs() {
        let dir = tempfile::tempdir().expect("tempdir");
        rt().block_on(async {
            let store = Store::open(dir.path()).expect("open");
            store.append(events(3), Some("k".into())).await.expect("append");
            let t = crmhook_core::Target::create(
                serde_json::json!({"name": "t", "url": "https://a.example"}).as_object().expect("object"),
                false,
                "whsec_x".into(),
                0,
            )
            .expect("target");
            store.create_target(&t, 1).await.expect("target");
            let mut b = DeliveryBatch::default();
            b.cursor(&t.id, 3).expect("encode");
            b.pending(&t.id, 2, Pending::first(0)).expect("encode");
            // Event 1's attempts, each with its response.
            let response =
                crate::Response { status: 500, headers: Vec::new(), body: b"no".to_vec(), body_truncated: false };
            let failed = crate::Attempt {
                response: Some(response.clone()),
                ..attempt(1, crate::AttemptResult::Retrying { next_at_ms: 0 })
            };
            let delivered = crate::Attempt { response: Some(response), ..attempt(2, crate::AttemptResult::Delivered) };
            b.attempt(&t.id, 1, &failed).expect("encode");
            b.attempt(&t.id, 1, &delivered).expect("encode");
            store.write_deliveries(b).await.expect("write");
            assert_eq!(store.inner.tree.scan_prefix(Tag::Attempt.prefix()).count(), 1);
            // Too recent: nothing goes.
            assert_eq!(store.compact(0, 100).expect("compact"), 0);
            // Event 2 is still owed: 1 and 3 go, and event 1's attempt records (with the answers
            // they keep) with it.
            assert_eq!(store.compact(u64::MAX, 100).expect("compact"), 2);
            assert_eq!(store.inner.tree.scan_prefix(Tag::Attempt.prefix()).count(), 0);
            assert_eq!(store.events_from(1).map(|e| e.expect("event").seq).collect::<Vec<_>>(), [2]);
            assert!(store.event_by_id(&store.event(2).expect("read").expect("kept").id).expect("read").is_some());
            let mut b = DeliveryBatch::default();
            b.done(&t.id, 2);
            store.write_deliveries(b).await.expect("write");
            assert_eq!(store.compact(u64::MAX, 100).expect("compact"), 1);
            // The idempotency key named only removed events: a retry is a new request now.
            let again = store.append(events(1), Some("k".into())).await.expect("append");
            assert_eq!((again[0].seq, again[0].duplicate), (4, false));
            store.close().await;
        });
        rt().block_on(async {
            let store = Store::open(dir.path()).expect("reopen");
            let t = store.targets().expect("targets").remove(0).id;
            let mut b = DeliveryBatch::default();
            b.cursor(&t, 4).expect("encode");
            store.write_deliveries(b).await.expect("write");
            assert_eq!(store.compact(u64::MAX, 100).expect("compact"), 1);
            assert_eq!(store.events_from(1).count(), 0, "the log is empty");
            store.close().await;
        });
        rt().block_on(async {
            let store = Store::open(dir.path()).expect("reopen");
            assert_eq!(store.head(), 4);
            let next = store.append(events(1), None).await.expect("append");
            assert_eq!(next[0].seq, 5, "seqs are never given twice");
            store.close().await;
        });
    }

    /// A stored target with one subscription, to events of `event_type` (from the log's start).
    async fn subscribed_target(store: &Store, event_type: &str) -> crmhook_core::Target {
        let t = stored_target(store).await;
        let sub = crmhook_core::Subscription::create(
            serde_json::json!({"target_id": t.id.as_str(), "event_types": [event_type]}).as_object().expect("object"),
            0,
        )
        .expect("subscription");
        store.put_subscription(&sub).await.expect("subscription");
        t
    }

    /// A target that lags (disabled, or waiting for a retry) keeps the events it is owed, not
    /// every later event: those its subscriptions do not match go, and their finished
    /// deliveries to other targets leave the blocks and the dead counts.
    #[test]
    fn a_lagging_target_keeps_only_what_it_is_owed() {
        let dir = tempfile::tempdir().expect("tempdir");
        rt().block_on(async {
            let store = Store::open(dir.path()).expect("open");
            let lagging = subscribed_target(&store, "crm_record_created").await;
            // A second target with no subscription and no cursor written: it owes nothing.
            store.create_target(&target(), 0).await.expect("target");
            let live = target();
            store.create_target(&live, 0).await.expect("target");
            // 1–9: field updates, records created, records deleted in turn.
            store.append(mixed(0, 9), None).await.expect("append");
            // The live target read them all: every deleted record's delivery went dead, the others
            // were delivered.
            let mut b = DeliveryBatch::default();
            for seq in 1..=9u64 {
                let result = if seq % 3 == 0 { crate::AttemptResult::Dead } else { crate::AttemptResult::Delivered };
                b.attempt(&live.id, seq, &attempt(1, result)).expect("encode");
            }
            b.cursor(&live.id, 9).expect("encode");
            store.write_deliveries(b).await.expect("write");
            assert_eq!(store.delivery_counts(&live.id).expect("counts").1, 3);
            // The lagging target's cursor is 0: it is owed the records created (2, 5, 8) only.
            assert_eq!(store.compact(u64::MAX, 100).expect("compact"), 6);
            assert_eq!(store.events_from(1).map(|e| e.expect("event").seq).collect::<Vec<_>>(), [2, 5, 8]);
            assert_eq!(store.final_attempt(&live.id, 3).expect("read"), None, "the removed event's entry");
            assert!(store.final_attempt(&live.id, 5).expect("read").is_some(), "a kept event's entry");
            assert_eq!(store.delivery_counts(&live.id).expect("counts").1, 0, "every dead one was of a removed event");
            // Once it has read past them, they go too.
            let mut b = DeliveryBatch::default();
            b.cursor(&lagging.id, 9).expect("encode");
            store.write_deliveries(b).await.expect("write");
            assert_eq!(store.compact(u64::MAX, 100).expect("compact"), 3);
            store.close().await;
        });
    }

    /// A pass's calls go on where the last one stopped at `max`; one that reached the end
    /// clears the mark, and the next starts from the log's start.
    #[test]
    fn a_pass_goes_on_where_its_last_call_stopped() {
        let dir = tempfile::tempdir().expect("tempdir");
        rt().block_on(async {
            let store = Store::open(dir.path()).expect("open");
            let lagging = subscribed_target(&store, "crm_field_update").await;
            // 1–30: the field updates (1, 4, 7, …, 28) are owed to the lagging target.
            store.append(mixed(0, 30), None).await.expect("append");
            let left = || store.events_from(1).map(|e| e.expect("event").seq).collect::<Vec<_>>();
            assert_eq!(store.compact(u64::MAX, 5).expect("compact"), 5);
            assert_eq!(left()[..5], [1, 4, 7, 9, 10], "2, 3, 5, 6 and 8 went; the next call goes on at 9");
            // The target reads everything: the next call, from 9, leaves what came before.
            let mut b = DeliveryBatch::default();
            b.cursor(&lagging.id, 30).expect("encode");
            store.write_deliveries(b).await.expect("write");
            assert_eq!(store.compact(u64::MAX, 100).expect("compact"), 22);
            assert_eq!(left(), [1, 4, 7]);
            // It reached the end: the next starts from the log's start again.
            assert_eq!(store.compact(u64::MAX, 100).expect("compact"), 3);
            assert_eq!(store.compact(u64::MAX, 100).expect("compact"), 0);
            store.close().await;
        });
    }

    #[test]
    fn compaction_inside_a_chunk_keeps_its_other_events_and_their_postings() {
        let dir = tempfile::tempdir().expect("tempdir");
        rt().block_on(async {
            let store = Store::open_with(dir.path(), Options { record_window: 6, ..Default::default() }).expect("open");
            store.append(mixed(0, 4), None).await.expect("append");
            store.append(mixed(4, 6), None).await.expect("append");
            let t = crmhook_core::Target::create(
                serde_json::json!({"name": "t", "url": "https://a.example"}).as_object().expect("object"),
                false,
                "whsec_x".into(),
                0,
            )
            .expect("target");
            store.create_target(&t, 10).await.expect("target");
            let mut b = DeliveryBatch::default();
            for seq in [4, 7] {
                b.pending(&t.id, seq, Pending::first(0)).expect("encode");
            }
            store.write_deliveries(b).await.expect("write");
            assert_eq!(store.compact(u64::MAX, 100).expect("compact"), 8);
            assert_eq!(store.events_from(1).map(|e| e.expect("event").seq).collect::<Vec<_>>(), [4, 7]);
            assert_eq!(store.event(5).expect("read"), None);
            let by_kanban = EventFilter { kanban_id: Some("k1".into()), ..Default::default() };
            // Events 4 and 7 are r3 (k1) and r6 (k0).
            assert_eq!(
                store.events_page(&by_kanban, 0, 10).expect("page").iter().map(|e| e.seq).collect::<Vec<_>>(),
                [4]
            );
            let by_type = EventFilter { event_type: Some(TYPES[0].into()), ..Default::default() };
            assert_eq!(
                store.events_page(&by_type, 0, 10).expect("page").iter().map(|e| e.seq).collect::<Vec<_>>(),
                [4, 7]
            );
            for (record, want) in [("r3", vec![4]), ("r6", vec![7]), ("r0", vec![])] {
                let by_record = EventFilter { record_id: Some(record.into()), ..Default::default() };
                let got: Vec<u64> = store.events_page(&by_record, 0, 10).expect("page").iter().map(|e| e.seq).collect();
                assert_eq!(got, want, "{record}");
            }
            // Every filter, both ways, skips the gaps.
            assert_filters_match_a_scan(&store);
            // The window holding events 1–10 was written out, and compaction emptied its
            // buckets but those of r3 and r6.
            let buckets = store.inner.tree.scan_prefix(Tag::RecordIndex.prefix()).count();
            assert_eq!(
                buckets,
                [record_bucket("r3"), record_bucket("r6")].into_iter().collect::<std::collections::HashSet<_>>().len()
            );
            store.close().await;
        });
        rt().block_on(async {
            let store = Store::open(dir.path()).expect("reopen");
            assert_eq!(store.head(), 10);
            assert_eq!(store.append(mixed(10, 1), None).await.expect("append")[0].seq, 11);
            store.close().await;
        });
    }
}
