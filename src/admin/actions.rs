//! Endpoints that change things: replaying events, retrying deliveries,
//! and pausing, resuming or re-enabling targets.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;

use super::AdminState;
use super::list::{delivery_query, event_query};
use crate::api::ApiError;
use crate::api::extract::JsonPath;
use crate::api::types::{
    Queued, ReplayQueued, Replayed, Retried, RetryScheduled, TargetAction, TargetList, TargetStatus,
};
use crate::delivery::ops::Retry;
use crate::model::id::{DeliveryId, EventId};
use crate::model::records::DeliveryStatus;
use crate::model::word::Word;
use crate::routing::Replay;
use crate::store::{DeliveryQuery, EventQuery, collect_ids};
use crate::telemetry::{ReplayKind, Replayed as ReplayedEvent};

/// A 202 with its JSON answer: the action is queued, not done.
type Accepted<T> = Result<(StatusCode, Json<T>), ApiError>;

/// Most items one bulk request acts on, and the default.
pub(crate) const BULK_MAX: usize = 100_000;
const BULK_DEFAULT: usize = 1000;

/// A bulk request's JSON body as query-style strings (numbers accepted).
fn filter_body(body: &Bytes) -> Result<HashMap<String, String>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(HashMap::new());
    }
    let v: serde_json::Map<String, Value> = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("the body must be a JSON object of filters: {e}"))
    })?;
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
    JsonPath(id): JsonPath<EventId>,
) -> Accepted<ReplayQueued> {
    match state.router.replay(&id).await? {
        Replay::Queued => {
            state.telemetry.emit(ReplayedEvent {
                kind: ReplayKind::Event,
                count: 1,
            });
            Ok((
                StatusCode::ACCEPTED,
                Json(ReplayQueued {
                    event: id,
                    status: Queued::Queued,
                }),
            ))
        }
        Replay::NotFound => Err(ApiError::not_found(format!("no event {id:?}"))),
        Replay::Pending => Err(ApiError::conflict(
            "pending",
            format!("event {id:?} is still waiting to be routed; nothing to replay yet"),
        )),
    }
}

pub async fn replay_events(
    State(state): State<Arc<AdminState>>,
    body: Bytes,
) -> Accepted<Replayed> {
    let filters = filter_body(&body)?;
    if !["source", "status", "version", "since", "until"]
        .iter()
        .any(|k| filters.contains_key(*k))
    {
        return Err(ApiError::bad_request(
            "say which events to replay: at least one of source, status, version, since, until",
        ));
    }
    let matched = matching_events(&state, &filters).await?;
    let ids = replay_all(&state, matched).await?;
    state.telemetry.emit(ReplayedEvent {
        kind: ReplayKind::Event,
        count: ids.len(),
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(Replayed {
            replayed: ids.len(),
            events: ids,
        }),
    ))
}

/// The ids of the events `filters` (query-style: source, status, since,
/// until, limit) match, at most [`BULK_MAX`]; shared with the dashboard's
/// dry run, so its count is what the action then does.
pub(crate) async fn matching_events(
    state: &AdminState,
    filters: &HashMap<String, String>,
) -> Result<Vec<EventId>, ApiError> {
    let q = event_query(filters, BULK_MAX, BULK_DEFAULT)?;
    let records = state.store.records.clone();
    Ok(collect_ids(
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
    .await?)
}

/// Marks each event to be routed again; the ones queued.
pub(crate) async fn replay_all(
    state: &AdminState,
    matched: Vec<EventId>,
) -> Result<Vec<EventId>, ApiError> {
    // Marked one by one: each mark is a small write, and routing reads the
    // marks back a page at a time, so a bulk replay of 100 000 events holds
    // ids, not events, in memory.
    let mut ids = Vec::new();
    for id in matched {
        if state.router.replay(&id).await? == Replay::Queued {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// The ids of the deliveries `filters` match (dead ones unless a status
/// is given), at most [`BULK_MAX`].
pub(crate) async fn matching_deliveries(
    state: &AdminState,
    filters: &HashMap<String, String>,
) -> Result<Vec<DeliveryId>, ApiError> {
    let mut filters = filters.clone();
    filters
        .entry("status".into())
        .or_insert_with(|| DeliveryStatus::Dead.as_str().into());
    let q = delivery_query(&filters, BULK_MAX, BULK_DEFAULT)?;
    let records = state.store.records.clone();
    Ok(collect_ids(
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
    .await?)
}

pub async fn retry_delivery(
    State(state): State<Arc<AdminState>>,
    JsonPath(id): JsonPath<DeliveryId>,
) -> Accepted<RetryScheduled> {
    match state.dispatcher.retry_delivery(&id).await? {
        Retry::Scheduled => {
            state.telemetry.emit(ReplayedEvent {
                kind: ReplayKind::Delivery,
                count: 1,
            });
            Ok((
                StatusCode::ACCEPTED,
                Json(RetryScheduled {
                    delivery: id,
                    status: DeliveryStatus::Scheduled,
                }),
            ))
        }
        Retry::NotFound => Err(ApiError::not_found(format!("no delivery {id:?}"))),
        Retry::InFlight => Err(ApiError::conflict(
            "in_flight",
            format!("delivery {id:?} has an attempt in flight; its result decides what comes next"),
        )),
        Retry::NoTarget => Err(ApiError::conflict(
            "no_target",
            format!("delivery {id:?} is for a target that is no longer configured"),
        )),
    }
}

pub async fn retry_deliveries(
    State(state): State<Arc<AdminState>>,
    body: Bytes,
) -> Accepted<Retried> {
    let filters = filter_body(&body)?;
    let ids = matching_deliveries(&state, &filters).await?;
    let n = state.dispatcher.retry_deliveries(ids).await?;
    state.telemetry.emit(ReplayedEvent {
        kind: ReplayKind::Delivery,
        count: n,
    });
    Ok((StatusCode::ACCEPTED, Json(Retried { retried: n })))
}

pub async fn targets(State(state): State<Arc<AdminState>>) -> Json<TargetList> {
    Json(TargetList {
        targets: state.dispatcher.target_statuses(),
    })
}

fn no_target(name: &str) -> ApiError {
    ApiError::not_found(format!("no target {name:?} in the config"))
}

pub async fn target(
    State(state): State<Arc<AdminState>>,
    JsonPath(name): JsonPath<String>,
) -> Result<Json<TargetStatus>, ApiError> {
    let t = state
        .dispatcher
        .target(&name)
        .ok_or_else(|| no_target(&name))?;
    Ok(Json(state.dispatcher.target_status(&t)))
}

pub async fn control_target(
    State(state): State<Arc<AdminState>>,
    JsonPath((name, action)): JsonPath<(String, String)>,
) -> Result<Json<TargetStatus>, ApiError> {
    // An unknown action is an unknown path, as it was before the actions
    // shared one route.
    let action = TargetAction::parse(&action).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_route",
            format!("no target action {action:?}; use pause, resume or enable"),
        )
    })?;
    state
        .dispatcher
        .control_target(&name, action)
        .await?
        .map(Json)
        .ok_or_else(|| no_target(&name))
}
