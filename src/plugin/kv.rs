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
    /// The call's place in its plugin's commit order (see [`SharedKv`]):
    /// the router waits for it before handing the commit to the store,
    /// which lets go of it once the commit is ordered against the plugin's
    /// next commits (the sled backend: once queued for its writer).
    pub turn: Option<KvTurn>,
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
/// - A call takes the plugin's KV lock at its first KV operation, and with
///   it a [`KvTurn`]: its place in the order of the plugin's calls. The lock
///   is let go once the event's plugins have all run (so several KV plugins
///   of one source take turns in one order), by the lane as the event's last
///   call ends; the turn goes with the call's reads and writes into the
///   event's commit. (In a cluster, where other nodes
///   commit to the same keys, a call that wrote keeps the lock until its
///   commit is ordered, as all calls did before: a conflict with another
///   node then makes one event run again, not every call that read its
///   pending writes, which livelocked three nodes bumping one counter.)
/// - A finished call's writes are *pending* until its commit answers:
///   later calls read them as if committed. The commit still checks every
///   read against the store, so if a pending write is refused (or lost in
///   a crash), the calls that read it are refused in turn and run again.
/// - Commits are submitted in turn order: the router waits until every
///   earlier turn's commit was handed to the store (which applies them in
///   the order handed over), so a commit never reaches the store before the
///   pending write it read. Holding the lock until the commit was ordered
///   instead (as before) made a counter deliver one event per plugin call
///   plus a store round trip, about 1 000/s whatever the cores.
/// - Lock and turns are only an optimisation: each waits at most
///   [`LOCK_WAIT`] and then goes on without (an event whose plugins hold
///   each other's turns in opposite orders cannot deadlock); correctness
///   rests on the commit's checks alone.
pub struct SharedKv {
    held: std::sync::Mutex<bool>,
    freed: std::sync::Condvar,
    pending: std::sync::Mutex<PendingWrites>,
    next: std::sync::atomic::AtomicU64,
    /// The next turn to hand out (taken with the lock, so in call order).
    tickets: std::sync::atomic::AtomicU64,
    /// Turns let go out of order, waiting for the ones before them.
    finished: std::sync::Mutex<std::collections::BTreeSet<u64>>,
    /// The oldest turn not yet let go: every turn before it has been.
    turned: tokio::sync::watch::Sender<u64>,
}

impl Default for SharedKv {
    fn default() -> Self {
        SharedKv {
            held: Default::default(),
            freed: Default::default(),
            pending: Default::default(),
            next: Default::default(),
            tickets: Default::default(),
            finished: Default::default(),
            turned: tokio::sync::watch::Sender::new(0),
        }
    }
}

/// Written values of finished calls, by key, with their call's token.
type PendingWrites = std::collections::HashMap<String, (u64, Option<Vec<u8>>)>;

/// Longest a call waits for its plugin's KV lock.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

/// A call's place in the order its plugin's commits are handed to the
/// store, taken with the plugin's KV lock. The lock is let go once the
/// event's plugins have run ([`plugins_ran`](Self::plugins_ran)) or, where
/// commits must be ordered before the next call runs, on drop; the turn on
/// drop, once the commit was handed over (or never will be).
pub struct KvTurn {
    kv: std::sync::Arc<SharedKv>,
    seq: u64,
    holds_lock: bool,
    /// Keep the lock until the commit is ordered (see [`SharedKv`]).
    until_ordered: bool,
}

impl KvTurn {
    /// Where other processes commit to the same keys: the lock stays
    /// until the turn is let go.
    pub fn keep_lock_until_ordered(&mut self) {
        self.until_ordered = true;
    }

    /// The event's plugins have all run: lets go of the lock unless it is
    /// kept until the commit is ordered. Held until then, so the plugins
    /// of one event take their turns in the same order as every other
    /// event's (an event that took a plugin's lock first takes the next
    /// plugin's turns first too), and no two events wait on each other.
    pub fn plugins_ran(&mut self) {
        if !self.until_ordered {
            self.release_lock();
        }
    }

    /// Lets go of the plugin's KV lock, keeping the place in the order.
    fn release_lock(&mut self) {
        if std::mem::take(&mut self.holds_lock) {
            *self.kv.held.lock().unwrap_or_else(|e| e.into_inner()) = false;
            self.kv.freed.notify_one();
        }
    }

    /// Waits until every earlier call of the plugin has let go of its
    /// turn, at most [`LOCK_WAIT`].
    pub async fn ready(&self) {
        let mut turned = self.kv.turned.subscribe();
        let seq = self.seq;
        let _ = tokio::time::timeout(LOCK_WAIT, turned.wait_for(|&oldest| oldest >= seq)).await;
    }
}

impl Drop for KvTurn {
    fn drop(&mut self) {
        self.release_lock();
        let mut finished = self.kv.finished.lock().unwrap_or_else(|e| e.into_inner());
        finished.insert(self.seq);
        self.kv.turned.send_if_modified(|oldest| {
            let before = *oldest;
            while finished.remove(oldest) {
                *oldest += 1;
            }
            *oldest != before
        });
    }
}

impl std::fmt::Debug for KvTurn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KvTurn({})", self.seq)
    }
}

impl SharedKv {
    /// Takes the plugin's KV lock, waiting at most [`LOCK_WAIT`]; `None`
    /// when it stayed taken. Blocking: plugin calls run on blocking
    /// threads.
    pub fn lock(self: &std::sync::Arc<Self>) -> Option<KvTurn> {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let (mut held, _) = self
            .freed
            .wait_timeout_while(held, LOCK_WAIT, |h| *h)
            .unwrap_or_else(|e| e.into_inner());
        if *held {
            return None;
        }
        *held = true;
        let seq = self
            .tickets
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(KvTurn {
            kv: self.clone(),
            seq,
            holds_lock: true,
            until_ordered: false,
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// A turn is ready only once every earlier turn was let go, in
    /// whatever order they were; the lock itself is free after each call.
    #[tokio::test]
    async fn turns_are_ready_in_call_order_whatever_order_they_are_let_go() {
        let kv = Arc::new(SharedKv::default());
        let mut turns = Vec::new();
        for _ in 0..3 {
            let mut turn = kv.lock().expect("the lock is free between calls");
            turn.release_lock();
            turns.push(turn);
        }
        let third = turns.pop().unwrap();
        let second = turns.pop().unwrap();
        let first = turns.pop().unwrap();

        first.ready().await; // nothing before it
        drop(second); // let go out of order: the third still waits for the first
        let started = Instant::now();
        let waiting = tokio::spawn(async move {
            third.ready().await;
            started.elapsed()
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiting.is_finished(),
            "the third turn must wait for the first"
        );
        drop(first);
        let waited = waiting.await.unwrap();
        assert!(
            waited >= Duration::from_millis(20) && waited < LOCK_WAIT,
            "ready once the first was let go, before the wait's bound: {waited:?}"
        );
    }

    /// A turn whose predecessor is never let go waits no longer than the
    /// bound: ordering is an optimisation, never a stall.
    #[tokio::test]
    async fn a_turn_stuck_behind_another_goes_on_after_the_bound() {
        let kv = Arc::new(SharedKv::default());
        let mut stuck = kv.lock().unwrap();
        stuck.release_lock();
        let next = kv.lock().expect("the lock was let go");
        let started = Instant::now();
        next.ready().await;
        let waited = started.elapsed();
        assert!(waited >= LOCK_WAIT && waited < LOCK_WAIT * 4, "{waited:?}");
    }
}
