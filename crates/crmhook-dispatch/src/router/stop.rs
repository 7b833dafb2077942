//! A graceful stop of the router and its target actors: the attempts in flight get a grace,
//! then those still out are recorded as cut off (and retried after the restart).

use std::time::Duration;

use actix::prelude::*;

use super::{Delivering, Router, RouterHandle};
use crate::target::TargetHandle;

/// How long a stop waits for the records of the attempts it cut off (after its grace).
pub const CUT_OFF_GRACE: Duration = Duration::from_secs(5);

impl RouterHandle {
    /// Lets every target actor finish the attempts it has in flight (at most `grace`), then
    /// stops them and the router. Undelivered events stay pending on disk. Attempts still in
    /// flight after `grace` are recorded as failed, cut off ([`TargetHandle::cut_off`]; their
    /// records get at most [`CUT_OFF_GRACE`] more).
    pub async fn shutdown(&self, grace: Duration) {
        if let Ok(handles) = self.addr.send(Handles).await {
            let drains = futures_util::future::join_all(handles.iter().map(TargetHandle::drain));
            if actix_rt::time::timeout(grace, drains).await.is_err() {
                tracing::warn!("attempts still in flight after {grace:?}: recording them as cut off, to be retried");
                futures_util::future::join_all(handles.iter().map(TargetHandle::cut_off)).await;
                let recorded = futures_util::future::join_all(handles.iter().map(TargetHandle::drain));
                if actix_rt::time::timeout(CUT_OFF_GRACE, recorded).await.is_err() {
                    tracing::warn!("the cut-off attempts were not all recorded; they stay pending on disk");
                }
            }
        }
        let _ = self.addr.send(Shutdown).await;
    }
}

#[derive(Message)]
#[rtype(result = "Vec<TargetHandle>")]
struct Handles;

impl Handler<Handles> for Router {
    type Result = MessageResult<Handles>;

    fn handle(&mut self, _: Handles, _: &mut Context<Self>) -> MessageResult<Handles> {
        MessageResult(self.targets.values().filter_map(|e| actor_of(&e.actor)).collect())
    }
}

/// The actor running (or stopping) for a target here.
fn actor_of(actor: &Delivering) -> Option<TargetHandle> {
    match actor {
        Delivering::Yes(handle) | Delivering::Stopping { handle, .. } => Some(handle.clone()),
        Delivering::No => None,
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Shutdown;

impl Handler<Shutdown> for Router {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Shutdown, _: &mut Context<Self>) -> Self::Result {
        let handles: Vec<TargetHandle> = self.targets.drain().filter_map(|(_, e)| actor_of(&e.actor)).collect();
        Box::pin(
            async move {
                for handle in handles {
                    handle.stop().await;
                }
            }
            .into_actor(self)
            .map(|(), _, ctx| ctx.stop()),
        )
    }
}
