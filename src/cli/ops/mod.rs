//! Operator commands over the admin API: `events`, `replay`, `deliveries`
//! and `targets`. People get tables; scripts pass `--json` and get the
//! server's answer as it was sent, so they never depend on table layout.
//! Tables are made from the answer read as the record the server wrote
//! (`crate::api::types`), never by looking fields up by name.
//!
//! This file holds what every command shares: the connection options, the
//! command tree and the dispatch onto a runtime. Each command group lives
//! in its own file (`events`, with `show` and `tail` beside it; `replay`,
//! `deliveries`, `targets`); the argument pieces and output they have in
//! common are in `time`, `filters` and `output`.

mod deliveries;
mod events;
mod filters;
mod output;
mod reload;
mod replay;
mod show;
mod tail;
mod targets;
mod time;

use anyhow::{Context, Result, anyhow};
use clap::{Args, Subcommand};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::admin_client::AdminClient;
use output::StdoutClosed;

pub use deliveries::Deliveries;
pub use events::Events;
pub use replay::Replay;
pub use targets::Targets;

/// Where `server.admin_listen` is unless configured otherwise.
pub const DEFAULT_ADMIN: &str = "http://127.0.0.1:8081";

/// How to reach the admin API. Global so `hookyard events list --json` and
/// `hookyard events --json list` both work.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Admin API")]
pub struct Conn {
    /// Base URL of hookyard's admin listener (server.admin_listen).
    #[arg(long = "admin", env = "HOOKYARD_ADMIN", default_value = DEFAULT_ADMIN, value_name = "URL", global = true)]
    pub admin: String,
    /// Admin token, needed when server.admin_token is set (sent as a bearer token).
    #[arg(
        long,
        env = "HOOKYARD_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<String>,
    /// Print the server's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum OpsCommand {
    /// Look at received events: list them, show one, follow new ones.
    Events(Events),
    /// Run stored events through their source's current plugins and
    /// passthrough targets again (one event by id, or all matching filters).
    Replay(Replay),
    /// Look at deliveries and retry them; `--status dead` is the dead-letter queue.
    Deliveries(Deliveries),
    /// Target health (circuit, pause, backlog), and pause / resume / enable.
    Targets(Targets),
    /// Make a running hookyard read its config file again (as SIGHUP
    /// does) and print what changed; fails, changing nothing, on an
    /// invalid file.
    Reload(Conn),
}

/// Runs one operator command on a current-thread runtime: each makes a
/// handful of sequential requests, so more threads would only cost start-up.
pub fn run(command: OpsCommand) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async move {
        match command {
            OpsCommand::Events(cmd) => events::run(cmd).await,
            OpsCommand::Replay(cmd) => replay::run(cmd).await,
            OpsCommand::Deliveries(cmd) => deliveries::run(cmd).await,
            OpsCommand::Targets(cmd) => targets::run(cmd).await,
            OpsCommand::Reload(conn) => reload::run(conn).await,
        }
    });
    match result {
        // `hookyard events tail | head` ends with the reader; not an error.
        Err(e) if e.is::<StdoutClosed>() => Ok(()),
        other => other,
    }
}

/// `hookyard plugin push FILE [--name N]`: prints the digest every node
/// should come to serve (`GET /admin/plugins` shows which do).
pub fn push_plugin(file: &std::path::Path, name: Option<&str>, conn: &Conn) -> Result<()> {
    let name = match name {
        Some(n) => n.to_string(),
        None => file
            .file_name()
            .and_then(|f| f.to_str())
            .and_then(|f| f.strip_suffix(".wasm"))
            .ok_or_else(|| anyhow!("{}: name it NAME.wasm or pass --name", file.display()))?
            .to_string(),
    };
    let wasm = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let client = connect(conn)?;
    let v = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(client.put_wasm(&["admin", "plugins", &name], wasm))?;
    if conn.json {
        println!("{v}");
    } else {
        println!(
            "pushed {name}: sha256 {} ({} bytes, stored in the {})",
            v["sha256"].as_str().unwrap_or("?"),
            v["bytes"],
            if v["stored_in"] == "database" {
                "database for every node"
            } else {
                "plugin directory"
            }
        );
    }
    Ok(())
}

fn connect(conn: &Conn) -> Result<AdminClient> {
    AdminClient::new(&conn.admin, conn.token.clone())
}

/// An answer as the record the server wrote; another shape means another
/// server (or another version of hookyard) at that address.
fn decode<T: DeserializeOwned>(v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| {
        anyhow!(
            "unexpected answer from the admin API ({e}); is the hookyard at --admin the same \
             version as this command?"
        )
    })
}

// These parse the whole command tree, so they sit with it rather than with
// one command group.
#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        op: OpsCommand,
    }

    fn parse(args: &[&str]) -> Result<OpsCommand, clap::Error> {
        Cli::try_parse_from(std::iter::once("hookyard").chain(args.iter().copied())).map(|c| c.op)
    }

    #[test]
    fn connection_options_work_before_or_after_the_subcommand() {
        for args in [
            &["events", "list", "--json", "--admin", "http://h:1"][..],
            &["events", "--json", "--admin", "http://h:1", "list"][..],
        ] {
            let Ok(OpsCommand::Events(e)) = parse(args) else {
                panic!("{args:?} did not parse")
            };
            assert!(e.conn.json, "{args:?}");
            assert_eq!(e.conn.admin, "http://h:1", "{args:?}");
        }
    }

    #[test]
    fn replay_takes_an_id_or_filters_not_both() {
        assert!(parse(&["replay", "evt_1"]).is_ok());
        assert!(parse(&["replay", "--source", "s", "--status", "failed"]).is_ok());
        assert!(parse(&["replay", "evt_1", "--source", "s"]).is_err());
        assert!(parse(&["replay", "--status", "bogus"]).is_err());
        assert!(parse(&["deliveries", "retry", "msg_1", "--target", "t"]).is_err());
        assert!(parse(&["deliveries", "list", "--limit", "5000"]).is_err());
    }
}
