//! The serving config as the admin API shows it (its digest and load
//! time, never its contents: it holds secrets), and reloading it.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AdminState;
use crate::api::ApiError;
use crate::api::types::ConfigReloaded;
use crate::reload::ReloadError;
use crate::telemetry::ReloadTrigger;

/// `GET /admin/config`: this node's serving config; in a cluster, every
/// node's digest too, and whether they differ.
pub async fn show(State(state): State<Arc<AdminState>>) -> Result<Json<Value>, ApiError> {
    let status = state.config.status();
    let mut v = json!({
        "node": state.config.get().store.node_id(),
        "config": status,
    });
    if let Some(pg) = &state.cluster {
        let nodes: Vec<Value> = pg
            .nodes()
            .await?
            .into_iter()
            .filter(|n| n.alive)
            .map(|n| {
                json!({
                    "node": n.id,
                    "sha256": n.info["config"]["sha256"],
                    "loaded_at": n.info["config"]["loaded_at"],
                })
            })
            .collect();
        let mut digests: Vec<String> = nodes.iter().map(|n| n["sha256"].to_string()).collect();
        digests.sort();
        digests.dedup();
        v["drift"] = json!(digests.len() > 1);
        v["nodes"] = json!(nodes);
    }
    Ok(Json(v))
}

/// `POST /admin/config/reload`: 200 with what changed, or 422 with the
/// error (naming the key) while the running config stays.
pub async fn reload(State(state): State<Arc<AdminState>>) -> Result<Json<Value>, ApiError> {
    match state.reloader.reload(ReloadTrigger::Admin).await {
        Ok(done) => Ok(Json(json!(ConfigReloaded {
            sha256: done.sha256,
            changes: done.changes,
            needs_restart: done.needs_restart,
        }))),
        Err(e @ ReloadError::NoFile) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_config_file",
            e.to_string(),
        )),
        Err(e @ ReloadError::Invalid(_)) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "config_invalid",
            format!("{e}; the running config stays"),
        )),
        Err(e @ ReloadError::Apply(_)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "config_not_applied",
            format!("{e}; the running config stays"),
        )),
    }
}
