//! The router in cluster mode (issue 16): ownership ([`Ownership::watching`]) and other nodes'
//! admin changes, read back from the store. Each node here is a store in replica mode whose
//! replicated log is a task of the test: it publishes what the store hands out as one entry
//! and applies it at once (so the config watch moves as on a real cluster node). "Another
//! node" writes with the store directly, not through the router. Deliveries go to a receiver
//! on 127.0.0.1.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crmhook_core::event::parse_ingest;
use crmhook_core::{sign, Subscription, Target, TargetId};
use crmhook_store::{AttemptResult, DeliveryBatch, Disabled, LogHandle, Replica, Request, Store};
use tokio::sync::watch;

use super::*;
use crate::ownership::{Deadlines, Owned};
use receiver::Receiver;

mod fenced;
mod receiver;

/// How long any wait here may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(20);

/// Events with these record ids (all `crm_field_update`).
fn events(records: &[&str]) -> Vec<NewEvent> {
    let body: Vec<String> = records
        .iter()
        .map(|r| format!(r#"{{"eventType":"crm_field_update","recordId":"{r}","kanbanId":"k"}}"#))
        .collect();
    parse_ingest(format!("[{}]", body.join(",")).as_bytes()).expect("valid")
}

fn target(url: &str) -> Target {
    let body = serde_json::json!({"name": "t", "url": url});
    Target::create(body.as_object().expect("object"), true, sign::generate_secret(), 0).expect("target")
}

/// A subscription of `target` to `crm_field_update`, from the log's head on.
fn subscription(target: &TargetId, head: u64) -> Subscription {
    let body = serde_json::json!({"target_id": target.as_str(), "event_types": ["crm_field_update"]});
    let mut sub = Subscription::create(body.as_object().expect("object"), 0).expect("subscription");
    sub.from_seq = head;
    sub
}

fn request() -> Request {
    Request {
        at_ms: 0,
        by: "test".into(),
        action: "redeliver".into(),
        target: String::new(),
        detail: String::new(),
        queued: 0,
    }
}

/// One cluster node: a replica store with its replicated log, and a router over it.
struct Node {
    _dir: tempfile::TempDir,
    store: LogHandle,
    router: RouterHandle,
    arbiter: actix::Arbiter,
}

impl Node {
    async fn start(ownership: Ownership, max_targets: usize) -> Node {
        Node::start_failing(ownership, max_targets, Arc::default(), Duration::ZERO).await
    }

    /// [`Node::start`] whose replicated log refuses lazy writes (finished deliveries' records,
    /// as a stream between leaders refuses them) while `refuse` is above 0, one less each, each
    /// refusal said `stall` after the write (as a publish's timeout says it).
    async fn start_failing(
        ownership: Ownership,
        max_targets: usize,
        refuse: Arc<AtomicUsize>,
        stall: Duration,
    ) -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let replica = Arc::new(Store::open_replica(dir.path(), crmhook_store::Options::default(), 1).expect("open"));
        let mut out = replica.take_outgoing().expect("outgoing");
        let store: LogHandle = Arc::new(replica.store().clone());
        // The replicated log: each batch of ops handed out is the next entry, applied at once.
        actix_rt::spawn(async move {
            let mut seq = replica.handed();
            while let Some(first) = out.recv().await {
                let mut ops = vec![first];
                while let Ok(op) = out.try_recv() {
                    ops.push(op);
                }
                if refuse.load(Ordering::SeqCst) > 0 && ops.iter().any(|o| o.lazy) {
                    refuse.fetch_sub(1, Ordering::SeqCst);
                    let nonces: Vec<u64> = ops.iter().map(|o| o.nonce).collect();
                    let replica = replica.clone();
                    actix_rt::spawn(async move {
                        actix_rt::time::sleep(stall).await;
                        replica.fail(&nonces, "no stream found for given subject", true);
                    });
                    continue;
                }
                seq += 1;
                let entry = Replica::encode_entry(replica.node(), ops).expect("entry");
                replica.apply(seq, &entry).await.expect("applied");
            }
        });
        let arbiter = actix::Arbiter::new();
        let config = RouterConfig {
            max_targets,
            guard: Guard { allow_private: true },
            tls: crate::tls::DeliveryTls::default(),
            metrics: Metrics::new(),
            feed: Feed::new(),
            ownership,
        };
        let router = RouterHandle::start(store.clone(), &[arbiter.handle()], config).expect("router");
        Node { _dir: dir, store, router, arbiter }
    }

    /// A target at `path` of the receiver with a subscription to `crm_field_update`, made
    /// through the router.
    async fn target(&self, receiver: &Receiver, path: &str) -> TargetId {
        self.add(target(&receiver.url(path))).await
    }

    /// Creates `t` and its subscription to `crm_field_update` through the router.
    async fn add(&self, t: Target) -> TargetId {
        let id = t.id.clone();
        self.router.create_target(t).await.expect("created");
        self.router.create_subscription(subscription(&id, self.store.head())).await.expect("subscribed");
        id
    }

    /// A node that owns `t` alone (its ownership watch, returned, can take it away), with `t`
    /// and its subscription created.
    async fn owning_only(t: Target) -> (Node, TargetId, watch::Sender<Owned>) {
        let (owned, watching) = watch::channel(owning(&[&t.id]));
        let node = Node::start(Ownership::watching(watching), 10).await;
        let id = node.add(t).await;
        (node, id, owned)
    }

    async fn ingest(&self, records: &[&str]) {
        self.router.ingest(events(records), None).await.expect("logged");
    }

    /// Reconciles the router with the store now (as a move of the config watch does); answers
    /// how many targets it changed. Once it answers, any change written before it has reached
    /// the actors.
    async fn reconcile(&self) -> usize {
        self.router.addr.send(ConfigMoved).await.expect("router")
    }

    async fn stop(self) {
        self.router.shutdown(Duration::from_secs(5)).await;
        self.arbiter.stop();
    }
}

fn owning(ids: &[&TargetId]) -> Owned {
    Arc::new(ids.iter().map(|id| (*id).clone()).collect::<BTreeSet<_>>())
}

#[actix_rt::test]
async fn a_target_not_owned_is_not_delivered_until_ownership_is_granted() {
    let receiver = Receiver::start();
    // B is owned here from the start, A is not.
    let (ta, tb) = (target(&receiver.url("a")), target(&receiver.url("b")));
    let (a, b) = (ta.id.clone(), tb.id.clone());
    let (owned, watching) = watch::channel(owning(&[&b]));
    let node = Node::start(Ownership::watching(watching), 10).await;
    for t in [ta, tb] {
        node.add(t).await;
    }
    // The events are logged, and only B gets them: B, woken by the same head moves, is the
    // positive marker.
    node.ingest(&["e1", "e2", "e3"]).await;
    receiver.wait_for("b", &["e1", "e2", "e3"]).await;
    let at_grant = receiver.records("a");
    assert_eq!(at_grant, Vec::<String>::new(), "A got events while not owned here");
    // A redelivery or a test of A is another node's; of an unknown target, nobody's.
    assert!(
        matches!(node.router.requeue(a.clone(), vec![1], request()).await, Err(RouterError::Elsewhere(t)) if t == a)
    );
    let head = node.store.head();
    assert!(matches!(
        node.router.test(a.clone(), events(&["t"]).remove(0)).await,
        Err(RouterError::Elsewhere(t)) if t == a
    ));
    assert_eq!(node.store.head(), head, "a test of a target owned elsewhere logs nothing");
    let unknown = TargetId::generate();
    assert!(matches!(node.router.requeue(unknown, vec![1], request()).await, Err(RouterError::NotFound(_))));
    node.router.requeue(b.clone(), vec![], request()).await.expect("B is delivered here");

    // Ownership granted: A's actor starts from the store's state and delivers what was logged.
    owned.send_replace(owning(&[&a, &b]));
    let mut got = receiver.wait_for("a", &["e1", "e2", "e3"]).await;
    got.sort();
    assert_eq!(got, ["e1", "e2", "e3"]);
    node.stop().await;
}

#[actix_rt::test]
async fn ownership_taken_away_stops_deliveries_and_given_back_resumes_them() {
    let receiver = Receiver::start();
    let (owned, watching) = watch::channel(Owned::default());
    let node = Node::start(Ownership::watching(watching), 10).await;
    let a = node.target(&receiver, "a").await;
    let b = node.target(&receiver, "b").await;
    owned.send_replace(owning(&[&a, &b]));
    node.ingest(&["e1"]).await;
    receiver.wait_for("a", &["e1"]).await;
    receiver.wait_for("b", &["e1"]).await;

    // A is taken away; once the router says so, its actor starts no new attempt.
    owned.send_replace(owning(&[&b]));
    assert!(matches!(node.router.requeue(a.clone(), vec![], request()).await, Err(RouterError::Elsewhere(_))));
    node.ingest(&["e2", "e3"]).await;
    receiver.wait_for("b", &["e1", "e2", "e3"]).await;
    assert_eq!(receiver.records("a"), ["e1"], "A got events logged while not owned here");

    // Given back: what was logged meanwhile arrives, and e1 is not delivered again (its record
    // was written before the actor stopped).
    owned.send_replace(owning(&[&a, &b]));
    node.ingest(&["e4"]).await;
    let mut got = receiver.wait_for("a", &["e2", "e3", "e4"]).await;
    assert_eq!(got.remove(0), "e1");
    got.sort();
    assert_eq!(got, ["e2", "e3", "e4"], "each once");
    node.router.requeue(a.clone(), vec![], request()).await.expect("A is delivered here again");
    node.stop().await;
}

#[actix_rt::test]
async fn a_subscription_written_by_another_node_is_picked_up_by_the_running_target() {
    let receiver = Receiver::start();
    let node = Node::start(Ownership::all(), 10).await;
    let t = target(&receiver.url("a"));
    let a = t.id.clone();
    node.router.create_target(t).await.expect("created");
    // The marker target: subscribed through the router.
    let b = node.target(&receiver, "b").await;
    node.ingest(&["before"]).await;
    receiver.wait_for("b", &["before"]).await;

    // Another node subscribes A: the write reaches this store through the replicated log, the
    // config watch moves, and the router hands the subscription to A's running actor.
    node.store.put_subscription(&subscription(&a, node.store.head())).await.expect("written");
    node.ingest(&["after"]).await;
    receiver.wait_for("a", &["after"]).await;
    receiver.wait_for("b", &["after"]).await;
    assert_eq!(receiver.records("a"), ["after"], "A has no subscription to the event before");
    // The router holds it too: the cap counts it, and an edit finds it.
    let sub = node.store.subscriptions().expect("read").into_iter().find(|s| s.target_id == a).expect("stored");
    let edited = node.router.update_subscription(sub.id.clone(), |s| Ok(s.clone())).await.expect("found");
    assert_eq!(edited.0, sub);
    assert_eq!(node.reconcile().await, 0, "nothing left to reconcile");
    let _ = b;
    node.stop().await;
}

#[actix_rt::test]
async fn targets_created_deleted_and_disabled_by_another_node_are_followed() {
    let receiver = Receiver::start();
    let node = Node::start(Ownership::all(), 10).await;
    let marker = node.target(&receiver, "m").await;

    // Created elsewhere, with its subscription: an actor starts here (every target is owned).
    // The reconciliation is awaited before e1 is logged: an actor started from the target's
    // entry alone could read e1 before its subscription reaches it, and an edit applies to
    // the events its target has not matched yet (see the module docs of the router).
    let t = target(&receiver.url("c"));
    let c = t.id.clone();
    node.store.create_target(&t, node.store.head()).await.expect("created");
    node.store.put_subscription(&subscription(&c, node.store.head())).await.expect("subscribed");
    node.reconcile().await;
    node.ingest(&["e1"]).await;
    receiver.wait_for("c", &["e1"]).await;

    // Disabled here (the actor is told before the answer): e2 is logged and held.
    let disabled = Disabled { at_ms: 0, reason: "operator".into() };
    node.router.set_enabled(c.clone(), Some(disabled)).await.expect("disabled");
    node.ingest(&["e2"]).await;
    receiver.wait_for("m", &["e1", "e2"]).await;
    assert_eq!(receiver.records("c"), ["e1"], "C got an event while disabled");
    // Enabled by another node: the router tells the actor, which delivers e2.
    let mut batch = DeliveryBatch::default();
    batch.enable(&c);
    node.store.write_deliveries(batch).await.expect("written");
    assert_eq!(receiver.wait_for("c", &["e2"]).await, ["e1", "e2"]);
    // Disabled by another node: e3 is held (the marker gets it) until C is enabled here.
    let mut batch = DeliveryBatch::default();
    batch.disable(&c, &Disabled { at_ms: 0, reason: "by another node".into() }).expect("encoded");
    node.store.write_deliveries(batch).await.expect("written");
    node.reconcile().await;
    node.ingest(&["e3"]).await;
    receiver.wait_for("m", &["e1", "e2", "e3"]).await;
    assert_eq!(receiver.records("c"), ["e1", "e2"], "C got an event while disabled");
    node.router.set_enabled(c.clone(), None).await.expect("enabled");
    assert_eq!(receiver.wait_for("c", &["e3"]).await, ["e1", "e2", "e3"]);

    // Deleted elsewhere: the router forgets it, and its actor stops.
    node.store.delete_target(&c).await.expect("deleted");
    node.reconcile().await;
    assert!(matches!(node.router.requeue(c.clone(), vec![], request()).await, Err(RouterError::NotFound(_))));
    node.ingest(&["e4"]).await;
    receiver.wait_for("m", &["e1", "e2", "e3", "e4"]).await;
    assert_eq!(receiver.records("c"), ["e1", "e2", "e3"]);
    let _ = marker;
    node.stop().await;
}

#[actix_rt::test]
async fn max_targets_counts_targets_owned_elsewhere() {
    let receiver = Receiver::start();
    let (_owned, watching) = watch::channel(Owned::default());
    let node = Node::start(Ownership::watching(watching), 3).await;
    // None of them is owned here.
    node.target(&receiver, "a").await;
    node.target(&receiver, "b").await;
    // The third created by another node, read back from the store.
    let t = target(&receiver.url("c"));
    node.store.create_target(&t, node.store.head()).await.expect("created");
    node.reconcile().await;
    assert!(matches!(node.router.requeue(t.id.clone(), vec![], request()).await, Err(RouterError::Elsewhere(_))));
    let refused = node.router.create_target(target(&receiver.url("d"))).await;
    assert!(matches!(refused, Err(RouterError::TooManyTargets(3))), "{refused:?}");
    node.stop().await;
}

#[actix_rt::test]
async fn this_nodes_own_changes_leave_nothing_to_reconcile() {
    let receiver = Receiver::start();
    let (owned, watching) = watch::channel(Owned::default());
    let node = Node::start(Ownership::watching(watching), 10).await;
    let a = node.target(&receiver, "a").await;
    let b = node.target(&receiver, "b").await;
    owned.send_replace(owning(&[&a]));
    node.ingest(&["e1"]).await;
    receiver.wait_for("a", &["e1"]).await;
    // Every kind of local change, on a target running here (A) and on one that is not (B):
    // each moved the config watch (replica mode), and the router has applied them all already.
    for id in [&a, &b] {
        let mut t = node.store.target(id).expect("read").expect("stored");
        t.name = "renamed".into();
        node.router.update_target(t).await.expect("updated");
        let sub = subscription(id, node.store.head());
        node.router.create_subscription(sub.clone()).await.expect("subscribed");
        node.router
            .update_subscription(sub.id.clone(), |s| Ok(Subscription { kanban_ids: vec!["k".into()], ..s.clone() }))
            .await
            .expect("edited");
        node.router.delete_subscription(sub.id.clone()).await.expect("deleted");
        let disabled = Disabled { at_ms: 0, reason: "operator".into() };
        node.router.set_enabled(id.clone(), Some(disabled)).await.expect("disabled");
        node.router.set_enabled(id.clone(), None).await.expect("enabled");
    }
    let c = node.target(&receiver, "c").await;
    node.router.delete_target(c).await.expect("deleted");
    assert_eq!(node.reconcile().await, 0, "the router already agreed with the store");
    // And A still delivers with its configuration as changed.
    node.ingest(&["e2"]).await;
    receiver.wait_for("a", &["e2"]).await;
    node.stop().await;
}

#[actix_rt::test]
async fn a_retry_pending_when_ownership_moves_is_made_on_schedule_by_the_next_actor() {
    let receiver = Receiver::start();
    receiver.failing.lock().expect("lock").insert("/r".into(), 1);
    let mut t = target(&receiver.url("r"));
    // One retry, 1.5 s (up to a tenth more) after the first attempt.
    t.retry_schedule_ms = vec![1_500];
    let (node, r, owned) = Node::owning_only(t).await;
    node.ingest(&["e1"]).await;
    receiver.wait_for("r", &["e1"]).await;

    // Taken away at once (the 503's retry is written before the actor stops) and given back
    // while the actor may still be stopping: a request to the target meanwhile waits for the new
    // actor. (It names no event: a redelivery of the one waiting would bring its retry forward.)
    owned.send_replace(owning(&[]));
    assert!(matches!(node.router.requeue(r.clone(), vec![], request()).await, Err(RouterError::Elsewhere(_))));
    owned.send_replace(owning(&[&r]));
    assert_eq!(node.router.requeue(r.clone(), vec![], request()).await.expect("here again"), 0);

    // The new actor read the retry from the store: attempt 2, at its time, not a first attempt
    // made again at once.
    let until = Instant::now() + DEADLINE;
    while receiver.arrivals("r").len() < 2 {
        let arrived = receiver.notify.notified();
        if receiver.arrivals("r").len() >= 2 {
            break;
        }
        assert!(actix_rt::time::timeout(until.saturating_duration_since(Instant::now()), arrived).await.is_ok());
    }
    let arrivals = receiver.arrivals("r");
    assert_eq!(arrivals.iter().map(|a| a.attempt.as_str()).collect::<Vec<_>>(), ["1", "2"]);
    let waited = arrivals[1].at - arrivals[0].at;
    assert!(waited >= Duration::from_millis(1_499), "the retry came {waited:?} after the first attempt");
    node.stop().await;
}

#[test]
fn a_new_actor_goes_on_the_lane_with_the_fewest_the_routers_on_a_tie() {
    assert_eq!(lanes::least_loaded(&[0, 0]), 0);
    assert_eq!(lanes::least_loaded(&[1, 0]), 1);
    assert_eq!(lanes::least_loaded(&[1, 1]), 0);
    assert_eq!(lanes::least_loaded(&[3, 2, 2]), 1);
    assert_eq!(lanes::least_loaded(&[]), 0);
}

/// Targets that came and went leave a lone target beside the router (the first lane), and
/// many spread evenly over the lanes.
#[actix_rt::test]
async fn targets_are_seated_on_the_least_loaded_lane() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let store: LogHandle = Arc::new(Store::open(dir.path()).expect("open"));
    let arbiters = [actix::Arbiter::new(), actix::Arbiter::new()];
    let config = RouterConfig {
        max_targets: 10,
        guard: Guard { allow_private: true },
        tls: crate::tls::DeliveryTls::default(),
        metrics: Metrics::new(),
        feed: Feed::new(),
        ownership: Ownership::all(),
    };
    let handles: Vec<_> = arbiters.iter().map(|a| a.handle()).collect();
    let router = RouterHandle::start(store.clone(), &handles, config).expect("router");
    let create = |path: &str| {
        let t = target(&receiver.url(path));
        let (router, id) = (router.clone(), t.id.clone());
        async move {
            router.create_target(t).await.expect("created");
            id
        }
    };
    let lane = |id: &TargetId| {
        let (router, id) = (router.clone(), id.clone());
        async move { router.locate(id).await.expect("running").lane() }
    };
    let a = create("/a").await;
    let b = create("/b").await;
    assert_eq!((lane(&a).await, lane(&b).await), (0, 1));
    let c = create("/c").await;
    assert_eq!(lane(&c).await, 0, "the lanes were even: the router's");
    router.delete_target(a.clone()).await.expect("deleted");
    router.delete_target(c.clone()).await.expect("deleted");
    let d = create("/d").await;
    assert_eq!(lane(&d).await, 0, "lane 0 had none, lane 1 one");
    router.delete_target(b.clone()).await.expect("deleted");
    router.delete_target(d.clone()).await.expect("deleted");
    // What round-robin got wrong: a lone target created after others were deleted.
    let e = create("/e").await;
    assert_eq!(lane(&e).await, 0, "a lone target runs beside the router");
    router.shutdown(Duration::from_secs(5)).await;
    for arbiter in arbiters {
        arbiter.stop();
    }
}

