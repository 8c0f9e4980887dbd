//! The one wasmtime engine every plugin shares, and the epoch ticker that
//! enforces call time limits.
//!
//! A tokio timeout cannot stop a running wasm call: the code is spinning on a
//! blocking thread. Epoch interruption can: a background thread bumps the
//! engine's epoch every tick, and a call whose deadline (in ticks) passes
//! traps at its next loop header or function entry.

use std::time::Duration;

use anyhow::Result;
use wasmtime::{Config, Engine};

/// Granularity of time limits.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Builds the engine and starts its epoch ticker thread.
pub fn new_engine(meter_fuel: bool) -> Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.consume_fuel(meter_fuel);
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    let engine = Engine::new(&config)?;
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("hookyard-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })?;
    Ok(engine)
}

/// Epoch ticks that cover `timeout` (at least one full tick more, so a call
/// never gets less than its budget).
pub fn deadline_ticks(timeout: Duration) -> u64 {
    (timeout.as_micros() / EPOCH_TICK.as_micros()) as u64 + 1
}
