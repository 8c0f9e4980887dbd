//! Quickstart routing plugin for hookyard.
//!
//! Reads the JSON body's `type` field and routes `order.*` events unchanged to
//! the orders target and everything else, reshaped as a chat message, to the
//! alerts target. It also keeps a per-type counter in the host's key-value
//! store to show how plugins keep state between calls, and passes the
//! event's version (contract 0.2.0: what the source's `version` setting
//! found, e.g. `Stripe-Version`) on as `x-hookyard-event-version`, so a
//! receiver knows which payload shape it gets.

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
use serde_json::{Value, json};

/// Target for `order.*` events when the config has no `orders_target`.
const DEFAULT_ORDERS_TARGET: &str = "orders";
/// Target for every other event when the config has no `alerts_target`.
const DEFAULT_ALERTS_TARGET: &str = "alerts";

struct QuickstartRouter;

impl Guest for QuickstartRouter {
    fn handle(event: Event) -> Result<Outcome, String> {
        let payload: Value =
            serde_json::from_slice(&event.body).map_err(|e| format!("body is not JSON: {e}"))?;

        let Some(kind) = payload.get("type").and_then(Value::as_str) else {
            return Ok(drop_event(&event, "no \"type\" field"));
        };
        if kind == "ping" {
            return Ok(drop_event(&event, "ping events are not routed"));
        }
        // Owned copy: `payload` is moved into the alert body below.
        let kind = kind.to_owned();

        let config = host::config();
        let count = bump_count(&kind);
        let mut headers = vec![
            ("x-hookyard-event-type".to_owned(), kind.clone()),
            ("x-hookyard-type-count".to_owned(), count.to_string()),
        ];
        if let Some(version) = &event.version {
            headers.push(("x-hookyard-event-version".to_owned(), version.clone()));
        }

        let delivery = if kind.starts_with("order.") {
            Delivery {
                target: config_value(&config, "orders_target", DEFAULT_ORDERS_TARGET),
                headers,
                body: None,
            }
        } else {
            let alert = json!({
                "text": format!("{kind} from {}", event.source),
                "event_id": event.id,
                "payload": payload,
            });
            headers.push(("content-type".to_owned(), "application/json".to_owned()));
            Delivery {
                target: config_value(&config, "alerts_target", DEFAULT_ALERTS_TARGET),
                headers,
                body: Some(alert.to_string().into_bytes()),
            }
        };

        host::log(
            Level::Info,
            &format!(
                "event {} ({kind}, version {}, #{count} of its type) -> {}",
                event.id,
                event.version.as_deref().unwrap_or("none"),
                delivery.target
            ),
        );
        Ok(Outcome::Deliver(vec![delivery]))
    }
}

/// Logs the decision and builds the drop outcome, so every drop is explained.
fn drop_event(event: &Event, reason: &str) -> Outcome {
    host::log(
        Level::Info,
        &format!("event {} dropped: {reason}", event.id),
    );
    Outcome::Drop(reason.to_owned())
}

/// Increments and returns the number of routed events of this type.
///
/// Stored as u64 little-endian under `count:<type>`; a missing or malformed
/// value restarts the count rather than failing the event.
fn bump_count(kind: &str) -> u64 {
    let key = format!("count:{kind}");
    let previous = host::kv_get(&key)
        .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
        .map_or(0, u64::from_le_bytes);
    let count = previous.saturating_add(1);
    host::kv_set(&key, &count.to_le_bytes());
    count
}

/// Looks up a plugin config key, falling back to `default` when it is absent.
fn config_value(config: &[(String, String)], key: &str, default: &str) -> String {
    config
        .iter()
        .find(|(k, _)| k == key)
        .map_or(default, |(_, v)| v.as_str())
        .to_owned()
}

bindings::export!(QuickstartRouter);
