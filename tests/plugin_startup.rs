//! Starting with plugins that are not (yet) where a source expects them:
//! a symlinked plugin loads like a file, and a missing or broken plugin
//! does not stop the router: sources that do not use it serve, its events
//! wait and are routed when it appears.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlinked_plugin_loads_and_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = tmp.path().join("plugins");
    // The usual deploy layout: versioned builds, the served name a link.
    let builds = tmp.path().join("builds");
    install_plugin(&builds, "chaos", "router-v1");
    std::fs::create_dir_all(&plugins).unwrap();
    std::os::unix::fs::symlink(builds.join("router-v1.wasm"), plugins.join("router.wasm")).unwrap();
    let sink = Sink::start(vec![]).await;
    let config = format!(
        "{}\n[plugins.router]\nconfig = {{ target = \"sink\" }}\n\n\
         [sources.s]\nplugins = [\"router\"]\n\n\
         [targets.sink]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n",
        server_section(tmp.path()),
        sink.url("/in"),
    );
    // `check` and the router agree about the link.
    std::fs::write(tmp.path().join("hookyard.toml"), &config).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookyard"))
        .args(["check", "--config"])
        .arg(tmp.path().join("hookyard.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let hy = Hookyard::start(tmp.path(), &config);
    let plugins_view = hy.admin_json("/admin/plugins").await;
    assert_eq!(
        plugins_view["plugins"][0]["status"], "ok",
        "{plugins_view:#}"
    );
    let id = hy.send("s", "{}").await;
    let v = hy
        .wait_event(&id, Duration::from_secs(20), |v| v["status"] != "pending")
        .await;
    assert_eq!(v["status"], "routed", "{v:#}");
    sink.wait_for(1, Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_broken_plugin_at_start_only_holds_its_own_events() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = tmp.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::write(plugins.join("broken.wasm"), b"not wasm at all").unwrap();
    let sink = Sink::start(vec![]).await;
    let config = format!(
        "{}\n[plugins.ghost]\nconfig = {{ target = \"sink\" }}\n\n\
         [sources.haunted]\nplugins = [\"ghost\"]\n\
         [sources.cracked]\nplugins = [\"broken\"]\n\
         [sources.plain]\ntargets = [\"sink\"]\n\n\
         [targets.sink]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n",
        server_section(tmp.path()),
        sink.url("/in"),
    );
    let hy = Hookyard::start(tmp.path(), &config);

    // The source without plugins serves.
    hy.send("plain", &json!({"n": 1}).to_string()).await;
    sink.wait_for(1, Duration::from_secs(20)).await;

    // Both plugins are reported, with why.
    let view = hy.admin_json("/admin/plugins").await;
    let by_name = |name: &str| {
        view["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not listed: {view:#}"))
    };
    let ghost = by_name("ghost");
    assert_eq!(ghost["status"], "missing", "{ghost:#}");
    assert!(
        ghost["last_error"]["error"]
            .as_str()
            .unwrap()
            .contains("ghost.wasm")
    );
    let broken = by_name("broken");
    assert_eq!(broken["status"], "failed", "{broken:#}");
    assert!(
        broken["last_error"]["error"]
            .as_str()
            .unwrap()
            .contains("not a valid WebAssembly component")
    );

    // Their events wait, saying why, and are routed once the plugin is there.
    let waiting = hy.send("haunted", &json!({"n": 2}).to_string()).await;
    let v = hy
        .wait_event(&waiting, Duration::from_secs(20), |v| {
            v["pending_reason"].is_string()
        })
        .await;
    assert!(
        v["pending_reason"].as_str().unwrap().contains("ghost"),
        "{v:#}"
    );
    install_plugin(&plugins, "chaos", "ghost");
    let v = hy
        .wait_event(&waiting, Duration::from_secs(30), |v| {
            v["status"] != "pending"
        })
        .await;
    assert_eq!(v["status"], "routed", "{v:#}");
    sink.wait_for(2, Duration::from_secs(20)).await;

    // `hookyard check` still refuses the config before a deploy.
    std::fs::remove_file(plugins.join("ghost.wasm")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookyard"))
        .args(["check", "--config"])
        .arg(tmp.path().join("hookyard.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("sources.haunted.plugins[0]: plugin \"ghost\" not found"),
        "{e}"
    );
}
