//! The storage seam's conformance suite: what any backend must do, run
//! against each backend through the seam's traits only.
//!
//! A backend is a [`Harness`]: open a fresh store, and close and reopen
//! the same one (what survives a restart). Each case is an async fn over a
//! harness; `conformance!` runs every case against a backend. Process
//! crashes (kill -9 mid-load) are covered against the real binary in
//! tests/crash.rs and tests/plugin_state.rs; here "reopen" checks that what
//! a call reported done is all there, and that multi-record changes are
//! all-or-nothing as the seam promises.

use std::collections::{BTreeMap, BTreeSet};

mod support;

use async_trait::async_trait;
use hookyard::config::Engine;
use hookyard::model::id::{DeliveryId, EventId, lowest_at, now_ms};
use hookyard::model::records::{
    Attempt, Delivery, DeliveryStatus, Event, EventState, EventStatus, Origin, Outcome,
};
use hookyard::plugin::kv::{KvRefused, KvTxn, PluginTxn, digest};
use hookyard::store::{
    Accepted, Committed, Dedup, DeliveryQuery, EventQuery, Mark, Recorded, Rescheduled, Store,
    ToRoute,
};

/// A backend under test.
#[async_trait]
pub trait Harness: Send + Sync {
    /// The store, opened.
    async fn open(&self) -> Store;
    /// Closes `store` (every clone of it) and opens the same one again.
    async fn reopen(&self, store: Store) -> Store;
    /// A second process on the same data, for backends shared by several
    /// (`None` for an embedded one, which one process holds).
    async fn other_process(&self) -> Option<Store> {
        None
    }
}

/// The embedded backend, on either engine.
struct Sled {
    dir: tempfile::TempDir,
    engine: Engine,
}

impl Sled {
    fn new(engine: Engine) -> Sled {
        Sled {
            dir: tempfile::tempdir().unwrap(),
            engine,
        }
    }

    fn try_open(&self) -> anyhow::Result<hookyard::store::sled::SledStore> {
        hookyard::store::sled::SledStore::open_with_reserve(
            self.dir.path(),
            hookyard::config::Durability::Flush,
            hookyard::store::sled::DEFAULT_MIN_FREE,
            self.engine,
        )
    }
}

#[async_trait]
impl Harness for Sled {
    async fn open(&self) -> Store {
        self.try_open().unwrap().into_store()
    }

    async fn reopen(&self, store: Store) -> Store {
        drop(store);
        // The engine lets go of its directory lock when its background
        // threads have finished with the closed store, a moment after the
        // drop.
        for _ in 0..100 {
            if let Ok(s) = self.try_open() {
                return s.into_store();
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        self.open().await
    }
}

/// The cluster backend: a database of its own on the test process's
/// throwaway PostgreSQL.
struct Pg {
    url: String,
    node: String,
}

impl Pg {
    fn new() -> Pg {
        Pg {
            url: support::postgres::server().database(),
            node: "node-a".into(),
        }
    }
}

#[async_trait]
impl Harness for Pg {
    async fn open(&self) -> Store {
        hookyard::store::pg::PgStore::open(&self.url, &self.node)
            .await
            .unwrap()
            .into_store()
    }

    /// The same node coming back: what it committed is there, and its
    /// claims are its own again.
    async fn reopen(&self, store: Store) -> Store {
        drop(store);
        self.open().await
    }

    async fn other_process(&self) -> Option<Store> {
        Some(
            hookyard::store::pg::PgStore::open(&self.url, "node-b")
                .await
                .unwrap()
                .into_store(),
        )
    }
}

/// Runs every case against a backend.
macro_rules! conformance {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;
            conformance!(@cases $make;
                accepted_events_are_marked_and_survive_a_reopen,
                an_encoded_event_keeps_both_bodies,
                idempotency_keys_deduplicate_per_source_until_they_expire,
                concurrent_duplicates_store_exactly_one_event,
                an_outcome_its_deliveries_and_the_mark_change_together,
                the_schedule_is_per_target_in_due_order,
                attempts_move_deliveries_and_keep_the_dead_letter_counts,
                replays_and_notes_follow_the_mark,
                kv_commits_check_their_reads,
                concurrent_kv_read_modify_writes_are_serializable,
                kv_keys_are_bounded_listed_and_deletable,
                listings_page_newest_first_without_gaps,
                retention_removes_only_what_is_finished,
                target_state_round_trips,
                a_second_process_is_fenced_out,
                the_owners_new_deliveries_are_its_own_until_it_lets_go,
                concurrent_writes_each_get_their_own_answer,
                an_event_routed_twice_at_once_is_recorded_once,
                an_attempt_reads_its_delivery_and_event_together,
            );
        }
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let h = $make;
                super::$case(&h).await;
            }
        )*
    };
}

conformance!(sled, Sled::new(Engine::Sled));
conformance!(fjall, Sled::new(Engine::Fjall));
conformance!(postgres, Pg::new());

// ---------------------------------------------------------------------------
// Helpers.

