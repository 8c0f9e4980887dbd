//! Accepting events and routing them: each change one transaction, claims
//! with leases, outcomes fenced by the claim.

use std::collections::HashSet;

use anyhow::{Context, Result};
use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::types::Json;

use super::batch::Batched;
use super::{OwnedSet, PgStore, ROUTE_LEASE, big, kv};
use crate::model::records::{Delivery, Event, Outcome};
use crate::plugin::kv::PluginTxn;
use crate::store::{Accepted, Committed, Dedup, EventLog, Mark, RoutingLog, ToRoute};

/// Events with bodies up to this size are accepted through the grouped
/// writer; larger ones get a transaction of their own (copying them into
/// the queue would cost more than the commit they share).
const GROUPED_BODY: usize = 256 * 1024;

/// A lease as a PostgreSQL interval parameter (seconds).
pub(super) fn secs(d: std::time::Duration) -> f64 {
    d.as_secs_f64()
}

/// An event row's parts back into the record.
pub(super) fn event_of(meta: Json<Event>, body: Vec<u8>, received: Option<Vec<u8>>) -> Event {
    let mut e = meta.0;
    e.body = body;
    e.received_body = received;
    e
}

#[async_trait]
impl EventLog for PgStore {
    async fn accept(&self, event: &Event, dedup: Option<Dedup>) -> Result<Accepted> {
        if dedup.is_none()
            && event.body.len() + event.received_body.as_ref().map_or(0, Vec::len) <= GROUPED_BODY
        {
            self.inner
                .accepts
                .submit(event.clone())
                .await
                .context("storing the event")?;
            return Ok(Accepted::New);
        }
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
        self.inner
            .accepts
            .kind()
            .apply(&tx, std::slice::from_ref(event))
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
    /// out, or is this node's. This node's claims with more than half their
    /// lease left come back as they are: a refill pass over a long backlog
    /// would otherwise rewrite every row of it on every page.
    async fn to_route_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<ToRoute>> {
        let c = self.client().await?;
        let rows = c
            .query(
                &c.prepare_cached(
                    "WITH page AS (
                         SELECT id, route_note IS NOT NULL AS parked,
                                coalesce(route_owner = $1
                                    AND route_until >= now() + make_interval(secs => $2::float8 / 2),
                                    false) AS fresh
                         FROM events
                         WHERE to_route AND id > $3
                           AND (route_until IS NULL OR route_until < now() OR route_owner = $1)
                         ORDER BY id LIMIT $4
                     ), renewed AS (
                         UPDATE events e
                         SET route_owner = $1, route_until = now() + make_interval(secs => $2::float8)
                         WHERE e.id = ANY(ARRAY(
                               SELECT id FROM events
                               WHERE id IN (SELECT id FROM page WHERE NOT fresh) AND to_route
                                 AND (route_until IS NULL OR route_until < now()
                                      OR route_owner = $1)
                               FOR UPDATE SKIP LOCKED))
                         RETURNING e.id, e.route_note IS NOT NULL
                     )
                     SELECT id, parked FROM page WHERE fresh
                     UNION ALL SELECT id, parked FROM renewed AS r(id, parked)",
                )
                .await?,
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
        let write = OutcomeWrite {
            event_id: event_id.to_string(),
            outcome: outcome.clone(),
            deliveries: deliveries.to_vec(),
            due_ms,
        };
        if kv_parts.iter().all(|p| p.txn.is_empty()) {
            drop(kv_parts);
            let kept = self
                .inner
                .outcomes
                .submit(write)
                .await
                .context("committing the routing outcome")?;
            return Ok(match kept {
                Some(elsewhere) => {
                    self.inner.notifier.wake(elsewhere);
                    Committed::Done
                }
                None => Committed::Fenced,
            });
        }
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
        // The same update and inserts as a grouped outcome; its fence
        // holds, the row being locked above.
        let kept = self
            .inner
            .outcomes
            .kind()
            .apply(&tx, std::slice::from_ref(&write))
            .await?;
        let Some(Some(elsewhere)) = kept.into_iter().next() else {
            tx.rollback().await?;
            return Ok(Committed::Fenced);
        };
        tx.commit()
            .await
            .context("committing the routing outcome")?;
        self.inner.notifier.wake(elsewhere);
        Ok(Committed::Done)
    }
}

/// The routing outcomes of `items` and, for those it kept, their deliveries
/// (each with its first due time), in one statement: a batch written alone
/// needs no BEGIN or COMMIT, and the deliveries need no second round trip
/// after the fenced update. Answers, for each item, `None` when it was
/// fenced, else the targets of its deliveries that other nodes own (or
/// nobody does), whose owners the caller wakes after the commit
/// (`notify.rs`).
///
/// The update is fenced: only events this node still holds (or nobody
/// else does); it locks each row, ordering it against a takeover.
///
/// Each delivery is inserted claimed by its target's owner, under the
/// owner's lease: the owner's dispatcher finds them as its own at the head
/// of the schedule and starts them, without the claim's update of every
/// row (a quarter of the database's time per delivered event in the
/// one-node benchmark; with three nodes, two of three deliveries are routed
/// on a node that does not own their target, and claiming those cost a
/// fifth of the database's time). The lease is the ownership lease because
/// only a change of owner lets another node claim them, and a new owner
/// takes over only once that lease has run out (or after the owner let the
/// target go, when it also gives these claims back; an insert that read
/// the old owner just before a release committed keeps its claim until the
/// old lease ends, a delay, not a loss); one that outlives its lease
/// unstarted (a backlog) is claimed again like any other. A target nobody
/// owns gets unclaimed deliveries, for whoever takes it.
async fn store_outcomes(
    tx: &impl GenericClient,
    items: &[OutcomeWrite],
    node: &str,
    owned: &OwnedSet,
) -> Result<Vec<Option<Vec<String>>>> {
    let ids: Vec<&str> = items.iter().map(|w| w.event_id.as_str()).collect();
    let outcomes: Vec<Json<&Outcome>> = items.iter().map(|w| Json(&w.outcome)).collect();
    let (mut d_ids, mut events, mut targets) = (Vec::new(), Vec::new(), Vec::new());
    let (mut metas, mut bodies, mut created, mut due) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut owners: Vec<Option<&str>> = Vec::new();
    let lease = {
        let owned = owned.lock().unwrap_or_else(|e| e.into_inner());
        for w in items {
            for d in &w.deliveries {
                d_ids.push(d.id.as_str());
                events.push(d.event_id.as_str());
                targets.push(d.target.as_str());
                metas.push(Json(d));
                bodies.push(d.body.as_deref());
                created.push(big(d.created_at));
                due.push(big(w.due_ms));
                owners.push(owned.names.contains(d.target.as_str()).then_some(node));
            }
        }
        owned.lease
    };
    let rows = tx
        .query(
            &tx.prepare_cached(
                "WITH kept AS (
                   UPDATE events e SET outcome = x.o, to_route = false, route_note = NULL,
                                       route_owner = NULL, route_until = NULL
                   FROM unnest($1::text[], $2::jsonb[]) AS x(id, o)
                   WHERE e.id = x.id AND e.to_route
                     AND (e.route_owner = $3 OR e.route_owner IS NULL OR e.route_until < now())
                   RETURNING e.id
                 ), stored AS (
                   INSERT INTO deliveries (id, event_id, target, meta, body, status, due_at,
                                           created_at, lease_owner, lease_until)
                   SELECT x.id, x.ev, x.t, x.m, x.b, 'scheduled', x.due, x.c,
                          COALESCE(x.o, t.owner),
                          CASE WHEN x.o IS NOT NULL THEN now() + make_interval(secs => $12)
                               ELSE t.lease_until END
                   FROM unnest($4::text[], $5::text[], $6::text[], $7::jsonb[], $8::bytea[],
                               $9::bigint[], $10::bigint[], $11::text[])
                        AS x(id, ev, t, m, b, c, due, o)
                   JOIN kept ON kept.id = x.ev
                   LEFT JOIN targets t
                          ON x.o IS NULL AND t.name = x.t AND t.owner IS NOT NULL
                         AND t.lease_until > now()
                 )
                 SELECT id FROM kept",
            )
            .await?,
            &[
                &ids,
                &outcomes,
                &node,
                &d_ids,
                &events,
                &targets,
                &metas,
                &bodies,
                &created,
                &due,
                &owners,
                &secs(lease),
            ],
        )
        .await
        .context("storing the routing outcomes")?;
    let kept: HashSet<&str> = rows.iter().map(|r| r.get(0)).collect();
    // The targets just found not ours, not a second look at the set: it
    // may change in between, and the wake-up must match the owners stored.
    let mut elsewhere = targets.iter().zip(&owners);
    Ok(items
        .iter()
        .map(|w| {
            let wake: Vec<String> = (&mut elsewhere)
                .take(w.deliveries.len())
                .filter(|(_, o)| o.is_none())
                .map(|(t, _)| t.to_string())
                .collect();
            kept.contains(w.event_id.as_str()).then_some(wake)
        })
        .collect())
}

