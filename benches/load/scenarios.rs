//! The scenarios and the order they run in: the bare baseline, ingestion
//! alone, end to end through plugins (fixed rate and saturation, per
//! language), fan-out, three plugins, and the in-process plugin call (the
//! recovery scenario has its own file). Each adds its `Row` (or its own
//! result) to the run's `Ctx`; `report.rs` turns them into tables.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::Value;

use crate::harness::{Ctx, Setup};
use crate::loadgen::LoadResult;
use crate::plugin_host;
use crate::procs;
use crate::report::thousands;
use crate::stats::Summary;
use crate::{CHAOS_PLUGIN, COUNTER_PLUGIN, JS_PLUGIN, PY_PLUGIN, RUST_PLUGIN};

/// How long after the load drained the idle RSS is read: past the latest
/// time a quiet plugin's warm instances are dropped, and a second more for
/// the allocator to return what that freed.
const IDLE_WAIT: Duration = hookyard::plugin::instance::WARM_IDLE
    .saturating_add(hookyard::plugin::idle::CHECK)
    .saturating_add(Duration::from_secs(1));

/// One row of the main table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Row {
    pub scenario: String,
    /// Which numbered requirement of the benchmark issue it answers.
    pub requirement: &'static str,
    pub load: String,
    pub accepted_per_sec: Option<f64>,
    pub ingest_latency: Option<Summary>,
    pub vs_baseline: Option<f64>,
    pub delivered_per_sec: Option<f64>,
    pub delivered: Option<u64>,
    pub expected_deliveries: Option<u64>,
    pub ingest_to_sink: Option<Summary>,
    pub peak_rss_mib: Option<f64>,
    /// Resident set size of the started router before any load (plugins
    /// loaded and warm-started, nothing routed yet), and again once the
    /// load has drained and the allocator has had a moment to return
    /// what was freed: the "idle" figures of issue 16's memory goal.
    pub idle_rss_mib: Option<(Option<f64>, Option<f64>)>,
    pub router_start_secs: Option<f64>,
    pub load_result: Option<LoadResult>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PluginCall {
    pub costs: plugin_host::CallCosts,
    pub warm_ratio: f64,
    pub fresh_ratio: f64,
    pub runtime_warm_ratio: f64,
    pub runtime_fresh_ratio: f64,
}

/// How an end-to-end scenario loads the router.
#[derive(Clone, Copy)]
pub enum Drive {
    /// Open loop at this rate for warm-up + duration.
    Rate(f64),
    /// This many events, closed loop, as fast as they are accepted.
    Burst(u64),
}

impl Ctx {
    fn selected(&self, name: &str) -> bool {
        self.opts.only.is_empty()
            || self.opts.only.iter().any(|f| match f.strip_suffix('$') {
                Some(exact) => name == exact,
                None => name.contains(f.as_str()),
            })
    }

