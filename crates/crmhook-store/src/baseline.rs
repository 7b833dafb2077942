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
        while let Ok(first) = rx.recv() {
            let mut group = vec![first];
            while let Ok(more) = rx.try_recv() {
                group.push(more);
            }
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
