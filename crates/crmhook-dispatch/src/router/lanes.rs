//! Which delivery arbiter (lane) a target's actor runs on: the one with the fewest actors,
//! the router's own on a tie, with the lanes' loads kept as counts.

use crmhook_core::TargetId;

use super::Router;
use crate::target::{Origin, TargetConfig, TargetHandle};

impl Router {
    /// Starts an actor for `config` on the lane with the fewest actors (running or stopping),
    /// the router's own on a tie ([`least_loaded`]), started for the reason `why`.
    pub(super) fn spawn_actor(&mut self, config: TargetConfig, why: Origin) -> TargetHandle {
        let index = least_loaded(&self.lane_loads);
        self.lane_loads[index] += 1;
        let lane = &self.lanes[index];
        let metrics = self.metrics.target(config.target.id.as_str());
        let fence = self.ownership.fence(&config.target.id);
        self.ownership.actor_here(&config.target.id, true);
        TargetHandle::start(lane, self.store.clone(), config, fence, why, metrics, self.feed.clone())
    }

    /// An actor no entry holds any more: its lane has one fewer, and the lease keeper is told
    /// (cluster mode: a lease being given up is kept until then).
    pub(super) fn unseat(&mut self, id: &TargetId, handle: &TargetHandle) {
        self.ownership.actor_here(id, false);
        if let Some(load) = self.lane_loads.get_mut(handle.lane()) {
            *load = load.saturating_sub(1);
        }
    }
}

/// The lane a new actor goes on: the one with the fewest actors, the lowest index on a tie. The
/// first lane's arbiter runs the router, which follows the log's head: an actor there is woken
/// by the router's own thread, one on another lane costs that arbiter a wake-up of its own for
/// each move of the head (issue 18: 6.2 against 7.3 thread switches per event at 200 events/s
/// with one target). So a lone target runs beside the router whatever targets came and went
/// before it, and many are spread evenly.
pub(super) fn least_loaded(loads: &[usize]) -> usize {
    loads.iter().enumerate().min_by_key(|(i, load)| (**load, *i)).map_or(0, |(i, _)| i)
}
