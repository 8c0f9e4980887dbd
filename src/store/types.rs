//! The values that cross the storage seam, whatever the backend.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::model::id::EventId;
use crate::model::records::{DeliveryStatus, EventState};

/// Filters for listing events.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub source: Option<String>,
    pub status: Option<EventState>,
    /// Only events with exactly this version.
    pub version: Option<String>,
    /// Received at or after (unix ms).
    pub since: Option<u64>,
    /// Received at or before (unix ms).
    pub until: Option<u64>,
    pub limit: usize,
    /// Continue after this id (exclusive), from a previous page.
    pub cursor: Option<String>,
}

/// Filters for listing deliveries.
#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery {
    pub status: Option<DeliveryStatus>,
    pub target: Option<String>,
    pub event: Option<String>,
    pub since: Option<u64>,
    pub until: Option<u64>,
    pub limit: usize,
    pub cursor: Option<String>,
}

/// Ids of everything a paged query matches, up to `want`, following
/// cursors (at most 1000 per page). Bulk actions collect first and act
/// after, because acting (retrying, replaying) moves items out of the index
/// being paged through. `page(limit, cursor)` fetches one page.
pub async fn collect_ids<T, I, F, Fut>(
    want: usize,
    mut page: F,
    id: impl Fn(T) -> I,
) -> Result<Vec<I>>
where
    F: FnMut(usize, Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<Page<T>>>,
{
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let p = page((want - ids.len()).min(1000), cursor).await?;
        ids.extend(p.items.into_iter().map(&id));
        match p.next_cursor {
            Some(c) if ids.len() < want => cursor = Some(c),
            _ => return Ok(ids),
        }
    }
}

/// One page of results and where the next one starts.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page from a read of up to `limit + 1` items: the extra one only
    /// says there is more, and the cursor is the last item kept.
    pub fn from_overfetch(
        mut items: Vec<T>,
        limit: usize,
        cursor: impl Fn(&T) -> String,
    ) -> Page<T> {
        let more = items.len() > limit;
        items.truncate(limit);
        Page {
            next_cursor: if more { items.last().map(cursor) } else { None },
            items,
        }
    }
}

/// An event in a listing: enough to pick it out, not its body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventSummary {
    pub id: EventId,
    pub source: String,
    pub received_at: u64,
    pub status: EventState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub size: usize,
    pub deliveries: usize,
}

/// An event waiting to be routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToRoute {
    pub id: String,
    /// It waits for a plugin that is not loaded (its mark carries a note).
    pub parked: bool,
}

/// What asking to route a stored event again found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Marked "to route".
    Marked,
    /// Already waiting to be routed: nothing to do.
    AlreadyPending,
    /// No such event (never stored, or swept).
    NoEvent,
}

/// What one sweep batch removed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Swept {
    pub events: usize,
    pub deliveries: usize,
    pub attempts: usize,
    /// Old events kept because something about them is unfinished.
    pub kept: usize,
    /// Dead deliveries removed, per target (the dead-letter counts).
    pub dead: BTreeMap<String, usize>,
    /// Where the next batch continues; `None` when the old range is done.
    pub next: Option<String>,
}
