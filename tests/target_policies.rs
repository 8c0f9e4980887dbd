//! Per-target delivery policies, observed from a real sink: Retry-After,
//! 410 Gone disabling the target, timeouts, the concurrency and rate limits,
//! the circuit breaker, the SSRF guard, secret rotation, and pause/resume.

mod support;

use std::time::{Duration, Instant, SystemTime};

use axum::http::{HeaderMap, HeaderValue};
use base64::Engine as _;
use serde_json::{Value, json};
use support::*;

/// The preamble, one source `s` sending to `targets`, then the target tables.
fn config(dir: &std::path::Path, targets: &[&str], tables: &str) -> String {
    let list: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    format!(
        "{}\n[sources.s]\ntargets = [{}]\n\n{tables}",
        server_section(dir),
        list.join(", ")
    )
}

/// A `retry_schedule` value of `n` steps of `step`.
fn schedule(step: &str, n: usize) -> String {
    let steps: Vec<String> = (0..n).map(|_| format!("\"{step}\"")).collect();
    format!("[{}]", steps.join(", "))
}

async fn target_status(hy: &Hookyard, name: &str) -> Value {
    let (code, v) = hy.admin_get(&format!("/admin/targets/{name}")).await;
    assert_eq!(code, 200, "GET /admin/targets/{name}: {v}");
    v
}

