//! A plugin call's view of its KV state: reads from the store as it is
//! committed, writes buffered until the event's outcome is stored.
//!
//! `kv-set` used to write the moment a plugin called it: two calls counting
//! events with get-add-set raced (1 500 events ended at a count of 1 451),
//! a call that trapped after a set left its write behind, and an event
//! routed again after a crash applied its effects twice. Now a call records
//! what it read (a digest per key) and what it wrote; the router commits
//! the writes in the same atomic store write as the event's outcome, after
//! checking that nothing it read has changed since (optimistic concurrency).
//! If something has, the event's plugins run again on fresh state. A call
//! that fails commits no writes. So any interleaving of calls equals
//! running them one at a time, and each routing applies its effects once.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// The digest a read is validated by: comparing values (not versions) is
/// what makes a delete-then-recreate of a key visible as a change.
pub type ValueDigest = [u8; 32];

pub fn digest(value: Option<&[u8]>) -> Option<ValueDigest> {
    value.map(|v| Sha256::digest(v).into())
}

/// Most distinct keys one call may read or write: bounds what a call keeps
/// for its commit.
pub const MAX_KEYS_PER_CALL: usize = 1000;

/// What one plugin call read and wrote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KvTxn {
    /// Settles the call's pending writes once its commit answers (see
    /// [`SharedKv`]); `None` when it wrote nothing.
    pub token: Option<u64>,
    /// Keys read from the store (not from the call's own writes), with the
    /// digest of what was there (`None`: absent).
    pub reads: BTreeMap<String, Option<ValueDigest>>,
    /// Keys written (`None`: deleted), last write wins.
    pub writes: BTreeMap<String, Option<Vec<u8>>>,
}

impl KvTxn {
    pub fn is_empty(&self) -> bool {
        self.reads.is_empty() && self.writes.is_empty()
    }

    /// Distinct keys touched.
    pub fn keys(&self) -> usize {
        self.reads.len()
            + self
                .writes
                .keys()
                .filter(|k| !self.reads.contains_key(*k))
                .count()
    }

    /// The call's own write of `key`, if any: reads see their own writes.
    pub fn written(&self, key: &str) -> Option<&Option<Vec<u8>>> {
        self.writes.get(key)
    }
}

/// One plugin's part of an event's commit: the reads to check, then the
/// writes, under the plugin's key limit.
#[derive(Debug)]
pub struct PluginTxn {
    pub plugin: String,
    pub max_keys: usize,
    pub txn: KvTxn,
    /// The plugin's KV lock when the call wrote (see [`SharedKv`]): the
    /// store drops it once the commit is ordered against the plugin's next
    /// commits (the sled backend: once its writer has checked it).
    pub turn: Option<KvGuard>,
}

/// Default most KV keys one plugin may hold.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// Why an event's KV commit did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvRefused {
    /// A key a call read was changed by an event committed first: the
    /// event's plugins run again on fresh state.
    Conflict { plugin: String, key: String },
    /// The plugin would hold more keys than its limit.
    Full { plugin: String, limit: usize },
}

impl std::fmt::Display for KvRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KvRefused::Conflict { plugin, key } => write!(
                f,
                "plugin {plugin:?}'s KV key {key:?} was changed by another event while this one was routed"
            ),
            KvRefused::Full { plugin, limit } => write!(
                f,
                "plugin {plugin:?} would hold more than its limit of {limit} KV keys (plugins.{plugin}.max_kv_keys)"
            ),
        }
    }
}

/// What one plugin's calls share about its KV state in this process.
///
/// Optimistic checks alone made a busy counter collapse: a lane runs the
/// next call before the previous call's commit has landed, so nearly every
/// call read a stale count and had to run again (1 500 events from 16
/// senders stalled at ~800, most giving up after ten runs). So calls of one
/// plugin that use KV take turns, and see each other's writes early:
///
/// - A call takes the plugin's KV lock at its first KV operation. If it
///   wrote, the lock goes with its writes into the event's commit, and the
///   store lets go of it once the commit is *ordered* (the sled backend:
///   checked by its writer thread); else at the end of the call. So a
///   plugin's commits are ordered as its calls ran.
/// - A finished call's writes are *pending* until its commit answers:
///   later calls read them as if committed. The commit still checks every
///   read against the store, so if a pending write is refused (or lost in
///   a crash), the calls that read it are refused in turn and run again.
/// - The lock is only an optimisation: a call waits for it at most
///   [`LOCK_WAIT`] and then goes on without it (an event whose plugins hold
///   each other's locks in opposite orders cannot deadlock); correctness
///   rests on the commit's checks alone.
#[derive(Default)]
pub struct SharedKv {
    held: std::sync::Mutex<bool>,
    freed: std::sync::Condvar,
    pending: std::sync::Mutex<PendingWrites>,
    next: std::sync::atomic::AtomicU64,
}

/// Written values of finished calls, by key, with their call's token.
type PendingWrites = std::collections::HashMap<String, (u64, Option<Vec<u8>>)>;

/// Longest a call waits for its plugin's KV lock.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

/// A plugin's KV lock, held; let go on drop.
pub struct KvGuard(std::sync::Arc<SharedKv>);

impl Drop for KvGuard {
    fn drop(&mut self) {
        *self.0.held.lock().unwrap_or_else(|e| e.into_inner()) = false;
        self.0.freed.notify_one();
    }
}

impl std::fmt::Debug for KvGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KvGuard")
    }
}

impl SharedKv {
    /// Takes the plugin's KV lock, waiting at most [`LOCK_WAIT`]; `None`
    /// when it stayed taken. Blocking: plugin calls run on blocking
    /// threads.
    pub fn lock(self: &std::sync::Arc<Self>) -> Option<KvGuard> {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let (mut held, _) = self
            .freed
            .wait_timeout_while(held, LOCK_WAIT, |h| *h)
            .unwrap_or_else(|e| e.into_inner());
        if *held {
            return None;
        }
        *held = true;
        Some(KvGuard(self.clone()))
    }

    fn map(&self) -> std::sync::MutexGuard<'_, PendingWrites> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A write of `key` by a finished call whose commit has not answered.
    pub fn pending(&self, key: &str) -> Option<Option<Vec<u8>>> {
        self.map().get(key).map(|(_, v)| v.clone())
    }

    /// Makes a finished call's writes visible to later calls; the token
    /// settles them once the commit answers.
    pub fn publish(&self, writes: &BTreeMap<String, Option<Vec<u8>>>) -> u64 {
        let token = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let mut map = self.map();
        for (k, v) in writes {
            map.insert(k.clone(), (token, v.clone()));
        }
        token
    }

    /// The commit of `token`'s writes answered (committed, refused or
    /// failed): from now on the store says what they are. Writes a later
    /// call made to the same keys stay pending.
    pub fn settle(&self, token: u64) {
        self.map().retain(|_, (t, _)| *t != token);
    }
}
