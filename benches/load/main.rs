//! hookyard's load benchmark: `cargo bench --bench load [-- --quick]`
//! (or `scripts/bench.sh [--quick]`, which builds the plugins first).
//!
//! One run on one machine: the release `hookyard` binary cargo built for
//! this bench, a sink that answers 200 and records receive times, a load
//! generator (hyper, keep-alive connections, closed loop or fixed rate) and
//! a bare axum baseline each run in their own process — this executable
//! re-run with `__role sink|baseline|loadgen`. Everything listens on
//! 127.0.0.1 and every load is bounded in time.
//!
//! Scenarios (see docs/benchmarks.md for what each measures and why):
//! baseline, ingest-{buffered,flush}, e2e-{rust,python,js}-{1000,burst},
//! e2e-rust-burst-buffered, fanout-3, plugins-3, recovery, plugin-call. A fresh router (own data
//! directory) per scenario, so its peak RSS (`VmHWM`) is that scenario's.
//!
//! Prints Markdown tables and writes `target/bench/results.json`
//! (`results-quick.json` for `--quick`, `results-partial.json` with
//! `--only`, `results-test.json` for the smoke run). Run without `--bench`
//! (that is, by `cargo test --all-targets`, as CI does), it does a smoke run
//! that keeps the harness from rotting: tiny loads, no Python/JS scenarios,
//! and figures from a debug build that mean nothing.

mod baseline;
mod loadgen;
mod plugin_host;
mod procs;
mod sink;
mod stats;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use serde::Serialize;
use serde_json::{Value, json};

use loadgen::{LoadResult, LoadSpec};
use procs::Proc;
use stats::{Summary, unix_ns};

/// Every target signs (Standard Webhooks), as a real setup would.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const RUST_PLUGIN: &str = "quickstart-router";
const PY_PLUGIN: &str = "chat-router-python";
const JS_PLUGIN: &str = "chat-router-js";

#[derive(Parser, Debug)]
#[command(
    name = "load",
    about = "hookyard load benchmark: cargo bench --bench load [-- --quick] [-- OPTIONS]"
)]
struct Cli {
    /// Tiny durations and counts (CI: checks the harness runs, not figures).
    #[arg(long)]
    quick: bool,
    /// Passed by `cargo bench`; without it (`cargo test`) a quick run.
    #[arg(long, hide = true)]
    bench: bool,
    /// Measured seconds of each timed load phase [10; quick 1.5].
    #[arg(long)]
    duration: Option<f64>,
    /// Unmeasured seconds before each timed phase [1; quick 0.3].
    #[arg(long)]
    warmup: Option<f64>,
    /// Keep-alive connections of the load generator.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Fixed (open-loop) rate of the latency scenarios, events/s.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Bytes per event body (JSON).
    #[arg(long, default_value_t = 512)]
    body_size: usize,
    /// The events' `type`: `order.*` makes the Rust plugin forward the
    /// body unchanged; anything else makes it build a new (chat) body, as
    /// the Python and JS plugins always do.
    #[arg(long, default_value = "order.created")]
    event_type: String,
    /// Events sent as fast as possible in the end-to-end saturation
    /// scenarios [60000; quick 1500].
    #[arg(long)]
    burst: Option<u64>,
    /// Scheduled deliveries in the recovery scenario [100000; quick 2000].
    #[arg(long)]
    backlog: Option<u64>,
    /// Run only scenarios whose name contains one of these (comma list).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Where to write the JSON results.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Keep each scenario's data directory (under target/bench/run-PID).
    #[arg(long)]
    keep: bool,
    /// HOOKYARD_LOG for the router (default: hookyard's own, info).
    #[arg(long)]
    router_log: Option<String>,
    /// Extra environment for the router, NAME=VALUE (repeatable), for
    /// experiments such as MALLOC_ARENA_MAX=2.
    #[arg(long, value_parser = parse_env)]
    router_env: Vec<(String, String)>,
    /// Record the router with `perf record -e cpu-clock -g` during each
    /// scenario into target/bench/perf/<scenario>.data (needs perf).
    #[arg(long)]
    perf: bool,
    /// Like --only (so `cargo bench --bench load -- ingest` works).
    filters: Vec<String>,
}

