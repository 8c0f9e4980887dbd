//! Host-side bindings, one module per published plugin contract, each
//! generated from its own WIT file: `wit/plugin.wit` (the newest,
//! `hookyard:plugin@0.2.0`) and `wit/v0.1.0/plugin.wit` (kept verbatim, so
//! components built against it keep loading). The rest of hookyard speaks
//! the newest contract's types; `contract.rs` converts at the edge for an
//! older component.

/// `hookyard:plugin@0.2.0`: the contract new plugins are built against.
pub mod v0_2 {
    wasmtime::component::bindgen!({
        world: "plugin",
        path: "wit",
    });
}

/// `hookyard:plugin@0.1.0`: the first contract (no event version).
pub mod v0_1 {
    wasmtime::component::bindgen!({
        world: "plugin",
        path: "wit/v0.1.0",
    });
}

pub use v0_2::hookyard::plugin::host::Level;
pub use v0_2::hookyard::plugin::types::{Delivery, Event, Outcome};
