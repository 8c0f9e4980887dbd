//! What headers a delivery carries: a plugin cannot set framing or
//! hop-by-hop headers or hookyard's signature headers, nor invalid ones;
//! those are left off and recorded on the delivery with the reason.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_headers_that_would_break_the_request_are_refused_and_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    install_plugin(&tmp.path().join("plugins"), "chaos", "router");
    let sink = Sink::start(vec![]).await;
    let config = format!(
        "{}\n[plugins.router]\nconfig = {{ target = \"sink\" }}\n\n\
         [sources.s]\nplugins = [\"router\"]\n\n\
         [targets.sink]\nurl = \"{}\"\nsecret = \"{SECRET}\"\ntimeout = \"3s\"\n",
        server_section(tmp.path()),
        sink.url("/in"),
    );
    let hy = Hookyard::start(tmp.path(), &config);
    let body = json!({
        "mode": "headers",
        "headers": [
            ["X-Team", "payments"],
            ["Content-Length", "3"],
            ["Transfer-Encoding", "chunked"],
            ["Connection", "close"],
            ["webhook-signature", "v1,forged"],
            ["x-split", "a\r\nx-injected: 1"],
            ["bad name", "v"],
        ],
    });
    let id = hy.send("s", &body.to_string()).await;
    let got = sink.wait_for(1, Duration::from_secs(20)).await;
    let r = &got[0];
    // The body arrived whole (a plugin-set content-length truncated it) and
    // the signature verifies.
    assert_eq!(r.body.as_ref(), br#"{"from":"chaos"}"#);
    assert!(r.signature_ok, "signature did not verify");
    assert_eq!(r.header("x-team"), Some("payments"));
    assert!(r.header("x-injected").is_none() && r.header("x-split").is_none());

    let v = hy.wait_event(&id, Duration::from_secs(20), delivered).await;
    let d = &v["deliveries"][0];
    assert_eq!(d["headers"], json!([["x-team", "payments"]]), "{d:#}");
    let refused: Vec<(String, String)> = d["refused_headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let names: Vec<&str> = refused.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "Content-Length",
            "Transfer-Encoding",
            "Connection",
            "webhook-signature",
            "x-split",
            "bad name"
        ]
    );
    assert!(refused[0].1.contains("framing"), "{refused:?}");
    assert!(refused[4].1.contains("CR or LF"), "{refused:?}");
}

/// W3C Trace Context: the event's `traceparent` and `tracestate` reach the
/// sink on every delivery, passthrough and plugin-made, unless the plugin
/// set its own; an invalid `traceparent` is not forwarded at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_context_is_carried_to_every_delivery() {
    // The example of the Trace Context specification.
    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const STATE: &str = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE";
    const PLUGINS_OWN: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    let tmp = tempfile::tempdir().unwrap();
    install_plugin(&tmp.path().join("plugins"), "chaos", "router");
    let sink = Sink::start(vec![]).await;
    let config = format!(
        "{}\n[plugins.router]\nconfig = {{ target = \"viaplugin\" }}\n\n\
         [sources.s]\nplugins = [\"router\"]\ntargets = [\"pass\"]\n\n\
         [targets.viaplugin]\nurl = \"{}\"\nsecret = \"{SECRET}\"\ntimeout = \"3s\"\n\n\
         [targets.pass]\nurl = \"{}\"\nsecret = \"{SECRET}\"\ntimeout = \"3s\"\n",
        server_section(tmp.path()),
        sink.url("/plugin"),
        sink.url("/pass"),
    );
    let hy = Hookyard::start(tmp.path(), &config);
    let post = |body: serde_json::Value, trace: Vec<(&'static str, &'static str)>| {
        let mut r = reqwest::Client::new()
            .post(format!("{}/hooks/s", hy.public))
            .header("content-type", "application/json")
            .body(body.to_string());
        for (k, v) in trace {
            r = r.header(k, v);
        }
        async move {
            let r = r.send().await.unwrap();
            assert_eq!(r.status(), 202);
            r.json::<serde_json::Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let wait = |n: usize| sink.wait_for(n, Duration::from_secs(20));
    let trace = |r: &Received| {
        (
            r.header("traceparent").map(str::to_string),
            r.header("tracestate").map(str::to_string),
        )
    };
    let expected = (Some(PARENT.to_string()), Some(STATE.to_string()));

    // Passthrough and plugin-made deliveries both carry it.
    let id = post(
        json!({"mode": "ok"}),
        vec![("traceparent", PARENT), ("tracestate", STATE)],
    )
    .await;
    wait(2).await;
    assert_eq!(trace(&sink.received_on("/pass")[0]), expected);
    assert_eq!(trace(&sink.received_on("/plugin")[0]), expected);
    // Stored with the event, as received.
    let v = hy.wait_event(&id, Duration::from_secs(20), delivered).await;
    let headers = v["event"]["headers"].as_array().unwrap();
    assert!(
        headers.contains(&json!(["traceparent", PARENT])),
        "{headers:?}"
    );
    assert!(
        headers.contains(&json!(["tracestate", STATE])),
        "{headers:?}"
    );
    // And named in the event's log lines.
    let log = hy.log_text();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    for line in ["event accepted", "event routed", "delivered"] {
        assert!(
            log.lines()
                .any(|l| l.contains(line) && l.contains(trace_id) && l.contains(&id)),
            "no {line:?} line with the trace id:\n{log}"
        );
    }

    // A plugin that sets its own traceparent keeps it (and gets no
    // tracestate of another parent); the passthrough still has the event's.
    post(
        json!({"mode": "headers", "headers": [["traceparent", PLUGINS_OWN]]}),
        vec![("traceparent", PARENT), ("tracestate", STATE)],
    )
    .await;
    wait(4).await;
    assert_eq!(
        trace(&sink.received_on("/plugin")[1]),
        (Some(PLUGINS_OWN.to_string()), None)
    );
    assert_eq!(trace(&sink.received_on("/pass")[1]), expected);

    // An invalid traceparent (upper-case hex) is not forwarded, nor is the
    // tracestate that came with it.
    post(
        json!({"mode": "ok"}),
        vec![
            (
                "traceparent",
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
            ),
            ("tracestate", STATE),
        ],
    )
    .await;
    wait(6).await;
    assert_eq!(trace(&sink.received_on("/pass")[2]), (None, None));
    assert_eq!(trace(&sink.received_on("/plugin")[2]), (None, None));
}
