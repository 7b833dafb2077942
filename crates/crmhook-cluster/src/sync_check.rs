//! The check that every NATS server fsyncs each write before it acknowledges it.
//!
//! Jepsen's analysis of NATS 2.12.1 found that JetStream's default, an fsync every two
//! minutes, loses acknowledged writes when a machine loses power or its OS crashes; crmhook
//! acknowledges an event once the stream has it, so the servers must be configured with
//! `jetstream { sync_interval: always }`. A client cannot ask a server for its JetStream
//! configuration, but the server's HTTP monitoring endpoint tells it: `GET /varz` has
//! `jetstream.config.sync_always: true` then (and no such member otherwise). With monitoring
//! URLs configured (`cluster_monitor`) a server that does not say so is refused, one that does
//! not answer is named in a warning (it may be down while the others run), and none answering
//! is refused; without them crmhook starts and warns that nothing was checked.

use std::time::Duration;

use crate::{ClusterError, Result};

pub(crate) fn check(monitor: &[String]) -> Result<()> {
    if monitor.is_empty() {
        tracing::warn!(
            "cluster mode: cannot check that the NATS servers fsync every write (set `cluster_monitor` to \
             their monitoring URLs): with JetStream's default `sync_interval` (2 minutes) a power loss \
             loses acknowledged events; configure `jetstream {{ sync_interval: always }}` (docs/CLUSTER.md)"
        );
        return Ok(());
    }
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(5)).redirects(0).build();
    let mut checked = 0;
    for url in monitor {
        let varz = format!("{}/varz", url.trim_end_matches('/'));
        // A server that is down cannot be checked now, and must not stop a node from starting
        // while the others keep the cluster going: it is said, and the next start checks it.
        let body: serde_json::Value = match agent.get(&varz).call().map(|r| r.into_json()) {
            Ok(Ok(body)) => body,
            Ok(Err(e)) => return Err(ClusterError::Sync(format!("{varz} did not answer JSON: {e}"))),
            Err(e) => {
                tracing::warn!(url = %varz, error = %e, "cannot check that this NATS server fsyncs every write");
                continue;
            }
        };
        checked += 1;
        if body.pointer("/jetstream/config").is_none() {
            return Err(ClusterError::Sync(format!("the NATS server at {url} does not run JetStream")));
        }
        if body.pointer("/jetstream/config/sync_always") != Some(&serde_json::Value::Bool(true)) {
            return Err(ClusterError::Sync(format!(
                "the NATS server at {url} does not fsync every write (its /varz has no \
                 jetstream.config.sync_always: true): with the default `sync_interval` a power loss loses \
                 acknowledged events (Jepsen, NATS 2.12.1). Set `jetstream {{ sync_interval: always }}` in its \
                 configuration (docs/CLUSTER.md)"
            )));
        }
    }
    if checked == 0 {
        return Err(ClusterError::Sync(format!(
            "none of the NATS monitoring URLs answered ({}): cannot check that the servers fsync every write",
            monitor.join(", ")
        )));
    }
    Ok(())
}
