//! crmhook's store: the event log and every other record, on sled. Only this crate touches
//! sled, and only its `codec` module touches bincode.
//!
//! # Modules
//!
//! This file holds the format and recovery rules below, [`Store`], [`Options`] and
//! [`StoreError`]; `Store`'s methods are spread over the modules that own what they touch:
//!
//! - `keys`: the keyspace tags, the key builders and the one key parser.
//! - `codec`, `stored`, `records`: the records' bytes, the store's layouts of the core types,
//!   and the store's own record types.
//! - `open`: opening a data dir (the format, the head, the writer, the index window read back)
//!   and closing it; `migrate`: format 1 to format 2.
//! - `writer`: the writer thread and group commit; `batch`: the writes it applies
//!   ([`DeliveryBatch`] among them).
//! - `events`: appends and the log's reads; `cache`: the decoded chunks shared by readers.
//! - `index`: the index postings and the window in memory; `queries`: event listings.
//! - `finished`: the finished-delivery blocks (`L`) and legacy `F` keys; `deliveries`: the
//!   rest of delivery state and its reads.
//! - `config`: targets, subscriptions, sources and meta; `sources`: the sources kept decoded
//!   for ingest, forgotten by the writer when it changes one.
//! - `quarantine`: the pieces of sources' requests that were not events, and their indexes by
//!   source and by bytes.
//! - `seal`: the key ([`SealKey`]) that seals targets' and sources' secrets at rest.
//! - `compact`: retention of the log and of the quarantine (in replica mode each call is an
//!   entry of the replicated log: `replica/retention.rs`).
//! - `stats`: the counts of the console's charts (`M stats:<name>`, [`Series`]).
//!
//! # On-disk format
//!
//! One sled database in the data dir, one tree (`crmhook`) whose keys start with a one-byte
//! keyspace tag. Integers in keys are big-endian so that sled's order is their order. Every
//! value is a record written by [`codec::encode`]: a version byte (`1`) and the bincode body;
//! event chunks are version `3` (`2` added `source_id`, `3` the test mark), or `4` when they
//! hold the events of a request sent with an `Idempotency-Key` (version 3's events, then each
//! such request's key, first seq and count: `RequestKeyV1`), and chunks of versions `1` and `2`
//! are still read (see [`codec::decode_events`]); targets and sources are version `2` when sealed (see
//! below), and targets are now written as version `4` (sealed, with the options added since:
//! `TargetV4`) or `3` (in clear, `TargetV3`), or, with a rate limit, `6` (`TargetV6`) or `5`
//! (`TargetV5`); versions `1` and `2` read with each option at its default, `3` and `4` with no
//! rate limit. The records are the store's own layouts (`stored`:
//! `EventV3`, `TargetV4`, `SubscriptionV1`, `SourceV2`; and `records`), converted explicitly
//! to and from the core types: bincode is positional, so a core type is never encoded as it is.
//!
//! The value column names the layout on disk (`stored`'s structs are the core types' layouts;
//! the others are `records`' types, whose fields that are core types also go through `stored`).
//! Key layouts are built and parsed in one place, `keys` (`keys::Tag`, `keys::Key`).
//!
//! | key | value | what |
//! | --- | --- | --- |
//! | `E` seq:u64 | `Vec<EventV3>` (record version 3: with `test`, a test event of `POST /v1/targets/{id}/test`); `(Vec<EventV3>, Vec<RequestKeyV1>)` (version 4: a chunk that holds the first event of requests sent with an `Idempotency-Key` of their own, with those keys); `Vec<EventV2>` in version 2, `Vec<EventV1>` in version 1, still read | the event log in chunks: the events from seq on, in seq order (see below) |
//! | `K` idempotency-key | `Vec<AckEntry>` | the acknowledgement of a request with an `Idempotency-Key` (written again at open from its chunk's copy of the key if a crash came between the two) |
//! | `X` event key | [`AckEntry`] | an event's own idempotency key (a Maximizer `Id`; for a MAIA source's event `maia:` and 128 bits of the SHA-256 of its source id and exact bytes, in hex) → its acknowledgement |
//! | `T` tgt_id | `TargetV6` (record version 6: `TargetV2` and `TargetOptionsV2`, `response_body_bytes` and `rate_limit_per_s`; `TargetV5`, version 5, in clear), written for a target with a rate limit; `TargetV4` (record version 4: `TargetV2` and `TargetOptionsV1`, `response_body_bytes`), written for one without; `TargetV3` (version 3: `TargetV1` and the options, written without a key); `TargetV2` (record version 2: URL, header values, secret and previous secret sealed) and `TargetV1` (version 1, all in clear) still read ([`Target`](crmhook_core::Target)) | targets |
//! | `S` sub_id | `SubscriptionV1` ([`Subscription`](crmhook_core::Subscription)) | subscriptions |
//! | `Z` src_id | `SourceV2` (record version 2: the MAIA secret sealed); `SourceV1` (version 1, in clear) still read ([`Source`](crmhook_core::Source)) | sources (a Maximizer source's key only as its SHA-256) |
//! | `Q` rej_id | [`Rejected`] | the quarantine: a piece of a source's request that was not an event, with its exact bytes; rewritten with `retried` set once a retry logged it as an event; removed by retention ([`Store::compact_quarantine`]) |
//! | `B` src_id rej_id | `()` (the version byte alone) | the quarantine by source: each piece under its source, in id order, written and removed with its `Q` |
//! | `H` src_id digest | rej_id (string) | the quarantine by bytes: `digest` is 128 bits of the SHA-256 of how a piece is read (`body\n` or `element\n`) and its exact bytes; names the piece of the source that holds them (the same bytes posted again are held by it, not kept again); removed with the piece it names |
//! | `C` tgt_id | seq:u64 | a target's cursor: every event up to it has been matched for it, and each delivery it owed is finished (`L`, `F`) or pending (`P`) |
//! | `W` tgt_id | seq:u64 | how far a target had matched, written with a retry's schedule: deliveries after `C` and up to here (or up to the last seq in the target's `L` blocks, if higher) may already have records |
//! | `P` tgt_id seq:u64 | [`Pending`] | a delivery still owed that has been attempted (a retry) or queued again: the number of its next attempt, when it is due, and `round`, the attempt that began its round of the retry schedule (1, or a redelivery's or replay's first attempt) |
//! | `A` seq:u64 tgt_id n:u32 | [`Attempt`] (record version 2, with what the receiver answered, [`Response`]; version 1, without it, still read) | one delivery attempt that did not finish the delivery (append-only); `n` is [`Attempt::n`]; its `round` is as in `P` (`n == round > 1`: a redelivery's first attempt); also the attempt that finished one, when its answer is kept apart from its `L` block (below) |
//! | `D` tgt_id | [`Disabled`] | a target that is not delivered to (410 Gone, or an operator) |
//! | `L` tgt_id state:u8 block:u64 | `Vec<`[`BlockEntry`]`>` (record version 3: seq, attempt, whether its answer is kept apart; versions 2, `Vec<(u64, Attempt)>`, and 1, without answers, still read, and rewritten as 3 when the block changes) | finished deliveries (state `d` delivered, `x` dead) of the seqs `block * 64 ..= block * 64 + 63`, each with its last attempt, in seq order (see below) |
//! | `F` tgt_id state:u8 seq:u64 | [`Attempt`], or the version byte alone | legacy: one finished delivery, as written before the `L` blocks; still read |
//! | `O` at_ms:u64 n:u64 | [`Request`] | an operator's redeliver or replay, with who asked; `n` is given by the writer thread, counting from the process start time (ms) × 65,536, so two requests in one ms keep a key each, across restarts too |
//! | `U` at_ms:u64 n:u64 | [`AuditEntry`] | the audit trail: an admin change (who, from where, what, before and after without secrets) or a failed authentication; `n` as for `O`; removed by retention ([`Store::compact_audit`]) |
//! | `Y` len:u16 type seq:u64 | `Vec<u64>` | index: seqs of one window's events of a type, from seq on |
//! | `R` bucket:u8 seq:u64 | `Vec<(String, Vec<u64>)>` | index: by record id (MAIA `recordId`, Maximizer `Key`), one window |
//! | `G` len:u16 kanban_id seq:u64 | `Vec<u64>` | index: the same by kanban |
//! | `N` len:u16 src_id seq:u64 | `Vec<u64>` | index: the same by source (events posted to `/in/{id}`) |
//! | `I` evt_id | seq:u64 | legacy: the id index of events written by format 1 (see below) |
//! | `M` name | string, or u64, or bytes | meta: tokens, by token name, as `sha256:` and the hex SHA-256 of the token (the server's; a token kept in clear by an earlier build is rewritten so at start-up); `sealed`, a known value sealed by the key (bytes; see below); `format` (string); `head`, the last seq of the events a compaction removed, kept so that seqs are never given twice once the newest events may be gone (u64; written by compaction only: the head is the last chunk's last seq or this, whichever is higher; builds before 2026-12-04 wrote it with every group); `indexed`, the last seq in the on-disk indexes (u64); `stats:ingest` and `stats:<tgt_id>`, the counts of the console's charts ([`Series`], written lazily every few seconds); `migrated_through`, how far a migration from format 1 got (u64, only while it runs); `quarantine_indexed` (u64 1), written once the pieces kept before `B` and `H` existed have been indexed (at open) |
//!
//! **Sealed secrets.** A store opened with a key ([`Options::key`]) writes targets and sources
//! as record version 2, whose secrets (a target's URL, header values, secret and previous
//! secret; a MAIA source's secret) are each sealed with XChaCha20-Poly1305 under that key,
//! bound to their record and field (`seal`). The key is not in the data dir. `M sealed` tells
//! that the data dir has sealed records and which key: opened with another key the store is
//! refused ([`StoreError::Key`]); opened without one it is locked (the log reads, targets and
//! sources do not). Records of version 1 (in clear) are sealed at the first open with a key,
//! in one flushed batch (a data dir written before sealing, 2026-12-03, migrates then); a
//! store opened without a key on a data dir that never had sealed records still writes
//! version 1 (tests, tools).
//!
//! **Chunks.** The events are numbered 1, 2, 3… with no gaps, but stored a few at a time: the
//! writer cuts the events of one group commit into chunks of at most [`CHUNK_EVENTS`] events or
//! about [`CHUNK_BYTES`] bytes, each stored under the seq of its first event. The event at a seq
//! is in the last chunk keyed at or before it. sled's cost is per key (each insert copies a
//! B-tree leaf), so a chunk of 16 costs about what one event did; chunks stay small because sled
//! writes a leaf of 16 keys as one log item and moves items past ~128 KiB to blob files.
//!
//! **Index postings, by window.** The indexes are not written with each group commit: the
//! writer gathers the postings of the events after `M indexed` in memory (`index::IndexWindow`,
//! shared with readers) and, once they number [`RECORD_WINDOW`] events, writes them out in the batch of
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
//! changes a block: a batch carries "set this delivery" and "take this delivery out"
//! (`batch::Write`), and the writer reads the block, changes it (one copy per group commit, so the writes of a
//! group see each other's changes) and writes it whole. It keeps the blocks it wrote (up to 256,
//! `finished::KeptBlocks`), so that the next record for a block neither reads nor decodes it;
//! it starts again without them after a group that failed or restored records, and after a
//! compaction (the chunk cache's generation). Compaction removes, by itself, only the blocks
//! wholly before the first event left in the log: no delivery in them can be owed, finished or
//! queued again, since their events are gone. The removed events' entries in the other blocks
//! it has the writer take out ("take this delivery out", after the events' removal; a crash in
//! between leaves entries of removed events, which the dead count skips when they are before
//! the first event left, as it does for blocks written before 2026-12-07). When a finished
//! delivery is queued again (redeliver, replay) or its target is deleted, its attempt moves to
//! an `A` key in the same batch, so attempt history is never lost.
//!
//! A block is written whole whenever one of its deliveries finishes: at a low rate, where each
//! delivery finishes in a group of its own, what an entry holds is written again with each
//! later delivery of its block, up to 63 times. So an answer longer than
//! [`ANSWER_IN_BLOCK_BYTES`] (64 bytes of kept body and headers) is kept apart, in
//! its attempt's own `A` record, written once after the block; the entry says so
//! ([`BlockEntry::answer_apart`]) and the reads put the answer back (a crash between the two
//! writes leaves the entry without its answer). Kept in the blocks (before 2026-12-04),
//! answers of 4 KB made a delivery at 200 events/s write about 300 KB (issue 18).
//!
//! Deliveries finished before the blocks (2026-11-26) have an `F` key each. They are read,
//! listed, counted, queued again and deleted as before, next to the blocks; nothing is
//! rewritten at open. An `F` value of the version byte alone (written before finished
//! deliveries kept their attempt) holds no attempt; that delivery's attempts are all under `A`.
//!
//! **First attempts are not written down.** A target matches the log from its cursor and
//! keeps the deliveries it is owed in memory; one becomes a `P` entry only when an attempt
//! fails (the retry's schedule must survive a restart) and an `L` entry when it finishes. The
//! cursor `C` is the low-water mark (everything up to it is recorded), and the range after it
//! whose deliveries may already be recorded ends at `W` or at the last seq in the target's `L`
//! blocks, whichever is higher ([`Store::scanned`]); at start-up a target matches from `C` again
//! and skips the deliveries in that range that have records. `W` is written only with a retry's
//! schedule (`P`, in its flushed batch): the only records a target writes past its cursor
//! otherwise are finished deliveries, whose blocks bound themselves, so a finished delivery's
//! write is its block and the cursor (before 2026-12-04 it carried `W` too, one more key per
//! write). So a first delivery that succeeds costs one entry in a block. The first attempts in
//! memory are shown to readers (pending listings and counts) through [`Unrecorded`], which each
//! target actor keeps up to date.
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
//! [`MAX_GROUP`] requests, and no further request once it holds [`MAX_GROUP_SIZE`] events and
//! other writes), applies them as one group, calls `flush` once, and only then answers each
//! request. So many concurrent ingest requests share one flush (group commit), and no actix
//! arbiter thread ever waits on a flush: callers await a oneshot answer. Appends of
//! [`BULK_EVENTS`] events or more wait in a queue of their own, which a group takes from after
//! the main queue: with small requests in it, none if the group before took one, else one;
//! without, while it holds fewer than [`BULK_GROUP_SIZE`] events. A small request queued
//! behind large ones waits for the group in progress, not for all of them (`writer::Queues`).
//!
//! **How a group is applied.** A group is one atomic sled batch, except the common small ones:
//! a group whose writes are all inserts of chunks, events' own deduplication keys (`X`),
//! requests' idempotency keys (`K`) that name only the group's own events, index postings,
//! `M indexed`, `M head`, `W`, `L` blocks, `C` cursors and the charts' counts, with its events
//! in one chunk (events posted a few at a time, with or without an `Idempotency-Key`, a
//! source's included; finished deliveries with their cursors), is applied as single inserts in
//! an order where every prefix is a state the store can open (`keys::single_write_rank`:
//! chunks, the events' `X` keys and the requests' `K` keys, postings, `indexed`, the head; then
//! `W`, blocks, the answers kept apart from them, cursors). A crash between a chunk and those
//! keys leaves logged events without them: open writes them again before the store takes a
//! request, `X` from the events it reads back after `M indexed`
//! (`open::restore_event_keys`), `K` from the request's key that the chunk keeps (record
//! version 4, written only for such chunks; `open::restore_request_keys`). Until
//! 2026-12-04 an `X` key sent its group to a batch: on a MAIA source at 200 events/s that
//! was 4.4 more thread switches per event (sled's seven I/O threads woken) and about 0.1 ms more
//! CPU per event (PERFORMANCE.md, "Issue 18, tenth step"). sled recovers a prefix of its log (recovery stops at the first torn message), and
//! a batch costs sled two writes of its log buffer on its thread pool (it seals the buffer around
//! the batch's manifest) where single inserts cost only the flush's one: at 200 events/s this
//! is 5 of the server's 19 thread switches per event and about 14% of its CPU (issue 18).
//! Until 2026-12-05 a request's `K` key did the same (4.5 more thread switches per event at 200
//! events/s through `/v1/events` with an `Idempotency-Key`, "Issue 18, thirteenth step"); a
//! `K` key that names events logged before its request (an `Id` seen earlier) still does.
//! Pending deliveries (and so a retry's attempt, which goes with its
//! pending entry), configuration and every removal keep a batch, as does a group of more than
//! one chunk, so that no request is ever logged half-way.
//!
//! A group holding only lazy delivery-state writes (a cursor move, a successful or dead
//! delivery: states a crash can only roll back into a repetition) is applied without a flush;
//! sled writes it within 500 ms, or with the next flush. The records of finished deliveries
//! (held writes) do not even wake the writer while events are being logged (a durable write
//! within [`LIVE_INGEST`], 50 ms): they wait in a side queue (`writer::Lazy`) and ride with the
//! next ingest group, or go alone when that period ends; otherwise they wait up to
//! [`LAZY_HOLD`] (2 ms) for company. A hold never delays a durable write.
//!
//! # Recovery rules
//!
//! - An event is acknowledged only after the flush that contains it returned: it survives a
//!   `kill -9` of the process at any later moment.
//! - A cursor moves only past deliveries that are finished or pending on disk, in the same
//!   batch as (or after) the records that make them so; an attempt record and the pending entry
//!   it replaces or removes are written in one batch too. After a crash the store is at a batch
//!   boundary, or inside a group of single inserts at a point their order makes consistent
//!   (the head is read back from the last chunk; a `W` ahead of its blocks only makes a
//!   restart look for records it does not find; blocks written before their cursor bound the
//!   range a restart checks themselves), so a target resumes from its cursor and
//!   pending entries: deliveries in flight at the crash are attempted again (at least once).
//! - A request's events are in the log whole or not at all (one chunk or one batch).
//! - sled 0.34's `flush` writes and fsyncs its log file, but does not fsync the directory or
//!   metadata of newly created segment files. After a power loss (not a process crash) the
//!   most recent writes may therefore be lost on some file systems; see `docs/RELIABILITY.md`.
//! - A write the disk refused (a full disk, a failing device) is sled's answer to every later
//!   operation of that `Db`: the store is then broken for good ([`Store::watch_broken`]), and
//!   only closing it and opening the data dir again (which recovers the log to its last
//!   complete write, as after a crash) writes again. Nothing of the failed group was
//!   acknowledged; if its batch reached sled's memory before the flush failed, it may be in the
//!   log after the reopen (`docs/RELIABILITY.md`, "Disk trouble").

