use super::*;
use crate::test_support::*;
use crate::{DeliveryBatch, EventFilter, Options, Pending};

#[test]
fn compaction_removes_finished_old_events_and_never_reuses_seqs() {
    let dir = tempfile::tempdir().expect("tempdir");
    rt().block_on(async {
        let store = Store::open(dir.path()).expect("open");
        store.append(events(3), Some("k".into())).await.expect("append");
        let t = crmhook_core::Target::create(
            serde_json::json!({"name": "t", "url": "https://a.example"}).as_object().expect("object"),
            false,
            "whsec_x".into(),
            0,
        )
        .expect("target");
        store.create_target(&t, 1).await.expect("target");
        let mut b = DeliveryBatch::default();
        b.cursor(&t.id, 3).expect("encode");
        b.pending(&t.id, 2, Pending::first(0)).expect("encode");
        // Event 1's attempts, each with its response.
        let response =
            crate::Response { status: 500, headers: Vec::new(), body: b"no".to_vec(), body_truncated: false };
        let failed = crate::Attempt {
            response: Some(response.clone()),
            ..attempt(1, crate::AttemptResult::Retrying { next_at_ms: 0 })
        };
        let delivered = crate::Attempt { response: Some(response), ..attempt(2, crate::AttemptResult::Delivered) };
        b.attempt(&t.id, 1, &failed).expect("encode");
        b.attempt(&t.id, 1, &delivered).expect("encode");
        store.write_deliveries(b).await.expect("write");
        assert_eq!(store.inner.tree.scan_prefix(Tag::Attempt.prefix()).count(), 1);
        // Too recent: nothing goes.
        assert_eq!(store.compact(0, 100).expect("compact"), 0);
        // Event 2 is still owed: 1 and 3 go, and event 1's attempt records (with the answers
        // they keep) with it.
        assert_eq!(store.compact(u64::MAX, 100).expect("compact"), 2);
        assert_eq!(store.inner.tree.scan_prefix(Tag::Attempt.prefix()).count(), 0);
        assert_eq!(store.events_from(1).map(|e| e.expect("event").seq).collect::<Vec<_>>(), [2]);
        assert!(store.event_by_id(&store.event(2).expect("read").expect("kept").id).expect("read").is_some());
        let mut b = DeliveryBatch::default();
        b.done(&t.id, 2);
        store.write_deliveries(b).await.expect("write");
        assert_eq!(store.compact(u64::MAX, 100).expect("compact"), 1);
        // The idempotency key named only removed events: a retry is a new request now.
        let again = store.append(events(1), Some("k".into())).await.expect("append");
        assert_eq!((again[0].seq, again[0].duplicate), (4, false));
        store.close().await;
    });
    rt().block_on(async {
        let store = Store::open(dir.path()).expect("reopen");
        let t = store.targets().expect("targets").remove(0).id;
        let mut b = DeliveryBatch::default();
        b.cursor(&t, 4).expect("encode");
        store.write_deliveries(b).await.expect("write");
        assert_eq!(store.compact(u64::MAX, 100).expect("compact"), 1);
        assert_eq!(store.events_from(1).count(), 0, "the log is empty");
        store.close().await;
    });
    rt().block_on(async {
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.head(), 4);
        let next = store.append(events(1), None).await.expect("append");
        assert_eq!(next[0].seq, 5, "seqs are never given twice");
        store.close().await;
    });
}

/// A stored target with one subscription, to events of `event_type` (from the log's start).
async fn subscribed_target(store: &Store, event_type: &str) -> crmhook_core::Target {
    let t = stored_target(store).await;
    let sub = crmhook_core::Subscription::create(
        serde_json::json!({"target_id": t.id.as_str(), "event_types": [event_type]}).as_object().expect("object"),
        0,
    )
    .expect("subscription");
    store.put_subscription(&sub).await.expect("subscription");
    t
}

