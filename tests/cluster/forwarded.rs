//! A request forwarded to the node that delivers a target (here a replay) carries the caller's
//! address in `X-Forwarded-For`: with the nodes listed in `trusted_proxies`, the owner's audit
//! trail and the replay's request say who asked, not the node that forwarded it.
//!
//! One NATS server and two nodes, A delivering the target and B, both trusting 127.0.0.1 (the
//! address the nodes reach each other from). The operator reaches B from 127.0.0.3.

use super::*;

/// The operator's own address (any of 127.0.0.0/8 reaches the nodes).
const OPERATOR: &str = "127.0.0.3";

pub(crate) fn forwarded_scenario(cluster: &mut Cluster) {
    let mut env = cluster.env();
    env.push(("CRMHOOK_CLUSTER_REPLICAS".into(), "1".into()));
    env.push(("CRMHOOK_TRUSTED_PROXIES".into(), "127.0.0.1".into()));
    let rcv = Receiver::start();
    rcv.set_default("/forwarded", status(200));
    let target = a_holds_a_target_b_is_up(cluster, &env, &rcv.url("/forwarded"), json!({}));
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    phase("A holds the target, B is up");

    let url = b.server.url(&format!("/v1/targets/{target}/replay"));
    let host = url.trim_start_matches("http://").split('/').next().expect("host").to_owned();
    let auth = format!("Bearer {ADMIN}");
    let headers = [("Host", host.as_str()), ("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    let r = http_from(OPERATOR, "POST", &url, &headers, Some(br#"{"status":"dead"}"#));
    assert_eq!(r.status, 202, "the replay through B: {}", r.text);

    // The owner wrote the entry (it made the replay); it says the operator asked, from where.
    let entry = wait_for(Duration::from_secs(10), "A's audit entry of the replay", || {
        let page = a.server.admin("GET", "/v1/audit", None).json();
        page["entries"].as_array()?.iter().find(|e| e["action"] == "target.replay").cloned()
    });
    assert_eq!(entry["subject"], target.as_str(), "{entry}");
    assert_eq!(entry["from"], OPERATOR, "the forwarded replay's audit entry names the node, not the caller: {entry}");
}
