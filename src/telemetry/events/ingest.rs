//! What the public listener did with each webhook request.

use crate::telemetry::InternalEvent;
use crate::telemetry::families::Families;
use crate::telemetry::labels::{
    HandshakeLabels, HandshakeProvider, RejectLabels, RejectReason, SourceLabel,
};
use crate::telemetry::live::{Live, Totals};

/// A request stored as a new event (its 202 follows).
pub struct RequestAccepted<'a> {
    pub source: &'a str,
    pub event: &'a str,
    pub bytes: usize,
    /// The W3C trace id the request carried, so the event can be followed
    /// from the provider's trace.
    pub trace_id: Option<&'a str>,
}

impl InternalEvent for RequestAccepted<'_> {
    fn live(&self) -> Option<Live> {
        Some(Live::Accepted {
            source: self.source.to_string(),
            event: self.event.to_string(),
            bytes: self.bytes,
        })
    }

    fn record(self, m: &Families) {
        Totals::bump(&m.totals.received);
        Totals::bump(&m.totals.accepted);
        tracing::debug!(event = %self.event, source = %self.source, bytes = self.bytes, trace_id = self.trace_id, "event accepted");
        let label = SourceLabel {
            source: self.source.to_string(),
        };
        m.requests_received.get_or_create(&label).inc();
        m.requests_accepted.get_or_create(&label).inc();
    }
}

/// A request whose idempotency key matched a stored event: answered with
/// that event's id, not stored or routed again.
pub struct RequestDuplicate<'a> {
    pub source: &'a str,
    pub original: &'a str,
}

impl InternalEvent for RequestDuplicate<'_> {
    fn record(self, m: &Families) {
        Totals::bump(&m.totals.received);
        tracing::debug!(source = %self.source, event = %self.original, "duplicate delivery; not routed again");
        let label = SourceLabel {
            source: self.source.to_string(),
        };
        m.requests_received.get_or_create(&label).inc();
        m.requests_duplicate.get_or_create(&label).inc();
    }
}

/// A request refused before anything was stored.
pub struct RequestRejected<'a> {
    pub source: &'a str,
    pub reason: RejectReason,
    /// The client's address, or "unknown".
    pub client: &'a str,
    /// What the sender is told.
    pub message: &'a str,
}

impl InternalEvent for RequestRejected<'_> {
    fn live(&self) -> Option<Live> {
        Some(Live::Rejected {
            source: self.source.to_string(),
            reason: self.reason,
        })
    }

    fn record(self, m: &Families) {
        Totals::bump(&m.totals.received);
        Totals::bump(&m.totals.rejected);
        tracing::info!(source = %self.source, client = %self.client, reason = %self.reason, "webhook rejected: {}", self.message);
        m.requests_received
            .get_or_create(&SourceLabel {
                source: self.source.to_string(),
            })
            .inc();
        m.requests_rejected
            .get_or_create(&RejectLabels {
                source: self.source.to_string(),
                reason: self.reason,
            })
            .inc();
    }
}

/// A provider's endpoint challenge, answered on the spot: nothing is stored
/// or routed, so this is the only trace it leaves.
pub struct HandshakeAnswered<'a> {
    pub source: &'a str,
    pub provider: HandshakeProvider,
    /// The client's address, or "unknown".
    pub client: &'a str,
}

impl InternalEvent for HandshakeAnswered<'_> {
    fn record(self, m: &Families) {
        tracing::info!(source = %self.source, provider = %self.provider, client = %self.client, "provider handshake answered");
        m.handshakes
            .get_or_create(&HandshakeLabels {
                source: self.source.to_string(),
                provider: self.provider,
            })
            .inc();
    }
}
