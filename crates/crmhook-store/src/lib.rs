//! crmhook's store: the event log and every other record, on sled. Only this crate touches
//! sled, and only its `codec` module touches bincode.
//!
//! # On-disk format
//!
//! One sled database in the data dir, one tree (`crmhook`) whose keys start with a one-byte
//! keyspace tag. Integers in keys are big-endian so that sled's order is their order. Every
//! value is a record written by [`codec::encode`]: a version byte (`1`) and the bincode body;
//! event chunks are version `2` (which added `source_id`), and version `1` chunks are still
//! read (see [`codec::decode_events`]). The records are the store's own layouts (`stored`:
//! `EventV2`, `TargetV1`, `SubscriptionV1`, `SourceV1`; and `records`), converted explicitly
//! to and from the core types: bincode is positional, so a core type is never encoded as it is.
//!
//! | key | value | what |
//! | --- | --- | --- |
//! | `E` seq:u64 | `Vec<Event>` | the event log in chunks: the events from seq on, in seq order (see below) |
//! | `K` idempotency-key | `Vec<AckEntry>` | the acknowledgement of a request with an `Idempotency-Key` |
//! | `X` event key | [`AckEntry`] | an event's own idempotency key (a Maximizer `Id`; for a MAIA source's event `maia:` and 128 bits of the SHA-256 of its source id and exact bytes, in hex) → its acknowledgement |
//! | `T` tgt_id | [`Target`] | targets |
//! | `S` sub_id | [`Subscription`] | subscriptions |
//! | `Z` src_id | [`Source`] | sources (a Maximizer source's key only as its SHA-256) |
//! | `Q` rej_id | [`Rejected`] | the quarantine: a piece of a source's request that was not an event, with its exact bytes; removed by retention ([`Store::compact_quarantine`]) |
//! | `C` tgt_id | seq:u64 | a target's cursor: every event up to it has been matched for it, and each delivery it owed is finished (`L`, `F`) or pending (`P`) |
//! | `W` tgt_id | seq:u64 | how far a target had matched: deliveries after `C` and up to here may already have records |
//! | `P` tgt_id seq:u64 | [`Pending`] | a delivery still owed that has been attempted (a retry) or queued again |
//! | `A` seq:u64 tgt_id n:u32 | [`Attempt`] | one delivery attempt that did not finish the delivery (append-only) |
//! | `D` tgt_id | [`Disabled`] | a target that is not delivered to (410 Gone, or an operator) |
//! | `L` tgt_id state:u8 block:u64 | `Vec<(u64, Attempt)>` | finished deliveries (state `d` delivered, `x` dead) of the seqs `block * 64 ..= block * 64 + 63`, each with its last attempt, in seq order (see below) |
//! | `F` tgt_id state:u8 seq:u64 | [`Attempt`] | legacy: one finished delivery, as written before the `L` blocks; still read |
//! | `O` at_ms:u64 n:u64 | [`Request`] | an operator's redeliver or replay, with who asked |
//! | `Y` len:u16 type seq:u64 | `Vec<u64>` | index: seqs of one window's events of a type, from seq on |
//! | `R` bucket:u8 seq:u64 | `Vec<(String, Vec<u64>)>` | index: by record id (MAIA `recordId`, Maximizer `Key`), one window |
//! | `G` len:u16 kanban_id seq:u64 | `Vec<u64>` | index: the same by kanban |
//! | `N` len:u16 src_id seq:u64 | `Vec<u64>` | index: the same by source (events posted to `/in/{id}`) |
//! | `I` evt_id | seq:u64 | legacy: the id index of events written by format 1 (see below) |
//! | `M` name | string | meta: generated tokens; `format`; `head`, the last seq ever given (u64); `indexed`, the last seq in the on-disk indexes (u64) |
//!
//! **Chunks.** The events are numbered 1, 2, 3… with no gaps, but stored a few at a time: the
//! writer cuts the events of one group commit into chunks of at most [`CHUNK_EVENTS`] events or
//! about [`CHUNK_BYTES`] bytes, each stored under the seq of its first event. The event at a seq
//! is in the last chunk keyed at or before it. sled's cost is per key (each insert copies a
//! B-tree leaf), so a chunk of 16 costs about what one event did; chunks stay small because sled
//! writes a leaf of 16 keys as one log item and moves items past ~128 KiB to blob files.
//!
//! **Index postings, by window.** The indexes are not written with each group commit: the
//! writer gathers the postings of the events after `M indexed` in memory (`IndexWindow`, shared
//! with readers) and, once they number [`RECORD_WINDOW`] events, writes them out in the batch of
//! the group that fills the window, `M indexed` moving in the same batch. A window writes one
//! `Y`/`G` posting per type and kanban (the seqs of its events with that value, under the first
//! of them), and one `R` key per record-id bucket used (FNV-1a of the record id,
//! [`RECORD_BUCKETS`] buckets; record ids are mostly distinct, so a key per record id would be a
//! key per event), under the window's first seq, holding that bucket's record ids, sorted, with
//! their seqs. The postings of one index value hold disjoint, increasing seq ranges, so the one
//! that may hold a seq is the last keyed at or before it. A reader takes the window's memory
//! first, then the postings on disk up to `indexed`: `GET /v1/events` filters walk an index,
//! never the whole log. At start-up the memory window is read back from the log after
//! `indexed` (at most one window of events; whole windows are written out first if there are
//! more), so a crash loses nothing of the indexes.
//!
//! **Finished deliveries in blocks.** The attempt that finished a delivery (delivered, or
//! dead) is stored in its target's `L` block for its state and its seq's block of
//! [`FINISHED_BLOCK`] (64) seqs, not under `A`: most deliveries succeed on their first attempt,
//! and sled's cost is per key; worse, sled 0.34 splits a B-tree leaf as soon as it holds more
//! than 16 keys, so a key per delivery, appended in seq order, split a leaf every ~8
//! deliveries. The earlier attempts of a delivery stay under `A`. Only the writer thread
//! changes a block: a batch carries "set this delivery" and "take this delivery out" (`Write`),
//! and the writer reads the block, changes it (one copy per group commit, so the writes of a
//! group see each other's changes) and writes it whole. Compaction, which does not go through
//! the writer, only removes the blocks wholly before the first event left in the log: no
//! delivery in them can be owed, finished or queued again, since their events are gone (a
//! block that also covers events still in the log keeps its entries, those of removed events
//! included, until the rest go: the dead count may include up to 63 of them). When a finished
//! delivery is queued again (redeliver, replay) or its target is deleted, its attempt moves to
//! an `A` key in the same batch, so attempt history is never lost.
//!
//! Deliveries finished before the blocks (2026-11-26) have an `F` key each. They are read,
//! listed, counted, queued again and deleted as before, next to the blocks; nothing is
//! rewritten at open. An `F` value of the version byte alone (written before finished
//! deliveries kept their attempt) holds no attempt; that delivery's attempts are all under `A`.
//!
//! **First attempts are not written down.** A target matches the log from its cursor and
//! keeps the deliveries it is owed in memory; one becomes a `P` entry only when an attempt
//! fails (the retry's schedule must survive a restart) and an `L` entry when it finishes. The
//! cursor `C` is the low-water mark (everything up to it is recorded), and `W` bounds the
//! range after it whose deliveries may already be recorded; at start-up a target matches from
//! `C` again and skips the deliveries in `(C, W]` that have records. So a first delivery that
//! succeeds costs one entry in a block. The first attempts in memory are shown to readers (pending
//! listings and counts) through [`Unrecorded`], which each target actor keeps up to date.
//!
//! **Event ids carry their seq** (the low 64 bits of the id, see
//! [`crmhook_core::EventId::with_seq`]): an event is found from its id by reading its chunk and
//! comparing the whole id; there is no id index (but the legacy `I` keys of a migrated log).
//!
//! **Format.** `M format` is `2` (chunks). A data dir of the first format (one event per `E` key,
//! an `I` id index, one valueless `Y`/`R`/`G` key per event and index; no `M format`) is
//! migrated at open: events are regrouped into chunks and the old index keys removed, in batches
//! that each record their progress (`M migrated_through`), so a crash resumes the migration;
//! then the index windows are written from the chunks. The `I` keys of those events stay,
//! since their ids do not carry their seq.
//!
//! Ids have a fixed length per kind (`tgt_` + 26 characters), so composite keys need no
//! separator.
//!
//! # Writes and durability
//!
//! Every write goes through one writer thread. It takes whatever requests are queued (up to
//! [`MAX_GROUP`]), applies them as one atomic sled batch, calls `flush` once, and only then
//! answers each request. So many concurrent ingest requests share one flush (group commit), and
//! no actix arbiter thread ever waits on a flush: callers await a oneshot answer.
//!
//! A group holding only lazy delivery-state writes (a cursor move, a successful or dead
//! delivery: states a crash can only roll back into a repetition) is applied without a flush;
//! sled writes it within 500 ms, or with the next flush. The records of finished deliveries
//! may also wait up to [`LAZY_HOLD`] (2 ms) for other writes: every sled batch costs two writes
//! of its log buffer on sled's thread pool (which wakes all seven of its idle threads), whatever
//! the batch's size, so fewer, larger batches save a good part of the delivery path's CPU.
//!
//! # Recovery rules
//!
//! - An event is acknowledged only after the flush that contains it returned: it survives a
//!   `kill -9` of the process at any later moment.
//! - A cursor moves only past deliveries that are finished or pending on disk, in the same
//!   batch as (or after) the records that make them so; an attempt record and the pending entry
//!   it replaces or removes are written in one batch too. After a crash the store is at a batch
//!   boundary, so a target resumes from its cursor and pending entries: deliveries in flight at
//!   the crash are attempted again (at least once).
//! - sled 0.34's `flush` writes and fsyncs its log file, but does not fsync the directory or
//!   metadata of newly created segment files. After a power loss (not a process crash) the
//!   most recent writes may therefore be lost on some file systems; see `docs/RELIABILITY.md`.

