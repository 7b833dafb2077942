//! Replica mode: the store as one node's copy of a replicated log (cluster mode, issue 16).
//!
//! In replica mode the writer thread takes no request straight from its callers. Every write
//! a caller makes (an append, a batch of delivery state, a configuration change, an audit
//! entry…) is encoded as an *op* and handed to the replication ([`Replica::take_outgoing`]),
//! which publishes ops, a few at a time, as *entries* of a log replicated elsewhere (a
//! JetStream stream, `crmhook-cluster`). Every node reads every entry back in the log's order
//! and gives it to [`Replica::apply`]; the writer applies the entry's ops as if they had been
//! queued locally, in that order, and records the entry's position (`M replicated`) in the same
//! sled batch. A caller is answered when its own op is applied on its own node: after the
//! replicated log has the entry (a quorum holds it) and this copy shows it.
//!
//! What makes every copy the same: ops are applied in the log's order by the same code; an
//! append carries the time it was received (so its event id is the same everywhere); the `n` of
//! numbered keys (`O`, `U`) comes from the entry's position; deduplication (Idempotency-Key,
//! Maximizer `Id`, MAIA body hash) reads the copy, which holds exactly the entries before.
//!
//! Durability moves to the replicated log: an entry's ops are applied without a local flush
//! (sled writes them within `flush_every_ms`), and after a crash a node reads the log again
//! from the entry after `M replicated`. A copy is never the only place anything is kept,
//! except the console's charts' counts ([`crate::Store::put_stats`]), which stay local.
//!
//! A new log may start from a single node's store (`crmhook cluster import`): its first entries
//! are [`Store::restore_entries`], that store's records put as they are; after the last one
//! each copy's writer reads its head and index window back from its tree, as at open.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crmhook_core::NewEvent;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::batch::{Write, Writes};
use crate::keys::{self, Tag};
use crate::records::AckEntry;
use crate::stored::NewEventV1;
use crate::writer::{Op, When};
use crate::{codec, events::PendingAppend, read_u64, Result, Store, StoreError};

/// Ops waiting to be published, by default; past it appends are refused (`Busy`).
pub const OUTGOING: usize = 4096;

/// One op to publish: the node's number for it, and its bytes.
#[derive(Debug)]
pub struct Outgoing {
    pub nonce: u64,
    pub op: Vec<u8>,
    /// A lazy write (a finished delivery, the charts' counts): it may wait a little for other
    /// ops to share its entry, as lazy writes wait for a group commit on a single node.
    pub lazy: bool,
    /// An op that goes in an entry of its own (retention, `replica/retention.rs`).
    pub alone: bool,
}

/// The replication's side of a store in replica mode.
pub struct Replica {
    store: Store,
    outgoing: Mutex<Option<mpsc::Receiver<Outgoing>>>,
    /// The last entry handed to the writer.
    handed: AtomicU64,
}

/// Where a caller waits for its op to be applied.
enum Waiter {
    Append(oneshot::Sender<Result<Vec<AckEntry>>>),
    Write(oneshot::Sender<Result<()>>),
    /// Retention: how many records went.
    Count(oneshot::Sender<Result<u64>>),
}

/// What a store in replica mode holds: the node, its callers waiting, and the way out.
pub(crate) struct Link {
    node: u64,
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, Waiter>>,
    out: mpsc::Sender<Outgoing>,
}

/// The ops on the wire (record version 1). Positional (bincode): a layout never changes; a new
/// one is a new version, and a new op is a new variant at the end (an entry of an op a build
/// does not know is skipped by it, loudly: see [`Replica::apply`]).
#[derive(Serialize, Deserialize)]
enum WireOp {
    Append {
        at_ms: u64,
        random: u16,
        events: Vec<NewEventV1>,
        idempotency_key: Option<String>,
    },
    Write {
        writes: Vec<WireWrite>,
    },
    /// Records of a single node's store, put as they are (`crmhook cluster import`, see
    /// [`Store::restore_entries`]); `last`: the restore ends with this op.
    Restore {
        records: Vec<WireRecord>,
        last: bool,
    },
    /// A call of retention (`replica/retention.rs`), applied by every copy at its place in the
    /// log: `what` is 0 for the events (those of `seqs`, and the idempotency records `keys`), 1
    /// for the quarantine and 2 for the audit trail (at most `max` kept before `cutoff_ms`).
    Retain {
        what: u8,
        cutoff_ms: u64,
        max: u64,
        seqs: Vec<u64>,
        keys: Vec<EntryOp>,
    },
}

