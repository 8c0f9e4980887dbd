//! The admin API as the operator commands see it: one base URL, an optional
//! bearer token, JSON both ways, and errors worded so an operator knows what
//! to do next (start hookyard, fix `--admin`, pass `--token`) instead of
//! reading a transport error chain.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::api::ErrorBody;

/// Why an admin request gave no answer to show. The variants exist because
/// each calls for a different fix: a wrong address, a server-side refusal,
/// or a server that answered something that is not the admin API.
#[derive(Debug)]
pub enum AdminError {
    /// Nothing answered at the admin URL (refused, DNS, TLS, timeout).
    Connect { base: String, detail: String },
    /// The server answered with an error status; `message` is its own words.
    Http {
        status: u16,
        code: String,
        message: String,
    },
    /// A 2xx answer that is not JSON: probably not hookyard at that URL.
    Invalid { url: String, detail: String },
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminError::Connect { base, detail } => write!(
                f,
                "cannot reach the hookyard admin API at {base} ({detail}); is hookyard \
                 running there? point --admin (or HOOKYARD_ADMIN) at its server.admin_listen"
            ),
            AdminError::Http {
                status,
                code,
                message,
            } => {
                write!(f, "{message} (HTTP {status}")?;
                if !code.is_empty() && code != message {
                    write!(f, " {code}")?;
                }
                write!(f, ")")?;
                if *status == 401 {
                    write!(f, "; pass --token or set HOOKYARD_ADMIN_TOKEN")?;
                }
                Ok(())
            }
            AdminError::Invalid { url, detail } => {
                write!(
                    f,
                    "{url} did not answer as the hookyard admin API: {detail}"
                )
            }
        }
    }
}

impl std::error::Error for AdminError {}

/// A request body.
enum Payload<'a> {
    Json(&'a Value),
    Wasm(Vec<u8>),
}

/// A connection to one hookyard admin listener.
pub struct AdminClient {
    base: url::Url,
    token: Option<String>,
    http: reqwest::Client,
}

impl AdminClient {
    /// Checks the URL up front so a typo such as a missing `http://` is
    /// reported as such rather than as a failed request.
    pub fn new(base: &str, token: Option<String>) -> anyhow::Result<AdminClient> {
        let parsed = url::Url::parse(base)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
            .ok_or_else(|| {
                anyhow::anyhow!("--admin {base:?}: expected a URL such as http://127.0.0.1:8081")
            })?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(AdminClient {
            base: parsed,
            token: token.filter(|t| !t.is_empty()),
            http,
        })
    }

    /// The base URL as the user should see it in messages and hints.
    pub fn base(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// GET `segments` (each percent-encoded, so ids and names cannot
    /// escape their path segment) with query pairs.
    pub async fn get(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<Value, AdminError> {
        self.call(Method::GET, segments, query, None).await
    }

    /// POST `segments` with an optional JSON body.
    pub async fn post(&self, segments: &[&str], body: Option<&Value>) -> Result<Value, AdminError> {
        self.call(Method::POST, segments, &[], body.map(Payload::Json))
            .await
    }

    /// POST a component's bytes with query pairs (a plugin trial).
    pub async fn post_wasm(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
        wasm: Vec<u8>,
    ) -> Result<Value, AdminError> {
        self.call(Method::POST, segments, query, Some(Payload::Wasm(wasm)))
            .await
    }

    /// PUT a component's bytes (a plugin push).
    pub async fn put_wasm(&self, segments: &[&str], wasm: Vec<u8>) -> Result<Value, AdminError> {
        self.call(Method::PUT, segments, &[], Some(Payload::Wasm(wasm)))
            .await
    }

    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> url::Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("http URLs have a path")
            .pop_if_empty()
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        url
    }

    async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<Payload<'_>>,
    ) -> Result<Value, AdminError> {
        let url = self.url(segments, query);
        let mut request = self.http.request(method, url.clone());
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        match body {
            Some(Payload::Json(v)) => {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(v.to_string());
            }
            Some(Payload::Wasm(bytes)) => {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/wasm")
                    .body(bytes);
            }
            None => {}
        }
        let response = request.send().await.map_err(|e| self.transport(e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| self.transport(e))?;
        if status.is_success() {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(Value::Null);
            }
            serde_json::from_slice(&bytes).map_err(|e| AdminError::Invalid {
                url: url.to_string(),
                detail: format!("HTTP {status} with a body that is not JSON ({e})"),
            })
        } else {
            Err(http_error(status, &bytes))
        }
    }

