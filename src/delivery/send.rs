//! One delivery attempt: build the signed request, send it, record what
//! happened, and schedule the next attempt or declare the delivery dead.

use std::time::{Duration, Instant};

use anyhow::Result;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::retry;
use crate::config::{TargetConfig, TargetPolicy};
use crate::model::id::now_ms;
use crate::model::records::{Attempt, Delivery, DeliveryStatus, Origin};
use crate::model::trace;
use crate::store::{DeliveryQueue, Recorded};
use crate::telemetry::{AttemptResult, DeliveryEnd};
use crate::webhooks::standard;

/// How much of a response body is kept with the attempt.
const KEPT_RESPONSE: usize = 4096;

/// What running a schedule entry came to.
#[derive(Debug)]
pub enum Attempted {
    /// An attempt was made and recorded.
    Ran(Report),
    /// The delivery is gone or finished: its entry is off the schedule.
    Gone,
    /// Not this entry's to run (another writer moved the delivery, or
    /// another node took it over): it is still scheduled elsewhere.
    Skipped,
}

/// What one attempt did, for the target's circuit and the metrics.
#[derive(Debug, Clone)]
pub struct Report {
    pub status_code: Option<u16>,
    /// `None` on success.
    pub error: Option<String>,
    pub latency: Duration,
    /// The delivery's status after the attempt.
    pub status: DeliveryStatus,
    pub result: AttemptResult,
}

impl Report {
    /// How the delivery ended, when this attempt ended it.
    pub fn ended(&self) -> Option<DeliveryEnd> {
        match self.status {
            DeliveryStatus::Scheduled => None,
            DeliveryStatus::Delivered => Some(DeliveryEnd::Delivered),
            DeliveryStatus::Dead => Some(DeliveryEnd::Dead),
        }
    }
}

