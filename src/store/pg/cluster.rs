//! The cluster's own records: which nodes are alive, which node owns which
//! target, and plugins pushed into the database.
//!
//! Target ownership is how a target's policies (`max_in_flight`,
//! `rate_limit`, the circuit breaker) hold for the cluster and not per
//! node: one node at a time dispatches a target, under a lease it renews
//! every few seconds. A node that dies stops renewing and another takes the
//! target over when the lease runs out. Targets are spread: a node takes
//! free targets up to its fair share (targets divided by live nodes,
//! rounded up) and is told how many it holds past that share, so a node
//! that joins gets some once others let theirs go (after their attempts
//! in flight end, so the limits hold through the hand-over too).

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

use super::PgStore;
use super::events::secs;
use crate::store::Owned;

/// A node not heard from for this long is not counted as alive when
/// targets are shared out.
const NODE_ALIVE: Duration = Duration::from_secs(15);

/// How often a node says it is alive.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(3);

/// One node as the cluster sees it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeInfo {
    pub id: String,
    /// Seconds since its last heartbeat.
    pub last_seen_secs: f64,
    pub alive: bool,
    /// What the node says about itself (version, addresses, config hash).
    pub info: serde_json::Value,
    /// Targets it owns now.
    pub targets: Vec<String>,
}

/// A plugin stored in the database, as pushed.
#[derive(Debug, Clone)]
pub struct PluginBlob {
    pub name: String,
    pub sha256: String,
    pub wasm: Vec<u8>,
}

/// What a node serves for a plugin, or why it could not.
#[derive(Debug, Clone, Serialize)]
pub struct PluginReport {
    pub node: String,
    pub plugin: String,
    pub sha256: Option<String>,
    pub error: Option<String>,
}

impl PgStore {
    /// Says this node is alive (and what it is).
    pub async fn heartbeat(&self, info: &serde_json::Value) -> Result<()> {
        let c = self.client().await?;
        c.execute(
            &c.prepare_cached(
                "INSERT INTO nodes (id, info) VALUES ($1, $2)
             ON CONFLICT (id) DO UPDATE SET heartbeat = now(), info = excluded.info",
            )
            .await?,
            &[&self.inner.node, info],
        )
        .await
        .context("heartbeat")?;
        Ok(())
    }