    fn transport(&self, e: reqwest::Error) -> AdminError {
        let detail = if e.is_timeout() {
            "no answer in time".to_string()
        } else {
            innermost(&e)
        };
        AdminError::Connect {
            base: self.base().to_string(),
            detail,
        }
    }
}

/// The server's own [`ErrorBody`] when it sent one; otherwise what another
/// JSON answer says (`error`, `message`, `code`), whatever text came back (a
/// proxy's page) shortened, or the status name.
fn http_error(status: StatusCode, body: &[u8]) -> AdminError {
    if let Ok(ErrorBody { error, code }) = serde_json::from_slice(body) {
        return AdminError::Http {
            status: status.as_u16(),
            code,
            message: error,
        };
    }
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| {
        json.as_ref()
            .and_then(|v| v.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    // Something in front of hookyard (a proxy) may answer
    // {"error": code, "message": text}.
    let (code, message) = match (field("message"), field("code")) {
        (Some(message), _) => (field("error").unwrap_or_default(), Some(message)),
        (None, Some(code)) => (code, field("error")),
        (None, None) => (field("error").unwrap_or_default(), None),
    };
    let message = message
        .or_else(|| (!code.is_empty()).then(|| code.clone()))
        .or_else(|| {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            (!text.is_empty()).then(|| text.chars().take(200).collect())
        })
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
    AdminError::Http {
        status: status.as_u16(),
        code,
        message,
    }
}

/// The root cause of a transport error ("Connection refused"), which is the
/// part an operator can act on; reqwest's outer layers only say "error
/// sending request".
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_a_base_path_and_encode_segments() {
        let c = AdminClient::new("http://h:1/proxy/", None).unwrap();
        let url = c.url(&["admin", "events", "a/b c"], &[("limit", "5".into())]);
        assert_eq!(
            url.as_str(),
            "http://h:1/proxy/admin/events/a%2Fb%20c?limit=5"
        );
        let c = AdminClient::new("http://h:1", None).unwrap();
        assert_eq!(c.url(&["healthz"], &[]).as_str(), "http://h:1/healthz");
        assert_eq!(c.base(), "http://h:1");
    }

    #[test]
    fn a_url_without_scheme_is_refused_with_an_example() {
        let e = AdminClient::new("127.0.0.1:8081", None).err().unwrap();
        assert!(e.to_string().contains("http://127.0.0.1:8081"), "{e}");
    }

    #[test]
    fn http_errors_prefer_the_server_message() {
        let e = http_error(
            StatusCode::NOT_FOUND,
            br#"{"error":"not_found","message":"no event \"evt_x\""}"#,
        );
        assert_eq!(e.to_string(), "no event \"evt_x\" (HTTP 404 not_found)");
        let e = http_error(
            StatusCode::NOT_FOUND,
            br#"{"code":"not_found","error":"no event \"evt_x\""}"#,
        );
        assert_eq!(e.to_string(), "no event \"evt_x\" (HTTP 404 not_found)");
        let e = http_error(StatusCode::CONFLICT, br#"{"error":"pending"}"#);
        assert_eq!(e.to_string(), "pending (HTTP 409)");
        let e = http_error(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>");
        assert_eq!(e.to_string(), "<html>bad gateway</html> (HTTP 502)");
        let e = http_error(StatusCode::UNAUTHORIZED, b"");
        assert!(e.to_string().contains("--token"), "{e}");
    }
}
