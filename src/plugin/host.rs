//! The host imports a plugin may call (`hookyard:plugin/host`), and the
//! per-instance state behind them. Plugins get WASI only for what language
//! runtimes need to start (clocks, random, empty stdio): no preopened
//! directories, no sockets.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::Level;
use super::bindings::v0_2::hookyard;
use super::kv::{self, KvTurn, KvTxn, MAX_KEYS_PER_CALL, SharedKv};
use super::limiter::Limiter;
use super::stderr::StderrTail;
use crate::store::PluginKv;

/// What a plugin instance's store carries.
pub struct PluginState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: Limiter,
    pub(crate) plugin: Arc<PluginIdentity>,
    /// Log lines of the current call, when the caller wants them (`plugin
    /// test`); otherwise they only go to tracing.
    pub(crate) captured: Option<Vec<(Level, String)>>,
    pub(crate) stderr: StderrTail,
    /// The first host-side limit the current call broke (a KV key or value
    /// too large): the call fails with it even if the plugin returns `ok`,
    /// so the plugin's author sees why instead of a silently ignored write.
    pub(crate) violation: Option<String>,
    /// What the current call may still log, and what it logged past that.
    pub(crate) log: LogBudget,
    /// What the current call read and wrote in its KV state; committed with
    /// the event's outcome (see `kv.rs`).
    pub(crate) txn: KvTxn,
    /// The call's KV turn, with the plugin's KV lock, from the call's first
    /// KV operation (see `kv.rs`); `kv_locked` says it was tried, so a call
    /// that waited in vain does not wait again.
    pub(crate) kv_turn: Option<KvTurn>,
    pub(crate) kv_locked: bool,
}

/// Log lines one call may write: a plugin in a loop could write hundreds of
/// MB within its time limit. Past the budget lines are counted, not written.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LogBudget {
    pub lines: usize,
    pub bytes: usize,
    pub cut_lines: u64,
    pub cut_bytes: u64,
}

/// Log lines per call, and bytes per call.
pub const MAX_LOG_LINES: usize = 100;
pub const MAX_LOG_BYTES: usize = 64 * 1024;
/// Longest log line kept (longer ones are cut).
const MAX_LOG_LINE: usize = 4096;

impl LogBudget {
    pub fn full() -> LogBudget {
        LogBudget {
            lines: MAX_LOG_LINES,
            bytes: MAX_LOG_BYTES,
            cut_lines: 0,
            cut_bytes: 0,
        }
    }

    /// Whether a line of `len` bytes may be written; counts it if not.
    fn take(&mut self, len: usize) -> bool {
        if self.lines == 0 || self.bytes < len {
            self.cut_lines += 1;
            self.cut_bytes += len as u64;
            return false;
        }
        self.lines -= 1;
        self.bytes -= len;
        true
    }
}

/// Who the plugin is, for its log lines, config and private KV namespace.
pub struct PluginIdentity {
    pub name: String,
    pub config: Vec<(String, String)>,
    pub store: Option<Arc<dyn PluginKv>>,
    /// Shared by every version and instance of this plugin (see `kv.rs`).
    pub kv: Arc<SharedKv>,
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
        PluginState {
            wasi,
            table: ResourceTable::new(),
            limits: Limiter::new(memory_limit),
            plugin,
            captured: None,
            stderr,
            violation: None,
            log: LogBudget::full(),
            txn: KvTxn::default(),
            kv_turn: None,
            kv_locked: false,
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
pub const MAX_KV_VALUE: usize = 64 * 1024;
/// Longest KV key.
pub const MAX_KV_KEY: usize = 1024;

impl PluginState {
    /// Records the first limit this call broke.
    fn violate(&mut self, what: String) {
        tracing::warn!(plugin = %self.plugin.name, "{what}");
        self.violation.get_or_insert(what);
    }

    /// Whether `key` may be used; records a violation if not.
    fn key_ok(&mut self, op: &str, key: &str) -> bool {
        if key.len() > MAX_KV_KEY {
            self.violate(format!(
                "{op}: a key of {} bytes is longer than the {MAX_KV_KEY}-byte limit",
                key.len()
            ));
            return false;
        }
        if self.txn.keys() >= MAX_KEYS_PER_CALL
            && !self.txn.reads.contains_key(key)
            && !self.txn.writes.contains_key(key)
        {
            self.violate(format!(
                "{op}: one call may touch at most {MAX_KEYS_PER_CALL} KV keys"
            ));
            return false;
        }
        if !self.kv_locked {
            self.kv_locked = true;
            self.kv_turn = self.plugin.kv.lock();
        }
        true
    }
}

impl hookyard::plugin::host::Host for PluginState {
    fn log(&mut self, level: Level, message: String) {
        if !self.log.take(message.len().min(MAX_LOG_LINE)) {
            return;
        }
        let plugin = self.plugin.name.as_str();
        let message = if message.len() > MAX_LOG_LINE {
            crate::routing::cap_text(message)
        } else {
            message
        };
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
        if !self.key_ok("kv-get", &key) {
            return None;
        }
        if let Some(own) = self.txn.written(&key) {
            return own.clone();
        }
        let store = self.plugin.store.as_ref()?;
        let read = match self.plugin.kv.pending(&key) {
            Some(pending) => Ok(pending),
            None => store.kv_get(&self.plugin.name, &key),
        };
        match read {
            Ok(v) => {
                // The first read is what the commit checks is still there.
                self.txn
                    .reads
                    .entry(key)
                    .or_insert_with(|| kv::digest(v.as_deref()));
                v
            }
            Err(e) => {
                // A read that failed must not look like an absent key the
                // plugin then "creates": fail the call instead.
                self.violate(format!("kv-get: the store could not be read: {e:#}"));
                None
            }
        }
    }

    fn kv_set(&mut self, key: String, value: Vec<u8>) {
        if !self.key_ok("kv-set", &key) {
            return;
        }
        if value.len() > MAX_KV_VALUE {
            self.violate(format!(
                "kv-set: a value of {} bytes is larger than the {MAX_KV_VALUE}-byte limit",
                value.len()
            ));
            return;
        }
        self.txn.writes.insert(key, Some(value));
    }

    fn kv_delete(&mut self, key: String) {
        if !self.key_ok("kv-delete", &key) {
            return;
        }
        self.txn.writes.insert(key, None);
    }
}
