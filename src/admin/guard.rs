//! Browser-borne attacks on the admin listener. Bound to loopback and
//! without a token, the admin API would trust anything a local browser
//! sends: a page from another origin can POST (`no-cors`, `text/plain`
//! needs no preflight) to pause targets or replay events, and a page on a
//! DNS name rebound to 127.0.0.1 can read event bodies, because the browser
//! then considers the admin API same-origin with the attacker's page. Such
//! requests are recognisable by their headers: a `Host` that is a name we do
//! not answer to (rebinding), an `Origin` or `Sec-Fetch-Site` of another
//! site (cross-site writes), or a body that is not declared JSON (the only
//! kind a cross-origin page can send without a preflight).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AdminState;
use crate::api::ApiError;

/// Paths any `Host` may reach: liveness probes (a load balancer or an
/// orchestrator asks by whatever name it likes) and they reveal nothing.
const OPEN_PATHS: &[&str] = &["/healthz"];

/// Why a request was refused before reaching an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "Host {0:?} is not an address of this admin API; use an IP address or localhost, or add the name to server.admin_hosts"
    )]
    HostNotAllowed(String),
    #[error(
        "cross-origin request refused ({0}); the admin API only takes changes from its own origin or from non-browser clients"
    )]
    CrossOrigin(String),
    #[error("a request body must be JSON: send Content-Type: application/json (got {0})")]
    UnsupportedMediaType(String),
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::HostNotAllowed(_) | Refusal::CrossOrigin(_) => StatusCode::FORBIDDEN,
            Refusal::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Refusal::HostNotAllowed(_) => "host_not_allowed",
            Refusal::CrossOrigin(_) => "cross_origin",
            Refusal::UnsupportedMediaType(_) => "unsupported_media_type",
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        ApiError::new(r.status(), r.code(), r.to_string())
    }
}

/// Runs [`check`] on every request except [`OPEN_PATHS`].
pub async fn refuse_browser_attacks(
    State(state): State<Arc<AdminState>>,
    request: Request,
    next: Next,
) -> Response {
    if OPEN_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    // HTTP/2 carries the host in the `:authority` pseudo-header, which
    // hyper puts in the URI, not in `Host`: judge it the same way.
    let mut request = request;
    if !request.headers().contains_key(header::HOST)
        && let Some(authority) = request.uri().authority()
        && let Ok(v) = header::HeaderValue::from_str(authority.as_str())
    {
        request.headers_mut().insert(header::HOST, v);
    }
    let checked = if request.uri().path().starts_with("/ui/") {
        check_dashboard(
            request.method(),
            request.headers(),
            &state.config.get().server.admin_hosts,
        )
    } else {
        check(
            request.method(),
            request.headers(),
            &state.config.get().server.admin_hosts,
        )
    };
    match checked {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            tracing::warn!(
                method = %request.method(),
                path = %request.uri().path(),
                reason = refusal.code(),
                "admin request refused: {refusal}"
            );
            ApiError::from(refusal).into_response()
        }
    }
}

/// The whole policy, on the request line's method and the headers.
/// `admin_hosts` are lowercase names without a port.
pub fn check(method: &Method, headers: &HeaderMap, admin_hosts: &[String]) -> Result<(), Refusal> {
    let host = match headers.get(header::HOST) {
        // HTTP/1.0 clients may omit it; a browser never does.
        None => None,
        Some(v) => {
            let text = v.to_str().map_err(|_| {
                Refusal::HostNotAllowed(String::from_utf8_lossy(v.as_bytes()).into())
            })?;
            if !host_allowed(text, admin_hosts) {
                return Err(Refusal::HostNotAllowed(text.to_string()));
            }
            Some(text)
        }
    };
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("").trim().to_ascii_lowercase();
        if site == "cross-site" || site == "same-site" {
            return Err(Refusal::CrossOrigin(format!("Sec-Fetch-Site: {site}")));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("null");
        if !host.is_some_and(|h| same_origin(origin, h)) {
            return Err(Refusal::CrossOrigin(format!("Origin: {origin}")));
        }
    }
    if has_body(headers) && !has_preflighted_type(headers) {
        let given = headers
            .get(header::CONTENT_TYPE)
            .map(|v| format!("{:?}", String::from_utf8_lossy(v.as_bytes())))
            .unwrap_or_else(|| "no Content-Type".into());
        return Err(Refusal::UnsupportedMediaType(given));
    }
    Ok(())
}

