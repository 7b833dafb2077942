//! The one place that knows bincode. Every value the store writes is one version byte followed
//! by the bincode (2.0.1, standard configuration, via serde) encoding of the record.
//!
//! Records are version 1, except event chunks: version 2 added the event's `source_id`, version
//! 3 whether it is a test event, version 4 (written only for a chunk that holds a request sent
//! with an `Idempotency-Key`) is version 3's events followed by those requests' keys
//! (`stored::RequestKeyV1`); chunks of versions 1 and 2 are still read ([`decode_events`](crate::codec::decode_events)),
//! an event of version 1 gets `source_id: None`, and events of both are not tests. Attempts
//! (`A` records) are version 2 ([`ATTEMPT_VERSION`](crate::codec::ATTEMPT_VERSION)), which added the receiver's
//! answer; version 1 is still read, with none ([`decode_attempt`](crate::codec::decode_attempt)). `L` blocks are version 3
//! ([`BLOCK_VERSION`](crate::codec::BLOCK_VERSION)), whose entries say whether their attempt's answer is kept apart;
//! versions 2 (each attempt with its answer) and 1 (without) are still read ([`decode_block`](crate::codec::decode_block)). (Targets
//! have versions of their own: `stored`.)
//!
//! bincode is unmaintained (RUSTSEC-2025-0141) and pinned to `=2.0.1`; keeping it behind these
//! two functions means a replacement touches one file, and the version byte lets a future
//! format live beside this one.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crmhook_core::Event;

use crate::records::{Attempt, AttemptV1, BlockEntry};
use crate::stored::{EventV1, EventV2, EventV3, EventV3Ref, RequestKeyV1};
use crate::StoreError;

/// The format version written as the first byte of every record but event chunks.
pub const VERSION: u8 = 1;
/// The format version of event chunks (`Vec<Event>`).
pub const EVENTS_VERSION: u8 = 3;
/// The format version of event chunks before test events.
const EVENTS_V2: u8 = 2;
/// The format version of an event chunk that also keeps the `Idempotency-Key` of requests whose
/// events it holds: version 3's events, then the keys.
const EVENTS_KEYED: u8 = 4;

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// `VERSION` followed by the bincode encoding of `value`.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    encode_as(VERSION, value)
}

pub(crate) fn encode_as<T: Serialize + ?Sized>(version: u8, value: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = vec![version];
    bincode::serde::encode_into_std_write(value, &mut out, config()).map_err(|e| StoreError::Codec(e.to_string()))?;
    Ok(out)
}

/// The format version of attempts (`A` records and `L` blocks): 2 added the response.
pub const ATTEMPT_VERSION: u8 = 2;

/// An attempt record (`A`), as version [`ATTEMPT_VERSION`].
pub fn encode_attempt(attempt: &Attempt) -> Result<Vec<u8>, StoreError> {
    encode_as(ATTEMPT_VERSION, attempt)
}

/// An attempt record of either version (an `F` value of version 1 too).
pub fn decode_attempt(bytes: &[u8]) -> Result<Attempt, StoreError> {
    match bytes.first() {
        Some(&VERSION) => decode::<AttemptV1>(bytes).map(Attempt::from),
        _ => decode_as(ATTEMPT_VERSION, bytes),
    }
}

/// The format version of `L` blocks: 3 says of each entry whether its answer is kept apart.
pub const BLOCK_VERSION: u8 = 3;

/// A block of finished deliveries (`L`), as version [`BLOCK_VERSION`].
pub fn encode_block(entries: &[BlockEntry]) -> Result<Vec<u8>, StoreError> {
    encode_as(BLOCK_VERSION, entries)
}

