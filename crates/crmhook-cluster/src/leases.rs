//! Leases on targets, in a key-value bucket whose entries expire after the lease TTL.
//!
//! Every round (a fifth of the TTL) a node: puts its heartbeat `node.<n>` (its HTTP URL);
//! renews each lease it holds (`tgt.<id>`, a compare-and-set on the revision it holds: if the
//! revision moved, someone else took it after it expired, and it is let go); takes free leases
//! (a create, which fails if the key exists) while it holds fewer than its share (the targets
//! divided by the nodes alive, rounded up), and, having taken any, waits until its copy has
//! applied the stream as it was then (the last node's records of those targets are in it);
//! gives one lease up while it holds more than its share (`handover.rs`), and hands over those
//! whose actor has drained here; gives back the leases of deleted targets. A lease
//! it could not renew for 3/5 of the TTL (the NATS servers out of reach) is let go here before
//! anyone else can take it. The targets held are published on a watch, which the router
//! follows: a target let go is drained and stopped, one taken starts from the log.
//!
//! Each renewal also moves the lease's deadline (`deadline.rs`: when it was sent, plus 3/5 of
//! the TTL), which the target's actor checks before it starts any delivery. A round runs only
//! every fifth of the TTL and waits for NATS, so after a pause of the process longer than the
//! TTL the actors resumed before the round could find that another node took the lease, and
//! delivered for about 1.2 s (an audit of 2026-12-07 counted 25 repeats); since 2026-12-07 they
//! find the deadline passed and start nothing until a renewal (or the lease is let go).
//!
//! Targets move when their node leaves (its leases given back at a graceful stop, expired after
//! a crash), when they are new, and, one lease per round, from a node over its share to the
//! nodes under it (a node that joins, since 2026-12-07: `handover.rs`).
//!
//! A round that fails (its heartbeat or a read of the bucket: no NATS quorum, or none in reach)
//! marks the node's log as failing, and one that succeeds as not, as a publish does
//! (`publish.rs`): `/readyz` then answers 503 while the cluster cannot take writes, even on a
//! node that nobody posts to (since 2026-12-07; before, it said ready while every ingest got
//! 503, until the node's own next publish failed).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{kv, stream};
use crmhook_core::TargetId;
use crmhook_store::Replica;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};

use crate::deadline::{lease_clock, nanos, LeaseDeadlines};
use crate::handover::{self, ActorsHere, HANDOVER_BOUND};
use crate::Owners;

/// What a lease or a heartbeat holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Holder {
    /// The node, in hex.
    pub node: String,
    /// Its HTTP URL.
    pub url: String,
}

/// A node alive, as the last round saw.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    pub node: String,
    pub url: String,
    /// The targets it delivers.
    pub targets: Vec<String>,
    /// Whether it is the node that answered.
    pub this_node: bool,
}

pub(crate) struct Leases {
    owned: watch::Receiver<Arc<BTreeSet<TargetId>>>,
    owners: Owners,
    nodes: Arc<Mutex<Vec<NodeView>>>,
    stop: Mutex<Option<oneshot::Sender<oneshot::Sender<()>>>>,
}

struct Held {
    revision: u64,
    /// When the write that renewed (or took) it was sent, on [`lease_clock`].
    renewed: u64,
    /// Given up (rebalancing) at this time, on [`lease_clock`]: no longer delivered here, and
    /// kept only until its actor has drained (`handover.rs`).
    giving_up: Option<u64>,
}

struct Round {
    kv: kv::Store,
    /// The log stream: how far it is when this node takes a lease.
    log: stream::Stream,
    replica: Arc<Replica>,
    me: Holder,
    ttl: Duration,
    held: HashMap<TargetId, Held>,
    owned: watch::Sender<Arc<BTreeSet<TargetId>>>,
    owners: Owners,
    nodes: Arc<Mutex<Vec<NodeView>>>,
    deadlines: LeaseDeadlines,
    actors: ActorsHere,
}

/// Where a node's lease keeper works: the bucket, the log stream, and this node's copy.
pub(crate) struct Bucket {
    pub(crate) kv: kv::Store,
    pub(crate) log: stream::Stream,
    pub(crate) replica: Arc<Replica>,
}

