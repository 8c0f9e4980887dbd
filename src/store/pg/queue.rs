//! The delivery queue in PostgreSQL: each target's schedule is an index on
//! `(target, due_at)` over scheduled deliveries; a node claims due ones
//! with a lease, and records an attempt only while its claim holds.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use anyhow::{Context, Result};
use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::types::Json;

use super::batch::Batched;
use super::events::{notify_due, secs};
use super::{PgStore, big, small};
use crate::model::records::{Attempt, Delivery, DeliveryStatus, Event};
use crate::model::word::Word;
use crate::store::{DeliveryQueue, Recorded, Rescheduled, TargetStates};

/// A delivery row back into the record.
pub(super) fn delivery_of(meta: Json<Delivery>, body: Option<Vec<u8>>) -> Delivery {
    let mut d = meta.0;
    d.body = body;
    d
}

#[async_trait]
impl DeliveryQueue for PgStore {
    async fn claim_due(
        &self,
        target: &str,
        now_ms: u64,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<(u64, String)>> {
        let c = self.client().await?;
        // Only the node that owns the target claims its deliveries, so the
        // target's concurrency, rate and circuit are one node's to keep.
        // Only the first `limit` of the schedule (oldest first) are looked
        // at: entries this node already holds come back as they are (the
        // dispatcher skips those in flight and starts the others; taking
        // them again would rewrite every held row on every wake-up), and
        // those free or past their lease are claimed. Looking further
        // would read the whole backlog on every wake-up when it is held:
        // deliveries routed here are inserted held (`insert_deliveries`),
        // and a dead node's claims stay until their lease ends, after
        // which they are claimed from the head like the rest.
        // `= ANY(ARRAY(...))` keeps the update on the primary key: as a
        // join, the cached generic plan hashes the whole table.
        let statement = c
            .prepare_cached(
                "WITH head AS (
                     SELECT due_at, id, lease_owner, lease_until FROM deliveries
                     WHERE target = $3 AND status = 'scheduled' AND due_at <= $4
                     ORDER BY due_at, id LIMIT $5
                 ), held AS (
                     SELECT due_at, id FROM head
                     WHERE lease_owner = $1 AND lease_until >= now()
                 ), taken AS (
                     UPDATE deliveries d
                     SET lease_owner = $1, lease_until = now() + make_interval(secs => $2)
                     WHERE d.id = ANY(ARRAY(
                           SELECT id FROM deliveries
                           WHERE id = ANY(ARRAY(
                                 SELECT id FROM head
                                 WHERE lease_until IS NULL OR lease_until < now()))
                             AND status = 'scheduled'
                             AND (lease_until IS NULL OR lease_until < now())
                           FOR UPDATE SKIP LOCKED))
                       AND EXISTS (SELECT 1 FROM targets t
                                   WHERE t.name = $3 AND t.owner = $1 AND t.lease_until > now())
                     RETURNING d.due_at, d.id
                 )
                 SELECT due_at, id FROM held UNION ALL SELECT due_at, id FROM taken",
            )
            .await?;
        let rows = c
            .query(
                &statement,
                &[
                    &self.inner.node,
                    &secs(lease),
                    &target,
                    &big(now_ms),
                    &(limit as i64),
                ],
            )
            .await?;
        let mut out: Vec<(u64, String)> =
            rows.iter().map(|r| (small(r.get(0)), r.get(1))).collect();
        out.sort();
        out.truncate(limit);
        Ok(out)
    }

