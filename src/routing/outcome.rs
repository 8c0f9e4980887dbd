//! One run of a source's plugins over an event, and what it becomes: the
//! plugin results, the deliveries (bounded per plugin), the KV writes to
//! commit with them.

use std::sync::Arc;
use std::time::Instant;

use super::Router;
use crate::config::{Config, PluginLimits};
use crate::delivery::headers;
use crate::model::id::{DeliveryId, now_ms};
use crate::model::records::{
    Delivery, DeliveryStatus, Event, EventStatus, Origin, Outcome, PluginLog, PluginResult,
    PluginVerdict,
};
use crate::plugin::kv::{KvTxn, PluginTxn};
use crate::plugin::{CallError, PluginOutcome};

impl Router {
    /// One run of the source's plugins over the event; `None` when the
    /// process is shutting down.
    pub(super) async fn run_plugins(
        &self,
        config: &Config,
        event: &Arc<Event>,
        plugins: &[String],
        now: u64,
    ) -> Option<Ran> {
        let mut ran = Ran::default();
        for (i, name) in plugins.iter().enumerate() {
            let started = Instant::now();
            let limits = config.plugin_limits(name);
            let mut logs = Vec::new();
            let (verdict, reason, made) = match self.plugins.get(name) {
                None => (
                    PluginVerdict::Failed,
                    Some(format!(
                        "plugin {name:?} was removed while the event was routed"
                    )),
                    vec![],
                ),
                Some(plugin) => {
                    let last = i + 1 == plugins.len();
                    let mut report = self.plugins.call(plugin, event.clone(), last).await;
                    logs = kept_logs(std::mem::take(&mut report.logs));
                    ran.txns.push(PluginTxn {
                        plugin: name.clone(),
                        max_keys: limits.max_kv_keys,
                        turn: report.kv_turn.take(),
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
                            match deliveries_from_plugin(config, event, name, &limits, list, now) {
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
                logs,
            });
            ran.deliveries.extend(made);
        }
        Some(ran)
    }
}

/// One run of an event's plugins, before it is committed.
#[derive(Default)]
pub(super) struct Ran {
    pub(super) results: Vec<PluginResult>,
    pub(super) deliveries: Vec<Delivery>,
    pub(super) txns: Vec<PluginTxn>,
}

impl Ran {
    pub(super) fn outcome(&self) -> Outcome {
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

/// How long an event's plugins are run again while what they read keeps
/// changing before their writes commit. Each run reads fresh state, so a
/// hot key commits within a few tries when one process writes it; in a
/// cluster, every node commits to it and a run loses each race with a
/// probability that grows with the load (measured: 16 tries lost about one
/// event in a thousand to a counter bumped by three busy nodes). A burst
/// ends, and with it the races, so the bound is a time, not a count.
pub(super) const KV_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// And a count, so a pathological plugin cannot spin for the whole time.
pub(super) const MAX_KV_TRIES: u32 = 1000;

/// The pause before re-running a call whose KV reads changed: none at
/// first (a lost race within a process), then growing with the tries and
/// spread by the event's id, up to 200 ms, so the racers stop colliding.
pub(super) fn conflict_backoff(event_id: &str, tries: u32) -> std::time::Duration {
    if tries <= 1 {
        return std::time::Duration::ZERO;
    }
    let spread = event_id
        .bytes()
        .fold(tries, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    let cap = (2 * tries).min(200);
    std::time::Duration::from_millis(u64::from(1 + spread % cap))
}

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

pub(crate) fn new_delivery(
    event: &Event,
    target: &str,
    origin: Origin,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    now: u64,
) -> Delivery {
    Delivery {
        refused_headers: Vec::new(),
        id: DeliveryId::generate(),
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

/// The first [`PluginLog::MAX_LINES`] lines a call logged, each cut to
/// [`PluginLog::MAX_BYTES`], to keep with the event's outcome.
fn kept_logs(lines: Vec<(crate::plugin::Level, String)>) -> Vec<PluginLog> {
    use crate::plugin::Level;
    lines
        .into_iter()
        .take(PluginLog::MAX_LINES)
        .map(|(level, mut message)| {
            if message.len() > PluginLog::MAX_BYTES {
                let mut end = PluginLog::MAX_BYTES;
                while !message.is_char_boundary(end) {
                    end -= 1;
                }
                message.truncate(end);
                message.push('…');
            }
            let level = match level {
                Level::Trace => "trace",
                Level::Debug => "debug",
                Level::Info => "info",
                Level::Warn => "warn",
                Level::Error => "error",
            };
            PluginLog {
                level: level.into(),
                message,
            }
        })
        .collect()
}

/// Turns a plugin's requested deliveries into records. A request for a
/// target that is not configured, or an answer past the plugin's
/// bounds (how many deliveries, how many bytes), fails the plugin's
/// result as a whole: a typo or a runaway plugin is loud rather than a
/// silent partial delivery, and one event cannot make the host build
/// and store an unbounded outcome.
pub(super) fn deliveries_from_plugin(
    config: &Config,
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
        if !config.targets.contains_key(&d.target) {
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
            Origin::Plugin(plugin.to_string()),
            headers,
            d.body,
            now,
        );
        delivery.refused_headers = refused;
        out.push(delivery);
    }
    Ok(out)
}
