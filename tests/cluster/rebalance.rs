//! A node that joins takes its share of the targets from the node that held them all, while a
//! CRM posts, and the move repeats no delivery and loses none.
//!
//! One NATS server and node A, which holds six targets (each subscribed to every event, on a
//! path of its own); events are posted through A all along. Node B starts: A, over its share
//! (three), gives up one lease a round, each handed over once its actor has drained, and B takes
//! them; B's copy has applied the log as far as it was when it took each one. The receiver
//! takes 600 ms to answer (longer than a lease round), so the targets given up have attempts in flight. At the end every
//! event has reached every target exactly once.

use super::*;

const TARGETS: usize = 6;
/// How often the CRM posts (one event each time).
const EVERY: Duration = Duration::from_millis(100);
/// How long the receiver takes to answer a delivery.
const ANSWER_AFTER: Duration = Duration::from_millis(600);

/// The targets `view` (a `GET /v1/cluster` answer) shows each node delivering, by URL.
fn held(view: &Value) -> BTreeMap<String, usize> {
    view["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| (n["url"].as_str().unwrap_or_default().to_owned(), n["targets"].as_array().map_or(0, Vec::len)))
        .collect()
}

pub(crate) fn rebalance_scenario(cluster: &mut Cluster) {
    let mut env = cluster.env();
    env.push(("CRMHOOK_CLUSTER_REPLICAS".into(), "1".into()));
    let rcv = Receiver::start();
    let paths: Vec<String> = (0..TARGETS).map(|i| format!("/t{i}")).collect();
    // Each answer takes a while: a target given up has attempts in flight, which its actor
    // drains before the lease moves (were the lease moved at once, the next node would make
    // them again).
    for path in &paths {
        rcv.set_default(path, delayed(200, ANSWER_AFTER));
    }
    cluster.nodes.push(Node::start("crmhook-a", &env, cluster.logs.path()));
    let a = &cluster.nodes[0];
    let a_url = a.url();
    for path in &paths {
        a.server.wire(&rcv.url(path), Some(json!({})), json!({"timeout_ms": 10_000}));
    }
    wait_for(Duration::from_secs(30), "A holds every target", || {
        (held(&a.cluster()).get(&a_url) == Some(&TARGETS)).then_some(())
    });
    phase("A holds the six targets");

    // The CRM posts through A from now until the end.
    let stop = Arc::new(AtomicBool::new(false));
    let posted = Arc::new(AtomicUsize::new(0));
    let crm = {
        let (url, stop, posted) = (a.server.url("/v1/events"), stop.clone(), posted.clone());
        std::thread::spawn(move || {
            let auth = format!("Bearer {INGEST}");
            let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
            while !stop.load(Ordering::SeqCst) {
                let body = serde_json::to_vec(&maia("crm_record_created", json!({}))).expect("json");
                let r = support::http("POST", &url, &headers, Some(&body));
                assert_eq!(r.status, 202, "{}", r.text);
                posted.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(EVERY);
            }
        })
    };
    rcv.wait_distinct_delivered(&paths[0], 5, Duration::from_secs(30));

    cluster.nodes.push(Node::start("crmhook-b", &env, cluster.logs.path()));
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let b_url = b.url();
    let joined = Instant::now();
    let want: BTreeMap<String, usize> = [(a_url.clone(), TARGETS / 2), (b_url.clone(), TARGETS / 2)].into();
    let balanced = wait_for(Duration::from_secs(60), "three targets on each node", || {
        let (from_a, from_b) = (held(&a.cluster()), held(&b.cluster()));
        (from_a == want && from_b == want).then_some(from_a)
    });
    phase(&format!("balanced {} ms after B started: {balanced:?}", joined.elapsed().as_millis()));
    // Deliveries go on from both nodes for a while, then the CRM stops.
    let at_balance = posted.load(Ordering::SeqCst);
    wait_for(Duration::from_secs(30), "the CRM posting past the balance", || {
        (posted.load(Ordering::SeqCst) >= at_balance + 10).then_some(())
    });
    stop.store(true, Ordering::SeqCst);
    crm.join().expect("the CRM's thread");
    let total = posted.load(Ordering::SeqCst);
    phase(&format!("the CRM posted {total} events"));

    for path in &paths {
        rcv.wait_distinct_delivered(path, total, Duration::from_secs(60));
    }
    // Every delivery is answered before the receiver's last count: a repeat the move made would
    // be among them (a handover starts nothing before the last node's records are applied).
    for path in &paths {
        let (distinct, arrivals, repeated) = duplicates(&rcv, path);
        assert_eq!(distinct, total, "{path}: every event, once");
        assert_eq!(repeated, 0, "{path}: {arrivals} arrivals for {distinct} events: the move repeated deliveries");
    }
    // Each node delivered to the targets it holds now after the move.
    for (name, node) in [("A", a), ("B", b)] {
        let log = std::fs::read_to_string(&node.log).unwrap_or_default();
        eprintln!(
            "cluster test: {name}: {} leases given up, {} handed over, {} taken",
            log.matches("lease given up").count(),
            log.matches("lease handed over").count(),
            log.matches("lease taken").count()
        );
    }
}
