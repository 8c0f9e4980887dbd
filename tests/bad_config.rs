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

/// `hookyard check`'s error for `config` (`serve` starts without a
/// plugin: see tests/plugin_startup.rs).
fn check_error(config: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("plugins")).unwrap();
    let path = tmp.path().join("hookyard.toml");
    std::fs::write(&path, format!("{}{config}", server_section(tmp.path()))).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hookyard"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success(), "hookyard check passed a bad config");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn missing_plugin_file() {
    let e = check_error("[sources.gh]\nplugins = [\"ghost\"]\n");
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
fn a_bad_secret_is_named_without_echoing_it() {
    let e = start_error(
        "[targets.t]\nurl = \"http://127.0.0.1:1/\"\nsecret = \"whsec_!!notbase64!!\"\n",
    );
    assert!(e.contains("targets.t.secret"), "{e}");
    assert!(!e.contains("notbase64"), "secret leaked: {e}");
}

#[test]
fn max_body_above_the_maximum() {
    let e = both_refuse("[sources.s]\nmax_body = \"65MiB\"\n", "sources.s.max_body");
    assert!(e.contains("64 MiB"), "{e}");
    both_refuse("[sources.s]\nmax_body = 1000000000\n", "sources.s.max_body");
}

/// Runs `hookyard check` and then `hookyard serve` on a whole config (no
/// preamble, so `[server]` and `[delivery]` can be written); both must fail
/// without panicking. Returns serve's stderr after checking both name `key`.
/// `check` goes first so a config wrongly accepted fails the test instead
/// of leaving `serve` running.
fn both_refuse(config: &str, key: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("plugins")).unwrap();
    let path = tmp.path().join("hookyard.toml");
    std::fs::write(
        &path,
        format!(
            "{config}\n[plugins]\ndir = \"{}\"\n",
            tmp.path().join("plugins").display()
        ),
    )
    .unwrap();
    let mut last = String::new();
    for command in ["check", "serve"] {
        let out = Command::new(env!("CARGO_BIN_EXE_hookyard"))
            .args([command, "--config"])
            .arg(&path)
            .env_remove("HOOKYARD_LISTEN")
            .env_remove("HOOKYARD_ADMIN_LISTEN")
            .env("HOOKYARD_DATA_DIR", tmp.path().join("data"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "`hookyard {command}` accepted:\n{config}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            stderr.contains(key),
            "`hookyard {command}` did not name {key}:\n{stderr}"
        );
        last = stderr;
    }
    last
}

#[test]
fn values_that_parse_but_break_things_are_refused_at_load() {
    let server = "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n";
    let target = "[targets.t]\nurl = \"http://127.0.0.1:1/\"\n";
    for (config, key) in [
        (
            format!("{server}retention_sweep_every = \"0s\"\n"),
            "server.retention_sweep_every",
        ),
        (
            format!("{server}retention_sweep_every = \"50ms\"\n"),
            "server.retention_sweep_every",
        ),
        (
            format!("{server}retention = \"500000000y\"\n"),
            "server.retention",
        ),
        (
            format!("{server}shutdown_grace = \"101y\"\n"),
            "server.shutdown_grace",
        ),
        (
            "[sources.s]\nrate_limit = { per_second = 1e-30 }\n".to_string(),
            "sources.s.rate_limit.per_second",
        ),
        (
            "[sources.s]\nrate_limit = { per_second = 2e6 }\n".to_string(),
            "sources.s.rate_limit.per_second",
        ),
        (
            "[sources.s]\nrate_limit = { per_second = 5, burst = 1e9 }\n".to_string(),
            "sources.s.rate_limit.burst",
        ),
        (
            "[sources.s]\nrate_limit = { per_second = nan }\n".to_string(),
            "sources.s.rate_limit.per_second",
        ),
        (
            format!("{target}rate_limit = {{ per_second = 1e-30 }}\n"),
            "targets.t.rate_limit.per_second",
        ),
        (
            format!("{target}rate_limit = {{ per_second = 1, burst = 0.5 }}\n"),
            "targets.t.rate_limit.burst",
        ),
        (
            "[delivery]\nrate_limit = { per_second = inf }\n".to_string(),
            "delivery.rate_limit.per_second",
        ),
        (format!("{target}timeout = \"0s\"\n"), "targets.t.timeout"),
        ("[delivery]\ntimeout = \"0s\"\n".to_string(), "delivery.timeout"),
        (
            format!("{target}retry_schedule = [\"1s\", \"200y\"]\n"),
            "targets.t.retry_schedule[1]",
        ),
        (
            format!("{target}max_retry_after = \"1000000y\"\n"),
            "targets.t.max_retry_after",
        ),
        (
            format!("{target}breaker_cooldown = \"500000000y\"\n"),
            "targets.t.breaker_cooldown",
        ),
        (
            "[delivery]\ndisable_after = \"101y\"\n".to_string(),
            "delivery.disable_after",
        ),
        (
            "[sources.s]\nidempotency = { header = \"x-id\", window = \"500000000y\" }\n"
                .to_string(),
            "sources.s.idempotency.window",
        ),
        (
            "[sources.s]\nverify = { scheme = \"github\", secret = \"x\", tolerance = \"500000000y\" }\n"
                .to_string(),
            "sources.s.verify.tolerance",
        ),
    ] {
        both_refuse(&config, key);
    }
}

#[test]
fn plugin_timeouts_must_be_positive() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = tmp.path().join("plugins");
    let path = tmp.path().join("hookyard.toml");
    for (table, key) in [
        ("timeout = \"0s\"\n", "plugins.timeout"),
        ("[plugins.p]\ntimeout = \"0ms\"\n", "plugins.p.timeout"),
    ] {
        std::fs::write(
            &path,
            format!("[plugins]\ndir = \"{}\"\n{table}", plugins.display()),
        )
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_hookyard"))
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{table}");
        assert!(stderr.contains(key), "{key}: {stderr}");
    }
}
