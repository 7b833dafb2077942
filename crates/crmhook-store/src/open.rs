//! Opening and closing a store: sled's database, the log format (a log of format 1 is migrated,
//! see `migrate`), the head, the writer thread, and the index window read back from the log.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};

use crmhook_core::Event;
use tokio::sync::{mpsc, oneshot, watch};

use crate::finished::Blocks;
use crate::index::{chunk_start, IndexWindow, WindowPostings};
use crate::keys::{self, Tag};
use crate::migrate::migrate_from_format_1;
use crate::replica::Link;
use crate::seal::{Seal, SealKey};
use crate::stored::{
    sealed_record, SourceV1, SourceV2, TargetOptionsV2, TargetV1, TargetV2, TargetV3, TargetV5, CLEAR_OPTIONS2_VERSION,
    CLEAR_OPTIONS_VERSION, SEALED_OPTIONS2_VERSION, SEALED_OPTIONS_VERSION, SEALED_VERSION,
};
use crate::writer::{Op, Writer};
use crate::{codec, read_u64, Inner, Options, Result, Store, StoreError, FORMAT};

impl Store {
    /// Opens (or creates) the store in `dir` and starts its writer thread.
    pub fn open(dir: &std::path::Path) -> Result<Store> {
        Store::open_with(dir, Options::default())
    }

    /// [`Store::open`] with tuning options.
    pub fn open_with(dir: &std::path::Path, options: Options) -> Result<Store> {
        Store::open_inner(dir, options, None)
    }

    pub(crate) fn open_inner(dir: &std::path::Path, options: Options, replica: Option<Link>) -> Result<Store> {
        let Options { queue, cache_bytes, record_window, key } = options;
        let db = open_db(dir, cache_bytes)?;
        let tree = db.open_tree("crmhook")?;
        check_format(&db, &tree)?;
        let seal = open_seal(&db, &tree, key)?;
        let window = Arc::new(Mutex::new(IndexWindow {
            through: 0,
            events: 0,
            limit: record_window.max(1),
            postings: WindowPostings::default(),
        }));
        // Nobody holds the store yet: the writer adds nothing to the window meanwhile.
        let head = read_back(&tree, &window)?;
        crate::quarantine::index_at_open(&tree)?;
        let head_atomic = Arc::new(AtomicU64::new(head));
        let replicated = Arc::new(AtomicU64::new(crate::replica::replicated_in(&tree)?));
        let (head_tx, head_rx) = watch::channel(head);
        let (tx, rx) = mpsc::channel(queue.max(1));
        let (bulk, bulk_rx) = mpsc::channel(queue.max(1));
        let (config_tx, config_rx) = watch::channel(0);
        let (keys_tx, keys_rx) = watch::channel(0);
        let failing = Arc::new(AtomicBool::new(false));
        let (broken, broken_rx) = watch::channel(false);
        let chunks = Arc::new(Mutex::new(crate::cache::ChunkCache::default()));
        let sources = Arc::new(crate::sources::SourceCache::default());
        let writer = Writer {
            db: db.clone(),
            tree: tree.clone(),
            next_seq: head + 1,
            head: head_atomic.clone(),
            head_tx,
            failing: failing.clone(),
            broken,
            window: window.clone(),
            // Distinct from every earlier process's numbers, unless one made 65,536 requests
            // and the next started within the same millisecond.
            requests: crmhook_core::time::now_ms() << 16,
            replica: replica.is_some(),
            config_tx,
            keys_tx,
            chunks: chunks.clone(),
            kept_blocks: Default::default(),
            sources: sources.clone(),
            slow: Default::default(),
            replicated: replicated.clone(),
            settling: None,
        };
        let lazy = Arc::new(crate::writer::Lazy::default());
        let handle = writer.spawn(crate::writer::Queues::new(rx, bulk_rx), lazy.clone())?;
        Ok(Store {
            inner: Arc::new(Inner {
                db,
                tree,
                tx,
                bulk,
                lazy,
                head: head_atomic,
                head_rx,
                writer: Mutex::new(Some(handle)),
                failing,
                broken: broken_rx,
                chunks,
                window,
                unrecorded: Mutex::default(),
                seal,
                replica,
                config_rx,
                keys_rx,
                sources,
                replicated,
                quarantining: Default::default(),
                compact_from: AtomicU64::new(0),
                // What a pass stopped by the last run's end owed is not on disk: the first pass
                // after a start looks for the keys of events no longer in the log, once.
                keys_owed: std::sync::atomic::AtomicBool::new(true),
            }),
        })
    }

