//! The config a running router serves with. A reload swaps it whole;
//! every stage reads a snapshot per unit of work (a request, an event being
//! routed, an attempt), so work that started under one config finishes
//! under it, and readers never wait for a reload.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::Serialize;

use super::Config;
use crate::model::id::now_ms;
use crate::telemetry::ReloadTrigger;

/// The serving config and what the last reloads did.
pub struct LiveConfig {
    current: ArcSwap<Config>,
    status: Mutex<Status>,
}

/// What the admin API shows of the serving config (never its contents: it
/// holds secrets).
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// The file it was read from (none: started from text, in process).
    pub path: Option<String>,
    /// sha256 of the file's bytes when it was loaded: compare nodes, or a
    /// node and `sha256sum` of the file on disk.
    pub sha256: Option<String>,
    /// Unix ms the serving config was loaded (at start or by a reload).
    pub loaded_at: u64,
    /// Reloads applied since start.
    pub reloads: u64,
    /// Keys the serving file changed that only take effect after a
    /// restart (their running values stay).
    pub needs_restart: Vec<String>,
    /// The last reload that was refused, until one is applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_refused: Option<Refused>,
}

/// A reload that did not happen, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Refused {
    pub at: u64,
    pub trigger: ReloadTrigger,
    /// Names the key at fault.
    pub error: String,
}

impl LiveConfig {
    pub fn new(config: Config) -> Arc<LiveConfig> {
        let status = Status {
            path: config.file.as_ref().map(|f| f.path.display().to_string()),
            sha256: config.file.as_ref().map(|f| f.sha256.clone()),
            loaded_at: now_ms(),
            reloads: 0,
            needs_restart: Vec::new(),
            last_refused: None,
        };
        Arc::new(LiveConfig {
            current: ArcSwap::from_pointee(config),
            status: Mutex::new(status),
        })
    }

    /// The config to use for one unit of work.
    pub fn get(&self) -> Arc<Config> {
        self.current.load_full()
    }

    pub fn status(&self) -> Status {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes `config` the serving one.
    pub(crate) fn swap(&self, config: Arc<Config>, needs_restart: Vec<String>) {
        let mut status = self.lock();
        status.path = config.file.as_ref().map(|f| f.path.display().to_string());
        status.sha256 = config.file.as_ref().map(|f| f.sha256.clone());
        status.loaded_at = now_ms();
        status.reloads += 1;
        status.needs_restart = needs_restart;
        status.last_refused = None;
        self.current.store(config);
    }

    pub(crate) fn refused(&self, trigger: ReloadTrigger, error: String) {
        self.lock().last_refused = Some(Refused {
            at: now_ms(),
            trigger,
            error,
        });
    }
}
