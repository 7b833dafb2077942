//! The records the store keeps beside the core types: delivery state, operators' requests and
//! the quarantine (their fields that are core types go through `stored`'s layouts).

use serde::{Deserialize, Serialize};

use crmhook_core::retry::Outcome;
use crmhook_core::{EventId, RejectedId, SourceId, SourceKind};

/// A delivery a target still owes: the number of its next attempt and when it is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub attempt: u32,
    pub due_at_ms: u64,
    /// The attempt that began this round of the retry schedule: 1, or the first attempt of a
    /// redelivery or replay.
    pub round: u32,
}

impl Pending {
    /// The first attempt of a new delivery, due now.
    pub fn first(now_ms: u64) -> Pending {
        Pending { attempt: 1, due_at_ms: now_ms, round: 1 }
    }
}

/// An operator's request, kept in the log as what it was and who asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub at_ms: u64,
    /// Who asked: the token's role and the client's address.
    pub by: String,
    /// `redeliver` or `replay`.
    pub action: String,
    pub target: String,
    /// What was asked for, e.g. the event id or the replay's filter.
    pub detail: String,
    /// How many deliveries it queued.
    pub queued: u64,
}

/// The final state of a delivery that is no longer pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Final {
    Delivered,
    Dead,
}

/// What an attempt led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttemptResult {
    Delivered,
    Retrying {
        next_at_ms: u64,
    },
    Dead,
    /// The receiver answered 410 Gone: the target was disabled; the delivery waits for it.
    TargetDisabled,
}

/// Why a target is not being delivered to, and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disabled {
    pub at_ms: u64,
    pub reason: String,
}

/// One delivery attempt, appended once and never changed: the layout of record version 2
/// (`codec::ATTEMPT_VERSION`) of `A` records and of the entries of `L` blocks. Version 1,
/// `AttemptV1`, without the response, is still read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub n: u32,
    /// When it started, ms since the epoch.
    pub at_ms: u64,
    pub duration_ms: u64,
    #[serde(with = "crate::stored::outcome_v1")]
    pub outcome: Outcome,
    pub result: AttemptResult,
    /// The attempt that began its round: `n == round > 1` is a redelivery's first attempt.
    pub round: u32,
    /// What the receiver answered, when it answered; `None` in a record of version 1 (made
    /// before answers were kept).
    pub response: Option<Response>,
}

/// An attempt as record version 1 held it (`A` records, `L` block entries and `F` values
/// written before answers were kept): [`Attempt`] without its response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AttemptV1 {
    pub n: u32,
    pub at_ms: u64,
    pub duration_ms: u64,
    #[serde(with = "crate::stored::outcome_v1")]
    pub outcome: Outcome,
    pub result: AttemptResult,
    pub round: u32,
}

impl From<AttemptV1> for Attempt {
    fn from(a: AttemptV1) -> Attempt {
        Attempt {
            n: a.n,
            at_ms: a.at_ms,
            duration_ms: a.duration_ms,
            outcome: a.outcome,
            result: a.result,
            round: a.round,
            response: None,
        }
    }
}

/// A finished delivery as its `L` block holds it (block version 3, [`BLOCK_VERSION`](crate::codec::BLOCK_VERSION)): its
/// seq, its last attempt, and whether that attempt's answer is kept apart, in the attempt's own
/// `A` record (the block's copy then has none). A long answer is kept apart so that a block,
/// written whole each time one of its deliveries finishes, stays small: kept in the block, a
/// receiver's 4 KB answers made each delivery at a low rate write the answers of every
/// delivery before it in its block again ([`ANSWER_IN_BLOCK_BYTES`](crate::ANSWER_IN_BLOCK_BYTES)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockEntry {
    pub seq: u64,
    pub attempt: Attempt,
    pub answer_apart: bool,
}

/// What a receiver answered to an attempt (kept in its [`Attempt`]): its status, the headers an operator
/// needs to read it (`content-type`, `retry-after`, `location`, names in lower case, values
/// cut to [`RESPONSE_HEADER_BYTES`]) and the first bytes of its body (at most the target's
/// `response_body_bytes`, itself at most 4,096). Kept as long as its attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Written as bytes (one copy), as event payloads are.
    #[serde(with = "crmhook_core::event::bytes")]
    pub body: Vec<u8>,
    /// The body was longer than what is kept (or its end was not read in time).
    pub body_truncated: bool,
}