/// The dashboard's forms post `application/x-www-form-urlencoded`, which a
/// page of any origin can send without a preflight. So a change through
/// the dashboard must prove it comes from the dashboard's own pages: an
/// `Origin` of this server, or `Sec-Fetch-Site: same-origin` (every
/// browser sends one or the other on a POST). Without either (curl, a
/// script), it is held to [`check`]'s rules, like the JSON API.
pub fn check_dashboard(
    method: &Method,
    headers: &HeaderMap,
    admin_hosts: &[String],
) -> Result<(), Refusal> {
    let browser = headers.contains_key(header::ORIGIN) || headers.contains_key("sec-fetch-site");
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) || !browser {
        return check(method, headers, admin_hosts);
    }
    // Host, Origin and Sec-Fetch-Site as for the API; then the origin must
    // be proven, and the body may be a form.
    let mut as_json = headers.clone();
    as_json.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    check(method, &as_json, admin_hosts)?;
    let same_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("same-origin"));
    let same_origin_header = match (headers.get(header::ORIGIN), headers.get(header::HOST)) {
        (Some(o), Some(h)) => match (o.to_str(), h.to_str()) {
            (Ok(o), Ok(h)) => same_origin(o, h),
            _ => false,
        },
        _ => false,
    };
    if same_site || same_origin_header {
        Ok(())
    } else {
        Err(Refusal::CrossOrigin(
            "a dashboard change without a same-origin Origin or Sec-Fetch-Site".into(),
        ))
    }
}

/// The host part of `host[:port]` or `[v6][:port]`, or `None` when the
/// text is not of that form (a port that is not a number, say).
fn split_host(text: &str) -> Option<&str> {
    let (host, port) = if text.starts_with('[') {
        let end = text.find(']')? + 1;
        let (host, after) = text.split_at(end);
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    if let Some(p) = port
        && (!p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u16>().is_err())
    {
        return None;
    }
    (!host.is_empty()).then_some(host)
}

/// DNS rebinding needs a name the attacker controls, so IP literals and
/// `localhost` are always safe; other names must be configured.
fn host_allowed(text: &str, admin_hosts: &[String]) -> bool {
    let Some(host) = split_host(text.trim()) else {
        return false;
    };
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<Ipv6Addr>().is_ok();
    }
    if host.parse::<Ipv4Addr>().is_ok() {
        return true;
    }
    let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    name == "localhost" || admin_hosts.contains(&name)
}

/// Whether `origin` (`scheme://host[:port]`) names the server the request
/// was sent to (`host` is the request's `Host`). Either scheme counts: a TLS
/// proxy in front makes the page https while hookyard speaks http, and the
/// same host and port is the same server. Both are parsed by the same URL
/// parser so case, default ports and IPv6 forms compare equal.
fn same_origin(origin: &str, host: &str) -> bool {
    let Ok(o) = url::Url::parse(origin) else {
        return false; // includes "null"
    };
    if !matches!(o.scheme(), "http" | "https") {
        return false;
    }
    let Ok(h) = url::Url::parse(&format!("{}://{host}", o.scheme())) else {
        return false;
    };
    h.username().is_empty()
        && h.path() == "/"
        && o.host_str().is_some()
        && o.host_str() == h.host_str()
        && o.port_or_known_default() == h.port_or_known_default()
}

/// Judged from the headers: a body is coming unless the length is 0 or
/// neither a length nor a transfer coding is given.
fn has_body(headers: &HeaderMap) -> bool {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return true;
    }
    match headers.get(header::CONTENT_LENGTH) {
        None => false,
        Some(v) => v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()) != Some(0),
    }
}

