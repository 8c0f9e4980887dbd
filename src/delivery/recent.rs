//! Events just routed, kept in memory for their deliveries' first attempts.
//!
//! An attempt needs its event (the body of a passthrough delivery, the
//! `Content-Type` and version of every delivery); reading it back meant a
//! B-tree lookup and a body-log `pread` per attempt, right after routing
//! had it in hand. Events never change once stored, so a copy is as good as
//! the store's. Bounded in bytes and entries: past either, the oldest go,
//! and their attempts read the store as before (a paused target's
//! deliveries, a retry days later).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::model::records::Event;

/// Most bytes of events kept.
const MAX_BYTES: usize = 4 * 1024 * 1024;
/// Most events kept (and ids remembered in arrival order).
const MAX_ENTRIES: usize = 16 * 1024;

#[derive(Default)]
pub struct RecentEvents {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The event and how many of its deliveries have not taken it yet.
    events: HashMap<String, (Arc<Event>, usize)>,
    /// Ids in the order kept; some already taken (skipped when evicting).
    order: VecDeque<String>,
    bytes: usize,
}

impl RecentEvents {
    /// Keeps `event` for `uses` first attempts.
    pub fn remember(&self, event: &Arc<Event>, uses: usize) {
        let bytes = event.memory_size();
        if uses == 0 || bytes > MAX_BYTES / 4 {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let id = event.id.to_string();
        if inner
            .events
            .insert(id.clone(), (event.clone(), uses))
            .is_some()
        {
            return; // routed again (a replay): the same event, counted once
        }
        inner.bytes += bytes;
        inner.order.push_back(id);
        while inner.bytes > MAX_BYTES || inner.order.len() > MAX_ENTRIES {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            if let Some((e, _)) = inner.events.remove(&oldest) {
                inner.bytes -= e.memory_size();
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

    /// The event for one of its deliveries' attempts, if still kept.
    pub fn take(&self, event_id: &str) -> Option<Arc<Event>> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (event, left) = inner.events.get_mut(event_id)?;
        let event = event.clone();
        *left -= 1;
        if *left == 0 {
            inner.events.remove(event_id);
            inner.bytes -= event.memory_size();
        }
        Some(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::id::EventId;

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

    #[test]
    fn an_event_serves_each_of_its_deliveries_once_then_is_let_go() {
        let recent = RecentEvents::default();
        let e = event(10);
        recent.remember(&e, 2);
        let id = e.id.to_string();
        assert!(recent.take(&id).is_some());
        assert!(recent.take(&id).is_some());
        assert!(recent.take(&id).is_none(), "two deliveries, two takes");
        assert_eq!(recent.inner.lock().unwrap().bytes, 0);
    }

    #[test]
    fn memory_stays_bounded_whatever_is_never_taken() {
        let recent = RecentEvents::default();
        // Deliveries that never run (a paused target): 64 MiB offered.
        for _ in 0..256 {
            recent.remember(&event(256 * 1024), 1);
        }
        for _ in 0..(MAX_ENTRIES * 2) {
            recent.remember(&event(1), 1);
        }
        let inner = recent.inner.lock().unwrap();
        assert!(inner.bytes <= MAX_BYTES, "{} bytes kept", inner.bytes);
        assert!(inner.order.len() <= MAX_ENTRIES);
        assert!(inner.events.len() <= MAX_ENTRIES);
    }
}
