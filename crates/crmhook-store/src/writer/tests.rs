//! The writer's unit tests: appends numbered and read back after reopening, held writes,
//! deduplication, concurrent appends sharing flushes.

use super::*;
use crate::test_support::*;
use crmhook_core::event::parse_ingest;

/// `again` answers each of `first`'s events, as a duplicate.
fn assert_duplicates_of(again: &[AckEntry], first: &[AckEntry]) {
    assert_eq!(
        again.iter().map(|a| (&a.id, a.seq, a.duplicate)).collect::<Vec<_>>(),
        first.iter().map(|a| (&a.id, a.seq, true)).collect::<Vec<_>>()
    );
}

#[test]
fn appends_number_the_log_and_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    rt().block_on(async {
        let store = Store::open(dir.path()).expect("open");
        let a = store.append(events(2), None).await.expect("append");
        let b = store.append(events(1), None).await.expect("append");
        assert_eq!(a.iter().chain(&b).map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(store.head(), 3);
        // No key of its own: the head is read back from the last chunk.
        assert_eq!(store.inner.tree.get(keys::head()).expect("read"), None);
        let e2 = store.event_by_id(&a[1].id).expect("read").expect("found");
        assert_eq!(e2.seq, 2);
        assert_eq!(e2.record_id.as_deref(), Some("r1"));
        store.close().await;
    });
    drop(rt());
    rt().block_on(async {
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.head(), 3);
        assert_eq!(store.events_from(2).count(), 2);
        let c = store.append(events(1), None).await.expect("append");
        assert_eq!(c[0].seq, 4);
        store.close().await;
    });
}

#[test]
fn held_writes_are_answered_alone_with_an_ingest_and_refused_after_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    rt().block_on(async {
        let store = Store::open(dir.path()).expect("open");
        let id = crmhook_core::TargetId::generate();
        let held = |seq: u64| {
            let mut b = crate::DeliveryBatch::default();
            b.cursor(&id, seq).expect("encode");
            b
        };
        // Nothing else comes: the writer, asleep, is nudged.
        store.write_deliveries_held(held(1)).await.expect("held write alone");
        assert_eq!(store.cursor(&id).expect("read"), Some(1));
        // Events are being logged: the held write rides with the next append (or goes when
        // the live period ends); either way it is answered.
        store.append(events(1), None).await.expect("append");
        let (written, appended) = tokio::join!(store.write_deliveries_held(held(2)), store.append(events(1), None));
        written.expect("held write beside an ingest");
        appended.expect("append");
        assert_eq!(store.cursor(&id).expect("read"), Some(2));
        store.write_deliveries_held(held(3)).await.expect("held write after the ingest");
        assert_eq!(store.cursor(&id).expect("read"), Some(3));
        store.close().await;
        assert!(matches!(store.write_deliveries_held(held(4)).await, Err(StoreError::Closed)));
    });
}

#[test]
fn idempotency_keys_and_maximizer_ids_answer_the_first_ack() {
    let dir = tempfile::tempdir().expect("tempdir");
    rt().block_on(async {
        let store = Store::open(dir.path()).expect("open");
        let first = store.append(events(2), Some("key-1".into())).await.expect("append");
        let again = store.append(events(2), Some("key-1".into())).await.expect("append");
        assert_duplicates_of(&again, &first);
        let mx = include_str!("../../../../data/samples/maximizer/opportunity_stage_change.json");
        let m1 = store.append(parse_ingest(mx.as_bytes()).expect("valid"), None).await.expect("append");
        let m2 = store.append(parse_ingest(mx.as_bytes()).expect("valid"), None).await.expect("append");
        assert!(!m1[0].duplicate && m2[0].duplicate && m1[0].seq == m2[0].seq);
        assert_eq!(store.head(), 3);
        store.close().await;
    });
}

/// Appends `post()` (under `key`), then removes the deduplication record `lost` names, as a
/// crash between a group's chunk and its keys (single writes, the chunk first) leaves the tree;
/// reopens and appends `post()` again: open wrote the record again, so the retry is answered
/// with the first append's events, as duplicates, and the head is still `head`.
fn retry_after_a_lost_record(
    post: impl Fn() -> Vec<NewEvent>,
    key: Option<&str>,
    lost: impl FnOnce(&Store, &[AckEntry]) -> Vec<u8>,
    head: u64,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = rt().block_on(async {
        let store = Store::open(dir.path()).expect("open");
        let first = store.append(post(), key.map(str::to_owned)).await.expect("append");
        let k = lost(&store, &first);
        assert!(store.inner.tree.get(&k).expect("read").is_some());
        store.inner.tree.remove(&k).expect("remove");
        store.close().await;
        first
    });
    drop(rt());
    rt().block_on(async {
        let store = Store::open(dir.path()).expect("reopen");
        let again = store.append(post(), key.map(str::to_owned)).await.expect("append");
        assert_duplicates_of(&again, &first);
        assert_eq!(store.head(), head);
        store.close().await;
    });
}

