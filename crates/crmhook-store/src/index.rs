//! The indexes of the log (see the crate docs): the postings of the type, kanban and source
//! indexes (`Y`, `G`, `N`) and the record-id buckets (`R`), written a window at a time; the
//! window not yet written out, in memory ([`IndexWindow`], shared by the writer and the
//! readers); and the walks that answer the seqs of one index value, on disk then in memory.

use crmhook_core::Event;

use crate::batch::Writes;
use crate::keys::{self, Tag};
use crate::{codec, Result, Store, StoreError};

/// Buckets of the record-id index.
pub const RECORD_BUCKETS: u64 = 64;

/// Default of [`Options::record_window`](crate::Options::record_window).
pub const RECORD_WINDOW: usize = 4096;

/// The prefixes of the type, kanban and source postings an event belongs to (record ids go to
/// buckets, see [`WindowPostings`]).
pub(crate) fn index_prefixes(event: &Event) -> Vec<Vec<u8>> {
    let mut prefixes = vec![keys::text_prefix(Tag::TypeIndex, &event.event_type)];
    if let Some(k) = &event.kanban_id {
        prefixes.push(keys::text_prefix(Tag::KanbanIndex, k));
    }
    if let Some(source) = &event.source_id {
        prefixes.push(keys::text_prefix(Tag::SourceIndex, source.as_str()));
    }
    prefixes
}

/// The bucket of a record id: FNV-1a, a hash that never changes between builds (it names
/// keys on disk).
pub(crate) fn record_bucket(record_id: &str) -> u8 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in record_id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % RECORD_BUCKETS) as u8
}

/// One bucket of one window of the record-id index: record ids (sorted) and their seqs.
pub(crate) type RecordPostings = Vec<(String, Vec<u64>)>;

/// The index postings of a run of events: record id → seqs, and type or kanban posting
/// prefix → seqs.
#[derive(Default, Clone)]
pub(crate) struct WindowPostings {
    pub(crate) records: std::collections::BTreeMap<String, Vec<u64>>,
    pub(crate) terms: std::collections::BTreeMap<Vec<u8>, Vec<u64>>,
}

impl WindowPostings {
    pub(crate) fn add(&mut self, events: &[Event]) {
        for e in events {
            if let Some(r) = &e.record_id {
                self.records.entry(r.clone()).or_default().push(e.seq);
            }
            for prefix in index_prefixes(e) {
                self.terms.entry(prefix).or_default().push(e.seq);
            }
        }
    }

    /// The keys of one window of the indexes (events `first..=last`), and `M indexed`: a
    /// record-id bucket per bucket used, under `first`; a type or kanban posting per value,
    /// under its first seq.
    pub(crate) fn writes(self, first: u64, last: u64) -> Result<Writes> {
        let mut buckets: std::collections::BTreeMap<u8, RecordPostings> = std::collections::BTreeMap::new();
        for (record, seqs) in self.records {
            buckets.entry(record_bucket(&record)).or_default().push((record, seqs));
        }
        let mut writes = Writes::default();
        for (bucket, postings) in buckets {
            writes.insert(keys::record_key(bucket, first), codec::encode(&postings)?);
        }
        for (prefix, seqs) in self.terms {
            let at = seqs.first().copied().unwrap_or(first);
            writes.insert(keys::at_seq(&prefix, at), codec::encode(&seqs)?);
        }
        writes.insert(keys::indexed(), codec::encode(&last)?);
        Ok(writes)
    }
}

/// The index postings not yet written out: those of every event after `through`. Shared by the
/// writer (which adds each group's events once applied, and writes the window out when it
/// holds `limit` events) and the readers.
pub(crate) struct IndexWindow {
    /// Every event up to this seq is in the on-disk indexes (`M indexed`).
    pub(crate) through: u64,
    pub(crate) events: usize,
    pub(crate) limit: usize,
    pub(crate) postings: WindowPostings,
}

impl IndexWindow {
    /// The window was written out through `last`: it starts anew after it.
    pub(crate) fn written_out(&mut self, last: u64) {
        self.through = last;
        self.events = 0;
        self.postings = WindowPostings::default();
    }

    pub(crate) fn add(&mut self, events: &[Event]) {
        self.postings.add(events);
        self.events += events.len();
    }

    /// If this window and `fresh` reach the limit: the batch writes holding both, and the last
    /// seq they cover.
    pub(crate) fn write_out(&self, fresh: &[Event]) -> Result<Option<(Writes, u64)>> {
        let Some(last) = fresh.last().map(|e| e.seq) else { return Ok(None) };
        if self.events + fresh.len() < self.limit {
            return Ok(None);
        }
        let mut all = self.postings.clone();
        all.add(fresh);
        Ok(Some((all.writes(self.through + 1, last)?, last)))
    }
}

/// The key of the last entry in `[lo, hi]` (a chunk or posting that may hold `hi`).
pub(crate) fn last_at_or_before(tree: &sled::Tree, lo: &[u8], hi: &[u8]) -> Result<Option<sled::IVec>> {
    Ok(tree.range(lo..=hi).next_back().transpose()?.map(|(k, _)| k))
}

