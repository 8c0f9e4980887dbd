//! The metric families events count into, and their registration. Names
//! and help texts are the contract in docs/admin-api.md; counters are
//! registered without `_total`, which the OpenMetrics encoder adds.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry, Unit};

use super::labels::{
    AttemptLabels, DeliveryLabels, HandshakeLabels, PluginLabel, PluginResultLabels, RejectLabels,
    ReloadLabel, ReplayLabel, ResultLabel, SourceLabel, SweptLabel, TargetLabel,
};
use super::latency::Latency;

type Counters<L> = Family<L, Counter>;

/// Every family whose counts live in this process. Cloning a family shares
/// its series, so the registry and this struct hold the same counters.
pub struct Families {
    pub(super) requests_received: Counters<SourceLabel>,
    pub(super) requests_accepted: Counters<SourceLabel>,
    pub(super) requests_duplicate: Counters<SourceLabel>,
    pub(super) requests_rejected: Counters<RejectLabels>,
    pub(super) handshakes: Counters<HandshakeLabels>,
    pub(super) events: Counters<ResultLabel>,
    pub(super) plugin_events: Counters<PluginResultLabels>,
    pub(super) plugin_call_seconds: Family<PluginLabel, Latency>,
    pub(super) plugin_calls: Counters<PluginLabel>,
    pub(super) plugin_call_errors: Counters<PluginLabel>,
    pub(super) plugin_fresh_instances: Counters<PluginLabel>,
    pub(super) plugin_load_failures: Counters<PluginLabel>,
    pub(super) plugin_log_lines_cut: Counters<PluginLabel>,
    pub(super) plugin_kv_conflicts: Counters<PluginLabel>,
    pub(super) attempts: Counters<AttemptLabels>,
    pub(super) attempt_seconds: Family<TargetLabel, Latency>,
    pub(super) deliveries: Counters<DeliveryLabels>,
    pub(super) dispatcher_restarts: Counters<TargetLabel>,
    pub(super) replays: Counters<ReplayLabel>,
    pub(super) swept: Counters<SweptLabel>,
    pub(super) config_reloads: Counters<ReloadLabel>,
    pub(super) config_reload_ok: Gauge,
    pub(super) config_reload_ok_at: Gauge,
    /// Not exported: the dashboard's running totals.
    pub(super) totals: super::live::Totals,
}

fn add(r: &mut Registry, name: &str, help: &str, family: impl Metric) {
    r.register(name, help, Always(family));
}