/// Public for the benchmarks: the bare limit of the log.
#[doc(hidden)]
pub mod baseline;
/// Public for the benchmarks; the store's callers never need it.
#[doc(hidden)]
pub mod codec;
pub mod records;
mod seal;
mod stored;
#[cfg(test)]
mod test_support;

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crmhook_core::TargetId;
use tokio::sync::{mpsc, watch};

mod api_keys;
mod audit;
mod batch;
mod cache;
mod compact;
mod config;
mod deliveries;
mod events;
mod finished;
mod index;
mod keys;
pub mod log;
mod migrate;
mod open;
mod quarantine;
mod queries;
pub mod replica;
mod sources;
mod stats;
mod writer;

use cache::ChunkCache;
use index::IndexWindow;
use writer::Op;

pub use api_keys::{ApiKeyRecord, KeyChange};
pub use audit::AuditCursor;
pub use batch::DeliveryBatch;
pub use cache::EventRef;
pub use deliveries::{DeliveryStatus, Unrecorded};
pub use events::PendingAppend;
pub use finished::{ANSWER_IN_BLOCK_BYTES, FINISHED_BLOCK};
pub use index::{RECORD_BUCKETS, RECORD_WINDOW};
pub use log::{Log, LogFuture, LogHandle};
pub use queries::EventFilter;
pub use replica::{Outgoing, Replica, RestoreEntries, RESTORE_BYTES};