/// Public for the benchmarks: the bare limit of the log.
#[doc(hidden)]
pub mod baseline;
/// Public for the benchmarks; the store's callers never need it.
#[doc(hidden)]
pub mod codec;
pub mod records;
mod stored;

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crmhook_core::TargetId;
use tokio::sync::{mpsc, watch};

mod batch;
mod cache;
mod compact;
mod config;
mod deliveries;
mod events;
mod finished;
mod index;
mod keys;
mod migrate;
mod open;
mod queries;
mod writer;

use cache::ChunkCache;
use index::{last_at_or_before, IndexWindow};
use writer::Op;

pub use batch::DeliveryBatch;
pub use cache::EventRef;
pub use deliveries::{DeliveryStatus, Unrecorded};
pub use events::PendingAppend;
pub use finished::FINISHED_BLOCK;
pub use index::{RECORD_BUCKETS, RECORD_WINDOW};
pub use queries::EventFilter;

pub use records::{AckEntry, Attempt, AttemptResult, Disabled, Final, Pending, Rejected, Request, Retried};

/// Most requests one group commit takes.
pub const MAX_GROUP: usize = 1024;
/// How long lazy writes (delivery state a crash can only roll back into a repetition) wait for
/// other writes to share their sled batch.
pub const LAZY_HOLD: std::time::Duration = std::time::Duration::from_millis(2);
/// How many write requests may wait for the writer by default; past it ingest is refused (503).
pub const QUEUE: usize = 4096;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage I/O error: {0}")]
    Io(String),
    #[error("the log writer is busy; try again shortly")]
    Busy,
    #[error("the store is closed")]
    Closed,
    #[error("a record could not be decoded: {0}")]
    Codec(String),
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Most events in one chunk of the log.
pub const CHUNK_EVENTS: usize = 16;
/// A chunk takes no more events once its payloads reach this many bytes.
pub const CHUNK_BYTES: usize = 4096;
/// The log format this build writes and reads (`M format`).
const FORMAT: &str = "2";

