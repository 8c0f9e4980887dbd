//! Group writes: the hot-path batches of many callers become one sled batch.
//!
//! sled 0.34 rolls (writes out and `sync_file_range`s) its log buffer at the
//! start of every `apply_batch` and transaction, so one batch per event meant
//! one disk write per event even with `durability = "buffered"`, and every
//! writer waited on a global lock behind it. Here callers hand their writes
//! to one writer thread and await a reply; the thread takes whatever has
//! queued up while it was busy, applies it all as one atomic batch and
//! answers everyone. Under load a batch carries tens of events for the price
//! of one; when idle, a lone write goes out at once.
//!
//! Each caller's writes stay atomic (they are inside one sled batch) and
//! keep their order (later writes to a key win, as if applied one by one).
//! The thread also keeps sled off the async workers.
//!
//! It is also the only appender of the body log (`bodies.rs`): a group's
//! bodies are written out before the sled batch that references them, and
//! the live-reference count of each segment moves in that same batch.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use tokio::sync::oneshot;

use super::bodies::{Appender, BodyLog, BodyRef, LiveDelta};
use super::engine::{Batch, Tree};
use super::layout::{KV, LIVE, SCHEDULE, key, kv_key, parse_schedule_key};
use super::recovery::Fault;
use super::schedule_floor::ScheduleFloors;
use crate::plugin::kv::{KvRefused, PluginTxn, digest};

/// Most callers' writes folded into one sled batch.
const MAX_GROUP: usize = 512;

/// How long a group waits for company once the previous group showed
/// concurrency (more than one op). Every sled batch costs a log-buffer
/// write and a `sync_file_range` on sled's IO threads; under load that
/// costs more CPU than this wait costs latency. A lone writer never waits.
/// (Bench, 30 000-event burst, Rust plugin, buffered: 0 µs 5 700, 200 µs
/// 7 400, 500 µs 8 200, 1 000 µs 5 400 delivered/s; noisy, 300 chosen.)
const LINGER: Duration = Duration::from_micros(300);

/// One write of a group.
enum Write {
    Put(Vec<u8>, Vec<u8>),
    Del(Vec<u8>),
    /// Appends `body` to the body log as `owner`'s, then puts `key` =
    /// `prefix` followed by the encoded reference.
    Body {
        key: Vec<u8>,
        prefix: Vec<u8>,
        owner: String,
        body: Vec<u8>,
    },
    /// A reference removed with the record that held it.
    Release(BodyRef),
}

/// An ordered list of key writes applied atomically.
#[derive(Default)]
pub struct Writes(Vec<Write>);

impl Writes {
    pub fn insert(&mut self, k: Vec<u8>, v: impl Into<Vec<u8>>) {
        self.0.push(Write::Put(k, v.into()));
    }

    pub fn remove(&mut self, k: Vec<u8>) {
        self.0.push(Write::Del(k));
    }

    /// Stores `body` in the body log and `key` = `prefix` + its reference.
    pub fn insert_body(&mut self, k: Vec<u8>, prefix: Vec<u8>, owner: &str, body: Vec<u8>) {
        self.0.push(Write::Body {
            key: k,
            prefix,
            owner: owner.to_string(),
            body,
        });
    }

    /// Notes that a record holding `r` is removed by these writes.
    pub fn release(&mut self, r: BodyRef) {
        self.0.push(Write::Release(r));
    }

    /// The value this put for `k`, if a plain put.
    fn value_of(&self, k: &[u8]) -> Option<&[u8]> {
        self.0.iter().find_map(|w| match w {
            Write::Put(key, v) if key == k => Some(v.as_slice()),
            _ => None,
        })
    }
}

/// Decides a write from the store as it is at that moment: runs on the
/// writer thread after every earlier write was applied, so nothing can slip
/// in between the check and the write.
type Check = Box<dyn FnOnce(&Tree) -> Result<(Writes, Answer)> + Send>;

/// What the writer answers once an op's group is applied.
#[derive(Debug)]
pub enum Answer {
    /// Written.
    Done,
    /// A conditional insert found a live key: not written; the event id
    /// the key holds.
    Existing(String),
    /// A KV transaction's checks failed: nothing of it was written.
    Refused(KvRefused),
    /// The fence key was gone: nothing was written.
    Fenced,
}

