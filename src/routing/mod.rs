//! Event -> plugins -> deliveries.
//!
//! Routing happens after the 202, off the request path. Each event goes
//! through every plugin its source lists (independently; their deliveries are
//! unioned) plus the source's passthrough targets. The outcome, the
//! deliveries and their first schedule entries are written in one batch that
//! also clears the event's "to route" mark, so a crash either re-routes the
//! event or finds it fully routed, never half.

//!
//! The module: `mod.rs` the router (queue in, outcome out), `backlog.rs`
//! the bounded in-memory queue of ids and its refill from the store,
//! `outcome.rs` one run of a source's plugins and what it becomes.

mod backlog;
mod outcome;
pub mod trial;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use tokio::sync::{Notify, Semaphore};
use tracing::Instrument;

use crate::config::live::LiveConfig;
use crate::delivery::Dispatcher;
use crate::model::id::now_ms;
use crate::model::records::{Event, EventStatus, Origin, Outcome, PluginResult, PluginVerdict};
use crate::plugin::Plugins;
use crate::plugin::kv::KvRefused;
use crate::store::{Committed, Mark, RoutingLog};
use crate::telemetry::{EventRouted, KvConflict, PluginDecided, RouteResult, Telemetry};
pub use backlog::Incoming;
use backlog::{Backlog, QUEUE_CAP};
pub use outcome::cap_text;
pub(crate) use outcome::new_delivery;
use outcome::{KV_RETRY_FOR, MAX_KV_TRIES};

/// A store that is down fails every outcome the same way: logged once per
/// period, with the count held back.
static OUTCOME_ERRORS: crate::telemetry::throttle::Throttle =
    crate::telemetry::throttle::Throttle::new(Duration::from_secs(10));

/// How many events are routed concurrently.
const ROUTE_CONCURRENCY: usize = 64;

/// What a replay request led to.
#[derive(Debug, PartialEq, Eq)]
pub enum Replay {
    Queued,
    NotFound,
    /// Still waiting to be routed: nothing to replay yet.
    Pending,
}

/// Routes events handed to it by ingestion (and, at start, by recovery).
pub struct Router {
    config: Arc<LiveConfig>,
    store: Arc<dyn RoutingLog>,
    plugins: Arc<Plugins>,
    dispatcher: Arc<Dispatcher>,
    telemetry: Arc<Telemetry>,
    backlog: Mutex<Backlog>,
    /// Wakes the routing loop: ids were queued, or it may stop.
    work: Notify,
    /// Wakes the refill task: marks were missed and the queue has room.
    refill: Notify,
    /// Routing tasks running; shutdown waits for them.
    active: AtomicUsize,
    idle: Notify,
}

impl Router {
    /// Starts the routing loop and the refill task; the first refill pass
    /// picks up every event a previous run accepted but did not finish
    /// routing, a page at a time.
    pub fn start(
        config: Arc<LiveConfig>,
        store: Arc<dyn RoutingLog>,
        plugins: Arc<Plugins>,
        dispatcher: Arc<Dispatcher>,
        telemetry: Arc<Telemetry>,
    ) -> Result<Arc<Router>> {
        let router = Arc::new(Router {
            config,
            store,
            plugins,
            dispatcher,
            telemetry,
            backlog: Mutex::new(Backlog {
                missed: true,
                with_parked: true,
                ..Backlog::default()
            }),
            work: Notify::new(),
            refill: Notify::new(),
            active: AtomicUsize::new(0),
            idle: Notify::new(),
        });
        tokio::spawn(router.clone().run());
        tokio::spawn(router.clone().refill_loop());
        tokio::spawn(router.clone().resume_waiting());
        Ok(router)
    }

    /// Hands a stored event (its "to route" mark is written) to routing.
    /// When the queue is full the id is not kept: the mark is, and a
    /// refill pass reads it back when there is room.
    pub fn enqueue(&self, id: String) {
        self.enqueue_with(id, None)
    }

