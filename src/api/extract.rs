//! Request extractors whose rejections use the JSON error shape. axum's own
//! `Path` and `Query` answer a malformed request (`/hooks/%FF`, a query that
//! is not UTF-8) in plain text, which breaks clients that always read
//! `{"error", "code"}`.

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::ApiError;

/// [`Path`], rejected as `{"code": "bad_request", ...}`.
pub struct JsonPath<T>(pub T);

/// [`Query`], rejected as `{"code": "bad_request", ...}`.
pub struct JsonQuery<T>(pub T);

/// A rejection's status and text in the JSON shape; `bad_request` for the
/// client's mistakes, `internal_error` for the rest (a route without the
/// parameter its handler expects).
fn rejected(status: StatusCode, text: String) -> ApiError {
    let code = if status.is_client_error() {
        "bad_request"
    } else {
        "internal_error"
    };
    ApiError::new(status, code, text)
}

impl<T, S> FromRequestParts<S> for JsonPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(JsonPath(v)),
            Err(e) => Err(rejected(e.status(), e.body_text())),
        }
    }
}

impl<T, S> FromRequestParts<S> for JsonQuery<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(JsonQuery(v)),
            Err(e) => Err(rejected(e.status(), e.body_text())),
        }
    }
}
