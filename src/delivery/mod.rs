//! Delivery: one dispatcher task per target walks that target's part of the
//! time-ordered schedule in the store and runs attempts within the target's
//! policy (pause, disable, circuit breaker, concurrency and rate limits).
//!
//! The schedule lives only in the store; the dispatcher keeps nothing but
//! the attempts in flight and each target's health. So a restart (or a
//! crash) resumes every scheduled delivery by scanning the schedule again,
//! and a target at its limit simply leaves its deliveries waiting there —
//! they never burn attempts while they wait.

pub mod compress;
pub mod forward;
pub mod headers;
pub mod ops;
mod ownership;
pub mod recent;
mod reconfigure;
pub mod retry;
pub mod send;
mod slots;
pub mod ssrf;
pub mod state;

use std::collections::{BTreeMap, HashSet};
use std::iter::Peekable;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use anyhow::Result;
use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::config::{Config, TargetConfig};
use crate::model::id::now_ms;
use crate::model::records::DeliveryStatus;
use crate::source::rate_limit::TokenBucket;
use crate::store::{DeliveryQueue, Store, TargetStates};
use crate::telemetry::{
    AttemptFinished, DeliveryFinished, DispatcherRestarted, TargetState as StateLabel, Telemetry,
};
use reconfigure::{load_control, write_control};
use slots::Slots;
use state::{Control, Gate, TargetState};

/// Longest a target's dispatcher sleeps without looking at the schedule, so
/// a missed wake-up (or a clock step) costs at most this much latency.
const IDLE_RESCAN: Duration = Duration::from_secs(1);

/// A store that is down fails every target's reads and records alike:
/// logged once per period, with the count held back.
static STORE_ERRORS: crate::telemetry::throttle::Throttle =
    crate::telemetry::throttle::Throttle::new(Duration::from_secs(10));

/// How long a claim outlives its attempt's time limit: room to record the
/// result (one short transaction). Longer only delays the takeover of a
/// dead node's deliveries.
const CLAIM_MARGIN: Duration = Duration::from_secs(5);

/// Most due entries read from the store per scan. They are claimed at once
/// and started as the target's limits allow, so the schedule is scanned
/// once per batch, not once per finished attempt (a scan walks past every
/// claimed entry at the head of the range first).
const BATCH: usize = 256;

/// Pause before a target's dispatcher that panicked is started again, so a
/// panic that repeats costs a log line a second instead of a busy loop.
const RESTART_PAUSE: Duration = Duration::from_secs(1);

/// Runs due deliveries for every configured target.
pub struct Dispatcher {
    store: Arc<dyn DeliveryQueue>,
    states: Arc<dyn TargetStates>,
    /// Refuses private addresses at connect time (the SSRF guard).
    guarded: reqwest::Client,
    /// For targets with `allow_private = true`.
    open: reqwest::Client,
    /// `delivery.max_in_flight`.
    global: Slots,
    /// Changed only by a reload; a target removed from it stops starting
    /// attempts while those it runs finish.
    targets: RwLock<BTreeMap<String, Arc<Target>>>,
    telemetry: Arc<Telemetry>,
    stopping: watch::Sender<bool>,
    active: AtomicUsize,
    drained: Notify,
    /// Wakes the ownership loop: targets were added or removed.
    ownership_changed: Notify,
    /// Events routing just had in hand, for their first attempts.
    pub recent: recent::RecentEvents,
}

/// One configured target and its live state.
pub struct Target {
    pub name: String,
    /// Swapped by a reload; an attempt uses the one it started with.
    config: ArcSwap<TargetConfig>,
    wake: Notify,
    /// Deliveries claimed by an attempt in flight (skipped by scans).
    claimed: Mutex<HashSet<String>>,
    slots: Slots,
    bucket: ArcSwapOption<RateLimit>,
    state: Mutex<TargetState>,
    /// Held while the state moves between memory and the store (an
    /// operator's change and its write, a reload's read and its apply, a
    /// background save), so a reload never brings back what a change made
    /// while its read was under way, and the last write carries the
    /// latest state.
    control_io: tokio::sync::Mutex<()>,
    /// Scheduled deliveries (queue depth), counted at start and kept in step.
    scheduled: AtomicI64,
    /// Dead deliveries (the dead-letter queue), counted at start and kept
    /// in step, so showing a target never scans the dead-letter index.
    dead: AtomicI64,
    /// This process dispatches the target (always, on the embedded store;
    /// while it holds the target's lease, in a cluster).
    owned: AtomicBool,
    /// Given up for another node: no new claims; the lease goes back once
    /// the attempts in flight end.
    releasing: AtomicBool,
    /// Removed from the config by a reload: its dispatcher stops.
    removed: AtomicBool,
}