#[actix_rt::test]
async fn an_attempt_cut_off_by_a_stop_is_recorded_as_failed_with_its_retry() {
    let receiver = Receiver::start();
    receiver.silent.lock().expect("lock").insert("/slow".into());
    let mut t = target(&receiver.url("slow"));
    // Longer than any stop waits.
    t.timeout_ms = 300_000;
    let (node, r, _owned) = Node::owning_only(t).await;
    node.ingest(&["e1"]).await;
    receiver.wait_for("slow", &["e1"]).await;
    let seq = node.store.head();

    // The receiver has the request and does not answer: the stop's grace passes.
    node.router.shutdown(Duration::from_millis(200)).await;
    let attempts = node.store.attempts_to(&r, seq).expect("attempts");
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0].n, 1);
    assert_eq!(attempts[0].outcome, crmhook_core::retry::Outcome::Error(crate::target::CUT_OFF.into()));
    assert!(matches!(attempts[0].result, crmhook_store::AttemptResult::Retrying { .. }), "{attempts:?}");
    // A restart makes attempt 2, on the retry schedule.
    let pending = node.store.pending(&r, 10).expect("pending");
    assert_eq!(pending.iter().map(|(s, p)| (*s, p.attempt)).collect::<Vec<_>>(), [(seq, 2)]);
    node.arbiter.stop();
}

