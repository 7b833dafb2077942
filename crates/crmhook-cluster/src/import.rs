//! Importing a single node's store into a new cluster (`crmhook cluster import`, see
//! [`crate::import()`]): the entries of `crmhook_store::Store::restore_entries`, published in
//! order as the stream's first entries. Each is published with the stream's last sequence it
//! expects (`Nats-Expected-Last-Sequence`: none before the first), so the import is refused by
//! the stream itself if anything else was published first or meanwhile (a node already
//! started), and entries are pipelined (up to [`IN_FLIGHT`] acknowledgements awaited at once)
//! without their order ever being in doubt.

use std::collections::VecDeque;

use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};
use crmhook_store::StoreError;

use crate::{js_error, ClusterConfig, ClusterError, Result};

/// Entries published whose acknowledgement is awaited, at most.
const IN_FLIGHT: usize = 32;

/// What an import published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The stream's name.
    pub stream: String,
    /// Entries published (the stream's sequences `1..=entries`).
    pub entries: u64,
    /// Their bytes.
    pub bytes: u64,
}

pub(crate) async fn run(
    js: &jetstream::Context,
    config: &ClusterConfig,
    entries: impl Iterator<Item = Result<Vec<u8>, StoreError>>,
) -> Result<Imported> {
    let stream = config.stream();
    let mut info = js.get_stream(&stream).await.map_err(js_error)?;
    let had = info.info().await.map_err(js_error)?.state.last_sequence;
    if had > 0 {
        return Err(ClusterError::Import(format!(
            "import into a new cluster only: the stream {stream} already has {had} entries (a cluster started \
             on it, or an earlier import); nothing was published"
        )));
    }
    let partial = |published: u64, why: String| {
        ClusterError::Import(if published == 0 {
            format!("the import failed: {why}; nothing was published")
        } else {
            format!(
                "the import failed: {why}. The stream {stream} now holds {published} entries of an unfinished import: delete it \
                 (`nats stream rm {stream}`), check that no crmhook node was started on it, and import again"
            )
        })
    };
    let subject = config.subject();
    let mut acks: VecDeque<(u64, PublishAckFuture)> = VecDeque::new();
    let (mut published, mut bytes) = (0u64, 0u64);
    for entry in entries {
        let entry = entry.map_err(|e| partial(published, format!("reading the store: {e}")))?;
        bytes += entry.len() as u64;
        let message = PublishMessage::build().payload(entry.into()).expected_last_sequence(published);
        let ack = js
            .send_publish(subject.clone(), message)
            .await
            .map_err(|e| partial(published, format!("publishing entry {}: {e}", published + 1)))?;
        published += 1;
        acks.push_back((published, ack));
        if acks.len() >= IN_FLIGHT {
            if let Some((seq, ack)) = acks.pop_front() {
                acknowledged(seq, ack).await.map_err(|why| partial(published, why))?;
            }
        }
    }
    while let Some((seq, ack)) = acks.pop_front() {
        acknowledged(seq, ack).await.map_err(|why| partial(published, why))?;
    }
    Ok(Imported { stream, entries: published, bytes })
}

/// Waits for entry `seq`'s acknowledgement: the stream holds it at that sequence.
async fn acknowledged(seq: u64, ack: PublishAckFuture) -> std::result::Result<(), String> {
    match ack.await {
        Ok(ack) if ack.sequence == seq => Ok(()),
        Ok(ack) => Err(format!("entry {seq} was stored at sequence {} of {}", ack.sequence, ack.stream)),
        Err(e) => Err(format!("entry {seq} was not acknowledged by the stream: {e}")),
    }
}
