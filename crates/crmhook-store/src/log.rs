//! The seam for a second log backend: [`Log`] names every operation that dispatch and the
//! edge need from the log, and [`Store`] (sled) implements it. Dispatch and the edge hold a
//! [`LogHandle`] (`Arc<dyn Log>`) and never name `Store`; only the binary and the server's
//! entry point open one. A clustered backend on an existing distributed engine (issue 16) is
//! meant to be the second implementation.
//!
//! The operations, by what they are for:
//!
//! - **the event log**: append with a durable acknowledgement ([`Log::queue_append`]), the
//!   head and a watch on it, reads by seq, by id and from a seq on;
//! - **delivery state**: each target's cursor and how far it has matched, pending entries,
//!   attempts, finished deliveries, disabled targets, written in atomic batches
//!   ([`DeliveryBatch`]);
//! - **the console's charts**: the counts by minute and quarter hour ([`Series`]), kept
//!   lazily;
//! - **configuration records**: targets, subscriptions, sources, meta;
//! - **the quarantine**, **the audit trail**, **operators' queries** and **retention**.
//!
//! The cost of the seam on the sled path is one indirect call per operation, and one boxed
//! future per asynchronous one (a delivery batch, an admin change); appends are not boxed
//! ([`PendingAppend`] is a oneshot receiver). `docs/PERFORMANCE.md` has the measurement.
//!
//! What a second backend still needs from this crate before it can live in its own: the types
//! in these signatures are the store's (plain data, except [`DeliveryBatch`], which holds
//! writes already encoded for sled, [`EventRef`] and [`Unrecorded`], whose constructors are
//! the store's own). They move with the trait into a crate of their own when that backend is
//! written.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crmhook_core::{
    Event, EventId, NewEvent, RejectedId, Source, SourceId, Subscription, SubscriptionId, Target, TargetId,
};
use tokio::sync::watch;

use crate::{
    ApiKeyRecord, Attempt, AuditCursor, AuditEntry, DeliveryBatch, DeliveryStatus, Disabled, EventFilter, EventRef,
    KeyChange, Pending, PendingAppend, Rejected, Result, Series, Store, Unrecorded,
};

/// The future of an asynchronous log operation.
pub type LogFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// The log as dispatch and the edge hold it.
pub type LogHandle = Arc<dyn Log>;

