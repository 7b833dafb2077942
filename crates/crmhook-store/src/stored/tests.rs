//! The layouts against the records the store wrote when it encoded the core types themselves.

use super::*;
use crate::codec::{decode, encode};
use crmhook_core::subscription::Op;
use crmhook_core::{Source, Subscription, Target};
use serde_json::json;

/// Until 2026-12-02 the store encoded the core types themselves: the layouts here must
/// give the very same bytes, so that those records still read, and read back whole.
fn same_record<C, V>(core: &C)
where
    C: Serialize + PartialEq + std::fmt::Debug,
    V: Serialize + serde::de::DeserializeOwned + for<'a> From<&'a C> + Into<C>,
{
    let ours = encode(&V::from(core)).expect("encode");
    assert_eq!(ours, encode(core).expect("encode"), "the layout of {core:?}");
    assert_eq!(&decode::<V>(&ours).expect("decode").into(), core);
}

#[test]
fn the_layouts_are_the_records_already_on_disk() {
    let mut target = Target::create(
            json!({"name": "t", "url": "https://a.example/x", "headers": {"X-K": "v"}, "format": "maximizer", "ordered": true})
                .as_object()
                .expect("object"),
            false,
            crmhook_core::sign::generate_secret(),
            7,
        )
        .expect("valid");
    target.previous_secret = Some(("whsec_old".into(), 99));
    // Core's `Target` has gained `response_body_bytes` since, at its end: what it encodes
    // begins with the very bytes of version 1, which reads back with the option's default.
    let v1 = encode(&TargetV1::from(&target)).expect("encode");
    assert_eq!(&encode(&target).expect("encode")[..v1.len()], &v1[..], "the layout of {target:?}");
    assert_eq!(Target::from(decode::<TargetV1>(&v1).expect("decode")), target);
    // Versions 3 and 4 keep the option.
    let narrow = Target { response_body_bytes: 0, ..target.clone() };
    let v3 = TargetV3 { target: TargetV1::from(&narrow), options: TargetOptionsV1::of(&narrow) };
    let read = decode::<TargetV3>(&encode(&v3).expect("encode")).expect("decode");
    assert_eq!(read.options.apply(read.target.into()), narrow);
    // Versions 3 and 4 were written before the rate limit: they read with none. Versions 5
    // and 6 keep both options.
    let limited = Target { rate_limit_per_s: Some(25), ..narrow.clone() };
    let v3 = TargetV3 { target: TargetV1::from(&limited), options: TargetOptionsV1::of(&limited) };
    let read = decode::<TargetV3>(&encode(&v3).expect("encode")).expect("decode");
    assert_eq!(TargetOptionsV2::from(read.options).apply(read.target.into()), narrow);
    let v5 = TargetV5 { target: TargetV1::from(&limited), options: TargetOptionsV2::of(&limited) };
    let read = decode::<TargetV5>(&encode(&v5).expect("encode")).expect("decode");
    assert_eq!(read.options.apply(read.target.into()), limited);
    let mut filters = Vec::new();
    for (name, _) in Op::ALL {
        let value = match name {
            "in" | "nin" => json!([1]),
            "exists" => json!(true),
            _ => json!(1),
        };
        filters.push(json!({"path": "/a", "op": name, "value": value}));
    }
    let sub = Subscription::create(
        json!({"target_id": target.id.as_str(), "event_types": ["Opportunity.*"], "kanban_ids": ["k"],
                   "field_names": ["f"], "filters": filters, "version_major": 2})
        .as_object()
        .expect("object"),
        3,
    )
    .expect("valid");
    same_record::<Subscription, SubscriptionV1>(&sub);
    for kind in ["maia", "maximizer"] {
        let (source, _) =
            Source::create(json!({"name": "s", "kind": kind}).as_object().expect("object"), 5).expect("valid");
        same_record::<Source, SourceV1>(&source);
    }
}
