//! The command line (`Cli`) and the settings a run uses (`Opts`): the
//! options as clap parses them, and the per-mode defaults (cargo test smoke
//! run, `--quick`, full) applied to them. Kept apart from the scenarios so
//! what can be tuned, and its defaults, reads in one place.

use std::path::PathBuf;

use clap::Parser;
use serde::Serialize;

#[derive(Parser, Debug)]
#[command(
    name = "load",
    about = "hookyard load benchmark: cargo bench --bench load [-- --quick] [-- OPTIONS]"
)]
pub struct Cli {
    /// Tiny durations and counts (CI: checks the harness runs, not figures).
    #[arg(long)]
    pub quick: bool,
    /// Passed by `cargo bench`; without it (`cargo test`) a quick run.
    #[arg(long, hide = true)]
    pub bench: bool,
    /// Measured seconds of each timed load phase [10; quick 1.5].
    #[arg(long)]
    pub duration: Option<f64>,
    /// Unmeasured seconds before each timed phase [1; quick 0.3].
    #[arg(long)]
    pub warmup: Option<f64>,
    /// Keep-alive connections of the load generator.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Fixed (open-loop) rate of the latency scenarios, events/s.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Bytes per event body (JSON).
    #[arg(long, default_value_t = 512)]
    pub body_size: usize,
    /// The events' `type`: `order.*` makes the Rust plugin forward the
    /// body unchanged; anything else makes it build a new (chat) body, as
    /// the Python and JS plugins always do.
    #[arg(long, default_value = "order.created")]
    pub event_type: String,
    /// Events sent as fast as possible in the end-to-end saturation
    /// scenarios [60000; quick 1500].
    #[arg(long)]
    pub burst: Option<u64>,
    /// Scheduled deliveries in the recovery scenario [100000; quick 2000].
    #[arg(long)]
    pub backlog: Option<u64>,
    /// Events stored before the dashboard's pages are timed [100000;
    /// quick 5000].
    #[arg(long)]
    pub dashboard_events: Option<u64>,
    /// Mutated requests in the fuzz scenario [100000; quick 20000].
    #[arg(long)]
    pub fuzz_requests: Option<u64>,
    /// Run only scenarios whose name contains one of these (comma list);
    /// one ending in `$` names a scenario exactly (`pg-1$`, not `pg-1-kv`).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Where to write the JSON results.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Keep each scenario's data directory (under target/bench/run-PID).
    #[arg(long)]
    pub keep: bool,
    /// HOOKYARD_LOG for the router (default: hookyard's own, info).
    #[arg(long)]
    pub router_log: Option<String>,
    /// Extra environment for the router, NAME=VALUE (repeatable), for
    /// experiments such as MALLOC_ARENA_MAX=2.
    #[arg(long, value_parser = parse_env)]
    pub router_env: Vec<(String, String)>,
    /// The embedded store's engine for the sled scenarios (`[store]
    /// backend`): sled (the default) or fjall.
    #[arg(long, default_value = "sled")]
    pub engine: String,
    /// Another hookyard binary to measure instead of this build's (a copy
    /// built from another commit), so two builds are compared on one
    /// machine within minutes of each other.
    #[arg(long)]
    pub router: Option<PathBuf>,
    /// Record the router with `perf record -e cpu-clock -g` during each
    /// scenario into target/bench/perf/<scenario>.data (needs perf).
    #[arg(long)]
    pub perf: bool,
    /// Like --only (so `cargo bench --bench load -- ingest` works).
    pub filters: Vec<String>,
}

/// Settings after the mode's defaults are applied.
#[derive(Debug, Clone, Serialize)]
pub struct Opts {
    pub mode: &'static str,
    pub warmup: f64,
    pub duration: f64,
    pub connections: usize,
    pub rate: f64,
    pub body_size: usize,
    pub event_type: String,
    pub burst: u64,
    pub burst_three_plugins: u64,
    pub backlog: u64,
    pub fuzz_requests: u64,
    pub dashboard_events: u64,
    pub drain_timeout: f64,
    pub plugin_call_budget_ms: u64,
    pub only: Vec<String>,
    pub keep: bool,
    pub router_log: Option<String>,
    pub router_env: Vec<(String, String)>,
    pub engine: String,
    pub perf: bool,
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{text:?} is not NAME=VALUE"))
}

impl Opts {
    /// The mode (`test` without cargo bench's `--bench`, `quick`, `full`)
    /// and its defaults for whatever the command line left out.
    pub fn from_cli(cli: &Cli) -> Opts {
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
        Opts {
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
            fuzz_requests: cli
                .fuzz_requests
                .unwrap_or(pick(mode, 300, 20_000, 100_000)),
            dashboard_events: cli
                .dashboard_events
                .unwrap_or(pick(mode, 300, 5_000, 100_000)),
            drain_timeout: pick(mode, 60.0, 60.0, 180.0),
            plugin_call_budget_ms: pick(mode, 50, 300, 2_000),
            only,
            keep: cli.keep,
            router_log: cli.router_log.clone(),
            router_env: cli.router_env.clone(),
            engine: cli.engine.clone(),
            perf: cli.perf,
        }
    }
}
