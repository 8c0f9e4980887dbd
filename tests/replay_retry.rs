//! Recovering failed work through the admin API: replaying events once the
//! plugin is fixed, bulk-retrying the dead-letter queue once the target is
//! back, and the target status (in-flight attempts, success rate) along the
//! way.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use support::admin::*;
use support::*;

/// Replaces `dir/name.wasm` the way deploy tools do: write aside, rename.
fn replace_atomically(dir: &Path, built: &str, name: &str) {
    let tmp = dir.join(format!(".{name}.wasm.tmp"));
    std::fs::copy(built_plugins().join(format!("{built}.wasm")), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join(format!("{name}.wasm"))).unwrap();
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// ---------------------------------------------------------------------------
// Replay after fixing the plugin.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_after_fixing_the_plugin_delivers() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = tmp.path().join("plugins");
    install_plugin(&plugins, "chaos", "router");
    let sink = Sink::start(vec![]).await;
    let config = format!(
        "{}\n[plugins.router]\nconfig = {{ mode = \"error\", orders_target = \"t\", alerts_target = \"t\" }}\n\n\
         [sources.s]\nplugins = [\"router\"]\n\n\
         [targets.t]\nurl = \"{}\"\nsecret = \"{SECRET}\"\nretry_schedule = [\"100ms\", \"100ms\"]\njitter = 0\n",
        server_section(tmp.path()),
        sink.url("/orders"),
    );
    let hy = Hookyard::start(tmp.path(), &config);

    let mut ids = Vec::new();
    let mut bodies = HashMap::new();
    for n in 0..3 {
        let body = format!(r#"{{"type":"order.created","n":{n}}}"#);
        let id = hy.send("s", &body).await;
        bodies.insert(id.clone(), body);
        ids.push(id);
    }
    for id in &ids {
        let v = hy
            .wait_event(id, Duration::from_secs(15), |v| v["status"] != "pending")
            .await;
        assert_eq!(v["status"], "failed", "{v:#}");
        assert_eq!(v["deliveries"].as_array().unwrap().len(), 0, "{v:#}");
        assert_eq!(v["outcome"]["plugins"][0]["result"], "failed", "{v:#}");
    }
    let (status, failed) = hy.admin_get("/admin/events?status=failed").await;
    assert_eq!(status, 200);
    let mut listed = ids_of(&failed, "events");
    listed.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(listed, want);
    assert!(sink.received().is_empty());

    // The fix: deploy the real router and wait until it serves.
    let fixed_sha =
        sha256_hex(&std::fs::read(built_plugins().join("quickstart-router.wasm")).unwrap());
    replace_atomically(&plugins, "quickstart-router", "router");
    poll(
        Duration::from_secs(20),
        "the new router serves",
        async || {
            let v = hy.admin_json("/admin/plugins").await;
            let p = v["plugins"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == "router")
                .cloned()
                .unwrap_or(Value::Null);
            if p["status"] == "ok" && p["serving"]["sha256"] == fixed_sha.as_str() {
                Ok(())
            } else {
                Err(p.to_string())
            }
        },
    )
    .await;

    // Replay one.
    let (status, v) = hy
        .admin_post(&format!("/admin/events/{}/replay", ids[0]), Value::Null)
        .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v, json!({"event": ids[0], "status": "queued"}));
    let v = hy
        .wait_event(&ids[0], Duration::from_secs(15), is_final_delivered)
        .await;
    assert_eq!(v["status"], "routed", "{v:#}");
    assert_eq!(v["deliveries"].as_array().unwrap().len(), 1, "{v:#}");
    assert_eq!(v["deliveries"][0]["origin"], "plugin:router");
    let got = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    assert!(got[0].signature_ok);
    assert_eq!(got[0].body.as_ref(), bodies[&ids[0]].as_bytes());
    assert_eq!(
        got[0].header("webhook-id"),
        v["deliveries"][0]["id"].as_str()
    );

    // Bulk-replay what is still failed: exactly the other two.
    let (status, v) = hy
        .admin_post("/admin/events/replay", json!({"status": "failed"}))
        .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["replayed"], 2, "{v}");
    let replayed: BTreeSet<String> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    assert_eq!(replayed, ids[1..].iter().cloned().collect::<BTreeSet<_>>());
    for id in &ids[1..] {
        let v = hy
            .wait_event(id, Duration::from_secs(15), is_final_delivered)
            .await;
        assert_eq!(v["status"], "routed", "{v:#}");
    }
    let got = sink.wait_for(3, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got_len = sink.received().len();
    assert_eq!(got_len, 3, "each replayed event delivered once");
    let got_bodies: BTreeSet<Vec<u8>> = got.iter().map(|r| r.body.to_vec()).collect();
    let want_bodies: BTreeSet<Vec<u8>> = bodies.values().map(|b| b.as_bytes().to_vec()).collect();
    assert_eq!(got_bodies, want_bodies);
    assert!(got.iter().all(|r| r.signature_ok));

    let (status, v) = hy.admin_get("/admin/events?status=failed").await;
    assert_eq!(status, 200);
    assert_eq!(v["events"], json!([]), "{v}");
    assert_eq!(v["next_cursor"], Value::Null);

    // Unknown ids.
    for unknown in ["evt_00000000000000000000000000", "nope"] {
        let (status, v) = hy
            .admin_post(&format!("/admin/events/{unknown}/replay"), Value::Null)
            .await;
        assert_eq!(status, 404, "{unknown}: {v}");
        assert_eq!(v["code"], "not_found", "{v}");
    }
}

