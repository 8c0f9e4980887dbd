//! Accepting events and routing them: each change one transaction, claims
//! with leases, outcomes fenced by the claim.

use anyhow::{Context, Result};
use async_trait::async_trait;
use tokio_postgres::types::Json;

use super::{PgStore, ROUTE_LEASE, big, kv};
use crate::model::records::{Delivery, Event, Outcome};
use crate::plugin::kv::PluginTxn;
use crate::store::{Accepted, Committed, Dedup, EventLog, Mark, RoutingLog, ToRoute};

/// A lease as a PostgreSQL interval parameter (seconds).
pub(super) fn secs(d: std::time::Duration) -> f64 {
    d.as_secs_f64()
}

/// An event row's parts back into the record.
pub(super) fn event_of(meta: Json<Event>, body: Vec<u8>) -> Event {
    let mut e = meta.0;
    e.body = body;
    e
}

#[async_trait]
impl EventLog for PgStore {
    async fn accept(&self, event: &Event, dedup: Option<Dedup>) -> Result<Accepted> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        if let Some(d) = dedup {
            // Taken only if free or expired; a concurrent insert of the same
            // key waits for this transaction and then finds it taken.
            let won = tx
                .query_opt(
                    "INSERT INTO idempotency (source, key, event_id, expires_at)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (source, key) DO UPDATE
                       SET event_id = excluded.event_id, expires_at = excluded.expires_at
                       WHERE idempotency.expires_at <= $5
                     RETURNING event_id",
                    &[
                        &event.source,
                        &d.key,
                        &event.id.as_str(),
                        &big(d.expires_at),
                        &big(event.received_at),
                    ],
                )
                .await
                .context("checking the idempotency key")?;
            if won.is_none() {
                let row = tx
                    .query_one(
                        "SELECT event_id FROM idempotency WHERE source = $1 AND key = $2",
                        &[&event.source, &d.key],
                    )
                    .await?;
                tx.commit().await?;
                return Ok(Accepted::Duplicate(row.get(0)));
            }
        }
        tx.execute(
            &tx.prepare_cached(
                "INSERT INTO events (id, source, received_at, meta, body, route_owner, route_until)
             VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))",
            )
            .await?,
            &[
                &event.id.as_str(),
                &event.source,
                &big(event.received_at),
                &Json(event),
                &event.body,
                &self.inner.node,
                &secs(ROUTE_LEASE),
            ],
        )
        .await
        .context("storing the event")?;
        tx.commit().await.context("committing the event")?;
        Ok(Accepted::New)
    }
}

#[async_trait]
impl RoutingLog for PgStore {
    async fn event(&self, id: &str) -> Result<Option<Event>> {
        self.load_event(id).await
    }

