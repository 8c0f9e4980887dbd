//! Plugins pushed over the admin API, and the cluster's nodes.
//!
//! `PUT /admin/plugins/{name}` takes a component's bytes. On the embedded
//! store it is written into this node's plugin directory; in a cluster it
//! is stored in the database and every node writes it into its own
//! directory, where the ordinary hot reload serves it (each node reports
//! what it serves, or why it cannot, and the previous version keeps
//! serving there until a new one loads).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::AdminState;
use crate::api::ApiError;
use crate::api::extract::JsonPath;

/// Largest component accepted: well above real plugins (a Python one is
/// ~40 MB), small enough that a push cannot fill memory.
pub const MAX_PLUGIN_BYTES: usize = 64 * 1024 * 1024;

/// A component binary starts with the wasm magic and the component
/// layer's version (a core module has version 1 instead).
const COMPONENT_PREAMBLE: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

/// Longest plugin name: it is a file name and a label.
const MAX_NAME: usize = 64;

/// Refuses a plugin name that cannot be a file name or a label, and a
/// body that is not a component, before anything compiles it.
pub(super) fn check_upload(name: &str, body: &[u8]) -> Result<(), ApiError> {
    let name_ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !name_ok {
        return Err(ApiError::bad_request(format!(
            "plugin name: 1 to {MAX_NAME} letters, digits, '-', '_' or '.', not starting with '.'"
        )));
    }
    if !body.starts_with(&COMPONENT_PREAMBLE) {
        let what = if body.starts_with(b"\0asm") {
            "a core WebAssembly module, not a component (build it with a component toolchain, or wrap it with `wasm-tools component new`)"
        } else {
            "not a WebAssembly component"
        };
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_a_component",
            format!("the body is {what}"),
        ));
    }
    Ok(())
}

/// `PUT /admin/plugins/{name}`
pub async fn push_plugin(
    State(state): State<Arc<AdminState>>,
    JsonPath(name): JsonPath<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    check_upload(&name, &body)?;
    let sha256 = crate::plugin::instance::hex(&Sha256::digest(&body));
    match &state.cluster {
        Some(pg) => pg.push_plugin(&name, &sha256, &body).await?,
        None => crate::cluster::install(&state.config.get().plugins.dir, &name, &body).await?,
    }
    tracing::info!(plugin = %name, sha256 = %sha256, bytes = body.len(), "plugin pushed");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "plugin": name,
            "sha256": sha256,
            "bytes": body.len(),
            "stored_in": if state.cluster.is_some() { "database" } else { "plugin_dir" },
        })),
    ))
}

/// `GET /admin/cluster`: the nodes, when there are several.
pub async fn nodes(State(state): State<Arc<AdminState>>) -> Result<Json<Value>, ApiError> {
    Ok(Json(match &state.cluster {
        Some(pg) => json!({
            "mode": "cluster",
            "node": pg.node(),
            "nodes": pg.nodes().await?,
        }),
        None => json!({ "mode": "embedded", "node": state.config.get().store.node_id() }),
    }))
}

/// What each node serves for each plugin, for `GET /admin/plugins`.
pub async fn plugin_reports(state: &AdminState) -> Option<Value> {
    let pg = state.cluster.as_ref()?;
    Some(match pg.plugin_reports().await {
        Ok(r) => json!(r),
        Err(e) => json!({ "error": format!("{e:#}") }),
    })
}
