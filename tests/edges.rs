//! The public edge under attack and under faults: slow and silent
//! clients, oversized heads, TLS with a certificate made here.

mod support;

use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Half-sent requests held open at once: twice the soft limit hookyard is
/// started with.
const HALF_SENT: usize = 2048;
const SOFT_LIMIT: u64 = 1024;

fn config(dir: &std::path::Path, extra: &str) -> String {
    format!(
        "{}\n[sources.raw]\n",
        server_section(dir).replacen(
            "[server]\n",
            &format!("[server]\nheader_timeout = \"3s\"\nbody_timeout = \"2s\"\n{extra}"),
            1
        )
    )
}

/// Starts hookyard with the common default soft limit of open files (the
/// hard limit left as it is, which hookyard may raise to).
fn start_with_soft_limit(dir: &std::path::Path, config: &str) -> Hookyard {
    Hookyard::start_with(dir, config, |c| {
        // SAFETY: only async-signal-safe work between fork and exec: one
        // setrlimit call.
        unsafe {
            c.pre_exec(|| {
                let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
                rlimit::setrlimit(rlimit::Resource::NOFILE, SOFT_LIMIT, hard)
            });
        }
    })
}

fn addr_of(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_start_matches("https://")
        .to_string()
}

/// True once the peer has closed the connection (EOF or reset), reading
/// and discarding whatever it answered first.
async fn closed_by_peer(s: &mut TcpStream, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// Reads what the peer sends until it closes (or `within` passes).
async fn read_answer(s: &mut TcpStream, within: Duration) -> String {
    let deadline = tokio::time::Instant::now() + within;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn timed_post(hy: &Hookyard, body: &str) -> (u16, Duration) {
    let start = Instant::now();
    let r = reqwest::Client::new()
        .post(format!("{}/hooks/raw", hy.public))
        .body(body.to_string())
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("a real webhook is answered");
    (r.status().as_u16(), start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_neither_starve_real_webhooks_nor_stay_open() {
    // This process holds the other end of every connection.
    rlimit::increase_nofile_limit(u64::MAX).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let hy = start_with_soft_limit(tmp.path(), &config(tmp.path(), ""));
    let log = hy.log_text();
    assert!(
        log.contains("open-files limit") && log.contains(&format!("was={SOFT_LIMIT}")),
        "the limits are logged at start:\n{log}"
    );

    let addr = addr_of(&hy.public);
    let mut held = Vec::with_capacity(HALF_SENT);
    for _ in 0..HALF_SENT {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"POST /hooks/raw HTTP/1.1\r\nHost: x\r\nContent-Le")
            .await
            .unwrap();
        held.push(s);
    }
    let opened = Instant::now();
    let (status, took) = timed_post(&hy, r#"{"real":true}"#).await;
    assert_eq!(status, 202);
    assert!(
        took < Duration::from_secs(1),
        "a real webhook took {took:?} with {HALF_SENT} half-sent requests open"
    );

    // Every half-sent request is closed by hookyard after the header
    // timeout (3 s here), not held indefinitely.
    let left = Duration::from_secs(10).saturating_sub(opened.elapsed());
    let mut still_open = 0;
    for s in &mut held {
        if !closed_by_peer(s, left.max(Duration::from_millis(10))).await {
            still_open += 1;
        }
    }
    assert_eq!(still_open, 0, "half-sent requests still open after 10 s");
    assert!(
        opened.elapsed() >= Duration::from_millis(2500),
        "closed before the header timeout"
    );
    let (status, _) = timed_post(&hy, r#"{"after":true}"#).await;
    assert_eq!(status, 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_get_408_and_a_closed_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let hy = start_with_soft_limit(tmp.path(), &config(tmp.path(), ""));
    let addr = addr_of(&hy.public);
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(
            b"POST /hooks/raw HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"slow\":",
        )
        .await
        .unwrap();
        slow.push(s);
    }
    let (status, took) = timed_post(&hy, r#"{"real":true}"#).await;
    assert_eq!(status, 202);
    assert!(took < Duration::from_secs(1), "took {took:?}");
    for s in &mut slow {
        let answer = read_answer(s, Duration::from_secs(8)).await;
        assert!(
            answer.starts_with("HTTP/1.1 408"),
            "a slow body is answered 408, got {answer:?}"
        );
        assert!(answer.contains("body_timeout"), "{answer}");
    }
    // Nothing of the slow bodies was stored.
    let listed = hy.admin_json("/admin/events?source=raw").await;
    assert_eq!(listed["events"].as_array().unwrap().len(), 1, "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_get_431() {
    let tmp = tempfile::tempdir().unwrap();
    let hy = Hookyard::start(
        tmp.path(),
        &config(
            tmp.path(),
            "max_headers = 20\nmax_header_size = \"16KiB\"\n",
        ),
    );
    let addr = addr_of(&hy.public);

    let mut many = String::from("POST /hooks/raw HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n");
    for i in 0..40 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n{}");
    let mut big = String::from("POST /hooks/raw HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n");
    big.push_str(&format!("X-Big: {}\r\n\r\n{{}}", "a".repeat(40 * 1024)));

    for (what, request) in [("too many headers", many), ("too large a head", big)] {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        // The server may answer and close before the whole head is sent.
        let _ = s.write_all(request.as_bytes()).await;
        let answer = read_answer(&mut s, Duration::from_secs(5)).await;
        assert!(
            answer.starts_with("HTTP/1.1 431"),
            "{what}: expected 431, got {answer:?}"
        );
    }
    let (status, _) = timed_post(&hy, "{}").await;
    assert_eq!(status, 202);
}

fn self_signed(name: &str) -> (String, String) {
    let cert =
        rcgen::generate_simple_self_signed(vec![name.to_string(), "127.0.0.1".into()]).unwrap();
    (cert.cert.pem(), cert.signing_key.serialize_pem())
}

/// A self-signed certificate and its key as `dir/cert.pem` and
/// `dir/key.pem`; the certificate's PEM.
fn write_self_signed(dir: &std::path::Path) -> String {
    let (cert, key) = self_signed("localhost");
    std::fs::write(dir.join("cert.pem"), &cert).unwrap();
    std::fs::write(dir.join("key.pem"), &key).unwrap();
    cert
}

fn trusting(pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_over_https_with_http2_and_a_renewed_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let cert = write_self_signed(tmp.path());
    let hy = Hookyard::start(
        tmp.path(),
        &config(
            tmp.path(),
            &format!(
                "tls_cert = \"{0}/cert.pem\"\ntls_key = \"{0}/key.pem\"\n",
                tmp.path().display()
            ),
        ),
    );
    assert!(hy.public.starts_with("https://"), "{}", hy.public);
    let url = format!("{}/hooks/raw", hy.public);

    let first = trusting(&cert);
    let r = first.post(&url).body("{\"tls\":1}").send().await.unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.version(), reqwest::Version::HTTP_2, "h2 by ALPN");
    let http1 = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.as_bytes()).unwrap())
        .http1_only()
        .build()
        .unwrap();
    let r = http1.post(&url).body("{\"tls\":2}").send().await.unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.version(), reqwest::Version::HTTP_11);

    // Plain HTTP on the TLS port is not served.
    let plain = reqwest::Client::new()
        .post(url.replace("https://", "http://"))
        .body("{}")
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "clear text is refused: {plain:?}");

    // A renewed certificate is served without a restart.
    let (cert2, key2) = self_signed("localhost");
    let second = trusting(&cert2);
    assert!(
        second.post(&url).body("{}").send().await.is_err(),
        "the new certificate is not served before it is written"
    );
    std::fs::write(tmp.path().join("key.pem"), &key2).unwrap();
    std::fs::write(tmp.path().join("cert.pem"), &cert2).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match second.post(&url).body("{\"tls\":3}").send().await {
            Ok(r) => {
                assert_eq!(r.status(), 202);
                break;
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the renewed certificate was not picked up: {e}"),
        }
    }
    let listed = hy.admin_json("/admin/events?source=raw").await;
    assert_eq!(listed["events"].as_array().unwrap().len(), 3, "{listed}");
}

#[test]
fn a_missing_certificate_stops_the_start_with_the_key_at_fault() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        "tls_cert = \"/nonexistent/cert.pem\"\ntls_key = \"/nonexistent/key.pem\"\n",
    );
    std::fs::write(tmp.path().join("hookyard.toml"), cfg).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookyard"))
        .args(["serve", "--config"])
        .arg(tmp.path().join("hookyard.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("server.tls_cert") && err.contains("/nonexistent/cert.pem"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_cap_new_connections_wait_for_a_free_slot() {
    let tmp = tempfile::tempdir().unwrap();
    let hy = Hookyard::start(tmp.path(), &config(tmp.path(), "max_connections = 20\n"));
    let addr = addr_of(&hy.public);
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"POST /hooks/raw HTTP/1.1\r\n").await.unwrap();
        held.push(s);
    }
    // The 21st connection is not served until the header timeout (3 s)
    // frees a slot: it waits in the listen backlog, it is not refused.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, took) = timed_post(&hy, r#"{"past":"cap"}"#).await;
    assert_eq!(status, 202);
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(8),
        "served after {took:?}; expected once the held connections timed out"
    );
    assert!(
        hy.log_text().contains("connection cap reached"),
        "the cap is logged"
    );
    // With slots free again, requests are served at once.
    let (status, took) = timed_post(&hy, "{}").await;
    assert_eq!(status, 202);
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_takes_tls_the_same_way_and_its_session_cookie_is_secure() {
    let tmp = tempfile::tempdir().unwrap();
    let cert = write_self_signed(tmp.path());
    let hy = Hookyard::start(
        tmp.path(),
        &config(
            tmp.path(),
            &format!(
                "admin_tls_cert = \"{0}/cert.pem\"\nadmin_tls_key = \"{0}/key.pem\"\nadmin_token = \"a-token-for-tls\"\n",
                tmp.path().display()
            ),
        ),
    );
    assert!(hy.admin.starts_with("https://"), "{}", hy.admin);
    assert!(hy.public.starts_with("http://"), "{}", hy.public);
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.as_bytes()).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http
        .get(format!("{}/healthz", hy.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!("{}/ui/login", hy.admin))
        .header("origin", &hy.admin)
        .form(&[("token", "a-token-for-tls")])
        .send()
        .await
        .unwrap();
    let status = r.status();
    let cookie = r
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(status, 303, "{:?}", r.text().await);
    let cookie = cookie.unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
}
