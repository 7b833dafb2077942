//! The replica's unit tests: two copies of one log agree, a restore copies a store, a failed
//! publish answers its callers.

use super::*;
use crate::test_support::*;
use crmhook_core::event::parse_ingest;

/// The replicated log of the tests: every entry published, in order.
struct FakeLog(Vec<Vec<u8>>);

/// Two copies of one log, nodes 1 and 2, in `da` and `db`, with what each hands out to publish.
fn two_copies(
    da: &std::path::Path,
    db: &std::path::Path,
) -> (Replica, Replica, mpsc::Receiver<Outgoing>, mpsc::Receiver<Outgoing>) {
    let a = Store::open_replica(da, crate::Options::default(), 1).expect("open a");
    let b = Store::open_replica(db, crate::Options::default(), 2).expect("open b");
    let (out_a, out_b) = (a.take_outgoing().expect("out"), b.take_outgoing().expect("out"));
    (a, b, out_a, out_b)
}

impl FakeLog {
    /// Publishes what `node` has queued as one entry.
    fn publish(&mut self, node: &Replica, rx: &mut mpsc::Receiver<Outgoing>) {
        let mut ops = Vec::new();
        while let Ok(op) = rx.try_recv() {
            ops.push(op);
        }
        self.0.push(Replica::encode_entry(node.node(), ops).expect("encode"));
    }

    /// Applies every entry not yet applied on `node`, in order.
    async fn catch_up(&self, node: &Replica) {
        for (i, entry) in self.0.iter().enumerate() {
            node.apply(i as u64 + 1, entry).await.expect("apply");
        }
    }
}

