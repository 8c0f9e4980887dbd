//! The admin listener: health and inspection. Bound to loopback by default;
//! it shows event bodies, so it must not face the internet.

pub mod metrics;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use serde_json::{Value, json};

use crate::config::Config;
use crate::plugin::Plugins;
use crate::records::Event;
use crate::route::Router as EventRouter;
use crate::source::ingest::{error, not_found};
use crate::source::rejections::IngestLog;
use crate::store::Storage;

pub struct AdminState {
    pub store: Arc<dyn Storage>,
    pub plugins: Arc<Plugins>,
    pub router: Arc<EventRouter>,
    pub ingest: Arc<IngestLog>,
    pub config: Arc<Config>,
}

pub fn routes(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/admin/events/{id}", get(show_event))
        .route("/admin/plugins", get(list_plugins))
        .route("/admin/sources", get(list_sources))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(state)
}

async fn list_plugins(State(state): State<Arc<AdminState>>) -> Json<Value> {
    Json(json!({
        "plugins": state.plugins.statuses(),
        "events_waiting": state.router.waiting_count(),
    }))
}

/// Each source's settings (never its secrets), what it accepted and
/// rejected by reason, and the most recent rejections.
async fn list_sources(State(state): State<Arc<AdminState>>) -> Json<Value> {
    let counts = state.ingest.counts();
    let recent = state.ingest.recent();
    let sources: Vec<Value> = state
        .config
        .sources
        .iter()
        .map(|(name, s)| {
            json!({
                "name": name,
                "plugins": s.plugins,
                "targets": s.targets,
                "max_body": s.max_body,
                "idempotency": s.idempotency.as_ref().map(|i| format!("{:?}", i.key)),
                "rate_limit": s.rate_limit.map(|(r, b)| json!({ "per_second": r, "burst": b })),
                "allow_ips": s.allow_ips.len(),
                "counts": counts.get(name).cloned().unwrap_or_default(),
                "recent_rejections": recent.iter().filter(|r| &r.source == name).take(20).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(json!({ "sources": sources, "recent_rejections": recent }))
}

async fn metrics(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(&state.plugins, &state.ingest),
    )
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Body as text when it is UTF-8 (what people want to read), always also as
/// base64 (what scripts need for exact bytes).
fn body_json(body: &[u8]) -> Value {
    json!({
        "size": body.len(),
        "text": std::str::from_utf8(body).ok(),
        "base64": base64::engine::general_purpose::STANDARD.encode(body),
    })
}

fn event_json(e: &Event) -> Value {
    let mut v = serde_json::to_value(e).unwrap_or_default();
    v["body"] = body_json(&e.body);
    v
}

async fn show_event(State(state): State<Arc<AdminState>>, Path(id): Path<String>) -> Response {
    match event_view(&*state.store, &id) {
        Ok(Some(v)) => Json(v).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no event {id:?}"),
        ),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store_error",
            format!("{e:#}"),
        ),
    }
}

/// The event with its outcome, deliveries and their attempts.
pub fn event_view(store: &dyn Storage, id: &str) -> anyhow::Result<Option<Value>> {
    let Some(event) = store.event(id)? else {
        return Ok(None);
    };
    let outcome = store.outcome(id)?;
    let status = match &outcome {
        Some(o) => serde_json::to_value(o.status)?,
        None => json!("pending"),
    };
    let pending_reason = store.route_note(id)?.filter(|n| !n.is_empty());
    let mut deliveries = Vec::new();
    for d in store.deliveries_of_event(id)? {
        let mut v = serde_json::to_value(&d)?;
        v["body"] = match &d.body {
            Some(b) => body_json(b),
            None => Value::Null,
        };
        v["attempt_log"] = serde_json::to_value(store.attempts(&d.id)?)?;
        deliveries.push(v);
    }
    Ok(Some(json!({
        "event": event_json(&event),
        "status": status,
        "pending_reason": pending_reason,
        "outcome": outcome,
        "deliveries": deliveries,
    })))
}