/// Where a walk of the log's chunks starts to find seqs from `from` on: the chunk keyed at or
/// before `from` may hold it.
pub(crate) fn chunk_start(tree: &sled::Tree, from: u64) -> Result<Vec<u8>> {
    postings_start(tree, &Tag::Event.prefix(), from)
}

/// Where a walk of the postings under `prefix` (keyed by seq) starts to find seqs from `from`
/// on: the posting keyed at or before `from` may hold later seqs too.
pub(crate) fn postings_start(tree: &sled::Tree, prefix: &[u8], from: u64) -> Result<Vec<u8>> {
    let from_key = keys::at_seq(prefix, from);
    Ok(last_at_or_before(tree, prefix, &from_key)?.map_or(from_key, |k| k.to_vec()))
}

impl Store {
    pub(crate) fn index_window(&self) -> Result<std::sync::MutexGuard<'_, IndexWindow>> {
        self.inner.window.lock().map_err(|_| StoreError::Io("the index window's lock is poisoned".into()))
    }

    /// The prefixes of the postings under `tag` (a text index) whose value `admits`, on disk
    /// and in the window: one seek per value, never a walk of its postings.
    pub(crate) fn terms_where(&self, tag: Tag, admits: impl Fn(&str) -> bool) -> Result<Vec<Vec<u8>>> {
        let mut found = std::collections::BTreeSet::new();
        let mut start = vec![tag.byte()];
        while let Some(kv) = self.inner.tree.range(start.clone()..).next() {
            let (k, _) = kv?;
            if k.first() != Some(&tag.byte()) {
                break;
            }
            match keys::Key::parse(&k) {
                Some(keys::Key::Term { value, .. }) => {
                    let prefix = keys::text_prefix(tag, &value);
                    // Past every posting of this value: the next key is the next value's.
                    start = [prefix.as_slice(), &[0xff; 9]].concat();
                    if admits(&value) {
                        found.insert(prefix);
                    }
                }
                _ => start = [k.as_ref(), &[0]].concat(),
            }
        }
        for prefix in self.index_window()?.postings.terms.keys() {
            let posting = keys::at_seq(prefix, 0);
            if let Some(keys::Key::Term { tag: t, value, .. }) = keys::Key::parse(&posting) {
                if t == tag && admits(&value) {
                    found.insert(prefix.clone());
                }
            }
        }
        Ok(found.into_iter().collect())
    }

    /// Batches of seqs, in increasing order, of the events with this record id from `from` on
    /// (with some before it): the windows on disk, then the one in memory.
    pub(crate) fn record_seqs(&self, record_id: &str, from: u64) -> Result<Walk<'_>> {
        let (through, recent) = self.recent_record(record_id)?;
        let prefix = keys::record_prefix(record_bucket(record_id));
        let start = postings_start(&self.inner.tree, &prefix, from)?;
        let end = [prefix.as_slice(), &[0xff; 8]].concat();
        let record_id = record_id.to_owned();
        let on_disk = self
            .inner
            .tree
            .range(start..=end)
            .map(move |kv| Ok(record_posting(&kv?.1, &record_id)?.into_iter().filter(|s| *s <= through).collect()));
        Ok(Box::new(on_disk.chain(std::iter::once(Ok(recent)))))
    }

    /// [`Store::record_seqs`] for a type or kanban posting prefix.
    pub(crate) fn term_seqs(&self, prefix: Vec<u8>, from: u64) -> Result<Walk<'_>> {
        let (through, recent) = self.recent_term(&prefix)?;
        let start = postings_start(&self.inner.tree, &prefix, from)?;
        let end = [prefix.as_slice(), &[0xff; 9]].concat();
        let on_disk = self.inner.tree.range(start..end).map(move |kv| {
            let seqs: Vec<u64> = codec::decode(&kv?.1)?;
            Ok(seqs.into_iter().filter(|s| *s <= through).collect())
        });
        Ok(Box::new(on_disk.chain(std::iter::once(Ok(recent)))))
    }

    /// Batches of seqs of the events with this record id at or before `upto`, newest first
    /// (each batch in decreasing order): the window in memory, then the windows on disk
    /// backwards.
    pub(crate) fn record_seqs_back(&self, record_id: &str, upto: u64) -> Result<Walk<'_>> {
        let (through, recent) = self.recent_record(record_id)?;
        let prefix = keys::record_prefix(record_bucket(record_id));
        let end = keys::at_seq(&prefix, upto);
        let record_id = record_id.to_owned();
        let on_disk = self
            .inner
            .tree
            .range(prefix..=end)
            .rev()
            .map(move |kv| Ok(backwards(record_posting(&kv?.1, &record_id)?, through, upto)));
        Ok(Box::new(std::iter::once(Ok(backwards(recent, u64::MAX, upto))).chain(on_disk)))
    }

    /// [`Store::record_seqs_back`] for a type or kanban posting prefix.
    pub(crate) fn term_seqs_back(&self, prefix: Vec<u8>, upto: u64) -> Result<Walk<'_>> {
        let (through, recent) = self.recent_term(&prefix)?;
        let end = keys::at_seq(&prefix, upto);
        let on_disk = self.inner.tree.range(prefix..=end).rev().map(move |kv| {
            let seqs: Vec<u64> = codec::decode(&kv?.1)?;
            Ok(backwards(seqs, through, upto))
        });
        Ok(Box::new(std::iter::once(Ok(backwards(recent, u64::MAX, upto))).chain(on_disk)))
    }
}

