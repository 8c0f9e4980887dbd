//! Free space on the data directory's file system, kept above a reserve.
//!
//! sled does not survive running out of space well: after a write fails
//! with ENOSPC it refuses everything until reopened, and reopening it on a
//! disk that is still full can leave its files unreadable (measured: a
//! store reopened on a full tmpfs would not open again after space
//! returned). So new webhooks are refused (503) once free space drops
//! below `server.min_free_space`, before sled meets a full disk; routing,
//! delivery and retention keep writing into the reserve, so the backlog
//! drains and space can come back. A store that did meet a full disk is
//! reopened only once the reserve is free again.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Whether new events may be written, from the last look at free space.
#[derive(Default)]
pub struct Space {
    min_free: AtomicU64,
    low: AtomicBool,
    free: AtomicU64,
}

/// Free space is below the reserve: new events are refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "free space on the data directory's file system is {free} bytes, below server.min_free_space ({min_free} bytes); new webhooks are refused until space is freed"
)]
pub struct SpaceLow {
    pub free: u64,
    pub min_free: u64,
}

impl Space {
    pub fn set_min_free(&self, bytes: u64) {
        self.min_free.store(bytes, Ordering::SeqCst);
    }

    /// Looks at the file system again; logs when the answer changes.
    pub fn check(&self, dir: &Path) {
        let Ok(free) = free_bytes(dir) else { return };
        self.free.store(free, Ordering::SeqCst);
        let min_free = self.min_free.load(Ordering::SeqCst);
        let low = free < min_free;
        if self.low.swap(low, Ordering::SeqCst) != low {
            if low {
                tracing::error!(
                    free,
                    min_free,
                    "free space is below server.min_free_space: refusing new webhooks (503) until it is freed"
                );
            } else {
                tracing::info!(
                    free,
                    min_free,
                    "free space is back above server.min_free_space"
                );
            }
        }
    }

    /// `Err` while new events must be refused.
    pub fn admit(&self) -> Result<(), SpaceLow> {
        if self.low.load(Ordering::SeqCst) {
            return Err(SpaceLow {
                free: self.free.load(Ordering::SeqCst),
                min_free: self.min_free.load(Ordering::SeqCst),
            });
        }
        Ok(())
    }

    /// Whether there is room to reopen a store that met a full disk.
    pub fn room_to_reopen(&self, dir: &Path) -> bool {
        self.check(dir);
        // Some room even with the reserve turned off: sled writes its
        // config and a snapshot when it opens.
        let need = self.min_free.load(Ordering::SeqCst).max(8 << 20);
        self.free.load(Ordering::SeqCst) >= need
    }
}

pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let s = rustix::fs::statvfs(dir)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}
