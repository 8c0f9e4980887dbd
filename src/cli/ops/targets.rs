//! `hookyard targets list|pause|resume|enable`: every target's health at
//! a glance (circuit, pause, disabled, backlog, success rate), and the
//! actions that change it, each answered with the target's new state.

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::Value;

use super::output::{emit, print_json};
use super::{Conn, connect, list};
use crate::cli::admin_client::AdminClient;
use crate::cli::table::{self, Table};

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
    let (name, verb, done) = match &action {
        TargetsAction::List => {
            let v = client.get(&["admin", "targets"], &[]).await?;
            if conn.json {
                return print_json(&v);
            }
            let rows = list(&v, "targets")?;
            if rows.is_empty() {
                return emit("no targets configured\n");
            }
            return emit(&targets_table(rows));
        }
        TargetsAction::Pause { name } => (name, "pause", "paused"),
        TargetsAction::Resume { name } => (name, "resume", "resumed"),
        TargetsAction::Enable { name } => (name, "enable", "enabled"),
    };
    let v = client.post(&["admin", "targets", name, verb], None).await?;
    if conn.json {
        return print_json(&v);
    }
    // "Answers the target's status": the target itself, or wrapped.
    let target = if v["target"].is_object() {
        &v["target"]
    } else {
        &v
    };
    emit(&format!(
        "{done} {name}\n{}",
        targets_table(std::slice::from_ref(target))
    ))
}

fn targets_table(targets: &[Value]) -> String {
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
        let disabled = match &x["disabled"] {
            Value::Null | Value::Bool(false) => "no".to_string(),
            d => d["reason"]
                .as_str()
                .filter(|r| !r.is_empty())
                .map(|r| format!("yes: {r}"))
                .unwrap_or_else(|| "yes".to_string()),
        };
        t.row(vec![
            table::text(&x["name"]),
            table::text(&x["state"]),
            table::text(&x["paused"]),
            disabled,
            table::text(&x["in_flight"]),
            table::text(&x["scheduled"]),
            table::text(&x["dead"]),
            table::percent(&x["success_rate"]),
            table::text(&x["last_error"]),
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
        let text = targets_table(&[json!({
            "name": "orders", "state": "open", "paused": true,
            "disabled": {"reason": "410 Gone", "at": 1},
            "in_flight": 0, "scheduled": 3, "dead": 1, "success_rate": 0.968,
            "last_error": "HTTP 503"
        })]);
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