#[test]
fn an_event_logged_without_its_deduplication_key_gets_it_back_at_open() {
    let mx = include_str!("../../../../data/samples/maximizer/opportunity_stage_change.json");
    // The event's own key (`X`), written again from the event read back after `M indexed`.
    let lost = |store: &Store, first: &[AckEntry]| {
        let x = store.event(first[0].seq).expect("read").expect("logged").external_id.expect("an Id");
        keys::id_key(Tag::External, &x)
    };
    retry_after_a_lost_record(|| parse_ingest(mx.as_bytes()).expect("valid"), None, lost, 1);
}

#[test]
fn a_request_logged_without_its_idempotency_key_gets_it_back_at_open() {
    // The request's key (`K`), written again from the copy its chunk keeps.
    let lost = |store: &Store, first: &[AckEntry]| {
        let chunk = store.inner.tree.get(keys::chunk(first[0].seq)).expect("read").expect("the chunk");
        let kept = codec::decode_request_keys(&chunk).expect("decodes");
        assert_eq!(
            kept.iter().map(|r| (r.key.as_str(), r.first_seq, r.count)).collect::<Vec<_>>(),
            [("order-7", 1, 2)]
        );
        keys::id_key(Tag::Idempotency, "order-7")
    };
    retry_after_a_lost_record(|| events(2), Some("order-7"), lost, 2);
}

#[test]
fn a_request_key_that_names_earlier_events_is_not_kept_in_a_chunk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mx = include_str!("../../../../data/samples/maximizer/opportunity_stage_change.json");
    rt().block_on(async {
        let store = Store::open(dir.path()).expect("open");
        let first = store.append(parse_ingest(mx.as_bytes()).expect("valid"), None).await.expect("append");
        // The same Maximizer event again with a new event, under a key: the key's record names
        // the earlier event, which its chunk cannot say; the group stays one batch.
        let mut both = parse_ingest(mx.as_bytes()).expect("valid");
        both.extend(events(1));
        let second = store.append(both, Some("batch-2".into())).await.expect("append");
        assert!(second[0].duplicate && second[0].seq == first[0].seq);
        assert!(!second[1].duplicate);
        let chunk = store.inner.tree.get(keys::chunk(second[1].seq)).expect("read").expect("the chunk");
        assert!(codec::decode_request_keys(&chunk).expect("decodes").is_empty());
        assert!(store.inner.tree.get(keys::id_key(Tag::Idempotency, "batch-2")).expect("read").is_some());
        store.close().await;
    });
}

#[test]
fn concurrent_appends_share_flushes_and_get_distinct_seqs() {
    let dir = tempfile::tempdir().expect("tempdir");
    rt().block_on(async {
        let store = Store::open(dir.path()).expect("open");
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let s = store.clone();
                tokio::spawn(async move { s.append(events(1), None).await })
            })
            .collect();
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.push(t.await.expect("join").expect("append")[0].seq);
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
        store.close().await;
    });
}

/// A stop comes after the requests queued before it, the bulk queue's too: large appends
/// queued when the store closes (more than the stop's group takes) are written and answered,
/// and found after reopening.
#[test]
fn large_appends_queued_before_a_close_are_written() {
    const QUEUED: usize = 3 * crate::MAX_GROUP_SIZE / crate::BULK_EVENTS;
    let dir = tempfile::tempdir().expect("tempdir");
    rt().block_on(async {
        let store = Store::open(dir.path()).expect("open");
        // Made first, so that they are queued at once, faster than the writer takes them.
        let requests: Vec<_> = (0..QUEUED).map(|_| events(crate::BULK_EVENTS)).collect();
        let pending: Vec<_> =
            requests.into_iter().map(|events| store.queue_append(events, None).expect("queued")).collect();
        store.close().await;
        for p in pending {
            assert_eq!(p.wait().await.expect("written").len(), crate::BULK_EVENTS);
        }
    });
    drop(rt());
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(store.head(), (QUEUED * crate::BULK_EVENTS) as u64);
    rt().block_on(store.close());
}
