//! The public door: duplicates are stored and routed once, senders over
//! their rate get 429 with Retry-After, addresses outside the allowlist are
//! refused, and every refusal is counted and kept for debugging.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_stored_and_routed_once() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![]).await;
    let config = format!(
        "{}\n[sources.gh]\ntargets = [\"t\"]\nidempotency = {{ header = \"x-github-delivery\" }}\n\
         [sources.stripe]\ntargets = [\"t\"]\nidempotency = {{ json_pointer = \"/id\", window = \"1h\" }}\n\n\
         [targets.t]\nurl = \"{}\"\n",
        server_section(tmp.path()),
        sink.url("/"),
    );
    let hy = Hookyard::start(tmp.path(), &config);
    let http = reqwest::Client::new();
    let post = |delivery: &str, body: &str| {
        http.post(format!("{}/hooks/gh", hy.public))
            .header("x-github-delivery", delivery)
            .body(body.to_string())
            .send()
    };

    // Twice in a row: 202 then 200 with the original id.
    let first = post("d-1", "{\"n\":1}").await.unwrap();
    assert_eq!(first.status(), 202);
    let id = first.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let again = post("d-1", "{\"n\":1}").await.unwrap();
    assert_eq!(again.status(), 200);
    let v: Value = again.json().await.unwrap();
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["duplicate"], true);

    // Fifty at once with a fresh key: exactly one is new.
    let mut tasks = vec![];
    for _ in 0..50 {
        let http = http.clone();
        let url = format!("{}/hooks/gh", hy.public);
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .header("x-github-delivery", "d-2")
                .body("{\"n\":2}")
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap();
            (status, v["id"].as_str().unwrap().to_string())
        }));
    }
    let mut results = vec![];
    for t in tasks {
        results.push(t.await.unwrap());
    }
    assert_eq!(
        results.iter().filter(|(s, _)| *s == 202).count(),
        1,
        "{results:?}"
    );
    assert_eq!(results.iter().filter(|(s, _)| *s == 200).count(), 49);
    assert!(
        results.iter().all(|(_, i)| *i == results[0].1),
        "all answers name one event"
    );

    // A body key (Stripe's event id) works the same way.
    for _ in 0..3 {
        let r = http
            .post(format!("{}/hooks/stripe", hy.public))
            .body(r#"{"id":"evt_stripe_1","type":"charge.succeeded"}"#)
            .send()
            .await
            .unwrap();
        assert!(r.status() == 202 || r.status() == 200);
    }
    // No key, no dedup.
    assert_eq!(post_without_key(&http, &hy).await, 202);
    assert_eq!(post_without_key(&http, &hy).await, 202);

    sink.wait_for(5, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        sink.received().len(),
        5,
        "d-1, d-2, evt_stripe_1 and two keyless"
    );
    let sources = hy.admin_json("/admin/sources").await;
    let gh = sources["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "gh")
        .unwrap();
    assert_eq!(gh["counts"]["duplicate"], 50);
    assert_eq!(gh["counts"]["accepted"], 4);
}

async fn post_without_key(http: &reqwest::Client, hy: &Hookyard) -> u16 {
    http.post(format!("{}/hooks/gh", hy.public))
        .body("{}")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_and_allowlist_refuse_with_clear_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let config = format!(
        "{}\n[sources.limited]\nrate_limit = {{ per_second = 0.5, burst = 3 }}\n\
         [sources.private]\nallow_ips = [\"10.0.0.0/8\"]\n\
         [sources.proxied]\nallow_ips = [\"10.0.0.0/8\"]\nclient_ip_header = \"x-forwarded-for\"\n\
         [sources.local]\nallow_ips = [\"127.0.0.0/8\", \"::1\"]\n",
        server_section(tmp.path()),
    );
    let hy = Hookyard::start(tmp.path(), &config);
    let http = reqwest::Client::new();
    let send = |source: &str, xff: Option<&str>| {
        let mut r = http
            .post(format!("{}/hooks/{source}", hy.public))
            .header("authorization", "Bearer do-not-log-me")
            .body("{}");
        if let Some(x) = xff {
            r = r.header("x-forwarded-for", x);
        }
        r.send()
    };

    let mut statuses = vec![];
    for _ in 0..5 {
        statuses.push(send("limited", None).await.unwrap());
    }
    let codes: Vec<u16> = statuses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(&codes[..3], &[202, 202, 202], "the burst passes");
    assert_eq!(codes[3], 429);
    let retry_after: u64 = statuses[3].headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        send("limited", None).await.unwrap().status(),
        202,
        "refilled"
    );

    let r = send("private", None).await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "ip_not_allowed");
    // The proxy header is only believed where the source says so.
    assert_eq!(
        send("private", Some("10.1.2.3")).await.unwrap().status(),
        403
    );
    assert_eq!(
        send("proxied", Some("6.6.6.6, 10.1.2.3"))
            .await
            .unwrap()
            .status(),
        202
    );
    assert_eq!(
        send("proxied", Some("10.1.2.3, 6.6.6.6"))
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(send("local", None).await.unwrap().status(), 202);

    let sources = hy.admin_json("/admin/sources").await;
    let recent = sources["recent_rejections"].as_array().unwrap();
    assert!(!recent.is_empty());
    let text = serde_json::to_string(&sources).unwrap();
    assert!(!text.contains("do-not-log-me"), "credentials are redacted");
    let r = recent
        .iter()
        .find(|r| r["reason"] == "ip_not_allowed")
        .unwrap();
    assert_eq!(r["status"], 403);
    assert_eq!(r["body_size"], 2);
    assert!(
        r["headers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h[0] == "authorization" && h[1] == "[redacted]")
    );

    let metrics = hy.admin_text("/metrics").await;
    assert!(
        metrics.contains(
            "hookyard_requests_rejected_total{source=\"limited\",reason=\"rate_limited\"} 2"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "hookyard_requests_rejected_total{source=\"private\",reason=\"ip_not_allowed\"} 2"
        ),
        "{metrics}"
    );
}

/// Behind a proxy, only the entry the proxy appended counts: a client that
/// writes an allowed address left of it is refused, whether that last entry
/// carries a port (it is then the client, port stripped) or does not parse
/// at all (the client is unknown), instead of the allowed address being
/// taken for the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_bypass_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let config = format!(
        "{}\n[sources.proxied]\nallow_ips = [\"203.0.113.0/24\"]\nclient_ip_header = \"x-forwarded-for\"\n",
        server_section(tmp.path()),
    );
    let hy = Hookyard::start(tmp.path(), &config);
    let http = reqwest::Client::new();
    let send = |xff: &str| {
        http.post(format!("{}/hooks/proxied", hy.public))
            .header("x-forwarded-for", xff.to_string())
            .body("{}")
            .send()
    };
    for (bypass, code) in [
        ("203.0.113.9, 198.51.100.7:51234", "ip_not_allowed"),
        ("203.0.113.9, unknown", "client_ip_unknown"),
        ("203.0.113.9, [2001:db8::1]:443", "ip_not_allowed"),
        ("203.0.113.9, 198.51.100.7:port", "client_ip_unknown"),
    ] {
        let r = send(bypass).await.unwrap();
        assert_eq!(r.status(), 403, "{bypass}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["code"], code, "{bypass}: {v}");
        if code == "client_ip_unknown" {
            assert!(
                v["error"].as_str().unwrap().contains("x-forwarded-for"),
                "{v}"
            );
        }
    }
    // The proxy's entry with a port is the client, port stripped.
    for allowed in ["198.51.100.7, 203.0.113.9:51234", "203.0.113.9"] {
        let r = send(allowed).await.unwrap();
        assert_eq!(r.status(), 202, "{allowed}");
    }
    let metrics = hy.admin_text("/metrics").await;
    assert!(
        metrics.contains(
            "hookyard_requests_rejected_total{source=\"proxied\",reason=\"client_ip_unknown\"} 2"
        ),
        "{metrics}"
    );
}

