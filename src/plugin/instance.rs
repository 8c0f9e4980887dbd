//! A loaded plugin: its compiled component, pre-linked once (`PluginPre`),
//! and a small pool of warm instances reused across events. Instantiating is
//! cheap for Rust plugins (~30 µs) but not for Python or JS (~1 ms), and a
//! warm call is 2–36 µs, so reuse is the default. An instance that trapped is
//! discarded: its memory may be mid-update. An instance unused for
//! [`WARM_IDLE`] is dropped too (see [`LoadedPlugin::take_idle`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store, Trap};

use super::bindings::{Event, Level, Outcome};
use super::contract::{Contract, ContractPlugin, ContractPre};
use super::engine::deadline_ticks;
use super::host::{PluginIdentity, PluginState};
use super::kv::{KvTurn, KvTxn};
use crate::config::PluginLimits;

/// Why a plugin call produced no outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The plugin returned `err(message)`.
    Returned(String),
    /// Time limit hit (epoch interruption).
    Timeout(String),
    /// Memory limit hit (store limiter).
    OutOfMemory(String),
    /// Any other trap or instantiation failure.
    Trap(String),
    /// The call broke a host-side limit (a KV key or value too large).
    Limit(String),
    /// hookyard is shutting down: the call did not run, and the event is
    /// routed after the restart.
    ShuttingDown,
}

impl CallError {
    /// Appends what the plugin printed to stderr before failing (its panic
    /// message, usually), which says more than the trap itself.
    fn with_stderr(self, stderr: &str) -> CallError {
        if stderr.is_empty() {
            return self;
        }
        let add = |m: String| format!("{m}; plugin stderr: {stderr}");
        match self {
            CallError::Returned(m) => CallError::Returned(add(m)),
            CallError::Timeout(m) => CallError::Timeout(add(m)),
            CallError::OutOfMemory(m) => CallError::OutOfMemory(add(m)),
            CallError::Trap(m) => CallError::Trap(add(m)),
            CallError::Limit(m) => CallError::Limit(add(m)),
            CallError::ShuttingDown => CallError::ShuttingDown,
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Returned(m) => write!(f, "plugin returned an error: {m}"),
            CallError::Timeout(m) => write!(f, "plugin timed out: {m}"),
            CallError::OutOfMemory(m) => write!(f, "plugin ran out of memory: {m}"),
            CallError::Trap(m) => write!(f, "plugin trapped: {m}"),
            CallError::Limit(m) => write!(f, "plugin broke a limit: {m}"),
            CallError::ShuttingDown => write!(f, "hookyard is shutting down"),
        }
    }
}

/// The result of one call, with the log lines when they were captured.
pub struct CallReport {
    pub result: Result<Outcome, CallError>,
    pub logs: Vec<(Level, String)>,
    pub fresh_instance: bool,
    /// Log lines (and their bytes) past the call's log budget, not written.
    pub log_cut: (u64, u64),
    /// What the call read and wrote in its KV state.
    pub txn: KvTxn,
    /// The call's place in its plugin's commit order, when it used KV
    /// (see `kv.rs`).
    pub kv_turn: Option<KvTurn>,
}

impl CallReport {
    /// A call that never ran.
    pub fn failed(error: CallError) -> CallReport {
        CallReport {
            result: Err(error),
            logs: vec![],
            fresh_instance: true,
            log_cut: (0, 0),
            txn: KvTxn::default(),
            kv_turn: None,
        }
    }
}

/// How long a warm instance may sit unused before its memory is given
/// back. A Python instance keeps ~37 MiB of linear memory resident and a
/// JavaScript one ~15 MiB once they have served a burst, which is most of
/// what a router holds after the burst; instantiating again costs ~1 ms
/// (Python, JS) or ~30 µs (Rust), paid once per quiet spell, and only by a
/// plugin that saw no event for this long.
pub const WARM_IDLE: Duration = Duration::from_secs(5);