/// An attempt's `error`: why it failed, in words (`None` for a 2xx answer). A status other
/// than 2xx is `answered HTTP <code>`, a 3xx `redirect not followed (HTTP <code> to <Location>)`,
/// a timeout `timed out after <duration> ms`; with no answer, the words the delivery recorded
/// (`connection refused`, `TLS: …`, `DNS: …`, `refused: <address> is not a public address …`).
pub fn attempt_error(outcome: &Outcome, duration_ms: u64, response: Option<&Response>) -> Option<String> {
    match outcome {
        Outcome::Status(200..=299) => None,
        Outcome::Status(code @ 300..=399) => {
            let location = response.and_then(|r| r.headers.iter().find(|(k, _)| k == "location"));
            Some(match location {
                Some((_, to)) => format!("redirect not followed (HTTP {code} to {to})"),
                None => format!("redirect not followed (HTTP {code})"),
            })
        }
        Outcome::Status(code) => Some(format!("answered HTTP {code}")),
        Outcome::Timeout => Some(format!("timed out after {duration_ms} ms")),
        Outcome::Error(e) => Some(e.clone()),
    }
}

/// The response headers kept with an attempt, by their lower-case names.
pub const RESPONSE_HEADERS: [&str; 3] = ["content-type", "retry-after", "location"];

/// Most bytes of a response header's value kept.
pub const RESPONSE_HEADER_BYTES: usize = 1024;

/// One event of an ingest acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckEntry {
    pub id: EventId,
    pub seq: u64,
    pub event_type: String,
    /// Already accepted by an earlier request.
    pub duplicate: bool,
}

impl AckEntry {
    /// A logged event's first acknowledgement: what its deduplication key holds, whether the
    /// writer writes it with the event or open writes it again after a crash.
    pub(crate) fn first(event: &crmhook_core::Event) -> AckEntry {
        AckEntry { id: event.id.clone(), seq: event.seq, event_type: event.event_type.clone(), duplicate: false }
    }
}

/// A piece of a source's request that was not an event, kept in the quarantine with its exact
/// bytes until retention removes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    pub id: RejectedId,
    pub source_id: SourceId,
    /// The source's kind when it was posted: how a retry reads it.
    #[serde(with = "crate::stored::source_kind_v1")]
    pub kind: SourceKind,
    pub at_ms: u64,
    /// Its index in the posted array; `None` for the whole body.
    pub index: Option<u32>,
    pub reason: String,
    /// Exactly as posted.
    pub bytes: Vec<u8>,
    /// Set once a retry logged it as an event.
    pub retried: Option<Retried>,
}

/// One entry of the audit trail: an admin change (who made it, from where, what it changed,
/// before and after, secrets left out) or a failed authentication. Written by the edge,
/// removed by retention like the quarantine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at_ms: u64,
    /// Who: the key's name or role (`admin token`), or `unauthenticated`.
    pub who: String,
    /// The client's address, when known.
    pub from: Option<String>,
    /// What: `target.create`, `subscription.delete`, `auth.failed`…
    pub action: String,
    /// What it was done to (an id, or the request's method and path).
    pub subject: String,
    /// The record before and after, as JSON without secrets; `None` where there is none.
    pub before: Option<String>,
    pub after: Option<String>,
}

/// A quarantined element that a retry logged as an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retried {
    pub at_ms: u64,
    pub event_id: EventId,
    pub seq: u64,
}

/// Counts for the console's charts, kept under `M stats:<name>` (`stats:ingest`, and
/// `stats:<tgt_id>` for each target): what the process counted by minute over the last hour and
/// by quarter hour over the last day, written now and then so that a restart keeps them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Series {
    /// What the counts count, by index (a target's `succeeded`, `failed`, `dead`; ingest's
    /// event types).
    pub names: Vec<String>,
    /// Buckets of one minute, by their start.
    pub minutes: Vec<SeriesBucket>,
    /// Buckets of 15 minutes, by their start.
    pub quarters: Vec<SeriesBucket>,
    /// When a target's last successful attempt started.
    pub last_success_ms: Option<u64>,
    /// A target's last failed attempt.
    pub last_failure: Option<LastFailure>,
}

/// One bucket of a [`Series`]: its start and its counts that are not zero, by name index.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SeriesBucket {
    pub at_ms: u64,
    pub counts: Vec<(u32, u64)>,
}

/// A target's last failed attempt: when it started, the receiver's status if it answered, and
/// why it failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastFailure {
    pub at_ms: u64,
    pub status_code: Option<u16>,
    pub error: Option<String>,
}