/// A record as its store holds it: key and value.
#[derive(Serialize, Deserialize)]
struct WireRecord(
    #[serde(with = "crmhook_core::event::bytes")] Vec<u8>,
    #[serde(with = "crmhook_core::event::bytes")] Vec<u8>,
);

#[derive(Serialize, Deserialize)]
enum WireWrite {
    Put(#[serde(with = "crmhook_core::event::bytes")] Vec<u8>, #[serde(with = "crmhook_core::event::bytes")] Vec<u8>),
    Remove(#[serde(with = "crmhook_core::event::bytes")] Vec<u8>),
    Finish(
        #[serde(with = "crmhook_core::event::bytes")] Vec<u8>,
        u64,
        #[serde(with = "crmhook_core::event::bytes")] Vec<u8>,
    ),
    Unfinish(#[serde(with = "crmhook_core::event::bytes")] Vec<u8>, u64),
    Numbered(u8, u64, #[serde(with = "crmhook_core::event::bytes")] Vec<u8>),
    /// An expectation (`Write::Expect`): the record's bytes, empty for none (a record is never
    /// empty: it starts with its version byte).
    Expect(
        #[serde(with = "crmhook_core::event::bytes")] Vec<u8>,
        #[serde(with = "crmhook_core::event::bytes")] Vec<u8>,
    ),
}

/// An entry of the replicated log (record version 1): the node that published it and its ops.
#[derive(Serialize, Deserialize)]
struct EntryV1 {
    node: u64,
    ops: Vec<(u64, EntryOp)>,
}

#[derive(Serialize, Deserialize)]
struct EntryOp(#[serde(with = "crmhook_core::event::bytes")] Vec<u8>);

impl Link {
    pub(crate) fn new(node: u64, capacity: usize) -> (Link, mpsc::Receiver<Outgoing>) {
        let (out, rx) = mpsc::channel(capacity.max(1));
        (Link { node, next: AtomicU64::new(0), waiting: Mutex::default(), out }, rx)
    }

    fn wait(&self, waiter: Waiter) -> Result<u64> {
        let nonce = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.waiting.lock().map_err(|_| StoreError::Io("replica lock poisoned".into()))?.insert(nonce, waiter);
        Ok(nonce)
    }

    fn forget(&self, nonce: u64) -> Option<Waiter> {
        self.waiting.lock().ok()?.remove(&nonce)
    }

    /// Hands an append to the replication at once (`Busy` when its queue is full).
    pub(crate) fn append(&self, events: Vec<NewEvent>, idempotency_key: Option<String>) -> Result<PendingAppend> {
        let op = WireOp::Append {
            at_ms: crmhook_core::time::now_ms(),
            random: rand::rng().next_u32() as u16,
            events: events.into_iter().map(NewEventV1::from).collect(),
            idempotency_key,
        };
        let op = codec::encode(&op)?;
        let (reply, rx) = oneshot::channel();
        let nonce = self.wait(Waiter::Append(reply))?;
        self.out.try_send(Outgoing { nonce, op, lazy: false, alone: false }).map_err(|e| {
            self.forget(nonce);
            match e {
                mpsc::error::TrySendError::Full(_) => StoreError::Busy,
                mpsc::error::TrySendError::Closed(_) => StoreError::Closed,
            }
        })?;
        Ok(PendingAppend::new(rx))
    }

    /// Hands writes to the replication and waits until they are applied here; `lazy`: they
    /// may wait for company ([`Outgoing::lazy`]).
    pub(crate) async fn write(&self, writes: Writes, lazy: bool) -> Result<()> {
        let op =
            codec::encode(&WireOp::Write { writes: writes.0.into_iter().map(wire_write).collect::<Result<_>>()? })?;
        let (reply, rx) = oneshot::channel();
        let nonce = self.wait(Waiter::Write(reply))?;
        if self.out.send(Outgoing { nonce, op, lazy, alone: false }).await.is_err() {
            self.forget(nonce);
            return Err(StoreError::Closed);
        }
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

fn wire_write(write: Write) -> Result<WireWrite> {
    Ok(match write {
        Write::Put(k, v) => WireWrite::Put(k, v),
        Write::Remove(k) => WireWrite::Remove(k),
        Write::Finish(k, seq, attempt) => WireWrite::Finish(k, seq, codec::encode_attempt(&attempt)?),
        Write::Unfinish(k, seq) => WireWrite::Unfinish(k, seq),
        Write::Numbered(tag, at_ms, v) => WireWrite::Numbered(tag.byte(), at_ms, v),
        Write::Expect(k, v) => WireWrite::Expect(k, v.unwrap_or_default()),
    })
}

fn local_write(write: WireWrite) -> Result<Write> {
    Ok(match write {
        WireWrite::Put(k, v) => Write::Put(k, v),
        WireWrite::Remove(k) => Write::Remove(k),
        WireWrite::Finish(k, seq, attempt) => Write::Finish(k, seq, codec::decode_attempt(&attempt)?),
        WireWrite::Unfinish(k, seq) => Write::Unfinish(k, seq),
        WireWrite::Numbered(tag, at_ms, v) => {
            let tag = Tag::of(tag).ok_or_else(|| StoreError::Codec(format!("no keyspace {tag}")))?;
            Write::Numbered(tag, at_ms, v)
        }
        WireWrite::Expect(k, v) => Write::Expect(k, (!v.is_empty()).then_some(v)),
    })
}

/// Whether a write changes configuration the routers hold (targets, subscriptions, disabled
/// targets): applying it tells [`Store::watch_config`].
fn touches_config(write: &Write) -> bool {
    match write {
        Write::Put(k, _) | Write::Remove(k) => is_config(k),
        _ => false,
    }
}

fn is_config(key: &[u8]) -> bool {
    [Tag::Target, Tag::Subscription, Tag::Disabled].iter().any(|t| key.first() == Some(&t.byte()))
}

impl Store {
    /// Opens the store in `dir` in replica mode (see the module docs): its writes go to the
    /// returned [`Replica`]'s outgoing ops, and it changes only by [`Replica::apply`]. `node`
    /// names this node in the entries it publishes (distinct per node and per start).
    pub fn open_replica(dir: &std::path::Path, options: crate::Options, node: u64) -> Result<Replica> {
        let (link, rx) = Link::new(node, OUTGOING);
        let store = Store::open_inner(dir, options, Some(link))?;
        let handed = store.replicated()?;
        Ok(Replica { store, outgoing: Mutex::new(Some(rx)), handed: AtomicU64::new(handed) })
    }

    /// The last entry of the replicated log applied here (0: none), once its group is settled:
    /// its events are at the head. (Its position reaches the tree with the group's batch, a
    /// moment before the head moves.)
    pub fn replicated(&self) -> Result<u64> {
        Ok(self.inner.replicated.load(Ordering::Acquire))
    }
}

/// The meta name of the last entry applied.
pub(crate) const REPLICATED: &str = "replicated";

/// The last entry applied, as the tree holds it (read at open).
pub(crate) fn replicated_in(tree: &sled::Tree) -> Result<u64> {
    Ok(tree.get(keys::meta(REPLICATED))?.map(|v| read_u64(&v)).transpose()?.unwrap_or(0))
}

impl Replica {
    /// The store, to hand to dispatch and the edge.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// This node's number in the entries.
    pub fn node(&self) -> u64 {
        self.link().map_or(0, |l| l.node)
    }

    fn link(&self) -> Option<&Link> {
        self.store.inner.replica.as_ref()
    }

    /// The ops to publish (once: the publisher takes it).
    pub fn take_outgoing(&self) -> Option<mpsc::Receiver<Outgoing>> {
        self.outgoing.lock().ok()?.take()
    }

    /// The last entry given to [`Replica::apply`] (after a restart: the last applied).
    pub fn handed(&self) -> u64 {
        self.handed.load(Ordering::Acquire)
    }

    /// An entry of `node`'s ops, to publish.
    pub fn encode_entry(node: u64, ops: Vec<Outgoing>) -> Result<Vec<u8>> {
        codec::encode(&EntryV1 { node, ops: ops.into_iter().map(|o| (o.nonce, EntryOp(o.op))).collect() })
    }

    /// The nonces of an entry this node encoded (to fail them if publishing fails): an entry
    /// that could not be encoded was not published ([`StoreError::Io`]); one the log did not
    /// acknowledge may still be in it ([`StoreError::Unacknowledged`], `published`).
    pub fn fail(&self, nonces: &[u64], why: &str, published: bool) {
        let Some(link) = self.link() else { return };
        let error =
            || if published { StoreError::Unacknowledged(why.to_owned()) } else { StoreError::Io(why.to_owned()) };
        for nonce in nonces {
            match link.forget(*nonce) {
                Some(Waiter::Append(tx)) => {
                    let _ = tx.send(Err(error()));
                }
                Some(Waiter::Write(tx)) => {
                    let _ = tx.send(Err(error()));
                }
                Some(Waiter::Count(tx)) => {
                    let _ = tx.send(Err(error()));
                }
                None => {}
            }
        }
    }

    /// Marks the log as failing (publishing does not succeed) or not: `/readyz` tells.
    pub fn set_failing(&self, failing: bool) {
        self.store.inner.failing.store(failing, Ordering::Release);
    }

    /// Hands the entry at position `seq` of the replicated log to the writer, after every entry
    /// before it. An entry at or before the last one handed is skipped (a log read again).
    pub async fn apply(&self, seq: u64, entry: &[u8]) -> Result<()> {
        if seq <= self.handed() {
            return Ok(());
        }
        let (ops, mut retain) = match self.decode_entry(entry) {
            Ok(decoded) => decoded,
            Err(e) => {
                // An entry this build cannot read (written by a newer one): its position is
                // recorded so that the rest can follow, and the error is loud.
                tracing::error!(seq, error = %e, "an entry of the replicated log could not be read; skipped");
                (Vec::new(), Vec::new())
            }
        };
        if ops.is_empty() && retain.len() == 1 {
            return self.apply_retention(seq, retain.remove(0)).await;
        }
        for call in retain {
            // A node publishes each call of retention in an entry of its own: one that shares
            // its entry is skipped by every copy alike.
            tracing::warn!(seq, "a call of retention shared its entry with other ops; skipped");
            call.answer(Ok(0));
        }
        let config = ops.iter().any(|op| match op {
            Op::Write { writes, .. } => writes.0.iter().any(touches_config),
            Op::Restore { records, .. } => records.iter().any(|(k, _)| is_config(k)),
            _ => false,
        });
        self.store.inner.tx.send(Op::Entry { seq, ops, config }).await.map_err(|_| StoreError::Closed)?;
        self.handed.store(seq, Ordering::Release);
        Ok(())
    }

    /// An entry's ops for the writer, and its calls of retention.
    fn decode_entry(&self, entry: &[u8]) -> Result<(Vec<Op>, Vec<retention::Call>)> {
        let EntryV1 { node, ops } = codec::decode(entry)?;
        let mine = self.link().filter(|l| l.node == node);
        let mut out = Vec::with_capacity(ops.len());
        let mut retain = Vec::new();
        for (nonce, EntryOp(bytes)) in ops {
            let waiter = mine.and_then(|l| l.forget(nonce));
            match codec::decode::<WireOp>(&bytes)? {
                WireOp::Append { at_ms, random, events, idempotency_key } => {
                    let reply = match waiter {
                        Some(Waiter::Append(tx)) => tx,
                        _ => oneshot::channel().0,
                    };
                    let events = events.into_iter().map(NewEvent::from).collect();
                    out.push(Op::Append { events, idempotency_key, stamp: Some((at_ms, random)), reply });
                }
                WireOp::Write { writes } => {
                    let reply = match waiter {
                        Some(Waiter::Write(tx)) => tx,
                        _ => oneshot::channel().0,
                    };
                    let mut writes = Writes(writes.into_iter().map(local_write).collect::<Result<_>>()?);
                    crate::quarantine::index_replicated(&mut writes);
                    out.push(Op::Write { writes, when: When::Applied, reply });
                }
                WireOp::Restore { records, last } => {
                    let records =
                        records.into_iter().map(|WireRecord(k, v)| (k, v)).filter(|(k, _)| !stays_local(k)).collect();
                    out.push(Op::Restore { records, last });
                }
                WireOp::Retain { what, cutoff_ms, max, seqs, keys } => {
                    let reply = match waiter {
                        Some(Waiter::Count(tx)) => Some(tx),
                        _ => None,
                    };
                    let choice = crate::compact::Choice {
                        seqs: seqs.into_iter().collect(),
                        keys: keys.into_iter().map(|EntryOp(k)| k).collect(),
                        ..Default::default()
                    };
                    retain.push(retention::Call { what, cutoff_ms, max, choice, reply });
                }
            }
        }
        Ok((out, retain))
    }
}

/// The most bytes of records in one entry of [`Store::restore_entries`], by default: NATS's
/// default `max_payload` is 1 MiB (a record larger than it goes alone in its entry).
pub const RESTORE_BYTES: usize = 512 * 1024;

/// Whether a record stays on its node, never restored on another: this copy's position in the
/// replicated log (`M replicated`), the console's charts' counts (`M stats:*`, what this node
/// did), a migration's progress (`M migrated_through`).
fn stays_local(key: &[u8]) -> bool {
    key == keys::meta(REPLICATED).as_slice()
        || key == keys::migrated_through().as_slice()
        || key.starts_with(&keys::meta(crate::stats::STATS_PREFIX))
}

impl Store {
    /// The entries that make every copy of a new replicated log equal to this store
    /// (`crmhook cluster import`: a single node's data dir, stopped, into a new cluster): its
    /// records in key order, as bytes (nothing is decoded: a store opened without its key is
    /// copied whole, its sealed secrets still sealed), but those that stay on their node
    /// (`M replicated`, `M stats:*`), in entries of about `entry_bytes` each. Each entry's op
    /// puts its records as they are; after the last one each copy reads its head and index
    /// window back from its tree, as at open. They must be the log's first entries, applied
    /// to copies with empty data dirs.
    pub fn restore_entries(&self, entry_bytes: usize) -> RestoreEntries {
        RestoreEntries { records: self.inner.tree.iter(), next: None, entry_bytes, copied: 0, done: false }
    }
}

/// The entries of [`Store::restore_entries`], in order.
pub struct RestoreEntries {
    records: sled::Iter,
    /// The record read ahead (to know whether an entry is the last).
    next: Option<(Vec<u8>, Vec<u8>)>,
    entry_bytes: usize,
    copied: u64,
    done: bool,
}

impl RestoreEntries {
    /// The records put in the entries given so far.
    pub fn records(&self) -> u64 {
        self.copied
    }

    fn read(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        if let Some(record) = self.next.take() {
            return Ok(Some(record));
        }
        for kv in self.records.by_ref() {
            let (k, v) = kv?;
            if !stays_local(&k) {
                return Ok(Some((k.to_vec(), v.to_vec())));
            }
        }
        Ok(None)
    }

    fn entry(&mut self) -> Result<Vec<u8>> {
        let mut records = Vec::new();
        let mut bytes = 0;
        while let Some((k, v)) = self.read()? {
            if !records.is_empty() && bytes + k.len() + v.len() > self.entry_bytes {
                self.next = Some((k, v));
                break;
            }
            bytes += k.len() + v.len() + 16; // and their lengths
            records.push(WireRecord(k, v));
        }
        let last = self.next.is_none();
        self.done = last;
        self.copied += records.len() as u64;
        let op = codec::encode(&WireOp::Restore { records, last })?;
        // Node 0: no node's callers wait for these ops.
        Replica::encode_entry(0, vec![Outgoing { nonce: 0, op, lazy: false, alone: false }])
    }
}

impl Iterator for RestoreEntries {
    type Item = Result<Vec<u8>>;

    fn next(&mut self) -> Option<Result<Vec<u8>>> {
        if self.done {
            return None;
        }
        let entry = self.entry();
        if entry.is_err() {
            self.done = true;
        }
        Some(entry)
    }
}

mod retention;
#[cfg(test)]
mod tests;

pub(crate) use retention::Retain;
