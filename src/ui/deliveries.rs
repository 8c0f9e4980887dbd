//! Deliveries and dead letters: filtered by target and status (dead by
//! default: that is what needs an operator), retry one, or retry every
//! delivery the filter matches after a dry-run count.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

use super::layout::{Nav, ago, chip, notice, page, pick, with_notice};
use super::{Page, UiError, UiState};
use crate::admin::actions::{BULK_MAX, matching_deliveries};
use crate::api::extract::JsonPath;
use crate::delivery::ops::Retry;
use crate::model::id::DeliveryId;
use crate::model::records::DeliveryStatus;
use crate::model::word::Word;
use crate::telemetry::{ReplayKind, Replayed};

fn filters_of(q: &HashMap<String, String>) -> HashMap<String, String> {
    let mut f = pick(q, &["target", "status", "event", "since", "until"]);
    // "any" is spelt as an empty status in the form; no status at all (a
    // first visit) means the dead letters.
    if !q.contains_key("status") {
        f.insert("status".into(), DeliveryStatus::Dead.as_str().into());
    }
    f
}

pub async fn list(
    State(state): State<Arc<UiState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Page {
    let admin = &state.admin;
    let filters = filters_of(&q);
    let mut with_page = filters.clone();
    with_page.insert("limit".into(), "50".into());
    if let Some(c) = q.get("cursor").filter(|c| !c.is_empty()) {
        with_page.insert("cursor".into(), c.clone());
    }
    let page_of = admin
        .store
        .records
        .list_deliveries(&crate::admin::list_delivery_query(&with_page)?)
        .await?;
    let f = |k: &str| filters.get(k).map(String::as_str);
    let here = filter_query(&filters);
    let config = admin.config.get();
    let targets: Vec<&String> = config.targets.keys().collect();
    Ok(page(
        "Deliveries",
        Nav::Deliveries,
        html! {
            h1 { "Deliveries" }
            (notice(q.get("notice")))
            form.filters method="get" action="/ui/deliveries" {
                label { "target" select name="target" {
                    option value="" { "any" }
                    @for t in &targets { option selected[f("target") == Some(t.as_str())] { (t) } }
                } }
                label { "status" select name="status" {
                    option value="" selected[f("status").is_none()] { "any" }
                    @for s in DeliveryStatus::ALL { option selected[f("status") == Some(s.as_str())] { (s.as_str()) } }
                } }
                @if let Some(e) = f("event") { input type="hidden" name="event" value=(e); }
                button type="submit" { "Filter" }
            }
            div.scroll { table {
                thead { tr { th { "delivery" } th { "event" } th { "target" } th { "status" } th.num { "attempts" } th { "last error" } th {} } }
                tbody #deliveries {
                    @for d in &page_of.items {
                        tr data-delivery=(d.id) {
                            td.mono { (d.id) }
                            td.mono { a href={ "/ui/events/" (d.event_id) } { (d.event_id) } }
                            td { (d.target) }
                            td { (chip(d.status.as_str()))
                                @if let Some(n) = d.next_attempt_at { " " span.muted { (ago(n)) } } }
                            td.num { (d.attempts) }
                            td { (d.last_error.as_deref().unwrap_or("")) }
                            td { form.inline method="post" action={ "/ui/deliveries/" (d.id) "/retry?back=" (url_path(&format!("/ui/deliveries{here}"))) } {
                                button type="submit" { "Retry" } } }
                        }
                    }
                }
            } }
            @if page_of.items.is_empty() { p.muted { "No deliveries match." } }
            div.pager {
                @if let Some(c) = &page_of.next_cursor {
                    a href={ "/ui/deliveries" (here) "&cursor=" (c) } { "older »" }
                }
            }
            form method="post" action={ "/ui/deliveries/retry" (here) } {
                button #bulk-retry type="submit" { "Retry every delivery this filter matches…" }
            }
        },
    ))
}

/// The filters as a query string. `status` is always written, empty for
/// "any": without it a list means the dead letters.
fn filter_query(filters: &HashMap<String, String>) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    s.append_pair(
        "status",
        filters.get("status").map(String::as_str).unwrap_or(""),
    );
    for k in ["target", "event", "since", "until"] {
        if let Some(v) = filters.get(k) {
            s.append_pair(k, v);
        }
    }
    format!("?{}", s.finish())
}

/// A same-site path for `back=`: anything else falls back to the list.
fn url_path(p: &str) -> String {
    url::form_urlencoded::byte_serialize(p.as_bytes()).collect()
}

fn safe_back(q: &HashMap<String, String>, fallback: &str) -> String {
    q.get("back")
        .filter(|b| b.starts_with("/ui/") && !b.starts_with("//"))
        .cloned()
        .unwrap_or_else(|| fallback.to_string())
}

pub async fn retry(
    State(state): State<Arc<UiState>>,
    JsonPath(id): JsonPath<DeliveryId>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Redirect, UiError> {
    let back = safe_back(&q, "/ui/deliveries");
    let notice = match state.admin.dispatcher.retry_delivery(&id).await? {
        Retry::Scheduled => {
            state.admin.telemetry.emit(Replayed {
                kind: ReplayKind::Delivery,
                count: 1,
            });
            format!("Delivery {id} scheduled to be sent again now.")
        }
        Retry::NotFound => return Err(UiError::not_found(format!("no delivery {id}"))),
        Retry::InFlight => {
            format!("Delivery {id} has an attempt in flight; its result decides what comes next.")
        }
        Retry::NoTarget => format!("Delivery {id} is for a target that is no longer configured."),
    };
    Ok(Redirect::to(&with_notice(&back, &notice)))
}

/// Without `confirm=yes`: how many deliveries the filter matches, and a
/// button to retry them. With it: the retry.
pub async fn bulk_retry(
    State(state): State<Arc<UiState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, UiError> {
    let mut filters = filters_of(&q);
    filters.insert("limit".into(), BULK_MAX.to_string());
    let ids = matching_deliveries(&state.admin, &filters).await?;
    filters.remove("limit");
    let filter_query = filter_query(&filters);
    if q.get("confirm").map(String::as_str) != Some("yes") {
        let described: Vec<String> = filters.iter().map(|(k, v)| format!("{k} = {v}")).collect();
        return Ok(page(
            "Retry deliveries",
            Nav::Deliveries,
            html! {
                h1 { "Retry deliveries" }
                p #dry-run { "This filter (" (described.join(", ")) ") matches " strong #count { (ids.len()) } " deliveries"
                    @if ids.len() >= BULK_MAX { " (the most one bulk action takes)" } "." }
                p { "Each is scheduled to be sent again now (delivered ones too). Nothing has happened yet." }
                @if !ids.is_empty() {
                    form method="post" action={ "/ui/deliveries/retry" (filter_query) "&confirm=yes" } {
                        button.primary #confirm type="submit" { "Retry " (ids.len()) " deliveries" }
                    }
                }
                p { a href={ "/ui/deliveries" (filter_query) } { "Cancel" } }
            },
        )
        .into_response());
    }
    let n = state.admin.dispatcher.retry_deliveries(ids).await?;
    state.admin.telemetry.emit(Replayed {
        kind: ReplayKind::Delivery,
        count: n,
    });
    Ok(Redirect::to(&with_notice(
        &format!("/ui/deliveries{filter_query}"),
        &format!("{n} deliveries scheduled to be sent again."),
    ))
    .into_response())
}
