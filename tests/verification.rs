//! Every signature scheme, through the real binary: a signed request is
//! accepted, each kind of bad one is refused with the reason, a rotated
//! secret works, and `hookyard send` signs as the provider does.

mod support;

use std::process::Command;

use hookyard::source::verify::{SignOptions, sign_as};
use serde_json::Value;
use support::*;

const SECRET_A: &str = "first-secret-0123456789";
const SECRET_B: &str = "second-secret-9876543210";
const WH_A: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const WH_B: &str = "whsec_c2Vjb25kLXNlY3JldC1rZXktMTIzNDU2Nzg=";

fn config(dir: &std::path::Path) -> String {
    format!(
        "{}\n\
         [sources.github]\nverify = {{ scheme = \"github\", secrets = [\"{SECRET_A}\", \"{SECRET_B}\"] }}\n\
         [sources.stripe]\nverify = {{ scheme = \"stripe\", secrets = [\"{SECRET_A}\", \"{SECRET_B}\"] }}\n\
         [sources.standard]\nverify = {{ scheme = \"standard-webhooks\", secrets = [\"{WH_A}\", \"{WH_B}\"] }}\n\
         [sources.shopify]\nverify = {{ scheme = \"shopify\", secrets = [\"{SECRET_A}\", \"{SECRET_B}\"] }}\n\
         [sources.slack]\nverify = {{ scheme = \"slack\", secrets = [\"{SECRET_A}\", \"{SECRET_B}\"], tolerance = \"2m\" }}\n\
         [sources.custom]\nverify = {{ scheme = \"hmac\", secrets = [\"{SECRET_A}\", \"{SECRET_B}\"], header = \"x-sig\", algorithm = \"sha512\", encoding = \"base64\", prefix = \"v=\" }}\n\
         [sources.basic]\nverify = {{ scheme = \"basic\", username = \"hooks\", secrets = [\"{SECRET_A}\", \"{SECRET_B}\"] }}\n\
         [sources.token]\nverify = {{ scheme = \"token\", header = \"authorization\", secret = \"env:TEST_TOKEN_SECRET\" }}\n\
         [sources.qtoken]\nverify = {{ scheme = \"token\", query = \"key\", secrets = [\"{SECRET_A}\"] }}\n",
        server_section(dir)
    )
}

fn start(dir: &std::path::Path) -> Hookyard {
    Hookyard::start_env(dir, &config(dir), &[("TEST_TOKEN_SECRET", SECRET_B)])
}

fn options(source: &str) -> SignOptions {
    match source {
        "custom" => SignOptions {
            header: Some("x-sig".into()),
            algorithm: Some("sha512".into()),
            encoding: Some("base64".into()),
            prefix: Some("v=".into()),
            ..Default::default()
        },
        "basic" => SignOptions {
            username: Some("hooks".into()),
            ..Default::default()
        },
        "token" => SignOptions {
            header: Some("authorization".into()),
            ..Default::default()
        },
        _ => SignOptions::default(),
    }
}

fn scheme(source: &str) -> &str {
    match source {
        "standard" => "standard-webhooks",
        "custom" => "hmac",
        other => other,
    }
}

fn secrets(source: &str) -> (&'static str, &'static str) {
    if source == "standard" {
        (WH_A, WH_B)
    } else {
        (SECRET_A, SECRET_B)
    }
}

fn now() -> i64 {
    hookyard::model::id::now_ms() as i64 / 1000
}

