//! Listing endpoints: events and deliveries, filtered and paged.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;

use super::AdminState;
use crate::api::ApiError;
use crate::api::extract::{JsonPath, JsonQuery};
use crate::api::types::{DeliveryList, DeliveryView, EventList};
use crate::config::parse_time;
use crate::model::id::DeliveryId;
use crate::model::word::Word;
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

/// The word `key` names, if given, from the words `W` allows.
pub(super) fn word<W: Word>(q: &HashMap<String, String>, key: &str) -> Result<Option<W>, ApiError> {
    q.get(key)
        .map(|v| {
            W::parse(v).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "{key}: {v:?} is not one of {}",
                    W::names().join(", ")
                ))
            })
        })
        .transpose()
}

pub(super) fn event_query(
    q: &HashMap<String, String>,
    max: usize,
    default: usize,
) -> Result<EventQuery, ApiError> {
    let c = common(q, max, default)?;
    Ok(EventQuery {
        source: q.get("source").cloned(),
        status: word(q, "status")?,
        version: q.get("version").cloned(),
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
        status: word(q, "status")?,
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
) -> Result<Json<EventList>, ApiError> {
    let query = event_query(&q, MAX_LIMIT, DEFAULT_LIMIT)?;
    let page = state.store.records.list_events(&query).await?;
    Ok(Json(EventList {
        events: page.items,
        next_cursor: page.next_cursor,
    }))
}

pub async fn deliveries(
    State(state): State<Arc<AdminState>>,
    JsonQuery(q): JsonQuery<HashMap<String, String>>,
) -> Result<Json<DeliveryList>, ApiError> {
    let query = delivery_query(&q, MAX_LIMIT, DEFAULT_LIMIT)?;
    let page = state.store.records.list_deliveries(&query).await?;
    Ok(Json(DeliveryList {
        deliveries: page.items,
        next_cursor: page.next_cursor,
    }))
}

pub async fn delivery(
    State(state): State<Arc<AdminState>>,
    JsonPath(id): JsonPath<DeliveryId>,
) -> Result<Json<DeliveryView>, ApiError> {
    let store = &state.store.records;
    let Some(d) = store.delivery(&id).await? else {
        return Err(ApiError::not_found(format!("no delivery {id:?}")));
    };
    let attempts = store.attempts(&d.id).await?;
    Ok(Json(DeliveryView::of(d, attempts)))
}
