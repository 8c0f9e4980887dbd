//! The set of loaded plugins, by name, and how it changes.
//!
//! Each name maps to the version currently serving (an `Arc`), plus what the
//! directory last showed for it. A reload compiles off the request path and
//! then swaps the `Arc`: calls already running keep the version they
//! started with, new calls get the new one, and nothing is dropped or run
//! twice. A file that fails to compile leaves the last good version serving
//! and is reported (log, `/admin/plugins`, metric). A removed file stops
//! serving; events for it wait (see `route.rs`) until it comes back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use super::cache::CompileCache;
use super::contract::Contract;
use super::host::{PluginIdentity, PluginState};
use super::instance::{CallReport, LoadedPlugin, hex};
use super::kv::SharedKv;
use super::lane::Lane;
use super::{compile, engine, instance};
use crate::config::Config;
use crate::config::live::LiveConfig;
use crate::model::id::now_ms;
use crate::model::records::Event;
use crate::store::PluginKv;
use crate::telemetry::{PluginKnown, PluginLoadFailed, PluginStats, Telemetry};

/// What the directory showed for a file when we last loaded it; a change
/// in size or mtime triggers a reload (and then the sha256 decides).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Fingerprint {
    len: u64,
    modified: Option<SystemTime>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LoadError {
    pub error: String,
    pub at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ServingInfo {
    pub sha256: String,
    pub loaded_at: u64,
    pub load_ms: f64,
    pub from_cache: bool,
    /// The `hookyard:plugin` contract the component was built against
    /// (`"0.2.0"`, `"0.1.0"`), found when it was linked.
    pub contract: Contract,
}

struct Entry {
    serving: Option<(Arc<LoadedPlugin>, ServingInfo)>,
    seen: Option<Fingerprint>,
    last_error: Option<LoadError>,
    removed_at: Option<u64>,
    /// Queues this plugin's calls for a bounded number of runners.
    lane: Arc<Lane>,
}

impl Entry {
    fn new(name: &str, telemetry: &Arc<Telemetry>, stopping: &Arc<AtomicBool>) -> Entry {
        telemetry.emit(PluginKnown { plugin: name });
        Entry {
            serving: None,
            seen: None,
            last_error: None,
            removed_at: None,
            lane: Arc::new(Lane::new(telemetry.clone(), stopping.clone())),
        }
    }
}

/// One plugin as the admin API shows it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PluginStatus {
    pub name: String,
    /// `ok` (a version is serving), `failed` (the file never loaded),
    /// `waiting` (the file was removed; events for it wait), `missing` (a
    /// source names it but there never was a file; events for it wait).
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serving: Option<ServingInfo>,
    /// The latest file's load error, even while an older version serves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LoadError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed_at: Option<u64>,
    /// Instances kept warm for the next calls: up to `warm_instances`
    /// while events come, none once the plugin has been quiet for
    /// [`WARM_IDLE`](super::instance::WARM_IDLE).
    pub warm_instances: usize,
    pub stats: PluginStats,
}

/// All plugins by name.
pub struct Plugins {
    engine: Engine,
    linker: Linker<PluginState>,
    cache: Option<CompileCache>,
    config: Arc<LiveConfig>,
    /// Whether the engine meters fuel: fixed for its life, whatever a
    /// reload asks (that change waits for a restart).
    meters_fuel: bool,
    store: Option<Arc<dyn PluginKv>>,
    entries: RwLock<BTreeMap<String, Entry>>,
    changed: watch::Sender<u64>,
    /// Set by [`stop`](Self::stop); every lane shares it.
    stopping: Arc<AtomicBool>,
    /// Counts calls and loads, and keeps the statistics `statuses` shows.
    telemetry: Arc<Telemetry>,
    /// Each plugin's shared KV state (lock, pending writes), by name, kept
    /// across versions.
    kv: std::sync::Mutex<BTreeMap<String, Arc<SharedKv>>>,
}

impl Plugins {
    /// A registry for `config`; `store` backs the plugins' KV and the
    /// compiled cache lives in `cache_dir` (none: always compile).
    pub fn new(
        config: Arc<LiveConfig>,
        store: Option<Arc<dyn PluginKv>>,
        cache_dir: Option<PathBuf>,
        telemetry: Arc<Telemetry>,
    ) -> Result<Plugins> {
        let meters_fuel = config.get().meters_fuel();
        let engine = engine::new_engine(meters_fuel)?;
        let linker = instance::new_linker(&engine)?;
        let cache = cache_dir.map(|d| CompileCache::new(d, &engine));
        for name in config.get().sources.values().flat_map(|s| s.plugins.iter()) {
            telemetry.emit(PluginKnown { plugin: name });
        }
        Ok(Plugins {
            engine,
            linker,
            cache,
            config,
            meters_fuel,
            store,
            entries: RwLock::new(BTreeMap::new()),
            changed: watch::channel(0).0,
            stopping: Arc::new(AtomicBool::new(false)),
            kv: Default::default(),
            telemetry,
        })
    }

