//! The ordered key-value engine under the embedded store: sled (the
//! default) or fjall, an LSM tree. The store's records, batches, group
//! writer, body log and recovery are the same on both; this is the whole
//! of what differs.
//!
//! Why a second engine: `benches/sled_floor.rs` measured sled alone at
//! 47-66 µs of CPU per ingested event and 114-165 µs per delivered one,
//! more than issue 16's goals leave the whole router on two cores; fjall
//! wrote the same records for 6-8 and 23-30 µs (docs/benchmarks.md).
//!
//! A data directory holds one engine's index (`sled/` or `fjall/`) beside
//! the body log it refers to; opening it with the other engine is refused,
//! since the body log's records would then have no index.

use std::collections::BTreeMap;
use std::ops::{Bound, Deref, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};

/// Which engine keeps the index: `[store] backend = "sled"` (the
/// default) or `"fjall"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sled,
    Fjall,
}

impl Engine {
    pub const ALL: [Engine; 2] = [Engine::Sled, Engine::Fjall];

    /// The name in `[store] backend`, which is also the index's directory
    /// under the data directory.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Sled => "sled",
            Engine::Fjall => "fjall",
        }
    }

    pub fn named(name: &str) -> Option<Engine> {
        Engine::ALL.into_iter().find(|e| e.name() == name)
    }
}

/// The engine's page or block cache, the same for either. The hot set is
/// recent events and the schedule's head, and the OS's page cache holds
/// the rest of the files. A full sled cache stays resident when the router
/// goes idle: after a 20 000-event burst with three plugins, 64 MiB (sled
/// counts less than it allocates) left 235 MiB resident, 16 MiB 177-186,
/// 4 MiB 154-168, with delivered/s the same within the machine's noise
/// (docs/benchmarks.md, 2026-12-02).
const CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// sled's settings for the store at `path`; public so that
/// `benches/sled_floor.rs` measures sled as the store runs it.
pub fn sled_config(path: &Path) -> sled::Config {
    sled::Config::new()
        .path(path)
        .cache_capacity(CACHE_BYTES)
        .flush_every_ms(Some(500))
}

/// fjall's settings for the store at `path`; public for the same reason.
pub fn fjall_database(path: &Path) -> Result<fjall::Database> {
    Ok(fjall::Database::builder(path)
        .cache_size(CACHE_BYTES)
        .open()?)
}

/// The store's one ordered tree. Cloning is cheap (shared handles).
#[derive(Clone)]
pub enum Tree {
    Sled {
        db: sled::Db,
        tree: sled::Tree,
        /// sled's log file: sled's own flush ends with `sync_file_range`,
        /// which neither persists a grown file's size nor flushes the
        /// disk's write cache (only its 500 ms background flush calls
        /// `fsync`). An `fdatasync` through this handle covers every write
        /// sled made to the file.
        log_file: Arc<std::fs::File>,
    },
    Fjall {
        db: fjall::Database,
        keyspace: fjall::Keyspace,
    },
}

impl Tree {
    /// Opens the index in `dir` (the store's data directory).
    pub fn open(dir: &Path, engine: Engine) -> Result<Tree> {
        for other in Engine::ALL {
            if other != engine && dir.join(other.name()).exists() {
                bail!(
                    "{} holds a store kept with the {} engine; it cannot be opened with {} \
                     (set [store] backend = \"{}\", or move the store over with \
                     `hookyard store migrate --to {}` while hookyard is stopped)",
                    dir.display(),
                    other.name(),
                    engine.name(),
                    other.name(),
                    engine.name()
                );
            }
        }
        for e in Engine::ALL {
            let partial = dir.join(format!("{}.migrating", e.name()));
            if partial.exists() {
                // Harmless to this store, but it holds as much space as an
                // index, and nothing else would mention it.
                tracing::warn!(
                    path = %partial.display(),
                    "an interrupted `hookyard store migrate` left a partial copy of the store; \
                     run the migration again, or delete it"
                );
            }
        }
        Tree::open_at(&dir.join(engine.name()), engine)
    }

