//! The admin bearer token. The admin API shows event bodies and can replay
//! them, so once it is reachable beyond loopback it must not be open.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AdminState;
use crate::api::ApiError;

/// Lets a request through when no token is configured or it carries
/// `Authorization: Bearer <token>`.
pub async fn require_token(
    State(state): State<Arc<AdminState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = &state.config.get().server.admin_token else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    if given.is_some_and(|g| token_matches(g, token)) {
        next.run(request).await
    } else {
        let mut r = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this admin API needs `Authorization: Bearer <server.admin_token>`",
        )
        .into_response();
        r.headers_mut().insert(
            axum::http::header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Bearer"),
        );
        r
    }
}

/// The credential of an `Authorization: Bearer <token>` value. The scheme
/// name is case-insensitive (RFC 9110 §11.1) and clients differ in the
/// whitespace they put after it.
pub(crate) fn bearer_token(value: &str) -> Option<&str> {
    let value = value.trim();
    let split = value.find([' ', '\t'])?;
    let (scheme, rest) = value.split_at(split);
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim_start_matches([' ', '\t']);
    (!token.is_empty()).then_some(token)
}

/// Compares SHA-256 digests rather than the strings: both sides are 32
/// bytes, so neither the comparison's time nor its early exit on a length
/// difference says anything about the token's length or content.
pub(crate) fn token_matches(given: &str, expected: &str) -> bool {
    let given = Sha256::digest(given.as_bytes());
    let expected = Sha256::digest(expected.as_bytes());
    bool::from(given.ct_eq(&expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive_with_any_whitespace() {
        for ok in [
            "Bearer s3cret",
            "bearer s3cret",
            "BEARER s3cret",
            "Bearer    s3cret",
            "Bearer \t s3cret",
            "  Bearer s3cret  ",
        ] {
            assert_eq!(bearer_token(ok), Some("s3cret"), "{ok:?}");
        }
        for bad in [
            "Bearers3cret",
            "Bearer",
            "Bearer   ",
            "Basic s3cret",
            "s3cret",
            "",
        ] {
            assert_eq!(bearer_token(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn tokens_compare_by_digest() {
        assert!(token_matches("s3cret", "s3cret"));
        assert!(!token_matches("s3cre", "s3cret"));
        assert!(!token_matches("s3cret2", "s3cret"));
        assert!(!token_matches("", "s3cret"));
    }
}