    /// Every node that has ever joined, with the targets each owns.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT n.id, extract(epoch FROM now() - n.heartbeat)::float8, n.info,
                        coalesce(array_agg(t.name ORDER BY t.name)
                                 FILTER (WHERE t.name IS NOT NULL), '{}')
                 FROM nodes n
                 LEFT JOIN targets t ON t.owner = n.id AND t.lease_until > now()
                 GROUP BY n.id ORDER BY n.id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let age: f64 = r.get(1);
                NodeInfo {
                    id: r.get(0),
                    last_seen_secs: (age * 10.0).round() / 10.0,
                    alive: age < NODE_ALIVE.as_secs_f64(),
                    info: r.get(2),
                    targets: r.get(3),
                }
            })
            .collect())
    }

    /// Renews this node's targets, lets go of `release`, and takes free
    /// ones up to its fair share.
    pub(super) async fn own(
        &self,
        targets: &[String],
        release: &[String],
        lease: Duration,
    ) -> Result<Owned> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let node = &self.inner.node;
        tx.execute(
            &tx.prepare_cached(
                "INSERT INTO targets (name) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING",
            )
            .await?,
            &[&targets],
        )
        .await?;
        if !release.is_empty() {
            tx.execute(
                &tx.prepare_cached(
                    "UPDATE targets SET owner = NULL, lease_until = NULL
                 WHERE owner = $1 AND name = ANY($2)",
                )
                .await?,
                &[node, &release],
            )
            .await?;
            // Deliveries handed to this node as they were routed and not
            // started (none is in flight: a target is let go only then)
            // are the new owner's at once, not after their lease.
            tx.execute(
                &tx.prepare_cached(
                    "UPDATE deliveries SET lease_owner = NULL, lease_until = NULL
                 WHERE target = ANY($2) AND status = 'scheduled' AND lease_owner = $1",
                )
                .await?,
                &[node, &release],
            )
            .await?;
        }
        let live: i64 = tx
            .query_one(
                "SELECT greatest(count(*), 1) FROM nodes
                 WHERE heartbeat > now() - make_interval(secs => $1) OR id = $2",
                &[&secs(NODE_ALIVE), node],
            )
            .await?
            .get(0);
        let share = targets.len().div_ceil(live as usize);
        let renewed = tx
            .query(
                "UPDATE targets SET lease_until = now() + make_interval(secs => $3)
                 WHERE owner = $1 AND lease_until > now() AND name = ANY($2)
                 RETURNING name",
                &[node, &targets, &secs(lease)],
            )
            .await?;
        let mut mine: Vec<String> = renewed.iter().map(|r| r.get(0)).collect();
        if mine.len() < share {
            let taken = tx
                .query(
                    "UPDATE targets t SET owner = $1, epoch = t.epoch + 1,
                                          lease_until = now() + make_interval(secs => $3)
                     FROM (SELECT name FROM targets
                           WHERE name = ANY($2) AND NOT (name = ANY($5))
                             AND (owner IS NULL OR lease_until IS NULL OR lease_until < now())
                           ORDER BY name LIMIT $4
                           FOR UPDATE SKIP LOCKED) f
                     WHERE t.name = f.name
                     RETURNING t.name",
                    &[
                        node,
                        &targets,
                        &secs(lease),
                        &((share - mine.len()) as i64),
                        &release,
                    ],
                )
                .await?;
            mine.extend(taken.iter().map(|r| r.get::<_, String>(0)));
        }
        tx.commit().await.context("renewing target ownership")?;
        mine.sort();
        *self.inner.owned.lock().unwrap_or_else(|e| e.into_inner()) = super::OwnedTargets {
            names: mine.iter().cloned().collect::<HashSet<_>>(),
            lease,
        };
        let surplus = mine.len().saturating_sub(share);
        Ok(Owned { mine, surplus })
    }

    /// Stores a plugin's component for every node and tells them.
    pub async fn push_plugin(&self, name: &str, sha256: &str, wasm: &[u8]) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            &tx.prepare_cached(
                "INSERT INTO plugins (name, sha256, wasm) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE
               SET sha256 = excluded.sha256, wasm = excluded.wasm, updated_at = now()",
            )
            .await?,
            &[&name, &sha256, &wasm],
        )
        .await
        .context("storing the plugin")?;
        tx.execute(
            &tx.prepare_cached("SELECT pg_notify($1, $2)").await?,
            &[&super::listen::CHANNEL, &super::listen::PLUGINS_PAYLOAD],
        )
        .await?;
        tx.commit().await.context("storing the plugin")?;
        Ok(())
    }

    /// The pushed plugins' names and digests (no bytes).
    pub async fn pushed_plugins(&self) -> Result<Vec<(String, String)>> {
        let c = self.client().await?;
        let rows = c
            .query("SELECT name, sha256 FROM plugins ORDER BY name", &[])
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// One pushed plugin with its bytes.
    pub async fn pushed_plugin(&self, name: &str) -> Result<Option<PluginBlob>> {
        let c = self.client().await?;
        Ok(c.query_opt(
            &c.prepare_cached("SELECT name, sha256, wasm FROM plugins WHERE name = $1")
                .await?,
            &[&name],
        )
        .await?
        .map(|r| PluginBlob {
            name: r.get(0),
            sha256: r.get(1),
            wasm: r.get(2),
        }))
    }

    /// Records what this node serves for a plugin.
    pub async fn report_plugin(
        &self,
        plugin: &str,
        sha256: Option<&str>,
        error: Option<&str>,
    ) -> Result<()> {
        let c = self.client().await?;
        c.execute(
            &c.prepare_cached(
                "INSERT INTO plugin_status (node, plugin, sha256, error) VALUES ($1, $2, $3, $4)
             ON CONFLICT (node, plugin) DO UPDATE
               SET sha256 = excluded.sha256, error = excluded.error, at = now()",
            )
            .await?,
            &[&self.inner.node, &plugin, &sha256, &error],
        )
        .await?;
        Ok(())
    }

    /// What every node reported for every plugin.
    pub async fn plugin_reports(&self) -> Result<Vec<PluginReport>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT node, plugin, sha256, error FROM plugin_status ORDER BY plugin, node",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| PluginReport {
                node: r.get(0),
                plugin: r.get(1),
                sha256: r.get(2),
                error: r.get(3),
            })
            .collect())
    }
}
