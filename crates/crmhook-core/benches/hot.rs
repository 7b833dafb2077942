//! The hot pieces of ingest and delivery: validating events and signing a delivery.
//! `cargo bench -p crmhook-core --bench hot`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use crmhook_core::event::parse_ingest;
use crmhook_core::sign::{generate_secret, sign, Signer};

fn validation(c: &mut Criterion) {
    let maia = include_str!("../../../data/samples/maia/crm_field_update.json");
    let maximizer = include_str!("../../../data/samples/maximizer/opportunity_stage_change.json");
    let batch = format!("[{}]", vec![maia; 100].join(","));
    let mut g = c.benchmark_group("validate");
    g.throughput(Throughput::Elements(1));
    g.bench_function("maia event", |b| b.iter(|| parse_ingest(maia.as_bytes()).map(|e| e.len())));
    g.bench_function("maximizer envelope", |b| b.iter(|| parse_ingest(maximizer.as_bytes()).map(|e| e.len())));
    g.throughput(Throughput::Elements(100));
    g.bench_function("maia array of 100", |b| b.iter(|| parse_ingest(batch.as_bytes()).map(|e| e.len())));
    g.finish();
}

fn signing(c: &mut Criterion) {
    let body = include_bytes!("../../../data/samples/maia/crm_field_update.json");
    let (new, old) = (generate_secret(), generate_secret());
    let mut g = c.benchmark_group("sign");
    g.bench_function("both schemes, one secret", |b| {
        b.iter(|| sign(&[&new], "evt_01m89atn959wynbgadg53z6h81", "1764000000", body))
    });
    g.bench_function("both schemes, rotation (two secrets)", |b| {
        b.iter(|| sign(&[&new, &old], "evt_01m89atn959wynbgadg53z6h81", "1764000000", body))
    });
    // What a delivery does: the target's keys are prepared once per configuration.
    let signer = Signer::new([(new.as_str(), None)]);
    g.bench_function("both schemes, one secret, prepared signer", |b| {
        b.iter(|| signer.sign(0, "evt_01m89atn959wynbgadg53z6h81", "1764000000", body))
    });
    g.finish();
}

criterion_group!(benches, validation, signing);
criterion_main!(benches);
