//! Record encoding: an event to its versioned bincode record and back.
//! `cargo bench -p crmhook-store --bench codec`.

use criterion::{criterion_group, criterion_main, Criterion};
use crmhook_core::event::parse_ingest;
use crmhook_core::{Event, EventId};
use crmhook_store::codec::{decode, encode};

fn codec(c: &mut Criterion) {
    let new =
        parse_ingest(include_bytes!("../../../data/samples/maia/crm_field_update.json")).expect("valid").remove(0);
    let event = Event::from_new(new, 42, EventId::generate(), 1_764_000_000_000);
    let bytes = encode(&event).expect("encodes");
    let mut g = c.benchmark_group("record");
    g.bench_function("encode event", |b| b.iter(|| encode(&event).map(|v| v.len())));
    g.bench_function("decode event", |b| b.iter(|| decode::<Event>(&bytes).map(|e| e.seq)));
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
