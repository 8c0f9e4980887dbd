//! The page shell (navigation, stylesheet, script), the login page, and
//! the small formatting helpers every page uses.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use super::UiState;
use super::session;
use crate::admin::auth::token_matches;
use crate::model::id::now_ms;

/// Which navigation entry is highlighted.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Events,
    Deliveries,
    Targets,
    Plugins,
    Sources,
    None,
}

const NAV: &[(Nav, &str, &str)] = &[
    (Nav::Overview, "/ui/", "Overview"),
    (Nav::Events, "/ui/events", "Events"),
    (Nav::Deliveries, "/ui/deliveries", "Deliveries"),
    (Nav::Targets, "/ui/targets", "Targets"),
    (Nav::Plugins, "/ui/plugins", "Plugins"),
    (Nav::Sources, "/ui/sources", "Sources"),
];

pub fn page(title: &str, here: Nav, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · hookyard" }
                link rel="stylesheet" href="/ui/assets/ui.css";
            }
            body data-live=(if here == Nav::None { "off" } else { "on" }) {
                header {
                    span.brand { "hookyard" }
                    nav {
                        @for (nav, href, label) in NAV {
                            a href=(href) class=[(*nav == here).then_some("here")] { (label) }
                        }
                    }
                    span.right {
                        span title="accepted since start" { "accepted " span data-total="accepted" { "…" } }
                        form.inline method="post" action="/ui/logout" { button { "Log out" } }
                    }
                }
                main { (content) }
                script src="/ui/assets/ui.js" {}
            }
        }
    }
}

/// A notice carried over a redirect (`?notice=…`), shown once.
pub fn notice(text: Option<&String>) -> Markup {
    html! {
        @if let Some(t) = text {
            p.notice role="status" { (t) }
        }
    }
}

/// `path` with `notice` added to its query.
pub fn with_notice(path: &str, notice: &str) -> String {
    let (path, fragment) = match path.split_once('#') {
        Some((p, f)) => (p, format!("#{f}")),
        None => (path, String::new()),
    };
    let sep = if path.contains('?') { '&' } else { '?' };
    format!(
        "{path}{sep}notice={}{fragment}",
        url::form_urlencoded::byte_serialize(notice.as_bytes()).collect::<String>()
    )
}

/// The non-empty values of `keys` in a query.
pub fn pick(q: &HashMap<String, String>, keys: &[&str]) -> HashMap<String, String> {
    keys.iter()
        .filter_map(|k| {
            q.get(*k)
                .filter(|v| !v.is_empty())
                .map(|v| (k.to_string(), v.clone()))
        })
        .collect()
}

/// A query string from pairs, empty values left out.
pub fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            q.append_pair(k, v);
        }
    }
    let q = q.finish();
    if q.is_empty() { q } else { format!("?{q}") }
}

/// Unix ms as UTC, to the second.
pub fn time(ms: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_string()
}

/// How long ago (or from now) `ms` is, roughly.
pub fn ago(ms: u64) -> String {
    let now = now_ms();
    let (d, suffix) = if ms <= now {
        (now - ms, " ago")
    } else {
        (ms - now, " from now")
    };
    let s = d / 1000;
    let text = match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=86_399 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    };
    format!("{text}{suffix}")
}

pub fn bytes(n: usize) -> String {
    match n {
        0..=1023 => format!("{n} B"),
        1024..=1_048_575 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / 1_048_576.0),
    }
}

/// A status word as a coloured chip.
pub fn chip(word: &str) -> Markup {
    let class = match word {
        "delivered" | "routed" | "ok" | "closed" | "success" | "accepted" => "chip ok",
        "scheduled" | "pending" | "half_open" | "paused" | "waiting" | "dropped" => "chip warn",
        "dead" | "failed" | "open" | "disabled" | "missing" => "chip bad",
        _ => "chip",
    };
    html! { span class=(class) { (word) } }
}

#[derive(Deserialize)]
pub struct Login {
    token: String,
}

pub async fn login_page(State(state): State<Arc<UiState>>, headers: HeaderMap) -> Response {
    if state.admin.config.get().server.admin_token.is_none() || session::allowed(&state, &headers) {
        return Redirect::to("/ui/").into_response();
    }
    login_form(None).into_response()
}

fn login_form(error: Option<&str>) -> Markup {
    page(
        "Log in",
        Nav::None,
        html! {
            div.login {
                h1 { "Log in" }
                @if let Some(e) = error { p.notice.error { (e) } }
                form method="post" action="/ui/login" {
                    label for="token" { "Admin token (server.admin_token)" }
                    input #token type="password" name="token" autocomplete="current-password" autofocus;
                    button.primary type="submit" { "Log in" }
                }
            }
        },
    )
}

pub async fn login(State(state): State<Arc<UiState>>, Form(form): Form<Login>) -> Response {
    let Some(token) = &state.admin.config.get().server.admin_token else {
        return Redirect::to("/ui/").into_response();
    };
    if !token_matches(&form.token, token) {
        session::failed_login_delay().await;
        tracing::warn!("dashboard login with a wrong token");
        return (
            StatusCode::UNAUTHORIZED,
            login_form(Some("That is not the admin token.")),
        )
            .into_response();
    }
    let id = state.sessions.create();
    let secure = state.admin.config.get().server.admin_tls.is_some();
    let mut r = Redirect::to("/ui/").into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, session::set_cookie(&id, secure));
    r
}

pub async fn logout(State(state): State<Arc<UiState>>, headers: HeaderMap) -> Response {
    if let Some(id) = session::cookie_session(&headers) {
        state.sessions.end(id);
    }
    let mut r = Redirect::to("/ui/login").into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, session::clear_cookie());
    r
}