pub use records::attempt_error;
pub use records::{
    AckEntry, Attempt, AttemptResult, AuditEntry, BlockEntry, Disabled, Final, Pending, Rejected, Request, Response,
    Retried, RESPONSE_HEADERS, RESPONSE_HEADER_BYTES,
};
pub use records::{LastFailure, Series, SeriesBucket};
pub use seal::SealKey;

/// Most requests one group commit takes.
pub const MAX_GROUP: usize = 1024;
/// Most events and other writes one group commit takes, past which it takes no further request
/// (so one request larger than this is a group of its own). sled holds what a batch changes in
/// memory until the batch is applied: without this, 64 requests of 13,000 events queued at once
/// (through a source, with their deduplication keys) were one batch and 9.4 GB of memory.
pub const MAX_GROUP_SIZE: usize = 16_384;
/// A request of this many events or more waits in the writer's bulk queue: a group takes what
/// the main queue holds first, then one bulk request if the group before took none (or, holding
/// no small request, as many as fit in [`BULK_GROUP_SIZE`]), so that a small request waits for
/// the group in progress, not for every large one queued before it (16 requests of 8,500 events
/// posted at once held a one-event request 2 s).
pub const BULK_EVENTS: usize = 1024;
/// A group of bulk requests takes no further one once it holds this many events: every request
/// that comes meanwhile waits for it (with 64 requests of 8,500 events posted at once, a
/// one-event request waited up to 0.7–1.1 s with [`MAX_GROUP_SIZE`] here, 0.55–0.7 s with this).
pub const BULK_GROUP_SIZE: usize = MAX_GROUP_SIZE / 2;
/// How long held writes (finished deliveries' records) wait for other writes to share their
/// group when no events are being logged.
pub const LAZY_HOLD: std::time::Duration = std::time::Duration::from_millis(2);
/// While events are being logged (a durable write came within this), held writes wait for the
/// next ingest group, or at most until this long after the last durable write, without waking
/// the writer.
pub const LIVE_INGEST: std::time::Duration = std::time::Duration::from_millis(50);
/// How many write requests may wait for the writer by default; past it ingest is refused (503).
pub const QUEUE: usize = 4096;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage I/O error: {0}")]
    Io(String),
    /// An I/O error for want of room: the disk or the user's quota full, or a file-size limit
    /// (ENOSPC, EDQUOT, EFBIG). Freeing space is all it takes to write again.
    #[error("storage I/O error: {0}")]
    NoSpace(String),
    #[error("the log writer is busy; try again shortly")]
    Busy,
    #[error("the store is closed")]
    Closed,
    #[error("a record could not be decoded: {0}")]
    Codec(String),
    /// The sealed records and the key: a missing or wrong key, or a key file that is not one.
    #[error("{0}")]
    Key(String),
    /// Another process holds the data dir's lock (sled's, on its `db` file).
    #[error("it is in use by another process (another crmhook may be running on it)")]
    InUse,
    /// A change's expectation no longer held when the writer reached it (`KeyChange::expect`):
    /// something else changed the record first; nothing was written.
    #[error("the record changed meanwhile; nothing was written")]
    Changed,
    /// Replica mode: the replicated log did not acknowledge the write (no quorum, or out of
    /// reach). It may still have it, and every copy then applies it: the write may be made.
    #[error("the replicated log did not acknowledge the write: {0}")]
    Unacknowledged(String),
}

