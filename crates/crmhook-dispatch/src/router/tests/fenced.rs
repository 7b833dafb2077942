//! The lease's fence in the router's actors: a target past its lease's deadline starts
//! nothing, and records nothing an attempt in flight comes back with.

use std::sync::atomic::{AtomicU64, Ordering};

use super::*;

/// The fence's clock: the cells below say whether "now" is before their deadline.
fn fence_clock() -> u64 {
    1_000
}

#[actix_rt::test]
async fn an_owned_target_past_its_lease_deadline_starts_nothing_until_the_lease_is_renewed() {
    let receiver = Receiver::start();
    let (a, b) = (target(&receiver.url("a")), target(&receiver.url("b")));
    // A's lease renewed long ago (its deadline passed, as after a pause of the process longer
    // than the TTL) while the set of owned targets still names it; B's renewed just now.
    let (a_deadline, b_deadline) = (Arc::new(AtomicU64::new(u64::MAX)), Arc::new(AtomicU64::new(u64::MAX)));
    let (a_id, cells) = (a.id.clone(), (a_deadline.clone(), b_deadline.clone()));
    let deadlines = Deadlines::new(move |t| if *t == a_id { cells.0.clone() } else { cells.1.clone() }, fence_clock);
    let (_owned, watching) = watch::channel(owning(&[&a.id, &b.id]));
    let node = Node::start(Ownership::watching(watching).fenced(deadlines), 10).await;
    let b = {
        node.add(a).await;
        node.add(b).await
    };
    node.ingest(&["e1"]).await;
    receiver.wait_for("a", &["e1"]).await;
    receiver.wait_for("b", &["e1"]).await;

    a_deadline.store(0, Ordering::Release);
    node.ingest(&["e2"]).await;
    receiver.wait_for("b", &["e1", "e2"]).await;
    node.ingest(&["e3"]).await;
    receiver.wait_for("b", &["e1", "e2", "e3"]).await;
    assert_eq!(receiver.records("a"), ["e1"], "A delivered past its lease's deadline");
    assert!(node.store.pending(&b, 10).expect("pending").is_empty());

    // Renewed: A resumes by itself (its re-check), each event once.
    a_deadline.store(u64::MAX, Ordering::Release);
    let mut got = receiver.wait_for("a", &["e1", "e2", "e3"]).await;
    got.sort();
    assert_eq!(got, ["e1", "e2", "e3"], "each once");
    node.stop().await;
}

/// An attempt in flight when the lease's deadline passed (the process paused past the TTL)
/// comes back a timeout: nothing is recorded (a cluster audit saw a resumed node write that
/// retry into every copy, a pending delivery the next owner made again after newer events),
/// and the delivery stays owed here, made again once the lease is renewed.
#[actix_rt::test]
async fn an_attempt_back_past_the_lease_deadline_is_not_recorded() {
    let receiver = Receiver::start();
    receiver.silent.lock().expect("lock").insert("/slow".into());
    let mut t = target(&receiver.url("slow"));
    t.timeout_ms = 300;
    let deadline = Arc::new(AtomicU64::new(u64::MAX));
    let cell = deadline.clone();
    let deadlines = Deadlines::new(move |_| cell.clone(), fence_clock);
    let (_owned, watching) = watch::channel(owning(&[&t.id]));
    let node = Node::start(Ownership::watching(watching).fenced(deadlines), 10).await;
    let id = node.add(t).await;
    node.ingest(&["e1"]).await;
    receiver.wait_for("slow", &["e1"]).await;
    // The receiver holds the request; the deadline passes before its timeout.
    deadline.store(0, Ordering::Release);
    let seq = node.store.head();
    // No event can show a record that is not written: a quiet time of five timeouts.
    let quiet = Instant::now() + Duration::from_millis(1_500);
    while Instant::now() < quiet {
        let attempts = node.store.attempts_to(&id, seq).expect("attempts");
        assert!(attempts.is_empty(), "an attempt back past the deadline was recorded: {attempts:?}");
        assert!(node.store.pending(&id, 10).expect("pending").is_empty(), "a retry was written");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    // Renewed: the delivery is made again.
    deadline.store(u64::MAX, Ordering::Release);
    receiver.silent.lock().expect("lock").clear();
    receiver.wait_for("slow", &["e1", "e1"]).await;
    node.stop().await;
}
