//! `hookyard deliveries list|retry`: deliveries a page at a time, and one
//! more attempt for one delivery or every delivery matching filters
//! (`--status dead` is the dead-letter queue).

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use serde_json::Value;

use super::filters::{Page, body, next_hint, query, word};
use super::output::{emit, print_json};
use super::time::Window;
use super::{Conn, connect, decode};
use crate::api::types::{self, Retried, RetryScheduled};
use crate::cli::admin_client::AdminClient;
use crate::cli::table::{self, Table};
use crate::model::records::DeliveryStatus;
use crate::model::word::Word;

#[derive(Args, Debug)]
pub struct Deliveries {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    action: DeliveriesAction,
}

#[derive(Subcommand, Debug)]
enum DeliveriesAction {
    /// Deliveries newest first, a page at a time.
    List(DeliveryList),
    /// Schedule one more attempt now: one delivery by id, or every delivery
    /// matching filters (e.g. --status dead --target orders).
    Retry(DeliveryRetry),
}

#[derive(Args, Debug)]
struct DeliveryList {
    /// Only deliveries in this state (dead: the dead-letter queue).
    #[arg(long, value_parser = word::<DeliveryStatus>())]
    status: Option<DeliveryStatus>,
    /// Only deliveries to this target.
    #[arg(long)]
    target: Option<String>,
    /// Only deliveries of this event.
    #[arg(long)]
    event: Option<String>,
    #[command(flatten)]
    window: Window,
    #[command(flatten)]
    page: Page,
}

#[derive(Args, Debug)]
struct DeliveryRetry {
    /// The delivery to retry (msg_…); leave out to select with filters.
    #[arg(conflicts_with_all = ["status", "target", "event", "since", "until", "limit"])]
    id: Option<String>,
    /// Retry deliveries in this state (the server defaults to dead).
    #[arg(long, value_parser = word::<DeliveryStatus>())]
    status: Option<DeliveryStatus>,
    /// Only deliveries to this target.
    #[arg(long)]
    target: Option<String>,
    /// Only deliveries of this event.
    #[arg(long)]
    event: Option<String>,
    #[command(flatten)]
    window: Window,
    /// At most this many deliveries (server default 1000).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    limit: Option<u32>,
}

pub(super) async fn run(Deliveries { conn, action }: Deliveries) -> Result<()> {
    let client = connect(&conn)?;
    match action {
        DeliveriesAction::List(args) => deliveries_list(&client, &conn, &args).await,
        DeliveriesAction::Retry(args) => deliveries_retry(&client, &conn, &args).await,
    }
}

async fn deliveries_list(client: &AdminClient, conn: &Conn, args: &DeliveryList) -> Result<()> {
    let filters = [
        ("status", args.status.map(|s| s.as_str().to_string())),
        ("target", args.target.clone()),
        ("event", args.event.clone()),
        ("since", args.window.since.map(|t| t.to_string())),
        ("until", args.window.until.map(|t| t.to_string())),
        ("limit", args.page.limit.map(|l| l.to_string())),
    ];
    let v = client
        .get(
            &["admin", "deliveries"],
            &query(&filters, &args.page.cursor),
        )
        .await?;
    if conn.json {
        return print_json(&v);
    }
    let list: types::DeliveryList = decode(v)?;
    let mut t = Table::new(&["ID", "EVENT", "TARGET", "STATUS", "ATTEMPTS", "LAST ERROR"])
        .right_align(&[4])
        .max_width(5, 60);
    for d in &list.deliveries {
        t.row(vec![
            d.id.to_string(),
            d.event_id.to_string(),
            table::text(Some(&d.target)),
            d.status.to_string(),
            d.attempts.to_string(),
            table::text(d.last_error.as_deref()),
        ]);
    }
    let mut out = if t.is_empty() {
        "no deliveries on this page\n".to_string()
    } else {
        t.render()
    };
    if let Some(cursor) = &list.next_cursor {
        out += &next_hint(conn, "deliveries list", &filters, cursor);
    }
    emit(&out)
}

async fn deliveries_retry(client: &AdminClient, conn: &Conn, args: &DeliveryRetry) -> Result<()> {
    if let Some(id) = &args.id {
        let v = client
            .post(&["admin", "deliveries", id, "retry"], None)
            .await?;
        if conn.json {
            return print_json(&v);
        }
        let done: RetryScheduled = decode(v)?;
        return emit(&format!(
            "delivery {} {} for an attempt now\n",
            done.delivery, done.status,
        ));
    }
    let body = body(&[
        ("status", args.status.map(|s| Value::from(s.as_str()))),
        ("target", args.target.clone().map(Value::from)),
        ("event", args.event.clone().map(Value::from)),
        ("since", args.window.since.map(Value::from)),
        ("until", args.window.until.map(Value::from)),
    ]);
    // The server would default to every dead delivery; make that explicit
    // (--status dead) rather than the effect of a forgotten id.
    if body.is_empty() {
        bail!(
            "deliveries retry needs a delivery id, or filters such as --status dead \
             --target NAME to select deliveries"
        );
    }
    let mut body = body;
    if let Some(limit) = args.limit {
        body.insert("limit".into(), limit.into());
    }
    let v = client
        .post(
            &["admin", "deliveries", "retry"],
            Some(&Value::Object(body)),
        )
        .await?;
    if conn.json {
        return print_json(&v);
    }
    let Retried { retried: count } = decode(v)?;
    emit(&format!(
        "scheduled {count} deliver{} for an attempt now\n",
        if count == 1 { "y" } else { "ies" }
    ))
}
