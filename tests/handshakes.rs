//! Provider handshakes through the real binary: each provider's challenge
//! is answered exactly as its docs ask, a wrong verify token or a bad
//! signature is refused, nothing is stored or delivered, and the counter
//! moves. An ordinary event on the same sources still goes through.

mod support;

use std::time::Duration;

use hookyard::source::verify::{SignOptions, sign_as};
use serde_json::{Value, json};
use support::openmetrics;
use support::*;

const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const META_APP_SECRET: &str = "meta-app-secret";
const ZOOM_SECRET: &str = "zoom-secret-token";
const X_SECRET: &str = "z3ZX4v7mAAUGykl3EcmkqbartmuW8VFOOzCloLx9Q45P0hLrFu";

/// Each test source and the provider label its handshakes are counted under.
const SOURCE_PROVIDERS: [(&str, &str); 6] = [
    ("slack", "slack"),
    ("meta", "meta"),
    ("graph", "graph"),
    ("zoom", "zoom"),
    ("x", "twitter"),
    ("dropbox", "dropbox"),
];

fn config(dir: &std::path::Path, sink: &Sink) -> String {
    format!(
        "{}\n\
         [targets.sink]\nurl = \"{}\"\nsecret = \"{SECRET}\"\ntimeout = \"3s\"\n\n\
         [sources.slack]\nverify = {{ scheme = \"slack\", secret = \"{SLACK_SECRET}\" }}\ntargets = [\"sink\"]\n\n\
         [sources.meta]\nverify = {{ scheme = \"meta\", secret = \"{META_APP_SECRET}\" }}\n\
         handshake = {{ provider = \"meta\", verify_token = \"env:TEST_META_VERIFY_TOKEN\" }}\ntargets = [\"sink\"]\n\n\
         [sources.graph]\nhandshake = {{ provider = \"graph\" }}\ntargets = [\"sink\"]\n\n\
         [sources.zoom]\nverify = {{ scheme = \"zoom\", secret = \"{ZOOM_SECRET}\" }}\ntargets = [\"sink\"]\n\n\
         [sources.x]\nhandshake = {{ provider = \"twitter\", secret = \"{X_SECRET}\" }}\ntargets = [\"sink\"]\n\n\
         [sources.dropbox]\nhandshake = {{ provider = \"dropbox\" }}\ntargets = [\"sink\"]\n\n\
         [sources.quiet]\nverify = {{ scheme = \"slack\", secret = \"{SLACK_SECRET}\" }}\nhandshake = false\ntargets = [\"sink\"]\n\n\
         [sources.plain]\ntargets = [\"sink\"]\n",
        server_section(dir),
        sink.url("/in"),
    )
}

fn now() -> i64 {
    hookyard::model::id::now_ms() as i64 / 1000
}

fn signed(scheme: &str, secret: &str, body: &str) -> Vec<(String, String)> {
    sign_as(
        scheme,
        secret,
        body.as_bytes(),
        now(),
        &SignOptions::default(),
    )
    .unwrap()
}

/// Status, content type, `x-content-type-options` and body text.
struct Answer {
    status: u16,
    content_type: Option<String>,
    nosniff: bool,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
}

async fn send(
    method: reqwest::Method,
    hy: &Hookyard,
    path_and_query: &str,
    headers: &[(String, String)],
    body: &str,
) -> Answer {
    let mut r = reqwest::Client::new()
        .request(method, format!("{}{path_and_query}", hy.public))
        .body(body.to_string());
    for (k, v) in headers {
        r = r.header(k.as_str(), v.as_str());
    }
    let r = r.send().await.unwrap();
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    Answer {
        status: r.status().as_u16(),
        content_type: header("content-type"),
        nosniff: header("x-content-type-options").as_deref() == Some("nosniff"),
        text: r.text().await.unwrap(),
    }
}

async fn get(hy: &Hookyard, path_and_query: &str) -> Answer {
    send(reqwest::Method::GET, hy, path_and_query, &[], "").await
}

async fn post(
    hy: &Hookyard,
    path_and_query: &str,
    headers: &[(String, String)],
    body: &str,
) -> Answer {
    send(reqwest::Method::POST, hy, path_and_query, headers, body).await
}

