//! The writer thread: group commit. Every write goes through it (see the crate docs): it takes
//! the requests queued (up to [`MAX_GROUP`](crate::MAX_GROUP)) and the held writes waiting in
//! [`Lazy`] (`writer/queue.rs`), applies the group (new events numbered and cut into chunks, the
//! changes to finished-delivery blocks, the index window when it fills) as one sled batch or as
//! ordered single inserts ([`apply()`], `writer/apply.rs`), flushes if any of it must be durable,
//! and then answers each request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crmhook_core::{Event, EventId, NewEvent};
use tokio::sync::{oneshot, watch};

use crate::batch::Writes;
use crate::cache::ChunkCache;
use crate::finished::{Blocks, KeptBlocks};
use crate::index::IndexWindow;
use crate::keys::{self, Tag};
use crate::records::AckEntry;
use crate::stored::RequestKeyV1;
use crate::{codec, Result, Store, StoreError};

mod apply;
mod chunks;
mod queue;
mod slow;

use apply::{apply, restores_apart};
pub(crate) use chunks::{write_log, Chunk};
use queue::{next_group, Unpark};
pub(crate) use queue::{Lazy, Queues};

/// A request to the writer thread.
pub(crate) enum Op {
    /// `stamp`: when the events were received and their ids' random bits (replica mode: the
    /// node that took them chose), or now and random.
    Append {
        events: Vec<NewEvent>,
        idempotency_key: Option<String>,
        stamp: Option<(u64, u16)>,
        reply: oneshot::Sender<Result<Vec<AckEntry>>>,
    },
    /// An entry of the replicated log (replica mode, `replica`): its ops, applied in one batch
    /// with its position; `config`: some of them change targets or subscriptions.
    Entry {
        seq: u64,
        ops: Vec<Op>,
        config: bool,
    },
    Write {
        writes: Writes,
        when: When,
        reply: oneshot::Sender<Result<()>>,
    },
    /// Records of another store put as they are (in an entry: `crmhook cluster import`, see
    /// `replica`); after the `last` one the writer reads its head and index window back from
    /// the tree.
    Restore {
        records: Vec<(Vec<u8>, Vec<u8>)>,
        last: bool,
    },
    Stop(oneshot::Sender<()>),
    /// Wakes a writer asleep with held writes waiting in [`Lazy`] (and nothing else).
    Nudge,
}

/// When a write is answered.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum When {
    /// After a flush.
    Flushed,
    /// After the batch is applied (sled flushes it within `flush_every_ms`, or with the next
    /// flush).
    Applied,
    /// Like `Applied`, but the batch may wait up to [`LAZY_HOLD`](crate::LAZY_HOLD) for other writes to share.
    Held,
}

/// The writer thread: group commit.
pub(crate) struct Writer {
    pub(crate) db: sled::Db,
    pub(crate) tree: sled::Tree,
    pub(crate) next_seq: u64,
    pub(crate) head: Arc<AtomicU64>,
    pub(crate) head_tx: watch::Sender<u64>,
    pub(crate) failing: Arc<std::sync::atomic::AtomicBool>,
    /// Set for good once sled refused a write: sled 0.34 keeps an I/O error as the answer to
    /// every later operation, so this process cannot write the log again (see `Store::watch_broken`).
    pub(crate) broken: watch::Sender<bool>,
    pub(crate) window: Arc<Mutex<IndexWindow>>,
    /// The last `n` given to an operator's request's `O` key.
    pub(crate) requests: u64,
    /// Replica mode: the replicated log is what is durable, so nothing here waits for a flush.
    pub(crate) replica: bool,
    /// Moves after a group that changed targets or subscriptions in an entry (replica mode).
    pub(crate) config_tx: watch::Sender<u64>,
    /// Moves after a group that changed the API keys' records (`api_keys`).
    pub(crate) keys_tx: watch::Sender<u64>,
    /// The store's cache of decoded chunks: the chunks a group logs go in before the head
    /// moves, so that the router and the targets read what was just logged without sled.
    pub(crate) chunks: Arc<Mutex<ChunkCache>>,
    /// The `L` blocks this thread wrote lately, as it wrote them.
    pub(crate) kept_blocks: KeptBlocks,
    /// The sources ingest keeps decoded: forgotten before a group that changes one.
    pub(crate) sources: Arc<crate::sources::SourceCache>,
    /// The `slow group commit` warnings of the last minute (at most ten a minute in full).
    pub(crate) slow: slow::SlowCommits,
    /// The last entry of the replicated log whose group is settled (applied, and the head
    /// moved): what `Store::replicated` answers (replica mode).
    pub(crate) replicated: Arc<AtomicU64>,
    /// The last entry of the group being committed (set as it is gathered), until
    /// [`Writer::move_head`] or the end of the commit makes it the `replicated` one.
    pub(crate) settling: Option<u64>,
}

