//! The webhook receiving handler. Checks run cheapest first (source, client
//! address, rate, declared size), so hostile traffic costs as little as
//! possible before it is refused; nothing is stored for a refused request,
//! nor for a provider handshake, which is answered here (after the
//! signature check when the provider signs it).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use super::IngestState;
use super::allowlist::client_ip;
use super::encoding::DecodeError;
use super::handshake::{Answer, Handshake, Refusal};
use super::rejections::Rejected;
use super::verify::Request;
use crate::api::ApiError;
use crate::api::extract::JsonPath;
use crate::api::types::Received;
use crate::model::id::{EventId, now_ms};
use crate::model::records::Event;
use crate::store::{Accepted, Dedup};
use crate::telemetry::throttle::Throttle;
use crate::telemetry::{
    HandshakeAnswered, RejectReason, RequestAccepted, RequestDuplicate, RequestRejected,
};

/// The longest a webhook waits for the store to take its event.
const STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Store failures logged at most once per period.
static STORE_ERRORS: Throttle = Throttle::new(std::time::Duration::from_secs(10));

/// How much of an over-limit body is drained past the source's limit
/// before the 413; a larger body is cut off.
const DRAIN_MAX: u64 = 8 * 1024 * 1024;

/// How far an over-limit body is read. Draining is what lets the 413 reach
/// the sender on a reusable connection (answering mid-upload makes the
/// sender see a broken pipe, not the 413); it counts from the limit, so it
/// never stops a body within the limit from being read.
fn drain_ceiling(limit: usize) -> u64 {
    (limit as u64).saturating_add(DRAIN_MAX)
}

enum BodyError {
    TooLarge,
    Unreadable(String),
    /// Not all there by the deadline: a slow (or slowloris) sender.
    TimedOut,
}

/// Reads the body up to `limit`, all of it by `deadline`. An over-limit
/// body is still read (and discarded) up to [`drain_ceiling`], so the 413
/// reaches the sender and its keep-alive connection stays usable, instead
/// of a reset mid-upload.
async fn read_body(
    mut body: Body,
    limit: usize,
    deadline: tokio::time::Instant,
) -> Result<axum::body::Bytes, BodyError> {
    let mut buf = bytes::BytesMut::new();
    let mut seen: u64 = 0;
    let ceiling = drain_ceiling(limit);
    loop {
        let Ok(frame) = tokio::time::timeout_at(deadline, body.frame()).await else {
            return Err(BodyError::TimedOut);
        };
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| BodyError::Unreadable(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len() as u64;
        if seen > ceiling {
            return Err(BodyError::TooLarge);
        }
        if seen <= limit as u64 {
            buf.extend_from_slice(&data);
        }
    }
    if seen > limit as u64 {
        return Err(BodyError::TooLarge);
    }
    Ok(buf.freeze())
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!(
        "no route for {}; webhooks go to POST /hooks/<source>",
        uri.path()
    ))
}

pub async fn method_not_allowed(method: Method) -> Response {
    let mut r = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not accepted here; send webhooks with POST"),
    )
    .into_response();
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    r
}

