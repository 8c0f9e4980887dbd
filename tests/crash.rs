//! kill -9 loses nothing that was acknowledged: events accepted while the
//! target is down are all delivered after a restart.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_then_restart_delivers_every_accepted_event() {
    let tmp = tempfile::tempdir().unwrap();
    install_plugin(&tmp.path().join("plugins"), "quickstart-router", "router");
    let port = free_port();
    let config = format!(
        "{}\n[sources.s]\nplugins = [\"router\"]\ntargets = [\"raw\"]\n\n\
         [targets.orders]\nurl = \"http://127.0.0.1:{port}/orders\"\nsecret = \"{SECRET}\"\nretry_schedule = [\"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\"]\n\n\
         [targets.alerts]\nurl = \"http://127.0.0.1:{port}/alerts\"\nsecret = \"{SECRET}\"\nretry_schedule = [\"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\"]\n\n\
         [targets.raw]\nurl = \"http://127.0.0.1:{port}/raw\"\nsecret = \"{SECRET}\"\nretry_schedule = [\"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\"]\n",
        server_section(tmp.path())
    );
    let hy = Hookyard::start(tmp.path(), &config);

    // Send concurrently and kill mid-stream: some requests are answered,
    // some are cut off. Only the answered ones are promised.
    const N: usize = 200;
    let public = hy.public.clone();
    let http = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..N {
        let http = http.clone();
        let url = format!("{public}/hooks/s");
        tasks.push(tokio::spawn(async move {
            let kind = if i % 2 == 0 {
                "order.paid"
            } else {
                "invoice.sent"
            };
            let body = format!(r#"{{"type":"{kind}","n":{i}}}"#);
            let r = http.post(url).body(body.clone()).send().await.ok()?;
            if r.status() != 202 {
                return None;
            }
            let id = r.json::<serde_json::Value>().await.ok()?["id"]
                .as_str()?
                .to_string();
            Some((id, i))
        }));
        if i == N / 2 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Let part of the load land, then SIGKILL.
    tokio::time::sleep(Duration::from_millis(150)).await;
    hy.kill9();
    let mut accepted = HashMap::new();
    for t in tasks {
        if let Some((id, i)) = t.await.unwrap() {
            accepted.insert(i, id);
        }
    }
    assert!(
        !accepted.is_empty(),
        "some events were acknowledged before the kill"
    );
    eprintln!(
        "{} of {N} requests were acknowledged before SIGKILL",
        accepted.len()
    );

    // Restart on the same data; the target is still down for a moment.
    let hy = Hookyard::start(tmp.path(), &config);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sink = Sink::start_on(format!("127.0.0.1:{port}").parse().unwrap(), vec![]).await;

    // Each accepted event must reach /raw (passthrough) and its plugin target.
    let want = accepted.len() * 2;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let got = sink.received();
        let mut seen_raw = std::collections::HashSet::new();
        let mut seen_routed = std::collections::HashSet::new();
        for r in &got {
            let n = if r.path == "/alerts" {
                r.json()["payload"]["n"].as_u64().unwrap()
            } else {
                r.json()["n"].as_u64().unwrap()
            } as usize;
            if r.path == "/raw" {
                seen_raw.insert(n);
            } else {
                seen_routed.insert(n);
            }
        }
        let missing: Vec<_> = accepted
            .keys()
            .filter(|i| !seen_raw.contains(i) || !seen_routed.contains(i))
            .collect();
        if missing.is_empty() {
            let duplicates = got.len() - want.min(got.len());
            eprintln!(
                "all {} accepted events delivered ({} requests, {duplicates} duplicates)",
                accepted.len(),
                got.len()
            );
            assert!(got.iter().all(|r| r.signature_ok));
            break;
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "{} accepted events never delivered, e.g. {:?}\nlog:\n{}",
                missing.len(),
                &missing[..missing.len().min(5)],
                hy.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And the store agrees.
    for id in accepted.values().take(20) {
        hy.wait_event(id, Duration::from_secs(10), delivered).await;
    }
}
