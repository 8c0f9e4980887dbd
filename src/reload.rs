//! Changing the config of a running router: `SIGHUP`, `hookyard reload`
//! (`POST /admin/config/reload`) and, with `server.watch_config`, a change
//! of the file.
//!
//! A reload reads the file, validates all of it (a bad file changes
//! nothing and is reported with the key at fault), then applies it in the
//! order that keeps every event routable: plugins linked with their new
//! settings, targets added or changed (so no delivery is created for a
//! target without a dispatcher), source rate limits, and only then the
//! swap that new requests and newly routed events read. Work already
//! running finishes under the config it started with; no request is
//! refused for a reload. What cannot change while running (listeners, data
//! directory, store, plugin directory) keeps its running value and is
//! reported as needing a restart.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::config::live::LiveConfig;
use crate::config::{Config, restart};
use crate::delivery::Dispatcher;
use crate::plugin::Plugins;
use crate::source::IngestState;
use crate::telemetry::{ConfigReloadRefused, ConfigReloaded, ReloadTrigger, Telemetry};

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// Started from config text, not a file (in-process tests, benches).
    #[error("this router was not started from a config file; nothing to read again")]
    NoFile,
    /// The file is unreadable or invalid; the message names the key.
    #[error("{0}")]
    Invalid(String),
    /// Validated, but applying it failed (the store could not be read for
    /// a new target's state); the running config stays.
    #[error("could not apply the config: {0}")]
    Apply(String),
}

/// What an applied reload did.
#[derive(Debug, Clone, Serialize)]
pub struct Reloaded {
    pub sha256: Option<String>,
    /// One line per section entry added, removed or changed.
    pub changes: Vec<String>,
    /// Keys that changed but need a restart (their running values stay).
    pub needs_restart: Vec<String>,
}

/// Applies config reloads, one at a time.
pub struct Reloader {
    pub live: Arc<LiveConfig>,
    pub plugins: Arc<Plugins>,
    pub dispatcher: Arc<Dispatcher>,
    pub ingest: Arc<IngestState>,
    pub telemetry: Arc<Telemetry>,
    /// Two reloads at once would apply parts of each.
    pub(crate) one_at_a_time: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub fn new(
        live: Arc<LiveConfig>,
        plugins: Arc<Plugins>,
        dispatcher: Arc<Dispatcher>,
        ingest: Arc<IngestState>,
        telemetry: Arc<Telemetry>,
    ) -> Arc<Reloader> {
        Arc::new(Reloader {
            live,
            plugins,
            dispatcher,
            ingest,
            telemetry,
            one_at_a_time: tokio::sync::Mutex::new(()),
        })
    }

    /// Reads the file again and applies it, or reports why not.
    pub async fn reload(&self, trigger: ReloadTrigger) -> Result<Reloaded, ReloadError> {
        let _one = self.one_at_a_time.lock().await;
        let result = self.apply().await;
        match &result {
            Ok(done) => self.telemetry.emit(ConfigReloaded {
                trigger,
                sha256: done.sha256.as_deref().unwrap_or(""),
                changes: &done.changes,
                needs_restart: &done.needs_restart,
            }),
            Err(e) => {
                let error = e.to_string();
                self.telemetry.emit(ConfigReloadRefused {
                    trigger,
                    error: &error,
                });
                self.live.refused(trigger, error);
            }
        }
        result
    }

    async fn apply(&self) -> Result<Reloaded, ReloadError> {
        let running = self.live.get();
        let path = running
            .file
            .as_ref()
            .map(|f| f.path.clone())
            .ok_or(ReloadError::NoFile)?;
        let read = tokio::task::spawn_blocking(move || Config::load(&path))
            .await
            .map_err(|e| ReloadError::Invalid(e.to_string()))?;
        let new = read.map_err(|e| ReloadError::Invalid(format!("{e:#}")))?;
        let needs_restart = restart::restart_only(&running, &new);
        let changes = restart::changes(&running, &new);
        let new = Arc::new(restart::keep_running(&running, new));
        // Targets first: the only step that can fail (reading a new
        // target's state from the store), and it fails before changing
        // anything.
        self.dispatcher
            .apply(&new)
            .await
            .map_err(|e| ReloadError::Apply(format!("{e:#}")))?;
        let plugins = self.plugins.clone();
        let (r, n) = (running.clone(), new.clone());
        // Linking is CPU work (and file reads): off the async workers.
        tokio::task::spawn_blocking(move || plugins.apply_settings(&r, &n))
            .await
            .map_err(|e| ReloadError::Apply(e.to_string()))?;
        self.ingest.apply(&new);
        let sha256 = new.file.as_ref().map(|f| f.sha256.clone());
        self.live.swap(new, needs_restart.clone());
        // A new source may name plugins already in the directory, and a
        // plugin's events may have waited for its source: look again.
        if let Err(e) = self.plugins.reconcile() {
            tracing::warn!(
                error = format!("{e:#}"),
                "reading the plugin directory failed"
            );
        }
        Ok(Reloaded {
            sha256,
            changes,
            needs_restart,
        })
    }

    /// Reloads on every SIGHUP until the process ends (installed at start,
    /// so a SIGHUP never kills a running router).
    pub fn on_sighup(self: &Arc<Self>) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = signal(SignalKind::hangup())?;
        let me = self.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let _ = me.reload(ReloadTrigger::Signal).await;
            }
        });
        Ok(())
    }

    /// Reloads when the config file changes (`server.watch_config`): its
    /// digest is checked every second, so editors that replace the file
    /// and ones that rewrite it in place both count, and a save that
    /// leaves the bytes as they were does nothing.
    pub fn watch_file(self: &Arc<Self>, every: Duration) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut seen = me.live.status().sha256;
            loop {
                tick.tick().await;
                let Some(path) = me.live.get().file.as_ref().map(|f| f.path.clone()) else {
                    return;
                };
                let Ok(Ok(bytes)) = tokio::task::spawn_blocking(move || std::fs::read(path)).await
                else {
                    continue;
                };
                let digest = Some(crate::plugin::instance::hex(
                    &<sha2::Sha256 as sha2::Digest>::digest(&bytes),
                ));
                let serving = me.live.status().sha256;
                if digest == seen || digest == serving {
                    seen = digest;
                    continue;
                }
                seen = digest;
                // A refused file is reported once; the next save tries again.
                let _ = me.reload(ReloadTrigger::File).await;
            }
        });
    }
}
