//! `hookyard events`: its arguments, the dispatch to `list`, `show` and
//! `tail`, and `events list` itself. `show` and `tail` are larger and live
//! in their own files.

use anyhow::Result;
use clap::{Args, Subcommand};

use super::filters::{Page, next_hint, query, word};
use super::output::{emit, print_json};
use super::show::events_show;
use super::tail::{EventTail, events_tail};
use super::time::Window;
use super::{Conn, connect, decode};
use crate::api::types;
use crate::cli::admin_client::AdminClient;
use crate::cli::table::{self, Table};
use crate::model::records::EventState;
use crate::model::word::Word;

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
        /// Show the body as it was received (still in its
        /// Content-Encoding) instead of decoded.
        #[arg(long)]
        received: bool,
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
    #[arg(long, value_parser = word::<EventState>())]
    status: Option<EventState>,
    /// Only events with this version (as the source's `version` setting
    /// found it, e.g. 2024-06-20).
    #[arg(long)]
    version: Option<String>,
    #[command(flatten)]
    window: Window,
    #[command(flatten)]
    page: Page,
}

pub(super) async fn run(Events { conn, action }: Events) -> Result<()> {
    let client = connect(&conn)?;
    match action {
        EventsAction::List(args) => events_list(&client, &conn, &args).await,
        EventsAction::Show { id, received } => events_show(&client, &conn, &id, received).await,
        EventsAction::Tail(args) => tokio::select! {
            r = events_tail(&client, &conn, &args) => r,
            _ = tokio::signal::ctrl_c() => Ok(()),
        },
    }
}

async fn events_list(client: &AdminClient, conn: &Conn, args: &EventList) -> Result<()> {
    let filters = [
        ("source", args.source.clone()),
        ("status", args.status.map(|s| s.as_str().to_string())),
        ("version", args.version.clone()),
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
    let list: types::EventList = decode(v)?;
    let mut t = Table::new(&[
        "ID",
        "SOURCE",
        "VERSION",
        "RECEIVED",
        "STATUS",
        "SIZE",
        "DELIVERIES",
    ])
    .right_align(&[5, 6]);
    for e in &list.events {
        t.row(vec![
            e.id.to_string(),
            table::text(Some(&e.source)),
            table::text(e.version.as_deref()),
            table::time(e.received_at),
            e.status.to_string(),
            table::size(e.size as u64),
            e.deliveries.to_string(),
        ]);
    }
    let mut out = if t.is_empty() {
        "no events on this page\n".to_string()
    } else {
        t.render()
    };
    if let Some(cursor) = &list.next_cursor {
        out += &next_hint(conn, "events list", &filters, cursor);
    }
    emit(&out)
}
