//! Background jobs on the store: the retention sweep (events older than
//! `server.retention`, with their deliveries and attempts) and the expiry of
//! idempotency keys, each a small batch at a time on a blocking thread, so
//! ingestion never waits for them.

use std::sync::Arc;
use std::time::Duration;

use crate::delivery::Dispatcher;
use crate::model::id::now_ms;
use crate::store::Upkeep;
use crate::telemetry::{RetentionSwept, Telemetry};

/// Events removed per batch: small enough that one batch is a short write.
const BATCH: usize = 200;

/// Sweeps every `every`, forever.
pub async fn retention(
    store: Arc<dyn Upkeep>,
    telemetry: Arc<Telemetry>,
    dispatcher: Arc<Dispatcher>,
    retention: Duration,
    every: Duration,
) {
    loop {
        tokio::time::sleep(every).await;
        let cutoff = now_ms().saturating_sub(retention.as_millis() as u64);
        let mut after: Option<String> = None;
        let mut total = 0;
        loop {
            match store.sweep_before(cutoff, BATCH, after.as_deref()).await {
                Ok(batch) => {
                    telemetry.emit(RetentionSwept {
                        events: batch.events,
                        deliveries: batch.deliveries,
                        attempts: batch.attempts,
                    });
                    dispatcher.note_swept_dead(&batch.dead);
                    total += batch.events;
                    match batch.next {
                        Some(next) => after = Some(next),
                        None => break,
                    }
                    // Let ingestion have the store between batches.
                    tokio::task::yield_now().await;
                }
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "retention sweep failed");
                    break;
                }
            }
        }
        if total > 0 {
            tracing::info!(events = total, "retention sweep removed old events");
            match store.collect_garbage().await {
                Ok(n) if n > 0 => tracing::info!(segments = n, "deleted emptied body log segments"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = format!("{e:#}"), "freeing body log space failed"),
            }
        }
    }
}

/// Forgets idempotency keys past their window, a batch at a time so the
/// sweep never holds up ingestion.
pub async fn sweep_idempotency_keys(store: Arc<dyn Upkeep>) {
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
        loop {
            match store.sweep_idempotency(now_ms(), 1000).await {
                Ok(n) if n >= 1000 => tokio::task::yield_now().await,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "idempotency sweep failed");
                    break;
                }
            }
        }
    }
}