#[actix_rt::test]
async fn finished_deliveries_whose_record_the_log_refused_are_written_again() {
    let receiver = Receiver::start();
    // The first two writes of finished deliveries are refused.
    let node = Node::start_failing(Ownership::all(), 10, Arc::new(AtomicUsize::new(2)), Duration::ZERO).await;
    let t = node.target(&receiver, "a").await;
    node.ingest(&["e1", "e2", "e3"]).await;
    receiver.wait_for("a", &["e1", "e2", "e3"]).await;
    let head = node.store.head();
    // Each is recorded delivered in the end, and the cursor passes them: nothing is owed.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let recorded = (head - 2..=head)
            .filter(|seq| {
                node.store.final_attempt(&t, *seq).ok().flatten().is_some_and(|a| a.result == AttemptResult::Delivered)
            })
            .count();
        if recorded == 3 && node.store.cursor(&t).expect("cursor") >= Some(head) {
            break;
        }
        assert!(Instant::now() < deadline, "recorded {recorded} of 3, cursor {:?}", node.store.cursor(&t));
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(node.store.pending(&t, 10).expect("pending").is_empty());
    let mut got = receiver.records("a");
    got.sort();
    assert_eq!(got, ["e1", "e2", "e3"], "each made once");
    node.stop().await;
}

