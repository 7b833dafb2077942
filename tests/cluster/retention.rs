//! Retention in cluster mode: not applied (`docs/CLUSTER.md`).

use super::*;

/// Retention is not applied in cluster mode (each node compacting its own copy on its own timer
/// made the copies disagree: `docs/CLUSTER.md`): with `retention_days = 0` and a pass due every
/// second, a delivered event is still in the copy after three passes' time, and the start says
/// why.
pub(crate) fn no_retention_scenario(cluster: &mut Cluster) {
    let mut env = cluster.env();
    env.push(("CRMHOOK_CLUSTER_REPLICAS".into(), "1".into()));
    env.push(("CRMHOOK_RETENTION_DAYS".into(), "0".into()));
    env.push(("CRMHOOK_COMPACTION_INTERVAL_S".into(), "1".into()));
    let rcv = Receiver::start();
    rcv.set_default("/kept", status(200));
    cluster.nodes.push(Node::start("crmhook-a", &env, cluster.logs.path()));
    let a = &cluster.nodes[0];
    a.server.wire(&rcv.url("/kept"), Some(json!({})), json!({}));
    let ack = a.server.post_ok(&maia("ai_pause", json!({})));
    let id = ack["events"][0]["id"].as_str().expect("id").to_owned();
    rcv.wait_count("/kept", 1, Duration::from_secs(30));
    assert!(
        tail(&a.log, 400).contains("retention is not applied in cluster mode"),
        "the start says retention is off: {}",
        tail(&a.log, 40)
    );
    // No event can show that a pass did not run: a quiet time of three intervals.
    std::thread::sleep(Duration::from_secs(3));
    let r = a.server.admin("GET", &format!("/v1/events/{id}"), None);
    assert_eq!(r.status, 200, "the delivered event is still in the copy: {}", r.text);
}
