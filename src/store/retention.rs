//! Retention: forgetting old events with their outcome, deliveries and
//! attempts, a small batch at a time so ingestion never waits on a sweep.
//!
//! An event is only swept once nothing about it is unfinished: not waiting
//! to be routed, no delivery still scheduled, and no delivery (a replay's)
//! younger than the cutoff. Idempotency keys and plugin KV have their own
//! expiry and are not touched.

use anyhow::Result;
use serde::Serialize;

use super::{
    ATTEMPT, DEAD, DELIVERY, EVENT, EVENT_DELIVERY, OUTCOME, SledStore, TO_ROUTE, decode_delivery,
    key,
};
use crate::id::lowest_at;
use crate::records::DeliveryStatus;

/// What one sweep batch removed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Swept {
    pub events: usize,
    pub deliveries: usize,
    pub attempts: usize,
    /// Old events kept because something about them is unfinished.
    pub kept: usize,
    /// Where the next batch continues; `None` when the old range is done.
    pub next: Option<String>,
}

pub(super) fn sweep(
    store: &SledStore,
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
    let mut out = Swept::default();
    let mut batch = sled::Batch::default();
    let mut scanned = 0;
    for k in store.tree.range(lower..upper).keys() {
        let k = k?;
        let id = String::from_utf8_lossy(&k[1..]).into_owned();
        scanned += 1;
        out.next = Some(id.clone());
        if sweep_one(store, &id, cutoff_ms, &mut batch, &mut out)? {
            out.events += 1;
        } else {
            out.kept += 1;
        }
        if out.events >= max_events || scanned >= max_events * 4 {
            store.tree.apply_batch(batch)?;
            return Ok(out);
        }
    }
    store.tree.apply_batch(batch)?;
    out.next = None;
    Ok(out)
}

/// Adds the removal of one event and everything hanging off it to `batch`,
/// unless something about it is unfinished.
fn sweep_one(
    store: &SledStore,
    id: &str,
    cutoff_ms: u64,
    batch: &mut sled::Batch,
    out: &mut Swept,
) -> Result<bool> {
    if store.tree.contains_key(key(TO_ROUTE, &[id.as_bytes()]))? {
        return Ok(false);
    }
    let x_prefix = key(EVENT_DELIVERY, &[id.as_bytes(), b"/"]);
    let mut links = Vec::new();
    for k in store.tree.scan_prefix(&x_prefix).keys() {
        let k = k?;
        let did = String::from_utf8_lossy(&k[x_prefix.len()..]).into_owned();
        if let Some(v) = store.tree.get(key(DELIVERY, &[did.as_bytes()]))? {
            let d = decode_delivery(&v)?;
            if d.status == DeliveryStatus::Scheduled || d.created_at >= cutoff_ms {
                return Ok(false);
            }
        }
        links.push((k, did));
    }
    let mut attempts = 0;
    for (link, did) in &links {
        batch.remove(link.clone());
        batch.remove(key(DELIVERY, &[did.as_bytes()]));
        batch.remove(key(DEAD, &[did.as_bytes()]));
        for a in store
            .tree
            .scan_prefix(key(ATTEMPT, &[did.as_bytes(), b"/"]))
            .keys()
        {
            batch.remove(a?);
            attempts += 1;
        }
    }
    batch.remove(key(EVENT, &[id.as_bytes()]));
    batch.remove(key(OUTCOME, &[id.as_bytes()]));
    out.deliveries += links.len();
    out.attempts += attempts;
    Ok(true)
}