pub async fn receive(
    State(state): State<Arc<IngestState>>,
    JsonPath(source_name): JsonPath<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // The id is taken on arrival and carries the arrival time, so listing
    // and retention (which filter on id time) agree with `received_at`.
    let id = EventId::generate();
    let received_at = id.time().unwrap_or_else(now_ms);
    // GET (and HEAD, which axum routes with it) is only ever a provider
    // handshake; a source without one refuses it as before, and so does an
    // unknown name, which has no handshake either.
    let is_get = method == Method::GET || method == Method::HEAD;
    let config = state.config.get();
    let source = config.sources.get(&source_name);
    let get_handshake = source
        .and_then(|s| s.handshake.as_ref())
        .filter(|h| is_get && h.answers_get());
    if is_get && get_handshake.is_none() {
        return method_not_allowed(method).await;
    }
    let Some(source) = source else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_source",
            format!("no source named {source_name:?} is configured"),
        )
        .into_response();
    };
    let client = client_ip(peer, &headers, source.client_ip_header.as_deref());
    let client_text = match &client {
        Ok(ip) => ip.to_string(),
        Err(_) => "unknown".to_string(),
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let reject = |status: StatusCode, reason: RejectReason, message: String, size: Option<u64>| {
        state.rejections.remember(
            Rejected {
                source: source_name.clone(),
                reason,
                message: message.clone(),
                status: status.as_u16(),
                at: received_at,
                client_ip: client_text.clone(),
                headers: vec![],
                body_size: size,
            },
            &headers,
            // Computed only on the rejection path, not for every request.
            &source
                .verifier
                .as_ref()
                .map(|v| v.sensitive_headers())
                .unwrap_or_default(),
        );
        state.telemetry.emit(RequestRejected {
            source: &source_name,
            reason,
            client: &client_text,
            message: &message,
        });
        ApiError::new(status, reason.as_str(), message).into_response()
    };
    let answer_handshake =
        |h: &Handshake, outcome: Result<Answer, Refusal>, size: Option<u64>| match outcome {
            Ok(answer) => {
                state.telemetry.emit(HandshakeAnswered {
                    source: &source_name,
                    provider: h.provider(),
                    client: &client_text,
                });
                answer.into_response()
            }
            Err(refused) => reject(refused.status(), refused.reason(), refused.message(), size),
        };

    if !source.allow_ips.is_empty() {
        match &client {
            Err(unknown) => {
                return reject(
                    StatusCode::FORBIDDEN,
                    RejectReason::ClientIpUnknown,
                    format!("{unknown}; this source only accepts addresses in its allow_ips"),
                    declared,
                );
            }
            Ok(ip) if !source.allow_ips.iter().any(|n| n.contains(*ip)) => {
                return reject(
                    StatusCode::FORBIDDEN,
                    RejectReason::IpNotAllowed,
                    format!("{ip} is not in this source's allow_ips"),
                    declared,
                );
            }
            Ok(_) => {}
        }
    }
    if let Some(bucket) = state.bucket(&source_name)
        && let Err(wait) = bucket.take()
    {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut r = reject(
            StatusCode::TOO_MANY_REQUESTS,
            RejectReason::RateLimited,
            format!("this source's rate limit is exceeded; retry in {secs} s"),
            declared,
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return r;
    }

    if let Some(h) = get_handshake {
        return answer_handshake(h, h.on_get(uri.query().unwrap_or("")), declared);
    }

    let limit = source.max_body;
    let too_large = |size: Option<u64>| {
        reject(
            StatusCode::PAYLOAD_TOO_LARGE,
            RejectReason::BodyTooLarge,
            format!("body exceeds this source's limit of {limit} bytes"),
            size,
        )
    };
    if declared.is_some_and(|n| n > drain_ceiling(limit)) {
        // Too big to be worth draining: answer now (the connection closes).
        return too_large(declared);
    }
    // A header-only check: refused before the body is read.
    let codings = match super::encoding::codings(&headers) {
        Ok(c) => c,
        Err(what) => {
            return reject(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                RejectReason::UnsupportedEncoding,
                format!("{what} is not supported; send gzip, deflate, br, zstd or no encoding"),
                declared,
            );
        }
    };
    let body_timeout = config.server.limits.body_timeout;
    let deadline = tokio::time::Instant::now() + body_timeout;
    let body = match read_body(body, limit, deadline).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => return too_large(declared),
        Err(BodyError::TimedOut) => {
            let mut r = reject(
                StatusCode::REQUEST_TIMEOUT,
                RejectReason::BodyTimeout,
                format!(
                    "the body did not arrive within server.body_timeout ({})",
                    humantime::format_duration(body_timeout)
                ),
                declared,
            );
            // The rest of the body may still be on its way: this
            // connection cannot carry another request.
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return r;
        }
        Err(BodyError::Unreadable(e)) => {
            return reject(
                StatusCode::BAD_REQUEST,
                RejectReason::BodyUnreadable,
                format!("could not read the request body: {e}"),
                declared,
            );
        }
    };

    if let Some(h) = &source.handshake
        && let Some(outcome) = h.before_verify(uri.query().unwrap_or(""))
    {
        return answer_handshake(h, outcome, Some(body.len() as u64));
    }

    if let Some(verifier) = &source.verifier {
        let request = Request {
            headers: &headers,
            query: uri.query().unwrap_or(""),
            body: &body,
            now_unix: (received_at / 1000) as i64,
        };
        if let Err(rejection) = verifier.verify(&request) {
            return reject(
                StatusCode::UNAUTHORIZED,
                rejection.reason(),
                rejection.message(),
                Some(body.len() as u64),
            );
        }
    }

    // Decoded only now: the signature covers the bytes as received, and a
    // forged request costs no decompression.
    let received = body;
    let body = if codings.is_empty() || received.is_empty() {
        received.clone() // shares the bytes
    } else {
        let limit = source.max_decoded_body;
        let input = received.clone();
        let list = codings.clone();
        // Decoding up to the limit is CPU work that can take a while
        // (tens of MB for a bomb): off the async workers.
        let decoded = tokio::task::spawn_blocking(move || {
            let d = super::encoding::decode(&input, &list, limit);
            if matches!(d, Err(DecodeError::TooLarge)) {
                // A refused bomb filled this thread's heap up to the
                // cap, and the thread may idle for a while after it.
                // (Only then: a bomb costs the decoding of the whole cap
                // anyway.)
                crate::memory::release_thread_memory();
            }
            d
        })
        .await
        .unwrap_or_else(|e| Err(DecodeError::Invalid(format!("the decoder failed: {e}"))));
        match decoded {
            Ok(d) => axum::body::Bytes::from(d),
            Err(DecodeError::TooLarge) => {
                return reject(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    RejectReason::DecodedTooLarge,
                    format!(
                        "the body decoded ({}) exceeds this source's max_decoded_body of {limit} bytes",
                        super::encoding::label(&codings)
                    ),
                    Some(received.len() as u64),
                );
            }
            Err(DecodeError::Invalid(why)) => {
                return reject(
                    StatusCode::BAD_REQUEST,
                    RejectReason::BodyUndecodable,
                    format!(
                        "the body could not be decoded as {}: {why}",
                        super::encoding::label(&codings)
                    ),
                    Some(received.len() as u64),
                );
            }
        }
    };
    // An event keeps its received bytes apart only when they differ.
    let encoded = !codings.is_empty() && !received.is_empty();

    if let Some(h) = &source.handshake
        && let Some(outcome) = h.after_verify(&body)
    {
        return answer_handshake(h, outcome, Some(received.len() as u64));
    }

    let (credential_headers, credential_param) = source
        .verifier
        .as_ref()
        .map(|v| v.credentials())
        .unwrap_or_default();
    let event = Event {
        id,
        source: source_name.clone(),
        received_at,
        method: method.to_string(),
        path: uri.path().to_string(),
        query: super::query::without_param(uri.query().unwrap_or(""), credential_param),
        headers: headers
            .iter()
            .map(|(k, v)| {
                let value = if credential_headers.iter().any(|c| c == k.as_str()) {
                    "[redacted]".to_string()
                } else {
                    String::from_utf8_lossy(v.as_bytes()).into_owned()
                };
                (k.as_str().to_string(), value)
            })
            .collect(),
        body: body.to_vec(),
        content_encoding: encoded.then(|| super::encoding::label(&codings)),
        received_body: encoded.then(|| received.to_vec()),
        // From the request as it arrived (a header is found even when it
        // is a credential the stored headers redact: a version is not one).
        version: source
            .version
            .as_ref()
            .and_then(|v| v.find(&headers, &body)),
    };

    let dedup = source.idempotency.as_ref().and_then(|i| {
        i.key_of(&headers, &body).map(|key| Dedup {
            key,
            expires_at: received_at.saturating_add(i.window.as_millis() as u64),
        })
    });
    // A store that hangs (a stuck disk, a database that stopped answering)
    // must not hold the sender's request open: past the bound it is a 503,
    // and the sender retries. (The write may still land; the retry is then
    // a second event, or the same one when it carries an idempotency key.)
    // Past this, an event not handed over (an error, a timeout, a sender
    // that went away) has a refill pass look for its mark.
    let handoff = state.router.incoming(event.id.to_string());
    let stored = tokio::time::timeout(STORE_WAIT, state.events.accept(&event, dedup))
        .await
        .unwrap_or_else(|_| {
            Err(anyhow::anyhow!(
                "the store did not answer within {STORE_WAIT:?}"
            ))
        });
    match stored {
        Ok(Accepted::New) => {}
        Ok(Accepted::Duplicate(original)) => {
            handoff.duplicate();
            state.telemetry.emit(RequestDuplicate {
                source: &source_name,
                original: &original,
            });
            return (
                StatusCode::OK,
                Json(Received {
                    id: original.into(),
                    duplicate: true,
                }),
            )
                .into_response();
        }
        Err(e) => {
            // A full disk fails every request the same way: one line per
            // period, with the count of those held back.
            if let Some(suppressed) = STORE_ERRORS.allow() {
                tracing::error!(event = %event.id, error = format!("{e:#}"), suppressed, "could not store event");
            }
            let mut r = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the event could not be stored; retry later",
            )
            .into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return r;
        }
    }
    let trace = event.trace_context();
    state.telemetry.emit(RequestAccepted {
        source: &source_name,
        event: &event.id,
        bytes: event.body.len(),
        trace_id: trace.as_ref().map(|t| t.trace_id()),
    });
    let id = event.id.clone();
    handoff.hand_over(event);
    (
        StatusCode::ACCEPTED,
        Json(Received {
            id,
            duplicate: false,
        }),
    )
        .into_response()
}