#[test]
fn two_copies_of_one_log_agree_and_callers_are_answered_at_apply() {
    let (da, db) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    rt().block_on(async {
        let (a, b, mut out_a, mut out_b) = two_copies(da.path(), db.path());
        let mut log = FakeLog(Vec::new());

        // A takes two events, B one Maximizer event, then the same Maximizer event again.
        let mx = include_str!("../../../../data/samples/maximizer/opportunity_stage_change.json");
        let from_a = a.store().queue_append(events(2), None).expect("queued");
        log.publish(&a, &mut out_a);
        let from_b = b.store().queue_append(parse_ingest(mx.as_bytes()).expect("valid"), None).expect("queued");
        let again = a.store().queue_append(parse_ingest(mx.as_bytes()).expect("valid"), None).expect("queued");
        log.publish(&b, &mut out_b);
        log.publish(&a, &mut out_a);
        // A target created on B.
        let target = target();
        let b2 = b.store().clone();
        let t = target.clone();
        let create = tokio::spawn(async move { b2.create_target(&t, 0).await });
        tokio::task::yield_now().await;
        while out_b.is_empty() {
            tokio::task::yield_now().await;
        }
        log.publish(&b, &mut out_b);

        let mut config = a.store().watch_config();
        log.catch_up(&a).await;
        log.catch_up(&b).await;
        let from_a = from_a.wait().await.expect("acked");
        let from_b = from_b.wait().await.expect("acked");
        let again = again.wait().await.expect("acked");
        create.await.expect("join").expect("created");
        assert_eq!(from_a.iter().map(|x| x.seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(from_b[0].seq, 3);
        assert!(
            again[0].duplicate && again[0].id == from_b[0].id,
            "the same Maximizer Id is logged once: {again:?} {from_b:?}"
        );
        config.changed().await.expect("the target's creation moves the config watch");

        for store in [a.store(), b.store()] {
            assert_eq!(store.head(), 3);
            let ids: Vec<_> = store.events_from(1).map(|e| e.expect("read").id).collect();
            assert_eq!(ids, [from_a[0].id.clone(), from_a[1].id.clone(), from_b[0].id.clone()]);
            assert_eq!(store.target(&target.id).expect("read").map(|t| t.id), Some(target.id.clone()));
            assert_eq!(store.replicated().expect("read"), 4);
        }
        a.store().close().await;
        b.store().close().await;
    });
    // A copy reopened resumes after the last entry it applied; an entry read again is skipped.
    rt().block_on(async {
        let a = Store::open_replica(da.path(), crate::Options::default(), 3).expect("reopen a");
        assert_eq!(a.handed(), 4);
        a.apply(4, &Replica::encode_entry(9, Vec::new()).expect("encode")).await.expect("skipped");
        assert_eq!(a.store().head(), 3);
        a.store().close().await;
    });
}

#[test]
fn a_restore_makes_a_new_copy_equal_to_the_store_it_copies() {
    use crate::records::{AttemptResult, Pending, Series};
    use crate::DeliveryBatch;
    let (single, copy_dir) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    // Windows of 8 events: 35 events are 4 windows on disk and 3 in memory.
    let options = || crate::Options { record_window: 8, ..Default::default() };
    let target = rt().block_on(async {
        let store = Store::open_with(single.path(), options()).expect("open");
        for i in 0..5 {
            store.append(mixed(i * 7, 7), Some(format!("key-{i}"))).await.expect("append");
        }
        let target = stored_target(&store).await;
        let mut batch = DeliveryBatch::default();
        batch.cursor(&target.id, 3).expect("cursor");
        batch.attempt(&target.id, 4, &attempt(1, AttemptResult::Delivered)).expect("finished");
        batch.attempt(&target.id, 5, &attempt(1, AttemptResult::Retrying { next_at_ms: 123_456 })).expect("a");
        batch.pending(&target.id, 5, Pending { attempt: 2, due_at_ms: 123_456, round: 1 }).expect("pending");
        store.write_deliveries(batch).await.expect("deliveries");
        store.put_stats(vec![("ingest".into(), Series::default())], vec![]).await.expect("stats");
        store.close().await;
        target
    });
    rt().block_on(async {
        let single = Store::open_with(single.path(), options()).expect("reopen");
        let entries = single.restore_entries(1024);
        let mut log = FakeLog(entries.collect::<Result<_>>().expect("entries"));
        assert!(log.0.len() > 2, "small entries: {} of them", log.0.len());

        let copy = Store::open_replica(copy_dir.path(), options(), 1).expect("open the copy");
        let mut out = copy.take_outgoing().expect("out");
        let mut head = copy.store().watch_head();
        log.catch_up(&copy).await;
        tokio::time::timeout(std::time::Duration::from_secs(10), head.wait_for(|h| *h == 35))
            .await
            .expect("the copy's head moves at the restore's end")
            .expect("watch");
        let copied = copy.store();
        assert_eq!(copied.replicated().expect("read"), log.0.len() as u64);
        let all = |s: &Store| s.events_from(1).collect::<Result<Vec<_>>>().expect("events");
        assert_eq!(all(copied), all(&single));
        assert_filters_match_a_scan(copied);
        assert_eq!(copied.target(&target.id).expect("read").map(|t| t.id), Some(target.id.clone()));
        assert_eq!(copied.cursor(&target.id).expect("read"), Some(3));
        assert_eq!(copied.pending(&target.id, 10).expect("read"), single.pending(&target.id, 10).expect("read"));
        assert_eq!(copied.pending(&target.id, 10).expect("read")[0].1.due_at_ms, 123_456);
        assert_eq!(copied.final_attempt(&target.id, 4).expect("read"), Some(attempt(1, AttemptResult::Delivered)));
        assert_eq!(copied.attempts(5).expect("read"), single.attempts(5).expect("read"));
        assert!(copied.stats().expect("read").is_empty(), "the console's counts stay on their node");
        assert_eq!(single.stats().expect("read").len(), 1);

        // The copy goes on from the restored log: a retried request is a duplicate, new
        // events take the seqs after the head, and the index window read back fills and is
        // written out with them.
        let again = copied.queue_append(mixed(0, 7), Some("key-0".into())).expect("queued");
        let more = copied.queue_append(mixed(35, 6), None).expect("queued");
        log.publish(&copy, &mut out);
        log.catch_up(&copy).await;
        let again = again.wait().await.expect("acked");
        assert!(again.iter().all(|a| a.duplicate) && again.iter().map(|a| a.seq).eq(1..=7), "{again:?}");
        assert_eq!(
            more.wait().await.expect("acked").iter().map(|a| a.seq).collect::<Vec<_>>(),
            (36..=41).collect::<Vec<_>>()
        );
        assert_eq!(copied.head(), 41);
        assert_filters_match_a_scan(copied);
        single.close().await;
        copied.close().await;
    });
    // Reopened, the copy reads the same.
    rt().block_on(async {
        let copy = Store::open_replica(copy_dir.path(), options(), 2).expect("reopen the copy");
        assert_eq!(copy.store().head(), 41);
        assert_filters_match_a_scan(copy.store());
        copy.store().close().await;
    });
}

#[test]
fn a_failed_publish_answers_its_callers() {
    let dir = tempfile::tempdir().expect("tempdir");
    rt().block_on(async {
        let a = Store::open_replica(dir.path(), crate::Options::default(), 1).expect("open");
        let mut out = a.take_outgoing().expect("out");
        let pending = a.store().queue_append(events(1), None).expect("queued");
        let op = out.try_recv().expect("an op");
        a.fail(&[op.nonce], "no quorum", true);
        // Published but not acknowledged: the log may hold it, and the caller is told so.
        assert!(matches!(pending.wait().await, Err(StoreError::Unacknowledged(e)) if e == "no quorum"));
        // Never published (it could not be encoded): nothing was stored.
        let pending = a.store().queue_append(events(1), None).expect("queued");
        let op = out.try_recv().expect("an op");
        a.fail(&[op.nonce], "not encoded", false);
        assert!(matches!(pending.wait().await, Err(StoreError::Io(e)) if e == "not encoded"));
        assert_eq!(a.store().head(), 0);
        a.store().close().await;
    });
}

/// A node of a build before the quarantine's indexes puts a piece alone (in a cluster upgraded
/// node by node): this node adds its index keys as it applies the entry, so the piece is listed
/// under its source and holds its bytes.
#[test]
fn a_piece_an_older_node_puts_alone_is_indexed_here() {
    use crate::records::Rejected;
    use crmhook_core::{RejectedId, SourceId, SourceKind};
    let dir = tempfile::tempdir().expect("tempdir");
    rt().block_on(async {
        let a = Store::open_replica(dir.path(), crate::Options::default(), 1).expect("open");
        let mut out = a.take_outgoing().expect("out");
        let source = SourceId::generate();
        let piece = |bytes: &[u8]| Rejected {
            id: RejectedId::generate(),
            source_id: source.clone(),
            kind: SourceKind::Maximizer,
            at_ms: crmhook_core::time::now_ms(),
            index: Some(0),
            reason: "`Entity` is required".into(),
            bytes: bytes.to_vec(),
            retried: None,
        };
        let old = piece(b"{}");
        let put = WireWrite::Put(
            crate::keys::id_key(crate::keys::Tag::Rejected, old.id.as_str()),
            codec::encode(&old).expect("encode"),
        );
        let op = codec::encode(&WireOp::Write { writes: vec![put] }).expect("encode");
        let mut log = FakeLog(vec![codec::encode(&EntryV1 { node: 9, ops: vec![(1, EntryOp(op))] }).expect("entry")]);
        // A piece of this node's, after it: once it is answered, the older node's is applied.
        let own = piece(b"[]");
        let store = a.store().clone();
        let kept = tokio::spawn({
            let own = own.clone();
            async move { store.quarantine(&[own]).await }
        });
        while out.is_empty() {
            tokio::task::yield_now().await;
        }
        log.publish(&a, &mut out);
        log.catch_up(&a).await;
        assert_eq!(kept.await.expect("join").expect("kept"), std::slice::from_ref(&own.id));

        let mut listed: Vec<_> =
            a.store().rejected_page(Some(&source), None, 10).expect("page").into_iter().map(|r| r.id).collect();
        listed.sort();
        let mut both = vec![old.id.clone(), own.id.clone()];
        both.sort();
        assert_eq!(listed, both, "both pieces are listed under their source");
        // The older node's piece holds its bytes: sent again here, nothing new is kept.
        assert_eq!(a.store().quarantine(&[piece(b"{}")]).await.expect("held"), std::slice::from_ref(&old.id));
        assert!(out.is_empty(), "nothing was written");
        a.store().close().await;
    });
}

/// Two nodes change one API key from the same state at once: the change the log holds first is
/// applied on both copies, the other is refused on both (its caller answered `Changed`), and
/// both copies' keys watches move.
#[test]
fn two_changes_of_one_api_key_from_the_same_state_are_applied_once_on_every_copy() {
    use crate::{ApiKeyRecord, KeyChange};
    let (da, db) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    rt().block_on(async {
        let (a, b, mut out_a, mut out_b) = two_copies(da.path(), db.path());
        let mut log = FakeLog(Vec::new());
        let key = ApiKeyRecord {
            id: "key_one".into(),
            name: "ops".into(),
            role: "operator".into(),
            hash: [1; 32],
            created_ms: 1,
            rotated_ms: None,
            revoked_ms: None,
            bootstrap: None,
        };
        let change = |before: Option<&ApiKeyRecord>, after: &ApiKeyRecord| {
            let mut change = KeyChange::default();
            change.expect(&after.id, before).expect("expect");
            change.put(after).expect("put");
            change
        };
        // Made on A.
        let a2 = a.store().clone();
        let made = tokio::spawn({
            let c = change(None, &key);
            async move { a2.change_api_keys(c).await }
        });
        while out_a.is_empty() {
            tokio::task::yield_now().await;
        }
        log.publish(&a, &mut out_a);
        log.catch_up(&a).await;
        log.catch_up(&b).await;
        made.await.expect("join").expect("made");
        let mut watches = [a.store().watch_keys(), b.store().watch_keys()];
        // Revoked on A and rotated on B, both from the key as made, in one entry each.
        let revoked = ApiKeyRecord { revoked_ms: Some(5), ..key.clone() };
        let rotated = ApiKeyRecord { hash: [2; 32], rotated_ms: Some(5), ..key.clone() };
        let (a2, b2) = (a.store().clone(), b.store().clone());
        let revoke = tokio::spawn({
            let c = change(Some(&key), &revoked);
            async move { a2.change_api_keys(c).await }
        });
        let rotate = tokio::spawn({
            let c = change(Some(&key), &rotated);
            async move { b2.change_api_keys(c).await }
        });
        while out_a.is_empty() || out_b.is_empty() {
            tokio::task::yield_now().await;
        }
        log.publish(&a, &mut out_a);
        log.publish(&b, &mut out_b);
        log.catch_up(&a).await;
        log.catch_up(&b).await;
        revoke.await.expect("join").expect("the revocation, first in the log, is applied");
        let refused = rotate.await.expect("join");
        assert!(refused.as_ref().is_err_and(StoreError::is_changed), "{refused:?}");
        for (store, watch) in [a.store(), b.store()].into_iter().zip(&mut watches) {
            assert_eq!(store.api_keys().expect("read"), std::slice::from_ref(&revoked));
            assert!(watch.has_changed().expect("watch"), "the keys watch moved");
        }
        a.store().close().await;
        b.store().close().await;
    });
}

/// Retention is an entry of the log: the node whose task runs it publishes what goes, every copy
/// removes it at the same place, and the copies stay equal record for record. A retry of a
/// removed request's `Idempotency-Key` is then a new event on every copy, with the same seq and
/// id (each node compacting its own copy on its own timer made it a duplicate on one copy and a
/// new event on the other).
#[test]
fn retention_is_applied_by_every_copy_at_the_same_place() {
    let (da, db) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    rt().block_on(async {
        let (a, b, mut out_a, mut out_b) = two_copies(da.path(), db.path());
        let mut log = FakeLog(Vec::new());
        let first = a.store().queue_append(events(3), Some("k".into())).expect("queued");
        // Received a later millisecond: the cutoff between them.
        std::thread::sleep(std::time::Duration::from_millis(2));
        let kept = b.store().queue_append(events(1), None).expect("queued");
        log.publish(&a, &mut out_a);
        log.publish(&b, &mut out_b);
        let entry = crate::AuditEntry {
            at_ms: 10,
            who: "admin token".into(),
            from: None,
            action: "target.created".into(),
            subject: "tgt_x".into(),
            before: None,
            after: None,
        };
        let a2 = a.store().clone();
        let audited = tokio::spawn(async move { a2.audit(&[entry]).await });
        while out_a.is_empty() {
            tokio::task::yield_now().await;
        }
        log.publish(&a, &mut out_a);
        log.catch_up(&a).await;
        log.catch_up(&b).await;
        first.wait().await.expect("acked");
        kept.wait().await.expect("acked");
        audited.await.expect("join").expect("audited");

        // A's retention task: the events received before the cutoff (1–3, not 4), the audit
        // entry. Each call is an entry of its own, answered once A's copy applied it.
        let a2 = a.store().clone();
        let cutoff = b.store().event(4).expect("read").expect("kept").received_at_ms;
        let removed = tokio::task::spawn_blocking(move || a2.compact(cutoff, 100));
        while out_a.is_empty() {
            assert!(!removed.is_finished(), "the call published nothing: {:?}", removed.await);
            tokio::task::yield_now().await;
        }
        log.publish(&a, &mut out_a);
        let a2 = a.store().clone();
        let audit = tokio::task::spawn_blocking(move || a2.compact_audit(u64::MAX, 100));
        while out_a.is_empty() {
            assert!(!audit.is_finished(), "the call published nothing: {:?}", audit.await);
            tokio::task::yield_now().await;
        }
        log.publish(&a, &mut out_a);
        log.catch_up(&a).await;
        log.catch_up(&b).await;
        assert_eq!(removed.await.expect("join").expect("compacted"), 3);
        assert_eq!(audit.await.expect("join").expect("compacted"), 1);
        // B's own call, once B applied them, finds nothing more to remove, and publishes nothing.
        settled(b.store(), 5).await;
        let b2 = b.store().clone();
        assert_eq!(tokio::task::spawn_blocking(move || b2.compact(cutoff, 100)).await.expect("join").expect("read"), 0);
        assert!(out_b.is_empty());

        // The retry, taken by B: a new event on both copies.
        let retry = b.store().queue_append(events(1), Some("k".into())).expect("queued");
        log.publish(&b, &mut out_b);
        log.catch_up(&a).await;
        log.catch_up(&b).await;
        let retry = retry.wait().await.expect("acked");
        assert_eq!((retry[0].seq, retry[0].duplicate), (5, false), "{retry:?}");
        for store in [a.store(), b.store()] {
            settled(store, 6).await;
            assert!(store.audit_page(None, 10).expect("read").is_empty());
        }
        // The same events, and the same records but those each copy lays out for itself: the
        // chunks (a group commit's events, and each copy groups the entries it applies as they
        // come) and the index postings (written out with a group).
        let events =
            |store: &Store| -> Vec<crmhook_core::Event> { store.events_from(1).map(|e| e.expect("read")).collect() };
        assert_eq!(events(a.store()).iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 5]);
        assert_eq!(events(a.store()), events(b.store()));
        let laid_out =
            [Tag::Event, Tag::TypeIndex, Tag::RecordIndex, Tag::KanbanIndex, Tag::SourceIndex].map(Tag::byte);
        let records = |store: &Store| -> Vec<(Vec<u8>, Vec<u8>)> {
            let all = store.inner.tree.iter().map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).expect("read"));
            all.filter(|(k, _)| !laid_out.contains(&k[0])).collect()
        };
        assert_eq!(records(a.store()), records(b.store()), "the copies hold the same records");
        a.store().close().await;
        b.store().close().await;
    });
}

