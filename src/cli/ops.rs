//! Operator commands over the admin API: `events`, `replay`, `deliveries`
//! and `targets`. People get tables; scripts pass `--json` and get the
//! server's answer as it was sent, so they never depend on table layout.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::{Map, Value};

use super::admin_client::{AdminClient, AdminError};
use super::table::{self, Table};

/// Where `server.admin_listen` is unless configured otherwise.
pub const DEFAULT_ADMIN: &str = "http://127.0.0.1:8081";

const EVENT_STATUSES: [&str; 4] = ["pending", "routed", "dropped", "failed"];
const DELIVERY_STATUSES: [&str; 3] = ["scheduled", "delivered", "dead"];

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
}

#[derive(Args, Debug)]
pub struct Events {
    #[command(flatten)]
    conn: Conn,
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

/// A time range; times are unix ms, RFC 3339 UTC, or a duration ago.
#[derive(Args, Debug, Clone, Default)]
struct Window {
    /// From this time: unix ms, RFC 3339 UTC (2026-11-23T10:00:00Z) or a
    /// duration ago (15m, 2h, 7d).
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    since: Option<u64>,
    /// Up to this time (same forms as --since).
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    until: Option<u64>,
}

#[derive(Args, Debug)]
struct Page {
    /// Items per page (the server allows at most 1000).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    limit: Option<u32>,
    /// Continue from a previous page's next_cursor.
    #[arg(long)]
    cursor: Option<String>,
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

#[derive(Args, Debug)]
struct EventTail {
    /// Only events of this source.
    #[arg(long)]
    source: Option<String>,
    /// Only events in this state when first seen.
    #[arg(long, value_parser = EVENT_STATUSES)]
    status: Option<String>,
    /// How often to ask the server for new events.
    #[arg(long, default_value = "1s", value_parser = parse_interval)]
    interval: Duration,
}

#[derive(Args, Debug)]
pub struct Replay {
    #[command(flatten)]
    conn: Conn,
    /// The event to replay; leave out to select events with filters.
    #[arg(conflicts_with_all = ["source", "status", "since", "until", "limit"])]
    id: Option<String>,
    /// Replay events of this source.
    #[arg(long)]
    source: Option<String>,
    /// Replay events in this state (failed: a plugin errored).
    #[arg(long, value_parser = EVENT_STATUSES)]
    status: Option<String>,
    #[command(flatten)]
    window: Window,
    /// At most this many events (server default 1000).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    limit: Option<u32>,
}

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
    #[arg(long, value_parser = DELIVERY_STATUSES)]
    status: Option<String>,
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
    #[arg(long, value_parser = DELIVERY_STATUSES)]
    status: Option<String>,
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

/// Runs one operator command on a current-thread runtime: each makes a
/// handful of sequential requests, so more threads would only cost start-up.
pub fn run(command: OpsCommand) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async move {
        match command {
            OpsCommand::Events(Events { conn, action }) => {
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
            OpsCommand::Replay(args) => {
                let client = connect(&args.conn)?;
                replay(&client, &args).await
            }
            OpsCommand::Deliveries(Deliveries { conn, action }) => {
                let client = connect(&conn)?;
                match action {
                    DeliveriesAction::List(args) => deliveries_list(&client, &conn, &args).await,
                    DeliveriesAction::Retry(args) => deliveries_retry(&client, &conn, &args).await,
                }
            }
            OpsCommand::Targets(Targets { conn, action }) => {
                let client = connect(&conn)?;
                targets(&client, &conn, action).await
            }
        }
    });
    match result {
        // `hookyard events tail | head` ends with the reader; not an error.
        Err(e) if e.is::<StdoutClosed>() => Ok(()),
        other => other,
    }
}

fn connect(conn: &Conn) -> Result<AdminClient> {
    AdminClient::new(&conn.admin, conn.token.clone())
}

// ---- events ------------------------------------------------------------------

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

async fn events_show(client: &AdminClient, conn: &Conn, id: &str) -> Result<()> {
    let v = client.get(&["admin", "events", id], &[]).await?;
    if conn.json {
        return print_json(&v);
    }
    emit(&render_event(&v))
}

/// A readable event: request, body, routing, then each delivery with its
/// attempts, so "why did this not arrive" is answered on one screen.
fn render_event(v: &Value) -> String {
    // The request fields sit under "event" next to status and deliveries;
    // accept them at the top level too rather than print nothing.
    let e = if v["event"].is_object() {
        &v["event"]
    } else {
        v
    };
    let mut out = String::new();
    let status = if v["status"].is_null() {
        &e["status"]
    } else {
        &v["status"]
    };
    let mut request = format!("{} {}", table::text(&e["method"]), table::text(&e["path"]));
    if let Some(q) = e["query"].as_str().filter(|q| !q.is_empty()) {
        request = format!("{request}?{q}");
    }
    let _ = writeln!(out, "event     {}", table::text(&e["id"]));
    let _ = writeln!(out, "source    {}", table::text(&e["source"]));
    let _ = writeln!(out, "received  {}", table::time_of(&e["received_at"]));
    let _ = writeln!(out, "request   {request}");
    let _ = writeln!(out, "status    {}", table::text(status));
    if let Some(reason) = v["pending_reason"].as_str().filter(|r| !r.is_empty()) {
        let _ = writeln!(out, "waiting   {reason}");
    }

    let headers = header_pairs(&e["headers"]);
    if !headers.is_empty() {
        out.push_str("\nheaders\n");
        for (k, val) in headers {
            let _ = writeln!(out, "  {k}: {val}");
        }
    }

    let body = &e["body"];
    let size = body["size"].as_u64().unwrap_or(0);
    let _ = writeln!(out, "\nbody ({})", table::size(size));
    match body["text"].as_str() {
        Some("") => out.push_str("  (empty)\n"),
        Some(text) => {
            // Indent JSON bodies (most webhooks); anything else verbatim.
            let shown = reindent_json(text).unwrap_or_else(|| text.to_string());
            for line in shown.lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
        None if size == 0 => out.push_str("  (empty)\n"),
        None => out.push_str("  not UTF-8 text; --json shows it as base64\n"),
    }

    let outcome = &v["outcome"];
    if outcome.is_object() {
        let _ = writeln!(out, "\nrouting ({})", table::time_of(&outcome["routed_at"]));
        let plugins = outcome["plugins"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if plugins.is_empty() {
            out.push_str("  no plugins; passthrough targets only\n");
        } else {
            let mut t = Table::new(&["PLUGIN", "RESULT", "DELIVERIES", "TIME", "REASON"])
                .right_align(&[2, 3])
                .max_width(4, 80);
            for p in plugins {
                t.row(vec![
                    table::text(&p["plugin"]),
                    table::text(&p["result"]),
                    table::text(&p["deliveries"]),
                    p["duration_us"]
                        .as_f64()
                        .map(|us| table::millis(us / 1000.0))
                        .unwrap_or_default(),
                    p["reason"].as_str().unwrap_or("").to_string(),
                ]);
            }
            out.push_str(&indent(&t.render(), "  "));
        }
    }

    let deliveries = v["deliveries"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if deliveries.is_empty() {
        out.push_str("\nno deliveries\n");
    } else {
        out.push_str("\ndeliveries\n");
        for d in deliveries {
            out.push_str(&render_delivery(d));
        }
    }
    out
}

fn render_delivery(d: &Value) -> String {
    let mut out = String::new();
    let attempts = d["attempts"].as_u64().unwrap_or(0);
    let _ = writeln!(
        out,
        "  {} -> {}  {}  ({}, {attempts} attempt{})",
        table::text(&d["id"]),
        table::text(&d["target"]),
        table::text(&d["status"]),
        table::text(&d["origin"]),
        if attempts == 1 { "" } else { "s" },
    );
    if d["status"] == "scheduled" && d["next_attempt_at"].is_u64() {
        let _ = writeln!(
            out,
            "    next attempt {}",
            table::time_of(&d["next_attempt_at"])
        );
    }
    if let Some(size) = d["body"]["size"].as_u64() {
        let _ = writeln!(
            out,
            "    body rewritten by the plugin ({})",
            table::size(size)
        );
    }
    let log = d["attempt_log"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if !log.is_empty() {
        let mut t = Table::new(&["#", "AT", "RESULT", "LATENCY", "RESPONSE"])
            .right_align(&[0, 3])
            .max_width(2, 60)
            .max_width(4, 40);
        for a in log {
            let result = match (a["status_code"].as_u64(), a["error"].as_str()) {
                (Some(code), Some(err)) => format!("HTTP {code}: {err}"),
                (Some(code), None) => format!("HTTP {code}"),
                (None, Some(err)) => err.to_string(),
                (None, None) => "-".to_string(),
            };
            t.row(vec![
                table::text(&a["n"]),
                table::time_of(&a["at"]),
                result,
                a["latency_ms"]
                    .as_f64()
                    .map(table::millis)
                    .unwrap_or_default(),
                a["response_body"].as_str().unwrap_or("").to_string(),
            ]);
        }
        out.push_str(&indent(&t.render(), "    "));
    } else if let Some(err) = d["last_error"].as_str() {
        let _ = writeln!(out, "    last error: {}", table::fit(err, 120));
    }
    out
}

/// A JSON object or array laid out two spaces per level, keys and numbers
/// exactly as sent (parsing into a `Value` would sort the keys and could
/// reformat numbers, and this is the body the provider sent). `None` when
/// the text is not a JSON object or array.
fn reindent_json(text: &str) -> Option<String> {
    let v: Value = serde_json::from_str(text).ok()?;
    if !(v.is_object() || v.is_array()) {
        return None;
    }
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.extend(std::iter::repeat_n("  ", depth));
    };
    let mut chars = text.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                if matches!(chars.peek(), Some('}' | ']')) {
                    out.push(chars.next()?);
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    Some(out)
}

/// Headers arrive as `[name, value]` pairs (order and repeats kept); an
/// object is accepted too.
fn header_pairs(v: &Value) -> Vec<(String, String)> {
    match v {
        Value::Array(items) => items
            .iter()
            .filter_map(|h| {
                Some((
                    h.get(0)?.as_str()?.to_string(),
                    h.get(1)?.as_str()?.to_string(),
                ))
            })
            .collect(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| (k.clone(), table::text(v)))
            .collect(),
        _ => Vec::new(),
    }
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
async fn events_tail(client: &AdminClient, conn: &Conn, args: &EventTail) -> Result<()> {
    let mut base = Vec::new();
    if let Some(s) = &args.source {
        base.push(("source", s.clone()));
    }
    let mut first = base.clone();
    first.push(("limit", TAIL_PAGE.to_string()));
    let start = client.get(&["admin", "events"], &first).await?;
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut newest = 0;
    for e in list(&start, "events")? {
        let at = e["received_at"].as_u64().unwrap_or(0);
        newest = newest.max(at);
        seen.insert(table::text(&e["id"]), at);
    }
    seen.retain(|_, at| *at >= newest.saturating_sub(TAIL_OVERLAP_MS));
    if let Some(s) = &args.status {
        base.push(("status", s.clone()));
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
        let mut fresh: Vec<Value> = events
            .into_iter()
            .filter(|e| !seen.contains_key(&table::text(&e["id"])))
            .collect();
        fresh.sort_by_key(|e| {
            (
                e["received_at"].as_u64().unwrap_or(0),
                table::text(&e["id"]),
            )
        });
        let mut out = String::new();
        for e in &fresh {
            let at = e["received_at"].as_u64().unwrap_or(0);
            newest = newest.max(at);
            seen.insert(table::text(&e["id"]), at);
            if conn.json {
                out += &e.to_string();
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
) -> Result<Vec<Value>> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..TAIL_MAX_PAGES {
        let mut q = base.to_vec();
        q.push(("since", since.to_string()));
        q.push(("limit", TAIL_PAGE.to_string()));
        if let Some(c) = &cursor {
            q.push(("cursor", c.clone()));
        }
        let v = client.get(&["admin", "events"], &q).await?;
        all.extend(list(&v, "events")?.iter().cloned());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    Ok(all)
}

fn tail_line(e: &Value) -> String {
    let deliveries = e["deliveries"].as_u64().unwrap_or(0);
    format!(
        "{}  {}  {:<12}  {:<7}  {:>9}  {deliveries} deliver{}\n",
        table::time_of(&e["received_at"]),
        table::text(&e["id"]),
        table::fit(&table::text(&e["source"]), 48),
        table::text(&e["status"]),
        e["size"].as_u64().map(table::size).unwrap_or_default(),
        if deliveries == 1 { "y" } else { "ies" },
    )
}

// ---- replay ------------------------------------------------------------------

async fn replay(client: &AdminClient, args: &Replay) -> Result<()> {
    if let Some(id) = &args.id {
        let v = client
            .post(&["admin", "events", id, "replay"], None)
            .await?;
        if args.conn.json {
            return print_json(&v);
        }
        return emit(&format!(
            "replay of {} {}; `hookyard events show {id}` shows its new deliveries\n",
            v["event"].as_str().unwrap_or(id),
            v["status"].as_str().unwrap_or("queued"),
        ));
    }
    let body = body(&[
        ("source", args.source.clone().map(Value::from)),
        ("status", args.status.clone().map(Value::from)),
        ("since", args.window.since.map(Value::from)),
        ("until", args.window.until.map(Value::from)),
    ]);
    if body.is_empty() {
        bail!(
            "replay needs an event id, or at least one of --source, --status, --since, --until \
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
    let ids = v["events"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let count = v["replayed"].as_u64().unwrap_or(ids.len() as u64);
    let mut out = format!("queued replay of {count} event{}\n", plural(count));
    // A short list helps; thousands of ids are for --json.
    if ids.len() <= 50 {
        for id in ids {
            let _ = writeln!(out, "  {}", table::text(id));
        }
    } else {
        out.push_str("  (--json lists their ids)\n");
    }
    emit(&out)
}

// ---- deliveries --------------------------------------------------------------

async fn deliveries_list(client: &AdminClient, conn: &Conn, args: &DeliveryList) -> Result<()> {
    let filters = [
        ("status", args.status.clone()),
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
    let mut t = Table::new(&["ID", "EVENT", "TARGET", "STATUS", "ATTEMPTS", "LAST ERROR"])
        .right_align(&[4])
        .max_width(5, 60);
    for d in list(&v, "deliveries")? {
        t.row(vec![
            table::text(&d["id"]),
            table::text(&d["event_id"]),
            table::text(&d["target"]),
            table::text(&d["status"]),
            table::text(&d["attempts"]),
            table::text(&d["last_error"]),
        ]);
    }
    let mut out = if t.is_empty() {
        "no deliveries on this page\n".to_string()
    } else {
        t.render()
    };
    if let Some(cursor) = v["next_cursor"].as_str() {
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
        return emit(&format!(
            "delivery {} {} for an attempt now\n",
            v["delivery"].as_str().unwrap_or(id),
            v["status"].as_str().unwrap_or("scheduled"),
        ));
    }
    let body = body(&[
        ("status", args.status.clone().map(Value::from)),
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
    let count = v["retried"].as_u64().unwrap_or(0);
    emit(&format!(
        "scheduled {count} deliver{} for an attempt now\n",
        if count == 1 { "y" } else { "ies" }
    ))
}

// ---- targets -----------------------------------------------------------------

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

// ---- shared ------------------------------------------------------------------

/// Query pairs for the filters that were given, plus the cursor.
fn query(
    filters: &[(&'static str, Option<String>)],
    cursor: &Option<String>,
) -> Vec<(&'static str, String)> {
    filters
        .iter()
        .chain(std::iter::once(&("cursor", cursor.clone())))
        .filter_map(|(k, v)| Some((*k, v.clone()?)))
        .collect()
}

/// A JSON object of the fields that were given.
fn body(fields: &[(&str, Option<Value>)]) -> Map<String, Value> {
    fields
        .iter()
        .filter_map(|(k, v)| Some((k.to_string(), v.clone()?)))
        .collect()
}

/// The command that fetches the next page, ready to paste: times are the
/// resolved milliseconds so "--since 1h" does not drift between pages.
fn next_hint(
    conn: &Conn,
    command: &str,
    filters: &[(&'static str, Option<String>)],
    cursor: &str,
) -> String {
    let mut hint = format!("next: hookyard {command}");
    if conn.admin.trim_end_matches('/') != DEFAULT_ADMIN {
        let _ = write!(hint, " --admin {}", shell_word(&conn.admin));
    }
    for (k, v) in filters {
        if let Some(v) = v {
            let _ = write!(hint, " --{k} {}", shell_word(v));
        }
    }
    let _ = writeln!(hint, " --cursor {}", shell_word(cursor));
    hint
}

/// Quotes a word for a POSIX shell when it holds anything but safe characters.
fn shell_word(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_.:/@%+=,".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn list<'a>(v: &'a Value, key: &str) -> Result<&'a [Value]> {
    v[key]
        .as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| anyhow!("unexpected answer from the admin API (no {key:?} list): {v}"))
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines().map(|l| format!("{prefix}{l}\n")).collect()
}

fn print_json(v: &Value) -> Result<()> {
    emit(&format!("{}\n", serde_json::to_string_pretty(v)?))
}

/// Stdout went away (the reader of a pipe exited): stop quietly.
#[derive(Debug)]
struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Writes and flushes at once, so `events tail` lines appear as they come
/// even through a pipe.
fn emit(text: &str) -> Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        other => Ok(other?),
    }
}

/// `--since`/`--until`: unix ms as the API takes them, an RFC 3339 UTC
/// time (or a bare date), or a duration meaning that long ago. Resolved to
/// ms here so the server sees one unambiguous form.
fn parse_time(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|e| format!("{s:?}: {e}"));
    }
    let rfc3339 = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_string()
    };
    if let Ok(t) = humantime::parse_rfc3339_weak(&rfc3339) {
        return Ok(unix_ms(t));
    }
    if let Ok(ago) = humantime::parse_duration(s) {
        return Ok(unix_ms(SystemTime::now()).saturating_sub(ago.as_millis() as u64));
    }
    Err(format!(
        "{s:?}: expected unix milliseconds, an RFC 3339 UTC time (2026-11-23T10:00:00Z) \
         or a duration ago (15m, 2h, 7d)"
    ))
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The tail's poll interval; zero would hammer the server.
fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (e.g. 500ms, 2s)"))?;
    if d < Duration::from_millis(50) {
        return Err(format!("{s:?}: at least 50ms"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::json;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        op: OpsCommand,
    }

    fn parse(args: &[&str]) -> Result<OpsCommand, clap::Error> {
        Cli::try_parse_from(std::iter::once("hookyard").chain(args.iter().copied())).map(|c| c.op)
    }

    #[test]
    fn times_parse_as_ms_rfc3339_dates_and_durations_ago() {
        assert_eq!(parse_time("1763892000000"), Ok(1_763_892_000_000));
        assert_eq!(parse_time("2025-11-23T10:00:00Z"), Ok(1_763_892_000_000));
        assert_eq!(parse_time("2025-11-23T10:00:00.5Z"), Ok(1_763_892_000_500));
        assert_eq!(parse_time("2025-11-23"), Ok(1_763_856_000_000));
        let now = unix_ms(SystemTime::now());
        let ago = parse_time("1h").unwrap();
        assert!(
            ago <= now - 3_600_000 && ago > now - 3_700_000,
            "{ago} vs {now}"
        );
        let err = parse_time("yesterday").unwrap_err();
        assert!(err.contains("RFC 3339"), "{err}");
    }

    #[test]
    fn json_bodies_are_indented_without_reordering() {
        let body = r#"{"z":1,"a":[1, 2.50,{}],"s":"x,{\"y\":[]}","e":[] ,"n":{"k":null}}"#;
        assert_eq!(
            reindent_json(body).unwrap(),
            "{\n  \"z\": 1,\n  \"a\": [\n    1,\n    2.50,\n    {}\n  ],\n  \
             \"s\": \"x,{\\\"y\\\":[]}\",\n  \"e\": [],\n  \"n\": {\n    \"k\": null\n  }\n}"
        );
        assert_eq!(reindent_json("[]").unwrap(), "[]");
        assert!(reindent_json("42").is_none());
        assert!(reindent_json("{not json").is_none());
    }

    #[test]
    fn the_interval_must_be_sane() {
        assert_eq!(parse_interval("1s"), Ok(Duration::from_secs(1)));
        assert!(parse_interval("0s").is_err());
        assert!(parse_interval("soon").is_err());
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

    #[test]
    fn the_next_page_hint_repeats_filters_and_quotes() {
        let conn = Conn {
            admin: "http://10.0.0.2:8081".into(),
            token: Some("secret".into()),
            json: false,
        };
        let hint = next_hint(
            &conn,
            "events list",
            &[
                ("source", Some("shop".into())),
                ("status", None),
                ("since", Some("1763892000000".into())),
            ],
            "evt_01 x",
        );
        assert_eq!(
            hint,
            "next: hookyard events list --admin http://10.0.0.2:8081 --source shop \
             --since 1763892000000 --cursor 'evt_01 x'\n"
        );
        assert!(!hint.contains("secret"), "never echo the token");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }

    #[test]
    fn query_keeps_only_given_filters() {
        let q = query(
            &[("source", Some("s".into())), ("status", None)],
            &Some("c".into()),
        );
        assert_eq!(
            q,
            vec![("source", "s".to_string()), ("cursor", "c".to_string())]
        );
        assert!(body(&[("a", None)]).is_empty());
    }

    fn sample_event() -> Value {
        json!({
            "event": {
                "id": "evt_1", "source": "shop", "received_at": 1_763_892_000_000u64,
                "method": "POST", "path": "/hooks/shop", "query": "a=1",
                "headers": [["content-type", "application/json"], ["x-n", "1"]],
                "body": {"size": 12, "text": "{\"n\":1}", "base64": "eyJuIjoxfQ=="}
            },
            "status": "routed",
            "pending_reason": null,
            "outcome": {"status": "routed", "routed_at": 1_763_892_000_100u64,
                "plugins": [{"plugin": "router", "result": "drop", "reason": "not an order",
                             "deliveries": 0, "duration_us": 1500}],
                "deliveries": ["msg_1"]},
            "deliveries": [{
                "id": "msg_1", "event_id": "evt_1", "target": "orders", "origin": "passthrough",
                "headers": [], "created_at": 1_763_892_000_100u64, "status": "dead", "attempts": 2,
                "last_error": "HTTP 500", "body": null,
                "attempt_log": [
                    {"n": 1, "at": 1_763_892_000_200u64, "status_code": 500, "latency_ms": 12.4,
                     "response_body": "oops\nline two"},
                    {"n": 2, "at": 1_763_892_001_200u64, "latency_ms": 3.0,
                     "error": "connection refused", "response_body": ""}
                ]
            }]
        })
    }

    #[test]
    fn an_event_reads_top_to_bottom() {
        let text = render_event(&sample_event());
        for want in [
            "event     evt_1",
            "received  2025-11-23T10:00:00Z",
            "request   POST /hooks/shop?a=1",
            "status    routed",
            "  content-type: application/json",
            "body (12 B)",
            "    \"n\": 1",
            "router  drop",
            "not an order",
            "msg_1 -> orders  dead  (passthrough, 2 attempts)",
            "HTTP 500",
            "oops line two",
            "connection refused",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
    }

    #[test]
    fn a_binary_or_pending_event_still_renders() {
        let v = json!({
            "event": {"id": "evt_2", "body": {"size": 3, "text": null, "base64": "AAEC"}},
            "status": "pending", "pending_reason": "plugin router is not loaded",
            "outcome": null, "deliveries": []
        });
        let text = render_event(&v);
        assert!(
            text.contains("waiting   plugin router is not loaded"),
            "{text}"
        );
        assert!(text.contains("not UTF-8"), "{text}");
        assert!(text.contains("no deliveries"), "{text}");
    }

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

    #[test]
    fn tail_lines_carry_time_id_and_status() {
        let line = tail_line(&json!({"id": "evt_1", "source": "shop",
            "received_at": 1_763_892_000_000u64, "status": "pending", "size": 48, "deliveries": 0}));
        assert!(
            line.starts_with("2025-11-23T10:00:00Z  evt_1  shop"),
            "{line}"
        );
        assert!(line.contains("pending") && line.contains("48 B"), "{line}");
        assert!(line.ends_with("  0 deliveries\n"), "{line}");
    }
}
