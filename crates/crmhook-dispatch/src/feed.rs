//! The attempt feed: dispatch publishes each delivery attempt once its record is in the store,
//! as a typed [`AttemptRecorded`], to whoever listens (the edge's `GET /v1/stream`).
//!
//! A [`Feed`] is a handle: the server creates one at start and hands clones to the router (which
//! gives one to each target actor) and to the streams. Nothing is built or sent while nobody
//! listens; a listener that falls more than [`BUFFER`] attempts behind skips some (its receiver
//! says how many).

use crmhook_core::retry::Outcome;
use crmhook_core::{EventId, TargetId};
use crmhook_store::{AttemptResult, Response};
use tokio::sync::broadcast;

/// Attempts waiting for slow listeners.
pub const BUFFER: usize = 1024;

/// A delivery attempt whose record has been written to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecorded {
    pub event_id: EventId,
    pub seq: u64,
    pub target_id: TargetId,
    /// The attempt's number for this delivery (1 for the first).
    pub n: u32,
    /// The receiver's HTTP status, when it answered.
    pub status_code: Option<u16>,
    /// What the attempt led to.
    pub result: AttemptResult,
    pub duration_ms: u64,
    /// When the attempt started.
    pub at_ms: u64,
    /// Why a failed attempt failed (as attempt listings say it); `None` when it succeeded.
    pub error: Option<String>,
    /// How it went: the receiver's status, a timeout, or why there was no answer.
    pub outcome: Outcome,
    /// What the receiver answered; kept only while the feed has a listener
    /// ([`Feed::listening`]). In the server its stream hub always listens, so each attempt
    /// waiting to be published holds its response (at most 4 KiB of body): at most `WINDOW`
    /// finished attempts waiting for a target's lazy write, and [`BUFFER`] in the feed.
    pub response: Option<Response>,
    /// An attempt of a test delivery (`POST /v1/targets/{id}/test`), not of a CRM event's.
    pub test: bool,
}

impl AttemptRecorded {
    /// The outcome it is counted under: one of [`crate::metrics::OUTCOMES`].
    pub fn outcome(&self) -> &'static str {
        crate::metrics::outcome(&self.result)
    }
}

/// The feed's handle (cheap to clone).
#[derive(Clone)]
pub struct Feed {
    attempts: broadcast::Sender<AttemptRecorded>,
}

impl Default for Feed {
    fn default() -> Self {
        Feed { attempts: broadcast::channel(BUFFER).0 }
    }
}

impl Feed {
    pub fn new() -> Feed {
        Feed::default()
    }

    /// Whether anyone listens now.
    pub fn listening(&self) -> bool {
        self.attempts.receiver_count() > 0
    }

    /// Publishes a recorded attempt to every listener; `attempt` is called only when there is one.
    pub fn publish(&self, attempt: impl FnOnce() -> AttemptRecorded) {
        if self.attempts.receiver_count() > 0 {
            let _ = self.attempts.send(attempt());
        }
    }

    /// A new listener: it receives the attempts published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<AttemptRecorded> {
        self.attempts.subscribe()
    }
}