fn read_u64(bytes: &[u8]) -> Result<u64> {
    codec::decode(bytes)
}

/// Tuning of a store.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Write requests that may wait for the writer; past it appends fail with `Busy`.
    pub queue: usize,
    /// sled's page cache: the largest part of the process's memory under load.
    pub cache_bytes: usize,
    /// Events whose index postings are gathered in memory before they are written out.
    pub record_window: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { queue: QUEUE, cache_bytes: CACHE_BYTES, record_window: RECORD_WINDOW }
    }
}

/// Default size of sled's page cache.
pub const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    tree: sled::Tree,
    tx: mpsc::Sender<Op>,
    head: Arc<AtomicU64>,
    head_rx: watch::Receiver<u64>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// The last group commit failed (disk full, I/O error); cleared by the next success.
    failing: Arc<AtomicBool>,
    chunks: Mutex<ChunkCache>,
    window: Arc<Mutex<IndexWindow>>,
    unrecorded: Mutex<std::collections::HashMap<TargetId, Unrecorded>>,
}

impl Store {
    /// Bytes the database takes on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.inner.db.size_on_disk().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DELETE_STEP;
    use crate::index::{index_prefixes, record_bucket};
    use crate::keys::{self, Tag};
    use crate::migrate::migrate_from_format_1;
    use crmhook_core::event::parse_ingest;
    use crmhook_core::{Event, EventId, NewEvent};

