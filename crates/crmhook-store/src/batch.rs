//! Batches of writes: [`Writes`], the writes one request hands the writer thread (puts,
//! removals, and the changes to finished-delivery blocks that the writer applies, see
//! `finished`), and [`DeliveryBatch`], the delivery state a target actor writes in one atomic
//! batch (cursor, pending entries, attempts, finished deliveries, operators' requests).

use crmhook_core::TargetId;

use crate::keys::{self, Tag};
use crate::records::{Attempt, AttemptResult, Disabled, Final, Pending, Request};
use crate::{codec, Result};

/// One write of a batch.
#[derive(Clone)]
pub(crate) enum Write {
    Put(Vec<u8>, Vec<u8>),
    Remove(Vec<u8>),
    /// Sets a finished delivery (its seq and last attempt) in an `L` block.
    Finish(Vec<u8>, u64, Attempt),
    /// Takes a delivery out of an `L` block.
    Unfinish(Vec<u8>, u64),
    /// A record of the keyspace `Tag` (`O`, `U`) made at `at_ms`: the writer gives it its
    /// key's `n`.
    Numbered(Tag, u64, Vec<u8>),
    /// No write: the request applies only if the record under the key is this value (`None`:
    /// no record) when the writer reaches it (`api_keys`: the keys' records only).
    Expect(Vec<u8>, Option<Vec<u8>>),
}

/// Writes applied in order.
#[derive(Default, Clone)]
pub(crate) struct Writes(pub(crate) Vec<Write>);

impl Writes {
    pub(crate) fn insert(&mut self, k: Vec<u8>, v: Vec<u8>) {
        self.0.push(Write::Put(k, v));
    }

    pub(crate) fn remove(&mut self, k: impl Into<Vec<u8>>) {
        self.0.push(Write::Remove(k.into()));
    }
}

/// Changes to delivery state, written as one atomic batch.
#[derive(Default, Clone)]
pub struct DeliveryBatch {
    pub(crate) batch: Writes,
}

impl DeliveryBatch {
    /// Adds `other`'s writes after these.
    pub fn append(&mut self, other: DeliveryBatch) {
        self.batch.0.extend(other.batch.0);
    }

    pub fn is_empty(&self) -> bool {
        self.batch.0.is_empty()
    }

    /// Sets a target's cursor.
    pub fn cursor(&mut self, target: &TargetId, seq: u64) -> Result<()> {
        self.batch.insert(keys::id_key(Tag::Cursor, target.as_str()), codec::encode(&seq)?);
        Ok(())
    }

    /// Sets how far a target has matched (see the crate docs).
    pub fn scanned(&mut self, target: &TargetId, seq: u64) -> Result<()> {
        self.batch.insert(keys::id_key(Tag::Scanned, target.as_str()), codec::encode(&seq)?);
        Ok(())
    }

    /// Sets (or replaces) a pending delivery.
    pub fn pending(&mut self, target: &TargetId, seq: u64, pending: Pending) -> Result<()> {
        self.batch.insert(keys::pending(target, seq), codec::encode(&pending)?);
        Ok(())
    }

    /// Removes a pending delivery.
    pub fn done(&mut self, target: &TargetId, seq: u64) {
        self.batch.remove(keys::pending(target, seq));
    }

    /// Marks a target disabled.
    pub fn disable(&mut self, target: &TargetId, disabled: &Disabled) -> Result<()> {
        self.batch.insert(keys::id_key(Tag::Disabled, target.as_str()), codec::encode(disabled)?);
        Ok(())
    }

    /// Enables a target again.
    pub fn enable(&mut self, target: &TargetId) {
        self.batch.remove(keys::id_key(Tag::Disabled, target.as_str()));
    }

    /// Appends an attempt record (with its response): under its final state's key when it
    /// finished the delivery, else as an `A` record.
    pub fn attempt(&mut self, target: &TargetId, seq: u64, attempt: &Attempt) -> Result<()> {
        let done = match attempt.result {
            AttemptResult::Delivered => Final::Delivered,
            AttemptResult::Dead => Final::Dead,
            AttemptResult::Retrying { .. } | AttemptResult::TargetDisabled => {
                self.batch.insert(keys::attempt(target, seq, attempt.n), codec::encode_attempt(attempt)?);
                return Ok(());
            }
        };
        self.batch.0.push(Write::Finish(keys::block_key(target, done, seq), seq, attempt.clone()));
        Ok(())
    }

    /// Records the attempt of a test delivery (`POST /v1/targets/{id}/test`), with its
    /// response: an `A` record whatever its result, never a final state or a pending entry. A
    /// test is no delivery the target owes, so it is in none of the target's listings, counts or
    /// blocks; its event's view shows it.
    pub fn test_attempt(&mut self, target: &TargetId, seq: u64, attempt: &Attempt) -> Result<()> {
        self.batch.insert(keys::attempt(target, seq, attempt.n), codec::encode_attempt(attempt)?);
        Ok(())
    }

    /// Queues a finished delivery again (redeliver, replay): pending again, no longer final.
    /// `last` is the attempt its final-state key held ([`Store::final_attempt`](crate::Store::final_attempt)): it is kept as
    /// an `A` record.
    pub fn requeue(&mut self, target: &TargetId, seq: u64, pending: Pending, last: Option<&Attempt>) -> Result<()> {
        for done in [Final::Delivered, Final::Dead] {
            self.batch.remove(keys::final_key(target, done, seq));
            self.batch.0.push(Write::Unfinish(keys::block_key(target, done, seq), seq));
        }
        if let Some(a) = last {
            self.batch.insert(keys::attempt(target, seq, a.n), codec::encode_attempt(a)?);
        }
        self.pending(target, seq, pending)
    }

    /// Records an operator's request.
    pub fn request(&mut self, request: &Request) -> Result<()> {
        self.batch.0.push(Write::Numbered(Tag::Request, request.at_ms, codec::encode(request)?));
        Ok(())
    }
}