/// A target's token bucket and the limit it was made for, so a reload
/// that keeps the limit keeps the bucket (and what it has spent).
struct RateLimit {
    limit: (f64, f64),
    bucket: TokenBucket,
}

impl Target {
    fn new(
        name: &str,
        config: &TargetConfig,
        control: Control,
        scheduled: i64,
        dead: i64,
    ) -> Target {
        Target {
            name: name.to_string(),
            config: ArcSwap::from_pointee(config.clone()),
            wake: Notify::new(),
            claimed: Mutex::new(HashSet::new()),
            slots: Slots::new(config.policy.max_in_flight),
            bucket: ArcSwapOption::new(config.policy.rate_limit.map(|limit| {
                Arc::new(RateLimit {
                    limit,
                    bucket: TokenBucket::new(limit.0, limit.1),
                })
            })),
            state: Mutex::new(TargetState {
                control,
                ..TargetState::default()
            }),
            control_io: tokio::sync::Mutex::new(()),
            scheduled: AtomicI64::new(scheduled),
            dead: AtomicI64::new(dead),
            owned: AtomicBool::new(false),
            releasing: AtomicBool::new(false),
            removed: AtomicBool::new(false),
        }
    }

    /// The target's config now (a reload may swap it at any time: take it
    /// once per attempt).
    pub fn config(&self) -> Arc<TargetConfig> {
        self.config.load_full()
    }

    fn state(&self) -> MutexGuard<'_, TargetState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn claimed(&self) -> MutexGuard<'_, HashSet<String>> {
        self.claimed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Deliveries waiting on this target's schedule.
    pub fn scheduled(&self) -> i64 {
        self.scheduled.load(Ordering::Relaxed).max(0)
    }

    /// How long a claim on one of this target's deliveries holds: its
    /// attempt's time limit plus a margin. Past it, another process of a
    /// cluster may take the delivery over (and this one's late result is
    /// fenced out).
    pub fn claim_lease(&self) -> Duration {
        self.config.load().policy.timeout + CLAIM_MARGIN
    }

    /// Dead deliveries of this target.
    pub fn dead(&self) -> i64 {
        self.dead.load(Ordering::Relaxed).max(0)
    }

    pub fn in_flight(&self) -> usize {
        self.state().in_flight
    }

    /// One word for dashboards: disabled and paused win over the circuit.
    pub fn state_label(&self) -> StateLabel {
        let s = self.state();
        if s.control.disabled.is_some() {
            StateLabel::Disabled
        } else if s.control.paused {
            StateLabel::Paused
        } else {
            match s.circuit(now_ms()) {
                "open" => StateLabel::Open,
                "half_open" => StateLabel::HalfOpen,
                _ => StateLabel::Closed,
            }
        }
    }
}

/// Claimed due entries a round has not started. Dropping it releases their
/// claims, on every way out of the round, unwinding from a panic included:
/// a claim left behind would hide its delivery from every later scan.
struct Unstarted<'a> {
    t: &'a Target,
    due: Peekable<std::vec::IntoIter<(u64, String)>>,
}

impl Drop for Unstarted<'_> {
    fn drop(&mut self) {
        let mut claimed = self.t.claimed();
        for (_, id) in self.due.by_ref() {
            claimed.remove(&id);
        }
    }
}

/// What a finished attempt means for its target's dispatcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Finished {
    /// Recorded, the delivery ended, and the target's state is as it was:
    /// nothing the dispatcher waits for changed (what else was due, it has
    /// claimed already; what comes later wakes it).
    Ended,
    /// Recorded, and the dispatcher has to look again: a retry is due
    /// later, a probe ended, the circuit moved, or the entry had moved.
    Changed,
    /// Not recorded (the store is in trouble).
    Unrecorded,
}

/// Keeps a task running: each time the task from `spawn` panics, `died`
/// gets the panic message and, after `pause`, the task is spawned again.
/// Returns (with the number of restarts) when the task ends without
/// panicking, or when `stop` turns true.
async fn supervise(
    mut spawn: impl FnMut() -> JoinHandle<()>,
    pause: Duration,
    mut died: impl FnMut(String),
    mut stop: watch::Receiver<bool>,
) -> u32 {
    let mut restarts = 0;
    loop {
        let panic = match spawn().await {
            Ok(()) => return restarts,
            Err(e) if e.is_panic() => e.into_panic(),
            Err(_) => return restarts, // cancelled: the runtime is going away
        };
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        died(message);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|s| *s) => return restarts,
        }
        if *stop.borrow() {
            return restarts;
        }
        restarts += 1;
    }
}