/// Settings after the mode's defaults are applied.
#[derive(Debug, Clone, Serialize)]
struct Opts {
    mode: &'static str,
    warmup: f64,
    duration: f64,
    connections: usize,
    rate: f64,
    body_size: usize,
    event_type: String,
    burst: u64,
    burst_three_plugins: u64,
    backlog: u64,
    drain_timeout: f64,
    plugin_call_budget_ms: u64,
    only: Vec<String>,
    keep: bool,
    router_log: Option<String>,
    router_env: Vec<(String, String)>,
    perf: bool,
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{text:?} is not NAME=VALUE"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("__role") {
        let result = match args.get(2).map(String::as_str) {
            Some("sink") => sink::main(),
            Some("baseline") => baseline::main(),
            Some("loadgen") => loadgen::main(args.get(3).map(String::as_str).unwrap_or("")),
            // Diagnostic: `load __role plugin-rss plugins/dist/X.wasm 20000`.
            Some("plugin-rss") => plugin_host::rss_probe(
                Path::new(args.get(3).map(String::as_str).unwrap_or("")),
                args.get(4).and_then(|n| n.parse().ok()).unwrap_or(10_000),
            ),
            other => Err(anyhow!("unknown role {other:?}")),
        };
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench role failed: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let started = Instant::now();
    let mode = match (cli.bench, cli.quick) {
        (false, _) => "test",
        (true, true) => "quick",
        (true, false) => "full",
    };
    // (cargo test smoke run, --quick, full)
    fn pick<T>(mode: &str, test: T, quick: T, full: T) -> T {
        match mode {
            "test" => test,
            "quick" => quick,
            _ => full,
        }
    }
    let mut only = cli.only.clone();
    only.extend(cli.filters.iter().cloned());
    let opts = Opts {
        mode,
        warmup: cli.warmup.unwrap_or(pick(mode, 0.2, 0.3, 1.0)),
        duration: cli.duration.unwrap_or(pick(mode, 0.5, 1.5, 10.0)),
        connections: cli.connections,
        rate: cli.rate,
        body_size: cli.body_size,
        event_type: cli.event_type.clone(),
        burst: cli.burst.unwrap_or(pick(mode, 300, 1_500, 60_000)),
        burst_three_plugins: cli
            .burst
            .map(|b| b / 3)
            .unwrap_or(pick(mode, 100, 300, 20_000)),
        backlog: cli.backlog.unwrap_or(pick(mode, 300, 2_000, 100_000)),
        drain_timeout: pick(mode, 60.0, 60.0, 180.0),
        plugin_call_budget_ms: pick(mode, 50, 300, 2_000),
        only,
        keep: cli.keep,
        router_log: cli.router_log.clone(),
        router_env: cli.router_env.clone(),
        perf: cli.perf,
    };
    if mode == "test" {
        println!(
            "load bench: not run by `cargo bench` (no --bench flag): a smoke run that checks the harness \
             (tiny loads, no Python/JS scenarios, a debug build: the figures mean nothing). \
             Figures: cargo bench --bench load [-- --quick]"
        );
    }

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bench_dir = plugin_host::target_dir().join("bench");
    let work = bench_dir.join(format!("run-{}", std::process::id()));
    let cache = bench_dir.join("plugin-cache");
    std::fs::create_dir_all(&work)?;
    std::fs::create_dir_all(&cache)?;
    // A partial run (--only) or an experiment must not overwrite a full
    // run's results.
    let partial = !opts.only.is_empty() || !opts.router_env.is_empty();
    let out = cli.out.clone().unwrap_or_else(|| {
        bench_dir.join(match (mode, partial) {
            (_, true) => "results-partial.json",
            ("full", false) => "results.json",
            ("quick", false) => "results-quick.json",
            _ => "results-test.json",
        })
    });

    let machine = machine_info();
    println!(
        "hookyard load bench ({mode}): {} cores, {}, {:.1} GiB; load average at start {}",
        machine["cores"],
        machine["cpu"].as_str().unwrap_or("?"),
        machine["memory_gib"].as_f64().unwrap_or(0.0),
        machine["loadavg_start"].as_str().unwrap_or("?"),
    );
    println!("router: {}", env!("CARGO_BIN_EXE_hookyard"));

    let sink = procs::start_sink()?;
    let sink_url = sink.url().context("sink address")?;
    let mut ctx = Ctx {
        opts,
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        http: reqwest::Client::new(),
        work: work.clone(),
        cache,
        dist: root.join("plugins/dist"),
        sink_url,
        rows: Vec::new(),
        baseline: None,
        recovery: None,
        plugin_call: None,
        skipped: Vec::new(),
        perf: std::sync::Mutex::new(None),
        perf_dir: bench_dir.join("perf"),
    };
    let result = ctx.run_all();
    sink.kill();
    if !ctx.opts.keep {
        let _ = std::fs::remove_dir_all(&work);
    }
    result?;