async fn post(
    hy: &Hookyard,
    source: &str,
    headers: &[(String, String)],
    body: &str,
) -> (u16, Value) {
    let mut r = reqwest::Client::new()
        .post(format!("{}/hooks/{source}", hy.public))
        .body(body.to_string());
    for (k, v) in headers {
        r = r.header(k.as_str(), v.as_str());
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scheme_accepts_the_genuine_and_names_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let hy = start(tmp.path());
    let body = r#"{"id":"evt_1","type":"ping"}"#;

    for source in [
        "github", "stripe", "standard", "shopify", "slack", "custom", "basic", "token",
    ] {
        let (a, b) = secrets(source);
        let opts = options(source);
        let sign = |secret: &str, body: &str, ts: i64| {
            sign_as(scheme(source), secret, body.as_bytes(), ts, &opts).unwrap()
        };
        let current = if source == "token" { b } else { a };

        let (status, v) = post(&hy, source, &sign(current, body, now()), body).await;
        assert_eq!(status, 202, "{source}: genuine request: {v}");
        if source != "token" {
            let (status, v) = post(&hy, source, &sign(b, body, now()), body).await;
            assert!(
                status == 202 || status == 200,
                "{source}: rotated secret: {v}"
            );
        }

        let wrong = if source == "standard" {
            "whsec_d3Jvbmctc2VjcmV0LWtleS0wMDAwMDAwMA=="
        } else {
            "wrong-secret-000000000"
        };
        let (status, v) = post(&hy, source, &sign(wrong, body, now()), body).await;
        assert_eq!(status, 401, "{source}: wrong secret: {v}");
        assert_eq!(v["code"], "signature_mismatch", "{source}");

        let tampered = body.replace("ping", "pong");
        let (status, v) = post(&hy, source, &sign(current, body, now()), &tampered).await;
        if matches!(source, "basic" | "token") {
            assert_eq!(status, 202, "{source}: credentials do not cover the body");
        } else {
            assert_eq!(status, 401, "{source}: tampered body: {v}");
            assert_eq!(v["code"], "signature_mismatch");
        }

        let (status, v) = post(&hy, source, &[], body).await;
        assert_eq!(status, 401, "{source}: unsigned: {v}");
        assert_eq!(v["code"], "missing_header", "{source}: {v}");
        assert!(
            !v["error"].as_str().unwrap().contains(current),
            "secret not echoed"
        );

        if matches!(source, "stripe" | "standard" | "slack") {
            let (status, v) = post(&hy, source, &sign(current, body, now() - 3600), body).await;
            assert_eq!(
                (status, v["code"].as_str()),
                (401, Some("stale_timestamp")),
                "{source}"
            );
            let (status, v) = post(&hy, source, &sign(current, body, now() + 3600), body).await;
            assert_eq!(
                (status, v["code"].as_str()),
                (401, Some("future_timestamp")),
                "{source}"
            );
        }

        let malformed: Vec<(String, String)> = sign(current, body, now())
            .into_iter()
            .map(|(k, v)| (k, format!("{}garbage,,==", &v[..v.len() / 2])))
            .collect();
        let (status, v) = post(&hy, source, &malformed, body).await;
        assert_eq!(status, 401, "{source}: malformed: {v}");
        assert!(
            matches!(
                v["code"].as_str(),
                Some("bad_format" | "signature_mismatch")
            ),
            "{source}: {v}"
        );
    }

    // A token in the query string works and is not stored with the event.
    let (status, v) = post(&hy, "qtoken?key=wrong", &[], body).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (401, Some("signature_mismatch"))
    );
    let url_source = format!("qtoken?key={SECRET_A}&keep=1");
    let (status, v) = post(&hy, &url_source, &[], body).await;
    assert_eq!(status, 202, "{v}");
    let stored = hy.event(v["id"].as_str().unwrap()).await;
    assert_eq!(stored["event"]["query"], "keep=1");
    let text = serde_json::to_string(&stored).unwrap();
    assert!(!text.contains(SECRET_A), "credential not stored");

    // Token in a header: redacted in the stored event.
    let signed = sign_as("token", SECRET_B, b"{}", now(), &options("token")).unwrap();
    let (_, v) = post(&hy, "token", &signed, "{}").await;
    let stored = hy.event(v["id"].as_str().unwrap()).await;
    assert!(!serde_json::to_string(&stored).unwrap().contains(SECRET_B));

    // Rejections are listed with reasons, without secrets.
    let sources: Value = hy.admin_json("/admin/sources").await;
    let dump = serde_json::to_string(&sources).unwrap();
    for s in [SECRET_A, SECRET_B, &WH_A[6..]] {
        assert!(!dump.contains(s), "admin output leaks a secret");
    }
    let github = sources["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "github")
        .unwrap();
    assert_eq!(github["counts"]["signature_mismatch"], 2);
    assert_eq!(github["counts"]["missing_header"], 1);
    assert!(!hy.log_text().contains(SECRET_A), "log leaks a secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hookyard_send_signs_like_the_provider() {
    let tmp = tempfile::tempdir().unwrap();
    let hy = start(tmp.path());
    std::fs::write(
        tmp.path().join("body.json"),
        r#"{"id":"evt_send","type":"x"}"#,
    )
    .unwrap();
    for (source, secret) in [
        ("github", SECRET_A),
        ("stripe", SECRET_B),
        ("standard-webhooks", WH_A),
        ("shopify", SECRET_A),
        ("slack", SECRET_A),
    ] {
        let path = if source == "standard-webhooks" {
            "standard"
        } else {
            source
        };
        let out = Command::new(env!("CARGO_BIN_EXE_hookyard"))
            .args([
                "send",
                &format!("{}/hooks/{path}", hy.public),
                "--scheme",
                source,
            ])
            .args(["--secret", secret, "--file"])
            .arg(tmp.path().join("body.json"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{source}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.starts_with("HTTP 202"), "{source}: {stdout}");
    }
    // Signed with a secret the source does not have.
    let wrong_secret = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hookyard"));
        c.args([
            "send",
            &format!("{}/hooks/github", hy.public),
            "--scheme",
            "github",
        ])
        .args(["--secret", "not-the-secret", "-d", "{}"]);
        c
    };
    let out = wrong_secret().output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("signature_mismatch"));

    // Its output piped into a reader that has gone (`| head -1`): the
    // command ends quietly, as other Unix tools do, not with a panic.
    let mut child = wrong_secret()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && out.status.code() != Some(101),
        "{:?}: {stderr}",
        out.status
    );
}

/// The token parameter's name percent-encoded (`?%74oken=`) still names the
/// token for verification, so it must also be removed from what is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encoded_token_parameter_name_is_redacted_too() {
    let tmp = tempfile::tempdir().unwrap();
    let hy = start(tmp.path());
    for query in [
        format!("%6Bey={SECRET_A}&keep=1"),
        format!("k%65%79={SECRET_A}&keep=1"),
        format!("keep=1&%6B%65%79={SECRET_A}"),
    ] {
        let (status, v) = post(&hy, &format!("qtoken?{query}"), &[], "{}").await;
        assert_eq!(status, 202, "{query}: {v}");
        let stored = hy.event(v["id"].as_str().unwrap()).await;
        assert_eq!(stored["event"]["query"], "keep=1", "{query}");
        let text = serde_json::to_string(&stored).unwrap();
        assert!(!text.contains(SECRET_A), "{query}: token stored: {text}");
    }
    // Listed events do not carry it either.
    let (_, list) = hy.admin_get("/admin/events?source=qtoken").await;
    assert!(!list.to_string().contains(SECRET_A));
}