impl Dispatcher {
    pub async fn new(
        config: Arc<Config>,
        store: &Store,
        telemetry: Arc<Telemetry>,
    ) -> Result<Arc<Dispatcher>> {
        // One client per trust level for every target: connections are
        // pooled per host.
        let builder = || {
            reqwest::Client::builder()
                .user_agent(concat!("hookyard/", env!("CARGO_PKG_VERSION")))
                .redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(64)
        };
        let guarded = builder()
            .dns_resolver(Arc::new(ssrf::GuardedResolver))
            .no_proxy()
            .build()?;
        let open = builder().build()?;
        let depth = store.queue.scheduled_per_target().await?;
        let dead = store.queue.dead_per_target().await?;
        let mut targets = BTreeMap::new();
        for (name, t) in &config.targets {
            let control = load_control(store.targets.as_ref(), name).await?;
            let target = Target::new(
                name,
                t,
                control,
                depth.get(name).copied().unwrap_or(0) as i64,
                dead.get(name).copied().unwrap_or(0) as i64,
            );
            targets.insert(name.clone(), Arc::new(target));
        }
        for (name, n) in &depth {
            if !targets.contains_key(name) {
                tracing::warn!(target_name = %name, scheduled = n, "deliveries are scheduled for a target that is no longer configured; they will be marked dead");
            }
        }
        Ok(Arc::new(Dispatcher {
            store: store.queue.clone(),
            states: store.targets.clone(),
            guarded,
            open,
            global: Slots::new(config.delivery.max_in_flight),
            targets: RwLock::new(targets),
            telemetry,
            stopping: watch::channel(false).0,
            active: AtomicUsize::new(0),
            drained: Notify::new(),
            ownership_changed: Notify::new(),
            recent: Default::default(),
        }))
    }

    /// Starts one dispatch task per target, each supervised (a panic in
    /// one is logged, counted and the task restarted, instead of that
    /// target silently never delivering again), and retires deliveries of
    /// targets removed from the config.
    pub fn start(self: &Arc<Self>) {
        for t in self.targets() {
            self.spawn_worker(t);
        }
        tokio::spawn(self.clone().retire_orphans());
        tokio::spawn(self.clone().keep_ownership());
    }

    /// Starts a target's supervised dispatch task.
    fn spawn_worker(self: &Arc<Self>, t: Arc<Target>) {
        let me = self.clone();
        let target = t.clone();
        let spawn = move || tokio::spawn(me.clone().work(target.clone()));
        let telemetry = self.telemetry.clone();
        let name = t.name.clone();
        let died = move |panic: String| {
            telemetry.emit(DispatcherRestarted {
                target: &name,
                panic: &panic,
                restart_in: RESTART_PAUSE,
            });
        };
        tokio::spawn(supervise(
            spawn,
            RESTART_PAUSE,
            died,
            self.stopping.subscribe(),
        ));
    }

    /// Tells the target's dispatcher its schedule changed.
    pub fn wake(&self, target: &str) {
        if let Some(t) = self.target(target) {
            t.wake.notify_one();
        }
    }

    /// Counts deliveries just put on `target`'s schedule.
    pub fn note_scheduled(&self, target: &str, n: i64) {
        if let Some(t) = self.target(target) {
            t.scheduled.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Counts dead deliveries removed by the retention sweep.
    pub fn note_swept_dead(&self, dead: &BTreeMap<String, usize>) {
        for (target, n) in dead {
            if let Some(t) = self.target(target) {
                t.dead.fetch_sub(*n as i64, Ordering::Relaxed);
            }
        }
    }

    pub fn target(&self, name: &str) -> Option<Arc<Target>> {
        self.map().get(name).cloned()
    }

    /// The configured targets, by name.
    pub fn targets(&self) -> Vec<Arc<Target>> {
        self.map().values().cloned().collect()
    }

    fn map(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Target>>> {
        self.targets.read().unwrap_or_else(|e| e.into_inner())
    }

    fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Stops starting attempts and waits (at most `grace`) for those in
    /// flight to finish and be recorded. What does not finish stays on the
    /// schedule and is retried after a restart.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        let _ = self.stopping.send(true);
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let notified = self.drained.notified();
            let left = self.active.load(Ordering::SeqCst);
            if left == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.active.load(Ordering::SeqCst);
            }
        }
    }

