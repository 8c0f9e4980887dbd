//! Retention: forgetting old events with their outcome, deliveries and
//! attempts, a small batch at a time so ingestion never waits on a sweep.
//!
//! An event is only swept once nothing about it is unfinished: not waiting
//! to be routed, no delivery still scheduled, and no delivery (a replay's)
//! younger than the cutoff. Idempotency keys and plugin KV have their own
//! expiry and are not touched.

use crate::store::Swept;

use anyhow::Result;

use super::bodies::BodyRef;
use super::engine::Tree;
use super::layout::{
    DEAD, DELIVERY, DELIVERY_BODY, EVENT, OUTCOME, TO_ROUTE, attempts_prefix,
    event_deliveries_prefix, key,
};
use super::writer::Writes;
use super::{Sled, StoredBody, decode_delivery, decode_event_value};
use crate::model::id::lowest_at;
use crate::model::records::DeliveryStatus;

/// Picks the next `max_events` old events by key alone, then decides and
/// removes them on the store's writer thread: a replay or a retry that
/// lands between the scan and the removal is seen there, so a sweep never
/// leaves deliveries whose event is gone.
pub(super) fn sweep(
    store: &Sled,
    cutoff_ms: u64,
    max_events: usize,
    after: Option<&str>,
) -> Result<Swept> {
    let mut lower = key(EVENT, &[after.unwrap_or("").as_bytes()]);
    if after.is_some() {
        lower.push(0); // exclusive
    }
    let upper = key(EVENT, &[lowest_at("evt", cutoff_ms).as_bytes()]);
    if lower >= upper {
        return Ok(Swept::default());
    }
    let mut ids = Vec::with_capacity(max_events);
    let mut keys = store.tree.range(lower..upper).keys();
    for k in keys.by_ref() {
        ids.push(String::from_utf8_lossy(&k?[1..]).into_owned());
        if ids.len() >= max_events {
            break;
        }
    }
    let more = keys.next().is_some();
    let next = if more { ids.last().cloned() } else { None };
    let mut out = store
        .writer
        .check(move |tree| {
            let mut w = Writes::default();
            let mut out = Swept::default();
            for id in &ids {
                if sweep_one(tree, id, cutoff_ms, &mut w, &mut out)? {
                    out.events += 1;
                } else {
                    out.kept += 1;
                }
            }
            Ok((w, out))
        })
        .wait_value()?;
    out.next = next;
    Ok(out)
}

/// Adds the removal of one event and everything hanging off it to `w`,
/// unless something about it is unfinished.
fn sweep_one(
    tree: &Tree,
    id: &str,
    cutoff_ms: u64,
    w: &mut Writes,
    out: &mut Swept,
) -> Result<bool> {
    if tree.contains_key(key(TO_ROUTE, &[id.as_bytes()]))? {
        return Ok(false);
    }
    let x_prefix = event_deliveries_prefix(id);
    let mut links = Vec::new();
    for k in tree.scan_prefix(&x_prefix).keys() {
        let k = k?;
        let did = String::from_utf8_lossy(&k[x_prefix.len()..]).into_owned();
        let mut dead_for = None;
        if let Some(v) = tree.get(key(DELIVERY, &[did.as_bytes()]))? {
            let d = decode_delivery(&v)?;
            if d.status == DeliveryStatus::Scheduled || d.created_at >= cutoff_ms {
                return Ok(false);
            }
            if d.status == DeliveryStatus::Dead {
                dead_for = Some(d.target);
            }
        }
        links.push((k, did, dead_for));
    }
    let mut attempts = 0;
    for (link, did, dead_for) in links.iter() {
        w.remove(link.to_vec());
        w.remove(key(DELIVERY, &[did.as_bytes()]));
        w.remove(key(DEAD, &[did.as_bytes()]));
        let body = key(DELIVERY_BODY, &[did.as_bytes()]);
        if let Some(r) = tree.get(&body)? {
            w.release(BodyRef::decode(&r)?);
            w.remove(body);
        }
        if let Some(target) = dead_for {
            *out.dead.entry(target.clone()).or_insert(0) += 1;
        }
        for a in tree.scan_prefix(attempts_prefix(did)).keys() {
            w.remove(a?.to_vec());
            attempts += 1;
        }
    }
    let event = key(EVENT, &[id.as_bytes()]);
    if let Some(v) = tree.get(&event)?
        && let (_, StoredBody::Log(r, _)) = decode_event_value(&v)?
    {
        w.release(r);
    }
    w.remove(event);
    w.remove(key(OUTCOME, &[id.as_bytes()]));
    out.deliveries += links.len();
    out.attempts += attempts;
    Ok(true)
}
