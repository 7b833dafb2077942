//! Record encoding: a chunk of 16 events (the log's unit) to its versioned bincode record and
//! back, through the store's own layout (`stored::EventV2`), next to core's `Event` encoded
//! directly (the same bytes; what the store did before it had its own layouts).
//! `cargo bench -p crmhook-store --bench codec`.

use criterion::{criterion_group, criterion_main, Criterion};
use crmhook_core::event::parse_ingest;
use crmhook_core::{Event, EventId};
use crmhook_store::codec::{decode_events, encode_events, reference};

fn codec(c: &mut Criterion) {
    let new =
        parse_ingest(include_bytes!("../../../data/samples/maia/crm_field_update.json")).expect("valid").remove(0);
    let chunk: Vec<Event> =
        (0..16).map(|i| Event::from_new(new.clone(), 42 + i, EventId::generate(), 1_764_000_000_000)).collect();
    let bytes = encode_events(&chunk).expect("encodes");
    let mut g = c.benchmark_group("chunk of 16 events");
    g.bench_function("encode, store layout", |b| b.iter(|| encode_events(&chunk).map(|v| v.len())));
    g.bench_function("encode, core type directly", |b| b.iter(|| reference::encode_events(&chunk).map(|v| v.len())));
    g.bench_function("decode, store layout", |b| b.iter(|| decode_events(&bytes).map(|e| e.len())));
    g.bench_function("decode, core type directly", |b| b.iter(|| reference::decode_events(&bytes).map(|e| e.len())));
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