    async fn idle(&self, t: &Target, max: Duration) {
        let mut stop = self.stopping.subscribe();
        tokio::select! {
            _ = t.wake.notified() => {}
            _ = tokio::time::sleep(max) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }

    async fn work(self: Arc<Self>, t: Arc<Target>) {
        while !self.is_stopping() && !t.removed.load(Ordering::SeqCst) {
            if let Err(e) = self.dispatch(&t).await {
                if let Some(suppressed) = STORE_ERRORS.allow() {
                    tracing::error!(target_name = %t.name, error = format!("{e:#}"), suppressed, "reading the delivery schedule failed");
                }
                self.idle(&t, IDLE_RESCAN).await;
            }
        }
    }

    /// One round for a target: wait for its gate, read due deliveries and
    /// start as many as its limits allow.
    async fn dispatch(self: &Arc<Self>, t: &Arc<Target>) -> Result<()> {
        if !t.owned.load(Ordering::SeqCst) {
            // Another node dispatches it; ownership changes wake us.
            self.idle(t, IDLE_RESCAN).await;
            return Ok(());
        }
        let now = now_ms();
        let gate = t.state().gate(now);
        let probe = match gate {
            Gate::Wait(d) => {
                self.idle(t, d.unwrap_or(IDLE_RESCAN).min(IDLE_RESCAN))
                    .await;
                return Ok(());
            }
            Gate::Go { probe } => probe,
        };
        let want = if probe {
            1
        } else if t.bucket.load().is_some() {
            // Rate-limited: claim no more than can start now, so an
            // operator's retry of a waiting delivery is not refused as
            // "in flight" for seconds.
            t.slots.semaphore().available_permits().clamp(1, BATCH)
        } else {
            BATCH
        };
        // Entries claimed by attempts in flight sit at the head of the
        // range: read past them, then claim what is left under the lock (a
        // manual retry claims the same way, so only one of the two sends).
        let in_flight = t.claimed().len();
        let scanned = self
            .store
            .claim_due(&t.name, now, want + in_flight, t.claim_lease())
            .await?;
        // Fewer than asked for: nothing else is due now that this node may
        // claim. What becomes due later wakes the dispatcher (routing, an
        // operator, a finished attempt, which also reads when a retry is
        // due) or is found by the rescan.
        let drained = scanned.len() < want + in_flight;
        let due: Vec<(u64, String)> = {
            let mut claimed = t.claimed();
            let mut due = Vec::with_capacity(want);
            for (at, id) in scanned {
                if due.len() < want && claimed.insert(id.clone()) {
                    due.push((at, id));
                }
            }
            due
        };
        if due.is_empty() {
            // The earliest entry not in flight (those wake us when they
            // finish) decides how long to sleep.
            let in_flight = t.claimed().len();
            let head = self.store.upcoming(&t.name, in_flight + 1).await?;
            let next: Vec<(u64, String)> = {
                let claimed = t.claimed();
                head.into_iter()
                    .filter(|(_, id)| !claimed.contains(id))
                    .take(1)
                    .collect()
            };
            let sleep = match next.first() {
                Some(&(at, _)) if at > now => Duration::from_millis(at - now).min(IDLE_RESCAN),
                Some(_) => Duration::ZERO,
                None => IDLE_RESCAN,
            };
            if !sleep.is_zero() {
                self.idle(t, sleep).await;
            }
            return Ok(());
        }
        // Entries not started (stopping, paused, opened, or a panic) go
        // back to the schedule's next scan when this is dropped.
        let mut unstarted = Unstarted {
            t,
            due: due.into_iter().peekable(),
        };
        self.start_due(t, &mut unstarted.due, probe).await?;
        if drained && unstarted.due.peek().is_none() {
            // Claiming again at once would find only what just started: at
            // low rates that was a claim per event for nothing (a statement
            // of its own on PostgreSQL). A wake-up that came meanwhile
            // ends this wait at once.
            self.idle(t, IDLE_RESCAN).await;
        }
        Ok(())
    }

    /// Starts the claimed due entries one by one as slots, the global limit
    /// and the rate allow; returns early when stopping or when the target's
    /// gate closes, leaving the entries not started in `due` (an entry is
    /// taken from it only once it starts).
    async fn start_due(
        self: &Arc<Self>,
        t: &Arc<Target>,
        due: &mut Peekable<std::vec::IntoIter<(u64, String)>>,
        probe: bool,
    ) -> Result<()> {
        let mut stop = self.stopping.subscribe();
        while let Some((due_ms, id)) = due.peek().cloned() {
            let local = tokio::select! {
                p = t.slots.semaphore().clone().acquire_owned() => p?,
                _ = stop.wait_for(|s| *s) => return Ok(()),
            };
            let global = tokio::select! {
                p = self.global.semaphore().clone().acquire_owned() => p?,
                _ = stop.wait_for(|s| *s) => return Ok(()),
            };
            if let Some(limit) = t.bucket.load_full() {
                while let Err(wait) = limit.bucket.take() {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.wait_for(|s| *s) => return Ok(()),
                    }
                }
            }
            // The target may have been paused or opened while we waited.
            {
                let mut s = t.state();
                if s.gate(now_ms()) != (Gate::Go { probe })
                    || !t.owned.load(Ordering::SeqCst)
                    || t.removed.load(Ordering::SeqCst)
                {
                    return Ok(());
                }
                if probe {
                    s.probing = true;
                }
                s.in_flight += 1;
            }
            due.next();
            self.active.fetch_add(1, Ordering::SeqCst);
            let me = self.clone();
            let t2 = t.clone();
            tokio::spawn(async move {
                let finished = me.run_attempt(&t2, due_ms, &id, probe).await;
                if finished == Finished::Unrecorded {
                    // Recording failed (the store is in trouble): hold the
                    // claim a moment so the entry is not re-sent in a loop.
                    tokio::time::sleep(IDLE_RESCAN).await;
                }
                t2.claimed().remove(&id);
                drop(local);
                drop(global);
                if me.active.fetch_sub(1, Ordering::SeqCst) == 1 {
                    me.drained.notify_waiters();
                }
                if finished != Finished::Ended {
                    t2.wake.notify_one();
                }
            });
            if probe {
                break;
            }
        }
        Ok(())
    }

