//! Hostile and broken input never hurts: a load of malformed requests mixed
//! with valid ones delivers every valid one, keeps the router up, and keeps
//! its memory bounded; arbitrary bytes on the socket never crash it.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hookyard::source::verify::{SignOptions, sign_as};
use proptest::prelude::*;
use support::*;

const GH_SECRET: &str = "malformed-test-secret";

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// The headers GitHub would sign `body` with.
fn github_signature(body: &str) -> Vec<(String, String)> {
    sign_as(
        "github",
        GH_SECRET,
        body.as_bytes(),
        0,
        &SignOptions::default(),
    )
    .unwrap()
}

/// `req` with `body`, signed as GitHub does.
fn signed(req: reqwest::RequestBuilder, body: String) -> reqwest::RequestBuilder {
    github_signature(&body)
        .into_iter()
        .fold(req.body(body), |r, (k, v)| r.header(k, v))
}

fn config(dir: &std::path::Path, sink: &Sink) -> String {
    format!(
        "{}\n[sources.gh]\nverify = {{ scheme = \"github\", secret = \"{GH_SECRET}\" }}\nmax_body = \"64KiB\"\ntargets = [\"t\"]\n\n\
         [targets.t]\nurl = \"{}\"\n",
        server_section(dir),
        sink.url("/"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_load_mixed_with_valid_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![]).await;
    let hy = Hookyard::start(tmp.path(), &config(tmp.path(), &sink));
    let url = format!("{}/hooks/gh", hy.public);
    let http = reqwest::Client::new();
    // Warm up so the baseline includes the runtime's steady allocations.
    for i in 0..20 {
        let body = format!("{{\"warm\":{i}}}");
        let r = http
            .post(&url)
            .header("x-github-delivery", format!("warm-{i}"));
        assert_eq!(signed(r, body).send().await.unwrap().status(), 202);
    }
    sink.wait_for(20, Duration::from_secs(10)).await;
    let rss_before = rss_kib(hy.pid());

    const TOTAL: usize = 3000;
    let next = Arc::new(AtomicUsize::new(0));
    let valid = Arc::new(AtomicUsize::new(0));
    let mut clients = vec![];
    for _ in 0..8 {
        let (next, valid, http, url) = (next.clone(), valid.clone(), http.clone(), url.clone());
        let public = hy.public.clone();
        clients.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= TOTAL {
                    return;
                }
                let body = format!("{{\"n\":{i}}}");
                let good = github_signature(&body);
                let req = http
                    .post(&url)
                    .header("x-github-delivery", format!("d-{i}"));
                let (req, expect) = match i % 10 {
                    0 => {
                        valid.fetch_add(1, Ordering::SeqCst);
                        (signed(req, body), vec![202])
                    }
                    1 => (
                        req.header("x-hub-signature-256", "sha256=00").body(body),
                        vec![401],
                    ),
                    2 => (req.body(body), vec![401]),
                    3 => (
                        req.header("x-hub-signature-256", "sha1=zz,,").body(body),
                        vec![401],
                    ),
                    4 => (req.body(vec![b'x'; 100 * 1024]), vec![413]),
                    5 => (
                        req.header("x-hub-signature-256", vec![0xff_u8, 0xfe, 0x80].as_slice())
                            .body(vec![0u8, 159, 146, 150]),
                        vec![401],
                    ),
                    6 => (
                        http.post(format!("{public}/hooks/nope")).body(body),
                        vec![404],
                    ),
                    7 => (http.get(&url), vec![405]),
                    8 => (
                        req.header(&good[0].0, good[0].1.clone())
                            .body(format!("{body} ")),
                        vec![401],
                    ),
                    _ => (
                        req.header(
                            "x-hub-signature-256",
                            "sha256=".to_string() + &"a".repeat(10_000),
                        )
                        .body(body),
                        vec![401, 431],
                    ),
                };
                let status = req.send().await.unwrap().status().as_u16();
                assert!(expect.contains(&status), "case {}: got {status}", i % 10);
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    let valid = valid.load(Ordering::SeqCst);
    sink.wait_for(20 + valid, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        sink.received().len(),
        20 + valid,
        "every valid one delivered, nothing else"
    );

    let health = reqwest::get(format!("{}/healthz", hy.admin)).await.unwrap();
    assert_eq!(health.status(), 200);
    let rss_after = rss_kib(hy.pid());
    eprintln!(
        "RSS {rss_before} KiB before, {rss_after} KiB after {TOTAL} requests ({valid} valid)"
    );
    assert!(
        rss_after < rss_before + 64 * 1024,
        "memory grew from {rss_before} KiB to {rss_after} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_bytes_on_the_socket_never_crash_the_router() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![]).await;
    let hy = Hookyard::start(tmp.path(), &config(tmp.path(), &sink));
    let addr = hy.public.trim_start_matches("http://").to_string();
    let cases = Arc::new(AtomicUsize::new(0));
    let counted = cases.clone();
    let addr2 = addr.clone();
    tokio::task::spawn_blocking(move || {
        let prefix = prop_oneof![
            Just(b"".to_vec()),
            Just(b"POST /hooks/gh HTTP/1.1\r\nHost: x\r\n".to_vec()),
            Just(b"POST /hooks/gh HTTP/1.1\r\nContent-Length: 5\r\nX-Hub-Signature-256: ".to_vec()),
            Just(b"POST /hooks/gh HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec()),
        ];
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: 300,
            failure_persistence: None,
            ..ProptestConfig::default()
        });
        runner
            .run(
                &(prefix, proptest::collection::vec(any::<u8>(), 0..2048)),
                |(p, tail)| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let mut s = TcpStream::connect(&addr2).unwrap();
                    s.set_read_timeout(Some(Duration::from_millis(300)))
                        .unwrap();
                    let _ = s.write_all(&p);
                    let _ = s.write_all(&tail);
                    let _ = s.shutdown(std::net::Shutdown::Write);
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf);
                    Ok(())
                },
            )
            .unwrap();
    })
    .await
    .unwrap();
    eprintln!("{} raw-socket cases", cases.load(Ordering::SeqCst));
    let health = reqwest::get(format!("{}/healthz", hy.admin)).await.unwrap();
    assert_eq!(health.status(), 200, "router still up");
    // And still accepting real webhooks.
    let r = reqwest::Client::new().post(format!("{}/hooks/gh", hy.public));
    assert_eq!(signed(r, "{}".into()).send().await.unwrap().status(), 202);
    assert!(sink.received().len() <= 1, "no garbage was delivered");
}