    /// With the event as ingestion stored it, routing starts without
    /// reading it back (within [`backlog::FRESH_BYTES`]).
    fn enqueue_with(&self, id: String, event: Option<Event>) {
        let mut b = self.backlog();
        b.incoming.remove(&id);
        if b.known.contains(&id) {
            return;
        }
        if b.queue.len() < QUEUE_CAP && !b.missed {
            if let Some(event) = event {
                let size = event.memory_size();
                if b.fresh_bytes + size <= backlog::FRESH_BYTES {
                    b.fresh_bytes += size;
                    b.fresh.insert(id.clone(), Arc::new(event));
                }
            }
            b.known.insert(id.clone());
            b.queue.push_back(id);
            drop(b);
            self.work.notify_one();
        } else {
            self.leave_to_refill(b, &id);
        }
    }

    /// Routes a stored event again through the source's current plugins
    /// (replay). The "to route" mark is written first, so an accepted
    /// replay survives a crash like a new event does.
    pub async fn replay(&self, event_id: &str) -> Result<Replay> {
        Ok(match self.store.mark_to_route(event_id).await? {
            Mark::NoEvent => Replay::NotFound,
            Mark::AlreadyPending => Replay::Pending,
            Mark::Marked => {
                tracing::info!(event = %event_id, "replaying event");
                self.enqueue(event_id.to_string());
                Replay::Queued
            }
        })
    }

    /// How many events wait for a missing plugin.
    pub fn waiting_count(&self) -> usize {
        self.backlog().parked
    }

    /// Event ids queued in memory for routing (not counting marks only in
    /// the store).
    pub fn queued_count(&self) -> usize {
        self.backlog().queue.len()
    }

