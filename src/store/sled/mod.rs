//! Durable state, and the only code that knows sled.
//!
//! Everything lives in one sled tree with a one-byte prefix per record kind,
//! so every multi-record change (an event plus its "to route" mark; an
//! outcome plus its deliveries plus their schedule entries) is one atomic
//! `apply_batch`: a crash sees all of it or none of it.
//!
//! | prefix | key                         | value                      |
//! |--------|-----------------------------|----------------------------|
//! | `e`    | event id                    | tag · meta JSON · body ref |
//! | `r`    | event id                    | empty ("to route" mark)    |
//! | `o`    | event id                    | outcome JSON               |
//! | `d`    | delivery id                 | meta JSON · body flag      |
//! | `y`    | delivery id                 | body ref (own body only)   |
//! | `x`    | event id `/` delivery id    | empty (event's deliveries) |
//! | `q`    | target `\0` due ms (BE u64) delivery | empty (per-target schedule) |
//! | `a`    | delivery id `/` n (BE u32)  | attempt JSON               |
//! | `z`    | delivery id                 | target (dead-letter index) |
//! | `t`    | target                      | target control JSON        |
//! | `k`    | plugin `\0` key             | plugin KV value            |
//! | `i`    | source `\0` idempotency key | expires ms (BE) + event id |
//! | `l`    | body segment (BE u64)       | live references (BE i64)   |
//!
//! Bodies themselves are in the body log (`bodies.rs`), not in sled: a
//! body ref is 20 bytes. (Stores written before the body log keep event
//! bodies inline, which still reads; inline delivery bodies are moved to
//! the log at open.)
//!
//! The schedule is ordered by target first, so each target's dispatcher
//! reads only its own due deliveries: a slow or blocked target with a large
//! backlog costs the others nothing. (Stores written before the per-target
//! schedule used prefix `s` without the target; opening the store moves
//! those entries over.)

use std::path::Path;
use std::sync::Arc;

use std::collections::{BTreeMap, HashSet};

use anyhow::{Context, Result, anyhow};
use async_trait::async_trait;
use serde::{Serialize, de::DeserializeOwned};

use crate::model::records::{Attempt, Delivery, DeliveryStatus, Event, Outcome};

pub mod bodies;
mod body_sync;
mod durability;
pub mod engine;
pub mod layout;
mod listing;
pub mod migrate;
mod readers;
mod recovery;
mod retention;
mod schedule_floor;
mod space;
mod writer;

use super::{
    Accepted, Committed, Dedup, DeliveryQuery, EventQuery, EventSummary, Mark, Page, Recorded,
    Rescheduled, Swept, ToRoute,
};
use crate::config::Durability;
use crate::plugin::kv::{KvTxn, PluginTxn};
use bodies::{BodyLog, BodyRef, LiveDelta};
pub use engine::sled_config;
use engine::{Batch, Engine, Tree};
use layout::*;
use recovery::{Fault, Open, Shared};
pub use writer::{Answer, Checked, Written};
use writer::{GroupWriter, Writes};

/// The default of `server.min_free_space`.
pub const DEFAULT_MIN_FREE: u64 = 64 << 20;

/// First byte of an event value whose body is in the body log. (Values
/// written before start with a u32 BE header length, whose first byte is
/// 0 for any header under 16 MiB.)
const EVENT_IN_LOG: u8 = 0xB1;
/// First byte of an event value whose body log record holds the body as
/// received followed by the decoded body (a `Content-Encoding` event);
/// a u32 BE length of the received part follows the tag. One record keeps
/// the two under one reference, so retention and the segment counts treat
/// it like any other event.
const EVENT_IN_LOG_ENCODED: u8 = 0xB2;

/// A delivery value's last byte says where its body is.
const BODY_OF_EVENT: u8 = 0;
const BODY_INLINE: u8 = 1;
const BODY_IN_LOG: u8 = 2;

/// The sled backend's state; its blocking operations. [`SledStore`] is the
/// async face the rest of hookyard uses.
pub struct Sled {
    tree: Tree,
    bodies: Arc<BodyLog>,
    body_sync: body_sync::BodySync,
    writer: GroupWriter,
    /// Tripped by the first write that fails.
    fault: Arc<Fault>,
    /// Where each target's schedule scan starts, past what was delivered.
    floors: Arc<schedule_floor::ScheduleFloors>,
    /// A throwaway store's directory, removed on drop.
    _temp: Option<tempfile::TempDir>,
}