    /// Stops the writer after the requests already queued, and flushes. Later writes fail with
    /// [`StoreError::Closed`].
    pub async fn close(&self) {
        let (done, stopped) = oneshot::channel();
        let stop = async {
            if self.inner.tx.send(Op::Stop(done)).await.is_ok() {
                // The writer answers after its last flush, so the join below does not wait.
                let _ = stopped.await;
            }
        };
        // A flush that never ends (sled after a write refused by a full disk) would hold the
        // stop forever. Everything acknowledged is on disk already: stop without the writer,
        // as a `kill -9` would, rather than hang.
        if tokio::time::timeout(CLOSE_WAIT, stop).await.is_err() {
            tracing::error!(
                waited_s = CLOSE_WAIT.as_secs(),
                "the log writer did not stop (its flush does not end: a disk error?); stopping without it, \
                 everything acknowledged is on disk"
            );
            return;
        }
        let handle = self.inner.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            let _ = handle.join();
        }
        let _ = self.inner.db.flush();
    }
}

/// How long [`Store::close`] waits for the log writer's last flush.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// sled's database in `dir`.
fn open_db(dir: &std::path::Path, cache_bytes: usize) -> Result<sled::Db> {
    let config = sled::Config::new()
        .path(dir)
        .mode(sled::Mode::HighThroughput)
        .cache_capacity(cache_bytes as u64)
        .flush_every_ms(Some(500));
    // The file lock of a store that was just closed in this process is released when sled's
    // background threads let go of it; wait a little for that rather than fail.
    let mut tries = 0;
    loop {
        match config.open() {
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                if tries == 100 {
                    // sled's own message is the debug form of an EWOULDBLOCK: say what it means.
                    return Err(StoreError::InUse);
                }
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return Ok(other?),
        }
    }
}

/// Checks `M format`: a new tree is given this build's, a log of the first format (no
/// `M format`) is migrated, any other format is refused.
fn check_format(db: &sled::Db, tree: &sled::Tree) -> Result<()> {
    let format_key = keys::format();
    match tree.get(&format_key)? {
        Some(v) if codec::decode::<String>(&v)? == FORMAT => {}
        Some(v) => {
            let found: String = codec::decode(&v)?;
            return Err(StoreError::Codec(format!("log format {found}; this build reads format {FORMAT}")));
        }
        None if tree.first()?.is_some() => {
            migrate_from_format_1(tree)?;
            db.flush()?;
        }
        None => {
            tree.insert(&format_key, codec::encode(&FORMAT.to_owned())?)?;
        }
    }
    Ok(())
}

/// The meta key of the sealed check value (`seal`).
const SEALED: &str = "sealed";

/// How the store keeps secrets, from its key and `M sealed`: with no key, in clear (a data dir
/// that never had sealed records) or locked (one that has); with a key, the key must open
/// `M sealed` (else it is the wrong key: refused), and the records still in clear are sealed
/// now. Runs before the writer starts.
fn open_seal(db: &sled::Db, tree: &sled::Tree, key: Option<SealKey>) -> Result<Seal> {
    let check = tree.get(keys::meta(SEALED))?;
    let Some(key) = key else {
        return Ok(if check.is_some() { Seal::Locked } else { Seal::Clear });
    };
    if let Some(v) = &check {
        let sealed: Vec<u8> = codec::decode(v)?;
        if !key.opens_check(&sealed) {
            return Err(StoreError::Key(
                "the key does not open this data dir's sealed records: they were sealed with another key".into(),
            ));
        }
    }
    seal_clear_records(db, tree, &key, check.is_none())?;
    Ok(Seal::Key(key))
}