    let mut report = String::new();
    ctx.render(&mut report);
    println!("\n{report}");

    let wall = started.elapsed().as_secs_f64();
    let mut machine = machine;
    machine["loadavg_end"] = json!(loadavg());
    let results = json!({
        "mode": ctx.opts.mode,
        "command": std::env::args().collect::<Vec<_>>(),
        "router_binary": env!("CARGO_BIN_EXE_hookyard"),
        "git_commit": git_commit(&root),
        "started_unix_ms": unix_ns() / 1_000_000 - (wall * 1000.0) as u64,
        "wall_secs": wall,
        "machine": machine,
        "options": ctx.opts,
        "baseline_accepted_per_sec": ctx.baseline,
        "scenarios": ctx.rows,
        "recovery": ctx.recovery,
        "plugin_call": ctx.plugin_call,
        "criterion_plugin_call_ns": plugin_host::criterion_means()
            .into_iter()
            .map(|(k, v)| (k, json!(v)))
            .collect::<serde_json::Map<_, _>>(),
        "skipped": ctx.skipped,
        "goals": ctx.goals(),
        "table_markdown": report,
    });
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&results)?)?;
    println!("wrote {} ({wall:.0} s wall)", out.display());
    Ok(())
}

/// One row of the main table.
#[derive(Debug, Clone, Default, Serialize)]
struct Row {
    scenario: String,
    /// Which numbered requirement of the benchmark issue it answers.
    requirement: &'static str,
    load: String,
    accepted_per_sec: Option<f64>,
    ingest_latency: Option<Summary>,
    vs_baseline: Option<f64>,
    delivered_per_sec: Option<f64>,
    delivered: Option<u64>,
    expected_deliveries: Option<u64>,
    ingest_to_sink: Option<Summary>,
    peak_rss_mib: Option<f64>,
    router_start_secs: Option<f64>,
    load_result: Option<LoadResult>,
    notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
struct Recovery {
    backlog: u64,
    fill_accepted_per_sec: f64,
    fill_secs: f64,
    shutdown_secs: f64,
    restart_secs: f64,
    drain_secs: f64,
    drain_per_sec: f64,
    /// Until `GET /admin/targets` shows nothing scheduled.
    scheduled_zero_secs: Option<f64>,
    delivered: u64,
    peak_rss_fill_mib: Option<f64>,
    peak_rss_drain_mib: Option<f64>,
    notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
struct PluginCall {
    costs: plugin_host::CallCosts,
    warm_ratio: f64,
    fresh_ratio: f64,
    runtime_warm_ratio: f64,
    runtime_fresh_ratio: f64,
}

/// How an end-to-end scenario loads the router.
#[derive(Clone, Copy)]
enum Drive {
    /// Open loop at this rate for warm-up + duration.
    Rate(f64),
    /// This many events, closed loop, as fast as they are accepted.
    Burst(u64),
}

/// What a router is configured with.
struct Setup {
    durability: &'static str,
    /// (plugin file name, its config table)
    plugins: Vec<(&'static str, Vec<(&'static str, &'static str)>)>,
    passthrough: Vec<&'static str>,
    /// Target names; each delivers to the sink at `/<name>`.
    targets: Vec<&'static str>,
}

struct Ctx {
    opts: Opts,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    work: PathBuf,
    cache: PathBuf,
    dist: PathBuf,
    sink_url: String,
    rows: Vec<Row>,
    baseline: Option<f64>,
    recovery: Option<Recovery>,
    plugin_call: Option<PluginCall>,
    skipped: Vec<String>,
    /// `perf record` of the current router, with `--perf`.
    perf: std::sync::Mutex<Option<std::process::Child>>,
    perf_dir: PathBuf,
}

impl Ctx {
    fn selected(&self, name: &str) -> bool {
        self.opts.only.is_empty() || self.opts.only.iter().any(|f| name.contains(f.as_str()))
    }

