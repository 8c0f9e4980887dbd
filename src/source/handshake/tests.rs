//! Each provider's handshake against its documented example where there is
//! one, the bounds, and the config checks.

use anyhow::{Result, bail};
use serde_json::json;

use super::*;

fn fake_resolve(key: &str, text: &str) -> Result<String> {
    match text.strip_prefix("env:") {
        Some("MISSING") => bail!("{key}: environment variable MISSING is not set"),
        Some(name) => Ok(format!("value-of-{name}")),
        None => Ok(text.to_string()),
    }
}

/// The source's handshake from its TOML lines (`verify = …`, `handshake = …`).
fn build(source_toml: &str) -> Result<Option<Handshake>> {
    #[derive(Deserialize)]
    struct Source {
        verify: Option<RawVerify>,
        handshake: Option<toml::Value>,
    }
    let s: Source = toml::from_str(source_toml)?;
    Handshake::from_config(
        "sources.s",
        s.handshake.as_ref(),
        s.verify.as_ref(),
        &fake_resolve,
    )
}

fn handshake(source_toml: &str) -> Handshake {
    build(source_toml)
        .unwrap_or_else(|e| panic!("valid: {e:#}"))
        .expect("a handshake")
}

fn config_error(source_toml: &str) -> String {
    match build(source_toml) {
        Ok(h) => panic!("expected an error, got {h:?}"),
        Err(e) => format!("{e:#}"),
    }
}

/// The example of Slack's `url_verification` event page
/// (api.slack.com/events/url_verification).
#[test]
fn slack_docs_example() {
    let h = handshake("verify = { scheme = \"slack\", secret = \"s\" }");
    assert_eq!(h.provider(), HandshakeProvider::Slack);
    assert!(!h.answers_get());
    let body = br#"{
        "token": "Jhj5dZrVaK7ZwHHjRyZWjbDl",
        "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
        "type": "url_verification"
    }"#;
    assert_eq!(
        h.after_verify(body),
        Some(Ok(Answer::Json(
            json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
        )))
    );
    // Events, and bodies merely mentioning the word, are not handshakes.
    for event in [
        &br#"{"type":"event_callback","event":{"type":"message","text":"url_verification"}}"#[..],
        b"url_verification",
        b"",
    ] {
        assert_eq!(h.after_verify(event), None);
    }
    assert_eq!(h.before_verify("validationToken=x"), None);
    let long = format!(
        r#"{{"type":"url_verification","challenge":"{}"}}"#,
        "c".repeat(MAX_CHALLENGE + 1)
    );
    assert!(matches!(
        h.after_verify(long.as_bytes()),
        Some(Err(Refusal::Invalid(m))) if m.contains("longer than 1024")
    ));
    assert!(matches!(
        h.after_verify(br#"{"type":"url_verification","challenge":7}"#),
        Some(Err(Refusal::Invalid(_)))
    ));
}

/// The sample verification request of Meta's "Getting Started" with
/// webhooks (developers.facebook.com/docs/graph-api/webhooks/getting-started).
#[test]
fn meta_docs_example() {
    let h = handshake(
        "verify = { scheme = \"meta\", secret = \"app-secret\" }\n\
         handshake = { provider = \"meta\", verify_token = \"meatyhamhock\" }",
    );
    assert!(h.answers_get());
    assert_eq!(
        h.on_get("hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meatyhamhock"),
        Ok(Answer::Text("1158201444".into()))
    );
    assert_eq!(
        h.on_get("hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meatyhamhocks"),
        Err(Refusal::TokenMismatch)
    );
    assert_eq!(
        h.on_get("hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token="),
        Err(Refusal::Invalid(
            "query parameter hub.verify_token is empty".into()
        ))
    );
    assert_eq!(
        h.on_get("hub.mode=unsubscribe&hub.challenge=1&hub.verify_token=meatyhamhock"),
        Err(Refusal::Invalid(
            "hub.mode is \"unsubscribe\"; only \"subscribe\" is answered".into()
        ))
    );
    assert_eq!(
        h.on_get(
            "hub.mode=subscribe&hub.challenge=1&hub.challenge=2&hub.verify_token=meatyhamhock"
        ),
        Err(Refusal::Invalid(
            "query parameter hub.challenge appears more than once".into()
        ))
    );
    assert_eq!(
        h.on_get("hub.mode=subscribe&hub.verify_token=meatyhamhock"),
        Err(Refusal::Invalid(
            "the request has no query parameter hub.challenge".into()
        ))
    );
}

/// X publishes the code of the CRC answer with a sample consumer secret and
/// token (developer.x.com, "Securing webhooks", and its sample gists) but
/// not the resulting value; it was computed independently:
/// `printf '9b4507b3-9040-4669-9ca3-6b94edb50553' | openssl dgst -sha256
/// -hmac 'z3ZX4v7mAAUGykl3EcmkqbartmuW8VFOOzCloLx9Q45P0hLrFu' -binary | base64`.
#[test]
fn twitter_crc_vector() {
    let h = handshake(
        "handshake = { provider = \"twitter\", secret = \"z3ZX4v7mAAUGykl3EcmkqbartmuW8VFOOzCloLx9Q45P0hLrFu\" }",
    );
    assert_eq!(
        h.on_get("crc_token=9b4507b3-9040-4669-9ca3-6b94edb50553"),
        Ok(Answer::Json(json!({
            "response_token": "sha256=Cytd4Sq+NvEcV3MMrXxWJGJx5A+y/lXzzU2Maartkx8="
        })))
    );
    assert!(matches!(h.on_get(""), Err(Refusal::Invalid(_))));
}

