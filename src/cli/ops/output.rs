//! Writing to stdout: `--json` answers as the server sent them, and every
//! write flushed at once, with a closed pipe (`| head`) turned into a quiet
//! stop rather than an error.

use anyhow::Result;
use serde_json::Value;

pub(super) fn print_json(v: &Value) -> Result<()> {
    emit(&format!("{}\n", serde_json::to_string_pretty(v)?))
}

/// Stdout went away (the reader of a pipe exited): stop quietly.
#[derive(Debug)]
pub(super) struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Writes and flushes at once, so `events tail` lines appear as they come
/// even through a pipe.
pub(super) fn emit(text: &str) -> Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        other => Ok(other?),
    }
}
