//! Plugin KV state under concurrency and crashes: a plugin that counts its
//! events with a plain read-add-write hands out exactly 1..N, in Rust,
//! Python and JavaScript, with 16 concurrent senders and across a kill -9;
//! a call that fails after a write leaves nothing behind; operators can
//! list, read and delete keys.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::admin::poll;
use support::*;

const SENDERS: usize = 16;

/// Sends `n` events to `source` from [`SENDERS`] concurrent senders;
/// returns the acknowledged ids.
async fn send_concurrently(hy: &Hookyard, source: &str, n: usize) -> Vec<String> {
    let url = format!("{}/hooks/{source}", hy.public);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..SENDERS {
        let (url, next) = (url.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut acked = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return acked;
                }
                let r = http
                    .post(&url)
                    .body(json!({ "i": i }).to_string())
                    .send()
                    .await;
                if let Ok(r) = r
                    && r.status() == 202
                {
                    let v: Value = r.json().await.unwrap();
                    acked.push(v["id"].as_str().unwrap().to_string());
                }
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

/// The `x-count` numbers the sink saw on `path`, one per delivery
/// (`webhook-id`): a delivery retried after a crash is counted once.
fn counts(sink: &Sink, path: &str) -> Vec<u64> {
    let by_delivery: BTreeMap<String, u64> = sink
        .received_on(path)
        .iter()
        .map(|r| {
            (
                r.header("webhook-id").unwrap().to_string(),
                r.header("x-count").unwrap().parse().unwrap(),
            )
        })
        .collect();
    let mut counts: Vec<u64> = by_delivery.into_values().collect();
    counts.sort_unstable();
    counts
}

fn config(dir: &std::path::Path, sink: &Sink) -> String {
    let mut c = server_section(dir);
    c.push_str(&shared_cache());
    for lang in ["rust", "python", "js"] {
        c.push_str(&format!(
            "[plugins.count-{lang}]\nconfig = {{ target = \"{lang}\" }}\n"
        ));
    }
    for lang in ["rust", "python", "js"] {
        c.push_str(&format!(
            "[sources.{lang}]\nplugins = [\"count-{lang}\"]\n[targets.{lang}]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n",
            sink.url(&format!("/{lang}"))
        ));
    }
    c
}

fn install_counters(dir: &std::path::Path) {
    let plugins = dir.join("plugins");
    install_plugin(&plugins, "counter", "count-rust");
    install_plugin(&plugins, "counter-python", "count-python");
    install_plugin(&plugins, "counter-js", "count-js");
}

async fn kv_count(hy: &Hookyard, plugin: &str) -> Option<u64> {
    let (status, v) = hy
        .admin_get(&format!("/admin/plugins/{plugin}/kv/count"))
        .await;
    (status == 200).then(|| v["value"]["text"].as_str().unwrap().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_counting_hands_out_exactly_one_to_n_in_every_language() {
    let tmp = tempfile::tempdir().unwrap();
    install_counters(tmp.path());
    let sink = Sink::start(vec![]).await;
    let hy = Hookyard::start(tmp.path(), &config(tmp.path(), &sink));
    for (lang, n) in [("rust", 1500), ("python", 1000), ("js", 1000)] {
        let started = Instant::now();
        let acked = send_concurrently(&hy, lang, n).await;
        assert_eq!(acked.len(), n, "{lang}: every request acknowledged");
        poll(Duration::from_secs(120), lang, async || {
            let c = counts(&sink, &format!("/{lang}"));
            if c.len() >= n {
                Ok(())
            } else {
                Err(format!(
                    "{} of {n} delivered; log tail: {}",
                    c.len(),
                    hy.log_text()
                        .lines()
                        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                        .take(5)
                        .collect::<Vec<_>>()
                        .join("\n")
                ))
            }
        })
        .await;
        let c = counts(&sink, &format!("/{lang}"));
        assert_eq!(
            c,
            (1..=n as u64).collect::<Vec<_>>(),
            "{lang}: counts handed out"
        );
        assert_eq!(
            kv_count(&hy, &format!("count-{lang}")).await,
            Some(n as u64)
        );
        let plugins = hy.admin_json("/admin/plugins").await;
        let conflicts = plugins["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == format!("count-{lang}"))
            .map(|p| p["stats"]["kv_conflicts"].clone());
        eprintln!(
            "{lang}: {n} events from {SENDERS} senders counted 1..{n} in {:?}; runs repeated for KV conflicts: {conflicts:?}",
            started.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_counting_loses_no_count_and_applies_none_twice() {
    let tmp = tempfile::tempdir().unwrap();
    install_counters(tmp.path());
    let sink = Sink::start(vec![]).await;
    let text = config(tmp.path(), &sink);
    let hy = Hookyard::start(tmp.path(), &text);
    let public = hy.public.clone();
    // Load on the Rust counter; the kill lands in the middle of it.
    let sender = tokio::spawn({
        let url = format!("{public}/hooks/rust");
        async move {
            let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let mut tasks = Vec::new();
            for _ in 0..SENDERS {
                let (url, next) = (url.clone(), next.clone());
                tasks.push(tokio::spawn(async move {
                    let http = reqwest::Client::new();
                    let mut acked = Vec::new();
                    while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 3000 {
                        match http.post(&url).body("{}").send().await {
                            Ok(r) if r.status() == 202 => {
                                let v: Value = r.json().await.unwrap();
                                acked.push(v["id"].as_str().unwrap().to_string());
                            }
                            Ok(_) => {}
                            // The router is gone: stop.
                            Err(_) => return acked,
                        }
                    }
                    acked
                }));
            }
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.unwrap());
            }
            all
        }
    });
    poll(Duration::from_secs(60), "some deliveries", async || {
        let n = sink.received_on("/rust").len();
        if n >= 300 {
            Ok(())
        } else {
            Err(format!("{n}"))
        }
    })
    .await;
    hy.kill9();
    let acked = sender.await.unwrap();
    let delivered_before = counts(&sink, "/rust").len();
    eprintln!(
        "kill -9 after {} acknowledged events, {delivered_before} counted",
        acked.len()
    );
    assert!(acked.len() < 3000, "the kill did not interrupt the load");

    let hy = Hookyard::start(tmp.path(), &text);
    // Every acknowledged event is routed after the restart.
    for id in &acked {
        hy.wait_event(id, Duration::from_secs(120), |v| v["status"] == "routed")
            .await;
    }
    // Events stored but cut off before their 202 may be routed too: the
    // count is over every routed event, whatever its sender saw.
    let n = poll(Duration::from_secs(60), "the count settles", async || {
        let routed = kv_count(&hy, "count-rust").await.unwrap_or(0);
        let c = counts(&sink, "/rust");
        if c.len() as u64 == routed {
            Ok(routed)
        } else {
            Err(format!("kv {routed}, delivered {}", c.len()))
        }
    })
    .await;
    let c = counts(&sink, "/rust");
    assert_eq!(c, (1..=n).collect::<Vec<_>>(), "counts after the crash");
    assert!(n as usize >= acked.len());
    let duplicates = sink.received_on("/rust").len() - c.len();
    eprintln!(
        "after restart: {n} routed events counted exactly 1..{n}; {duplicates} deliveries re-sent (same webhook-id)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_call_leaves_no_write_and_operators_can_see_and_delete_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = tmp.path().join("plugins");
    install_plugin(&plugins, "chaos", "chaos");
    install_plugin(&plugins, "counter", "count-rust");
    let sink = Sink::start(vec![]).await;
    let config = format!(
        "{}[plugins.count-rust]\nconfig = {{ target = \"sink\" }}\n\
         [sources.chaos]\nplugins = [\"chaos\"]\n\
         [sources.count]\nplugins = [\"count-rust\"]\n\
         [targets.sink]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n",
        server_section(tmp.path()),
        sink.url("/in"),
    );
    let hy = Hookyard::start(tmp.path(), &config);
    for mode in ["settrap", "seterror"] {
        let id = hy.send("chaos", &json!({ "mode": mode }).to_string()).await;
        let v = hy
            .wait_event(&id, Duration::from_secs(20), |v| v["status"] != "pending")
            .await;
        assert_eq!(v["status"], "failed", "{v:#}");
    }
    let (status, v) = hy.admin_get("/admin/plugins/chaos/kv/left-behind").await;
    assert_eq!(status, 404, "a failed call's write was kept: {v}");
    let keys = hy.admin_json("/admin/plugins/chaos/kv").await;
    assert_eq!(keys["keys"], json!([]), "{keys}");

    for _ in 0..3 {
        hy.send("count", "{}").await;
    }
    sink.wait_for(3, Duration::from_secs(20)).await;
    let keys = hy.admin_json("/admin/plugins/count-rust/kv").await;
    assert_eq!(
        keys["keys"],
        json!([{ "key": "count", "size": 1 }]),
        "{keys}"
    );
    assert_eq!(kv_count(&hy, "count-rust").await, Some(3));
    let r = reqwest::Client::new()
        .delete(format!("{}/admin/plugins/count-rust/kv/count", hy.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(kv_count(&hy, "count-rust").await, None);
    // The count starts again from the delete.
    hy.send("count", "{}").await;
    let got = sink.wait_for(4, Duration::from_secs(20)).await;
    let last: BTreeSet<&str> = got.iter().filter_map(|r| r.header("x-count")).collect();
    assert!(last.contains("1") && last.contains("3"), "{last:?}");
    assert_eq!(kv_count(&hy, "count-rust").await, Some(1));
}

/// A key changed under a running call (here by an operator's delete) makes
/// the call's result stale: it is thrown away and the plugin runs again on
/// the new state, so the outcome is as if the delete came first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_read_changed_runs_again_on_fresh_state() {
    let tmp = tempfile::tempdir().unwrap();
    install_plugin(&tmp.path().join("plugins"), "chaos", "slow");
    let sink = Sink::start(vec![]).await;
    let config = format!(
        "{}[plugins.slow]\nconfig = {{ target = \"sink\" }}\n\
         [sources.s]\nplugins = [\"slow\"]\n\
         [targets.sink]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n",
        server_section(tmp.path()),
        sink.url("/in"),
    );
    let hy = Hookyard::start(tmp.path(), &config);
    for _ in 0..3 {
        hy.send("s", &json!({"mode": "slowcount", "ms": 1}).to_string())
            .await;
    }
    sink.wait_for(3, Duration::from_secs(20)).await;
    assert_eq!(kv_count(&hy, "slow").await, Some(3));
    // This call reads 3, then sleeps; the delete lands while it sleeps.
    let id = hy
        .send("s", &json!({"mode": "slowcount", "ms": 800}).to_string())
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = reqwest::Client::new()
        .delete(format!("{}/admin/plugins/slow/kv/count", hy.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v = hy.wait_event(&id, Duration::from_secs(30), delivered).await;
    assert_eq!(v["status"], "routed");
    let got = sink.wait_for(4, Duration::from_secs(20)).await;
    assert_eq!(
        got[3].header("x-count"),
        Some("1"),
        "ran again after the delete"
    );
    assert_eq!(kv_count(&hy, "slow").await, Some(1));
    let plugins = hy.admin_json("/admin/plugins").await;
    assert_eq!(
        plugins["plugins"][0]["stats"]["kv_conflicts"], 1,
        "{plugins:#}"
    );
    let metrics = hy.admin_text("/metrics").await;
    assert!(
        metrics.contains("hookyard_plugin_kv_conflicts_total{plugin=\"slow\"} 1"),
        "{metrics}"
    );
}
