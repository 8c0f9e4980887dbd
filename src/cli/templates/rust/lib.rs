//! {{name}}: a hookyard routing plugin.
//!
//! hookyard calls `handle` once per received event. Return
//! `Outcome::Drop(reason)` to filter the event out (the reason is recorded),
//! `Outcome::Deliver(...)` to send it to targets named in hookyard's config,
//! or `Err(message)` to mark the event failed (it can be replayed later).

mod bindings {
    // The generated ABI shim takes the event's fields flattened.
    #![allow(clippy::too_many_arguments)]
    wit_bindgen::generate!({
        world: "plugin",
        path: "wit",
        default_bindings_module: "bindings",
    });
}

use bindings::hookyard::plugin::host::{self, Level};
use bindings::hookyard::plugin::types::Delivery;
use bindings::{Event, Guest, Outcome};

struct Plugin;

impl Guest for Plugin {
    fn handle(event: Event) -> Result<Outcome, String> {
        if event.body.is_empty() {
            return Ok(Outcome::Drop("empty body".to_string()));
        }
        // `[plugins.{{name}}] config = { target = "..." }` in hookyard.toml.
        let target = host::config()
            .into_iter()
            .find(|(k, _)| k == "target")
            .map(|(_, v)| v)
            .unwrap_or_else(|| "default".to_string());
        // The event's version (contract 0.2.0), when the source's
        // `version` setting found one (e.g. `Stripe-Version`).
        let version = event.version.as_deref().unwrap_or("none");
        host::log(
            Level::Info,
            &format!("event {} (version {version}) -> {target}", event.id),
        );
        Ok(Outcome::Deliver(vec![Delivery {
            target,
            headers: vec![("x-routed-by".to_string(), "{{name}}".to_string())],
            body: None, // the event's body, unchanged
        }]))
    }
}

bindings::export!(Plugin);
