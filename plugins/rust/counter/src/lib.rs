//! Counts events with the plain read-add-write a plugin author writes:
//! `kv-get`, add one, `kv-set`. Each event is delivered to the `target`
//! config key (default `sink`) with its number in `x-count`, so a test can
//! check that the numbers handed out are exactly 1..N: none lost to a race,
//! none applied twice.

/// Bindings generated from `wit/plugin.wit`.
mod bindings {
    #![allow(clippy::too_many_arguments)]
    wit_bindgen::generate!({
        world: "plugin",
        path: "../../../wit",
        default_bindings_module: "bindings",
    });
}

use bindings::hookyard::plugin::host;
use bindings::hookyard::plugin::types::Delivery;
use bindings::{Event, Guest, Outcome};

const KEY: &str = "count";

struct Counter;

impl Guest for Counter {
    fn handle(_event: Event) -> Result<Outcome, String> {
        let target = host::config()
            .into_iter()
            .find(|(k, _)| k == "target")
            .map_or_else(|| "sink".to_owned(), |(_, v)| v);
        let count = host::kv_get(KEY)
            .map(|v| String::from_utf8_lossy(&v).parse::<u64>())
            .transpose()
            .map_err(|e| format!("stored count is not a number: {e}"))?
            .unwrap_or(0)
            + 1;
        host::kv_set(KEY, count.to_string().as_bytes());
        Ok(Outcome::Deliver(vec![Delivery {
            target,
            headers: vec![("x-count".to_owned(), count.to_string())],
            body: None,
        }]))
    }
}

bindings::export!(Counter);