    async fn upcoming(&self, target: &str, limit: usize) -> Result<Vec<(u64, String)>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT due_at, id FROM deliveries
                 WHERE target = $1 AND status = 'scheduled'
                   AND (lease_until IS NULL OR lease_until < now() OR lease_owner = $2)
                 ORDER BY due_at, id LIMIT $3",
                &[&target, &self.inner.node, &(limit as i64)],
            )
            .await?;
        Ok(rows.iter().map(|r| (small(r.get(0)), r.get(1))).collect())
    }

    async fn delivery(&self, id: &str) -> Result<Option<Delivery>> {
        self.load_delivery(id).await
    }

    async fn event(&self, id: &str) -> Result<Option<Event>> {
        self.load_event(id).await
    }

    async fn delivery_and_event(&self, id: &str) -> Result<Option<(Delivery, Option<Event>)>> {
        self.inner.attempt_reads.submit(id.to_string()).await
    }

    async fn record_attempt(
        &self,
        delivery: &Delivery,
        attempt: &Attempt,
        _old_due: u64,
        new_due: Option<u64>,
    ) -> Result<Recorded> {
        let mut meta = delivery.clone();
        meta.body = None;
        let kept = self
            .inner
            .attempts
            .submit(AttemptWrite {
                delivery: meta,
                attempt: attempt.clone(),
                new_due,
            })
            .await
            .context("recording the attempt")?;
        Ok(if kept {
            Recorded::Done
        } else {
            Recorded::Fenced
        })
    }

    async fn reschedule(&self, delivery_id: &str, due_ms: u64) -> Result<Rescheduled> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let Some(row) = tx
            .query_opt(
                "SELECT meta, body, lease_until > now() AND lease_owner IS NOT NULL
                 FROM deliveries WHERE id = $1 FOR UPDATE",
                &[&delivery_id],
            )
            .await?
        else {
            tx.rollback().await?;
            return Ok(Rescheduled::Missing);
        };
        let before = delivery_of(row.get(0), row.get(1));
        let leased: Option<bool> = row.get(2);
        if leased == Some(true) && before.status == DeliveryStatus::Scheduled {
            tx.rollback().await?;
            return Ok(Rescheduled::InFlight);
        }
        let mut after = before.clone();
        after.status = DeliveryStatus::Scheduled;
        after.next_attempt_at = Some(due_ms);
        after.body = None;
        tx.execute(
            &tx.prepare_cached(
                "UPDATE deliveries SET meta = $2, status = 'scheduled', due_at = $3,
                                   lease_owner = NULL, lease_until = NULL
             WHERE id = $1",
            )
            .await?,
            &[&delivery_id, &Json(&after), &big(due_ms)],
        )
        .await?;
        notify_due(&tx, &self.inner.owned, &before.target).await?;
        tx.commit().await?;
        Ok(Rescheduled::Done(Box::new(before)))
    }

    /// There are no separate schedule entries to go stale here; this lets
    /// go of this node's claim, so the delivery is not held until its
    /// lease runs out.
    async fn unschedule(&self, _target: &str, delivery_id: &str, _due_ms: u64) -> Result<()> {
        let c = self.client().await?;
        c.execute(
            &c.prepare_cached(
                "UPDATE deliveries SET lease_owner = NULL, lease_until = NULL
             WHERE id = $1 AND lease_owner = $2",
            )
            .await?,
            &[&delivery_id, &self.inner.node],
        )
        .await?;
        Ok(())
    }

    async fn scheduled_per_target(&self) -> Result<BTreeMap<String, usize>> {
        self.count_by_target("scheduled").await
    }

    async fn dead_per_target(&self) -> Result<BTreeMap<String, usize>> {
        self.count_by_target("dead").await
    }
}

impl PgStore {
    async fn count_by_target(&self, status: &str) -> Result<BTreeMap<String, usize>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT target, count(*) FROM deliveries WHERE status = $1 GROUP BY target",
                &[&status],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as usize))
            .collect())
    }
}

#[async_trait]
impl TargetStates for PgStore {
    async fn target_control(&self, target: &str) -> Result<Option<Vec<u8>>> {
        let c = self.client().await?;
        Ok(c.query_opt(
            &c.prepare_cached("SELECT control FROM targets WHERE name = $1")
                .await?,
            &[&target],
        )
        .await?
        .and_then(|r| r.get::<_, Option<serde_json::Value>>(0))
        .map(|v| serde_json::to_vec(&v))
        .transpose()?)
    }