/// A target that lags (disabled, or waiting for a retry) keeps the events it is owed, not
/// every later event: those its subscriptions do not match go, and their finished
/// deliveries to other targets leave the blocks and the dead counts.
#[test]
fn a_lagging_target_keeps_only_what_it_is_owed() {
    let dir = tempfile::tempdir().expect("tempdir");
    rt().block_on(async {
        let store = Store::open(dir.path()).expect("open");
        let lagging = subscribed_target(&store, "crm_record_created").await;
        // A second target with no subscription and no cursor written: it owes nothing.
        store.create_target(&target(), 0).await.expect("target");
        let live = target();
        store.create_target(&live, 0).await.expect("target");
        // 1–9: field updates, records created, records deleted in turn.
        store.append(mixed(0, 9), None).await.expect("append");
        // The live target read them all: every deleted record's delivery went dead, the others
        // were delivered.
        let mut b = DeliveryBatch::default();
        for seq in 1..=9u64 {
            let result = if seq % 3 == 0 { crate::AttemptResult::Dead } else { crate::AttemptResult::Delivered };
            b.attempt(&live.id, seq, &attempt(1, result)).expect("encode");
        }
        b.cursor(&live.id, 9).expect("encode");
        store.write_deliveries(b).await.expect("write");
        assert_eq!(store.delivery_counts(&live.id).expect("counts").1, 3);
        // The lagging target's cursor is 0: it is owed the records created (2, 5, 8) only.
        assert_eq!(store.compact(u64::MAX, 100).expect("compact"), 6);
        assert_eq!(store.events_from(1).map(|e| e.expect("event").seq).collect::<Vec<_>>(), [2, 5, 8]);
        assert_eq!(store.final_attempt(&live.id, 3).expect("read"), None, "the removed event's entry");
        assert!(store.final_attempt(&live.id, 5).expect("read").is_some(), "a kept event's entry");
        assert_eq!(store.delivery_counts(&live.id).expect("counts").1, 0, "every dead one was of a removed event");
        // Once it has read past them, they go too.
        let mut b = DeliveryBatch::default();
        b.cursor(&lagging.id, 9).expect("encode");
        store.write_deliveries(b).await.expect("write");
        assert_eq!(store.compact(u64::MAX, 100).expect("compact"), 3);
        store.close().await;
    });
}

/// A pass's calls go on where the last one stopped at `max`; one that reached the end
/// clears the mark, and the next starts from the log's start.
#[test]
fn a_pass_goes_on_where_its_last_call_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    rt().block_on(async {
        let store = Store::open(dir.path()).expect("open");
        let lagging = subscribed_target(&store, "crm_field_update").await;
        // 1–30: the field updates (1, 4, 7, …, 28) are owed to the lagging target.
        store.append(mixed(0, 30), None).await.expect("append");
        let left = || store.events_from(1).map(|e| e.expect("event").seq).collect::<Vec<_>>();
        assert_eq!(store.compact(u64::MAX, 5).expect("compact"), 5);
        assert_eq!(left()[..5], [1, 4, 7, 9, 10], "2, 3, 5, 6 and 8 went; the next call goes on at 9");
        // The target reads everything: the next call, from 9, leaves what came before.
        let mut b = DeliveryBatch::default();
        b.cursor(&lagging.id, 30).expect("encode");
        store.write_deliveries(b).await.expect("write");
        assert_eq!(store.compact(u64::MAX, 100).expect("compact"), 22);
        assert_eq!(left(), [1, 4, 7]);
        // It reached the end: the next starts from the log's start again.
        assert_eq!(store.compact(u64::MAX, 100).expect("compact"), 3);
        assert_eq!(store.compact(u64::MAX, 100).expect("compact"), 0);
        store.close().await;
    });
}