/// A block of finished deliveries of any version; an entry of version 1 or 2 keeps its answer
/// (if any) in the block.
pub fn decode_block(bytes: &[u8]) -> Result<Vec<BlockEntry>, StoreError> {
    let here = |(seq, attempt): (u64, Attempt)| BlockEntry { seq, attempt, answer_apart: false };
    match bytes.first() {
        Some(&VERSION) => Ok(decode::<Vec<(u64, AttemptV1)>>(bytes)?
            .into_iter()
            .map(|(seq, a)| here((seq, Attempt::from(a))))
            .collect()),
        Some(&ATTEMPT_VERSION) => {
            Ok(decode_as::<Vec<(u64, Attempt)>>(ATTEMPT_VERSION, bytes)?.into_iter().map(here).collect())
        }
        _ => decode_as(BLOCK_VERSION, bytes),
    }
}

/// A block in the layout of version 2 (each attempt with its answer), for tests that write one.
#[cfg(test)]
pub(crate) fn encode_block_v2(entries: &[(u64, Attempt)]) -> Result<Vec<u8>, StoreError> {
    encode_as(ATTEMPT_VERSION, entries)
}

/// A chunk of events, as version [`EVENTS_VERSION`].
pub fn encode_events(events: &[Event]) -> Result<Vec<u8>, StoreError> {
    encode_as(EVENTS_VERSION, &events.iter().map(EventV3Ref::from).collect::<Vec<_>>())
}

/// A chunk of events with the `Idempotency-Key` of the requests whose events it holds: version
/// [`EVENTS_VERSION`] when there are none, else version 4.
pub(crate) fn encode_events_keyed(events: &[Event], requests: &[RequestKeyV1]) -> Result<Vec<u8>, StoreError> {
    if requests.is_empty() {
        return encode_events(events);
    }
    encode_as(EVENTS_KEYED, &(events.iter().map(EventV3Ref::from).collect::<Vec<_>>(), requests))
}

/// A chunk of events of any version.
pub fn decode_events(bytes: &[u8]) -> Result<Vec<Event>, StoreError> {
    match bytes.first() {
        Some(&VERSION) => Ok(decode_as::<Vec<EventV1>>(VERSION, bytes)?.into_iter().map(Event::from).collect()),
        Some(&EVENTS_V2) => Ok(decode_as::<Vec<EventV2>>(EVENTS_V2, bytes)?.into_iter().map(Event::from).collect()),
        Some(&EVENTS_KEYED) => Ok(decode_keyed(bytes)?.0.into_iter().map(Event::from).collect()),
        _ => Ok(decode_as::<Vec<EventV3>>(EVENTS_VERSION, bytes)?.into_iter().map(Event::from).collect()),
    }
}

/// The requests' keys a chunk keeps (none but in version 4).
pub(crate) fn decode_request_keys(bytes: &[u8]) -> Result<Vec<RequestKeyV1>, StoreError> {
    match bytes.first() {
        Some(&EVENTS_KEYED) => Ok(decode_keyed(bytes)?.1),
        _ => Ok(Vec::new()),
    }
}

fn decode_keyed(bytes: &[u8]) -> Result<(Vec<EventV3>, Vec<RequestKeyV1>), StoreError> {
    decode_as(EVENTS_KEYED, bytes)
}

/// A chunk in the layout of version 2 (before test events), for tests that write one.
#[doc(hidden)]
pub fn encode_events_v2(events: &[Event]) -> Result<Vec<u8>, StoreError> {
    encode_as(EVENTS_V2, &events.iter().map(EventV2::from).collect::<Vec<_>>())
}

/// Core's `Event` encoded directly, as the store did before it had its own layouts (the same
/// bytes): the reference of the codec benchmark.
#[doc(hidden)]
pub mod reference {
    use crmhook_core::Event;

    use crate::StoreError;

    pub fn encode_events(events: &[Event]) -> Result<Vec<u8>, StoreError> {
        super::encode_as(super::EVENTS_VERSION, events)
    }

    pub fn decode_events(bytes: &[u8]) -> Result<Vec<Event>, StoreError> {
        super::decode_as(super::EVENTS_VERSION, bytes)
    }
}

/// One event of the first log format (one event per key, version 1).
pub fn decode_event_v1(bytes: &[u8]) -> Result<Event, StoreError> {
    decode_as::<EventV1>(VERSION, bytes).map(Event::from)
}

