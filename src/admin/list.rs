//! Listing endpoints: events and deliveries, filtered and paged.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::{AdminState, body_json};
use crate::api::ApiError;
use crate::api::extract::{JsonPath, JsonQuery};
use crate::config::parse_time;
use crate::store::{DeliveryQuery, EventQuery};

/// Page size when none is asked for, and the most one page may hold.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;

/// Reads `since`/`until` (unix ms or RFC 3339) and `limit` from a query.
pub(super) struct Common {
    pub since: Option<u64>,
    pub until: Option<u64>,
    pub limit: usize,
}

pub(super) fn common(
    q: &HashMap<String, String>,
    max: usize,
    default: usize,
) -> Result<Common, ApiError> {
    let time = |k: &str| {
        q.get(k)
            .map(|v| parse_time(k, v).map_err(|e| ApiError::bad_request(format!("{e:#}"))))
            .transpose()
    };
    let limit = match q.get("limit") {
        None => default,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n >= 1 => n.min(max),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "limit: {v:?} is not a positive number"
                )));
            }
        },
    };
    Ok(Common {
        since: time("since")?,
        until: time("until")?,
        limit,
    })
}

pub(super) fn one_of(
    q: &HashMap<String, String>,
    key: &str,
    allowed: &[&str],
) -> Result<Option<String>, ApiError> {
    match q.get(key) {
        None => Ok(None),
        Some(v) if allowed.contains(&v.as_str()) => Ok(Some(v.clone())),
        Some(v) => Err(ApiError::bad_request(format!(
            "{key}: {v:?} is not one of {}",
            allowed.join(", ")
        ))),
    }
}

pub(super) const EVENT_STATUSES: &[&str] = &["pending", "routed", "dropped", "failed"];
pub(super) const DELIVERY_STATUSES: &[&str] = &["scheduled", "delivered", "dead"];

pub(super) fn event_query(
    q: &HashMap<String, String>,
    max: usize,
    default: usize,
) -> Result<EventQuery, ApiError> {
    let c = common(q, max, default)?;
    Ok(EventQuery {
        source: q.get("source").cloned(),
        status: one_of(q, "status", EVENT_STATUSES)?,
        since: c.since,
        until: c.until,
        limit: c.limit,
        cursor: q.get("cursor").cloned(),
    })
}

pub(super) fn delivery_query(
    q: &HashMap<String, String>,
    max: usize,
    default: usize,
) -> Result<DeliveryQuery, ApiError> {
    let c = common(q, max, default)?;
    Ok(DeliveryQuery {
        status: one_of(q, "status", DELIVERY_STATUSES)?,
        target: q.get("target").cloned(),
        event: q.get("event").cloned(),
        since: c.since,
        until: c.until,
        limit: c.limit,
        cursor: q.get("cursor").cloned(),
    })
}

pub async fn events(
    State(state): State<Arc<AdminState>>,
    JsonQuery(q): JsonQuery<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let query = event_query(&q, MAX_LIMIT, DEFAULT_LIMIT)?;
    let page = state.store.records.list_events(&query).await?;
    Ok(Json(
        json!({"events": page.items, "next_cursor": page.next_cursor}),
    ))
}

pub async fn deliveries(
    State(state): State<Arc<AdminState>>,
    JsonQuery(q): JsonQuery<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let query = delivery_query(&q, MAX_LIMIT, DEFAULT_LIMIT)?;
    let page = state.store.records.list_deliveries(&query).await?;
    Ok(Json(json!({
        "deliveries": page.items,
        "next_cursor": page.next_cursor,
    })))
}

pub async fn delivery(
    State(state): State<Arc<AdminState>>,
    JsonPath(id): JsonPath<String>,
) -> Result<Json<Value>, ApiError> {
    let store = &state.store.records;
    let Some(d) = store.delivery(&id).await? else {
        return Err(ApiError::not_found(format!("no delivery {id:?}")));
    };
    let mut v = serde_json::to_value(&d).map_err(anyhow::Error::from)?;
    v["body"] = match &d.body {
        Some(b) => body_json(b),
        None => Value::Null,
    };
    v["attempt_log"] =
        serde_json::to_value(store.attempts(&d.id).await?).map_err(anyhow::Error::from)?;
    Ok(Json(v))
}