impl Sled {
    fn open(dir: &Path, engine: Engine) -> Result<Sled> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create data directory {}", dir.display()))?;
        let tree = Tree::open(dir, engine)?;
        let bodies = Arc::new(BodyLog::open(&dir.join("bodies"))?);
        // Before the writer starts: it loads the live counts this changes.
        let lost = drop_unrouted_with_lost_bodies(&tree, &bodies)?;
        let fault = Arc::new(Fault::default());
        let floors = Arc::new(schedule_floor::ScheduleFloors::default());
        let writer =
            GroupWriter::start(tree.clone(), bodies.clone(), fault.clone(), floors.clone())?;
        let store = Sled {
            tree,
            floors,
            body_sync: body_sync::BodySync::start(bodies.clone())?,
            bodies,
            writer,
            fault,
            _temp: None,
        };
        store.migrate_legacy_schedule()?;
        store.migrate_inline_delivery_bodies()?;
        if lost > 0 {
            store.flush()?;
        }
        Ok(store)
    }

    /// Moves delivery bodies stored inline (before the body log) into the
    /// log, so attempts, which rewrite a delivery's record, never have to
    /// carry its body.
    fn migrate_inline_delivery_bodies(&self) -> Result<()> {
        let mut moved = 0usize;
        for kv in self.tree.scan_prefix([DELIVERY]) {
            let (k, v) = kv?;
            let Ok((d, BODY_INLINE, Some(body))) = decode_delivery_value(&v) else {
                continue;
            };
            let mut w = Writes::default();
            w.insert(k.to_vec(), encode_delivery_meta(&d, true)?);
            w.insert_body(
                key(DELIVERY_BODY, &[d.id.as_bytes()]),
                Vec::new(),
                &d.id,
                body.to_vec(),
            );
            self.writer.write(w).wait()?;
            moved += 1;
        }
        if moved > 0 {
            tracing::info!(moved, "moved delivery bodies into the body log");
        }
        Ok(())
    }

    /// Moves schedule entries of the pre-per-target layout (`s` + due + id)
    /// to the per-target schedule, one atomic batch per entry.
    fn migrate_legacy_schedule(&self) -> Result<()> {
        let mut moved = 0usize;
        for k in self.tree.scan_prefix([LEGACY_SCHEDULE]).keys() {
            let k = k?;
            let mut batch = Batch::default();
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
    fn temporary() -> Result<Sled> {
        let dir = tempfile::tempdir()?;
        let mut store = Sled::open(dir.path(), Engine::Sled)?;
        store._temp = Some(dir);
        Ok(store)
    }

    /// An event's stored value split into its parts; the body is read only
    /// when asked for.
    fn read_event(&self, id: &str, with_body: bool) -> Result<Option<(Event, usize)>> {
        let Some(v) = self.tree.get(key(EVENT, &[id.as_bytes()]))? else {
            return Ok(None);
        };
        let (mut event, body) = decode_event_value(&v)?;
        let size = match body {
            StoredBody::Inline(b) => {
                if with_body {
                    event.body = b.to_vec();
                }
                b.len()
            }
            StoredBody::Log(r, received) => {
                let received = received.unwrap_or(0);
                if with_body {
                    let mut both = self.bodies.read(&r, id)?;
                    if received > 0 {
                        if received > both.len() {
                            return Err(anyhow!(
                                "corrupt event {id}: received body past its record"
                            ));
                        }
                        let decoded = both.split_off(received);
                        event.received_body = Some(both);
                        event.body = decoded;
                    } else {
                        event.body = both;
                    }
                }
                (r.len as usize).saturating_sub(received)
            }
        };
        Ok(Some((event, size)))
    }
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

/// Where an event's body is.
enum StoredBody<'a> {
    Inline(&'a [u8]),
    /// In the body log; with the length of the received bytes in front of
    /// the decoded ones, for an event that arrived encoded.
    Log(BodyRef, Option<usize>),
}

fn decode_event_value(v: &[u8]) -> Result<(Event, StoredBody<'_>)> {
    match v.split_first() {
        Some((&EVENT_IN_LOG, rest)) => {
            let (e, r): (Event, &[u8]) = unframe(rest)?;
            Ok((e, StoredBody::Log(BodyRef::decode(r)?, None)))
        }
        Some((&EVENT_IN_LOG_ENCODED, rest)) => {
            let received = rest
                .get(..4)
                .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize)
                .ok_or_else(|| anyhow!("corrupt record: too short"))?;
            let (e, r): (Event, &[u8]) = unframe(&rest[4..])?;
            Ok((e, StoredBody::Log(BodyRef::decode(r)?, Some(received))))
        }
        _ => {
            let (e, body): (Event, &[u8]) = unframe(v)?;
            Ok((e, StoredBody::Inline(body)))
        }
    }
}

/// A delivery's record without its body: JSON header, then one byte
/// saying where the body is (the event's, or its own in the log under
/// `y`). Attempts rewrite this record; the body is written once.
fn encode_delivery_meta(d: &Delivery, own_body: bool) -> Result<Vec<u8>> {
    frame(
        d,
        Some(&[if own_body { BODY_IN_LOG } else { BODY_OF_EVENT }]),
    )
}

/// A delivery record: the delivery (body not loaded), where its body is,
/// and an inline body (stores from before the body log).
fn decode_delivery_value(v: &[u8]) -> Result<(Delivery, u8, Option<&[u8]>)> {
    let (d, rest): (Delivery, &[u8]) = unframe(v)?;
    Ok(match rest.split_first() {
        Some((&BODY_INLINE, body)) => (d, BODY_INLINE, Some(body)),
        Some((&BODY_IN_LOG, _)) => (d, BODY_IN_LOG, None),
        _ => (d, BODY_OF_EVENT, None),
    })
}

/// A delivery without its body (listing, sweeps, state checks).
fn decode_delivery(v: &[u8]) -> Result<Delivery> {
    decode_delivery_value(v).map(|(d, _, _)| d)
}

/// A new event (its body to the body log) and its "to route" mark.
fn event_writes(event: &Event) -> Result<Writes> {
    let mut w = Writes::default();
    let (head, body) = match &event.received_body {
        None => (vec![EVENT_IN_LOG], event.body.clone()),
        Some(received) => {
            let mut head = vec![EVENT_IN_LOG_ENCODED];
            head.extend_from_slice(&(received.len() as u32).to_be_bytes());
            let mut both = Vec::with_capacity(received.len() + event.body.len());
            both.extend_from_slice(received);
            both.extend_from_slice(&event.body);
            (head, both)
        }
    };
    let mut head = head;
    head.extend_from_slice(&frame(event, None)?);
    w.insert_body(key(EVENT, &[event.id.as_bytes()]), head, &event.id, body);
    w.insert(key(TO_ROUTE, &[event.id.as_bytes()]), Vec::new());
    Ok(w)
}

/// After a power cut, sled can hold an event whose body the log lost (the
/// two are synced side by side). In `flush` mode such an event was never
/// acknowledged: routing starts only once both are durable, so it is still
/// unrouted. It is removed with its idempotency key, so the sender's retry
/// is stored afresh instead of answered as a duplicate of nothing; left, it
/// would fail routing forever. Returns how many went.
fn drop_unrouted_with_lost_bodies(tree: &Tree, bodies: &BodyLog) -> Result<usize> {
    let mut lost: Vec<(String, BodyRef)> = Vec::new();
    for k in tree.scan_prefix([TO_ROUTE]).keys() {
        let k = k?;
        let id = String::from_utf8_lossy(&k[1..]).into_owned();
        let Some(v) = tree.get(key(EVENT, &[id.as_bytes()]))? else {
            continue;
        };
        if let Ok((_, StoredBody::Log(r, _))) = decode_event_value(&v)
            && !bodies.holds(&r, &id)
        {
            lost.push((id, r));
        }
    }
    if lost.is_empty() {
        return Ok(0);
    }
    let ids: HashSet<&str> = lost.iter().map(|(id, _)| id.as_str()).collect();
    let mut batch = Batch::default();
    for kv in tree.scan_prefix([IDEMPOTENCY]) {
        let (k, v) = kv?;
        if v.get(8..)
            .is_some_and(|id| ids.contains(String::from_utf8_lossy(id).as_ref()))
        {
            batch.remove(k);
        }
    }
    let mut released = LiveDelta::default();
    for (id, r) in &lost {
        batch.remove(key(EVENT, &[id.as_bytes()]));
        batch.remove(key(TO_ROUTE, &[id.as_bytes()]));
        released.add(r.segment, 1);
    }
    for (segment, n) in released.0 {
        let k = key(LIVE, &[&segment.to_be_bytes()]);
        let live = tree
            .get(&k)?
            .and_then(|v| {
                v.get(..8)
                    .map(|b| i64::from_be_bytes(b.try_into().expect("8 bytes")))
            })
            .unwrap_or(0);
        if live - n <= 0 {
            batch.remove(k);
        } else {
            batch.insert(k, (live - n).to_be_bytes());
        }
    }
    tree.apply_batch(batch)?;
    tracing::warn!(
        events = lost.len(),
        first = %lost[0].0,
        "removed events whose bodies a crash lost before they were acknowledged (their senders retry)"
    );
    Ok(lost.len())
}

impl Sled {
    pub(crate) fn insert_event(&self, event: &Event) -> Written {
        match event_writes(event) {
            Ok(w) => self.writer.write(w),
            Err(e) => Written::failed(e),
        }
    }

    pub(crate) fn insert_event_once(
        &self,
        event: &Event,
        dedup_key: &str,
        expires_at: u64,
    ) -> Written {
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
                // it is the only writer of idempotency keys (the sweep's
                // removals are decided there too), so concurrent duplicates
                // store exactly one event.
                self.writer.write_unless(dk, event.received_at, w)
            }
            Err(e) => Written::failed(e),
        }
    }

    pub(crate) fn sweep_idempotency(&self, now_ms: u64, limit: usize) -> Result<usize> {
        let mut expired = Vec::new();
        for kv in self.tree.scan_prefix([IDEMPOTENCY]) {
            let (k, v) = kv?;
            let past = v
                .get(..8)
                .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")) <= now_ms)
                .unwrap_or(true);
            if past {
                expired.push((k, v));
                if expired.len() >= limit {
                    break;
                }
            }
        }
        if expired.is_empty() {
            return Ok(0);
        }
        // Decided on the writer thread, the only writer of idempotency
        // keys: a key it renewed since the scan read it stays.
        self.writer
            .check(move |tree| {
                let mut w = Writes::default();
                let mut n = 0;
                for (k, v) in expired {
                    if tree.get(&k)?.is_some_and(|now| *now == *v) {
                        w.remove(k.to_vec());
                        n += 1;
                    }
                }
                Ok((w, n))
            })
            .wait_value()
    }

    /// A write that must reach the disk: proves the store can write again
    /// after a failure.
    fn probe(&self) -> Result<()> {
        let mut w = Writes::default();
        w.insert(
            key(PROBE, &[]),
            crate::model::id::now_ms().to_be_bytes().to_vec(),
        );
        self.writer.write(w).wait()?;
        self.flush()
    }

    /// How many write groups the writer has applied (see `durability`).
    pub(crate) fn applied(&self) -> u64 {
        self.writer.applied()
    }

    /// Makes every applied write durable. The body log and the engine's
    /// log (sled's log, fjall's journal) are synced side by side: a power
    /// cut between the two can leave a reference whose body is not on
    /// disk, which reads as `BodyLost` (as in `buffered` mode, where sled
    /// flushes on its own every 500 ms and the rest is left to the OS's
    /// writeback), and no write is acknowledged before both are done.
    pub(crate) fn flush(&self) -> Result<()> {
        if self.bodies.is_synced() {
            return self.tree.flush();
        }
        let bodies = self.body_sync.begin();
        let index = self.tree.flush();
        index.and(bodies.wait())
    }

    pub(crate) fn event(&self, id: &str) -> Result<Option<Event>> {
        Ok(self.read_event(id, true)?.map(|(e, _)| e))
    }

    pub(crate) fn set_route_note(&self, event_id: &str, note: &str) -> Written {
        let k = key(TO_ROUTE, &[event_id.as_bytes()]);
        let note = note.as_bytes().to_vec();
        self.writer
            .check(move |tree| {
                let mut w = Writes::default();
                // Only annotate a mark that exists: a finished event stays
                // finished.
                if tree.contains_key(&k)? {
                    w.insert(k, note);
                }
                Ok((w, ()))
            })
            .into_written()
    }

    pub(crate) fn route_note(&self, event_id: &str) -> Result<Option<String>> {
        Ok(self
            .tree
            .get(key(TO_ROUTE, &[event_id.as_bytes()]))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub(crate) fn to_route_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<ToRoute>> {
        let mut lower = key(TO_ROUTE, &[after.unwrap_or("").as_bytes()]);
        if after.is_some() {
            lower.push(0); // exclusive
        }
        let upper = [TO_ROUTE + 1];
        let mut out = Vec::new();
        for kv in self.tree.range(lower.as_slice()..upper.as_slice()) {
            let (k, v) = kv?;
            out.push(ToRoute {
                id: String::from_utf8_lossy(&k[1..]).into_owned(),
                parked: !v.is_empty(),
            });
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    pub(crate) fn drop_route_mark(&self, event_id: &str) -> Written {
        let mut w = Writes::default();
        w.remove(key(TO_ROUTE, &[event_id.as_bytes()]));
        self.writer.write(w)
    }

    pub(crate) fn record_outcome(
        &self,
        event_id: &str,
        outcome: &Outcome,
        deliveries: &[Delivery],
        due_ms: u64,
        kv: Vec<PluginTxn>,
    ) -> Written {
        let mut batch = Writes::default();
        match serde_json::to_vec(outcome) {
            Ok(v) => batch.insert(key(OUTCOME, &[event_id.as_bytes()]), v),
            Err(e) => return Written::failed(e.into()),
        }
        for d in deliveries {
            match encode_delivery_meta(d, d.body.is_some()) {
                Ok(v) => batch.insert(key(DELIVERY, &[d.id.as_bytes()]), v),
                Err(e) => return Written::failed(e),
            }
            if let Some(body) = &d.body {
                batch.insert_body(
                    key(DELIVERY_BODY, &[d.id.as_bytes()]),
                    Vec::new(),
                    &d.id,
                    body.clone(),
                );
            }
            batch.insert(event_delivery_key(event_id, &d.id), Vec::new());
            batch.insert(schedule_key(&d.target, due_ms, &d.id), Vec::new());
        }
        let mark = key(TO_ROUTE, &[event_id.as_bytes()]);
        batch.remove(mark.clone());
        // A plugin that never touched its KV costs nothing here.
        let mut kv: Vec<PluginTxn> = kv.into_iter().filter(|p| !p.txn.is_empty()).collect();
        // The writer applies ops in the order queued: once this one is
        // queued, the plugins' next commits may be.
        let turns: Vec<_> = kv.iter_mut().filter_map(|p| p.turn.take()).collect();
        let written = self.writer.write_fenced(mark, kv, batch);
        drop(turns);
        written
    }

    pub(crate) fn outcome(&self, event_id: &str) -> Result<Option<Outcome>> {
        self.tree
            .get(key(OUTCOME, &[event_id.as_bytes()]))?
            .map(|v| Ok(serde_json::from_slice(&v)?))
            .transpose()
    }

    pub(crate) fn delivery(&self, id: &str) -> Result<Option<Delivery>> {
        let Some(v) = self.tree.get(key(DELIVERY, &[id.as_bytes()]))? else {
            return Ok(None);
        };
        let (mut d, place, inline) = decode_delivery_value(&v)?;
        d.body = match place {
            BODY_INLINE => inline.map(<[u8]>::to_vec),
            BODY_IN_LOG => {
                let r = self
                    .tree
                    .get(key(DELIVERY_BODY, &[id.as_bytes()]))?
                    .ok_or_else(|| anyhow!("delivery {id} has no body reference"))?;
                Some(self.bodies.read(&BodyRef::decode(&r)?, id)?)
            }
            _ => None,
        };
        Ok(Some(d))
    }

    pub(crate) fn deliveries_of_event(
        &self,
        event_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<Delivery>> {
        let prefix = event_deliveries_prefix(event_id);
        let mut lower = prefix.clone();
        if let Some(after) = after {
            lower.extend_from_slice(after.as_bytes());
            lower.push(0); // exclusive
        }
        let mut upper = prefix.clone();
        upper.push(0xff);
        let mut items = Vec::new();
        let mut keys = self.tree.range(lower..upper).keys();
        for k in keys.by_ref() {
            let k = k?;
            let id = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            if let Some(d) = self.delivery(&id)? {
                items.push(d);
            }
            if items.len() >= limit {
                break;
            }
        }
        let next_cursor = match keys.next() {
            Some(_) => items.last().map(|d| d.id.to_string()),
            None => None,
        };
        Ok(Page { items, next_cursor })
    }

    pub(crate) fn due(
        &self,
        target: &str,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String)>> {
        let seen = self.floors.seen(target);
        let prefix = schedule_prefix(target);
        let mut start = prefix.clone();
        start.extend_from_slice(&seen.due.to_be_bytes());
        let mut end = prefix;
        end.extend_from_slice(&now_ms.saturating_add(1).to_be_bytes());
        let mut out = Vec::new();
        for k in self.tree.range(start.as_slice()..end.as_slice()).keys() {
            let k = k?;
            let Some((_, due, id)) = parse_schedule_key(&k) else {
                continue;
            };
            out.push((due, id.to_string()));
            if out.len() >= limit {
                break;
            }
        }
        // Nothing below the first entry read (or, when none was, up to
        // `now_ms`): later scans start there.
        let floor = out
            .first()
            .map_or(now_ms.saturating_add(1), |&(due, _)| due);
        self.floors.raise(target, seen, floor);
        Ok(out)
    }

    pub(crate) fn scheduled_per_target(&self) -> Result<std::collections::BTreeMap<String, usize>> {
        let mut out = std::collections::BTreeMap::new();
        for k in self.tree.scan_prefix([SCHEDULE]).keys() {
            let k = k?;
            let Some((target, _, _)) = parse_schedule_key(&k) else {
                continue;
            };
            match out.get_mut(target) {
                Some(n) => *n += 1,
                None => {
                    out.insert(target.to_string(), 1);
                }
            }
        }
        Ok(out)
    }

    pub(crate) fn dead_per_target(&self) -> Result<std::collections::BTreeMap<String, usize>> {
        let mut out = std::collections::BTreeMap::new();
        for v in self.tree.scan_prefix([DEAD]).values() {
            *out.entry(String::from_utf8_lossy(&v?).into_owned())
                .or_insert(0) += 1;
        }
        Ok(out)
    }

    pub(crate) fn record_attempt(
        &self,
        delivery: &Delivery,
        attempt: &Attempt,
        old_due: u64,
        new_due: Option<u64>,
    ) -> Written {
        let meta = encode_delivery_meta(delivery, delivery.body.is_some());
        let (d, a) = match (meta, serde_json::to_vec(attempt)) {
            (Ok(d), Ok(a)) => (d, a),
            (Err(e), _) => return Written::failed(e),
            (_, Err(e)) => return Written::failed(e.into()),
        };
        let mut batch = Writes::default();
        batch.insert(key(DELIVERY, &[delivery.id.as_bytes()]), d);
        batch.insert(attempt_key(&delivery.id, attempt.n), a);
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

    pub(crate) fn reschedule(&self, delivery_id: &str, due_ms: u64) -> Checked<Option<Delivery>> {
        let k = key(DELIVERY, &[delivery_id.as_bytes()]);
        self.writer.check(move |tree| {
            let mut w = Writes::default();
            // Read here, on the writer thread, so a sweep or an attempt
            // cannot change the delivery between the read and the write.
            let Some(v) = tree.get(&k)? else {
                return Ok((w, None));
            };
            let (before, place, _) = decode_delivery_value(&v)?;
            let mut d = before.clone();
            if d.status == DeliveryStatus::Scheduled
                && let Some(old) = d.next_attempt_at
            {
                w.remove(schedule_key(&d.target, old, &d.id));
            }
            d.status = DeliveryStatus::Scheduled;
            d.next_attempt_at = Some(due_ms);
            w.insert(k, encode_delivery_meta(&d, place == BODY_IN_LOG)?);
            w.insert(schedule_key(&d.target, due_ms, &d.id), Vec::new());
            w.remove(key(DEAD, &[d.id.as_bytes()]));
            Ok((w, Some(before)))
        })
    }

    pub(crate) fn unschedule(&self, target: &str, delivery_id: &str, due_ms: u64) -> Written {
        let mut w = Writes::default();
        w.remove(schedule_key(target, due_ms, delivery_id));
        self.writer.write(w)
    }

    pub(crate) fn mark_to_route(&self, event_id: &str) -> Checked<Mark> {
        let mark = key(TO_ROUTE, &[event_id.as_bytes()]);
        let event = key(EVENT, &[event_id.as_bytes()]);
        self.writer.check(move |tree| {
            let mut w = Writes::default();
            // The event and its mark are looked at on the writer thread, so
            // a retention sweep cannot remove the event in between.
            let answer = if !tree.contains_key(&event)? {
                Mark::NoEvent
            } else if tree.contains_key(&mark)? {
                Mark::AlreadyPending
            } else {
                w.insert(mark, Vec::new());
                Mark::Marked
            };
            Ok((w, answer))
        })
    }

    pub(crate) fn list_events(&self, q: &EventQuery) -> Result<Page<EventSummary>> {
        listing::events(self, q)
    }

    pub(crate) fn list_deliveries(&self, q: &DeliveryQuery) -> Result<Page<Delivery>> {
        listing::deliveries(self, q)
    }

    pub(crate) fn target_control(&self, target: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .tree
            .get(key(TARGET, &[target.as_bytes()]))?
            .map(|v| v.to_vec()))
    }

    pub(crate) fn set_target_control(&self, target: &str, value: &[u8]) -> Written {
        let mut w = Writes::default();
        w.insert(key(TARGET, &[target.as_bytes()]), value.to_vec());
        self.writer.write(w)
    }

    pub(crate) fn sweep_before(
        &self,
        cutoff_ms: u64,
        max_events: usize,
        after: Option<&str>,
    ) -> Result<Swept> {
        retention::sweep(self, cutoff_ms, max_events, after)
    }

    pub(crate) fn size_on_disk(&self) -> u64 {
        self.tree.size_on_disk() + self.bodies.size()
    }

    /// Deletes body segments nothing refers to any more. It flushes first,
    /// so the removals that emptied them are durable before the bytes go.
    pub(crate) fn collect_garbage(&self) -> Result<usize> {
        self.flush()?;
        Ok(self.bodies.delete_doomed())
    }

    pub(crate) fn attempts(&self, delivery_id: &str) -> Result<Vec<Attempt>> {
        self.tree
            .scan_prefix(attempts_prefix(delivery_id))
            .values()
            .map(|v| Ok(serde_json::from_slice(&v?)?))
            .collect()
    }

    pub(crate) fn kv_get(&self, plugin: &str, k: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.tree.get(kv_key(plugin, k))?.map(|v| v.to_vec()))
    }

    pub(crate) fn kv_list(
        &self,
        plugin: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<(String, usize)>> {
        let base = kv_key(plugin, "");
        let start = match after {
            Some(a) if a >= prefix => {
                let mut k = kv_key(plugin, a);
                k.push(0); // exclusive
                k
            }
            _ => kv_key(plugin, prefix),
        };
        let mut items = Vec::new();
        let mut iter = self.tree.range(start..);
        for kv in iter.by_ref() {
            let (k, v) = kv?;
            let Some(name) = k.strip_prefix(base.as_slice()) else {
                break;
            };
            let name = String::from_utf8_lossy(name).into_owned();
            if !name.starts_with(prefix) {
                break;
            }
            items.push((name, v.len()));
            if items.len() >= limit {
                break;
            }
        }
        let more = items.len() >= limit
            && iter.next().transpose()?.is_some_and(|(k, _)| {
                k.strip_prefix(base.as_slice())
                    .is_some_and(|n| n.starts_with(prefix.as_bytes()))
            });
        Ok(Page {
            next_cursor: if more {
                items.last().map(|(k, _)| k.clone())
            } else {
                None
            },
            items,
        })
    }

    pub(crate) fn kv_delete(&self, plugin: &str, k: &str) -> Checked<bool> {
        let existed = self.tree.contains_key(kv_key(plugin, k));
        let txn = PluginTxn {
            plugin: plugin.to_string(),
            max_keys: usize::MAX,
            turn: None,
            txn: KvTxn {
                writes: [(k.to_string(), None)].into(),
                ..KvTxn::default()
            },
        };
        // Through the writer like a plugin's commit, so the key counts and
        // the order against plugins' commits hold.
        let written = self.writer.write_txn(vec![txn], Writes::default());
        Checked::from_written(written, existed.unwrap_or(false))
    }
}

/// The sled backend as the rest of hookyard sees it: the storage seam's
/// traits, async, with sled's blocking reads and scans on tokio's blocking
/// pool and every write through the writer thread.
#[derive(Clone)]
pub struct SledStore {
    shared: Arc<Shared>,
    readers: Arc<readers::Readers>,
}

impl SledStore {
    /// Opens (or creates) the store in `dir`; after a failed write it
    /// reopens itself (see [`recovery`]).
    pub fn open(dir: &Path, durability: Durability) -> Result<SledStore> {
        Self::open_with_reserve(dir, durability, DEFAULT_MIN_FREE, Engine::Sled)
    }

    /// Like [`SledStore::open`]; new events are refused while the data
    /// directory's file system has less than `min_free` bytes free (see
    /// [`space`]); 0 turns that off.
    pub fn open_with_reserve(
        dir: &Path,
        durability: Durability,
        min_free: u64,
        engine: Engine,
    ) -> Result<SledStore> {
        let open = Open::new(Sled::open(dir, engine)?, durability)?;
        SledStore::from_open(open, Some(dir.to_path_buf()), durability, min_free)
    }

    /// A throwaway store (deleted on drop), for running a plugin outside the
    /// server (`hookyard plugin test`) with working KV.
    pub fn temporary() -> Result<SledStore> {
        let open = Open::new(Sled::temporary()?, Durability::Buffered)?;
        SledStore::from_open(open, None, Durability::Buffered, 0)
    }

    fn from_open(
        open: Open,
        dir: Option<std::path::PathBuf>,
        durability: Durability,
        min_free: u64,
    ) -> Result<SledStore> {
        let engine = open.sled.tree.engine();
        let readers = Arc::new(readers::Readers::start()?);
        let shared = Arc::new(Shared {
            dir,
            durability,
            engine,
            open: std::sync::RwLock::new(Ok(open)),
            space: Default::default(),
        });
        shared.space.set_min_free(min_free);
        if let Some(dir) = &shared.dir {
            shared.space.check(dir);
        }
        Shared::watch(&shared);
        Ok(SledStore { shared, readers })
    }

    /// Every concern of the seam, served by this store.
    pub fn into_store(self) -> super::Store {
        super::Store::from_backend(Arc::new(self))
    }

    /// The store as open now, or why not.
    fn open_now(&self) -> Result<Open> {
        Ok(self.shared.open()?)
    }

    fn inner(&self) -> Result<Arc<Sled>> {
        Ok(self.open_now()?.sled)
    }

    /// Waits until every write applied so far is as durable as configured.
    async fn durable(&self) -> Result<()> {
        let open = self.open_now()?;
        open.flusher.wait(open.sled.applied()).await
    }

    /// Runs a read off the async workers, on the store's read threads.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Sled) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner()?;
        self.readers.run(move || f(&inner)).await?
    }

    /// Runs long work (a retention sweep, a flush) on a thread of its own,
    /// so it does not hold up the reads behind it.
    async fn upkeep<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Sled) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner()?;
        tokio::task::spawn_blocking(move || f(&inner)).await?
    }
}

fn answered(a: Answer) -> Result<()> {
    match a {
        Answer::Refused(r) => Err(anyhow!("{r}")),
        Answer::Fenced => Err(anyhow!("the record this write depends on is gone")),
        Answer::Done | Answer::Existing(_) => Ok(()),
    }
}

#[async_trait]
impl super::EventLog for SledStore {
    async fn accept(&self, event: &Event, dedup: Option<Dedup>) -> Result<Accepted> {
        self.shared.space.admit()?;
        let existing = match dedup {
            None => {
                self.inner()?.insert_event(event).done().await?;
                None
            }
            Some(d) => {
                self.inner()?
                    .insert_event_once(event, &d.key, d.expires_at)
                    .outcome()
                    .await?
            }
        };
        self.durable().await?;
        Ok(match existing {
            Some(id) => Accepted::Duplicate(id),
            None => Accepted::New,
        })
    }
}

#[async_trait]
impl super::RoutingLog for SledStore {
    async fn event(&self, id: &str) -> Result<Option<Event>> {
        let id = id.to_string();
        self.read(move |s| s.event(&id)).await
    }

    async fn to_route_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<ToRoute>> {
        let after = after.map(str::to_string);
        self.read(move |s| s.to_route_after(after.as_deref(), limit))
            .await
    }

    async fn set_route_note(&self, event_id: &str, note: &str) -> Result<()> {
        self.inner()?.set_route_note(event_id, note).done().await
    }

    async fn drop_route_mark(&self, event_id: &str) -> Result<()> {
        self.inner()?.drop_route_mark(event_id).done().await
    }

    async fn mark_to_route(&self, event_id: &str) -> Result<Mark> {
        self.inner()?.mark_to_route(event_id).value().await
    }

    async fn record_outcome(
        &self,
        event_id: &str,
        outcome: &Outcome,
        deliveries: &[Delivery],
        due_ms: u64,
        kv: Vec<PluginTxn>,
    ) -> Result<Committed> {
        Ok(
            match self
                .inner()?
                .record_outcome(event_id, outcome, deliveries, due_ms, kv)
                .answer()
                .await?
            {
                Answer::Refused(r) => Committed::Refused(r),
                // Routed already (by a second routing of the same event
                // that committed first): this one is dropped.
                Answer::Fenced => Committed::Fenced,
                Answer::Done | Answer::Existing(_) => Committed::Done,
            },
        )
    }
}

impl super::PluginKv for SledStore {
    fn kv_get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>> {
        self.inner()?.kv_get(plugin, key)
    }

    fn sole_writer(&self) -> bool {
        true
    }
}

#[async_trait]
impl super::PluginKvAdmin for SledStore {
    async fn kv_list(
        &self,
        plugin: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<(String, usize)>> {
        let (plugin, prefix, after) = (
            plugin.to_string(),
            prefix.to_string(),
            after.map(str::to_string),
        );
        self.read(move |s| s.kv_list(&plugin, &prefix, after.as_deref(), limit))
            .await
    }

    async fn kv_value(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let (plugin, key) = (plugin.to_string(), key.to_string());
        self.read(move |s| s.kv_get(&plugin, &key)).await
    }

    async fn kv_delete(&self, plugin: &str, key: &str) -> Result<bool> {
        self.inner()?.kv_delete(plugin, key).value().await
    }
}

#[async_trait]
impl super::DeliveryQueue for SledStore {
    async fn claim_due(
        &self,
        target: &str,
        now_ms: u64,
        limit: usize,
        _lease: std::time::Duration,
    ) -> Result<Vec<(u64, String)>> {
        // What the writer has applied is visible before it is fsynced. A
        // delivery sent from a routing outcome that a crash then loses would
        // be routed and sent again (with other plugin state), so in `flush`
        // mode the schedule is read after a group fsync that covers every
        // write applied so far (shared with the ingest path's fsyncs).
        self.durable().await?;
        let name = target.to_string();
        self.read(move |s| s.due(&name, now_ms, limit)).await
    }

    async fn upcoming(&self, target: &str, limit: usize) -> Result<Vec<(u64, String)>> {
        let target = target.to_string();
        self.read(move |s| s.due(&target, u64::MAX, limit)).await
    }

    async fn delivery(&self, id: &str) -> Result<Option<Delivery>> {
        let id = id.to_string();
        self.read(move |s| s.delivery(&id)).await
    }

    async fn event(&self, id: &str) -> Result<Option<Event>> {
        let id = id.to_string();
        self.read(move |s| s.event(&id)).await
    }

    async fn record_attempt(
        &self,
        delivery: &Delivery,
        attempt: &Attempt,
        old_due: u64,
        new_due: Option<u64>,
    ) -> Result<Recorded> {
        answered(
            self.inner()?
                .record_attempt(delivery, attempt, old_due, new_due)
                .answer()
                .await?,
        )?;
        Ok(Recorded::Done)
    }

    async fn reschedule(&self, delivery_id: &str, due_ms: u64) -> Result<Rescheduled> {
        Ok(
            match self
                .inner()?
                .reschedule(delivery_id, due_ms)
                .value()
                .await?
            {
                Some(before) => Rescheduled::Done(Box::new(before)),
                None => Rescheduled::Missing,
            },
        )
    }

    async fn unschedule(&self, target: &str, delivery_id: &str, due_ms: u64) -> Result<()> {
        self.inner()?
            .unschedule(target, delivery_id, due_ms)
            .done()
            .await
    }

    async fn scheduled_per_target(&self) -> Result<BTreeMap<String, usize>> {
        self.read(|s| s.scheduled_per_target()).await
    }

    async fn dead_per_target(&self) -> Result<BTreeMap<String, usize>> {
        self.read(|s| s.dead_per_target()).await
    }
}

#[async_trait]
impl super::TargetStates for SledStore {
    async fn target_control(&self, target: &str) -> Result<Option<Vec<u8>>> {
        let target = target.to_string();
        self.read(move |s| s.target_control(&target)).await
    }

    async fn set_target_control(&self, target: &str, value: &[u8]) -> Result<()> {
        self.inner()?.set_target_control(target, value).done().await
    }

    /// One process: every target is this one's.
    async fn own_targets(
        &self,
        targets: &[String],
        _release: &[String],
        _lease: std::time::Duration,
    ) -> Result<super::Owned> {
        Ok(super::Owned {
            mine: targets.to_vec(),
            surplus: 0,
        })
    }
}

#[async_trait]
impl super::Records for SledStore {
    async fn event(&self, id: &str) -> Result<Option<Event>> {
        let id = id.to_string();
        self.read(move |s| s.event(&id)).await
    }

    async fn outcome(&self, event_id: &str) -> Result<Option<Outcome>> {
        let id = event_id.to_string();
        self.read(move |s| s.outcome(&id)).await
    }

    async fn route_note(&self, event_id: &str) -> Result<Option<String>> {
        let id = event_id.to_string();
        self.read(move |s| s.route_note(&id)).await
    }

    async fn delivery(&self, id: &str) -> Result<Option<Delivery>> {
        let id = id.to_string();
        self.read(move |s| s.delivery(&id)).await
    }

    async fn attempts(&self, delivery_id: &str) -> Result<Vec<Attempt>> {
        let id = delivery_id.to_string();
        self.read(move |s| s.attempts(&id)).await
    }

    async fn deliveries_of_event(
        &self,
        event_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<Delivery>> {
        let (id, after) = (event_id.to_string(), after.map(str::to_string));
        self.read(move |s| s.deliveries_of_event(&id, after.as_deref(), limit))
            .await
    }

    async fn list_events(&self, q: &EventQuery) -> Result<Page<EventSummary>> {
        let q = q.clone();
        self.read(move |s| s.list_events(&q)).await
    }

    async fn list_deliveries(&self, q: &DeliveryQuery) -> Result<Page<Delivery>> {
        let q = q.clone();
        self.read(move |s| s.list_deliveries(&q)).await
    }
}

#[async_trait]
impl super::Upkeep for SledStore {
    async fn sweep_before(
        &self,
        cutoff_ms: u64,
        max_events: usize,
        after: Option<&str>,
    ) -> Result<Swept> {
        let after = after.map(str::to_string);
        self.upkeep(move |s| s.sweep_before(cutoff_ms, max_events, after.as_deref()))
            .await
    }

    async fn sweep_idempotency(&self, now_ms: u64, limit: usize) -> Result<usize> {
        self.upkeep(move |s| s.sweep_idempotency(now_ms, limit))
            .await
    }

    async fn collect_garbage(&self) -> Result<usize> {
        self.upkeep(|s| s.collect_garbage()).await
    }

    async fn flush(&self) -> Result<()> {
        self.upkeep(|s| s.flush()).await
    }

    fn size_on_disk(&self) -> u64 {
        self.inner().map_or(0, |s| s.size_on_disk())
    }

    /// Enough free space, and the writer thread answers a no-op in order
    /// with every write.
    async fn ready(&self) -> Result<()> {
        self.shared.space.admit()?;
        self.inner()?
            .writer
            .check(|_| Ok((Writes::default(), ())))
            .value()
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::records::*;
    use crate::plugin::kv::KvRefused;

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
            version: None,
            content_encoding: None,
            received_body: None,
        }
    }

    fn delivery(id: &str, body: Option<Vec<u8>>) -> Delivery {
        Delivery {
            id: id.into(),
            event_id: "evt_1".into(),
            target: "t".into(),
            origin: crate::model::records::Origin::Passthrough,
            headers: vec![],
            created_at: 1,
            status: DeliveryStatus::Scheduled,
            attempts: 0,
            next_attempt_at: Some(10),
            last_error: None,
            body,
            refused_headers: vec![],
        }
    }

    #[test]
    fn event_round_trips_and_is_marked_to_route() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sled::open(dir.path(), Engine::Sled).unwrap();
        s.insert_event(&event("evt_1")).wait().unwrap();
        assert_eq!(s.event("evt_1").unwrap().unwrap(), event("evt_1"));
        assert_eq!(
            s.to_route_after(None, 10).unwrap(),
            vec![ToRoute {
                id: "evt_1".into(),
                parked: false
            }]
        );
    }

    /// A power cut after sled's sync but before the body log's: sled
    /// holds events whose bodies are gone. Reopening removes them, their
    /// marks and their idempotency keys (a retry is stored afresh), and
    /// keeps the segment's live count right; an event whose body is whole
    /// stays.
    #[test]
    fn unrouted_events_whose_bodies_a_power_cut_lost_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let segment = dir.path().join("bodies").join(format!("{:016x}.log", 0));
        let kept_len = {
            let s = Sled::open(dir.path(), Engine::Sled).unwrap();
            s.insert_event_once(&event("evt_kept"), "key-kept", u64::MAX)
                .wait()
                .unwrap();
            s.flush().unwrap();
            let kept_len = std::fs::metadata(&segment).unwrap().len();
            s.insert_event_once(&event("evt_lost"), "key-lost", u64::MAX)
                .wait()
                .unwrap();
            s.insert_event(&event("evt_lost_too")).wait().unwrap();
            s.flush().unwrap();
            kept_len
        };
        // The body log loses what came after the first flush.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&segment)
            .unwrap()
            .set_len(kept_len)
            .unwrap();
        let s = Sled::open(dir.path(), Engine::Sled).unwrap();
        assert_eq!(s.event("evt_kept").unwrap().unwrap(), event("evt_kept"));
        assert!(s.event("evt_lost").unwrap().is_none());
        assert!(s.event("evt_lost_too").unwrap().is_none());
        let marks: Vec<String> = s
            .to_route_after(None, 10)
            .unwrap()
            .into_iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(marks, vec!["evt_kept".to_string()]);
        let mut again = event("evt_retry");
        again.received_at = 2;
        assert_eq!(
            s.insert_event_once(&again, "key-lost", u64::MAX)
                .wait_outcome()
                .unwrap(),
            None,
            "the lost event's idempotency key went with it"
        );
        assert_eq!(
            s.insert_event_once(&event("evt_dup"), "key-kept", u64::MAX)
                .wait_outcome()
                .unwrap(),
            Some("evt_kept".to_string())
        );
        let live = s
            .tree
            .get(key(LIVE, &[&0u64.to_be_bytes()]))
            .unwrap()
            .map(|v| i64::from_be_bytes(v[..8].try_into().unwrap()));
        assert_eq!(live, Some(2), "evt_kept and evt_retry");
    }

    #[test]
    fn outcome_creates_scheduled_deliveries_and_clears_mark() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sled::open(dir.path(), Engine::Sled).unwrap();
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
        s.record_outcome("evt_1", &outcome, &ds, 10, vec![])
            .wait()
            .unwrap();
        assert!(s.to_route_after(None, 10).unwrap().is_empty());
        let page = s.deliveries_of_event("evt_1", None, 1).unwrap();
        assert_eq!(page.items.len(), 1);
        let rest = s
            .deliveries_of_event("evt_1", page.next_cursor.as_deref(), 10)
            .unwrap();
        assert_eq!((rest.items.len(), rest.next_cursor), (1, None));
        assert_eq!(
            s.delivery("dlv_b").unwrap().unwrap().body,
            Some(b"new".to_vec())
        );
        assert_eq!(s.delivery("dlv_a").unwrap().unwrap().body, None);
        assert!(s.due("t", 9, 10).unwrap().is_empty());
        let due = s.due("t", 10, 10).unwrap();
        assert_eq!(
            due,
            vec![(10, "dlv_a".to_string()), (10, "dlv_b".to_string())]
        );
        assert_eq!(
            s.due("t", u64::MAX, 1).unwrap(),
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
        assert_eq!(s.due("t", 49, 10).unwrap().len(), 1); // dlv_a only
        assert_eq!(s.due("t", 50, 10).unwrap().len(), 2);
        assert_eq!(s.attempts("dlv_b").unwrap(), vec![attempt]);
    }

    #[test]
    fn a_scan_starts_past_delivered_entries_yet_finds_one_scheduled_earlier() {
        for engine in Engine::ALL {
            let dir = tempfile::tempdir().unwrap();
            let s = Sled::open(dir.path(), engine).unwrap();
            s.insert_event(&event("evt_1")).wait().unwrap();
            let ids: Vec<String> = (0..200).map(|i| format!("dlv_{i:04}")).collect();
            let ds: Vec<Delivery> = ids.iter().map(|id| delivery(id, None)).collect();
            let outcome = Outcome {
                status: EventStatus::Routed,
                routed_at: 2,
                plugins: vec![],
                deliveries: ids.iter().map(|i| i.as_str().into()).collect(),
            };
            s.record_outcome("evt_1", &outcome, &ds, 10, vec![])
                .wait()
                .unwrap();
            for (i, id) in ids.iter().enumerate() {
                s.reschedule(id, 100 + i as u64).wait_value().unwrap();
            }
            // Delivered one by one, each scan reading the head: the floor
            // follows the head past the removed entries.
            for (i, id) in ids.iter().enumerate().take(198) {
                let due = 100 + i as u64;
                assert_eq!(s.due("t", due, 1).unwrap(), vec![(due, id.clone())]);
                s.unschedule("t", id, due).wait().unwrap();
            }
            assert_eq!(s.floors.seen("t").due, 297, "{engine:?}");
            // A routing that read the clock before those scans writes an
            // entry below the floor: it is found all the same.
            s.reschedule("dlv_0199", 5).wait_value().unwrap();
            assert_eq!(
                s.due("t", u64::MAX, 10).unwrap(),
                vec![(5, "dlv_0199".to_string()), (298, "dlv_0198".to_string())],
                "{engine:?}"
            );
            // Nothing due at all: the floor moves up to the scan's end, and
            // an entry written later below it is still found.
            s.unschedule("t", "dlv_0199", 5).wait().unwrap();
            s.unschedule("t", "dlv_0198", 298).wait().unwrap();
            assert!(s.due("t", 1_000, 10).unwrap().is_empty());
            s.reschedule("dlv_0003", 7).wait_value().unwrap();
            assert_eq!(
                s.due("t", 1_000, 10).unwrap(),
                vec![(7, "dlv_0003".to_string())],
                "{engine:?}"
            );
        }
    }

    #[test]
    fn idempotency_keys_dedup_until_they_expire() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sled::open(dir.path(), Engine::Sled).unwrap();
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
    fn replay_marks_only_stored_finished_events() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sled::open(dir.path(), Engine::Sled).unwrap();
        assert_eq!(
            s.mark_to_route("evt_1").wait_value().unwrap(),
            Mark::NoEvent
        );
        s.insert_event(&event("evt_1")).wait().unwrap();
        assert_eq!(
            s.mark_to_route("evt_1").wait_value().unwrap(),
            Mark::AlreadyPending
        );
        s.set_route_note("evt_1", "waiting").wait().unwrap();
        assert_eq!(
            s.to_route_after(None, 10).unwrap(),
            vec![ToRoute {
                id: "evt_1".into(),
                parked: true
            }]
        );
        let outcome = Outcome {
            status: EventStatus::Dropped,
            routed_at: 2,
            plugins: vec![],
            deliveries: vec![],
        };
        s.record_outcome("evt_1", &outcome, &[], 2, vec![])
            .wait()
            .unwrap();
        // A note for a finished event is not written.
        s.set_route_note("evt_1", "late").wait().unwrap();
        assert_eq!(s.route_note("evt_1").unwrap(), None);
        assert_eq!(s.mark_to_route("evt_1").wait_value().unwrap(), Mark::Marked);
        assert_eq!(s.to_route_after(Some("evt_1"), 10).unwrap(), vec![]);
    }

    #[test]
    fn a_sweep_keeps_an_event_marked_after_its_scan() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sled::open(dir.path(), Engine::Sled).unwrap();
        let old = crate::model::id::lowest_at("evt", 1_000);
        let mut e = event(&old);
        e.received_at = 1_000;
        s.insert_event(&e).wait().unwrap();
        let outcome = Outcome {
            status: EventStatus::Dropped,
            routed_at: 2,
            plugins: vec![],
            deliveries: vec![],
        };
        s.record_outcome(&old, &outcome, &[], 2, vec![])
            .wait()
            .unwrap();
        // Replayed: the sweep, which decides on the writer thread, keeps it.
        assert_eq!(s.mark_to_route(&old).wait_value().unwrap(), Mark::Marked);
        let swept = s.sweep_before(10_000, 100, None).unwrap();
        assert_eq!((swept.events, swept.kept), (0, 1));
        assert!(s.event(&old).unwrap().is_some());
        s.record_outcome(&old, &outcome, &[], 3, vec![])
            .wait()
            .unwrap();
        let swept = s.sweep_before(10_000, 100, None).unwrap();
        assert_eq!((swept.events, swept.kept), (1, 0));
        assert!(s.event(&old).unwrap().is_none());
        assert_eq!(s.mark_to_route(&old).wait_value().unwrap(), Mark::NoEvent);
    }

    /// Bodies go to the body log; a segment the sweep emptied is deleted,
    /// the others stay readable.
    #[test]
    fn swept_bodies_free_their_segments() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sled::open(dir.path(), Engine::Sled).unwrap();
        // Two bodies fill a segment: segments 0 (e0, e1), 1 (e2, e3), 2 (e4).
        let big = vec![9u8; (bodies::SEGMENT_BYTES / 2 - 100) as usize];
        let mut ids = Vec::new();
        for at in [1_000u64, 2_000, 3_000, 50_000, 60_000] {
            let id = crate::model::id::lowest_at("evt", at);
            let mut e = event(&id);
            e.received_at = at;
            e.body = big.clone();
            s.insert_event(&e).wait().unwrap();
            let outcome = Outcome {
                status: EventStatus::Dropped,
                routed_at: at,
                plugins: vec![],
                deliveries: vec![],
            };
            s.record_outcome(&id, &outcome, &[], at, vec![])
                .wait()
                .unwrap();
            ids.push(id);
        }
        assert_eq!(s.bodies.segments(), vec![0, 1, 2]);
        // e0, e1 and e2 are old: segment 0 is empty, segment 1 keeps e3.
        let swept = s.sweep_before(10_000, 100, None).unwrap();
        assert_eq!(swept.events, 3, "{swept:?}");
        assert_eq!(s.collect_garbage().unwrap(), 1);
        assert_eq!(s.bodies.segments(), vec![1, 2]);
        assert_eq!(s.event(&ids[3]).unwrap().unwrap().body, big);
        assert!(s.event(&ids[0]).unwrap().is_none());
        // Reopened, the counts are where they were: sweeping e3 frees 1.
        drop(s);
        let s = Sled::open(dir.path(), Engine::Sled).unwrap();
        assert_eq!(s.event(&ids[4]).unwrap().unwrap().body, big);
        assert_eq!(s.sweep_before(55_000, 100, None).unwrap().events, 1);
        assert_eq!(s.collect_garbage().unwrap(), 1);
        assert_eq!(s.bodies.segments(), vec![2]);
    }

    fn txn(
        plugin: &str,
        reads: &[(&str, Option<&[u8]>)],
        writes: &[(&str, Option<&[u8]>)],
        max_keys: usize,
    ) -> PluginTxn {
        PluginTxn {
            plugin: plugin.into(),
            max_keys,
            turn: None,
            txn: KvTxn {
                reads: reads
                    .iter()
                    .map(|(k, v)| (k.to_string(), crate::plugin::kv::digest(*v)))
                    .collect(),
                writes: writes
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.map(<[u8]>::to_vec)))
                    .collect(),
                token: None,
            },
        }
    }

    fn dropped() -> Outcome {
        Outcome {
            status: EventStatus::Dropped,
            routed_at: 2,
            plugins: vec![],
            deliveries: vec![],
        }
    }

    fn commit(s: &Sled, id: &str, kv: Vec<PluginTxn>) -> Answer {
        s.record_outcome(id, &dropped(), &[], 2, kv)
            .wait_answer()
            .unwrap()
    }

    #[test]
    fn kv_writes_commit_with_the_outcome_only_if_what_was_read_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sled::open(dir.path(), Engine::Sled).unwrap();
        s.insert_event(&event("evt_1")).wait().unwrap();
        s.insert_event(&event("evt_2")).wait().unwrap();
        let first = txn("p", &[("n", None)], &[("n", Some(b"1"))], 10);
        assert!(matches!(commit(&s, "evt_1", vec![first]), Answer::Done));
        assert_eq!(s.kv_get("p", "n").unwrap(), Some(b"1".to_vec()));
        // evt_2 read "absent" too: refused, nothing of it written, still
        // to be routed.
        let stale = txn("p", &[("n", None)], &[("n", Some(b"1"))], 10);
        match commit(&s, "evt_2", vec![stale]) {
            Answer::Refused(KvRefused::Conflict { plugin, key }) => {
                assert_eq!((plugin.as_str(), key.as_str()), ("p", "n"))
            }
            other => panic!("{other:?}"),
        }
        assert!(s.outcome("evt_2").unwrap().is_none());
        assert_eq!(s.to_route_after(None, 10).unwrap().len(), 1);
        // Run again on fresh state: commits.
        let fresh = txn("p", &[("n", Some(b"1"))], &[("n", Some(b"2"))], 10);
        assert!(matches!(commit(&s, "evt_2", vec![fresh]), Answer::Done));
        assert_eq!(s.kv_get("p", "n").unwrap(), Some(b"2".to_vec()));
        assert!(s.to_route_after(None, 10).unwrap().is_empty());
    }

    #[test]
    fn kv_checks_see_writes_earlier_in_the_same_group() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sled::open(dir.path(), Engine::Sled).unwrap();
        for i in 0..20 {
            s.insert_event(&event(&format!("evt_{i:02}")))
                .wait()
                .unwrap();
        }
        // Twenty commits of "read absent, write 1", submitted back to back
        // (mostly one group): exactly one wins.
        let pending: Vec<Written> = (0..20)
            .map(|i| {
                s.record_outcome(
                    &format!("evt_{i:02}"),
                    &dropped(),
                    &[],
                    2,
                    vec![txn("p", &[("n", None)], &[("n", Some(b"1"))], 10)],
                )
            })
            .collect();
        let answers: Vec<Answer> = pending
            .into_iter()
            .map(|w| w.wait_answer().unwrap())
            .collect();
        let done = answers.iter().filter(|a| matches!(a, Answer::Done)).count();
        let refused = answers
            .iter()
            .filter(|a| matches!(a, Answer::Refused(KvRefused::Conflict { .. })))
            .count();
        assert_eq!((done, refused), (1, 19));
        assert_eq!(s.kv_get("p", "n").unwrap(), Some(b"1".to_vec()));
        assert_eq!(s.to_route_after(None, 100).unwrap().len(), 19);
    }

    #[test]
    fn kv_key_limits_hold_per_plugin() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sled::open(dir.path(), Engine::Sled).unwrap();
        for i in 0..3 {
            s.insert_event(&event(&format!("evt_{i}"))).wait().unwrap();
        }
        let two = txn("p", &[], &[("a", Some(b"1")), ("b", Some(b"1"))], 2);
        assert!(matches!(commit(&s, "evt_0", vec![two]), Answer::Done));
        let third = txn("p", &[], &[("c", Some(b"1"))], 2);
        assert!(matches!(
            commit(&s, "evt_1", vec![third]),
            Answer::Refused(KvRefused::Full { limit: 2, .. })
        ));
        // Replacing one and deleting one stays within the limit.
        let swap = txn("p", &[], &[("a", None), ("c", Some(b"1"))], 2);
        assert!(matches!(commit(&s, "evt_1", vec![swap]), Answer::Done));
        // Another plugin has its own count.
        let other = txn("q", &[], &[("a", Some(b"1"))], 2);
        assert!(matches!(commit(&s, "evt_2", vec![other]), Answer::Done));
    }

    #[test]
    fn kv_is_private_per_plugin_listed_in_pages_and_deletable() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sled::open(dir.path(), Engine::Sled).unwrap();
        s.insert_event(&event("evt_1")).wait().unwrap();
        let keys: Vec<(String, Option<Vec<u8>>)> = (0..5)
            .map(|i| (format!("count:{i}"), Some(vec![b'x'; i + 1])))
            .chain([("other".to_string(), Some(b"o".to_vec()))])
            .collect();
        let t = PluginTxn {
            plugin: "a".into(),
            max_keys: 100,
            turn: None,
            txn: KvTxn {
                reads: Default::default(),
                writes: keys.into_iter().collect(),
                token: None,
            },
        };
        assert!(matches!(commit(&s, "evt_1", vec![t]), Answer::Done));
        assert_eq!(s.kv_get("a", "count:0").unwrap(), Some(b"x".to_vec()));
        assert_eq!(s.kv_get("b", "count:0").unwrap(), None);
        let p1 = s.kv_list("a", "count:", None, 3).unwrap();
        assert_eq!(
            p1.items,
            vec![
                ("count:0".to_string(), 1),
                ("count:1".to_string(), 2),
                ("count:2".to_string(), 3)
            ]
        );
        let p2 = s
            .kv_list("a", "count:", p1.next_cursor.as_deref(), 3)
            .unwrap();
        assert_eq!(p2.items.len(), 2);
        assert_eq!(p2.next_cursor, None);
        assert_eq!(s.kv_list("a", "", None, 100).unwrap().items.len(), 6);
        assert!(s.kv_list("b", "", None, 100).unwrap().items.is_empty());
        assert!(s.kv_delete("a", "count:0").wait_value().unwrap());
        assert!(!s.kv_delete("a", "count:0").wait_value().unwrap());
        assert_eq!(s.kv_get("a", "count:0").unwrap(), None);
    }
}
