//! Hookyard's lifecycle under load: the retention sweep removes old events
//! without stalling ingestion or dropping work, and a SIGTERM under load
//! loses no acked event across a restart.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::admin::*;
use support::*;

/// One load at a time: the retention test bounds an ack's latency, and the
/// SIGTERM test's load and restart on the same two cores would count as a
/// stall of the sweep.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------------------------------------------------------------------------
// Retention under load.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_sweeps_old_events_while_ingesting() {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![]).await;
    let config = format!(
        "{}\n[sources.s]\ntargets = [\"t\"]\n\n\
         [targets.t]\nurl = \"{}\"\nsecret = \"{SECRET}\"\nretry_schedule = [\"100ms\", \"100ms\", \"100ms\"]\njitter = 0\n",
        preamble(
            tmp.path(),
            "retention = \"2s\"\nretention_sweep_every = \"200ms\""
        ),
        sink.url("/in"),
    );
    let hy = Hookyard::start(tmp.path(), &config);

    struct Sent {
        n: usize,
        at: Duration,
        status: u16,
        latency: Duration,
        id: Option<String>,
    }
    let started = Instant::now();
    let run_for = Duration::from_secs(6);
    let next = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let next = next.clone();
        let url = format!("{}/hooks/s", hy.public);
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut sent = Vec::new();
            while started.elapsed() < run_for {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= 20_000 {
                    break;
                }
                let at = started.elapsed();
                let t0 = Instant::now();
                let r = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(format!(r#"{{"n":{n}}}"#))
                    .send()
                    .await
                    .expect("POST");
                let status = r.status().as_u16();
                let v: Value = r.json().await.unwrap_or(Value::Null);
                let latency = t0.elapsed();
                sent.push(Sent {
                    n,
                    at,
                    status,
                    latency,
                    id: v["id"].as_str().map(str::to_string),
                });
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            sent
        }));
    }
    let mut sent = Vec::new();
    for c in clients {
        sent.extend(c.await.unwrap());
    }
    let ended = started.elapsed();
    sent.sort_by_key(|s| s.n);
    let not_accepted: Vec<(usize, u16)> = sent
        .iter()
        .filter(|s| s.status != 202)
        .map(|s| (s.n, s.status))
        .collect();
    assert!(not_accepted.is_empty(), "not acked: {not_accepted:?}");
    let worst = sent.iter().map(|s| s.latency).max().unwrap();
    let mut latencies: Vec<Duration> = sent.iter().map(|s| s.latency).collect();
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    println!(
        "retention: {} events in {ended:?}; ack latency p99 {p99:?}, worst {worst:?}",
        sent.len()
    );

    // The last events (under a second old) are there, with their delivery.
    // "Last" counts from the latest send, not from the end of the run: a slow
    // final answer can leave the run's last 300 ms without a send.
    let latest = sent.iter().map(|s| s.at).max().unwrap();
    let last: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.at + Duration::from_millis(300) >= latest)
        .collect();
    assert!(!last.is_empty());
    for s in &last {
        let id = s.id.as_deref().unwrap();
        let (status, v) = hy.admin_get(&format!("/admin/events/{id}")).await;
        assert_eq!(status, 200, "recent event {id} is kept: {v}");
        assert_eq!(v["event"]["id"], id);
    }
    let check_last = last.iter().rev().take(5).collect::<Vec<_>>();
    for s in check_last {
        let v = hy
            .wait_event(
                s.id.as_deref().unwrap(),
                Duration::from_millis(1200),
                is_final_delivered,
            )
            .await;
        assert_eq!(v["deliveries"].as_array().unwrap().len(), 1, "{v:#}");
    }

    // Events of the first second are gone.
    let first: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.at < Duration::from_secs(1))
        .collect();
    assert!(!first.is_empty());
    let t0 = Instant::now();
    for s in &first {
        let id = s.id.as_deref().unwrap();
        poll(
            Duration::from_secs(5),
            &format!("event {id} (sent at {:?}) swept", s.at),
            async || {
                let (status, v) = hy.admin_get(&format!("/admin/events/{id}")).await;
                if status == 404 {
                    Ok(())
                } else {
                    Err(format!("{status} {v}"))
                }
            },
        )
        .await;
    }
    println!(
        "retention: {} first-second events all gone {:?} after the load stopped",
        first.len(),
        t0.elapsed()
    );

    let metrics = hy.admin_text("/metrics").await;
    let swept = sample_value(
        &metrics,
        "hookyard_retention_swept_total",
        &[("kind", "events")],
    );
    assert!(
        swept.is_some_and(|v| v >= first.len() as f64),
        "hookyard_retention_swept_total{{kind=\"events\"}} = {swept:?}"
    );
    let swept_deliveries = sample_value(
        &metrics,
        "hookyard_retention_swept_total",
        &[("kind", "deliveries")],
    );
    assert!(swept_deliveries.is_some_and(|v| v >= first.len() as f64));

    // Every acked event reached the sink (sweeping never drops work).
    let want: BTreeSet<u64> = sent.iter().map(|s| s.n as u64).collect();
    poll(
        Duration::from_secs(15),
        "the sink has every event",
        async || {
            let got: BTreeSet<u64> = sink
                .received()
                .iter()
                .map(|r| r.json()["n"].as_u64().unwrap())
                .collect();
            let missing: Vec<_> = want.difference(&got).take(10).collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("missing (first 10): {missing:?}"))
            }
        },
    )
    .await;
    assert!(
        worst < Duration::from_secs(1),
        "the sweep stalled ingestion: worst ack {worst:?}"
    );
}

