//! On-disk cache of compiled components.
//!
//! Compiling a JavaScript or Python component takes ~6 s; loading the same
//! component from its compiled form takes ~50 ms. Entries are keyed by the
//! wasm's sha256 and the engine's compatibility hash (wasmtime version and
//! every setting that changes code generation), so a stale or foreign entry
//! is never loaded. The cache lives in the data directory, outside the
//! watched plugin directory, and entries are written to a temporary name and
//! renamed, so a crash never leaves a half-written entry under a real name.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::instance::hex;

/// Feeds `Hash` output into sha256, for a hash that is stable across runs.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        unreachable!("only the full digest is used")
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

pub struct CompileCache {
    dir: PathBuf,
    engine_key: String,
}

impl CompileCache {
    pub fn new(dir: PathBuf, engine: &Engine) -> CompileCache {
        let mut h = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine_key = hex(&h.0.finalize())[..16].to_string();
        CompileCache { dir, engine_key }
    }

    fn entry(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_key))
    }

    /// The compiled component for this wasm, if cached. A corrupt or
    /// incompatible entry is removed and reported as a miss.
    pub fn load(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.entry(sha256);
        if !path.is_file() {
            return None;
        }
        // SAFETY: entries are only ever written by `store` below from
        // `Component::serialize` of this same engine configuration (the
        // file name carries the compatibility hash), in a directory that
        // belongs to hookyard; wasmtime also re-checks the header.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "dropping unusable compiled-cache entry");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Saves a compiled component; failures only cost a recompile later.
    pub fn store(&self, sha256: &str, component: &Component) {
        if let Err(e) = self.try_store(sha256, component) {
            tracing::warn!(
                error = format!("{e:#}"),
                "could not write compiled-cache entry"
            );
        }
    }

    pub(crate) fn try_store(&self, sha256: &str, component: &Component) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("create {}", self.dir.display()))?;
        let bytes = component.serialize().map_err(anyhow::Error::from)?;
        let path = self.entry(sha256);
        let tmp = self.dir.join(format!(
            ".{}.{}.tmp",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("entry"),
            std::process::id()
        ));
        std::fs::write(&tmp, &bytes).with_context(|| format!("write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("rename to {}", path.display()))?;
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
