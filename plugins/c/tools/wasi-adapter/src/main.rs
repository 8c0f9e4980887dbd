//! Writes the WASI preview1 -> preview2 *reactor* adapter module, as shipped
//! by the `wasi-preview1-component-adapter-provider` crate, to the path given
//! as the only argument (via a temporary file and a rename).
//!
//! `wasm-tools component new --adapt wasi_snapshot_preview1=<that file>` uses
//! it to turn a core module built against wasi-libc into a component.

use std::path::PathBuf;
use std::process::ExitCode;

use wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        eprintln!("usage: hookyard-wasi-adapter OUT.wasm");
        return ExitCode::from(2);
    };
    let out = PathBuf::from(out);
    let mut tmp = out.clone().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    if let Err(e) = std::fs::write(&tmp, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER)
        .and_then(|()| std::fs::rename(&tmp, &out))
    {
        let _ = std::fs::remove_file(&tmp);
        eprintln!("writing {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
