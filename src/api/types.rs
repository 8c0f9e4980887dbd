//! The admin API's answers as records. The admin handlers serialize these
//! and the operator commands deserialize them, so both sides read one
//! definition: a renamed or retyped field breaks the build, not a command
//! at runtime. docs/admin-api.md shows the JSON they make; changing a
//! field here changes the API.
//!
//! Stored records ([`Delivery`], [`Outcome`], [`Attempt`]) appear as they
//! are, flattened where the API adds to them, so the API cannot drift from
//! what the store holds.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::delivery::state::{Circuit, Disabled};
use crate::model::id::{DeliveryId, EventId};
use crate::model::records::{Attempt, Delivery, DeliveryStatus, Event, EventState, Outcome};
use crate::model::word::Word;
pub use crate::store::EventSummary;

/// A body as people and scripts need it: `text` when it is UTF-8 (what
/// people read), always `base64` (the exact bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Body {
    pub size: usize,
    pub text: Option<String>,
    pub base64: String,
}

impl Body {
    pub fn of(bytes: &[u8]) -> Body {
        Body {
            size: bytes.len(),
            text: std::str::from_utf8(bytes).ok().map(str::to_string),
            base64: base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }
}

/// `GET /admin/events`: one page, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventList {
    pub events: Vec<EventSummary>,
    pub next_cursor: Option<String>,
}

/// `GET /admin/events/{id}`: the event as received, where it stands, the
/// routing outcome and one page of its deliveries with their attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventView {
    pub event: EventRecord,
    pub status: EventState,
    /// Why it still waits (a missing plugin), while it does.
    pub pending_reason: Option<String>,
    pub outcome: Option<OutcomeView>,
    pub deliveries: Vec<DeliveryView>,
    pub deliveries_next_cursor: Option<String>,
}

/// A stored event with its body: decoded (what plugins got and deliveries
/// send), and as received when that differs (it came with a
/// `Content-Encoding`; `content_encoding` says which).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    #[serde(flatten)]
    pub event: Event,
    pub body: Body,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_body: Option<Body>,
}

impl EventRecord {
    pub fn of(event: Event) -> EventRecord {
        let body = Body::of(&event.body);
        let received_body = event.received_body.as_deref().map(Body::of);
        EventRecord {
            event,
            body,
            received_body,
        }
    }
}

/// An outcome as an event's view shows it: its delivery ids cut to the
/// first few (the deliveries themselves come a page at a time), with the
/// total.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeView {
    #[serde(flatten)]
    pub outcome: Outcome,
    pub deliveries_total: usize,
}

impl OutcomeView {
    pub fn of(mut outcome: Outcome, ids_shown: usize) -> OutcomeView {
        let deliveries_total = outcome.deliveries.len();
        outcome.deliveries.truncate(ids_shown);
        OutcomeView {
            outcome,
            deliveries_total,
        }
    }
}

/// `GET /admin/deliveries/{id}`, and each delivery of an event's view:
/// the record, its own body (when a plugin rewrote it) and its attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryView {
    #[serde(flatten)]
    pub delivery: Delivery,
    pub body: Option<Body>,
    pub attempt_log: Vec<Attempt>,
}

impl DeliveryView {
    pub fn of(delivery: Delivery, attempt_log: Vec<Attempt>) -> DeliveryView {
        DeliveryView {
            body: delivery.body.as_deref().map(Body::of),
            delivery,
            attempt_log,
        }
    }
}

/// `GET /admin/deliveries`: one page, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryList {
    pub deliveries: Vec<Delivery>,
    pub next_cursor: Option<String>,
}

/// `POST /admin/events/{id}/replay`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayQueued {
    pub event: EventId,
    pub status: Queued,
}

/// A replay's only answer: it is queued durably; routing does the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Queued {
    Queued,
}

/// `POST /admin/events/replay`: the events queued (those still waiting to
/// be routed are skipped).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replayed {
    pub replayed: usize,
    pub events: Vec<EventId>,
}

/// `POST /admin/deliveries/{id}/retry`: the delivery is due now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryScheduled {
    pub delivery: DeliveryId,
    pub status: DeliveryStatus,
}

/// `POST /admin/deliveries/retry`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retried {
    pub retried: usize,
}

/// What an operator can do to a target: `POST /admin/targets/{name}/{action}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetAction {
    /// Stop new attempts; deliveries wait.
    Pause,
    /// Undo a pause.
    Resume,
    /// Re-enable a disabled target and close its circuit.
    Enable,
}

impl Word for TargetAction {
    const ALL: &'static [TargetAction] = &[
        TargetAction::Pause,
        TargetAction::Resume,
        TargetAction::Enable,
    ];

    fn as_str(self) -> &'static str {
        match self {
            TargetAction::Pause => "pause",
            TargetAction::Resume => "resume",
            TargetAction::Enable => "enable",
        }
    }
}

/// `GET /admin/targets`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetList {
    pub targets: Vec<TargetStatus>,
}

/// One target's health: `GET /admin/targets/{name}`, and the answer to
/// each target action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetStatus {
    pub name: String,
    /// Credentials in the URL shown as `***`.
    pub url: String,
    pub state: Circuit,
    pub paused: bool,
    pub disabled: Option<Disabled>,
    pub in_flight: usize,
    pub scheduled: u64,
    pub dead: u64,
    pub attempts: AttemptCounts,
    /// Of the attempts since start; `None` before the first.
    pub success_rate: Option<f64>,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
    pub last_error_at: Option<u64>,
    pub last_success_at: Option<u64>,
    pub opened_until: Option<u64>,
    pub policy: PolicyView,
}

/// Attempts since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptCounts {
    pub succeeded: u64,
    pub failed: u64,
}

