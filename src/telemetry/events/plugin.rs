//! What the plugin host did: calls and loads.

use std::time::Duration;

use crate::telemetry::InternalEvent;
use crate::telemetry::families::Families;
use crate::telemetry::labels::PluginLabel;

/// A plugin name became known (a file in the plugin directory, or a source
/// naming it): its per-plugin counters are exposed from now on, at 0 until
/// something happens, so a plugin that was never called still shows.
pub struct PluginKnown<'a> {
    pub plugin: &'a str,
}

impl InternalEvent for PluginKnown<'_> {
    fn record(self, m: &Families) {
        let label = PluginLabel {
            plugin: self.plugin.to_string(),
        };
        for family in [
            &m.plugin_calls,
            &m.plugin_call_errors,
            &m.plugin_fresh_instances,
            &m.plugin_load_failures,
            &m.plugin_log_lines_cut,
            &m.plugin_kv_conflicts,
        ] {
            drop(family.get_or_create(&label));
        }
    }
}

/// One call of a plugin, successful or not.
pub struct PluginCalled<'a> {
    pub plugin: &'a str,
    /// Instance acquisition included.
    pub took: Duration,
    /// It returned an error, trapped, timed out or ran out of memory.
    pub failed: bool,
    /// No warm instance was free: one was created for the call.
    pub fresh_instance: bool,
    /// Log lines past the call's log budget, not written.
    pub log_lines_cut: u64,
}

impl InternalEvent for PluginCalled<'_> {
    fn record(self, m: &Families) {
        let label = PluginLabel {
            plugin: self.plugin.to_string(),
        };
        m.plugin_calls.get_or_create(&label).inc();
        if self.failed {
            m.plugin_call_errors.get_or_create(&label).inc();
        }
        if self.fresh_instance {
            m.plugin_fresh_instances.get_or_create(&label).inc();
        }
        if self.log_lines_cut > 0 {
            m.plugin_log_lines_cut
                .get_or_create(&label)
                .inc_by(self.log_lines_cut);
        }
        m.plugin_call_seconds
            .get_or_create(&label)
            .observe(self.took);
    }
}

/// A plugin file failed to compile or link; the last good version, if
/// any, keeps serving.
pub struct PluginLoadFailed<'a> {
    pub plugin: &'a str,
    pub error: &'a str,
    /// The sha256 of the version still serving.
    pub still_serving: Option<&'a str>,
}

impl InternalEvent for PluginLoadFailed<'_> {
    fn record(self, m: &Families) {
        tracing::error!(
            plugin = %self.plugin,
            error = %self.error,
            still_serving = self.still_serving.unwrap_or("nothing"),
            "plugin failed to load; the last good version keeps serving"
        );
        m.plugin_load_failures
            .get_or_create(&PluginLabel {
                plugin: self.plugin.to_string(),
            })
            .inc();
    }
}
