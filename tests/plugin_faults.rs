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
