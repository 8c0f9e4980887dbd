//! Delivery: the dispatcher that walks the time-ordered schedule in the
//! store and runs attempts, and the code that sends, signs and records them.
//!
//! The schedule lives only in the store; the dispatcher keeps nothing but
//! the set of attempts in flight. So a restart (or a crash) resumes every
//! scheduled delivery by simply scanning the schedule again.

pub mod retry;
pub mod send;
pub mod signing;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use tokio::sync::{Notify, Semaphore};

use crate::config::Config;
use crate::id::now_ms;
use crate::store::Storage;

/// Longest the dispatcher sleeps without looking at the schedule, so a
/// missed wake-up (or a clock step) costs at most this much latency.
const IDLE_RESCAN: Duration = Duration::from_secs(1);

/// Runs due deliveries, bounded by `delivery.max_in_flight`.
pub struct Dispatcher {
    config: Arc<Config>,
    store: Arc<dyn Storage>,
    client: reqwest::Client,
    wake: Notify,
    in_flight: Mutex<HashSet<String>>,
    slots: Arc<Semaphore>,
}

impl Dispatcher {
    pub fn new(config: Arc<Config>, store: Arc<dyn Storage>) -> Result<Arc<Dispatcher>> {
        // One client for every target: connections are pooled per host.
        let client = reqwest::Client::builder()
            .user_agent(concat!("hookyard/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(64)
            .build()?;
        let slots = Arc::new(Semaphore::new(config.delivery.max_in_flight));
        Ok(Arc::new(Dispatcher {
            config,
            store,
            client,
            wake: Notify::new(),
            in_flight: Mutex::new(HashSet::new()),
            slots,
        }))
    }

    /// Starts the dispatch loop.
    pub fn start(self: &Arc<Self>) {
        tokio::spawn(self.clone().run());
    }

    /// Tells the dispatcher the schedule changed.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    async fn run(self: Arc<Self>) {
        loop {
            let woken = match self.dispatch_due().await {
                Ok(sleep) => tokio::time::timeout(sleep, self.wake.notified()).await,
                Err(e) => {
                    tracing::error!(
                        error = format!("{e:#}"),
                        "reading the delivery schedule failed"
                    );
                    tokio::time::timeout(IDLE_RESCAN, self.wake.notified()).await
                }
            };
            let _ = woken;
        }
    }

    /// Starts every due delivery there is room for; returns how long to
    /// sleep before looking again (unless woken earlier).
    async fn dispatch_due(self: &Arc<Self>) -> Result<Duration> {
        loop {
            let room = self.slots.available_permits();
            if room == 0 {
                return Ok(IDLE_RESCAN);
            }
            let now = now_ms();
            let due = {
                let in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
                self.store.due(now, room, &|id| in_flight.contains(id))?
            };
            if due.is_empty() {
                // The earliest entry not already in flight (those wake us
                // when they finish) decides how long to sleep.
                let next = {
                    let in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
                    self.store.due(u64::MAX, 1, &|id| in_flight.contains(id))?
                };
                let sleep = match next.first() {
                    Some(&(at, _)) if at > now => Duration::from_millis(at - now).min(IDLE_RESCAN),
                    _ => IDLE_RESCAN,
                };
                return Ok(sleep);
            }
            for (due_ms, id) in due {
                let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                    return Ok(IDLE_RESCAN);
                };
                self.in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id.clone());
                let me = self.clone();
                tokio::spawn(async move {
                    if let Err(e) =
                        send::attempt(&me.config, &*me.store, &me.client, due_ms, &id).await
                    {
                        tracing::error!(delivery = %id, error = format!("{e:#}"), "delivery attempt could not be recorded");
                    }
                    me.in_flight
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&id);
                    drop(permit);
                    me.wake();
                });
            }
        }
    }
}
