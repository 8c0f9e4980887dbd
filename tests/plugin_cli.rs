//! The plugin dev loop: `plugin new` writes a skeleton that builds as
//! generated, and `plugin test` runs a plugin once without a server.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use support::*;

fn hookyard(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hookyard"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run hookyard")
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn plugin_new_rust_builds_and_passes_plugin_test() {
    let tmp = tempfile::tempdir().unwrap();
    let out = hookyard(
        &["plugin", "new", "my-router", "--lang", "rust"],
        tmp.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = tmp.path().join("my-router");
    assert!(root.join("wit/plugin.wit").is_file());

    // Share the example plugins' target dir so dependencies build once.
    let status = Command::new("bash")
        .arg(root.join("build.sh"))
        .env("CARGO_TARGET_DIR", repo_root().join("plugins/rust/target"))
        .status()
        .unwrap();
    assert!(status.success(), "the generated skeleton builds");
    let wasm = root.join("my-router.wasm");
    assert!(wasm.is_file());

    std::fs::write(tmp.path().join("body.json"), r#"{"hello":"world"}"#).unwrap();
    let out = hookyard(
        &[
            "plugin",
            "test",
            "my-router/my-router.wasm",
            "--event",
            "body.json",
            "--config",
            "target=orders",
            "--json",
        ],
        tmp.path(),
    );
    assert!(out.status.success());
    let v = json_of(&out);
    assert_eq!(v["result"]["outcome"], "deliver");
    assert_eq!(v["result"]["deliveries"][0]["target"], "orders");
    assert!(
        v["logs"][0]["message"]
            .as_str()
            .unwrap()
            .contains("-> orders")
    );

    // Refuses to overwrite.
    let again = hookyard(&["plugin", "new", "my-router"], tmp.path());
    assert!(!again.status.success());
}

/// `plugin new --lang <lang>` builds as generated (reusing the toolchains
/// scripts/build-plugins.sh installed) and passes `plugin test`.
fn skeleton_builds_and_routes(lang: &str, env: (&str, std::path::PathBuf)) {
    built_plugins();
    let tmp = tempfile::tempdir().unwrap();
    let name = format!("my-{lang}-router");
    let out = hookyard(&["plugin", "new", &name, "--lang", lang], tmp.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = tmp.path().join(&name);
    let status = Command::new("bash")
        .arg(root.join("build.sh"))
        .env(env.0, env.1)
        .status()
        .unwrap();
    assert!(status.success(), "the generated {lang} skeleton builds");
    std::fs::write(tmp.path().join("body.json"), r#"{"hello":"world"}"#).unwrap();
    let wasm = format!("{name}/{name}.wasm");
    let out = hookyard(
        &[
            "plugin",
            "test",
            &wasm,
            "--event",
            "body.json",
            "--config",
            "target=orders",
            "--json",
        ],
        tmp.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v = json_of(&out);
    assert_eq!(v["result"]["outcome"], "deliver", "{v}");
    assert_eq!(v["result"]["deliveries"][0]["target"], "orders");
    assert_eq!(v["result"]["deliveries"][0]["headers"][0][1], name.as_str());
    std::fs::write(tmp.path().join("empty"), "").unwrap();
    let out = hookyard(
        &["plugin", "test", &wasm, "--event", "empty", "--json"],
        tmp.path(),
    );
    assert_eq!(json_of(&out)["result"]["reason"], "empty body");
}

#[test]
fn plugin_new_python_builds_and_passes_plugin_test() {
    let venv = repo_root().join("plugins/python/.venv");
    skeleton_builds_and_routes("python", ("HOOKYARD_PY_VENV", venv));
}

#[test]
fn plugin_new_js_builds_and_passes_plugin_test() {
    let modules = repo_root().join("plugins/js/node_modules");
    skeleton_builds_and_routes("js", ("HOOKYARD_JS_MODULES", modules));
}

#[test]
fn plugin_new_c_builds_and_passes_plugin_test() {
    let status = Command::new("bash")
        .arg(repo_root().join("scripts/build-c-plugins.sh"))
        .status()
        .unwrap();
    assert!(status.success());
    let tools = repo_root().join("plugins/c/.tools");
    skeleton_builds_and_routes("c", ("HOOKYARD_C_TOOLS", tools));
}

#[test]
fn plugin_test_shows_drops_failures_and_takes_event_descriptions() {
    let tmp = tempfile::tempdir().unwrap();
    let dist = built_plugins();
    let quickstart = dist.join("quickstart-router.wasm");
    let chaos = dist.join("chaos.wasm");
    let q = quickstart.to_str().unwrap();

    std::fs::write(tmp.path().join("ping.json"), r#"{"type":"ping"}"#).unwrap();
    let out = hookyard(
        &["plugin", "test", q, "--event", "ping.json", "--json"],
        tmp.path(),
    );
    assert!(out.status.success());
    assert_eq!(
        json_of(&out)["result"]["reason"],
        "ping events are not routed"
    );

    // A JSON event description: headers, source and body set explicitly.
    std::fs::write(
        tmp.path().join("event.json"),
        r#"{"source":"github","headers":{"X-GitHub-Event":"issues"},"body":{"type":"issue.opened"}}"#,
    )
    .unwrap();
    let out = hookyard(
        &[
            "plugin",
            "test",
            q,
            "--event",
            "event.json",
            "--config",
            "alerts_target=chat",
            "--json",
        ],
        tmp.path(),
    );
    let v = json_of(&out);
    let d = &v["result"]["deliveries"][0];
    assert_eq!(d["target"], "chat");
    let body: Value = serde_json::from_str(d["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["text"], "issue.opened from github");
    assert_eq!(v["event"]["source"], "github");

    // Human output, and exit status 1 when the plugin fails.
    let out = hookyard(
        &[
            "plugin",
            "test",
            chaos.to_str().unwrap(),
            "--event",
            "ping.json",
            "--config",
            "mode=loop",
            "--timeout",
            "200ms",
        ],
        tmp.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAILED: plugin timed out: exceeded its time limit of 200ms"),
        "{text}"
    );

    let out = hookyard(&["plugin", "test", "missing.wasm"], tmp.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.wasm"));
}
