//! The web dashboard, served by the admin listener at `/ui/`: what came
//! in, what the plugins decided, what failed and why, and the buttons to
//! send it again, pause a target or retry its dead letters.
//!
//! Server-rendered HTML (maud) reading the same store, router, dispatcher
//! and telemetry the admin API reads; a stylesheet and a small script
//! embedded in the binary (no build step, no CDN, works offline). Pages
//! work without the script; it adds live updates over server-sent events
//! ([`live`]). Filters and cursors are query parameters, so every view has
//! a URL that can be shared or opened in a new tab. Changes are plain form
//! POSTs answered with a redirect; bulk ones show a dry-run count and ask
//! for a confirmation first.
//!
//! Access: [`session`]. Cross-site requests are refused by the admin
//! listener's guard (`admin::guard::check_dashboard`).

mod deliveries;
mod events;
pub mod history;
mod layout;
mod live;
mod overview;
mod registry;
pub mod session;
mod targets;

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::admin::AdminState;
use history::History;
use session::Sessions;

/// What the dashboard's handlers share.
pub struct UiState {
    pub admin: Arc<AdminState>,
    pub sessions: Sessions,
    pub history: Arc<History>,
    /// Live streams open now (bounded: see [`live::MAX_STREAMS`]).
    pub streams: std::sync::atomic::AtomicUsize,
}

/// The dashboard's routes, under `/ui`.
pub fn routes(admin: Arc<AdminState>, history: Arc<History>) -> Router {
    let state = Arc::new(UiState {
        admin,
        sessions: Sessions::default(),
        history,
        streams: Default::default(),
    });
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(overview::show))
        .route("/ui/login", get(layout::login_page).post(layout::login))
        .route("/ui/logout", post(layout::logout))
        .route("/ui/assets/ui.css", get(css))
        .route("/ui/assets/ui.js", get(js))
        .route("/ui/stream", get(live::stream))
        .route("/ui/events", get(events::list))
        .route("/ui/events/replay", post(events::bulk_replay))
        .route("/ui/events/{id}", get(events::detail))
        .route("/ui/events/{id}/body", get(events::raw_body))
        .route("/ui/events/{id}/replay", post(events::replay))
        .route("/ui/deliveries", get(deliveries::list))
        .route("/ui/deliveries/retry", post(deliveries::bulk_retry))
        .route("/ui/deliveries/{id}/retry", post(deliveries::retry))
        .route("/ui/targets", get(targets::list))
        .route("/ui/targets/{name}/{action}", post(targets::control))
        .route("/ui/plugins", get(registry::plugins))
        .route("/ui/sources", get(registry::sources))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            session::require_session,
        ))
        .with_state(state)
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", include_str!("assets/ui.css"))
}

async fn js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/ui.js"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// A failure shown as a page, not as JSON.
pub struct UiError(StatusCode, String);

impl UiError {
    pub fn not_found(what: impl Into<String>) -> UiError {
        UiError(StatusCode::NOT_FOUND, what.into())
    }
    pub fn bad_request(what: impl Into<String>) -> UiError {
        UiError(StatusCode::BAD_REQUEST, what.into())
    }
}

impl From<anyhow::Error> for UiError {
    fn from(e: anyhow::Error) -> UiError {
        UiError(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}"))
    }
}

impl From<crate::api::ApiError> for UiError {
    fn from(e: crate::api::ApiError) -> UiError {
        UiError(e.status, e.message)
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let UiError(status, message) = self;
        let body = layout::page(
            &format!("{}", status.as_u16()),
            layout::Nav::None,
            maud::html! {
                h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
                p.notice.error { (message) }
                p { a href="/ui/" { "Back to the overview" } }
            },
        );
        (status, body).into_response()
    }
}

pub type Page = Result<maud::Markup, UiError>;