impl Store {
    /// How far the on-disk index goes, and a record id's seqs in the window in memory. A walk
    /// takes this snapshot first: a window written out meanwhile is on disk by then, and its
    /// seqs past `through` are taken from the snapshot only.
    fn recent_record(&self, record_id: &str) -> Result<(u64, Vec<u64>)> {
        let w = self.index_window()?;
        Ok((w.through, w.postings.records.get(record_id).cloned().unwrap_or_default()))
    }

    /// [`Store::recent_record`] for a type or kanban posting prefix.
    fn recent_term(&self, prefix: &[u8]) -> Result<(u64, Vec<u64>)> {
        let w = self.index_window()?;
        Ok((w.through, w.postings.terms.get(prefix).cloned().unwrap_or_default()))
    }
}

/// A record id's seqs in one bucket of the record-id index (increasing; none if it is not there).
fn record_posting(bucket: &[u8], record_id: &str) -> Result<Vec<u64>> {
    let mut postings: RecordPostings = codec::decode(bucket)?;
    Ok(match postings.binary_search_by(|(r, _)| r.as_str().cmp(record_id)) {
        Ok(i) => postings.swap_remove(i).1,
        Err(_) => Vec::new(),
    })
}

/// A walk of postings: batches of seqs, in the walk's order.
pub(crate) type Walk<'a> = Box<dyn Iterator<Item = Result<Vec<u64>>> + 'a>;

/// The seqs of a posting (increasing) up to `through` and `upto`, in decreasing order.
fn backwards(seqs: impl IntoIterator<Item = u64>, through: u64, upto: u64) -> Vec<u64> {
    let mut out: Vec<u64> = seqs.into_iter().filter(|s| *s <= through && *s <= upto).collect();
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;
    use crmhook_core::EventId;

    use crate::Options;

    #[test]
    fn chunks_and_postings_read_back_like_one_key_per_event() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A small window: some record-id postings are written out, the last ones stay in memory.
        let options = Options { record_window: 9, ..Default::default() };
        rt().block_on(async {
            let store = Store::open_with(dir.path(), options.clone()).expect("open");
            // Groups of 1, 40 (three chunks) and 7 events, then 20 one-event requests at once.
            let mut acks = Vec::new();
            for (from, n) in [(0, 1), (1, 40), (41, 7)] {
                acks.extend(store.append(mixed(from, n), None).await.expect("append"));
            }
            let tasks: Vec<_> = (48..68)
                .map(|i| {
                    let s = store.clone();
                    tokio::spawn(async move { s.append(mixed(i, 1), None).await })
                })
                .collect();
            for t in tasks {
                acks.extend(t.await.expect("join").expect("append"));
            }
            acks.sort_by_key(|a| a.seq);
            assert_eq!(acks.iter().map(|a| a.seq).collect::<Vec<_>>(), (1..=68).collect::<Vec<_>>());
            for a in &acks {
                let e = store.event_by_id(&a.id).expect("read").expect("found");
                assert_eq!((e.seq, &e.id), (a.seq, &a.id));
            }
            // An id of the right shape naming a stored seq, but not that event's id.
            let forged = EventId::with_seq(0, 5);
            assert_eq!(store.event_by_id(&forged).expect("read"), None);
            assert_eq!(store.event_by_id(&EventId::with_seq(0, 999)).expect("read"), None);
            for from in [1, 2, 17, 40, 41, 42, 68, 69] {
                let seqs: Vec<u64> = store.events_from(from).map(|e| e.expect("event").seq).collect();
                assert_eq!(seqs, (from..=68).collect::<Vec<_>>(), "events_from({from})");
            }
            assert_filters_match_a_scan(&store);
            // One more event (fewer than the window) if the last group happened to fill it.
            if store.index_window().expect("lock").through == store.head() {
                store.append(mixed(68, 1), None).await.expect("append");
                assert_filters_match_a_scan(&store);
            }
            let through = store.index_window().expect("lock").through;
            assert!(through > 0 && through < store.head(), "windows written out, the last one in memory: {through}");
            store.close().await;
        });
        // The memory window is read back from the log at start-up.
        rt().block_on(async {
            let store = Store::open_with(dir.path(), options).expect("reopen");
            assert_filters_match_a_scan(&store);
            store.close().await;
        });
    }
}
