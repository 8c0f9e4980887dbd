//! kill -9 loses nothing that was acknowledged: events accepted while the
//! target is down are all delivered after a restart.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_then_restart_delivers_every_accepted_event() {
    sigkill_then_restart("").await;
}

/// The same on the embedded store's second engine: fjall's journal, not
/// sled's log, is what must hold every acknowledged event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_then_restart_on_fjall_delivers_every_accepted_event() {
    sigkill_then_restart(ON_FJALL).await;
}

async fn sigkill_then_restart(store: &str) {
    let tmp = tempfile::tempdir().unwrap();
    install_plugin(&tmp.path().join("plugins"), "quickstart-router", "router");
    let port = free_port();
    let config = format!(
        "{}\n[sources.s]\nplugins = [\"router\"]\ntargets = [\"raw\"]\n\n\
         [targets.orders]\nurl = \"http://127.0.0.1:{port}/orders\"\nsecret = \"{SECRET}\"\nretry_schedule = [\"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\"]\n\n\
         [targets.alerts]\nurl = \"http://127.0.0.1:{port}/alerts\"\nsecret = \"{SECRET}\"\nretry_schedule = [\"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\"]\n\n\
         [targets.raw]\nurl = \"http://127.0.0.1:{port}/raw\"\nsecret = \"{SECRET}\"\nretry_schedule = [\"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\"]\n\n{store}",
        server_section(tmp.path())
    );
    let hy = Hookyard::start(tmp.path(), &config);

    // Eight clients send back to back; SIGKILL lands mid-stream, so some
    // requests are answered, some cut off. Only the answered ones are
    // promised; every one of those must be delivered.
    let public = hy.public.clone();
    let http = reqwest::Client::new();
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let http = http.clone();
        let url = format!("{public}/hooks/s");
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut failed = 0;
            // Bounded: at most 5000 requests per client.
            for _ in 0..5000 {
                let i = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let kind = if i.is_multiple_of(2) {
                    "order.paid"
                } else {
                    "invoice.sent"
                };
                let body = format!(r#"{{"type":"{kind}","n":{i}}}"#);
                let answered = async {
                    let r = http.post(&url).body(body).send().await.ok()?;
                    if r.status() != 202 {
                        return None;
                    }
                    let v = r.json::<serde_json::Value>().await.ok()?;
                    Some(v["id"].as_str()?.to_string())
                };
                match answered.await {
                    Some(id) => acked.push((i, id)),
                    None => {
                        failed += 1;
                        if failed > 3 {
                            break;
                        }
                    }
                }
            }
            (acked, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    hy.kill9();
    let mut accepted = HashMap::new();
    let mut cut_off = 0;
    for t in tasks {
        let (acked, failed) = t.await.unwrap();
        accepted.extend(acked);
        cut_off += failed;
    }
    assert!(
        accepted.len() >= 8,
        "events were acknowledged before the kill"
    );
    assert!(cut_off > 0, "the kill landed while requests were in flight");
    let sent = counter.load(std::sync::atomic::Ordering::SeqCst);
    eprintln!(
        "{} requests acknowledged before SIGKILL ({sent} started, {cut_off} cut off)",
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
