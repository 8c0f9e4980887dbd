//! The storage seam: what hookyard needs from a store, split by concern, so
//! a second backend (PostgreSQL, for cluster mode) implements it without
//! touching ingestion, routing, plugins or delivery.
//!
//! Each stage holds only the part it uses:
//!
//! | trait | who | what |
//! |---|---|---|
//! | [`EventLog`] | ingestion | accept an event (with its idempotency key) and its "to route" mark, as durably as configured |
//! | [`RoutingLog`] | routing | the marks, replays, and the routing outcome with its deliveries and the plugins' KV writes |
//! | [`PluginKv`] | plugins, admin | a plugin's committed KV state |
//! | [`DeliveryQueue`] | delivery | each target's due deliveries, attempts, retries |
//! | [`TargetStates`] | delivery | a target's operator and circuit state |
//! | [`Records`] | admin | reading, listing and paging events and deliveries |
//! | [`Upkeep`] | jobs, shutdown | retention, key expiry, space, flush |
//!
//! Every multi-record change is one call, and atomic: an event and its mark;
//! an outcome, its deliveries, their schedule entries, the plugins' KV
//! writes (with their read checks) and the cleared mark; an attempt and the
//! delivery's move on the schedule. The conformance suite
//! (`tests/store_conformance.rs`) is what a backend must pass.
//!
//! All methods are async and keep blocking work off the async workers,
//! except [`PluginKv::kv_get`], which plugins call from their blocking
//! threads.

pub mod pg;
pub mod sled;
mod types;

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;
use async_trait::async_trait;

use crate::model::records::{Attempt, Delivery, Event, Outcome};
use crate::plugin::kv::{KvRefused, PluginTxn};
pub use types::{DeliveryQuery, EventQuery, EventSummary, Mark, Page, Swept, ToRoute, collect_ids};

/// What storing a new event found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Stored (with its "to route" mark), as durably as configured.
    New,
    /// Its idempotency key was seen and has not expired: not stored; the
    /// event stored under that key.
    Duplicate(String),
}

/// An idempotency key for [`EventLog::accept`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dedup {
    /// Scoped to the event's source by the store.
    pub key: String,
    /// Unix ms after which the key no longer deduplicates.
    pub expires_at: u64,
}

/// What committing a routing outcome did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    Done,
    /// A KV check failed: nothing was written; the event is still to be
    /// routed.
    Refused(KvRefused),
    /// Another process took the event over (this one's claim on it
    /// lapsed): nothing was written; that process routes it.
    Fenced,
}

/// What recording an attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Done,
    /// Another process took the delivery over (this one's claim on it
    /// lapsed): the result is not recorded; that process sends it again.
    Fenced,
}

/// What an operator's retry found.
#[derive(Debug, Clone, PartialEq)]
pub enum Rescheduled {
    /// Back on the schedule; what the delivery was before.
    Done(Box<Delivery>),
    /// An attempt is running for it (in another process): its result
    /// decides.
    InFlight,
    /// No such delivery.
    Missing,
}

#[async_trait]
pub trait EventLog: Send + Sync {
    /// Stores a new event and marks it "to route", atomically; with
    /// `dedup`, only if its key is not live (concurrent duplicates store
    /// exactly one event). Returns once the event is as durable as the
    /// config asks (a duplicate's answer waits as long, so "already have
    /// it" is never said of an event not yet durable).
    async fn accept(&self, event: &Event, dedup: Option<Dedup>) -> Result<Accepted>;
}

#[async_trait]
pub trait RoutingLog: Send + Sync {
    /// The event, body included.
    async fn event(&self, id: &str) -> Result<Option<Event>>;
    /// Up to `limit` events marked "to route", oldest first, after `after`
    /// (exclusive).
    async fn to_route_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<ToRoute>>;
    /// Why an event still to be routed waits (a missing plugin); an event
    /// no longer marked is left alone.
    async fn set_route_note(&self, event_id: &str, note: &str) -> Result<()>;
    /// Clears the mark of an event that is gone.
    async fn drop_route_mark(&self, event_id: &str) -> Result<()>;
    /// Marks a stored, routed event "to route" again (replay).
    async fn mark_to_route(&self, event_id: &str) -> Result<Mark>;
    /// Records the outcome, creates the deliveries (first attempt due at
    /// `due_ms`), commits the plugins' KV writes and clears the mark,
    /// atomically; with KV parts only if every key a call read still holds
    /// what it read and no plugin goes over its key limit.
    async fn record_outcome(
        &self,
        event_id: &str,
        outcome: &Outcome,
        deliveries: &[Delivery],
        due_ms: u64,
        kv: Vec<PluginTxn>,
    ) -> Result<Committed>;
}

