//! What the dashboard shows as it happens: a broadcast of a few events
//! (stored, refused, routed, delivery attempts and ends) and running
//! totals, fed by the same `record` calls that move the counters, so the
//! dashboard and `/metrics` cannot disagree. Nothing is sent while nobody
//! listens.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::labels::{AttemptResult, DeliveryEnd, RejectReason, RouteResult};

/// How many changes a slow listener may fall behind before it is told to
/// reload (`Lagged`) instead of being waited for.
pub const FEED_CAPACITY: usize = 1024;

/// One change, as the dashboard needs it.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Live {
    Accepted {
        source: String,
        event: String,
        bytes: usize,
    },
    Rejected {
        source: String,
        reason: RejectReason,
    },
    Routed {
        result: RouteResult,
    },
    Attempt {
        target: String,
        result: AttemptResult,
    },
    Finished {
        target: String,
        result: DeliveryEnd,
    },
}

/// Running totals since the process started, for the overview's charts.
#[derive(Default)]
pub struct Totals {
    pub(super) received: AtomicU64,
    pub(super) accepted: AtomicU64,
    pub(super) rejected: AtomicU64,
    pub(super) routed: AtomicU64,
    pub(super) delivered: AtomicU64,
    pub(super) failed: AtomicU64,
}

/// A reading of [`Totals`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TotalsView {
    pub received: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub routed: u64,
    /// Deliveries that reached their target.
    pub delivered: u64,
    /// Attempts that failed (each retry counts).
    pub failed: u64,
}

impl Totals {
    pub(super) fn bump(n: &AtomicU64) {
        n.fetch_add(1, Ordering::Relaxed);
    }

    pub fn view(&self) -> TotalsView {
        let r = |n: &AtomicU64| n.load(Ordering::Relaxed);
        TotalsView {
            received: r(&self.received),
            accepted: r(&self.accepted),
            rejected: r(&self.rejected),
            routed: r(&self.routed),
            delivered: r(&self.delivered),
            failed: r(&self.failed),
        }
    }
}

impl TotalsView {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &TotalsView) -> TotalsView {
        TotalsView {
            received: self.received.saturating_sub(earlier.received),
            accepted: self.accepted.saturating_sub(earlier.accepted),
            rejected: self.rejected.saturating_sub(earlier.rejected),
            routed: self.routed.saturating_sub(earlier.routed),
            delivered: self.delivered.saturating_sub(earlier.delivered),
            failed: self.failed.saturating_sub(earlier.failed),
        }
    }
}