/// An instance's store; dropping it unmaps the instance's linear memory.
pub struct Warm {
    store: Store<PluginState>,
    bindings: ContractPlugin,
}

/// A warm instance in the pool, and since when it has been unused.
struct Pooled {
    warm: Warm,
    since: Instant,
}

/// One plugin, ready to be called from any thread.
pub struct LoadedPlugin {
    pub identity: Arc<PluginIdentity>,
    pub sha256: String,
    pub limits: PluginLimits,
    engine: Engine,
    pre: ContractPre,
    /// Oldest returned first: calls take the newest, so the instances that
    /// went idle form a prefix.
    pool: Mutex<Vec<Pooled>>,
    fuel_metered: bool,
}

/// The linker every plugin is instantiated against: WASI (no files, no
/// sockets) plus hookyard's host interface, in every contract version.
pub fn new_linker(engine: &Engine) -> Result<Linker<PluginState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    super::contract::add_to_linker(&mut linker)?;
    Ok(linker)
}

impl LoadedPlugin {
    /// Links a compiled component against the plugin world and finds which
    /// contract it was built against. Errors say whether it imports
    /// something hookyard lacks or exports no `handle` hookyard knows.
    pub fn link(
        engine: &Engine,
        linker: &Linker<PluginState>,
        identity: Arc<PluginIdentity>,
        limits: PluginLimits,
        component: &Component,
        sha256: String,
        fuel_metered: bool,
    ) -> Result<LoadedPlugin> {
        let instance_pre = linker
            .instantiate_pre(component)
            .map_err(anyhow::Error::from)
            .context("it imports something hookyard does not provide")?;
        let pre = ContractPre::detect(instance_pre)?;
        Ok(LoadedPlugin {
            identity,
            sha256,
            limits,
            engine: engine.clone(),
            pre,
            pool: Mutex::new(Vec::new()),
            fuel_metered,
        })
    }

    pub fn name(&self) -> &str {
        &self.identity.name
    }

    /// The plugin contract the component was built against.
    pub fn contract(&self) -> Contract {
        self.pre.contract()
    }

    fn instantiate(&self) -> Result<Warm, CallError> {
        let mut store = Store::new(
            &self.engine,
            PluginState::new(self.identity.clone(), self.limits.memory),
        );
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(deadline_ticks(self.limits.timeout));
        self.refuel(&mut store);
        let bindings = match self.pre.instantiate(&mut store) {
            Ok(b) => b,
            Err(e) => return Err(self.classify(e, store.data().limits.memory_refused())),
        };
        Ok(Warm { store, bindings })
    }

