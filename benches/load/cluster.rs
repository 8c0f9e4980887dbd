//! Cluster scenarios: `pg-1` and `pg-3`, a Rust plugin that delivers each
//! event without KV (as Svix's server was measured), and `pg-1-kv`, the
//! counter plugin (one hot KV key), end to end on one and three nodes
//! sharing one PostgreSQL (a throwaway server
//! from `scripts/pg.sh`, with fsync on, as production runs it). Besides
//! the row's figures, each reports what the database spent per delivered
//! event: its processes' CPU time, and the statements and transactions it
//! executed (`pg_stat_statements`, `pg_stat_database`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};

use crate::harness::{Ctx, Setup};
use crate::procs;
use crate::scenarios::{Row, check_load};

/// The benchmark's PostgreSQL, stopped when the bench ends (and by its
/// watchdog if the bench dies).
pub struct Pg {
    dir: PathBuf,
    url: String,
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(root().join("scripts/pg.sh"))
            .args(["stop"])
            .arg(&self.dir)
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What the database had spent at one moment.
struct DbUsage {
    cpu_secs: Vec<(&'static str, f64)>,
    statements: i64,
    commits: i64,
    /// The server's WAL position, in bytes: what a run wrote to the log
    /// that every commit waits to flush.
    wal: i64,
}

impl Pg {
    fn start(work: &std::path::Path) -> Result<Pg> {
        let dir = work.join("postgres");
        let out = std::process::Command::new("bash")
            .arg(root().join("scripts/pg.sh"))
            .arg("start")
            .arg(&dir)
            .arg(std::process::id().to_string())
            .env("PG_FSYNC", "on")
            .output()
            .context("run scripts/pg.sh")?;
        if !out.status.success() {
            return Err(anyhow!(
                "scripts/pg.sh start failed (apt-get install postgresql):\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let url = String::from_utf8(out.stdout)?.trim().to_string();
        Ok(Pg { dir, url })
    }

    /// The server's CPU time by kind of process: the postmaster and its
    /// live children by their titles, and children that ended (autovacuum
    /// workers come and go within a run) from the postmaster's count of
    /// reaped children. Without the last, a run's vacuuming went uncounted.
    fn cpu_secs(&self) -> Vec<(&'static str, f64)> {
        let mut by_kind: Vec<(&'static str, f64)> = Vec::new();
        let mut add =
            |kind: &'static str, secs: f64| match by_kind.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, s)) => *s += secs,
                None => by_kind.push((kind, secs)),
            };
        let Ok(pidfile) = std::fs::read_to_string(self.dir.join("data/postmaster.pid")) else {
            return by_kind;
        };
        let Some(master) = pidfile.lines().next().map(str::trim) else {
            return by_kind;
        };
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let pid = entry.file_name().to_string_lossy().to_string();
            let Some(f) = procs::stat_fields(&pid) else {
                continue;
            };
            if pid == master {
                add("postmaster", procs::cpu_of(&f));
                add("ended children", procs::children_cpu_of(&f));
            } else if f.len() > 12 && f[1] == master {
                let title =
                    std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let kind = if title.contains("autovacuum") {
                    "autovacuum"
                } else if title.contains("walwriter")
                    || title.contains("checkpointer")
                    || title.contains("background writer")
                {
                    "WAL and checkpoints"
                } else {
                    "connections"
                };
                add(kind, procs::cpu_of(&f));
            }
        }
        by_kind
    }
}

impl Ctx {
    async fn sql(url: &str, q: &str) -> Result<Vec<tokio_postgres::Row>> {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        Ok(client.query(q, &[]).await?)
    }

    fn usage(&self, pg: &Pg, db_url: &str) -> Result<DbUsage> {
        let cpu_secs = pg.cpu_secs();
        let (statements, commits, wal) = self.rt.block_on(async {
            let s = Self::sql(
                db_url,
                "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements
                 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
            )
            .await?;
            let c = Self::sql(
                db_url,
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
            )
            .await?;
            let w = Self::sql(db_url, "SELECT (pg_current_wal_lsn() - '0/0')::bigint").await?;
            Ok::<_, anyhow::Error>((
                s[0].get::<_, i64>(0),
                c[0].get::<_, i64>(0),
                w[0].get::<_, i64>(0),
            ))
        })?;
        Ok(DbUsage {
            cpu_secs,
            statements,
            commits,
            wal,
        })
    }

    /// `plugin` (with its config) on `nodes` nodes of one database, `burst`
    /// events spread over their public listeners.
    pub fn e2e_cluster(
        &mut self,
        name: &str,
        plugin: (&'static str, Vec<(&'static str, &'static str)>),
        nodes: usize,
        burst: u64,
    ) -> Result<()> {
        if self.pg.is_none() {
            self.pg = Some(Pg::start(&self.work)?);
        }
        self.sink_reset()?;
        let db = format!("bench_{}", name.replace('-', "_"));
        let base = self.pg.as_ref().unwrap().url.clone();
        let db_url = format!("{}/{db}", base.rsplit_once('/').unwrap().0);
        self.rt.block_on(async {
            Self::sql(&base, &format!("DROP DATABASE IF EXISTS {db}")).await?;
            Self::sql(&base, &format!("CREATE DATABASE {db}")).await?;
            Self::sql(&db_url, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements").await?;
            Ok::<_, anyhow::Error>(())
        })?;
        let setup = Setup {
            durability: "flush",
            plugins: vec![plugin],
            passthrough: vec![],
            targets: vec!["a"],
        };
        let mut routers = Vec::new();
        let mut urls = Vec::new();
        let mut dirs = Vec::new();
        for i in 0..nodes {
            let dir = self.prepare(&format!("{name}-{i}"), &setup)?;
            let config = format!(
                "{}\n[store]\nbackend = \"postgres\"\nurl = \"{db_url}\"\nnode_id = \"bench-{i}\"\n",
                self.config(&setup)
            );
            let router = self.start_config(&dir, &config)?;
            urls.push(router.field("public=").context("public address")?);
            println!("   node bench-{i}: pid {}", router.pid());
            routers.push(router);
            dirs.push(dir);
        }
        let joined: Vec<String> = urls
            .iter()
            .map(|u| {
                u.trim_start_matches("http://")
                    .trim_end_matches('/')
                    .to_string()
            })
            .collect();
        let mut spec = self.closed_spec(&urls[0]);
        spec.addr = joined.join(",");
        spec.count = Some(burst);
        spec.duration_secs = 600.0;
        let pg = self.pg.take().unwrap();
        let pids: Vec<u32> = routers.iter().map(|r| r.pid()).collect();
        let others = |pids: &[u32]| -> (Vec<f64>, f64) {
            let nodes = pids.iter().map(|&p| procs::cpu_secs(p)).collect();
            (nodes, procs::cpu_secs(self.sink_pid))
        };
        let (nodes_before, sink_before) = others(&pids);
        let before = self.usage(&pg, &db_url)?;
        let started = Instant::now();
        let measured = (|| -> Result<_> {
            let load = procs::run_load(&spec)?;
            check_load(&load)?;
            let light = self.wait_delivered(load.accepted)?;
            let full = self.sink_stats("since=0")?;
            Ok((load, light, full))
        })();
        let after = self.usage(&pg, &db_url);
        let (nodes_after, sink_after) = others(&pids);
        // Each node's share: the target's owner delivers every event, so
        // it is the node that would saturate first.
        let node_cpu: Vec<f64> = nodes_after
            .iter()
            .zip(&nodes_before)
            .map(|(a, b)| a - b)
            .collect();
        let wall = started.elapsed().as_secs_f64();
        self.pg = Some(pg);
        let mut rss: Option<f64> = None;
        let mut notes = Vec::new();
        for (dir, router) in dirs.iter().zip(routers) {
            let (r, n) = self.finish(dir, router)?;
            // The largest node's peak.
            rss = match (rss, r) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            notes.extend(n);
        }
        let (load, light, full) = measured?;
        let after = after?;
        let unique = light["unique"].as_u64().unwrap_or(0);
        let last_recv = full["last_recv_ns"].as_u64().unwrap_or(0);
        let span = last_recv.saturating_sub(load.start_unix_ns) as f64 / 1e9;
        let delivered_per_sec = (span > 0.0).then(|| unique as f64 / span);
        let per = |n: f64| n / unique.max(1) as f64;
        let by_kind: Vec<(&str, f64)> = after
            .cpu_secs
            .iter()
            .map(|(k, a)| {
                let b = before
                    .cpu_secs
                    .iter()
                    .find(|(kb, _)| kb == k)
                    .map_or(0.0, |(_, b)| *b);
                (*k, a - b)
            })
            .collect();
        let cpu: f64 = by_kind.iter().map(|(_, s)| s).sum();
        let db_note = format!(
            "PostgreSQL: {:.2} CPU-s ({:.0} % of a core over {wall:.1} s), {:.1} statements, {:.1} commits and {:.0} bytes of WAL per delivered event",
            cpu,
            100.0 * cpu / wall.max(0.001),
            per((after.statements - before.statements) as f64),
            per((after.commits - before.commits) as f64),
            per((after.wal - before.wal) as f64),
        );
        // Where the database's time went, by statement.
        let top = self.rt.block_on(Self::sql(
            &db_url,
            "SELECT calls, total_exec_time, wal_bytes::float8,
                    regexp_replace(left(query, 70), '\\s+', ' ', 'g')
             FROM pg_stat_statements
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
             ORDER BY total_exec_time DESC LIMIT 8",
        ));
        if let Ok(rows) = top {
            for r in rows {
                let calls = r.get::<_, i64>(0) as f64;
                let ms = r.get::<_, f64>(1);
                println!(
                    "     {:>6.2}/event {:>8.3} ms each {:>7.0} ms total {:>6.0} WAL B/event  {}",
                    per(calls),
                    ms / calls.max(1.0),
                    ms,
                    per(r.get::<_, f64>(2)),
                    r.get::<_, String>(3)
                );
            }
        }
        println!(
            "   {nodes} node(s): {:.0} accepted/s, {:.0} delivered/s ({unique}/{}); {db_note}",
            load.accepted_per_sec,
            delivered_per_sec.unwrap_or(0.0),
            load.accepted
        );
        // Where the machine's cores went, per delivered event: the database,
        // the nodes, and the bench's own sink and load generator, which
        // share the cores with what they measure.
        let ms = |secs: f64| 1000.0 * per(secs);
        let split = [
            ("PostgreSQL", cpu),
            ("node(s)", node_cpu.iter().sum()),
            ("sink", sink_after - sink_before),
            ("load generator", load.cpu_secs),
        ];
        let total: f64 = split.iter().map(|(_, s)| s).sum();
        let cpu_note = format!(
            "CPU per delivered event: {}; {:.2} ms in all",
            split
                .iter()
                .map(|(who, s)| format!("{who} {:.2} ms", ms(*s)))
                .collect::<Vec<_>>()
                .join(", "),
            ms(total),
        );
        println!("   {cpu_note}");
        if node_cpu.len() > 1 {
            println!(
                "   CPU-s by node: {}",
                node_cpu
                    .iter()
                    .map(|s| format!("{s:.2}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let db_split = format!(
            "PostgreSQL's CPU per delivered event by process: {}",
            by_kind
                .iter()
                .filter(|(_, s)| *s > 0.0)
                .map(|(who, s)| format!("{who} {:.3} ms", ms(*s)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!("   {db_split}");
        notes.insert(0, db_split);
        notes.insert(0, cpu_note);
        notes.insert(0, db_note);
        if unique < load.accepted {
            notes.push(format!(
                "only {unique} of {} deliveries arrived in time",
                load.accepted
            ));
        }
        self.rows.push(Row {
            scenario: name.to_string(),
            requirement: "12",
            load: format!(
                "closed, {} conns over {nodes} node(s), {burst} events",
                self.opts.connections
            ),
            accepted_per_sec: Some(load.accepted_per_sec),
            ingest_latency: Some(load.latency),
            vs_baseline: None,
            delivered_per_sec,
            delivered: Some(unique),
            expected_deliveries: Some(load.accepted),
            ingest_to_sink: serde_json::from_value(full["latency"].clone()).ok(),
            peak_rss_mib: rss,
            idle_rss_mib: None,
            router_start_secs: None,
            notes,
            load_result: Some(load),
        });
        Ok(())
    }
}
