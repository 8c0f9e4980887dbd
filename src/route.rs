//! Event -> plugins -> deliveries.
//!
//! Routing happens after the 202, off the request path. Each event goes
//! through every plugin its source lists (independently; their deliveries are
//! unioned) plus the source's passthrough targets. The outcome, the
//! deliveries and their first schedule entries are written in one batch that
//! also clears the event's "to route" mark, so a crash either re-routes the
//! event or finds it fully routed, never half.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Result;
use tokio::sync::{Semaphore, mpsc};

use crate::admin::metrics::Metrics;
use crate::config::Config;
use crate::id::{new_id, now_ms};
use crate::plugin::{PluginOutcome, Plugins};
use crate::records::{
    Delivery, DeliveryStatus, Event, EventStatus, Outcome, PluginResult, PluginVerdict,
};
use crate::store::Storage;
use crate::target::Dispatcher;

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
    config: Arc<Config>,
    store: Arc<dyn Storage>,
    plugins: Arc<Plugins>,
    dispatcher: Arc<Dispatcher>,
    metrics: Arc<Metrics>,
    queue: mpsc::UnboundedSender<Arc<Event>>,
    /// Events parked because a plugin of their source is not loaded (its
    /// file was removed or never compiled). They keep their "to route" mark
    /// and are re-queued whenever a plugin starts serving.
    waiting: Mutex<Vec<Arc<Event>>>,
}