/// Seals the targets and sources still in clear (record version 1: written before sealing, or
/// by a store opened without a key), and writes `M sealed` when `first`, in one batch, flushed.
/// sled keeps the replaced values in its files until it rewrites their segments.
fn seal_clear_records(db: &sled::Db, tree: &sled::Tree, key: &SealKey, first: bool) -> Result<()> {
    let mut batch = sled::Batch::default();
    let mut sealed = 0;
    for kv in tree.scan_prefix(Tag::Target.prefix()) {
        let (k, v) = kv?;
        // Versions 1, 3 and 5 (in clear; 3 and 5 with options) become 4, or 6 with a rate
        // limit; 2, 4 and 6 are sealed.
        let (clear, options) = match v.first() {
            Some(&CLEAR_OPTIONS2_VERSION) => {
                let v5: TargetV5 = codec::decode_as(CLEAR_OPTIONS2_VERSION, &v)?;
                (v5.target, v5.options)
            }
            Some(&CLEAR_OPTIONS_VERSION) => {
                let v3: TargetV3 = codec::decode_as(CLEAR_OPTIONS_VERSION, &v)?;
                (v3.target, v3.options.into())
            }
            Some(&SEALED_VERSION | &SEALED_OPTIONS_VERSION | &SEALED_OPTIONS2_VERSION) => continue,
            _ => {
                let v1: TargetV1 = codec::decode(&v)?;
                let options = TargetOptionsV2::of(&crmhook_core::Target::from(v1.clone()));
                (v1, options)
            }
        };
        batch.insert(k, sealed_record(TargetV2::seal(clear, key)?, options)?);
        sealed += 1;
    }
    for kv in tree.scan_prefix(Tag::Source.prefix()) {
        let (k, v) = kv?;
        if v.first() != Some(&SEALED_VERSION) {
            let clear: SourceV1 = codec::decode(&v)?;
            batch.insert(k, codec::encode_as(SEALED_VERSION, &SourceV2::seal(clear, key)?)?);
            sealed += 1;
        }
    }
    if first {
        batch.insert(keys::meta(SEALED), codec::encode(&key.check()?)?);
    }
    if first || sealed > 0 {
        tree.apply_batch(batch)?;
        db.flush()?;
    }
    if sealed > 0 {
        tracing::info!(records = sealed, "sealed the secrets of targets and sources kept in clear");
    }
    Ok(())
}

/// What the store holds in memory of its tree, read from it: the index window (the postings of
/// the events after `M indexed`, read back from the log; whole windows of its `limit` events
/// are written out first if there are more, as after a migration) and the last seq given,
/// answered. At open, and in replica mode after a copy's records were restored wholesale
/// (`replica`); the caller holds the only writer (the writer thread, or none yet).
pub(crate) fn read_back(tree: &sled::Tree, window: &Mutex<IndexWindow>) -> Result<u64> {
    let mut window = window.lock().map_err(|_| StoreError::Io("the index window's lock is poisoned".into()))?;
    let mut through = tree.get(keys::indexed())?.map(|v| read_u64(&v)).transpose()?.unwrap_or(0);
    let limit = window.limit;
    *window = IndexWindow { through, events: 0, limit, postings: WindowPostings::default() };
    restore_request_keys(tree, through)?;
    loop {
        let events = events_after(tree, through, limit)?;
        restore_event_keys(tree, &events)?;
        match events.last().map(|e| e.seq) {
            Some(last) if events.len() >= limit => {
                let mut postings = WindowPostings::default();
                postings.add(&events);
                let mut batch = sled::Batch::default();
                postings.writes(through + 1, last)?.into_batch(&mut batch, &mut Blocks::default(), tree, &mut 0);
                tree.apply_batch(batch)?;
                through = last;
                window.written_out(last);
            }
            _ => {
                window.add(&events);
                break;
            }
        }
    }
    last_seq_given(tree)
}

/// Writes again the deduplication key (`X`) of each of `events` that has one (`external_id`) and
/// whose key is missing: a group of single writes logs its chunk before its events' keys
/// (`keys::single_write_rank`), so a crash between the two leaves logged events without their
/// keys, and always after `M indexed` (written after them). Answers how many were written.
pub(crate) fn restore_event_keys(tree: &sled::Tree, events: &[Event]) -> Result<usize> {
    let mut batch = sled::Batch::default();
    let mut restored = 0;
    for e in events {
        let Some(x) = &e.external_id else { continue };
        let k = keys::id_key(Tag::External, x);
        if tree.get(&k)?.is_none() {
            let ack = crate::AckEntry::first(e);
            batch.insert(k, codec::encode(&ack)?);
            restored += 1;
        }
    }
    if restored > 0 {
        tree.apply_batch(batch)?;
        tracing::warn!(restored, "wrote again the deduplication keys of events logged just before a crash");
    }
    Ok(restored)
}

