//! Which targets this process dispatches. On the embedded store, all of
//! them. In a cluster, each target is owned by one node at a time under a
//! lease renewed here, so its `max_in_flight`, `rate_limit` and circuit
//! breaker are the target's and not each node's; a node that dies stops
//! renewing and another takes its targets over when the lease runs out.
//!
//! Hand-over keeps the limits: a node told it holds more than its share
//! first stops claiming a target, then gives the lease back once its
//! attempts in flight for it have ended. A new owner loads the target's
//! persisted state (pause, disable, circuit) before it dispatches.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Dispatcher;
use super::state::Control;

/// How long a target stays a node's without a renewal. A dead node's
/// targets move on after at most this long.
pub const OWNER_LEASE: Duration = Duration::from_secs(10);

/// How often ownership is renewed: several times per lease, so a slow
/// round trip or two does not lose it.
const RENEW_EVERY: Duration = Duration::from_secs(2);

impl Dispatcher {
    /// Renews this process's targets until shutdown.
    pub(super) async fn keep_ownership(self: Arc<Self>) {
        let mut stop = self.stopping.subscribe();
        let mut renewed = Instant::now();
        loop {
            let names: Vec<String> = self.map().keys().cloned().collect();
            let release: Vec<String> = self
                .targets()
                .into_iter()
                .filter(|t| t.releasing.load(Ordering::SeqCst) && t.in_flight() == 0)
                .map(|t| t.name.clone())
                .collect();
            match self.states.own_targets(&names, &release, OWNER_LEASE).await {
                Ok(owned) => {
                    renewed = Instant::now();
                    for name in &release {
                        tracing::info!(target_name = %name, "gave the target to another node");
                    }
                    self.apply_ownership(&owned.mine, owned.surplus).await;
                }
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "cannot renew target ownership");
                    // Past the lease another node may own them: stop.
                    if renewed.elapsed() >= OWNER_LEASE {
                        self.apply_ownership(&[], 0).await;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(RENEW_EVERY) => {}
                _ = self.ownership_changed.notified() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    async fn apply_ownership(&self, mine: &[String], surplus: usize) {
        let mut giving = surplus;
        // Give back from the end, so the nodes' shares settle.
        for t in self.targets().iter().rev() {
            let owns = mine.binary_search(&t.name).is_ok();
            if !owns {
                t.releasing.store(false, Ordering::SeqCst);
                if t.owned.swap(false, Ordering::SeqCst) {
                    tracing::info!(target_name = %t.name, "another node now dispatches this target");
                }
                continue;
            }
            if t.releasing.load(Ordering::SeqCst) {
                giving = giving.saturating_sub(1);
                continue;
            }
            if giving > 0 {
                giving -= 1;
                t.releasing.store(true, Ordering::SeqCst);
                t.owned.store(false, Ordering::SeqCst);
                continue;
            }
            if !t.owned.load(Ordering::SeqCst) {
                // Taken over: the target's state is what the last owner
                // and the operators left in the store.
                self.reload_control(&t.name).await;
                t.owned.store(true, Ordering::SeqCst);
                t.wake.notify_one();
                tracing::debug!(target_name = %t.name, "dispatching this target");
            }
        }
    }

    /// Loads a target's operator and circuit state from the store: another
    /// node changed it (an operator's pause, resume, enable), or this node
    /// took the target over.
    pub async fn reload_control(&self, target: &str) {
        let Some(t) = self.target(target) else {
            return;
        };
        match self.states.target_control(target).await {
            Ok(v) => {
                let control: Control = v
                    .and_then(|v| serde_json::from_slice(&v).ok())
                    .unwrap_or_default();
                let mut s = t.state();
                if t.owned.load(Ordering::SeqCst) {
                    // The owner keeps the circuit (its attempts drive it);
                    // another node's write carries that node's stale copy.
                    // Only the operator's part is taken, an enable closing
                    // the circuit as it does locally.
                    let enabled = s.control.disabled.is_some() && control.disabled.is_none();
                    s.control.paused = control.paused;
                    s.control.disabled = control.disabled;
                    if enabled {
                        s.enable();
                    }
                } else {
                    s.control = control;
                }
                drop(s);
                t.wake.notify_one();
            }
            Err(e) => {
                tracing::warn!(target_name = %target, error = format!("{e:#}"), "cannot read the target's state")
            }
        }
    }
}
