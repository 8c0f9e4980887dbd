//! A plugin pinned to the first contract, `hookyard:plugin@0.1.0`
//! (`wit/v0.1.0/plugin.wit`), which has no event version. It stays in the
//! tree, built like the others, so the tests can show a component built
//! against 0.1.0 loading and running next to 0.2.0 ones: it delivers every
//! event to the `target` config key (default `sink`) with
//! `x-plugin-contract: 0.1.0`, and logs through the 0.1.0 host interface.
//! Do not move it to a newer contract.

/// Bindings generated from the 0.1.0 WIT, not `wit/plugin.wit`.
mod bindings {
    #![allow(clippy::too_many_arguments)]
    wit_bindgen::generate!({
        world: "plugin",
        path: "../../../wit/v0.1.0",
        default_bindings_module: "bindings",
    });
}

use bindings::hookyard::plugin::host::{self, Level};
use bindings::hookyard::plugin::types::Delivery;
use bindings::{Event, Guest, Outcome};

struct Legacy;

impl Guest for Legacy {
    fn handle(event: Event) -> Result<Outcome, String> {
        let target = host::config()
            .into_iter()
            .find(|(k, _)| k == "target")
            .map_or_else(|| "sink".to_owned(), |(_, v)| v);
        host::log(
            Level::Info,
            &format!("event {} -> {target} (contract 0.1.0)", event.id),
        );
        Ok(Outcome::Deliver(vec![Delivery {
            target,
            headers: vec![("x-plugin-contract".to_owned(), "0.1.0".to_owned())],
            body: None,
        }]))
    }
}

bindings::export!(Legacy);
