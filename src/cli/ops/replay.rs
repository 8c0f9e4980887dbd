//! `hookyard replay`: runs stored events through their source's current
//! plugins again, one by id or every event matching filters.

use std::fmt::Write as _;

use anyhow::{Result, bail};
use clap::Args;
use serde_json::Value;

use super::filters::{body, word};
use super::output::{emit, print_json};
use super::time::Window;
use super::{Conn, connect, decode};
use crate::api::types::{ReplayQueued, Replayed};
use crate::cli::admin_client::AdminClient;
use crate::model::records::EventState;
use crate::model::word::Word;

#[derive(Args, Debug)]
pub struct Replay {
    #[command(flatten)]
    conn: Conn,
    /// The event to replay; leave out to select events with filters.
    #[arg(conflicts_with_all = ["source", "status", "version", "since", "until", "limit"])]
    id: Option<String>,
    /// Replay events of this source.
    #[arg(long)]
    source: Option<String>,
    /// Replay events in this state (failed: a plugin errored).
    #[arg(long, value_parser = word::<EventState>())]
    status: Option<EventState>,
    /// Replay events with this version (as their source's `version`
    /// setting found it).
    #[arg(long)]
    version: Option<String>,
    #[command(flatten)]
    window: Window,
    /// At most this many events (server default 1000).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    limit: Option<u32>,
}

pub(super) async fn run(args: Replay) -> Result<()> {
    let client = connect(&args.conn)?;
    replay(&client, &args).await
}

async fn replay(client: &AdminClient, args: &Replay) -> Result<()> {
    if let Some(id) = &args.id {
        let v = client
            .post(&["admin", "events", id, "replay"], None)
            .await?;
        if args.conn.json {
            return print_json(&v);
        }
        let queued: ReplayQueued = decode(v)?;
        return emit(&format!(
            "replay of {} queued; `hookyard events show {id}` shows its new deliveries\n",
            queued.event,
        ));
    }
    let body = body(&[
        ("source", args.source.clone().map(Value::from)),
        ("status", args.status.map(|s| Value::from(s.as_str()))),
        ("version", args.version.clone().map(Value::from)),
        ("since", args.window.since.map(Value::from)),
        ("until", args.window.until.map(Value::from)),
    ]);
    if body.is_empty() {
        bail!(
            "replay needs an event id, or at least one of --source, --status, --version, --since, --until \
             to select events"
        );
    }
    let mut body = body;
    if let Some(limit) = args.limit {
        body.insert("limit".into(), limit.into());
    }
    let v = client
        .post(&["admin", "events", "replay"], Some(&Value::Object(body)))
        .await?;
    if args.conn.json {
        return print_json(&v);
    }
    let Replayed {
        replayed: count,
        events: ids,
    } = decode(v)?;
    let mut out = format!("queued replay of {count} event{}\n", plural(count));
    // A short list helps; thousands of ids are for --json.
    if ids.len() <= 50 {
        for id in ids {
            let _ = writeln!(out, "  {id}");
        }
    } else {
        out.push_str("  (--json lists their ids)\n");
    }
    emit(&out)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
