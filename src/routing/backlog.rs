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
    /// Events ingestion is storing and will hand over once committed (see
    /// [`Incoming`]): a refill pass skips their marks.
    pub(super) incoming: HashSet<String>,
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
                    || b.incoming.contains(&mark.id)
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

    /// Leaves `id` to its mark in the store: a refill pass reads it back,
    /// from the oldest mark if the current pass is already past it.
    pub(super) fn leave_to_refill(&self, mut b: MutexGuard<'_, Backlog>, id: &str) {
        if b.cursor.as_deref().is_some_and(|c| id <= c) {
            b.restart = true;
        }
        b.missed = true;
        drop(b);
        self.refill.notify_one();
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

/// An event ingestion is storing: from before its write until it is handed
/// over, a refill pass leaves its mark alone. Without it a pass could read
/// the mark between the commit and the handover, route the event, and the
/// handover would then route it a second time (its plugins called twice,
/// the second outcome fenced off).
pub struct Incoming<'a> {
    router: &'a Router,
    id: Option<String>,
}

impl Router {
    /// Call before the event's write; [`Incoming::hand_over`] it once
    /// committed.
    pub fn incoming(&self, id: String) -> Incoming<'_> {
        self.backlog().incoming.insert(id.clone());
        Incoming {
            router: self,
            id: Some(id),
        }
    }
}

impl Incoming<'_> {
    /// Hands the committed event to routing.
    pub fn hand_over(mut self, event: Event) {
        if let Some(id) = self.id.take() {
            self.router.enqueue_with(id, Some(event));
        }
    }

    /// The store kept the original instead: there is no mark to route.
    pub fn duplicate(mut self) {
        if let Some(id) = self.id.take() {
            self.router.backlog().incoming.remove(&id);
        }
    }
}

/// Neither handed over nor a duplicate: the store failed or answered too
/// late, or the sender went away mid-request (the request's task is
/// dropped). The write may have landed all the same, with only its mark to
/// say so, so a refill pass looks for it.
impl Drop for Incoming<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let mut b = self.router.backlog();
            b.incoming.remove(&id);
            self.router.leave_to_refill(b, &id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Durability, live::LiveConfig};
    use crate::delivery::Dispatcher;
    use crate::model::id::{EventId, now_ms};
    use crate::plugin::Plugins;
    use crate::store::sled::SledStore;
    use crate::telemetry::Telemetry;

    /// A router on a fresh sled store with one passthrough source, and
    /// its dispatcher left unstarted (deliveries stay scheduled).
    async fn router(dir: &std::path::Path) -> (Arc<Router>, crate::store::Store) {
        let config = Config::parse(
            "[sources.s]\ntargets = [\"t\"]\n[targets.t]\nurl = \"http://127.0.0.1:9/\"\n",
            dir,
        )
        .unwrap();
        let live = LiveConfig::new(config);
        let store = SledStore::open(dir, Durability::Buffered)
            .unwrap()
            .into_store();
        let telemetry = Arc::new(Telemetry::new());
        let plugins = Arc::new(Plugins::new(live.clone(), None, None, telemetry.clone()).unwrap());
        let dispatcher = Dispatcher::new(live.get(), &store, telemetry.clone())
            .await
            .unwrap();
        let router =
            Router::start(live, store.routing.clone(), plugins, dispatcher, telemetry).unwrap();
        (router, store)
    }

    fn event() -> Event {
        Event {
            id: EventId::generate(),
            source: "s".into(),
            received_at: now_ms(),
            method: "POST".into(),
            path: "/hooks/s".into(),
            query: String::new(),
            headers: vec![],
            body: b"{}".to_vec(),
            content_encoding: None,
            received_body: None,
            version: None,
        }
    }

    /// Stores `e` as ingestion does, then has a refill pass go past its
    /// mark before the handover.
    async fn stored_and_passed<'a>(
        router: &'a Router,
        store: &crate::store::Store,
        e: &Event,
    ) -> Incoming<'a> {
        let handoff = router.incoming(e.id.to_string());
        store.events.accept(e, None).await.unwrap();
        // `rescan` sets `missed`; a pass clears it as it starts each page
        // and sets it again while pages remain, so neither flag set means
        // a pass read to the newest mark since.
        router.rescan();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while {
            let b = router.backlog();
            b.missed || b.reading
        } {
            assert!(std::time::Instant::now() < deadline, "no pass ran");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        handoff
    }

    async fn routed(store: &crate::store::Store, id: &str) -> bool {
        for _ in 0..1000 {
            if store.records.outcome(id).await.unwrap().is_some() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pass_leaves_a_mark_ingestion_is_about_to_hand_over() {
        let dir = tempfile::tempdir().unwrap();
        let (router, store) = router(dir.path()).await;
        let e = event();
        let id = e.id.to_string();
        let handoff = stored_and_passed(&router, &store, &e).await;
        // The pass went past it and did not queue it: had it, the event
        // would be routed now and again at the handover.
        assert!(!router.backlog().known.contains(&id));
        assert_eq!(store.records.outcome(&id).await.unwrap(), None);
        handoff.hand_over(e);
        assert!(routed(&store, &id).await, "routed after the handover");
        assert!(router.backlog().incoming.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_mark_never_handed_over_is_routed_by_the_next_pass() {
        let dir = tempfile::tempdir().unwrap();
        let (router, store) = router(dir.path()).await;
        let e = event();
        let id = e.id.to_string();
        // The write landed but ingestion gave up on it (the store answered
        // past its bound): the mark is all that is left.
        drop(stored_and_passed(&router, &store, &e).await);
        assert!(routed(&store, &id).await, "routed from its mark");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_ingestion_stopped_waiting_for_is_routed_from_its_mark() {
        let dir = tempfile::tempdir().unwrap();
        let (router, store) = router(dir.path()).await;
        let e = event();
        let id = e.id.to_string();
        // No pass runs while it is stored; ingestion stopped waiting.
        let handoff = router.incoming(id.clone());
        store.events.accept(&e, None).await.unwrap();
        drop(handoff);
        assert!(routed(&store, &id).await, "routed from its mark");
    }
}
