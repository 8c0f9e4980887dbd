//! What operators do to targets and deliveries through the admin API:
//! look at a target's health, pause, resume and re-enable it, and put
//! deliveries back on the schedule.

use std::sync::atomic::Ordering;

use anyhow::{Context, Result};

use super::reconfigure::write_control;
use super::{Dispatcher, Target};
use crate::api::types::{AttemptCounts, PolicyView, TargetAction, TargetStatus};
use crate::model::id::{DeliveryId, now_ms};
use crate::model::records::DeliveryStatus;
use crate::model::word::Word;
use crate::store::Rescheduled;

/// Result of asking for a delivery to be retried.
#[derive(Debug, PartialEq, Eq)]
pub enum Retry {
    Scheduled,
    NotFound,
    /// An attempt is running right now; its result decides.
    InFlight,
    /// Its target is no longer configured.
    NoTarget,
}

impl Dispatcher {
    /// A target's health as the admin API shows it.
    pub fn target_status(&self, t: &Target) -> TargetStatus {
        let now = now_ms();
        let s = t.state();
        let config = t.config();
        let p = &config.policy;
        TargetStatus {
            name: t.name.clone(),
            url: crate::config::redact_url(&config.url),
            state: s.circuit_state(now),
            paused: s.control.paused,
            disabled: s.control.disabled.clone(),
            in_flight: s.in_flight,
            scheduled: t.scheduled.load(Ordering::Relaxed).max(0) as u64,
            dead: t.dead() as u64,
            attempts: AttemptCounts {
                succeeded: s.succeeded,
                failed: s.failed,
            },
            success_rate: s.success_rate(),
            consecutive_failures: s.control.consecutive_failures,
            last_error: s.last_error.clone(),
            last_error_at: s.last_error_at,
            last_success_at: s.last_success_at,
            opened_until: s.control.open_until,
            policy: PolicyView {
                max_in_flight: p.max_in_flight,
                rate_per_second: p.rate_limit.map(|(r, _)| r),
                rate_burst: p.rate_limit.map(|(_, b)| b),
                max_attempts: config.max_attempts(),
                timeout_ms: p.timeout.as_millis() as u64,
                breaker_failures: p.breaker_failures,
                breaker_cooldown_ms: p.breaker_cooldown.as_millis() as u64,
                disable_after_ms: p.disable_after.as_millis() as u64,
                allow_private: p.allow_private,
            },
        }
    }

    /// Every target's status.
    pub fn target_statuses(&self) -> Vec<TargetStatus> {
        self.targets()
            .iter()
            .map(|t| self.target_status(t))
            .collect()
    }

    /// Applies an operator action; `None` for an unknown target. Answers
    /// once the change is in the store, where other nodes, and this one
    /// after a restart, read it.
    pub async fn control_target(
        &self,
        name: &str,
        action: TargetAction,
    ) -> Result<Option<TargetStatus>> {
        let Some(t) = self.target(name) else {
            return Ok(None);
        };
        let _io = t.control_io.lock().await;
        let control = {
            let mut s = t.state();
            match action {
                TargetAction::Pause => s.control.paused = true,
                TargetAction::Resume => s.control.paused = false,
                TargetAction::Enable => s.enable(),
            }
            s.control.clone()
        };
        tracing::info!(target_name = %name, action = action.as_str(), "operator changed the target");
        t.wake.notify_one();
        write_control(&*self.states, name, &control)
            .await
            .context("the change holds on this node but could not be saved")?;
        Ok(Some(self.target_status(&t)))
    }

    /// Puts one delivery on the schedule, due now.
    pub async fn retry_delivery(&self, id: &str) -> Result<Retry> {
        let Some(d) = self.store.delivery(id).await? else {
            return Ok(Retry::NotFound);
        };
        let Some(t) = self.target(&d.target) else {
            return Ok(Retry::NoTarget);
        };
        // Claim it as the dispatcher does, so a scan cannot pick it up (and
        // send it) between this check and the reschedule: with both, it
        // could be sent twice.
        if !t.claimed().insert(id.to_string()) {
            return Ok(Retry::InFlight);
        }
        let now = now_ms();
        let rescheduled = self.store.reschedule(id, now).await;
        t.claimed().remove(id);
        let before = match rescheduled? {
            Rescheduled::Done(before) => before,
            Rescheduled::InFlight => return Ok(Retry::InFlight),
            Rescheduled::Missing => return Ok(Retry::NotFound),
        };
        match before.status {
            DeliveryStatus::Scheduled => {}
            DeliveryStatus::Dead => {
                t.dead.fetch_sub(1, Ordering::Relaxed);
                t.scheduled.fetch_add(1, Ordering::Relaxed);
            }
            DeliveryStatus::Delivered => {
                t.scheduled.fetch_add(1, Ordering::Relaxed);
            }
        }
        tracing::info!(delivery = %id, event = %d.event_id, target_name = %d.target, "operator scheduled a retry");
        t.wake.notify_one();
        Ok(Retry::Scheduled)
    }

    /// Retries each of `ids` (a bulk retry's matches, collected first);
    /// returns how many were scheduled.
    pub async fn retry_deliveries(&self, ids: Vec<DeliveryId>) -> Result<usize> {
        let mut n = 0;
        for id in ids {
            if self.retry_delivery(&id).await? == Retry::Scheduled {
                n += 1;
            }
        }
        Ok(n)
    }
}
