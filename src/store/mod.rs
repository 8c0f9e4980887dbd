//! Durable state, and the only code that knows sled.
//!
//! Everything lives in one sled tree with a one-byte prefix per record kind,
//! so every multi-record change (an event plus its "to route" mark; an
//! outcome plus its deliveries plus their schedule entries) is one atomic
//! `apply_batch`: a crash sees all of it or none of it.
//!
//! | prefix | key                         | value                      |
//! |--------|-----------------------------|----------------------------|
//! | `e`    | event id                    | meta JSON + body           |
//! | `r`    | event id                    | empty ("to route" mark)    |
//! | `o`    | event id                    | outcome JSON               |
//! | `d`    | delivery id                 | meta JSON + optional body  |
//! | `x`    | event id `/` delivery id    | empty (event's deliveries) |
//! | `q`    | target `\0` due ms (BE u64) delivery | empty (per-target schedule) |
//! | `a`    | delivery id `/` n (BE u32)  | attempt JSON               |
//! | `z`    | delivery id                 | target (dead-letter index) |
//! | `t`    | target                      | target control JSON        |
//! | `k`    | plugin `\0` key             | plugin KV value            |
//! | `i`    | source `\0` idempotency key | expires ms (BE) + event id |
//!
//! The schedule is ordered by target first, so each target's dispatcher
//! reads only its own due deliveries: a slow or blocked target with a large
//! backlog costs the others nothing. (Stores written before the per-target
//! schedule used prefix `s` without the target; [`SledStore::open`] moves
//! those entries over.)

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use serde::{Serialize, de::DeserializeOwned};

use crate::records::{Attempt, Delivery, DeliveryStatus, Event, Outcome};

mod listing;
mod retention;
mod writer;

pub use listing::{DeliveryQuery, EventQuery, EventSummary, Page, collect_ids};
pub use retention::Swept;
pub use writer::Written;
use writer::{GroupWriter, Writes};

const EVENT: u8 = b'e';
const TO_ROUTE: u8 = b'r';
const OUTCOME: u8 = b'o';
const DELIVERY: u8 = b'd';
const EVENT_DELIVERY: u8 = b'x';
const LEGACY_SCHEDULE: u8 = b's';
const SCHEDULE: u8 = b'q';
const ATTEMPT: u8 = b'a';
const DEAD: u8 = b'z';
const TARGET: u8 = b't';
const KV: u8 = b'k';
const IDEMPOTENCY: u8 = b'i';

