//! hookyard: a self-hosted webhook router.
//!
//! The flow runs one way: [`source`] accepts a webhook and stores it
//! ([`durability`], [`store`]) before answering 202; [`route`] runs the
//! source's WebAssembly [`plugin`]s on it; [`target`] delivers the results,
//! signed and retried. Every hand-off crosses the store, so a crash loses
//! nothing that was acknowledged.

pub mod admin;
pub mod cli;
pub mod config;
pub mod durability;
pub mod extract;
pub mod id;
pub mod plugin;
pub mod records;
pub mod retention;
pub mod route;
pub mod server;
pub mod source;
pub mod store;
pub mod target;
