//! The chunk cache: decoded chunks of the log recently read, shared by every reader, and
//! [`EventRef`], an event shared with it rather than copied.

use std::sync::Arc;

use crmhook_core::Event;

use crate::keys::{self, Key, Tag};
use crate::{codec, Result, Store};

/// Decoded chunks recently read, shared by every reader: a target delivering what was just
/// ingested reads the same few chunks many times, and a hit does not touch sled at all.
/// Chunks change only when a compaction removes events from them: it clears the cache and
/// moves `generation` on, and a chunk read before that is not cached after it.
#[derive(Default)]
pub(crate) struct ChunkCache {
    slots: Vec<CachedChunk>,
    next: usize,
    generation: u64,
}

pub(crate) struct CachedChunk {
    /// The seq in the chunk's key, and its last event's.
    first: u64,
    last: u64,
    events: Arc<Vec<Event>>,
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

impl Store {
    /// The chunk that would hold `seq`, decoded (from the cache when it was read lately).
    pub(crate) fn chunk_at(&self, seq: u64) -> Result<Option<Arc<Vec<Event>>>> {
        let generation = match self.inner.chunks.lock() {
            Ok(cache) => {
                if let Some(hit) = cache.slots.iter().find(|c| c.first <= seq && seq <= c.last) {
                    return Ok(Some(hit.events.clone()));
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
        if let (Some(first), Some(last), Ok(mut cache)) =
            (first, events.last().map(|e| e.seq), self.inner.chunks.lock())
        {
            if cache.generation == generation {
                let slot = cache.next;
                cache.next = (slot + 1) % CACHED_CHUNKS;
                let chunk = CachedChunk { first, last, events: events.clone() };
                if cache.slots.len() < CACHED_CHUNKS {
                    cache.slots.push(chunk);
                } else {
                    cache.slots[slot] = chunk;
                }
            }
        }
        Ok(events)
    }

    pub(crate) fn chunk_generation(&self) -> u64 {
        self.inner.chunks.lock().map_or(u64::MAX, |c| c.generation)
    }

    /// Forgets every cached chunk: some changed (compaction). A chunk read before this is not
    /// cached after it.
    pub(crate) fn forget_chunks(&self) {
        if let Ok(mut cache) = self.inner.chunks.lock() {
            cache.generation += 1;
            cache.slots.clear();
        }
    }
}