/// The storage operations hookyard needs. A trait so a replicated backend can
/// replace sled without touching ingestion, routing or delivery.
pub trait Storage: Send + Sync + 'static {
    /// Stores a new event and marks it "to route", atomically. The hot-path
    /// writes answer with a [`Written`] to await: they are grouped with
    /// other callers' writes into one store batch.
    fn insert_event(&self, event: &Event) -> Written;
    /// Stores a new event unless `dedup_key` (source-scoped) was seen and
    /// has not expired; then answers with the original event's id
    /// ([`Written::outcome`]). The check and the write are one atomic step,
    /// so concurrent duplicates store exactly one event.
    fn insert_event_once(&self, event: &Event, dedup_key: &str, expires_at: u64) -> Written;
    /// Removes up to `limit` expired idempotency keys; returns how many.
    fn sweep_idempotency(&self, now_ms: u64, limit: usize) -> Result<usize>;
    /// Makes every write so far durable (blocking: one fsync).
    fn flush(&self) -> Result<()>;
    fn event(&self, id: &str) -> Result<Option<Event>>;
    /// How many events are stored.
    fn event_count(&self) -> Result<usize>;
    /// Why an event that is still to be routed waits (empty: it does not).
    fn set_route_note(&self, event_id: &str, note: &str) -> Result<()>;
    /// The event's "to route" note, if it is still to be routed.
    fn route_note(&self, event_id: &str) -> Result<Option<String>>;
    /// Events accepted but not yet routed (crash recovery), oldest first.
    fn events_to_route(&self) -> Result<Vec<String>>;
    /// Records the routing outcome, creates the deliveries with their first
    /// attempt due at `due_ms`, and clears the "to route" mark, atomically.
    fn record_outcome(
        &self,
        outcome_for: &str,
        outcome: &Outcome,
        deliveries: &[Delivery],
        due_ms: u64,
    ) -> Written;
    fn outcome(&self, event_id: &str) -> Result<Option<Outcome>>;
    fn delivery(&self, id: &str) -> Result<Option<Delivery>>;
    fn deliveries_of_event(&self, event_id: &str) -> Result<Vec<Delivery>>;
    /// Up to `limit` of `target`'s scheduled (due ms, delivery id) pairs due
    /// at or before `now_ms`, oldest first, skipping ids for which `skip` is
    /// true.
    fn due(
        &self,
        target: &str,
        now_ms: u64,
        limit: usize,
        skip: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<(u64, String)>>;
    /// Scheduled deliveries per target (queue depth), counted once at start.
    fn scheduled_per_target(&self) -> Result<std::collections::BTreeMap<String, usize>>;
    /// Dead deliveries per target.
    fn dead_per_target(&self) -> Result<std::collections::BTreeMap<String, usize>>;
    /// Stores an attempt and the delivery's new state (keeping the
    /// dead-letter index in step); moves its schedule entry from `old_due`
    /// to `new_due` (none: no longer scheduled).
    fn record_attempt(
        &self,
        delivery: &Delivery,
        attempt: &Attempt,
        old_due: u64,
        new_due: Option<u64>,
    ) -> Written;
    /// Stores a delivery put back on the schedule by an operator (retry),
    /// due at `due_ms`: its old schedule entry (if it had one) and its
    /// dead-letter entry go, atomically.
    fn reschedule(&self, delivery: &Delivery, old_due: Option<u64>, due_ms: u64) -> Result<()>;
    /// Drops a stale schedule entry (its delivery is gone or finished).
    fn unschedule(&self, target: &str, delivery_id: &str, due_ms: u64) -> Result<()>;
    /// Marks a stored, already routed event "to route" again (replay).
    /// False when it is still waiting to be routed.
    fn mark_to_route(&self, event_id: &str) -> Result<bool>;
    /// One page of events, newest first.
    fn list_events(&self, q: &EventQuery) -> Result<Page<EventSummary>>;
    /// One page of deliveries, newest first.
    fn list_deliveries(&self, q: &DeliveryQuery) -> Result<Page<Delivery>>;
    /// A target's persisted operator/circuit state (opaque JSON).
    fn target_control(&self, target: &str) -> Result<Option<Vec<u8>>>;
    fn set_target_control(&self, target: &str, value: &[u8]) -> Result<()>;
    /// Removes up to `max_events` events received before `cutoff_ms` whose
    /// routing and deliveries are finished, with their outcome, deliveries,
    /// attempts and dead-letter entries; continues after `after`.
    fn sweep_before(&self, cutoff_ms: u64, max_events: usize, after: Option<&str>)
    -> Result<Swept>;
    /// Bytes the store occupies on disk.
    fn size_on_disk(&self) -> u64;
    fn attempts(&self, delivery_id: &str) -> Result<Vec<Attempt>>;
    fn kv_get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>>;
    fn kv_set(&self, plugin: &str, key: &str, value: &[u8]) -> Result<()>;
    fn kv_delete(&self, plugin: &str, key: &str) -> Result<()>;
}

/// sled's page cache. The hot set is recent events and the schedule's
/// head; 256 MiB bought no throughput in the benchmarks and cost ~70 MiB
/// of RSS under ingest load.
const CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// sled-backed [`Storage`].
pub struct SledStore {
    db: sled::Db,
    tree: sled::Tree,
    writer: GroupWriter,
}

