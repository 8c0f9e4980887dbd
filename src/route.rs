//! Event -> plugins -> deliveries.
//!
//! Routing happens after the 202, off the request path. Each event goes
//! through every plugin its source lists (independently; their deliveries are
//! unioned) plus the source's passthrough targets. The outcome, the
//! deliveries and their first schedule entries are written in one batch that
//! also clears the event's "to route" mark, so a crash either re-routes the
//! event or finds it fully routed, never half.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::sync::{Notify, Semaphore};

use crate::admin::metrics::Metrics;
use crate::config::{Config, PluginLimits};
use crate::id::{new_id, now_ms};
use crate::plugin::kv::{KvGuard, KvRefused, KvTxn, PluginTxn};
use crate::plugin::{CallError, PluginOutcome, Plugins};
use crate::records::{
    Delivery, DeliveryStatus, Event, EventStatus, Outcome, PluginResult, PluginVerdict,
};
use crate::store::{Answer, Mark, Storage};
use crate::target::{Dispatcher, headers};

/// How many events are routed concurrently.
const ROUTE_CONCURRENCY: usize = 64;

/// Most event ids held in memory waiting for a routing slot. Past it,
/// events stay only in the store (their "to route" mark) and are read back
/// a page at a time as the queue drains, so a backlog larger than memory
/// (a slow plugin, a restart after an outage, a bulk replay) costs a
/// bounded amount of RAM. An id is ~30 bytes: this is well under a MB.
const QUEUE_CAP: usize = 8192;

/// Marks read from the store per refill step.
const REFILL_PAGE: usize = 512;

/// What a replay request led to.
#[derive(Debug, PartialEq, Eq)]
pub enum Replay {
    Queued,
    NotFound,
    /// Still waiting to be routed: nothing to replay yet.
    Pending,
}

/// The in-memory side of the routing backlog: ids only, bounded.
#[derive(Default)]
struct Backlog {
    queue: VecDeque<String>,
    /// Ids queued or being routed: a refill skips them, so an event is
    /// never routed twice at once.
    known: HashSet<String>,
    /// Some marks in the store are in neither `queue` nor `known`: a refill
    /// pass is due once the queue has room.
    missed: bool,
    /// Where the current refill pass continues (exclusive); `None` starts
    /// at the oldest mark.
    cursor: Option<String>,
    /// A mark older than `cursor` was missed (a replay), or parked events
    /// are to be looked at again: the next pass starts from the oldest.
    restart: bool,
    /// The current pass also takes parked events (a plugin started serving,
    /// or the process started).
    with_parked: bool,
    /// Events parked for a missing plugin since the last rescan.
    parked: usize,
    /// A refill page is being read from the store: ids finished meanwhile
    /// go to `done_meanwhile`, because the page may still show their marks
    /// (read before the outcome cleared them) and must not queue them again.
    reading: bool,
    done_meanwhile: HashSet<String>,
    stopping: bool,
}

