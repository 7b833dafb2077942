//! The event log's reads and appends: appends queued for the writer thread, the head, and the
//! events read back from their chunks (through the chunk cache, `cache`).

use std::sync::atomic::Ordering;

use crmhook_core::{Event, EventId, NewEvent};
use tokio::sync::{mpsc, oneshot, watch};

use crate::cache::EventRef;
use crate::index::chunk_start;
use crate::keys::{self, Tag};
use crate::records::AckEntry;
use crate::writer::Op;
use crate::{read_u64, Result, Store, StoreError};

/// An append queued for the writer; [`PendingAppend::wait`] answers once it is durable.
pub struct PendingAppend(oneshot::Receiver<Result<Vec<AckEntry>>>);

impl PendingAppend {
    pub(crate) fn new(rx: oneshot::Receiver<Result<Vec<AckEntry>>>) -> PendingAppend {
        PendingAppend(rx)
    }

    pub async fn wait(self) -> Result<Vec<AckEntry>> {
        self.0.await.map_err(|_| StoreError::Closed)?
    }
}

impl Store {
    /// Appends a request's events durably and answers their acknowledgement. Refuses at once
    /// with [`StoreError::Busy`] when the writer's queue is full.
    pub async fn append(&self, events: Vec<NewEvent>, idempotency_key: Option<String>) -> Result<Vec<AckEntry>> {
        self.queue_append(events, idempotency_key)?.wait().await
    }