impl SledStore {
    pub fn open(dir: &Path) -> Result<SledStore> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create data directory {}", dir.display()))?;
        let db = sled::Config::new()
            .path(dir.join("sled"))
            .cache_capacity(CACHE_BYTES)
            .flush_every_ms(Some(500))
            .open()
            .with_context(|| {
                format!(
                    "cannot open the store in {} (is another hookyard using it?)",
                    dir.display()
                )
            })?;
        let tree = db.open_tree("hookyard")?;
        let writer = GroupWriter::start(tree.clone())?;
        let store = SledStore { db, tree, writer };
        store.migrate_legacy_schedule()?;
        Ok(store)
    }

    /// Moves schedule entries of the pre-per-target layout (`s` + due + id)
    /// to the per-target schedule, one atomic batch per entry.
    fn migrate_legacy_schedule(&self) -> Result<()> {
        let mut moved = 0usize;
        for k in self.tree.scan_prefix([LEGACY_SCHEDULE]).keys() {
            let k = k?;
            let mut batch = sled::Batch::default();
            batch.remove(k.clone());
            if k.len() > 9 {
                let due = u64::from_be_bytes(k[1..9].try_into().expect("8 bytes"));
                let id = String::from_utf8_lossy(&k[9..]).into_owned();
                if let Some(d) = self.delivery(&id)? {
                    batch.insert(schedule_key(&d.target, due, &id), &[] as &[u8]);
                }
            }
            self.tree.apply_batch(batch)?;
            moved += 1;
        }
        if moved > 0 {
            tracing::info!(moved, "moved schedule entries to the per-target schedule");
        }
        Ok(())
    }

    /// A throwaway store (deleted on drop), for running a plugin outside the
    /// server (`hookyard plugin test`) with working KV.
    pub fn temporary() -> Result<SledStore> {
        let db = sled::Config::new().temporary(true).open()?;
        let tree = db.open_tree("hookyard")?;
        let writer = GroupWriter::start(tree.clone())?;
        Ok(SledStore { db, tree, writer })
    }
}

fn key(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len = 1 + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut k = Vec::with_capacity(len);
    k.push(prefix);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

/// Frames a JSON header and a raw body in one value: u32 BE header length,
/// header, body. Bodies stay bytes instead of bloating into JSON arrays.
fn frame<T: Serialize>(meta: &T, body: Option<&[u8]>) -> Result<Vec<u8>> {
    let meta = serde_json::to_vec(meta)?;
    let body = body.unwrap_or(&[]);
    let mut v = Vec::with_capacity(4 + meta.len() + body.len() + 1);
    v.extend_from_slice(&(meta.len() as u32).to_be_bytes());
    v.extend_from_slice(&meta);
    v.extend_from_slice(body);
    Ok(v)
}

fn unframe<T: DeserializeOwned>(v: &[u8]) -> Result<(T, &[u8])> {
    let len = v
        .get(..4)
        .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize)
        .ok_or_else(|| anyhow!("corrupt record: too short"))?;
    let meta = v
        .get(4..4 + len)
        .ok_or_else(|| anyhow!("corrupt record: truncated header"))?;
    Ok((serde_json::from_slice(meta)?, &v[4 + len..]))
}

/// Delivery values carry one flag byte before the body: 1 = own body,
/// 0 = send the event's body.
fn encode_delivery(d: &Delivery) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    match &d.body {
        Some(b) => {
            body.reserve(b.len() + 1);
            body.push(1);
            body.extend_from_slice(b);
        }
        None => body.push(0),
    }
    frame(d, Some(&body))
}

fn decode_delivery(v: &[u8]) -> Result<Delivery> {
    let (mut d, rest): (Delivery, &[u8]) = unframe(v)?;
    d.body = match rest.split_first() {
        Some((1, body)) => Some(body.to_vec()),
        _ => None,
    };
    Ok(d)
}

fn schedule_key(target: &str, due_ms: u64, delivery_id: &str) -> Vec<u8> {
    key(
        SCHEDULE,
        &[
            target.as_bytes(),
            &[0],
            &due_ms.to_be_bytes(),
            delivery_id.as_bytes(),
        ],
    )
}

