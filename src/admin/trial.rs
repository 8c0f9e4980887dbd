//! `POST /admin/plugins/{name}/trial?source=S&last=N`: a candidate
//! component (the body) run over a source's last stored events and
//! compared with what the serving version decided, without delivering or
//! writing anything. `hookyard plugin test NEW.wasm --source S --last N`
//! calls it; a deploy script gates on its exit status.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::AdminState;
use crate::api::ApiError;
use crate::api::extract::{JsonPath, JsonQuery};
use crate::api::types::TrialReport;
use crate::routing::trial::{self, MAX_EVENTS};

#[derive(Deserialize)]
pub struct TrialQuery {
    source: String,
    last: Option<usize>,
}

/// One trial at a time: each runs a candidate on the CPU the router needs.
static RUNNING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub async fn trial(
    State(state): State<Arc<AdminState>>,
    JsonPath(name): JsonPath<String>,
    JsonQuery(q): JsonQuery<TrialQuery>,
    body: Bytes,
) -> Result<Json<TrialReport>, ApiError> {
    super::cluster::check_upload(&name, &body)?;
    let last = q.last.unwrap_or(100);
    if last == 0 || last > MAX_EVENTS {
        return Err(ApiError::bad_request(format!(
            "last: from 1 to {MAX_EVENTS} events"
        )));
    }
    let Ok(_one) = RUNNING.try_lock() else {
        return Err(ApiError::conflict(
            "trial_running",
            "another plugin trial is running; try again when it ends".to_string(),
        ));
    };
    let plugins = state.plugins.clone();
    let plugin_name = name.clone();
    let candidate = tokio::task::spawn_blocking(move || plugins.candidate(&body, &plugin_name))
        .await
        .map_err(|e| anyhow::anyhow!("compiling the candidate panicked: {e}"))?
        .map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "plugin_invalid",
                format!("the candidate does not load: {e:#}"),
            )
        })?;
    let config = state.config.get();
    let report = trial::run(
        &state.store,
        &config,
        &name,
        &q.source,
        last,
        Arc::new(candidate),
    )
    .await?;
    tracing::info!(
        plugin = %name,
        source = %q.source,
        events = report.summary.events,
        changed = report.summary.changed,
        newly_failing = report.summary.newly_failing,
        "plugin trial run"
    );
    Ok(Json(report))
}