    /// Opens the index in `path` itself, without looking for another
    /// engine's beside it: a migration writes its copy in a directory of
    /// its own until the copy is whole.
    pub fn open_at(path: &Path, engine: Engine) -> Result<Tree> {
        // Told apart, since "stop the other process" and "free some
        // space" are different advice.
        let failed = || {
            if held_elsewhere(path, engine) {
                format!(
                    "cannot open the store in {}: another process (a running hookyard?) is using it",
                    path.display()
                )
            } else {
                format!("cannot open the store in {}", path.display())
            }
        };
        match engine {
            Engine::Sled => {
                let db = sled_config(path).open().with_context(failed)?;
                let tree = db.open_tree("hookyard")?;
                let log_path = path.join("db");
                let log_file = std::fs::File::open(&log_path)
                    .with_context(|| format!("cannot open {}", log_path.display()))?;
                Ok(Tree::Sled {
                    db,
                    tree,
                    log_file: Arc::new(log_file),
                })
            }
            Engine::Fjall => {
                let db = fjall_database(path).with_context(failed)?;
                let keyspace = db.keyspace("hookyard", fjall::KeyspaceCreateOptions::default)?;
                Ok(Tree::Fjall { db, keyspace })
            }
        }
    }

    pub fn engine(&self) -> Engine {
        match self {
            Tree::Sled { .. } => Engine::Sled,
            Tree::Fjall { .. } => Engine::Fjall,
        }
    }

    pub fn get(&self, k: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        Ok(match self {
            Tree::Sled { tree, .. } => tree.get(k)?.map(Bytes::Sled),
            Tree::Fjall { keyspace, .. } => keyspace.get(k)?.map(Bytes::Fjall),
        })
    }

    pub fn contains_key(&self, k: impl AsRef<[u8]>) -> Result<bool> {
        Ok(match self {
            Tree::Sled { tree, .. } => tree.contains_key(k)?,
            Tree::Fjall { keyspace, .. } => keyspace.contains_key(k)?,
        })
    }

    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, r: R) -> Iter {
        let owned = |b: Bound<&K>| match b {
            Bound::Included(k) => Bound::Included(k.as_ref().to_vec()),
            Bound::Excluded(k) => Bound::Excluded(k.as_ref().to_vec()),
            Bound::Unbounded => Bound::Unbounded,
        };
        let bounds = (owned(r.start_bound()), owned(r.end_bound()));
        match self {
            Tree::Sled { tree, .. } => Iter::sled(tree.range(bounds)),
            Tree::Fjall { keyspace, .. } => Iter::fjall(keyspace.range(bounds)),
        }
    }

    pub fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> Iter {
        match self {
            Tree::Sled { tree, .. } => Iter::sled(tree.scan_prefix(prefix)),
            Tree::Fjall { keyspace, .. } => Iter::fjall(keyspace.prefix(prefix)),
        }
    }

    /// Applies every write of `batch` or none. Both engines hand the
    /// batch to the operating system before they return (sled's log
    /// buffer, fjall's journal), so `kill -9` loses nothing applied;
    /// [`flush`](Tree::flush) is what survives a power cut.
    pub fn apply_batch(&self, batch: Batch) -> Result<()> {
        match self {
            Tree::Sled { tree, .. } => {
                let mut b = sled::Batch::default();
                for (k, v) in batch.0 {
                    match v {
                        Some(v) => b.insert(k, v),
                        None => b.remove(k),
                    }
                }
                tree.apply_batch(b)?;
            }
            Tree::Fjall { db, keyspace } => {
                let mut b = db.batch();
                for (k, v) in batch.0 {
                    match v {
                        Some(v) => b.insert(keyspace, k, v),
                        None => b.remove(keyspace, k),
                    }
                }
                b.commit()?;
            }
        }
        Ok(())
    }

    /// Makes everything applied so far durable (fsync).
    pub fn flush(&self) -> Result<()> {
        match self {
            Tree::Sled { db, log_file, .. } => {
                db.flush()?;
                log_file.sync_data().context("syncing sled's log")
            }
            Tree::Fjall { db, .. } => Ok(db.persist(fjall::PersistMode::SyncData)?),
        }
    }

    pub fn size_on_disk(&self) -> u64 {
        match self {
            Tree::Sled { db, .. } => db.size_on_disk().unwrap_or(0),
            Tree::Fjall { db, .. } => db.disk_space().unwrap_or(0),
        }
    }
}

/// Whether another process has the index at `path` open. Both engines
/// hold an exclusive `flock` on one file while open (sled its `db`, fjall
/// its `lock`), and neither says so in a way a caller can match on.
fn held_elsewhere(path: &Path, engine: Engine) -> bool {
    let file = match engine {
        Engine::Sled => "db",
        Engine::Fjall => "lock",
    };
    std::fs::File::open(path.join(file))
        .is_ok_and(|f| matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)))
}

/// An I/O error of either engine (a full disk, a device error) may pass,
/// and the store can be reopened once it has; anything else (corruption)
/// will not.
pub fn is_io(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.is::<std::io::Error>()
            || matches!(c.downcast_ref::<sled::Error>(), Some(sled::Error::Io(_)))
            || matches!(c.downcast_ref::<fjall::Error>(), Some(fjall::Error::Io(_)))
    })
}