// ---------------------------------------------------------------------------
// Bulk retry of the dead-letter queue.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_retry_of_dead_deliveries_after_recovery() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        "{}\n[sources.s]\ntargets = [\"t\"]\n\n\
         [targets.t]\nurl = \"http://127.0.0.1:{port}/in\"\nsecret = \"{SECRET}\"\nretry_schedule = [\"50ms\"]\njitter = 0\nbreaker_failures = 0\ntimeout = \"2s\"\n",
        server_section(tmp.path()),
    );
    let hy = Hookyard::start(tmp.path(), &config);
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(hy.send("s", &format!(r#"{{"n":{n}}}"#)).await);
    }
    let dead = poll(Duration::from_secs(20), "5 dead deliveries", async || {
        let v = hy.admin_json("/admin/deliveries?status=dead").await;
        let n = v["deliveries"].as_array().map_or(0, Vec::len);
        if n == 5 { Ok(v) } else { Err(v.to_string()) }
    })
    .await;
    let mut dead_ids = HashMap::new();
    for d in dead["deliveries"].as_array().unwrap() {
        assert_eq!(d["status"], "dead", "{d}");
        assert_eq!(d["target"], "t", "{d}");
        assert_eq!(d["attempts"], 2, "{d}");
        assert!(
            d["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("connect")),
            "{d}"
        );
        dead_ids.insert(
            d["id"].as_str().unwrap().to_string(),
            d["event_id"].as_str().unwrap().to_string(),
        );
    }
    assert_eq!(
        dead_ids.values().cloned().collect::<BTreeSet<_>>(),
        ids.iter().cloned().collect::<BTreeSet<_>>()
    );
    let (status, t) = hy.admin_get("/admin/targets/t").await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["dead"], 5, "{t}");
    assert_eq!(t["state"], "closed", "{t}");
    assert_eq!(t["attempts"]["failed"], 10, "{t}");

    // The target comes back; the operator retries the dead-letter queue.
    let sink = Sink::start_on(addr_of(port), vec![]).await;
    let (status, v) = hy
        .admin_post(
            "/admin/deliveries/retry",
            json!({"status": "dead", "target": "t"}),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v, json!({"retried": 5}));
    let got = sink.wait_for(5, Duration::from_secs(15)).await;
    let webhook_ids: BTreeSet<String> = got
        .iter()
        .map(|r| r.header("webhook-id").unwrap().to_string())
        .collect();
    assert_eq!(
        webhook_ids,
        dead_ids.keys().cloned().collect::<BTreeSet<_>>(),
        "the original message ids"
    );
    assert!(got.iter().all(|r| r.signature_ok));
    for id in &ids {
        let v = hy
            .wait_event(id, Duration::from_secs(10), is_final_delivered)
            .await;
        assert_eq!(v["deliveries"][0]["attempts"], 3, "{v:#}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sink.received().len(), 5);
    let (_, v) = hy.admin_get("/admin/deliveries?status=dead").await;
    assert_eq!(v["deliveries"], json!([]), "{v}");
    let t = hy.admin_json("/admin/targets/t").await;
    assert_eq!(t["dead"], 0, "{t}");
    assert_eq!(t["attempts"]["succeeded"], 5, "{t}");
}

// ---------------------------------------------------------------------------
// Target status.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_status_reports_in_flight_and_success_rate() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![answer(500), answer(503)]).await;
    let config = format!(
        "{}\n[sources.s]\ntargets = [\"t\"]\n\n\
         [targets.t]\nurl = \"{}\"\nsecret = \"{SECRET}\"\nretry_schedule = [\"100ms\", \"100ms\", \"100ms\"]\njitter = 0\nbreaker_failures = 0\n",
        server_section(tmp.path()),
        sink.url("/in"),
    );
    let hy = Hookyard::start(tmp.path(), &config);

    let fresh = hy.admin_json("/admin/targets").await;
    let t = &fresh["targets"][0];
    assert_eq!(t["name"], "t");
    assert_eq!(t["attempts"], json!({"succeeded": 0, "failed": 0}));
    assert_eq!(t["success_rate"], Value::Null);

    // The first event's delivery fails twice (500, then 503) before it
    // succeeds; the next three succeed at once.
    let first = hy.send("s", r#"{"n":0}"#).await;
    let v = hy
        .wait_event(&first, Duration::from_secs(15), is_final_delivered)
        .await;
    let codes: Vec<u64> = v["deliveries"][0]["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].as_u64().unwrap())
        .collect();
    assert_eq!(codes, vec![500, 503, 200]);
    let mut ids = vec![first];
    for n in 1..4 {
        ids.push(hy.send("s", &format!(r#"{{"n":{n}}}"#)).await);
    }
    let (mut ok, mut failed) = (0, 0);
    for id in &ids {
        let v = hy
            .wait_event(id, Duration::from_secs(15), is_final_delivered)
            .await;
        for a in v["deliveries"][0]["attempt_log"].as_array().unwrap() {
            if a["status_code"] == 200 {
                ok += 1;
            } else {
                failed += 1;
            }
        }
    }
    assert_eq!((ok, failed), (4, 2));

    let check = |t: &Value, ok: u64, failed: u64| {
        assert_eq!(t["name"], "t", "{t}");
        assert_eq!(t["url"], sink.url("/in"), "{t}");
        assert_eq!(t["attempts"]["succeeded"], ok, "{t}");
        assert_eq!(t["attempts"]["failed"], failed, "{t}");
        let rate = t["success_rate"].as_f64().unwrap();
        let want = ok as f64 / (ok + failed) as f64;
        assert!(
            (rate - want).abs() < 1e-3,
            "success_rate {rate} != {want}: {t}"
        );
        assert_eq!(t["state"], "closed", "{t}");
        assert_eq!(t["paused"], false, "{t}");
        assert_eq!(t["disabled"], Value::Null, "{t}");
        assert_eq!(t["dead"], 0, "{t}");
        assert_eq!(t["consecutive_failures"], 0, "{t}");
        assert!(
            t["last_error"].as_str().is_some_and(|e| e.contains("503")),
            "the second failure is the last: {t}"
        );
        let (err_at, ok_at) = (
            t["last_error_at"].as_u64().unwrap(),
            t["last_success_at"].as_u64().unwrap(),
        );
        assert!(ok_at >= err_at, "{t}");
        assert_eq!(t["policy"]["max_attempts"], 4, "{t}");
        assert_eq!(t["policy"]["breaker_failures"], 0, "{t}");
    };
    let list = hy.admin_json("/admin/targets").await;
    assert_eq!(list["targets"].as_array().unwrap().len(), 1, "{list}");
    let t = &list["targets"][0];
    check(t, 4, 2);
    assert_eq!(t["in_flight"], 0, "{t}");
    assert_eq!(t["scheduled"], 0, "{t}");
    let one = hy.admin_json("/admin/targets/t").await;
    check(&one, 4, 2);
    let (status, v) = hy.admin_get("/admin/targets/nosuch").await;
    assert_eq!(status, 404, "{v}");

    // A slow answer: the attempt shows as in flight while it runs.
    sink.set_delay(Duration::from_millis(2000));
    let id = hy.send("s", r#"{"n":"slow"}"#).await;
    let during = poll(
        Duration::from_secs(10),
        "one attempt in flight",
        async || {
            let t = hy.admin_json("/admin/targets/t").await;
            if t["in_flight"] == 1 {
                Ok(t)
            } else {
                Err(t.to_string())
            }
        },
    )
    .await;
    assert_eq!(during["attempts"]["succeeded"], 4, "{during}");
    assert_eq!(during["attempts"]["failed"], 2, "{during}");
    let metrics = hy.admin_text("/metrics").await;
    assert_eq!(
        sample_value(
            &metrics,
            "hookyard_deliveries_in_flight",
            &[("target", "t")]
        ),
        Some(1.0)
    );
    hy.wait_event(&id, Duration::from_secs(10), is_final_delivered)
        .await;
    let after = poll(Duration::from_secs(5), "the attempt finished", async || {
        let t = hy.admin_json("/admin/targets/t").await;
        if t["in_flight"] == 0 && t["attempts"]["succeeded"] == 5 {
            Ok(t)
        } else {
            Err(t.to_string())
        }
    })
    .await;
    check(&after, 5, 2);
    assert_eq!(after["scheduled"], 0, "{after}");
}
