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
/// [`Store::open_with`] afterwards, from the chunks.
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
