//! The dashboard in a real browser: Debian's Chromium, driven over
//! WebDriver (chromedriver) against the real binary and a real sink.
//! Screenshots of each page land in target/dashboard-screenshots.

mod support;

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use support::*;

const TOKEN: &str = "dashboard-test-token-0123456789";

/// chromedriver and every browser it starts, in one process group that
/// is killed whatever happens to the test.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Driver {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver (apt-get install chromium-driver; scripts/test.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver { child, port }
    }

    async fn browser(&self) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu", "--window-size=1280,1000"]
            }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a Chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let pgid = self.child.id();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .status();
        let _ = self.child.wait();
    }
}

fn screenshot_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn snap(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
}

/// Waits until `css` matches, or fails with the page's text.
async fn wait_for(c: &Client, css: &str, within: Duration) -> fantoccini::elements::Element {
    match c
        .wait()
        .at_most(within)
        .for_element(Locator::Css(css))
        .await
    {
        Ok(e) => e,
        Err(e) => panic!(
            "{css} did not appear ({e}); the page:\n{}",
            c.source().await.unwrap_or_default()
        ),
    }
}

async fn text_of(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn config(dir: &std::path::Path, sink: &Sink) -> String {
    format!(
        "{}\n[sources.shop]\ntargets = [\"orders\"]\n\n\
         [targets.orders]\nurl = \"{}\"\nsecret = \"{SECRET}\"\nmax_attempts = 1\nretry_schedule = [\"100ms\"]\n",
        server_section(dir).replacen(
            "[server]\n",
            &format!("[server]\nadmin_token = \"{TOKEN}\"\n"),
            1
        ),
        sink.url("/orders")
    )
}

/// Types `token` into the login form and submits it.
async fn submit_token(c: &Client, token: &str) {
    wait_for(c, "input#token", Duration::from_secs(10))
        .await
        .send_keys(token)
        .await
        .unwrap();
    c.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn log_in(c: &Client, admin: &str) {
    c.goto(&format!("{admin}/ui/")).await.unwrap();
    submit_token(c, TOKEN).await;
    wait_for(c, "#problems", Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_then_live_events_and_their_detail() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![]).await;
    let hy = Hookyard::start(tmp.path(), &config(tmp.path(), &sink));
    let before = hy.send("shop", r#"{"order":"before-login"}"#).await;
    let driver = Driver::start();
    let c = driver.browser().await;

    // Nothing without a session: the login page, and no data.
    c.goto(&format!("{}/ui/events", hy.admin)).await.unwrap();
    wait_for(&c, "input#token", Duration::from_secs(10)).await;
    assert!(c.current_url().await.unwrap().path().ends_with("/ui/login"));
    assert!(!c.source().await.unwrap().contains(&before));
    snap(&c, "login").await;
    let plain = reqwest::get(format!("{}/ui/events", hy.admin))
        .await
        .unwrap();
    assert!(!plain.text().await.unwrap().contains(&before));

    // A wrong token is refused; the right one opens the overview.
    submit_token(&c, "wrong").await;
    wait_for(&c, ".notice.error", Duration::from_secs(10)).await;
    log_in(&c, &hy.admin).await;
    // The session cookie is HttpOnly: scripts cannot read it.
    let cookies = c.execute("return document.cookie", vec![]).await.unwrap();
    assert_eq!(cookies.as_str(), Some(""), "{cookies}");
    snap(&c, "overview").await;

    // The events list; an event sent while it is open appears live.
    c.goto(&format!("{}/ui/events", hy.admin)).await.unwrap();
    wait_for(
        &c,
        &format!("a[href='/ui/events/{before}']"),
        Duration::from_secs(10),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await; // the stream connects
    let live = hy
        .send(
            "shop",
            r#"{"order":"live-1","items":[{"sku":"a-1","qty":2}]}"#,
        )
        .await;
    wait_for(
        &c,
        &format!("a[href='/ui/events/{live}']"),
        Duration::from_secs(10),
    )
    .await;
    snap(&c, "events").await;

    // Its detail shows the body as sent, pretty-printed.
    c.find(Locator::Css(&format!("a[href='/ui/events/{live}']")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(&c, "pre#body", Duration::from_secs(10)).await;
    let body = text_of(&c, "pre#body").await;
    assert!(body.contains("\"sku\": \"a-1\""), "{body}");
    let curl = c
        .execute("return document.getElementById('curl').textContent", vec![])
        .await
        .unwrap();
    assert!(
        curl.as_str()
            .is_some_and(|t| t.contains("curl -X POST") && t.contains("live-1")),
        "{curl}"
    );
    sink.wait_for(2, Duration::from_secs(20)).await;
    c.refresh().await.unwrap();
    wait_for(&c, "ol.timeline li", Duration::from_secs(10)).await;
    snap(&c, "event").await;

    for (page, css) in [
        ("deliveries", "h1"),
        ("targets", "section.card"),
        ("plugins", "h1"),
        ("sources", "section.card"),
    ] {
        c.goto(&format!("{}/ui/{page}", hy.admin)).await.unwrap();
        wait_for(&c, css, Duration::from_secs(10)).await;
        snap(&c, page).await;
    }
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_pause_and_bulk_retry_act_on_the_real_sink() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![]).await;
    let hy = Hookyard::start(tmp.path(), &config(tmp.path(), &sink));
    let driver = Driver::start();
    let c = driver.browser().await;
    log_in(&c, &hy.admin).await;

    // Replay: a second delivery of the same event at the sink.
    let id = hy.send("shop", r#"{"order":"replay-me"}"#).await;
    sink.wait_for(1, Duration::from_secs(20)).await;
    c.goto(&format!("{}/ui/events/{id}", hy.admin))
        .await
        .unwrap();
    wait_for(&c, "button#replay", Duration::from_secs(10))
        .await
        .click()
        .await
        .unwrap();
    wait_for(&c, ".notice", Duration::from_secs(10)).await;
    let got = sink.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|r| r.json()["order"] == "replay-me"));

    // Pause from the target's page: nothing is delivered until resumed.
    c.goto(&format!("{}/ui/targets", hy.admin)).await.unwrap();
    wait_for(&c, "button[data-action=pause]", Duration::from_secs(10))
        .await
        .click()
        .await
        .unwrap();
    wait_for(&c, "button[data-action=resume]", Duration::from_secs(10)).await;
    hy.send("shop", r#"{"order":"while-paused"}"#).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sink.received().len(), 2, "delivered while paused");
    snap(&c, "target-paused").await;
    c.find(Locator::Css("button[data-action=resume]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    sink.wait_for(3, Duration::from_secs(20)).await;

    // Dead letters: the sink fails, two deliveries die (one attempt each);
    // the sink recovers; a bulk retry from the dead-letter list, after its
    // dry-run count, delivers both.
    sink.script(vec![answer(500), answer(500)]);
    hy.send("shop", r#"{"order":"dies-1"}"#).await;
    hy.send("shop", r#"{"order":"dies-2"}"#).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, v) = hy
            .admin_get_token("/admin/deliveries?status=dead", TOKEN)
            .await;
        if v["deliveries"].as_array().is_some_and(|d| d.len() == 2) {
            break;
        }
        assert!(Instant::now() < deadline, "deliveries did not die: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let delivered_before = sink.received().len();
    c.goto(&format!("{}/ui/deliveries", hy.admin))
        .await
        .unwrap();
    wait_for(&c, "button#bulk-retry", Duration::from_secs(10))
        .await
        .click()
        .await
        .unwrap();
    let count = wait_for(&c, "#count", Duration::from_secs(10)).await;
    assert_eq!(count.text().await.unwrap(), "2");
    snap(&c, "bulk-retry-dry-run").await;
    // Nothing happened on the dry run.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sink.received().len(), delivered_before);
    c.find(Locator::Css("button#confirm"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(&c, ".notice", Duration::from_secs(10)).await;
    let got = sink
        .wait_for(delivered_before + 2, Duration::from_secs(20))
        .await;
    let orders: Vec<String> = got[delivered_before..]
        .iter()
        .map(|r| r.json()["order"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(orders.contains(&"dies-1".to_string()) && orders.contains(&"dies-2".to_string()));
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_posts_and_stale_sessions_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![]).await;
    let hy = Hookyard::start(tmp.path(), &config(tmp.path(), &sink));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // A login from another site's page is refused before the token is
    // even looked at.
    let r = http
        .post(format!("{}/ui/login", hy.admin))
        .header("origin", "http://evil.example")
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // A same-origin login sets an HttpOnly, SameSite=Strict cookie that is
    // not the token.
    let r = http
        .post(format!("{}/ui/login", hy.admin))
        .header("origin", &hy.admin)
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains(TOKEN));
    let session = cookie.split(';').next().unwrap().to_string();
    // With the cookie: the pages; a cross-site POST with it: refused.
    let r = http
        .get(format!("{}/ui/targets", hy.admin))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!("{}/ui/targets/orders/pause", hy.admin))
        .header("cookie", &session)
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let (_, t) = hy.admin_get_token("/admin/targets/orders", TOKEN).await;
    assert_eq!(t["paused"], false);
    // A made-up session shows nothing.
    let r = http
        .get(format!("{}/ui/events", hy.admin))
        .header("cookie", "hookyard_session=00")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
}
