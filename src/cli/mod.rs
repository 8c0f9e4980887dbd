//! Subcommands other than `serve`: small tools around the router.

mod admin_client;
pub mod ops;
pub mod plugin_new;
pub mod plugin_test;
mod plugin_trial;
pub mod send;
pub mod sink;
pub mod store_migrate;
mod table;
