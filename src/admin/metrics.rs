//! hookyard's metrics: what is counted where it happens (routing results,
//! attempts, retention), and what other components already keep (ingest
//! counts, plugin statistics, queue depths, target state) read at scrape
//! time. Rendered by `GET /metrics` in the Prometheus text format.

use std::sync::Arc;
use std::time::Duration;

use super::prom::{CounterVec, HistogramVec, LATENCY_BUCKETS, Registry};
use crate::delivery::Dispatcher;
use crate::model::records::DeliveryStatus;
use crate::plugin::Plugins;
use crate::routing::Router;
use crate::source::rejections::IngestLog;
use crate::store::Upkeep;

/// The counters and histograms updated on the hot paths.
pub struct Metrics {
    registry: Registry,
    events: CounterVec,
    plugin_events: CounterVec,
    plugin_seconds: HistogramVec,
    deliveries: CounterVec,
    attempts: CounterVec,
    attempt_seconds: HistogramVec,
    replays: CounterVec,
    swept: CounterVec,
    dispatcher_restarts: CounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        Metrics {
            events: r.counter(
                "hookyard_events_total",
                "Events routed, by outcome (routed, dropped, failed).",
                &["result"],
            ),
            plugin_events: r.counter(
                "hookyard_plugin_events_total",
                "Plugin decisions per plugin: routed (asked for deliveries), dropped, failed.",
                &["plugin", "result"],
            ),
            plugin_seconds: r.histogram(
                "hookyard_plugin_call_duration_seconds",
                "Time of one plugin call, instance acquisition included.",
                &["plugin"],
                LATENCY_BUCKETS,
            ),
            deliveries: r.counter(
                "hookyard_deliveries_total",
                "Deliveries that reached a final state per target: delivered or dead.",
                &["target", "result"],
            ),
            attempts: r.counter(
                "hookyard_delivery_attempts_total",
                "Delivery attempts per target by result (success, http_error, timeout, connect_error, refused, request_error, undeliverable).",
                &["target", "result"],
            ),
            attempt_seconds: r.histogram(
                "hookyard_delivery_attempt_duration_seconds",
                "Time from sending a delivery to the target's answer (or failure).",
                &["target"],
                LATENCY_BUCKETS,
            ),
            replays: r.counter(
                "hookyard_replays_total",
                "Operator actions: events replayed, deliveries retried.",
                &["kind"],
            ),
            swept: r.counter(
                "hookyard_retention_swept_total",
                "Records removed by the retention sweep, by kind.",
                &["kind"],
            ),
            dispatcher_restarts: r.counter(
                "hookyard_dispatcher_restarts_total",
                "Times a target's dispatcher task panicked and was restarted.",
                &["target"],
            ),
            registry: r,
        }
    }

    pub fn event(&self, result: &str) {
        self.events.inc(&[result]);
    }

    pub fn plugin_result(&self, plugin: &str, result: &str, took: Duration) {
        self.plugin_events.inc(&[plugin, result]);
        self.plugin_seconds.observe(&[plugin], took.as_secs_f64());
    }

    pub fn attempt(&self, target: &str, result: &str, took: Duration) {
        self.attempts.inc(&[target, result]);
        self.attempt_seconds.observe(&[target], took.as_secs_f64());
    }

    pub fn finished(&self, target: &str, status: DeliveryStatus) {
        let result = match status {
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
            DeliveryStatus::Scheduled => return,
        };
        self.deliveries.inc(&[target, result]);
    }

    pub fn replayed(&self, kind: &str, n: usize) {
        self.replays.add(&[kind], n as u64);
    }

    pub fn dispatcher_restarted(&self, target: &str) {
        self.dispatcher_restarts.inc(&[target]);
    }

    pub fn swept(&self, kind: &str, n: usize) {
        if n > 0 {
            self.swept.add(&[kind], n as u64);
        }
    }

    /// Adds the families read at scrape time from the components that keep
    /// them. Called once, after those components exist.
    pub fn collect_from(
        &self,
        ingest: Arc<IngestLog>,
        plugins: Arc<Plugins>,
        router: Arc<Router>,
        dispatcher: Arc<Dispatcher>,
        store: Arc<dyn Upkeep>,
    ) {
        let r = &self.registry;
        let counts = {
            let ingest = ingest.clone();
            move |pick: fn(&str) -> Option<&str>| {
                let mut out = Vec::new();
                for (source, by) in ingest.counts() {
                    for (result, n) in by {
                        if let Some(label) = pick(&result) {
                            let mut labels = vec![source.clone()];
                            if !label.is_empty() {
                                labels.push(label.to_string());
                            }
                            out.push((labels, n));
                        }
                    }
                }
                out
            }
        };
        let c = counts.clone();
        r.counter_fn(
            "hookyard_requests_received_total",
            "Webhook requests per source (accepted, duplicate or rejected).",
            &["source"],
            move || {
                let mut sum = std::collections::BTreeMap::<Vec<String>, u64>::new();
                for (labels, n) in c(|_| Some("")) {
                    *sum.entry(labels).or_default() += n;
                }
                sum.into_iter().collect()
            },
        );
        let c = counts.clone();
        r.counter_fn(
            "hookyard_requests_accepted_total",
            "Webhook requests stored as new events, per source.",
            &["source"],
            move || c(|res| (res == "accepted").then_some("")),
        );
        let c = counts.clone();
        r.counter_fn(
            "hookyard_requests_duplicate_total",
            "Webhook requests answered as duplicates of a stored event, per source.",
            &["source"],
            move || c(|res| (res == "duplicate").then_some("")),
        );
        let c = counts;
        r.counter_fn(
            "hookyard_requests_rejected_total",
            "Webhook requests rejected, per source and reason.",
            &["source", "reason"],
            move || c(|res| (res != "accepted" && res != "duplicate").then_some(res)),
        );

        let p = plugins.clone();
        r.gauge_fn(
            "hookyard_plugin_up",
            "1 if a version of the plugin is serving.",
            &["plugin"],
            move || {
                p.statuses()
                    .into_iter()
                    .map(|s| {
                        (
                            vec![s.name.clone()],
                            f64::from(u8::from(s.serving.is_some())),
                        )
                    })
                    .collect()
            },
        );
        let p = plugins.clone();
        r.counter_fn(
            "hookyard_plugin_calls_total",
            "Plugin calls, successful or not.",
            &["plugin"],
            move || {
                p.statuses()
                    .into_iter()
                    .map(|s| (vec![s.name.clone()], s.stats.calls))
                    .collect()
            },
        );
        let p = plugins.clone();
        r.counter_fn(
            "hookyard_plugin_call_errors_total",
            "Plugin calls that returned an error, trapped, timed out or ran out of memory.",
            &["plugin"],
            move || {
                p.statuses()
                    .into_iter()
                    .map(|s| (vec![s.name.clone()], s.stats.errors))
                    .collect()
            },
        );
        let p = plugins.clone();
        r.counter_fn(
            "hookyard_plugin_log_lines_cut_total",
            "Plugin log lines past the per-call limit, counted and not written.",
            &["plugin"],
            move || {
                p.statuses()
                    .into_iter()
                    .map(|s| (vec![s.name.clone()], s.stats.log_lines_cut))
                    .collect()
            },
        );
        let p = plugins.clone();
        r.counter_fn(
            "hookyard_plugin_kv_conflicts_total",
            "Plugin runs repeated because a KV key they read changed before their writes committed.",
            &["plugin"],
            move || {
                p.statuses()
                    .into_iter()
                    .map(|s| (vec![s.name.clone()], s.stats.kv_conflicts))
                    .collect()
            },
        );
        let p = plugins;
        r.counter_fn(
            "hookyard_plugin_load_failures_total",
            "Plugin files that failed to compile or link.",
            &["plugin"],
            move || {
                p.statuses()
                    .into_iter()
                    .map(|s| (vec![s.name.clone()], s.stats.load_failures))
                    .collect()
            },
        );
        r.gauge_fn(
            "hookyard_events_waiting",
            "Events waiting for a plugin that is not loaded.",
            &[],
            move || vec![(vec![], router.waiting_count() as f64)],
        );

        let d = dispatcher.clone();
        r.gauge_fn(
            "hookyard_deliveries_scheduled",
            "Deliveries waiting for an attempt (the delivery queue), per target.",
            &["target"],
            move || {
                d.targets()
                    .map(|t| (vec![t.name.clone()], t.scheduled() as f64))
                    .collect()
            },
        );
        let d = dispatcher.clone();
        r.gauge_fn(
            "hookyard_deliveries_dead",
            "Dead deliveries (the dead-letter queue), per target.",
            &["target"],
            move || {
                d.targets()
                    .map(|t| (vec![t.name.clone()], t.dead() as f64))
                    .collect()
            },
        );
        let d = dispatcher.clone();
        r.gauge_fn(
            "hookyard_deliveries_in_flight",
            "Delivery attempts in flight, per target.",
            &["target"],
            move || {
                d.targets()
                    .map(|t| (vec![t.name.clone()], t.in_flight() as f64))
                    .collect()
            },
        );
        let d = dispatcher;
        r.gauge_fn(
            "hookyard_target_state",
            "1 for the target's current state: closed, open, half_open, paused or disabled.",
            &["target", "state"],
            move || {
                let mut out = Vec::new();
                for t in d.targets() {
                    let current = t.state_label();
                    for state in ["closed", "open", "half_open", "paused", "disabled"] {
                        out.push((
                            vec![t.name.clone(), state.to_string()],
                            f64::from(u8::from(state == current)),
                        ));
                    }
                }
                out
            },
        );
        r.gauge_fn(
            "hookyard_store_size_bytes",
            "Bytes the sled store occupies on disk.",
            &[],
            move || vec![(vec![], store.size_on_disk() as f64)],
        );
    }

    pub fn render(&self) -> String {
        self.registry.render()
    }
}
