//! Work done on an operator's request or on a schedule, not per webhook.

use crate::telemetry::InternalEvent;
use crate::telemetry::families::Families;
use crate::telemetry::labels::{ReplayKind, ReplayLabel, SweptKind, SweptLabel};

/// An operator replayed events or retried deliveries.
pub struct Replayed {
    pub kind: ReplayKind,
    pub count: usize,
}

impl InternalEvent for Replayed {
    fn record(self, m: &Families) {
        m.replays
            .get_or_create(&ReplayLabel { kind: self.kind })
            .inc_by(self.count as u64);
    }
}

/// One batch of the retention sweep.
pub struct RetentionSwept {
    pub events: usize,
    pub deliveries: usize,
    pub attempts: usize,
}

impl InternalEvent for RetentionSwept {
    fn record(self, m: &Families) {
        for (kind, n) in [
            (SweptKind::Events, self.events),
            (SweptKind::Deliveries, self.deliveries),
            (SweptKind::Attempts, self.attempts),
        ] {
            // A kind shows once something of it was removed.
            if n > 0 {
                m.swept.get_or_create(&SweptLabel { kind }).inc_by(n as u64);
            }
        }
    }
}
