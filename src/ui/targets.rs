//! Targets: circuit state and the time to the next probe, success rate,
//! latency, what is in flight, scheduled and dead, the last error; pause,
//! resume, enable, and a retry of the dead letters.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Redirect;
use maud::html;

use super::layout::{Nav, ago, chip, notice, page, time, with_notice};
use super::{Page, UiError, UiState};
use crate::api::extract::JsonPath;
use crate::api::types::{TargetAction, TargetStatus};
use crate::delivery::state::Circuit;
use crate::model::word::Word;

/// The one word that says what a target is doing.
pub fn state_word(t: &TargetStatus) -> &'static str {
    if t.disabled.is_some() {
        "disabled"
    } else if t.paused {
        "paused"
    } else {
        match t.state {
            Circuit::Closed => "closed",
            Circuit::Open => "open",
            Circuit::HalfOpen => "half_open",
        }
    }
}

pub async fn list(
    State(state): State<Arc<UiState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Page {
    let admin = &state.admin;
    let targets = admin.dispatcher.target_statuses();
    Ok(page(
        "Targets",
        Nav::Targets,
        html! {
            h1 { "Targets" }
            (notice(q.get("notice")))
            @for t in &targets {
                @let latency = admin.telemetry.target_latency(&t.name);
                section.card id=(t.name) data-target=(t.name) {
                    h2 { (t.name) " " span data-target-state=(t.name) { (chip(state_word(t))) } }
                    p.mono.muted { (t.url) }
                    dl.kv {
                        @if let Some(until) = t.opened_until { dt { "next probe" } dd { (ago(until)) } }
                        @if let Some(d) = &t.disabled { dt { "disabled" } dd.bad { (d.reason) " (" (ago(d.at)) ")" } }
                        dt { "success rate" } dd { @match t.success_rate { Some(r) => { (format!("{:.1} %", r * 100.0)) } None => { "no attempts yet" } }
                            " (" (t.attempts.succeeded) " ok, " (t.attempts.failed) " failed)" }
                        dt { "latency" } dd { @match &latency { Some(l) => { "p50 " (format!("{:.1}", l.0)) " ms · p99 " (format!("{:.1}", l.1)) " ms" } None => { "—" } } }
                        dt { "in flight" } dd.scheduled-in-flight { (t.in_flight) " of " (t.policy.max_in_flight) }
                        dt { "scheduled" } dd { a href={ "/ui/deliveries?status=scheduled&target=" (t.name) } { (t.scheduled) } }
                        dt { "dead" } dd { a href={ "/ui/deliveries?status=dead&target=" (t.name) } { (t.dead) } }
                        @if let Some(e) = &t.last_error {
                            dt { "last error" } dd.bad { (e) @if let Some(at) = t.last_error_at { span.muted { " · " (time(at)) } } }
                        }
                        @if let Some(at) = t.last_success_at { dt { "last success" } dd { (ago(at)) } }
                    }
                    p {
                        @if t.paused {
                            form.inline method="post" action={ "/ui/targets/" (t.name) "/resume" } { button.primary type="submit" data-action="resume" { "Resume" } }
                        } @else {
                            form.inline method="post" action={ "/ui/targets/" (t.name) "/pause" } { button type="submit" data-action="pause" { "Pause" } }
                        }
                        @if t.disabled.is_some() || t.state != Circuit::Closed {
                            " " form.inline method="post" action={ "/ui/targets/" (t.name) "/enable" } { button type="submit" data-action="enable" { "Enable (close the circuit)" } }
                        }
                        @if t.dead > 0 {
                            " " form.inline method="post" action={ "/ui/deliveries/retry?status=dead&target=" (t.name) } { button type="submit" data-action="retry-dead" { "Retry " (t.dead) " dead…" } }
                        }
                    }
                }
            }
            @if targets.is_empty() { p.muted { "No targets are configured." } }
        },
    ))
}

pub async fn control(
    State(state): State<Arc<UiState>>,
    JsonPath((name, action)): JsonPath<(String, String)>,
) -> Result<Redirect, UiError> {
    let action = TargetAction::parse(&action)
        .ok_or_else(|| UiError::not_found(format!("no target action {action:?}")))?;
    let status = state
        .admin
        .dispatcher
        .control_target(&name, action)
        .await?
        .ok_or_else(|| UiError::not_found(format!("no target {name:?}")))?;
    Ok(Redirect::to(&with_notice(
        &format!("/ui/targets#{name}"),
        &format!("Target {name} is now {}.", state_word(&status)),
    )))
}