/// One event in the first log format's layout, for tests that write such a log.
#[doc(hidden)]
pub fn encode_event_v1(event: &Event) -> Result<Vec<u8>, StoreError> {
    encode(&EventV1::from(event))
}

/// bincode decodes a string or byte buffer by allocating the length its prefix claims, so a
/// corrupt record could ask for exabytes (and allocation failure aborts the process). Decoding
/// runs under a limit on what the record may claim: 8 bytes of memory per encoded byte covers
/// any record we wrote (a 1-byte varint becomes a `u64`), rounded up to a few fixed sizes
/// because bincode takes the limit as a constant.
fn decode_limited<T: DeserializeOwned>(rest: &[u8]) -> Result<(T, usize), bincode::error::DecodeError> {
    fn with<T: DeserializeOwned, const N: usize>(rest: &[u8]) -> Result<(T, usize), bincode::error::DecodeError> {
        bincode::serde::decode_from_slice(rest, config().with_limit::<N>())
    }
    match rest.len() {
        n if n <= 1 << 16 => with::<T, { 1 << 19 }>(rest),
        n if n <= 1 << 20 => with::<T, { 1 << 23 }>(rest),
        n if n <= 1 << 24 => with::<T, { 1 << 27 }>(rest),
        n if n <= 1 << 27 => with::<T, { 1 << 30 }>(rest),
        _ => with::<T, { usize::MAX }>(rest),
    }
}

/// Decodes a record written by [`encode`], refusing other versions and trailing bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    decode_as(VERSION, bytes)
}

