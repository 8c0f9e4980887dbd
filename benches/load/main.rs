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
//! e2e-rust-burst-buffered, fanout-3, plugins-3, recovery, fuzz, dashboard, plugin-call. A fresh router (own data
//! directory) per scenario, so its peak RSS (`VmHWM`) is that scenario's.
//!
//! Prints Markdown tables and writes `target/bench/results.json`
//! (`results-quick.json` for `--quick`, `results-partial.json` with
//! `--only`, `results-test.json` for the smoke run). Run without `--bench`
//! (that is, by `cargo test --all-targets`, as CI does), it does a smoke run
//! that keeps the harness from rotting: tiny loads, no Python/JS scenarios,
//! and figures from a debug build that mean nothing.
//!
//! Layout: `options.rs` (command line, per-mode defaults), `harness.rs`
//! (shared state, router config and lifecycle, sink and admin calls),
//! `scenarios.rs` and `recovery.rs` (what is measured), `report.rs` (tables,
//! goals, JSON); the roles are `sink.rs`, `baseline.rs`, `loadgen.rs`, with
//! `procs.rs` starting them and `plugin_host.rs` for the plugin call.

mod baseline;
mod cluster;
mod dashboard;
mod fuzz;
mod harness;
mod loadgen;
mod options;
mod plugin_host;
mod procs;
mod recovery;
mod report;
mod scenarios;
mod sink;
mod stats;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use clap::Parser;

use harness::Ctx;
use options::{Cli, Opts};
use report::machine_info;

/// Every target signs (Standard Webhooks), as a real setup would.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const RUST_PLUGIN: &str = "quickstart-router";
/// Counts every event in one KV key (the transactional KV scenarios).
const COUNTER_PLUGIN: &str = "counter";
/// Delivers every event without touching KV (their baseline).
const CHAOS_PLUGIN: &str = "chaos";
const PY_PLUGIN: &str = "chat-router-python";
const JS_PLUGIN: &str = "chat-router-js";

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
    let opts = Opts::from_cli(&cli);
    let mode = opts.mode;
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
    let partial = !opts.only.is_empty()
        || !opts.router_env.is_empty()
        || opts.engine != "sled"
        || cli.router.is_some();
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
    if let Some(router) = &cli.router {
        procs::use_router(router.clone());
    }
    println!("router: {}", procs::router_binary().display());

    let sink = procs::start_sink()?;
    let sink_url = sink.url().context("sink address")?;
    let mut ctx = Ctx {
        opts,
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        // No pooled connections: the runtime only runs inside `block_on`,
        // so a connection the router closed while the bench waited (its
        // keep-alive timeout, during a long fill) stayed in the pool and
        // failed the next request ("connection closed before message
        // completed").
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()?,
        work: work.clone(),
        cache,
        dist: root.join("plugins/dist"),
        sink_url,
        sink_pid: sink.pid(),
        rows: Vec::new(),
        baseline: None,
        recovery: None,
        fuzz: None,
        dashboard: None,
        plugin_call: None,
        skipped: Vec::new(),
        perf: std::sync::Mutex::new(None),
        perf_dir: bench_dir.join("perf"),
        pg: None,
    };
    let result = ctx.run_all();
    ctx.pg = None; // stops the cluster scenarios' PostgreSQL
    sink.kill();
    if !ctx.opts.keep {
        let _ = std::fs::remove_dir_all(&work);
    }
    result?;

    let mut report = String::new();
    ctx.render(&mut report);
    println!("\n{report}");

    let wall = started.elapsed().as_secs_f64();
    let results = ctx.results(machine, &root, wall, report);
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&results)?)?;
    println!("wrote {} ({wall:.0} s wall)", out.display());
    Ok(())
}