/// While the log leaves the records of finished deliveries unanswered (past a second) or
/// refuses them, the target starts nothing new: what could not be recorded would be made again
/// by the next node to deliver it (an audit saw 50 repeats after a NATS quorum loss, whose
/// publishes fail only after their timeout). Once a write goes through, deliveries resume.
#[actix_rt::test]
async fn no_delivery_starts_while_the_records_of_finished_ones_are_refused() {
    let receiver = Receiver::start();
    let refuse = Arc::new(AtomicUsize::new(usize::MAX));
    // Each refusal is said 2.5 s after the write, as a publish's timeout says it.
    let node = Node::start_failing(Ownership::all(), 10, refuse.clone(), Duration::from_millis(2_500)).await;
    node.target(&receiver, "a").await;
    node.ingest(&["e1"]).await;
    receiver.wait_for("a", &["e1"]).await;
    // e1's record goes unanswered: past `RECORDS_OVERDUE_MS` e2 is logged, before the refusal
    // is said (then it is tried again every 250 ms, each refusal 2.5 s later).
    actix_rt::time::sleep(Duration::from_millis(crate::target::RECORDS_OVERDUE_MS + 200)).await;
    let refused = || usize::MAX - refuse.load(Ordering::SeqCst);
    assert_eq!(refused(), 1, "one write of records, not yet said refused");
    node.ingest(&["e2"]).await;
    let deadline = Instant::now() + DEADLINE;
    // The refusal said, and the write sent again: 1.5 s in which the actor, without the hold
    // for the unanswered write, would have started e2.
    let from = refused();
    while refused() < from + 1 {
        assert!(Instant::now() < deadline, "no more tries to write e1's record");
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(receiver.records("a"), ["e1"], "a delivery started while the records were refused");
    refuse.store(0, Ordering::SeqCst);
    receiver.wait_for("a", &["e1", "e2"]).await;
    assert_eq!(receiver.records("a"), ["e1", "e2"], "each made once");
    node.stop().await;
}
