//! The one error shape both listeners answer with: a status and
//! `{"error": "<text for people>", "code": "<stable code for scripts>"}`.
//! Handlers return `Result<_, ApiError>` and use `?`, so a new failure
//! cannot answer in another shape, and the CLI reads the same [`ErrorBody`]
//! it is written as.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// An answer that is not a success. `code` is `'static` because scripts
/// match on it: it must come from a fixed set, never from input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} ({code}, HTTP {})", status.as_u16())]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

/// The JSON body of an [`ApiError`], as sent and as the CLI reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub code: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// The client's request is malformed or asks for the impossible.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// The thing named in the path does not exist.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// The thing exists but its state forbids the action; `code` says which
    /// state, so a script can tell "wait" from "give up".
    pub fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }
}

/// Every `anyhow` error an admin handler meets comes from the store (or a
/// stage reading it): a 500 with the whole chain, for the operator on the
/// other end of a loopback listener.
impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store_error",
            format!("{e:#}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.message,
            code: self.code.to_string(),
        };
        (self.status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_in_the_documented_shape() {
        let r = ApiError::conflict("pending", "still waiting").into_response();
        assert_eq!(r.status(), StatusCode::CONFLICT);
        let bytes = axum::body::to_bytes(r.into_body(), 1024).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": "still waiting", "code": "pending"})
        );
    }
}