/// Wakes the owner of `target`, which this transaction put work on (an
/// operator's retry), at its commit; nothing when this node owns it (its
/// own dispatcher is woken in process). Routing outcomes wake owners after
/// their commit instead (`notify.rs`).
pub(super) async fn notify_due(
    tx: &impl GenericClient,
    owned: &OwnedSet,
    target: &str,
) -> Result<()> {
    let mine = owned
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .names
        .contains(target);
    if mine {
        return Ok(());
    }
    tx.execute(
        &tx.prepare_cached("SELECT pg_notify($1, $2)").await?,
        &[
            &super::listen::CHANNEL,
            &super::listen::due_payload(&[target]),
        ],
    )
    .await?;
    Ok(())
}

/// New events without an idempotency key, grouped: one multi-row insert
/// per batch, each claimed for routing by this node as it is stored.
pub(super) struct Accepts {
    pub node: String,
}

#[async_trait]
impl Batched for Accepts {
    type Item = Event;
    type Done = ();

    const ONE_STATEMENT: bool = true;

    fn key(event: &Event) -> &str {
        event.id.as_str()
    }

    async fn apply<C: GenericClient>(&self, tx: &C, events: &[Event]) -> Result<Vec<()>> {
        let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
        let sources: Vec<&str> = events.iter().map(|e| e.source.as_str()).collect();
        let received: Vec<i64> = events.iter().map(|e| big(e.received_at)).collect();
        let metas: Vec<Json<&Event>> = events.iter().map(Json).collect();
        let bodies: Vec<&[u8]> = events.iter().map(|e| e.body.as_slice()).collect();
        let as_received: Vec<Option<&[u8]>> =
            events.iter().map(|e| e.received_body.as_deref()).collect();
        tx.execute(
            &tx.prepare_cached(
                "INSERT INTO events (id, source, received_at, meta, body, received_body,
                                     route_owner, route_until)
                 SELECT id, s, r, m, b, rb, $7, now() + make_interval(secs => $8)
                 FROM unnest($1::text[], $2::text[], $3::bigint[], $4::jsonb[], $5::bytea[],
                             $6::bytea[])
                      AS x(id, s, r, m, b, rb)",
            )
            .await?,
            &[
                &ids,
                &sources,
                &received,
                &metas,
                &bodies,
                &as_received,
                &self.node,
                &secs(ROUTE_LEASE),
            ],
        )
        .await?;
        Ok(vec![(); events.len()])
    }
}

/// A routing outcome without plugin KV writes (those keep a transaction of
/// their own: their checks refuse one event, not a batch).
pub(super) struct OutcomeWrite {
    event_id: String,
    outcome: Outcome,
    deliveries: Vec<Delivery>,
    due_ms: u64,
}

/// Routing outcomes, grouped: one statement per batch (`store_outcomes`).
/// Each item's answer is `None` when it was fenced (another node took the
/// event over), else the targets whose owners to wake.
pub(super) struct Outcomes {
    pub node: String,
    pub owned: OwnedSet,
}

#[async_trait]
impl Batched for Outcomes {
    type Item = OutcomeWrite;
    type Done = Option<Vec<String>>;

    const ONE_STATEMENT: bool = true;

    fn key(w: &OutcomeWrite) -> &str {
        &w.event_id
    }

    async fn apply<C: GenericClient>(
        &self,
        tx: &C,
        items: &[OutcomeWrite],
    ) -> Result<Vec<Option<Vec<String>>>> {
        store_outcomes(tx, items, &self.node, &self.owned).await
    }
}
