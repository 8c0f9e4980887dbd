//! The run's shared state (`Ctx`) and the plumbing every scenario uses:
//! writing a router's config, preparing its directory, starting and
//! stopping it (with `--perf`), talking to the sink and the admin API, and
//! waiting for deliveries. The scenarios themselves are in `scenarios.rs`
//! and `recovery.rs`; this file is what they share.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

use crate::SECRET;
use crate::loadgen::LoadSpec;
use crate::options::Opts;
use crate::procs::{self, Proc};
use crate::recovery::Recovery;
use crate::scenarios::{PluginCall, Row};

/// What a router is configured with.
pub struct Setup {
    pub durability: &'static str,
    /// (plugin file name, its config table)
    pub plugins: Vec<(&'static str, Vec<(&'static str, &'static str)>)>,
    pub passthrough: Vec<&'static str>,
    /// Target names; each delivers to the sink at `/<name>`.
    pub targets: Vec<&'static str>,
}

/// The run: its options, the runtime and HTTP client for sink and admin
/// calls, where things live, and the results so far.
pub struct Ctx {
    pub opts: Opts,
    pub rt: tokio::runtime::Runtime,
    pub http: reqwest::Client,
    pub work: PathBuf,
    pub cache: PathBuf,
    pub dist: PathBuf,
    pub sink_url: String,
    pub sink_pid: u32,
    pub rows: Vec<Row>,
    pub baseline: Option<f64>,
    pub recovery: Option<Recovery>,
    pub fuzz: Option<crate::fuzz::FuzzRun>,
    pub dashboard: Option<crate::dashboard::DashboardRun>,
    pub plugin_call: Option<PluginCall>,
    pub skipped: Vec<String>,
    /// `perf record` of the current router, with `--perf`.
    pub perf: std::sync::Mutex<Option<std::process::Child>>,
    pub perf_dir: PathBuf,
    /// The cluster scenarios' PostgreSQL, started by the first of them.
    pub pg: Option<crate::cluster::Pg>,
}

impl Ctx {
    fn addr_of(url: &str) -> String {
        url.trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string()
    }

    pub fn closed_spec(&self, url: &str) -> LoadSpec {
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

    pub fn get_json(&self, url: &str) -> Result<Value> {
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

    pub fn post_json(&self, url: &str) -> Result<Value> {
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

    pub fn sink_stats(&self, query: &str) -> Result<Value> {
        self.get_json(&format!("{}/__stats?{query}", self.sink_url))
    }

    pub fn sink_reset(&self) -> Result<()> {
        self.post_json(&format!("{}/__reset", self.sink_url))
            .map(drop)
    }

    /// A target's entry in `GET /admin/targets`.
    pub fn admin_target(&self, admin: &str, name: &str) -> Result<Value> {
        let v = self.get_json(&format!("{admin}/admin/targets"))?;
        v["targets"]
            .as_array()
            .and_then(|ts| ts.iter().find(|t| t["name"] == name).cloned())
            .ok_or_else(|| anyhow!("no target {name} in /admin/targets: {v}"))
    }

    /// Failed attempts summed over all targets (a healthy run has none).
    pub fn failed_attempts(&self, admin: &str) -> u64 {
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

    pub fn config(&self, setup: &Setup) -> String {
        let mut c = String::new();
        let _ = writeln!(
            c,
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\ndurability = \"{}\"\n",
            setup.durability
        );
        if self.opts.engine != "sled" {
            let _ = writeln!(c, "[store]\nbackend = \"{}\"\n", self.opts.engine);
        }
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
    pub fn prepare(&self, name: &str, setup: &Setup) -> Result<PathBuf> {
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

    pub fn start(&self, dir: &Path, setup: &Setup) -> Result<Proc> {
        self.start_config(dir, &self.config(setup))
    }

    /// Starts a router on a config written out in full (scenarios whose
    /// setup [`Ctx::config`] does not describe), with the run's log filter,
    /// environment and `--perf`.
    pub fn start_config(&self, dir: &Path, config: &str) -> Result<Proc> {
        let router = procs::start_router(
            dir,
            config,
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
                .args([
                    "record",
                    "-e",
                    "cpu-clock",
                    "-F",
                    "499",
                    "--call-graph",
                    "dwarf,32768",
                    "-p",
                ])
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
    pub fn stop_perf(&self) {
        let child = self.perf.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut child) = child {
            let _ = std::process::Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Peak RSS, SIGTERM, keep new compiled-cache entries, drop the data.
    pub fn finish(&self, dir: &Path, router: Proc) -> Result<(Option<f64>, Vec<String>)> {
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
    pub fn wait_delivered(&self, expected: u64) -> Result<Value> {
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
