//! Compiling a component in a child process, so that the compiler's
//! memory is never the router's.
//!
//! Why: Cranelift compiling the Python and JavaScript examples peaked the
//! router at ~500 MB, and ~110 MB of what it freed stayed resident after
//! `mi_collect` (a cold start idled at 179-194 MiB and peaked at 459-518
//! MiB in the three-plugin bench, against 57 and 164 MiB with the compiled
//! cache warm; issue 16 bounds them at 150 and 300 MB). A child compiles
//! into the compiled cache, exits, and the router maps the entry as a warm
//! start would. A child that cannot run or fails leaves the compile to
//! the router as before (that path also words a broken component's error).
//!
//! Only the `hookyard serve` binary turns this on (`compile_in_children`):
//! a test or bench binary that embeds the library has no such subcommand.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow, bail};
use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use super::cache::CompileCache;
use super::instance::hex;

/// The hidden subcommand the child runs.
pub const SUBCOMMAND: &str = "compile-into-cache";

/// Most bytes of a child's error kept for the log.
const STDERR_KEPT: u64 = 4096;

static COMPILER: OnceLock<PathBuf> = OnceLock::new();

/// Compile components in children of `exe` (this binary) from now on.
pub fn compile_in_children(exe: PathBuf) {
    let _ = COMPILER.set(exe);
}

/// Compiles `bytes` in a child into `cache_dir`; `Ok(false)` when children
/// are not in use here. The caller then loads the entry from the cache.
pub fn in_child(bytes: &[u8], meters_fuel: bool, cache_dir: &Path) -> Result<bool> {
    let Some(exe) = COMPILER.get() else {
        return Ok(false);
    };
    let mut child = Command::new(exe)
        .args(["plugin", SUBCOMMAND, "--cache"])
        .arg(cache_dir)
        .args(meters_fuel.then_some("--fuel"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {} to compile", exe.display()))?;
    // All of it first: the child reads stdin to the end before it writes
    // anything, so this cannot wait on a full stderr pipe.
    let written = child
        .stdin
        .take()
        .ok_or_else(|| anyhow!("no stdin for the compiler"))?
        .write_all(bytes);
    // Read to the end (a child blocked on a full pipe would never exit),
    // keeping the start.
    let mut stderr = Vec::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = (&mut err).take(STDERR_KEPT).read_to_end(&mut stderr);
        let _ = std::io::copy(&mut err, &mut std::io::sink());
    }
    let status = child.wait().context("waiting for the compiler")?;
    if !status.success() {
        bail!(
            "the compiler process {status}: {}",
            String::from_utf8_lossy(&stderr).trim()
        );
    }
    written.context("sending the component to the compiler")?;
    Ok(true)
}

/// The child's side: reads a component on stdin, compiles it with the
/// engine `serve` builds for the same settings, and stores it in the cache
/// under the name the router looks for.
pub fn run_child(cache_dir: &Path, meters_fuel: bool) -> Result<()> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .read_to_end(&mut bytes)
        .context("reading the component")?;
    let engine = super::engine::new_engine(meters_fuel)?;
    let component = Component::new(&engine, &bytes)
        .map_err(anyhow::Error::from)
        .context("not a valid WebAssembly component")?;
    let cache = CompileCache::new(cache_dir.to_path_buf(), &engine);
    cache.try_store(&hex(&Sha256::digest(&bytes)), &component)
}
