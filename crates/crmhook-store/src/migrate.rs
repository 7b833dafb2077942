//! The migration of a log of the first format (one event per `E` key, an `I` id index, one
//! valueless `Y`/`R`/`G` key per event and index; no `M format`) to format 2, at open (see the
//! crate docs, **Format**).

use crmhook_core::Event;

use crate::index::index_prefixes;
use crate::keys::{self, Tag};
use crate::{codec, read_u64, Result, CHUNK_BYTES, CHUNK_EVENTS, FORMAT};

/// Rewrites a log of format 1 (one event per `E` key, an `I` id index, one valueless `Y`/`R`/`G`
/// key per event and index) as format 2, in batches of whole chunks that each move
/// `M migrated_through`, so a crash in the middle resumes where it stopped. The `I` keys stay
/// (the ids of those events do not carry their seq); the record-id windows are written by
/// [`Store::open_with`](crate::Store::open_with) afterwards, from the chunks.
pub(crate) fn migrate_from_format_1(tree: &sled::Tree) -> Result<()> {
    let progress_key = keys::migrated_through();
    let done = tree.get(&progress_key)?.map(|v| read_u64(&v)).transpose()?.unwrap_or(0);
    tracing::info!(from_seq = done + 1, "migrating the event log from format 1 to format {FORMAT}");
    let mut chunk: Vec<Event> = Vec::new();
    let mut batch = sled::Batch::default();
    let mut in_batch = 0usize;
    let flush_chunk = |chunk: &mut Vec<Event>, batch: &mut sled::Batch| -> Result<()> {
        let Some(first) = chunk.first().map(|e| e.seq) else { return Ok(()) };
        for e in chunk.iter() {
            if e.seq != first {
                batch.remove(keys::chunk(e.seq));
            }
            // The old index keys go; the windows are written from the chunks at open.
            let mut prefixes = index_prefixes(e);
            prefixes.extend(e.record_id.as_ref().map(|r| keys::text_prefix(Tag::RecordIndex, r)));
            for prefix in prefixes {
                batch.remove(keys::at_seq(&prefix, e.seq));
            }
        }
        batch.insert(keys::chunk(first), codec::encode_events(chunk)?);
        let last = chunk.last().map_or(first, |e| e.seq);
        batch.insert(keys::migrated_through(), codec::encode(&last)?);
        chunk.clear();
        Ok(())
    };
    for kv in tree.range(keys::chunk(done + 1)..Tag::Event.end()) {
        let (_, v) = kv?;
        chunk.push(codec::decode_event_v1(&v)?);
        let bytes: usize = chunk.iter().map(|e| e.payload.len()).sum();
        if chunk.len() >= CHUNK_EVENTS || bytes >= CHUNK_BYTES {
            flush_chunk(&mut chunk, &mut batch)?;
            in_batch += 1;
            if in_batch >= 256 {
                tree.apply_batch(std::mem::take(&mut batch))?;
                in_batch = 0;
            }
        }
    }
    flush_chunk(&mut chunk, &mut batch)?;
    batch.remove(progress_key);
    batch.insert(keys::format(), codec::encode(&FORMAT.to_owned())?);
    tree.apply_batch(batch)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;
    use crmhook_core::EventId;

    use crate::{Options, Store};

    /// Writes events `from..from + n` (seq = i + 1, seq 7 missing as if compacted) the way
    /// format 1 did: one `E` key each, an `I` id index, valueless `Y`/`R`/`G` keys.
    fn write_format_1(tree: &sled::Tree, from: usize, n: usize) -> Vec<Event> {
        let mut written = Vec::new();
        for (i, new) in (from..from + n).zip(mixed(from, n)) {
            let seq = i as u64 + 1;
            if seq == 7 {
                continue;
            }
            let e = Event::from_new(new, seq, EventId::generate(), 1_000 + seq);
            tree.insert(keys::chunk(seq), codec::encode_event_v1(&e).expect("encode")).expect("insert");
            tree.insert(keys::legacy_id(&e.id), codec::encode(&seq).expect("encode")).expect("insert");
            let mut prefixes = index_prefixes(&e);
            prefixes.extend(e.record_id.as_ref().map(|r| keys::text_prefix(Tag::RecordIndex, r)));
            for prefix in prefixes {
                tree.insert(keys::at_seq(&prefix, seq), vec![codec::VERSION]).expect("insert");
            }
            written.push(e);
        }
        tree.insert(keys::head(), codec::encode(&((from + n) as u64)).expect("encode")).expect("insert");
        written
    }

    fn assert_migrated(dir: &std::path::Path, old: &[Event]) {
        let options = Options { record_window: 16, ..Default::default() };
        rt().block_on(async {
            let store = Store::open_with(dir, options.clone()).expect("open migrates");
            assert_eq!(store.meta("format").expect("meta").as_deref(), Some(FORMAT));
            assert_eq!(store.inner.tree.get(keys::migrated_through()).expect("get"), None);
            assert_eq!(store.head(), 40);
            let seqs: Vec<u64> = store.events_from(1).map(|e| e.expect("event").seq).collect();
            assert_eq!(seqs, old.iter().map(|e| e.seq).collect::<Vec<_>>());
            for e in old {
                assert_eq!(store.event_by_id(&e.id).expect("read").as_ref(), Some(e));
            }
            // No key of the old record-id index is left (format 2's are 10 bytes long).
            assert!(store
                .inner
                .tree
                .scan_prefix(Tag::RecordIndex.prefix())
                .keys()
                .all(|k| k.expect("key").len() == 10));
            assert_filters_match_a_scan(&store);
            let acks = store.append(mixed(40, 3), None).await.expect("append");
            assert_eq!(acks.iter().map(|a| a.seq).collect::<Vec<_>>(), [41, 42, 43]);
            assert_filters_match_a_scan(&store);
            store.close().await;
        });
        rt().block_on(async {
            let store = Store::open_with(dir, options).expect("reopen");
            assert_eq!(store.head(), 43);
            assert_filters_match_a_scan(&store);
            store.close().await;
        });
    }

    #[test]
    fn a_log_of_the_first_format_is_migrated_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = {
            let db = sled::open(dir.path()).expect("sled");
            let tree = db.open_tree("crmhook").expect("tree");
            let old = write_format_1(&tree, 0, 40);
            db.flush().expect("flush");
            old
        };
        assert_migrated(dir.path(), &old);
    }

    #[test]
    fn a_migration_cut_off_resumes_where_it_stopped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = {
            let db = sled::open(dir.path()).expect("sled");
            let tree = db.open_tree("crmhook").expect("tree");
            // The state a crash leaves after a batch of whole chunks: events 1–16 migrated
            // (with their progress mark), 17–40 still one per key.
            let mut old = write_format_1(&tree, 0, 16);
            migrate_from_format_1(&tree).expect("migrate");
            tree.remove(keys::format()).expect("remove");
            tree.insert(keys::migrated_through(), codec::encode(&16u64).expect("encode")).expect("insert");
            old.extend(write_format_1(&tree, 16, 24));
            db.flush().expect("flush");
            old
        };
        assert_migrated(dir.path(), &old);
    }
}
