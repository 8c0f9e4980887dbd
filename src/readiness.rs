//! Readiness: whether this process should be sent webhooks now. `/healthz`
//! says the process runs; `/readyz` (and the `hookyard_ready` gauge) say
//! whether the store takes writes and both listeners serve; the store is probed in the background every
//! [`PROBE_EVERY`] so a load balancer's check never waits on the store.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::store::Upkeep;

/// How often the store is probed.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Longest a probe may take before it counts as a failure.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The latest probe's answer.
#[derive(Default)]
pub struct Readiness {
    ready: AtomicBool,
    reason: Mutex<Option<String>>,
    /// Set once a listener stops outside shutdown; not cleared (the
    /// process needs a restart).
    down: Mutex<Option<String>>,
}

impl Readiness {
    /// Probes `store` until the process ends; not ready until the first
    /// probe passes.
    pub fn start(store: Arc<dyn Upkeep>) -> Arc<Readiness> {
        let r = Arc::new(Readiness {
            ready: AtomicBool::new(false),
            reason: Mutex::new(Some("starting".into())),
            down: Mutex::new(None),
        });
        let weak = Arc::downgrade(&r);
        tokio::spawn(async move {
            loop {
                let probe = tokio::time::timeout(PROBE_TIMEOUT, store.ready()).await;
                let Some(r) = weak.upgrade() else { return };
                let reason = match probe {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(format!("the store cannot take writes: {e:#}")),
                    Err(_) => Some(format!("the store did not answer within {PROBE_TIMEOUT:?}")),
                };
                let was = r.ready.swap(reason.is_none(), Ordering::SeqCst);
                match (&reason, was) {
                    (None, false) => tracing::info!("ready"),
                    (Some(why), true) => tracing::warn!(reason = %why, "not ready"),
                    _ => {}
                }
                *r.reason.lock().unwrap_or_else(|e| e.into_inner()) = reason;
                drop(r);
                tokio::time::sleep(PROBE_EVERY).await;
            }
        });
        r
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && self.listener_fault().is_none()
    }

    /// Why not, when not ready.
    pub fn reason(&self) -> Option<String> {
        self.listener_fault().or_else(|| {
            self.reason
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        })
    }

    pub fn listener_down(&self, why: String) {
        *self.down.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
    }

    fn listener_fault(&self) -> Option<String> {
        self.down.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