/// Runs the attempt for `target_name`'s delivery `id` scheduled at
/// `due_ms`. `target` is `None` when the target is no longer configured:
/// the delivery then dies with that reason. `None` back means the schedule
/// entry was stale (nothing attempted).
pub async fn attempt(
    store: &dyn DeliveryQueue,
    recent: &super::recent::RecentEvents,
    client: &reqwest::Client,
    target_name: &str,
    target: Option<&TargetConfig>,
    due_ms: u64,
    id: &str,
) -> Result<Attempted> {
    // `read_event`: `Some` once the store was asked for the event (and
    // said what it has), so it is not asked twice.
    let (kept, read_event) = match recent.take_delivery(id, due_ms) {
        Some(d) => (Some(d), None),
        None => match store.delivery_and_event(id).await? {
            Some((d, e)) => (Some(d), Some(e)),
            None => (None, None),
        },
    };
    let Some(mut delivery) = kept else {
        tracing::warn!(delivery = %id, "scheduled delivery has no record; unscheduling");
        store.unschedule(target_name, id, due_ms).await?;
        return Ok(Attempted::Gone);
    };
    if delivery.status != DeliveryStatus::Scheduled {
        store.unschedule(target_name, id, due_ms).await?;
        return Ok(Attempted::Gone);
    }
    // An entry another writer moved since it was read (an operator's retry
    // put it at a new time): not this entry's to send. A record and its
    // entry always agree on the due time.
    if delivery.next_attempt_at != Some(due_ms) {
        store.unschedule(target_name, id, due_ms).await?;
        return Ok(Attempted::Skipped);
    }
    let n = delivery.attempts + 1;
    let started_at = now_ms();

    let Some(target) = target else {
        let error = format!("target {:?} is no longer configured", delivery.target);
        return die(store, delivery, due_ms, error).await;
    };
    let policy = &target.policy;

    let event = match (recent.take(&delivery.event_id), read_event) {
        (Some(e), _) => Some(e),
        (None, Some(read)) => read.map(std::sync::Arc::new),
        (None, None) => store
            .event(&delivery.event_id)
            .await?
            .map(std::sync::Arc::new),
    };
    let (body, content_type) = match (&delivery.body, &event) {
        (Some(b), e) => (
            b.clone(),
            e.as_ref()
                .and_then(|e| e.header("content-type").map(str::to_string)),
        ),
        (None, Some(e)) => (e.body.clone(), e.header("content-type").map(str::to_string)),
        (None, None) => {
            let error = format!("its event {} is no longer stored", delivery.event_id);
            return die(store, delivery, due_ms, error).await;
        }
    };

    let timestamp = started_at / 1000;
    let mut headers = HeaderMap::new();
    if let Some(ct) = content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(reqwest::header::CONTENT_TYPE, ct);
    }
    // A passthrough delivery's headers are the sender's (forward.rs): they
    // go first, so everything the operator and hookyard set wins over them.
    // The sender's User-Agent replaces the client's own (reqwest adds its
    // default only when none is set): receivers check it as the provider's.
    let passthrough = delivery.origin == Origin::Passthrough;
    if passthrough {
        put_all(&mut headers, &delivery.headers);
    }
    // The event's version goes first, so a plugin that rewrote the body
    // into another version can say so under the same header.
    let version = event.as_ref().and_then(|e| e.version.as_deref());
    if let (Some(name), Some(v)) = (&target.version_header, version)
        && let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(v),
        )
    {
        headers.insert(k, v);
    }
    let plugin_headers: &[(String, String)] = if passthrough { &[] } else { &delivery.headers };
    for (k, v) in target.headers.iter().chain(plugin_headers) {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.insert(k, v);
        }
    }
    // The event's trace goes on to every delivery (passthrough or a
    // plugin's), unless the target or the plugin set a traceparent of its
    // own; the state belongs to its parent, so it only goes along with it.
    let trace = event.as_ref().and_then(|e| e.trace_context());
    if let Some(t) = &trace
        && !headers.contains_key(trace::TRACEPARENT)
    {
        headers.insert(trace::TRACEPARENT, HeaderValue::from_str(t.traceparent())?);
        if let Some(state) = t.tracestate() {
            headers.insert(trace::TRACESTATE, HeaderValue::from_str(state)?);
        }
    }
    let trace_id = trace.as_ref().map(|t| t.trace_id());
    // Reserved (headers.rs): no sender, target or plugin can set these.
    headers.insert(
        super::headers::EVENT_ID,
        HeaderValue::from_str(&delivery.event_id)?,
    );
    if let Some(source) = event
        .as_ref()
        .and_then(|e| HeaderValue::from_str(&e.source).ok())
    {
        headers.insert(super::headers::SOURCE, source);
    }
    headers.insert(standard::ID, HeaderValue::from_str(&delivery.id)?);
    headers.insert(standard::TIMESTAMP, HeaderValue::from(timestamp));
    let keys = target.signing_keys(started_at);
    if !keys.is_empty() {
        // During a rotation both signatures go, space-separated: receivers
        // accept the message if any one verifies.
        let sig = keys
            .iter()
            .map(|k| standard::sign(k, &delivery.id, timestamp, &body))
            .collect::<Vec<_>>()
            .join(" ");
        headers.insert(standard::SIGNATURE, HeaderValue::from_str(&sig)?);
    }
    // Compressed after signing: the signature is over the payload, which is
    // what the receiver's verifier sees once its HTTP layer decoded it
    // (compress.rs).
    let body = match target.compress {
        None => body,
        Some(how) => {
            headers.insert(
                reqwest::header::CONTENT_ENCODING,
                HeaderValue::from_static(how.content_encoding()),
            );
            super::compress::compress(how, body).await?
        }
    };

    let clock = Instant::now();
    let refused = if policy.allow_private {
        None
    } else {
        super::ssrf::check_url_host(&target.url)
            .err()
            .map(|r| r.to_string())
    };
    let (status_code, error, response_body, retry_after, result) = match refused {
        Some(reason) => (
            None,
            Some(reason),
            String::new(),
            None,
            AttemptResult::Refused,
        ),
        None => {
            let sent = client
                .post(target.url.clone())
                .headers(headers)
                .timeout(policy.timeout)
                .body(body)
                .send()
                .await;
            match sent {
                Ok(resp) => read_response(resp, policy).await,
                Err(e) => {
                    let (error, result) = describe(e, policy.timeout);
                    (None, Some(error), String::new(), None, result)
                }
            }
        }
    };
    let latency = clock.elapsed();
    let attempt = Attempt {
        n,
        at: started_at,
        status_code,
        latency_ms: latency.as_secs_f64() * 1000.0,
        error: error.clone(),
        response_body,
    };
    delivery.attempts = n;
    let new_due = match &error {
        None => {
            delivery.status = DeliveryStatus::Delivered;
            delivery.next_attempt_at = None;
            delivery.last_error = None;
            tracing::debug!(delivery = %delivery.id, event = %delivery.event_id, target_name = %delivery.target, trace_id, n, "delivered");
            None
        }
        Some(err) => {
            delivery.last_error = Some(err.clone());
            match retry::next_delay(&policy.retry_schedule, n, retry_after, policy.jitter) {
                Some(delay) => {
                    let at = now_ms() + delay.as_millis() as u64;
                    delivery.next_attempt_at = Some(at);
                    tracing::info!(delivery = %delivery.id, event = %delivery.event_id, target_name = %delivery.target, trace_id, n, error = %err, retry_in = ?delay, "delivery attempt failed; will retry");
                    Some(at)
                }
                None => {
                    delivery.status = DeliveryStatus::Dead;
                    delivery.next_attempt_at = None;
                    tracing::warn!(delivery = %delivery.id, event = %delivery.event_id, target_name = %delivery.target, trace_id, n, error = %err, "delivery is dead: out of attempts");
                    None
                }
            }
        }
    };
    if store
        .record_attempt(&delivery, &attempt, due_ms, new_due)
        .await?
        == Recorded::Fenced
    {
        // This process's claim lapsed (it was stopped, or the attempt took
        // longer than the lease) and another took the delivery over: that
        // one's attempt is the one on record.
        tracing::warn!(delivery = %delivery.id, target_name = %delivery.target, "attempt result not recorded: another node took the delivery over; the receiver may see it twice (same webhook-id)");
        return Ok(Attempted::Skipped);
    }
    Ok(Attempted::Ran(Report {
        status_code,
        error,
        latency,
        status: delivery.status,
        result,
    }))
}

