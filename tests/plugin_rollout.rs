//! Safe rollout: `hookyard plugin test NEW.wasm --source S --last N` runs a
//! candidate over a source's stored events on a running router and shows
//! how its decisions differ from the serving version's, without delivering
//! or writing anything; its exit status gates a deploy.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;

fn trial(hy: &Hookyard, file: &str, extra: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookyard"))
        .args(["plugin", "test"])
        .arg(built_plugins().join(format!("{file}.wasm")))
        .args([
            "--name", "p", "--source", "s", "--last", "50", "--admin", &hy.admin,
        ])
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_candidate_is_compared_on_stored_events_without_side_effects() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![]).await;
    // The serving version delivers every event to t with one header.
    install_plugin(&dir.path().join("plugins"), "legacy-v01", "p");
    let config = format!(
        "{}{}\n[plugins.p]\nconfig = {{ target = \"t\" }}\n\n\
         [sources.s]\nplugins = [\"p\"]\n\n[targets.t]\nurl = \"{}\"\n",
        server_section(dir.path()),
        shared_cache(),
        sink.url("/t"),
    );
    let hy = Hookyard::start(dir.path(), &config);
    // The chaos plugin, as a candidate, decides from the body: `logflood`
    // with n = 0 delivers to t without headers, `drop` drops, `error` fails.
    let bodies = [
        r#"{"mode":"logflood","n":0}"#,
        r#"{"mode":"logflood","n":0}"#,
        r#"{"mode":"logflood","n":0}"#,
        r#"{"mode":"drop"}"#,
        r#"{"mode":"drop"}"#,
        r#"{"mode":"error"}"#,
    ];
    let mut ids = Vec::new();
    for b in bodies {
        ids.push(hy.send("s", b).await);
    }
    for id in &ids {
        hy.wait_event(id, Duration::from_secs(15), delivered).await;
    }
    assert_eq!(sink.received().len(), 6);

    // The serving component itself: every decision the same.
    let (ok, stdout, stderr) = trial(&hy, "legacy-v01", &["--json"]);
    assert!(ok, "{stdout}{stderr}");
    let same: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(same["summary"]["events"], 6, "{same:#}");
    assert_eq!(same["summary"]["same"], 6, "{same:#}");
    assert_eq!(same["summary"]["changed"], 0);
    assert_eq!(same["contract"], "0.1.0");

    // Another component: each difference named, and the event it now fails
    // makes the command fail.
    let (ok, stdout, _) = trial(&hy, "chaos", &["--json"]);
    assert!(
        !ok,
        "a candidate that fails handled events must fail the command"
    );
    let r: Value = serde_json::from_str(&stdout).unwrap();
    let s = &r["summary"];
    assert_eq!(
        (
            s["events"].as_u64(),
            s["changed"].as_u64(),
            s["newly_failing"].as_u64()
        ),
        (Some(6), Some(6), Some(1)),
        "{r:#}"
    );
    assert_eq!(r["contract"], "0.2.0");
    let by_body = |want: &str| -> Vec<Value> {
        r["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                let id = e["event"].as_str().unwrap();
                bodies[ids.iter().position(|i| i == id).unwrap()].contains(want)
            })
            .map(|e| e["differences"].clone())
            .collect()
    };
    for d in by_body("logflood") {
        assert_eq!(
            d,
            serde_json::json!([{"kind": "headers_changed", "target": "t"}])
        );
    }
    for d in by_body("drop") {
        assert_eq!(
            d,
            serde_json::json!([{"kind": "verdict", "from": "deliver", "to": "drop"}])
        );
    }
    for d in by_body("error") {
        assert_eq!(
            d,
            serde_json::json!([{"kind": "verdict", "from": "deliver", "to": "failed"}])
        );
    }
    // The text form says the same for people.
    let (ok, text, _) = trial(&hy, "chaos", &[]);
    assert!(!ok);
    assert!(
        text.contains("6 events: 0 same, 6 changed, 1 newly failing"),
        "{text}"
    );
    assert!(text.contains("do not deploy"), "{text}");

    // Nothing was delivered, stored or changed by the trials.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.received().len(), 6);
    let (_, list) = hy.admin_get("/admin/events?source=s").await;
    assert_eq!(list["events"].as_array().unwrap().len(), 6);
    let p = hy.plugin_status("p").await;
    assert_eq!(
        p["serving"]["contract"], "0.1.0",
        "the serving version stays"
    );

    // Bounds and bad input: clear errors.
    let wasm = std::fs::read(built_plugins().join("chaos.wasm")).unwrap();
    let post = |query: &str, body: Vec<u8>| {
        let url = format!("{}/admin/plugins/p/trial?{query}", hy.admin);
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .header("content-type", "application/wasm")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, v) = post("source=s&last=0", wasm.clone()).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (400, Some("bad_request")),
        "{v}"
    );
    let (status, _) = post("source=s&last=501", wasm.clone()).await;
    assert_eq!(status, 400);
    let (status, v) = post("source=s&last=5", b"not wasm".to_vec()).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (422, Some("not_a_component")),
        "{v}"
    );
    let (status, v) = post("source=nobody&last=5", wasm).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["summary"]["events"], 0);
}
