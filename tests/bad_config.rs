//! A bad config stops the start with an error that names the key.

mod support;

use std::process::Command;

use support::*;

fn start_error(config: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("plugins")).unwrap();
    let path = tmp.path().join("hookyard.toml");
    std::fs::write(&path, format!("{}{config}", server_section(tmp.path()))).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hookyard"))
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success(), "hookyard started with a bad config");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn missing_plugin_file() {
    let e = start_error("[sources.gh]\nplugins = [\"ghost\"]\n");
    assert!(
        e.contains("sources.gh.plugins[0]: plugin \"ghost\" not found"),
        "{e}"
    );
}

#[test]
fn unknown_target_name() {
    let e = start_error("[sources.gh]\ntargets = [\"nowhere\"]\n");
    assert!(
        e.contains("sources.gh.targets[0]: unknown target \"nowhere\""),
        "{e}"
    );
}

#[test]
fn invalid_url() {
    let e = start_error("[targets.t]\nurl = \"htp:/broken url\"\n");
    assert!(e.contains("targets.t.url"), "{e}");
}

#[test]
fn toml_syntax_error_points_at_the_line() {
    let e = start_error("[sources.s\n");
    assert!(e.contains("line"), "{e}");
}

#[test]
fn unknown_key_is_named() {
    let e = start_error("[targets.t]\nurl = \"http://127.0.0.1:1/\"\nretries = 3\n");
    assert!(e.contains("retries"), "{e}");
}

#[test]
fn a_file_that_is_not_a_component() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = tmp.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::write(plugins.join("junk.wasm"), b"not wasm at all").unwrap();
    let path = tmp.path().join("hookyard.toml");
    std::fs::write(
        &path,
        format!(
            "{}[sources.s]\nplugins = [\"junk\"]\n",
            server_section(tmp.path())
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hookyard"))
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("plugin \"junk\"") && e.contains("not a valid WebAssembly component"),
        "{e}"
    );
}

#[test]
fn a_bad_secret_is_named_without_echoing_it() {
    let e = start_error(
        "[targets.t]\nurl = \"http://127.0.0.1:1/\"\nsecret = \"whsec_!!notbase64!!\"\n",
    );
    assert!(e.contains("targets.t.secret"), "{e}");
    assert!(!e.contains("notbase64"), "secret leaked: {e}");
}

#[test]
fn max_body_above_the_maximum() {
    let e = start_error("[sources.s]\nmax_body = \"65MiB\"\n");
    assert!(e.contains("sources.s.max_body"), "{e}");
    assert!(e.contains("64 MiB"), "{e}");
    let e = start_error("[sources.s]\nmax_body = 1000000000\n");
    assert!(e.contains("sources.s.max_body"), "{e}");
}
