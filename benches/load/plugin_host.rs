//! Scenario 5, shared by `benches/plugin_call.rs` (criterion) and the load
//! bench's own timing loop: the same plugin call through hookyard's plugin
//! runtime and through a bare wasmtime component call on the same
//! component, with a reused (warm) instance and with a fresh instance per
//! call.
//!
//! "Raw" is the least a host must do to call this component: a default
//! wasmtime engine (no epoch interruption, no fuel), the same WASI p2 linker,
//! `hookyard:plugin/host` imports that do nothing (`config` returns the same
//! table), one `Store` reused across calls. hookyard's side is its public
//! API: `Plugins::new` + `reconcile` + `get` load the file exactly as the
//! server does; `LoadedPlugin::call` is the synchronous call (instance pool,
//! epoch deadline, store limiter, log capture, stderr tail);
//! `Plugins::call` is what the router awaits (the plugin's call lane,
//! `spawn_blocking`, the WIT event built from the stored event, stats).
//! Neither side has a KV store (hookyard: `store = None`, raw: no-ops), so
//! the comparison is the runtime, not sled.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use hookyard::plugin::{LoadedPlugin, PluginEvent, PluginOutcome, Plugins};
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Bindings generated from the same WIT file hookyard uses.
mod raw_bindings {
    wasmtime::component::bindgen!({
        world: "plugin",
        path: "wit",
    });
}

use raw_bindings::hookyard::plugin::host::Level as RawLevel;
use raw_bindings::hookyard::plugin::types::{Event as RawEvent, Outcome as RawOutcome};
use raw_bindings::{Plugin as RawPlugin, PluginPre as RawPluginPre};

/// The plugin every variant calls: the Rust example router.
pub const PLUGIN: &str = "quickstart-router";

/// Where the built Rust plugin lives, building it if it is missing.
pub fn quickstart_wasm() -> Result<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let wasm = root.join("plugins/dist").join(format!("{PLUGIN}.wasm"));
    if !wasm.is_file() {
        eprintln!("{} is missing; building the Rust plugins", wasm.display());
        let status = std::process::Command::new("bash")
            .arg(root.join("scripts/build-plugins.sh"))
            .arg("rust")
            .status()
            .context("run scripts/build-plugins.sh rust")?;
        if !status.success() || !wasm.is_file() {
            bail!("could not build {}", wasm.display());
        }
    }
    Ok(wasm)
}

/// The event body: the same shape the load generator sends.
pub fn sample_body() -> Vec<u8> {
    let mut body =
        br#"{"type":"order.created","bench_ts":1700000000000000000,"seq":1,"data":""#.to_vec();
    body.extend(std::iter::repeat_n(b'x', 440));
    body.extend_from_slice(b"\"}");
    body
}

fn headers() -> Vec<(String, String)> {
    vec![
        ("content-type".into(), "application/json".into()),
        ("user-agent".into(), "hookyard-bench".into()),
    ]
}

/// The stored-event form (what `Plugins::call` takes).
pub fn stored_event() -> hookyard::model::records::Event {
    hookyard::model::records::Event {
        id: "evt_01JBENCH00000000000000000".into(),
        source: "bench".into(),
        received_at: 1_700_000_000_000,
        method: "POST".into(),
        path: "/hooks/bench".into(),
        query: String::new(),
        headers: headers(),
        body: sample_body(),
        version: None,
        content_encoding: None,
        received_body: None,
    }
}

/// The WIT form hookyard's bindings take.
pub fn hookyard_event() -> PluginEvent {
    hookyard::plugin::to_plugin_event(&stored_event())
}

/// The WIT form the bench's own bindings take (same fields).
pub fn raw_event() -> RawEvent {
    let e = stored_event();
    RawEvent {
        id: e.id.into(),
        source: e.source,
        received_at: e.received_at,
        method: e.method,
        path: e.path,
        query: e.query,
        headers: e.headers,
        body: e.body,
        version: e.version,
    }
}

// ---- hookyard -------------------------------------------------------------

/// The plugin loaded through hookyard's registry, as the server loads it.
pub struct HookyardHost {
    pub plugins: Arc<Plugins>,
    pub plugin: Arc<LoadedPlugin>,
    _dir: tempfile::TempDir,
}

impl HookyardHost {
    /// `fresh`: `fresh_instances = true` (an instance per call), else the
    /// default warm pool.
    pub fn load(wasm: &Path, fresh: bool) -> Result<HookyardHost> {
        Self::load_named(wasm, PLUGIN, fresh)
    }

