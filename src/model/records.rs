//! What hookyard stores: events, their routing outcome, deliveries and
//! delivery attempts. These are the shapes the admin API shows, so field
//! names are chosen for operators reading JSON.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::id::{DeliveryId, EventId};
use super::word::Word;

/// A received webhook, as it arrived (its body also decoded, when it came
/// with a `Content-Encoding`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub id: EventId,
    pub source: String,
    pub received_at: u64,
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    /// The body decoded from its content codings: what plugins get and
    /// deliveries send. The bytes as received when it had none.
    #[serde(skip)]
    pub body: Vec<u8>,
    /// The content codings the body arrived in, as applied (`gzip`,
    /// `gzip, br`); absent when it arrived as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    /// The bytes as received, kept for audit (what the signature was
    /// checked over), only when they differ from `body`: an unencoded
    /// event, the common case, stores its body once.
    #[serde(skip)]
    pub received_body: Option<Vec<u8>>,
    /// The event's version, where the source's `version` setting says it
    /// is (see `source/version.rs`). Optional and left out when absent, so
    /// events stored before it existed load unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl Event {
    /// About what the event holds in memory: what in-memory hand-offs
    /// (routing's queue, first attempts) count against their bounds.
    pub fn memory_size(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        self.body.len() + self.received_body.as_ref().map_or(0, Vec::len) + headers + 256
    }

    /// First header with this (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as it arrived on the wire.
    pub fn received(&self) -> &[u8] {
        self.received_body.as_deref().unwrap_or(&self.body)
    }

    /// The W3C trace context it arrived with, if valid: what its
    /// deliveries carry on and its log lines name.
    pub fn trace_context(&self) -> Option<super::trace::TraceContext> {
        super::trace::TraceContext::from_headers(&self.headers)
    }
}

/// What routing made of an event (an [`Outcome`]'s status).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EventStatus {
    /// At least one delivery was created.
    Routed,
    /// Every plugin dropped it and there were no passthrough targets.
    Dropped,
    /// A plugin errored, trapped or timed out; replaying can fix it.
    Failed,
}

/// Where an event stands, as listings show and filter it: waiting to be
/// routed, or what routing made of it. Not an [`EventStatus`] because an
/// outcome is never pending.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum EventState {
    /// Stored, not routed yet (queued, or waiting for a missing plugin).
    Pending,
    Routed,
    Dropped,
    Failed,
}

impl From<EventStatus> for EventState {
    fn from(s: EventStatus) -> EventState {
        match s {
            EventStatus::Routed => EventState::Routed,
            EventStatus::Dropped => EventState::Dropped,
            EventStatus::Failed => EventState::Failed,
        }
    }
}

impl Word for EventState {
    const ALL: &'static [EventState] = &[
        EventState::Pending,
        EventState::Routed,
        EventState::Dropped,
        EventState::Failed,
    ];

    fn as_str(self) -> &'static str {
        match self {
            EventState::Pending => "pending",
            EventState::Routed => "routed",
            EventState::Dropped => "dropped",
            EventState::Failed => "failed",
        }
    }
}

impl fmt::Display for EventState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What routing decided for an event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Outcome {
    pub status: EventStatus,
    pub routed_at: u64,
    /// One entry per plugin the source runs, so a partial failure is visible
    /// and a replay can tell which plugin failed.
    pub plugins: Vec<PluginResult>,
    pub deliveries: Vec<DeliveryId>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PluginResult {
    pub plugin: String,
    pub result: PluginVerdict,
    /// The drop reason or the failure message.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
    pub deliveries: usize,
    pub duration_us: u64,
    /// The first lines the plugin logged for this event (each cut to
    /// [`PluginLog::MAX_BYTES`]); all of them went to hookyard's log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<PluginLog>,
}

/// One line a plugin logged while it handled an event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PluginLog {
    pub level: String,
    pub message: String,
}

impl PluginLog {
    /// Lines kept per plugin and event: enough to see why, bounded so a
    /// chatty plugin cannot grow every stored outcome.
    pub const MAX_LINES: usize = 20;
    pub const MAX_BYTES: usize = 512;
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PluginVerdict {
    Deliver,
    Drop,
    Failed,
}

impl Word for PluginVerdict {
    const ALL: &'static [PluginVerdict] = &[
        PluginVerdict::Deliver,
        PluginVerdict::Drop,
        PluginVerdict::Failed,
    ];

