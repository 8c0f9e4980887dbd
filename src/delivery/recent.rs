//! Events just routed, and their deliveries' records, kept in memory for
//! the deliveries' first attempts.
//!
//! An attempt needs its delivery's record and its event (the body of a
//! passthrough delivery, the `Content-Type` and version of every
//! delivery); reading them back meant two store reads per attempt (on
//! PostgreSQL, two statements' share; on sled, two hops to the read
//! threads and a body-log `pread`), right after routing had both in hand.
//! Events never change once stored, so a copy is as good as the store's.
//! A delivery's record can change before its first attempt (an operator's
//! retry moves it to a new due time), so its copy is used only for the
//! schedule entry it was routed with: the due time must match, as the
//! dispatcher checks a record read from the store; any other entry reads
//! the store. Bounded in bytes and entries: past either, the oldest go,
//! and their attempts read the store as before (a paused target's
//! deliveries, a retry days later).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::model::records::{Delivery, Event};

/// Most bytes of events and delivery records kept.
const MAX_BYTES: usize = 4 * 1024 * 1024;
/// Most events kept (and ids remembered in arrival order).
const MAX_ENTRIES: usize = 16 * 1024;

#[derive(Default)]
pub struct RecentEvents {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    events: HashMap<String, Kept>,
    /// Delivery records not taken yet, by delivery id; each belongs to a
    /// kept event and goes with it.
    deliveries: HashMap<String, Delivery>,
    /// Ids in the order kept; some already taken (skipped when evicting).
    order: VecDeque<String>,
    bytes: usize,
}

struct Kept {
    event: Arc<Event>,
    /// How many of its deliveries have not taken it yet.
    left: usize,
    /// Its deliveries' ids whose records may still be kept.
    deliveries: Vec<String>,
    /// What it and its kept records count against `MAX_BYTES`.
    bytes: usize,
}

impl Inner {
    /// Lets an event go with its records not taken.
    fn release(&mut self, kept: Kept) {
        self.bytes -= kept.bytes;
        for id in &kept.deliveries {
            self.deliveries.remove(id);
        }
    }
}

impl RecentEvents {
    /// Keeps `event` and `deliveries` for their first attempts. Called
    /// before their commit, so no attempt can come first and find nothing:
    /// such an attempt would read the store, and the copy left behind
    /// could then serve a stale scan's entry for the same due time, a
    /// second send. A copy whose commit failed is never asked for (no
    /// schedule entry has its id) and goes with the bounds.
    pub fn remember(&self, event: &Arc<Event>, deliveries: &[Delivery]) {
        let bytes =
            event.memory_size() + deliveries.iter().map(Delivery::memory_size).sum::<usize>();
        if deliveries.is_empty() || bytes > MAX_BYTES / 4 {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let id = event.id.to_string();
        let kept = Kept {
            event: event.clone(),
            left: deliveries.len(),
            deliveries: deliveries.iter().map(|d| d.id.to_string()).collect(),
            bytes,
        };
        inner.bytes += bytes;
        for d in deliveries {
            inner.deliveries.insert(d.id.to_string(), d.clone());
        }
        match inner.events.insert(id.clone(), kept) {
            // Routed again (a replay): the same event, in the order once;
            // the earlier routing's records not taken go.
            Some(before) => inner.release(before),
            None => inner.order.push_back(id),
        }
        while inner.bytes > MAX_BYTES || inner.order.len() > MAX_ENTRIES {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            if let Some(kept) = inner.events.remove(&oldest) {
                inner.release(kept);
            }
        }
        // Taken ids at the front cost nothing to drop now.
        while let Some(front) = inner.order.front() {
            if inner.events.contains_key(front) {
                break;
            }
            inner.order.pop_front();
        }
    }

    /// The record of delivery `id` as routing stored it, for its attempt
    /// due at `due_ms`: only if that is the due time it was stored with
    /// (otherwise something moved it since, and the store has what is
    /// true). Taken either way: a second attempt reads the store.
    pub fn take_delivery(&self, id: &str, due_ms: u64) -> Option<Delivery> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let delivery = inner.deliveries.remove(id)?;
        let size = delivery.memory_size();
        inner.bytes -= size;
        if let Some(kept) = inner.events.get_mut(delivery.event_id.as_str()) {
            kept.bytes -= size;
        }
        (delivery.next_attempt_at == Some(due_ms)).then_some(delivery)
    }