    /// The plugin's shared KV state.
    fn kv_of(&self, name: &str) -> Arc<SharedKv> {
        self.kv
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// A call's pending KV writes were committed, refused or failed.
    pub fn kv_settled(&self, name: &str, token: Option<u64>) {
        if let Some(token) = token {
            self.kv_of(name).settle(token);
        }
    }

    /// Shutdown: calls not yet running are answered "shutting down" instead
    /// of run (their events keep their marks); calls running finish.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Notified (a counter bump) whenever a plugin starts serving.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn get(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        self.read()
            .get(name)
            .and_then(|e| e.serving.as_ref().map(|(p, _)| p.clone()))
    }

    /// Serving plugins' warm instances unused for
    /// [`WARM_IDLE`](super::instance::WARM_IDLE), out of their pools.
    pub fn take_idle_instances(&self) -> Vec<super::instance::Warm> {
        let now = std::time::Instant::now();
        self.read()
            .values()
            .filter_map(|e| e.serving.as_ref())
            .flat_map(|(p, _)| p.take_idle(now))
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Entry>> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Entry>> {
        self.entries.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Compiles (or loads from the cache) one plugin file, without
    /// installing it. Slow for big components: call off the request path.
    pub fn compile_file(&self, path: &Path, name: &str) -> Result<(LoadedPlugin, ServingInfo)> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read plugin file {}", path.display()))?;
        self.compile_bytes(&bytes, name)
    }

    fn compile_bytes(&self, bytes: &[u8], name: &str) -> Result<(LoadedPlugin, ServingInfo)> {
        self.link_with(bytes, name, &self.config.get())
    }

    /// A component linked as plugin `name` with its current settings, not
    /// installed: what `POST /admin/plugins/{name}/trial` runs. Compiling
    /// is CPU work: call off the async workers.
    pub fn candidate(&self, bytes: &[u8], name: &str) -> Result<LoadedPlugin> {
        self.compile_bytes(bytes, name).map(|(p, _)| p)
    }

    /// Compiles (or loads from the cache) and links with `config`'s
    /// settings for the plugin.
    fn link_with(
        &self,
        bytes: &[u8],
        name: &str,
        config: &Config,
    ) -> Result<(LoadedPlugin, ServingInfo)> {
        let started = Instant::now();
        let sha256 = hex(&Sha256::digest(bytes));
        let cached = self
            .cache
            .as_ref()
            .and_then(|c| c.load(&self.engine, &sha256));
        let from_cache = cached.is_some();
        // Not cached: compiled in a child into the cache, then mapped from
        // it like a warm start (`compile.rs`); else compiled here.
        if !from_cache {
            // Seconds for a Python or JavaScript component: say so first.
            tracing::info!(plugin = name, bytes = bytes.len(), "compiling plugin");
        }
        let cached = cached.or_else(|| {
            let cache = self.cache.as_ref()?;
            match compile::in_child(bytes, self.meters_fuel, cache.dir()) {
                Ok(true) => cache.load(&self.engine, &sha256),
                Ok(false) => None,
                Err(e) => {
                    tracing::debug!(plugin = name, error = %format!("{e:#}"),
                        "compiling in this process instead");
                    None
                }
            }
        });
        let component = match cached {
            Some(c) => c,
            None => {
                let c = Component::new(&self.engine, bytes)
                    .map_err(anyhow::Error::from)
                    .context("not a valid WebAssembly component")?;
                let c = match &self.cache {
                    // Served from the file just written, as a warm start
                    // would: the code is then mapped from the page cache
                    // rather than held in anonymous memory (after compiling
                    // the Python and JavaScript examples, idle RSS was
                    // 374 MB on a cold start against 109 MB on a warm one).
                    Some(cache) => {
                        cache.store(&sha256, &c);
                        cache.load(&self.engine, &sha256).unwrap_or(c)
                    }
                    None => c,
                };
                release_compile_memory();
                c
            }
        };
        let identity = Arc::new(PluginIdentity {
            name: name.to_string(),
            config: config.plugin_config(name),
            store: self.store.clone(),
            kv: self.kv_of(name),
        });
        let plugin = LoadedPlugin::link(
            &self.engine,
            &self.linker,
            identity,
            config.plugin_limits(name),
            &component,
            sha256.clone(),
            self.meters_fuel,
        )?;
        let info = ServingInfo {
            sha256,
            loaded_at: now_ms(),
            load_ms: started.elapsed().as_secs_f64() * 1000.0,
            from_cache,
            contract: plugin.contract(),
        };
        Ok((plugin, info))
    }

    /// Called by a reload before `new` is swapped in: plugins whose
    /// settings (`config` table, limits) change are linked again with
    /// them, from the same component (its compiled form is cached), and
    /// swapped in as a file change would be; calls running finish with
    /// the old settings. A plugin that fails to link keeps serving as it
    /// was, and the failure is reported like a bad file.
    pub fn apply_settings(&self, running: &Config, new: &Config) {
        for name in new.sources.values().flat_map(|s| s.plugins.iter()) {
            self.telemetry.emit(PluginKnown { plugin: name });
        }
        let serving: Vec<String> = self
            .read()
            .iter()
            .filter(|(_, e)| e.serving.is_some())
            .map(|(n, _)| n.clone())
            .collect();
        for name in serving {
            if running.plugin_config(&name) == new.plugin_config(&name)
                && running.plugin_limits(&name) == new.plugin_limits(&name)
            {
                continue;
            }
            let path = new.plugins.dir.join(format!("{name}.wasm"));
            let linked = std::fs::read(&path)
                .with_context(|| format!("cannot read plugin file {}", path.display()))
                .and_then(|bytes| self.link_with(&bytes, &name, new));
            match linked {
                Ok((plugin, info)) => {
                    tracing::info!(plugin = %name, sha256 = %info.sha256, "plugin settings changed; linked again");
                    if let Some(e) = self.write().get_mut(&name) {
                        e.serving = Some((Arc::new(plugin), info));
                        e.last_error = None;
                    }
                    self.changed.send_modify(|n| *n += 1);
                }
                Err(err) => {
                    let message = format!("{err:#}");
                    let mut map = self.write();
                    if let Some(e) = map.get_mut(&name) {
                        self.telemetry.emit(PluginLoadFailed {
                            plugin: &name,
                            error: &message,
                            still_serving: e.serving.as_ref().map(|(_, i)| i.sha256.as_str()),
                        });
                        e.last_error = Some(LoadError {
                            error: message,
                            at: now_ms(),
                            sha256: None,
                        });
                    }
                }
            }
        }
    }

    /// Brings the registry in line with the plugin directory: loads new and
    /// changed files, retires removed ones. A file that fails to load is
    /// recorded and the last good version keeps serving; at start that
    /// means the plugin is reported failed and its events wait, as they
    /// would at runtime, while sources that do not use it keep working.
    /// Plugin files may be symlinks (to a versioned build, say): they are
    /// followed.
    pub fn reconcile(&self) -> Result<()> {
        let config = self.config.get();
        let dir = &config.plugins.dir;
        let mut present = BTreeMap::new();
        match std::fs::read_dir(dir) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let path = entry.path();
                    let Some(name) = plugin_name(&path) else {
                        continue;
                    };
                    // `DirEntry::metadata` does not follow symlinks.
                    let Ok(meta) = std::fs::metadata(&path) else {
                        continue;
                    };
                    if !meta.is_file() {
                        continue;
                    }
                    let fp = Fingerprint {
                        len: meta.len(),
                        modified: meta.modified().ok(),
                    };
                    present.insert(name.to_string(), (path, fp));
                }
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "plugin directory not readable");
            }
        }

        for (name, (path, fp)) in &present {
            let unchanged = self.read().get(name).is_some_and(|e| e.seen == Some(*fp));
            if unchanged {
                continue;
            }
            let bytes = match std::fs::read(path) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(plugin = %name, error = %e, "cannot read plugin file");
                    continue;
                }
            };
            let sha256 = hex(&Sha256::digest(&bytes));
            let same = self
                .read()
                .get(name)
                .is_some_and(|e| e.serving.as_ref().is_some_and(|(_, i)| i.sha256 == sha256));
            if same {
                let mut map = self.write();
                let e = map
                    .entry(name.clone())
                    .or_insert_with(|| Entry::new(name, &self.telemetry, &self.stopping));
                e.seen = Some(*fp);
                e.last_error = None;
                continue;
            }
            match self.compile_bytes(&bytes, name) {
                Ok((plugin, info)) => {
                    tracing::info!(
                        plugin = %name,
                        sha256 = %info.sha256,
                        from_cache = info.from_cache,
                        load_ms = info.load_ms,
                        contract = %info.contract,
                        "plugin loaded"
                    );
                    let mut map = self.write();
                    let e = map
                        .entry(name.clone())
                        .or_insert_with(|| Entry::new(name, &self.telemetry, &self.stopping));
                    e.serving = Some((Arc::new(plugin), info));
                    e.seen = Some(*fp);
                    e.last_error = None;
                    e.removed_at = None;
                    drop(map);
                    self.changed.send_modify(|n| *n += 1);
                }
                Err(err) => {
                    let message = format!("{err:#}");
                    let mut map = self.write();
                    let e = map
                        .entry(name.clone())
                        .or_insert_with(|| Entry::new(name, &self.telemetry, &self.stopping));
                    self.telemetry.emit(PluginLoadFailed {
                        plugin: name,
                        error: &message,
                        still_serving: e.serving.as_ref().map(|(_, i)| i.sha256.as_str()),
                    });
                    e.seen = Some(*fp);
                    e.last_error = Some(LoadError {
                        error: message,
                        at: now_ms(),
                        sha256: Some(sha256),
                    });
                }
            }
        }

        let mut map = self.write();
        for (name, e) in map.iter_mut() {
            if e.seen.is_some() && !present.contains_key(name) {
                tracing::warn!(plugin = %name, "plugin file removed; its events will wait until it returns");
                e.serving = None;
                e.seen = None;
                e.last_error = None;
                e.removed_at = Some(now_ms());
            }
        }
        Ok(())
    }

    /// Plugins a source names that have never had a file.
    fn never_seen(&self) -> Vec<String> {
        let config = self.config.get();
        let map = self.read();
        let mut out: Vec<String> = config
            .sources
            .values()
            .flat_map(|s| s.plugins.iter())
            .filter(|p| {
                map.get(*p).is_none_or(|e| {
                    e.serving.is_none()
                        && e.seen.is_none()
                        && e.removed_at.is_none()
                        && e.last_error.is_none()
                })
            })
            .cloned()
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Logs each plugin a source names that has no file, once at start:
    /// the router runs without it and its events wait.
    pub fn warn_missing(&self) {
        for name in self.never_seen() {
            let file = self.config.get().plugins.dir.join(format!("{name}.wasm"));
            tracing::error!(plugin = %name, file = %file.display(), "plugin not found; its sources' events wait until the file appears");
        }
    }

    /// Every known plugin's status, by name, including plugins a source
    /// names that never had a file.
    pub fn statuses(&self) -> Vec<PluginStatus> {
        let missing = self.never_seen();
        let mut out: Vec<PluginStatus> = self
            .read()
            .iter()
            .filter(|(name, _)| !missing.contains(name))
            .map(|(name, e)| PluginStatus {
                name: name.clone(),
                status: if e.serving.is_some() {
                    "ok"
                } else if e.removed_at.is_some() {
                    "waiting"
                } else {
                    "failed"
                },
                serving: e.serving.as_ref().map(|(_, i)| i.clone()),
                last_error: e.last_error.clone(),
                removed_at: e.removed_at,
                warm_instances: e.serving.as_ref().map_or(0, |(p, _)| p.warm_count()),
                stats: self.telemetry.plugin_stats(name),
            })
            .collect();
        let dir = self.config.get().plugins.dir.clone();
        for name in missing {
            let file = dir.join(format!("{name}.wasm"));
            let stats = self.telemetry.plugin_stats(&name);
            out.push(PluginStatus {
                name,
                status: "missing",
                serving: None,
                last_error: Some(LoadError {
                    error: format!("no file {}", file.display()),
                    at: now_ms(),
                    sha256: None,
                }),
                removed_at: None,
                warm_instances: 0,
                stats,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    fn lane_for(&self, name: &str) -> Arc<Lane> {
        if let Some(e) = self.read().get(name) {
            return e.lane.clone();
        }
        self.write()
            .entry(name.to_string())
            .or_insert_with(|| Entry::new(name, &self.telemetry, &self.stopping))
            .lane
            .clone()
    }

    /// Calls the plugin on a blocking thread (through its lane) so a slow
    /// plugin never stalls the async runtime that accepts webhooks. `last`:
    /// no other plugin runs for the event after this one, so the call's KV
    /// lock may go as it ends.
    pub async fn call(
        &self,
        plugin: Arc<LoadedPlugin>,
        event: Arc<Event>,
        last: bool,
    ) -> CallReport {
        self.lane_for(plugin.name()).call(plugin, event, last).await
    }
}

/// `<name>.wasm` → `name`; hidden and temporary files are ignored, so tools
/// that write `.name.wasm.tmp` and rename are never seen half-written.
fn plugin_name(path: &Path) -> Option<&str> {
    let file = path.file_name()?.to_str()?;
    if file.starts_with('.') {
        return None;
    }
    file.strip_suffix(".wasm").filter(|n| !n.is_empty())
}

/// Hands back to the OS what compiling freed, on every thread that
/// compiled (rayon's pool and this one): they sit idle afterwards.
fn release_compile_memory() {
    rayon::broadcast(|_| crate::memory::release_thread_memory());
    crate::memory::release_thread_memory();
}
