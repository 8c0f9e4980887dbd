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
use super::reconfigure::load_control;

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
        let _io = t.control_io.lock().await;
        match load_control(&*self.states, target).await {
            Ok(control) => {
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use anyhow::Result;
    use async_trait::async_trait;
    use tokio::sync::Semaphore;

    use super::*;
    use crate::api::types::TargetAction;
    use crate::config::{Config, Durability};
    use crate::store::sled::SledStore;
    use crate::store::{Owned, Store, TargetStates};
    use crate::telemetry::Telemetry;

    /// A store whose reads of a target's state return what was there when
    /// they began, but only once the test lets them: the gap a slow read
    /// (a busy store) leaves between reading and applying.
    struct SlowReads {
        inner: Arc<dyn TargetStates>,
        go: Semaphore,
        reading: tokio::sync::Notify,
    }

    #[async_trait]
    impl TargetStates for SlowReads {
        async fn target_control(&self, target: &str) -> Result<Option<Vec<u8>>> {
            let read = self.inner.target_control(target).await;
            self.reading.notify_one();
            self.go.acquire().await?.forget();
            read
        }
        async fn set_target_control(&self, target: &str, value: &[u8]) -> Result<()> {
            self.inner.set_target_control(target, value).await
        }
        async fn own_targets(
            &self,
            targets: &[String],
            release: &[String],
            lease: Duration,
        ) -> Result<Owned> {
            self.inner.own_targets(targets, release, lease).await
        }
    }

    /// The first ownership round reloads the target's state from the
    /// store. An operator's pause made while that read was under way must
    /// hold: before, the reload applied the state it had read (not paused)
    /// over the pause, and a paused target delivered.
    #[tokio::test]
    async fn a_pause_during_a_reload_holds() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::parse(
            "[targets.t]\nurl = \"http://127.0.0.1:9/\"\n",
            Path::new("/"),
        )
        .unwrap();
        let sled = SledStore::open(dir.path(), Durability::Buffered)
            .unwrap()
            .into_store();
        let slow = Arc::new(SlowReads {
            inner: sled.targets.clone(),
            go: Semaphore::new(0),
            reading: tokio::sync::Notify::new(),
        });
        let store = Store {
            targets: slow.clone(),
            ..sled
        };
        let telemetry = Arc::new(Telemetry::new());
        // The read at start is not the one under test.
        slow.go.add_permits(1);
        let dispatcher = Dispatcher::new(Arc::new(config), &store, telemetry)
            .await
            .unwrap();
        slow.reading.notified().await;
        dispatcher.start();
        slow.reading.notified().await;
        let d = dispatcher.clone();
        let pause = tokio::spawn(async move { d.control_target("t", TargetAction::Pause).await });
        // Give the pause its chance to run while the read is held.
        tokio::time::sleep(Duration::from_millis(100)).await;
        slow.go.add_permits(1);
        let status = pause.await.unwrap().unwrap().unwrap();
        assert!(status.paused);
        let t = dispatcher.target("t").unwrap();
        for _ in 0..100 {
            if t.owned.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(t.owned.load(Ordering::SeqCst), "never took the target");
        assert!(t.state().control.paused, "the reload undid the pause");
        dispatcher.shutdown(Duration::from_secs(1)).await;
    }
}
