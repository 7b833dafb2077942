//! The live targets a row delivers to, made through the admin API, and the wait for a
//! cluster's nodes to take their leases.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::Receiver;
use crate::soak::Server;

pub(super) fn live_targets(server: &Server, rcv: &Receiver, n: usize, run: &str) -> anyhow::Result<Vec<String>> {
    (0..n)
        .map(|i| {
            let t = server.admin(
                "POST",
                "/v1/targets",
                &json!({"name": format!("{run}-{i}"), "url": format!("http://{}/{run}/t{i}", rcv.addr)}),
            )?;
            let id = t["id"].as_str().context("target id")?.to_owned();
            server.admin("POST", "/v1/subscriptions", &json!({"target_id": id}))?;
            Ok(id)
        })
        .collect()
}

/// Waits until a node of the cluster delivers each of `ids` (its lease taken; `GET /v1/cluster`).
pub(super) fn wait_leased(server: &Server, ids: &[String]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let cluster = server.admin("GET", "/v1/cluster", &json!({}))?;
        let held: Vec<&str> = cluster["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|n| n["targets"].as_array().into_iter().flatten().filter_map(Value::as_str))
            .collect();
        if ids.iter().all(|id| held.contains(&id.as_str())) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the cluster's nodes did not take the targets' leases within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