    /// Any plugin file, loaded as plugin `name` (every example plugin's
    /// targets are named `sink` here).
    pub fn load_named(wasm: &Path, name: &str, fresh: bool) -> Result<HookyardHost> {
        let dir = tempfile::tempdir()?;
        let plugin_dir = dir.path().join("plugins");
        std::fs::create_dir_all(&plugin_dir)?;
        std::fs::copy(wasm, plugin_dir.join(format!("{name}.wasm")))?;
        let config = format!(
            "[plugins]\ndir = \"plugins\"\n\n[plugins.{name}]\nfresh_instances = {fresh}\n\
             config = {{ orders_target = \"sink\", alerts_target = \"sink\", chat_target = \"sink\" }}\n"
        );
        let config = hookyard::config::Config::parse(&config, dir.path())?;
        let plugins = Arc::new(Plugins::new(
            hookyard::config::live::LiveConfig::new(config),
            None,
            None,
            Arc::default(),
        )?);
        plugins.reconcile()?;
        let plugin = plugins
            .get(name)
            .ok_or_else(|| anyhow!("hookyard did not load {name}"))?;
        Ok(HookyardHost {
            plugins,
            plugin,
            _dir: dir,
        })
    }

    /// `LoadedPlugin::call`: the synchronous call the router makes on a
    /// blocking thread.
    pub fn call(&self, event: &PluginEvent) -> Result<()> {
        let report = self.plugin.call(event, false);
        match report.result {
            Ok(PluginOutcome::Deliver(d)) if d.len() == 1 => Ok(()),
            Ok(_) => bail!("unexpected outcome"),
            Err(e) => bail!("{e}"),
        }
    }

    /// `Plugins::call`: the async path the router awaits (call lane,
    /// `spawn_blocking`, event conversion, stats).
    pub async fn call_runtime(&self, event: Arc<hookyard::model::records::Event>) -> Result<()> {
        let report = self.plugins.call(self.plugin.clone(), event, true).await;
        match report.result {
            Ok(PluginOutcome::Deliver(d)) if d.len() == 1 => Ok(()),
            Ok(_) => bail!("unexpected outcome"),
            Err(e) => bail!("{e}"),
        }
    }
}

// ---- raw wasmtime ---------------------------------------------------------

/// A raw host's store data: WASI and nothing else.
pub struct RawState {
    wasi: WasiCtx,
    table: ResourceTable,
    config: Vec<(String, String)>,
}

impl RawState {
    fn new() -> RawState {
        RawState {
            wasi: wasmtime_wasi::WasiCtxBuilder::new().build(),
            table: ResourceTable::new(),
            config: vec![("orders_target".into(), "sink".into())],
        }
    }
}

impl WasiView for RawState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl raw_bindings::hookyard::plugin::types::Host for RawState {}

impl raw_bindings::hookyard::plugin::host::Host for RawState {
    fn log(&mut self, _level: RawLevel, _message: String) {}
    fn config(&mut self) -> Vec<(String, String)> {
        self.config.clone()
    }
    fn kv_get(&mut self, _key: String) -> Option<Vec<u8>> {
        None
    }
    fn kv_set(&mut self, _key: String, _value: Vec<u8>) {}
    fn kv_delete(&mut self, _key: String) {}
}

/// The same component compiled on a default engine and pre-linked.
pub struct RawHost {
    engine: Engine,
    pre: RawPluginPre<RawState>,
    warm: Option<(Store<RawState>, RawPlugin)>,
}

impl RawHost {
    pub fn load(wasm: &Path) -> Result<RawHost> {
        let engine = Engine::default();
        let component = wasmtime::component::Component::from_file(&engine, wasm)?;
        let mut linker: Linker<RawState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        RawPlugin::add_to_linker::<_, HasSelf<RawState>>(&mut linker, |s| s)?;
        let pre = RawPluginPre::new(linker.instantiate_pre(&component)?)?;
        Ok(RawHost {
            engine,
            pre,
            warm: None,
        })
    }

    fn instantiate(&self) -> Result<(Store<RawState>, RawPlugin)> {
        let mut store = Store::new(&self.engine, RawState::new());
        let bindings = self.pre.instantiate(&mut store)?;
        Ok((store, bindings))
    }

    /// One call on an instance kept across calls.
    pub fn call_warm(&mut self, event: &RawEvent) -> Result<()> {
        if self.warm.is_none() {
            self.warm = Some(self.instantiate()?);
        }
        let (store, bindings) = self.warm.as_mut().expect("just set");
        check_raw(bindings.call_handle(store, event)?)
    }

    /// One call on a new store and instance.
    pub fn call_fresh(&self, event: &RawEvent) -> Result<()> {
        let (mut store, bindings) = self.instantiate()?;
        check_raw(bindings.call_handle(&mut store, event)?)
    }
}

fn check_raw(result: Result<RawOutcome, String>) -> Result<()> {
    match result {
        Ok(RawOutcome::Deliver(d)) if d.len() == 1 => Ok(()),
        Ok(_) => bail!("unexpected outcome"),
        Err(e) => bail!("plugin returned {e}"),
    }
}

// ---- the simple timing loop (load bench) ----------------------------------

/// Mean time per call of each variant, in nanoseconds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CallCosts {
    pub raw_warm_ns: f64,
    pub hookyard_warm_ns: f64,
    pub hookyard_runtime_warm_ns: f64,
    pub raw_fresh_ns: f64,
    pub hookyard_fresh_ns: f64,
    pub hookyard_runtime_fresh_ns: f64,
}