/// Idempotency keys are the whole value with its JSON type: ids sharing
/// their first 256 characters, or equal as text but one a number and one a
/// string, are different deliveries and both stored; a true duplicate is
/// still answered as one, long or short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_are_whole_and_typed() {
    let tmp = tempfile::tempdir().unwrap();
    let config = format!(
        "{}\n[sources.p]\nidempotency = {{ json_pointer = \"/id\" }}\n\
         [sources.h]\nidempotency = {{ header = \"x-delivery\" }}\n",
        server_section(tmp.path()),
    );
    let hy = Hookyard::start(tmp.path(), &config);
    let prefix = "e".repeat(256);
    let long_a = format!(r#"{{"id":"{prefix}A"}}"#);
    let long_b = format!(r#"{{"id":"{prefix}B"}}"#);
    let mut stored = Vec::new();
    for body in [&long_a, &long_b, r#"{"id":1}"#, r#"{"id":"1"}"#] {
        let (status, v) = hy.post("p", body.to_string()).await;
        assert_eq!(status, 202, "{body}: {v}");
        stored.push(v["id"].as_str().unwrap().to_string());
    }
    for (body, original) in [
        (&long_b, &stored[1]),
        (&r#"{"id":1}"#.to_string(), &stored[2]),
    ] {
        let (status, v) = hy.post("p", body.to_string()).await;
        assert_eq!(status, 200, "{body}: {v}");
        assert_eq!(v["duplicate"], true);
        assert_eq!(&v["id"], original.as_str());
    }
    // Every stored event is there with its own body.
    for id in &stored {
        let v = hy.event(id).await;
        assert_eq!(v["event"]["id"], id.as_str());
    }

    // Header keys: the same.
    let http = reqwest::Client::new();
    let send = |key: String| {
        http.post(format!("{}/hooks/h", hy.public))
            .header("x-delivery", key)
            .body("{}")
            .send()
    };
    assert_eq!(send(format!("{prefix}1")).await.unwrap().status(), 202);
    assert_eq!(send(format!("{prefix}2")).await.unwrap().status(), 202);
    assert_eq!(send(format!("{prefix}2")).await.unwrap().status(), 200);
}
