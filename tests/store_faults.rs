//! A full disk: refused quickly and visibly while it lasts, recovered from
//! in the same process once space returns, and nothing acknowledged lost.
//! Runs as root (it mounts a small tmpfs), as CI does.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use support::tmpfs::Mounted;
use support::*;

/// Fills the file system at `dir` until a write fails.
fn fill(dir: &Path, round: usize) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join(format!("filler-{round}"))).unwrap();
    let chunk = vec![0xA5u8; 256 * 1024];
    loop {
        if f.write_all(&chunk).is_err() {
            break;
        }
    }
    // The last bytes a short write left.
    let small = vec![0u8; 512];
    while f.write_all(&small).is_ok() {}
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    n: usize,
    pad: usize,
) -> (Option<u16>, Option<String>) {
    let body = format!(r#"{{"n":{n},"pad":"{}"}}"#, "x".repeat(pad));
    match http.post(url).body(body).send().await {
        Ok(r) => {
            let retry = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            (Some(r.status().as_u16()), retry)
        }
        Err(_) => (None, None),
    }
}

async fn readyz(hy: &Hookyard) -> u16 {
    hy.admin_get("/readyz").await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_refused_quickly_then_recovered_from_without_a_restart() {
    full_disk("").await;
}

/// The same with the store's index on fjall, whose journal latches a
/// failed write as sled's log does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_on_fjall_is_refused_quickly_then_recovered_from_without_a_restart() {
    full_disk(ON_FJALL).await;
}

async fn full_disk(store: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let disk = Mounted::tmpfs(&tmp.path().join("disk"), "48m");
    let sink = Sink::start(vec![]).await;
    // A reserve smaller than the default 64 MiB, to fit the small tmpfs.
    let config = format!(
        "{}\n[sources.s]\ntargets = [\"raw\"]\n\n[targets.raw]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n\n{store}",
        server_section(disk.path()).replacen(
            "[server]\n",
            "[server]\nmin_free_space = \"8MiB\"\n",
            1
        ),
        sink.url("/raw")
    );
    // The log is on the disk that fills, too: a line that cannot be
    // written is lost, and nothing else.
    let hy = Hookyard::start(disk.path(), &config);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let url = format!("{}/hooks/s", hy.public);
    let mut acked = BTreeSet::new();
    let mut n = 0;
    for _ in 0..20 {
        n += 1;
        assert_eq!(post(&http, &url, n, 1024).await.0, Some(202));
        acked.insert(n);
    }

    // Two rounds: large bodies fill the body log first; tiny ones fill
    // sled's own log (which then refuses everything until reopened).
    for (round, (pad, size)) in [(16 * 1024, "256m"), (0, "512m")].into_iter().enumerate() {
        fill(disk.path(), round);
        // While the disk is full: every request is answered, quickly, and a
        // refusal is a 503 with Retry-After. What is answered 202 was stored.
        let mut refused = 0;
        for _ in 0..300 {
            n += 1;
            let start = Instant::now();
            let (status, retry) = post(&http, &url, n, pad).await;
            let took = start.elapsed();
            assert!(
                took < Duration::from_secs(10),
                "a request hung for {took:?}"
            );
            match status {
                Some(202) => {
                    acked.insert(n);
                }
                Some(503) => {
                    assert!(retry.is_some(), "a 503 says when to retry");
                    refused += 1;
                    if refused >= 10 {
                        break;
                    }
                }
                other => panic!(
                    "unexpected answer on a full disk: {other:?}; log:\n{}",
                    hy.log_text()
                ),
            }
        }
        assert!(refused >= 10, "a full disk was not noticed");
        println!(
            "round {round}: disk full: {refused} refused, {} acknowledged in all so far",
            acked.len()
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while readyz(&hy).await != 503 {
            assert!(
                Instant::now() < deadline,
                "/readyz still ready on a full disk"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (_, why) = hy.admin_get("/readyz").await;
        assert!(
            why["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{why}"
        );

        // Space returns: the same process takes webhooks again within 10 s.
        disk.grow(size);
        let grown = Instant::now();
        loop {
            n += 1;
            match post(&http, &url, n, pad).await.0 {
                Some(202) => {
                    acked.insert(n);
                    break;
                }
                _ => {
                    assert!(
                        grown.elapsed() < Duration::from_secs(10),
                        "still refusing 10 s after space returned; log:\n{}",
                        hy.log_text()
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        println!(
            "round {round}: accepting again {:?} after space returned",
            grown.elapsed()
        );
        for _ in 0..20 {
            n += 1;
            assert_eq!(post(&http, &url, n, pad).await.0, Some(202));
            acked.insert(n);
        }
    }
    // Readiness is probed every second.
    let deadline = Instant::now() + Duration::from_secs(5);
    while readyz(&hy).await != 200 {
        assert!(Instant::now() < deadline, "/readyz not ready again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Every acknowledged event is delivered.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let delivered: BTreeSet<usize> = sink
            .received()
            .iter()
            .filter_map(|r| r.json()["n"].as_u64())
            .map(|n| n as usize)
            .collect();
        let missing: Vec<_> = acked.difference(&delivered).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "acknowledged but not delivered: {missing:?}; log:\n{}",
            hy.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = hy.log_text();
    for line in log.lines().filter(|l| l.contains("store")) {
        println!("hookyard: {line}");
    }
    let repeats = log.matches("could not store event").count();
    assert!(
        repeats <= 5,
        "the same store error was logged {repeats} times, not rate-limited"
    );
    drop(hy);
}