impl Router {
    /// Starts the routing loop and queues every event a previous run
    /// accepted but did not finish routing.
    pub fn start(
        config: Arc<Config>,
        store: Arc<dyn Storage>,
        plugins: Arc<Plugins>,
        dispatcher: Arc<Dispatcher>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Router>> {
        let (tx, rx) = mpsc::unbounded_channel();
        let router = Arc::new(Router {
            config,
            store,
            plugins,
            dispatcher,
            metrics,
            queue: tx,
            waiting: Mutex::new(Vec::new()),
        });
        let pending = router.store.events_to_route()?;
        if !pending.is_empty() {
            tracing::info!(
                count = pending.len(),
                "resuming events accepted but not yet routed"
            );
        }
        for id in pending {
            match router.store.event(&id)? {
                Some(e) => router.enqueue(Arc::new(e)),
                None => tracing::warn!(event = %id, "\"to route\" mark without an event; ignored"),
            }
        }
        tokio::spawn(router.clone().run(rx));
        tokio::spawn(router.clone().resume_waiting());
        Ok(router)
    }

    /// Hands a stored event to the routing loop.
    pub fn enqueue(&self, event: Arc<Event>) {
        // The receiver lives as long as the router task; if it is gone the
        // process is shutting down and the mark in the store resumes it.
        let _ = self.queue.send(event);
    }

    /// Routes a stored event again through the source's current plugins
    /// (replay). The "to route" mark is written first, so an accepted
    /// replay survives a crash like a new event does.
    pub fn replay(&self, event_id: &str) -> Result<Replay> {
        let Some(event) = self.store.event(event_id)? else {
            return Ok(Replay::NotFound);
        };
        if !self.store.mark_to_route(event_id)? {
            return Ok(Replay::Pending);
        }
        tracing::info!(event = %event_id, "replaying event");
        self.enqueue(Arc::new(event));
        Ok(Replay::Queued)
    }

    /// Re-queues parked events each time a plugin starts serving; routing
    /// parks them again if what they need is still missing.
    async fn resume_waiting(self: Arc<Self>) {
        let mut changes = self.plugins.subscribe();
        while changes.changed().await.is_ok() {
            self.requeue_waiting();
        }
    }

    fn requeue_waiting(&self) {
        let parked = std::mem::take(&mut *self.waiting.lock().unwrap_or_else(|e| e.into_inner()));
        if !parked.is_empty() {
            tracing::info!(
                count = parked.len(),
                "resuming events that waited for a plugin"
            );
        }
        for e in parked {
            self.enqueue(e);
        }
    }

    /// How many events wait for a missing plugin.
    pub fn waiting_count(&self) -> usize {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    async fn run(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Arc<Event>>) {
        let limit = Arc::new(Semaphore::new(ROUTE_CONCURRENCY));
        while let Some(event) = rx.recv().await {
            let Ok(permit) = limit.clone().acquire_owned().await else {
                return;
            };
            let router = self.clone();
            tokio::spawn(async move {
                let id = event.id.clone();
                if let Err(e) = router.route(event).await {
                    // The "to route" mark stays, so a restart retries it.
                    tracing::error!(event = %id, error = format!("{e:#}"), "routing failed to store its outcome");
                }
                drop(permit);
            });
        }
    }

    /// Runs the source's plugins and stores the outcome and deliveries;
    /// `None` when the event was parked to wait for a missing plugin.
    pub async fn route(&self, event: Arc<Event>) -> Result<Option<Outcome>> {
        let mut results = Vec::new();
        let mut deliveries = Vec::new();
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
                .record_outcome(&event.id, &outcome, &[], now)
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
            self.store.set_route_note(&event.id, &note)?;
            self.waiting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(event);
            // A plugin that started serving since the check would not wake
            // us again: look once more.
            if *self.plugins.subscribe().borrow() != generation {
                self.requeue_waiting();
            }
            return Ok(None);
        }

        for name in &source.plugins {
            let started = Instant::now();
            let (verdict, reason, made) = match self.plugins.get(name) {
                None => (
                    PluginVerdict::Failed,
                    Some(format!(
                        "plugin {name:?} was removed while the event was routed"
                    )),
                    vec![],
                ),
                Some(plugin) => match self.plugins.call(plugin, event.clone()).await.result {
                    Ok(PluginOutcome::Drop(reason)) => (PluginVerdict::Drop, Some(reason), vec![]),
                    Ok(PluginOutcome::Deliver(list)) => {
                        match self.deliveries_from_plugin(&event, name, list, now) {
                            Ok(made) => (PluginVerdict::Deliver, None, made),
                            Err(reason) => (PluginVerdict::Failed, Some(reason), vec![]),
                        }
                    }
                    Err(e) => (PluginVerdict::Failed, Some(e.to_string()), vec![]),
                },
            };
            let elapsed = started.elapsed();
            let label = match verdict {
                PluginVerdict::Deliver => "routed",
                PluginVerdict::Drop => "dropped",
                PluginVerdict::Failed => "failed",
            };
            self.metrics.plugin_result(name, label, elapsed);
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
            results.push(PluginResult {
                plugin: name.clone(),
                result: verdict,
                reason,
                deliveries: made.len(),
                duration_us: elapsed.as_micros() as u64,
            });
            deliveries.extend(made);
        }
        for target in &source.targets {
            deliveries.push(new_delivery(
                &event,
                target,
                "passthrough".into(),
                vec![],
                None,
                now,
            ));
        }

        let status = if results.iter().any(|r| r.result == PluginVerdict::Failed) {
            EventStatus::Failed
        } else if !deliveries.is_empty() {
            EventStatus::Routed
        } else {
            EventStatus::Dropped
        };
        let outcome = Outcome {
            status,
            routed_at: now_ms(),
            plugins: results,
            deliveries: deliveries.iter().map(|d| d.id.clone()).collect(),
        };
        self.store
            .record_outcome(&event.id, &outcome, &deliveries, now)
            .done()
            .await?;
        self.metrics.event(match status {
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

    /// Turns a plugin's requested deliveries into records; a request for a
    /// target that is not configured fails the plugin's result as a whole,
    /// so a typo in a plugin is loud rather than a silent partial delivery.
    fn deliveries_from_plugin(
        &self,
        event: &Event,
        plugin: &str,
        list: Vec<crate::plugin::PluginDelivery>,
        now: u64,
    ) -> Result<Vec<Delivery>, String> {
        let mut out = Vec::with_capacity(list.len());
        for d in list {
            if !self.config.targets.contains_key(&d.target) {
                return Err(format!(
                    "plugin asked for target {:?}, which is not configured",
                    d.target
                ));
            }
            let headers = d
                .headers
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect();
            out.push(new_delivery(
                event,
                &d.target,
                format!("plugin:{plugin}"),
                headers,
                d.body,
                now,
            ));
        }
        Ok(out)
    }
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