/// A write submitted to the writer thread.
enum Op {
    Writes(Writes),
    /// A read-then-write that must not interleave with other writes
    /// (replay marks, route notes, retries, the retention sweep). Rare, so
    /// the writer applies what it gathered before running it.
    Check(Check),
    /// A routing outcome with plugin KV state: written only if every KV
    /// key the calls read still holds what they read (checked against the
    /// store and the KV writes earlier in this group, so the group is not
    /// split) and no plugin goes over its key limit.
    Txn {
        kv: Vec<PluginTxn>,
        writes: Writes,
    },
    /// Like `Txn`, only while `fence` is in the store (the writes remove
    /// it): a routing outcome, fenced by its event's "to route" mark, so an
    /// event routed twice at once is recorded once. (A refill pass can
    /// find an event applied but not yet acknowledged, which ingestion then
    /// queues again.)
    Fenced {
        fence: Vec<u8>,
        kv: Vec<PluginTxn>,
        writes: Writes,
    },
    /// Writes unless `key` holds a value whose first 8 bytes (BE ms) are
    /// after `now`; then answers with the rest of that value instead. The
    /// idempotency check: only this thread writes such keys, so the check
    /// and the write cannot interleave with another insert of the same key.
    Unless {
        key: Vec<u8>,
        now: u64,
        writes: Writes,
    },
}

type Reply = oneshot::Sender<Result<Answer>>;

/// The answer to a submitted write: await it (async code) or
/// [`wait`](Written::wait) for it (blocking code).
pub struct Written(oneshot::Receiver<Result<Answer>>);

impl Written {
    /// A write that failed before it reached the writer.
    pub fn failed(e: anyhow::Error) -> Written {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(Err(e));
        Written(rx)
    }

    /// Waits until the writes are applied.
    pub async fn done(self) -> Result<()> {
        self.answer().await.map(|_| ())
    }

    /// For a conditional write: `Some(existing)` when it was not written.
    pub async fn outcome(self) -> Result<Option<String>> {
        Ok(match self.answer().await? {
            Answer::Existing(id) => Some(id),
            _ => None,
        })
    }

    /// What the writer answered.
    pub async fn answer(self) -> Result<Answer> {
        self.0
            .await
            .map_err(|_| anyhow!("the store's writer stopped"))?
    }

    /// Blocking [`done`](Self::done), for code outside the async runtime.
    pub fn wait(self) -> Result<()> {
        self.wait_answer().map(|_| ())
    }

    /// Blocking [`outcome`](Self::outcome).
    pub fn wait_outcome(self) -> Result<Option<String>> {
        Ok(match self.wait_answer()? {
            Answer::Existing(id) => Some(id),
            _ => None,
        })
    }

    /// Blocking [`answer`](Self::answer).
    pub fn wait_answer(self) -> Result<Answer> {
        self.0
            .blocking_recv()
            .map_err(|_| anyhow!("the store's writer stopped"))?
    }
}

/// The answer to a [`GroupWriter::check`]: a typed value, handed out only
/// once the writes the check decided on are applied.
pub struct Checked<T> {
    written: Written,
    value: std::sync::Arc<std::sync::Mutex<Option<T>>>,
}

impl<T> Checked<T> {
    /// Waits until applied; the check's value.
    pub async fn value(self) -> Result<T> {
        let Checked { written, value } = self;
        written.done().await?;
        take(&value)
    }

    /// Blocking [`value`](Self::value), for code outside the async runtime.
    pub fn wait_value(self) -> Result<T> {
        let Checked { written, value } = self;
        written.wait()?;
        take(&value)
    }

    /// A value known before the write, handed out once it is applied.
    pub fn from_written(written: Written, value: T) -> Checked<T> {
        Checked {
            written,
            value: std::sync::Arc::new(std::sync::Mutex::new(Some(value))),
        }
    }

    /// Just the completion, for a caller that wants no value.
    pub fn into_written(self) -> Written {
        self.written
    }
}

fn take<T>(slot: &std::sync::Mutex<Option<T>>) -> Result<T> {
    slot.lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .ok_or_else(|| anyhow!("the store's writer gave no answer"))
}

