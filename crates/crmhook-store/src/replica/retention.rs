//! Retention in replica mode: a call of retention (the events, the quarantine, the audit trail)
//! is an entry of the replicated log, and every copy compacts at that entry's place.
//!
//! Each node compacting its own copy on its own timer made the copies differ: a retry that
//! came between two nodes' passes was a duplicate on one (its `Idempotency-Key` or Maximizer
//! `Id` still there) and a new event on the other, and from then on the copies gave different
//! seqs and ids (a cluster audit, 2026-12-07). Now a node's retention task chooses what goes,
//! reading its own copy beside its writer as a single node does (the events no target owes, and,
//! once a pass, the idempotency records that name only events gone: a walk of every such
//! record), and publishes the choice (`WireOp::Retain`, in an entry of its own). Every copy, on reaching
//! the entry, waits until its writer has applied every entry before it, reads the writes that
//! remove what was chosen from the copy (its chunks, index postings and blocks: each copy writes
//! out its own postings), and hands them to its writer as the entry's own, with its position;
//! the next entry is handed only once they are applied. The quarantine's and the audit trail's
//! calls carry their cutoff and `max`, and each copy reads at the entry's place what they
//! remove (a walk in time order that stops at the first record to keep).
//!
//! A choice read at one place of the log and applied at a later one is what a single node's
//! retention does beside its writer: an event no target owes stays so (a subscription matches
//! only events logged after it), and an idempotency record that a retry found meanwhile still
//! names only the removed events. Two nodes' calls that chose the same events: the second finds
//! them gone and removes nothing more. The one race, as on a single node: an operator's replay
//! or redelivery of a chosen event, made between the choice and its entry, finds its event gone
//! when the target reads it, and the delivery is dropped with a warning (the event was past its
//! retention and delivered or dead).
//!
//! The node that publishes a call is answered with how many records went on its own copy
//! (every copy removes the same). A copy that cannot read the writes (an I/O error) does not move
//! past the entry: it is read again (`crmhook-cluster`'s reader starts again from the last entry
//! handed), loudly, rather than leaving the copy different from the others.

use std::sync::atomic::Ordering;

use tokio::sync::oneshot;

use super::{EntryOp, Link, Outgoing, Replica, Waiter, WireOp};
use crate::batch::Writes;
use crate::compact::{block_on_apart, Choice, Plan};
use crate::writer::{Op, When};
use crate::{codec, Result, Store, StoreError};

/// How long a node waits for its call of retention to be applied on its copy (a stop waits for
/// the retention thread).
const APPLIED_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

/// The most bytes of `Idempotency-Key` records an entry of retention names (NATS's default
/// `max_payload` is 1 MiB; a pass over 100,000 events with keys of 40 characters names 4 MB).
pub(crate) const KEY_BYTES: usize = 256 * 1024;

/// `choice` as the calls to publish: its events and the keys that fit with them, then the other
/// keys, [`KEY_BYTES`] at most a call.
pub(super) fn in_parts(mut choice: Choice) -> Vec<Choice> {
    let mut keys = std::mem::take(&mut choice.keys).into_iter().peekable();
    let mut parts = Vec::new();
    let mut part = choice;
    loop {
        let mut bytes = 0;
        while let Some(k) = keys.next_if(|k| bytes == 0 || bytes + k.len() <= KEY_BYTES) {
            bytes += k.len();
            part.keys.push(k);
        }
        parts.push(part);
        if keys.peek().is_none() {
            return parts;
        }
        part = Choice::default();
    }
}

/// What a call of retention removes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Retain {
    /// Events whose deliveries are all finished (`Store::compact`).
    Events,
    /// Quarantined pieces (`Store::compact_quarantine`).
    Quarantine,
    /// Audit entries (`Store::compact_audit`).
    Audit,
}

impl Retain {
    fn byte(self) -> u8 {
        match self {
            Retain::Events => 0,
            Retain::Quarantine => 1,
            Retain::Audit => 2,
        }
    }

    fn of(byte: u8) -> Option<Retain> {
        [Retain::Events, Retain::Quarantine, Retain::Audit].into_iter().find(|r| r.byte() == byte)
    }
}

/// A call of retention read from an entry, with the caller waiting for it on this node.
pub(crate) struct Call {
    pub(super) what: u8,
    pub(super) cutoff_ms: u64,
    pub(super) max: u64,
    pub(super) choice: Choice,
    pub(super) reply: Option<oneshot::Sender<Result<u64>>>,
}

impl Call {
    /// Answers the node's caller, if it waits here.
    pub(super) fn answer(self, result: Result<u64>) {
        if let Some(tx) = self.reply {
            let _ = tx.send(result);
        }
    }
}

