//! The counts the admin API shows, read back from the families `/metrics`
//! serves, so the two can never disagree. Reads use `get`, not
//! `get_or_create`: looking does not create series.

use std::collections::BTreeMap;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Serialize;

use super::Telemetry;
use super::labels::{
    HandshakeLabels, HandshakeProvider, PluginLabel, RejectLabels, RejectReason, SourceLabel,
};
use super::latency::LatencyView;

/// One plugin's call statistics, kept per plugin name, so they survive
/// reloads of the file (the shape of `stats` in `GET /admin/plugins`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PluginStats {
    pub calls: u64,
    pub errors: u64,
    /// Calls that had to instantiate (no warm instance was free).
    pub fresh_instances: u64,
    pub load_failures: u64,
    /// Log lines past the per-call limit, not written.
    pub log_lines_cut: u64,
    /// Calls run again because a KV key they read changed before commit.
    pub kv_conflicts: u64,
    pub latency_us: LatencyView,
}

fn count<L: Clone + std::hash::Hash + Eq>(family: &Family<L, Counter>, labels: &L) -> u64 {
    family.get(labels).map_or(0, |c| c.get())
}

impl Telemetry {
    /// What a source's requests came to: `accepted`, `duplicate`,
    /// `handshakes` and each rejection reason, those that happened at least
    /// once.
    pub fn source_counts(&self, source: &str) -> BTreeMap<&'static str, u64> {
        let f = &self.families;
        let label = SourceLabel {
            source: source.to_string(),
        };
        let mut out = BTreeMap::new();
        out.insert("accepted", count(&f.requests_accepted, &label));
        out.insert("duplicate", count(&f.requests_duplicate, &label));
        // A source answers one provider's handshakes; summed, so the key
        // does not depend on which.
        let handshakes = HandshakeProvider::ALL
            .iter()
            .map(|&provider| {
                let labels = HandshakeLabels {
                    source: source.to_string(),
                    provider,
                };
                count(&f.handshakes, &labels)
            })
            .sum();
        out.insert("handshakes", handshakes);
        for &reason in RejectReason::ALL {
            let labels = RejectLabels {
                source: source.to_string(),
                reason,
            };
            out.insert(reason.as_str(), count(&f.requests_rejected, &labels));
        }
        out.retain(|_, n| *n > 0);
        out
    }

    /// A target's attempt latency, p50 and p99 in milliseconds, once it
    /// has attempts.
    pub fn target_latency(&self, target: &str) -> Option<(f64, f64)> {
        let v = self
            .families
            .attempt_seconds
            .get(&super::labels::TargetLabel {
                target: target.to_string(),
            })?
            .view();
        (v.max > 0).then(|| (v.p50 as f64 / 1000.0, v.p99 as f64 / 1000.0))
    }

    pub fn plugin_stats(&self, plugin: &str) -> PluginStats {
        let f = &self.families;
        let label = PluginLabel {
            plugin: plugin.to_string(),
        };
        PluginStats {
            calls: count(&f.plugin_calls, &label),
            errors: count(&f.plugin_call_errors, &label),
            fresh_instances: count(&f.plugin_fresh_instances, &label),
            load_failures: count(&f.plugin_load_failures, &label),
            log_lines_cut: count(&f.plugin_log_lines_cut, &label),
            kv_conflicts: count(&f.plugin_kv_conflicts, &label),
            latency_us: f
                .plugin_call_seconds
                .get(&label)
                .map(|l| l.view())
                .unwrap_or_default(),
        }
    }
}