/// Handle to the writer thread; the thread ends when the handle is dropped
/// (after what was queued), and the drop waits for it, so the store can be
/// opened again right after.
pub struct GroupWriter {
    tx: Option<mpsc::Sender<(Op, Reply)>>,
    /// Groups applied so far, counted before their callers are answered.
    applied: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for GroupWriter {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

type ValueDigestOwned = crate::plugin::kv::ValueDigest;

/// What the writer thread owns.
struct Writer {
    tree: Tree,
    bodies: Arc<BodyLog>,
    /// Live references per body segment, as stored under `LIVE`.
    live: HashMap<u64, i64>,
    /// KV keys per plugin, counted at start and kept in step by the KV
    /// transactions (the only writers of KV keys).
    kv_keys: HashMap<String, usize>,
    /// Told when a group cannot be written (a full disk, an I/O error).
    fault: Arc<Fault>,
    /// Shared with [`GroupWriter::applied`].
    applied: Arc<AtomicU64>,
    /// Lowered for every schedule entry a group applies.
    floors: Arc<ScheduleFloors>,
}

impl GroupWriter {
    pub fn start(
        tree: Tree,
        bodies: Arc<BodyLog>,
        fault: Arc<Fault>,
        floors: Arc<ScheduleFloors>,
    ) -> Result<GroupWriter> {
        let mut live = HashMap::new();
        for kv in tree.scan_prefix([LIVE]) {
            let (k, v) = kv?;
            if let (Some(seg), Some(n)) = (k.get(1..9), v.get(..8)) {
                live.insert(
                    u64::from_be_bytes(seg.try_into().expect("8 bytes")),
                    i64::from_be_bytes(n.try_into().expect("8 bytes")),
                );
            }
        }
        let mut kv_keys: HashMap<String, usize> = HashMap::new();
        for k in tree.scan_prefix([KV]).keys() {
            let k = k?;
            if let Some(end) = k[1..].iter().position(|&b| b == 0) {
                *kv_keys
                    .entry(String::from_utf8_lossy(&k[1..1 + end]).into_owned())
                    .or_insert(0) += 1;
            }
        }
        let (tx, rx) = mpsc::channel();
        let applied = Arc::new(AtomicU64::new(0));
        let mut w = Writer {
            tree,
            bodies,
            live,
            kv_keys,
            fault,
            applied: applied.clone(),
            floors,
        };
        let thread = std::thread::Builder::new()
            .name("hookyard-store-writer".into())
            .spawn(move || run(&mut w, rx))?;
        Ok(GroupWriter {
            tx: Some(tx),
            applied,
            thread: Some(thread),
        })
    }

    /// How many groups were applied; a caller answered for a write reads
    /// a count that includes the write's group.
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::SeqCst)
    }

    pub fn write(&self, writes: Writes) -> Written {
        self.submit(Op::Writes(writes))
    }

    pub fn write_unless(&self, key: Vec<u8>, now: u64, writes: Writes) -> Written {
        self.submit(Op::Unless { key, now, writes })
    }

    /// `writes` with the KV parts' checks and writes (see [`Op::Txn`]).
    pub fn write_txn(&self, kv: Vec<PluginTxn>, writes: Writes) -> Written {
        self.submit(Op::Txn { kv, writes })
    }

    /// `writes` with the KV parts', only while `fence` exists (see
    /// [`Op::Fenced`]).
    pub fn write_fenced(&self, fence: Vec<u8>, kv: Vec<PluginTxn>, writes: Writes) -> Written {
        self.submit(Op::Fenced { fence, kv, writes })
    }

    /// Runs `decide` on the writer thread against the store as it is after
    /// every earlier write, and applies the writes it returns.
    pub fn check<T: Send + 'static>(
        &self,
        decide: impl FnOnce(&Tree) -> Result<(Writes, T)> + Send + 'static,
    ) -> Checked<T> {
        let value = std::sync::Arc::new(std::sync::Mutex::new(None));
        let slot = value.clone();
        let written = self.submit(Op::Check(Box::new(move |tree| {
            let (writes, v) = decide(tree)?;
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(v);
            Ok((writes, Answer::Done))
        })));
        Checked { written, value }
    }

    fn submit(&self, op: Op) -> Written {
        let (reply, rx) = oneshot::channel();
        let sent = match &self.tx {
            Some(tx) => tx.send((op, reply)).map_err(|mpsc::SendError((_, r))| r),
            None => Err(reply),
        };
        if let Err(reply) = sent {
            let _ = reply.send(Err(anyhow!("the store's writer stopped")));
        }
        Written(rx)
    }
}

fn run(w: &mut Writer, rx: mpsc::Receiver<(Op, Reply)>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    let mut busy = false;
    while let Ok(first) = rx.recv() {
        let deadline = Instant::now() + LINGER;
        group.push(first);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(op) => group.push(op),
                Err(mpsc::TryRecvError::Empty) if busy => {
                    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                        Ok(op) => group.push(op),
                        Err(_) => break,
                    }
                }
                Err(_) => break,
            }
        }
        busy = group.len() > 1;
        w.apply_group(&mut group);
    }
}