pub trait PluginKv: Send + Sync {
    /// A plugin's committed KV value. Blocking: plugins call it from their
    /// blocking threads.
    fn kv_get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>>;

    /// Whether this process is the only writer of KV state, so a plugin's
    /// commits handed over in call order are applied in call order (the
    /// sled backend): calls may then run ahead of earlier calls' commits.
    /// Elsewhere (a cluster, where other nodes commit to the same keys) a
    /// call that wrote keeps the plugin's lock until its commit is ordered:
    /// a conflict then costs one event a rerun, not every call that read
    /// its pending writes.
    fn sole_writer(&self) -> bool {
        false
    }
}

/// The operator's side of plugin KV.
#[async_trait]
pub trait PluginKvAdmin: Send + Sync {
    /// One page of a plugin's keys (with their value sizes) starting with
    /// `prefix`, in key order, after `after`.
    async fn kv_list(
        &self,
        plugin: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<(String, usize)>>;
    async fn kv_value(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>>;
    /// Deletes a key, ordered with the plugins' commits; whether it existed.
    async fn kv_delete(&self, plugin: &str, key: &str) -> Result<bool>;
}

#[async_trait]
pub trait DeliveryQueue: Send + Sync {
    /// Claims up to `limit` of `target`'s scheduled (due ms, delivery id)
    /// pairs due at or before `now_ms`, oldest first, for `lease`. A
    /// backend shared by several processes hands each to one process at a
    /// time; the embedded one has only this process, whose dispatcher keeps
    /// its own claims (entries it is already running may come back).
    async fn claim_due(
        &self,
        target: &str,
        now_ms: u64,
        limit: usize,
        lease: std::time::Duration,
    ) -> Result<Vec<(u64, String)>>;
    /// The first `limit` of `target`'s scheduled entries, due or not,
    /// without claiming them (when to look again).
    async fn upcoming(&self, target: &str, limit: usize) -> Result<Vec<(u64, String)>>;
    /// The delivery, its own body loaded.
    async fn delivery(&self, id: &str) -> Result<Option<Delivery>>;
    /// The body of the event a delivery sends when it has none of its own.
    async fn event(&self, id: &str) -> Result<Option<Event>>;
    /// The delivery and its event, for an attempt that has neither in
    /// memory (a retry; on a cluster, a delivery routed on another node).
    /// A backend that can read both in one round trip overrides this.
    async fn delivery_and_event(&self, id: &str) -> Result<Option<(Delivery, Option<Event>)>> {
        let Some(d) = self.delivery(id).await? else {
            return Ok(None);
        };
        let e = self.event(&d.event_id).await?;
        Ok(Some((d, e)))
    }
    /// Stores an attempt and the delivery's new state (the dead-letter
    /// index in step) and moves its schedule entry from `old_due` to
    /// `new_due` (none: off the schedule), atomically; only while this
    /// process's claim on it holds.
    async fn record_attempt(
        &self,
        delivery: &Delivery,
        attempt: &Attempt,
        old_due: u64,
        new_due: Option<u64>,
    ) -> Result<Recorded>;
    /// Puts a delivery back on the schedule due at `due_ms` (an operator's
    /// retry), off the dead-letter index.
    async fn reschedule(&self, delivery_id: &str, due_ms: u64) -> Result<Rescheduled>;
    /// Drops a stale schedule entry (or this process's claim on it).
    async fn unschedule(&self, target: &str, delivery_id: &str, due_ms: u64) -> Result<()>;
    /// Scheduled deliveries per target, counted at start.
    async fn scheduled_per_target(&self) -> Result<BTreeMap<String, usize>>;
    /// Dead deliveries per target, counted at start.
    async fn dead_per_target(&self) -> Result<BTreeMap<String, usize>>;
}

/// Which targets this process dispatches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    /// The targets this process owns until the lease ends (sorted).
    pub mine: Vec<String>,
    /// How many of them are past this process's fair share: it should let
    /// that many go once their attempts in flight end, so a node that
    /// joined gets some.
    pub surplus: usize,
}

#[async_trait]
pub trait TargetStates: Send + Sync {
    /// A target's persisted operator and circuit state (opaque JSON).
    async fn target_control(&self, target: &str) -> Result<Option<Vec<u8>>>;
    async fn set_target_control(&self, target: &str, value: &[u8]) -> Result<()>;
    /// Which of `targets` this process may dispatch now. A backend shared
    /// by several processes gives each target to one process at a time
    /// under `lease` (renewed by calling again well within it), so a
    /// target's concurrency, rate and circuit hold for all of them;
    /// `release` gives targets back. The embedded backend owns them all.
    async fn own_targets(
        &self,
        targets: &[String],
        release: &[String],
        lease: std::time::Duration,
    ) -> Result<Owned>;
}

#[async_trait]
pub trait Records: Send + Sync {
    async fn event(&self, id: &str) -> Result<Option<Event>>;
    async fn outcome(&self, event_id: &str) -> Result<Option<Outcome>>;
    /// The note of an event still to be routed (empty when it has none),
    /// `None` when it is not to be routed.
    async fn route_note(&self, event_id: &str) -> Result<Option<String>>;
    async fn delivery(&self, id: &str) -> Result<Option<Delivery>>;
    async fn attempts(&self, delivery_id: &str) -> Result<Vec<Attempt>>;
    /// One page of an event's deliveries, oldest first, after `after`.
    async fn deliveries_of_event(
        &self,
        event_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<Delivery>>;
    /// One page of events, newest first.
    async fn list_events(&self, q: &EventQuery) -> Result<Page<EventSummary>>;
    /// One page of deliveries, newest first.
    async fn list_deliveries(&self, q: &DeliveryQuery) -> Result<Page<Delivery>>;
}

#[async_trait]
pub trait Upkeep: Send + Sync {
    /// Removes up to `max_events` events received before `cutoff_ms` whose
    /// routing and deliveries are finished, with everything hanging off
    /// them; continues after `after`.
    async fn sweep_before(
        &self,
        cutoff_ms: u64,
        max_events: usize,
        after: Option<&str>,
    ) -> Result<Swept>;
    /// Removes up to `limit` expired idempotency keys; returns how many.
    async fn sweep_idempotency(&self, now_ms: u64, limit: usize) -> Result<usize>;
    /// Frees space the sweeps emptied; how many pieces went.
    async fn collect_garbage(&self) -> Result<usize>;
    /// Makes every write so far durable.
    async fn flush(&self) -> Result<()>;
    /// Bytes the store occupies.
    fn size_on_disk(&self) -> u64;
    /// Whether the store takes writes now (readiness); cheap enough to
    /// call every second.
    async fn ready(&self) -> Result<()>;
}

/// One backend, seen through each concern.
#[derive(Clone)]
pub struct Store {
    pub events: Arc<dyn EventLog>,
    pub routing: Arc<dyn RoutingLog>,
    pub kv: Arc<dyn PluginKv>,
    pub kv_admin: Arc<dyn PluginKvAdmin>,
    pub queue: Arc<dyn DeliveryQueue>,
    pub targets: Arc<dyn TargetStates>,
    pub records: Arc<dyn Records>,
    pub upkeep: Arc<dyn Upkeep>,
}

impl Store {
    /// Every concern served by one backend value.
    pub fn from_backend<B>(b: Arc<B>) -> Store
    where
        B: EventLog
            + RoutingLog
            + PluginKv
            + PluginKvAdmin
            + DeliveryQueue
            + TargetStates
            + Records
            + Upkeep
            + 'static,
    {
        Store {
            events: b.clone(),
            routing: b.clone(),
            kv: b.clone(),
            kv_admin: b.clone(),
            queue: b.clone(),
            targets: b.clone(),
            records: b.clone(),
            upkeep: b,
        }
    }
}
