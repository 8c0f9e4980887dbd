//! Who may see the dashboard. With `server.admin_token` set, the login
//! page takes the token once and answers with a session cookie: a random
//! id that maps to an expiry here, never the token itself, so the cookie
//! is useless once it expires or the process restarts, and the token never
//! sits in the browser. Without a token (only allowed on a loopback admin
//! listener) the dashboard opens directly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::UiState;
use crate::admin::auth::{bearer_token, token_matches};
use crate::model::id::now_ms;

pub const COOKIE: &str = "hookyard_session";

/// How long a session lasts after login.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// Most sessions held at once; past it the oldest goes (every login makes
/// one, and logins are not otherwise bounded).
const MAX_SESSIONS: usize = 1024;

/// A failed login waits this long before its answer, one at a time: with
/// a token of any reasonable length that makes guessing hopeless, without
/// a lockout that an attacker could use to lock the operator out.
const FAILED_LOGIN_DELAY: Duration = Duration::from_millis(500);

/// Session ids to their expiry (unix ms).
#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, u64>>,
}

impl Sessions {
    pub fn create(&self) -> String {
        let id: [u8; 32] = rand::random();
        let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let now = now_ms();
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|_, exp| *exp > now);
        if live.len() >= MAX_SESSIONS
            && let Some(oldest) = live.iter().min_by_key(|(_, e)| **e).map(|(k, _)| k.clone())
        {
            live.remove(&oldest);
        }
        live.insert(id.clone(), now + SESSION_TTL.as_millis() as u64);
        id
    }

    pub fn valid(&self, id: &str) -> bool {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.get(id).is_some_and(|exp| *exp > now_ms())
    }

    pub fn end(&self, id: &str) {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

/// The session id the request's cookie carries.
pub fn cookie_session(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == COOKIE).then_some(v)
        })
}

/// Whether the request may see the dashboard.
pub fn allowed(state: &UiState, headers: &HeaderMap) -> bool {
    let Some(token) = &state.admin.config.get().server.admin_token else {
        return true;
    };
    if cookie_session(headers).is_some_and(|id| state.sessions.valid(id)) {
        return true;
    }
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .is_some_and(|g| token_matches(g, token))
}

/// Sends a page request without a session to the login page; refuses
/// anything else.
pub async fn require_session(
    State(state): State<Arc<UiState>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if path == "/ui/login" || path.starts_with("/ui/assets/") || allowed(&state, request.headers())
    {
        return next.run(request).await;
    }
    if request.method() == Method::GET {
        Redirect::to("/ui/login").into_response()
    } else {
        (StatusCode::UNAUTHORIZED, "log in at /ui/login").into_response()
    }
}

/// The cookie that holds a new session.
pub fn set_cookie(id: &str, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        SESSION_TTL.as_secs()
    ))
    .expect("ASCII")
}

pub fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("hookyard_session=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// Failed logins wait their turn: one at a time, so guesses cannot be
/// made in parallel either (two a second at most).
static FAILED_LOGINS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub async fn failed_login_delay() {
    let _turn = FAILED_LOGINS.lock().await;
    tokio::time::sleep(FAILED_LOGIN_DELAY).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_random_bounded_and_end() {
        let s = Sessions::default();
        let a = s.create();
        let b = s.create();
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(s.valid(&a) && s.valid(&b));
        s.end(&a);
        assert!(!s.valid(&a));
        for _ in 0..MAX_SESSIONS + 10 {
            s.create();
        }
        assert!(s.live.lock().unwrap().len() <= MAX_SESSIONS);
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; hookyard_session=abc; b=2"),
        );
        assert_eq!(cookie_session(&h), Some("abc"));
    }
}
