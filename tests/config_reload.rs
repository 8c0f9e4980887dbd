//! The config of a running router changes without a restart: `SIGHUP`,
//! `hookyard reload`, `POST /admin/config/reload` and a watched file, under
//! steady traffic. Every webhook is answered 202 and delivered, a new
//! source is live within 3 s, a broken file changes nothing and says which
//! key is wrong, restart-only keys are reported, and a removed target's
//! waiting deliveries stay visible (dead-lettered, retryable).

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::Digest;
use support::*;

fn write_config(dir: &Path, text: &str) {
    // As deploy tools do: write aside, then rename over the file.
    let tmp = dir.join("hookyard.toml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join("hookyard.toml")).unwrap();
}

fn sighup(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn file_sha256(dir: &Path) -> String {
    let bytes = std::fs::read(dir.join("hookyard.toml")).unwrap();
    sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Posts to `source` until it is answered 202; how long that took.
async fn live_within(hy: &Hookyard, source: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let (status, _) = hy.post(source, r#"{"probe":true}"#).await;
        if status == 202 {
            return started.elapsed();
        }
        assert_eq!(status, 404, "unexpected answer while waiting for {source}");
        assert!(
            started.elapsed() < limit,
            "source {source} not live after {limit:?}; log:\n{}",
            hy.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reloads_under_steady_traffic_lose_nothing_and_apply_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![]).await;
    let base = server_section(dir.path());
    let v1 = format!(
        "{base}\n[sources.a]\ntargets = [\"t1\"]\n\n\
         [targets.t1]\nurl = \"{}\"\nsecret = \"{SECRET}\"\nheaders = {{ x-config = \"1\" }}\n",
        sink.url("/t1"),
    );
    let hy = Arc::new(Hookyard::start(dir.path(), &v1));
    let (_, shown) = hy.admin_get("/admin/config").await;
    assert_eq!(shown["config"]["sha256"], file_sha256(dir.path()));
    assert_eq!(shown["config"]["reloads"], 0);

    // Steady traffic on source a through everything below.
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for w in 0..4 {
        let (hy, stop) = (hy.clone(), stop.clone());
        senders.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let body = format!(r#"{{"n":"{w}-{n}"}}"#);
                let (status, v) = hy.post("a", body).await;
                assert_eq!(status, 202, "a webhook was refused during a reload: {v}");
                sent.push(format!("{w}-{n}"));
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            sent
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // 1. SIGHUP: a new source and target; live within 3 s.
    let v2 = format!(
        "{v1}\n[sources.b]\ntargets = [\"t2\"]\n\n[targets.t2]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n",
        sink.url("/t2"),
    );
    write_config(dir.path(), &v2);
    sighup(hy.pid());
    let took = live_within(&hy, "b", Duration::from_secs(3)).await;
    println!("new source live {took:?} after SIGHUP");
    sink.wait_for_path("/t2", 1, Duration::from_secs(10)).await;

    // 2. A broken file: refused with the key at fault, nothing changes.
    let broken = format!("{v2}\n[targets.t3]\nurl = \"not a url\"\n");
    write_config(dir.path(), &broken);
    let (status, v) = hy.admin_post("/admin/config/reload", Value::Null).await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["code"], "config_invalid");
    let error = v["error"].as_str().unwrap();
    assert!(error.contains("targets.t3.url"), "{error}");
    let (_, shown) = hy.admin_get("/admin/config").await;
    assert!(
        shown["config"]["last_refused"]["error"]
            .as_str()
            .unwrap()
            .contains("targets.t3.url"),
        "{shown}"
    );
    assert_eq!(shown["config"]["reloads"], 1);
    let metrics = hy.admin_text("/metrics").await;
    assert_eq!(
        metric(&metrics, "hookyard_config_last_reload_successful"),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &metrics,
            "hookyard_config_reloads_total{result=\"refused\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(hy.log_text().contains("targets.t3.url"));
    let (status, _) = hy.post("b", "{}").await;
    assert_eq!(status, 202, "the running config was kept");

    // 3. `hookyard reload`: a changed target header applies to the next
    // deliveries; a changed listen address is reported, not applied.
    let v3 = v2.replace("x-config = \"1\"", "x-config = \"2\"").replace(
        "listen = \"127.0.0.1:0\"\nadmin_listen",
        "listen = \"127.0.0.1:1\"\nadmin_listen",
    );
    assert_ne!(v3, v2);
    write_config(dir.path(), &v3);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookyard"))
        .args(["reload", "--admin", &hy.admin])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("targets.t1: changed"), "{stdout}");
    assert!(stdout.contains("server.listen"), "{stdout}");
    let (_, shown) = hy.admin_get("/admin/config").await;
    assert_eq!(shown["config"]["sha256"], file_sha256(dir.path()));
    assert_eq!(shown["config"]["needs_restart"][0], "server.listen");
    let metrics = hy.admin_text("/metrics").await;
    assert_eq!(
        metric(&metrics, "hookyard_config_last_reload_successful"),
        Some(1.0)
    );
    let marker = hy.send("a", r#"{"n":"after-v3"}"#).await;
    let got = sink
        .wait_until(Duration::from_secs(10), |r| {
            r.iter().any(|r| r.json()["n"] == "after-v3")
        })
        .await;
    let after = got.iter().find(|r| r.json()["n"] == "after-v3").unwrap();
    assert_eq!(after.header("x-config"), Some("2"), "event {marker}");
    // The running process still listens where it did.
    let (status, _) = hy.post("a", "{}").await;
    assert_eq!(status, 202);

    // 4. A failing reload through the CLI exits non-zero.
    write_config(dir.path(), &broken);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookyard"))
        .args(["reload", "--admin", &hy.admin])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("targets.t3.url"));

    // Every webhook sent during all of it is delivered.
    stop.store(true, Ordering::SeqCst);
    let mut sent = BTreeSet::new();
    for s in senders {
        sent.extend(s.await.unwrap());
    }
    assert!(sent.len() > 50, "too little traffic: {}", sent.len());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got: BTreeSet<String> = sink
            .received_on("/t1")
            .iter()
            .filter_map(|r| r.json()["n"].as_str().map(str::to_string))
            .collect();
        let missing: Vec<&String> = sent.difference(&got).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} never delivered, e.g. {:?}",
            missing.len(),
            sent.len(),
            &missing[..missing.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("{} webhooks through 4 reloads, all delivered", sent.len());
}

#[tokio::test]
async fn a_removed_target_keeps_its_deliveries_visible_and_retryable() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![]).await;
    let down = format!("http://127.0.0.1:{CLOSED_PORT}/");
    let base = server_section(dir.path());
    let with = |url: &str| {
        format!(
            "{base}\n[sources.s]\ntargets = [\"gone\"]\n\n\
             [targets.gone]\nurl = \"{url}\"\nretry_schedule = [\"1h\"]\n"
        )
    };
    let hy = Hookyard::start(dir.path(), &with(&down));
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(hy.send("s", &format!(r#"{{"i":{i}}}"#)).await);
    }
    // Each tried once and waiting an hour for the next attempt.
    for id in &ids {
        hy.wait_event(id, Duration::from_secs(10), |v| {
            v["deliveries"][0]["attempts"]
                .as_u64()
                .is_some_and(|n| n >= 1)
        })
        .await;
    }

    // Removed: the source names no target, the target is gone.
    write_config(dir.path(), &format!("{base}\n[sources.s]\ntargets = []\n"));
    let (status, v) = hy.admin_post("/admin/config/reload", Value::Null).await;
    assert_eq!(status, 200, "{v}");
    assert!(
        v["changes"]
            .as_array()
            .unwrap()
            .contains(&Value::from("targets.gone: removed")),
        "{v}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, dead) = hy.admin_get("/admin/deliveries?status=dead").await;
        let n = dead["deliveries"].as_array().map_or(0, Vec::len);
        if n == 3 {
            for d in dead["deliveries"].as_array().unwrap() {
                assert_eq!(d["target"], "gone");
            }
            break;
        }
        assert!(Instant::now() < deadline, "not dead-lettered: {dead}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, targets) = hy.admin_get("/admin/targets").await;
    assert_eq!(targets["targets"].as_array().unwrap().len(), 0);

    // The target comes back, reachable this time: a bulk retry delivers all.
    write_config(dir.path(), &with(&sink.url("/back")));
    let (status, v) = hy.admin_post("/admin/config/reload", Value::Null).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = hy
        .admin_post(
            "/admin/deliveries/retry",
            serde_json::json!({ "status": "dead", "target": "gone" }),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["retried"], 3, "{v}");
    for id in &ids {
        hy.wait_event(id, Duration::from_secs(10), delivered).await;
    }
    assert_eq!(sink.received_on("/back").len(), 3);
}

#[tokio::test]
async fn a_watched_file_brings_a_new_plugin_source_live_and_plugin_settings_apply() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![]).await;
    let base = server_section(dir.path()).replace("[server]\n", "[server]\nwatch_config = true\n")
        + &shared_cache();
    let targets = format!(
        "[targets.x]\nurl = \"{}\"\n[targets.y]\nurl = \"{}\"\n",
        sink.url("/x"),
        sink.url("/y")
    );
    let hy = Hookyard::start(dir.path(), &format!("{base}\n{targets}"));

    // A new source with a plugin: edit the file, drop the component in.
    let with_plugin = |to: &str| {
        format!(
            "{base}\n[plugins.router]\nconfig = {{ mode = \"ok\", target = \"{to}\" }}\n\n\
             [sources.new]\nplugins = [\"router\"]\n\n{targets}"
        )
    };
    let started = Instant::now();
    write_config(dir.path(), &with_plugin("x"));
    install_plugin(&dir.path().join("plugins"), "chaos", "router");
    let took = live_within(&hy, "new", Duration::from_secs(10)).await;
    sink.wait_for_path("/x", 1, Duration::from_secs(10)).await;
    println!(
        "file edit to first delivery through the new plugin: {:?} (source live after {took:?})",
        started.elapsed()
    );

    // The plugin's settings change: its next events go to y.
    write_config(dir.path(), &with_plugin("y"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, v) = hy.admin_get("/admin/config").await;
        if v["config"]["sha256"] == file_sha256(dir.path()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the file change was not picked up: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    hy.send("new", "{}").await;
    sink.wait_for_path("/y", 1, Duration::from_secs(10)).await;
    let (_, v) = hy.admin_get("/admin/config").await;
    assert_eq!(v["config"]["reloads"], 2, "{v}");
}