fn event(source: &str, body: &str) -> Event {
    let id = EventId::generate();
    Event {
        received_at: id.time().unwrap(),
        id,
        source: source.into(),
        method: "POST".into(),
        path: format!("/hooks/{source}"),
        query: String::new(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.as_bytes().to_vec(),
        version: None,
        content_encoding: None,
        received_body: None,
    }
}

fn delivery(event: &Event, target: &str, body: Option<&str>, due: u64) -> Delivery {
    Delivery {
        id: DeliveryId::generate(),
        event_id: event.id.clone(),
        target: target.into(),
        origin: Origin::Passthrough,
        headers: vec![],
        created_at: due,
        status: DeliveryStatus::Scheduled,
        attempts: 0,
        next_attempt_at: Some(due),
        last_error: None,
        body: body.map(|b| b.as_bytes().to_vec()),
        refused_headers: vec![],
    }
}

fn outcome(status: EventStatus, deliveries: &[Delivery]) -> Outcome {
    Outcome {
        status,
        routed_at: now_ms(),
        plugins: vec![],
        deliveries: deliveries.iter().map(|d| d.id.clone()).collect(),
    }
}

fn attempt(n: u32, code: u16) -> Attempt {
    Attempt {
        n,
        at: now_ms(),
        status_code: Some(code),
        latency_ms: 1.0,
        error: (code >= 300).then(|| format!("HTTP {code}")),
        response_body: String::new(),
    }
}

fn txn(
    plugin: &str,
    reads: &[(&str, Option<&[u8]>)],
    writes: &[(&str, Option<&[u8]>)],
) -> PluginTxn {
    PluginTxn {
        plugin: plugin.into(),
        max_keys: 1000,
        turn: None,
        txn: KvTxn {
            reads: reads
                .iter()
                .map(|(k, v)| (k.to_string(), digest(*v)))
                .collect(),
            writes: writes
                .iter()
                .map(|(k, v)| (k.to_string(), v.map(<[u8]>::to_vec)))
                .collect(),
            token: None,
        },
    }
}

async fn accept(s: &Store, e: &Event) {
    assert_eq!(s.events.accept(e, None).await.unwrap(), Accepted::New);
}

/// How long the suite's claims hold.
const LEASE: std::time::Duration = std::time::Duration::from_secs(60);

/// Claims what is due on `target` at `now` (as a dispatcher does before an
/// attempt).
/// A shared backend hands a target's deliveries only to the process that
/// owns the target: the suite's one process takes it first.
async fn claim(s: &Store, target: &str, now: u64, limit: usize) -> Vec<(u64, String)> {
    let owned = s
        .targets
        .own_targets(&[target.to_string()], &[], LEASE)
        .await
        .unwrap();
    assert_eq!(owned.mine, [target], "a lone process owns every target");
    s.queue.claim_due(target, now, limit, LEASE).await.unwrap()
}

/// What is scheduled on `target`, due or not, without claiming it.
async fn upcoming(s: &Store, target: &str) -> Vec<(u64, String)> {
    s.queue.upcoming(target, 10_000).await.unwrap()
}

async fn marks(s: &Store) -> Vec<ToRoute> {
    s.routing.to_route_after(None, 10_000).await.unwrap()
}

/// Accepts an event and routes it to one delivery on target `t`, due at
/// 1 000 ms (long past).
async fn route_one(s: &Store) -> Delivery {
    let e = event("gh", "{}");
    accept(s, &e).await;
    let d = delivery(&e, "t", None, 1_000);
    let o = outcome(EventStatus::Routed, std::slice::from_ref(&d));
    assert_eq!(
        s.routing
            .record_outcome(&e.id, &o, std::slice::from_ref(&d), 1_000, vec![])
            .await
            .unwrap(),
        Committed::Done
    );
    d
}

// ---------------------------------------------------------------------------
// Cases.

/// What an attempt reads when it has nothing in memory: the delivery (its
/// own body loaded) and its event (body included), in one call.
async fn an_attempt_reads_its_delivery_and_event_together(h: &dyn Harness) {
    let s = h.open().await;
    let e = event("gh", r#"{"n":1}"#);
    accept(&s, &e).await;
    let plain = delivery(&e, "t", None, 1_000);
    let own = delivery(&e, "u", Some("changed"), 1_000);
    let both = [plain.clone(), own.clone()];
    assert_eq!(
        s.routing
            .record_outcome(
                &e.id,
                &outcome(EventStatus::Routed, &both),
                &both,
                1_000,
                vec![]
            )
            .await
            .unwrap(),
        Committed::Done
    );
    let (d, ev) = s
        .queue
        .delivery_and_event(&plain.id)
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(d.id, plain.id);
    assert_eq!(d.body, None);
    let ev = ev.expect("its event");
    assert_eq!(ev.id, e.id);
    assert_eq!(ev.body, e.body);
    let (d, ev) = s
        .queue
        .delivery_and_event(&own.id)
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(d.body.as_deref(), Some(&b"changed"[..]));
    assert_eq!(ev.expect("its event").body, e.body);
    assert!(
        s.queue
            .delivery_and_event("msg_none")
            .await
            .unwrap()
            .is_none()
    );
}

async fn accepted_events_are_marked_and_survive_a_reopen(h: &dyn Harness) {
    let s = h.open().await;
    let mut body = vec![0u8, 159, 146, 150, 255];
    body.extend_from_slice(&[7u8; 100_000]);
    let mut e = event("s", "");
    e.body = body.clone();
    accept(&s, &e).await;
    let got = s.routing.event(&e.id).await.unwrap().unwrap();
    assert_eq!(got, e, "the event reads back exactly, binary body included");
    assert_eq!(
        marks(&s).await,
        vec![ToRoute {
            id: e.id.to_string(),
            parked: false
        }]
    );
    let s = h.reopen(s).await;
    assert_eq!(s.records.event(&e.id).await.unwrap().unwrap().body, body);
    assert_eq!(marks(&s).await.len(), 1);
    assert!(s.records.event("evt_none").await.unwrap().is_none());
}

/// An event that arrived with a Content-Encoding keeps the bytes as
/// received beside the decoded body (both survive a reopen, big and small,
/// through the grouped and the single-event paths); the listing's size is
/// the decoded body's; an unencoded one reads back without a received body.
async fn an_encoded_event_keeps_both_bodies(h: &dyn Harness) {
    let s = h.open().await;
    let mut small = event("s", r#"{"decoded":true}"#);
    small.content_encoding = Some("gzip".into());
    small.received_body = Some(vec![0x1f, 0x8b, 8, 0, 1, 2, 3]);
    let mut big = event("s", &"d".repeat(400_000));
    big.content_encoding = Some("br, gzip".into());
    big.received_body = Some(vec![9u8; 300_000]);
    let plain = event("s", "as is");
    for e in [&small, &big, &plain] {
        accept(&s, e).await;
        assert_eq!(&s.routing.event(&e.id).await.unwrap().unwrap(), e);
    }
    let s = h.reopen(s).await;
    for e in [&small, &big, &plain] {
        assert_eq!(&s.records.event(&e.id).await.unwrap().unwrap(), e);
    }
    let listed = s
        .records
        .list_events(&EventQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let size = |id: &str| {
        listed
            .items
            .iter()
            .find(|i| i.id.as_str() == id)
            .unwrap()
            .size
    };
    assert_eq!(size(&small.id), small.body.len());
    assert_eq!(size(&big.id), 400_000);
    assert_eq!(size(&plain.id), 5);
}

async fn idempotency_keys_deduplicate_per_source_until_they_expire(h: &dyn Harness) {
    let s = h.open().await;
    let now = now_ms();
    let key = |k: &str, ttl: u64| {
        Some(Dedup {
            key: k.into(),
            expires_at: now + ttl,
        })
    };
    let a = event("gh", "{}");
    assert_eq!(
        s.events.accept(&a, key("k1", 60_000)).await.unwrap(),
        Accepted::New
    );
    let b = event("gh", "{}");
    assert_eq!(
        s.events.accept(&b, key("k1", 60_000)).await.unwrap(),
        Accepted::Duplicate(a.id.to_string())
    );
    assert!(
        s.records.event(&b.id).await.unwrap().is_none(),
        "a duplicate is not stored"
    );
    // The same key from another source is another key.
    let c = event("stripe", "{}");
    assert_eq!(
        s.events.accept(&c, key("k1", 60_000)).await.unwrap(),
        Accepted::New
    );
    // An expired key deduplicates nothing, and is swept.
    let d = event("gh", "{}");
    assert_eq!(
        s.events.accept(&d, key("old", 0)).await.unwrap(),
        Accepted::New
    );
    let e = event("gh", "{}");
    assert_eq!(
        s.events.accept(&e, key("old", 60_000)).await.unwrap(),
        Accepted::New
    );
    assert_eq!(
        s.upkeep
            .sweep_idempotency(now + 120_000, 100)
            .await
            .unwrap(),
        3
    );
    let s = h.reopen(s).await;
    assert_eq!(marks(&s).await.len(), 4);
}

async fn concurrent_duplicates_store_exactly_one_event(h: &dyn Harness) {
    let s = h.open().await;
    let expires_at = now_ms() + 60_000;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let e = event("gh", "{}");
            let got = s
                .events
                .accept(
                    &e,
                    Some(Dedup {
                        key: "delivery-1".into(),
                        expires_at,
                    }),
                )
                .await
                .unwrap();
            (e.id, got)
        }));
    }
    let mut stored = Vec::new();
    let mut originals = BTreeSet::new();
    for t in tasks {
        match t.await.unwrap() {
            (id, Accepted::New) => stored.push(id),
            (_, Accepted::Duplicate(original)) => {
                originals.insert(original);
            }
        }
    }
    assert_eq!(
        stored.len(),
        1,
        "exactly one of 50 concurrent duplicates is stored"
    );
    assert!(originals.iter().all(|o| *o == *stored[0]), "{originals:?}");
    assert_eq!(marks(&s).await.len(), 1);
}