async fn handshakes_counted(hy: &Hookyard, source: &str, provider: &str) -> f64 {
    let text = hy.admin_text("/metrics").await;
    openmetrics::parse(&text)
        .unwrap()
        .sample(
            "hookyard_handshakes_total",
            &[("source", source), ("provider", provider)],
        )
        .unwrap_or(0.0)
}

async fn stored_events(hy: &Hookyard) -> Vec<Value> {
    let (status, v) = hy.admin_get("/admin/events").await;
    assert_eq!(status, 200, "{v}");
    v["events"].as_array().unwrap().clone()
}

/// A router with every handshake source, Meta's verify token from the
/// environment as its docs' example has it.
fn start(dir: &std::path::Path, sink: &Sink) -> Hookyard {
    Hookyard::start_env(
        dir,
        &config(dir, sink),
        &[("TEST_META_VERIFY_TOKEN", "meatyhamhock")],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_handshake_is_answered_and_nothing_is_stored_or_delivered() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![]).await;
    let hy = start(tmp.path(), &sink);

    // Slack: the docs' url_verification event, signed, answered after
    // verification (on by default for a slack-verified source).
    let slack = r#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let a = post(
        &hy,
        "/hooks/slack",
        &signed("slack", SLACK_SECRET, slack),
        slack,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        a.json(),
        json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
    );
    assert!(a.nosniff);

    // Meta: the docs' sample verification request.
    let a = get(
        &hy,
        "/hooks/meta?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meatyhamhock",
    )
    .await;
    assert_eq!(
        (a.status, a.content_type.as_deref(), a.text.as_str()),
        (200, Some("text/plain"), "1158201444")
    );
    assert!(a.nosniff);

    // Microsoft Graph: the token comes back URL-decoded, in the request.
    let a = post(
        &hy,
        "/hooks/graph?validationToken=Validation%3A%20Testing%20client%20application%20reachability",
        &[("content-type".into(), "text/plain".into())],
        "",
    )
    .await;
    assert_eq!(
        (a.status, a.content_type.as_deref(), a.text.as_str()),
        (
            200,
            Some("text/plain"),
            "Validation: Testing client application reachability"
        )
    );

    // Zoom: signed like its events; the HMAC computed with openssl (see
    // src/source/handshake/tests.rs).
    let zoom = r#"{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}"#;
    let a = post(&hy, "/hooks/zoom", &signed("zoom", ZOOM_SECRET, zoom), zoom).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        a.json(),
        json!({
            "plainToken": "qgg8vlvZRS6UYooatFL8Aw",
            "encryptedToken": "d9e0d764a78494688ba3f2d5c0ed4ca311394b4834d959759213424d2df961e3"
        })
    );

    // X: the CRC of X's sample consumer secret and token (value computed
    // with openssl).
    let a = get(
        &hy,
        "/hooks/x?crc_token=9b4507b3-9040-4669-9ca3-6b94edb50553",
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        a.json(),
        json!({"response_token": "sha256=Cytd4Sq+NvEcV3MMrXxWJGJx5A+y/lXzzU2Maartkx8="})
    );

    // Dropbox.
    let a = get(&hy, "/hooks/dropbox?challenge=the_challenge").await;
    assert_eq!(
        (a.status, a.content_type.as_deref(), a.text.as_str()),
        (200, Some("text/plain"), "the_challenge")
    );
    assert!(a.nosniff);

    for (source, provider) in SOURCE_PROVIDERS {
        assert_eq!(
            handshakes_counted(&hy, source, provider).await,
            1.0,
            "{source}"
        );
    }
    let (_, sources) = hy.admin_get("/admin/sources").await;
    let meta = sources["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "meta")
        .unwrap();
    assert_eq!(meta["handshake"], "meta");
    assert_eq!(meta["counts"]["handshakes"], 1);

    // Nothing stored, nothing routed, nothing delivered.
    assert_eq!(stored_events(&hy).await, Vec::<Value>::new());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sink.received().len(), 0);

    // The same sources still take events: a signed Meta event and a Slack
    // event_callback are stored and reach the sink.
    let event = r#"{"object":"page","entry":[]}"#;
    let a = post(
        &hy,
        "/hooks/meta",
        &signed("meta", META_APP_SECRET, event),
        event,
    )
    .await;
    assert_eq!(a.status, 202, "{}", a.text);
    let callback =
        r#"{"type":"event_callback","event":{"type":"message","text":"url_verification"}}"#;
    let a = post(
        &hy,
        "/hooks/slack",
        &signed("slack", SLACK_SECRET, callback),
        callback,
    )
    .await;
    assert_eq!(a.status, 202, "{}", a.text);
    let got = sink.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 2);
    assert_eq!(stored_events(&hy).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_bad_signatures_and_oversized_challenges_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![]).await;
    let hy = start(tmp.path(), &sink);
    let code = |a: &Answer| a.json()["code"].as_str().unwrap_or("").to_string();

    // Meta: a wrong verify token is 403 and its value is not echoed.
    let a = get(
        &hy,
        "/hooks/meta?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=guess",
    )
    .await;
    assert_eq!(
        (a.status, code(&a).as_str()),
        (403, "verify_token_mismatch")
    );
    assert!(!a.text.contains("1158201444") && !a.text.contains("meatyhamhock"));
    let a = get(
        &hy,
        "/hooks/meta?hub.mode=subscribe&hub.verify_token=meatyhamhock",
    )
    .await;
    assert_eq!((a.status, code(&a).as_str()), (400, "handshake_invalid"));

    // Slack and Zoom: verification comes first.
    let slack = r#"{"challenge":"abc","type":"url_verification"}"#;
    let a = post(
        &hy,
        "/hooks/slack",
        &signed("slack", "not-the-secret", slack),
        slack,
    )
    .await;
    assert_eq!((a.status, code(&a).as_str()), (401, "signature_mismatch"));
    let a = post(&hy, "/hooks/slack", &[], slack).await;
    assert_eq!((a.status, code(&a).as_str()), (401, "missing_header"));
    let zoom = r#"{"event":"endpoint.url_validation","payload":{"plainToken":"p"}}"#;
    let a = post(
        &hy,
        "/hooks/zoom",
        &signed("zoom", "not-the-secret", zoom),
        zoom,
    )
    .await;
    assert_eq!((a.status, code(&a).as_str()), (401, "signature_mismatch"));

    // Everything the sender controls is bounded (1 KiB).
    let long = "c".repeat(1025);
    let a = get(&hy, &format!("/hooks/dropbox?challenge={long}")).await;
    assert_eq!((a.status, code(&a).as_str()), (400, "handshake_invalid"));
    let a = get(&hy, &format!("/hooks/x?crc_token={long}")).await;
    assert_eq!((a.status, code(&a).as_str()), (400, "handshake_invalid"));
    let a = post(
        &hy,
        &format!("/hooks/graph?validationToken={long}"),
        &[],
        "",
    )
    .await;
    assert_eq!((a.status, code(&a).as_str()), (400, "handshake_invalid"));
    let big = format!(r#"{{"challenge":"{long}","type":"url_verification"}}"#);
    let a = post(
        &hy,
        "/hooks/slack",
        &signed("slack", SLACK_SECRET, &big),
        &big,
    )
    .await;
    assert_eq!((a.status, code(&a).as_str()), (400, "handshake_invalid"));
    let a = get(&hy, "/hooks/dropbox").await;
    assert_eq!((a.status, code(&a).as_str()), (400, "handshake_invalid"));

    // GET stays 405 where no GET handshake is configured.
    for path in [
        "/hooks/plain?challenge=x",
        "/hooks/slack?challenge=x",
        "/hooks/graph?validationToken=x",
        "/hooks/nosuch?challenge=x",
    ] {
        let a = get(&hy, path).await;
        assert_eq!(
            (a.status, code(&a).as_str()),
            (405, "method_not_allowed"),
            "{path}"
        );
    }

    // A Slack source with its handshake turned off stores the challenge as
    // an ordinary event.
    let a = post(
        &hy,
        "/hooks/quiet",
        &signed("slack", SLACK_SECRET, slack),
        slack,
    )
    .await;
    assert_eq!(a.status, 202, "{}", a.text);

    for (source, provider) in SOURCE_PROVIDERS {
        assert_eq!(
            handshakes_counted(&hy, source, provider).await,
            0.0,
            "{source}"
        );
    }
    let events = stored_events(&hy).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["source"], "quiet");
    sink.wait_for(1, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.received().len(), 1);
}
