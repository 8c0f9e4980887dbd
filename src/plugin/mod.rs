//! Plugins: WebAssembly components implementing `wit/plugin.wit` (or an
//! older contract, see `contract.rs`), loaded from
//! the plugin directory (`<name>.wasm` is plugin `<name>`), compiled once
//! (and cached on disk), hot-reloaded when the directory changes.

mod bindings;
pub mod cache;
pub mod compile;
pub mod contract;
pub mod engine;
pub mod host;
pub mod idle;
pub mod instance;
pub mod kv;
mod lane;
mod limiter;
pub mod registry;
mod stderr;
pub mod watcher;

pub use bindings::{
    Delivery as PluginDelivery, Event as PluginEvent, Level, Outcome as PluginOutcome,
};
pub use contract::Contract;
pub use instance::{CallError, CallReport, LoadedPlugin};
pub use registry::{PluginStatus, Plugins};

use crate::model::records::Event;

/// The WIT view of a stored event.
pub fn to_plugin_event(e: &Event) -> PluginEvent {
    PluginEvent {
        id: e.id.to_string(),
        source: e.source.clone(),
        received_at: e.received_at,
        method: e.method.clone(),
        path: e.path.clone(),
        query: e.query.clone(),
        headers: e.headers.clone(),
        body: e.body.clone(),
        version: e.version.clone(),
    }
}
