//! `hookyard events tail`: polls the admin API and prints new events as
//! they arrive, oldest first, until Ctrl-C or until the reader of a pipe
//! goes away. Its own file because telling "new" from "seen" without
//! trusting this machine's clock takes some care.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use super::filters::word;
use super::output::emit;
use super::time::parse_interval;
use super::{Conn, decode};
use crate::api::types::{EventList, EventSummary};
use crate::cli::admin_client::{AdminClient, AdminError};
use crate::cli::table;
use crate::model::id::EventId;
use crate::model::records::EventState;
use crate::model::word::Word;

#[derive(Args, Debug)]
pub(super) struct EventTail {
    /// Only events of this source.
    #[arg(long)]
    source: Option<String>,
    /// Only events in this state when first seen.
    #[arg(long, value_parser = word::<EventState>())]
    status: Option<EventState>,
    /// How often to ask the server for new events.
    #[arg(long, default_value = "1s", value_parser = parse_interval)]
    interval: Duration,
}

/// How many events one tail poll asks for.
const TAIL_PAGE: u32 = 1000;
/// Pages one tail poll follows before printing what it has; a backlog past
/// that is picked up by the next polls.
const TAIL_MAX_PAGES: usize = 20;
/// How far back each poll looks behind the newest event seen: an event
/// stamped just before that one can become visible a moment later, and the
/// overlap (deduplicated by id) keeps it from being skipped.
const TAIL_OVERLAP_MS: u64 = 2_000;

/// Follows new events. "New" is judged by the server's clock (the newest
/// event at start), not this machine's, so clock skew cannot hide events.
pub(super) async fn events_tail(client: &AdminClient, conn: &Conn, args: &EventTail) -> Result<()> {
    let mut base = Vec::new();
    if let Some(s) = &args.source {
        base.push(("source", s.clone()));
    }
    let mut first = base.clone();
    first.push(("limit", TAIL_PAGE.to_string()));
    let start: EventList = decode(client.get(&["admin", "events"], &first).await?)?;
    let mut seen: HashMap<EventId, u64> = HashMap::new();
    let mut newest = 0;
    for e in start.events {
        newest = newest.max(e.received_at);
        seen.insert(e.id, e.received_at);
    }
    seen.retain(|_, at| *at >= newest.saturating_sub(TAIL_OVERLAP_MS));
    if let Some(s) = args.status {
        base.push(("status", s.as_str().to_string()));
    }
    eprintln!(
        "waiting for new events at {} (Ctrl-C to stop)",
        client.base()
    );

    let mut unreachable = false;
    loop {
        tokio::time::sleep(args.interval).await;
        let since = newest.saturating_sub(TAIL_OVERLAP_MS);
        let events = match events_since(client, &base, since).await {
            Ok(events) => events,
            Err(e) if matches!(e.downcast_ref(), Some(AdminError::Connect { .. })) => {
                // A restart of hookyard should not end the tail.
                if !unreachable {
                    eprintln!("warning: {e:#}; still trying");
                    unreachable = true;
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        if unreachable {
            eprintln!("admin API reachable again");
            unreachable = false;
        }
        let mut fresh: Vec<EventSummary> = events
            .into_iter()
            .filter(|e| !seen.contains_key(&e.id))
            .collect();
        fresh.sort_by(|a, b| (a.received_at, &a.id).cmp(&(b.received_at, &b.id)));
        let mut out = String::new();
        for e in &fresh {
            newest = newest.max(e.received_at);
            seen.insert(e.id.clone(), e.received_at);
            if conn.json {
                out += &serde_json::to_string(e)?;
                out.push('\n');
            } else {
                out += &tail_line(e);
            }
        }
        emit(&out)?;
        seen.retain(|_, at| *at >= newest.saturating_sub(TAIL_OVERLAP_MS));
    }
}

async fn events_since(
    client: &AdminClient,
    base: &[(&'static str, String)],
    since: u64,
) -> Result<Vec<EventSummary>> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..TAIL_MAX_PAGES {
        let mut q = base.to_vec();
        q.push(("since", since.to_string()));
        q.push(("limit", TAIL_PAGE.to_string()));
        if let Some(c) = &cursor {
            q.push(("cursor", c.clone()));
        }
        let page: EventList = decode(client.get(&["admin", "events"], &q).await?)?;
        all.extend(page.events);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    Ok(all)
}

fn tail_line(e: &EventSummary) -> String {
    let deliveries = e.deliveries;
    format!(
        "{}  {}  {:<12}  {:<7}  {:>9}  {deliveries} deliver{}\n",
        table::time(e.received_at),
        e.id,
        table::fit(&table::text(Some(&e.source)), 48),
        e.status.as_str(),
        table::size(e.size as u64),
        if deliveries == 1 { "y" } else { "ies" },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tail_lines_carry_time_id_and_status() {
        let line = tail_line(
            &serde_json::from_value(json!({"id": "evt_1", "source": "shop",
            "received_at": 1_763_892_000_000u64, "status": "pending", "size": 48, "deliveries": 0}))
            .unwrap(),
        );
        assert!(
            line.starts_with("2025-11-23T10:00:00Z  evt_1  shop"),
            "{line}"
        );
        assert!(line.contains("pending") && line.contains("48 B"), "{line}");
        assert!(line.ends_with("  0 deliveries\n"), "{line}");
    }
}
