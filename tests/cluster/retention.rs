//! Retention in cluster mode: each call an entry of the log, applied by every copy at its place
//! (`docs/CLUSTER.md`).

use super::*;

/// With `retention_days = 0` and a pass due every second, a delivered event leaves both copies,
/// and its `Idempotency-Key` with it: a retry of the request, taken by the other node, is a new
/// event, the same on both copies (each node compacting its own copy on its own timer made such a
/// retry a duplicate on one copy and a new event on the other, and their seqs differ from then on).
pub(crate) fn retention_scenario(cluster: &mut Cluster) {
    let mut env = cluster.env();
    env.push(("CRMHOOK_CLUSTER_REPLICAS".into(), "1".into()));
    env.push(("CRMHOOK_RETENTION_DAYS".into(), "0".into()));
    env.push(("CRMHOOK_COMPACTION_INTERVAL_S".into(), "1".into()));
    let rcv = Receiver::start();
    rcv.set_default("/kept", status(200));
    cluster.nodes.push(Node::start("crmhook-a", &env, cluster.logs.path()));
    cluster.nodes.push(Node::start("crmhook-b", &env, cluster.logs.path()));
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let (tid, _) = a.server.wire(&rcv.url("/kept"), Some(json!({})), json!({}));
    let body = maia("ai_pause", json!({}));
    let first = a.server.post_keyed(&body, "order-7");
    let id = first["events"][0]["id"].as_str().expect("id").to_owned();
    rcv.wait_count("/kept", 1, Duration::from_secs(30));
    for node in [a, b] {
        wait_for(Duration::from_secs(30), "the delivered event to leave every copy", || {
            (node.server.admin("GET", &format!("/v1/events/{id}"), None).status == 404).then_some(())
        });
    }
    // The target disabled: what it is owed from now on is kept.
    let r = a.server.admin("PATCH", &format!("/v1/targets/{tid}"), Some(&json!({"enabled": false})));
    assert_eq!(r.status, 200, "{}", r.text);
    let again = b.server.post_keyed(&body, "order-7");
    assert_eq!((again["accepted"].as_u64(), again["duplicates"].as_u64()), (Some(1), Some(0)), "{again}");
    let new_id = again["events"][0]["id"].as_str().expect("id").to_owned();
    assert_ne!(new_id, id);
    let on_a = wait_for(Duration::from_secs(30), "the retry's event on the other copy", || {
        let r = a.server.admin("GET", &format!("/v1/events/{new_id}"), None);
        (r.status == 200).then(|| r.json())
    });
    assert_eq!(on_a["id"], json!(new_id));
    // A third post of the same request is a duplicate on either node, naming the same event.
    for node in [a, b] {
        let third = node.server.post_keyed(&body, "order-7");
        assert_eq!(third["events"], again["events"], "{}", node.name);
    }
    assert!(
        tail(&a.log, 400).contains("retention removed events")
            || tail(&b.log, 400).contains("retention removed events"),
        "a node says what its retention removed"
    );
}
