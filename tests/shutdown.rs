//! SIGTERM with a routing backlog: queued plugin calls are dropped (their
//! events keep their marks), the process exits within `shutdown_grace`, and
//! after a restart every acknowledged event is routed.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_within_the_grace_period_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    install_plugin(&tmp.path().join("plugins"), "chaos", "slow");
    let sink = Sink::start(vec![]).await;
    let config = format!(
        "{}\n[plugins.slow]\ntimeout = \"5s\"\nconfig = {{ target = \"sink\" }}\n\n\
         [sources.s]\nplugins = [\"slow\"]\n\n\
         [targets.sink]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n",
        server_section(tmp.path()).replace("[server]\n", "[server]\nshutdown_grace = \"2s\"\n"),
        sink.url("/in"),
    );
    let hy = Hookyard::start(tmp.path(), &config);
    // 100 events of 300 ms each on two runners: ~15 s of routing queued.
    let mut ids = Vec::new();
    for i in 0..100 {
        ids.push(
            hy.send("s", &json!({"mode": "slow", "ms": 300, "i": i}).to_string())
                .await,
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || hy.sigterm(Duration::from_secs(20)))
        .await
        .unwrap();
    let took = started.elapsed();
    eprintln!("exit {status:?} {took:?} after SIGTERM with a queued backlog");
    assert!(status.success(), "{status:?}");
    // Before: 34 s here (every queued call ran, results thrown away).
    assert!(
        took < Duration::from_millis(3500),
        "SIGTERM took {took:?} with shutdown_grace = 2s"
    );
    let before_restart = sink.received().len();
    assert!(
        before_restart < 50,
        "{before_restart} delivered before the stop"
    );

    // Restart: every event is routed and delivered.
    let hy = Hookyard::start(tmp.path(), &config);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let seen: std::collections::BTreeSet<u64> = sink
            .received()
            .iter()
            .map(|r| r.json()["i"].as_u64().unwrap())
            .collect();
        if seen.len() == ids.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} delivered",
            seen.len(),
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for id in ids.iter().step_by(37) {
        assert_eq!(hy.event(id).await["status"], "routed");
    }
}