/// Routes events handed to it by ingestion (and, at start, by recovery).
pub struct Router {
    config: Arc<Config>,
    store: Arc<dyn Storage>,
    plugins: Arc<Plugins>,
    dispatcher: Arc<Dispatcher>,
    metrics: Arc<Metrics>,
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
        config: Arc<Config>,
        store: Arc<dyn Storage>,
        plugins: Arc<Plugins>,
        dispatcher: Arc<Dispatcher>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Router>> {
        let router = Arc::new(Router {
            config,
            store,
            plugins,
            dispatcher,
            metrics,
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

    fn backlog(&self) -> MutexGuard<'_, Backlog> {
        self.backlog.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands a stored event (its "to route" mark is written) to routing.
    /// When the queue is full the id is not kept: the mark is, and a
    /// refill pass reads it back when there is room.
    pub fn enqueue(&self, id: String) {
        let mut b = self.backlog();
        if b.known.contains(&id) {
            return;
        }
        if b.queue.len() < QUEUE_CAP && !b.missed {
            b.known.insert(id.clone());
            b.queue.push_back(id);
            drop(b);
            self.work.notify_one();
        } else {
            // Older than where the pass stands: it would not be seen.
            if b.cursor.as_ref().is_some_and(|c| id <= *c) {
                b.restart = true;
            }
            b.missed = true;
            drop(b);
            self.refill.notify_one();
        }
    }

    /// Routes a stored event again through the source's current plugins
    /// (replay). The "to route" mark is written first, so an accepted
    /// replay survives a crash like a new event does.
    pub async fn replay(&self, event_id: &str) -> Result<Replay> {
        Ok(match self.store.mark_to_route(event_id).value().await? {
            Mark::NoEvent => Replay::NotFound,
            Mark::AlreadyPending => Replay::Pending,
            Mark::Marked => {
                tracing::info!(event = %event_id, "replaying event");
                self.enqueue(event_id.to_string());
                Replay::Queued
            }
        })
    }

    /// Rescans parked events each time a plugin starts serving; routing
    /// parks them again if what they need is still missing.
    async fn resume_waiting(self: Arc<Self>) {
        let mut changes = self.plugins.subscribe();
        while changes.changed().await.is_ok() {
            self.rescan_parked();
        }
    }

    fn rescan_parked(&self) {
        {
            let mut b = self.backlog();
            if b.parked > 0 {
                tracing::info!(count = b.parked, "resuming events that waited for a plugin");
            }
            b.parked = 0;
            b.with_parked = true;
            b.restart = true;
            b.missed = true;
        }
        self.refill.notify_one();
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

    /// Reads marks the queue could not hold back from the store, a page at
    /// a time, as the queue drains.
    async fn refill_loop(self: Arc<Self>) {
        loop {
            let notified = self.refill.notified();
            let due = {
                let b = self.backlog();
                if b.stopping {
                    return;
                }
                b.missed && b.queue.len() <= QUEUE_CAP / 2
            };
            if !due {
                notified.await;
                continue;
            }
            if let Err(e) = self.refill_step().await {
                tracing::error!(
                    error = format!("{e:#}"),
                    "reading the routing backlog failed; retrying"
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    /// One page of a refill pass.
    async fn refill_step(&self) -> Result<()> {
        let cursor = {
            let mut b = self.backlog();
            if std::mem::take(&mut b.restart) {
                b.cursor = None;
            }
            // Taken now: a mark missed while this page is read sets it again.
            b.missed = false;
            b.reading = true;
            b.cursor.clone()
        };
        let store = self.store.clone();
        let page = tokio::task::spawn_blocking(move || {
            store.to_route_after(cursor.as_deref(), REFILL_PAGE)
        })
        .await;
        let mut added = 0;
        {
            let mut b = self.backlog();
            b.reading = false;
            let done = std::mem::take(&mut b.done_meanwhile);
            let page = match page {
                Ok(Ok(page)) => page,
                Ok(Err(e)) => {
                    b.missed = true;
                    return Err(e);
                }
                Err(e) => {
                    b.missed = true;
                    return Err(e.into());
                }
            };
            if page.is_empty() {
                // The pass reached the newest mark; a restart asked for
                // meanwhile means another pass.
                b.cursor = None;
                if std::mem::take(&mut b.restart) {
                    b.missed = true;
                } else {
                    b.with_parked = false;
                }
                return Ok(());
            }
            for mark in page {
                if b.queue.len() >= QUEUE_CAP {
                    b.missed = true;
                    break;
                }
                b.cursor = Some(mark.id.clone());
                if b.known.contains(&mark.id)
                    || done.contains(&mark.id)
                    || (mark.parked && !b.with_parked)
                {
                    continue;
                }
                b.known.insert(mark.id.clone());
                b.queue.push_back(mark.id);
                added += 1;
            }
            // More of this pass to read.
            b.missed = true;
            if std::mem::take(&mut b.restart) {
                b.cursor = None;
            }
        }
        if added > 0 {
            self.work.notify_one();
        }
        Ok(())
    }

    fn next_id(&self) -> Option<String> {
        let mut b = self.backlog();
        let id = b.queue.pop_front();
        if b.missed && b.queue.len() <= QUEUE_CAP / 2 {
            self.refill.notify_one();
        }
        id
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
                if let Err(e) = router.route_id(&id).await {
                    // The "to route" mark stays; the next refill pass (or a
                    // restart) retries it.
                    tracing::error!(event = %id, error = format!("{e:#}"), "routing failed to store its outcome");
                    router.backlog().missed = true;
                }
                // Only now, with the outcome written and the mark cleared,
                // may a refill pass see this id again.
                {
                    let mut b = router.backlog();
                    b.known.remove(&id);
                    if b.reading {
                        b.done_meanwhile.insert(id);
                    }
                }
                drop(permit);
                if router.active.fetch_sub(1, Ordering::SeqCst) == 1 {
                    router.idle.notify_waiters();
                }
            });
        }
    }

    /// Loads a queued event from the store and routes it.
    async fn route_id(&self, id: &str) -> Result<()> {
        let store = self.store.clone();
        let key = id.to_string();
        let event = tokio::task::spawn_blocking(move || store.event(&key)).await??;
        match event {
            Some(event) => self.route(Arc::new(event)).await.map(|_| ()),
            None => {
                // Swept while it waited (a replay of an expired event).
                tracing::warn!(event = %id, "\"to route\" mark without an event; dropped");
                self.store.drop_route_mark(id).done().await
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
    /// most [`MAX_KV_TRIES`] times), so concurrent events see each other's
    /// effects as if routed one at a time.
    pub async fn route(&self, event: Arc<Event>) -> Result<Option<Outcome>> {
        let now = now_ms();
        let Some(source) = self.config.sources.get(&event.source) else {
            let outcome = Outcome {
                status: EventStatus::Failed,
                routed_at: now,
                plugins: vec![PluginResult {
                    plugin: String::new(),
                    result: PluginVerdict::Failed,
                    reason: Some(format!("source {:?} is no longer configured", event.source)),
                    deliveries: 0,
                    duration_us: 0,
                }],
                deliveries: vec![],
            };
            self.store
                .record_outcome(&event.id, &outcome, &[], now, vec![])
                .done()
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
            self.store.set_route_note(&event.id, &note).done().await?;
            self.backlog().parked += 1;
            // A plugin that started serving since the check would not wake
            // us again: look once more.
            if *self.plugins.subscribe().borrow() != generation {
                self.rescan_parked();
            }
            return Ok(None);
        }

        let mut tries = 0;
        let (outcome, deliveries) = loop {
            tries += 1;
            let Some(mut ran) = self.run_plugins(&event, &source.plugins, now).await else {
                return Ok(None);
            };
            for target in &source.targets {
                ran.deliveries.push(new_delivery(
                    &event,
                    target,
                    "passthrough".into(),
                    vec![],
                    None,
                    now,
                ));
            }
            let outcome = ran.outcome();
            let tokens: Vec<(String, Option<u64>)> = ran
                .txns
                .iter()
                .map(|t| (t.plugin.clone(), t.txn.token))
                .collect();
            let written = self.store.record_outcome(
                &event.id,
                &outcome,
                &ran.deliveries,
                now,
                std::mem::take(&mut ran.txns),
            );
            // Submitted: the writer gets this plugin's next commit after
            // this one, so the next call may go.
            ran.guards.clear();
            let answer = written.answer().await;
            // Whatever the answer, the store now says what the writes are.
            for (plugin, token) in tokens {
                self.plugins.kv_settled(&plugin, token);
            }
            let answer = answer?;
            let refused = match answer {
                Answer::Refused(r) => r,
                Answer::Done | Answer::Existing(_) => {
                    self.metrics_for(&ran.results);
                    break (outcome, ran.deliveries);
                }
            };
            if let KvRefused::Conflict { plugin, key } = &refused {
                self.plugins.note_kv_conflict(plugin);
                if tries < MAX_KV_TRIES {
                    tracing::debug!(event = %event.id, plugin = %plugin, key = %key, tries, "KV read changed before commit; routing again");
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
            ran.deliveries.retain(|d| d.origin == "passthrough");
            let outcome = ran.outcome();
            self.store
                .record_outcome(&event.id, &outcome, &ran.deliveries, now, vec![])
                .done()
                .await?;
            self.metrics_for(&ran.results);
            break (outcome, ran.deliveries);
        };
        self.metrics.event(match outcome.status {
            EventStatus::Routed => "routed",
            EventStatus::Dropped => "dropped",
            EventStatus::Failed => "failed",
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
            let label = match r.result {
                PluginVerdict::Deliver => "routed",
                PluginVerdict::Drop => "dropped",
                PluginVerdict::Failed => "failed",
            };
            self.metrics
                .plugin_result(&r.plugin, label, Duration::from_micros(r.duration_us));
        }
    }

    /// One run of the source's plugins over the event; `None` when the
    /// process is shutting down.
    async fn run_plugins(&self, event: &Arc<Event>, plugins: &[String], now: u64) -> Option<Ran> {
        let mut ran = Ran::default();
        for name in plugins {
            let started = Instant::now();
            let limits = self.config.plugin_limits(name);
            let (verdict, reason, made) = match self.plugins.get(name) {
                None => (
                    PluginVerdict::Failed,
                    Some(format!(
                        "plugin {name:?} was removed while the event was routed"
                    )),
                    vec![],
                ),
                Some(plugin) => {
                    let mut report = self.plugins.call(plugin, event.clone()).await;
                    ran.guards.extend(report.kv_guard.take());
                    ran.txns.push(PluginTxn {
                        plugin: name.clone(),
                        max_keys: limits.max_kv_keys,
                        // A failed call commits no writes, but what it read
                        // is still checked: its failure may have come from
                        // a value another event was changing.
                        txn: match &report.result {
                            Ok(_) => report.txn,
                            Err(_) => KvTxn {
                                reads: report.txn.reads,
                                ..KvTxn::default()
                            },
                        },
                    });
                    match report.result {
                        // Shutting down: the event keeps its mark and is
                        // routed (every plugin again) after the restart.
                        Err(CallError::ShuttingDown) => return None,
                        Ok(PluginOutcome::Drop(reason)) => {
                            (PluginVerdict::Drop, Some(cap_text(reason)), vec![])
                        }
                        Ok(PluginOutcome::Deliver(list)) => {
                            match self.deliveries_from_plugin(event, name, &limits, list, now) {
                                Ok(made) => (PluginVerdict::Deliver, None, made),
                                Err(reason) => (PluginVerdict::Failed, Some(reason), vec![]),
                            }
                        }
                        Err(e) => (PluginVerdict::Failed, Some(cap_text(e.to_string())), vec![]),
                    }
                }
            };
            let elapsed = started.elapsed();
            match verdict {
                PluginVerdict::Failed => {
                    tracing::warn!(event = %event.id, plugin = %name, reason = reason.as_deref().unwrap_or(""), "plugin failed")
                }
                PluginVerdict::Drop => {
                    tracing::debug!(event = %event.id, plugin = %name, reason = reason.as_deref().unwrap_or(""), "plugin dropped event")
                }
                PluginVerdict::Deliver => {
                    tracing::debug!(event = %event.id, plugin = %name, deliveries = made.len(), "plugin routed event")
                }
            }
            ran.results.push(PluginResult {
                plugin: name.clone(),
                result: verdict,
                reason,
                deliveries: made.len(),
                duration_us: elapsed.as_micros() as u64,
            });
            ran.deliveries.extend(made);
        }
        Some(ran)
    }

    /// Turns a plugin's requested deliveries into records. A request for a
    /// target that is not configured, or an answer past the plugin's
    /// bounds (how many deliveries, how many bytes), fails the plugin's
    /// result as a whole: a typo or a runaway plugin is loud rather than a
    /// silent partial delivery, and one event cannot make the host build
    /// and store an unbounded outcome.
    fn deliveries_from_plugin(
        &self,
        event: &Event,
        plugin: &str,
        limits: &PluginLimits,
        list: Vec<crate::plugin::PluginDelivery>,
        now: u64,
    ) -> Result<Vec<Delivery>, String> {
        if list.len() > limits.max_deliveries {
            return Err(format!(
                "plugin asked for {} deliveries for one event; the limit is {} (plugins.{plugin}.max_deliveries)",
                list.len(),
                limits.max_deliveries
            ));
        }
        let size: usize = list
            .iter()
            .map(|d| {
                d.target.len()
                    + d.headers
                        .iter()
                        .map(|(k, v)| k.len() + v.len())
                        .sum::<usize>()
                    + d.body.as_ref().map_or(0, Vec::len)
            })
            .sum();
        if size > limits.max_outcome_bytes {
            return Err(format!(
                "plugin's deliveries for one event add up to {size} bytes; the limit is {} (plugins.{plugin}.max_outcome_size)",
                limits.max_outcome_bytes
            ));
        }
        let mut out = Vec::with_capacity(list.len());
        for d in list {
            if !self.config.targets.contains_key(&d.target) {
                return Err(format!(
                    "plugin asked for target {:?}, which is not configured",
                    cap_text(d.target)
                ));
            }
            let (headers, refused) = headers::screen(d.headers);
            if !refused.is_empty() {
                tracing::warn!(event = %event.id, plugin = %plugin, refused = ?refused, "plugin set headers hookyard does not send");
            }
            let mut delivery = new_delivery(
                event,
                &d.target,
                format!("plugin:{plugin}"),
                headers,
                d.body,
                now,
            );
            delivery.refused_headers = refused;
            out.push(delivery);
        }
        Ok(out)
    }
}

/// One run of an event's plugins, before it is committed.
#[derive(Default)]
struct Ran {
    results: Vec<PluginResult>,
    deliveries: Vec<Delivery>,
    txns: Vec<PluginTxn>,
    /// KV locks of plugins whose calls wrote, let go once the commit is
    /// submitted.
    guards: Vec<KvGuard>,
}

impl Ran {
    fn outcome(&self) -> Outcome {
        let status = if self
            .results
            .iter()
            .any(|r| r.result == PluginVerdict::Failed)
        {
            EventStatus::Failed
        } else if !self.deliveries.is_empty() {
            EventStatus::Routed
        } else {
            EventStatus::Dropped
        };
        Outcome {
            status,
            routed_at: now_ms(),
            plugins: self.results.clone(),
            deliveries: self.deliveries.iter().map(|d| d.id.clone()).collect(),
        }
    }
}

/// Runs of an event's plugins when what they read keeps changing before
/// their writes commit. Each run reads fresh state, and only calls running
/// at the same time can conflict, so even a single hot counter commits
/// within a few tries; this bounds the pathological case.
const MAX_KV_TRIES: u32 = 10;

/// Longest plugin-given text (drop reason, error) kept with an outcome and
/// logged: a plugin can return megabytes, an operator reads a line.
const MAX_REASON: usize = 4096;

/// `text` cut to [`MAX_REASON`] bytes (on a character boundary), with a
/// marker saying how much was cut.
pub fn cap_text(text: String) -> String {
    if text.len() <= MAX_REASON {
        return text;
    }
    let mut end = MAX_REASON;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [{} more bytes cut]", &text[..end], text.len() - end)
}

fn new_delivery(
    event: &Event,
    target: &str,
    origin: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    now: u64,
) -> Delivery {
    Delivery {
        refused_headers: Vec::new(),
        id: new_id("msg"),
        event_id: event.id.clone(),
        target: target.to_string(),
        origin,
        headers,
        created_at: now,
        status: DeliveryStatus::Scheduled,
        attempts: 0,
        next_attempt_at: Some(now),
        last_error: None,
        body,
    }
}
