//! The host imports a plugin may call (`hookyard:plugin/host`), and the
//! per-instance state behind them. Plugins get WASI only for what language
//! runtimes need to start (clocks, random, empty stdio): no preopened
//! directories, no sockets.

use std::sync::Arc;

use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{Level, hookyard};
use super::stderr::StderrTail;
use crate::store::Storage;

/// What a plugin instance's store carries.
pub struct PluginState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: StoreLimits,
    pub(crate) plugin: Arc<PluginIdentity>,
    /// Log lines of the current call, when the caller wants them (`plugin
    /// test`); otherwise they only go to tracing.
    pub(crate) captured: Option<Vec<(Level, String)>>,
    pub(crate) stderr: StderrTail,
}

/// Who the plugin is, for its log lines, config and private KV namespace.
pub struct PluginIdentity {
    pub name: String,
    pub config: Vec<(String, String)>,
    pub store: Option<Arc<dyn Storage>>,
}

impl PluginState {
    pub fn new(plugin: Arc<PluginIdentity>, memory_limit: usize) -> PluginState {
        let stderr = StderrTail::default();
        let wasi = wasmtime_wasi::WasiCtxBuilder::new()
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let limits = wasmtime::StoreLimitsBuilder::new()
            .memory_size(memory_limit)
            .trap_on_grow_failure(true)
            .instances(16)
            .tables(64)
            .memories(16)
            .build();
        PluginState {
            wasi,
            table: ResourceTable::new(),
            limits,
            plugin,
            captured: None,
            stderr,
        }
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl hookyard::plugin::types::Host for PluginState {}

/// Largest KV value a plugin may store; KV is for small state, not blobs.
const MAX_KV_VALUE: usize = 64 * 1024;

impl hookyard::plugin::host::Host for PluginState {
    fn log(&mut self, level: Level, message: String) {
        let plugin = self.plugin.name.as_str();
        let message: String = message.chars().take(4096).collect();
        match level {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
        if let Some(lines) = &mut self.captured
            && lines.len() < 1000
        {
            lines.push((level, message));
        }
    }

    fn config(&mut self) -> Vec<(String, String)> {
        self.plugin.config.clone()
    }

    fn kv_get(&mut self, key: String) -> Option<Vec<u8>> {
        let store = self.plugin.store.as_ref()?;
        match store.kv_get(&self.plugin.name, &key) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(plugin = %self.plugin.name, error = %e, "kv-get failed");
                None
            }
        }
    }

    fn kv_set(&mut self, key: String, value: Vec<u8>) {
        let Some(store) = &self.plugin.store else {
            return;
        };
        if value.len() > MAX_KV_VALUE {
            tracing::warn!(plugin = %self.plugin.name, key, len = value.len(), "kv-set value too large; ignored");
            return;
        }
        if let Err(e) = store.kv_set(&self.plugin.name, &key, &value) {
            tracing::error!(plugin = %self.plugin.name, error = %e, "kv-set failed");
        }
    }

    fn kv_delete(&mut self, key: String) {
        let Some(store) = &self.plugin.store else {
            return;
        };
        if let Err(e) = store.kv_delete(&self.plugin.name, &key) {
            tracing::error!(plugin = %self.plugin.name, error = %e, "kv-delete failed");
        }
    }
}