    fn run_all(&mut self) -> Result<()> {
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

    // ---- helpers ----------------------------------------------------------

    fn addr_of(url: &str) -> String {
        url.trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string()
    }

    fn closed_spec(&self, url: &str) -> LoadSpec {
        LoadSpec {
            addr: Self::addr_of(url),
            path: "/hooks/bench".into(),
            connections: self.opts.connections,
            warmup_secs: self.opts.warmup,
            duration_secs: self.opts.duration,
            rate: None,
            count: None,
            body_size: self.opts.body_size,
            event_type: self.opts.event_type.clone(),
        }
    }

    fn get_json(&self, url: &str) -> Result<Value> {
        self.rt.block_on(async {
            let r = self.http.get(url).send().await?;
            let status = r.status();
            let v: Value = r.json().await?;
            if !status.is_success() {
                bail!("GET {url}: {status} {v}");
            }
            Ok(v)
        })
    }

    fn post_json(&self, url: &str) -> Result<Value> {
        self.rt.block_on(async {
            let r = self.http.post(url).json(&json!({})).send().await?;
            let status = r.status();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                bail!("POST {url}: {status} {v}");
            }
            Ok(v)
        })
    }

    fn sink_stats(&self, query: &str) -> Result<Value> {
        self.get_json(&format!("{}/__stats?{query}", self.sink_url))
    }

    fn sink_reset(&self) -> Result<()> {
        self.post_json(&format!("{}/__reset", self.sink_url))
            .map(drop)
    }

    /// A target's entry in `GET /admin/targets`.
    fn admin_target(&self, admin: &str, name: &str) -> Result<Value> {
        let v = self.get_json(&format!("{admin}/admin/targets"))?;
        v["targets"]
            .as_array()
            .and_then(|ts| ts.iter().find(|t| t["name"] == name).cloned())
            .ok_or_else(|| anyhow!("no target {name} in /admin/targets: {v}"))
    }

    /// Failed attempts summed over all targets (a healthy run has none).
    fn failed_attempts(&self, admin: &str) -> u64 {
        self.get_json(&format!("{admin}/admin/targets"))
            .ok()
            .and_then(|v| {
                v["targets"].as_array().map(|ts| {
                    ts.iter()
                        .map(|t| t["attempts"]["failed"].as_u64().unwrap_or(0))
                        .sum()
                })
            })
            .unwrap_or(0)
    }