#[test]
fn compaction_inside_a_chunk_keeps_its_other_events_and_their_postings() {
    let dir = tempfile::tempdir().expect("tempdir");
    rt().block_on(async {
        let store = Store::open_with(dir.path(), Options { record_window: 6, ..Default::default() }).expect("open");
        store.append(mixed(0, 4), None).await.expect("append");
        store.append(mixed(4, 6), None).await.expect("append");
        let t = crmhook_core::Target::create(
            serde_json::json!({"name": "t", "url": "https://a.example"}).as_object().expect("object"),
            false,
            "whsec_x".into(),
            0,
        )
        .expect("target");
        store.create_target(&t, 10).await.expect("target");
        let mut b = DeliveryBatch::default();
        for seq in [4, 7] {
            b.pending(&t.id, seq, Pending::first(0)).expect("encode");
        }
        store.write_deliveries(b).await.expect("write");
        assert_eq!(store.compact(u64::MAX, 100).expect("compact"), 8);
        assert_eq!(store.events_from(1).map(|e| e.expect("event").seq).collect::<Vec<_>>(), [4, 7]);
        assert_eq!(store.event(5).expect("read"), None);
        let by_kanban = EventFilter { kanban_id: Some("k1".into()), ..Default::default() };
        // Events 4 and 7 are r3 (k1) and r6 (k0).
        assert_eq!(store.events_page(&by_kanban, 0, 10).expect("page").iter().map(|e| e.seq).collect::<Vec<_>>(), [4]);
        let by_type = EventFilter { event_type: Some(TYPES[0].into()), ..Default::default() };
        assert_eq!(store.events_page(&by_type, 0, 10).expect("page").iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 7]);
        for (record, want) in [("r3", vec![4]), ("r6", vec![7]), ("r0", vec![])] {
            let by_record = EventFilter { record_id: Some(record.into()), ..Default::default() };
            let got: Vec<u64> = store.events_page(&by_record, 0, 10).expect("page").iter().map(|e| e.seq).collect();
            assert_eq!(got, want, "{record}");
        }
        // Every filter, both ways, skips the gaps.
        assert_filters_match_a_scan(&store);
        // The window holding events 1–10 was written out, and compaction emptied its
        // buckets but those of r3 and r6.
        let buckets = store.inner.tree.scan_prefix(Tag::RecordIndex.prefix()).count();
        assert_eq!(
            buckets,
            [record_bucket("r3"), record_bucket("r6")].into_iter().collect::<std::collections::HashSet<_>>().len()
        );
        store.close().await;
    });
    rt().block_on(async {
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.head(), 10);
        assert_eq!(store.append(mixed(10, 1), None).await.expect("append")[0].seq, 11);
        store.close().await;
    });
}

/// The `Idempotency-Key` records of the events a pass removes are looked for once, by the
/// pass's last call (a walk of every such record), not by every call: until then a retry of a
/// removed event's key is still a duplicate; after it, a new request.
#[test]
fn a_pass_looks_for_the_removed_events_keys_once_at_its_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    rt().block_on(async {
        let store = Store::open(dir.path()).expect("open");
        for i in 0..5 {
            store.append(events(1), Some(format!("k{i}"))).await.expect("append");
        }
        let keys = || store.inner.tree.scan_prefix(Tag::Idempotency.prefix()).count();
        // Two events a call: the first two calls stop at `max`, and leave the keys.
        assert_eq!(store.compact(u64::MAX, 2).expect("compact"), 2);
        assert_eq!(keys(), 5);
        let again = store.append(events(1), Some("k0".into())).await.expect("append");
        assert_eq!((again[0].seq, again[0].duplicate), (1, true), "still a duplicate mid-pass");
        assert_eq!(store.compact(u64::MAX, 2).expect("compact"), 2);
        assert_eq!(keys(), 5);
        // The last call removes the fifth event, and every key that named only removed events.
        assert_eq!(store.compact(u64::MAX, 2).expect("compact"), 1);
        assert_eq!(keys(), 0);
        let again = store.append(events(1), Some("k0".into())).await.expect("append");
        assert_eq!((again[0].seq, again[0].duplicate), (6, false), "a new request once the pass ended");
        // A pass that removes nothing walks nothing (no key is owed): the new key stays.
        assert_eq!(store.compact(0, 2).expect("compact"), 0);
        assert_eq!(keys(), 1);
        store.close().await;
    });
}

/// Two events with the keys `a` and `b`, then one received a later millisecond: answers that
/// one's time, a cutoff that keeps it (a call with `max` 2 removes the first two and stops).
async fn two_keyed_then_one_later(store: &Store) -> u64 {
    store.append(events(1), Some("a".into())).await.expect("append");
    store.append(events(1), Some("b".into())).await.expect("append");
    std::thread::sleep(std::time::Duration::from_millis(2));
    let t = store.append(events(1), None).await.expect("append")[0].seq;
    store.event(t).expect("read").expect("kept").received_at_ms
}