/// A group being built: the sled batch, the body records to write before
/// it, the count changes, and who to answer.
struct Group<'a> {
    batch: Batch,
    appender: Appender<'a>,
    delta: LiveDelta,
    answers: Vec<(Reply, Answer)>,
    /// Why the group cannot be applied (a body could not be appended).
    broken: Option<String>,
}

impl Writer {
    /// Applies every op of the group in one sled batch and answers each. A
    /// [`Op::Check`] splits the group: what came before it is applied
    /// first, so its check sees every earlier write.
    fn apply_group(&mut self, ops: &mut Vec<(Op, Reply)>) {
        let bodies = self.bodies.clone();
        let mut g = Group::new(&bodies);
        // Conditional keys written earlier in this group (not yet in the tree).
        let mut pending: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        // KV keys written earlier in this group, and the key counts they
        // leave (applied to `kv_keys` only if the group is).
        let mut kv_pending: HashMap<Vec<u8>, Option<ValueDigestOwned>> = HashMap::new();
        let mut kv_counts: HashMap<String, usize> = HashMap::new();
        // Fence keys removed earlier in this group (not yet from the tree).
        // Marks are only put by accepts and replays, which are applied
        // before any outcome for their event can be computed (routing reads
        // the event from the tree), so their puts need no tracking here.
        let mut fenced_out: HashSet<Vec<u8>> = HashSet::new();
        for (op, reply) in ops.drain(..) {
            let writes = match op {
                Op::Writes(w) => w,
                Op::Fenced { fence, kv, writes } => {
                    let present = !fenced_out.contains(&fence)
                        && match self.tree.contains_key(&fence) {
                            Ok(p) => p,
                            Err(e) => {
                                let _ = reply.send(Err(e));
                                continue;
                            }
                        };
                    if !present {
                        g.answers.push((reply, Answer::Fenced));
                        continue;
                    }
                    // A refused KV check leaves the mark: the event is
                    // routed again.
                    if self.apply_txn(&mut g, kv, writes, reply, &mut kv_pending, &mut kv_counts) {
                        fenced_out.insert(fence);
                    }
                    continue;
                }
                Op::Txn { kv, writes } => {
                    self.apply_txn(&mut g, kv, writes, reply, &mut kv_pending, &mut kv_counts);
                    continue;
                }
                Op::Check(check) => {
                    self.commit(
                        std::mem::replace(&mut g, Group::new(&bodies)),
                        std::mem::take(&mut kv_counts),
                    );
                    pending.clear();
                    kv_pending.clear();
                    match check(&self.tree) {
                        Ok((w, answer)) => {
                            g.add(w);
                            g.answers.push((reply, answer));
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e));
                        }
                    }
                    continue;
                }
                Op::Unless { key, now, writes } => {
                    let current = match pending.get(&key) {
                        Some(v) => Some(v.clone()),
                        None => match self.tree.get(&key) {
                            Ok(v) => v.map(|v| v.to_vec()),
                            Err(e) => {
                                let _ = reply.send(Err(e));
                                continue;
                            }
                        },
                    };
                    if let Some(existing) = current.as_deref().and_then(|v| live_rest(v, now)) {
                        g.answers.push((reply, Answer::Existing(existing)));
                        continue;
                    }
                    if let Some(v) = writes.value_of(&key) {
                        pending.insert(key, v.to_vec());
                    }
                    writes
                }
            };
            g.add(writes);
            g.answers.push((reply, Answer::Done));
        }
        self.commit(g, kv_counts);
    }

    /// Adds `writes` and the KV parts' writes to the group if the parts'
    /// checks pass (answering `Done`), else answers why not; whether they
    /// were added.
    fn apply_txn(
        &self,
        g: &mut Group<'_>,
        kv: Vec<PluginTxn>,
        writes: Writes,
        reply: Reply,
        kv_pending: &mut HashMap<Vec<u8>, Option<ValueDigestOwned>>,
        kv_counts: &mut HashMap<String, usize>,
    ) -> bool {
        match self.check_txn(&kv, kv_pending, kv_counts) {
            Ok(None) => {
                g.add(with_kv(writes, kv, kv_pending));
                g.answers.push((reply, Answer::Done));
                true
            }
            Ok(Some(refused)) => {
                g.answers.push((reply, Answer::Refused(refused)));
                false
            }
            Err(e) => {
                let _ = reply.send(Err(e));
                false
            }
        }
    }

    /// Checks a KV transaction against the store and the KV writes earlier
    /// in the group; on success counts its new and deleted keys into
    /// `counts` (per plugin, starting from `kv_keys`).
    fn check_txn(
        &self,
        kv: &[PluginTxn],
        pending: &HashMap<Vec<u8>, Option<ValueDigestOwned>>,
        counts: &mut HashMap<String, usize>,
    ) -> Result<Option<KvRefused>> {
        let current = |key: &[u8]| -> Result<Option<ValueDigestOwned>> {
            match pending.get(key) {
                Some(d) => Ok(*d),
                None => Ok(digest(self.tree.get(key)?.as_deref())),
            }
        };
        for part in kv {
            for (k, read) in &part.txn.reads {
                if current(&kv_key(&part.plugin, k))? != *read {
                    return Ok(Some(KvRefused::Conflict {
                        plugin: part.plugin.clone(),
                        key: k.clone(),
                    }));
                }
            }
        }
        let mut next: Vec<(String, usize)> = Vec::new();
        for part in kv {
            let mut n = counts
                .get(&part.plugin)
                .or_else(|| self.kv_keys.get(&part.plugin))
                .copied()
                .unwrap_or(0) as i64;
            for (k, v) in &part.txn.writes {
                let exists = current(&kv_key(&part.plugin, k))?.is_some();
                match (exists, v.is_some()) {
                    (false, true) => n += 1,
                    (true, false) => n -= 1,
                    _ => {}
                }
            }
            let n = n.max(0) as usize;
            if n > part.max_keys && !part.txn.writes.is_empty() {
                return Ok(Some(KvRefused::Full {
                    plugin: part.plugin.clone(),
                    limit: part.max_keys,
                }));
            }
            next.push((part.plugin.clone(), n));
        }
        counts.extend(next);
        Ok(None)
    }

    /// Writes the group's bodies, then applies its batch (with the new live
    /// counts), and answers everyone whose writes it holds.
    fn commit(&mut self, mut g: Group<'_>, kv_counts: HashMap<String, usize>) {
        if g.answers.is_empty() {
            return;
        }
        let mut batch = std::mem::take(&mut g.batch);
        let mut emptied = Vec::new();
        let mut counts = Vec::new();
        for (&segment, &d) in &g.delta.0 {
            if d == 0 {
                continue;
            }
            let n = self.live.get(&segment).copied().unwrap_or(0) + d;
            counts.push((segment, n));
            let k = key(LIVE, &[&segment.to_be_bytes()]);
            if n <= 0 {
                batch.remove(k);
                emptied.push(segment);
            } else {
                batch.insert(k, n.to_be_bytes());
            }
        }
        // Reported once applied: a scan must not see a floor above an
        // entry that is not in the tree yet (see `schedule_floor`).
        let scheduled: Vec<(String, u64)> = batch
            .inserted_with_prefix(&[SCHEDULE])
            .filter_map(parse_schedule_key)
            .map(|(target, due, _)| (target.to_string(), due))
            .collect();
        let applied = match g.broken.take() {
            Some(why) => Err(anyhow!("{why}")),
            None => g
                .appender
                .finish()
                .and_then(|()| self.tree.apply_batch(batch)),
        };
        if let Err(e) = &applied {
            self.fault.trip(e);
        }
        if applied.is_ok() {
            if !scheduled.is_empty() {
                self.floors
                    .written(scheduled.iter().map(|(t, due)| (t.as_str(), *due)));
            }
            self.applied.fetch_add(1, Ordering::SeqCst);
            self.kv_keys.extend(kv_counts);
            for (segment, n) in counts {
                if n <= 0 {
                    self.live.remove(&segment);
                } else {
                    self.live.insert(segment, n);
                }
            }
            if !emptied.is_empty() {
                self.bodies.doom(emptied);
            }
        }
        for (reply, answer) in g.answers.drain(..) {
            let _ = reply.send(match &applied {
                Ok(()) => Ok(answer),
                Err(e) => Err(anyhow!("store write failed: {e:#}")),
            });
        }
    }
}