enum Reply {
    Append(oneshot::Sender<Result<Vec<AckEntry>>>, Vec<AckEntry>),
    Write(oneshot::Sender<Result<()>>),
    /// A write whose expectations did not hold (`StoreError::Changed`): answered with the
    /// group, once the writes that changed its records are in the tree, so that a caller that
    /// reads them again and computes its change anew reads the new state.
    Refused(oneshot::Sender<Result<()>>),
}

/// One group commit, as it is put together.
struct Group {
    batch: sled::Batch,
    replies: Vec<Reply>,
    /// The group's new events, numbered from `first_seq`.
    fresh: Vec<Event>,
    /// The `Idempotency-Key` of each request whose events are all in `fresh`, kept in the chunk
    /// that holds its first event.
    requests: Vec<RequestKeyV1>,
    /// Whether the group must be one sled batch: a request with an `Idempotency-Key` that
    /// names events logged before it (duplicates), which open could not write again.
    batch_only: bool,
    first_seq: u64,
    /// Whether the group is answered only after a flush.
    flush: bool,
    /// Whether an entry of the group changed targets or subscriptions.
    config: bool,
    /// The group's writes to the API keys' records so far (`api_keys`: what a later request's
    /// expectations are checked against before the tree).
    keyed: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// Whether the group ends a restore: the head and the index window are read back after it.
    restored: bool,
    stop: Option<oneshot::Sender<()>>,
}