    /// Claims the page: events still to be routed whose claim is free, ran
    /// out, or is this node's.
    async fn to_route_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<ToRoute>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "UPDATE events e SET route_owner = $1, route_until = now() + make_interval(secs => $2)
                 FROM (SELECT id FROM events
                       WHERE to_route AND id > $3
                         AND (route_until IS NULL OR route_until < now() OR route_owner = $1)
                       ORDER BY id LIMIT $4
                       FOR UPDATE SKIP LOCKED) c
                 WHERE e.id = c.id
                 RETURNING e.id, e.route_note IS NOT NULL",
                &[
                    &self.inner.node,
                    &secs(ROUTE_LEASE),
                    &after.unwrap_or(""),
                    &(limit as i64),
                ],
            )
            .await?;
        let mut out: Vec<ToRoute> = rows
            .iter()
            .map(|r| ToRoute {
                id: r.get(0),
                parked: r.get(1),
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn set_route_note(&self, event_id: &str, note: &str) -> Result<()> {
        let c = self.client().await?;
        c.execute(
            &c.prepare_cached("UPDATE events SET route_note = $2 WHERE id = $1 AND to_route")
                .await?,
            &[&event_id, &note],
        )
        .await?;
        Ok(())
    }

    async fn drop_route_mark(&self, event_id: &str) -> Result<()> {
        let c = self.client().await?;
        c.execute(&c.prepare_cached("UPDATE events SET to_route = false, route_owner = NULL, route_until = NULL WHERE id = $1").await?,
            &[&event_id],
        )
        .await?;
        Ok(())
    }

    async fn mark_to_route(&self, event_id: &str) -> Result<Mark> {
        let c = self.client().await?;
        // The replaying node routes it: it claims it as it marks it.
        let marked = c
            .execute(
                "UPDATE events SET to_route = true, route_note = NULL, route_owner = $2,
                                   route_until = now() + make_interval(secs => $3)
                 WHERE id = $1 AND NOT to_route",
                &[&event_id, &self.inner.node, &secs(ROUTE_LEASE)],
            )
            .await?;
        if marked == 1 {
            return Ok(Mark::Marked);
        }
        let exists = c
            .query_opt("SELECT 1 FROM events WHERE id = $1", &[&event_id])
            .await?;
        Ok(if exists.is_some() {
            Mark::AlreadyPending
        } else {
            Mark::NoEvent
        })
    }

    async fn record_outcome(
        &self,
        event_id: &str,
        outcome: &Outcome,
        deliveries: &[Delivery],
        due_ms: u64,
        kv_parts: Vec<PluginTxn>,
    ) -> Result<Committed> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Fenced: only while this node's claim holds (or nobody else's
        // does). Locking the row orders this against a takeover.
        let claim = tx
            .query_opt(
                "SELECT 1 FROM events
                 WHERE id = $1 AND to_route
                   AND (route_owner = $2 OR route_owner IS NULL OR route_until < now())
                 FOR UPDATE",
                &[&event_id, &self.inner.node],
            )
            .await?;
        if claim.is_none() {
            tx.rollback().await?;
            return Ok(Committed::Fenced);
        }
        if let Some(refused) = kv::commit(&tx, &kv_parts).await? {
            tx.rollback().await?;
            return Ok(Committed::Refused(refused));
        }
        // The plugins' KV locks can go once the commit is ordered: the row
        // and key locks above order this transaction before their next.
        drop(kv_parts);
        insert_deliveries(&tx, deliveries, due_ms).await?;
        tx.execute(
            &tx.prepare_cached(
                "UPDATE events SET outcome = $2, to_route = false, route_note = NULL,
                               route_owner = NULL, route_until = NULL
             WHERE id = $1",
            )
            .await?,
            &[&event_id, &Json(outcome)],
        )
        .await?;
        notify_due(
            &tx,
            &self.inner,
            deliveries.iter().map(|d| d.target.as_str()),
        )
        .await?;
        tx.commit()
            .await
            .context("committing the routing outcome")?;
        Ok(Committed::Done)
    }
}

/// Inserts an outcome's deliveries in one statement.
async fn insert_deliveries(
    tx: &deadpool_postgres::Transaction<'_>,
    deliveries: &[Delivery],
    due_ms: u64,
) -> Result<()> {
    if deliveries.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = deliveries.iter().map(|d| d.id.as_str()).collect();
    let events: Vec<&str> = deliveries.iter().map(|d| d.event_id.as_str()).collect();
    let targets: Vec<&str> = deliveries.iter().map(|d| d.target.as_str()).collect();
    let metas: Vec<serde_json::Value> = deliveries
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()?;
    let bodies: Vec<Option<&[u8]>> = deliveries.iter().map(|d| d.body.as_deref()).collect();
    let created: Vec<i64> = deliveries.iter().map(|d| big(d.created_at)).collect();
    tx.execute(
        &tx.prepare_cached(
            "INSERT INTO deliveries (id, event_id, target, meta, body, status, due_at, created_at)
         SELECT id, ev, t, m, b, 'scheduled', $7, c
         FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::bytea[], $6::bigint[])
              AS x(id, ev, t, m, b, c)",
        )
        .await?,
        &[
            &ids,
            &events,
            &targets,
            &metas,
            &bodies,
            &created,
            &big(due_ms),
        ],
    )
    .await
    .context("storing the deliveries")?;
    Ok(())
}

/// One notification per transaction naming the targets it put work on:
/// the nodes that own them wake their dispatchers (per batch, not per row:
/// a notifying commit takes a global lock).
/// Targets this node owns are left out: its own dispatcher is woken in
/// process.
pub(super) async fn notify_due<'a>(
    tx: &deadpool_postgres::Transaction<'_>,
    inner: &super::Inner,
    targets: impl Iterator<Item = &'a str>,
) -> Result<()> {
    let mut names: Vec<&str> = {
        let owned = inner.owned.lock().unwrap_or_else(|e| e.into_inner());
        targets.filter(|t| !owned.contains(*t)).collect()
    };
    if names.is_empty() {
        return Ok(());
    }
    names.sort_unstable();
    names.dedup();
    let payload = super::listen::due_payload(&names);
    tx.execute(
        &tx.prepare_cached("SELECT pg_notify($1, $2)").await?,
        &[&super::listen::CHANNEL, &payload],
    )
    .await?;
    Ok(())
}
