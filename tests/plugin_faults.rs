//! A plugin that traps, one that loops forever and one that allocates
//! without bound each fail their events, while a healthy plugin on another
//! source keeps delivering.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faulty_plugins_fail_their_events_and_the_router_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = tmp.path().join("plugins");
    for name in ["trapper", "looper", "hog", "healthy"] {
        install_plugin(&plugins, "chaos", name);
    }
    let sink = Sink::start(vec![]).await;
    let config = format!(
        "{}\n\
         [plugins.trapper]\nconfig = {{ mode = \"trap\" }}\n\
         [plugins.looper]\ntimeout = \"300ms\"\nconfig = {{ mode = \"loop\" }}\n\
         [plugins.hog]\nmemory = \"16MiB\"\nconfig = {{ mode = \"alloc\" }}\n\
         [plugins.healthy]\nconfig = {{ mode = \"ok\", target = \"sink\" }}\n\n\
         [sources.trap]\nplugins = [\"trapper\"]\n\
         [sources.loop]\nplugins = [\"looper\"]\n\
         [sources.alloc]\nplugins = [\"hog\"]\n\
         [sources.good]\nplugins = [\"healthy\"]\n\n\
         [targets.sink]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n",
        server_section(tmp.path()),
        sink.url("/good"),
    );
    let hy = Hookyard::start(tmp.path(), &config);

    let mut bad = vec![];
    let mut good = vec![];
    for round in 0..3 {
        for source in ["trap", "loop", "alloc"] {
            bad.push((
                source,
                hy.send(source, &json!({ "round": round }).to_string())
                    .await,
            ));
        }
        for i in 0..5 {
            good.push(
                hy.send("good", &json!({ "round": round, "i": i }).to_string())
                    .await,
            );
        }
    }
    // The healthy source delivers while the looping plugin burns its time.
    let started = Instant::now();
    sink.wait_for(good.len(), Duration::from_secs(20)).await;
    eprintln!("healthy deliveries done after {:?}", started.elapsed());

    for (source, id) in &bad {
        let v = hy
            .wait_event(id, Duration::from_secs(20), |v| v["status"] != "pending")
            .await;
        assert_eq!(v["status"], "failed", "{source}: {v}");
        let reason = v["outcome"]["plugins"][0]["reason"].as_str().unwrap();
        match *source {
            "trap" => {
                assert!(reason.starts_with("plugin trapped"), "{reason}");
                assert!(
                    reason.contains("chaos plugin trapping on purpose"),
                    "stderr kept: {reason}"
                );
            }
            "loop" => assert!(
                reason.contains("exceeded its time limit of 300ms"),
                "{reason}"
            ),
            "alloc" => assert!(reason.contains("exceeded its memory limit"), "{reason}"),
            _ => unreachable!(),
        }
        assert!(v["deliveries"].as_array().unwrap().is_empty());
    }
    for id in &good {
        hy.wait_event(id, Duration::from_secs(5), delivered).await;
    }
    // The router is still up and the plugins still work after their traps
    // (the instance that trapped was discarded, not reused).
    let id = hy.send("good", r#"{"after":"faults"}"#).await;
    hy.wait_event(&id, Duration::from_secs(5), delivered).await;
    let id = hy.send("trap", r#"{"mode":"drop"}"#).await;
    let v = hy
        .wait_event(&id, Duration::from_secs(5), |v| v["status"] != "pending")
        .await;
    assert_eq!(
        v["status"], "dropped",
        "body override picks another mode: {v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_error_or_unknown_target_fails_the_event() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = tmp.path().join("plugins");
    install_plugin(&plugins, "chaos", "errs");
    install_plugin(&plugins, "chaos", "typo");
    let sink = Sink::start(vec![]).await;
    let config = format!(
        "{}\n[plugins.errs]\nconfig = {{ mode = \"error\" }}\n[plugins.typo]\nconfig = {{ target = \"no-such-target\" }}\n\n\
         [sources.s]\nplugins = [\"errs\", \"typo\"]\ntargets = [\"sink\"]\n\n\
         [targets.sink]\nurl = \"{}\"\n",
        server_section(tmp.path()),
        sink.url("/"),
    );
    let hy = Hookyard::start(tmp.path(), &config);
    let id = hy.send("s", "{}").await;
    let v = hy
        .wait_event(&id, Duration::from_secs(10), |v| v["status"] != "pending")
        .await;
    assert_eq!(v["status"], "failed");
    let p = v["outcome"]["plugins"].as_array().unwrap();
    assert_eq!(
        p[0]["reason"],
        "plugin returned an error: chaos plugin asked to fail"
    );
    assert_eq!(
        p[1]["reason"],
        "plugin asked for target \"no-such-target\", which is not configured"
    );
    // The passthrough target still gets the event: plugins are independent.
    sink.wait_for(1, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_instances_are_reused_fresh_ones_are_not_and_a_trap_discards() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = tmp.path().join("plugins");
    install_plugin(&plugins, "chaos", "warm");
    install_plugin(&plugins, "chaos", "fresh");
    install_plugin(&plugins, "chaos", "metered");
    let sink = Sink::start(vec![]).await;
    let config = format!(
        "{}\n[plugins.warm]\nconfig = {{ target = \"sink\" }}\n\
         [plugins.fresh]\nfresh_instances = true\nconfig = {{ target = \"sink\" }}\n\
         [plugins.metered]\nfuel = 5000000\ntimeout = \"10s\"\nconfig = {{ target = \"sink\" }}\n\n\
         [sources.warm]\nplugins = [\"warm\"]\n[sources.fresh]\nplugins = [\"fresh\"]\n[sources.metered]\nplugins = [\"metered\"]\n\n\
         [targets.sink]\nurl = \"{}\"\n",
        server_section(tmp.path()),
        sink.url("/"),
    );
    let hy = Hookyard::start(tmp.path(), &config);
    let calls = |r: &Received| {
        r.header("x-instance-calls")
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };

    // Sequential events: the warm plugin reuses one instance.
    for source in ["warm", "fresh"] {
        for _ in 0..4 {
            let id = hy.send(source, "{}").await;
            hy.wait_event(&id, Duration::from_secs(5), delivered).await;
        }
    }
    let got = sink.received();
    let warm: Vec<u64> = got[..4].iter().map(calls).collect();
    let fresh: Vec<u64> = got[4..8].iter().map(calls).collect();
    assert_eq!(warm, vec![1, 2, 3, 4], "warm instance reused");
    assert_eq!(fresh, vec![1, 1, 1, 1], "fresh instance per event");

    // A trap discards the instance: the next event starts from scratch.
    let id = hy.send("warm", r#"{"mode":"trap"}"#).await;
    hy.wait_event(&id, Duration::from_secs(5), |v| v["status"] == "failed")
        .await;
    let id = hy.send("warm", "{}").await;
    hy.wait_event(&id, Duration::from_secs(5), delivered).await;
    assert_eq!(calls(&sink.received()[8]), 1, "new instance after the trap");

    // A fuel budget stops a loop deterministically, long before the 10 s
    // time limit.
    let started = Instant::now();
    let id = hy.send("metered", r#"{"mode":"loop"}"#).await;
    let v = hy
        .wait_event(&id, Duration::from_secs(8), |v| v["status"] != "pending")
        .await;
    let reason = v["outcome"]["plugins"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("used up its fuel budget of 5000000"),
        "{reason}"
    );
    assert!(started.elapsed() < Duration::from_secs(8));
    let id = hy.send("metered", "{}").await;
    hy.wait_event(&id, Duration::from_secs(5), delivered).await;
}