impl Link {
    /// Publishes a call of retention and waits until it is applied here; answers how many
    /// records went.
    async fn retain(&self, what: Retain, cutoff_ms: u64, max: u64, choice: Choice) -> Result<u64> {
        let op = codec::encode(&WireOp::Retain {
            what: what.byte(),
            cutoff_ms,
            max,
            seqs: choice.seqs.into_iter().collect(),
            keys: choice.keys.into_iter().map(EntryOp).collect(),
        })?;
        let (reply, rx) = oneshot::channel();
        let nonce = self.wait(Waiter::Count(reply))?;
        if self.out.send(Outgoing { nonce, op, lazy: false, alone: true }).await.is_err() {
            self.forget(nonce);
            return Err(StoreError::Closed);
        }
        match tokio::time::timeout(APPLIED_WITHIN, rx).await {
            Ok(answer) => answer.map_err(|_| StoreError::Closed)?,
            Err(_) => {
                // Its entry may still be applied later, by every copy alike.
                self.forget(nonce);
                Err(StoreError::Unacknowledged("a call of retention was not applied in time".into()))
            }
        }
    }
}

impl Store {
    /// A call of retention in replica mode: an entry of the replicated log (the events'
    /// calls carry the events chosen), waited for until this copy applied it. The keys a pass's
    /// last call removes (all the pass's) go in entries of at most [`KEY_BYTES`] each.
    pub(crate) fn compact_replicated(&self, what: Retain, cutoff_ms: u64, max: usize, choice: Choice) -> Result<u64> {
        let link = self.inner.replica.as_ref().ok_or(StoreError::Closed)?;
        let mut removed = 0;
        for part in in_parts(choice) {
            removed += block_on_apart(link.retain(what, cutoff_ms, max as u64, part))?;
        }
        Ok(removed)
    }

    /// A call of retention of the quarantine or the audit trail in replica mode, published only
    /// when this copy holds something to remove.
    pub(crate) fn trim_replicated(&self, what: Retain, cutoff_ms: u64, max: usize) -> Result<u64> {
        if self.plan_retention(what, cutoff_ms, 1, &Choice::default())?.removed == 0 {
            return Ok(0);
        }
        self.compact_replicated(what, cutoff_ms, max, Choice::default())
    }

    /// The writes a call makes to this copy as it stands: the same writes a single node makes,
    /// but the quarantine's `H` keys removed outright (nothing else writes the copy meanwhile:
    /// no compare and swap needed).
    fn plan_retention(&self, what: Retain, cutoff_ms: u64, max: usize, choice: &Choice) -> Result<Plan> {
        match what {
            Retain::Events => self.removal(choice),
            Retain::Quarantine => {
                let mut plan = self.quarantine_removal(cutoff_ms, max)?;
                for (k, _) in std::mem::take(&mut plan.held) {
                    plan.records.remove(k);
                }
                Ok(plan)
            }
            Retain::Audit => self.audit_removal(cutoff_ms, max),
        }
    }

    /// Answers once the writer has applied every request queued before this one.
    async fn applied_so_far(&self) -> Result<()> {
        self.write_here(Writes::default(), When::Applied).await
    }
}

impl Replica {
    /// Applies the call of retention that is the entry at `seq` (see the module docs).
    pub(super) async fn apply_retention(&self, seq: u64, mut call: Call) -> Result<()> {
        let store = self.store.clone();
        let Some(what) = Retain::of(call.what) else {
            // A kind this build does not know: skipped by it, loudly (as an entry it cannot read).
            tracing::error!(seq, what = call.what, "a call of retention of an unknown kind; skipped");
            call.answer(Ok(0));
            return self.hand(seq, Vec::new()).await;
        };
        let (cutoff_ms, max) = (call.cutoff_ms, usize::try_from(call.max).unwrap_or(usize::MAX));
        let choice = std::mem::take(&mut call.choice);
        let planned = async {
            store.applied_so_far().await?;
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.plan_retention(what, cutoff_ms, max, &choice))
                .await
                .map_err(|e| StoreError::Io(e.to_string()))?
        }
        .await;
        let plan = match planned {
            Ok(plan) => plan,
            Err(e) => {
                tracing::error!(seq, error = %e, "a call of retention could not be read; this copy stops before it");
                call.answer(Err(StoreError::Io(e.to_string())));
                return Err(e);
            }
        };
        let removed = plan.removed;
        let mut writes = plan.records;
        writes.0.extend(plan.unfinish.0);
        // Chunks and blocks change: a copy cached before the writes is not used after them.
        store.forget_chunks();
        let (reply, applied) = oneshot::channel();
        self.hand(seq, vec![Op::Write { writes, when: When::Applied, reply }]).await?;
        // Handed: the rest is done even if this future is dropped (the reader made again).
        let settled = tokio::spawn(async move {
            let result = applied.await.map_err(|_| StoreError::Closed).and_then(|r| r);
            store.forget_chunks();
            match result {
                Ok(()) => {
                    call.answer(Ok(removed));
                    Ok(())
                }
                Err(e) => {
                    call.answer(Err(StoreError::Io(e.to_string())));
                    Err(e)
                }
            }
        });
        settled.await.map_err(|e| StoreError::Io(e.to_string()))?
    }

    /// Hands the writer the entry at `seq` as `ops`.
    async fn hand(&self, seq: u64, ops: Vec<Op>) -> Result<()> {
        self.store.inner.tx.send(Op::Entry { seq, ops, config: false }).await.map_err(|_| StoreError::Closed)?;
        self.handed.store(seq, Ordering::Release);
        Ok(())
    }
}
