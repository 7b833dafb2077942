//! The chunk cache: decoded chunks of the log recently logged or read, shared by every reader,
//! and [`EventRef`], an event shared with it rather than copied.

use std::sync::Arc;

use crmhook_core::Event;

use crate::keys::{self, Key, Tag};
use crate::{codec, Result, Store};

/// Decoded chunks recently logged or read, shared by every reader: a target delivering what
/// was just ingested reads the same few chunks many times, and a hit does not touch sled at
/// all. The log writer puts each chunk it logs in before the head moves past it, so the
/// router and the targets read the log's tail from here. Chunks change only when a compaction
/// removes events from them: it clears the cache and moves `generation` on, and a chunk read
/// (or logged) before that is not cached after it.
/// Bounded by count ([`CACHED_CHUNKS`]) and by bytes ([`CACHED_BYTES`]): the oldest chunk
/// cached goes first.
#[derive(Default)]
pub(crate) struct ChunkCache {
    slots: std::collections::VecDeque<CachedChunk>,
    /// The encoded size of the chunks cached, the measure of their payloads.
    bytes: usize,
    generation: u64,
}

pub(crate) struct CachedChunk {
    /// The seq in the chunk's key, and its last event's.
    first: u64,
    last: u64,
    events: Arc<Vec<Event>>,
    /// Its encoded size.
    bytes: usize,
}

/// An event shared with the store's cache of decoded chunks (no copy of its payload); derefs
/// to the [`Event`].
#[derive(Clone)]
pub struct EventRef {
    pub(crate) chunk: Arc<Vec<Event>>,
    pub(crate) index: usize,
}

impl std::ops::Deref for EventRef {
    type Target = Event;

    fn deref(&self) -> &Event {
        &self.chunk[self.index]
    }
}

/// How many decoded chunks the store keeps.
pub(crate) const CACHED_CHUNKS: usize = 256;
/// How many bytes of chunks (encoded size) the store keeps decoded: with events near the 1 MiB
/// body limit, 256 chunks would be hundreds of MiB. A chunk larger than a quarter of it is
/// not cached.
pub(crate) const CACHED_BYTES: usize = 32 * 1024 * 1024;

impl ChunkCache {
    /// The cached chunk whose seqs span `seq`.
    pub(crate) fn holding(&self, seq: u64) -> Option<Arc<Vec<Event>>> {
        self.slots.iter().rev().find(|c| c.first <= seq && seq <= c.last).map(|c| c.events.clone())
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Forgets every chunk (some changed); one read or logged before this is not cached after.
    pub(crate) fn forget(&mut self) {
        self.generation += 1;
        self.slots.clear();
        self.bytes = 0;
    }

    /// Caches the chunk keyed `first` (its encoded size `bytes`), unless a compaction happened
    /// since `generation` was read (it may have changed it) or it is too large; the oldest
    /// chunks go to keep the bounds.
    pub(crate) fn insert(&mut self, first: u64, events: Arc<Vec<Event>>, bytes: usize, generation: u64) {
        let Some(last) = events.last().map(|e| e.seq) else { return };
        if self.generation != generation || bytes > CACHED_BYTES / 4 || self.holding(first).is_some() {
            return;
        }
        self.slots.push_back(CachedChunk { first, last, events, bytes });
        self.bytes += bytes;
        while self.slots.len() > CACHED_CHUNKS || self.bytes > CACHED_BYTES {
            let Some(oldest) = self.slots.pop_front() else { break };
            self.bytes -= oldest.bytes;
        }
    }
}

impl Store {
    /// The chunk that would hold `seq`, decoded (from the cache when it was read lately).
    pub(crate) fn chunk_at(&self, seq: u64) -> Result<Option<Arc<Vec<Event>>>> {
        let generation = match self.inner.chunks.lock() {
            Ok(cache) => {
                if let Some(hit) = cache.holding(seq) {
                    return Ok(Some(hit));
                }
                cache.generation
            }
            Err(_) => u64::MAX,
        };
        let tree = &self.inner.tree;
        let Some((k, v)) = tree.range(Tag::Event.prefix()..=keys::chunk(seq)).next_back().transpose()? else {
            return Ok(None);
        };
        self.decode_chunk(&k, &v, generation).map(Some)
    }

    /// A chunk read from sled, from the cache when it holds it, else decoded and cached (if no
    /// compaction happened since `generation` was read).
    pub(crate) fn decode_chunk(&self, k: &[u8], v: &[u8], generation: u64) -> Result<Arc<Vec<Event>>> {
        let first = match Key::parse(k) {
            Some(Key::Chunk { first }) => Some(first),
            _ => None,
        };
        if let (Some(first), Ok(cache)) = (first, self.inner.chunks.lock()) {
            if let Some(hit) = cache.slots.iter().find(|c| c.first == first && cache.generation == generation) {
                return Ok(hit.events.clone());
            }
        }
        let events: Arc<Vec<Event>> = Arc::new(codec::decode_events(v)?);
        if let (Some(first), Ok(mut cache)) = (first, self.inner.chunks.lock()) {
            cache.insert(first, events.clone(), v.len(), generation);
        }
        Ok(events)
    }

    pub(crate) fn chunk_generation(&self) -> u64 {
        self.inner.chunks.lock().map_or(u64::MAX, |c| c.generation())
    }

    /// Forgets every cached chunk: some changed (compaction). A chunk read before this is not
    /// cached after it.
    pub(crate) fn forget_chunks(&self) {
        if let Ok(mut cache) = self.inner.chunks.lock() {
            cache.forget();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;

    #[test]
    fn the_chunk_cache_is_bounded_in_bytes_as_well_as_in_chunks() {
        let dir = tempfile::tempdir().expect("tempdir");
        rt().block_on(async {
            let store = Store::open(dir.path()).expect("open");
            // Events of ~300 KB: each is a chunk of its own (chunks stop near CHUNK_BYTES).
            let big = "x".repeat(300_000);
            for _ in 0..300 {
                let event = crmhook_core::event::parse_ingest(
                    format!(r#"{{"eventType":"crm_field_update","recordId":"r","kanbanId":"k","big":"{big}"}}"#)
                        .as_bytes(),
                )
                .expect("event");
                store.append(event, None).await.expect("append");
            }
            for seq in 1..=300 {
                assert_eq!(store.event_ref(seq).expect("read").map(|e| e.seq), Some(seq));
            }
            let cache = store.inner.chunks.lock().expect("lock");
            assert!(cache.bytes <= CACHED_BYTES, "{} bytes cached", cache.bytes);
            assert!(cache.slots.len() < 300 && !cache.slots.is_empty(), "{} chunks cached", cache.slots.len());
            assert_eq!(cache.bytes, cache.slots.iter().map(|c| c.bytes).sum::<usize>());
        });
    }
}
