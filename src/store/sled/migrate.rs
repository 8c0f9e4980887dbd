//! Moves an embedded store's index from one engine to the other
//! (`hookyard store migrate --to fjall`), so a store made with sled can
//! run on fjall, and back. Only the index moves: the body log it refers to
//! is the same for both engines and stays where it is.
//!
//! Why it is safe to interrupt at any point: the copy is written to
//! `<to>.migrating`, made durable and compared record by record with the
//! source, marked whole, and only then renamed to `<to>`; after that the
//! source's index is renamed aside, never deleted. Stopped before the
//! first rename, the source is untouched and a new run starts the copy
//! over. Stopped between the renames, both indexes exist, hookyard refuses
//! to open the directory with either engine, and a new run (seeing the
//! mark) finishes the move. The engines' own locks keep a running
//! hookyard and a migration apart.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::engine::{Batch, Engine, Tree};

/// Records per write to the new index: large enough that the engine's
/// per-batch cost vanishes, small enough that a batch of 1 KiB records
/// stays a few MiB.
const BATCH_RECORDS: usize = 2048;

/// How often progress is reported while a pass runs.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

const MIB: f64 = 1024.0 * 1024.0;

/// The file in a finished copy that names the engine it came from, there
/// from the rename that makes the copy the index until the source is set
/// aside. Both engines ignore files in their directory they did not write.
const MARK: &str = "hookyard-migrated-from";

/// Which pass a [`Progress`] report is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// Counting the source's records, so the later passes can say how far
    /// along they are.
    Counting,
    Copying,
    /// Reading the new index back against the source, after it was made
    /// durable.
    Checking,
}

/// How far a migration is, reported about once a second and at the end of
/// each pass.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub pass: Pass,
    pub records: u64,
    /// The source's records (0 while counting).
    pub total: u64,
    pub bytes: u64,
}

/// What a finished migration did.
#[derive(Debug)]
pub struct Migrated {
    pub from: Engine,
    pub to: Engine,
    pub records: u64,
    pub bytes: u64,
    /// Where the source's index was moved aside (delete it once the new
    /// index serves).
    pub kept: PathBuf,
    /// A run that found an earlier one stopped between its two renames
    /// and only finished it.
    pub resumed: bool,
}

/// Moves the index of the embedded store in `dir` to `to`.
pub fn migrate(dir: &Path, to: Engine, mut report: impl FnMut(Progress)) -> Result<Migrated> {
    let target = dir.join(to.name());
    let Some(from) = Engine::ALL
        .into_iter()
        .find(|e| *e != to && dir.join(e.name()).exists())
    else {
        if target.exists() {
            bail!(
                "the store in {} is already kept with {}",
                dir.display(),
                to.name()
            );
        }
        bail!("{} holds no embedded store", dir.display());
    };
    let source = dir.join(from.name());
    if target.exists() {
        // Only a finished copy is ever renamed to `target`, and hookyard
        // never creates an index beside another engine's.
        let mark = std::fs::read_to_string(target.join(MARK)).unwrap_or_default();
        if mark.trim() != from.name() {
            bail!(
                "{} holds both a {} and a {} index, and the {} one is not a finished \
                 migration; move the one you do not want out of the way",
                dir.display(),
                from.name(),
                to.name(),
                to.name()
            );
        }
        let kept = set_aside(dir, from, to)?;
        finish(&target)?;
        return Ok(Migrated {
            from,
            to,
            records: 0,
            bytes: 0,
            kept,
            resumed: true,
        });
    }

    let partial = dir.join(format!("{}.migrating", to.name()));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).with_context(|| {
            format!("cannot remove an unfinished copy at {}", partial.display())
        })?;
    }
    let old = Tree::open_at(&source, from)
        .with_context(|| format!("cannot read the {} index; nothing was changed", from.name()))?;
    let counted = pass(&old, Pass::Counting, 0, &mut report, |_, _| Ok(()))?;
    // The copy holds the same keys and values; refusing up front beats
    // filling the disk the running router will need.
    let free = super::space::free_bytes(dir)
        .with_context(|| format!("cannot read the free space of {}", dir.display()))?;
    if free < counted.bytes {
        bail!(
            "the {} copy needs at least {:.1} MiB free in {}, and {:.1} MiB are; nothing was changed",
            to.name(),
            counted.bytes as f64 / MIB,
            dir.display(),
            free as f64 / MIB
        );
    }
    let copied = match copy_and_check(&old, &partial, to, counted.records, &mut report) {
        Ok(copied) => copied,
        Err(e) => {
            // The source is untouched; the partial copy only takes space
            // (a full disk is the likeliest cause).
            let _ = std::fs::remove_dir_all(&partial);
            return Err(e.context(format!(
                "the migration stopped; the {} index is untouched and the partial copy removed",
                from.name()
            )));
        }
    };
    drop(old);

    write_durably(&partial.join(MARK), from.name().as_bytes())?;
    std::fs::rename(&partial, &target).with_context(|| {
        format!(
            "cannot rename {} to {}",
            partial.display(),
            target.display()
        )
    })?;
    sync_dir(dir)?;
    let kept = set_aside(dir, from, to)?;
    finish(&target)?;
    Ok(Migrated {
        from,
        to,
        records: copied.records,
        bytes: copied.bytes,
        kept,
        resumed: false,
    })
}

