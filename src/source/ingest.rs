//! The webhook receiving handler.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Limited};
use serde_json::json;

use super::IngestState;
use crate::id::{new_id, now_ms};
use crate::records::Event;

/// A JSON error body: `{"error": "...", "code": "..."}`; `code` is stable for
/// scripts, `error` is for people.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "error": message.into(), "code": code })),
    )
        .into_response()
}

pub async fn not_found(uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no route for {}; webhooks go to POST /hooks/<source>",
            uri.path()
        ),
    )
}

pub async fn method_not_allowed(method: Method) -> Response {
    let mut r = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not accepted here; send webhooks with POST"),
    );
    r.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
    r
}

pub async fn receive(
    State(state): State<Arc<IngestState>>,
    Path(source_name): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let received_at = now_ms();
    let Some(source) = state.config.sources.get(&source_name) else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_source",
            format!("no source named {source_name:?} is configured"),
        );
    };
    let limit = source.max_body;
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("body exceeds this source's limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large();
    }
    let body = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "body_unreadable",
                format!("could not read the request body: {e}"),
            );
        }
    };

    let event = Event {
        id: new_id("evt"),
        source: source_name,
        received_at,
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or("").to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    };
    if let Err(e) = state.committer.commit(&event).await {
        tracing::error!(event = %event.id, error = format!("{e:#}"), "could not store event");
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the event could not be stored; retry later",
        );
    }
    tracing::debug!(event = %event.id, source = %event.source, bytes = event.body.len(), "event accepted");
    let id = event.id.clone();
    state.router.enqueue(Arc::new(event));
    (StatusCode::ACCEPTED, Json(json!({ "id": id }))).into_response()
}
