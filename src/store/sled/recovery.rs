//! Getting the embedded store back after a failed write, in the same
//! process. sled latches the first I/O error it meets (a full disk, say)
//! and refuses every later operation until it is opened again, so the
//! store is reopened whole: the old one is taken out of service (requests
//! meanwhile get a quick [`Recovering`] error, which the listeners answer
//! 503 with `Retry-After`), dropped once nothing uses it, and opened again
//! every [`RETRY_EVERY`] until a probe write reaches the disk. What was
//! acknowledged is on disk (in `flush` mode a 202 waits for the fsync), so
//! reopening loses nothing acknowledged; writes that failed were answered
//! as failures.
//!
//! A store that opens with an error that is not I/O (corruption) cannot
//! be recovered by waiting: the process exits non-zero, so a supervisor
//! restarts it and the operator sees why.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, RwLock, Weak};
use std::time::Duration;

use anyhow::Result;

use super::Sled;
use super::durability::Flusher;
use super::engine::{Engine, is_io};
use super::space::Space;
use crate::config::Durability;
use crate::telemetry::throttle::Throttle;

/// How often a reopen is tried while the store is down.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);

/// How long requests holding the old store get to let go of it.
const RELEASE_WAIT: Duration = Duration::from_secs(10);

/// The exit status when the store cannot be recovered by waiting.
const EXIT_UNRECOVERABLE: i32 = 74;

/// The first write failure since the store was opened.
#[derive(Default)]
pub struct Fault {
    first: Mutex<Option<String>>,
    tripped: Condvar,
}

impl Fault {
    pub fn trip(&self, why: &anyhow::Error) {
        let mut first = self.first.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(format!("{why:#}"));
            self.tripped.notify_all();
        }
    }

    /// Waits up to `timeout` for a failure.
    fn wait(&self, timeout: Duration) -> Option<String> {
        let first = self.first.lock().unwrap_or_else(|e| e.into_inner());
        let (first, _) = self
            .tripped
            .wait_timeout_while(first, timeout, |f| f.is_none())
            .unwrap_or_else(|e| e.into_inner());
        first.clone()
    }
}

/// The store is out of service while it is reopened after a write failure.
#[derive(Debug, thiserror::Error)]
#[error("the store is recovering from a failed write ({0}); retry shortly")]
pub struct Recovering(pub Arc<str>);

/// The store as opened: swapped out whole when it is reopened.
#[derive(Clone)]
pub struct Open {
    pub sled: Arc<Sled>,
    pub flusher: Arc<Flusher>,
}

impl Open {
    pub fn new(sled: Sled, durability: Durability) -> Result<Open> {
        let sled = Arc::new(sled);
        let flusher = Flusher::start(Arc::downgrade(&sled), durability)?;
        Ok(Open { sled, flusher })
    }
}

/// What every handle of one store shares.
pub struct Shared {
    /// `None` for a throwaway store, which is not recovered.
    pub dir: Option<PathBuf>,
    pub durability: Durability,
    pub engine: Engine,
    /// `Err` while the store is being reopened.
    pub open: RwLock<Result<Open, Recovering>>,
    pub space: Space,
}

impl Shared {
    pub fn open(&self) -> Result<Open, Recovering> {
        match &*self.open.read().unwrap_or_else(|e| e.into_inner()) {
            Ok(o) => Ok(o.clone()),
            Err(Recovering(why)) => Err(Recovering(why.clone())),
        }
    }

    /// Watches free space and write failures, and reopens the store after
    /// one, for as long as the store is in use.
    pub fn watch(me: &Arc<Shared>) {
        if me.dir.is_none() {
            return;
        }
        let weak = Arc::downgrade(me);
        let spawned = std::thread::Builder::new()
            .name("hookyard-store-recovery".into())
            .spawn(move || {
                while let Some(why) = next_fault(&weak) {
                    let Some(me) = weak.upgrade() else { return };
                    me.recover(why);
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the store's recovery thread");
        }
    }

    fn recover(&self, why: String) {
        tracing::error!(
            error = %why,
            "a store write failed: refusing webhooks (503) and reopening the store until writes succeed again"
        );
        let old = std::mem::replace(
            &mut *self.open.write().unwrap_or_else(|e| e.into_inner()),
            Err(Recovering(why.clone().into())),
        );
        if let Ok(old) = old {
            release(old);
        }
        let dir = self
            .dir
            .as_ref()
            .expect("only a store with a directory recovers");
        let failures = Throttle::new(Duration::from_secs(30));
        loop {
            if !self.space.room_to_reopen(dir) {
                if let Some(suppressed) = failures.allow() {
                    tracing::warn!(
                        suppressed,
                        "waiting for free space before reopening the store"
                    );
                }
                std::thread::sleep(RETRY_EVERY);
                continue;
            }
            match reopen(dir, self.durability, self.engine) {
                Ok(open) => {
                    *self.open.write().unwrap_or_else(|e| e.into_inner()) = Ok(open);
                    tracing::info!("the store takes writes again");
                    return;
                }
                Err(e) if is_io(&e) => {
                    if let Some(suppressed) = failures.allow() {
                        tracing::warn!(
                            error = format!("{e:#}"),
                            suppressed,
                            "the store still cannot write; retrying every second"
                        );
                    }
                }
                Err(e) => {
                    tracing::error!(
                        error = format!("{e:#}"),
                        "the store cannot be recovered; exiting"
                    );
                    eprintln!("hookyard: the store cannot be recovered: {e:#}");
                    std::process::exit(EXIT_UNRECOVERABLE);
                }
            }
            std::thread::sleep(RETRY_EVERY);
        }
    }
}

/// The current store's next failure; `None` once the store is dropped.
/// Looks at free space every second meanwhile.
fn next_fault(shared: &Weak<Shared>) -> Option<String> {
    loop {
        let fault = {
            let me = shared.upgrade()?;
            if let Some(dir) = &me.dir {
                me.space.check(dir);
            }
            let open = me.open();
            match open {
                Ok(o) => o.sled.fault.clone(),
                Err(_) => return None,
            }
        };
        if let Some(why) = fault.wait(Duration::from_secs(1)) {
            return Some(why);
        }
    }
}

/// Waits for in-flight users of the old store to let go, then drops it
/// (its writer and sled's threads end, and the directory's lock is freed).
fn release(old: Open) {
    let Open { sled, flusher } = old;
    drop(flusher);
    let deadline = std::time::Instant::now() + RELEASE_WAIT;
    while Arc::strong_count(&sled) > 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(sled);
}

/// Opens the store and proves it can write: a probe key, written and
/// flushed to disk.
fn reopen(dir: &std::path::Path, durability: Durability, engine: Engine) -> Result<Open> {
    let sled = Sled::open(dir, engine)?;
    sled.probe()?;
    Open::new(sled, durability)
}