    /// Runs `handle` on the event. Blocking: call from a blocking thread.
    pub fn call(&self, event: &Event, capture_logs: bool) -> CallReport {
        let pooled = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let fresh_instance = pooled.is_none();
        let mut warm = match pooled {
            Some(p) => p.warm,
            None => match self.instantiate() {
                Ok(w) => w,
                Err(e) => return CallReport::failed(e),
            },
        };
        {
            let state = warm.store.data_mut();
            state.captured = capture_logs.then(Vec::new);
            state.violation = None;
            state.log = super::host::LogBudget::full();
            state.txn = KvTxn::default();
            state.kv_turn = None;
            state.kv_locked = false;
            state.stderr.take();
            state.limits.reset();
        }
        warm.store
            .set_epoch_deadline(deadline_ticks(self.limits.timeout));
        self.refuel(&mut warm.store);
        let started = Instant::now();
        let raw = warm.bindings.call_handle(&mut warm.store, event);
        let state = warm.store.data_mut();
        let logs = state.captured.take().unwrap_or_default();
        let budget = state.log;
        let log_cut = (budget.cut_lines, budget.cut_bytes);
        if budget.cut_lines > 0 {
            tracing::warn!(
                plugin = %self.name(),
                lines = budget.cut_lines,
                bytes = budget.cut_bytes,
                "plugin log lines past the per-call limit were not written"
            );
        }
        let violation = state.violation.take();
        let mut txn = std::mem::take(&mut state.txn);
        // A call that succeeded makes its writes visible to the next calls
        // (which wait for the plugin's KV lock it still holds); any call
        // that took the lock keeps its place in the commit order (its reads
        // are checked even when it failed).
        let wrote = matches!(raw, Ok(Ok(_))) && violation.is_none() && !txn.writes.is_empty();
        if wrote {
            txn.token = Some(self.identity.kv.publish(&txn.writes));
        }
        let mut kv_turn = state.kv_turn.take();
        if let Some(turn) = &mut kv_turn {
            let sole_writer = self
                .identity
                .store
                .as_ref()
                .is_some_and(|s| s.sole_writer());
            // Where other processes commit to the same keys, a call that
            // wrote keeps the lock until its commit is ordered (see kv.rs);
            // otherwise routing lets go once the event's plugins ran.
            if wrote && !sole_writer {
                turn.keep_lock_until_ordered();
            }
        }
        let result = match (raw, violation) {
            (Ok(_), Some(broken)) => Err(CallError::Limit(broken)),
            (Ok(Ok(outcome)), None) => Ok(outcome),
            (Ok(Err(message)), None) => Err(CallError::Returned(message)),
            (Err(e), _) => {
                tracing::debug!(plugin = %self.name(), elapsed = ?started.elapsed(), "plugin call trapped");
                let state = warm.store.data();
                let stderr = state.stderr.take();
                let error = self.classify(e, state.limits.memory_refused());
                return CallReport {
                    result: Err(error.with_stderr(&stderr)),
                    logs,
                    fresh_instance,
                    log_cut,
                    txn,
                    kv_turn,
                };
            }
        };
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < self.limits.warm_instances {
            pool.push(Pooled {
                warm,
                since: Instant::now(),
            });
        }
        CallReport {
            result,
            logs,
            fresh_instance,
            log_cut,
            txn,
            kv_turn,
        }
    }

    /// Instances in the pool now.
    pub fn warm_count(&self) -> usize {
        self.pool.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Takes the warm instances unused for [`WARM_IDLE`] out of the pool,
    /// for the caller to drop off the async runtime (unmapping a Python
    /// instance's memory takes a while).
    pub fn take_idle(&self, now: Instant) -> Vec<Warm> {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        let idle = pool
            .iter()
            .take_while(|p| now.saturating_duration_since(p.since) >= WARM_IDLE)
            .count();
        pool.drain(..idle).map(|p| p.warm).collect()
    }

    /// Gives the store its per-call fuel when the engine meters fuel (any
    /// plugin configured `fuel`); plugins without a budget get no limit.
    fn refuel(&self, store: &mut Store<PluginState>) {
        if self.fuel_metered {
            let _ = store.set_fuel(self.limits.fuel.unwrap_or(u64::MAX));
        }
    }

    /// What a trap means for the operator. `memory_refused` is the
    /// limiter's record of the call: a refused grow is what traps the call,
    /// whatever wording the trap has.
    fn classify(&self, e: wasmtime::Error, memory_refused: bool) -> CallError {
        if memory_refused {
            return CallError::OutOfMemory(format!(
                "exceeded its memory limit of {} bytes",
                self.limits.memory
            ));
        }
        let e = anyhow::Error::from(e);
        match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => CallError::Timeout(format!(
                "exceeded its time limit of {:?}",
                self.limits.timeout
            )),
            Some(Trap::OutOfFuel) => CallError::Timeout(format!(
                "used up its fuel budget of {} units",
                self.limits.fuel.unwrap_or(u64::MAX)
            )),
            // The root cause is the trap itself ("wasm `unreachable`
            // instruction executed"); the outer layers are a long wasm
            // backtrace.
            _ => CallError::Trap(truncate(&e.root_cause().to_string(), 2048)),
        }
    }
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