impl Leases {
    pub(crate) fn start(
        Bucket { kv, log, replica }: Bucket,
        me: (u64, String),
        ttl: Duration,
        deadlines: LeaseDeadlines,
        actors: ActorsHere,
    ) -> Leases {
        let (node, url) = me;
        let (owned_tx, owned) = watch::channel(Arc::new(BTreeSet::new()));
        let owners = Owners::default();
        let nodes = Arc::new(Mutex::new(Vec::new()));
        let (stop_tx, mut stop_rx) = oneshot::channel::<oneshot::Sender<()>>();
        let mut round = Round {
            kv,
            log,
            replica,
            me: Holder { node: format!("{node:016x}"), url },
            ttl,
            held: HashMap::new(),
            owned: owned_tx,
            owners: owners.clone(),
            nodes: nodes.clone(),
            deadlines,
            actors,
        };
        tokio::spawn(async move {
            let every = ttl / 5;
            loop {
                let done = round.once().await;
                round.replica.set_failing(done.is_err());
                if let Err(e) = done {
                    tracing::warn!(error = %e, "lease round failed");
                }
                round.let_go_stale();
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    done = &mut stop_rx => {
                        round.give_back().await;
                        if let Ok(done) = done {
                            let _ = done.send(());
                        }
                        return;
                    }
                }
            }
        });
        Leases { owned, owners, nodes, stop: Mutex::new(Some(stop_tx)) }
    }

    pub(crate) fn owned(&self) -> watch::Receiver<Arc<BTreeSet<TargetId>>> {
        self.owned.clone()
    }

    pub(crate) fn owner_url(&self, target: &TargetId) -> Option<String> {
        if self.owned.borrow().contains(target) {
            return None;
        }
        self.owners.lock().ok()?.get(target).map(|h| h.url.clone())
    }

    pub(crate) fn nodes(&self) -> Vec<NodeView> {
        self.nodes.lock().map(|n| n.clone()).unwrap_or_default()
    }

    pub(crate) fn leave(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (done, left) = oneshot::channel();
        let sent = self.stop.lock().ok().and_then(|mut s| s.take()).map(|stop| stop.send(done).is_ok());
        async move {
            if sent == Some(true) {
                let _ = left.await;
            }
        }
    }
}

fn lease_key(target: &TargetId) -> String {
    format!("tgt.{}", target.as_str())
}

