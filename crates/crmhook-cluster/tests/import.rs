//! `crmhook cluster import`, end to end on a real nats-server (`crmhook-natsbox`): a single
//! node's store, imported into a new cluster's stream, is what a cluster node started on that
//! stream with an empty data dir holds, and that node goes on from it.

use std::time::Duration;

use crmhook_cluster::{Cluster, ClusterConfig, ClusterError};
use crmhook_core::event::parse_ingest;
use crmhook_core::{NewEvent, Subscription, Target};
use crmhook_natsbox::NatsCluster;
use crmhook_store::{Attempt, AttemptResult, DeliveryBatch, EventFilter, Options, Pending, Store, RESTORE_BYTES};
use serde_json::json;

const TYPES: [&str; 3] = ["crm_field_update", "crm_record_created", "crm_record_deleted"];
const EVENTS: usize = 300;
/// Windows of 64 events: the index is on disk for most of the log and in memory for the rest.
const WINDOW: usize = 64;

fn options() -> Options {
    Options { record_window: WINDOW, ..Options::default() }
}

/// `n` events from `from` on, of the three types in turn, each with a payload of its own.
fn events(from: usize, n: usize) -> Vec<NewEvent> {
    let body: Vec<String> = (from..from + n)
        .map(|i| format!(r#"{{"eventType":"{}","recordId":"r{i}","kanbanId":"k{}","n":{i}}}"#, TYPES[i % 3], i % 2))
        .collect();
    parse_ingest(format!("[{}]", body.join(",")).as_bytes()).expect("valid events")
}

fn attempt(n: u32, result: AttemptResult) -> Attempt {
    Attempt {
        n,
        at_ms: 1_000 + u64::from(n),
        duration_ms: 2,
        outcome: crmhook_core::retry::Outcome::Status(if result == AttemptResult::Delivered { 200 } else { 500 }),
        result,
        round: 1,
        response: None,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

#[test]
fn an_imported_single_node_store_is_every_new_nodes_copy() {
    let nats = NatsCluster::start(1).expect("nats-server");
    let config = ClusterConfig {
        urls: nats.urls(),
        name: "imported".into(),
        replicas: 1,
        monitor: nats.monitor_urls(),
        lease_ttl: Duration::from_secs(5),
        advertise: "http://127.0.0.1:1".into(),
    };
    let single_dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();

    // The single node: 300 events, a target and its subscription, a retry pending for event 7
    // (after a failed attempt), a delivery of event 3 finished, the cursor at 2.
    let (target, sub) = rt.block_on(async {
        let store = Store::open_with(single_dir.path(), options()).expect("open the single node");
        for from in (0..EVENTS).step_by(25) {
            store.append(events(from, 25), Some(format!("request-{from}"))).await.expect("append");
        }
        let target = Target::create(
            json!({"name": "crm", "url": "https://receiver.example/hook"}).as_object().expect("object"),
            false,
            "whsec_x".into(),
            0,
        )
        .expect("target");
        store.create_target(&target, 0).await.expect("create the target");
        let sub = Subscription::create(
            json!({"target_id": target.id.as_str(), "event_types": [TYPES[1]]}).as_object().expect("object"),
            0,
        )
        .expect("subscription");
        store.put_subscription(&sub).await.expect("subscription");
        let mut batch = DeliveryBatch::default();
        batch.attempt(&target.id, 3, &attempt(1, AttemptResult::Delivered)).expect("finished");
        batch.attempt(&target.id, 7, &attempt(1, AttemptResult::Retrying { next_at_ms: 987_654_321 })).expect("a");
        batch.pending(&target.id, 7, Pending { attempt: 2, due_at_ms: 987_654_321, round: 1 }).expect("pending");
        batch.cursor(&target.id, 2).expect("cursor");
        store.write_deliveries(batch).await.expect("delivery state");
        assert_eq!(store.head(), EVENTS as u64);
        store.close().await;
        (target, sub)
    });

    // The import, as `crmhook cluster import` makes it.
    let single = Store::open_with(single_dir.path(), options()).expect("reopen the single node");
    let mut entries = single.restore_entries(RESTORE_BYTES);
    let imported = crmhook_cluster::import(&config, &mut entries).expect("import");
    assert_eq!(imported.stream, "imported-log");
    assert!(
        imported.entries >= 1 && entries.records() > EVENTS as u64 / 16,
        "{imported:?}, {} records",
        entries.records()
    );
    drop(entries);
    // Only into a new cluster.
    let again = crmhook_cluster::import(&config, single.restore_entries(RESTORE_BYTES));
    assert!(
        matches!(&again, Err(ClusterError::Import(why)) if why.contains("import into a new cluster only")),
        "{again:?}"
    );

    // A cluster node started afterwards with an empty data dir.
    let node_dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = Cluster::connect(config).expect("connect");
    let node = cluster.open(node_dir.path(), options()).expect("open the node's copy");
    let head = single.head();
    assert_eq!(node.head(), head);
    for seq in [1, 2, 3, 63, 64, 65, 128, 200, 257, 299, 300] {
        let (want, got) = (single.event(seq).expect("read"), node.event(seq).expect("read"));
        let want = want.expect("the single node's event");
        assert_eq!(got.as_ref(), Some(&want), "event {seq}");
        assert_eq!(node.event_by_id(&want.id).expect("read").map(|e| e.seq), Some(seq));
    }
    for event_type in TYPES {
        let filter = EventFilter { event_type: Some(event_type.into()), ..EventFilter::default() };
        let seqs = |s: &Store| s.events_page(&filter, 0, 1000).expect("page").iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(seqs(&node), seqs(&single), "{event_type}");
        assert_eq!(seqs(&node).len(), EVENTS / 3, "{event_type}");
    }
    let got = node.target(&target.id).expect("read").expect("the target");
    assert_eq!((got.url.as_str(), got.name.as_str()), ("https://receiver.example/hook", "crm"));
    assert_eq!(node.subscription(&sub.id).expect("read"), Some(sub));
    assert_eq!(node.cursor(&target.id).expect("read"), Some(2));
    let pending = node.pending(&target.id, 10).expect("read");
    assert_eq!(pending.len(), 1);
    assert_eq!((pending[0].0, pending[0].1.attempt, pending[0].1.due_at_ms), (7, 2, 987_654_321));
    assert_eq!(node.attempts_to(&target.id, 7).expect("read"), single.attempts_to(&target.id, 7).expect("read"));
    assert_eq!(node.final_attempt(&target.id, 3).expect("read"), Some(attempt(1, AttemptResult::Delivered)));
    assert_eq!(node.delivery_counts(&target.id).expect("read"), single.delivery_counts(&target.id).expect("read"));

    // The node goes on from the imported log: a retried request is answered as the first was,
    // and a new event takes the seq after the head.
    rt.block_on(async {
        let retried = node.append(events(25, 25), Some("request-25".into())).await.expect("retried");
        assert!(retried.iter().all(|a| a.duplicate) && retried.iter().map(|a| a.seq).eq(26..=50), "{retried:?}");
        let new = node.append(events(EVENTS, 1), None).await.expect("append on the node");
        assert_eq!(new[0].seq, head + 1);
        assert_eq!(node.head(), head + 1);
        let created = EventFilter { event_type: Some(TYPES[EVENTS % 3].into()), ..EventFilter::default() };
        assert_eq!(
            node.events_page(&created, head, 10).expect("page").iter().map(|e| e.seq).collect::<Vec<_>>(),
            [head + 1]
        );
    });
    rt.block_on(async {
        single.close().await;
        node.close().await;
    });
}
