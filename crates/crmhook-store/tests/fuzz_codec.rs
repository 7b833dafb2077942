//! Fuzzing the record codec on stable, driven by proptest: every decoder the store reads its
//! records with gets arbitrary bytes, and valid records with bytes changed, cut off or added.
//! Decoding answers a value or an error, never a panic or an allocation a record cannot
//! justify; an untouched record decodes to itself.
//!
//! How long: `CRMHOOK_FUZZ_CASES` cases (default 256, so CI stays fast), or, with
//! `CRMHOOK_FUZZ_SECS`, batches of that many until the time is spent; the figures are printed
//! (`--nocapture`):
//!
//! ```text
//! CRMHOOK_FUZZ_SECS=600 CRMHOOK_FUZZ_CASES=5000 cargo test --release -p crmhook-store --test fuzz_codec -- --nocapture
//! ```

use std::fmt::Debug;
use std::time::{Duration, Instant};

use crmhook_core::retry::Outcome;
use crmhook_core::{Event, EventId, EventKind, Source, SourceId, Subscription, Target};
use crmhook_store::codec::{
    self, decode, decode_attempt, decode_block, decode_event_v1, decode_events, encode, encode_attempt, encode_block,
    encode_event_v1, encode_events,
};
use crmhook_store::records::{
    AckEntry, Attempt, AttemptResult, BlockEntry, Disabled, Final, Pending, Rejected, Request, Retried,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

fn fuzz<S>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: Debug,
{
    let env = |key: &str| std::env::var(key).ok().and_then(|v| v.parse::<u64>().ok());
    let cases = env("CRMHOOK_FUZZ_CASES").unwrap_or(256).clamp(1, u64::from(u32::MAX)) as u32;
    let budget = env("CRMHOOK_FUZZ_SECS").map(Duration::from_secs);
    let started = Instant::now();
    let mut total = 0u64;
    loop {
        let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
        if let Err(e) = runner.run(&strategy, &test) {
            panic!("fuzz target {name} failed after {total} cases: {e}");
        }
        total += u64::from(cases);
        if budget.is_none_or(|b| started.elapsed() >= b) {
            break;
        }
    }
    eprintln!("fuzz {name}: {total} cases in {:.1} s, no failure", started.elapsed().as_secs_f64());
}

/// Every decoder of the store, on `bytes`: none may panic.
fn decode_all(bytes: &[u8]) {
    let _ = decode_events(bytes);
    let _ = decode_event_v1(bytes);
    let _ = decode::<Event>(bytes);
    let _ = decode::<Target>(bytes);
    let _ = decode::<Subscription>(bytes);
    let _ = decode::<Source>(bytes);
    let _ = decode_attempt(bytes);
    let _ = decode::<Pending>(bytes);
    let _ = decode::<Request>(bytes);
    let _ = decode::<Final>(bytes);
    let _ = decode::<Disabled>(bytes);
    let _ = decode::<AckEntry>(bytes);
    let _ = decode::<Rejected>(bytes);
    let _ = decode::<Retried>(bytes);
    let _ = decode::<Vec<AckEntry>>(bytes);
    let _ = decode_block(bytes);
    let _ = decode::<Vec<u64>>(bytes);
    let _ = decode::<String>(bytes);
    let _ = codec::reference::decode_events(bytes);
}

fn event() -> impl Strategy<Value = Event> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<bool>(),
        ".{0,12}",
        prop::collection::vec(any::<u8>(), 0..96),
        prop::option::of(".{0,8}"),
        prop::option::of(any::<u32>()),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(seq, at, maia, ty, payload, key, major, sourced, test)| Event {
            seq,
            id: EventId::generate(),
            received_at_ms: at,
            kind: if maia { EventKind::Maia } else { EventKind::Maximizer },
            event_type: ty,
            payload,
            record_id: key.clone(),
            kanban_id: key.clone(),
            field_name: None,
            external_id: key,
            version_major: major,
            source_id: sourced.then(SourceId::generate),
            test,
        })
}

fn attempt() -> impl Strategy<Value = Attempt> {
    let response =
        prop::option::of((any::<u16>(), ".{0,12}", prop::collection::vec(any::<u8>(), 0..48), any::<bool>())).prop_map(
            |r| {
                r.map(|(status, ct, body, body_truncated)| crmhook_store::Response {
                    status,
                    headers: vec![("content-type".into(), ct)],
                    body,
                    body_truncated,
                })
            },
        );
    ((any::<u32>(), any::<u64>(), any::<u64>(), any::<u16>(), ".{0,16}", 0u8..3, any::<u64>(), any::<u32>()), response)
        .prop_map(|((n, at, d, code, err, which, next, round), response)| Attempt {
            n,
            at_ms: at,
            duration_ms: d,
            outcome: match which {
                0 => Outcome::Status(code),
                1 => Outcome::Timeout,
                _ => Outcome::Error(err),
            },
            result: match which {
                0 => AttemptResult::Delivered,
                1 => AttemptResult::Retrying { next_at_ms: next },
                _ => AttemptResult::Dead,
            },
            round,
            response,
        })
}

