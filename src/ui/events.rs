//! Events: the list (filters, a bounded search in bodies, cursor paging,
//! all in the URL), one event as received with what became of it, and
//! replays (one, or every event the filter matches after a dry run).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

use super::layout::{Nav, ago, bytes, chip, notice, page, pick, query, time, with_notice};
use super::{Page, UiError, UiState};
use crate::admin::actions::{BULK_MAX, matching_events, replay_all};
use crate::admin::event_view;
use crate::api::extract::JsonPath;
use crate::model::id::EventId;
use crate::model::records::EventState;
use crate::model::word::Word;
use crate::routing::Replay;
use crate::store::{EventQuery, EventSummary};
use crate::telemetry::{ReplayKind, Replayed};

/// Rows per page.
const PAGE: usize = 50;

/// Bytes of a body shown on an event's page.
const BODY_SHOWN: usize = 256 * 1024;

/// Events a body search reads per page at most: the search is a scan, so
/// it is bounded, and the page says how far it got.
pub const SEARCH_SCAN: usize = 500;

/// One row of the list; also sent over the live stream for a new event.
pub fn row(e: &EventSummary) -> Markup {
    html! {
        td.mono { a href={ "/ui/events/" (e.id) } { (e.id) } }
        td { (e.source) }
        td { (chip(e.status.as_str())) }
        td.hide-small title=(time(e.received_at)) { (ago(e.received_at)) }
        td.num.hide-small { (bytes(e.size)) }
        td.num { (e.deliveries) }
    }
}

fn filters_of(q: &HashMap<String, String>) -> HashMap<String, String> {
    pick(q, &["source", "status", "version", "since", "until"])
}

pub async fn list(
    State(state): State<Arc<UiState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Page {
    let admin = &state.admin;
    let mut filters = filters_of(&q);
    let search = q.get("q").filter(|s| !s.is_empty()).cloned();
    filters.insert("limit".into(), PAGE.to_string());
    if let Some(c) = q.get("cursor").filter(|c| !c.is_empty()) {
        filters.insert("cursor".into(), c.clone());
    }
    let query_of = crate::admin::list_event_query(&filters)?;
    let (items, next, scanned) = match &search {
        None => {
            let page = admin.store.records.list_events(&query_of).await?;
            (page.items, page.next_cursor, None)
        }
        Some(needle) => search_bodies(&state, query_of, needle).await?,
    };
    let v = |k: &str| q.get(k).map(String::as_str);
    let head = v("cursor").is_none() && search.is_none() && v("status").is_none();
    let config = admin.config.get();
    let sources: Vec<&String> = config.sources.keys().collect();
    let here = query(&[
        ("source", v("source")),
        ("status", v("status")),
        ("since", v("since")),
        ("until", v("until")),
        ("version", v("version")),
        ("q", v("q")),
    ]);
    Ok(page(
        "Events",
        Nav::Events,
        html! {
            h1 { "Events" }
            (notice(q.get("notice")))
            form.filters method="get" action="/ui/events" {
                label { "source" select name="source" {
                    option value="" { "any" }
                    @for s in &sources { option selected[v("source") == Some(s.as_str())] { (s) } }
                } }
                label { "status" select name="status" {
                    option value="" { "any" }
                    @for s in EventState::ALL { option selected[v("status") == Some(s.as_str())] { (s.as_str()) } }
                } }
                label { "since" input type="text" name="since" placeholder="2026-12-01T10:00:00Z" value=[v("since")]; }
                label { "until" input type="text" name="until" value=[v("until")]; }
                label { "version" input type="text" name="version" value=[v("version")]; }
                label { "body contains" input type="search" name="q" value=[v("q")]; }
                button type="submit" { "Filter" }
                a href="/ui/events" { "clear" }
            }
            div.banner #fresh hidden {
                span data-fresh { "0" } " new — " a href={ "/ui/events" (here) } { "show them" }
            }
            @if let Some(n) = scanned {
                p.muted { "Searched the bodies of " (n) " events for this page." }
            }
            div.scroll { table {
                thead { tr { th { "id" } th { "source" } th { "status" } th.hide-small { "received" } th.num.hide-small { "size" } th.num { "deliveries" } } }
                tbody #events data-head=(if head { "yes" } else { "no" }) data-source=[v("source")] {
                    @for e in &items { tr { (row(e)) } }
                }
            } }
            @if items.is_empty() { p.muted { "No events match." } }
            div.pager {
                @if v("cursor").is_some() { a href={ "/ui/events" (here) } { "« newest" } }
                @if let Some(c) = &next {
                    a #next href={ "/ui/events" (query(&[("source", v("source")), ("status", v("status")), ("since", v("since")), ("until", v("until")),
        ("version", v("version")), ("q", v("q")), ("cursor", Some(c.as_str()))])) } { "older »" }
                }
            }
            @if !filters_of(&q).is_empty() {
                form method="post" action={ "/ui/events/replay" (query(&[("source", v("source")), ("status", v("status")), ("since", v("since")), ("until", v("until")), ("version", v("version"))])) } {
                    button type="submit" { "Replay every event this filter matches…" }
                }
            }
        },
    ))
}

