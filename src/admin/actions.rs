//! Endpoints that change things: replaying events, retrying deliveries,
//! and pausing, resuming or re-enabling targets.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::list::{bad_request, delivery_query, event_query};
use super::{AdminState, store_error};
use crate::delivery::ops::Retry;
use crate::extract::JsonPath;
use crate::routing::Replay;
use crate::source::ingest::error;
use crate::store::{DeliveryQuery, EventQuery, collect_ids};
use crate::telemetry::{ReplayKind, Replayed};

/// Most items one bulk request acts on, and the default.
const BULK_MAX: usize = 100_000;
const BULK_DEFAULT: usize = 1000;

/// A bulk request's JSON body as query-style strings (numbers accepted).
fn filter_body(body: &Bytes) -> Result<HashMap<String, String>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(HashMap::new());
    }
    let v: serde_json::Map<String, Value> = serde_json::from_slice(body)
        .map_err(|e| format!("the body must be a JSON object of filters: {e}"))?;
    Ok(v.into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| {
            let s = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (k, s)
        })
        .collect())
}

pub async fn replay_event(
    State(state): State<Arc<AdminState>>,
    JsonPath(id): JsonPath<String>,
) -> Response {
    match state.router.replay(&id).await {
        Ok(Replay::Queued) => {
            state.telemetry.emit(Replayed {
                kind: ReplayKind::Event,
                count: 1,
            });
            (
                StatusCode::ACCEPTED,
                Json(json!({"event": id, "status": "queued"})),
            )
                .into_response()
        }
        Ok(Replay::NotFound) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no event {id:?}"),
        ),
        Ok(Replay::Pending) => error(
            StatusCode::CONFLICT,
            "pending",
            format!("event {id:?} is still waiting to be routed; nothing to replay yet"),
        ),
        Err(e) => store_error(e),
    }
}

pub async fn replay_events(State(state): State<Arc<AdminState>>, body: Bytes) -> Response {
    let filters = match filter_body(&body) {
        Ok(f) => f,
        Err(e) => return bad_request(e),
    };
    if !["source", "status", "since", "until"]
        .iter()
        .any(|k| filters.contains_key(*k))
    {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "say which events to replay: at least one of source, status, since, until",
        );
    }
    let q = match event_query(&filters, BULK_MAX, BULK_DEFAULT) {
        Ok(q) => q,
        Err(e) => return bad_request(e),
    };
    let records = state.store.records.clone();
    let ids = collect_ids(
        q.limit,
        |limit, cursor| {
            let (records, q) = (records.clone(), q.clone());
            async move {
                records
                    .list_events(&EventQuery { limit, cursor, ..q })
                    .await
            }
        },
        |e| e.id,
    )
    .await;
    // Marked one by one: each mark is a small write, and routing reads the
    // marks back a page at a time, so a bulk replay of 100 000 events holds
    // ids, not events, in memory.
    let done = async {
        let mut replayed = Vec::new();
        for id in ids? {
            if state.router.replay(&id).await? == Replay::Queued {
                replayed.push(id);
            }
        }
        anyhow::Ok(replayed)
    }
    .await;
    match done {
        Ok(ids) => {
            state.telemetry.emit(Replayed {
                kind: ReplayKind::Event,
                count: ids.len(),
            });
            (
                StatusCode::ACCEPTED,
                Json(json!({"replayed": ids.len(), "events": ids})),
            )
                .into_response()
        }
        Err(e) => store_error(e),
    }
}

pub async fn retry_delivery(
    State(state): State<Arc<AdminState>>,
    JsonPath(id): JsonPath<String>,
) -> Response {
    match state.dispatcher.retry_delivery(&id).await {
        Ok(Retry::Scheduled) => {
            state.telemetry.emit(Replayed {
                kind: ReplayKind::Delivery,
                count: 1,
            });
            (
                StatusCode::ACCEPTED,
                Json(json!({"delivery": id, "status": "scheduled"})),
            )
                .into_response()
        }
        Ok(Retry::NotFound) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no delivery {id:?}"),
        ),
        Ok(Retry::InFlight) => error(
            StatusCode::CONFLICT,
            "in_flight",
            format!("delivery {id:?} has an attempt in flight; its result decides what comes next"),
        ),
        Ok(Retry::NoTarget) => error(
            StatusCode::CONFLICT,
            "no_target",
            format!("delivery {id:?} is for a target that is no longer configured"),
        ),
        Err(e) => store_error(e),
    }
}

pub async fn retry_deliveries(State(state): State<Arc<AdminState>>, body: Bytes) -> Response {
    let mut filters = match filter_body(&body) {
        Ok(f) => f,
        Err(e) => return bad_request(e),
    };
    filters
        .entry("status".into())
        .or_insert_with(|| "dead".into());
    let q = match delivery_query(&filters, BULK_MAX, BULK_DEFAULT) {
        Ok(q) => q,
        Err(e) => return bad_request(e),
    };
    let records = state.store.records.clone();
    let retried = async {
        let ids = collect_ids(
            q.limit,
            |limit, cursor| {
                let (records, q) = (records.clone(), q.clone());
                async move {
                    records
                        .list_deliveries(&DeliveryQuery { limit, cursor, ..q })
                        .await
                }
            },
            |d| d.id,
        )
        .await?;
        state.dispatcher.retry_deliveries(ids).await
    }
    .await;
    match retried {
        Ok(n) => {
            state.telemetry.emit(Replayed {
                kind: ReplayKind::Delivery,
                count: n,
            });
            (StatusCode::ACCEPTED, Json(json!({"retried": n}))).into_response()
        }
        Err(e) => store_error(e),
    }
}

pub async fn targets(State(state): State<Arc<AdminState>>) -> Response {
    Json(json!({"targets": state.dispatcher.target_statuses()})).into_response()
}

fn no_target(name: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no target {name:?} in the config"),
    )
}

pub async fn target(
    State(state): State<Arc<AdminState>>,
    JsonPath(name): JsonPath<String>,
) -> Response {
    match state.dispatcher.target(&name) {
        Some(t) => Json(state.dispatcher.target_status(t)).into_response(),
        None => no_target(&name),
    }
}

pub async fn control_target(
    State(state): State<Arc<AdminState>>,
    JsonPath((name, action)): JsonPath<(String, String)>,
) -> Response {
    if !["pause", "resume", "enable"].contains(&action.as_str()) {
        return error(
            StatusCode::NOT_FOUND,
            "no_route",
            format!("no target action {action:?}; use pause, resume or enable"),
        );
    }
    match state.dispatcher.control_target(&name, &action) {
        Ok(Some(v)) => Json(v).into_response(),
        Ok(None) => no_target(&name),
        Err(e) => store_error(e),
    }
}