/// A target's policy, durations in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyView {
    pub max_in_flight: usize,
    pub rate_per_second: Option<f64>,
    pub rate_burst: Option<f64>,
    pub max_attempts: u32,
    pub timeout_ms: u64,
    pub breaker_failures: u32,
    pub breaker_cooldown_ms: u64,
    pub disable_after_ms: u64,
    pub allow_private: bool,
}

/// `GET /admin/plugins/{name}/kv`: one page of keys in key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvKeys {
    pub plugin: String,
    pub keys: Vec<KvKey>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvKey {
    pub key: String,
    /// The value's size in bytes.
    pub size: usize,
}

/// `GET /admin/plugins/{name}/kv/{key}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvValue {
    pub plugin: String,
    pub key: String,
    pub value: Body,
}

/// `DELETE /admin/plugins/{name}/kv/{key}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvDeleted {
    pub plugin: String,
    pub key: String,
    pub deleted: bool,
}

/// The public listener's answer to a webhook: `202 {"id"}` for a new
/// event, `200 {"id", "duplicate": true}` for a repeated idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    pub id: EventId,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn target_actions_are_spelled_alike_everywhere() {
        crate::model::word::assert_serde_agrees::<TargetAction>();
    }

    /// The shapes docs/admin-api.md shows, field for field.
    #[test]
    fn records_keep_the_documented_shape() {
        let delivery: Delivery = serde_json::from_value(json!({
            "id": "msg_1", "event_id": "evt_1", "target": "orders",
            "origin": "plugin:router", "headers": [], "created_at": 1,
            "status": "dead", "attempts": 8, "last_error": "HTTP 500"
        }))
        .unwrap();
        let view = DeliveryView::of(delivery.clone(), vec![]);
        assert_eq!(
            serde_json::to_value(&view).unwrap(),
            json!({
                "id": "msg_1", "event_id": "evt_1", "target": "orders",
                "origin": "plugin:router", "headers": [], "created_at": 1,
                "status": "dead", "attempts": 8, "last_error": "HTTP 500",
                "body": null, "attempt_log": []
            })
        );
        let back: DeliveryView =
            serde_json::from_value(serde_json::to_value(&view).unwrap()).unwrap();
        assert_eq!(back, view);

        assert_eq!(
            serde_json::to_value(Body::of(b"\xff")).unwrap(),
            json!({"size": 1, "text": null, "base64": "/w=="})
        );
        assert_eq!(
            serde_json::to_value(Received {
                id: "evt_1".into(),
                duplicate: false
            })
            .unwrap(),
            json!({"id": "evt_1"})
        );
        assert_eq!(
            serde_json::to_value(RetryScheduled {
                delivery: "msg_1".into(),
                status: DeliveryStatus::Scheduled
            })
            .unwrap(),
            json!({"delivery": "msg_1", "status": "scheduled"})
        );
    }
}

/// `POST /admin/config/reload`: what an applied reload did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigReloaded {
    /// sha256 of the config file now serving.
    pub sha256: Option<String>,
    /// One line per source, target or plugin table added, removed or
    /// changed (`targets.crm: added`).
    pub changes: Vec<String>,
    /// Keys that changed but keep their running value until a restart.
    pub needs_restart: Vec<String>,
}

/// `POST /admin/plugins/{name}/trial`: a candidate component run over a
/// source's last stored events, compared with what the serving version
/// decided. Nothing is delivered or written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialReport {
    pub plugin: String,
    pub source: String,
    /// sha256 of the candidate component.
    pub candidate: String,
    /// The contract the candidate was built against (`0.2.0`, `0.1.0`).
    pub contract: String,
    /// Per event, newest first.
    pub events: Vec<TrialEvent>,
    pub summary: TrialSummary,
}

/// One stored event: what was decided, what the candidate decides, and how
/// they differ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialEvent {
    pub event: EventId,
    pub before: Decision,
    pub after: Decision,
    /// Empty when the candidate decides as the serving version did.
    pub differences: Vec<Difference>,
    /// Time of the candidate's call, µs.
    pub call_us: u64,
}

/// A plugin's decision for one event, as comparable records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Decision {
    /// Delivered to these targets (each with the headers and body it set).
    Deliver {
        deliveries: Vec<PlannedDelivery>,
    },
    Drop {
        reason: String,
    },
    Failed {
        error: String,
    },
    /// The plugin did not run for this event (it was not in the source's
    /// chain then, or the event has not been routed yet).
    NotRun,
}

/// One delivery a decision asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedDelivery {
    pub target: String,
    pub headers: Vec<(String, String)>,
    /// sha256 of the body it sends, hex; `None`: the event's body.
    pub body_sha256: Option<String>,
    pub body_size: Option<usize>,
}

/// How the candidate's decision differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Difference {
    /// Deliver, drop or fail changed (`from` and `to` are the verdicts).
    Verdict {
        from: String,
        to: String,
    },
    TargetAdded {
        target: String,
    },
    TargetRemoved {
        target: String,
    },
    HeadersChanged {
        target: String,
    },
    BodyChanged {
        target: String,
    },
    /// Same verdict, another drop reason or error.
    ReasonChanged,
}

/// Counts over the events tried, and the candidate's call times.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrialSummary {
    pub events: usize,
    pub same: usize,
    pub changed: usize,
    /// The candidate fails events the serving version handled (delivered
    /// or dropped): what should stop a deploy.
    pub newly_failing: usize,
    /// Failed before, handled by the candidate.
    pub fixed: usize,
    /// Events the serving version had not run on (nothing to compare).
    pub not_run_before: usize,
    pub call_ms_mean: f64,
    pub call_ms_max: f64,
    /// Stopped before the last event (the time budget ran out).
    pub cut_short: bool,
}