    fn events(n: usize) -> Vec<NewEvent> {
        let body: Vec<String> =
            (0..n).map(|i| format!(r#"{{"eventType":"crm_field_update","recordId":"r{i}","kanbanId":"k"}}"#)).collect();
        parse_ingest(format!("[{}]", body.join(",")).as_bytes()).expect("valid")
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime")
    }

    #[test]
    fn appends_number_the_log_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        rt().block_on(async {
            let store = Store::open(dir.path()).expect("open");
            let a = store.append(events(2), None).await.expect("append");
            let b = store.append(events(1), None).await.expect("append");
            assert_eq!(a.iter().chain(&b).map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
            assert_eq!(store.head(), 3);
            let e2 = store.event_by_id(&a[1].id).expect("read").expect("found");
            assert_eq!(e2.seq, 2);
            assert_eq!(e2.record_id.as_deref(), Some("r1"));
            store.close().await;
        });
        drop(rt());
        rt().block_on(async {
            let store = Store::open(dir.path()).expect("reopen");
            assert_eq!(store.head(), 3);
            assert_eq!(store.events_from(2).count(), 2);
            let c = store.append(events(1), None).await.expect("append");
            assert_eq!(c[0].seq, 4);
            store.close().await;
        });
    }

    #[test]
    fn idempotency_keys_and_maximizer_ids_answer_the_first_ack() {
        let dir = tempfile::tempdir().expect("tempdir");
        rt().block_on(async {
            let store = Store::open(dir.path()).expect("open");
            let first = store.append(events(2), Some("key-1".into())).await.expect("append");
            let again = store.append(events(2), Some("key-1".into())).await.expect("append");
            assert_eq!(
                again.iter().map(|a| (&a.id, a.seq, a.duplicate)).collect::<Vec<_>>(),
                first.iter().map(|a| (&a.id, a.seq, true)).collect::<Vec<_>>()
            );
            let mx = include_str!("../../../data/samples/maximizer/opportunity_stage_change.json");
            let m1 = store.append(parse_ingest(mx.as_bytes()).expect("valid"), None).await.expect("append");
            let m2 = store.append(parse_ingest(mx.as_bytes()).expect("valid"), None).await.expect("append");
            assert!(!m1[0].duplicate && m2[0].duplicate && m1[0].seq == m2[0].seq);
            assert_eq!(store.head(), 3);
            store.close().await;
        });
    }

    #[test]
    fn concurrent_appends_share_flushes_and_get_distinct_seqs() {
        let dir = tempfile::tempdir().expect("tempdir");
        rt().block_on(async {
            let store = Store::open(dir.path()).expect("open");
            let tasks: Vec<_> = (0..200)
                .map(|_| {
                    let s = store.clone();
                    tokio::spawn(async move { s.append(events(1), None).await })
                })
                .collect();
            let mut seqs = Vec::new();
            for t in tasks {
                seqs.push(t.await.expect("join").expect("append")[0].seq);
            }
            seqs.sort_unstable();
            assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
            store.close().await;
        });
    }

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
            store.write_deliveries(b).await.expect("write");
            // Too recent: nothing goes.
            assert_eq!(store.compact(0, 100).expect("compact"), 0);
            // Event 2 is still owed: 1 and 3 go.
            assert_eq!(store.compact(u64::MAX, 100).expect("compact"), 2);
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

    const TYPES: [&str; 3] = ["crm_field_update", "crm_record_created", "crm_record_deleted"];

    /// `n` events of the three `TYPES` in round robin, record ids `r<i % 10>` and kanbans
    /// `k<i % 2>`.
    fn mixed(from: usize, n: usize) -> Vec<NewEvent> {
        let body: Vec<String> = (from..from + n)
            .map(|i| format!(r#"{{"eventType":"{}","recordId":"r{}","kanbanId":"k{}"}}"#, TYPES[i % 3], i % 10, i % 2))
            .collect();
        parse_ingest(format!("[{}]", body.join(",")).as_bytes()).expect("valid")
    }

    /// Every filter, from every starting point, answers what a scan of the log answers.
    fn assert_filters_match_a_scan(store: &Store) {
        let all: Vec<Event> = store.events_from(1).map(|e| e.expect("event")).collect();
        let filters = [
            EventFilter { event_type: Some(TYPES[1].into()), ..Default::default() },
            EventFilter { kanban_id: Some("k0".into()), ..Default::default() },
            EventFilter { record_id: Some("r3".into()), ..Default::default() },
            EventFilter { record_id: Some("r8".into()), kanban_id: Some("k0".into()), ..Default::default() },
            EventFilter { record_id: Some("r99".into()), ..Default::default() },
            EventFilter { event_type: Some(TYPES[2].into()), kanban_id: Some("k1".into()), ..Default::default() },
            EventFilter { event_type: Some("nope".into()), ..Default::default() },
        ];
        for f in &filters {
            for after in [0, 1, 5, 20, 41, 47, 60, 68] {
                for limit in [1, 3, 100] {
                    let got: Vec<u64> =
                        store.events_page(f, after, limit).expect("page").iter().map(|e| e.seq).collect();
                    let want: Vec<u64> =
                        all.iter().filter(|e| e.seq > after && f.admits(e)).map(|e| e.seq).take(limit).collect();
                    assert_eq!(got, want, "{f:?} after {after} limit {limit}");
                }
            }
        }
    }

    #[test]
    fn chunks_and_postings_read_back_like_one_key_per_event() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A small window: some record-id postings are written out, the last ones stay in memory.
        let options = Options { record_window: 9, ..Default::default() };
        rt().block_on(async {
            let store = Store::open_with(dir.path(), options).expect("open");
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
            let store = Store::open_with(dir, options).expect("open migrates");
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

    fn target() -> crmhook_core::Target {
        crmhook_core::Target::create(
            serde_json::json!({"name": "t", "url": "https://a.example"}).as_object().expect("object"),
            false,
            "whsec_x".into(),
            0,
        )
        .expect("target")
    }

    /// A new target, stored.
    async fn stored_target(store: &Store) -> crmhook_core::Target {
        let t = target();
        store.create_target(&t, 0).await.expect("target");
        t
    }

    /// A finished delivery as builds before the `L` blocks wrote it: an `F` key of its own.
    fn put_older_final(store: &Store, target: &TargetId, seq: u64, attempt: &Attempt) {
        let value = codec::encode(attempt).expect("encode");
        store.inner.tree.insert(keys::final_key(target, Final::Delivered, seq), value).expect("insert");
    }

    fn attempt(n: u32, result: AttemptResult) -> Attempt {
        Attempt {
            n,
            at_ms: u64::from(n),
            duration_ms: 2,
            outcome: crmhook_core::retry::Outcome::Status(200),
            result,
            round: 1,
        }
    }

    #[test]
    fn a_finished_deliverys_last_attempt_survives_requeue_and_target_deletion() {
        let dir = tempfile::tempdir().expect("tempdir");
        rt().block_on(async {
            let store = Store::open(dir.path()).expect("open");
            let t = stored_target(&store).await;
            let id = &t.id;
            let retrying = attempt(1, AttemptResult::Retrying { next_at_ms: 5 });
            let delivered = attempt(2, AttemptResult::Delivered);
            // 3 deliveries (seqs 1–3), each finished on its second attempt.
            let mut b = DeliveryBatch::default();
            for seq in 1..=3 {
                b.attempt(id, seq, &retrying).expect("encode");
                b.attempt(id, seq, &delivered).expect("encode");
            }
            store.write_deliveries(b).await.expect("write");
            assert_eq!(
                store.attempts(2).expect("read"),
                vec![(id.clone(), retrying.clone()), (id.clone(), delivered.clone())]
            );
            assert_eq!(store.final_attempt(id, 2).expect("read"), Some(delivered.clone()));
            assert_eq!(store.last_attempt(id, 2).expect("read"), Some(delivered.clone()));
            let listed = store.target_deliveries(id, Some(DeliveryStatus::Delivered), 0, 10).expect("read");
            assert_eq!(listed.len(), 3);

            // Queued again: pending, no longer final, and both attempts still listed.
            let mut b = DeliveryBatch::default();
            b.requeue(id, 2, Pending { attempt: 3, due_at_ms: 0, round: 3 }, Some(&delivered)).expect("encode");
            store.write_deliveries(b).await.expect("write");
            assert_eq!(store.final_attempt(id, 2).expect("read"), None);
            assert_eq!(store.last_attempt(id, 2).expect("read"), Some(delivered.clone()));
            assert_eq!(store.attempts_to(id, 2).expect("read"), vec![retrying.clone(), delivered.clone()]);
            assert!(store.is_pending(id, 2).expect("read"));

            // Deleted: every attempt stays, as history.
            store.delete_target(id).await.expect("delete");
            for seq in 1..=3 {
                assert_eq!(
                    store.attempts(seq).expect("read"),
                    vec![(id.clone(), retrying.clone()), (id.clone(), delivered.clone())]
                );
            }
            store.close().await;
        });
    }

    #[test]
    fn finished_deliveries_live_in_blocks_and_older_final_keys_still_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        rt().block_on(async {
            let store = Store::open(dir.path()).expect("open");
            store.append(events(200), None).await.expect("append");
            let t = stored_target(&store).await;
            let id = &t.id;
            let (delivered, dead) = (attempt(1, AttemptResult::Delivered), attempt(3, AttemptResult::Dead));
            // 200 deliveries over four blocks, in lazy writes sent at once: a group may change
            // one block several times.
            let mut writes = Vec::new();
            for seqs in (1..=200u64).collect::<Vec<_>>().chunks(7) {
                let mut b = DeliveryBatch::default();
                for &seq in seqs {
                    b.attempt(id, seq, if seq % 10 == 0 { &dead } else { &delivered }).expect("encode");
                }
                let store = store.clone();
                writes.push(tokio::spawn(async move { store.write_deliveries_held(b).await }));
            }
            for w in writes {
                w.await.expect("join").expect("write");
            }
            assert!(store.inner.tree.scan_prefix(Tag::Block.prefix()).count() <= 8, "one key per block and state");
            // A delivery finished before blocks: its own `F` key.
            put_older_final(&store, id, 300, &delivered);
            assert_eq!(store.final_attempt(id, 10).expect("read"), Some(dead.clone()));
            assert_eq!(store.final_attempt(id, 11).expect("read"), Some(delivered.clone()));
            assert_eq!(store.final_attempt(id, 300).expect("read"), Some(delivered.clone()));
            assert_eq!(store.final_attempt(id, 201).expect("read"), None);
            assert_eq!(store.delivery_counts(id).expect("read"), (0, 20));
            let pages = |status| {
                let (mut after, mut all) = (0, Vec::new());
                loop {
                    let page = store.target_deliveries(id, Some(status), after, 50).expect("read");
                    all.extend(page.iter().map(|(seq, _)| *seq));
                    match page.last() {
                        Some((seq, _)) if page.len() == 50 => after = *seq,
                        _ => return all,
                    }
                }
            };
            let mut want: Vec<u64> = (1..=200).filter(|s| s % 10 != 0).collect();
            want.push(300);
            assert_eq!(pages(DeliveryStatus::Delivered), want);
            assert_eq!(pages(DeliveryStatus::Dead), (1..=20).map(|i| i * 10).collect::<Vec<u64>>());

            // Queued again, from a block and from an older key: no longer final.
            let mut b = DeliveryBatch::default();
            for seq in [11, 300] {
                b.requeue(id, seq, Pending { attempt: 2, due_at_ms: 0, round: 2 }, Some(&delivered)).expect("encode");
            }
            b.requeue(id, 20, Pending { attempt: 4, due_at_ms: 0, round: 4 }, Some(&dead)).expect("encode");
            store.write_deliveries(b).await.expect("write");
            for seq in [11, 20, 300] {
                assert_eq!(store.final_attempt(id, seq).expect("read"), None);
                assert!(store.is_pending(id, seq).expect("read"));
            }
            assert_eq!(store.final_attempt(id, 12).expect("read"), Some(delivered.clone()));
            assert_eq!(store.delivery_counts(id).expect("read"), (3, 19));
            let mut b = DeliveryBatch::default();
            for seq in [11, 20, 300] {
                b.done(id, seq);
            }
            b.cursor(id, 200).expect("encode");
            store.write_deliveries(b).await.expect("write");

            // Compaction of the first 130 events: the blocks wholly before the first event left
            // (seqs 1–127) go; the block of 128–191 stays with all its entries.
            assert_eq!(store.compact(u64::MAX, 130).expect("compact"), 130);
            assert_eq!(store.final_attempt(id, 5).expect("read"), None);
            assert_eq!(store.final_attempt(id, 127).expect("read"), None);
            assert_eq!(store.final_attempt(id, 129).expect("read"), Some(delivered.clone()));
            assert_eq!(store.final_attempt(id, 150).expect("read"), Some(dead.clone()));

            // Deletion keeps every finished delivery's attempt under `A`.
            store.delete_target(id).await.expect("delete");
            assert_eq!(store.inner.tree.scan_prefix(Tag::Block.prefix()).count(), 0);
            assert_eq!(store.attempts(150).expect("read"), vec![(id.clone(), dead.clone())]);
            assert_eq!(store.attempts(199).expect("read"), vec![(id.clone(), delivered.clone())]);
            store.close().await;
        });
    }

    #[test]
    fn the_last_delivery_is_read_from_the_newest_block_and_older_final_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        rt().block_on(async {
            let store = Store::open(dir.path()).expect("open");
            let t = stored_target(&store).await;
            let id = &t.id;
            assert_eq!(store.last_delivered_at(id).expect("read"), None);
            let at = |n: u32, at_ms: u64, result| Attempt { at_ms, ..attempt(n, result) };
            // Only a dead delivery: no success.
            let mut b = DeliveryBatch::default();
            b.attempt(id, 1, &at(3, 50, AttemptResult::Dead)).expect("encode");
            store.write_deliveries(b).await.expect("write");
            assert_eq!(store.last_delivered_at(id).expect("read"), None);
            // An older `F` key alone, then blocks: the newest of the last block, and of `F`.
            put_older_final(&store, id, 2, &at(1, 70, AttemptResult::Delivered));
            assert_eq!(store.last_delivered_at(id).expect("read"), Some(70));
            let mut b = DeliveryBatch::default();
            b.attempt(id, 3, &at(1, 500, AttemptResult::Delivered)).expect("encode");
            b.attempt(id, 70, &at(1, 100, AttemptResult::Delivered)).expect("encode");
            b.attempt(id, 71, &at(2, 300, AttemptResult::Delivered)).expect("encode");
            b.attempt(id, 72, &at(1, 200, AttemptResult::Delivered)).expect("encode");
            store.write_deliveries(b).await.expect("write");
            assert_eq!(store.last_delivered_at(id).expect("read"), Some(300), "the last block's newest");
            // Its entries queued again: the block goes, the one before is the last.
            let mut b = DeliveryBatch::default();
            for seq in 70..=72 {
                b.requeue(id, seq, Pending { attempt: 2, due_at_ms: 0, round: 2 }, None).expect("encode");
            }
            store.write_deliveries(b).await.expect("write");
            assert_eq!(store.last_delivered_at(id).expect("read"), Some(500));
            store.close().await;
        });
    }

    #[test]
    fn deleting_a_target_moves_its_blocks_in_bounded_steps() {
        let dir = tempfile::tempdir().expect("tempdir");
        rt().block_on(async {
            let store = Store::open(dir.path()).expect("open");
            let t = stored_target(&store).await;
            let id = &t.id;
            let delivered = attempt(1, AttemptResult::Delivered);
            // More finished deliveries than one deletion step moves, and an older `F` key.
            let n = 3 * DELETE_STEP as u64 + 10;
            let mut b = DeliveryBatch::default();
            for seq in 1..=n {
                b.attempt(id, seq, &delivered).expect("encode");
            }
            store.write_deliveries(b).await.expect("write");
            put_older_final(&store, id, n + 1, &delivered);
            assert_eq!(store.target_deliveries(id, None, n - 2, 10).expect("read").len(), 3);
            store.delete_target(id).await.expect("delete");
            assert_eq!(
                store.inner.tree.scan_prefix(Tag::Block.prefix()).count()
                    + store.inner.tree.scan_prefix(Tag::Final.prefix()).count(),
                0
            );
            for seq in [1, DELETE_STEP as u64, n, n + 1] {
                assert_eq!(store.attempts(seq).expect("read"), vec![(id.clone(), delivered.clone())], "seq {seq}");
            }
            assert_eq!(store.inner.tree.scan_prefix(Tag::Attempt.prefix()).count() as u64, n + 1);
            store.close().await;
        });
    }

    #[test]
    fn delivery_state_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        rt().block_on(async {
            let store = Store::open(dir.path()).expect("open");
            let target = stored_target(&store).await;
            let t = target.id;
            let mut b = DeliveryBatch::default();
            b.cursor(&t, 7).expect("encode");
            b.pending(&t, 5, Pending::first(10)).expect("encode");
            b.pending(&t, 7, Pending { attempt: 2, due_at_ms: 20, round: 1 }).expect("encode");
            store.write_deliveries(b).await.expect("write");
            assert_eq!(store.cursor(&t).expect("read"), Some(7));
            assert_eq!(store.pending(&t, 10).expect("read").len(), 2);
            let mut b = DeliveryBatch::default();
            b.done(&t, 5);
            let attempt = attempt(1, AttemptResult::Delivered);
            b.attempt(&t, 5, &attempt).expect("encode");
            store.write_deliveries(b).await.expect("write");
            assert_eq!(
                store.pending(&t, 10).expect("read"),
                vec![(7, Pending { attempt: 2, due_at_ms: 20, round: 1 })]
            );
            assert_eq!(store.attempts(5).expect("read"), vec![(t.clone(), attempt)]);
            assert!(!store.is_pending(&t, 5).expect("read"));
            store.close().await;
        });
    }
}