impl Families {
    pub(super) fn register(r: &mut Registry) -> Families {
        let f = Families {
            requests_received: Family::default(),
            requests_accepted: Family::default(),
            requests_duplicate: Family::default(),
            requests_rejected: Family::default(),
            handshakes: Family::default(),
            events: Family::default(),
            plugin_events: Family::default(),
            plugin_call_seconds: Family::default(),
            plugin_calls: Family::default(),
            plugin_call_errors: Family::default(),
            plugin_fresh_instances: Family::default(),
            plugin_load_failures: Family::default(),
            plugin_log_lines_cut: Family::default(),
            plugin_kv_conflicts: Family::default(),
            attempts: Family::default(),
            attempt_seconds: Family::default(),
            deliveries: Family::default(),
            dispatcher_restarts: Family::default(),
            replays: Family::default(),
            swept: Family::default(),
            config_reloads: Family::default(),
            // The config a router starts with is a successful load.
            config_reload_ok: {
                let g = Gauge::default();
                g.set(1);
                g
            },
            config_reload_ok_at: {
                let g = Gauge::default();
                g.set(unix_seconds());
                g
            },
            totals: Default::default(),
        };
        add(
            r,
            "hookyard_requests_received",
            "Webhook requests per source (accepted, duplicate or rejected)",
            f.requests_received.clone(),
        );
        add(
            r,
            "hookyard_requests_accepted",
            "Webhook requests stored as new events, per source",
            f.requests_accepted.clone(),
        );
        add(
            r,
            "hookyard_requests_duplicate",
            "Webhook requests answered as duplicates of a stored event, per source",
            f.requests_duplicate.clone(),
        );
        add(
            r,
            "hookyard_requests_rejected",
            "Webhook requests rejected, per source and reason",
            f.requests_rejected.clone(),
        );
        add(
            r,
            "hookyard_handshakes",
            "Provider handshakes (endpoint challenges) answered, per source and provider; not stored as events",
            f.handshakes.clone(),
        );
        add(
            r,
            "hookyard_events",
            "Events routed, by outcome (routed, dropped, failed)",
            f.events.clone(),
        );
        add(
            r,
            "hookyard_plugin_events",
            "Plugin decisions per plugin: routed (asked for deliveries), dropped, failed",
            f.plugin_events.clone(),
        );
        add(
            r,
            "hookyard_plugin_calls",
            "Plugin calls, successful or not",
            f.plugin_calls.clone(),
        );
        add(
            r,
            "hookyard_plugin_call_errors",
            "Plugin calls that returned an error, trapped, timed out or ran out of memory",
            f.plugin_call_errors.clone(),
        );
        add(
            r,
            "hookyard_plugin_fresh_instances",
            "Plugin calls that had to instantiate the plugin (no warm instance was free)",
            f.plugin_fresh_instances.clone(),
        );
        add(
            r,
            "hookyard_plugin_log_lines_cut",
            "Plugin log lines past the per-call limit, counted and not written",
            f.plugin_log_lines_cut.clone(),
        );
        add(
            r,
            "hookyard_plugin_kv_conflicts",
            "Plugin runs repeated because a KV key they read changed before their writes committed",
            f.plugin_kv_conflicts.clone(),
        );
        add(
            r,
            "hookyard_plugin_load_failures",
            "Plugin files that failed to compile or link",
            f.plugin_load_failures.clone(),
        );
        add(
            r,
            "hookyard_deliveries",
            "Deliveries that reached a final state per target: delivered or dead",
            f.deliveries.clone(),
        );
        add(
            r,
            "hookyard_delivery_attempts",
            "Delivery attempts per target by result (success, http_error, timeout, \
             connect_error, refused, request_error, undeliverable)",
            f.attempts.clone(),
        );
        add(
            r,
            "hookyard_replays",
            "Operator actions: events replayed, deliveries retried",
            f.replays.clone(),
        );
        add(
            r,
            "hookyard_retention_swept",
            "Records removed by the retention sweep, by kind",
            f.swept.clone(),
        );
        add(
            r,
            "hookyard_dispatcher_restarts",
            "Times a target's dispatcher task panicked and was restarted",
            f.dispatcher_restarts.clone(),
        );
        add(
            r,
            "hookyard_config_reloads",
            "Config reloads asked for (SIGHUP, `hookyard reload`, the admin API, a file change), by result",
            f.config_reloads.clone(),
        );
        r.register(
            "hookyard_config_last_reload_successful",
            "1 if the last config reload was applied (or none was asked for), 0 if it was refused",
            f.config_reload_ok.clone(),
        );
        r.register(
            "hookyard_config_last_reload_success_timestamp_seconds",
            "When the serving config was loaded (unix seconds)",
            f.config_reload_ok_at.clone(),
        );
        r.register_with_unit(
            "hookyard_plugin_call_duration",
            "Time of one plugin call, instance acquisition included",
            Unit::Seconds,
            Always(f.plugin_call_seconds.clone()),
        );
        r.register_with_unit(
            "hookyard_delivery_attempt_duration",
            "Time from sending a delivery to the target's answer (or failure)",
            Unit::Seconds,
            Always(f.attempt_seconds.clone()),
        );
        f
    }
}

/// A family that is exposed even before its first series: dashboards and
/// alerts can tell "nothing happened" from "not exported", and the docs'
/// table of families can be checked against any scrape.
/// (`prometheus-client` leaves out families without series.)
#[derive(Debug)]
struct Always<M>(M);

impl<M: EncodeMetric> EncodeMetric for Always<M> {
    fn encode(&self, encoder: MetricEncoder) -> std::fmt::Result {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }
}

pub(super) fn unix_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