    /// Written by whichever node changed it (the owner for its circuit, any
    /// node for an operator's action), and announced so the owner picks it
    /// up at once.
    async fn set_target_control(&self, target: &str, value: &[u8]) -> Result<()> {
        let v: serde_json::Value = serde_json::from_slice(value)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            &tx.prepare_cached(
                "INSERT INTO targets (name, control) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET control = excluded.control",
            )
            .await?,
            &[&target, &v],
        )
        .await?;
        let payload = super::listen::control_payload(target, &self.inner.node);
        tx.execute(
            &tx.prepare_cached("SELECT pg_notify($1, $2)").await?,
            &[&super::listen::CHANNEL, &payload],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn own_targets(
        &self,
        targets: &[String],
        release: &[String],
        lease: Duration,
    ) -> Result<crate::store::Owned> {
        self.own(targets, release, lease).await
    }
}

/// An attempt's result: the delivery's new state (body left out, it does
/// not change) and the attempt.
pub(super) struct AttemptWrite {
    delivery: Delivery,
    attempt: Attempt,
    new_due: Option<u64>,
}

/// Attempts, grouped: one statement per batch, a fenced update of the
/// deliveries and the insert of the kept ones' attempts. Each item's
/// answer is whether it was kept (false: fenced, this node's claim on the
/// delivery was taken over).
pub(super) struct Attempts {
    pub node: String,
}

#[async_trait]
impl Batched for Attempts {
    type Item = AttemptWrite;
    type Done = bool;

    /// The update and its attempts' log are one statement.
    const ONE_STATEMENT: bool = true;

    fn key(w: &AttemptWrite) -> &str {
        w.delivery.id.as_str()
    }

    async fn apply<C: GenericClient>(&self, tx: &C, items: &[AttemptWrite]) -> Result<Vec<bool>> {
        let ids: Vec<&str> = items.iter().map(|w| w.delivery.id.as_str()).collect();
        let metas: Vec<Json<&Delivery>> = items.iter().map(|w| Json(&w.delivery)).collect();
        let statuses: Vec<&str> = items.iter().map(|w| w.delivery.status.as_str()).collect();
        let due: Vec<Option<i64>> = items.iter().map(|w| w.new_due.map(big)).collect();
        let ns: Vec<i32> = items.iter().map(|w| w.attempt.n as i32).collect();
        let data: Vec<Json<&Attempt>> = items.iter().map(|w| Json(&w.attempt)).collect();
        // Fenced: a node whose claim was taken over records nothing, and
        // only the kept deliveries' attempts are logged.
        let rows = tx
            .query(
                &tx.prepare_cached(
                    "WITH kept AS (
                       UPDATE deliveries d SET meta = x.m, status = x.s, due_at = x.due,
                                               lease_owner = NULL, lease_until = NULL
                       FROM unnest($1::text[], $2::jsonb[], $3::text[], $4::bigint[])
                            AS x(id, m, s, due)
                       WHERE d.id = x.id AND d.lease_owner = $5
                       RETURNING d.id
                     ), logged AS (
                       INSERT INTO attempts (delivery_id, n, data)
                       SELECT x.id, x.n, x.data
                       FROM unnest($1::text[], $6::int[], $7::jsonb[]) AS x(id, n, data)
                       JOIN kept ON kept.id = x.id
                       ON CONFLICT (delivery_id, n) DO UPDATE SET data = excluded.data
                     )
                     SELECT id FROM kept",
                )
                .await?,
                &[&ids, &metas, &statuses, &due, &self.node, &ns, &data],
            )
            .await
            .context("recording the attempts")?;
        let kept: HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
        Ok(items
            .iter()
            .map(|w| kept.contains(w.delivery.id.as_str()))
            .collect())
    }
}
