//! Routing cost: matching one event against 10, 100 and 1,000 compiled subscriptions, for a
//! MAIA event (type/kanban/field conditions) and a Maximizer event (filters on its payload).
//! `cargo bench -p crmhook-core --bench routing`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use crmhook_core::event::parse_ingest;
use crmhook_core::subscription::{Compiled, Subscription};
use crmhook_core::{Event, EventId, TargetId};
use serde_json::json;

fn event(body: &str) -> Event {
    let new = parse_ingest(body.as_bytes()).expect("valid").remove(0);
    Event::from_new(new, 1_000, EventId::generate(), 0)
}

/// `n` subscriptions of varied shapes, as many operators would write them.
fn subscriptions(n: usize) -> Vec<Subscription> {
    let target = TargetId::generate();
    (0..n)
        .map(|i| {
            let body = match i % 5 {
                0 => json!({"event_types": ["crm_field_update"], "kanban_ids": [format!("kanban_{i}"), "kanban_1704067200000_abc123def"], "field_names": ["Email", "Phone"]}),
                1 => json!({"event_types": ["crm_record_created", "crm_record_deleted"], "kanban_ids": [format!("kanban_{i}")]}),
                2 => json!({"event_types": ["Opportunity.*"], "filters": [
                    {"path": "/Data/Original/Revenue", "op": "gt", "value": i * 100},
                    {"path": "/Data/New/SalesStageSetupName", "op": "in", "value": ["Presentation", "Closed Won", format!("Stage {i}")]}
                ]}),
                3 => json!({"event_types": ["Opportunity.Update"], "version_major": 1, "filters": [
                    {"path": "/WorkspaceId", "op": "eq", "value": format!("ws-{i}")}
                ]}),
                _ => json!({"event_types": [format!("Entity{i}.*")], "filters": [{"path": "/Data/New/Key", "op": "exists", "value": true}]}),
            };
            let mut obj = body.as_object().cloned().expect("object");
            obj.insert("target_id".into(), json!(target.as_str()));
            Subscription::create(&obj, 0).expect("valid subscription")
        })
        .collect()
}

fn routing(c: &mut Criterion) {
    let maia = event(include_str!("../../../data/samples/maia/crm_field_update.json"));
    let maximizer = event(include_str!("../../../data/samples/maximizer/opportunity_stage_change.json"));
    let mut group = c.benchmark_group("route one event: every matching subscription");
    for n in [10, 100, 1000] {
        let compiled = Compiled::new(subscriptions(n));
        group.bench_with_input(BenchmarkId::new("maia", n), &compiled, |b, compiled| {
            b.iter(|| compiled.matching(&maia).len())
        });
        group.bench_with_input(BenchmarkId::new("maximizer", n), &compiled, |b, compiled| {
            b.iter(|| compiled.matching(&maximizer).len())
        });
    }
    group.finish();
}

criterion_group!(benches, routing);
criterion_main!(benches);