impl StoreError {
    /// The device refused a read or a write (for want of room or otherwise).
    pub fn is_io(&self) -> bool {
        matches!(self, StoreError::Io(_) | StoreError::NoSpace(_))
    }

    /// An I/O error of this `kind`, said in `message`: [`StoreError::NoSpace`] when there was no
    /// room ([`no_room`]), else [`StoreError::Io`].
    pub fn io(message: String, kind: std::io::ErrorKind) -> StoreError {
        if no_room(kind) {
            StoreError::NoSpace(message)
        } else {
            StoreError::Io(message)
        }
    }
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        match &e {
            sled::Error::Io(io) => StoreError::io(e.to_string(), io.kind()),
            _ => StoreError::Io(e.to_string()),
        }
    }
}

/// Whether an I/O error says there is no room left to write (ENOSPC, EDQUOT, EFBIG).
pub fn no_room(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind::{FileTooLarge, QuotaExceeded, StorageFull};
    matches!(kind, StorageFull | QuotaExceeded | FileTooLarge)
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

/// Tuning of a store, and its key.
#[derive(Debug, Clone)]
pub struct Options {
    /// Write requests that may wait for the writer; past it appends fail with `Busy`.
    pub queue: usize,
    /// sled's page cache: the largest part of the process's memory under load.
    pub cache_bytes: usize,
    /// Events whose index postings are gathered in memory before they are written out.
    pub record_window: usize,
    /// The key that seals targets' and sources' secrets (`seal`). Without it a data dir with
    /// no sealed records keeps them in clear (record version 1, as before sealing), and one
    /// with sealed records opens locked: its log reads, its targets and sources do not.
    pub key: Option<SealKey>,
}

impl Default for Options {
    fn default() -> Self {
        Options { queue: QUEUE, cache_bytes: CACHE_BYTES, record_window: RECORD_WINDOW, key: None }
    }
}

/// Default size of sled's page cache.
pub const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

/// What every handle shares.
pub(crate) struct Inner {
    pub(crate) db: sled::Db,
    pub(crate) tree: sled::Tree,
    pub(crate) tx: mpsc::Sender<Op>,
    /// Appends of [`BULK_EVENTS`] events or more (see there).
    pub(crate) bulk: mpsc::Sender<Op>,
    /// Held writes, taken by the writer with its next group (`writer::Lazy`).
    pub(crate) lazy: Arc<writer::Lazy>,
    pub(crate) head: Arc<AtomicU64>,
    pub(crate) head_rx: watch::Receiver<u64>,
    pub(crate) writer: Mutex<Option<JoinHandle<()>>>,
    /// The last group commit failed (disk full, I/O error); cleared by the next success.
    pub(crate) failing: Arc<AtomicBool>,
    /// Becomes true, for good, once sled refused a write (`Writer::broken`).
    pub(crate) broken: watch::Receiver<bool>,
    /// Shared with the log writer, which puts the chunks it logs in.
    pub(crate) chunks: Arc<Mutex<ChunkCache>>,
    pub(crate) window: Arc<Mutex<IndexWindow>>,
    pub(crate) unrecorded: Mutex<std::collections::HashMap<TargetId, Unrecorded>>,
    /// How targets' and sources' secrets are kept (sealed with the key, or not).
    pub(crate) seal: seal::Seal,
    /// Replica mode: where writes go instead of the writer's queue (`replica`).
    pub(crate) replica: Option<replica::Link>,
    /// Held by a request's quarantine from its look-up of the bytes to its write
    /// (`quarantine::Stripes`).
    pub(crate) quarantining: quarantine::Stripes,
    /// Moves when an entry of the replicated log changed targets or subscriptions.
    pub(crate) config_rx: watch::Receiver<u64>,
    /// Moves when the writer changed the API keys' records (`api_keys`).
    pub(crate) keys_rx: watch::Receiver<u64>,
    /// The sources ingest reads, kept decoded; the writer forgets them when it changes one.
    pub(crate) sources: Arc<sources::SourceCache>,
    /// The last entry of the replicated log applied and settled (`Writer::replicated`).
    pub(crate) replicated: Arc<AtomicU64>,
    /// Where the next call of a compaction pass goes on (`compact`): the seq at which the last
    /// call stopped, its `max` reached; 0 once a call went to the end.
    pub(crate) compact_from: AtomicU64,
    /// Events were removed whose `Idempotency-Key` records the pass's last call has yet to look
    /// for (`Store::choose`); true at start-up, for what a pass stopped by a restart left.
    pub(crate) keys_owed: std::sync::atomic::AtomicBool,
}

impl Store {
    /// Bytes the database takes on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.inner.db.size_on_disk().unwrap_or(0)
    }
}

#[cfg(test)]
mod error_tests {
    use std::io::{Error, ErrorKind};

    use super::StoreError;

    #[test]
    fn a_disk_without_room_is_told_from_other_io_errors() {
        for kind in [ErrorKind::StorageFull, ErrorKind::QuotaExceeded, ErrorKind::FileTooLarge] {
            let e = StoreError::from(sled::Error::Io(Error::from(kind)));
            assert!(matches!(e, StoreError::NoSpace(_)) && e.is_io(), "{kind:?}: {e:?}");
        }
        // sled wraps the error it keeps in one of its own; the kind is what tells.
        let wrapped = Error::new(ErrorKind::StorageFull, format!("{:?}", Error::from_raw_os_error(28)));
        assert!(matches!(StoreError::from(sled::Error::Io(wrapped)), StoreError::NoSpace(_)));
        for kind in [ErrorKind::PermissionDenied, ErrorKind::Other] {
            let e = StoreError::from(sled::Error::Io(Error::from(kind)));
            assert!(matches!(e, StoreError::Io(_)) && e.is_io(), "{kind:?}: {e:?}");
        }
        assert!(!StoreError::Busy.is_io());
    }
}
