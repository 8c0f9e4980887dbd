//! The plugin directory is live: replace, break, fix, remove and restore a
//! plugin while events stream in; nothing is lost, nothing fails, and the
//! compiled cache makes a restart skip compilation.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

/// Replaces `dir/name.wasm` the way deploy tools do: write aside, rename.
fn replace_atomically(dir: &Path, built: &str, name: &str) {
    let tmp = dir.join(format!(".{name}.wasm.tmp"));
    std::fs::copy(built_plugins().join(format!("{built}.wasm")), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join(format!("{name}.wasm"))).unwrap();
}

async fn wait_status(hy: &Hookyard, name: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = hy.plugin_status(name).await;
        if done(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "plugin status never matched: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn config(dir: &Path, sink: &Sink) -> String {
    // Version A (chaos) sends everything to target "a"; version B
    // (quickstart-router) sends order.* to "b". The same config serves both.
    format!(
        "{}\n[plugins.p]\nconfig = {{ target = \"a\", orders_target = \"b\", alerts_target = \"b\" }}\n\n\
         [sources.s]\nplugins = [\"p\"]\n\n\
         [targets.a]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n\
         [targets.b]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n",
        server_section(dir),
        sink.url("/a"),
        sink.url("/b"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_a_plugin_under_load_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = tmp.path().join("plugins");
    install_plugin(&plugins, "chaos", "p");
    let sink = Sink::start(vec![]).await;
    let hy = Hookyard::start(tmp.path(), &config(tmp.path(), &sink));

    // Four clients stream events until told to stop (bounded: 20 000 max).
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut clients = vec![];
    for _ in 0..4 {
        let (stop, next) = (stop.clone(), next.clone());
        let url = format!("{}/hooks/s", hy.public);
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut sent = vec![];
            while !stop.load(Ordering::SeqCst) {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= 20_000 {
                    break;
                }
                let at = started.elapsed();
                let body = format!(r#"{{"type":"order.paid","n":{n}}}"#);
                let r = http.post(&url).body(body).send().await.unwrap();
                assert_eq!(r.status(), 202, "no request fails during a reload");
                sent.push((n, at));
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            sent
        }));
    }

    tokio::time::sleep(Duration::from_millis(500)).await;
    let swapped_at = started.elapsed();
    replace_atomically(&plugins, "quickstart-router", "p");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, Ordering::SeqCst);
    let mut sent = vec![];
    for c in clients {
        sent.extend(c.await.unwrap());
    }
    let total = sent.len();
    let got = sink.wait_for(total, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got_len = sink.received().len();
    assert_eq!(
        got_len, total,
        "each event delivered exactly once (one version ran it)"
    );

    let mut route: HashMap<u64, &str> = HashMap::new();
    for r in &got {
        let n = r.json()["n"].as_u64().unwrap();
        assert!(
            route.insert(n, &r.path).is_none(),
            "event {n} delivered twice"
        );
    }
    let mut on_a_after = 0;
    for (n, at) in &sent {
        let path = route.get(&(*n as u64)).copied().unwrap_or("missing");
        assert_ne!(path, "missing", "event {n} lost");
        if *at > swapped_at + Duration::from_secs(2) {
            assert_eq!(
                path, "/b",
                "event {n} sent {at:?} still ran the old version"
            );
        }
        if *at > swapped_at && path == "/a" {
            on_a_after += 1;
        }
    }
    let first_b = sent
        .iter()
        .filter(|(n, _)| route[&(*n as u64)] == "/b")
        .map(|(_, at)| *at)
        .min()
        .unwrap();
    eprintln!(
        "{total} events; new version first used {:?} after the swap; {on_a_after} events sent after the swap ran the old one",
        first_b.saturating_sub(swapped_at)
    );
    let s = hy.plugin_status("p").await;
    assert_eq!(s["status"], "ok");
    assert!(s["stats"]["calls"].as_u64().unwrap() >= total as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_file_keeps_the_last_good_version_and_removal_makes_events_wait() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = tmp.path().join("plugins");
    install_plugin(&plugins, "chaos", "p");
    let sink = Sink::start(vec![]).await;
    let hy = Hookyard::start(tmp.path(), &config(tmp.path(), &sink));
    let good = hy.plugin_status("p").await;
    let good_sha = good["serving"]["sha256"].as_str().unwrap().to_string();

    // A broken file written in place (not atomically).
    std::fs::write(
        plugins.join("p.wasm"),
        b"\0asm garbage that is not a component",
    )
    .unwrap();
    let s = wait_status(&hy, "p", |s| !s["last_error"].is_null()).await;
    assert_eq!(s["status"], "ok", "still serving: {s}");
    assert_eq!(s["serving"]["sha256"], good_sha.as_str());
    assert!(
        s["last_error"]["error"]
            .as_str()
            .unwrap()
            .contains("not a valid WebAssembly component")
    );
    assert_eq!(s["stats"]["load_failures"], 1);
    assert!(hy.log_text().contains("plugin failed to load"), "logged");
    let metrics = hy.admin_text("/metrics").await;
    assert!(
        metrics.contains("hookyard_plugin_load_failures_total{plugin=\"p\"} 1"),
        "{metrics}"
    );
    let id = hy.send("s", r#"{"type":"order.paid","n":1}"#).await;
    hy.wait_event(&id, Duration::from_secs(5), delivered).await;
    assert_eq!(sink.received_on("/a").len(), 1, "old version still routes");

    // A good file later is picked up.
    replace_atomically(&plugins, "quickstart-router", "p");
    let s = wait_status(&hy, "p", |s| s["serving"]["sha256"] != good_sha.as_str()).await;
    assert!(s["last_error"].is_null());
    let id = hy.send("s", r#"{"type":"order.paid","n":2}"#).await;
    hy.wait_event(&id, Duration::from_secs(5), delivered).await;
    assert_eq!(sink.received_on("/b").len(), 1);

    // Removed: events wait, visibly, then resume when it is back.
    std::fs::remove_file(plugins.join("p.wasm")).unwrap();
    wait_status(&hy, "p", |s| s["status"] == "waiting").await;
    let waiting = hy.send("s", r#"{"type":"order.paid","n":3}"#).await;
    let v = hy
        .wait_event(&waiting, Duration::from_secs(5), |v| {
            !v["pending_reason"].is_null()
        })
        .await;
    assert_eq!(v["status"], "pending");
    assert!(
        v["pending_reason"]
            .as_str()
            .unwrap()
            .contains("waiting for plugin \"p\"")
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.received().len(), 2, "nothing delivered while it waits");

    install_plugin(&plugins, "quickstart-router", "p");
    hy.wait_event(&waiting, Duration::from_secs(10), delivered)
        .await;
    assert_eq!(sink.received_on("/b").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_loads_plugins_from_the_compiled_cache() {
    let tmp = tempfile::tempdir().unwrap();
    install_plugin(&tmp.path().join("plugins"), "quickstart-router", "p");
    let sink = Sink::start(vec![]).await;
    let hy = Hookyard::start(tmp.path(), &config(tmp.path(), &sink));
    let cold = hy.plugin_status("p").await;
    assert_eq!(cold["serving"]["from_cache"], false);
    drop(hy);
    let hy = Hookyard::start(tmp.path(), &config(tmp.path(), &sink));
    let warm = hy.plugin_status("p").await;
    assert_eq!(warm["serving"]["from_cache"], true, "{warm}");
    assert_eq!(warm["serving"]["sha256"], cold["serving"]["sha256"]);
    eprintln!(
        "load cold {} ms, from cache {} ms",
        cold["serving"]["load_ms"], warm["serving"]["load_ms"]
    );
    let id = hy.send("s", r#"{"type":"order.paid","n":1}"#).await;
    hy.wait_event(&id, Duration::from_secs(5), delivered).await;
}
