//! Telemetry: what happened, logged and counted in one place.
//!
//! A stage reports what happened as one typed event
//! (`telemetry.emit(AttemptFinished { target, result, latency })`) and says
//! nothing about metric names, labels or log levels; the event's
//! [`InternalEvent::record`] decides what it logs and which counters it
//! moves. So a count cannot drift from its log line, a label that is a
//! closed set is an enum ([`labels`]) rather than a string each call site
//! spells, and the counts the admin API shows ([`Telemetry::source_counts`],
//! [`Telemetry::plugin_stats`]) are read from the same counters `/metrics`
//! serves: there is one counting system.
//!
//! This module sits below every stage and imports none of them (source,
//! store, routing, plugin, delivery, admin): they import it. Values only a
//! component knows at scrape time (queue depths, target state, plugins
//! serving, the store's size) are handed in as closures when the server is
//! wired ([`scrape`]), so the dependency still points one way.
//!
//! Modelled on Vector's `internal_events`; the registry and the OpenMetrics
//! text format are the `prometheus-client` crate's.

mod events;
mod families;
pub mod labels;
mod latency;
pub mod live;
pub mod scrape;
pub mod throttle;
mod views;

use prometheus_client::registry::Registry;

pub use events::*;
pub use labels::{
    AttemptResult, DeliveryEnd, HandshakeProvider, RejectReason, ReloadTrigger, ReplayKind,
    RouteResult, SweptKind, TargetState,
};
pub use latency::LatencyView;
pub use scrape::{PluginUp, TargetGauges};
pub use views::PluginStats;

use families::Families;
use scrape::Scraped;

/// What `GET /metrics` answers with: the OpenMetrics text format, which is
/// what `prometheus-client` writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Something a stage reports, in the stage's own terms. ("Internal", as in
/// Vector, to keep it apart from the webhook events hookyard routes.)
pub trait InternalEvent {
    /// What the dashboard's live feed shows of it, if anything; asked
    /// only while someone listens.
    fn live(&self) -> Option<live::Live> {
        None
    }

    /// Logs the event and counts it.
    fn record(self, metrics: &Families);
}

/// The process's metric registry and the counters events move. One per
/// server, shared through an `Arc`; tests make their own.
pub struct Telemetry {
    registry: Registry,
    families: Families,
    scraped: std::sync::Arc<Scraped>,
    live: tokio::sync::broadcast::Sender<live::Live>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    pub fn new() -> Telemetry {
        let mut registry = Registry::default();
        let families = Families::register(&mut registry);
        let scraped = std::sync::Arc::new(Scraped::default());
        registry.register_collector(Box::new(scraped.clone()));
        Telemetry {
            registry,
            families,
            scraped,
            live: tokio::sync::broadcast::channel(live::FEED_CAPACITY).0,
        }
    }

    /// Logs and counts `event`, and tells the live feed's listeners.
    pub fn emit(&self, event: impl InternalEvent) {
        if self.live.receiver_count() > 0
            && let Some(l) = event.live()
        {
            let _ = self.live.send(l);
        }
        event.record(&self.families);
    }

