//! The same `chat-router` plugin written in each guest language (Python via
//! componentize-py, JavaScript via ComponentizeJS), built from source by
//! scripts/build-plugins.sh and run in the real binary: the same events must
//! give the same deliveries, drops and failures in every language.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_chat_router() {
    chat_router_routes_fans_out_drops_and_fails("chat-router-python", "python").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_chat_router() {
    chat_router_routes_fans_out_drops_and_fails("chat-router-js", "javascript").await;
}

/// Runs the plugin built as `plugins/dist/<file>.wasm`; `language` is what it
/// puts in its `x-hookyard-plugin` header.
async fn chat_router_routes_fans_out_drops_and_fails(file: &str, language: &str) {
    let tmp = tempfile::tempdir().unwrap();
    install_plugin(&tmp.path().join("plugins"), file, "chat-router");
    let sink = Sink::start(vec![]).await;
    // `chat_target` comes from the plugin's config; `pager_target` is left
    // out, so the plugin must fall back to its default target "pager". The
    // unused `chat` target catches a plugin that ignores its config.
    let config = format!(
        "{}\n[plugins.chat-router]\nconfig = {{ chat_target = \"team_chat\" }}\n\n\
         [sources.monitor]\nplugins = [\"chat-router\"]\n\n\
         [targets.team_chat]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n\n\
         [targets.chat]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n\n\
         [targets.pager]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n",
        server_section(tmp.path()),
        sink.url("/team_chat"),
        sink.url("/chat"),
        sink.url("/pager"),
    );
    let hy = Hookyard::start(tmp.path(), &config);

    let normal = json!({ "type": "user.signup", "user": { "name": "Ada" } }).to_string();
    // Odd spacing and key order: the pager must get these exact bytes.
    let critical = r#"{ "severity":"critical",  "type":"db.down", "db":"orders" }"#;
    let normal_id = hy.send("monitor", &normal).await;
    let critical_id = hy.send("monitor", critical).await;
    let ping_id = hy.send("monitor", r#"{"type":"ping"}"#).await;
    let untyped_id = hy.send("monitor", r#"{"type":42,"hello":"world"}"#).await;
    let bad_id = hy.send("monitor", "this is not json").await;

    // normal -> team_chat; critical -> team_chat and pager. Nothing else.
    let timeout = Duration::from_secs(30);
    sink.wait_for(3, timeout).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = sink.received();
    assert_eq!(got.len(), 3, "exactly three deliveries: {got:#?}");
    assert!(
        got.iter().all(|r| r.signature_ok),
        "every delivery verifies"
    );
    assert!(
        sink.received_on("/chat").is_empty(),
        "config's chat_target ignored"
    );

    let chat = sink.received_on("/team_chat");
    assert_eq!(chat.len(), 2);
    for (id, body, kind) in [
        (&normal_id, normal.as_str(), "user.signup"),
        (&critical_id, critical, "db.down"),
    ] {
        let r = chat
            .iter()
            .find(|r| r.json()["event_id"] == id.as_str())
            .unwrap_or_else(|| panic!("no chat message for {id}"));
        assert_eq!(
            r.json(),
            json!({
                "text": format!("{kind} from monitor"),
                "event_id": id,
                "payload": serde_json::from_str::<Value>(body).unwrap(),
            })
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("x-hookyard-plugin"), Some(language));
    }

    let pager = sink.received_on("/pager");
    assert_eq!(pager.len(), 1, "only the critical event pages");
    assert_eq!(pager[0].body, critical.as_bytes(), "paged unchanged");
    assert_eq!(pager[0].header("x-hookyard-plugin"), Some(language));

    // The admin view agrees: one routed event fanned out to two targets.
    let v = hy.wait_event(&critical_id, timeout, delivered).await;
    assert_eq!(v["status"], "routed");
    assert_eq!(v["outcome"]["plugins"][0]["result"], "deliver");
    let mut targets: Vec<&str> = v["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["target"].as_str().unwrap())
        .collect();
    targets.sort();
    assert_eq!(targets, ["pager", "team_chat"]);

    for (id, reason) in [
        (&ping_id, "ping events are not routed"),
        (&untyped_id, "no \"type\" field"),
    ] {
        let v = hy.wait_event(id, timeout, delivered).await;
        assert_eq!(v["status"], "dropped", "{v:#}");
        assert_eq!(v["outcome"]["plugins"][0]["result"], "drop");
        assert_eq!(v["outcome"]["plugins"][0]["reason"], reason);
        assert!(v["deliveries"].as_array().unwrap().is_empty());
    }

    // Not JSON: the plugin returns `err` (a raised Err / thrown string), not
    // a trap, so the reason is the plugin's own message.
    let v = hy.wait_event(&bad_id, timeout, delivered).await;
    assert_eq!(v["status"], "failed", "{v:#}");
    assert_eq!(v["outcome"]["plugins"][0]["result"], "failed");
    let reason = v["outcome"]["plugins"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("returned an error: body is not JSON: "),
        "{reason}"
    );
    assert!(!reason.contains("trapped"), "{reason}");

    // One info line per decision through the host `log` import.
    let log = hy.log_text();
    for line in [
        format!("event {normal_id} (user.signup) -> team_chat"),
        format!("event {critical_id} (db.down) -> team_chat, pager"),
        format!("event {ping_id} dropped: ping events are not routed"),
        format!("event {untyped_id} dropped: no \"type\" field"),
        format!("event {bad_id} failed: body is not JSON"),
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains("INFO") && l.contains(&line) && l.contains("chat-router")),
            "no log line {line:?}:\n{log}"
        );
    }
}