    fn config(&self, setup: &Setup) -> String {
        let mut c = String::new();
        let _ = writeln!(
            c,
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\ndurability = \"{}\"\n",
            setup.durability
        );
        let _ = writeln!(c, "[plugins]\ndir = \"plugins\"\n");
        for (plugin, config) in &setup.plugins {
            if !config.is_empty() {
                let table: Vec<String> = config
                    .iter()
                    .map(|(k, v)| format!("{k} = \"{v}\""))
                    .collect();
                let _ = writeln!(
                    c,
                    "[plugins.{plugin}]\nconfig = {{ {} }}\n",
                    table.join(", ")
                );
            }
        }
        // Targets are on 127.0.0.1, which the SSRF guard refuses by default.
        let _ = writeln!(c, "[delivery]\nallow_private = true\n");
        let quoted = |v: &[&str]| {
            v.iter()
                .map(|s| format!("\"{s}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let plugin_names: Vec<&str> = setup.plugins.iter().map(|(p, _)| *p).collect();
        let _ = writeln!(
            c,
            "[sources.bench]\nplugins = [{}]\ntargets = [{}]\n",
            quoted(&plugin_names),
            quoted(&setup.passthrough)
        );
        for t in &setup.targets {
            let _ = writeln!(
                c,
                "[targets.{t}]\nurl = \"{}/{t}\"\nsecret = \"{SECRET}\"\n",
                self.sink_url
            );
        }
        c
    }

    /// A scenario directory with its plugins, the shared compiled cache
    /// (so Python and JS compile once per machine, not per scenario: a
    /// restart with a warm cache is what production sees) and its config.
    fn prepare(&self, name: &str, setup: &Setup) -> Result<PathBuf> {
        let dir = self.work.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        let plugins = dir.join("plugins");
        std::fs::create_dir_all(&plugins)?;
        for (p, _) in &setup.plugins {
            std::fs::copy(
                self.dist.join(format!("{p}.wasm")),
                plugins.join(format!("{p}.wasm")),
            )
            .with_context(|| format!("copy plugin {p}"))?;
        }
        let cache = dir.join("data/plugin-cache");
        std::fs::create_dir_all(&cache)?;
        copy_cwasm(&self.cache, &cache)?;
        Ok(dir)
    }

    fn start(&self, dir: &Path, setup: &Setup) -> Result<Proc> {
        let router = procs::start_router(
            dir,
            &self.config(setup),
            self.opts.router_log.as_deref(),
            &self.opts.router_env,
        )?;
        println!(
            "   router pid {} up in {:.2} s",
            router.pid(),
            router.started_in.as_secs_f64()
        );
        if self.opts.perf {
            std::fs::create_dir_all(&self.perf_dir)?;
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut n = 1;
            while self.perf_dir.join(format!("{name}-{n}.data")).exists() {
                n += 1;
            }
            let child = std::process::Command::new("perf")
                .args(["record", "-e", "cpu-clock", "-F", "999", "-g", "-p"])
                .arg(router.pid().to_string())
                .arg("-o")
                .arg(self.perf_dir.join(format!("{name}-{n}.data")))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .context("start perf record (--perf)")?;
            *self.perf.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        }
        Ok(router)
    }

    /// Stops `perf record` (SIGINT makes it write its file).
    fn stop_perf(&self) {
        let child = self.perf.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut child) = child {
            let _ = std::process::Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Peak RSS, SIGTERM, keep new compiled-cache entries, drop the data.
    fn finish(&self, dir: &Path, router: Proc) -> Result<(Option<f64>, Vec<String>)> {
        self.stop_perf();
        let rss = router.peak_rss_mib();
        let log = router.log.clone();
        let status = router.stop(Duration::from_secs(60))?;
        let mut notes = Vec::new();
        if !status.success() {
            notes.push(format!("router exited with {status}"));
        }
        if let Some(log) = log
            && let Ok(text) = std::fs::read_to_string(&log)
        {
            let errors = text.lines().filter(|l| l.contains("ERROR")).count();
            let warns = text.lines().filter(|l| l.contains(" WARN ")).count();
            if errors + warns > 0 {
                notes.push(format!(
                    "router log: {errors} ERROR, {warns} WARN lines (see {})",
                    log.display()
                ));
                if !self.opts.keep {
                    // Keep the log's tail where the run's results are.
                    let keep = self.work.with_extension("logs");
                    let _ = std::fs::create_dir_all(&keep);
                    let _ = std::fs::write(
                        keep.join(
                            dir.file_name()
                                .map(|n| format!("{}.log", n.to_string_lossy()))
                                .unwrap_or_default(),
                        ),
                        procs::tail_lines(&text, 200),
                    );
                }
            }
        }
        copy_cwasm(&dir.join("data/plugin-cache"), &self.cache)?;
        if !self.opts.keep {
            let _ = std::fs::remove_dir_all(dir.join("data"));
        }
        Ok((rss, notes))
    }

    /// Waits until the sink has seen `expected` distinct deliveries, the
    /// flow stalls for 30 s, or the drain timeout passes; light stats back.
    fn wait_delivered(&self, expected: u64) -> Result<Value> {
        let deadline = Instant::now() + Duration::from_secs_f64(self.opts.drain_timeout);
        let mut last = 0;
        let mut last_change = Instant::now();
        loop {
            let s = self.sink_stats("light=1")?;
            let unique = s["unique"].as_u64().unwrap_or(0);
            if unique >= expected {
                return Ok(s);
            }
            if unique != last {
                last = unique;
                last_change = Instant::now();
            }
            if Instant::now() > deadline || last_change.elapsed() > Duration::from_secs(30) {
                println!("   gave up waiting: {unique} of {expected} delivered");
                return Ok(s);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    // ---- scenarios -----------------------------------------------------------

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
        let measured = (|| -> Result<(LoadResult, Value, Value)> {
            let load = procs::run_load(&spec)?;
            check_load(&load)?;
            let expected = load.accepted * per_event;
            let light = self.wait_delivered(expected)?;
            let (since, until) = match drive {
                Drive::Rate(_) => (load.measure_start_unix_ns, load.measure_end_unix_ns),
                Drive::Burst(_) => (0, u64::MAX),
            };
            let full = self.sink_stats(&format!("since={since}&until={until}"))?;
            Ok((load, light, full))
        })();
        let failed = self.failed_attempts(&admin);
        let (rss, mut notes) = self.finish(&dir, router)?;
        let (load, light, full) = measured?;
        let expected = load.accepted * per_event;
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
            router_start_secs: Some(started_in),
            notes,
            load_result: Some(load),
        });
        Ok(())
    }

    /// A backlog of scheduled deliveries survives a restart and drains:
    /// fill with the target paused (pause is stored, so it holds across
    /// the restart), SIGTERM, start again, resume, time until the sink has
    /// them all.
    fn recovery(&mut self) -> Result<()> {
        let n = self.opts.backlog;
        let setup = Setup {
            // The fill is not what is measured; SIGTERM flushes anyway.
            durability: "buffered",
            plugins: vec![],
            passthrough: vec!["drain"],
            targets: vec!["drain"],
        };
        self.sink_reset()?;
        let dir = self.prepare("recovery", &setup)?;
        let mut notes = Vec::new();

        // Fill.
        let router = self.start(&dir, &setup)?;
        let admin = router.field("admin=").context("admin address")?;
        let url = router.field("public=").context("public address")?;
        self.post_json(&format!("{admin}/admin/targets/drain/pause"))?;
        let mut spec = self.closed_spec(&url);
        spec.count = Some(n);
        spec.duration_secs = 900.0;
        let fill = procs::run_load(&spec)?;
        check_load(&fill)?;
        let deadline = Instant::now() + Duration::from_secs(300);
        let scheduled = loop {
            let s = self.admin_target(&admin, "drain")?["scheduled"]
                .as_u64()
                .unwrap_or(0);
            if s >= fill.accepted || Instant::now() > deadline {
                break s;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        println!(
            "   filled: {} accepted ({:.0}/s), {scheduled} scheduled",
            fill.accepted, fill.accepted_per_sec
        );
        let rss_fill = router.peak_rss_mib();
        self.stop_perf();
        let stopping = Instant::now();
        let status = router.stop(Duration::from_secs(120))?;
        let shutdown_secs = stopping.elapsed().as_secs_f64();
        if !status.success() {
            notes.push(format!("router exited with {status} on SIGTERM"));
        }

        // Restart and drain.
        let router = self.start(&dir, &setup)?;
        let restart_secs = router.started_in.as_secs_f64();
        let admin = router.field("admin=").context("admin address")?;
        let t = self.admin_target(&admin, "drain")?;
        let after_restart = t["scheduled"].as_u64().unwrap_or(0);
        if t["paused"] != json!(true) {
            notes.push("target was not paused after the restart".into());
        }
        if after_restart != scheduled {
            notes.push(format!(
                "{scheduled} scheduled before the restart, {after_restart} after"
            ));
        }
        let resumed_at = unix_ns();
        let resumed = Instant::now();
        self.post_json(&format!("{admin}/admin/targets/drain/resume"))?;
        let light = self.wait_delivered(after_restart);
        let mut scheduled_zero_secs = None;
        if light.is_ok() {
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                let t = self.admin_target(&admin, "drain")?;
                if t["scheduled"].as_u64() == Some(0) {
                    scheduled_zero_secs = Some(resumed.elapsed().as_secs_f64());
                    break;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        }
        let failed = self.failed_attempts(&admin);
        let (rss_drain, more) = self.finish(&dir, router)?;
        notes.extend(more);
        if failed > 0 {
            notes.push(format!("{failed} failed delivery attempts"));
        }
        let light = light?;
        let delivered = light["unique"].as_u64().unwrap_or(0);
        let drain_secs = light["last_recv_ns"]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(resumed_at) as f64
            / 1e9;
        if delivered < after_restart {
            notes.push(format!(
                "only {delivered} of {after_restart} delivered in time"
            ));
        }
        println!(
            "   shutdown {shutdown_secs:.2} s, restart {restart_secs:.2} s, drained {delivered} in {drain_secs:.2} s ({:.0}/s)",
            delivered as f64 / drain_secs.max(1e-9)
        );
        self.recovery = Some(Recovery {
            backlog: after_restart,
            fill_accepted_per_sec: fill.accepted_per_sec,
            fill_secs: fill.measured_secs,
            shutdown_secs,
            restart_secs,
            drain_secs,
            drain_per_sec: delivered as f64 / drain_secs.max(1e-9),
            scheduled_zero_secs,
            delivered,
            peak_rss_fill_mib: rss_fill,
            peak_rss_drain_mib: rss_drain,
            notes,
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

    // ---- report --------------------------------------------------------------

    fn row(&self, name: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.scenario == name)
    }

    fn goals(&self) -> Vec<Value> {
        let rate = format!("{:.0}", self.opts.rate);
        let mut goals = Vec::new();
        let mut goal =
            |what: String, target: &str, measured: Option<f64>, ok: Option<bool>, shown: String| {
                goals.push(json!({
                    "goal": what,
                    "target": target,
                    "measured": measured,
                    "shown": shown,
                    "met": ok,
                }));
            };
        for (d, min) in [("buffered", 0.6), ("flush", 0.3)] {
            let r = self.row(&format!("ingest-{d}")).and_then(|r| r.vs_baseline);
            goal(
                format!("ingest, durability = {d}, vs bare baseline"),
                &format!(">= {min} x"),
                r,
                r.map(|r| r >= min),
                r.map_or("n/a".into(), |r| format!("{r:.2} x")),
            );
        }
        for (row, what) in [
            ("e2e-rust-burst", "flush"),
            ("e2e-rust-burst-buffered", "buffered"),
        ] {
            let d = self.row(row).and_then(|r| r.delivered_per_sec);
            goal(
                format!("end to end, Rust plugin, delivered/s (durability = {what})"),
                ">= 10 000/s",
                d,
                d.map(|d| d >= 10_000.0),
                d.map_or("n/a".into(), |d| format!("{}/s", thousands(d))),
            );
        }
        for lang in ["rust", "python", "js"] {
            let p = self
                .row(&format!("e2e-{lang}-{rate}"))
                .and_then(|r| r.ingest_to_sink)
                .map(|l| l.p99_us / 1000.0);
            goal(
                format!("p99 ingest->sink at {rate}/s, {lang} plugin"),
                "< 10 ms",
                p,
                p.map(|p| p < 10.0),
                p.map_or("n/a".into(), |p| format!("{} ms", ms(p * 1000.0))),
            );
        }
        let pc = self.plugin_call.as_ref();
        goal(
            "plugin call, warm instance: hookyard / raw wasmtime".into(),
            "<= 1.5 x",
            pc.map(|p| p.warm_ratio),
            pc.map(|p| p.warm_ratio <= 1.5),
            pc.map_or("n/a".into(), |p| format!("{:.2} x", p.warm_ratio)),
        );
        goal(
            "plugin call, fresh instance: hookyard / raw wasmtime".into(),
            "<= 1.5 x",
            pc.map(|p| p.fresh_ratio),
            pc.map(|p| p.fresh_ratio <= 1.5),
            pc.map_or("n/a".into(), |p| format!("{:.2} x", p.fresh_ratio)),
        );
        let rss = self.row("plugins-3").and_then(|r| r.peak_rss_mib);
        goal(
            "peak RSS, Rust + Python + JS plugins under load".into(),
            "< 300 MB",
            rss,
            rss.map(|r| r * 1.048_576 < 300.0),
            rss.map_or("n/a".into(), |r| format!("{:.0} MB", r * 1.048_576)),
        );
        goals
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "| scenario | load | accepted/s | ingest p50 / p90 / p99 / max (ms) | x baseline | delivered/s | ingest->sink p50 / p99 (ms) | peak RSS (MiB) |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|");
        for r in &self.rows {
            let ingest = r.ingest_latency.map_or("".into(), |l| {
                format!(
                    "{} / {} / {} / {}",
                    ms(l.p50_us),
                    ms(l.p90_us),
                    ms(l.p99_us),
                    ms(l.max_us)
                )
            });
            let e2e = r.ingest_to_sink.map_or("".into(), |l| {
                format!("{} / {}", ms(l.p50_us), ms(l.p99_us))
            });
            let delivered = match (r.delivered_per_sec, r.delivered, r.expected_deliveries) {
                (Some(d), Some(n), Some(e)) if n < e => format!("{} ({n} of {e})", thousands(d)),
                (Some(d), _, _) => thousands(d),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                r.scenario,
                r.load,
                r.accepted_per_sec.map_or("".into(), thousands),
                ingest,
                r.vs_baseline.map_or("".into(), |v| format!("{v:.2}")),
                delivered,
                e2e,
                r.peak_rss_mib.map_or("".into(), |v| format!("{v:.0}")),
            );
        }
        if let Some(rc) = &self.recovery {
            let _ = writeln!(
                out,
                "\nRecovery (6): {} scheduled deliveries (target paused while filling at {}/s), SIGTERM took {:.2} s, \
                 restart to listening {:.2} s, resume -> all {} at the sink {:.2} s ({}/s){}; peak RSS {} MiB filling, {} MiB draining.",
                rc.backlog,
                thousands(rc.fill_accepted_per_sec),
                rc.shutdown_secs,
                rc.restart_secs,
                rc.delivered,
                rc.drain_secs,
                thousands(rc.drain_per_sec),
                rc.scheduled_zero_secs.map_or(String::new(), |s| format!(
                    ", admin shows 0 scheduled after {s:.2} s"
                )),
                rc.peak_rss_fill_mib
                    .map_or("?".into(), |v| format!("{v:.0}")),
                rc.peak_rss_drain_mib
                    .map_or("?".into(), |v| format!("{v:.0}")),
            );
        }
        if let Some(pc) = &self.plugin_call {
            let c = &pc.costs;
            let _ = writeln!(
                out,
                "\nPlugin call (5), {RUST_PLUGIN}, us per call (in-process timing loop):\n\n\
                 | instance | raw wasmtime | hookyard LoadedPlugin::call | ratio | hookyard Plugins::call (spawn_blocking) | ratio |\n\
                 |---|---:|---:|---:|---:|---:|\n\
                 | warm (reused) | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |\n\
                 | fresh per call | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                c.raw_warm_ns / 1000.0,
                c.hookyard_warm_ns / 1000.0,
                pc.warm_ratio,
                c.hookyard_runtime_warm_ns / 1000.0,
                pc.runtime_warm_ratio,
                c.raw_fresh_ns / 1000.0,
                c.hookyard_fresh_ns / 1000.0,
                pc.fresh_ratio,
                c.hookyard_runtime_fresh_ns / 1000.0,
                pc.runtime_fresh_ratio,
            );
        }
        let criterion = plugin_host::criterion_means();
        if !criterion.is_empty() {
            let _ = writeln!(
                out,
                "\nCriterion (last `cargo bench --bench plugin_call`, {}), mean us per call: {}",
                plugin_host::criterion_dir().display(),
                criterion
                    .iter()
                    .map(|(k, v)| format!("{k} {:.2}", v / 1000.0))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let _ = writeln!(
            out,
            "\n| goal | target | measured | met |\n|---|---|---:|---|"
        );
        for g in self.goals() {
            let met = match g["met"].as_bool() {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "n/a",
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {met} |",
                g["goal"].as_str().unwrap_or(""),
                g["target"].as_str().unwrap_or(""),
                g["shown"].as_str().unwrap_or(""),
            );
        }
        let notes: Vec<String> = self
            .rows
            .iter()
            .flat_map(|r| {
                r.notes
                    .iter()
                    .map(move |n| format!("- {}: {n}", r.scenario))
            })
            .chain(
                self.recovery
                    .iter()
                    .flat_map(|r| r.notes.iter().map(|n| format!("- recovery: {n}"))),
            )
            .chain(self.skipped.iter().map(|s| format!("- skipped {s}")))
            .collect();
        if !notes.is_empty() {
            let _ = writeln!(out, "\nNotes:\n{}", notes.join("\n"));
        }
    }
}

/// A load that got nothing accepted means the harness, not the router, is
/// broken: stop rather than print zeros.
fn check_load(load: &LoadResult) -> Result<()> {
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

/// Copies `*.cwasm` entries that `to` lacks (write then rename: another
/// bench run may read the same cache).
fn copy_cwasm(from: &Path, to: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(from) else {
        return Ok(());
    };
    std::fs::create_dir_all(to)?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(n) = name.to_str() else { continue };
        if !n.ends_with(".cwasm") || n.starts_with('.') || to.join(n).exists() {
            continue;
        }
        let tmp = to.join(format!(".{n}.{}.tmp", std::process::id()));
        std::fs::copy(entry.path(), &tmp)?;
        std::fs::rename(&tmp, to.join(n))?;
    }
    Ok(())
}

/// Microseconds shown as milliseconds with sensible precision.
fn ms(us: f64) -> String {
    let v = us / 1000.0;
    if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// 12345.6 -> "12 346".
fn thousands(v: f64) -> String {
    let n = v.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn machine_info() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
        .unwrap_or_default();
    let mem_kib = procs_meminfo_kib("MemTotal:");
    let cmd_out = |cmd: &str, args: &[&str]| {
        std::process::Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "memory_gib": mem_kib.map(|k| k as f64 / 1024.0 / 1024.0),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "rustc": cmd_out("rustc", &["--version"]),
        "loadavg_start": loadavg(),
    })
}

fn procs_meminfo_kib(field: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn git_commit(root: &Path) -> Option<String> {
    std::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}