impl Round {
    async fn once(&mut self) -> Result<(), async_nats::Error> {
        let me = serde_json::to_vec(&self.me)?;
        self.kv.put(format!("node.{}", self.me.node), me.clone().into()).await?;
        let targets: BTreeSet<TargetId> = self.replica.store().targets()?.into_iter().map(|t| t.id).collect();
        let (alive, owners) = self.read(&targets).await?;
        // Renew what is held; let go what was taken by another (it expired) or deleted.
        let held: Vec<TargetId> = self.held.keys().cloned().collect();
        for target in held {
            let key = lease_key(&target);
            if !targets.contains(&target) {
                self.let_go(&target);
                let _ = self.kv.delete(&key).await;
                continue;
            }
            let Some(revision) = self.held.get(&target).map(|h| h.revision) else { continue };
            let sent = lease_clock();
            match self.kv.update(&key, me.clone().into(), revision).await {
                Ok(revision) => self.renewed(target, revision, sent),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    tracing::warn!(target = %target, "lease lost: another node holds it");
                    self.let_go(&target);
                }
                Err(e) => tracing::warn!(target = %target, error = %e, "lease not renewed"),
            }
        }
        self.hand_over().await;
        // Take free leases up to this node's share.
        let share = handover::share(targets.len(), alive.len());
        let mut took = false;
        for target in &targets {
            if self.delivering() >= share {
                break;
            }
            if self.held.contains_key(target) || owners.contains_key(target) {
                continue;
            }
            let sent = lease_clock();
            if let Ok(revision) = self.kv.create(lease_key(target), me.clone().into()).await {
                tracing::info!(target = %target, "lease taken: this node delivers it");
                self.hold(target.clone(), revision, sent);
                took = true;
            }
        }
        if took {
            self.catch_up().await;
        }
        if handover::gives_one_up(self.delivering(), targets.len(), alive.len()) {
            self.give_one_up(share);
        }
        self.deadlines.retain(&targets);
        self.publish();
        self.remember(alive, owners);
        Ok(())
    }

    /// Holds `target`'s lease at `revision`, written by a request sent at `sent`: its actor may
    /// start deliveries until 3/5 of the TTL after that (set before the lease is published as
    /// held, so an actor started for it finds its deadline).
    fn hold(&mut self, target: TargetId, revision: u64, sent: u64) {
        self.deadlines.set(&target, sent.saturating_add(nanos(self.stop_after())));
        self.held.insert(target, Held { revision, renewed: sent, giving_up: None });
    }

    /// `target`'s lease renewed at `revision` by a request sent at `sent`: held as before, or,
    /// given up, kept with its deadline moved too (its actor, draining, starts nothing new, and
    /// records what its attempts in flight come back with only before the deadline).
    fn renewed(&mut self, target: TargetId, revision: u64, sent: u64) {
        let giving_up = self.held.get(&target).and_then(|h| h.giving_up);
        self.hold(target.clone(), revision, sent);
        if let Some(held) = self.held.get_mut(&target) {
            held.giving_up = giving_up;
        }
    }

    /// How many leases this node delivers (those it is giving up are not counted).
    fn delivering(&self) -> usize {
        self.held.values().filter(|h| h.giving_up.is_none()).count()
    }

    /// Gives up one lease, this node being over its `share`: its actor starts nothing more and
    /// drains; the lease is handed over once it has ([`Round::hand_over`]).
    fn give_one_up(&mut self, share: usize) {
        let Some(target) = self.held.iter().filter(|(_, h)| h.giving_up.is_none()).map(|(t, _)| t).max().cloned()
        else {
            return;
        };
        tracing::info!(target = %target, share, "lease given up (this node is over its share): it moves once its deliveries in flight are done");
        // Its deadline stays: the router drains the actor (nothing new starts), and what its
        // attempts in flight come back with is recorded before the lease moves.
        if let Some(held) = self.held.get_mut(&target) {
            held.giving_up = Some(lease_clock());
        }
    }

    /// Deletes the leases given up whose actor is no longer here (or was given
    /// [`HANDOVER_BOUND`]): the nodes under their share take them at their next round.
    async fn hand_over(&mut self) {
        let now = lease_clock();
        let ready: Vec<TargetId> = self
            .held
            .iter()
            .filter_map(|(t, h)| h.giving_up.map(|since| (t, since)))
            .filter(|(t, since)| !self.actors.has(t) || now.saturating_sub(*since) >= nanos(HANDOVER_BOUND))
            .map(|(t, _)| t.clone())
            .collect();
        for target in ready {
            match self.kv.delete(lease_key(&target)).await {
                Ok(()) => {
                    tracing::info!(target = %target, "lease handed over: another node takes it");
                    self.let_go(&target);
                }
                // Still held (and renewed): tried again at the next round.
                Err(e) => tracing::warn!(target = %target, error = %e, "lease not handed over yet"),
            }
        }
    }

    /// Waits (a fifth of the TTL at most) until this node's copy has applied the log as far as
    /// it is now: the leases just taken were given up or let go by nodes whose records of those
    /// targets are in it, and their actors here start from those records.
    async fn catch_up(&mut self) {
        let last = match self.log.info().await {
            Ok(info) => info.state.last_sequence,
            Err(e) => {
                tracing::warn!(error = %e, "reading how far the log is failed: the leases taken start from the copy as it is");
                return;
            }
        };
        let until = Instant::now() + self.ttl / 5;
        loop {
            match self.replica.store().replicated() {
                Ok(applied) if applied >= last => return,
                Ok(_) if Instant::now() < until => tokio::time::sleep(Duration::from_millis(5)).await,
                Ok(applied) => {
                    tracing::warn!(
                        applied,
                        last,
                        "this node's copy is behind the log: the leases taken start from it as it is"
                    );
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading how far this node's copy is failed");
                    return;
                }
            }
        }
    }

    /// Lets `target`'s lease go here: its actor starts nothing more from now on, before the
    /// router has stopped it.
    fn let_go(&mut self, target: &TargetId) {
        self.held.remove(target);
        self.deadlines.set(target, 0);
    }

    /// How long after a renewal was sent this node stops delivering if it has not renewed
    /// again: 3/5 of the TTL, before anyone else can take the lease.
    fn stop_after(&self) -> Duration {
        self.ttl * 3 / 5
    }

    /// The nodes alive (their heartbeats, by node) and who holds the lease of each target.
    /// Read without a consumer: the subjects the bucket's stream holds now (an expired entry is
    /// gone from them), then each key's last value by a direct get. (`kv.keys()` makes a
    /// consumer per call, which the servers kept for a while: hundreds of them.)
    async fn read(
        &self,
        targets: &BTreeSet<TargetId>,
    ) -> Result<(HashMap<String, Holder>, HashMap<TargetId, Holder>), async_nats::Error> {
        let prefix = format!("$KV.{}.", self.kv.name);
        let mut subjects = self.kv.stream.info_with_subjects(format!("{prefix}node.>")).await?;
        let mut nodes = HashMap::new();
        while let Some(subject) = subjects.next().await {
            let (subject, _) = subject?;
            let Some(key) = subject.strip_prefix(&prefix) else { continue };
            if let Some(holder) = self.holder(key).await? {
                nodes.insert(key.trim_start_matches("node.").to_owned(), holder);
            }
        }
        let mut owners = HashMap::new();
        for target in targets {
            if let Some(holder) = self.holder(&lease_key(target)).await? {
                owners.insert(target.clone(), holder);
            }
        }
        Ok((nodes, owners))
    }

    async fn holder(&self, key: &str) -> Result<Option<Holder>, async_nats::Error> {
        Ok(match self.kv.get(key).await? {
            Some(value) => serde_json::from_slice::<Holder>(&value).ok(),
            None => None,
        })
    }

    /// Keeps who holds which lease, and the nodes, for forwarding and `GET /v1/cluster`.
    fn remember(&self, alive: HashMap<String, Holder>, mut owners: HashMap<TargetId, Holder>) {
        for target in self.held.keys() {
            owners.insert(target.clone(), self.me.clone());
        }
        let mut nodes: HashMap<String, NodeView> = alive
            .into_iter()
            .map(|(node, holder)| {
                let view = NodeView {
                    node: node.clone(),
                    url: holder.url,
                    targets: Vec::new(),
                    this_node: node == self.me.node,
                };
                (node, view)
            })
            .collect();
        for (target, holder) in &owners {
            if let Some(view) = nodes.get_mut(&holder.node) {
                view.targets.push(target.to_string());
            }
        }
        let mut nodes: Vec<NodeView> = nodes.into_values().collect();
        nodes.sort_by(|a, b| a.node.cmp(&b.node));
        for n in &mut nodes {
            n.targets.sort();
        }
        if let Ok(mut o) = self.owners.lock() {
            *o = owners;
        }
        if let Ok(mut n) = self.nodes.lock() {
            *n = nodes;
        }
    }

    /// Lets go, here, the leases not renewed for 3/5 of the TTL: before anyone else can take
    /// them, this node stops delivering them.
    fn let_go_stale(&mut self) {
        let limit = nanos(self.stop_after());
        let now = lease_clock();
        let before = self.held.len();
        let deadlines = &self.deadlines;
        self.held.retain(|target, h| {
            let keep = now.saturating_sub(h.renewed) < limit;
            if !keep {
                tracing::warn!(target = %target, "lease not renewed in time: this node stops delivering it");
                deadlines.set(target, 0);
            }
            keep
        });
        if self.held.len() != before {
            self.publish();
        }
    }

    fn publish(&self) {
        let set: BTreeSet<TargetId> =
            self.held.iter().filter(|(_, h)| h.giving_up.is_none()).map(|(t, _)| t.clone()).collect();
        self.owned.send_if_modified(|owned| {
            if **owned == set {
                return false;
            }
            *owned = Arc::new(set);
            true
        });
    }

    /// A graceful stop: no target is delivered here any more, and the leases are deleted so
    /// that the other nodes take them at their next round.
    async fn give_back(&mut self) {
        let held: Vec<TargetId> = self.held.drain().map(|(t, _)| t).collect();
        for target in &held {
            self.deadlines.set(target, 0);
        }
        self.publish();
        for target in held {
            let _ = self.kv.delete(lease_key(&target)).await;
        }
        let _ = self.kv.delete(format!("node.{}", self.me.node)).await;
    }
}