    pub fn run_all(&mut self) -> Result<()> {
        let rate = self.opts.rate;
        let burst = self.opts.burst;
        let rate_name = format!("{rate:.0}");
        if self.selected("baseline") || self.selected("ingest") {
            self.step("baseline", |c| c.baseline())?;
        }
        for durability in ["buffered", "flush"] {
            let name = format!("ingest-{durability}");
            if self.selected(&name) {
                self.step(&name, |c| c.ingest(durability))?;
            }
        }
        // The Rust plugin builds in seconds; build it if it is missing.
        let rust_ok = plugin_host::quickstart_wasm();
        type Lang = (
            &'static str,
            &'static str,
            &'static str,
            Vec<(&'static str, &'static str)>,
        );
        let langs: [Lang; 3] = [
            (
                "rust",
                "2",
                RUST_PLUGIN,
                vec![("orders_target", "a"), ("alerts_target", "a")],
            ),
            ("python", "3", PY_PLUGIN, vec![("chat_target", "a")]),
            ("js", "3", JS_PLUGIN, vec![("chat_target", "a")]),
        ];
        for (lang, requirement, plugin, config) in langs {
            // hookyard's default durability (flush) everywhere; the Rust
            // plugin also at saturation with buffered, which separates the
            // routing and delivery pipeline from the fsync rate.
            let mut drives = vec![(Drive::Rate(rate), "flush"), (Drive::Burst(burst), "flush")];
            if lang == "rust" {
                drives.push((Drive::Burst(burst), "buffered"));
            }
            for (drive, durability) in drives {
                let name = match (drive, durability) {
                    (Drive::Rate(_), _) => format!("e2e-{lang}-{rate_name}"),
                    (Drive::Burst(_), "flush") => format!("e2e-{lang}-burst"),
                    (Drive::Burst(_), d) => format!("e2e-{lang}-burst-{d}"),
                };
                if !self.selected(&name) {
                    continue;
                }
                if let Some(missing) = self.missing(&[plugin]) {
                    self.skip(&name, &missing);
                    continue;
                }
                let setup = Setup {
                    durability,
                    plugins: vec![(plugin, config.clone())],
                    passthrough: vec![],
                    targets: vec!["a"],
                };
                self.step(&name, |c| c.e2e(&name, requirement, setup, 1, drive))?;
            }
        }
        // Transactional KV (issue 11): the same Rust pipeline with a plugin
        // that counts every event in one hot KV key (read, add one, write:
        // each commit checked against what the call read), and with one
        // that never touches KV, at the burst's 64 concurrent senders.
        for (name, plugin, config) in [
            ("kv-counter", COUNTER_PLUGIN, vec![("target", "a")]),
            (
                "kv-none",
                CHAOS_PLUGIN,
                vec![("target", "a"), ("mode", "ok")],
            ),
        ] {
            if !self.selected(name) {
                continue;
            }
            if let Some(missing) = self.missing(&[plugin]) {
                self.skip(name, &missing);
                continue;
            }
            let setup = Setup {
                durability: "flush",
                plugins: vec![(plugin, config)],
                passthrough: vec![],
                targets: vec!["a"],
            };
            self.step(name, |c| c.e2e(name, "11", setup, 1, Drive::Burst(burst)))?;
        }
        for (name, plugin, nodes) in [
            ("pg-1", CHAOS_PLUGIN, 1),
            ("pg-3", CHAOS_PLUGIN, 3),
            ("pg-1-kv", COUNTER_PLUGIN, 1),
        ] {
            if !self.selected(name) {
                continue;
            }
            if let Some(missing) = self.missing(&[plugin]) {
                self.skip(name, &missing);
                continue;
            }
            let config = if plugin == CHAOS_PLUGIN {
                vec![("target", "a"), ("mode", "ok")]
            } else {
                vec![("target", "a")]
            };
            self.step(name, |c| {
                c.e2e_cluster(name, (plugin, config), nodes, burst)
            })?;
        }
        if self.selected("fanout-3") {
            if let Some(missing) = self.missing(&[RUST_PLUGIN]) {
                self.skip("fanout-3", &missing);
            } else {
                let setup = Setup {
                    durability: "flush",
                    plugins: vec![(
                        RUST_PLUGIN,
                        vec![("orders_target", "a"), ("alerts_target", "a")],
                    )],
                    passthrough: vec!["b", "c"],
                    targets: vec!["a", "b", "c"],
                };
                self.step("fanout-3", |c| {
                    c.e2e("fanout-3", "4", setup, 3, Drive::Burst(burst))
                })?;
            }
        }
        if self.selected("plugins-3") {
            if let Some(missing) = self.missing(&[RUST_PLUGIN, PY_PLUGIN, JS_PLUGIN]) {
                self.skip("plugins-3", &missing);
            } else {
                let setup = Setup {
                    durability: "flush",
                    plugins: vec![
                        (
                            RUST_PLUGIN,
                            vec![("orders_target", "a"), ("alerts_target", "a")],
                        ),
                        (PY_PLUGIN, vec![("chat_target", "b")]),
                        (JS_PLUGIN, vec![("chat_target", "c")]),
                    ],
                    passthrough: vec![],
                    targets: vec!["a", "b", "c"],
                };
                let n = self.opts.burst_three_plugins;
                self.step("plugins-3", |c| {
                    c.e2e("plugins-3", "7", setup, 3, Drive::Burst(n))
                })?;
            }
        }
        if self.selected("recovery") {
            self.step("recovery", |c| c.recovery())?;
        }
        if self.selected("fuzz") {
            self.step("fuzz", |c| c.fuzz())?;
        }
        if self.selected("dashboard") {
            self.step("dashboard", |c| c.dashboard())?;
        }
        if self.selected("plugin-call") {
            match rust_ok {
                Ok(_) => self.step("plugin-call", |c| c.plugin_call())?,
                Err(e) => self.skip("plugin-call", &format!("{e:#}")),
            }
        }
        Ok(())
    }

