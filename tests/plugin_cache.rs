//! JavaScript and Python components take seconds to compile; a restart must
//! load them from the compiled cache instead (asserted via /admin/plugins).
//! Also prints, per language, the load time cold vs cached and the per-event
//! cost with warm instances vs a fresh instance per event.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;

const PLUGINS: &[(&str, &str)] = &[
    ("rust", "quickstart-router"),
    ("python", "chat-router-python"),
    ("js", "chat-router-js"),
    ("c", "chat-router-c"),
];

fn config(dir: &std::path::Path, sink: &Sink) -> String {
    let mut c = server_section(dir);
    for (lang, _) in PLUGINS {
        for mode in ["warm", "fresh"] {
            let name = format!("{lang}-{mode}");
            c += &format!(
                "\n[plugins.{name}]\ntimeout = \"5s\"\nfresh_instances = {}\n\
                 config = {{ chat_target = \"sink\", alerts_target = \"sink\", orders_target = \"sink\" }}\n\
                 [sources.{name}]\nplugins = [\"{name}\"]\n",
                mode == "fresh"
            );
        }
    }
    c + &format!("\n[targets.sink]\nurl = \"{}\"\n", sink.url("/"))
}

async fn statuses(hy: &Hookyard) -> Vec<Value> {
    let v: Value = hy.admin_json("/admin/plugins").await;
    v["plugins"].as_array().unwrap().clone()
}

fn find<'a>(all: &'a [Value], name: &str) -> &'a Value {
    all.iter().find(|p| p["name"] == name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_loads_every_language_from_the_compiled_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    for (lang, file) in PLUGINS {
        install_plugin(&dir, file, &format!("{lang}-warm"));
        install_plugin(&dir, file, &format!("{lang}-fresh"));
    }
    let sink = Sink::start(vec![]).await;
    let hy = Hookyard::start(tmp.path(), &config(tmp.path(), &sink));
    let cold = statuses(&hy).await;

    const N: usize = 20;
    let mut ids = vec![];
    for (lang, _) in PLUGINS {
        for mode in ["warm", "fresh"] {
            for i in 0..N {
                let body = format!(r#"{{"type":"order.created","n":{i}}}"#);
                ids.push(hy.send(&format!("{lang}-{mode}"), &body).await);
            }
        }
    }
    for id in &ids {
        hy.wait_event(id, Duration::from_secs(60), delivered).await;
    }
    let after = statuses(&hy).await;
    drop(hy);

    let hy = Hookyard::start(tmp.path(), &config(tmp.path(), &sink));
    let warm_start = statuses(&hy).await;
    eprintln!(
        "language  load cold ms  load cached ms  warm µs/event (mean, p50)  fresh µs/event (mean, p50)"
    );
    for (lang, _) in PLUGINS {
        let w = format!("{lang}-warm");
        let f = format!("{lang}-fresh");
        // One of the two copies compiled; the other found the first's entry.
        let cold_ms = [&w, &f]
            .iter()
            .map(|n| find(&cold, n)["serving"]["load_ms"].as_f64().unwrap())
            .fold(0.0, f64::max);
        for n in [&w, &f] {
            let s = find(&warm_start, n);
            assert_eq!(s["status"], "ok");
            assert_eq!(s["serving"]["from_cache"], true, "{n} after restart: {s}");
        }
        let cached_ms = find(&warm_start, &w)["serving"]["load_ms"]
            .as_f64()
            .unwrap();
        let ws = &find(&after, &w)["stats"];
        let fs = &find(&after, &f)["stats"];
        assert_eq!(ws["calls"], N);
        assert_eq!(
            fs["fresh_instances"], N,
            "fresh_instances = true: one instance per event"
        );
        let slots = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .max(2) as u64;
        assert!(
            ws["fresh_instances"].as_u64().unwrap() <= slots,
            "warm instances reused: {ws}"
        );
        eprintln!(
            "{lang:<8}  {cold_ms:>12.1}  {cached_ms:>14.1}  {:>12} {:>12}  {:>12} {:>12}",
            ws["latency_us"]["mean"],
            ws["latency_us"]["p50"],
            fs["latency_us"]["mean"],
            fs["latency_us"]["p50"],
        );
    }
    let id = hy.send("python-warm", r#"{"type":"order.created"}"#).await;
    hy.wait_event(&id, Duration::from_secs(30), delivered).await;
}
