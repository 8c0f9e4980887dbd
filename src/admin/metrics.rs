//! `GET /metrics` in the Prometheus text format.

use std::fmt::Write as _;

use crate::plugin::Plugins;
use crate::source::rejections::IngestLog;

/// Escapes a label value per the exposition format.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders every metric.
pub fn render(plugins: &Plugins, ingest: &IngestLog) -> String {
    let statuses = plugins.statuses();
    let mut out = String::new();
    let mut family = |name: &str,
                      kind: &str,
                      help: &str,
                      value: &dyn Fn(&crate::plugin::PluginStatus) -> String| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for s in &statuses {
            let _ = writeln!(out, "{name}{{plugin=\"{}\"}} {}", label(&s.name), value(s));
        }
    };
    family(
        "hookyard_plugin_up",
        "gauge",
        "1 if a version of the plugin is serving.",
        &|s| u8::from(s.serving.is_some()).to_string(),
    );
    family(
        "hookyard_plugin_calls_total",
        "counter",
        "Plugin calls, successful or not.",
        &|s| s.stats.calls.to_string(),
    );
    family(
        "hookyard_plugin_call_errors_total",
        "counter",
        "Plugin calls that returned an error, trapped, timed out or ran out of memory.",
        &|s| s.stats.errors.to_string(),
    );
    family(
        "hookyard_plugin_load_failures_total",
        "counter",
        "Plugin files that failed to compile or link.",
        &|s| s.stats.load_failures.to_string(),
    );
    family(
        "hookyard_plugin_call_duration_seconds_max",
        "gauge",
        "Slowest plugin call so far.",
        &|s| format!("{}", s.stats.latency_us.max as f64 / 1e6),
    );
    let counts = ingest.counts();
    let _ = writeln!(
        out,
        "# HELP hookyard_requests_total Webhook requests per source by result (accepted, duplicate, or the rejection reason)."
    );
    let _ = writeln!(out, "# TYPE hookyard_requests_total counter");
    for (source, by) in &counts {
        for (result, n) in by {
            let _ = writeln!(
                out,
                "hookyard_requests_total{{source=\"{}\",result=\"{}\"}} {n}",
                label(source),
                label(result)
            );
        }
    }
    out
}