    fn step(&mut self, name: &str, f: impl FnOnce(&mut Ctx) -> Result<()>) -> Result<()> {
        println!("== {name}");
        let started = Instant::now();
        f(self).with_context(|| format!("scenario {name}"))?;
        println!("   ({:.1} s)", started.elapsed().as_secs_f64());
        Ok(())
    }

    fn skip(&mut self, name: &str, why: &str) {
        println!("== {name}\n   skipped: {why}");
        self.skipped.push(format!("{name}: {why}"));
    }

    /// Which of these plugin files is not built, with how to build it.
    /// The `cargo test` smoke run leaves the Python and JS plugins out: a
    /// debug build with a cold compiled cache spends a minute compiling them.
    fn missing(&self, plugins: &[&str]) -> Option<String> {
        if self.opts.mode == "test" && plugins.iter().any(|p| *p == PY_PLUGIN || *p == JS_PLUGIN) {
            return Some(
                "not in the cargo test smoke run (cargo bench --bench load -- --quick has it)"
                    .into(),
            );
        }
        let missing: Vec<String> = plugins
            .iter()
            .filter(|p| !self.dist.join(format!("{p}.wasm")).is_file())
            .map(|p| format!("plugins/dist/{p}.wasm"))
            .collect();
        (!missing.is_empty()).then(|| {
            format!(
                "{} not built (bash scripts/build-plugins.sh)",
                missing.join(", ")
            )
        })
    }

    /// The bare axum server under the same closed-loop load.
    fn baseline(&mut self) -> Result<()> {
        let server = procs::start_baseline()?;
        let url = server.url().context("baseline address")?;
        let load = procs::run_load(&self.closed_spec(&url))?;
        let rss = server.peak_rss_mib();
        server.kill();
        check_load(&load)?;
        println!(
            "   {:.0} accepted/s, p99 {:.2} ms",
            load.accepted_per_sec,
            load.latency.p99_us / 1000.0
        );
        self.baseline = Some(load.accepted_per_sec);
        self.rows.push(Row {
            scenario: "baseline (bare axum, 202)".into(),
            requirement: "1",
            load: format!("closed, {} conns", self.opts.connections),
            accepted_per_sec: Some(load.accepted_per_sec),
            ingest_latency: Some(load.latency),
            vs_baseline: Some(1.0),
            peak_rss_mib: rss,
            notes: load_notes(&load),
            load_result: Some(load),
            ..Row::default()
        });
        Ok(())
    }