impl Writer {
    /// Starts the writer thread on the requests of `queues`.
    pub(crate) fn spawn(self, queues: Queues, lazy: Arc<Lazy>) -> Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("crmhook-log-writer".into())
            .spawn(move || self.run(queues, &lazy))
            .map_err(|e| StoreError::Io(e.to_string()))
    }

    fn run(mut self, mut queues: Queues, lazy: &Lazy) {
        // The thread parks between groups; a sender's wake-up unparks it.
        let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut last_durable = None;
        let mut stop = None;
        while stop.is_none() {
            let Some(ops) = next_group(&mut queues, &waker, lazy, &mut last_durable) else { break };
            for ops in restores_apart(ops) {
                stop = self.commit(ops).or(stop);
            }
        }
        // A stop comes after the requests already queued: the bulk queue's too.
        if stop.is_some() {
            while let Some(ops) = queues.bulk_group() {
                self.commit(ops);
            }
        }
        lazy.close();
        let _ = self.db.flush();
        if let (held @ 1.., slowest) = self.slow.take_held() {
            tracing::warn!(more = held, slowest_ms = slowest.as_millis(), "slow group commits held back");
        }
        if let Some(done) = stop {
            let _ = done.send(());
        }
    }

    /// Commits one group: one sled batch, flushed if any of it must be durable; then the index
    /// window and the head move, and every request is answered. Answers the group's stop
    /// request, if it holds one.
    fn commit(&mut self, ops: Vec<Op>) -> Option<oneshot::Sender<()>> {
        // Read before the blocks are read and the chunks reach sled: a compaction after it may
        // change them.
        let generation = self.chunks.lock().map_or(u64::MAX, |c| c.generation());
        let kept = std::mem::take(&mut self.kept_blocks).at(generation);
        let (group, blocks) = self.gather(ops, kept);
        let Group {
            mut batch,
            replies,
            fresh,
            requests,
            batch_only,
            first_seq,
            mut flush,
            config,
            keyed,
            restored,
            stop,
        } = group;
        let mut written_out = None;
        let mut chunks = Vec::new();
        let mut kept = None;
        let logged = blocks.into_batch(&mut batch).and_then(|blocks| {
            kept = Some(blocks);
            if !fresh.is_empty() {
                (written_out, chunks) = self.log_events(&mut batch, &fresh, &requests)?;
            }
            Ok(())
        });
        flush |= (self.next_seq > first_seq && !self.replica) || stop.is_some();
        let started = Instant::now();
        let mut applied_at = started;
        let result = logged.and_then(|()| {
            apply(&self.tree, batch, !self.replica && !batch_only, &self.sources)?;
            applied_at = Instant::now();
            if flush {
                self.db.flush()?;
            }
            Ok(())
        });
        let now = Instant::now();
        let took = now - started;
        if let Some(say) = self.slow.note(now, took) {
            if say.held > 0 {
                tracing::warn!(more = say.held, slowest_ms = say.slowest.as_millis(), "slow group commits held back");
            }
            if say.this_one {
                tracing::warn!(
                    apply_ms = (applied_at - started).as_secs_f64() * 1000.0,
                    flush_ms = (now - applied_at).as_secs_f64() * 1000.0,
                    requests = replies.len(),
                    events = fresh.len(),
                    "slow group commit: {} ms",
                    took.as_millis()
                );
            }
        }
        self.failing.store(result.is_err(), Ordering::Release);
        if result.as_ref().is_err_and(StoreError::is_io) {
            self.broken.send_if_modified(|broken| !std::mem::replace(broken, true));
        }
        if let (Some(kept), Ok(()), false) = (kept, &result, restored) {
            self.kept_blocks = kept;
        }
        if result.is_err() {
            self.settling = None;
        }
        self.settle(fresh, (chunks, generation), first_seq, written_out, &result);
        if restored && result.is_ok() {
            // Restored records may hold chunks the cache holds as they were before.
            if let Ok(mut cache) = self.chunks.lock() {
                cache.forget();
            }
            self.read_back();
        }
        // An entry that moved no head (a change of targets, a delivery's state) settles here.
        if let Some(seq) = self.settling.take() {
            self.replicated.store(seq, Ordering::Release);
        }
        if config && result.is_ok() {
            self.config_tx.send_modify(|n| *n += 1);
        }
        if !keyed.is_empty() && result.is_ok() {
            self.keys_tx.send_modify(|n| *n += 1);
        }
        answer(replies, &result);
        stop
    }

    /// Puts a group's requests into one batch: writes as they are (their changes to `L` blocks
    /// into the [`Blocks`], added to the batch last), appends numbered and deduplicated.
    fn gather(&mut self, ops: Vec<Op>, kept: KeptBlocks) -> (Group, Blocks) {
        let mut group = Group {
            batch: sled::Batch::default(),
            replies: Vec::with_capacity(ops.len()),
            fresh: Vec::new(),
            requests: Vec::new(),
            batch_only: false,
            first_seq: self.next_seq,
            flush: false,
            config: false,
            keyed: HashMap::new(),
            restored: false,
            stop: None,
        };
        let mut seen: HashMap<Vec<u8>, Vec<AckEntry>> = HashMap::new();
        let mut blocks = Blocks::with(kept);
        for op in ops {
            self.gather_op(op, &mut group, &mut seen, &mut blocks);
        }
        (group, blocks)
    }

    fn gather_op(
        &mut self,
        op: Op,
        group: &mut Group,
        seen: &mut HashMap<Vec<u8>, Vec<AckEntry>>,
        blocks: &mut Blocks,
    ) {
        match op {
            Op::Stop(done) => group.stop = Some(done),
            Op::Nudge => {}
            Op::Write { writes, when, reply } => {
                match writes.expectations_hold(&self.tree, &group.keyed) {
                    Ok(true) => {}
                    Ok(false) => {
                        group.replies.push(Reply::Refused(reply));
                        return;
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        return;
                    }
                }
                writes.note_keys(&mut group.keyed);
                group.flush |= when == When::Flushed;
                writes.into_batch(&mut group.batch, blocks, &self.tree, &mut self.requests);
                group.replies.push(Reply::Write(reply));
            }
            Op::Append { events, idempotency_key, stamp, reply } => {
                match self.prepare_append(group, seen, events, idempotency_key, stamp) {
                    Ok(acks) => group.replies.push(Reply::Append(reply, acks)),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Op::Restore { records, last } => {
                for (k, v) in records {
                    if crate::api_keys::is_key_record(&k) {
                        group.keyed.insert(k.clone(), Some(v.clone()));
                    }
                    group.batch.insert(k, v);
                }
                group.restored |= last;
            }
            Op::Entry { seq, ops, config } => {
                // Numbered keys take their `n` from the entry's position: the same on every node.
                self.requests = seq << 16;
                for op in ops {
                    self.gather_op(op, group, seen, blocks);
                }
                group.config |= config;
                self.settling = Some(seq);
                match codec::encode(&seq) {
                    Ok(v) => group.batch.insert(keys::meta(crate::replica::REPLICATED), v),
                    Err(e) => tracing::error!(error = %e, "the replicated position could not be encoded"),
                }
            }
        }
    }

    /// After a restore (`replica`): the head, the next seq and the index window as the tree now
    /// has them, read back as at open. The chunk cache needs nothing: a restore is the start of
    /// a new log (`crmhook cluster import` refuses a log with entries), applied to a copy with
    /// no events, so no chunk was read before it.
    fn read_back(&mut self) {
        match crate::open::read_back(&self.tree, &self.window) {
            Ok(head) => {
                self.next_seq = head + 1;
                self.move_head(head);
            }
            Err(e) => tracing::error!(error = %e, "the restored records could not be read back"),
        }
    }

    /// Queues a group's events (chunks, index postings); answers how far the index window was
    /// written out, if it was, and the chunks written ([`write_log`]). The head needs no key of
    /// its own: it is read back from the last chunk at open (`M head` is written only by a
    /// compaction that removes events, see `compact`).
    fn log_events(
        &self,
        batch: &mut sled::Batch,
        fresh: &[Event],
        requests: &[RequestKeyV1],
    ) -> Result<(Option<u64>, Vec<Chunk>)> {
        let chunks = write_log(batch, fresh, requests)?;
        let window = self.window.lock().map_err(|_| StoreError::Io("index window lock poisoned".into()))?;
        if let Some((writes, last)) = window.write_out(fresh)? {
            writes.into_batch(batch, &mut Blocks::default(), &self.tree, &mut 0); // postings only: no requests
            return Ok((Some(last), chunks));
        }
        Ok((None, chunks))
    }

    /// Moves a group's events, as the chunks it wrote, into the store's cache of decoded chunks
    /// (unless a compaction happened since `generation`).
    fn cache_chunks(&self, fresh: Vec<Event>, chunks: Vec<Chunk>, generation: u64) {
        let Ok(mut cache) = self.chunks.lock() else { return };
        let mut fresh = fresh.into_iter();
        for Chunk { events, bytes } in chunks {
            let chunk: Vec<Event> = fresh.by_ref().take(events).collect();
            let Some(first) = chunk.first().map(|e| e.seq) else { continue };
            cache.insert(first, Arc::new(chunk), bytes, generation);
        }
    }

    /// Moves the head, in this order: the head, then the replicated position of the group's
    /// entry (`settling`), then the watch's wake-up. So a node that sees its position has its
    /// events at the head (`Cluster::open` waits for the position), and whoever the head's move
    /// wakes sees the position too.
    fn move_head(&mut self, head: u64) {
        self.head.store(head, Ordering::Release);
        if let Some(seq) = self.settling.take() {
            self.replicated.store(seq, Ordering::Release);
        }
        self.head_tx.send_replace(head);
    }

    /// After a group's batch: the index window takes its events (or starts anew after the ones
    /// written out), the cache of decoded chunks takes the chunks written (`logged`, with the
    /// cache's generation read before they were) and the head moves. After a failure, the seqs
    /// of a group that never reached the tree are given again.
    fn settle(
        &mut self,
        fresh: Vec<Event>,
        logged: (Vec<Chunk>, u64),
        first_seq: u64,
        written_out: Option<u64>,
        result: &Result<()>,
    ) {
        // sled applies a batch whole or not at all, and a group of single inserts has one
        // chunk, written first: its first chunk tells.
        let applied =
            !fresh.is_empty() && (result.is_ok() || self.tree.get(keys::chunk(first_seq)).ok().flatten().is_some());
        if applied {
            if let Ok(mut window) = self.window.lock() {
                match written_out {
                    Some(last) => window.written_out(last),
                    None => window.add(&fresh),
                }
            }
        }
        match result {
            Ok(()) => {
                // Before the head moves: whoever the move wakes reads these from the cache.
                self.cache_chunks(fresh, logged.0, logged.1);
                let head = self.next_seq - 1;
                if head >= first_seq {
                    self.move_head(head);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "group commit failed");
                // Nothing of this group is acknowledged. If the batch reached the tree but
                // the flush failed, those events may still appear later; see RELIABILITY.md.
                if !applied {
                    self.next_seq = first_seq;
                }
            }
        }
    }

    /// Numbers a request's new events into the group's `fresh` (written by [`write_log`] once
    /// the group is complete) and queues its deduplication records; answers its
    /// acknowledgement.
    fn prepare_append(
        &mut self,
        group: &mut Group,
        seen: &mut std::collections::HashMap<Vec<u8>, Vec<AckEntry>>,
        events: Vec<NewEvent>,
        idempotency_key: Option<String>,
        stamp: Option<(u64, u16)>,
    ) -> Result<Vec<AckEntry>> {
        let lookup =
            |seen: &std::collections::HashMap<Vec<u8>, Vec<AckEntry>>, k: &[u8]| -> Result<Option<Vec<AckEntry>>> {
                if let Some(found) = seen.get(k) {
                    return Ok(Some(found.clone()));
                }
                Ok(match self.tree.get(k)? {
                    Some(v) if k.first() == Some(&Tag::Idempotency.byte()) => Some(codec::decode(&v)?),
                    Some(v) => Some(vec![codec::decode(&v)?]),
                    None => None,
                })
            };
        let idem_key = idempotency_key.map(|k| (keys::id_key(Tag::Idempotency, &k), k));
        if let Some((k, _)) = &idem_key {
            if let Some(acks) = lookup(seen, k)? {
                return Ok(acks.into_iter().map(|a| AckEntry { duplicate: true, ..a }).collect());
            }
        }
        let now = stamp.map_or_else(crmhook_core::time::now_ms, |(at_ms, _)| at_ms);
        let mut acks = Vec::with_capacity(events.len());
        let mut local = Writes::default();
        let mut new_events = Vec::with_capacity(events.len());
        for new in events {
            let ext_key = new.external_id.as_ref().map(|x| keys::id_key(Tag::External, x));
            if let Some(k) = &ext_key {
                if let Some(mut found) = lookup(seen, k)? {
                    if let Some(a) = found.pop() {
                        acks.push(AckEntry { duplicate: true, ..a });
                        continue;
                    }
                }
            }
            let seq = self.next_seq;
            let id = match stamp {
                // Each event of the request its own bits, the same on every copy.
                Some((_, random)) => EventId::with_parts(now, random.wrapping_add(acks.len() as u16), seq),
                None => EventId::with_seq(now, seq),
            };
            let event = Event::from_new(new, seq, id, now);
            let ack = AckEntry::first(&event);
            if let Some(k) = ext_key {
                local.insert(k.clone(), codec::encode(&ack)?);
                seen.insert(k, vec![ack.clone()]);
            }
            acks.push(ack);
            new_events.push(event);
            self.next_seq += 1;
        }
        if let Some((k, key)) = idem_key {
            local.insert(k.clone(), codec::encode(&acks)?);
            seen.insert(k, acks.clone());
            // Kept in the chunk, so that the `K` record can be a single write after it; a request
            // that names earlier events keeps the group one batch.
            match (acks.first(), u32::try_from(acks.len())) {
                (Some(first), Ok(count)) if acks.iter().all(|a| !a.duplicate) => {
                    group.requests.push(RequestKeyV1 { key, first_seq: first.seq, count });
                }
                _ => group.batch_only = true,
            }
        }
        local.into_batch(&mut group.batch, &mut Blocks::default(), &self.tree, &mut 0); // events and acks only: no requests
        group.fresh.append(&mut new_events);
        Ok(acks)
    }
}

/// Answers a group's requests with its result.
fn answer(replies: Vec<Reply>, result: &Result<()>) {
    let failure = |e: &StoreError| match e {
        StoreError::Io(e) => StoreError::Io(e.clone()),
        StoreError::NoSpace(e) => StoreError::NoSpace(e.clone()),
        other => StoreError::Io(other.to_string()),
    };
    for r in replies {
        match r {
            Reply::Append(tx, acks) => {
                let _ = tx.send(result.as_ref().map(|()| acks).map_err(failure));
            }
            Reply::Write(tx) => {
                let _ = tx.send(result.as_ref().copied().map_err(failure));
            }
            Reply::Refused(tx) => {
                let _ = tx.send(Err(StoreError::Changed));
            }
        }
    }
}

impl Store {
    pub(crate) async fn write(&self, writes: Writes) -> Result<()> {
        self.write_with(writes, When::Flushed).await
    }

    pub(crate) async fn write_with(&self, writes: Writes, when: When) -> Result<()> {
        if let Some(link) = &self.inner.replica {
            return link.write(writes, when == When::Held).await;
        }
        self.write_here(writes, when).await
    }

    /// Writes on this node only, also in replica mode (the console's charts' counts).
    pub(crate) async fn write_here(&self, writes: Writes, when: When) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        let op = Op::Write { writes, when, reply };
        if when == When::Held {
            if self.inner.lazy.push(op).map_err(|_| StoreError::Closed)? {
                // Full: the writer is busy and takes what is held with its next group.
                let _ = self.inner.tx.try_send(Op::Nudge);
            }
        } else {
            self.inner.tx.send(op).await.map_err(|_| StoreError::Closed)?;
        }
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

#[cfg(test)]
mod tests;