fn schedule_prefix(target: &str) -> Vec<u8> {
    key(SCHEDULE, &[target.as_bytes(), &[0]])
}

fn kv_key(plugin: &str, k: &str) -> Vec<u8> {
    key(KV, &[plugin.as_bytes(), &[0], k.as_bytes()])
}

/// A new event and its "to route" mark.
fn event_writes(event: &Event) -> Result<Writes> {
    let mut w = Writes::default();
    w.insert(
        key(EVENT, &[event.id.as_bytes()]),
        frame(event, Some(&event.body))?,
    );
    w.insert(key(TO_ROUTE, &[event.id.as_bytes()]), Vec::new());
    Ok(w)
}

impl Storage for SledStore {
    fn insert_event(&self, event: &Event) -> Written {
        match event_writes(event) {
            Ok(w) => self.writer.write(w),
            Err(e) => Written::failed(e),
        }
    }

    fn insert_event_once(&self, event: &Event, dedup_key: &str, expires_at: u64) -> Written {
        let dk = key(
            IDEMPOTENCY,
            &[event.source.as_bytes(), &[0], dedup_key.as_bytes()],
        );
        let mut dv = expires_at.to_be_bytes().to_vec();
        dv.extend_from_slice(event.id.as_bytes());
        match event_writes(event) {
            Ok(mut w) => {
                w.insert(dk.clone(), dv);
                // The writer thread checks and writes the key in one step;
                // it is the only writer of idempotency keys (the sweep
                // removes with compare-and-swap), so concurrent duplicates
                // store exactly one event.
                self.writer.write_unless(dk, event.received_at, w)
            }
            Err(e) => Written::failed(e),
        }
    }

    fn sweep_idempotency(&self, now_ms: u64, limit: usize) -> Result<usize> {
        let mut n = 0;
        for kv in self.tree.scan_prefix([IDEMPOTENCY]) {
            let (k, v) = kv?;
            let expired = v
                .get(..8)
                .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")) <= now_ms)
                .unwrap_or(true);
            // Compare-and-swap: a key the writer renewed since the scan
            // read it stays.
            if expired
                && self
                    .tree
                    .compare_and_swap(&k, Some(&v), None as Option<&[u8]>)?
                    .is_ok()
            {
                n += 1;
                if n >= limit {
                    break;
                }
            }
        }
        Ok(n)
    }

    fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    fn event(&self, id: &str) -> Result<Option<Event>> {
        let Some(v) = self.tree.get(key(EVENT, &[id.as_bytes()]))? else {
            return Ok(None);
        };
        let (mut e, body): (Event, &[u8]) = unframe(&v)?;
        e.body = body.to_vec();
        Ok(Some(e))
    }

    fn event_count(&self) -> Result<usize> {
        let mut n = 0;
        for k in self.tree.scan_prefix([EVENT]).keys() {
            k?;
            n += 1;
        }
        Ok(n)
    }

    fn set_route_note(&self, event_id: &str, note: &str) -> Result<()> {
        let k = key(TO_ROUTE, &[event_id.as_bytes()]);
        // Only annotate a mark that exists: a finished event stays finished.
        self.tree
            .compare_and_swap(&k, Some(&[] as &[u8]), Some(note.as_bytes()))?
            .ok();
        Ok(())
    }