    /// A source with no plugins and no targets: ingestion alone.
    fn ingest(&mut self, durability: &'static str) -> Result<()> {
        let name = format!("ingest-{durability}");
        let setup = Setup {
            durability,
            plugins: vec![],
            passthrough: vec![],
            targets: vec![],
        };
        let dir = self.prepare(&name, &setup)?;
        let router = self.start(&dir, &setup)?;
        let started_in = router.started_in.as_secs_f64();
        let url = router.field("public=").context("public address")?;
        let load = procs::run_load(&self.closed_spec(&url));
        let (rss, mut notes) = self.finish(&dir, router)?;
        let load = load?;
        check_load(&load)?;
        let ratio = self.baseline.map(|b| load.accepted_per_sec / b);
        println!(
            "   {:.0} accepted/s ({}), p99 {:.2} ms",
            load.accepted_per_sec,
            ratio.map_or("no baseline".into(), |r| format!("{r:.2} x baseline")),
            load.latency.p99_us / 1000.0
        );
        notes.extend(load_notes(&load));
        self.rows.push(Row {
            scenario: name,
            requirement: "1",
            load: format!("closed, {} conns", self.opts.connections),
            accepted_per_sec: Some(load.accepted_per_sec),
            ingest_latency: Some(load.latency),
            vs_baseline: ratio,
            peak_rss_mib: rss,
            router_start_secs: Some(started_in),
            notes,
            load_result: Some(load),
            ..Row::default()
        });
        Ok(())
    }

    /// Events through plugins to the sink: accepted/s at the router,
    /// delivered/s and ingest→sink latency at the sink.
    fn e2e(
        &mut self,
        name: &str,
        requirement: &'static str,
        setup: Setup,
        per_event: u64,
        drive: Drive,
    ) -> Result<()> {
        self.sink_reset()?;
        let dir = self.prepare(name, &setup)?;
        let router = self.start(&dir, &setup)?;
        let started_in = router.started_in.as_secs_f64();
        let url = router.field("public=").context("public address")?;
        let admin = router.field("admin=").context("admin address")?;
        let mut spec = self.closed_spec(&url);
        let load_desc = match drive {
            Drive::Rate(rate) => {
                spec.rate = Some(rate);
                format!("open, {rate:.0}/s")
            }
            Drive::Burst(n) => {
                spec.count = Some(n);
                spec.duration_secs = 600.0;
                format!("closed, {} conns, {n} events", self.opts.connections)
            }
        };
        let idle_before = router.rss_mib();
        let mut idle_after = None;
        let ticks_before = procs::machine_ticks();
        let measured = (|| -> Result<(LoadResult, Value, Value)> {
            let load = procs::run_load(&spec)?;
            check_load(&load)?;
            let expected = load.accepted * per_event;
            let light = self.wait_delivered(expected)?;
            // What is still resident then is what idle holds.
            std::thread::sleep(IDLE_WAIT);
            idle_after = router.rss_mib();
            let (since, until) = match drive {
                Drive::Rate(_) => (load.measure_start_unix_ns, load.measure_end_unix_ns),
                Drive::Burst(_) => (0, u64::MAX),
            };
            let full = self.sink_stats(&format!("since={since}&until={until}"))?;
            Ok((load, light, full))
        })();
        let steal = procs::steal_percent(ticks_before, procs::machine_ticks());
        let failed = self.failed_attempts(&admin);
        let (rss, mut notes) = self.finish(&dir, router)?;
        let (load, light, full) = measured?;
        let expected = load.accepted * per_event;
        if let Some(steal) = steal.filter(|&s| s >= 0.5) {
            notes.push(format!(
                "the VM's host took {steal:.1} % of the CPU time during the run (steal)"
            ));
        }
        let unique = light["unique"].as_u64().unwrap_or(0);
        let received = full["received"].as_u64().unwrap_or(0);
        let last_recv = full["last_recv_ns"].as_u64().unwrap_or(0);
        let span = last_recv.saturating_sub(load.start_unix_ns) as f64 / 1e9;
        let delivered_per_sec = (span > 0.0).then(|| unique as f64 / span);
        let latency: Option<Summary> = serde_json::from_value(full["latency"].clone()).ok();
        if unique < expected {
            notes.push(format!(
                "only {unique} of {expected} deliveries arrived in time"
            ));
        }
        if received > unique {
            notes.push(format!(
                "{} duplicate deliveries (at-least-once)",
                received - unique
            ));
        }
        if full["no_ts"].as_u64().unwrap_or(0) > 0 {
            notes.push(format!("{} deliveries without bench_ts", full["no_ts"]));
        }
        if failed > 0 {
            notes.push(format!("{failed} failed delivery attempts"));
        }
        if let (Some(before), Some(after)) = (idle_before, idle_after) {
            notes.push(format!(
                "RSS idle: {before:.0} MiB before the load, {after:.0} MiB {} s after it drained",
                IDLE_WAIT.as_secs()
            ));
        }
        notes.extend(load_notes(&load));
        println!(
            "   {:.0} accepted/s, {:.0} delivered/s ({unique}/{expected}), ingest->sink p50 {:.2} ms p99 {:.2} ms",
            load.accepted_per_sec,
            delivered_per_sec.unwrap_or(0.0),
            latency.map_or(0.0, |l| l.p50_us / 1000.0),
            latency.map_or(0.0, |l| l.p99_us / 1000.0),
        );
        self.rows.push(Row {
            scenario: name.to_string(),
            requirement,
            load: load_desc,
            accepted_per_sec: Some(load.accepted_per_sec),
            ingest_latency: Some(load.latency),
            vs_baseline: None,
            delivered_per_sec,
            delivered: Some(unique),
            expected_deliveries: Some(expected),
            ingest_to_sink: latency,
            peak_rss_mib: rss,
            idle_rss_mib: Some((idle_before, idle_after)),
            router_start_secs: Some(started_in),
            notes,
            load_result: Some(load),
        });
        Ok(())
    }

