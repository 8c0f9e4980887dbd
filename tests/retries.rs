//! Failed deliveries are retried on the schedule, honour Retry-After, and
//! end dead when the schedule runs out, with every attempt recorded.

mod support;

use std::time::Duration;

use support::*;

fn config(dir: &std::path::Path, url: &str, schedule: &str) -> String {
    format!(
        "{}\n[sources.s]\ntargets = [\"t\"]\n\n[targets.t]\nurl = \"{url}\"\nsecret = \"{SECRET}\"\ntimeout = \"500ms\"\nretry_schedule = {schedule}\n",
        server_section(dir)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sink_that_recovers_gets_the_delivery() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![answer(500), answer(502), answer(404)]).await;
    let hy = Hookyard::start(
        tmp.path(),
        &config(
            tmp.path(),
            &sink.url("/in"),
            r#"["100ms", "100ms", "100ms", "100ms"]"#,
        ),
    );
    let id = hy.send("s", r#"{"hello":"world"}"#).await;
    let got = sink.wait_for(4, Duration::from_secs(10)).await;
    // Same message id on every attempt, each freshly signed.
    let ids: Vec<_> = got
        .iter()
        .map(|r| r.header("webhook-id").unwrap().to_string())
        .collect();
    assert!(ids.iter().all(|i| i == &ids[0]), "{ids:?}");
    assert!(
        got.iter()
            .all(|r| r.signature_ok && r.body.as_ref() == br#"{"hello":"world"}"#)
    );

    let v = hy.wait_event(&id, Duration::from_secs(10), delivered).await;
    let d = &v["deliveries"][0];
    assert_eq!(d["attempts"], 4);
    let log = d["attempt_log"].as_array().unwrap();
    let codes: Vec<_> = log
        .iter()
        .map(|a| a["status_code"].as_u64().unwrap())
        .collect();
    assert_eq!(codes, vec![500, 502, 404, 200]);
    assert_eq!(log[0]["error"], "HTTP 500 Internal Server Error");
    assert!(log[3].get("error").is_none());
    assert!(log.iter().all(|a| a["latency_ms"].as_f64().unwrap() >= 0.0));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(sink.received().len(), 4, "nothing sent after success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![
        Answer {
            status: 503,
            retry_after: Some(2),
        },
        Answer {
            status: 429,
            retry_after: Some(1),
        },
    ])
    .await;
    let hy = Hookyard::start(
        tmp.path(),
        &config(tmp.path(), &sink.url("/in"), r#"["50ms", "50ms", "50ms"]"#),
    );
    let id = hy.send("s", "{}").await;
    let got = sink.wait_for(3, Duration::from_secs(15)).await;
    let gap1 = got[1].at - got[0].at;
    let gap2 = got[2].at - got[1].at;
    assert!(
        gap1 >= Duration::from_millis(1950),
        "waited {gap1:?} after Retry-After: 2"
    );
    assert!(
        gap2 >= Duration::from_millis(950),
        "waited {gap2:?} after Retry-After: 1"
    );
    hy.wait_event(&id, Duration::from_secs(5), delivered).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_deliveries_are_dead_with_every_attempt_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![answer(500); 10]).await;
    // A second target that nobody listens on: connection errors count too.
    let closed = format!("http://127.0.0.1:{CLOSED_PORT}/");
    let config = format!(
        "{}\n[sources.s]\ntargets = [\"t\", \"down\"]\n\n\
         [targets.t]\nurl = \"{}\"\nretry_schedule = [\"50ms\", \"50ms\"]\n\n\
         [targets.down]\nurl = \"{closed}\"\nretry_schedule = [\"50ms\"]\n",
        server_section(tmp.path()),
        sink.url("/in"),
    );
    let hy = Hookyard::start(tmp.path(), &config);
    let id = hy.send("s", "{}").await;
    let v = hy
        .wait_event(&id, Duration::from_secs(10), |v| {
            v["deliveries"]
                .as_array()
                .is_some_and(|d| d.len() == 2 && d.iter().all(|d| d["status"] == "dead"))
        })
        .await;
    for d in v["deliveries"].as_array().unwrap() {
        let log = d["attempt_log"].as_array().unwrap();
        match d["target"].as_str().unwrap() {
            "t" => {
                assert_eq!(log.len(), 3);
                assert_eq!(d["last_error"], "HTTP 500 Internal Server Error");
            }
            "down" => {
                assert_eq!(log.len(), 2);
                assert!(log[0]["status_code"].is_null());
                let err = log[0]["error"].as_str().unwrap();
                assert!(err.starts_with("connection failed"), "{err}");
            }
            other => panic!("unexpected target {other}"),
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.received().len(), 3, "no attempts after dead");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_target_times_out_and_is_retried() {
    let tmp = tempfile::tempdir().unwrap();
    // A listener that accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", silent.local_addr().unwrap());
    let hy = Hookyard::start(tmp.path(), &config(tmp.path(), &url, r#"["50ms"]"#));
    let id = hy.send("s", "{}").await;
    let v = hy
        .wait_event(&id, Duration::from_secs(10), |v| {
            v["deliveries"][0]["status"] == "dead"
        })
        .await;
    let log = v["deliveries"][0]["attempt_log"].as_array().unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0]["error"], "timed out after 500ms");
    assert!(log[0]["latency_ms"].as_f64().unwrap() >= 490.0);
    drop(silent);
}

/// `Retry-After: 0` (or a date in the past) may not pull a retry earlier
/// than the schedule's step: before, a target answering that spent all its
/// attempts within milliseconds and went dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_zero_does_not_shorten_the_schedule() {
    let tmp = tempfile::tempdir().unwrap();
    let zero = Answer {
        status: 503,
        retry_after: Some(0),
    };
    let sink = Sink::start(vec![zero, zero]).await;
    // Jitter 0.2 (the default): each step is at least 800 ms.
    let hy = Hookyard::start(
        tmp.path(),
        &config(tmp.path(), &sink.url("/in"), r#"["1s", "1s"]"#),
    );
    let id = hy.send("s", "{}").await;
    let got = sink.wait_for(3, Duration::from_secs(15)).await;
    for (n, pair) in got.windows(2).enumerate() {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(790),
            "retry {} came {gap:?} after a 503 with Retry-After: 0",
            n + 1
        );
    }
    let v = hy.wait_event(&id, Duration::from_secs(5), delivered).await;
    assert_eq!(v["deliveries"][0]["attempts"], 3);
}
