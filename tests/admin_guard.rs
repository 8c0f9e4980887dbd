//! The admin listener against a hostile browser: cross-origin writes
//! (CSRF with `no-cors` text/plain POSTs) and DNS rebinding (a foreign
//! `Host`) are refused, while same-origin browsers, the CLI's requests and
//! header-less clients keep working.

mod support;

use std::io::{Read, Write};

use serde_json::{Value, json};
use support::*;

fn config(dir: &std::path::Path, sink: &Sink, extra_server: &str) -> String {
    format!(
        "{}\n[sources.s]\ntargets = [\"t\"]\n\n[targets.t]\nurl = \"{}\"\n",
        support::admin::preamble(dir, extra_server),
        sink.url("/in"),
    )
}

fn port_of(admin: &str) -> u16 {
    admin.rsplit(':').next().unwrap().parse().unwrap()
}

async fn paused(hy: &Hookyard) -> bool {
    let (code, v) = hy.admin_get("/admin/targets/t").await;
    assert_eq!(code, 200, "{v}");
    v["paused"].as_bool().unwrap()
}

/// One raw HTTP/1.0 request (no Host header); the status code.
fn raw_http10(admin: &str, request: &str) -> (u16, String) {
    let addr = admin.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_origin_writes_and_rebinding_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![]).await;
    let hy = Hookyard::start(tmp.path(), &config(tmp.path(), &sink, ""));
    let id = hy.send("s", r#"{"secret":"body"}"#).await;
    hy.wait_event(&id, std::time::Duration::from_secs(15), delivered)
        .await;
    let http = reqwest::Client::new();
    let port = port_of(&hy.admin);

    // What a page on http://evil.example can send without a preflight.
    let r = http
        .post(format!("{}/admin/targets/t/pause", hy.admin))
        .header("origin", "http://evil.example")
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "cross_origin", "{v}");
    assert!(
        !paused(&hy).await,
        "the cross-origin POST paused the target"
    );

    // Same with an empty body, as `fetch(url, {method: "POST", mode: "no-cors"})`.
    for (name, value) in [
        ("origin", "http://evil.example"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
    ] {
        let r = http
            .post(format!("{}/admin/targets/t/pause", hy.admin))
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{name}: {value}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["code"], "cross_origin", "{v}");
    }
    let r = http
        .post(format!("{}/admin/events/replay", hy.admin))
        .header("origin", "http://evil.example")
        .header("content-type", "text/plain")
        .body(r#"{"source":"s"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "bulk replay from another origin");
    assert!(!paused(&hy).await);

    // A text/plain body without any origin header: 415.
    let r = http
        .post(format!("{}/admin/events/replay", hy.admin))
        .header("content-type", "text/plain")
        .body(r#"{"source":"s"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "unsupported_media_type", "{v}");

    // DNS rebinding: the browser sends the attacker's name as Host.
    let r = http
        .get(format!("{}/admin/events/{id}", hy.admin))
        .header("host", format!("evil.example:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let text = r.text().await.unwrap();
    assert!(text.contains("host_not_allowed"), "{text}");
    assert!(!text.contains("secret"), "event data leaked: {text}");
    let r = http
        .get(format!("{}/admin/events", hy.admin))
        .header("host", format!("evil.example:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Liveness stays open to any name.
    let r = http
        .get(format!("{}/healthz", hy.admin))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Same-origin browser requests work.
    let r = http
        .post(format!("{}/admin/targets/t/pause", hy.admin))
        .header("origin", format!("http://127.0.0.1:{port}"))
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(paused(&hy).await);
    let r = http
        .post(format!("{}/admin/targets/t/resume", hy.admin))
        .header("host", format!("localhost:{port}"))
        .header("origin", format!("http://localhost:{port}"))
        .header("content-type", "application/json; charset=utf-8")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(!paused(&hy).await);
    // Clients that send no Origin (curl, the CLI, tests) with JSON.
    let (code, v) = hy
        .admin_post("/admin/events/replay", json!({"source": "s"}))
        .await;
    assert_eq!(code, 202, "{v}");

    // HTTP/1.0 without a Host header.
    let (code, out) = raw_http10(&hy.admin, "GET /admin/events HTTP/1.0\r\n\r\n");
    assert_eq!(code, 200, "{out}");
    let (code, out) = raw_http10(
        &hy.admin,
        "POST /admin/targets/t/pause HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(code, 200, "{out}");
    assert!(paused(&hy).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_hosts_lets_a_configured_name_through() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![]).await;
    let hy = Hookyard::start(
        tmp.path(),
        &config(tmp.path(), &sink, "admin_hosts = [\"hookyard.internal\"]"),
    );
    let http = reqwest::Client::new();
    let port = port_of(&hy.admin);
    for (host, want) in [
        (format!("hookyard.internal:{port}"), 200),
        ("HOOKYARD.internal".to_string(), 200),
        (format!("other.internal:{port}"), 403),
    ] {
        let r = http
            .get(format!("{}/admin/targets", hy.admin))
            .header("host", &host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), want, "Host: {host}");
    }
}
