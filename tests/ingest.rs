//! The public endpoint: what is accepted, stored exactly, and rejected.

mod support;

use std::time::Duration;

use base64::Engine as _;
use support::*;

fn config(dir: &std::path::Path) -> String {
    format!(
        "{}\n[sources.raw]\n\n[sources.small]\nmax_body = \"1KiB\"\n",
        server_section(dir)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_body_is_stored_exactly_with_its_request_details() {
    let tmp = tempfile::tempdir().unwrap();
    let hy = Hookyard::start(tmp.path(), &config(tmp.path()));
    let http = reqwest::Client::new();
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("application/json", br#"{"a":[1,2,{"b":null}]}"#.to_vec()),
        (
            "application/x-www-form-urlencoded",
            b"a=1&b=%20two".to_vec(),
        ),
        (
            "application/xml",
            b"<?xml version=\"1.0\"?><r><x>1</x></r>".to_vec(),
        ),
        ("application/octet-stream", (0..=255u8).collect()),
        ("text/plain", vec![]),
    ];
    for (ct, body) in bodies {
        let r = http
            .post(format!("{}/hooks/raw?x=1&y=two", hy.public))
            .header("content-type", ct)
            .header("X-Custom-Header", "Value-Kept")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let id = r.json::<serde_json::Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        // 202 means stored: the event is readable at once.
        let v = hy.event(&id).await;
        let e = &v["event"];
        assert_eq!(e["id"], id.as_str());
        assert_eq!(e["method"], "POST");
        assert_eq!(e["path"], "/hooks/raw");
        assert_eq!(e["query"], "x=1&y=two");
        assert!(e["received_at"].as_u64().unwrap() > 1_600_000_000_000);
        let stored = base64::engine::general_purpose::STANDARD
            .decode(e["body"]["base64"].as_str().unwrap())
            .unwrap();
        assert_eq!(stored, body, "body for {ct}");
        let headers = e["headers"].as_array().unwrap();
        assert!(
            headers
                .iter()
                .any(|h| h[0] == "x-custom-header" && h[1] == "Value-Kept")
        );
        assert!(headers.iter().any(|h| h[0] == "content-type" && h[1] == ct));
        // No plugins or targets: routed to nothing, recorded as dropped.
        hy.wait_event(&id, Duration::from_secs(5), |v| v["status"] == "dropped")
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_are_clear_and_store_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let hy = Hookyard::start(tmp.path(), &config(tmp.path()));
    let http = reqwest::Client::new();

    let r = http
        .post(format!("{}/hooks/nope", hy.public))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], "unknown_source");
    assert!(v["error"].as_str().unwrap().contains("nope"));

    let r = http
        .post(format!("{}/hooks/small", hy.public))
        .body(vec![b'x'; 1025])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["code"],
        "body_too_large"
    );

    // Default limit is 1 MiB; a streamed body without Content-Length too.
    let big = vec![b'y'; 1024 * 1024 + 1];
    let r = http
        .post(format!("{}/hooks/raw", hy.public))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..20).map(|_| Ok(vec![b'z'; 64 * 1024])).collect();
    let r = http
        .post(format!("{}/hooks/raw", hy.public))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let ok = http
        .post(format!("{}/hooks/small", hy.public))
        .body(vec![b'x'; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 202);

    let r = http
        .get(format!("{}/hooks/raw", hy.public))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["code"],
        "method_not_allowed"
    );

    let r = http
        .post(format!("{}/elsewhere", hy.public))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let health: serde_json::Value = http
        .get(format!("{}/healthz", hy.admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    drop(hy);

    // Only the one accepted request left an event in the store.
    let store = hookyard::store::sled::SledStore::open(
        &tmp.path().join("data"),
        hookyard::config::Durability::Flush,
    )
    .unwrap()
    .into_store();
    let page = store
        .records
        .list_events(&hookyard::store::EventQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
}

/// A `max_body` above the 8 MiB drain limit is honoured: it used to be cut
/// at 8 MiB while the 413 named the configured limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_body_above_eight_mib_is_honoured() {
    let tmp = tempfile::tempdir().unwrap();
    let config = format!(
        "{}\n[sources.big]\nmax_body = \"20MiB\"\n",
        server_section(tmp.path())
    );
    let hy = Hookyard::start(tmp.path(), &config);
    let http = reqwest::Client::new();
    let size = 16 * 1024 * 1024;
    let r = http
        .post(format!("{}/hooks/big", hy.public))
        .body(vec![b'b'; size])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, list) = hy.admin_get("/admin/events?source=big").await;
    assert_eq!(list["events"][0]["id"], id.as_str());
    assert_eq!(list["events"][0]["size"], size);

    // Streamed without a Content-Length too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..18).map(|_| Ok(vec![b'c'; 1024 * 1024])).collect();
    let r = http
        .post(format!("{}/hooks/big", hy.public))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    let r = http
        .post(format!("{}/hooks/big", hy.public))
        .body(vec![b'b'; 21 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], "body_too_large");
    assert!(
        v["error"].as_str().unwrap().contains("20971520"),
        "the 413 names the configured limit: {v}"
    );
}