    /// In-process timing of the plugin call (criterion has the careful
    /// version: `cargo bench --bench plugin_call`).
    fn plugin_call(&mut self) -> Result<()> {
        let costs = plugin_host::measure(Duration::from_millis(self.opts.plugin_call_budget_ms))?;
        let pc = PluginCall {
            warm_ratio: costs.warm_ratio(),
            fresh_ratio: costs.fresh_ratio(),
            runtime_warm_ratio: costs.runtime_warm_ratio(),
            runtime_fresh_ratio: costs.runtime_fresh_ratio(),
            costs,
        };
        println!(
            "   warm: raw {:.1} us, hookyard {:.1} us ({:.2}x); fresh: raw {:.1} us, hookyard {:.1} us ({:.2}x)",
            pc.costs.raw_warm_ns / 1000.0,
            pc.costs.hookyard_warm_ns / 1000.0,
            pc.warm_ratio,
            pc.costs.raw_fresh_ns / 1000.0,
            pc.costs.hookyard_fresh_ns / 1000.0,
            pc.fresh_ratio
        );
        self.plugin_call = Some(pc);
        Ok(())
    }
}

/// A load that got nothing accepted means the harness, not the router, is
/// broken: stop rather than print zeros.
pub fn check_load(load: &LoadResult) -> Result<()> {
    if load.accepted == 0 {
        bail!(
            "no request was accepted (errors {}, statuses {:?}, last error {:?})",
            load.errors,
            load.statuses,
            load.last_error
        );
    }
    Ok(())
}

fn load_notes(load: &LoadResult) -> Vec<String> {
    let mut notes = Vec::new();
    // Full seconds only (the last one is partial); says whether the rate
    // held or decayed over the run.
    let full = &load.per_second[..load.per_second.len().saturating_sub(1)];
    if load.closed_loop && full.len() >= 4 {
        let k = (full.len() / 4).max(1);
        let first: u64 = full[..k].iter().sum::<u64>() / k as u64;
        let last: u64 = full[full.len() - k..].iter().sum::<u64>() / k as u64;
        notes.push(format!(
            "accepted/s over the run: {} in the first {k} s, {} in the last {k} s",
            thousands(first as f64),
            thousands(last as f64)
        ));
    }
    if load.errors > 0 {
        notes.push(format!(
            "{} transport errors (last: {})",
            load.errors,
            load.last_error.as_deref().unwrap_or("?")
        ));
    }
    if !load.statuses.is_empty() {
        notes.push(format!("non-202 answers: {:?}", load.statuses));
    }
    if load.late_sends > 0 {
        notes.push(format!(
            "{} sends started > 2 ms after their slot (max {:.1} ms late)",
            load.late_sends, load.max_late_ms
        ));
    }
    notes
}
