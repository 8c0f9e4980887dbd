//! What is configured and how it is doing: plugins (version, status, last
//! load error, calls, errors, latency, events waiting) and sources
//! (verification, counts by result, recent rejections and why).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use maud::html;

use super::layout::{Nav, ago, chip, notice, page, time};
use super::{Page, UiState};

pub async fn plugins(
    State(state): State<Arc<UiState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Page {
    let admin = &state.admin;
    let statuses = admin.plugins.statuses();
    let waiting = admin.router.waiting_count();
    Ok(page(
        "Plugins",
        Nav::Plugins,
        html! {
            h1 { "Plugins" }
            (notice(q.get("notice")))
            p.muted { (waiting) " events waiting to be routed (for a plugin that is not loaded, or in the queue)." }
            div.scroll { table {
                thead { tr { th { "plugin" } th { "status" } th { "version (sha256)" } th.num { "calls" } th.num { "errors" } th.num { "p50 / p99" } th { "last load error" } } }
                tbody {
                    @for p in &statuses {
                        tr data-plugin=(p.name) {
                            td { (p.name) }
                            td { (chip(p.status)) }
                            td.mono { @match &p.serving {
                                Some(s) => { span title=(s.sha256) { (s.sha256.get(..12).unwrap_or(&s.sha256)) } span.muted { " · loaded " (ago(s.loaded_at)) } }
                                None => { "—" }
                            } }
                            td.num { (p.stats.calls) }
                            td.num class=[(p.stats.errors > 0).then_some("bad")] { (p.stats.errors) }
                            td.num { (format!("{:.2} / {:.2} ms", p.stats.latency_us.p50 as f64 / 1000.0, p.stats.latency_us.p99 as f64 / 1000.0)) }
                            td { @if let Some(e) = &p.last_error { span.bad { (e.error) } span.muted { " · " (time(e.at)) } } }
                        }
                    }
                }
            } }
            @if statuses.is_empty() { p.muted { "No plugins. Put NAME.wasm in " code { (admin.config.get().plugins.dir.display()) } "." } }
        },
    ))
}

pub async fn sources(
    State(state): State<Arc<UiState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Page {
    let admin = &state.admin;
    let recent = admin.rejections.recent();
    Ok(page(
        "Sources",
        Nav::Sources,
        html! {
            h1 { "Sources" }
            (notice(q.get("notice")))
            @for (name, s) in &admin.config.get().sources {
                @let counts = admin.telemetry.source_counts(name);
                section.card data-source=(name) {
                    h2 { a href={ "/ui/events?source=" (name) } { (name) } }
                    dl.kv {
                        dt { "endpoint" } dd.mono { "POST /hooks/" (name) }
                        dt { "verification" } dd { @match &s.verifier { Some(v) => { (v.scheme()) } None => { span.warn { "none" } } } }
                        dt { "plugins" } dd { (s.plugins.join(", ")) }
                        dt { "passthrough to" } dd { (s.targets.join(", ")) }
                        dt { "accepted" } dd.ok { (counts.get("accepted").copied().unwrap_or(0)) }
                        dt { "rejected" } dd {
                            @let rejected: Vec<_> = counts.iter().filter(|(k, _)| **k != "accepted" && **k != "duplicate").collect();
                            @if rejected.is_empty() { "0" }
                            @for (reason, n) in rejected { span.chip.bad { (reason) " " (n) } " " }
                        }
                    }
                    @let mine: Vec<_> = recent.iter().filter(|r| &r.source == name).take(20).collect();
                    @if !mine.is_empty() {
                        h2 { "Recent rejections" }
                        div.scroll { table {
                            thead { tr { th { "when" } th { "status" } th { "reason" } th { "client" } th { "message" } } }
                            @for r in mine {
                                tr { td title=(time(r.at)) { (ago(r.at)) } td { (r.status) } td { (chip(r.reason.as_str())) } td.mono { (r.client_ip) } td { (r.message) } }
                            }
                        } }
                    }
                }
            }
        },
    ))
}