/// Zoom's docs show a `plainToken` but not the secret behind their
/// `encryptedToken`; this one was computed independently:
/// `printf 'qgg8vlvZRS6UYooatFL8Aw' | openssl dgst -sha256 -hmac 'zoom-secret-token'`.
#[test]
fn zoom_vector_and_default_from_verify() {
    let body = br#"{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}"#;
    let expected = Answer::Json(json!({
        "plainToken": "qgg8vlvZRS6UYooatFL8Aw",
        "encryptedToken": "d9e0d764a78494688ba3f2d5c0ed4ca311394b4834d959759213424d2df961e3"
    }));
    // On by default for a zoom-verified source, keyed with its (first) secret.
    let h =
        handshake("verify = { scheme = \"zoom\", secrets = [\"zoom-secret-token\", \"older\"] }");
    assert_eq!(h.after_verify(body), Some(Ok(expected)));
    let explicit = handshake("handshake = { provider = \"zoom\", secret = \"zoom-secret-token\" }");
    assert!(matches!(explicit.after_verify(body), Some(Ok(_))));
    assert_eq!(
        h.after_verify(br#"{"event":"meeting.started","payload":{}}"#),
        None
    );
    assert!(matches!(
        h.after_verify(br#"{"event":"endpoint.url_validation","payload":{}}"#),
        Some(Err(Refusal::Invalid(m))) if m.contains("payload.plainToken")
    ));
}

#[test]
fn graph_token_is_decoded_and_bounded() {
    let h = handshake("handshake = { provider = \"graph\" }");
    assert!(!h.answers_get());
    assert_eq!(
        h.before_verify("validationToken=Validation%3A+Testing+client+application+reachability"),
        Some(Ok(Answer::Text(
            "Validation: Testing client application reachability".into()
        )))
    );
    assert_eq!(h.before_verify("other=1"), None);
    assert_eq!(h.after_verify(b"{}"), None);
    let long = format!("validationToken={}", "t".repeat(MAX_CHALLENGE + 1));
    assert!(matches!(
        h.before_verify(&long),
        Some(Err(Refusal::Invalid(_)))
    ));
    let exactly = format!("validationToken={}", "t".repeat(MAX_CHALLENGE));
    assert!(matches!(h.before_verify(&exactly), Some(Ok(_))));
}

#[test]
fn dropbox_echoes_the_challenge() {
    let h = handshake("handshake = { provider = \"dropbox\" }");
    assert_eq!(
        h.on_get("challenge=the_challenge"),
        Ok(Answer::Text("the_challenge".into()))
    );
    assert_eq!(
        h.on_get("x=1"),
        Err(Refusal::Invalid(
            "the request has no query parameter challenge".into()
        ))
    );
}

#[test]
fn defaults_and_opting_out() {
    assert!(build("").unwrap().is_none());
    assert!(
        build("verify = { scheme = \"github\", secret = \"s\" }")
            .unwrap()
            .is_none()
    );
    assert!(
        build("verify = { scheme = \"slack\", secret = \"s\" }\nhandshake = false")
            .unwrap()
            .is_none()
    );
    assert!(
        build("verify = { scheme = \"zoom\", secret = \"s\" }\nhandshake = false")
            .unwrap()
            .is_none()
    );
}

#[test]
fn config_errors_name_the_key() {
    let cases = [
        (
            "handshake = { provider = \"teams\" }",
            "sources.s.handshake.provider: unknown provider \"teams\" (expected one of: slack, meta, graph, zoom, twitter, dropbox)",
        ),
        (
            "handshake = { provider = \"meta\" }",
            "sources.s.handshake.verify_token: the meta handshake needs",
        ),
        (
            "handshake = { provider = \"meta\", verify_token = \"env:MISSING\" }",
            "sources.s.handshake.verify_token: environment variable MISSING is not set",
        ),
        (
            "handshake = { provider = \"meta\", verify_token = \"\" }",
            "sources.s.handshake.verify_token: the value is empty",
        ),
        (
            "handshake = { provider = \"dropbox\", secret = \"x\" }",
            "sources.s.handshake.secret: not used by provider \"dropbox\" (only by zoom, twitter)",
        ),
        (
            "handshake = { provider = \"slack\", verify_token = \"x\" }",
            "sources.s.handshake.verify_token: not used by provider \"slack\" (only by meta)",
        ),
        (
            "handshake = { provider = \"zoom\" }",
            "sources.s.handshake.secret: the zoom handshake needs",
        ),
        (
            "handshake = { provider = \"twitter\" }",
            "sources.s.handshake.secret: the twitter handshake needs",
        ),
        ("handshake = true", "sources.s.handshake: name the provider"),
    ];
    for (toml_text, expected) in cases {
        let e = config_error(toml_text);
        assert!(e.starts_with(expected), "{toml_text}:\n{e}");
    }
    // Unknown keys are refused under the table's key.
    let e = config_error("handshake = { provider = \"meta\", token = \"x\" }");
    assert!(
        e.starts_with("sources.s.handshake: unknown field `token`"),
        "{e}"
    );
    let e = config_error("handshake = \"meta\"");
    assert!(
        e.starts_with("sources.s.handshake: expected a table"),
        "{e}"
    );
}

#[test]
fn debug_shows_no_secret() {
    let h = handshake("handshake = { provider = \"twitter\", secret = \"very-secret-value\" }");
    assert!(!format!("{h:?}").contains("very-secret-value"));
    let raw: RawHandshake =
        toml::from_str("provider = \"meta\"\nverify_token = \"very-secret-value\"").unwrap();
    assert!(!format!("{raw:?}").contains("very-secret-value"));
}
