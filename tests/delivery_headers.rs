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
