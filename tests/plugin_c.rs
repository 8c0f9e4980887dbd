//! The C chat-router, built from source into a real WebAssembly component by
//! scripts/build-c-plugins.sh, running inside the real hookyard binary:
//! reshaped chat delivery, critical fan-out to the pager, drops with their
//! reasons, and non-JSON bodies failing the event.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};
use support::*;

/// Builds the C plugins once per test process and returns the component.
fn built_c_plugin() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        let root = repo_root();
        let status = Command::new("bash")
            .arg(root.join("scripts/build-c-plugins.sh"))
            .stdout(Stdio::null())
            .status()
            .expect("run scripts/build-c-plugins.sh");
        assert!(
            status.success(),
            "scripts/build-c-plugins.sh failed (see its output above)"
        );
        root.join("plugins/dist/chat-router-c.wasm")
    })
}

fn install_c_plugin(plugins_dir: &Path) {
    std::fs::create_dir_all(plugins_dir).unwrap();
    std::fs::copy(built_c_plugin(), plugins_dir.join("chat-router-c.wasm"))
        .expect("copy chat-router-c.wasm");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_chat_router_routes_fans_out_drops_and_fails() {
    let tmp = tempfile::tempdir().unwrap();
    install_c_plugin(&tmp.path().join("plugins"));
    let sink = Sink::start(vec![]).await;
    // chat_target is left at its default ("chat"); pager_target is configured.
    let config = format!(
        "{}\n[plugins.chat-router-c]\nconfig = {{ pager_target = \"oncall\" }}\n\n\
         [sources.infra]\nplugins = [\"chat-router-c\"]\n\n\
         [targets.chat]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n\n\
         [targets.oncall]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n",
        server_section(tmp.path()),
        sink.url("/chat"),
        sink.url("/oncall"),
    );
    let hy = Hookyard::start(tmp.path(), &config);

    // A normal event: one reshaped chat message. Odd spacing and a non-ASCII
    // escaped type check that the payload is embedded verbatim and the text
    // is re-escaped correctly.
    let normal =
        r#"{ "type": "deploy.finished \u00e9\"", "service": "api", "n": [1, 2.5e3, null] }"#;
    let normal_id = hy.send("infra", normal).await;
    let v = hy
        .wait_event(&normal_id, Duration::from_secs(20), delivered)
        .await;
    assert_eq!(v["status"], "routed", "{v:#}");
    assert_eq!(v["outcome"]["plugins"][0]["result"], "deliver", "{v:#}");
    assert_eq!(v["deliveries"].as_array().unwrap().len(), 1, "{v:#}");

    // A critical event: chat message plus the original body to the pager.
    let critical = r#"{"type":"disk.full","severity":"critical","host":"db1"}"#;
    let critical_id = hy.send("infra", critical).await;
    let v = hy
        .wait_event(&critical_id, Duration::from_secs(20), delivered)
        .await;
    assert_eq!(v["status"], "routed", "{v:#}");
    assert_eq!(v["deliveries"].as_array().unwrap().len(), 2, "{v:#}");

    // Drops, with their reasons.
    let ping_id = hy.send("infra", r#"{"type":"ping"}"#).await;
    let untyped_id = hy.send("infra", r#"{"kind":"x","type":7}"#).await;
    for (id, reason) in [
        (&ping_id, "ping events are not routed"),
        (&untyped_id, "no \"type\" field"),
    ] {
        let v = hy
            .wait_event(id, Duration::from_secs(20), |v| v["status"] != "pending")
            .await;
        assert_eq!(v["status"], "dropped", "{v:#}");
        assert_eq!(v["outcome"]["plugins"][0]["result"], "drop", "{v:#}");
        assert_eq!(v["outcome"]["plugins"][0]["reason"], reason, "{v:#}");
        assert!(v["deliveries"].as_array().unwrap().is_empty(), "{v:#}");
    }

    // Not JSON: the plugin returns err, so the event fails.
    for body in ["this is not json", r#"{"type":"x",}"#, ""] {
        let id = hy.send("infra", body).await;
        let v = hy
            .wait_event(&id, Duration::from_secs(20), |v| v["status"] != "pending")
            .await;
        assert_eq!(v["status"], "failed", "{body:?}: {v:#}");
        let reason = v["outcome"]["plugins"][0]["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("plugin returned an error: body is not JSON: "),
            "{body:?}: {reason}"
        );
        assert!(v["deliveries"].as_array().unwrap().is_empty(), "{v:#}");
    }

    // Exactly three requests reached the sink.
    sink.wait_for(3, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = sink.received();
    assert_eq!(got.len(), 3, "no extra deliveries: {got:?}");
    assert!(
        got.iter().all(|r| r.signature_ok),
        "every delivery verifies"
    );
    assert!(
        got.iter()
            .all(|r| r.header("x-hookyard-plugin") == Some("c"))
    );

    let chat = sink.received_on("/chat");
    assert_eq!(chat.len(), 2);
    let chat_for = |id: &str| {
        chat.iter()
            .find(|r| r.json()["event_id"] == id)
            .unwrap_or_else(|| panic!("no chat message for {id}"))
    };
    let r = chat_for(&normal_id);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let msg = r.json();
    assert_eq!(msg["text"], "deploy.finished \u{e9}\" from infra");
    assert_eq!(
        msg["payload"],
        serde_json::from_str::<Value>(normal).unwrap()
    );
    // The payload is the original bytes, not a re-serialisation.
    let text = std::str::from_utf8(&r.body).unwrap();
    assert!(
        text.ends_with(&format!("\"payload\": {normal}}}")),
        "{text}"
    );

    let msg = chat_for(&critical_id).json();
    assert_eq!(
        msg,
        json!({
            "text": "disk.full from infra",
            "event_id": critical_id,
            "payload": serde_json::from_str::<Value>(critical).unwrap(),
        })
    );
    let pager = sink.received_on("/oncall");
    assert_eq!(pager.len(), 1);
    assert_eq!(
        pager[0].body,
        critical.as_bytes(),
        "pager gets the body unchanged"
    );

    // One info line per decision, through the host's log.
    let log = hy.log_text();
    for line in [
        format!("event {normal_id} (deploy.finished \u{e9}\") -> chat"),
        format!("event {critical_id} (disk.full) -> chat, oncall"),
        format!("event {ping_id} dropped: ping events are not routed"),
        format!("event {untyped_id} dropped: no \"type\" field"),
        "failed: body is not JSON".to_string(),
    ] {
        assert!(log.contains(&line), "log lacks {line:?}:\n{log}");
    }
}
