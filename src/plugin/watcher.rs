//! Watches the plugin directory (notify) and reconciles the registry after
//! the directory has been quiet for a moment: `cp` and editors write a file
//! in several steps, and reloading half a file would only produce a
//! spurious error. A slow periodic rescan covers events a platform drops.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use notify::{RecursiveMode, Watcher};

use super::registry::Plugins;

/// Quiet time after the last filesystem event before reloading.
pub const DEBOUNCE: Duration = Duration::from_millis(150);
/// Rescan even without events, in case the platform dropped some.
const RESCAN: Duration = Duration::from_secs(10);

/// Starts watching; reloads run on a blocking thread, one at a time.
pub fn spawn(plugins: Arc<Plugins>, dir: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("plugins.dir: cannot create {}", dir.display()))?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let _ = tx.send(res.is_ok());
    })
    .context("cannot start the plugin directory watcher")?;
    watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch {}", dir.display()))?;
    tokio::spawn(async move {
        let _keep_alive = watcher;
        loop {
            tokio::select! {
                got = rx.recv() => if got.is_none() { return },
                _ = tokio::time::sleep(RESCAN) => {}
            }
            // Debounce: wait until nothing happened for DEBOUNCE.
            while let Ok(Some(_)) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {}
            let p = plugins.clone();
            match tokio::task::spawn_blocking(move || p.reconcile()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = format!("{e:#}"), "plugin reload failed"),
                Err(e) => tracing::error!(error = %e, "plugin reload panicked"),
            }
        }
    });
    Ok(())
}
