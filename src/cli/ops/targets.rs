//! `hookyard targets list|pause|resume|enable`: every target's health at
//! a glance (circuit, pause, disabled, backlog, success rate), and the
//! actions that change it, each answered with the target's new state.

use anyhow::Result;
use clap::{Args, Subcommand};

use super::output::{emit, print_json};
use super::{Conn, connect, decode};
use crate::api::types::{TargetAction, TargetList, TargetStatus};
use crate::cli::admin_client::AdminClient;
use crate::cli::table::{self, Table};
use crate::model::word::Word;

#[derive(Args, Debug)]
pub struct Targets {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    action: TargetsAction,
}

#[derive(Subcommand, Debug)]
enum TargetsAction {
    /// Every target's circuit state, pause, backlog and success rate.
    List,
    /// Stop new attempts to a target; its deliveries wait.
    Pause {
        /// The target name from the config.
        name: String,
    },
    /// Undo a pause.
    Resume {
        /// The target name from the config.
        name: String,
    },
    /// Re-enable a disabled target (410 Gone, or failing too long) and close
    /// its circuit.
    Enable {
        /// The target name from the config.
        name: String,
    },
}

pub(super) async fn run(Targets { conn, action }: Targets) -> Result<()> {
    let client = connect(&conn)?;
    targets(&client, &conn, action).await
}

async fn targets(client: &AdminClient, conn: &Conn, action: TargetsAction) -> Result<()> {
    let (name, action, done) = match &action {
        TargetsAction::List => {
            let v = client.get(&["admin", "targets"], &[]).await?;
            if conn.json {
                return print_json(&v);
            }
            let list: TargetList = decode(v)?;
            if list.targets.is_empty() {
                return emit("no targets configured\n");
            }
            return emit(&targets_table(&list.targets));
        }
        TargetsAction::Pause { name } => (name, TargetAction::Pause, "paused"),
        TargetsAction::Resume { name } => (name, TargetAction::Resume, "resumed"),
        TargetsAction::Enable { name } => (name, TargetAction::Enable, "enabled"),
    };
    let v = client
        .post(&["admin", "targets", name, action.as_str()], None)
        .await?;
    if conn.json {
        return print_json(&v);
    }
    let target: TargetStatus = decode(v)?;
    emit(&format!(
        "{done} {name}\n{}",
        targets_table(std::slice::from_ref(&target))
    ))
}

fn targets_table(targets: &[TargetStatus]) -> String {
    let mut t = Table::new(&[
        "NAME",
        "STATE",
        "PAUSED",
        "DISABLED",
        "IN FLIGHT",
        "SCHEDULED",
        "DEAD",
        "SUCCESS %",
        "LAST ERROR",
    ])
    .right_align(&[4, 5, 6, 7])
    .max_width(3, 32)
    .max_width(8, 60);
    for x in targets {
        let disabled = match &x.disabled {
            None => "no".to_string(),
            Some(d) if d.reason.is_empty() => "yes".to_string(),
            Some(d) => format!("yes: {}", d.reason),
        };
        t.row(vec![
            x.name.clone(),
            x.state.as_str().to_string(),
            table::yes_no(x.paused),
            disabled,
            x.in_flight.to_string(),
            x.scheduled.to_string(),
            x.dead.to_string(),
            table::percent(x.success_rate),
            table::text(x.last_error.as_deref()),
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn targets_table_shows_health_at_a_glance() {
        let target: TargetStatus = serde_json::from_value(json!({
            "name": "orders", "url": "https://orders.example/in", "state": "open",
            "paused": true, "disabled": {"reason": "410 Gone", "at": 1},
            "in_flight": 0, "scheduled": 3, "dead": 1,
            "attempts": {"succeeded": 121, "failed": 4}, "success_rate": 0.968,
            "consecutive_failures": 4, "last_error": "HTTP 503", "last_error_at": 2,
            "last_success_at": 1, "opened_until": 3,
            "policy": {"max_in_flight": 16, "rate_per_second": null, "rate_burst": null,
                       "max_attempts": 8, "timeout_ms": 10000, "breaker_failures": 5,
                       "breaker_cooldown_ms": 30000, "disable_after_ms": 432000000,
                       "allow_private": false}
        }))
        .unwrap();
        let text = targets_table(&[target]);
        let mut lines = text.lines();
        assert!(
            lines
                .next()
                .unwrap()
                .starts_with("NAME    STATE  PAUSED  DISABLED")
        );
        let row = lines.next().unwrap();
        for want in ["orders", "open", "yes", "yes: 410 Gone", "96.8", "HTTP 503"] {
            assert!(row.contains(want), "missing {want:?} in {row:?}");
        }
    }
}
