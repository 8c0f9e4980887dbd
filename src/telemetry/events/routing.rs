//! What routing made of events.

use crate::telemetry::InternalEvent;
use crate::telemetry::families::Families;
use crate::telemetry::labels::{PluginLabel, PluginResultLabels, ResultLabel, RouteResult};
use crate::telemetry::live::{Live, Totals};

/// An event's outcome was committed.
pub struct EventRouted<'a> {
    pub event: &'a str,
    pub result: RouteResult,
    /// The W3C trace id the event arrived with.
    pub trace_id: Option<&'a str>,
    pub deliveries: usize,
}

impl InternalEvent for EventRouted<'_> {
    fn live(&self) -> Option<Live> {
        Some(Live::Routed {
            result: self.result,
        })
    }

    fn record(self, m: &Families) {
        Totals::bump(&m.totals.routed);
        tracing::debug!(event = %self.event, result = %self.result, deliveries = self.deliveries, trace_id = self.trace_id, "event routed");
        m.events
            .get_or_create(&ResultLabel {
                result: self.result,
            })
            .inc();
    }
}

/// One plugin's decision for an event, counted once the outcome holding it
/// is committed (runs repeated for a KV conflict are not decisions).
pub struct PluginDecided<'a> {
    pub plugin: &'a str,
    pub result: RouteResult,
}

impl InternalEvent for PluginDecided<'_> {
    fn record(self, m: &Families) {
        m.plugin_events
            .get_or_create(&PluginResultLabels {
                plugin: self.plugin.to_string(),
                result: self.result,
            })
            .inc();
    }
}

/// A routing run's KV writes were refused because a key one of the
/// plugin's calls read changed before they committed.
pub struct KvConflict<'a> {
    pub plugin: &'a str,
}

impl InternalEvent for KvConflict<'_> {
    fn record(self, m: &Families) {
        m.plugin_kv_conflicts
            .get_or_create(&PluginLabel {
                plugin: self.plugin.to_string(),
            })
            .inc();
    }
}
