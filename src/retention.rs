//! The retention sweep: events older than `server.retention`, with their
//! deliveries and attempts, are removed in the background, a small batch at
//! a time on a blocking thread, so ingestion never waits for it.

use std::sync::Arc;
use std::time::Duration;

use crate::admin::metrics::Metrics;
use crate::id::now_ms;
use crate::store::Storage;
use crate::target::Dispatcher;

/// Events removed per batch: small enough that one batch is a short write.
const BATCH: usize = 200;

/// Sweeps every `every`, forever.
pub async fn run(
    store: Arc<dyn Storage>,
    metrics: Arc<Metrics>,
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
            let s = store.clone();
            let from = after.clone();
            let swept =
                tokio::task::spawn_blocking(move || s.sweep_before(cutoff, BATCH, from.as_deref()))
                    .await;
            match swept {
                Ok(Ok(batch)) => {
                    metrics.swept("events", batch.events);
                    metrics.swept("deliveries", batch.deliveries);
                    metrics.swept("attempts", batch.attempts);
                    dispatcher.note_swept_dead(&batch.dead);
                    total += batch.events;
                    match batch.next {
                        Some(next) => after = Some(next),
                        None => break,
                    }
                    // Let ingestion have the store between batches.
                    tokio::task::yield_now().await;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = format!("{e:#}"), "retention sweep failed");
                    break;
                }
                Err(_) => break,
            }
        }
        if total > 0 {
            tracing::info!(events = total, "retention sweep removed old events");
            let s = store.clone();
            match tokio::task::spawn_blocking(move || s.collect_garbage()).await {
                Ok(Ok(n)) if n > 0 => {
                    tracing::info!(segments = n, "deleted emptied body log segments")
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = format!("{e:#}"), "freeing body log space failed")
                }
                _ => {}
            }
        }
    }
}
