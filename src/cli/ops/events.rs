//! `hookyard events`: its arguments, the dispatch to `list`, `show` and
//! `tail`, and `events list` itself. `show` and `tail` are larger and live
//! in their own files.

use anyhow::Result;
use clap::{Args, Subcommand};

use super::filters::{Page, next_hint, query};
use super::output::{emit, print_json};
use super::show::events_show;
use super::tail::{EventTail, events_tail};
use super::time::Window;
use super::{Conn, connect, list};
use crate::cli::admin_client::AdminClient;
use crate::cli::table::{self, Table};

/// The states an event can be in, for `--status` (shared with `replay`).
pub(super) const EVENT_STATUSES: [&str; 4] = ["pending", "routed", "dropped", "failed"];

#[derive(Args, Debug)]
pub struct Events {
    #[command(flatten)]
    pub(super) conn: Conn,
    #[command(subcommand)]
    action: EventsAction,
}

#[derive(Subcommand, Debug)]
enum EventsAction {
    /// Events newest first, a page at a time.
    List(EventList),
    /// One event: the request, its body, the routing outcome, every delivery
    /// and its attempts.
    Show {
        /// The event id (evt_…).
        id: String,
    },
    /// Print events as they arrive, oldest first, until Ctrl-C.
    Tail(EventTail),
}

#[derive(Args, Debug)]
struct EventList {
    /// Only events of this source.
    #[arg(long)]
    source: Option<String>,
    /// Only events in this state (pending: not routed yet).
    #[arg(long, value_parser = EVENT_STATUSES)]
    status: Option<String>,
    #[command(flatten)]
    window: Window,
    #[command(flatten)]
    page: Page,
}

pub(super) async fn run(Events { conn, action }: Events) -> Result<()> {
    let client = connect(&conn)?;
    match action {
        EventsAction::List(args) => events_list(&client, &conn, &args).await,
        EventsAction::Show { id } => events_show(&client, &conn, &id).await,
        EventsAction::Tail(args) => tokio::select! {
            r = events_tail(&client, &conn, &args) => r,
            _ = tokio::signal::ctrl_c() => Ok(()),
        },
    }
}

async fn events_list(client: &AdminClient, conn: &Conn, args: &EventList) -> Result<()> {
    let filters = [
        ("source", args.source.clone()),
        ("status", args.status.clone()),
        ("since", args.window.since.map(|t| t.to_string())),
        ("until", args.window.until.map(|t| t.to_string())),
        ("limit", args.page.limit.map(|l| l.to_string())),
    ];
    let v = client
        .get(&["admin", "events"], &query(&filters, &args.page.cursor))
        .await?;
    if conn.json {
        return print_json(&v);
    }
    let mut t = Table::new(&["ID", "SOURCE", "RECEIVED", "STATUS", "SIZE", "DELIVERIES"])
        .right_align(&[4, 5]);
    for e in list(&v, "events")? {
        t.row(vec![
            table::text(&e["id"]),
            table::text(&e["source"]),
            table::time_of(&e["received_at"]),
            table::text(&e["status"]),
            e["size"].as_u64().map(table::size).unwrap_or_default(),
            table::text(&e["deliveries"]),
        ]);
    }
    let mut out = if t.is_empty() {
        "no events on this page\n".to_string()
    } else {
        t.render()
    };
    if let Some(cursor) = v["next_cursor"].as_str() {
        out += &next_hint(conn, "events list", &filters, cursor);
    }
    emit(&out)
}
