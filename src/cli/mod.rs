//! Subcommands other than `serve`: small tools around the router.

pub mod plugin_new;
pub mod plugin_test;
pub mod send;
pub mod sink;