    /// The live feed (see [`live`]).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<live::Live> {
        self.live.subscribe()
    }

    /// Running totals since start (see [`live::Totals`]).
    pub fn totals(&self) -> live::TotalsView {
        self.families.totals.view()
    }

    /// The body of `GET /metrics`. Runs the scrape-time closures, which may
    /// take locks and read the disk: call it off the async runtime.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail; an encoder error would be a bug
        // in a collector, and a partial scrape is better than none.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Where the scrape-time values come from; set once at wiring time.
    pub fn scrape(&self) -> &Scraped {
        &self.scraped
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn lines_of<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
        text.lines().filter(|l| l.starts_with(prefix)).collect()
    }

    #[test]
    fn events_render_as_openmetrics() {
        let t = Telemetry::new();
        t.emit(RequestRejected {
            source: "gh",
            reason: RejectReason::SignatureMismatch,
            client: "127.0.0.1",
            message: "no",
        });
        t.emit(AttemptFinished {
            target: "t",
            result: AttemptResult::Timeout,
            latency: Duration::from_millis(1),
        });
        let text = t.render();
        assert!(text.ends_with("\n# EOF\n"), "{text}");
        assert_eq!(
            lines_of(&text, "hookyard_requests_rejected"),
            ["hookyard_requests_rejected_total{source=\"gh\",reason=\"signature_mismatch\"} 1"]
        );
        assert_eq!(
            lines_of(&text, "# TYPE hookyard_requests_rejected "),
            ["# TYPE hookyard_requests_rejected counter"]
        );
        assert_eq!(
            lines_of(&text, "hookyard_requests_received"),
            ["hookyard_requests_received_total{source=\"gh\"} 1"]
        );
        assert_eq!(
            lines_of(&text, "hookyard_delivery_attempts"),
            ["hookyard_delivery_attempts_total{target=\"t\",result=\"timeout\"} 1"]
        );
        // Bounds are inclusive: 1 ms is in the 0.001 bucket.
        let buckets = lines_of(&text, "hookyard_delivery_attempt_duration_seconds_bucket");
        assert_eq!(buckets.len(), 16, "{buckets:?}");
        assert_eq!(
            buckets[0],
            "hookyard_delivery_attempt_duration_seconds_bucket{le=\"0.0005\",target=\"t\"} 0"
        );
        assert_eq!(
            buckets[1],
            "hookyard_delivery_attempt_duration_seconds_bucket{le=\"0.001\",target=\"t\"} 1"
        );
        assert_eq!(
            lines_of(&text, "# UNIT "),
            [
                "# UNIT hookyard_plugin_call_duration_seconds seconds",
                "# UNIT hookyard_delivery_attempt_duration_seconds seconds",
                "# UNIT hookyard_store_size_bytes bytes",
            ]
        );
    }

    #[test]
    fn every_family_shows_before_anything_happened() {
        let text = Telemetry::new().render();
        let families = lines_of(&text, "# TYPE ");
        assert_eq!(families.len(), 32, "{text}");
        // Only the label-less gauges have samples.
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        let (stamp, samples): (Vec<&str>, Vec<&str>) = samples
            .into_iter()
            .partition(|l| l.starts_with("hookyard_config_last_reload_success_timestamp_seconds "));
        assert_eq!(
            samples,
            [
                "hookyard_config_last_reload_successful 1",
                "hookyard_events_waiting 0",
                "hookyard_store_size_bytes 0",
                "hookyard_ready 0"
            ]
        );
        // The config a router starts with counts as loaded now.
        let at: i64 = stamp[0].rsplit(' ').next().unwrap().parse().unwrap();
        assert!(at > 1_700_000_000, "{}", stamp[0]);
    }

    #[test]
    fn plugin_calls_histogram_matches_the_admin_view() {
        let t = Telemetry::new();
        t.emit(PluginKnown { plugin: "p" });
        assert_eq!(t.plugin_stats("p").calls, 0);
        assert!(
            t.render()
                .contains("hookyard_plugin_calls_total{plugin=\"p\"} 0\n")
        );
        for (us, failed) in [(10, false), (10, false), (700, true)] {
            t.emit(PluginCalled {
                plugin: "p",
                took: Duration::from_micros(us),
                failed,
                fresh_instance: us > 100,
                log_lines_cut: 0,
            });
        }
        t.emit(KvConflict { plugin: "p" });
        let s = t.plugin_stats("p");
        assert_eq!(
            (s.calls, s.errors, s.fresh_instances, s.kv_conflicts),
            (3, 1, 1, 1)
        );
        assert_eq!((s.latency_us.p50, s.latency_us.max), (16, 700));
        assert_eq!(s.latency_us.mean, 240);
        let text = t.render();
        for line in [
            "hookyard_plugin_call_duration_seconds_count{plugin=\"p\"} 3",
            "hookyard_plugin_call_duration_seconds_bucket{le=\"0.0005\",plugin=\"p\"} 2",
            "hookyard_plugin_call_duration_seconds_bucket{le=\"0.001\",plugin=\"p\"} 3",
            "hookyard_plugin_call_duration_seconds_bucket{le=\"+Inf\",plugin=\"p\"} 3",
            "hookyard_plugin_calls_total{plugin=\"p\"} 3",
            "hookyard_plugin_call_errors_total{plugin=\"p\"} 1",
        ] {
            assert!(text.contains(&format!("{line}\n")), "{line} in\n{text}");
        }
    }

    #[test]
    fn source_counts_are_the_request_counters() {
        let t = Telemetry::new();
        t.emit(RequestAccepted {
            source: "s",
            event: "evt_1",
            bytes: 1,
            trace_id: None,
        });
        t.emit(RequestDuplicate {
            source: "s",
            original: "evt_1",
        });
        t.emit(RequestRejected {
            source: "s",
            reason: RejectReason::RateLimited,
            client: "unknown",
            message: "slow down",
        });
        let counts = t.source_counts("s");
        assert_eq!(
            counts.into_iter().collect::<Vec<_>>(),
            [("accepted", 1), ("duplicate", 1), ("rate_limited", 1)]
        );
        assert!(t.source_counts("other").is_empty());
    }

    #[test]
    fn scrape_time_values_come_from_the_closures() {
        let t = Telemetry::new();
        t.scrape().targets(|| {
            vec![TargetGauges {
                target: "t".into(),
                scheduled: 3,
                dead: 1,
                in_flight: 2,
                state: TargetState::HalfOpen,
            }]
        });
        t.scrape().plugins(|| {
            vec![PluginUp {
                plugin: "p".into(),
                up: true,
            }]
        });
        t.scrape().store_size(|| 4096);
        let text = t.render();
        for line in [
            "hookyard_deliveries_scheduled{target=\"t\"} 3",
            "hookyard_deliveries_dead{target=\"t\"} 1",
            "hookyard_deliveries_in_flight{target=\"t\"} 2",
            "hookyard_target_state{target=\"t\",state=\"closed\"} 0",
            "hookyard_target_state{target=\"t\",state=\"half_open\"} 1",
            "hookyard_plugin_up{plugin=\"p\"} 1",
            "hookyard_store_size_bytes 4096",
        ] {
            assert!(text.contains(&format!("{line}\n")), "{line} in\n{text}");
        }
    }
}