/// Polls the target's status until `done` holds (or panics with the last
/// status and hookyard's log).
async fn wait_target(
    hy: &Hookyard,
    name: &str,
    timeout: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let v = target_status(hy, name).await;
        if done(&v) {
            return v;
        }
        if Instant::now() > deadline {
            panic!(
                "target {name} did not reach the expected state: {v:#}\nlog:\n{}",
                hy.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `POST /admin/targets/{name}/{action}`, asserting 200; the new status.
async fn control(hy: &Hookyard, name: &str, action: &str) -> Value {
    let (code, v) = hy
        .admin_post(&format!("/admin/targets/{name}/{action}"), json!({}))
        .await;
    assert_eq!(code, 200, "{action} {name}: {v}");
    v
}

/// Status codes of a delivery's attempts (`None`: no HTTP answer).
fn codes(delivery: &Value) -> Vec<Option<u64>> {
    delivery["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].as_u64())
        .collect()
}

/// The event's only delivery.
fn only_delivery(v: &Value) -> &Value {
    let d = v["deliveries"].as_array().unwrap();
    assert_eq!(d.len(), 1, "{v:#}");
    &d[0]
}

/// Sends `n` events concurrently; their ids in order.
async fn send_many(hy: &Hookyard, n: usize) -> Vec<String> {
    let bodies: Vec<String> = (0..n).map(|i| format!(r#"{{"n":{i}}}"#)).collect();
    futures_util::future::join_all(bodies.iter().map(|b| hy.send("s", b))).await
}

async fn wait_all_delivered(hy: &Hookyard, ids: &[String], timeout: Duration) -> Vec<Value> {
    let mut views = vec![];
    for id in ids {
        views.push(hy.wait_event(id, timeout, delivered).await);
    }
    views
}

fn webhook_id(r: &Received) -> String {
    r.header("webhook-id").unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_503_then_success() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![Answer {
        status: 503,
        retry_after: Some(1),
    }])
    .await;
    let tables = format!(
        "[targets.t]\nurl = \"{}\"\nsecret = \"{SECRET}\"\nretry_schedule = {}\njitter = 0.0\n",
        sink.url("/in"),
        schedule("100ms", 3)
    );
    let hy = Hookyard::start(tmp.path(), &config(tmp.path(), &["t"], &tables));
    let id = hy.send("s", r#"{"retry":"after"}"#).await;
    let v = hy.wait_event(&id, Duration::from_secs(15), delivered).await;

    let got = sink.received();
    assert_eq!(got.len(), 2, "{got:?}");
    // The 1 s Retry-After decides the wait, not the 100ms schedule step.
    let gap = got[1].at - got[0].at;
    assert!(
        gap >= Duration::from_millis(950),
        "retried {gap:?} after a 503 with Retry-After: 1"
    );
    assert!(
        gap < Duration::from_secs(5),
        "retried only {gap:?} after Retry-After: 1"
    );
    assert_eq!(webhook_id(&got[0]), webhook_id(&got[1]));
    assert!(got.iter().all(|r| r.signature_ok));

    let d = only_delivery(&v);
    assert_eq!(d["status"], "delivered");
    assert_eq!(d["attempts"], 2);
    assert_eq!(codes(d), vec![Some(503), Some(200)]);
    let log = d["attempt_log"].as_array().unwrap();
    assert_eq!(log[0]["error"], "HTTP 503 Service Unavailable");
    assert!(log[1].get("error").is_none(), "{d:#}");
    let recorded_gap = log[1]["at"].as_u64().unwrap() - log[0]["at"].as_u64().unwrap();
    assert!(recorded_gap >= 950, "attempts {recorded_gap} ms apart");

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.received().len(), 2, "nothing sent after success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_disables_the_target_until_enabled() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![answer(410)]).await;
    // One attempt at a time, so the 410 is recorded before the next attempt
    // could start: exactly one request may reach the sink.
    let tables = format!(
        "[targets.t]\nurl = \"{}\"\nsecret = \"{SECRET}\"\nmax_in_flight = 1\nretry_schedule = {}\njitter = 0.0\n",
        sink.url("/in"),
        schedule("100ms", 3)
    );
    let hy = Hookyard::start(tmp.path(), &config(tmp.path(), &["t"], &tables));
    let mut ids = vec![];
    for i in 0..3 {
        ids.push(hy.send("s", &format!(r#"{{"n":{i}}}"#)).await);
    }

    let st = wait_target(&hy, "t", Duration::from_secs(10), |s| {
        !s["disabled"].is_null()
    })
    .await;
    let reason = st["disabled"]["reason"].as_str().unwrap();
    assert!(reason.contains("410"), "{reason}");
    assert!(st["disabled"]["at"].as_u64().is_some(), "{st:#}");

    // Disabled: nothing more is sent, and nothing is given up on.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = sink.received();
    assert_eq!(got.len(), 1, "requests while disabled: {got:?}");
    let st = target_status(&hy, "t").await;
    assert!(!st["disabled"].is_null(), "{st:#}");
    assert_eq!(st["scheduled"], 3, "{st:#}");
    assert_eq!(st["dead"], 0, "{st:#}");
    let mut gone = None;
    for id in &ids {
        let v = hy.event(id).await;
        let d = only_delivery(&v);
        assert_eq!(d["status"], "scheduled", "{v:#}");
        match d["attempts"].as_u64().unwrap() {
            0 => assert_eq!(codes(d), vec![]),
            1 => {
                assert_eq!(codes(d), vec![Some(410)]);
                assert!(gone.is_none(), "two deliveries were attempted");
                gone = Some(d["id"].as_str().unwrap().to_string());
            }
            n => panic!("{n} attempts while disabled: {v:#}"),
        }
    }
    let gone = gone.expect("one delivery got the 410");
    assert_eq!(webhook_id(&got[0]), gone);

    let st = control(&hy, "t", "enable").await;
    assert!(st["disabled"].is_null(), "{st:#}");
    assert_eq!(st["state"], "closed");
    let views = wait_all_delivered(&hy, &ids, Duration::from_secs(10)).await;

    let got = sink.received();
    assert_eq!(got.len(), 4, "{got:?}");
    // The retried delivery kept its webhook-id; the others went once each.
    let later: Vec<String> = got[1..].iter().map(webhook_id).collect();
    assert_eq!(later.iter().filter(|i| **i == gone).count(), 1, "{later:?}");
    let mut delivery_ids: Vec<String> = views
        .iter()
        .map(|v| only_delivery(v)["id"].as_str().unwrap().to_string())
        .collect();
    delivery_ids.sort();
    let mut later_sorted = later.clone();
    later_sorted.sort();
    assert_eq!(later_sorted, delivery_ids);
    for v in &views {
        let d = only_delivery(v);
        if d["id"] == gone.as_str() {
            assert_eq!(codes(d), vec![Some(410), Some(200)]);
        } else {
            assert_eq!(codes(d), vec![Some(200)]);
        }
    }
    assert!(got.iter().all(|r| r.signature_ok));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_are_retried_then_dead() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![]).await;
    sink.set_delay(Duration::from_secs(1));
    let tables = format!(
        "[targets.t]\nurl = \"{}\"\nsecret = \"{SECRET}\"\ntimeout = \"200ms\"\nretry_schedule = [\"100ms\", \"100ms\"]\njitter = 0.0\n",
        sink.url("/slow"),
    );
    let hy = Hookyard::start(tmp.path(), &config(tmp.path(), &["t"], &tables));
    let id = hy.send("s", "{}").await;
    let v = hy
        .wait_event(&id, Duration::from_secs(15), |v| {
            v["deliveries"][0]["status"] == "dead"
        })
        .await;
    let d = only_delivery(&v);
    assert_eq!(d["attempts"], 3, "{d:#}");
    let log = d["attempt_log"].as_array().unwrap();
    assert_eq!(log.len(), 3, "{d:#}");
    for (i, a) in log.iter().enumerate() {
        assert_eq!(a["n"], i as u64 + 1, "{a}");
        assert!(a["status_code"].is_null(), "{a}");
        let err = a["error"].as_str().unwrap();
        assert!(err.contains("timed out"), "{err}");
        assert_eq!(err, "timed out after 200ms");
        let latency = a["latency_ms"].as_f64().unwrap();
        assert!(
            (190.0..1000.0).contains(&latency),
            "attempt {} took {latency} ms with a 200ms timeout",
            i + 1
        );
    }
    assert!(
        d["last_error"].as_str().unwrap().contains("timed out"),
        "{d:#}"
    );
    // The requests did reach the sink (they were just too slow to answer).
    assert!(sink.max_in_flight() >= 1);
    let st = target_status(&hy, "t").await;
    assert_eq!(st["attempts"]["failed"], 3, "{st:#}");
    assert_eq!(st["attempts"]["succeeded"], 0, "{st:#}");
    assert_eq!(st["dead"], 1, "{st:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limit_is_observed_at_the_sink() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![]).await;
    sink.set_delay(Duration::from_millis(200));
    let tables = format!(
        "[targets.t]\nurl = \"{}\"\nsecret = \"{SECRET}\"\nmax_in_flight = 2\n",
        sink.url("/in"),
    );
    let hy = Hookyard::start(tmp.path(), &config(tmp.path(), &["t"], &tables));
    let ids = send_many(&hy, 12).await;
    wait_all_delivered(&hy, &ids, Duration::from_secs(20)).await;

    assert_eq!(sink.max_in_flight(), 2, "the sink saw this many at once");
    let got = sink.received();
    assert_eq!(got.len(), 12);
    let mut wids: Vec<String> = got.iter().map(webhook_id).collect();
    wids.sort();
    wids.dedup();
    assert_eq!(wids.len(), 12, "each delivery sent once");
    assert!(got.iter().all(|r| r.signature_ok));
    // 12 answers of 200ms, two at a time: at least 6 rounds.
    let span = got.last().unwrap().at - got[0].at;
    assert!(
        span >= Duration::from_millis(900),
        "12 slow answers, 2 at a time, took only {span:?}"
    );
    let st = target_status(&hy, "t").await;
    assert_eq!(st["policy"]["max_in_flight"], 2);
    assert_eq!(st["in_flight"], 0);
    assert_eq!(st["attempts"]["succeeded"], 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_is_observed_at_the_sink() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![]).await;
    let tables = format!(
        "[targets.t]\nurl = \"{}\"\nsecret = \"{SECRET}\"\nrate_limit = {{ per_second = 20 }}\n",
        sink.url("/in"),
    );
    let hy = Hookyard::start(tmp.path(), &config(tmp.path(), &["t"], &tables));
    let st = target_status(&hy, "t").await;
    assert_eq!(st["policy"]["rate_per_second"], 20.0);
    assert_eq!(st["policy"]["rate_burst"], 1.0);

    let ids = send_many(&hy, 30).await;
    wait_all_delivered(&hy, &ids, Duration::from_secs(20)).await;
    let mut at: Vec<Instant> = sink.received().iter().map(|r| r.at).collect();
    assert_eq!(at.len(), 30);
    at.sort();

    // 30 requests at 20/s with a burst of 1: at least 29 intervals of 50ms.
    let span = at[29] - at[0];
    assert!(
        span >= Duration::from_secs_f64(29.0 / 20.0 * 0.9),
        "30 requests at 20/s spanned only {span:?}"
    );
    assert!(
        span < Duration::from_secs(8),
        "much slower than 20/s: {span:?}"
    );
    // No 1 s window holds more than rate + burst (21) requests; one more
    // for the jitter between sending and the sink's timestamp.
    let busiest = (0..at.len())
        .map(|i| {
            at[i..]
                .iter()
                .take_while(|t| **t - at[i] < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap();
    assert!(
        busiest <= 22,
        "{busiest} requests within one second at 20/s"
    );
    eprintln!("rate limit: 30 requests over {span:?}, at most {busiest} in any 1 s window");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_breaker_opens_waits_probes_closes() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![answer(503); 4]).await;
    let tables = format!(
        "[targets.t]\nurl = \"{}\"\nsecret = \"{SECRET}\"\nmax_in_flight = 1\nbreaker_failures = 3\nbreaker_cooldown = \"1500ms\"\nretry_schedule = {}\njitter = 0.0\n",
        sink.url("/in"),
        schedule("100ms", 20)
    );
    let hy = Hookyard::start(tmp.path(), &config(tmp.path(), &["t"], &tables));
    let ids = vec![
        hy.send("s", r#"{"n":1}"#).await,
        hy.send("s", r#"{"n":2}"#).await,
    ];

    // Three failures in quick succession open the circuit.
    let st = wait_target(&hy, "t", Duration::from_secs(10), |s| {
        s["state"] == "open" && s["attempts"]["failed"] == 3
    })
    .await;
    assert_eq!(st["consecutive_failures"], 3, "{st:#}");
    let opened = st["opened_until"].as_u64().unwrap() - st["last_error_at"].as_u64().unwrap();
    assert_eq!(opened, 1500, "first cool-down: {st:#}");
    let got = sink.received();
    assert_eq!(got.len(), 3, "{got:?}");
    let burst = got[2].at - got[0].at;
    assert!(
        burst < Duration::from_millis(1200),
        "three failures took {burst:?}"
    );

    // Nothing during the cool-down, whatever the 100ms schedule says; then
    // one probe, which fails and opens the circuit for twice as long.
    let got = sink.wait_for(4, Duration::from_secs(10)).await;
    let cool = got[3].at - got[2].at;
    assert!(
        cool >= Duration::from_millis(1400),
        "probe {cool:?} after the circuit opened for 1500ms"
    );
    let st = wait_target(&hy, "t", Duration::from_secs(10), |s| {
        s["state"] == "open" && s["attempts"]["failed"] == 4
    })
    .await;
    let opened = st["opened_until"].as_u64().unwrap() - st["last_error_at"].as_u64().unwrap();
    assert_eq!(opened, 3000, "second cool-down: {st:#}");
    assert_eq!(sink.received().len(), 4);

    // The next probe succeeds: closed, and the other delivery follows.
    let got = sink.wait_for(5, Duration::from_secs(15)).await;
    let cool = got[4].at - got[3].at;
    assert!(
        cool >= Duration::from_millis(2900),
        "second probe {cool:?} after a failed probe (cool-down 3000ms)"
    );
    let views = wait_all_delivered(&hy, &ids, Duration::from_secs(10)).await;
    let st = wait_target(&hy, "t", Duration::from_secs(5), |s| {
        s["attempts"]["succeeded"] == 2
    })
    .await;
    assert_eq!(st["state"], "closed", "{st:#}");
    assert_eq!(st["consecutive_failures"], 0, "{st:#}");
    assert!(st["opened_until"].is_null(), "{st:#}");
    assert_eq!(st["attempts"]["failed"], 4, "{st:#}");

    let got = sink.received();
    assert_eq!(got.len(), 6, "no attempts wasted while open: {got:?}");
    assert!(
        got[5].at - got[4].at < Duration::from_secs(1),
        "the circuit closed, yet the second delivery waited {:?}",
        got[5].at - got[4].at
    );
    // Attempts recorded: 4 failures and 2 successes in total, nothing else.
    let mut all: Vec<Option<u64>> = views.iter().flat_map(|v| codes(only_delivery(v))).collect();
    all.sort();
    assert_eq!(
        all,
        vec![
            Some(200),
            Some(200),
            Some(503),
            Some(503),
            Some(503),
            Some(503)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssrf_guard_refuses_loopback_unless_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![]).await;
    let tables = format!(
        "[targets.guarded]\nurl = \"{}\"\nsecret = \"{SECRET}\"\nallow_private = false\nretry_schedule = [\"50ms\"]\njitter = 0.0\n\n\
         [targets.named]\nurl = \"http://localhost:{}/named\"\nsecret = \"{SECRET}\"\nallow_private = false\nretry_schedule = [\"50ms\"]\njitter = 0.0\n\n\
         [targets.open]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n",
        sink.url("/guarded"),
        sink.addr.port(),
        sink.url("/open"),
    );
    let hy = Hookyard::start(
        tmp.path(),
        &config(tmp.path(), &["guarded", "named", "open"], &tables),
    );
    let id = hy.send("s", r#"{"ssrf":true}"#).await;
    let v = hy
        .wait_event(&id, Duration::from_secs(10), |v| {
            v["deliveries"].as_array().is_some_and(|ds| {
                ds.len() == 3
                    && ds.iter().all(|d| match d["target"].as_str() {
                        Some("open") => d["status"] == "delivered",
                        _ => d["status"] == "dead",
                    })
            })
        })
        .await;
    for d in v["deliveries"].as_array().unwrap() {
        let log = d["attempt_log"].as_array().unwrap();
        match d["target"].as_str().unwrap() {
            "open" => assert_eq!(codes(d), vec![Some(200)]),
            refused @ ("guarded" | "named") => {
                assert_eq!(log.len(), 2, "{d:#}");
                for a in log {
                    assert!(a["status_code"].is_null(), "{a}");
                    let err = a["error"].as_str().unwrap();
                    assert!(err.contains("refused"), "{refused}: {err}");
                    assert!(err.contains("loopback"), "{refused}: {err}");
                }
                if refused == "named" {
                    // Refused when the name resolved, not by the URL check.
                    let err = log[0]["error"].as_str().unwrap();
                    assert!(err.contains("localhost"), "{err}");
                }
            }
            other => panic!("unexpected target {other}"),
        }
    }
    let got = sink.received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].path, "/open");
    assert!(got[0].signature_ok);
    assert!(sink.received_on("/guarded").is_empty());
    assert!(sink.received_on("/named").is_empty());
    let st = target_status(&hy, "guarded").await;
    assert_eq!(st["policy"]["allow_private"], false);
    let st = target_status(&hy, "open").await;
    assert_eq!(st["policy"]["allow_private"], true);
}

/// `headers` with `webhook-signature` replaced by `sig`.
fn with_signature(headers: &HeaderMap, sig: &str) -> HeaderMap {
    let mut h = headers.clone();
    h.insert("webhook-signature", HeaderValue::from_str(sig).unwrap());
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_rotation_sends_both_signatures() {
    let tmp = tempfile::tempdir().unwrap();
    let new = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(*b"hookyard-rotation-key-24")
    );
    let sink = Sink::start(vec![]).await;
    let hour = Duration::from_secs(3600);
    let until_future = humantime::format_rfc3339_seconds(SystemTime::now() + hour).to_string();
    let until_past = (SystemTime::now() - hour)
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    let tables = format!(
        "[targets.rotating]\nurl = \"{}\"\nsecret = \"{new}\"\nprevious_secret = \"{SECRET}\"\nprevious_secret_until = \"{until_future}\"\n\n\
         [targets.rotated]\nurl = \"{}\"\nsecret = \"{new}\"\nprevious_secret = \"{SECRET}\"\nprevious_secret_until = \"{until_past}\"\n",
        sink.url("/rotating"),
        sink.url("/rotated"),
    );
    let hy = Hookyard::start(
        tmp.path(),
        &config(tmp.path(), &["rotating", "rotated"], &tables),
    );
    let id = hy.send("s", r#"{"rotate":"keys"}"#).await;
    hy.wait_event(&id, Duration::from_secs(10), |v| {
        delivered(v) && v["deliveries"].as_array().unwrap().len() == 2
    })
    .await;

    // During the rotation window: both signatures, the new key's first.
    let r = &sink.received_on("/rotating")[0];
    let header = r.header("webhook-signature").unwrap();
    let sigs: Vec<&str> = header.split(' ').collect();
    assert_eq!(sigs.len(), 2, "{header}");
    assert!(sigs.iter().all(|s| s.starts_with("v1,")), "{header}");
    assert!(r.signature_ok, "no signature verifies with the old key");
    assert!(verify_signature(&new, &r.headers, &r.body));
    let alone =
        |sig: &str, key: &str| verify_signature(key, &with_signature(&r.headers, sig), &r.body);
    assert!(alone(sigs[0], &new) && !alone(sigs[0], SECRET), "{header}");
    assert!(alone(sigs[1], SECRET) && !alone(sigs[1], &new), "{header}");

    // After the window: the new key only.
    let r = &sink.received_on("/rotated")[0];
    let header = r.header("webhook-signature").unwrap();
    assert_eq!(header.split(' ').count(), 1, "{header}");
    assert!(header.starts_with("v1,"), "{header}");
    assert!(verify_signature(&new, &r.headers, &r.body));
    assert!(!r.signature_ok, "the expired key still signs: {header}");
    assert_eq!(sink.received().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_deliveries_and_resume_releases_them() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![]).await;
    let tables = format!(
        "[targets.t]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n",
        sink.url("/in"),
    );
    let hy = Hookyard::start(tmp.path(), &config(tmp.path(), &["t"], &tables));
    let st = control(&hy, "t", "pause").await;
    assert_eq!(st["paused"], true, "{st:#}");

    let mut ids = vec![];
    for i in 0..3 {
        ids.push(hy.send("s", &format!(r#"{{"n":{i}}}"#)).await);
    }
    let paused_at = Instant::now();
    for id in &ids {
        hy.wait_event(id, Duration::from_secs(5), |v| {
            v["deliveries"].as_array().is_some_and(|d| d.len() == 1)
        })
        .await;
    }
    tokio::time::sleep(Duration::from_millis(500).saturating_sub(paused_at.elapsed())).await;
    assert!(sink.received().is_empty(), "{:?}", sink.received());
    let st = target_status(&hy, "t").await;
    assert_eq!(st["paused"], true, "{st:#}");
    assert_eq!(st["state"], "closed", "pausing does not touch the circuit");
    assert_eq!(st["scheduled"], 3, "{st:#}");
    assert_eq!(st["in_flight"], 0, "{st:#}");
    for id in &ids {
        let v = hy.event(id).await;
        let d = only_delivery(&v);
        assert_eq!(d["status"], "scheduled", "{v:#}");
        assert_eq!(d["attempts"], 0, "{v:#}");
        assert!(d["attempt_log"].as_array().unwrap().is_empty(), "{v:#}");
    }

    let st = control(&hy, "t", "resume").await;
    assert_eq!(st["paused"], false, "{st:#}");
    wait_all_delivered(&hy, &ids, Duration::from_secs(10)).await;
    let got = sink.received();
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got.iter().all(|r| r.signature_ok));
    let st = target_status(&hy, "t").await;
    assert_eq!(st["scheduled"], 0, "{st:#}");
    assert_eq!(st["attempts"]["succeeded"], 3, "{st:#}");
}

/// First attempts take the delivery's record from memory as routing stored
/// it (`delivery/recent.rs`). An operator's retry moves a scheduled
/// delivery to a new due time before that: the attempt must go by the
/// store's record, not the copy (whose due time no longer matches its
/// schedule entry, so the entry would be dropped as stale and the delivery
/// never sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_retried_before_its_first_attempt_is_sent_once() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![]).await;
    let tables = format!(
        "[targets.t]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n",
        sink.url("/in"),
    );
    let hy = Hookyard::start(tmp.path(), &config(tmp.path(), &["t"], &tables));
    control(&hy, "t", "pause").await;
    let id = hy.send("s", r#"{"n":1}"#).await;
    let v = hy
        .wait_event(&id, Duration::from_secs(5), |v| {
            v["deliveries"].as_array().is_some_and(|d| d.len() == 1)
        })
        .await;
    let d = only_delivery(&v);
    let delivery = d["id"].as_str().unwrap().to_string();
    let routed_due = d["next_attempt_at"].clone();
    // A later millisecond than routing's, so the due time really moves.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (code, body) = hy
        .admin_post(&format!("/admin/deliveries/{delivery}/retry"), json!({}))
        .await;
    assert_eq!(code, 202, "{body}");
    let v = hy.event(&id).await;
    assert_ne!(
        only_delivery(&v)["next_attempt_at"],
        routed_due,
        "the retry moved it: {v:#}"
    );

    control(&hy, "t", "resume").await;
    let views = wait_all_delivered(&hy, std::slice::from_ref(&id), Duration::from_secs(10)).await;
    let d = only_delivery(&views[0]);
    assert_eq!(d["attempts"], 1, "{d:#}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = sink.received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(webhook_id(&got[0]), delivery);
}
