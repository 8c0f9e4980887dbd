//! Plugins: WebAssembly components implementing `wit/plugin.wit`, loaded from
//! the plugin directory (`<name>.wasm` is plugin `<name>`).

mod bindings;
pub mod engine;
pub mod host;
pub mod instance;
mod stderr;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use anyhow::{Context, Result};
use wasmtime::Engine;
use wasmtime::component::Linker;

pub use bindings::{
    Delivery as PluginDelivery, Event as PluginEvent, Level, Outcome as PluginOutcome,
};
pub use instance::{CallError, CallReport, LoadedPlugin};

use crate::config::Config;
use crate::records::Event;
use crate::store::Storage;
use host::{PluginIdentity, PluginState};

/// All loaded plugins by name. Swappable as a whole entry per plugin, so a
/// reload replaces one `Arc` while calls in flight keep the old one.
pub struct Plugins {
    engine: Engine,
    linker: Linker<PluginState>,
    loaded: RwLock<BTreeMap<String, Arc<LoadedPlugin>>>,
}

impl Plugins {
    pub fn new() -> Result<Plugins> {
        let engine = engine::new_engine()?;
        let linker = instance::new_linker(&engine)?;
        Ok(Plugins {
            engine,
            linker,
            loaded: RwLock::new(BTreeMap::new()),
        })
    }

    /// Compiles one plugin file.
    pub fn compile_file(
        &self,
        path: &Path,
        name: &str,
        config: &Config,
        store: Option<Arc<dyn Storage>>,
    ) -> Result<LoadedPlugin> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read plugin file {}", path.display()))?;
        let identity = Arc::new(PluginIdentity {
            name: name.to_string(),
            config: config.plugin_config(name),
            store,
        });
        LoadedPlugin::compile(
            &self.engine,
            &self.linker,
            identity,
            config.plugin_limits(name),
            &bytes,
        )
    }

    /// Loads every `*.wasm` in the plugin directory. A plugin a source uses
    /// must load, or the start fails with the reason; others only warn.
    pub fn load_dir(&self, config: &Config, store: &Arc<dyn Storage>) -> Result<()> {
        let used: std::collections::BTreeSet<&str> = config
            .sources
            .values()
            .flat_map(|s| s.plugins.iter().map(String::as_str))
            .collect();
        let dir = &config.plugins.dir;
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e.collect::<Vec<_>>(),
            Err(e) if used.is_empty() => {
                tracing::warn!(dir = %dir.display(), error = %e, "plugin directory not readable; no plugins loaded");
                return Ok(());
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("plugins.dir: cannot read {}", dir.display()));
            }
        };
        for entry in entries {
            let path = entry?.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".wasm"))
            else {
                continue;
            };
            let started = std::time::Instant::now();
            match self.compile_file(&path, name, config, Some(store.clone())) {
                Ok(p) => {
                    tracing::info!(plugin = name, sha256 = %p.sha256, elapsed = ?started.elapsed(), "plugin loaded");
                    self.insert(Arc::new(p));
                }
                Err(e) if used.contains(name) => return Err(e),
                Err(e) => tracing::warn!(
                    plugin = name,
                    error = format!("{e:#}"),
                    "plugin failed to load; no source uses it"
                ),
            }
        }
        Ok(())
    }

    pub fn insert(&self, plugin: Arc<LoadedPlugin>) {
        self.loaded
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(plugin.name().to_string(), plugin);
    }

    pub fn get(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        self.loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Calls the plugin on a blocking thread so a slow plugin never stalls
    /// the async runtime that accepts webhooks.
    pub async fn call(plugin: Arc<LoadedPlugin>, event: Arc<Event>) -> CallReport {
        let result = tokio::task::spawn_blocking(move || {
            let ev = to_plugin_event(&event);
            plugin.call(&ev, false)
        })
        .await;
        result.unwrap_or_else(|e| CallReport {
            result: Err(CallError::Trap(format!("plugin call panicked: {e}"))),
            logs: vec![],
            fresh_instance: true,
        })
    }
}

/// The WIT view of a stored event.
pub fn to_plugin_event(e: &Event) -> PluginEvent {
    PluginEvent {
        id: e.id.clone(),
        source: e.source.clone(),
        received_at: e.received_at,
        method: e.method.clone(),
        path: e.path.clone(),
        query: e.query.clone(),
        headers: e.headers.clone(),
        body: e.body.clone(),
    }
}
