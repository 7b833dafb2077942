//! Applying: the stream read in order from the entry after the last one this copy applied, each
//! entry handed to the store's writer ([`Replica::apply`]). An ordered consumer (ephemeral,
//! flow-controlled) reads it; a watchdog makes it again from the last entry handed whenever the
//! stream holds entries this copy has not seen for [`STALL`]: the client alone noticed a
//! consumer lost with its NATS server only after two missed idle heartbeats and a backoff
//! (45–75 s in `tests/cluster.rs`, while the node's ingests waited for their own entries).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use crmhook_store::Replica;
use futures_util::StreamExt;

/// How long the copy may stay behind the stream, without moving, before its reader is made
/// again.
const STALL: Duration = Duration::from_secs(2);
/// How often the watchdog asks the stream for its last entry.
const CHECK: Duration = Duration::from_millis(500);

pub(crate) async fn run(js: jetstream::Context, stream: String, replica: Arc<Replica>) {
    loop {
        let result = tokio::select! {
            r = follow(&js, &stream, &replica) => r,
            () = watchdog(&js, &stream, &replica) => Err("the reader stalled behind the stream".into()),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, applied = replica.handed(), "reading the cluster's log stopped; reading it again");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn follow(js: &jetstream::Context, stream: &str, replica: &Replica) -> Result<(), async_nats::Error> {
    let from = replica.handed() + 1;
    let consumer = js
        .get_stream(stream)
        .await?
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: from },
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    while let Some(message) = messages.next().await {
        let message = message?;
        let seq = message.info()?.stream_sequence;
        replica.apply(seq, &message.payload).await?;
    }
    Ok(())
}

/// Returns once the stream has held entries past this copy's for [`STALL`] with the copy not
/// moving.
async fn watchdog(js: &jetstream::Context, stream: &str, replica: &Replica) {
    let mut behind_since: Option<(tokio::time::Instant, u64)> = None;
    loop {
        tokio::time::sleep(CHECK).await;
        let last = match tokio::time::timeout(CHECK * 2, last_entry(js, stream)).await {
            Ok(Ok(last)) => last,
            // The stream cannot be asked (no quorum, no server): nothing to compare with.
            _ => continue,
        };
        let handed = replica.handed();
        behind_since = match behind_since {
            _ if handed >= last => None,
            Some((since, at)) if at == handed => {
                if since.elapsed() >= STALL {
                    return;
                }
                Some((since, at))
            }
            _ => Some((tokio::time::Instant::now(), handed)),
        };
    }
}

async fn last_entry(js: &jetstream::Context, stream: &str) -> Result<u64, async_nats::Error> {
    let mut s = js.get_stream(stream).await?;
    Ok(s.info().await?.state.last_sequence)
}
