//! The body log's `fdatasync`, on a thread of its own, so a flush syncs
//! the body log and sled's log side by side.
//!
//! A flush used to start a scoped thread for this. At 1 000 events/s
//! that was about 900 threads created and ended a second on the hot path
//! (a stack mapped and unmapped, an allocator heap set up and abandoned
//! each time); one long-lived thread costs a channel message instead.

use std::sync::Arc;
use std::sync::mpsc;

use anyhow::{Result, anyhow};

use super::bodies::BodyLog;

/// A body-log sync the thread was asked for; [`Pending::wait`] for it.
pub struct Pending(Option<mpsc::Receiver<Result<()>>>);

impl Pending {
    pub fn wait(self) -> Result<()> {
        match self.0 {
            Some(rx) => rx
                .recv()
                .unwrap_or_else(|_| Err(anyhow!("the body log's sync thread stopped"))),
            None => Err(anyhow!("the body log's sync thread is not running")),
        }
    }
}

/// Owns the sync thread; the thread ends when this is dropped.
pub struct BodySync {
    requests: mpsc::Sender<mpsc::SyncSender<Result<()>>>,
}

impl BodySync {
    pub fn start(bodies: Arc<BodyLog>) -> Result<BodySync> {
        let (requests, incoming) = mpsc::channel::<mpsc::SyncSender<Result<()>>>();
        std::thread::Builder::new()
            .name("hookyard-store-bodysync".into())
            .spawn(move || {
                for reply in incoming {
                    // A panicking sync drops `reply`: its flush fails (and
                    // trips the store's recovery) instead of hanging.
                    let _ = reply.send(bodies.sync());
                }
            })?;
        Ok(BodySync { requests })
    }

    /// Starts a sync of everything appended so far.
    pub fn begin(&self) -> Pending {
        let (reply, rx) = mpsc::sync_channel(1);
        Pending(self.requests.send(reply).ok().map(|()| rx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_covers_what_was_appended_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(BodyLog::open(dir.path()).unwrap());
        let sync = BodySync::start(log.clone()).unwrap();
        sync.begin().wait().unwrap();
        assert!(log.is_synced());
        let mut appender = super::super::bodies::Appender::new(&log);
        appender.add("e1", b"a body").unwrap();
        appender.finish().unwrap();
        assert!(!log.is_synced());
        sync.begin().wait().unwrap();
        assert!(log.is_synced());
        // Asked again with nothing new: answered without a sync.
        sync.begin().wait().unwrap();
    }
}
