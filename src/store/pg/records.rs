//! Reading, listing and sweeping in PostgreSQL. Ids are time-ordered, so
//! "newest first" is `ORDER BY id DESC` and a time range is an id range.

use std::collections::BTreeMap;

use anyhow::Result;
use async_trait::async_trait;
use tokio_postgres::types::{Json, ToSql};

use super::queue::delivery_of;
use super::{PgStore, big, small};
use crate::model::id::lowest_at;
use crate::model::records::{Attempt, Delivery, Event, EventState, Outcome};
use crate::model::word::Word;
use crate::store::{DeliveryQuery, EventQuery, EventSummary, Page, Records, Swept, Upkeep};

/// `[since, until]` in ms as bounds on ids with this prefix.
fn id_bounds(prefix: &str, since: Option<u64>, until: Option<u64>) -> (String, String) {
    (
        lowest_at(prefix, since.unwrap_or(0)),
        lowest_at(prefix, until.map_or(u64::MAX, |u| u.saturating_add(1))),
    )
}

/// What an event's listing status is: pending while marked, else its
/// outcome's.
fn state_of(to_route: bool, outcome: Option<Json<Outcome>>) -> EventState {
    match (to_route, outcome) {
        (false, Some(o)) => o.0.status.into(),
        _ => EventState::Pending,
    }
}

#[async_trait]
impl Records for PgStore {
    async fn event(&self, id: &str) -> Result<Option<Event>> {
        self.load_event(id).await
    }

    async fn outcome(&self, event_id: &str) -> Result<Option<Outcome>> {
        let c = self.client().await?;
        Ok(c.query_opt(
            &c.prepare_cached("SELECT outcome FROM events WHERE id = $1")
                .await?,
            &[&event_id],
        )
        .await?
        .and_then(|r| r.get::<_, Option<Json<Outcome>>>(0))
        .map(|j| j.0))
    }

    async fn route_note(&self, event_id: &str) -> Result<Option<String>> {
        let c = self.client().await?;
        Ok(c.query_opt(
            &c.prepare_cached(
                "SELECT coalesce(route_note, '') FROM events WHERE id = $1 AND to_route",
            )
            .await?,
            &[&event_id],
        )
        .await?
        .map(|r| r.get(0)))
    }

    async fn delivery(&self, id: &str) -> Result<Option<Delivery>> {
        self.load_delivery(id).await
    }

    async fn attempts(&self, delivery_id: &str) -> Result<Vec<Attempt>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT data FROM attempts WHERE delivery_id = $1 ORDER BY n",
                &[&delivery_id],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| r.get::<_, Json<Attempt>>(0).0)
            .collect())
    }

    async fn deliveries_of_event(
        &self,
        event_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<Delivery>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT meta, body FROM deliveries WHERE event_id = $1 AND id > $2
                 ORDER BY id LIMIT $3",
                &[&event_id, &after.unwrap_or(""), &(limit as i64 + 1)],
            )
            .await?;
        let items: Vec<Delivery> = rows
            .iter()
            .map(|r| delivery_of(r.get(0), r.get(1)))
            .collect();
        Ok(Page::from_overfetch(items, limit, |d| d.id.to_string()))
    }

    async fn list_events(&self, q: &EventQuery) -> Result<Page<EventSummary>> {
        let c = self.client().await?;
        let (lower, mut upper) = id_bounds("evt", q.since, q.until);
        if let Some(cursor) = &q.cursor {
            upper = upper.min(cursor.clone());
        }
        let status: Option<&str> = q.status.map(|s| s.as_str());
        let params: [&(dyn ToSql + Sync); 6] = [
            &lower,
            &upper,
            &q.source,
            &status,
            &q.version,
            &(q.limit as i64 + 1),
        ];
        // The version is in the event's JSON meta (no column of its own:
        // rows from before it existed need no migration).
        let rows = c
            .query(
                "SELECT e.id, e.source, e.received_at, e.to_route, e.outcome, length(e.body),
                        (SELECT count(*) FROM deliveries d WHERE d.event_id = e.id),
                        e.meta->>'version'
                 FROM events e
                 WHERE e.id >= $1 AND e.id < $2
                   AND ($3::text IS NULL OR e.source = $3)
                   AND ($4::text IS NULL OR
                        (CASE WHEN e.to_route OR e.outcome IS NULL THEN 'pending'
                              ELSE e.outcome->>'status' END) = $4)
                   AND ($5::text IS NULL OR e.meta->>'version' = $5)
                 ORDER BY e.id DESC LIMIT $6",
                &params,
            )
            .await?;
        let items: Vec<EventSummary> = rows
            .iter()
            .map(|r| EventSummary {
                id: r.get::<_, String>(0).into(),
                source: r.get(1),
                received_at: small(r.get(2)),
                status: state_of(r.get(3), r.get(4)),
                version: r.get(7),
                size: r.get::<_, i32>(5) as usize,
                deliveries: r.get::<_, i64>(6) as usize,
            })
            .collect();
        Ok(Page::from_overfetch(items, q.limit, |e| e.id.to_string()))
    }

    async fn list_deliveries(&self, q: &DeliveryQuery) -> Result<Page<Delivery>> {
        let c = self.client().await?;
        let (lower, mut upper) = id_bounds("msg", q.since, q.until);
        if let Some(cursor) = &q.cursor {
            upper = upper.min(cursor.clone());
        }
        let status: Option<&str> = q.status.map(|s| s.as_str());
        let params: [&(dyn ToSql + Sync); 6] = [
            &lower,
            &upper,
            &status,
            &q.target,
            &q.event,
            &(q.limit as i64 + 1),
        ];
        let rows = c
            .query(
                "SELECT meta, body FROM deliveries
                 WHERE id >= $1 AND id < $2
                   AND ($3::text IS NULL OR status = $3)
                   AND ($4::text IS NULL OR target = $4)
                   AND ($5::text IS NULL OR event_id = $5)
                 ORDER BY id DESC LIMIT $6",
                &params,
            )
            .await?;
        let items: Vec<Delivery> = rows
            .iter()
            .map(|r| {
                // Listings do not carry bodies.
                let mut d = delivery_of(r.get(0), None);
                d.body = None;
                d
            })
            .collect();
        Ok(Page::from_overfetch(items, q.limit, |d| d.id.to_string()))
    }
}