async fn an_outcome_its_deliveries_and_the_mark_change_together(h: &dyn Harness) {
    let s = h.open().await;
    let e = event("s", r#"{"n":1}"#);
    accept(&s, &e).await;
    let due = now_ms();
    let ds = vec![
        delivery(&e, "a", None, due),
        delivery(&e, "b", Some("reshaped"), due),
    ];
    let o = outcome(EventStatus::Routed, &ds);
    assert_eq!(
        s.routing
            .record_outcome(&e.id, &o, &ds, due, vec![])
            .await
            .unwrap(),
        Committed::Done
    );
    let s = h.reopen(s).await;
    assert!(marks(&s).await.is_empty(), "the mark went with the outcome");
    assert_eq!(s.records.outcome(&e.id).await.unwrap().unwrap(), o);
    let page = s
        .records
        .deliveries_of_event(&e.id, None, 10)
        .await
        .unwrap();
    let mut got: Vec<Delivery> = page.items;
    got.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(got.len(), 2);
    // Own bodies read back; the passthrough has none (it sends the event's).
    let b = s.queue.delivery(&ds[1].id).await.unwrap().unwrap();
    assert_eq!(b.body.as_deref(), Some(&b"reshaped"[..]));
    assert_eq!(
        s.queue.delivery(&ds[0].id).await.unwrap().unwrap().body,
        None
    );
    assert_eq!(upcoming(&s, "a").await, vec![(due, ds[0].id.to_string())]);
    assert_eq!(upcoming(&s, "b").await, vec![(due, ds[1].id.to_string())]);
    assert_eq!(
        claim(&s, "a", due, 10).await,
        vec![(due, ds[0].id.to_string())]
    );
    assert_eq!(
        s.queue.scheduled_per_target().await.unwrap(),
        BTreeMap::from([("a".to_string(), 1), ("b".to_string(), 1)])
    );
}

/// Two routings of one event racing to commit (a refill pass and
/// ingestion's own hand-off can both pick up an event): one outcome is
/// recorded, the other is answered `Fenced` and writes nothing, so no
/// delivery is created twice. With and without plugin KV writes.
async fn an_event_routed_twice_at_once_is_recorded_once(h: &dyn Harness) {
    let s = h.open().await;
    for with_kv in [false, true] {
        let e = event("s", r#"{"n":1}"#);
        accept(&s, &e).await;
        let due = now_ms();
        let mut runs = Vec::new();
        for _ in 0..2 {
            let ds = vec![delivery(&e, "a", None, due)];
            let o = outcome(EventStatus::Routed, &ds);
            let kv = if with_kv {
                vec![txn("p", &[], &[("k", Some(&b"v"[..]))])]
            } else {
                vec![]
            };
            let routing = s.routing.clone();
            let id = e.id.clone();
            runs.push(tokio::spawn(async move {
                routing.record_outcome(&id, &o, &ds, due, kv).await.unwrap()
            }));
        }
        let mut answers = Vec::new();
        for r in runs {
            answers.push(r.await.unwrap());
        }
        answers.sort_by_key(|a| format!("{a:?}"));
        assert_eq!(
            answers,
            [Committed::Done, Committed::Fenced],
            "kv: {with_kv}"
        );
        let page = s
            .records
            .deliveries_of_event(&e.id, None, 10)
            .await
            .unwrap();
        assert_eq!(page.items.len(), 1, "kv: {with_kv}");
    }
    assert_eq!(
        s.queue.scheduled_per_target().await.unwrap(),
        BTreeMap::from([("a".to_string(), 2)])
    );
}

async fn the_schedule_is_per_target_in_due_order(h: &dyn Harness) {
    let s = h.open().await;
    let e = event("s", "{}");
    accept(&s, &e).await;
    let base = now_ms();
    let ds: Vec<Delivery> = ["t", "t", "u", "t"]
        .iter()
        .map(|target| delivery(&e, target, None, base))
        .collect();
    let o = outcome(EventStatus::Routed, &ds);
    s.routing
        .record_outcome(&e.id, &o, &ds, base, vec![])
        .await
        .unwrap();
    assert!(
        claim(&s, "t", base - 1, 10).await.is_empty(),
        "nothing due yet"
    );
    assert_eq!(claim(&s, "t", base, 2).await.len(), 2, "limit");
    let t = upcoming(&s, "t").await;
    assert_eq!(t.len(), 3, "{t:?}");
    assert!(t.iter().all(|(at, _)| *at == base));
    let ids: Vec<&String> = t.iter().map(|(_, id)| id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "same due time: in id order");
    assert_eq!(upcoming(&s, "u").await.len(), 1);
    // Moving one to the future reorders it behind the others.
    let mut d = s.queue.delivery(&t[0].1).await.unwrap().unwrap();
    d.attempts = 1;
    d.next_attempt_at = Some(base + 5000);
    assert_eq!(
        s.queue
            .record_attempt(&d, &attempt(1, 503), base, Some(base + 5000))
            .await
            .unwrap(),
        Recorded::Done
    );
    let later = upcoming(&s, "t").await;
    assert_eq!(later.last().unwrap(), &(base + 5000, d.id.to_string()));
}

async fn attempts_move_deliveries_and_keep_the_dead_letter_counts(h: &dyn Harness) {
    let s = h.open().await;
    let e = event("s", "{}");
    accept(&s, &e).await;
    let due = now_ms();
    let ds = vec![delivery(&e, "t", None, due), delivery(&e, "t", None, due)];
    s.routing
        .record_outcome(&e.id, &outcome(EventStatus::Routed, &ds), &ds, due, vec![])
        .await
        .unwrap();
    assert_eq!(claim(&s, "t", due, 10).await.len(), 2);
    // First: delivered. Second: dead.
    let mut ok = ds[0].clone();
    ok.attempts = 1;
    ok.status = DeliveryStatus::Delivered;
    ok.next_attempt_at = None;
    s.queue
        .record_attempt(&ok, &attempt(1, 200), due, None)
        .await
        .unwrap();
    let mut dead = ds[1].clone();
    dead.attempts = 1;
    dead.status = DeliveryStatus::Dead;
    dead.next_attempt_at = None;
    dead.last_error = Some("HTTP 500".into());
    let failed = attempt(1, 500);
    s.queue
        .record_attempt(&dead, &failed, due, None)
        .await
        .unwrap();
    let s = h.reopen(s).await;
    assert!(upcoming(&s, "t").await.is_empty());
    assert_eq!(
        s.queue.dead_per_target().await.unwrap(),
        BTreeMap::from([("t".to_string(), 1)])
    );
    assert_eq!(s.records.attempts(&dead.id).await.unwrap(), vec![failed]);
    let dead_list = s
        .records
        .list_deliveries(&DeliveryQuery {
            status: Some(DeliveryStatus::Dead),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(dead_list.items.len(), 1);
    // An operator's retry: back on the schedule, off the dead letters.
    let now = now_ms();
    let Rescheduled::Done(before) = s.queue.reschedule(&dead.id, now).await.unwrap() else {
        panic!("not rescheduled");
    };
    assert_eq!(before.status, DeliveryStatus::Dead);
    assert!(s.queue.dead_per_target().await.unwrap().is_empty());
    assert_eq!(upcoming(&s, "t").await, vec![(now, dead.id.to_string())]);
    assert_eq!(
        s.queue.delivery(&dead.id).await.unwrap().unwrap().status,
        DeliveryStatus::Scheduled
    );
    assert_eq!(
        s.queue.reschedule("msg_none", now).await.unwrap(),
        Rescheduled::Missing
    );
}

async fn replays_and_notes_follow_the_mark(h: &dyn Harness) {
    let s = h.open().await;
    assert_eq!(
        s.routing.mark_to_route("evt_none").await.unwrap(),
        Mark::NoEvent
    );
    let e = event("s", "{}");
    accept(&s, &e).await;
    assert_eq!(
        s.routing.mark_to_route(&e.id).await.unwrap(),
        Mark::AlreadyPending
    );
    s.routing
        .set_route_note(&e.id, "waiting for plugin \"p\"")
        .await
        .unwrap();
    assert_eq!(
        marks(&s).await,
        vec![ToRoute {
            id: e.id.to_string(),
            parked: true
        }]
    );
    assert_eq!(
        s.records.route_note(&e.id).await.unwrap().as_deref(),
        Some("waiting for plugin \"p\"")
    );
    s.routing
        .record_outcome(
            &e.id,
            &outcome(EventStatus::Dropped, &[]),
            &[],
            now_ms(),
            vec![],
        )
        .await
        .unwrap();
    // A note for a finished event is not written.
    s.routing.set_route_note(&e.id, "late").await.unwrap();
    assert_eq!(s.records.route_note(&e.id).await.unwrap(), None);
    assert_eq!(s.routing.mark_to_route(&e.id).await.unwrap(), Mark::Marked);
    let s = h.reopen(s).await;
    assert_eq!(
        marks(&s).await.len(),
        1,
        "a replay's mark survives a reopen"
    );
    s.routing.drop_route_mark(&e.id).await.unwrap();
    assert!(marks(&s).await.is_empty());
    // Paging through marks.
    let mut ids = Vec::new();
    for _ in 0..5 {
        let e = event("s", "{}");
        accept(&s, &e).await;
        ids.push(e.id.to_string());
    }
    let first = s.routing.to_route_after(None, 2).await.unwrap();
    let rest = s
        .routing
        .to_route_after(Some(&first[1].id), 10)
        .await
        .unwrap();
    let all: Vec<String> = first.iter().chain(&rest).map(|m| m.id.clone()).collect();
    assert_eq!(all, ids, "oldest first, no gaps");
}

async fn kv_commits_check_their_reads(h: &dyn Harness) {
    let s = h.open().await;
    let (e1, e2) = (event("s", "{}"), event("s", "{}"));
    accept(&s, &e1).await;
    accept(&s, &e2).await;
    let o = outcome(EventStatus::Dropped, &[]);
    let first = txn("p", &[("n", None)], &[("n", Some(b"1"))]);
    assert_eq!(
        s.routing
            .record_outcome(&e1.id, &o, &[], 1, vec![first])
            .await
            .unwrap(),
        Committed::Done
    );
    assert_eq!(s.kv.kv_get("p", "n").unwrap(), Some(b"1".to_vec()));
    let stale = txn("p", &[("n", None)], &[("n", Some(b"1"))]);
    assert_eq!(
        s.routing
            .record_outcome(&e2.id, &o, &[], 1, vec![stale])
            .await
            .unwrap(),
        Committed::Refused(KvRefused::Conflict {
            plugin: "p".into(),
            key: "n".into()
        })
    );
    assert!(
        s.records.outcome(&e2.id).await.unwrap().is_none(),
        "refused: nothing written"
    );
    assert_eq!(marks(&s).await.len(), 1, "refused: still to be routed");
    // A plugin's keys are its own.
    assert_eq!(s.kv.kv_get("q", "n").unwrap(), None);
    let s = h.reopen(s).await;
    assert_eq!(s.kv.kv_get("p", "n").unwrap(), Some(b"1".to_vec()));
}

/// Many tasks incrementing one counter with read, check, commit, retry:
/// the numbers handed out are exactly 1..N.
async fn concurrent_kv_read_modify_writes_are_serializable(h: &dyn Harness) {
    let s = h.open().await;
    const TASKS: usize = 8;
    const EACH: usize = 25;
    let mut handles = Vec::new();
    for _ in 0..TASKS {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..EACH {
                let e = event("s", "{}");
                accept(&s, &e).await;
                loop {
                    let kv = s.kv.clone();
                    let read = tokio::task::spawn_blocking(move || kv.kv_get("p", "count"))
                        .await
                        .unwrap()
                        .unwrap();
                    let n = read
                        .as_deref()
                        .map(|v| std::str::from_utf8(v).unwrap().parse::<u64>().unwrap())
                        .unwrap_or(0)
                        + 1;
                    let next = n.to_string();
                    let t = txn(
                        "p",
                        &[("count", read.as_deref())],
                        &[("count", Some(next.as_bytes()))],
                    );
                    let o = outcome(EventStatus::Dropped, &[]);
                    match s
                        .routing
                        .record_outcome(&e.id, &o, &[], 1, vec![t])
                        .await
                        .unwrap()
                    {
                        Committed::Done => {
                            got.push(n);
                            break;
                        }
                        Committed::Refused(_) => continue,
                        Committed::Fenced => panic!("one process: nothing fences it"),
                    }
                }
            }
            got
        }));
    }
    let mut all: Vec<u64> = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    all.sort_unstable();
    let n = (TASKS * EACH) as u64;
    assert_eq!(all, (1..=n).collect::<Vec<_>>());
    assert_eq!(
        s.kv.kv_get("p", "count").unwrap(),
        Some(n.to_string().into_bytes())
    );
}

async fn kv_keys_are_bounded_listed_and_deletable(h: &dyn Harness) {
    let s = h.open().await;
    let o = outcome(EventStatus::Dropped, &[]);
    let e = event("s", "{}");
    accept(&s, &e).await;
    let mut t = txn("p", &[], &[]);
    for i in 0..5 {
        t.txn
            .writes
            .insert(format!("user:{i}"), Some(vec![b'x'; i + 1]));
    }
    t.txn.writes.insert("other".into(), Some(b"o".to_vec()));
    assert_eq!(
        s.routing
            .record_outcome(&e.id, &o, &[], 1, vec![t])
            .await
            .unwrap(),
        Committed::Done
    );
    let p1 = s.kv_admin.kv_list("p", "user:", None, 3).await.unwrap();
    assert_eq!(
        p1.items,
        vec![
            ("user:0".into(), 1),
            ("user:1".into(), 2),
            ("user:2".into(), 3)
        ]
    );
    let p2 = s
        .kv_admin
        .kv_list("p", "user:", p1.next_cursor.as_deref(), 3)
        .await
        .unwrap();
    assert_eq!((p2.items.len(), p2.next_cursor), (2, None));
    assert_eq!(
        s.kv_admin
            .kv_list("p", "", None, 100)
            .await
            .unwrap()
            .items
            .len(),
        6
    );
    assert_eq!(
        s.kv_admin.kv_value("p", "other").await.unwrap(),
        Some(b"o".to_vec())
    );
    assert!(s.kv_admin.kv_delete("p", "other").await.unwrap());
    assert!(!s.kv_admin.kv_delete("p", "other").await.unwrap());
    assert_eq!(s.kv.kv_get("p", "other").unwrap(), None);
    // The key limit counts what the plugin holds (5 now).
    let e = event("s", "{}");
    accept(&s, &e).await;
    let mut over = txn("p", &[], &[("new", Some(b"1"))]);
    over.max_keys = 5;
    assert_eq!(
        s.routing
            .record_outcome(&e.id, &o, &[], 1, vec![over])
            .await
            .unwrap(),
        Committed::Refused(KvRefused::Full {
            plugin: "p".into(),
            limit: 5
        })
    );
    let mut swap = txn("p", &[], &[("new", Some(b"1")), ("user:0", None)]);
    swap.max_keys = 5;
    assert_eq!(
        s.routing
            .record_outcome(&e.id, &o, &[], 1, vec![swap])
            .await
            .unwrap(),
        Committed::Done
    );
}

async fn listings_page_newest_first_without_gaps(h: &dyn Harness) {
    let s = h.open().await;
    let mut ids = Vec::new();
    for i in 0..25 {
        let mut e = event(if i % 5 == 0 { "b" } else { "a" }, "{}");
        e.version = (i % 3 == 0).then(|| "2024-06-20".to_string());
        accept(&s, &e).await;
        if i % 2 == 0 {
            s.routing
                .record_outcome(&e.id, &outcome(EventStatus::Dropped, &[]), &[], 1, vec![])
                .await
                .unwrap();
        }
        ids.push(e.id);
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = s
            .records
            .list_events(&EventQuery {
                limit: 7,
                cursor,
                ..Default::default()
            })
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|e| e.id.clone()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);
    let only_b = s
        .records
        .list_events(&EventQuery {
            source: Some("b".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(only_b.items.len(), 5);
    // The version is stored with the event, listed, and filtered on.
    let versioned = s
        .records
        .list_events(&EventQuery {
            version: Some("2024-06-20".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(versioned.items.len(), 9);
    assert!(
        versioned
            .items
            .iter()
            .all(|e| e.version.as_deref() == Some("2024-06-20"))
    );
    let stored = s.records.event(&ids[0]).await.unwrap().unwrap();
    assert_eq!(stored.version.as_deref(), Some("2024-06-20"));
    let other = s
        .records
        .list_events(&EventQuery {
            version: Some("2024".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(other.items.is_empty());
    let pending = s
        .records
        .list_events(&EventQuery {
            status: Some(EventState::Pending),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(pending.items.len(), 12);
    assert!(
        pending
            .items
            .iter()
            .all(|e| e.status == EventState::Pending)
    );
    let since = ids[20].time().unwrap();
    let recent = s
        .records
        .list_events(&EventQuery {
            since: Some(since),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(recent.items.len() >= 5 && recent.items.iter().all(|e| e.received_at >= since));
}

async fn retention_removes_only_what_is_finished(h: &dyn Harness) {
    let s = h.open().await;
    // Events from the past: ids carry their time, so build them by hand.
    let old = |at: u64| {
        let mut e = event("s", "{}");
        e.id = lowest_at("evt", at).into();
        e.received_at = at;
        e
    };
    let (done, waiting, scheduled) = (old(1_000), old(2_000), old(3_000));
    for e in [&done, &waiting, &scheduled] {
        accept(&s, e).await;
    }
    let dead = delivery(&done, "t", Some("own body"), 1_000);
    s.routing
        .record_outcome(
            &done.id,
            &outcome(EventStatus::Routed, std::slice::from_ref(&dead)),
            std::slice::from_ref(&dead),
            1_000,
            vec![],
        )
        .await
        .unwrap();
    let mut d = dead.clone();
    d.status = DeliveryStatus::Dead;
    d.attempts = 1;
    d.next_attempt_at = None;
    assert_eq!(claim(&s, "t", 1_000, 10).await.len(), 1);
    let recorded = s
        .queue
        .record_attempt(&d, &attempt(1, 500), 1_000, None)
        .await
        .unwrap();
    assert_eq!(recorded, Recorded::Done);
    let pending = delivery(&scheduled, "t", None, 1_000);
    s.routing
        .record_outcome(
            &scheduled.id,
            &outcome(EventStatus::Routed, std::slice::from_ref(&pending)),
            std::slice::from_ref(&pending),
            1_000,
            vec![],
        )
        .await
        .unwrap();
    // `waiting` is still to be routed; `scheduled` has a delivery waiting.
    let cutoff = 10_000;
    let mut swept = s.upkeep.sweep_before(cutoff, 100, None).await.unwrap();
    while let Some(next) = swept.next.clone() {
        let more = s
            .upkeep
            .sweep_before(cutoff, 100, Some(&next))
            .await
            .unwrap();
        swept.events += more.events;
        swept.next = more.next;
    }
    assert_eq!(swept.events, 1, "{swept:?}");
    assert_eq!(
        (swept.deliveries, swept.attempts),
        (1, 1),
        "the finished event's delivery and its attempt: {swept:?}"
    );
    assert_eq!(swept.dead, BTreeMap::from([("t".to_string(), 1)]));
    assert!(s.records.event(&done.id).await.unwrap().is_none());
    assert!(s.records.delivery(&dead.id).await.unwrap().is_none());
    assert!(s.records.attempts(&dead.id).await.unwrap().is_empty());
    assert!(s.records.event(&waiting.id).await.unwrap().is_some());
    assert!(s.records.event(&scheduled.id).await.unwrap().is_some());
    assert!(s.queue.dead_per_target().await.unwrap().is_empty());
    s.upkeep.collect_garbage().await.unwrap();
    s.upkeep.flush().await.unwrap();
    let s = h.reopen(s).await;
    assert!(s.records.event(&done.id).await.unwrap().is_none());
    assert_eq!(upcoming(&s, "t").await.len(), 1);
}

async fn target_state_round_trips(h: &dyn Harness) {
    let s = h.open().await;
    assert_eq!(s.targets.target_control("t").await.unwrap(), None);
    s.targets
        .set_target_control("t", br#"{"paused":true}"#)
        .await
        .unwrap();
    let s = h.reopen(s).await;
    assert_eq!(
        s.targets.target_control("t").await.unwrap(),
        Some(br#"{"paused":true}"#.to_vec())
    );
}

/// The process that owns a target gets the deliveries it routes for it
/// straight away (a shared backend inserts them claimed by it): another
/// process cannot take them while that holds, gets them at once when the
/// owner lets the target go, and the owner claims again one it left
/// unstarted past its lease.
async fn the_owners_new_deliveries_are_its_own_until_it_lets_go(h: &dyn Harness) {
    let a = h.open().await;
    let short = std::time::Duration::from_millis(400);
    let t = ["t".to_string()];
    assert_eq!(a.targets.own_targets(&t, &[], short).await.unwrap().mine, t);
    let first = route_one(&a).await;
    let ids = |v: Vec<(u64, String)>| v.into_iter().map(|(_, id)| id).collect::<Vec<_>>();
    let mine = ids(a.queue.claim_due("t", now_ms(), 10, LEASE).await.unwrap());
    assert_eq!(mine, [first.id.to_string()]);

    // Unstarted past the ownership lease it was handed over under: claimed
    // again (and now under the claim's own lease).
    let late = route_one(&a).await;
    tokio::time::sleep(short + std::time::Duration::from_millis(200)).await;
    assert_eq!(a.targets.own_targets(&t, &[], LEASE).await.unwrap().mine, t);
    let mine = ids(a.queue.claim_due("t", now_ms(), 10, LEASE).await.unwrap());
    assert_eq!(mine, [first.id.to_string(), late.id.to_string()]);

    let Some(b) = h.other_process().await else {
        return;
    };
    // While A owns the target, B takes nothing of it, even with A's claims
    // given back.
    let third = route_one(&a).await;
    assert!(
        b.targets
            .own_targets(&t, &[], LEASE)
            .await
            .unwrap()
            .mine
            .is_empty()
    );
    assert!(
        b.queue
            .claim_due("t", now_ms(), 10, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    for d in [&first, &late] {
        a.queue.unschedule("t", &d.id, 1_000).await.unwrap();
    }
    // A lets the target go: its unstarted deliveries are B's at once, not
    // after A's leases (60 s here) run out.
    assert!(
        a.targets
            .own_targets(&t, &t, LEASE)
            .await
            .unwrap()
            .mine
            .is_empty()
    );
    assert_eq!(b.targets.own_targets(&t, &[], LEASE).await.unwrap().mine, t);
    let mut theirs = ids(b.queue.claim_due("t", now_ms(), 10, LEASE).await.unwrap());
    theirs.sort();
    let mut all = [&first, &late, &third].map(|d| d.id.to_string());
    all.sort();
    assert_eq!(theirs, all);
}

/// Shared backends: another process can neither take what one holds nor
/// record over it once it has taken it over; an idempotency key holds
/// across processes.
async fn a_second_process_is_fenced_out(h: &dyn Harness) {
    let a = h.open().await;
    let Some(b) = h.other_process().await else {
        return;
    };
    let short = std::time::Duration::from_millis(500);
    let t = ["t".to_string()];

    // One owner per target: B gets nothing while A's lease holds.
    assert_eq!(a.targets.own_targets(&t, &[], LEASE).await.unwrap().mine, t);
    assert!(
        b.targets
            .own_targets(&t, &[], LEASE)
            .await
            .unwrap()
            .mine
            .is_empty()
    );

    // The event A accepted is A's to route: B neither sees nor records it.
    let e = event("gh", "{}");
    accept(&a, &e).await;
    assert!(b.routing.to_route_after(None, 10).await.unwrap().is_empty());
    let d = delivery(&e, "t", None, 1_000);
    let o = outcome(EventStatus::Routed, std::slice::from_ref(&d));
    assert_eq!(
        b.routing
            .record_outcome(&e.id, &o, std::slice::from_ref(&d), 1_000, vec![])
            .await
            .unwrap(),
        Committed::Fenced
    );
    assert_eq!(
        a.routing
            .record_outcome(&e.id, &o, std::slice::from_ref(&d), 1_000, vec![])
            .await
            .unwrap(),
        Committed::Done
    );

    // B cannot claim A's target's deliveries.
    assert!(
        b.queue
            .claim_due("t", now_ms(), 10, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    // A claims the delivery briefly, then stalls (a SIGSTOP) past both
    // leases: B takes the target and the delivery over.
    assert_eq!(
        a.queue
            .claim_due("t", now_ms(), 10, short)
            .await
            .unwrap()
            .len(),
        1
    );
    a.targets.own_targets(&t, &t, LEASE).await.unwrap(); // gives it up
    tokio::time::sleep(short + std::time::Duration::from_millis(300)).await;
    assert_eq!(b.targets.own_targets(&t, &[], LEASE).await.unwrap().mine, t);
    assert_eq!(
        b.queue
            .claim_due("t", now_ms(), 10, LEASE)
            .await
            .unwrap()
            .len(),
        1
    );
    let mut sent = d.clone();
    sent.status = DeliveryStatus::Delivered;
    sent.attempts = 1;
    sent.next_attempt_at = None;
    // A's late result is not recorded; B's is, once.
    assert_eq!(
        a.queue
            .record_attempt(&sent, &attempt(1, 200), 1_000, None)
            .await
            .unwrap(),
        Recorded::Fenced
    );
    assert_eq!(
        b.queue
            .record_attempt(&sent, &attempt(1, 200), 1_000, None)
            .await
            .unwrap(),
        Recorded::Done
    );
    assert_eq!(a.records.attempts(&d.id).await.unwrap().len(), 1);

    // The same key sent to both at once is stored once.
    let expires_at = now_ms() + 60_000;
    let (ea, eb) = (event("gh", "{}"), event("gh", "{}"));
    let key = || {
        Some(Dedup {
            key: "provider-delivery-7".into(),
            expires_at,
        })
    };
    let (ra, rb) = tokio::join!(a.events.accept(&ea, key()), b.events.accept(&eb, key()));
    let got = [ra.unwrap(), rb.unwrap()];
    assert_eq!(
        got.iter().filter(|g| **g == Accepted::New).count(),
        1,
        "{got:?}"
    );
}

/// Backends group concurrent writes (sled's writer thread, PostgreSQL's
/// batched transactions): many callers at once, some of whose writes are
/// refused, must each get the answer for their own write, and every row
/// must hold what its own caller wrote.
async fn concurrent_writes_each_get_their_own_answer(h: &dyn Harness) {
    use futures_util::future::join_all;
    let a = h.open().await;
    let b = h.other_process().await;
    const N: usize = 120;

    // Accepts, each with its own body.
    let events: Vec<Event> = (0..N)
        .map(|i| event("gh", &format!("{{\"n\":{i}}}")))
        .collect();
    for r in join_all(events.iter().map(|e| a.events.accept(e, None))).await {
        assert_eq!(r.unwrap(), Accepted::New);
    }
    let read = join_all(events.iter().map(|e| a.routing.event(&e.id))).await;
    for (e, r) in events.iter().zip(read) {
        assert_eq!(r.unwrap().expect("accepted").body, e.body);
    }

    // With a second process, events it accepted are its to route: A's
    // outcomes for them, sent in the same burst as A's own, are fenced.
    let theirs: Vec<Event> = (0..N / 4).map(|i| event("gh", &format!("[{i}]"))).collect();
    if let Some(b) = &b {
        for e in &theirs {
            accept(b, e).await;
        }
    }
    let deliveries: Vec<Delivery> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let own = (i % 2 == 0).then(|| format!("own body {i}"));
            delivery(e, "t", own.as_deref(), 1_000 + i as u64)
        })
        .collect();
    let foreign: Vec<Delivery> = theirs
        .iter()
        .map(|e| delivery(e, "t", None, 1_000))
        .collect();
    let outcomes = events
        .iter()
        .zip(&deliveries)
        .chain(theirs.iter().zip(&foreign).filter(|_| b.is_some()))
        .map(|(e, d)| {
            let o = outcome(EventStatus::Routed, std::slice::from_ref(d));
            let (a, d) = (&a, d.clone());
            async move {
                a.routing
                    .record_outcome(&e.id, &o, std::slice::from_ref(&d), d.created_at, vec![])
                    .await
                    .unwrap()
            }
        });
    let answers = join_all(outcomes).await;
    assert!(
        answers[..N].iter().all(|c| *c == Committed::Done),
        "{answers:?}"
    );
    assert!(
        answers[N..].iter().all(|c| *c == Committed::Fenced),
        "{answers:?}"
    );
    assert!(
        marks(&a).await.is_empty(),
        "every outcome of A's cleared its mark"
    );
    for d in &foreign {
        assert_eq!(
            a.records.delivery(&d.id).await.unwrap(),
            None,
            "fenced: not stored"
        );
    }
    let read = join_all(deliveries.iter().map(|d| a.queue.delivery(&d.id))).await;
    for (d, r) in deliveries.iter().zip(read) {
        let r = r.unwrap().expect("stored");
        assert_eq!((&r.id, &r.body), (&d.id, &d.body));
    }

    // Attempts: A holds the claims on the first half only. With a second
    // process, attempts on the rest are fenced in the same burst; the
    // embedded backend has no one else to fence, and records them all.
    let half = claim(&a, "t", u64::MAX, N / 2).await;
    assert_eq!(half.len(), N / 2);
    let claimed: BTreeSet<&str> = half.iter().map(|(_, id)| id.as_str()).collect();
    let attempts = deliveries.iter().enumerate().map(|(i, d)| {
        let mut after = d.clone();
        after.attempts = 1;
        let (code, next) = if i % 3 == 0 {
            (500, Some(5_000 + i as u64))
        } else {
            (200, None)
        };
        after.status = if next.is_some() {
            DeliveryStatus::Scheduled
        } else {
            DeliveryStatus::Delivered
        };
        after.next_attempt_at = next;
        let a = &a;
        async move {
            let r = a
                .queue
                .record_attempt(&after, &attempt(1, code), d.created_at, next)
                .await
                .unwrap();
            (after, r)
        }
    });
    for (after, r) in join_all(attempts).await {
        let mine = claimed.contains(after.id.as_str());
        let expected = if mine || b.is_none() {
            Recorded::Done
        } else {
            Recorded::Fenced
        };
        assert_eq!(r, expected, "{}", after.id);
        let stored = a.records.delivery(&after.id).await.unwrap().unwrap();
        let tries = a.records.attempts(&after.id).await.unwrap();
        if expected == Recorded::Done {
            assert_eq!(stored.status, after.status, "{}", after.id);
            assert_eq!(stored.next_attempt_at, after.next_attempt_at);
            assert_eq!(tries.len(), 1);
        } else {
            assert_eq!(stored.status, DeliveryStatus::Scheduled);
            assert!(tries.is_empty(), "a fenced attempt is not recorded");
        }
    }
}

/// A database an earlier hookyard left (schema version 2, with events, a
/// delivery, an attempt and plugin state in it) opens with this one: the
/// later migrations rewrite those columns in place, and everything stored
/// before reads back, including what is still to be routed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_at_schema_version_2_upgrades_with_its_rows() {
    use tokio_postgres::types::Json;
    let url = support::postgres::server().database();
    let (mut client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    hookyard::store::pg::schema::migrate_to(&mut client, 2)
        .await
        .unwrap();
    let routed = event("Gh", "{\"routed\":true}");
    let waiting = event("gh", "{\"routed\":false}");
    let mut d = delivery(&routed, "Sink", None, 1_000);
    d.status = DeliveryStatus::Delivered;
    d.attempts = 1;
    d.next_attempt_at = None;
    let tried = attempt(1, 200);
    for (e, to_route) in [(&routed, false), (&waiting, true)] {
        client
            .execute(
                "INSERT INTO events (id, source, received_at, meta, body, to_route)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &e.id.as_str(),
                    &e.source,
                    &(e.received_at as i64),
                    &Json(e),
                    &e.body,
                    &to_route,
                ],
            )
            .await
            .unwrap();
    }
    client
        .execute(
            "INSERT INTO deliveries (id, event_id, target, meta, status, created_at)
             VALUES ($1, $2, $3, $4, 'delivered', $5)",
            &[
                &d.id.as_str(),
                &d.event_id.as_str(),
                &d.target,
                &Json(&d),
                &(d.created_at as i64),
            ],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO attempts (delivery_id, n, data) VALUES ($1, 1, $2)",
            &[&d.id.as_str(), &Json(&tried)],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO plugin_kv (plugin, key, value) VALUES ('counter', 'Total', '\\x3432')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        foreign_keys(&client).await,
        2,
        "schema 2 has deliveries -> events and attempts -> deliveries"
    );
    drop(client);
    let _ = conn.await;

    let s = hookyard::store::pg::PgStore::open(&url, "node-a")
        .await
        .unwrap()
        .into_store();
    assert_eq!(s.records.event(&routed.id).await.unwrap().unwrap(), routed);
    assert_eq!(s.records.delivery(&d.id).await.unwrap().unwrap(), d);
    assert_eq!(s.records.attempts(&d.id).await.unwrap(), vec![tried]);
    assert_eq!(
        s.kv.kv_get("counter", "Total").unwrap(),
        Some(b"42".to_vec())
    );
    assert_eq!(
        marks(&s).await,
        vec![ToRoute {
            id: waiting.id.to_string(),
            parked: false
        }],
        "the event still to be routed is found after the upgrade"
    );
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    assert_eq!(
        foreign_keys(&client).await,
        0,
        "migration 4 drops both foreign keys"
    );
    drop(client);
    let _ = conn.await;
}

/// Foreign keys on the tables of deliveries and attempts.
async fn foreign_keys(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_constraint
             WHERE contype = 'f' AND conrelid IN ('deliveries'::regclass, 'attempts'::regclass)",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// PostgreSQL: an outcome stored on a node that does not own its target
/// wakes the owner through LISTEN/NOTIFY (sent once the outcome has
/// committed), and the fenced outcome of an event another node holds
/// wakes nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_an_outcome_routed_elsewhere_wakes_the_targets_owner() {
    use hookyard::store::pg::{PgStore, Wake};
    let url = support::postgres::server().database();
    let owner = PgStore::open(&url, "node-a").await.unwrap();
    let router = PgStore::open(&url, "node-b").await.unwrap().into_store();
    let mut wakes = owner.wakes();
    let owner = owner.into_store();
    let t = ["t".to_string()];
    assert_eq!(
        owner
            .targets
            .own_targets(&t, &[], LEASE)
            .await
            .unwrap()
            .mine,
        t
    );
    let due = |wakes: &mut tokio::sync::broadcast::Receiver<Wake>| {
        let mut seen = Vec::new();
        while let Ok(w) = wakes.try_recv() {
            if let Wake::Due(targets) = w {
                seen.extend(targets);
            }
        }
        seen
    };
    // Whatever the owner's own claim sent is not this test's.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    due(&mut wakes);

    let d = route_one(&router).await;
    let woken = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            match wakes.recv().await.unwrap() {
                Wake::Due(targets) => break targets,
                _ => continue,
            }
        }
    })
    .await
    .expect("the owner was woken within 5 s");
    assert_eq!(woken, ["t"]);
    let mine = owner
        .queue
        .claim_due("t", now_ms(), 10, LEASE)
        .await
        .unwrap();
    assert_eq!(
        mine.into_iter().map(|(_, id)| id).collect::<Vec<_>>(),
        [d.id.to_string()]
    );

    // An event the owner accepted (and so holds for routing): the other
    // node's outcome for it is fenced, stores nothing and wakes nobody.
    let e = event("gh", "{}");
    accept(&owner, &e).await;
    let late = delivery(&e, "t", None, 1_000);
    let o = outcome(EventStatus::Routed, std::slice::from_ref(&late));
    assert_eq!(
        router
            .routing
            .record_outcome(&e.id, &o, std::slice::from_ref(&late), 1_000, vec![])
            .await
            .unwrap(),
        Committed::Fenced
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        due(&mut wakes).is_empty(),
        "a fenced outcome woke the owner"
    );
}
