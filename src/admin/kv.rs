//! A plugin's KV state, for debugging a plugin without a shell on the
//! store: list its keys, read one, delete one.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::list::bad_request;
use super::{AdminState, body_json, store_error};
use crate::extract::JsonPath;
use crate::source::ingest::error;

/// Keys per page, by default and at most.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// `GET /admin/plugins/{name}/kv?prefix=&cursor=&limit=`
pub async fn list(
    State(state): State<Arc<AdminState>>,
    JsonPath(plugin): JsonPath<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let limit = match q.get("limit").map(|v| v.parse::<usize>()) {
        None => DEFAULT_LIMIT,
        Some(Ok(n)) if n >= 1 => n.min(MAX_LIMIT),
        Some(_) => return bad_request("limit: must be a positive number".into()),
    };
    let prefix = q.get("prefix").cloned().unwrap_or_default();
    let cursor = q.get("cursor").cloned();
    match state
        .store
        .kv_admin
        .kv_list(&plugin, &prefix, cursor.as_deref(), limit)
        .await
    {
        Ok(page) => Json(json!({
            "plugin": plugin,
            "keys": page
                .items
                .into_iter()
                .map(|(key, size)| json!({ "key": key, "size": size }))
                .collect::<Vec<_>>(),
            "next_cursor": page.next_cursor,
        }))
        .into_response(),
        Err(e) => store_error(e),
    }
}

/// `GET /admin/plugins/{name}/kv/{key}`
pub async fn get(
    State(state): State<Arc<AdminState>>,
    JsonPath((plugin, key)): JsonPath<(String, String)>,
) -> Response {
    match state.store.kv_admin.kv_value(&plugin, &key).await {
        Ok(Some(v)) => {
            Json(json!({ "plugin": plugin, "key": key, "value": body_json(&v) })).into_response()
        }
        Ok(None) => not_found(&plugin, &key),
        Err(e) => store_error(e),
    }
}

/// `DELETE /admin/plugins/{name}/kv/{key}`: ordered with the plugins' own
/// commits, so a plugin that read the key before the delete runs again.
pub async fn delete(
    State(state): State<Arc<AdminState>>,
    JsonPath((plugin, key)): JsonPath<(String, String)>,
) -> Response {
    match state.store.kv_admin.kv_delete(&plugin, &key).await {
        Ok(true) => {
            tracing::info!(plugin = %plugin, key = %key, "operator deleted a plugin KV key");
            Json(json!({ "plugin": plugin, "key": key, "deleted": true })).into_response()
        }
        Ok(false) => not_found(&plugin, &key),
        Err(e) => store_error(e),
    }
}

fn not_found(plugin: &str, key: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("plugin {plugin:?} has no KV key {key:?}"),
    )
}
