//! Plugin KV state in PostgreSQL: the commit of a routing's KV writes
//! (checked against what its calls read), reads from plugin threads, and
//! the operator's list, read and delete.
//!
//! Keys a commit reads or writes are locked with transaction advisory locks
//! (in one order, so two commits cannot deadlock), then read and compared:
//! a row lock could not lock a key that does not exist yet, and "absent" is
//! a value a call can read. Each plugin's key count is a row updated in the
//! same transaction, so the limit holds across nodes.

use std::collections::BTreeMap;

use anyhow::Result;
use async_trait::async_trait;

use super::PgStore;
use crate::plugin::kv::{KvRefused, PluginTxn, digest};
use crate::store::{Page, PluginKv, PluginKvAdmin};

/// Checks and applies `parts` inside `tx`; `Some` when refused (the caller
/// rolls back).
pub(super) async fn commit(
    tx: &deadpool_postgres::Transaction<'_>,
    parts: &[PluginTxn],
) -> Result<Option<KvRefused>> {
    let parts: Vec<&PluginTxn> = parts.iter().filter(|p| !p.txn.is_empty()).collect();
    if parts.is_empty() {
        return Ok(None);
    }
    // Every key touched, in one order.
    let mut keys: Vec<(&str, &str)> = parts
        .iter()
        .flat_map(|p| {
            p.txn
                .reads
                .keys()
                .chain(p.txn.writes.keys())
                .map(move |k| (p.plugin.as_str(), k.as_str()))
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let (plugins, names): (Vec<&str>, Vec<&str>) = keys.into_iter().unzip();
    // One statement, locks taken in the order of the lock keys themselves
    // (two keys may share a hash), so two commits cannot deadlock.
    tx.execute(
        &tx.prepare_cached(
            "SELECT pg_advisory_xact_lock(h1, h2) FROM (
             SELECT DISTINCT hashtext(p) AS h1, hashtext(k) AS h2
             FROM unnest($1::text[], $2::text[]) AS x(p, k)
             ORDER BY 1, 2) s",
        )
        .await?,
        &[&plugins, &names],
    )
    .await?;
    for p in &parts {
        let names: Vec<&str> = p
            .txn
            .reads
            .keys()
            .chain(p.txn.writes.keys())
            .map(String::as_str)
            .collect();
        let rows = tx
            .query(
                "SELECT key, value FROM plugin_kv WHERE plugin = $1 AND key = ANY($2)",
                &[&p.plugin, &names],
            )
            .await?;
        let current: BTreeMap<String, Vec<u8>> =
            rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        for (key, read) in &p.txn.reads {
            if digest(current.get(key).map(Vec::as_slice)) != *read {
                return Ok(Some(KvRefused::Conflict {
                    plugin: p.plugin.clone(),
                    key: key.clone(),
                }));
            }
        }
        if p.txn.writes.is_empty() {
            continue;
        }
        let mut delta: i64 = 0;
        for (key, value) in &p.txn.writes {
            match (current.contains_key(key), value.is_some()) {
                (false, true) => delta += 1,
                (true, false) => delta -= 1,
                _ => {}
            }
        }
        let row = tx
            .query_one(
                "INSERT INTO plugin_kv_counts (plugin, n) VALUES ($1, 0)
                 ON CONFLICT (plugin) DO UPDATE SET n = plugin_kv_counts.n
                 RETURNING n",
                &[&p.plugin],
            )
            .await?;
        let n: i64 = row.get(0);
        let next = (n + delta).max(0);
        if next as u64 > p.max_keys as u64 && delta > 0 {
            return Ok(Some(KvRefused::Full {
                plugin: p.plugin.clone(),
                limit: p.max_keys,
            }));
        }
        for (key, value) in &p.txn.writes {
            match value {
                Some(v) => {
                    tx.execute(
                        &tx.prepare_cached(
                            "INSERT INTO plugin_kv (plugin, key, value) VALUES ($1, $2, $3)
                         ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value",
                        )
                        .await?,
                        &[&p.plugin, key, v],
                    )
                    .await?;
                }
                None => {
                    tx.execute(
                        &tx.prepare_cached("DELETE FROM plugin_kv WHERE plugin = $1 AND key = $2")
                            .await?,
                        &[&p.plugin, key],
                    )
                    .await?;
                }
            }
        }
        if delta != 0 {
            tx.execute(
                &tx.prepare_cached("UPDATE plugin_kv_counts SET n = $2 WHERE plugin = $1")
                    .await?,
                &[&p.plugin, &next],
            )
            .await?;
        }
    }
    Ok(None)
}

impl PluginKv for PgStore {
    fn kv_get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>> {
        // Plugin calls run on blocking threads of the runtime: wait for the
        // query there. Called from an async worker (a test, a tool),
        // `block_in_place` hands the worker's other tasks on first.
        let store = self.clone();
        let (plugin, key) = (plugin.to_string(), key.to_string());
        let rt = self.inner.runtime.clone();
        tokio::task::block_in_place(move || {
            rt.block_on(async move { store.kv_value(&plugin, &key).await })
        })
    }
}

#[async_trait]
impl PluginKvAdmin for PgStore {
    async fn kv_list(
        &self,
        plugin: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<(String, usize)>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT key, length(value) FROM plugin_kv
                 WHERE plugin = $1 AND starts_with(key, $2) AND key > $3
                 ORDER BY key LIMIT $4",
                &[&plugin, &prefix, &after.unwrap_or(""), &(limit as i64 + 1)],
            )
            .await?;
        let items: Vec<(String, usize)> = rows
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i32>(1) as usize))
            .collect();
        Ok(Page::from_overfetch(items, limit, |(k, _)| k.clone()))
    }

    async fn kv_value(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let c = self.client().await?;
        Ok(c.query_opt(
            &c.prepare_cached("SELECT value FROM plugin_kv WHERE plugin = $1 AND key = $2")
                .await?,
            &[&plugin, &key],
        )
        .await?
        .map(|r| r.get(0)))
    }

    async fn kv_delete(&self, plugin: &str, key: &str) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Locked like a plugin's commit, so a commit that read the key
        // before the delete is refused after it.
        tx.execute(
            &tx.prepare_cached("SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))")
                .await?,
            &[&plugin, &key],
        )
        .await?;
        let gone = tx
            .execute(
                "DELETE FROM plugin_kv WHERE plugin = $1 AND key = $2",
                &[&plugin, &key],
            )
            .await?;
        if gone > 0 {
            tx.execute(
                &tx.prepare_cached(
                    "UPDATE plugin_kv_counts SET n = greatest(n - 1, 0) WHERE plugin = $1",
                )
                .await?,
                &[&plugin],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(gone > 0)
    }
}