    /// The event for one of its deliveries' attempts, if still kept.
    pub fn take(&self, event_id: &str) -> Option<Arc<Event>> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let kept = inner.events.get_mut(event_id)?;
        let event = kept.event.clone();
        kept.left -= 1;
        if kept.left == 0
            && let Some(kept) = inner.events.remove(event_id)
        {
            inner.release(kept);
        }
        Some(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::id::EventId;
    use crate::model::records::Origin;
    use crate::routing::new_delivery;

    fn event(body: usize) -> Arc<Event> {
        Arc::new(Event {
            id: EventId::generate(),
            source: "s".into(),
            received_at: 0,
            method: "POST".into(),
            path: "/hooks/s".into(),
            query: String::new(),
            headers: vec![],
            body: vec![b'x'; body],
            content_encoding: None,
            received_body: None,
            version: None,
        })
    }

    /// `n` records of `e` as routing makes them, due at `due`.
    fn deliveries(e: &Event, n: usize, due: u64) -> Vec<Delivery> {
        (0..n)
            .map(|_| {
                let origin = Origin::Plugin("p".into());
                new_delivery(e, "t", origin, vec![], Some(b"changed".to_vec()), due)
            })
            .collect()
    }

    #[test]
    fn an_event_serves_each_of_its_deliveries_once_then_is_let_go() {
        let recent = RecentEvents::default();
        let e = event(10);
        recent.remember(&e, &deliveries(&e, 2, 5));
        let id = e.id.to_string();
        assert!(recent.take(&id).is_some());
        assert!(recent.take(&id).is_some());
        assert!(recent.take(&id).is_none(), "two deliveries, two takes");
        let inner = recent.inner.lock().unwrap();
        assert_eq!(inner.bytes, 0);
        assert!(inner.deliveries.is_empty(), "records go with their event");
    }

    #[test]
    fn a_record_serves_only_the_entry_it_was_stored_with_and_only_once() {
        let recent = RecentEvents::default();
        let e = event(10);
        let ds = deliveries(&e, 2, 5);
        recent.remember(&e, &ds);
        let got = recent.take_delivery(&ds[0].id, 5).expect("kept");
        assert_eq!(got, ds[0]);
        assert!(recent.take_delivery(&ds[0].id, 5).is_none(), "taken once");
        // Moved since it was routed (an operator's retry): the store says.
        assert!(recent.take_delivery(&ds[1].id, 9).is_none());
        assert!(
            recent.take_delivery(&ds[1].id, 5).is_none(),
            "and it is gone"
        );
        let inner = recent.inner.lock().unwrap();
        assert_eq!(inner.bytes, e.memory_size(), "only the event is left");
    }

    #[test]
    fn a_replay_replaces_the_earlier_routings_records() {
        let recent = RecentEvents::default();
        let e = event(10);
        let first = deliveries(&e, 1, 5);
        recent.remember(&e, &first);
        let again = deliveries(&e, 1, 7);
        recent.remember(&e, &again);
        assert!(recent.take_delivery(&first[0].id, 5).is_none());
        assert!(recent.take_delivery(&again[0].id, 7).is_some());
        assert!(recent.take(e.id.as_str()).is_some());
        let inner = recent.inner.lock().unwrap();
        assert_eq!(inner.bytes, 0);
        assert!(inner.order.len() <= 1);
    }

    #[test]
    fn memory_stays_bounded_whatever_is_never_taken() {
        let recent = RecentEvents::default();
        // Deliveries that never run (a paused target): 64 MiB offered.
        for _ in 0..256 {
            let e = event(256 * 1024);
            recent.remember(&e, &deliveries(&e, 1, 0));
        }
        for _ in 0..(MAX_ENTRIES * 2) {
            let e = event(1);
            recent.remember(&e, &deliveries(&e, 3, 0));
        }
        let inner = recent.inner.lock().unwrap();
        assert!(inner.bytes <= MAX_BYTES, "{} bytes kept", inner.bytes);
        assert!(inner.order.len() <= MAX_ENTRIES);
        assert!(inner.events.len() <= MAX_ENTRIES);
        assert!(inner.deliveries.len() <= 3 * MAX_ENTRIES);
        let counted: usize = inner.events.values().map(|k| k.bytes).sum();
        assert_eq!(
            counted, inner.bytes,
            "every byte counted belongs to a kept event"
        );
    }
}