/// Reads pages from `q`'s cursor on, keeping events whose body contains
/// `needle`, until a page is full or [`SEARCH_SCAN`] events were read.
async fn search_bodies(
    state: &UiState,
    mut q: EventQuery,
    needle: &str,
) -> Result<(Vec<EventSummary>, Option<String>, Option<usize>), UiError> {
    let records = &state.admin.store.records;
    let needle = needle.as_bytes();
    let mut found = Vec::new();
    let mut scanned = 0;
    let want = q.limit;
    q.limit = 200;
    loop {
        let page = records.list_events(&q).await?;
        for e in page.items {
            scanned += 1;
            let cursor = e.id.to_string();
            if let Some(full) = records.event(&e.id).await?
                && full.body.windows(needle.len()).any(|w| w == needle)
            {
                found.push(e);
            }
            if found.len() >= want || scanned >= SEARCH_SCAN {
                return Ok((found, Some(cursor), Some(scanned)));
            }
        }
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => return Ok((found, None, Some(scanned))),
        }
    }
}

pub async fn detail(
    State(state): State<Arc<UiState>>,
    JsonPath(id): JsonPath<EventId>,
    Query(q): Query<HashMap<String, String>>,
) -> Page {
    let Some(view) = event_view(&*state.admin.store.records, &id, None, 100).await? else {
        return Err(UiError::not_found(format!("no event {id}")));
    };
    let e = &view.event.event;
    let body = &view.event.body;
    // A large body is shown in part (it can be downloaded whole).
    let shown = body.text.as_deref().map(|t| {
        let mut end = t.len().min(BODY_SHOWN);
        while !t.is_char_boundary(end) {
            end -= 1;
        }
        &t[..end]
    });
    let cut = body.size > BODY_SHOWN;
    let pretty = if cut {
        None
    } else {
        shown.and_then(crate::api::json::reindent_json)
    };
    let url = format!(
        "http://{}/hooks/{}{}",
        state.admin.config.get().server.listen,
        e.source,
        if e.query.is_empty() {
            String::new()
        } else {
            format!("?{}", e.query)
        }
    );
    let curl = curl(&url, &e.method, &e.headers, body.text.as_deref());
    Ok(page(
        &format!("Event {id}"),
        Nav::Events,
        html! {
            h1 { "Event " span.mono { (id) } }
            (notice(q.get("notice")))
            dl.kv {
                dt { "source" } dd { a href={ "/ui/events?source=" (e.source) } { (e.source) } }
                dt { "status" } dd #status { (chip(view.status.as_str())) }
                @if let Some(v) = &e.version { dt { "version" } dd.mono { (v) } }
                @if let Some(r) = &view.pending_reason { dt { "waiting for" } dd { (r) } }
                dt { "received" } dd { (time(e.received_at)) " (" (ago(e.received_at)) ")" }
                dt { "request" } dd.mono { (e.method) " " (e.path) @if !e.query.is_empty() { "?" (e.query) } }
                dt { "body" } dd { (bytes(body.size)) " · " a href={ "/ui/events/" (id) "/body" } download { "download raw" } }
                @if let (Some(enc), Some(received)) = (&e.content_encoding, &view.event.received_body) {
                    dt { "received as" } dd #received { "Content-Encoding " code { (enc) } ", " (bytes(received.size)) " on the wire; the body below is decoded (what plugins got and deliveries send)" }
                }
            }
            form method="post" action={ "/ui/events/" (id) "/replay" } {
                button.primary #replay type="submit" { "Replay" }
                span.muted { " routes the event again: its plugins run and new deliveries are made" }
            }
            h2 { "Headers" }
            div.scroll { table.mono {
                @for (k, v) in &e.headers { tr { td { (k) } td { (v) } } }
            } }
            h2 { "Body" }
            @match (&pretty, shown) {
                (Some(p), _) => { pre #body { (p) } }
                (None, Some(t)) => { pre #body { (t) } }
                (None, None) => { p.muted { "Binary (" (body.size) " bytes): download it above." } }
            }
            @if cut && shown.is_some() { p.muted { "The first " (bytes(BODY_SHOWN)) " of " (bytes(body.size)) "; download it for the rest." } }
            details {
                summary { "Copy as curl" }
                pre #curl { (curl) }
            }
            h2 { "Plugins" }
            @match &view.outcome {
                None => { p.muted { "Not routed yet." } }
                Some(o) => {
                    @if o.outcome.plugins.is_empty() { p.muted { "No plugins: passthrough only." } }
                    @else {
                        div.scroll { table {
                            thead { tr { th { "plugin" } th { "decision" } th { "reason" } th.num { "deliveries" } th.num { "time" } } }
                            @for p in &o.outcome.plugins {
                                tr {
                                    td { (p.plugin) }
                                    td { (chip(&format!("{:?}", p.result).to_lowercase())) }
                                    td { (p.reason.as_deref().unwrap_or("")) }
                                    td.num { (p.deliveries) }
                                    td.num { (format!("{:.2} ms", p.duration_us as f64 / 1000.0)) }
                                }
                                @if !p.logs.is_empty() {
                                    tr { td colspan="5" {
                                        pre.plugin-log { @for l in &p.logs { (l.level) " " (l.message) "\n" } }
                                    } }
                                }
                            }
                        } }
                    }
                    p.muted { "Routed " (ago(o.outcome.routed_at)) "; " (o.deliveries_total) " deliveries." }
                }
            }
            h2 { "Deliveries" }
            @if view.deliveries.is_empty() { p.muted { "None." } }
            @if view.deliveries_next_cursor.is_some() {
                p { "The first " (view.deliveries.len()) "; " a href={ "/ui/deliveries?status=&event=" (id) } { "all of this event's deliveries" } "." }
            }
            @for d in &view.deliveries {
                section.card.delivery data-delivery=(d.delivery.id) {
                    div {
                        strong { (d.delivery.target) } " " (chip(d.delivery.status.as_str())) " "
                        span.mono.muted { (d.delivery.id) }
                        " · " (d.delivery.attempts) " attempts"
                        @if let Some(n) = d.delivery.next_attempt_at { " · next " (ago(n)) }
                        form.inline method="post" action={ "/ui/deliveries/" (d.delivery.id) "/retry?back=/ui/events/" (id) } {
                            " " button type="submit" { "Retry" }
                        }
                    }
                    @if !d.attempt_log.is_empty() {
                        ol.timeline {
                            @for a in &d.attempt_log {
                                li {
                                    "#" (a.n) " · " (time(a.at)) " · "
                                    @match a.status_code { Some(c) => { span class=(if (200..300).contains(&c) { "ok" } else { "bad" }) { (c) } } None => { span.bad { "no answer" } } }
                                    " · " (format!("{:.1} ms", a.latency_ms))
                                    @if let Some(err) = &a.error { " · " span.bad { (err) } }
                                    @if !a.response_body.is_empty() { pre { (a.response_body) } }
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}

/// A shell command that sends the same request again (to this hookyard).
fn curl(url: &str, method: &str, headers: &[(String, String)], body: Option<&str>) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut out = format!("curl -X {} {}", method, quote(url));
    for (k, v) in headers {
        if matches!(k.as_str(), "host" | "content-length" | "connection") {
            continue;
        }
        out.push_str(&format!(" \\\n  -H {}", quote(&format!("{k}: {v}"))));
    }
    match body {
        Some(b) => out.push_str(&format!(" \\\n  --data-binary {}", quote(b))),
        None => out.push_str(" \\\n  --data-binary @body.bin"),
    }
    out
}

pub async fn raw_body(
    State(state): State<Arc<UiState>>,
    JsonPath(id): JsonPath<EventId>,
) -> Result<Response, UiError> {
    let Some(e) = state.admin.store.records.event(&id).await? else {
        return Err(UiError::not_found(format!("no event {id}")));
    };
    let content_type = e
        .header("content-type")
        .unwrap_or("application/octet-stream")
        .to_string();
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{id}.body\""),
            ),
        ],
        e.body,
    )
        .into_response())
}

pub async fn replay(
    State(state): State<Arc<UiState>>,
    JsonPath(id): JsonPath<EventId>,
) -> Result<Redirect, UiError> {
    let back = format!("/ui/events/{id}");
    let notice = match state.admin.router.replay(&id).await? {
        Replay::Queued => {
            state.admin.telemetry.emit(Replayed {
                kind: ReplayKind::Event,
                count: 1,
            });
            "Replay queued: the event is routed again.".to_string()
        }
        Replay::NotFound => return Err(UiError::not_found(format!("no event {id}"))),
        Replay::Pending => "The event is still waiting to be routed; nothing to replay yet.".into(),
    };
    Ok(Redirect::to(&with_notice(&back, &notice)))
}

/// Without `confirm=yes`: how many events would be replayed, and a button
/// to do it. With it: the replay.
pub async fn bulk_replay(
    State(state): State<Arc<UiState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, UiError> {
    let mut filters = filters_of(&q);
    if filters.is_empty() {
        return Err(UiError::bad_request(
            "choose which events to replay: filter by source, status or time first",
        ));
    }
    filters.insert("limit".into(), BULK_MAX.to_string());
    let ids = matching_events(&state.admin, &filters).await?;
    let v = |k: &str| q.get(k).map(String::as_str);
    let filter_query = query(&[
        ("source", v("source")),
        ("status", v("status")),
        ("since", v("since")),
        ("until", v("until")),
        ("version", v("version")),
    ]);
    if v("confirm") != Some("yes") {
        let described: Vec<String> = filters_of(&q)
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect();
        return Ok(page(
            "Replay events",
            Nav::Events,
            html! {
                h1 { "Replay events" }
                p #dry-run { "This filter (" (described.join(", ")) ") matches " strong #count { (ids.len()) } " events"
                    @if ids.len() >= BULK_MAX { " (the most one bulk action takes)" } "." }
                p { "Each is routed again: its plugins run and make new deliveries. Nothing has happened yet." }
                @if !ids.is_empty() {
                    form method="post" action={ "/ui/events/replay" (filter_query) (if filter_query.is_empty() { "?" } else { "&" }) "confirm=yes" } {
                        button.primary #confirm type="submit" { "Replay " (ids.len()) " events" }
                    }
                }
                p { a href={ "/ui/events" (filter_query) } { "Cancel" } }
            },
        )
        .into_response());
    }
    let replayed = replay_all(&state.admin, ids).await?;
    state.admin.telemetry.emit(Replayed {
        kind: ReplayKind::Event,
        count: replayed.len(),
    });
    Ok(Redirect::to(&with_notice(
        &format!("/ui/events{filter_query}"),
        &format!("{} events queued to be routed again.", replayed.len()),
    ))
    .into_response())
}