/// JSON, or a component's bytes (a plugin push): types a browser cannot
/// send across origins without a CORS preflight, which this API never
/// grants; the form and text types a page can send freely are refused.
fn has_preflighted_type(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| {
            let t = t.trim();
            t.eq_ignore_ascii_case("application/json") || t.eq_ignore_ascii_case("application/wasm")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn code(method: Method, pairs: &[(&str, &str)]) -> Option<&'static str> {
        check(&method, &headers(pairs), &["admin.example.com".into()])
            .err()
            .map(|r| r.code())
    }

    #[test]
    fn hosts_ip_literals_localhost_and_configured_names() {
        for ok in [
            "127.0.0.1:8081",
            "127.0.0.1",
            "10.1.2.3:80",
            "[::1]:8081",
            "[::1]",
            "[2001:db8::1]:443",
            "localhost",
            "LocalHost:8081",
            "localhost.:8081",
            "admin.example.com",
            "Admin.Example.COM:8081",
        ] {
            assert_eq!(code(Method::GET, &[("host", ok)]), None, "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8081",
            "localhost.evil.example",
            "127.0.0.1.nip.io:8081",
            "admin.example.com.evil:1",
            "[::1",
            "[evil]:80",
            "127.0.0.1:port",
            "127.0.0.1:99999",
            "127.0.0.1:",
            "",
        ] {
            assert_eq!(
                code(Method::GET, &[("host", bad)]),
                Some("host_not_allowed"),
                "{bad:?}"
            );
        }
        // HTTP/1.0 without a Host.
        assert_eq!(code(Method::GET, &[]), None);
    }

    #[test]
    fn writes_from_other_origins_are_refused() {
        let host = ("host", "127.0.0.1:8081");
        for origin in [
            "http://evil.example",
            "http://127.0.0.1:8082",
            "null",
            "file://",
            "http://127.0.0.1:8081.evil.example",
        ] {
            assert_eq!(
                code(Method::POST, &[host, ("origin", origin)]),
                Some("cross_origin"),
                "{origin}"
            );
        }
        assert_eq!(
            code(Method::POST, &[host, ("origin", "http://127.0.0.1:8081")]),
            None
        );
        assert_eq!(
            code(
                Method::POST,
                &[("host", "localhost"), ("origin", "http://LOCALHOST:80")]
            ),
            None
        );
        assert_eq!(
            code(
                Method::POST,
                &[("host", "[::1]:8081"), ("origin", "http://[::1]:8081")]
            ),
            None
        );
        // Without a Host nothing can be same-origin.
        assert_eq!(
            code(Method::POST, &[("origin", "http://127.0.0.1:8081")]),
            Some("cross_origin")
        );
        for site in ["cross-site", "same-site"] {
            assert_eq!(
                code(Method::POST, &[host, ("sec-fetch-site", site)]),
                Some("cross_origin"),
                "{site}"
            );
        }
        assert_eq!(
            code(Method::POST, &[host, ("sec-fetch-site", "same-origin")]),
            None
        );
        assert_eq!(
            code(Method::POST, &[host, ("sec-fetch-site", "none")]),
            None
        );
        // Reads are not refused for their origin (the Host check covers them).
        assert_eq!(
            code(Method::GET, &[host, ("origin", "http://evil.example")]),
            None
        );
    }

    #[test]
    fn bodies_must_be_declared_json() {
        let host = ("host", "127.0.0.1:8081");
        let len = ("content-length", "2");
        assert_eq!(
            code(Method::POST, &[host, len, ("content-type", "text/plain")]),
            Some("unsupported_media_type")
        );
        assert_eq!(
            code(Method::POST, &[host, len]),
            Some("unsupported_media_type")
        );
        assert_eq!(
            code(
                Method::POST,
                &[
                    host,
                    ("transfer-encoding", "chunked"),
                    ("content-type", "application/x-www-form-urlencoded")
                ]
            ),
            Some("unsupported_media_type")
        );
        assert_eq!(
            code(
                Method::POST,
                &[
                    host,
                    len,
                    ("content-type", "application/json; charset=utf-8")
                ]
            ),
            None
        );
        assert_eq!(
            code(
                Method::POST,
                &[host, len, ("content-type", "Application/JSON")]
            ),
            None
        );
        // No body, no Content-Type needed (the CLI's pause/resume).
        assert_eq!(code(Method::POST, &[host]), None);
        assert_eq!(code(Method::POST, &[host, ("content-length", "0")]), None);
    }
}