    fn route_note(&self, event_id: &str) -> Result<Option<String>> {
        Ok(self
            .tree
            .get(key(TO_ROUTE, &[event_id.as_bytes()]))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn events_to_route(&self) -> Result<Vec<String>> {
        self.tree
            .scan_prefix([TO_ROUTE])
            .keys()
            .map(|k| Ok(String::from_utf8_lossy(&k?[1..]).into_owned()))
            .collect()
    }

    fn record_outcome(
        &self,
        event_id: &str,
        outcome: &Outcome,
        deliveries: &[Delivery],
        due_ms: u64,
    ) -> Written {
        let mut batch = Writes::default();
        match serde_json::to_vec(outcome) {
            Ok(v) => batch.insert(key(OUTCOME, &[event_id.as_bytes()]), v),
            Err(e) => return Written::failed(e.into()),
        }
        for d in deliveries {
            match encode_delivery(d) {
                Ok(v) => batch.insert(key(DELIVERY, &[d.id.as_bytes()]), v),
                Err(e) => return Written::failed(e),
            }
            batch.insert(
                key(
                    EVENT_DELIVERY,
                    &[event_id.as_bytes(), b"/", d.id.as_bytes()],
                ),
                Vec::new(),
            );
            batch.insert(schedule_key(&d.target, due_ms, &d.id), Vec::new());
        }
        batch.remove(key(TO_ROUTE, &[event_id.as_bytes()]));
        self.writer.write(batch)
    }

    fn outcome(&self, event_id: &str) -> Result<Option<Outcome>> {
        self.tree
            .get(key(OUTCOME, &[event_id.as_bytes()]))?
            .map(|v| Ok(serde_json::from_slice(&v)?))
            .transpose()
    }

    fn delivery(&self, id: &str) -> Result<Option<Delivery>> {
        self.tree
            .get(key(DELIVERY, &[id.as_bytes()]))?
            .map(|v| decode_delivery(&v))
            .transpose()
    }

    fn deliveries_of_event(&self, event_id: &str) -> Result<Vec<Delivery>> {
        let prefix = key(EVENT_DELIVERY, &[event_id.as_bytes(), b"/"]);
        let mut out = Vec::new();
        for k in self.tree.scan_prefix(&prefix).keys() {
            let k = k?;
            let id = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            if let Some(d) = self.delivery(&id)? {
                out.push(d);
            }
        }
        Ok(out)
    }

    fn due(
        &self,
        target: &str,
        now_ms: u64,
        limit: usize,
        skip: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<(u64, String)>> {
        let prefix = schedule_prefix(target);
        let mut end = prefix.clone();
        end.extend_from_slice(&now_ms.saturating_add(1).to_be_bytes());
        let mut out = Vec::new();
        for k in self.tree.range(prefix.as_slice()..end.as_slice()).keys() {
            let k = k?;
            let rest = &k[prefix.len()..];
            if rest.len() < 8 {
                continue;
            }
            let due = u64::from_be_bytes(rest[..8].try_into().expect("8 bytes"));
            let id = std::str::from_utf8(&rest[8..]).unwrap_or_default();
            if skip(id) {
                continue;
            }
            out.push((due, id.to_string()));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn scheduled_per_target(&self) -> Result<std::collections::BTreeMap<String, usize>> {
        let mut out = std::collections::BTreeMap::new();
        for k in self.tree.scan_prefix([SCHEDULE]).keys() {
            let k = k?;
            let Some(end) = k[1..].iter().position(|&b| b == 0) else {
                continue;
            };
            let target = String::from_utf8_lossy(&k[1..1 + end]);
            match out.get_mut(target.as_ref()) {
                Some(n) => *n += 1,
                None => {
                    out.insert(target.into_owned(), 1);
                }
            }
        }
        Ok(out)
    }

    fn dead_per_target(&self) -> Result<std::collections::BTreeMap<String, usize>> {
        let mut out = std::collections::BTreeMap::new();
        for v in self.tree.scan_prefix([DEAD]).values() {
            *out.entry(String::from_utf8_lossy(&v?).into_owned())
                .or_insert(0) += 1;
        }
        Ok(out)
    }

    fn record_attempt(
        &self,
        delivery: &Delivery,
        attempt: &Attempt,
        old_due: u64,
        new_due: Option<u64>,
    ) -> Written {
        let (d, a) = match (encode_delivery(delivery), serde_json::to_vec(attempt)) {
            (Ok(d), Ok(a)) => (d, a),
            (Err(e), _) => return Written::failed(e),
            (_, Err(e)) => return Written::failed(e.into()),
        };
        let mut batch = Writes::default();
        batch.insert(key(DELIVERY, &[delivery.id.as_bytes()]), d);
        batch.insert(
            key(
                ATTEMPT,
                &[delivery.id.as_bytes(), b"/", &attempt.n.to_be_bytes()],
            ),
            a,
        );
        batch.remove(schedule_key(&delivery.target, old_due, &delivery.id));
        if let Some(due) = new_due {
            batch.insert(
                schedule_key(&delivery.target, due, &delivery.id),
                Vec::new(),
            );
        }
        if delivery.status == DeliveryStatus::Dead {
            batch.insert(
                key(DEAD, &[delivery.id.as_bytes()]),
                delivery.target.as_bytes(),
            );
        }
        self.writer.write(batch)
    }

    fn reschedule(&self, delivery: &Delivery, old_due: Option<u64>, due_ms: u64) -> Result<()> {
        let mut batch = sled::Batch::default();
        batch.insert(
            key(DELIVERY, &[delivery.id.as_bytes()]),
            encode_delivery(delivery)?,
        );
        if let Some(old) = old_due {
            batch.remove(schedule_key(&delivery.target, old, &delivery.id));
        }
        batch.insert(
            schedule_key(&delivery.target, due_ms, &delivery.id),
            &[] as &[u8],
        );
        batch.remove(key(DEAD, &[delivery.id.as_bytes()]));
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    fn unschedule(&self, target: &str, delivery_id: &str, due_ms: u64) -> Result<()> {
        self.tree
            .remove(schedule_key(target, due_ms, delivery_id))?;
        Ok(())
    }

    fn mark_to_route(&self, event_id: &str) -> Result<bool> {
        let k = key(TO_ROUTE, &[event_id.as_bytes()]);
        Ok(self
            .tree
            .compare_and_swap(&k, None as Option<&[u8]>, Some(&[] as &[u8]))?
            .is_ok())
    }

    fn list_events(&self, q: &EventQuery) -> Result<Page<EventSummary>> {
        listing::events(self, q)
    }

    fn list_deliveries(&self, q: &DeliveryQuery) -> Result<Page<Delivery>> {
        listing::deliveries(self, q)
    }

    fn target_control(&self, target: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .tree
            .get(key(TARGET, &[target.as_bytes()]))?
            .map(|v| v.to_vec()))
    }

    fn set_target_control(&self, target: &str, value: &[u8]) -> Result<()> {
        self.tree.insert(key(TARGET, &[target.as_bytes()]), value)?;
        Ok(())
    }

    fn sweep_before(
        &self,
        cutoff_ms: u64,
        max_events: usize,
        after: Option<&str>,
    ) -> Result<Swept> {
        retention::sweep(self, cutoff_ms, max_events, after)
    }

    fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    fn attempts(&self, delivery_id: &str) -> Result<Vec<Attempt>> {
        self.tree
            .scan_prefix(key(ATTEMPT, &[delivery_id.as_bytes(), b"/"]))
            .values()
            .map(|v| Ok(serde_json::from_slice(&v?)?))
            .collect()
    }

    fn kv_get(&self, plugin: &str, k: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.tree.get(kv_key(plugin, k))?.map(|v| v.to_vec()))
    }

    fn kv_set(&self, plugin: &str, k: &str, value: &[u8]) -> Result<()> {
        self.tree.insert(kv_key(plugin, k), value)?;
        Ok(())
    }

    fn kv_delete(&self, plugin: &str, k: &str) -> Result<()> {
        self.tree.remove(kv_key(plugin, k))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::*;

    fn event(id: &str) -> Event {
        Event {
            id: id.into(),
            source: "s".into(),
            received_at: 1,
            method: "POST".into(),
            path: "/hooks/s".into(),
            query: "a=1".into(),
            headers: vec![("content-type".into(), "text/plain".into())],
            body: b"\x00binary\xffbody".to_vec(),
        }
    }

    fn delivery(id: &str, body: Option<Vec<u8>>) -> Delivery {
        Delivery {
            id: id.into(),
            event_id: "evt_1".into(),
            target: "t".into(),
            origin: "passthrough".into(),
            headers: vec![],
            created_at: 1,
            status: DeliveryStatus::Scheduled,
            attempts: 0,
            next_attempt_at: Some(10),
            last_error: None,
            body,
        }
    }

    #[test]
    fn event_round_trips_and_is_marked_to_route() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        s.insert_event(&event("evt_1")).wait().unwrap();
        assert_eq!(s.event("evt_1").unwrap().unwrap(), event("evt_1"));
        assert_eq!(s.events_to_route().unwrap(), vec!["evt_1".to_string()]);
    }

    #[test]
    fn outcome_creates_scheduled_deliveries_and_clears_mark() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        s.insert_event(&event("evt_1")).wait().unwrap();
        let outcome = Outcome {
            status: EventStatus::Routed,
            routed_at: 2,
            plugins: vec![],
            deliveries: vec!["dlv_a".into(), "dlv_b".into()],
        };
        let ds = [
            delivery("dlv_a", None),
            delivery("dlv_b", Some(b"new".to_vec())),
        ];
        s.record_outcome("evt_1", &outcome, &ds, 10).wait().unwrap();
        assert!(s.events_to_route().unwrap().is_empty());
        assert_eq!(s.deliveries_of_event("evt_1").unwrap().len(), 2);
        assert_eq!(
            s.delivery("dlv_b").unwrap().unwrap().body,
            Some(b"new".to_vec())
        );
        assert_eq!(s.delivery("dlv_a").unwrap().unwrap().body, None);
        assert!(s.due("t", 9, 10, &|_| false).unwrap().is_empty());
        let due = s.due("t", 10, 10, &|id| id == "dlv_a").unwrap();
        assert_eq!(due, vec![(10, "dlv_b".to_string())]);
        assert_eq!(
            s.due("t", u64::MAX, 1, &|_| false).unwrap(),
            vec![(10, "dlv_a".to_string())]
        );

        let attempt = Attempt {
            n: 1,
            at: 10,
            status_code: Some(500),
            latency_ms: 1.0,
            error: None,
            response_body: String::new(),
        };
        let mut d = ds[1].clone();
        d.attempts = 1;
        s.record_attempt(&d, &attempt, 10, Some(50)).wait().unwrap();
        assert_eq!(s.due("t", 49, 10, &|_| false).unwrap().len(), 1); // dlv_a only
        assert_eq!(s.due("t", 50, 10, &|_| false).unwrap().len(), 2);
        assert_eq!(s.attempts("dlv_b").unwrap(), vec![attempt]);
    }

    #[test]
    fn idempotency_keys_dedup_until_they_expire() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let mut a = event("evt_a");
        a.received_at = 100;
        assert_eq!(
            s.insert_event_once(&a, "k1", 200).wait_outcome().unwrap(),
            None
        );
        let mut b = event("evt_b");
        b.received_at = 150;
        assert_eq!(
            s.insert_event_once(&b, "k1", 250).wait_outcome().unwrap(),
            Some("evt_a".into())
        );
        assert!(s.event("evt_b").unwrap().is_none());
        // Same key from another source is a different key.
        b.source = "other".into();
        assert_eq!(
            s.insert_event_once(&b, "k1", 250).wait_outcome().unwrap(),
            None
        );
        // Expired: accepted as new.
        let mut c = event("evt_c");
        c.received_at = 300;
        assert_eq!(
            s.insert_event_once(&c, "k1", 400).wait_outcome().unwrap(),
            None
        );
        assert_eq!(s.sweep_idempotency(350, 100).unwrap(), 1); // "other"'s key
        assert_eq!(s.sweep_idempotency(500, 100).unwrap(), 1);
    }

    #[test]
    fn kv_is_private_per_plugin() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        s.kv_set("a", "k", b"1").unwrap();
        assert_eq!(s.kv_get("a", "k").unwrap(), Some(b"1".to_vec()));
        assert_eq!(s.kv_get("b", "k").unwrap(), None);
        s.kv_delete("a", "k").unwrap();
        assert_eq!(s.kv_get("a", "k").unwrap(), None);
    }
}