    fn as_str(self) -> &'static str {
        match self {
            PluginVerdict::Deliver => "deliver",
            PluginVerdict::Drop => "drop",
            PluginVerdict::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt (first or retry).
    Scheduled,
    Delivered,
    /// Out of attempts; needs an operator.
    Dead,
}

impl Word for DeliveryStatus {
    const ALL: &'static [DeliveryStatus] = &[
        DeliveryStatus::Scheduled,
        DeliveryStatus::Delivered,
        DeliveryStatus::Dead,
    ];

    fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Scheduled => "scheduled",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        }
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What made a delivery: a plugin's answer, or the source's passthrough
/// targets. Written `plugin:<name>` or `passthrough`, in the store and on
/// the wire.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Origin {
    Passthrough,
    Plugin(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Passthrough => f.write_str("passthrough"),
            Origin::Plugin(name) => write!(f, "plugin:{name}"),
        }
    }
}

impl std::str::FromStr for Origin {
    type Err = String;

    fn from_str(text: &str) -> Result<Origin, String> {
        match text.split_once(':') {
            None if text == "passthrough" => Ok(Origin::Passthrough),
            Some(("plugin", name)) if !name.is_empty() => Ok(Origin::Plugin(name.to_string())),
            _ => Err(format!(
                "{text:?} is not a delivery origin (plugin:<name> or passthrough)"
            )),
        }
    }
}

impl Serialize for Origin {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Origin {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Origin, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One message to one target. Its id is the `webhook-id` the receiver sees,
/// stable across retries so receivers can deduplicate.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Delivery {
    pub id: DeliveryId,
    pub event_id: EventId,
    pub target: String,
    pub origin: Origin,
    pub headers: Vec<(String, String)>,
    pub created_at: u64,
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// When the next attempt is due (unix ms), while scheduled.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub next_attempt_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub last_error: Option<String>,
    /// `None` sends the event's body unchanged (not copied, to save space).
    #[serde(skip)]
    pub body: Option<Vec<u8>>,
    /// Headers the plugin asked for that hookyard does not send (framing,
    /// hop-by-hop, its own signature headers, invalid names or values),
    /// with why: `headers` is exactly what goes on the wire.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused_headers: Vec<RefusedHeader>,
}

impl Delivery {
    /// About what the record holds in memory, for the bounds of the
    /// in-memory copies first attempts take (`delivery/recent.rs`).
    pub fn memory_size(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        self.body.as_ref().map_or(0, Vec::len)
            + self.last_error.as_ref().map_or(0, String::len)
            + headers
            + 256
    }
}

/// A header left off a delivery, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RefusedHeader {
    pub name: String,
    pub reason: String,
}

/// One try at sending a delivery.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Attempt {
    pub n: u32,
    pub at: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status_code: Option<u16>,
    pub latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    /// The first few KB of the response body, for debugging.
    pub response_body: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_spelled_alike_everywhere() {
        crate::model::word::assert_serde_agrees::<EventState>();
        crate::model::word::assert_serde_agrees::<DeliveryStatus>();
        crate::model::word::assert_serde_agrees::<PluginVerdict>();
    }

    #[test]
    fn events_stored_before_versions_load_and_unversioned_ones_stay_alike() {
        let old = serde_json::json!({
            "id": "evt_1", "source": "s", "received_at": 1, "method": "POST",
            "path": "/hooks/s", "query": "", "headers": [],
        });
        let event: Event = serde_json::from_value(old.clone()).unwrap();
        assert_eq!(event.version, None);
        assert_eq!(serde_json::to_value(&event).unwrap(), old);
        let versioned = Event {
            version: Some("2024-06-20".into()),
            ..event
        };
        let json = serde_json::to_value(&versioned).unwrap();
        assert_eq!(json["version"], "2024-06-20");
        assert_eq!(serde_json::from_value::<Event>(json).unwrap(), versioned);
    }

    #[test]
    fn origins_keep_their_stored_form() {
        for (origin, text) in [
            (Origin::Passthrough, "passthrough"),
            (Origin::Plugin("router".into()), "plugin:router"),
        ] {
            let json = serde_json::to_value(&origin).unwrap();
            assert_eq!(json, serde_json::json!(text));
            assert_eq!(serde_json::from_value::<Origin>(json).unwrap(), origin);
        }
        assert!(serde_json::from_value::<Origin>(serde_json::json!("plugin:")).is_err());
        assert!(serde_json::from_value::<Origin>(serde_json::json!("cron")).is_err());
    }
}