    /// Queues an append for the writer and answers at once with what to await: the caller
    /// that queues need not be the one that waits for the flush.
    pub fn queue_append(&self, events: Vec<NewEvent>, idempotency_key: Option<String>) -> Result<PendingAppend> {
        if let Some(link) = &self.inner.replica {
            return link.append(events, idempotency_key);
        }
        let (reply, rx) = oneshot::channel();
        let queue = if events.len() >= crate::BULK_EVENTS { &self.inner.bulk } else { &self.inner.tx };
        queue.try_send(Op::Append { events, idempotency_key, stamp: None, reply }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => StoreError::Busy,
            mpsc::error::TrySendError::Closed(_) => StoreError::Closed,
        })?;
        Ok(PendingAppend(rx))
    }

    /// Whether the last write to disk failed (the store cannot take events now).
    pub fn is_failing(&self) -> bool {
        self.inner.failing.load(Ordering::Acquire)
    }

    /// Becomes `true`, and stays so, once the disk refused a write of the log (a full disk, a
    /// failing device): sled 0.34 answers every later operation with that error, so nothing
    /// can be written until the store is closed and opened again (sled then recovers its log to
    /// the last complete write). Distinct from [`Store::is_failing`], which a replica also sets
    /// while the replicated log cannot be reached.
    pub fn watch_broken(&self) -> watch::Receiver<bool> {
        self.inner.broken.clone()
    }

    /// The seq of the last durable event (0 for an empty log).
    pub fn head(&self) -> u64 {
        self.inner.head.load(Ordering::Acquire)
    }

    /// A receiver that sees the head move.
    pub fn watch_head(&self) -> watch::Receiver<u64> {
        self.inner.head_rx.clone()
    }

    /// Moves each time entries of the replicated log change targets, subscriptions or disabled
    /// targets (replica mode, `replica`): another node's admin change. Never moves otherwise.
    pub fn watch_config(&self) -> watch::Receiver<u64> {
        self.inner.config_rx.clone()
    }

    /// Whether this store is one node's copy of a replicated log (`replica`).
    pub fn is_replica(&self) -> bool {
        self.inner.replica.is_some()
    }

    pub fn event(&self, seq: u64) -> Result<Option<Event>> {
        Ok(self.event_ref(seq)?.map(|e| Event::clone(&e)))
    }

    /// The event at `seq`, shared with the store's cache rather than copied.
    pub fn event_ref(&self, seq: u64) -> Result<Option<EventRef>> {
        let Some(chunk) = self.chunk_at(seq)? else { return Ok(None) };
        Ok(chunk.iter().position(|e| e.seq == seq).map(|index| EventRef { chunk, index }))
    }

    /// The event with this id: the id names its seq, and the whole id must match. Events
    /// written before ids carried their seq are found through the legacy `I` index.
    pub fn event_by_id(&self, id: &EventId) -> Result<Option<Event>> {
        if let Some(e) = self.event(id.seq())?.filter(|e| &e.id == id) {
            return Ok(Some(e));
        }
        match self.inner.tree.get(keys::legacy_id(id))? {
            Some(seq) => Ok(self.event(read_u64(&seq)?)?.filter(|e| &e.id == id)),
            None => Ok(None),
        }
    }

    /// Events with seq ≥ `from`, in log order.
    pub fn events_from(&self, from: u64) -> impl Iterator<Item = Result<Event>> + '_ {
        self.event_refs_from(from).map(|e| e.map(|e| Event::clone(&e)))
    }

    /// [`Store::events_from`] without copying the events out of the store's cache. The chunks
    /// the cache holds from `from` on are read from it; sled is read from the first one it
    /// does not hold, unless that is past the head (the tail just logged, which a target and
    /// the router read at every move of the head, costs no lookup in sled). Events past the
    /// head, written but not acknowledged yet, may or may not be in it either way.
    pub fn event_refs_from(&self, from: u64) -> Box<dyn Iterator<Item = Result<EventRef>> + '_> {
        let head = self.head();
        let (cached, next) = self.cached_from(from);
        let cached = cached.into_iter().flat_map(|start| {
            (start.index..start.chunk.len()).map(move |index| Ok(EventRef { chunk: start.chunk.clone(), index }))
        });
        if next > head {
            return Box::new(cached);
        }
        Box::new(cached.chain(self.event_refs_from_tree(next)))
    }

    /// The run of cached chunks from the one holding `from`, each as a reference to its first
    /// event at or after `from` (past its end if there is none); and the seq after the run
    /// (`from` when the cache holds none).
    fn cached_from(&self, from: u64) -> (Vec<EventRef>, u64) {
        let mut run = Vec::new();
        let mut next = from;
        let Ok(cache) = self.inner.chunks.lock() else { return (run, next) };
        while let Some(chunk) = cache.holding(next) {
            let index = chunk.iter().position(|e| e.seq >= next).unwrap_or(chunk.len());
            let Some(last) = chunk.last().map(|e| e.seq) else { break };
            run.push(EventRef { chunk, index });
            next = last + 1;
        }
        (run, next)
    }

    /// [`Store::event_refs_from`] read from sled (through the cache of decoded chunks).
    fn event_refs_from_tree(&self, from: u64) -> Box<dyn Iterator<Item = Result<EventRef>> + '_> {
        let tree = &self.inner.tree;
        let start = match chunk_start(tree, from) {
            Ok(start) => start,
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        let generation = self.chunk_generation();
        Box::new(tree.range(start..Tag::Event.end()).flat_map(move |kv| {
            let chunk = kv.map_err(StoreError::from).and_then(|(k, v)| self.decode_chunk(&k, &v, generation));
            let items: Box<dyn Iterator<Item = Result<EventRef>>> = match chunk {
                Ok(chunk) => {
                    let first = chunk.iter().position(|e| e.seq >= from).unwrap_or(chunk.len());
                    Box::new((first..chunk.len()).map(move |index| Ok(EventRef { chunk: chunk.clone(), index })))
                }
                Err(e) => Box::new(std::iter::once(Err(e))),
            };
            items
        }))
    }

    /// Events with seq ≤ `upto`, newest first, read from sled (through the cache of decoded
    /// chunks): the chunk keyed at or before `upto`, then the ones before it.
    pub(crate) fn events_back(&self, upto: u64) -> impl Iterator<Item = Result<Event>> + '_ {
        let generation = self.chunk_generation();
        self.inner.tree.range(Tag::Event.prefix()..=keys::chunk(upto)).rev().flat_map(move |kv| {
            let chunk = kv.map_err(StoreError::from).and_then(|(k, v)| self.decode_chunk(&k, &v, generation));
            let items: Box<dyn Iterator<Item = Result<Event>>> = match chunk {
                // Copied one by one as the walk reaches them: a page may need few of a chunk.
                Ok(chunk) => {
                    // A chunk's events are in seq order.
                    let end = chunk.partition_point(|e| e.seq <= upto);
                    Box::new((0..end).rev().map(move |i| Ok(Event::clone(&chunk[i]))))
                }
                Err(e) => Box::new(std::iter::once(Err(e))),
            };
            items
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::{events, rt};
    use crate::Store;

    fn seqs_from(store: &Store, from: u64) -> Vec<u64> {
        store.event_refs_from(from).map(|e| e.expect("event").seq).collect()
    }

    /// Reading from the cache of decoded chunks, from sled, or from both in turn, the log from
    /// any seq on reads the same; and the chunks the writer put in the cache as it logged them
    /// are the events sled gives back.
    #[test]
    fn reads_from_any_seq_alike_whatever_the_cache_holds() {
        let dir = tempfile::tempdir().expect("tempdir");
        rt().block_on(async {
            let store = Store::open(dir.path()).expect("open");
            // Groups of 1, 2 and 3 events: chunks of those sizes.
            for n in [1, 2, 3, 1, 3, 2, 1] {
                store.append(events(n), None).await.expect("append");
            }
            let head = store.head();
            assert_eq!(head, 13);
            let logged: Vec<crmhook_core::Event> = store.events_from(1).map(|e| e.expect("event")).collect();
            assert_eq!(store.inner.chunks.lock().expect("lock").holding(head).map(|c| c.len()), Some(1));
            store.forget_chunks();
            let read_back: Vec<crmhook_core::Event> = store.events_from(1).map(|e| e.expect("event")).collect();
            assert_eq!(logged, read_back);
            let expected = |from: u64| (from..=head).collect::<Vec<_>>();
            // Nothing cached; then some chunks cached, with gaps between them; then all.
            for cached in [vec![], vec![2, 7, 8, 13], (1..=head).collect()] {
                store.forget_chunks();
                for seq in cached {
                    store.event_ref(seq).expect("read").expect("logged");
                }
                for from in 1..=head + 2 {
                    assert_eq!(seqs_from(&store, from), expected(from), "from {from}");
                }
            }
        });
    }
}
