//! `hookyard store migrate --to fjall`: moves the embedded store named by
//! a config file to another engine, with a line of progress a second, and
//! says what to change in the config afterwards.

use std::path::Path;

use anyhow::{Result, bail};

use crate::config::{Config, StoreConfig};
use crate::store::sled::engine::Engine;
use crate::store::sled::migrate::{Pass, Progress, migrate};

/// Runs the migration of the store `config_path` names; progress and the
/// outcome go to stderr and stdout as a person reads them.
pub fn run(config_path: &Path, to: Engine) -> Result<()> {
    let config = Config::load(config_path)?;
    let StoreConfig::Embedded(configured) = config.store else {
        bail!(
            "{} keeps its store in PostgreSQL; `store migrate` moves an embedded store \
             (sled or fjall) from one engine to the other",
            config_path.display()
        );
    };
    let dir = &config.server.data_dir;
    eprintln!("migrating the store in {} to {}", dir.display(), to.name());
    let m = migrate(dir, to, print_progress)?;
    if m.resumed {
        println!(
            "finished an interrupted migration from {} to {}; the {} index is kept at {}",
            m.from.name(),
            m.to.name(),
            m.from.name(),
            m.kept.display()
        );
    } else {
        println!(
            "moved {} records ({}) from {} to {}, each read back and compared; the {} index \
             is kept at {} (delete it once hookyard runs on {})",
            m.records,
            mib(m.bytes),
            m.from.name(),
            m.to.name(),
            m.from.name(),
            m.kept.display(),
            m.to.name()
        );
    }
    if configured != to {
        println!(
            "now set `backend = \"{}\"` under [store] in {} before you start hookyard",
            to.name(),
            config_path.display()
        );
    }
    Ok(())
}

fn print_progress(p: Progress) {
    match p.pass {
        Pass::Counting => eprintln!("  counting: {} records so far", p.records),
        Pass::Copying | Pass::Checking => {
            let verb = if p.pass == Pass::Copying {
                "copying"
            } else {
                "checking"
            };
            let percent = (p.records * 100).checked_div(p.total).unwrap_or(100);
            eprintln!(
                "  {verb}: {} of {} records ({percent} %), {}",
                p.records,
                p.total,
                mib(p.bytes)
            );
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
