//! What one event, one plugin or one backlog can make the router hold:
//! fan-out, reasons, log lines and KV keys are bounded with a clear reason,
//! and a backlog larger than memory stays on disk (restart included).

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;

fn config(dir: &std::path::Path, plugins_extra: &str, sink: &Sink) -> String {
    format!(
        "{}{plugins_extra}\n\
         [plugins.bomb]\nconfig = {{ target = \"sink\" }}\n\n\
         [sources.s]\nplugins = [\"bomb\"]\n\
         [sources.pass]\ntargets = [\"sink\"]\n\n\
         [targets.sink]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n",
        server_section(dir),
        sink.url("/in"),
    )
}

async fn settled(hy: &Hookyard, id: &str) -> Value {
    hy.wait_event(id, Duration::from_secs(60), |v| v["status"] != "pending")
        .await
}

fn reason(v: &Value) -> String {
    v["outcome"]["plugins"][0]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_bomb_fails_its_event_with_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    install_plugin(&tmp.path().join("plugins"), "chaos", "bomb");
    let sink = Sink::start(vec![]).await;
    // A memory limit large enough for the plugin to build its answer: what
    // is measured is what the host makes of it.
    let hy = Hookyard::start(
        tmp.path(),
        &config(tmp.path(), "memory = \"256MiB\"\n", &sink),
    );
    // Warm up (instances, buffers), then measure from there.
    let warm = hy
        .send("s", &json!({"mode": "fanout", "n": 3}).to_string())
        .await;
    assert_eq!(settled(&hy, &warm).await["status"], "routed");
    let (before, _) = memory_mib(hy.pid());

    let id = hy
        .send("s", &json!({"mode": "fanout", "n": 100_000}).to_string())
        .await;
    let v = settled(&hy, &id).await;
    assert_eq!(v["status"], "failed", "{v:#}");
    let why = reason(&v);
    assert!(
        why.contains("100000 deliveries") && why.contains("limit is 1000"),
        "{why}"
    );
    assert_eq!(v["deliveries"], json!([]));
    let (after, peak) = memory_mib(hy.pid());
    eprintln!("fan-out of 100 000: RSS {before:.0} -> {after:.0} MiB, peak {peak:.0} MiB");
    // Before the bound: 0.10 -> 1.83 GB for this event.
    assert!(
        after - before < 150.0,
        "RSS grew {:.0} MiB for one refused event",
        after - before
    );

    // Nothing else is affected: at the bound it routes, and other sources
    // deliver.
    let ok = hy
        .send("s", &json!({"mode": "fanout", "n": 1000}).to_string())
        .await;
    let v = settled(&hy, &ok).await;
    assert_eq!(v["status"], "routed");
    assert_eq!(v["outcome"]["deliveries_total"], 1000);
    hy.send("pass", "{}").await;
    sink.wait_for(1001, Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fan_out_bound_and_outcome_size_are_configurable_per_plugin() {
    let tmp = tempfile::tempdir().unwrap();
    install_plugin(&tmp.path().join("plugins"), "chaos", "bomb");
    let sink = Sink::start(vec![]).await;
    let text = config(tmp.path(), "", &sink).replace(
        "[plugins.bomb]\n",
        "[plugins.bomb]\nmax_deliveries = 5\nmax_outcome_size = \"1KiB\"\n",
    );
    let hy = Hookyard::start(tmp.path(), &text);
    let id = hy
        .send("s", &json!({"mode": "fanout", "n": 6}).to_string())
        .await;
    assert!(reason(&settled(&hy, &id).await).contains("limit is 5 (plugins.bomb.max_deliveries)"));
    let big = "x".repeat(2000);
    let id = hy
        .send(
            "s",
            &json!({"mode": "headers", "headers": [["x-big", big]]}).to_string(),
        )
        .await;
    let why = reason(&settled(&hy, &id).await);
    assert!(why.contains("plugins.bomb.max_outcome_size"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_reasons_logs_and_keys_are_cut_or_refused() {
    let tmp = tempfile::tempdir().unwrap();
    install_plugin(&tmp.path().join("plugins"), "chaos", "bomb");
    let sink = Sink::start(vec![]).await;
    let hy = Hookyard::start(tmp.path(), &config(tmp.path(), "", &sink));
    let mb20 = 20 * 1024 * 1024;

    // A 20 MB drop reason and a 20 MB error: stored and logged cut, with a
    // marker saying how much.
    for mode in ["bigdrop", "bigerror"] {
        let id = hy
            .send("s", &json!({"mode": mode, "n": mb20}).to_string())
            .await;
        let v = settled(&hy, &id).await;
        let why = reason(&v);
        assert!(
            why.len() < 5000,
            "{mode}: reason of {} bytes kept",
            why.len()
        );
        assert!(
            why.contains("more bytes cut]"),
            "{mode}: {}",
            &why[why.len() - 60..]
        );
    }

    // 100 000 log lines of 1 KiB within one call: 100 written, the rest
    // counted.
    let log_before = hy.log_text().len();
    let id = hy
        .send("s", &json!({"mode": "logflood", "n": 100_000}).to_string())
        .await;
    assert_eq!(settled(&hy, &id).await["status"], "routed");
    let logged = hy.log_text().len() - log_before;
    assert!(logged < 1024 * 1024, "one call logged {logged} bytes");
    let metrics = hy.admin_text("/metrics").await;
    let cut = metrics
        .lines()
        .find(|l| l.starts_with("hookyard_plugin_log_lines_cut_total{plugin=\"bomb\"}"))
        .unwrap_or_else(|| panic!("no log cut counter in:\n{metrics}"));
    // 100 001 lines in all (the plugin's own debug line too); at most 100
    // (64 KiB) written.
    let cut: u64 = cut.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((99_901..=100_000).contains(&cut), "{cut} lines cut");

    // A 20 MB KV key fails the event with the reason.
    let id = hy
        .send("s", &json!({"mode": "bigkey", "n": mb20}).to_string())
        .await;
    let v = settled(&hy, &id).await;
    assert_eq!(v["status"], "failed");
    assert!(
        reason(&v).contains("kv-set: a key of 20971520 bytes is longer than the 1024-byte limit"),
        "{}",
        reason(&v)
    );
    assert!(hy.log_text().len() - log_before < 2 * 1024 * 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_events_deliveries_are_paged() {
    let tmp = tempfile::tempdir().unwrap();
    install_plugin(&tmp.path().join("plugins"), "chaos", "bomb");
    let sink = Sink::start(vec![]).await;
    let text = config(tmp.path(), "", &sink).replace(
        "[plugins.bomb]\n",
        "[plugins.bomb]\nmax_deliveries = 2500\n",
    );
    let hy = Hookyard::start(tmp.path(), &text);
    let id = hy
        .send("s", &json!({"mode": "fanout", "n": 2500}).to_string())
        .await;
    let first = settled(&hy, &id).await;
    assert_eq!(first["deliveries"].as_array().unwrap().len(), 100);
    assert_eq!(first["outcome"]["deliveries_total"], 2500);
    let mut seen: std::collections::BTreeSet<String> = first["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    let mut cursor = first["deliveries_next_cursor"].as_str().map(str::to_string);
    while let Some(c) = cursor {
        let (status, page) = hy
            .admin_get(&format!(
                "/admin/events/{id}?deliveries_limit=1000&deliveries_cursor={c}"
            ))
            .await;
        assert_eq!(status, 200, "{page}");
        let items = page["deliveries"].as_array().unwrap();
        assert!(!items.is_empty() && items.len() <= 1000);
        for d in items {
            assert!(seen.insert(d["id"].as_str().unwrap().to_string()));
        }
        cursor = page["deliveries_next_cursor"].as_str().map(str::to_string);
    }
    assert_eq!(seen.len(), 2500);
    let (status, _) = hy
        .admin_get(&format!("/admin/events/{id}?deliveries_limit=0"))
        .await;
    assert_eq!(status, 400);
}

/// A plugin slower than ingest: the backlog stays on disk, not in RAM, while
/// it builds up and after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_slow_backlog_stays_on_disk_across_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    install_plugin(&tmp.path().join("plugins"), "chaos", "bomb");
    let sink = Sink::start(vec![]).await;
    let text = config(tmp.path(), "", &sink)
        .replace("[sources.s]\n", "[sources.s]\nmax_body = \"1MiB\"\n");
    const EVENTS: usize = 800;
    const SIZE: usize = 900 * 1024;
    let backlog_mib = (EVENTS * SIZE) as f64 / (1024.0 * 1024.0);
    let body = |i: usize| {
        let mut b = json!({"mode": "slow", "ms": 50, "i": i, "pad": ""}).to_string();
        let pad = SIZE - b.len();
        b.insert_str(b.len() - 2, &"p".repeat(pad));
        b
    };
    let hy = Hookyard::start(tmp.path(), &text);
    let mut ids = Vec::new();
    for i in 0..EVENTS {
        ids.push(hy.send("s", &body(i)).await);
    }
    let (rss, peak) = memory_mib(hy.pid());
    eprintln!("backlog of {backlog_mib:.0} MiB accepted: RSS {rss:.0} MiB, peak {peak:.0} MiB");
    assert!(
        peak < backlog_mib / 2.0,
        "peak RSS {peak:.0} MiB while {backlog_mib:.0} MiB waited for a slow plugin"
    );
    hy.kill9();

    // Restart: the backlog is read back a page at a time.
    let hy = Hookyard::start(tmp.path(), &text);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss, peak) = memory_mib(hy.pid());
    eprintln!("restarted with the backlog: RSS {rss:.0} MiB, peak {peak:.0} MiB");
    assert!(
        peak < backlog_mib / 2.0,
        "peak RSS {peak:.0} MiB after a restart with {backlog_mib:.0} MiB waiting"
    );
    // And it drains: every event routed and delivered (an event whose
    // routing the kill cut off may be delivered twice: at least once).
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        let seen: std::collections::BTreeSet<u64> = sink
            .received()
            .iter()
            .map(|r| r.json()["i"].as_u64().unwrap())
            .collect();
        if seen.len() == EVENTS {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {EVENTS} events delivered",
            seen.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for id in ids.iter().step_by(97) {
        assert_eq!(hy.event(id).await["status"], "routed");
    }
}