/// A pass whose last call finds no event to remove still removes the keys its earlier calls
/// left.
#[test]
fn a_pass_whose_last_call_removes_no_event_still_removes_the_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    rt().block_on(async {
        let store = Store::open(dir.path()).expect("open");
        // The first call stops at `max` right after event 2 (event 3, received a later
        // millisecond, is too recent to go).
        let cutoff = two_keyed_then_one_later(&store).await;
        assert_eq!(store.compact(cutoff, 2).expect("compact"), 2);
        let keys = || store.inner.tree.scan_prefix(Tag::Idempotency.prefix()).count();
        assert_eq!(keys(), 2);
        assert_eq!(store.compact(cutoff, 2).expect("compact"), 0);
        assert_eq!(keys(), 0, "removed by the pass's last call, though it removed no event");
        store.close().await;
    });
}

/// A pass stopped between its calls by a restart leaves keys of removed events behind: the
/// first pass after a start looks for them, though it removes no event. Until 2026-12-07 the
/// count of what was owed was in memory alone, and they waited for a pass that removed one.
#[test]
fn the_first_pass_after_a_start_looks_for_keys_a_stopped_pass_left() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = |store: &Store| store.inner.tree.scan_prefix(Tag::Idempotency.prefix()).count();
    let cutoff = rt().block_on(async {
        let store = Store::open(dir.path()).expect("open");
        let cutoff = two_keyed_then_one_later(&store).await;
        // The pass's first call stops at `max`; the server stops before its last.
        assert_eq!(store.compact(cutoff, 2).expect("compact"), 2);
        assert_eq!(keys(&store), 2);
        store.close().await;
        cutoff
    });
    rt().block_on(async {
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(keys(&store), 2);
        assert_eq!(store.compact(cutoff, 2).expect("compact"), 0);
        assert_eq!(keys(&store), 0, "the first pass after the start removed them");
        store.close().await;
    });
}

/// Events up to how far a target had matched (`scanned`) past its cursor may be in its window as
/// first attempts with nothing on disk, matched by the subscriptions of that time: they stay
/// whatever its subscriptions match now (an edited subscription's target owes them still), until
/// its cursor passes them. Until 2026-12-07 they went, and the target dropped them.
#[test]
fn what_a_window_may_hold_stays_whatever_the_subscriptions_match_now() {
    let dir = tempfile::tempdir().expect("tempdir");
    rt().block_on(async {
        let store = Store::open(dir.path()).expect("open");
        // Its subscription matches none of the events now.
        let t = subscribed_target(&store, "ai_pause").await;
        store.append(mixed(0, 9), None).await.expect("append");
        let mut b = DeliveryBatch::default();
        b.scanned(&t.id, 6).expect("encode");
        store.write_deliveries(b).await.expect("write");
        assert_eq!(store.compact(u64::MAX, 100).expect("compact"), 3);
        assert_eq!(store.events_from(1).map(|e| e.expect("event").seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6]);
        let mut b = DeliveryBatch::default();
        b.cursor(&t.id, 6).expect("encode");
        store.write_deliveries(b).await.expect("write");
        assert_eq!(store.compact(u64::MAX, 100).expect("compact"), 6);
        store.close().await;
    });
}

/// What became owed between the choice and its removal (a redelivery's pending entry) stays,
/// with the `Idempotency-Key` record that names it: the removal asks again (in cluster mode at
/// the entry's place, the same on every copy).
#[test]
fn an_event_owed_again_after_the_choice_stays_with_its_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    rt().block_on(async {
        let store = Store::open(dir.path()).expect("open");
        let t = stored_target(&store).await;
        store.append(events(3), Some("k".into())).await.expect("append");
        store.append(events(1), Some("j".into())).await.expect("append");
        let choice = store.choose(u64::MAX, 100, 0, false).expect("choose");
        assert_eq!((choice.seqs.len(), choice.keys.len()), (4, 2));
        let mut b = DeliveryBatch::default();
        b.pending(&t.id, 2, Pending::first(0)).expect("encode");
        store.write_deliveries(b).await.expect("write");
        let plan = store.removal(&choice).expect("removal");
        assert_eq!(plan.removed, 3);
        store.apply_records(plan.records).expect("apply");
        store.forget_chunks();
        assert_eq!(store.events_from(1).map(|e| e.expect("event").seq).collect::<Vec<_>>(), [2]);
        let again = store.append(events(3), Some("k".into())).await.expect("append");
        assert!(again.iter().all(|a| a.duplicate), "the key names the event kept: {again:?}");
        let other = store.append(events(1), Some("j".into())).await.expect("append");
        assert!(!other[0].duplicate, "the other key went with its event: {other:?}");
        store.close().await;
    });
}
