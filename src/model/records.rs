//! What hookyard stores: events, their routing outcome, deliveries and
//! delivery attempts. These are the shapes the admin API shows, so field
//! names are chosen for operators reading JSON.

use serde::{Deserialize, Serialize};

/// A received webhook, exactly as it arrived.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub id: String,
    pub source: String,
    pub received_at: u64,
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    #[serde(skip)]
    pub body: Vec<u8>,
}

impl Event {
    /// First header with this (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

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

/// What routing decided for an event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Outcome {
    pub status: EventStatus,
    pub routed_at: u64,
    /// One entry per plugin the source runs, so a partial failure is visible
    /// and a replay can tell which plugin failed.
    pub plugins: Vec<PluginResult>,
    pub deliveries: Vec<String>,
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
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PluginVerdict {
    Deliver,
    Drop,
    Failed,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt (first or retry).
    Scheduled,
    Delivered,
    /// Out of attempts; needs an operator.
    Dead,
}

/// One message to one target. Its id is the `webhook-id` the receiver sees,
/// stable across retries so receivers can deduplicate.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Delivery {
    pub id: String,
    pub event_id: String,
    pub target: String,
    /// `plugin:<name>` or `passthrough`.
    pub origin: String,
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