/// A valid record of some kind, encoded, with a way to check that it decodes to itself.
#[derive(Debug, Clone)]
enum Record {
    Events(Vec<Event>),
    EventV1(Event),
    Attempts(Vec<BlockEntry>),
    Attempt(Attempt),
    Pending(Pending),
    Seqs(Vec<u64>),
}

impl Record {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Record::Events(events) => encode_events(events),
            Record::EventV1(e) => encode_event_v1(e),
            Record::Attempts(a) => encode_block(a),
            Record::Attempt(a) => encode_attempt(a),
            Record::Pending(p) => encode(p),
            Record::Seqs(s) => encode(s),
        }
        .expect("a valid record encodes")
    }

    fn round_trips(&self, bytes: &[u8]) -> bool {
        match self {
            Record::Events(events) => decode_events(bytes).is_ok_and(|d| &d == events),
            Record::EventV1(e) => {
                decode_event_v1(bytes).is_ok_and(|d| d == Event { source_id: None, test: false, ..e.clone() })
            }
            Record::Attempts(a) => decode_block(bytes).is_ok_and(|d| &d == a),
            Record::Attempt(a) => decode_attempt(bytes).is_ok_and(|d| &d == a),
            Record::Pending(p) => decode::<Pending>(bytes).is_ok_and(|d| &d == p),
            Record::Seqs(s) => decode::<Vec<u64>>(bytes).is_ok_and(|d| &d == s),
        }
    }
}

fn record() -> impl Strategy<Value = Record> {
    prop_oneof![
        prop::collection::vec(event(), 0..4).prop_map(Record::Events),
        event().prop_map(Record::EventV1),
        prop::collection::vec((any::<u64>(), attempt(), any::<bool>()), 0..4).prop_map(|entries| {
            Record::Attempts(
                entries
                    .into_iter()
                    .map(|(seq, attempt, answer_apart)| BlockEntry { seq, attempt, answer_apart })
                    .collect(),
            )
        }),
        attempt().prop_map(Record::Attempt),
        (any::<u32>(), any::<u64>(), any::<u32>()).prop_map(|(attempt, due, round)| Record::Pending(Pending {
            attempt,
            due_at_ms: due,
            round
        })),
        prop::collection::vec(any::<u64>(), 0..16).prop_map(Record::Seqs),
    ]
}

/// An edit of a record's bytes: replace, insert or remove a byte, cut the record short, or
/// write a huge length where a length may be (bincode's varint for 2^62).
#[derive(Debug, Clone)]
enum Edit {
    Set(prop::sample::Index, u8),
    Insert(prop::sample::Index, u8),
    Remove(prop::sample::Index),
    Truncate(prop::sample::Index),
    HugeLength(prop::sample::Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        1 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        1 => any::<prop::sample::Index>().prop_map(Edit::Remove),
        1 => any::<prop::sample::Index>().prop_map(Edit::Truncate),
        1 => any::<prop::sample::Index>().prop_map(Edit::HugeLength),
    ]
}

fn apply(bytes: &mut Vec<u8>, edit: &Edit) {
    let n = bytes.len();
    match edit {
        Edit::Set(i, b) if n > 0 => bytes[i.index(n)] = *b,
        Edit::Insert(i, b) => bytes.insert(i.index(n + 1), *b),
        Edit::Remove(i) if n > 0 => {
            bytes.remove(i.index(n));
        }
        Edit::Truncate(i) => bytes.truncate(i.index(n + 1)),
        Edit::HugeLength(i) => {
            let at = i.index(n + 1);
            let mut huge = vec![0xfd];
            huge.extend_from_slice(&(1u64 << 62).to_le_bytes());
            bytes.splice(at..at, huge);
        }
        _ => {}
    }
}

#[test]
fn fuzz_codec_with_any_bytes() {
    let bytes = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        // A known version byte first, so decoding gets past it.
        (0u8..3, prop::collection::vec(any::<u8>(), 0..256)).prop_map(|(v, mut rest)| {
            rest.insert(0, v);
            rest
        }),
    ];
    fuzz("codec: arbitrary bytes", bytes, |bytes| {
        decode_all(&bytes);
        Ok(())
    });
}

#[test]
fn fuzz_codec_with_changed_records() {
    fuzz("codec: valid records changed", (record(), prop::collection::vec(edit(), 0..4)), |(record, edits)| {
        let mut bytes = record.bytes();
        prop_assert!(record.round_trips(&bytes), "an untouched record decodes to itself");
        for e in &edits {
            apply(&mut bytes, e);
        }
        decode_all(&bytes);
        Ok(())
    });
}