#[async_trait]
impl Upkeep for PgStore {
    async fn sweep_before(
        &self,
        cutoff_ms: u64,
        max_events: usize,
        after: Option<&str>,
    ) -> Result<Swept> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let upper = lowest_at("evt", cutoff_ms);
        // Old, finished events nobody else is sweeping right now.
        let rows = tx
            .query(
                "SELECT e.id FROM events e
                 WHERE e.id > $1 AND e.id < $2 AND NOT e.to_route
                   AND NOT EXISTS (SELECT 1 FROM deliveries d
                                   WHERE d.event_id = e.id
                                     AND (d.status = 'scheduled' OR d.created_at >= $3))
                 ORDER BY e.id LIMIT $4
                 FOR UPDATE SKIP LOCKED",
                &[
                    &after.unwrap_or(""),
                    &upper,
                    &big(cutoff_ms),
                    &(max_events as i64),
                ],
            )
            .await?;
        let ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        let mut out = Swept::default();
        if ids.is_empty() {
            tx.commit().await?;
            return Ok(out);
        }
        // Deliveries, then their attempts, with their event (no foreign
        // keys: see schema migration 4); what was deleted is what is
        // counted. The attempts go by the ids the deliveries' delete
        // returned, in a statement of their own, so they include an attempt
        // committed while that delete waited for the delivery's row lock;
        // an attempt that comes later finds its delivery gone and is fenced.
        let n = tx
            .execute("DELETE FROM events WHERE id = ANY($1)", &[&ids])
            .await?;
        let gone = tx
            .query(
                "DELETE FROM deliveries WHERE event_id = ANY($1) RETURNING id, target, status",
                &[&ids],
            )
            .await?;
        let mut deliveries: Vec<String> = Vec::with_capacity(gone.len());
        let mut dead: BTreeMap<String, usize> = BTreeMap::new();
        for r in &gone {
            deliveries.push(r.get(0));
            if r.get::<_, String>(2) == "dead" {
                *dead.entry(r.get(1)).or_insert(0) += 1;
            }
        }
        out.deliveries = deliveries.len();
        out.dead = dead;
        out.attempts = tx
            .execute(
                "DELETE FROM attempts WHERE delivery_id = ANY($1)",
                &[&deliveries],
            )
            .await? as usize;
        tx.commit().await?;
        out.events = n as usize;
        out.next = (ids.len() >= max_events)
            .then(|| ids.last().cloned())
            .flatten();
        Ok(out)
    }

    async fn sweep_idempotency(&self, now_ms: u64, limit: usize) -> Result<usize> {
        let c = self.client().await?;
        let n = c
            .execute(
                "DELETE FROM idempotency WHERE ctid IN
                   (SELECT ctid FROM idempotency WHERE expires_at <= $1 LIMIT $2)",
                &[&big(now_ms), &(limit as i64)],
            )
            .await?;
        Ok(n as usize)
    }

    /// PostgreSQL reclaims space itself (autovacuum).
    async fn collect_garbage(&self) -> Result<usize> {
        Ok(0)
    }

    /// Every commit is durable already.
    async fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn size_on_disk(&self) -> u64 {
        self.inner.size.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A connection from the pool answers.
    async fn ready(&self) -> Result<()> {
        self.client().await?.simple_query("SELECT 1").await?;
        Ok(())
    }
}
