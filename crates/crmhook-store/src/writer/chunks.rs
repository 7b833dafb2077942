//! The events of a group commit written as chunks of the log (`E` keys).

use crmhook_core::Event;

use crate::keys;
use crate::stored::RequestKeyV1;
use crate::{codec, Result, CHUNK_BYTES, CHUNK_EVENTS};

/// A chunk [`write_log`] wrote: how many of the group's events (the chunks follow each other
/// from its first), and its encoded size.
pub(crate) struct Chunk {
    pub(super) events: usize,
    pub(super) bytes: usize,
}

/// Writes the events of one group commit (consecutive seqs) as chunks, each with the
/// `Idempotency-Key` of the `requests` whose first event it holds; answers the chunks.
pub(crate) fn write_log(batch: &mut sled::Batch, events: &[Event], requests: &[RequestKeyV1]) -> Result<Vec<Chunk>> {
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < events.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < events.len() && end - start < CHUNK_EVENTS && (end == start || bytes < CHUNK_BYTES) {
            bytes += events[end].payload.len();
            end += 1;
        }
        let (first, last) = (events[start].seq, events[end - 1].seq);
        let held: Vec<RequestKeyV1> =
            requests.iter().filter(|r| (first..=last).contains(&r.first_seq)).cloned().collect();
        let encoded = codec::encode_events_keyed(&events[start..end], &held)?;
        chunks.push(Chunk { events: end - start, bytes: encoded.len() });
        batch.insert(keys::chunk(events[start].seq), encoded);
        start = end;
    }
    Ok(chunks)
}
