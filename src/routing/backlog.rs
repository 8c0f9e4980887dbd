//! The routing backlog's in-memory side: at most [`QUEUE_CAP`] event ids,
//! and the refill task that reads "to route" marks back from the store a
//! page at a time when the queue could not hold them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use anyhow::Result;

use super::Router;
use crate::model::records::Event;

static BACKLOG_ERRORS: crate::telemetry::throttle::Throttle =
    crate::telemetry::throttle::Throttle::new(Duration::from_secs(10));

/// Most event ids held in memory waiting for a routing slot. Past it,
/// events stay only in the store (their "to route" mark) and are read back
/// a page at a time as the queue drains, so a backlog larger than memory
/// (a slow plugin, a restart after an outage, a bulk replay) costs a
/// bounded amount of RAM. An id is ~30 bytes: this is well under a MB.
pub(super) const QUEUE_CAP: usize = 8192;

/// Marks read from the store per refill step.
const REFILL_PAGE: usize = 512;

/// The in-memory side of the routing backlog: ids only, bounded.
#[derive(Default)]
pub(super) struct Backlog {
    pub(super) queue: VecDeque<String>,
    /// Ids queued or being routed: a refill skips them, so an event is
    /// never routed twice at once.
    pub(super) known: HashSet<String>,
    /// Some marks in the store are in neither `queue` nor `known`: a refill
    /// pass is due once the queue has room.
    pub(super) missed: bool,
    /// Where the current refill pass continues (exclusive); `None` starts
    /// at the oldest mark.
    pub(super) cursor: Option<String>,
    /// A mark older than `cursor` was missed (a replay), or parked events
    /// are to be looked at again: the next pass starts from the oldest.
    pub(super) restart: bool,
    /// The current pass also takes parked events (a plugin started serving,
    /// or the process started).
    pub(super) with_parked: bool,
    /// Events parked for a missing plugin since the last rescan.
    pub(super) parked: usize,
    /// A refill page is being read from the store: ids finished meanwhile
    /// go to `done_meanwhile`, because the page may still show their marks
    /// (read before the outcome cleared them) and must not queue them again.
    pub(super) reading: bool,
    pub(super) done_meanwhile: HashSet<String>,
    pub(super) stopping: bool,
    /// Events handed over by ingestion with their id, so routing need not
    /// read back what it was just given; [`FRESH_BYTES`] at most, past
    /// which routing reads from the store as for any mark.
    pub(super) fresh: HashMap<String, Arc<Event>>,
    pub(super) fresh_bytes: usize,
}

/// Most bytes of events kept in memory for routing (a burst of large
/// bodies falls back to reading them from the store). 32 MiB (with 16 MiB
/// of first-attempt events) gave no more throughput than 8 (and 4) in
/// interleaved runs, and 50-190 MiB more peak RSS with three plugins.
pub(super) const FRESH_BYTES: usize = 8 * 1024 * 1024;

impl Router {
    pub(super) fn backlog(&self) -> MutexGuard<'_, Backlog> {
        self.backlog.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Rescans parked events each time a plugin starts serving; routing
    /// parks them again if what they need is still missing.
    pub(super) async fn resume_waiting(self: Arc<Self>) {
        let mut changes = self.plugins.subscribe();
        while changes.changed().await.is_ok() {
            self.rescan_parked();
        }
    }

    /// Reads the marks from the oldest again: in a cluster, events another
    /// node claimed and did not finish (it died) become this node's to
    /// route once their claim runs out, and nothing else announces them.
    pub fn rescan(&self) {
        {
            let mut b = self.backlog();
            b.restart = true;
            b.missed = true;
        }
        self.refill.notify_one();
    }

    pub(super) fn rescan_parked(&self) {
        {
            let mut b = self.backlog();
            if b.parked > 0 {
                tracing::info!(count = b.parked, "resuming events that waited for a plugin");
            }
            b.parked = 0;
            b.with_parked = true;
            b.restart = true;
            b.missed = true;
        }
        self.refill.notify_one();
    }

    /// Reads marks the queue could not hold back from the store, a page at
    /// a time, as the queue drains.
    pub(super) async fn refill_loop(self: Arc<Self>) {
        loop {
            let notified = self.refill.notified();
            let due = {
                let b = self.backlog();
                if b.stopping {
                    return;
                }
                b.missed && b.queue.len() <= QUEUE_CAP / 2
            };
            if !due {
                notified.await;
                continue;
            }
            if let Err(e) = self.refill_step().await {
                if let Some(suppressed) = BACKLOG_ERRORS.allow() {
                    tracing::error!(
                        error = format!("{e:#}"),
                        suppressed,
                        "reading the routing backlog failed; retrying"
                    );
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    /// One page of a refill pass.
    async fn refill_step(&self) -> Result<()> {
        let cursor = {
            let mut b = self.backlog();
            if std::mem::take(&mut b.restart) {
                b.cursor = None;
            }
            // Taken now: a mark missed while this page is read sets it again.
            b.missed = false;
            b.reading = true;
            b.cursor.clone()
        };
        let page = self
            .store
            .to_route_after(cursor.as_deref(), REFILL_PAGE)
            .await;
        let mut added = 0;
        {
            let mut b = self.backlog();
            b.reading = false;
            let done = std::mem::take(&mut b.done_meanwhile);
            let page = match page {
                Ok(page) => page,
                Err(e) => {
                    b.missed = true;
                    return Err(e);
                }
            };
            if page.is_empty() {
                // The pass reached the newest mark; a restart asked for
                // meanwhile means another pass.
                b.cursor = None;
                if std::mem::take(&mut b.restart) {
                    b.missed = true;
                } else {
                    b.with_parked = false;
                }
                return Ok(());
            }
            for mark in page {
                if b.queue.len() >= QUEUE_CAP {
                    b.missed = true;
                    break;
                }
                b.cursor = Some(mark.id.clone());
                if b.known.contains(&mark.id)
                    || done.contains(&mark.id)
                    || (mark.parked && !b.with_parked)
                {
                    continue;
                }
                b.known.insert(mark.id.clone());
                b.queue.push_back(mark.id);
                added += 1;
            }
            // More of this pass to read.
            b.missed = true;
            if std::mem::take(&mut b.restart) {
                b.cursor = None;
            }
        }
        if added > 0 {
            self.work.notify_one();
        }
        Ok(())
    }

    pub(super) fn next_id(&self) -> Option<String> {
        let mut b = self.backlog();
        let id = b.queue.pop_front();
        if b.missed && b.queue.len() <= QUEUE_CAP / 2 {
            self.refill.notify_one();
        }
        id
    }
}
