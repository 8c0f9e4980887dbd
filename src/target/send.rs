//! One delivery attempt: build the signed request, send it, record what
//! happened, and schedule the next attempt or declare the delivery dead.

use std::time::{Duration, Instant};

use anyhow::Result;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::{retry, signing};
use crate::config::Config;
use crate::id::now_ms;
use crate::records::{Attempt, DeliveryStatus};
use crate::store::Storage;

/// How much of a response body is kept with the attempt.
const KEPT_RESPONSE: usize = 4096;

/// Runs the attempt for the delivery scheduled at `due_ms`.
pub async fn attempt(
    config: &Config,
    store: &dyn Storage,
    client: &reqwest::Client,
    due_ms: u64,
    id: &str,
) -> Result<()> {
    let Some(mut delivery) = store.delivery(id)? else {
        tracing::warn!(delivery = %id, "scheduled delivery has no record; unscheduling");
        return store_unschedule(store, id, due_ms);
    };
    if delivery.status != DeliveryStatus::Scheduled {
        return store_unschedule(store, id, due_ms);
    }
    let n = delivery.attempts + 1;
    let started_at = now_ms();

    let Some(target) = config.targets.get(&delivery.target) else {
        let error = format!("target {:?} is no longer configured", delivery.target);
        let attempt = Attempt {
            n,
            at: started_at,
            status_code: None,
            latency_ms: 0.0,
            error: Some(error.clone()),
            response_body: String::new(),
        };
        delivery.attempts = n;
        delivery.status = DeliveryStatus::Dead;
        delivery.next_attempt_at = None;
        delivery.last_error = Some(error);
        return store.record_attempt(&delivery, &attempt, due_ms, None);
    };

    let event = store.event(&delivery.event_id)?;
    let (body, content_type) = match (&delivery.body, &event) {
        (Some(b), e) => (
            b.clone(),
            e.as_ref()
                .and_then(|e| e.header("content-type").map(str::to_string)),
        ),
        (None, Some(e)) => (e.body.clone(), e.header("content-type").map(str::to_string)),
        (None, None) => {
            anyhow::bail!(
                "delivery {id} refers to missing event {}",
                delivery.event_id
            )
        }
    };

    let timestamp = started_at / 1000;
    let mut headers = HeaderMap::new();
    if let Some(ct) = content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(reqwest::header::CONTENT_TYPE, ct);
    }
    for (k, v) in target.headers.iter().chain(delivery.headers.iter()) {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.insert(k, v);
        }
    }
    headers.insert("webhook-id", HeaderValue::from_str(&delivery.id)?);
    headers.insert("webhook-timestamp", HeaderValue::from(timestamp));
    if let Some(key) = &target.secret {
        let sig = signing::sign(key, &delivery.id, timestamp, &body);
        headers.insert("webhook-signature", HeaderValue::from_str(&sig)?);
    }

    let clock = Instant::now();
    let sent = client
        .post(target.url.clone())
        .headers(headers)
        .timeout(target.timeout)
        .body(body)
        .send()
        .await;
    let (status_code, error, response_body, retry_after) = match sent {
        Ok(mut resp) => {
            let status = resp.status();
            let retry_after = if status.as_u16() == 429 || status.as_u16() == 503 {
                resp.headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| retry::parse_retry_after(v, config.delivery.max_retry_after))
            } else {
                None
            };
            let mut kept = Vec::new();
            while kept.len() < KEPT_RESPONSE {
                match tokio::time::timeout(target.timeout, resp.chunk()).await {
                    Ok(Ok(Some(chunk))) => kept.extend_from_slice(&chunk),
                    _ => break,
                }
            }
            kept.truncate(KEPT_RESPONSE);
            let error = (!status.is_success()).then(|| format!("HTTP {status}"));
            (
                Some(status.as_u16()),
                error,
                String::from_utf8_lossy(&kept).into_owned(),
                retry_after,
            )
        }
        Err(e) => (
            None,
            Some(describe(&e, target.timeout)),
            String::new(),
            None,
        ),
    };
    let latency_ms = clock.elapsed().as_secs_f64() * 1000.0;
    let attempt = Attempt {
        n,
        at: started_at,
        status_code,
        latency_ms,
        error: error.clone(),
        response_body,
    };
    delivery.attempts = n;
    let new_due = match &error {
        None => {
            delivery.status = DeliveryStatus::Delivered;
            delivery.next_attempt_at = None;
            delivery.last_error = None;
            tracing::debug!(delivery = %delivery.id, event = %delivery.event_id, target = %delivery.target, n, "delivered");
            None
        }
        Some(err) => {
            delivery.last_error = Some(err.clone());
            match retry::next_delay(&target.retry_schedule, n, retry_after) {
                Some(delay) => {
                    let at = now_ms() + delay.as_millis() as u64;
                    delivery.next_attempt_at = Some(at);
                    tracing::info!(delivery = %delivery.id, event = %delivery.event_id, target = %delivery.target, n, error = %err, retry_in = ?delay, "delivery attempt failed; will retry");
                    Some(at)
                }
                None => {
                    delivery.status = DeliveryStatus::Dead;
                    delivery.next_attempt_at = None;
                    tracing::warn!(delivery = %delivery.id, event = %delivery.event_id, target = %delivery.target, n, error = %err, "delivery is dead: out of attempts");
                    None
                }
            }
        }
    };
    store.record_attempt(&delivery, &attempt, due_ms, new_due)
}

fn store_unschedule(store: &dyn Storage, id: &str, due_ms: u64) -> Result<()> {
    store.unschedule(id, due_ms)
}

/// A short, operator-readable reason for a transport failure.
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        format!("timed out after {timeout:?}")
    } else if e.is_connect() {
        let mut source: Option<&dyn std::error::Error> = Some(e);
        let mut last = String::new();
        while let Some(s) = source {
            last = s.to_string();
            source = s.source();
        }
        format!("connection failed: {last}")
    } else {
        format!("request failed: {e}")
    }
}
