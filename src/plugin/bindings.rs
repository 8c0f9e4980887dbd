//! Host-side bindings generated from `wit/plugin.wit`, the single source of
//! truth for the plugin contract.

wasmtime::component::bindgen!({
    world: "plugin",
    path: "wit",
});

pub use hookyard::plugin::host::Level;
pub use hookyard::plugin::types::Delivery;