pub(crate) fn decode_as<T: DeserializeOwned>(version: u8, bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((v, rest)) if *v == version => {
            let (value, used) = decode_limited(rest).map_err(|e| StoreError::Codec(e.to_string()))?;
            if used != rest.len() {
                return Err(StoreError::Codec(format!("{} trailing bytes after the record", rest.len() - used)));
            }
            Ok(value)
        }
        Some((v, _)) => Err(StoreError::Codec(format!("record format version {v}, this build reads {version}"))),
        None => Err(StoreError::Codec("empty record".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{Attempt, AttemptResult, Pending};
    use crmhook_core::retry::Outcome;
    use crmhook_core::{Event, EventId, EventKind};
    use proptest::prelude::*;

    fn event_strategy() -> impl Strategy<Value = Event> {
        (
            any::<u64>(),
            any::<u64>(),
            prop::bool::ANY,
            ".{0,20}",
            prop::collection::vec(any::<u8>(), 0..200),
            prop::option::of(".{0,10}"),
            prop::option::of(".{0,10}"),
            prop::option::of(any::<u32>()),
            prop::bool::ANY,
            prop::bool::ANY,
        )
            .prop_map(|(seq, at, maia, ty, payload, rec, ext, major, sourced, test)| Event {
                seq,
                id: EventId::generate(),
                received_at_ms: at,
                kind: if maia { EventKind::Maia } else { EventKind::Maximizer },
                event_type: ty,
                payload,
                record_id: rec.clone(),
                kanban_id: rec,
                field_name: None,
                external_id: ext,
                version_major: major,
                source_id: sourced.then(crmhook_core::SourceId::generate),
                test,
            })
    }

    /// An event as logs before 2026-11-26 encoded it: the payload as a sequence of `u8`.
    #[derive(serde::Serialize)]
    struct SeqPayloadEvent<'a> {
        seq: u64,
        id: &'a EventId,
        received_at_ms: u64,
        kind: EventKind,
        event_type: &'a str,
        payload: &'a Vec<u8>,
        record_id: &'a Option<String>,
        kanban_id: &'a Option<String>,
        field_name: &'a Option<String>,
        external_id: &'a Option<String>,
        version_major: Option<u32>,
    }

    proptest! {
        #[test]
        fn events_round_trip(e in event_strategy(), f in event_strategy()) {
            let chunk = vec![e.clone(), f];
            let bytes = encode_events(&chunk).unwrap();
            prop_assert_eq!(bytes[0], EVENTS_VERSION);
            prop_assert_eq!(&decode_events(&bytes).unwrap(), &chunk);
            // The store's own layout is the one written when core's `Event` was encoded itself.
            prop_assert_eq!(&encode_as(EVENTS_VERSION, &chunk).unwrap(), &bytes);
            // A chunk of version 1 (no source) is still read, its events without a source.
            let v1 = encode(&chunk.iter().map(EventV1::from).collect::<Vec<_>>()).unwrap();
            let read = decode_events(&v1).unwrap();
            prop_assert_eq!(read.len(), 2);
            prop_assert_eq!(&read[0], &Event { source_id: None, test: false, ..e.clone() });
            prop_assert_eq!(&decode_event_v1(&encode_event_v1(&e).unwrap()).unwrap(), &Event { source_id: None, test: false, ..e.clone() });
            // A chunk of version 2 (no test mark) is still read, its events not tests.
            let v2 = encode_events_v2(&chunk).unwrap();
            prop_assert_eq!(v2[0], 2);
            prop_assert_eq!(&decode_events(&v2).unwrap()[0], &Event { test: false, ..e.clone() });
            // The payload written as bytes is the same record as the older sequence of u8.
            let older = SeqPayloadEvent {
                seq: e.seq, id: &e.id, received_at_ms: e.received_at_ms, kind: e.kind, event_type: &e.event_type,
                payload: &e.payload, record_id: &e.record_id, kanban_id: &e.kanban_id, field_name: &e.field_name,
                external_id: &e.external_id, version_major: e.version_major,
            };
            prop_assert_eq!(encode(&older).unwrap(), encode_event_v1(&e).unwrap());
        }

        #[test]
        fn chunks_keep_their_requests_keys(e in event_strategy(), f in event_strategy(), key in ".{0,40}", first in any::<u64>(), count in any::<u32>()) {
            let chunk = vec![e, f];
            // No request's key: the chunk is version 3, byte for byte.
            prop_assert_eq!(encode_events_keyed(&chunk, &[]).unwrap(), encode_events(&chunk).unwrap());
            prop_assert!(decode_request_keys(&encode_events(&chunk).unwrap()).unwrap().is_empty());
            let requests = vec![RequestKeyV1 { key, first_seq: first, count }];
            let bytes = encode_events_keyed(&chunk, &requests).unwrap();
            prop_assert_eq!(bytes[0], EVENTS_KEYED);
            prop_assert_eq!(&decode_events(&bytes).unwrap(), &chunk);
            prop_assert_eq!(decode_request_keys(&bytes).unwrap(), requests);
        }

        #[test]
        fn attempts_round_trip(n in any::<u32>(), at in any::<u64>(), d in any::<u64>(), code in any::<u16>(), err in ".{0,30}", which in 0u8..3, next in any::<u64>(), body in prop::collection::vec(any::<u8>(), 0..64), cut in any::<bool>()) {
            let outcome = match which { 0 => Outcome::Status(code), 1 => Outcome::Timeout, _ => Outcome::Error(err) };
            let result = match which { 0 => AttemptResult::Delivered, 1 => AttemptResult::Retrying { next_at_ms: next }, _ => AttemptResult::Dead };
            let response = (which == 0).then(|| crate::Response {
                status: code, headers: vec![("content-type".into(), "text/plain".into())], body, body_truncated: cut,
            });
            let a = Attempt { n, at_ms: at, duration_ms: d, outcome, result, round: 1, response };
            let bytes = encode_attempt(&a).unwrap();
            prop_assert_eq!(bytes[0], ATTEMPT_VERSION);
            prop_assert_eq!(&decode_attempt(&bytes).unwrap(), &a);
            // A block: one entry with its answer, one whose answer is kept apart.
            let apart = BlockEntry { seq: 9, attempt: Attempt { response: None, ..a.clone() }, answer_apart: true };
            let block = vec![BlockEntry { seq: 7, attempt: a.clone(), answer_apart: false }, apart];
            let bytes = encode_block(&block).unwrap();
            prop_assert_eq!(bytes[0], BLOCK_VERSION);
            prop_assert_eq!(decode_block(&bytes).unwrap(), block);
            // A block of version 2 is still read, each answer in it.
            let v2 = encode_block_v2(&[(7u64, a.clone())]).unwrap();
            prop_assert_eq!(decode_block(&v2).unwrap(), vec![BlockEntry { seq: 7, attempt: a.clone(), answer_apart: false }]);
            let p = Pending { attempt: n, due_at_ms: at, round: 1 };
            prop_assert_eq!(decode::<Pending>(&encode(&p).unwrap()).unwrap(), p);
        }

        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode::<Event>(&bytes);
            let _ = decode_events(&bytes);
            let _ = decode_request_keys(&bytes);
            let _ = decode::<Vec<(String, Vec<u64>)>>(&bytes);
            let _ = decode_attempt(&bytes);
            let _ = decode_block(&bytes);
        }
    }

    /// An attempt as `A` records, `L` entries and `F` values held it before responses were
    /// kept (version 1), written out field for field.
    #[derive(serde::Serialize)]
    struct AttemptBefore {
        n: u32,
        at_ms: u64,
        duration_ms: u64,
        outcome: crate::stored::OutcomeV1,
        result: AttemptResult,
        round: u32,
    }

    #[test]
    fn attempt_records_of_version_1_still_decode_with_no_response() {
        let old = AttemptBefore {
            n: 2,
            at_ms: 1_700_000_000_000,
            duration_ms: 31,
            outcome: crate::stored::OutcomeV1::Status(500),
            result: AttemptResult::Retrying { next_at_ms: 1_700_000_005_000 },
            round: 1,
        };
        let bytes = encode(&old).unwrap();
        assert_eq!(bytes[0], 1, "version 1");
        let read = decode_attempt(&bytes).unwrap();
        assert_eq!((read.n, read.duration_ms, read.outcome.clone()), (2, 31, Outcome::Status(500)));
        assert_eq!(read.response, None);
        // The store's layout of version 1 is those bytes.
        assert_eq!(
            encode(&AttemptV1 {
                n: 2,
                at_ms: old.at_ms,
                duration_ms: 31,
                outcome: Outcome::Status(500),
                result: old.result,
                round: 1
            })
            .unwrap(),
            bytes
        );
        // An `L` block of such entries too.
        let block = decode_block(&encode(&vec![(7u64, &old)]).unwrap()).unwrap();
        assert_eq!(block, vec![BlockEntry { seq: 7, attempt: read.clone(), answer_apart: false }]);
        // Version 2 keeps the response.
        let response = crate::Response {
            status: 500,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: b"boom".to_vec(),
            body_truncated: false,
        };
        let with = Attempt { response: Some(response), ..read };
        let v2 = encode_attempt(&with).unwrap();
        assert_eq!(v2[0], 2);
        assert_eq!(decode_attempt(&v2).unwrap(), with);
        assert!(decode::<Attempt>(&v2).is_err(), "version 2 is not read as version 1");
    }

    #[test]
    fn a_length_prefix_past_the_record_is_refused_without_allocating_it() {
        // Version, then an event whose first string claims 2^62 bytes (bincode varint: 0xfd
        // and a little-endian u64).
        let mut bytes = vec![VERSION, 0xfd];
        bytes.extend_from_slice(&(1u64 << 62).to_le_bytes());
        assert!(decode::<String>(&bytes).is_err());
        assert!(decode::<Event>(&bytes).is_err());
        assert!(decode_events(&bytes).is_err());
    }

    #[test]
    fn other_versions_and_trailing_bytes_are_refused() {
        let mut bytes = encode(&Pending { attempt: 1, due_at_ms: 2, round: 1 }).unwrap();
        bytes.push(0);
        assert!(decode::<Pending>(&bytes).is_err());
        bytes.pop();
        bytes[0] = 2;
        assert!(decode::<Pending>(&bytes).is_err());
        assert!(decode::<Pending>(&[]).is_err());
    }
}
