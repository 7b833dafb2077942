//! Applying: the stream read in order from the entry after the last one this copy applied, each
//! entry handed to the store's writer ([`Replica::apply`]). An ordered consumer (ephemeral,
//! flow-controlled, recreated by the client after a gap or a server's loss) reads it; if the
//! consumer itself fails it is made again from the last entry handed.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use crmhook_store::Replica;
use futures_util::StreamExt;

pub(crate) async fn run(js: jetstream::Context, stream: String, replica: Arc<Replica>) {
    loop {
        if let Err(e) = follow(&js, &stream, &replica).await {
            tracing::warn!(error = %e, "reading the cluster's log stopped; reading it again");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
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