/// Waits until `store` has applied the log's entries up to `seq`.
async fn settled(store: &Store, seq: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.replicated().expect("read") < seq {
        assert!(std::time::Instant::now() < deadline, "entry {seq} not applied in 10 s");
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

#[test]
fn a_choice_with_many_keys_goes_out_in_parts_of_bounded_size() {
    use crate::compact::Choice;
    let key = |i: usize| format!("K{i:0>99}").into_bytes(); // 100 bytes each
    let many = Choice { seqs: (1..=5).collect(), keys: (0..6_000).map(key).collect(), ..Default::default() };
    let parts = retention::in_parts(many);
    assert_eq!(parts.len(), 3, "600,000 bytes of keys in parts of 256 KiB");
    assert_eq!(parts[0].seqs.len(), 5, "the events go with the first part");
    assert!(parts[1..].iter().all(|p| p.seqs.is_empty()));
    assert!(parts.iter().all(|p| p.keys.iter().map(Vec::len).sum::<usize>() <= retention::KEY_BYTES));
    let all: Vec<Vec<u8>> = parts.into_iter().flat_map(|p| p.keys).collect();
    assert_eq!(all, (0..6_000).map(key).collect::<Vec<_>>(), "every key once, in order");
    assert_eq!(retention::in_parts(Choice::default()).len(), 1, "no key: one part");
}
