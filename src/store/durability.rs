//! Group commit: the 202 for an event waits for the fsync that covers it, but
//! concurrent requests share one fsync instead of queueing for one each.
//!
//! Writers apply their batch, take a ticket (a sequence number) and wait until
//! the flusher reports a flushed sequence at or past it. The flusher loops:
//! read the latest ticket, flush once, publish it. Whoever arrives during a
//! flush rides the next one, so throughput grows with concurrency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Result, anyhow};
use tokio::sync::{Notify, watch};

use crate::config::Durability;
use crate::model::records::Event;
use crate::store::Storage;

/// Persists events with the configured durability.
pub struct Committer {
    store: Arc<dyn Storage>,
    mode: Durability,
    written: AtomicU64,
    wake: Notify,
    flushed: watch::Sender<u64>,
}

impl Committer {
    /// Starts the flusher task (only used with `Durability::Flush`).
    pub fn start(store: Arc<dyn Storage>, mode: Durability) -> Arc<Committer> {
        let (flushed, _) = watch::channel(0);
        let c = Arc::new(Committer {
            store,
            mode,
            written: AtomicU64::new(0),
            wake: Notify::new(),
            flushed,
        });
        if mode == Durability::Flush {
            tokio::spawn(c.clone().flusher());
        }
        c
    }

    /// Stores the event (and its "to route" mark); returns once it is as
    /// durable as the config asks.
    pub async fn commit(&self, event: &Event) -> Result<()> {
        self.store.insert_event(event).done().await?;
        self.wait_durable().await
    }

    /// Like [`commit`](Self::commit), deduplicated by an idempotency key:
    /// returns the original event's id for a duplicate. A duplicate's answer
    /// also waits for the flush, so "already have it" is never said about
    /// an event that is not yet on disk.
    pub async fn commit_once(
        &self,
        event: &Event,
        dedup_key: &str,
        expires_at: u64,
    ) -> Result<Option<String>> {
        let existing = self
            .store
            .insert_event_once(event, dedup_key, expires_at)
            .outcome()
            .await?;
        self.wait_durable().await?;
        Ok(existing)
    }

    async fn wait_durable(&self) -> Result<()> {
        if self.mode == Durability::Buffered {
            return Ok(());
        }
        let ticket = self.written.fetch_add(1, Ordering::SeqCst) + 1;
        let mut rx = self.flushed.subscribe();
        self.wake.notify_one();
        rx.wait_for(|&done| done >= ticket)
            .await
            .map_err(|_| anyhow!("the store's flusher stopped"))?;
        Ok(())
    }

    async fn flusher(self: Arc<Self>) {
        let mut done = 0;
        loop {
            self.wake.notified().await;
            loop {
                let target = self.written.load(Ordering::SeqCst);
                if target <= done {
                    break;
                }
                let store = self.store.clone();
                match tokio::task::spawn_blocking(move || store.flush()).await {
                    Ok(Ok(())) => {
                        done = target;
                        self.flushed.send_replace(done);
                    }
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "store flush failed; retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "store flush task panicked; retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
    }
}
