//! Subcommands other than `serve`: small tools around the router.

pub mod sink;
