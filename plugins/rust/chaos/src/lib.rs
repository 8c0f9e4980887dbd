//! Misbehaving test plugin for hookyard.
//!
//! Exercises the host's failure handling (errors, traps, timeouts, memory
//! limits) from one plugin file. The behaviour comes from the config key
//! `mode`, and a JSON body with a string field `mode` overrides it per event.

/// Bindings generated from `wit/plugin.wit`.
mod bindings {
    // The generated ABI shim for `handle` takes the event's fields flattened
    // into one argument each, which clippy would otherwise flag.
    #![allow(clippy::too_many_arguments)]
    wit_bindgen::generate!({
        world: "plugin",
        path: "../../../wit",
        default_bindings_module: "bindings",
    });
}

use bindings::hookyard::plugin::host::{self, Level};
use bindings::hookyard::plugin::types::Delivery;
use bindings::{Event, Guest, Outcome};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

/// Events handled by this instance (instance memory, not host state).
static CALLS: AtomicU64 = AtomicU64::new(0);

/// Target for `ok` mode when the config has no `target`.
const DEFAULT_TARGET: &str = "sink";
/// Size of each chunk `alloc` mode hoards.
const CHUNK: usize = 1 << 20;

struct Chaos;

impl Guest for Chaos {
    fn handle(event: Event) -> Result<Outcome, String> {
        let config = host::config();
        let mode = body_mode(&event.body)
            .or_else(|| config_value(&config, "mode"))
            .unwrap_or_else(|| "ok".to_owned());
        host::log(
            Level::Debug,
            &format!("event {} in mode {mode:?}", event.id),
        );

        match mode.as_str() {
            "ok" => Ok(Outcome::Deliver(vec![Delivery {
                target: config_value(&config, "target")
                    .unwrap_or_else(|| DEFAULT_TARGET.to_owned()),
                // How many events this instance has handled: shows whether
                // the host reuses warm instances or starts fresh ones.
                headers: vec![(
                    "x-instance-calls".to_owned(),
                    CALLS.fetch_add(1, Ordering::Relaxed).wrapping_add(1).to_string(),
                )],
                body: None,
            }])),
            "error" => Err("chaos plugin asked to fail".to_owned()),
            "trap" => panic!("chaos plugin trapping on purpose"),
            "loop" => spin_forever(),
            "alloc" => hoard_memory(),
            "drop" => Ok(Outcome::Drop("chaos plugin dropping".to_owned())),
            other => Err(format!("unknown chaos mode {other:?}")),
        }
    }
}

/// The per-event override: a string `mode` field in a JSON body.
fn body_mode(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get("mode")?.as_str().map(str::to_owned)
}

/// Looks up a plugin config key.
fn config_value(config: &[(String, String)], key: &str) -> Option<String> {
    config
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

/// Never returns; `black_box` keeps the counter observable so the loop cannot
/// be optimised away and the host's timeout has to stop it.
fn spin_forever() -> ! {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Grows memory until the host's limit (or the 4 GiB address space) stops it.
/// Chunks are non-zero and passed through `black_box` so the allocations and
/// the writes really happen instead of being elided or left as zero pages.
fn hoard_memory() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(black_box(vec![0xA5; CHUNK]));
        black_box(&hoard);
    }
}

bindings::export!(Chaos);
