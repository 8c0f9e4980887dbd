//! The hot point reads, grouped: routing reads each event it routes, and
//! the dispatcher each delivery it starts and the event whose body it
//! sends. One `= ANY($1)` select per batch instead of one per row.

use std::collections::HashMap;

use anyhow::Result;
use async_trait::async_trait;

use super::batch::Batched;
use super::events::event_of;
use super::queue::delivery_of;
use crate::model::records::{Delivery, Event};

/// Events by id, bodies included.
pub(super) struct EventReads;

#[async_trait]
impl Batched for EventReads {
    type Item = String;
    type Done = Option<Event>;

    fn key(id: &String) -> &str {
        id
    }

    async fn apply(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        ids: &[String],
    ) -> Result<Vec<Option<Event>>> {
        let rows = tx
            .query(
                &tx.prepare_cached("SELECT id, meta, body FROM events WHERE id = ANY($1)")
                    .await?,
                &[&ids],
            )
            .await?;
        let mut found: HashMap<String, Event> = rows
            .into_iter()
            .map(|r| (r.get(0), event_of(r.get(1), r.get(2))))
            .collect();
        Ok(ids.iter().map(|id| found.remove(id)).collect())
    }
}

/// Deliveries by id, with their own bodies.
pub(super) struct DeliveryReads;

#[async_trait]
impl Batched for DeliveryReads {
    type Item = String;
    type Done = Option<Delivery>;

    fn key(id: &String) -> &str {
        id
    }

    async fn apply(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        ids: &[String],
    ) -> Result<Vec<Option<Delivery>>> {
        let rows = tx
            .query(
                &tx.prepare_cached("SELECT id, meta, body FROM deliveries WHERE id = ANY($1)")
                    .await?,
                &[&ids],
            )
            .await?;
        let mut found: HashMap<String, Delivery> = rows
            .into_iter()
            .map(|r| (r.get(0), delivery_of(r.get(1), r.get(2))))
            .collect();
        Ok(ids.iter().map(|id| found.remove(id)).collect())
    }
}