impl<'a> Group<'a> {
    fn new(bodies: &'a BodyLog) -> Group<'a> {
        Group {
            batch: Batch::default(),
            appender: Appender::new(bodies),
            delta: LiveDelta::default(),
            answers: Vec::new(),
            broken: None,
        }
    }

    fn add(&mut self, writes: Writes) {
        for w in writes.0 {
            match w {
                Write::Put(k, v) => self.batch.insert(k, v),
                Write::Del(k) => self.batch.remove(k),
                Write::Body {
                    key,
                    mut prefix,
                    owner,
                    body,
                } => match self.appender.add(&owner, &body) {
                    Ok(r) => {
                        prefix.extend_from_slice(&r.encode());
                        self.batch.insert(key, prefix);
                        self.delta.add(r.segment, 1);
                    }
                    Err(e) => {
                        self.broken.get_or_insert(format!("{e:#}"));
                    }
                },
                Write::Release(r) => self.delta.add(r.segment, -1),
            }
        }
    }
}

/// The rest of a conditional value (after its 8-byte expiry) if it has not
/// expired at `now`.
fn live_rest(v: &[u8], now: u64) -> Option<String> {
    let expires = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
    (expires > now).then(|| String::from_utf8_lossy(&v[8..]).into_owned())
}

/// `writes` plus the KV parts' writes, noted in `kv_pending` for the
/// checks of later ops in the group.
fn with_kv(
    mut writes: Writes,
    kv: Vec<PluginTxn>,
    kv_pending: &mut HashMap<Vec<u8>, Option<ValueDigestOwned>>,
) -> Writes {
    for part in kv {
        for (k, v) in part.txn.writes {
            let key = kv_key(&part.plugin, &k);
            kv_pending.insert(key.clone(), digest(v.as_deref()));
            match v {
                Some(v) => writes.insert(key, v),
                None => writes.remove(key),
            }
        }
    }
    writes
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::sled::engine::Engine;

    fn tree(engine: Engine) -> (Tree, Arc<BodyLog>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let t = Tree::open(dir.path(), engine).unwrap();
        let log = Arc::new(BodyLog::open(&dir.path().join("bodies")).unwrap());
        (t, log, dir)
    }

    #[test]
    fn later_writes_to_a_key_win_within_a_group() {
        for engine in Engine::ALL {
            later_writes_to_a_key_win(engine);
        }
    }

    fn later_writes_to_a_key_win(engine: Engine) {
        let (t, log, _dir) = tree(engine);
        let w = GroupWriter::start(t.clone(), log, Default::default(), Default::default()).unwrap();
        let mut a = Writes::default();
        a.insert(b"k".to_vec(), b"1".to_vec());
        a.insert(b"gone".to_vec(), b"x".to_vec());
        let mut b = Writes::default();
        b.insert(b"k".to_vec(), b"2".to_vec());
        b.remove(b"gone".to_vec());
        let (ra, rb) = (w.write(a), w.write(b));
        ra.wait().unwrap();
        rb.wait().unwrap();
        assert_eq!(t.get(b"k").unwrap().unwrap().as_ref(), b"2");
        assert!(t.get(b"gone").unwrap().is_none());
    }

    #[test]
    fn conditional_writes_in_one_group_see_each_other() {
        for engine in Engine::ALL {
            conditional_writes_see_each_other(engine);
        }
    }

    fn conditional_writes_see_each_other(engine: Engine) {
        let (t, log, _dir) = tree(engine);
        let w = GroupWriter::start(t.clone(), log, Default::default(), Default::default()).unwrap();
        let cond = |id: &str, expires: u64| {
            let mut v = expires.to_be_bytes().to_vec();
            v.extend_from_slice(id.as_bytes());
            let mut ws = Writes::default();
            ws.insert(b"dk".to_vec(), v);
            ws.insert(format!("e{id}").into_bytes(), b"event".to_vec());
            w.write_unless(b"dk".to_vec(), 100, ws)
        };
        // Submitted back to back, so usually one group; either way the
        // second and third see the first.
        let (a, b, c) = (cond("1", 200), cond("2", 200), cond("3", 200));
        assert_eq!(a.wait_outcome().unwrap(), None);
        assert_eq!(b.wait_outcome().unwrap(), Some("1".into()));
        assert_eq!(c.wait_outcome().unwrap(), Some("1".into()));
        assert!(t.get(b"e2").unwrap().is_none());
        // Expired at 250: written again.
        let mut v = 300u64.to_be_bytes().to_vec();
        v.extend_from_slice(b"4");
        let mut ws = Writes::default();
        ws.insert(b"dk".to_vec(), v);
        assert_eq!(
            w.write_unless(b"dk".to_vec(), 250, ws)
                .wait_outcome()
                .unwrap(),
            None
        );
    }
}
