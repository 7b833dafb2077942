//! Publishing: the store's outgoing ops, a few at a time, as entries of the stream. Entries are
//! published in order on one connection and their acknowledgements awaited apart (up to
//! [`IN_FLIGHT`] at once), so a slow acknowledgement does not stop the next entry; while
//! [`IN_FLIGHT`] are waiting the ops queue up and the next entry takes them all (group commit,
//! at the stream); an op marked `alone` (a call of retention) goes in an entry of its own. A
//! failed publish answers its ops' callers with the error (an ingest: 503,
//! the client retries; the deduplication by Idempotency-Key and Maximizer `Id` holds, since it
//! is applied from the log). A publish that was sent but not acknowledged (no quorum: the
//! stream may commit it once the quorum is back) is `Unacknowledged`: the 503 says the write
//! may still be made, where a single node's says nothing was stored.

use std::sync::Arc;

use async_nats::jetstream;
use crmhook_store::{Outgoing, Replica};
use tokio::sync::{mpsc, Semaphore};

/// Entries published whose acknowledgement is awaited, at most.
const IN_FLIGHT: usize = 32;
/// How long lazy ops (finished deliveries) wait for other ops to share their entry (a single
/// node's held writes wait for the next ingest group up to `crmhook_store::LIVE_INGEST`): each
/// entry costs a JetStream publish and a sled batch on every node.
const LAZY_HOLD: std::time::Duration = std::time::Duration::from_millis(20);
/// Most ops in one entry.
const MAX_OPS: usize = 1024;
/// An entry takes no more ops once it holds this many bytes (the stream's message limit is
/// 8 MiB; NATS's default `max_payload` is 1 MiB: see docs/CLUSTER.md).
const MAX_BYTES: usize = 512 * 1024;

pub(crate) async fn run(
    js: jetstream::Context,
    subject: String,
    replica: Arc<Replica>,
    mut outgoing: mpsc::Receiver<Outgoing>,
) {
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    let node = replica.node();
    // An op taken that goes in an entry of its own: the next entry's.
    let mut apart: Option<Outgoing> = None;
    loop {
        let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
        let first = match apart.take() {
            Some(op) => op,
            None => {
                let Some(op) = outgoing.recv().await else { return };
                op
            }
        };
        let mut bytes = first.op.len();
        let held_until = tokio::time::Instant::now() + LAZY_HOLD;
        let alone = first.alone;
        let mut ops = vec![first];
        while !alone && ops.len() < MAX_OPS && bytes < MAX_BYTES {
            let next = match outgoing.try_recv() {
                Ok(op) => Some(op),
                // Only lazy ops so far: wait for company, up to the hold.
                Err(_) if ops.iter().all(|o| o.lazy) => {
                    tokio::time::timeout_at(held_until, outgoing.recv()).await.ok().flatten()
                }
                Err(_) => None,
            };
            let Some(op) = next else { break };
            if op.alone {
                apart = Some(op);
                break;
            }
            bytes += op.op.len();
            ops.push(op);
        }
        let nonces: Vec<u64> = ops.iter().map(|o| o.nonce).collect();
        let entry = match Replica::encode_entry(node, ops) {
            Ok(entry) => entry,
            Err(e) => {
                replica.fail(&nonces, &e.to_string(), false);
                continue;
            }
        };
        match js.publish(subject.clone(), entry.into()).await {
            Ok(ack) => {
                let replica = replica.clone();
                tokio::spawn(async move {
                    match ack.await {
                        Ok(_) => replica.set_failing(false),
                        Err(e) => {
                            tracing::error!(error = %e, ops = nonces.len(), "an entry was not acknowledged by the stream");
                            replica.set_failing(true);
                            replica.fail(&nonces, &format!("the cluster's log did not acknowledge: {e}"), true);
                        }
                    }
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::error!(error = %e, "an entry could not be published");
                replica.set_failing(true);
                // The request may have reached the stream before the error: it may hold it.
                replica.fail(&nonces, &format!("the cluster's log is not reachable: {e}"), true);
            }
        }
    }
}
