//! A plugin's KV state, for debugging a plugin without a shell on the
//! store: list its keys, read one, delete one.

use std::collections::HashMap;
use std::sync::Arc;

use super::AdminState;
use crate::api::ApiError;
use crate::api::extract::JsonPath;
use crate::api::types::{Body, KvDeleted, KvKey, KvKeys, KvValue};
use axum::Json;
use axum::extract::{Query, State};

/// Keys per page, by default and at most.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// `GET /admin/plugins/{name}/kv?prefix=&cursor=&limit=`
pub async fn list(
    State(state): State<Arc<AdminState>>,
    JsonPath(plugin): JsonPath<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<KvKeys>, ApiError> {
    let limit = match q.get("limit").map(|v| v.parse::<usize>()) {
        None => DEFAULT_LIMIT,
        Some(Ok(n)) if n >= 1 => n.min(MAX_LIMIT),
        Some(_) => return Err(ApiError::bad_request("limit: must be a positive number")),
    };
    let prefix = q.get("prefix").cloned().unwrap_or_default();
    let cursor = q.get("cursor").cloned();
    let page = state
        .store
        .kv_admin
        .kv_list(&plugin, &prefix, cursor.as_deref(), limit)
        .await?;
    Ok(Json(KvKeys {
        plugin,
        keys: page
            .items
            .into_iter()
            .map(|(key, size)| KvKey { key, size })
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

/// `GET /admin/plugins/{name}/kv/{key}`
pub async fn get(
    State(state): State<Arc<AdminState>>,
    JsonPath((plugin, key)): JsonPath<(String, String)>,
) -> Result<Json<KvValue>, ApiError> {
    match state.store.kv_admin.kv_value(&plugin, &key).await? {
        Some(v) => Ok(Json(KvValue {
            plugin,
            key,
            value: Body::of(&v),
        })),
        None => Err(not_found(&plugin, &key)),
    }
}

/// `DELETE /admin/plugins/{name}/kv/{key}`: ordered with the plugins' own
/// commits, so a plugin that read the key before the delete runs again.
pub async fn delete(
    State(state): State<Arc<AdminState>>,
    JsonPath((plugin, key)): JsonPath<(String, String)>,
) -> Result<Json<KvDeleted>, ApiError> {
    if !state.store.kv_admin.kv_delete(&plugin, &key).await? {
        return Err(not_found(&plugin, &key));
    }
    tracing::info!(plugin = %plugin, key = %key, "operator deleted a plugin KV key");
    Ok(Json(KvDeleted {
        plugin,
        key,
        deleted: true,
    }))
}

fn not_found(plugin: &str, key: &str) -> ApiError {
    ApiError::not_found(format!("plugin {plugin:?} has no KV key {key:?}"))
}