impl CallCosts {
    pub fn warm_ratio(&self) -> f64 {
        self.hookyard_warm_ns / self.raw_warm_ns
    }
    pub fn fresh_ratio(&self) -> f64 {
        self.hookyard_fresh_ns / self.raw_fresh_ns
    }
    pub fn runtime_warm_ratio(&self) -> f64 {
        self.hookyard_runtime_warm_ns / self.raw_warm_ns
    }
    pub fn runtime_fresh_ratio(&self) -> f64 {
        self.hookyard_runtime_fresh_ns / self.raw_fresh_ns
    }
}

/// Median over `rounds` rounds of the mean time per call over `per_round`.
fn time_it(rounds: usize, per_round: Duration, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    // Warm-up: caches, lazy init, the first instance.
    for _ in 0..50 {
        f()?;
    }
    let mut means = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        let mut n = 0u64;
        while started.elapsed() < per_round {
            for _ in 0..16 {
                f()?;
            }
            n += 16;
        }
        means.push(started.elapsed().as_nanos() as f64 / n as f64);
    }
    means.sort_by(f64::total_cmp);
    Ok(means[means.len() / 2])
}

/// Times every variant; `budget` is roughly the time spent per variant.
pub fn measure(budget: Duration) -> Result<CallCosts> {
    let wasm = quickstart_wasm()?;
    let rounds = 5;
    let per_round = budget / rounds as u32;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;

    let mut raw = RawHost::load(&wasm)?;
    let raw_ev = raw_event();
    let raw_warm_ns = time_it(rounds, per_round, || raw.call_warm(&raw_ev))?;
    let raw_fresh_ns = time_it(rounds, per_round, || raw.call_fresh(&raw_ev))?;

    let hy_ev = hookyard_event();
    let stored = Arc::new(stored_event());
    let warm = HookyardHost::load(&wasm, false)?;
    let hookyard_warm_ns = time_it(rounds, per_round, || warm.call(&hy_ev))?;
    let hookyard_runtime_warm_ns = time_it(rounds, per_round, || {
        rt.block_on(warm.call_runtime(stored.clone()))
    })?;
    let fresh = HookyardHost::load(&wasm, true)?;
    let hookyard_fresh_ns = time_it(rounds, per_round, || fresh.call(&hy_ev))?;
    let hookyard_runtime_fresh_ns = time_it(rounds, per_round, || {
        rt.block_on(fresh.call_runtime(stored.clone()))
    })?;
    Ok(CallCosts {
        raw_warm_ns,
        hookyard_warm_ns,
        hookyard_runtime_warm_ns,
        raw_fresh_ns,
        hookyard_fresh_ns,
        hookyard_runtime_fresh_ns,
    })
}

/// The `plugin-rss` role: calls one plugin `calls` times through
/// `LoadedPlugin::call` (warm pool, no KV store) and prints this process's
/// RSS every `calls / 10` calls, to tell memory a plugin's host side keeps
/// per call from memory the store keeps.
pub fn rss_probe(wasm: &Path, calls: u64) -> Result<()> {
    let name = wasm
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| anyhow!("plugin file name"))?
        .to_string();
    let rss = || {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            })
            .unwrap_or(0)
    };
    let host = HookyardHost::load_named(wasm, &name, false)?;
    let base = stored_event();
    println!("{name}: loaded, RSS {} MiB", rss() / 1024);
    let step = (calls / 10).max(1);
    let started = Instant::now();
    for i in 1..=calls {
        // A distinct id and body per call, as the router sees them.
        let mut e = base.clone();
        e.id = hookyard::model::id::EventId::generate();
        e.body = format!(
            "{{\"type\":\"order.created\",\"seq\":{i},\"data\":\"{}\"}}",
            "x".repeat(400)
        )
        .into_bytes();
        host.call(&hookyard::plugin::to_plugin_event(&e))?;
        if i % step == 0 {
            println!(
                "{name}: {i} calls, RSS {} MiB, {:.1} us/call",
                rss() / 1024,
                started.elapsed().as_secs_f64() * 1e6 / i as f64
            );
        }
    }
    Ok(())
}

/// Criterion's mean estimates (ns) for the `plugin_call` group, if
/// `cargo bench --bench plugin_call` has run: (id, mean ns).
pub fn criterion_means() -> Vec<(String, f64)> {
    let dir = criterion_dir().join("plugin_call");
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path().join("new/estimates.json");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        if let Some(mean) = v["mean"]["point_estimate"].as_f64() {
            out.push((entry.file_name().to_string_lossy().into_owned(), mean));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Where criterion keeps its results (it honours `CRITERION_HOME`, else
/// `<target dir>/criterion`).
pub fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    target_dir().join("criterion")
}

/// Cargo's target directory (`CARGO_TARGET_DIR` or `<repo>/target`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"),
    }
}