/// A key or value as the engine returns it, without a copy.
#[derive(Clone, Debug)]
pub enum Bytes {
    Sled(sled::IVec),
    Fjall(fjall::Slice),
}

impl Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Sled(v) => v,
            Bytes::Fjall(v) => v,
        }
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

/// Key-value pairs in key order, either way.
pub struct Iter(Box<dyn DoubleEndedIterator<Item = Result<(Bytes, Bytes)>> + Send>);

impl Iter {
    fn sled(i: sled::Iter) -> Iter {
        Iter(Box::new(i.map(|r| {
            r.map(|(k, v)| (Bytes::Sled(k), Bytes::Sled(v)))
                .map_err(anyhow::Error::from)
        })))
    }

    fn fjall(i: fjall::Iter) -> Iter {
        Iter(Box::new(i.map(|g| {
            g.into_inner()
                .map(|(k, v)| (Bytes::Fjall(k), Bytes::Fjall(v)))
                .map_err(anyhow::Error::from)
        })))
    }

    pub fn keys(self) -> impl DoubleEndedIterator<Item = Result<Bytes>> + Send {
        self.map(|r| r.map(|(k, _)| k))
    }

    pub fn values(self) -> impl DoubleEndedIterator<Item = Result<Bytes>> + Send {
        self.map(|r| r.map(|(_, v)| v))
    }
}

impl Iterator for Iter {
    type Item = Result<(Bytes, Bytes)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next()
    }
}

impl DoubleEndedIterator for Iter {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back()
    }
}

/// Writes applied together by [`Tree::apply_batch`]: a later write of a
/// key replaces an earlier one, as in sled's own batch. fjall gives every
/// item of a batch the same sequence number, so two writes of one key in
/// one fjall batch would leave which one reads see undefined; keeping one
/// write per key here rules that out.
#[derive(Default)]
pub struct Batch(BTreeMap<Vec<u8>, Option<Vec<u8>>>);

impl Batch {
    pub fn insert(&mut self, k: impl Into<Vec<u8>>, v: impl Into<Vec<u8>>) {
        self.0.insert(k.into(), Some(v.into()));
    }

    pub fn remove(&mut self, k: impl Into<Vec<u8>>) {
        self.0.insert(k.into(), None);
    }

    /// The keys starting with `prefix` that this batch writes (not those
    /// it removes).
    pub fn inserted_with_prefix<'a>(&'a self, prefix: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
        self.0
            .range(prefix.to_vec()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| k.as_slice())
    }
}

impl From<Bytes> for Vec<u8> {
    fn from(b: Bytes) -> Vec<u8> {
        b.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_keeps_the_engine_it_was_made_with() {
        for (made, other) in [(Engine::Sled, Engine::Fjall), (Engine::Fjall, Engine::Sled)] {
            let dir = tempfile::tempdir().unwrap();
            let tree = Tree::open(dir.path(), made).unwrap();
            let mut b = Batch::default();
            b.insert(b"k".to_vec(), b"v".to_vec());
            tree.apply_batch(b).unwrap();
            tree.flush().unwrap();
            drop(tree);
            let refused = Tree::open(dir.path(), other).err().expect("refused");
            assert!(
                refused.to_string().contains("cannot be opened with"),
                "{refused:#}"
            );
        }
    }

    #[test]
    fn ranges_and_prefixes_read_the_same_on_both_engines() {
        for engine in Engine::ALL {
            let dir = tempfile::tempdir().unwrap();
            let tree = Tree::open(dir.path(), engine).unwrap();
            let mut b = Batch::default();
            for k in ["a1", "b1", "b2", "b3", "c1"] {
                b.insert(k, k.to_uppercase());
            }
            b.remove("b2");
            tree.apply_batch(b).unwrap();
            let keys = |i: Iter| -> Vec<String> {
                i.keys()
                    .map(|k| String::from_utf8(k.unwrap().to_vec()).unwrap())
                    .collect()
            };
            assert_eq!(keys(tree.scan_prefix("b")), ["b1", "b3"], "{engine:?}");
            assert_eq!(keys(tree.range("b1".."c1")), ["b1", "b3"], "{engine:?}");
            let back: Vec<_> = tree.range("a".."z").keys().rev().take(2).collect();
            assert_eq!(back.len(), 2);
            assert_eq!(&*back[0].as_ref().unwrap().clone(), b"c1", "{engine:?}");
            assert_eq!(&*tree.get("b3").unwrap().unwrap(), b"B3");
            assert!(!tree.contains_key("b2").unwrap());
        }
    }
}