/// Puts the sender's headers on, in order; a name given on several lines
/// keeps all of them, as the sender sent it.
fn put_all(headers: &mut HeaderMap, list: &[(String, String)]) {
    let mut seen: Vec<HeaderName> = Vec::new();
    for (k, v) in list {
        let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) else {
            continue;
        };
        if seen.contains(&k) {
            headers.append(k, v);
        } else {
            seen.push(k.clone());
            headers.insert(k, v);
        }
    }
}

/// Ends a delivery that can never be attempted (its target or its event is
/// gone) as dead, with the reason as its one attempt.
async fn die(
    store: &dyn DeliveryQueue,
    mut delivery: Delivery,
    due_ms: u64,
    error: String,
) -> Result<Attempted> {
    let n = delivery.attempts + 1;
    let attempt = Attempt {
        n,
        at: now_ms(),
        status_code: None,
        latency_ms: 0.0,
        error: Some(error.clone()),
        response_body: String::new(),
    };
    delivery.attempts = n;
    delivery.status = DeliveryStatus::Dead;
    delivery.next_attempt_at = None;
    delivery.last_error = Some(error.clone());
    tracing::warn!(delivery = %delivery.id, event = %delivery.event_id, target_name = %delivery.target, reason = %error, "delivery is dead");
    if store
        .record_attempt(&delivery, &attempt, due_ms, None)
        .await?
        == Recorded::Fenced
    {
        return Ok(Attempted::Skipped);
    }
    Ok(Attempted::Ran(Report {
        status_code: None,
        error: Some(error),
        latency: Duration::ZERO,
        status: DeliveryStatus::Dead,
        result: AttemptResult::Undeliverable,
    }))
}

type Read = (
    Option<u16>,
    Option<String>,
    String,
    Option<Duration>,
    AttemptResult,
);

/// Status, error, the kept start of the body and any `Retry-After`.
async fn read_response(mut resp: reqwest::Response, policy: &TargetPolicy) -> Read {
    let status = resp.status();
    let retry_after = if status.as_u16() == 429 || status.as_u16() == 503 {
        resp.headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry::parse_retry_after(v, policy.max_retry_after))
    } else {
        None
    };
    let mut kept = Vec::new();
    while kept.len() < KEPT_RESPONSE {
        match tokio::time::timeout(policy.timeout, resp.chunk()).await {
            Ok(Ok(Some(chunk))) => kept.extend_from_slice(&chunk),
            _ => break,
        }
    }
    kept.truncate(KEPT_RESPONSE);
    let ok = status.is_success();
    (
        Some(status.as_u16()),
        (!ok).then(|| format!("HTTP {status}")),
        String::from_utf8_lossy(&kept).into_owned(),
        retry_after,
        if ok {
            AttemptResult::Success
        } else {
            AttemptResult::HttpError
        },
    )
}

/// A short, operator-readable reason for a transport failure, and what it
/// counts as. The URL is taken off first: it may carry credentials, and the
/// reason is stored and shown by the admin API.
fn describe(e: reqwest::Error, timeout: Duration) -> (String, AttemptResult) {
    let e = e.without_url();
    let mut source: Option<&dyn std::error::Error> = Some(&e);
    let mut last = String::new();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    if e.is_timeout() {
        (
            format!("timed out after {timeout:?}"),
            AttemptResult::Timeout,
        )
    } else if let Some(refused) = super::ssrf::refusal_in(&e) {
        // The SSRF guard's resolver said no.
        (refused.to_string(), AttemptResult::Refused)
    } else if e.is_connect() {
        (
            format!("connection failed: {last}"),
            AttemptResult::ConnectError,
        )
    } else {
        (
            format!("request failed: {last}"),
            AttemptResult::RequestError,
        )
    }
}
