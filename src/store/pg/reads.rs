//! The hot point reads, grouped: routing reads each event it routes, and
//! the dispatcher each delivery it starts that it does not have in memory,
//! with the event whose body it sends. One `= ANY($1)` select per batch
//! instead of one per row.

use std::collections::HashMap;

use anyhow::Result;
use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::batch::Batched;
use super::events::event_of;
use super::queue::delivery_of;
use crate::model::records::{Delivery, Event};

/// Records of one table by id: `select` reads `id` and what `of_row`
/// makes the record from (columns 1 and on) for the ids in `$1`.
pub(super) struct ById<T> {
    select: &'static str,
    of_row: fn(&Row) -> T,
}

/// Events by id, bodies included.
pub(super) fn events() -> ById<Event> {
    ById {
        select: "SELECT id, meta, body, received_body FROM events WHERE id = ANY($1)",
        of_row: |r| event_of(r.get(1), r.get(2), r.get(3)),
    }
}

/// Deliveries by id, with their own bodies.
pub(super) fn deliveries() -> ById<Delivery> {
    ById {
        select: "SELECT id, meta, body FROM deliveries WHERE id = ANY($1)",
        of_row: |r| delivery_of(r.get(1), r.get(2)),
    }
}

/// Deliveries by id with their events, for attempts that have neither
/// in memory: one statement instead of two.
pub(super) fn deliveries_with_events() -> ById<(Delivery, Option<Event>)> {
    ById {
        select: "SELECT d.id, d.meta, d.body, e.meta, e.body, e.received_body
                 FROM deliveries d LEFT JOIN events e ON e.id = d.event_id
                 WHERE d.id = ANY($1)",
        of_row: |r| {
            let event = r
                .get::<_, Option<tokio_postgres::types::Json<Event>>>(3)
                .map(|meta| {
                    event_of(
                        meta,
                        r.get::<_, Option<Vec<u8>>>(4).unwrap_or_default(),
                        r.get(5),
                    )
                });
            (delivery_of(r.get(1), r.get(2)), event)
        },
    }
}

#[async_trait]
impl<T: Send + Sync + 'static> Batched for ById<T> {
    type Item = String;
    type Done = Option<T>;

    /// A read: no transaction needed at all.
    const ONE_STATEMENT: bool = true;

    fn key(id: &String) -> &str {
        id
    }

    async fn apply<C: GenericClient>(&self, tx: &C, ids: &[String]) -> Result<Vec<Option<T>>> {
        let rows = tx
            .query(&tx.prepare_cached(self.select).await?, &[&ids])
            .await?;
        let mut found: HashMap<String, T> =
            rows.iter().map(|r| (r.get(0), (self.of_row)(r))).collect();
        Ok(ids.iter().map(|id| found.remove(id)).collect())
    }
}
