//! A reload's part in delivery: targets added, changed and removed while
//! attempts run.
//!
//! - Added: a dispatcher starts for it (in a cluster, once this node owns it).
//! - Changed: its config is swapped; attempts running finish with the one
//!   they started with. A new `max_in_flight` takes effect as attempts over
//!   it end; a new `rate_limit` gets a fresh bucket (an unchanged one keeps
//!   its bucket, so a reload is no way around a limit).
//! - Removed: its dispatcher stops starting attempts; once those running
//!   have ended, its scheduled deliveries are marked dead with the reason
//!   (as at start for a target missing from the config). They stay in the
//!   dead-letter queue, visible and retryable, should the target come back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Result;

use super::state::Control;
use super::{Dispatcher, RateLimit, Target};
use crate::config::Config;
use crate::source::rate_limit::TokenBucket;
use crate::store::TargetStates;

/// How long a removed target's running attempts get before its waiting
/// deliveries are retired anyway (an attempt is bounded by its timeout;
/// this only bounds a stuck recording).
const DRAIN_WAIT: Duration = Duration::from_secs(300);

impl Dispatcher {
    /// Brings the targets in line with `new`, before it is swapped in (so
    /// routing never creates a delivery for a target without a
    /// dispatcher).
    /// Everything that can fail (reading the store) happens before the
    /// first change, so a failed apply changes nothing.
    pub async fn apply(self: &Arc<Self>, new: &Config) -> Result<()> {
        let current: BTreeMap<String, Arc<Target>> = self.map().clone();
        let added: Vec<&String> = new
            .targets
            .keys()
            .filter(|n| !current.contains_key(*n))
            .collect();
        let mut fresh = Vec::with_capacity(added.len());
        if !added.is_empty() {
            // Deliveries may wait for a name that was configured before.
            let depth = self.store.scheduled_per_target().await?;
            for name in added {
                let control = load_control(self.states.as_ref(), name).await?;
                let scheduled = depth.get(name).copied().unwrap_or(0) as i64;
                fresh.push(Arc::new(Target::new(
                    name,
                    &new.targets[name],
                    control,
                    scheduled,
                    0,
                )));
            }
        }
        self.global.resize(new.delivery.max_in_flight);
        for (name, config) in &new.targets {
            if let Some(t) = current.get(name) {
                t.reconfigure(config);
            }
        }
        for t in fresh {
            self.targets
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(t.name.clone(), t.clone());
            tracing::info!(target_name = %t.name, "target added");
            self.spawn_worker(t);
        }
        for (name, t) in current {
            if new.targets.contains_key(&name) {
                continue;
            }
            self.targets
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&name);
            t.removed.store(true, Ordering::SeqCst);
            t.owned.store(false, Ordering::SeqCst);
            t.wake.notify_one();
            tracing::warn!(target_name = %name, scheduled = t.scheduled(), "target removed; its waiting deliveries move to the dead-letter queue once its attempts in flight end");
            let me = self.clone();
            tokio::spawn(async move {
                let waited = tokio::time::Instant::now();
                while t.in_flight() > 0 && waited.elapsed() < DRAIN_WAIT {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                me.retire(&[name]).await;
            });
        }
        self.ownership_changed.notify_one();
        Ok(())
    }
}

impl Target {
    fn reconfigure(&self, config: &crate::config::TargetConfig) {
        let limit = config.policy.rate_limit;
        let same_limit = self.bucket.load().as_ref().map(|b| b.limit) == limit;
        if !same_limit {
            self.bucket.store(limit.map(|limit| {
                Arc::new(RateLimit {
                    limit,
                    bucket: TokenBucket::new(limit.0, limit.1),
                })
            }));
        }
        self.slots.resize(config.policy.max_in_flight);
        self.config.store(Arc::new(config.clone()));
        self.wake.notify_one();
    }
}

/// A target's persisted operator and circuit state (default: none).
pub(super) async fn load_control(states: &dyn TargetStates, name: &str) -> Result<Control> {
    Ok(match states.target_control(name).await? {
        Some(v) => serde_json::from_slice(&v).unwrap_or_default(),
        None => Control::default(),
    })
}

/// Writes a target's operator and circuit state.
pub(super) async fn write_control(
    states: &dyn TargetStates,
    name: &str,
    control: &Control,
) -> Result<()> {
    states
        .set_target_control(name, &serde_json::to_vec(control)?)
        .await
}