    /// Runs one attempt and applies its result.
    async fn run_attempt(&self, t: &Arc<Target>, due_ms: u64, id: &str, probe: bool) -> Finished {
        let config = t.config();
        let client = if config.policy.allow_private {
            &self.open
        } else {
            &self.guarded
        };
        let result = send::attempt(
            &*self.store,
            &self.recent,
            client,
            &t.name,
            Some(&config),
            due_ms,
            id,
        )
        .await;
        let now = now_ms();
        let persist = {
            let mut s = t.state();
            s.in_flight -= 1;
            if probe {
                s.probing = false;
            }
            match &result {
                Ok(send::Attempted::Ran(r)) => {
                    let changed = match &r.error {
                        None => s.on_success(now),
                        Some(e) => s.on_failure(now, r.status_code, e, probe, &config.policy),
                    };
                    changed.then(|| s.control.clone())
                }
                _ => None,
            }
        };
        let finished = match &result {
            Ok(send::Attempted::Ran(r)) if r.ended().is_some() && !probe && persist.is_none() => {
                Finished::Ended
            }
            Ok(_) => Finished::Changed,
            Err(_) => Finished::Unrecorded,
        };
        match result {
            Ok(send::Attempted::Ran(r)) => {
                self.telemetry.emit(AttemptFinished {
                    target: &t.name,
                    result: r.result,
                    latency: r.latency,
                });
                if let Some(result) = r.ended() {
                    t.scheduled.fetch_sub(1, Ordering::Relaxed);
                    self.telemetry.emit(DeliveryFinished {
                        target: &t.name,
                        result,
                    });
                }
                if r.status == DeliveryStatus::Dead {
                    t.dead.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(send::Attempted::Gone) => {
                t.scheduled.fetch_sub(1, Ordering::Relaxed);
            }
            Ok(send::Attempted::Skipped) => {}
            Err(e) => {
                if let Some(suppressed) = STORE_ERRORS.allow() {
                    tracing::error!(delivery = %id, target_name = %t.name, error = format!("{e:#}"), suppressed, "delivery attempt could not be recorded");
                }
            }
        }
        if let Some(control) = persist {
            self.log_transition(t, &control, now);
            self.save_control(t);
        }
        finished
    }

    fn log_transition(&self, t: &Target, c: &Control, now: u64) {
        if let Some(d) = &c.disabled {
            tracing::warn!(target_name = %t.name, reason = %d.reason, "target disabled; its deliveries wait until an operator enables it");
        } else if let Some(until) = c.open_until {
            tracing::warn!(target_name = %t.name, failures = c.consecutive_failures, reopen_in_ms = until.saturating_sub(now), "circuit open: deliveries wait, then one probe");
        } else {
            tracing::info!(target_name = %t.name, "circuit closed: delivering again");
        }
    }

    /// Persists a target's operator and circuit state. The state in memory
    /// is what counts while running; the write is for the next start and
    /// other nodes, so nobody waits for it here. It writes the state as it
    /// is when its turn comes, so writes that overtake each other cannot
    /// leave an older state in the store.
    pub(crate) fn save_control(&self, t: &Arc<Target>) {
        let states = self.states.clone();
        let t = t.clone();
        tokio::spawn(async move {
            let _io = t.control_io.lock().await;
            let control = t.state().control.clone();
            if let Err(e) = write_control(&*states, &t.name, &control).await {
                tracing::error!(target_name = %t.name, error = format!("{e:#}"), "saving the target's state failed");
            }
        });
    }

    /// Marks dead every delivery scheduled for a target that is no longer
    /// configured, so they show in the dead-letter queue (and can be
    /// retried if the target comes back) instead of waiting forever.
    async fn retire_orphans(self: Arc<Self>) {
        let depth = match self.store.scheduled_per_target().await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "scanning the schedule failed");
                return;
            }
        };
        let orphans: Vec<String> = {
            let map = self.map();
            depth
                .keys()
                .filter(|n| !map.contains_key(*n))
                .cloned()
                .collect()
        };
        self.retire(&orphans).await;
    }

    /// Marks dead every delivery scheduled for these targets, which are
    /// not configured (a reload removed them after their attempts ended,
    /// or they were gone at start).
    async fn retire(&self, names: &[String]) {
        for name in names {
            // Configured again (a later reload) before this ran.
            while self.target(name).is_none() {
                let due = match self
                    .store
                    .claim_due(name, u64::MAX, 256, Duration::from_secs(60))
                    .await
                {
                    Ok(d) => d,
                    Err(_) => break,
                };
                if due.is_empty() {
                    break;
                }
                for (due_ms, id) in due {
                    match send::attempt(
                        &*self.store,
                        &self.recent,
                        &self.guarded,
                        name,
                        None,
                        due_ms,
                        &id,
                    )
                    .await
                    {
                        Ok(send::Attempted::Ran(r)) => {
                            if let Some(result) = r.ended() {
                                self.telemetry.emit(DeliveryFinished {
                                    target: name,
                                    result,
                                });
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::error!(delivery = %id, error = format!("{e:#}"), "could not retire a delivery of a removed target");
                            return;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[tokio::test]
    async fn a_panicking_task_is_reported_and_restarted() {
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        let spawn = move || {
            let r = r.clone();
            tokio::spawn(async move {
                if r.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("boom {}", r.load(Ordering::SeqCst));
                }
            })
        };
        let mut deaths = Vec::new();
        let (_tx, rx) = watch::channel(false);
        let restarts = supervise(spawn, Duration::from_millis(1), |m| deaths.push(m), rx).await;
        assert_eq!(restarts, 2);
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert_eq!(deaths, ["boom 1", "boom 2"]);
    }

    #[tokio::test]
    async fn no_restart_once_stopping() {
        let (tx, rx) = watch::channel(false);
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        let spawn = move || {
            r.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async { panic!("always") })
        };
        let stopper = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = tx.send(true);
        });
        let restarts = supervise(spawn, Duration::from_secs(3600), |_| {}, rx).await;
        stopper.await.unwrap();
        assert_eq!((restarts, runs.load(Ordering::SeqCst)), (0, 1));
    }

    #[test]
    fn unstarted_claims_are_released_even_by_a_panic() {
        let config = crate::config::Config::parse(
            "[targets.t]\nurl = \"http://example.invalid/\"\n",
            std::path::Path::new("/"),
        )
        .unwrap();
        let t = Target::new("t", &config.targets["t"], Control::default(), 0, 0);
        t.owned.store(true, Ordering::SeqCst);
        let due: Vec<(u64, String)> = (0..3).map(|i| (i, format!("msg_{i}"))).collect();
        t.claimed().extend(due.iter().map(|(_, id)| id.clone()));
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut unstarted = Unstarted {
                t: &t,
                due: due.into_iter().peekable(),
            };
            unstarted.due.next(); // started: its attempt owns the claim
            panic!("in the middle of a round");
        }));
        assert!(outcome.is_err());
        let left: Vec<String> = t.claimed().iter().cloned().collect();
        assert_eq!(left, ["msg_0"]);
    }
}