/// Every operation dispatch and the edge need from the log. See the module docs.
pub trait Log: Send + Sync + 'static {
    // ---- the event log ----

    /// Queues a request's events for the writer; [`PendingAppend::wait`] answers once they are
    /// durable. Refuses at once with `Busy` when the writer's queue is full.
    fn queue_append(&self, events: Vec<NewEvent>, idempotency_key: Option<String>) -> Result<PendingAppend>;
    /// The last seq given.
    fn head(&self) -> u64;
    /// Tells each new head.
    fn watch_head(&self) -> watch::Receiver<u64>;
    /// Moves when another node changed targets, subscriptions or disabled targets (cluster
    /// mode); never moves on a single node.
    fn watch_config(&self) -> watch::Receiver<u64>;
    fn event(&self, seq: u64) -> Result<Option<Event>>;
    fn event_ref(&self, seq: u64) -> Result<Option<EventRef>>;
    fn event_by_id(&self, id: &EventId) -> Result<Option<Event>>;
    fn event_refs_from(&self, from: u64) -> Box<dyn Iterator<Item = Result<EventRef>> + '_>;
    fn events_from(&self, from: u64) -> Box<dyn Iterator<Item = Result<Event>> + '_>;
    /// Whether the last write failed (the log is not taking events).
    fn is_failing(&self) -> bool;
    /// Becomes true for good once the disk refused a write (see [`Store::watch_broken`]).
    fn watch_broken(&self) -> watch::Receiver<bool>;
    fn size_on_disk(&self) -> u64;

    // ---- delivery state ----

    fn cursor(&self, target: &TargetId) -> Result<Option<u64>>;
    fn scanned(&self, target: &TargetId) -> Result<Option<u64>>;
    fn pending(&self, target: &TargetId, limit: usize) -> Result<Vec<(u64, Pending)>>;
    fn is_pending(&self, target: &TargetId, seq: u64) -> Result<bool>;
    fn is_pending_on_disk(&self, target: &TargetId, seq: u64) -> Result<bool>;
    fn last_attempt(&self, target: &TargetId, seq: u64) -> Result<Option<Attempt>>;
    fn final_attempt(&self, target: &TargetId, seq: u64) -> Result<Option<Attempt>>;
    fn disabled(&self, target: &TargetId) -> Result<Option<Disabled>>;
    fn last_delivered_at(&self, target: &TargetId) -> Result<Option<u64>>;
    /// What readers see of a target's deliveries that are owed but not yet written down.
    fn unrecorded(&self, target: &TargetId) -> Unrecorded;
    /// Writes a batch of delivery state, flushed before it answers.
    fn write_deliveries(&self, batch: DeliveryBatch) -> LogFuture<'_, ()>;
    /// Writes a batch of delivery state that may wait a little for company (a lazy write).
    fn write_deliveries_held(&self, batch: DeliveryBatch) -> LogFuture<'_, ()>;
    fn attempts(&self, seq: u64) -> Result<Vec<(TargetId, Attempt)>>;
    fn attempts_to(&self, target: &TargetId, seq: u64) -> Result<Vec<Attempt>>;
    /// (pending, dead) deliveries of a target.
    fn delivery_counts(&self, target: &TargetId) -> Result<(u64, u64)>;
    fn target_deliveries(
        &self,
        target: &TargetId,
        status: Option<DeliveryStatus>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, DeliveryStatus)>>;

    // ---- configuration records ----

    fn targets(&self) -> Result<Vec<Target>>;
    fn target(&self, id: &TargetId) -> Result<Option<Target>>;
    /// Creates a target whose cursor starts at `cursor`.
    fn create_target<'a>(&'a self, target: &'a Target, cursor: u64) -> LogFuture<'a, ()>;
    fn put_target<'a>(&'a self, target: &'a Target) -> LogFuture<'a, ()>;
    /// Deletes a target and its delivery state (its attempts are kept).
    fn delete_target<'a>(&'a self, id: &'a TargetId) -> LogFuture<'a, ()>;
    fn subscriptions(&self) -> Result<Vec<Subscription>>;
    fn subscription(&self, id: &SubscriptionId) -> Result<Option<Subscription>>;
    fn put_subscription<'a>(&'a self, sub: &'a Subscription) -> LogFuture<'a, ()>;
    fn delete_subscription<'a>(&'a self, id: &'a SubscriptionId) -> LogFuture<'a, ()>;
    fn sources(&self) -> Result<Vec<Source>>;
    fn source(&self, id: &SourceId) -> Result<Option<Source>>;
    fn put_source<'a>(&'a self, source: &'a Source) -> LogFuture<'a, ()>;
    fn delete_source<'a>(&'a self, id: &'a SourceId) -> LogFuture<'a, ()>;
    fn meta(&self, name: &str) -> Result<Option<String>>;
    fn put_meta<'a>(&'a self, name: &'a str, value: &'a str) -> LogFuture<'a, ()>;

    // ---- API keys ----

    fn api_keys(&self) -> Result<Vec<ApiKeyRecord>>;
    fn retired_hashes(&self) -> Result<Vec<([u8; 32], u64)>>;
    /// Applies a change of the keys whole, durably, or answers `Changed` (an expectation no
    /// longer held) having written nothing.
    fn change_api_keys(&self, change: KeyChange) -> LogFuture<'_, ()>;
    /// Moves after every change of the keys applied here (this node's or another's).
    fn watch_keys(&self) -> watch::Receiver<u64>;

    // ---- the quarantine ----

    /// Keeps pieces; answers the id of the piece that holds each (its own, or an earlier
    /// piece's with the same bytes).
    fn quarantine<'a>(&'a self, items: &'a [Rejected]) -> LogFuture<'a, Vec<RejectedId>>;
    fn mark_retried<'a>(&'a self, item: &'a Rejected) -> LogFuture<'a, ()>;
    fn rejected(&self, id: &RejectedId) -> Result<Option<Rejected>>;
    fn rejected_page(
        &self,
        source: Option<&SourceId>,
        after: Option<&RejectedId>,
        limit: usize,
    ) -> Result<Vec<Rejected>>;

    // ---- the audit trail ----

    fn audit<'a>(&'a self, entries: &'a [AuditEntry]) -> LogFuture<'a, ()>;
    fn audit_page(&self, after: Option<AuditCursor>, limit: usize) -> Result<Vec<(AuditCursor, AuditEntry)>>;
    /// The trail backwards: the entries before `before` (the newest without it), newest first.
    fn audit_page_newest(&self, before: Option<AuditCursor>, limit: usize) -> Result<Vec<(AuditCursor, AuditEntry)>>;

    // ---- operators' queries ----

    fn events_page(&self, filter: &EventFilter, after: u64, limit: usize) -> Result<Vec<Event>>;
    /// The events before `before` (every acknowledged one without it), newest first.
    fn events_page_newest(&self, filter: &EventFilter, before: Option<u64>, limit: usize) -> Result<Vec<Event>>;

    // ---- retention ----

    /// Removes up to `max` events older than `cutoff_ms` whose deliveries are all finished.
    fn compact(&self, cutoff_ms: u64, max: usize) -> Result<u64>;
    fn compact_quarantine(&self, cutoff_ms: u64, max: usize) -> Result<u64>;
    fn compact_audit(&self, cutoff_ms: u64, max: usize) -> Result<u64>;

    // ---- the console's charts ----

    /// Every series of counts kept, by name.
    fn stats(&self) -> Result<Vec<(String, Series)>>;
    /// Writes series and removes others by name, lazily (a crash may lose the last write).
    fn put_stats(&self, put: Vec<(String, Series)>, remove: Vec<String>) -> LogFuture<'_, ()>;

    // ---- shutdown ----

    /// Writes what is queued and stops the writer.
    fn close(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

impl Log for Store {
    fn queue_append(&self, events: Vec<NewEvent>, idempotency_key: Option<String>) -> Result<PendingAppend> {
        Store::queue_append(self, events, idempotency_key)
    }
    fn head(&self) -> u64 {
        Store::head(self)
    }
    fn watch_head(&self) -> watch::Receiver<u64> {
        Store::watch_head(self)
    }
    fn watch_config(&self) -> watch::Receiver<u64> {
        Store::watch_config(self)
    }
    fn event(&self, seq: u64) -> Result<Option<Event>> {
        Store::event(self, seq)
    }
    fn event_ref(&self, seq: u64) -> Result<Option<EventRef>> {
        Store::event_ref(self, seq)
    }
    fn event_by_id(&self, id: &EventId) -> Result<Option<Event>> {
        Store::event_by_id(self, id)
    }
    fn event_refs_from(&self, from: u64) -> Box<dyn Iterator<Item = Result<EventRef>> + '_> {
        Store::event_refs_from(self, from)
    }
    fn events_from(&self, from: u64) -> Box<dyn Iterator<Item = Result<Event>> + '_> {
        Box::new(Store::events_from(self, from))
    }
    fn is_failing(&self) -> bool {
        Store::is_failing(self)
    }
    fn watch_broken(&self) -> watch::Receiver<bool> {
        Store::watch_broken(self)
    }
    fn size_on_disk(&self) -> u64 {
        Store::size_on_disk(self)
    }

    fn cursor(&self, target: &TargetId) -> Result<Option<u64>> {
        Store::cursor(self, target)
    }
    fn scanned(&self, target: &TargetId) -> Result<Option<u64>> {
        Store::scanned(self, target)
    }
    fn pending(&self, target: &TargetId, limit: usize) -> Result<Vec<(u64, Pending)>> {
        Store::pending(self, target, limit)
    }
    fn is_pending(&self, target: &TargetId, seq: u64) -> Result<bool> {
        Store::is_pending(self, target, seq)
    }
    fn is_pending_on_disk(&self, target: &TargetId, seq: u64) -> Result<bool> {
        Store::is_pending_on_disk(self, target, seq)
    }
    fn last_attempt(&self, target: &TargetId, seq: u64) -> Result<Option<Attempt>> {
        Store::last_attempt(self, target, seq)
    }
    fn final_attempt(&self, target: &TargetId, seq: u64) -> Result<Option<Attempt>> {
        Store::final_attempt(self, target, seq)
    }
    fn disabled(&self, target: &TargetId) -> Result<Option<Disabled>> {
        Store::disabled(self, target)
    }
    fn last_delivered_at(&self, target: &TargetId) -> Result<Option<u64>> {
        Store::last_delivered_at(self, target)
    }
    fn unrecorded(&self, target: &TargetId) -> Unrecorded {
        Store::unrecorded(self, target)
    }
    fn write_deliveries(&self, batch: DeliveryBatch) -> LogFuture<'_, ()> {
        Box::pin(Store::write_deliveries(self, batch))
    }
    fn write_deliveries_held(&self, batch: DeliveryBatch) -> LogFuture<'_, ()> {
        Box::pin(Store::write_deliveries_held(self, batch))
    }
    fn attempts(&self, seq: u64) -> Result<Vec<(TargetId, Attempt)>> {
        Store::attempts(self, seq)
    }
    fn attempts_to(&self, target: &TargetId, seq: u64) -> Result<Vec<Attempt>> {
        Store::attempts_to(self, target, seq)
    }
    fn delivery_counts(&self, target: &TargetId) -> Result<(u64, u64)> {
        Store::delivery_counts(self, target)
    }
    fn target_deliveries(
        &self,
        target: &TargetId,
        status: Option<DeliveryStatus>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, DeliveryStatus)>> {
        Store::target_deliveries(self, target, status, after, limit)
    }

    fn targets(&self) -> Result<Vec<Target>> {
        Store::targets(self)
    }
    fn target(&self, id: &TargetId) -> Result<Option<Target>> {
        Store::target(self, id)
    }
    fn create_target<'a>(&'a self, target: &'a Target, cursor: u64) -> LogFuture<'a, ()> {
        Box::pin(Store::create_target(self, target, cursor))
    }
    fn put_target<'a>(&'a self, target: &'a Target) -> LogFuture<'a, ()> {
        Box::pin(Store::put_target(self, target))
    }
    fn delete_target<'a>(&'a self, id: &'a TargetId) -> LogFuture<'a, ()> {
        Box::pin(Store::delete_target(self, id))
    }
    fn subscriptions(&self) -> Result<Vec<Subscription>> {
        Store::subscriptions(self)
    }
    fn subscription(&self, id: &SubscriptionId) -> Result<Option<Subscription>> {
        Store::subscription(self, id)
    }
    fn put_subscription<'a>(&'a self, sub: &'a Subscription) -> LogFuture<'a, ()> {
        Box::pin(Store::put_subscription(self, sub))
    }
    fn delete_subscription<'a>(&'a self, id: &'a SubscriptionId) -> LogFuture<'a, ()> {
        Box::pin(Store::delete_subscription(self, id))
    }
    fn sources(&self) -> Result<Vec<Source>> {
        Store::sources(self)
    }
    fn source(&self, id: &SourceId) -> Result<Option<Source>> {
        Store::source(self, id)
    }
    fn put_source<'a>(&'a self, source: &'a Source) -> LogFuture<'a, ()> {
        Box::pin(Store::put_source(self, source))
    }
    fn delete_source<'a>(&'a self, id: &'a SourceId) -> LogFuture<'a, ()> {
        Box::pin(Store::delete_source(self, id))
    }
    fn meta(&self, name: &str) -> Result<Option<String>> {
        Store::meta(self, name)
    }
    fn put_meta<'a>(&'a self, name: &'a str, value: &'a str) -> LogFuture<'a, ()> {
        Box::pin(Store::put_meta(self, name, value))
    }

    fn api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        Store::api_keys(self)
    }
    fn retired_hashes(&self) -> Result<Vec<([u8; 32], u64)>> {
        Store::retired_hashes(self)
    }
    fn change_api_keys(&self, change: KeyChange) -> LogFuture<'_, ()> {
        Box::pin(Store::change_api_keys(self, change))
    }
    fn watch_keys(&self) -> watch::Receiver<u64> {
        Store::watch_keys(self)
    }

    fn quarantine<'a>(&'a self, items: &'a [Rejected]) -> LogFuture<'a, Vec<RejectedId>> {
        Box::pin(Store::quarantine(self, items))
    }
    fn mark_retried<'a>(&'a self, item: &'a Rejected) -> LogFuture<'a, ()> {
        Box::pin(Store::mark_retried(self, item))
    }
    fn rejected(&self, id: &RejectedId) -> Result<Option<Rejected>> {
        Store::rejected(self, id)
    }
    fn rejected_page(
        &self,
        source: Option<&SourceId>,
        after: Option<&RejectedId>,
        limit: usize,
    ) -> Result<Vec<Rejected>> {
        Store::rejected_page(self, source, after, limit)
    }

    fn audit<'a>(&'a self, entries: &'a [AuditEntry]) -> LogFuture<'a, ()> {
        Box::pin(Store::audit(self, entries))
    }
    fn audit_page(&self, after: Option<AuditCursor>, limit: usize) -> Result<Vec<(AuditCursor, AuditEntry)>> {
        Store::audit_page(self, after, limit)
    }
    fn audit_page_newest(&self, before: Option<AuditCursor>, limit: usize) -> Result<Vec<(AuditCursor, AuditEntry)>> {
        Store::audit_page_newest(self, before, limit)
    }

    fn events_page(&self, filter: &EventFilter, after: u64, limit: usize) -> Result<Vec<Event>> {
        Store::events_page(self, filter, after, limit)
    }
    fn events_page_newest(&self, filter: &EventFilter, before: Option<u64>, limit: usize) -> Result<Vec<Event>> {
        Store::events_page_newest(self, filter, before, limit)
    }

    fn compact(&self, cutoff_ms: u64, max: usize) -> Result<u64> {
        Store::compact(self, cutoff_ms, max)
    }
    fn compact_quarantine(&self, cutoff_ms: u64, max: usize) -> Result<u64> {
        Store::compact_quarantine(self, cutoff_ms, max)
    }
    fn compact_audit(&self, cutoff_ms: u64, max: usize) -> Result<u64> {
        Store::compact_audit(self, cutoff_ms, max)
    }
    fn stats(&self) -> Result<Vec<(String, Series)>> {
        Store::stats(self)
    }
    fn put_stats(&self, put: Vec<(String, Series)>, remove: Vec<String>) -> LogFuture<'_, ()> {
        Box::pin(Store::put_stats(self, put, remove))
    }
    fn close(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(Store::close(self))
    }
}
