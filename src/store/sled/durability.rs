//! Group commit: the 202 for an event waits for the fsync that covers it, but
//! concurrent requests share one fsync instead of queueing for one each.
//!
//! The store's writer numbers the groups it applies. A caller that needs
//! what was applied so far to be durable waits until the flusher reports a
//! flush that covered that group number. The flusher thread loops: note the
//! last applied group, flush once, publish it. Whoever arrives during a
//! flush rides the next one, so throughput grows with concurrency; and a
//! caller with nothing new to cover (the delivery side asks before every
//! schedule read) costs no fsync at all. It is a thread, not a task: an
//! fsync blocks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::{Result, anyhow};
use tokio::sync::watch;

/// The longest a write waits for its fsync. A disk that takes longer is
/// in trouble; the request is answered 503 (nothing is acknowledged that
/// is not durable) rather than held open.
pub const FLUSH_WAIT: Duration = Duration::from_secs(5);

/// What the flusher has made durable, or why it cannot.
#[derive(Clone, Default)]
struct Progress {
    done: u64,
    /// Set by a failed flush and kept: sled refuses every write after one
    /// (the store is reopened, with a new flusher; see `recovery`).
    failed: Option<Arc<str>>,
}

use super::Sled;
use crate::config::Durability;

/// Makes accepted events as durable as the config asks.
pub struct Flusher {
    mode: Durability,
    /// The highest applied-group number a waiter needs covered.
    wanted: AtomicU64,
    wake: Arc<(Mutex<bool>, Condvar)>,
    flushed: watch::Sender<Progress>,
}

impl Flusher {
    /// Starts the flusher thread (only with `Durability::Flush`); it ends
    /// when the store does.
    pub fn start(store: std::sync::Weak<Sled>, mode: Durability) -> Result<Arc<Flusher>> {
        let (flushed, _) = watch::channel(Progress::default());
        let f = Arc::new(Flusher {
            mode,
            wanted: AtomicU64::new(0),
            wake: Arc::new((Mutex::new(false), Condvar::new())),
            flushed,
        });
        if mode == Durability::Flush {
            let me = Arc::downgrade(&f);
            std::thread::Builder::new()
                .name("hookyard-store-flusher".into())
                .spawn(move || run(me, store))?;
        }
        Ok(f)
    }

    /// Returns once every group the writer applied up to `applied` (its
    /// count when the caller asks) is durable.
    pub async fn wait(&self, applied: u64) -> Result<()> {
        if self.mode == Durability::Buffered {
            return Ok(());
        }
        let mut rx = self.flushed.subscribe();
        if rx.borrow().done >= applied {
            return Ok(());
        }
        self.wanted.fetch_max(applied, Ordering::SeqCst);
        {
            let (lock, cv) = &*self.wake;
            *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
            cv.notify_one();
        }
        let waited = tokio::time::timeout(
            FLUSH_WAIT,
            rx.wait_for(|p| p.done >= applied || p.failed.is_some()),
        )
        .await;
        let progress = match waited {
            Err(_) => {
                return Err(anyhow!(
                    "the store did not make the write durable within {FLUSH_WAIT:?}"
                ));
            }
            Ok(Err(_)) => return Err(anyhow!("the store's flusher stopped")),
            Ok(Ok(p)) => p.clone(),
        };
        if progress.done >= applied {
            return Ok(());
        }
        Err(anyhow!(
            "the store could not make the write durable: {}",
            progress.failed.as_deref().unwrap_or("flush failed")
        ))
    }
}

fn run(me: std::sync::Weak<Flusher>, store: std::sync::Weak<Sled>) {
    let mut done = 0;
    loop {
        let Some(f) = me.upgrade() else { return };
        {
            let (lock, cv) = &*f.wake;
            let mut woken = lock.lock().unwrap_or_else(|e| e.into_inner());
            while !*woken {
                let (w, timeout) = cv
                    .wait_timeout(woken, Duration::from_secs(1))
                    .unwrap_or_else(|e| e.into_inner());
                woken = w;
                if timeout.timed_out() && me.strong_count() <= 1 {
                    return;
                }
            }
            *woken = false;
        }
        loop {
            if f.wanted.load(Ordering::SeqCst) <= done {
                break;
            }
            let Some(s) = store.upgrade() else { return };
            // Everything applied up to here is in this flush; that is at
            // least what anyone wanted (they read the count before asking).
            let covered = s.applied();
            match s.flush() {
                Ok(()) => {
                    done = covered;
                    f.flushed.send_modify(|p| p.done = done);
                }
                Err(e) => {
                    // Everyone waiting is answered now; the store's
                    // recovery reopens it with a new flusher.
                    s.fault.trip(&e);
                    let why: Arc<str> = format!("{e:#}").into();
                    f.flushed.send_modify(|p| p.failed = Some(why));
                    return;
                }
            }
        }
    }
}
