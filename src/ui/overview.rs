//! The overview: per-minute counts with small charts, the queue, the
//! oldest waiting delivery, and what needs attention.

use std::sync::Arc;

use axum::extract::State;
use maud::{Markup, html};

use super::layout::{Nav, ago, chip, page};
use super::{Page, UiState};
use crate::delivery::state::Circuit;
use crate::model::id::now_ms;
use crate::telemetry::live::TotalsView;

/// Rejections in the last minute that count as a spike, when they also
/// outnumber what was accepted.
const REJECTION_SPIKE: u64 = 10;

/// A line drawn through `values` (oldest first), scaled to its maximum.
fn sparkline(values: &[u64]) -> Markup {
    let max = values.iter().copied().max().unwrap_or(0).max(1) as f64;
    let n = values.len().max(2) - 1;
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let x = i as f64 * 100.0 / n as f64;
            let y = 34.0 - (*v as f64 / max) * 32.0;
            format!("{x:.1},{y:.1}")
        })
        .collect();
    html! {
        svg viewBox="0 0 100 36" preserveAspectRatio="none" role="img" aria-label="per minute" {
            polyline points=(points.join(" ")) {}
        }
    }
}

/// Something an operator should look at, and where to act on it.
struct Problem {
    what: String,
    href: String,
}

pub async fn show(State(state): State<Arc<UiState>>) -> Page {
    let admin = &state.admin;
    let now = now_ms();
    let totals = admin.telemetry.totals();
    let minutes = state.history.per_minute(now, totals);
    let last = minutes.last().copied().unwrap_or_default();
    let targets = admin.dispatcher.target_statuses();
    let scheduled: u64 = targets.iter().map(|t| t.scheduled).sum();
    let dead: u64 = targets.iter().map(|t| t.dead).sum();
    let waiting = admin.router.waiting_count();
    let mut oldest: Option<(u64, String)> = None;
    for t in &targets {
        if let Some((due, _)) = admin
            .store
            .queue
            .upcoming(&t.name, 1)
            .await?
            .into_iter()
            .next()
            && oldest.as_ref().is_none_or(|(d, _)| due < *d)
        {
            oldest = Some((due, t.name.clone()));
        }
    }

    let mut problems = Vec::new();
    for t in &targets {
        let href = format!("/ui/targets#{}", t.name);
        if let Some(d) = &t.disabled {
            problems.push(Problem {
                what: format!("target {} is disabled: {}", t.name, d.reason),
                href: href.clone(),
            });
        } else if t.state == Circuit::Open {
            problems.push(Problem {
                what: format!(
                    "target {} is failing (circuit open): {}",
                    t.name,
                    t.last_error.as_deref().unwrap_or("")
                ),
                href: href.clone(),
            });
        }
        if t.paused {
            problems.push(Problem {
                what: format!("target {} is paused", t.name),
                href: href.clone(),
            });
        }
        if t.dead > 0 {
            problems.push(Problem {
                what: format!("target {} has {} dead deliveries", t.name, t.dead),
                href: format!("/ui/deliveries?target={}&status=dead", t.name),
            });
        }
    }
    for p in admin.plugins.statuses() {
        if p.status != "ok" || p.last_error.is_some() {
            problems.push(Problem {
                what: format!(
                    "plugin {} is {}{}",
                    p.name,
                    p.status,
                    p.last_error
                        .as_ref()
                        .map(|e| format!(": {}", e.error))
                        .unwrap_or_default()
                ),
                href: "/ui/plugins".into(),
            });
        } else if p.stats.errors > 0 {
            problems.push(Problem {
                what: format!("plugin {} failed {} calls", p.name, p.stats.errors),
                href: "/ui/plugins".into(),
            });
        }
    }
    let config = admin.config.status();
    if let Some(r) = &config.last_refused {
        problems.push(Problem {
            what: format!(
                "the last config reload was refused ({}); the running config stays: {}",
                ago(r.at),
                r.error
            ),
            href: "/admin/config".into(),
        });
    }
    if !config.needs_restart.is_empty() {
        problems.push(Problem {
            what: format!(
                "config changes wait for a restart: {}",
                config.needs_restart.join(", ")
            ),
            href: "/admin/config".into(),
        });
    }
    if last.rejected >= REJECTION_SPIKE && last.rejected > last.accepted {
        problems.push(Problem {
            what: format!(
                "{} requests rejected in the last minute ({} accepted)",
                last.rejected, last.accepted
            ),
            href: "/ui/sources".into(),
        });
    }

    type Metric = (&'static str, &'static str, fn(&TotalsView) -> u64);
    let metrics: [Metric; 6] = [
        ("received", "Received", |t| t.received),
        ("accepted", "Accepted", |t| t.accepted),
        ("rejected", "Rejected", |t| t.rejected),
        ("routed", "Routed", |t| t.routed),
        ("delivered", "Delivered", |t| t.delivered),
        ("failed", "Failed attempts", |t| t.failed),
    ];
    Ok(page(
        "Overview",
        Nav::Overview,
        html! {
            h1 { "Overview" }
            h2 { "Per minute, last 30 minutes" }
            div.cards {
                @for (key, label, get) in metrics {
                    div.card data-metric=(key) {
                        div.label { (label) " · total " span data-total=(key) { (get(&totals)) } }
                        div.value { (get(&last)) span.muted { " /min" } }
                        (sparkline(&minutes.iter().map(get).collect::<Vec<_>>()))
                    }
                }
            }
            h2 { "Queue" }
            div.cards {
                div.card { div.label { "Deliveries scheduled" } div.value #scheduled { (scheduled) } }
                div.card { div.label { "Events waiting to be routed" } div.value { (waiting) } }
                div.card { div.label { "Dead letters" } div.value { a href="/ui/deliveries?status=dead" { (dead) } } }
                div.card {
                    div.label { "Oldest waiting delivery" }
                    div.value {
                        @match &oldest {
                            Some((due, target)) => { span title=(super::layout::time(*due)) { "due " (ago(*due)) } div.label { "target " (target) } }
                            None => { "none" }
                        }
                    }
                }
            }
            p.muted #config {
                "Config "
                code { (config.sha256.as_deref().map_or("(not from a file)", |h| &h[..h.len().min(12)])) }
                " loaded " span title=(super::layout::time(config.loaded_at)) { (ago(config.loaded_at)) }
                ", " (config.reloads) " reloads since start"
            }
            h2 { "Problems" }
            @if problems.is_empty() {
                p.muted #problems { "Nothing needs attention." }
            } @else {
                ul #problems {
                    @for p in &problems {
                        li { a href=(p.href) { (p.what) } }
                    }
                }
            }
            h2 { "Targets" }
            div.scroll { table {
                thead { tr { th { "target" } th { "state" } th.num { "scheduled" } th.num { "in flight" } th.num { "dead" } } }
                tbody {
                    @for t in &targets {
                        tr {
                            td { a href={ "/ui/targets#" (t.name) } { (t.name) } }
                            td { (chip(super::targets::state_word(t))) }
                            td.num { (t.scheduled) } td.num { (t.in_flight) } td.num { (t.dead) }
                        }
                    }
                }
            } }
        },
    ))
}
