//! Paged, filtered listings of events and deliveries for the admin API.
//!
//! Ids are time-ordered, so "newest first" is a reverse key scan and a time
//! range is a key range. A filter that matches rarely could scan the whole
//! store; each request scans at most [`SCAN_CAP`] records and hands back a
//! cursor, so an admin query never stalls the process.

use anyhow::Result;

use super::Sled;
use super::layout::{DEAD, DELIVERY, EVENT, OUTCOME, TO_ROUTE, event_deliveries_prefix, key};
use crate::model::id::lowest_at;
use crate::model::records::{Delivery, DeliveryStatus, EventState, Outcome};
use crate::store::{DeliveryQuery, EventQuery, EventSummary, Page};

/// Records examined per request at most.
pub const SCAN_CAP: usize = 5000;

/// Which part of an id range one page covers.
struct Window<'a> {
    since: Option<u64>,
    until: Option<u64>,
    cursor: Option<&'a str>,
    limit: usize,
}

/// Walks ids under `prefix` newest first, within `[since, until]` (ms,
/// decoded from the ids) and below `cursor`, calling `visit` until it has
/// `limit` matches or [`SCAN_CAP`] ids were seen.
fn scan_ids<T>(
    store: &Sled,
    prefix: &[u8],
    id_prefix: &str,
    w: Window<'_>,
    mut visit: impl FnMut(&str) -> Result<Option<T>>,
) -> Result<Page<T>> {
    let Window {
        since,
        until,
        cursor,
        limit,
    } = w;
    let with = |id: &str| {
        let mut k = prefix.to_vec();
        k.extend_from_slice(id.as_bytes());
        k
    };
    let lower = since.map_or_else(|| prefix.to_vec(), |s| with(&lowest_at(id_prefix, s)));
    let mut upper = match until {
        Some(u) => with(&lowest_at(id_prefix, u.saturating_add(1))),
        None => {
            let mut end = prefix.to_vec();
            end.push(0xff);
            end
        }
    };
    if let Some(c) = cursor {
        upper = upper.min(with(c));
    }
    let mut items = Vec::new();
    let mut scanned = 0;
    let mut last: Option<String> = None;
    let mut iter = store.tree.range(lower..upper).keys().rev();
    for k in iter.by_ref() {
        let k = k?;
        let id = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
        scanned += 1;
        if let Some(item) = visit(&id)? {
            items.push(item);
        }
        last = Some(id);
        if items.len() >= limit || scanned >= SCAN_CAP {
            break;
        }
    }
    // Only hand out a cursor when something is left to look at.
    let more = iter.next().is_some();
    Ok(Page {
        items,
        next_cursor: if more { last } else { None },
    })
}

pub(super) fn events(store: &Sled, q: &EventQuery) -> Result<Page<EventSummary>> {
    let prefix = [EVENT];
    scan_ids(
        store,
        &prefix,
        "evt",
        Window {
            since: q.since,
            until: q.until,
            cursor: q.cursor.as_deref(),
            limit: q.limit,
        },
        |id| {
            let Some((event, size)) = store.read_event(id, false)? else {
                return Ok(None);
            };
            if q.source.as_ref().is_some_and(|s| *s != event.source) {
                return Ok(None);
            }
            if q.version.is_some() && q.version != event.version {
                return Ok(None);
            }
            let status = if store.tree.contains_key(key(TO_ROUTE, &[id.as_bytes()]))? {
                EventState::Pending
            } else {
                match store.tree.get(key(OUTCOME, &[id.as_bytes()]))? {
                    Some(o) => serde_json::from_slice::<Outcome>(&o)?.status.into(),
                    None => EventState::Pending,
                }
            };
            if q.status.is_some_and(|s| s != status) {
                return Ok(None);
            }
            let deliveries = store
                .tree
                .scan_prefix(event_deliveries_prefix(id))
                .keys()
                .count();
            Ok(Some(EventSummary {
                id: id.into(),
                source: event.source,
                received_at: event.received_at,
                status,
                version: event.version,
                size,
                deliveries,
            }))
        },
    )
}

pub(super) fn deliveries(store: &Sled, q: &DeliveryQuery) -> Result<Page<Delivery>> {
    let want_status = q.status;
    // The narrowest index that answers the query.
    let prefix = match (&q.event, want_status) {
        (Some(e), _) => event_deliveries_prefix(e),
        (None, Some(DeliveryStatus::Dead)) => vec![DEAD],
        _ => vec![DELIVERY],
    };
    scan_ids(
        store,
        &prefix,
        "msg",
        Window {
            since: q.since,
            until: q.until,
            cursor: q.cursor.as_deref(),
            limit: q.limit,
        },
        |id| {
            let Some(v) = store.tree.get(key(DELIVERY, &[id.as_bytes()]))? else {
                return Ok(None);
            };
            let d = super::decode_delivery(&v)?;
            let keep = want_status.is_none_or(|s| s == d.status)
                && q.target.as_ref().is_none_or(|t| *t == d.target);
            Ok(keep.then_some(d))
        },
    )
}
