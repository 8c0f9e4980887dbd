//! What the dispatchers did.

use std::time::Duration;

use crate::telemetry::InternalEvent;
use crate::telemetry::families::Families;
use crate::telemetry::labels::{
    AttemptLabels, AttemptResult, DeliveryEnd, DeliveryLabels, TargetLabel,
};
use crate::telemetry::live::{Live, Totals};

/// One delivery attempt ran and was recorded.
pub struct AttemptFinished<'a> {
    pub target: &'a str,
    pub result: AttemptResult,
    /// From sending to the answer (or the failure).
    pub latency: Duration,
}

impl InternalEvent for AttemptFinished<'_> {
    fn live(&self) -> Option<Live> {
        Some(Live::Attempt {
            target: self.target.to_string(),
            result: self.result,
        })
    }

    fn record(self, m: &Families) {
        if self.result != AttemptResult::Success {
            Totals::bump(&m.totals.failed);
        }
        let target = self.target.to_string();
        m.attempt_seconds
            .get_or_create(&TargetLabel {
                target: target.clone(),
            })
            .observe(self.latency);
        m.attempts
            .get_or_create(&AttemptLabels {
                target,
                result: self.result,
            })
            .inc();
    }
}

/// A delivery reached a final state.
pub struct DeliveryFinished<'a> {
    pub target: &'a str,
    pub result: DeliveryEnd,
}

impl InternalEvent for DeliveryFinished<'_> {
    fn live(&self) -> Option<Live> {
        Some(Live::Finished {
            target: self.target.to_string(),
            result: self.result,
        })
    }

    fn record(self, m: &Families) {
        if self.result == DeliveryEnd::Delivered {
            Totals::bump(&m.totals.delivered);
        }
        m.deliveries
            .get_or_create(&DeliveryLabels {
                target: self.target.to_string(),
                result: self.result,
            })
            .inc();
    }
}

/// A target's dispatcher task panicked (a bug) and is started again after
/// `restart_in`.
pub struct DispatcherRestarted<'a> {
    pub target: &'a str,
    pub panic: &'a str,
    pub restart_in: Duration,
}

impl InternalEvent for DispatcherRestarted<'_> {
    fn record(self, m: &Families) {
        tracing::error!(target_name = %self.target, panic = %self.panic, "the target's dispatcher panicked; restarting it in {:?}", self.restart_in);
        m.dispatcher_restarts
            .get_or_create(&TargetLabel {
                target: self.target.to_string(),
            })
            .inc();
    }
}
