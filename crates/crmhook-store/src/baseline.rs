//! The bare limit of the event log, for `crmhook-bench`: raw sled appends of ready-made records
//! with the same flush grouping as the log writer (one writer thread; each group of queued
//! requests is one batch and one flush; each client waits for its flush). It lives here because
//! only this crate touches sled.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::StoreError;

/// Appends for `duration` from `clients` threads, each sending `batch` records of `record_len`
/// bytes per request and waiting for its flush; answers records per second.
pub fn raw_appends(
    dir: &std::path::Path,
    clients: usize,
    batch: usize,
    record_len: usize,
    duration: Duration,
) -> Result<f64, StoreError> {
    let db = sled::Config::new().path(dir).mode(sled::Mode::HighThroughput).open()?;
    let tree = db.open_tree("baseline")?;
    let (tx, rx) = mpsc::sync_channel::<(Vec<Vec<u8>>, mpsc::SyncSender<()>)>(4096);
    let writer = std::thread::spawn(move || {
        let mut seq: u64 = 0;
        while let Some(group) = next_group(&rx) {
            let mut b = sled::Batch::default();
            for (records, _) in &group {
                for r in records {
                    seq += 1;
                    b.insert(&seq.to_be_bytes(), r.as_slice());
                }
            }
            if tree.apply_batch(b).and_then(|()| db.flush().map(|_| ())).is_err() {
                break;
            }
            for (_, done) in group {
                let _ = done.send(());
            }
        }
    });
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut sent = 0u64;
                let (done_tx, done_rx) = mpsc::sync_channel(1);
                while Instant::now() < deadline {
                    let records = vec![vec![7u8; record_len]; batch];
                    if tx.send((records, done_tx.clone())).is_err() || done_rx.recv().is_err() {
                        break;
                    }
                    sent += batch as u64;
                }
                sent
            })
        })
        .collect();
    drop(tx);
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    let elapsed = started.elapsed().as_secs_f64();
    let _ = writer.join();
    Ok(total as f64 / elapsed)
}

/// The bare limit of a durable log for `crmhook-bench relay --durable`: each body is one sled
/// insert under a counter, made durable by the same group commit as the log writer's (one
/// writer thread takes what is queued, inserts it and flushes once; each appender waits for
/// its flush). Nothing else: no chunks, index, records or head.
pub struct RawLog {
    tx: mpsc::SyncSender<(Vec<u8>, tokio::sync::oneshot::Sender<bool>)>,
}

impl RawLog {
    /// Opens a sled database in `dir` and starts its writer thread.
    pub fn open(dir: &std::path::Path) -> Result<RawLog, StoreError> {
        let db = sled::Config::new().path(dir).mode(sled::Mode::HighThroughput).open()?;
        let tree = db.open_tree("baseline")?;
        let (tx, rx) = mpsc::sync_channel::<(Vec<u8>, tokio::sync::oneshot::Sender<bool>)>(4096);
        std::thread::Builder::new()
            .name("raw-log-writer".into())
            .spawn(move || {
                let mut seq: u64 = 0;
                while let Some(group) = next_group(&rx) {
                    let mut written = true;
                    for (body, _) in &group {
                        seq += 1;
                        written &= tree.insert(seq.to_be_bytes(), body.as_slice()).is_ok();
                    }
                    written &= db.flush().is_ok();
                    for (_, done) in group {
                        let _ = done.send(written);
                    }
                }
            })
            .map_err(|e| StoreError::Io(e.to_string()))?;
        Ok(RawLog { tx })
    }

    /// Appends `body`; answers once it is durable (false if it could not be written).
    pub async fn append(&self, body: Vec<u8>) -> bool {
        let (done, written) = tokio::sync::oneshot::channel();
        if self.tx.send((body, done)).is_err() {
            return false;
        }
        written.await.unwrap_or(false)
    }
}

/// A writer's next group: the next request, waited for, and every one queued behind it.
fn next_group<T>(rx: &mpsc::Receiver<T>) -> Option<Vec<T>> {
    let mut group = vec![rx.recv().ok()?];
    group.extend(rx.try_iter());
    Some(group)
}