    /// Stops taking events off the queue and waits (at most `grace`) for
    /// routings in flight to finish. Queued events keep their marks and
    /// are routed after a restart.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.backlog().stopping = true;
        self.work.notify_waiters();
        self.refill.notify_waiters();
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let idle = self.idle.notified();
            let left = self.active.load(Ordering::SeqCst);
            if left == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return self.active.load(Ordering::SeqCst);
            }
        }
    }

    async fn run(self: Arc<Self>) {
        let limit = Arc::new(Semaphore::new(ROUTE_CONCURRENCY));
        loop {
            let Ok(permit) = limit.clone().acquire_owned().await else {
                return;
            };
            let id = loop {
                let notified = self.work.notified();
                if self.backlog().stopping {
                    return;
                }
                if let Some(id) = self.next_id() {
                    break id;
                }
                notified.await;
            };
            self.active.fetch_add(1, Ordering::SeqCst);
            let router = self.clone();
            tokio::spawn(async move {
                let routed = router.route_id(&id).await;
                let mut b = router.backlog();
                b.known.remove(&id);
                match routed {
                    // Only now, with the outcome written and the mark
                    // cleared, may a refill pass see this id again.
                    Ok(()) => {
                        if b.reading {
                            b.done_meanwhile.insert(id);
                        }
                        drop(b);
                    }
                    // The "to route" mark stays: a refill pass reads it
                    // back, from the oldest mark if the current pass is
                    // past it, and a page read meanwhile may queue it.
                    // Marked "done" or left behind the cursor, it waited
                    // for a restart (an event acknowledged before a full
                    // disk was not delivered until then).
                    Err(e) => {
                        if let Some(suppressed) = OUTCOME_ERRORS.allow() {
                            tracing::error!(event = %id, error = format!("{e:#}"), suppressed, "routing failed to store its outcome");
                        }
                        router.leave_to_refill(b, &id);
                    }
                }
                drop(permit);
                if router.active.fetch_sub(1, Ordering::SeqCst) == 1 {
                    router.idle.notify_waiters();
                }
            });
        }
    }

    /// Routes a queued event: the one ingestion handed over, else read
    /// from the store.
    async fn route_id(&self, id: &str) -> Result<()> {
        let fresh = {
            let mut b = self.backlog();
            let event = b.fresh.remove(id);
            if let Some(e) = &event {
                b.fresh_bytes -= e.memory_size();
            }
            event
        };
        let event = match fresh {
            Some(event) => Some(event),
            None => self.store.event(id).await?.map(Arc::new),
        };
        match event {
            Some(event) => {
                // Every line logged while it is routed (each plugin's
                // decision, a conflict, a wait) names its trace.
                let trace = event.trace_context();
                let span = tracing::info_span!(
                    "route",
                    event = %event.id,
                    trace_id = trace.as_ref().map(|t| t.trace_id())
                );
                self.route(event).instrument(span).await.map(|_| ())
            }
            None => {
                // Swept while it waited (a replay of an expired event).
                tracing::warn!(event = %id, "\"to route\" mark without an event; dropped");
                self.store.drop_route_mark(id).await
            }
        }
    }

    /// Runs the source's plugins and stores the outcome, the deliveries and
    /// the plugins' KV writes; `None` when the event was parked to wait for
    /// a missing plugin, or the process is shutting down (the event keeps
    /// its mark either way).
    ///
    /// The KV writes commit only if nothing the calls read changed in the
    /// meantime; if something did, the plugins run again on fresh state (at
    /// most [`KV_RETRY_FOR`]), so concurrent events see each other's
    /// effects as if routed one at a time.
    pub async fn route(&self, event: Arc<Event>) -> Result<Option<Outcome>> {
        let now = now_ms();
        // One config for the whole event, whatever a reload does meanwhile.
        let config = self.config.get();
        let Some(source) = config.sources.get(&event.source) else {
            let outcome = Outcome {
                status: EventStatus::Failed,
                routed_at: now,
                plugins: vec![PluginResult {
                    plugin: String::new(),
                    result: PluginVerdict::Failed,
                    reason: Some(format!("source {:?} is no longer configured", event.source)),
                    deliveries: 0,
                    duration_us: 0,
                    logs: vec![],
                }],
                deliveries: vec![],
            };
            self.store
                .record_outcome(&event.id, &outcome, &[], now, vec![])
                .await?;
            return Ok(Some(outcome));
        };

        let generation = *self.plugins.subscribe().borrow();
        if let Some(missing) = source
            .plugins
            .iter()
            .find(|p| self.plugins.get(p).is_none())
        {
            let note = format!("waiting for plugin {missing:?}, which is not loaded");
            tracing::warn!(event = %event.id, plugin = %missing, "event waits: plugin not loaded");
            self.store.set_route_note(&event.id, &note).await?;
            self.backlog().parked += 1;
            // A plugin that started serving since the check would not wake
            // us again: look once more.
            if *self.plugins.subscribe().borrow() != generation {
                self.rescan_parked();
            }
            return Ok(None);
        }

        let mut tries = 0;
        let first_try = std::time::Instant::now();
        let (outcome, deliveries) = loop {
            tries += 1;
            let Some(mut ran) = self
                .run_plugins(&config, &event, &source.plugins, now)
                .await
            else {
                return Ok(None);
            };
            for target in &source.targets {
                // Decided here and stored with the delivery, so every
                // attempt sends the same headers and the delivery shows them.
                let (headers, refused) =
                    passthrough_headers(source, config.targets.get(target), &event);
                let mut d = new_delivery(&event, target, Origin::Passthrough, headers, None, now);
                d.refused_headers = refused;
                ran.deliveries.push(d);
            }
            let outcome = ran.outcome();
            for part in &mut ran.txns {
                if let Some(turn) = &mut part.turn {
                    turn.plugins_ran();
                }
            }
            // Commits reach the store in the order the plugins' calls ran,
            // so none arrives before a pending write it read.
            for part in &ran.txns {
                if let Some(turn) = &part.turn {
                    turn.ready().await;
                }
            }
            let tokens: Vec<(String, Option<u64>)> = ran
                .txns
                .iter()
                .map(|t| (t.plugin.clone(), t.txn.token))
                .collect();
            // Before the commit: once committed, a dispatcher scanning
            // for other work can attempt these deliveries at once, and an
            // attempt that found no copy would leave one behind for a
            // stale schedule entry to send a second time.
            self.dispatcher.recent.remember(&event, &ran.deliveries);
            let answer = self
                .store
                .record_outcome(
                    &event.id,
                    &outcome,
                    &ran.deliveries,
                    now,
                    std::mem::take(&mut ran.txns),
                )
                .await;
            // Whatever the answer, the store now says what the writes are.
            for (plugin, token) in tokens {
                self.plugins.kv_settled(&plugin, token);
            }
            let refused = match answer? {
                Committed::Refused(r) => r,
                Committed::Fenced => {
                    // Routed by another node that took the event over: the
                    // routing that committed first is the one on record.
                    tracing::info!(event = %event.id, "routed already; this routing is dropped");
                    return Ok(None);
                }
                Committed::Done => {
                    self.metrics_for(&ran.results);
                    break (outcome, ran.deliveries);
                }
            };
            if let KvRefused::Conflict { plugin, key } = &refused {
                self.telemetry.emit(KvConflict { plugin });
                if tries < MAX_KV_TRIES && first_try.elapsed() < KV_RETRY_FOR {
                    tracing::debug!(event = %event.id, plugin = %plugin, key = %key, tries, "KV read changed before commit; routing again");
                    // Within a process the plugin's KV lock orders calls;
                    // across cluster nodes, calls that lost a race back off
                    // a little, each a different time, so they stop
                    // colliding.
                    tokio::time::sleep(outcome::conflict_backoff(&event.id, tries)).await;
                    continue;
                }
            }
            // Contended past hope, or over a limit: the event fails, with
            // the reason on the plugin at fault, and none of its plugins'
            // KV writes or deliveries (passthrough deliveries stand).
            let reason = match &refused {
                KvRefused::Conflict { .. } => {
                    format!("{refused}; gave up after {tries} tries")
                }
                KvRefused::Full { .. } => refused.to_string(),
            };
            let at_fault = match &refused {
                KvRefused::Conflict { plugin, .. } | KvRefused::Full { plugin, .. } => plugin,
            };
            tracing::warn!(event = %event.id, plugin = %at_fault, "{reason}");
            for r in &mut ran.results {
                r.deliveries = 0;
                if r.plugin == *at_fault {
                    r.result = PluginVerdict::Failed;
                    r.reason = Some(reason.clone());
                }
            }
            ran.deliveries.retain(|d| d.origin == Origin::Passthrough);
            let outcome = ran.outcome();
            self.dispatcher.recent.remember(&event, &ran.deliveries);
            self.store
                .record_outcome(&event.id, &outcome, &ran.deliveries, now, vec![])
                .await?;
            self.metrics_for(&ran.results);
            break (outcome, ran.deliveries);
        };
        let trace = event.trace_context();
        self.telemetry.emit(EventRouted {
            event: &event.id,
            result: match outcome.status {
                EventStatus::Routed => RouteResult::Routed,
                EventStatus::Dropped => RouteResult::Dropped,
                EventStatus::Failed => RouteResult::Failed,
            },
            trace_id: trace.as_ref().map(|t| t.trace_id()),
            deliveries: deliveries.len(),
        });
        for d in &deliveries {
            self.dispatcher.note_scheduled(&d.target, 1);
            self.dispatcher.wake(&d.target);
        }
        Ok(Some(outcome))
    }

    /// Counts each plugin's committed decision.
    fn metrics_for(&self, results: &[PluginResult]) {
        for r in results {
            let result = match r.result {
                PluginVerdict::Deliver => RouteResult::Routed,
                PluginVerdict::Drop => RouteResult::Dropped,
                PluginVerdict::Failed => RouteResult::Failed,
            };
            self.telemetry.emit(PluginDecided {
                plugin: &r.plugin,
                result,
            });
        }
    }
}

/// The sender's headers a passthrough delivery to `target` carries on
/// (see `delivery/forward.rs`): the source's and the target's rules both
/// apply; the headers the source's verifier checked are private.
fn passthrough_headers(
    source: &crate::config::SourceConfig,
    target: Option<&crate::config::TargetConfig>,
    event: &Event,
) -> (
    Vec<(String, String)>,
    Vec<crate::model::records::RefusedHeader>,
) {
    let (secret, redacted) = source.verifier.as_ref().map_or_else(Default::default, |v| {
        (v.sensitive_headers(), v.credentials().0)
    });
    let none = crate::delivery::forward::HeaderRules::default();
    crate::delivery::forward::forwarded(
        &event.headers,
        &secret,
        &redacted,
        &source.forward,
        target.map_or(&none, |t| &t.forward),
    )
}