// ---------------------------------------------------------------------------
// SIGTERM under load.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_load_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        "{}\n[sources.s]\ntargets = [\"t\"]\n\n\
         [targets.t]\nurl = \"http://127.0.0.1:{port}/in\"\nsecret = \"{SECRET}\"\nretry_schedule = [\"1s\"]\nmax_attempts = 1000\njitter = 0\nbreaker_failures = 0\ntimeout = \"2s\"\n",
        preamble(tmp.path(), "shutdown_grace = \"5s\""),
    );
    let hy = Hookyard::start(tmp.path(), &config);

    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, next) = (stop.clone(), next.clone());
        let url = format!("{}/hooks/s", hy.public);
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .unwrap();
            // (n, id) for each 202; other answers; transport errors.
            let mut acked = Vec::new();
            let mut other = Vec::new();
            let mut errors = 0;
            while !stop.load(Ordering::SeqCst) {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= 20_000 {
                    break;
                }
                let body = format!(r#"{{"tag":"sigterm-test","n":{n}}}"#);
                match http.post(&url).body(body).send().await {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let v: Value = r.json().await.unwrap_or(Value::Null);
                        if status == 202 {
                            acked.push((n, v["id"].as_str().unwrap().to_string()));
                        } else {
                            other.push((n, status, v));
                        }
                    }
                    Err(_) => {
                        errors += 1;
                        // The listener is gone once a few in a row fail.
                        if errors >= 3 {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                }
                errors = 0;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (acked, other)
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = next.load(Ordering::SeqCst);
    let t0 = Instant::now();
    let status = tokio::task::spawn_blocking(move || hy.sigterm(Duration::from_secs(20)))
        .await
        .unwrap();
    let stop_took = t0.elapsed();
    stop.store(true, Ordering::SeqCst);
    let mut acked = Vec::new();
    let mut other = Vec::new();
    for c in clients {
        let (a, o) = c.await.unwrap();
        acked.extend(a);
        other.extend(o);
    }
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    assert_eq!(status.code(), Some(0));
    assert!(
        other.is_empty(),
        "answers other than 202: {:?}",
        &other[..other.len().min(5)]
    );
    assert!(before > 0 && !acked.is_empty());
    println!(
        "sigterm: {} acked ({before} requests started before the signal); exit took {stop_took:?}",
        acked.len()
    );

    // The target comes up; hookyard restarts on the same data.
    let sink = Sink::start_on(addr_of(port), vec![]).await;
    let hy = Hookyard::start(tmp.path(), &config);
    let want: BTreeSet<u64> = acked.iter().map(|(n, _)| *n as u64).collect();
    poll(
        Duration::from_secs(25),
        "every acked event delivered after the restart",
        async || {
            let got: BTreeSet<u64> = sink
                .received()
                .iter()
                .filter(|r| r.json()["tag"] == "sigterm-test")
                .map(|r| r.json()["n"].as_u64().unwrap())
                .collect();
            let missing: Vec<_> = want.difference(&got).take(10).collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{} of {} missing, e.g. {missing:?}",
                    want.difference(&got).count(),
                    want.len()
                ))
            }
        },
    )
    .await;
    let received = sink.received();
    assert!(received.iter().all(|r| r.signature_ok));
    let mut per_n: HashMap<u64, usize> = HashMap::new();
    for r in &received {
        *per_n.entry(r.json()["n"].as_u64().unwrap()).or_default() += 1;
    }
    let duplicates: usize = per_n.values().map(|c| c - 1).sum();
    println!(
        "sigterm: {} deliveries for {} acked events; {duplicates} duplicates; {} unacked events also delivered",
        received.len(),
        want.len(),
        per_n.keys().filter(|n| !want.contains(n)).count()
    );
    // Spot-check the acked ids map to the stored events.
    let (n, id) = &acked[acked.len() / 2];
    let v = hy.event(id).await;
    assert_eq!(
        v["event"]["id"],
        id.as_str(),
        "event {n} is stored after the restart"
    );
}