/// Copies every record of `old` into a new `to` index at `partial`,
/// makes it durable, and reads it back against `old` from a fresh open, so
/// what is compared is what the engine persisted, not what it still had
/// in memory.
fn copy_and_check(
    old: &Tree,
    partial: &Path,
    to: Engine,
    total: u64,
    report: &mut impl FnMut(Progress),
) -> Result<Progress> {
    let new = Tree::open_at(partial, to)?;
    let mut batch = Batch::default();
    let mut in_batch = 0;
    let copied = pass(old, Pass::Copying, total, report, |k, v| {
        batch.insert(k, v);
        in_batch += 1;
        if in_batch == BATCH_RECORDS {
            new.apply_batch(std::mem::take(&mut batch))?;
            in_batch = 0;
        }
        Ok(())
    })?;
    new.apply_batch(batch)?;
    new.flush()?;
    drop(new);

    let new = Tree::open_at(partial, to)?;
    let mut written = new.range::<&[u8], _>(..);
    pass(old, Pass::Checking, total, report, |k, v| {
        match written.next().transpose()? {
            Some((nk, nv)) if *nk == *k && *nv == *v => Ok(()),
            Some((nk, _)) if *nk != *k => bail!(
                "the copy differs from the source at key {:?}",
                String::from_utf8_lossy(k)
            ),
            Some(_) => bail!(
                "the copy of {:?} differs from the source",
                String::from_utf8_lossy(k)
            ),
            None => bail!(
                "the copy ends before the source's key {:?}",
                String::from_utf8_lossy(k)
            ),
        }
    })?;
    if let Some(extra) = written.next().transpose()? {
        bail!(
            "the copy holds a key the source does not: {:?}",
            String::from_utf8_lossy(&extra.0)
        );
    }
    Ok(copied)
}

/// Reads every record of `tree` in key order through `each`, reporting
/// progress as it goes; returns the last report.
fn pass(
    tree: &Tree,
    which: Pass,
    total: u64,
    report: &mut impl FnMut(Progress),
    mut each: impl FnMut(&[u8], &[u8]) -> Result<()>,
) -> Result<Progress> {
    let mut p = Progress {
        pass: which,
        records: 0,
        total,
        bytes: 0,
    };
    let mut last = Instant::now();
    for kv in tree.range::<&[u8], _>(..) {
        let (k, v) = kv?;
        each(&k, &v)?;
        p.records += 1;
        p.bytes += (k.len() + v.len()) as u64;
        if last.elapsed() >= PROGRESS_EVERY {
            report(p);
            last = Instant::now();
        }
    }
    report(p);
    Ok(p)
}

/// Renames the source's index out of the way, under a name no engine
/// opens, and returns where it went.
fn set_aside(dir: &Path, from: Engine, to: Engine) -> Result<PathBuf> {
    let source = dir.join(from.name());
    let mut kept = dir.join(format!("{}.before-{}", from.name(), to.name()));
    let mut n = 1;
    while kept.exists() {
        n += 1;
        kept = dir.join(format!("{}.before-{}.{n}", from.name(), to.name()));
    }
    std::fs::rename(&source, &kept)
        .with_context(|| format!("cannot rename {} to {}", source.display(), kept.display()))?;
    sync_dir(dir)?;
    Ok(kept)
}

/// Removes the mark once the source is aside: a later index beside this
/// one is then not taken for this migration's source.
fn finish(target: &Path) -> Result<()> {
    let mark = target.join(MARK);
    std::fs::remove_file(&mark).with_context(|| format!("cannot remove {}", mark.display()))?;
    sync_dir(target)
}

fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(path)?;
        std::io::Write::write_all(&mut f, bytes)?;
        f.sync_all()
    };
    write().with_context(|| format!("cannot write {}", path.display()))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Makes renames and new files in `dir` survive a power cut.
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync directory {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(tree: &Tree, n: usize) {
        let mut b = Batch::default();
        for i in 0..n {
            b.insert(format!("k{i:06}"), vec![i as u8; 1 + i % 300]);
        }
        tree.apply_batch(b).unwrap();
        tree.flush().unwrap();
    }

    fn records(tree: &Tree) -> Vec<(Vec<u8>, Vec<u8>)> {
        tree.range::<&[u8], _>(..)
            .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
            .collect()
    }

    /// Both ways, with more records than a batch holds: every record
    /// arrives, the source is kept aside, and the directory then opens
    /// with the new engine only.
    #[test]
    fn every_record_moves_both_ways_and_the_source_is_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let tree = Tree::open(dir.path(), Engine::Sled).unwrap();
        fill(&tree, BATCH_RECORDS * 2 + 7);
        let before = records(&tree);
        drop(tree);
        for (from, to) in [(Engine::Sled, Engine::Fjall), (Engine::Fjall, Engine::Sled)] {
            let mut reports = vec![];
            let m = migrate(dir.path(), to, |p| reports.push(p)).unwrap();
            assert_eq!((m.from, m.to, m.resumed), (from, to, false));
            assert_eq!(m.records, before.len() as u64);
            for pass in [Pass::Counting, Pass::Copying, Pass::Checking] {
                let last = reports.iter().rfind(|p| p.pass == pass).unwrap();
                assert_eq!(last.records, before.len() as u64, "{pass:?}");
            }
            assert!(!dir.path().join(from.name()).exists());
            assert!(m.kept.exists(), "{}", m.kept.display());
            assert!(Tree::open(dir.path(), from).is_err());
            let tree = Tree::open(dir.path(), to).unwrap();
            assert_eq!(records(&tree), before, "{from:?} -> {to:?}");
        }
    }

    /// An unfinished copy is thrown away and made again; a run stopped
    /// between its renames is finished; a second index that no migration
    /// made is refused rather than guessed at.
    #[test]
    fn an_interrupted_migration_is_redone_or_finished() {
        let dir = tempfile::tempdir().unwrap();
        let tree = Tree::open(dir.path(), Engine::Sled).unwrap();
        fill(&tree, 100);
        let before = records(&tree);
        drop(tree);

        // Stopped mid-copy: a partial index with a record the source lacks.
        let partial = Tree::open_at(&dir.path().join("fjall.migrating"), Engine::Fjall).unwrap();
        let mut b = Batch::default();
        b.insert("stale", "x");
        partial.apply_batch(b).unwrap();
        partial.flush().unwrap();
        drop(partial);
        migrate(dir.path(), Engine::Fjall, |_| {}).unwrap();
        let tree = Tree::open(dir.path(), Engine::Fjall).unwrap();
        assert_eq!(records(&tree), before);
        drop(tree);

        // Stopped between the renames: the source beside the marked copy.
        std::fs::rename(
            dir.path().join("sled.before-fjall"),
            dir.path().join("sled"),
        )
        .unwrap();
        std::fs::write(dir.path().join("fjall").join(MARK), "sled").unwrap();
        assert!(Tree::open(dir.path(), Engine::Fjall).is_err());
        let m = migrate(dir.path(), Engine::Fjall, |_| {}).unwrap();
        assert!(m.resumed);
        assert!(!dir.path().join("fjall").join(MARK).exists());
        let tree = Tree::open(dir.path(), Engine::Fjall).unwrap();
        assert_eq!(records(&tree), before);
        drop(tree);

        // A sled index made beside it by hand is not a migration's, either
        // way.
        drop(Tree::open_at(&dir.path().join("sled"), Engine::Sled).unwrap());
        for to in Engine::ALL {
            let e = migrate(dir.path(), to, |_| {}).unwrap_err();
            assert!(e.to_string().contains("not a finished migration"), "{e:#}");
        }
    }

    #[test]
    fn nothing_to_move_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = migrate(dir.path(), Engine::Fjall, |_| {}).unwrap_err();
        assert!(e.to_string().contains("holds no embedded store"), "{e:#}");
        drop(Tree::open(dir.path(), Engine::Fjall).unwrap());
        let e = migrate(dir.path(), Engine::Fjall, |_| {}).unwrap_err();
        assert!(e.to_string().contains("already kept with fjall"), "{e:#}");
    }
}