/// Writes again the `Idempotency-Key` record (`K`) of each request whose chunk keeps its key
/// (record version 4) and whose record is missing, for the chunks after `through` (`M
/// indexed`): a group of single writes logs the chunk before the `K` record
/// (`keys::single_write_rank`), so a crash between the two leaves the request's events logged
/// without it, and always after `M indexed` (written after it). The record is the request's
/// acknowledgement, rebuilt from its events, all new (the writer keeps a request that names
/// earlier events in a batch). Answers how many were written.
pub(crate) fn restore_request_keys(tree: &sled::Tree, through: u64) -> Result<usize> {
    let from = through + 1;
    let start = chunk_start(tree, from)?;
    let mut batch = sled::Batch::default();
    let mut restored = 0;
    for kv in tree.range(start..Tag::Event.end()) {
        let (_, v) = kv?;
        for request in codec::decode_request_keys(&v)? {
            let k = keys::id_key(Tag::Idempotency, &request.key);
            if request.first_seq < from || tree.get(&k)?.is_some() {
                continue;
            }
            let count = request.count as usize;
            let events = events_after(tree, request.first_seq - 1, count)?;
            if events.len() != count || events.first().map(|e| e.seq) != Some(request.first_seq) {
                tracing::warn!(
                    seq = request.first_seq,
                    "a request's events are not all in the log: its key is not written again"
                );
                continue;
            }
            let acks: Vec<crate::AckEntry> = events.iter().map(crate::AckEntry::first).collect();
            batch.insert(k, codec::encode(&acks)?);
            restored += 1;
        }
    }
    if restored > 0 {
        tree.apply_batch(batch)?;
        tracing::warn!(restored, "wrote again the idempotency keys of requests logged just before a crash");
    }
    Ok(restored)
}

/// Up to `n` events after `through`, read from their chunks (not through the store's cache).
fn events_after(tree: &sled::Tree, through: u64, n: usize) -> Result<Vec<Event>> {
    let from = through + 1;
    let start = chunk_start(tree, from)?;
    let mut events = Vec::new();
    for kv in tree.range(start..Tag::Event.end()) {
        let (_, v) = kv?;
        events.extend(codec::decode_events(&v)?.into_iter().filter(|e| e.seq >= from));
        if events.len() >= n {
            events.truncate(n);
            break;
        }
    }
    Ok(events)
}

/// The last seq ever given: the last event's in the log, or `M head` if compaction removed the
/// newest events too (seqs are never given twice).
fn last_seq_given(tree: &sled::Tree) -> Result<u64> {
    let last_event = match tree.scan_prefix(Tag::Event.prefix()).next_back() {
        Some(kv) => {
            let (_, v) = kv?;
            let chunk: Vec<Event> = codec::decode_events(&v)?;
            chunk.last().map_or(0, |e| e.seq)
        }
        None => 0,
    };
    let kept_head = tree.get(keys::head())?.map(|v| read_u64(&v)).transpose()?.unwrap_or(0);
    Ok(last_event.max(kept_head))
}

#[cfg(test)]
mod tests {
    use crate::test_support::{events, rt};
    use crate::Store;

    /// A snapshot whose write never finished (the empty `snap.….generating` a start on a full
    /// disk left) does not stop the next open: sled reads its last whole snapshot and the log
    /// (vendor/README.md, change 5). It refused every later open, as if the log were corrupt.
    #[test]
    fn an_unfinished_snapshot_does_not_stop_an_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        rt().block_on(async {
            let store = Store::open(dir.path()).expect("open");
            store.append(events(3), None).await.expect("append");
            store.close().await;
        });
        std::fs::write(dir.path().join("snap.FFFFFFFFFFFFFFFF.generating"), b"").expect("an unfinished snapshot");
        let store = Store::open(dir.path()).expect("open beside an unfinished snapshot");
        assert_eq!(store.head(), 3);
        assert_eq!(store.events_from(1).count(), 3);
    }
}
