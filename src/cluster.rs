//! One node of a cluster (the PostgreSQL store): what it does besides
//! ingesting, routing and delivering, which work the same on both stores.
//!
//! - Says it is alive, and what it is, every few seconds.
//! - Turns the other nodes' notifications into local wake-ups: new due
//!   deliveries for targets it dispatches, an operator's change of a
//!   target's state, a pushed plugin.
//! - Looks again on a timer for what notifications cannot announce:
//!   events a dead node claimed (its claim runs out), plugins pushed while
//!   the notification connection was down.
//! - Keeps its plugin directory in step with the plugins pushed into the
//!   database: a pushed component is written into the directory, where the
//!   ordinary hot reload (with its compiled cache) picks it up, and what
//!   each plugin serves here (or why it cannot) is reported for
//!   `GET /admin/plugins`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use tokio::sync::broadcast::error::RecvError;

use crate::delivery::Dispatcher;
use crate::plugin::Plugins;
use crate::routing::Router;
use crate::store::pg::{HEARTBEAT_EVERY, PgStore, Wake};

/// How often a node reads the routing marks again for events whose claim
/// ran out (a dead node's), and the pushed plugins in case a notification
/// was missed.
const BACKSTOP: Duration = Duration::from_secs(10);

/// The parts of a running node the cluster tasks drive.
pub struct Node {
    pub store: PgStore,
    pub dispatcher: Arc<Dispatcher>,
    pub router: Arc<Router>,
    pub plugins: Arc<Plugins>,
    pub plugin_dir: PathBuf,
    /// What the node says about itself in the nodes table.
    pub info: serde_json::Value,
    /// Its serving config's digest goes into the nodes table with each
    /// heartbeat, so drift between nodes shows in `GET /admin/cluster`.
    pub config: Arc<crate::config::live::LiveConfig>,
}

impl Node {
    /// Starts the node's cluster tasks; they end with the runtime.
    pub fn start(self) {
        let node = Arc::new(self);
        tokio::spawn(node.clone().heartbeat());
        tokio::spawn(node.clone().wakes());
        tokio::spawn(node.clone().backstop());
    }

    async fn heartbeat(self: Arc<Self>) {
        let mut reported = BTreeMap::new();
        loop {
            let mut info = self.info.clone();
            let status = self.config.status();
            info["config"] = serde_json::json!({
                "sha256": status.sha256,
                "loaded_at": status.loaded_at,
            });
            if let Err(e) = self.store.heartbeat(&info).await {
                tracing::warn!(error = format!("{e:#}"), "cannot reach the database");
            }
            self.report_plugins(&mut reported).await;
            tokio::time::sleep(HEARTBEAT_EVERY).await;
        }
    }

    async fn wakes(self: Arc<Self>) {
        let mut rx = self.store.wakes();
        let me = self.store.node().to_string();
        loop {
            match rx.recv().await {
                Ok(Wake::Due(targets)) => {
                    for t in targets {
                        self.dispatcher.wake(&t);
                    }
                }
                Ok(Wake::Control { target, by }) => {
                    if by != me {
                        self.dispatcher.reload_control(&target).await;
                    }
                }
                Ok(Wake::Plugins) => self.sync_plugins().await,
                Ok(Wake::Everything) | Err(RecvError::Lagged(_)) => {
                    self.everything().await;
                }
                Err(RecvError::Closed) => return,
            }
        }
    }

    /// Something may have been missed: look at all of it.
    async fn everything(&self) {
        let names: Vec<String> = self
            .dispatcher
            .targets()
            .iter()
            .map(|t| t.name.clone())
            .collect();
        for name in names {
            self.dispatcher.reload_control(&name).await;
            self.dispatcher.wake(&name);
        }
        self.router.rescan();
        self.sync_plugins().await;
    }

    async fn backstop(self: Arc<Self>) {
        loop {
            tokio::time::sleep(BACKSTOP).await;
            self.router.rescan();
            self.sync_plugins().await;
        }
    }

    /// Writes every pushed plugin this node's directory does not hold as
    /// pushed; the directory's watcher loads them.
    async fn sync_plugins(&self) {
        let pushed = match self.store.pushed_plugins().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "cannot read the pushed plugins");
                return;
            }
        };
        for (name, sha) in pushed {
            let path = self.plugin_dir.join(format!("{name}.wasm"));
            if file_sha256(&path).await.as_deref() == Some(sha.as_str()) {
                continue;
            }
            let blob = match self.store.pushed_plugin(&name).await {
                Ok(Some(b)) => b,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(plugin = %name, error = format!("{e:#}"), "cannot read a pushed plugin");
                    continue;
                }
            };
            match install(&self.plugin_dir, &name, &blob.wasm).await {
                Ok(()) => {
                    tracing::info!(plugin = %name, sha256 = %blob.sha256, "installed a pushed plugin")
                }
                Err(e) => {
                    tracing::error!(plugin = %name, error = format!("{e:#}"), "cannot install a pushed plugin");
                    let _ = self
                        .store
                        .report_plugin(&name, None, Some(&format!("{e:#}")))
                        .await;
                }
            }
        }
    }

    /// Reports each plugin's state here when it changed since the last
    /// report.
    async fn report_plugins(
        &self,
        reported: &mut BTreeMap<String, (Option<String>, Option<String>)>,
    ) {
        for s in self.plugins.statuses() {
            let serving = s.serving.map(|i| i.sha256);
            // An error matters while it is about the latest file.
            let error = s
                .last_error
                .filter(|e| e.sha256.is_none() || e.sha256 != serving)
                .map(|e| e.error);
            let now = (serving, error);
            if reported.get(&s.name) == Some(&now) {
                continue;
            }
            match self
                .store
                .report_plugin(&s.name, now.0.as_deref(), now.1.as_deref())
                .await
            {
                Ok(()) => {
                    reported.insert(s.name, now);
                }
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "cannot report plugin status");
                    return;
                }
            }
        }
    }
}

/// The hex sha256 of a file, if it can be read.
async fn file_sha256(path: &Path) -> Option<String> {
    let bytes = tokio::fs::read(path).await.ok()?;
    Some(crate::plugin::instance::hex(&Sha256::digest(&bytes)))
}

/// Puts a component into the plugin directory in one rename, so the
/// watcher never loads half a file.
pub async fn install(dir: &Path, name: &str, wasm: &[u8]) -> Result<()> {
    tokio::fs::create_dir_all(dir)
        .await
        .with_context(|| format!("creating {}", dir.display()))?;
    // A dot file: the registry ignores it while it is written.
    let tmp = dir.join(format!(".{name}.wasm.{}.tmp", std::process::id()));
    tokio::fs::write(&tmp, wasm)
        .await
        .with_context(|| format!("writing {}", tmp.display()))?;
    let path = dir.join(format!("{name}.wasm"));
    if let Err(e) = tokio::fs::rename(&tmp, &path).await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e).with_context(|| format!("installing {}", path.display()));
    }
    Ok(())
}
