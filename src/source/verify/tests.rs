//! Tests across schemes: config checks, the same accept/reject cases for
//! every scheme, signing round trips, and property tests that no input makes
//! verification panic. Each scheme's file tests its own published vectors
//! and formats.

use anyhow::{Result, bail};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

use super::*;

// ---- helpers shared with the scheme files -----------------------------------

const KEY: &str = "sources.test.verify";

/// Stands in for `config::resolve_secret_text` without touching the
/// environment: "env:NAME" becomes "value-of-NAME", "env:MISSING" fails.
fn fake_resolve(key: &str, text: &str) -> Result<String> {
    match text.strip_prefix("env:") {
        Some("MISSING") => bail!("{key}: environment variable MISSING is not set"),
        Some(name) => Ok(format!("value-of-{name}")),
        None => Ok(text.to_string()),
    }
}

fn build(toml_text: &str) -> Result<Verifier> {
    let raw: RawVerify = toml::from_str(toml_text)?;
    Verifier::from_config(KEY, &raw, &fake_resolve)
}

/// A verifier from a `verify` table written as TOML.
pub(super) fn verifier(toml_text: &str) -> Verifier {
    build(toml_text).unwrap_or_else(|e| panic!("test config should be valid: {e:#}"))
}

/// The error a `verify` table written as TOML fails with.
pub(super) fn config_error(toml_text: &str) -> String {
    match build(toml_text) {
        Ok(v) => panic!("expected a config error, got {v:?}"),
        Err(e) => format!("{e:#}"),
    }
}

pub(super) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

pub(super) fn check(
    v: &Verifier,
    headers: &HeaderMap,
    query: &str,
    body: &[u8],
    now_unix: i64,
) -> Result<(), Rejection> {
    v.verify(&Request {
        headers,
        query,
        body,
        now_unix,
    })
}

fn owned_headers(pairs: &[(String, String)]) -> HeaderMap {
    let borrowed: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    headers(&borrowed)
}

// ---- every scheme, the same cases --------------------------------------------

/// One configuration per scheme (two for the generic hmac), with two secrets
/// for rotation and a third that is not configured.
struct Case {
    scheme: &'static str,
    /// Scheme-specific lines of the `verify` table.
    extra: &'static str,
    secrets: [&'static str; 2],
    wrong: &'static str,
    opts: SignOptions,
    timestamped: bool,
    /// Whether the body is covered: basic and token authenticate the sender only.
    signs_body: bool,
}

fn cases() -> Vec<Case> {
    let opts = |f: fn(&mut SignOptions)| {
        let mut o = SignOptions::default();
        f(&mut o);
        o
    };
    vec![
        Case {
            scheme: "github",
            extra: "",
            secrets: ["first-secret", "second-secret"],
            wrong: "other-secret",
            opts: SignOptions::default(),
            timestamped: false,
            signs_body: true,
        },
        Case {
            scheme: "stripe",
            extra: "",
            secrets: ["whsec_first", "whsec_second"],
            wrong: "whsec_other",
            opts: SignOptions::default(),
            timestamped: true,
            signs_body: true,
        },
        Case {
            scheme: "standard-webhooks",
            extra: "",
            secrets: [
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                // base64 of "second-secret-for-tests"
                "whsec_c2Vjb25kLXNlY3JldC1mb3ItdGVzdHM=",
            ],
            // base64 of "wrong-secret-for-tests"
            wrong: "whsec_d3Jvbmctc2VjcmV0LWZvci10ZXN0cw==",
            opts: SignOptions::default(),
            timestamped: true,
            signs_body: true,
        },
        Case {
            scheme: "shopify",
            extra: "",
            secrets: ["first-secret", "second-secret"],
            wrong: "other-secret",
            opts: SignOptions::default(),
            timestamped: false,
            signs_body: true,
        },
        Case {
            scheme: "slack",
            extra: "",
            secrets: ["8f742231b10e8888abcd99yyyzzz85a5", "second-secret"],
            wrong: "other-secret",
            opts: SignOptions::default(),
            timestamped: true,
            signs_body: true,
        },
        Case {
            scheme: "zoom",
            extra: "",
            secrets: ["first-secret", "second-secret"],
            wrong: "other-secret",
            opts: SignOptions::default(),
            timestamped: true,
            signs_body: true,
        },
        Case {
            scheme: "meta",
            extra: "",
            secrets: ["first-secret", "second-secret"],
            wrong: "other-secret",
            opts: SignOptions::default(),
            timestamped: false,
            signs_body: true,
        },
        Case {
            scheme: "hmac",
            extra: "header = \"X-Signature\"",
            secrets: ["first-secret", "second-secret"],
            wrong: "other-secret",
            opts: opts(|o| o.header = Some("X-Signature".into())),
            timestamped: false,
            signs_body: true,
        },
        Case {
            scheme: "hmac",
            extra: "header = \"x-sig\"\nalgorithm = \"sha512\"\nencoding = \"base64\"\nprefix = \"sig=\"",
            secrets: ["first-secret", "second-secret"],
            wrong: "other-secret",
            opts: opts(|o| {
                o.header = Some("x-sig".into());
                o.algorithm = Some("sha512".into());
                o.encoding = Some("base64".into());
                o.prefix = Some("sig=".into());
            }),
            timestamped: false,
            signs_body: true,
        },
        Case {
            scheme: "hmac",
            extra: "header = \"x-sig\"\nalgorithm = \"sha1\"",
            secrets: ["first-secret", "second-secret"],
            wrong: "other-secret",
            opts: opts(|o| {
                o.header = Some("x-sig".into());
                o.algorithm = Some("sha1".into());
            }),
            timestamped: false,
            signs_body: true,
        },
        Case {
            scheme: "basic",
            extra: "username = \"hook\"",
            secrets: ["first-password", "second-password"],
            wrong: "other-password",
            opts: opts(|o| o.username = Some("hook".into())),
            timestamped: false,
            signs_body: false,
        },
        Case {
            scheme: "basic",
            extra: "",
            secrets: ["alice:first", "bob:second"],
            wrong: "alice:second",
            opts: SignOptions::default(),
            timestamped: false,
            signs_body: false,
        },
        Case {
            scheme: "token",
            extra: "header = \"x-token\"",
            secrets: ["first-token", "second-token"],
            wrong: "other-token",
            opts: opts(|o| o.header = Some("x-token".into())),
            timestamped: false,
            signs_body: false,
        },
        Case {
            scheme: "token",
            extra: "header = \"Authorization\"",
            secrets: ["first-token", "second-token"],
            wrong: "other-token",
            opts: opts(|o| o.header = Some("authorization".into())),
            timestamped: false,
            signs_body: false,
        },
    ]
}

impl Case {
    fn verifier(&self) -> Verifier {
        verifier(&format!(
            "scheme = \"{}\"\nsecrets = [\"{}\", \"{}\"]\n{}",
            self.scheme, self.secrets[0], self.secrets[1], self.extra
        ))
    }

    fn sign(&self, secret: &str, body: &[u8], now: i64) -> Vec<(String, String)> {
        sign_as(self.scheme, secret, body, now, &self.opts)
            .unwrap_or_else(|e| panic!("{}: {e:#}", self.scheme))
    }

    fn name(&self) -> String {
        format!("{} {}", self.scheme, self.extra.replace('\n', " "))
    }
}

const NOW: i64 = 1_700_000_000;
const BODY: &[u8] = br#"{"event":"ping","n":1}"#;

#[test]
fn every_scheme_accepts_what_it_signs_with_any_configured_secret() {
    for case in cases() {
        let v = case.verifier();
        for secret in case.secrets {
            let signed = owned_headers(&case.sign(secret, BODY, NOW));
            assert_eq!(check(&v, &signed, "", BODY, NOW), Ok(()), "{}", case.name());
        }
    }
}

#[test]
fn every_scheme_rejects_an_unconfigured_secret() {
    for case in cases() {
        let signed = owned_headers(&case.sign(case.wrong, BODY, NOW));
        assert_eq!(
            check(&case.verifier(), &signed, "", BODY, NOW),
            Err(Rejection::Mismatch),
            "{}",
            case.name()
        );
    }
}

#[test]
fn every_signing_scheme_rejects_a_tampered_body() {
    for case in cases() {
        let signed = owned_headers(&case.sign(case.secrets[1], BODY, NOW));
        let tampered = br#"{"event":"ping","n":2}"#;
        let got = check(&case.verifier(), &signed, "", tampered, NOW);
        if case.signs_body {
            assert_eq!(got, Err(Rejection::Mismatch), "{}", case.name());
        } else {
            // Credentials say who sent it, not what was sent.
            assert_eq!(got, Ok(()), "{}", case.name());
        }
    }
}

#[test]
fn timestamped_schemes_enforce_the_tolerance_both_ways() {
    for case in cases().into_iter().filter(|c| c.timestamped) {
        let v = case.verifier();
        let at = |signed_at: i64| {
            let signed = owned_headers(&case.sign(case.secrets[0], BODY, signed_at));
            check(&v, &signed, "", BODY, NOW)
        };
        assert_eq!(
            at(NOW - 300),
            Ok(()),
            "{}: edge of the default 5m",
            case.name()
        );
        assert_eq!(at(NOW + 300), Ok(()), "{}", case.name());
        assert_eq!(
            at(NOW - 301),
            Err(Rejection::StaleTimestamp),
            "{}",
            case.name()
        );
        assert_eq!(
            at(NOW + 301),
            Err(Rejection::FutureTimestamp),
            "{}",
            case.name()
        );
        assert_eq!(at(0), Err(Rejection::StaleTimestamp), "{}", case.name());

        // A forged old request is a mismatch, not a stale one: the clock is
        // only consulted for genuine requests.
        let forged = owned_headers(&case.sign(case.wrong, BODY, NOW - 10_000));
        assert_eq!(check(&v, &forged, "", BODY, NOW), Err(Rejection::Mismatch));

        let short = verifier(&format!(
            "scheme = \"{}\"\nsecret = \"{}\"\ntolerance = \"10s\"",
            case.scheme, case.secrets[0]
        ));
        let signed = owned_headers(&case.sign(case.secrets[0], BODY, NOW - 11));
        assert_eq!(
            check(&short, &signed, "", BODY, NOW),
            Err(Rejection::StaleTimestamp),
            "{}",
            case.name()
        );
    }
}

#[test]
fn untimestamped_schemes_ignore_the_clock() {
    for case in cases().into_iter().filter(|c| !c.timestamped) {
        let signed = owned_headers(&case.sign(case.secrets[0], BODY, 0));
        assert_eq!(
            check(&case.verifier(), &signed, "", BODY, i64::MAX),
            Ok(()),
            "{}",
            case.name()
        );
    }
}

#[test]
fn every_signed_header_is_required() {
    for case in cases() {
        let v = case.verifier();
        let signed = case.sign(case.secrets[0], BODY, NOW);
        for (name, _) in &signed {
            let without: Vec<(String, String)> =
                signed.iter().filter(|(n, _)| n != name).cloned().collect();
            assert_eq!(
                check(&v, &owned_headers(&without), "", BODY, NOW),
                Err(Rejection::MissingHeader(name.clone())),
                "{}",
                case.name()
            );
        }
    }
}

#[test]
fn every_scheme_calls_a_garbled_header_bad_format() {
    for case in cases() {
        let v = case.verifier();
        let signed = case.sign(case.secrets[0], BODY, NOW);
        // Replacing the signature (last) header's value with punctuation.
        let mut garbled = signed.clone();
        garbled.last_mut().unwrap().1 = "%%%".to_string();
        let got = check(&v, &owned_headers(&garbled), "", BODY, NOW);
        if case.scheme == "token" {
            // A token has no format to violate.
            assert_eq!(got, Err(Rejection::Mismatch), "{}", case.name());
        } else {
            assert!(
                matches!(got, Err(Rejection::BadFormat(_))),
                "{}: {got:?}",
                case.name()
            );
        }
        // Bytes that are not ASCII text.
        let mut map = owned_headers(&signed);
        let (name, _) = signed.last().unwrap();
        map.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        assert!(
            matches!(check(&v, &map, "", BODY, NOW), Err(Rejection::BadFormat(_))),
            "{}",
            case.name()
        );
    }
}

#[test]
fn headers_are_matched_case_insensitively() {
    let signed = sign_as("github", "s", BODY, NOW, &SignOptions::default()).unwrap();
    let upper: Vec<(String, String)> = signed
        .iter()
        .map(|(n, v)| {
            (
                n.to_ascii_uppercase(),
                v.to_ascii_uppercase().replace("SHA256=", "sha256="),
            )
        })
        .collect();
    let v = verifier("scheme = \"github\"\nsecret = \"s\"");
    assert_eq!(check(&v, &owned_headers(&upper), "", BODY, NOW), Ok(()));
}

// ---- signing ----------------------------------------------------------------

#[test]
fn sign_as_produces_the_providers_headers() {
    let body = b"Hello, World!";
    assert_eq!(
        sign_as(
            "github",
            "It's a Secret to Everybody",
            body,
            0,
            &SignOptions::default()
        )
        .unwrap(),
        vec![(
            "x-hub-signature-256".to_string(),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17".to_string()
        )]
    );
    let opts = SignOptions {
        msg_id: Some("msg_p5jXN8AQM9LWM0D4loKWxJek".into()),
        ..SignOptions::default()
    };
    assert_eq!(
        sign_as(
            "standard-webhooks",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            br#"{"test": 2432232314}"#,
            1614265330,
            &opts
        )
        .unwrap(),
        vec![
            (
                "webhook-id".to_string(),
                "msg_p5jXN8AQM9LWM0D4loKWxJek".to_string()
            ),
            ("webhook-timestamp".to_string(), "1614265330".to_string()),
            (
                "webhook-signature".to_string(),
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".to_string()
            ),
        ]
    );
    let stripe = sign_as("stripe", "whsec_x", b"{}", 42, &SignOptions::default()).unwrap();
    assert_eq!(stripe.len(), 1);
    assert!(stripe[0].1.starts_with("t=42,v1="), "{stripe:?}");
    assert_eq!(
        sign_as(
            "basic",
            "Aladdin:open sesame",
            b"",
            0,
            &SignOptions::default()
        )
        .unwrap(),
        vec![(
            "authorization".to_string(),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==".to_string()
        )]
    );
    let bearer = SignOptions {
        header: Some("Authorization".into()),
        ..SignOptions::default()
    };
    assert_eq!(
        sign_as("token", "t0k", b"", 0, &bearer).unwrap(),
        vec![("authorization".to_string(), "Bearer t0k".to_string())]
    );
}

#[test]
fn sign_as_sends_a_given_delivery_id() {
    let opts = SignOptions {
        msg_id: Some("delivery-1".into()),
        ..SignOptions::default()
    };
    let gh = sign_as("github", "s", b"", 0, &opts).unwrap();
    assert!(gh.contains(&("x-github-delivery".to_string(), "delivery-1".to_string())));
    let shop = sign_as("shopify", "s", b"", 0, &opts).unwrap();
    assert!(shop.contains(&("x-shopify-webhook-id".to_string(), "delivery-1".to_string())));
    // Without one, standard-webhooks makes a fresh id per call.
    let a = sign_as(
        "standard-webhooks",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        b"",
        0,
        &SignOptions::default(),
    );
    let b = sign_as(
        "standard-webhooks",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        b"",
        0,
        &SignOptions::default(),
    );
    assert_ne!(a.unwrap()[0].1, b.unwrap()[0].1);
}

#[test]
fn sign_as_reports_bad_options() {
    let err = |scheme: &str, opts: SignOptions| {
        format!("{:#}", sign_as(scheme, "s:p", b"", 0, &opts).unwrap_err())
    };
    assert!(err("hmac", SignOptions::default()).contains("sign.header"));
    let e = err("token", SignOptions::default());
    assert!(e.contains("sign.header") && e.contains("URL"), "{e}");
    let e = err(
        "github",
        SignOptions {
            header: Some("x".into()),
            ..Default::default()
        },
    );
    assert!(
        e.contains("sign.header: not used by scheme \"github\""),
        "{e}"
    );
    let e = err("nope", SignOptions::default());
    assert!(e.contains("unknown scheme"), "{e}");
    let e = format!(
        "{:#}",
        sign_as(
            "standard-webhooks",
            "plain",
            b"",
            0,
            &SignOptions::default()
        )
        .unwrap_err()
    );
    assert!(e.contains("whsec_"), "{e}");
}

// ---- config -----------------------------------------------------------------

#[test]
fn unknown_scheme_lists_the_valid_ones() {
    let e = config_error("scheme = \"gitlab\"\nsecret = \"x\"");
    assert!(
        e.starts_with("sources.test.verify.scheme: unknown scheme \"gitlab\""),
        "{e}"
    );
    for s in SCHEMES {
        assert!(e.contains(s), "{e}");
    }
}

#[test]
fn secrets_are_required_once_and_non_empty() {
    let e = config_error("scheme = \"github\"");
    assert!(e.contains("sources.test.verify: no secret"), "{e}");
    let e = config_error("scheme = \"github\"\nsecret = \"a\"\nsecrets = [\"b\"]");
    assert!(e.contains("not both"), "{e}");
    let e = config_error("scheme = \"github\"\nsecrets = []");
    assert!(
        e.contains("sources.test.verify.secrets: the list is empty"),
        "{e}"
    );
    let e = config_error("scheme = \"token\"\nheader = \"x-t\"\nsecrets = [\"a\", \"\"]");
    assert!(
        e.contains("sources.test.verify.secrets[1]: the secret is empty"),
        "{e}"
    );
}

#[test]
fn secrets_resolve_through_the_given_function() {
    let v = verifier("scheme = \"token\"\nheader = \"x-t\"\nsecrets = [\"env:ONE\", \"plain\"]");
    assert_eq!(
        check(&v, &headers(&[("x-t", "value-of-ONE")]), "", b"", 0),
        Ok(())
    );
    assert_eq!(check(&v, &headers(&[("x-t", "plain")]), "", b"", 0), Ok(()));
    assert_eq!(
        check(&v, &headers(&[("x-t", "env:ONE")]), "", b"", 0),
        Err(Rejection::Mismatch)
    );
    let e = config_error("scheme = \"github\"\nsecrets = [\"a\", \"env:MISSING\"]");
    assert!(
        e.contains("sources.test.verify.secrets[1]: environment variable MISSING"),
        "{e}"
    );
}

#[test]
fn scheme_options_are_checked() {
    let cases = [
        (
            "scheme = \"hmac\"\nsecret = \"x\"",
            "sources.test.verify.header: the hmac scheme needs",
        ),
        (
            "scheme = \"hmac\"\nsecret = \"x\"\nheader = \"x-s\"\nalgorithm = \"md5\"",
            "sources.test.verify.algorithm: unknown algorithm \"md5\" (expected sha256, sha1 or sha512)",
        ),
        (
            "scheme = \"hmac\"\nsecret = \"x\"\nheader = \"x-s\"\nencoding = \"base32\"",
            "sources.test.verify.encoding: unknown encoding \"base32\" (expected hex or base64)",
        ),
        (
            "scheme = \"hmac\"\nsecret = \"x\"\nheader = \"x s\"",
            "sources.test.verify.header: \"x s\" is not a valid header name",
        ),
        (
            "scheme = \"github\"\nsecret = \"x\"\nheader = \"x-s\"",
            "sources.test.verify.header: not used by scheme \"github\" (only by hmac, token)",
        ),
        (
            "scheme = \"shopify\"\nsecret = \"x\"\ntolerance = \"1m\"",
            "sources.test.verify.tolerance: not used by scheme \"shopify\" (only by stripe, standard-webhooks, slack, zoom)",
        ),
        (
            "scheme = \"token\"\nsecret = \"x\"\nquery = \"t\"\nusername = \"u\"",
            "sources.test.verify.username: not used by scheme \"token\" (only by basic)",
        ),
        (
            "scheme = \"stripe\"\nsecret = \"x\"\ntolerance = \"soon\"",
            "sources.test.verify.tolerance: \"soon\" is not a duration",
        ),
        (
            "scheme = \"slack\"\nsecret = \"x\"\ntolerance = \"0s\"",
            "sources.test.verify.tolerance: \"0s\" is too short",
        ),
    ];
    for (toml_text, expected) in cases {
        let e = config_error(toml_text);
        assert!(
            e.starts_with(expected),
            "{toml_text:?}\n  gave {e}\n  expected {expected}"
        );
    }
}

#[test]
fn unknown_fields_are_refused_by_the_parser() {
    let e = config_error("scheme = \"github\"\nsecert = \"x\"");
    assert!(e.contains("secert"), "{e}");
}

#[test]
fn config_errors_never_show_a_secret() {
    const S: &str = "TOPSECRETVALUE";
    for toml_text in [
        format!("scheme = \"nope\"\nsecret = \"{S}\""),
        format!("scheme = \"hmac\"\nsecret = \"{S}\""),
        format!("scheme = \"standard-webhooks\"\nsecret = \"{S}\""),
        format!("scheme = \"standard-webhooks\"\nsecret = \"whsec_{S}!\""),
        format!("scheme = \"basic\"\nsecret = \"{S}\""),
        format!("scheme = \"token\"\nsecret = \"{S}\""),
        format!("scheme = \"github\"\nsecrets = [\"{S}\", \"\"]"),
        format!("scheme = \"stripe\"\nsecret = \"{S}\"\ntolerance = \"x\""),
    ] {
        let e = config_error(&toml_text);
        assert!(!e.contains(S), "{e}");
    }
}

#[test]
fn debug_never_shows_a_secret() {
    for case in cases() {
        let shown = format!("{:?}", case.verifier());
        for secret in case.secrets {
            for part in secret.split(':').chain(secret.strip_prefix("whsec_")) {
                assert!(!shown.contains(part), "{}: {shown}", case.name());
            }
        }
        assert!(shown.contains("redacted"), "{shown}");
    }
}

#[test]
fn raw_debug_shows_env_references_but_not_secrets() {
    let raw: RawVerify =
        toml::from_str("scheme = \"github\"\nsecrets = [\"env:GH_SECRET\", \"TOPSECRETVALUE\"]")
            .unwrap();
    let shown = format!("{raw:?}");
    assert!(
        shown.contains("env:GH_SECRET") && shown.contains("<redacted>"),
        "{shown}"
    );
    assert!(!shown.contains("TOPSECRETVALUE"), "{shown}");
}

#[test]
fn idempotency_and_sensitive_headers() {
    let expect = [
        (
            "github",
            Some("x-github-delivery"),
            vec!["x-hub-signature-256", "x-hub-signature"],
        ),
        ("stripe", None, vec!["stripe-signature"]),
        (
            "standard-webhooks",
            Some("webhook-id"),
            vec!["webhook-signature"],
        ),
        (
            "shopify",
            Some("x-shopify-webhook-id"),
            vec!["x-shopify-hmac-sha256"],
        ),
        ("slack", None, vec!["x-slack-signature"]),
        ("zoom", None, vec!["x-zm-signature"]),
        ("meta", None, vec!["x-hub-signature-256", "x-hub-signature"]),
        ("hmac", None, vec!["x-signature"]),
        ("basic", None, vec!["authorization"]),
        ("token", None, vec!["x-token"]),
    ];
    let all = cases();
    for (scheme, id, sensitive) in expect {
        let case = all.iter().find(|c| c.scheme == scheme).unwrap();
        let v = case.verifier();
        assert_eq!(v.scheme(), scheme);
        assert_eq!(v.default_idempotency_header(), id, "{scheme}");
        assert_eq!(v.sensitive_headers(), sensitive, "{scheme}");
    }
    let bearer = verifier("scheme = \"token\"\nheader = \"Authorization\"\nsecret = \"t\"");
    assert_eq!(bearer.sensitive_headers(), vec!["authorization"]);
    let query = verifier("scheme = \"token\"\nquery = \"t\"\nsecret = \"t\"");
    assert!(query.sensitive_headers().is_empty());
}

#[test]
fn rejections_have_codes_and_sentences() {
    let all = [
        (
            Rejection::MissingHeader("x-hub-signature-256".into()),
            "missing_header",
        ),
        (
            Rejection::BadFormat("header x is not hex".into()),
            "bad_format",
        ),
        (Rejection::StaleTimestamp, "stale_timestamp"),
        (Rejection::FutureTimestamp, "future_timestamp"),
        (Rejection::Mismatch, "signature_mismatch"),
    ];
    for (r, code) in all {
        assert_eq!(r.reason().as_str(), code);
        assert!(!r.message().is_empty());
        assert_eq!(r.to_string(), r.message());
    }
    assert_eq!(
        Rejection::MissingHeader("x-hub-signature-256".into()).message(),
        "the request has no x-hub-signature-256 header"
    );
}

#[test]
fn helpers() {
    assert_eq!(hex_decode("00ff7A"), Some(vec![0, 255, 0x7a]));
    for bad in ["", "0", "0g", "é0", " 00"] {
        assert_eq!(hex_decode(bad), None, "{bad:?}");
    }
    assert_eq!(hex_encode(&[0, 255, 0x7a]), "00ff7a");
    assert_eq!(
        check_age(i64::MIN, i64::MAX, i64::MAX),
        Err(Rejection::StaleTimestamp)
    );
    assert_eq!(
        check_age(i64::MAX, i64::MIN, i64::MAX),
        Err(Rejection::FutureTimestamp)
    );
    assert_eq!(check_age(5, 5, 1), Ok(()));
    assert!(any_equal(&[b"ab", b"cd"], &[b"cd"]));
    assert!(!any_equal(&[b"ab"], &[&b"abc"[..], b"a"]));
    assert!(!any_equal::<&[u8], &[u8]>(&[], &[b"x"]));
}

// ---- properties -------------------------------------------------------------

/// Proptest cases per scheme for "verification never panics".
const FUZZ_CASES: u32 = 2_000;
/// Proptest cases per scheme for "what is signed verifies".
const ROUND_TRIP_CASES: u32 = 300;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // No regression files: they would land outside this module's directory.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Header values from arbitrary bytes (control characters swapped out, as
/// `HeaderValue` would refuse them; bytes above 0x7f kept) and from shapes
/// close to what each scheme parses, so parsing gets past its first check.
fn header_value() -> impl Strategy<Value = HeaderValue> {
    let raw = proptest::collection::vec(any::<u8>(), 0..160).prop_map(|bytes| {
        let clean: Vec<u8> = bytes
            .into_iter()
            .map(|b| {
                if (b < 0x20 && b != b'\t') || b == 0x7f {
                    b'~'
                } else {
                    b
                }
            })
            .collect();
        HeaderValue::from_bytes(&clean).expect("control characters removed")
    });
    let shaped = prop_oneof![
        "[ -~]{0,120}",
        "1[5-7][0-9]{8}",
        "v1,[A-Za-z0-9+/]{43}=( v1,[A-Za-z0-9+/]{43}=)?",
        "(v0=|sha256=)?[0-9a-f]{64}",
        "[A-Za-z0-9+/]{43}=",
        "(Basic|Bearer) [A-Za-z0-9+/]{0,40}=?=?",
        "((t|v1|v0| t|x)=[0-9a-fA-F]{0,70},?){0,6}",
        "t=[0-9]{0,20},v1=[0-9a-f]{64}(,v1=[0-9a-f]{0,66}){0,3}",
        "((v1|v1a|v2),[A-Za-z0-9+/=]{0,60} ?){0,5}",
        "(sha256=|sha256=|v0=|sig=|Basic |Bearer |basic )[0-9a-zA-Z+/=]{0,140}",
        "-?[0-9]{0,22}(\\.[0-9]{0,3})?",
    ]
    .prop_map(|s| HeaderValue::from_str(&s).expect("printable ASCII"));
    prop_oneof![1 => raw, 6 => shaped]
}

/// Every header any scheme reads, and one none does.
const NAMES: &[&str] = &[
    "x-hub-signature-256",
    "stripe-signature",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-shopify-hmac-sha256",
    "x-slack-request-timestamp",
    "x-slack-signature",
    "x-zm-request-timestamp",
    "x-zm-signature",
    "x-signature",
    "authorization",
    "x-token",
    "x-other",
];

/// Mostly the shape a header of this name has, sometimes anything.
fn value_for(name: &str) -> BoxedStrategy<HeaderValue> {
    let shape = match name {
        "webhook-timestamp" | "x-slack-request-timestamp" | "x-zm-request-timestamp" => {
            "1[5-7][0-9]{8}"
        }
        "stripe-signature" => "t=1[5-7][0-9]{8}(,v1=[0-9a-f]{64}){1,3}(,v0=[0-9a-f]{0,64})?",
        "webhook-signature" => "(v1a?,[A-Za-z0-9+/]{42,44}={0,2} ?){1,3}",
        "x-slack-signature" | "x-zm-signature" => "v0=[0-9a-fA-F]{0,66}",
        "x-hub-signature-256" => "sha256=[0-9a-fA-F]{0,66}",
        "x-shopify-hmac-sha256" | "x-signature" => "[A-Za-z0-9+/]{40,88}={0,2}|[0-9a-f]{64}",
        "authorization" => "(Basic|Bearer|basic) [A-Za-z0-9+/:]{0,40}={0,2}",
        _ => return header_value().boxed(),
    };
    prop_oneof![
        4 => shape.prop_map(|s| HeaderValue::from_str(&s).expect("printable ASCII")),
        1 => header_value(),
    ]
    .boxed()
}

/// Most of the headers present once each (so that parsing gets past "missing"
/// to the formats), plus a few repeated ones.
fn header_map() -> impl Strategy<Value = HeaderMap> {
    let each: Vec<_> = NAMES
        .iter()
        .map(|name| proptest::option::weighted(0.85, value_for(name)))
        .collect();
    let extra = proptest::collection::vec((proptest::sample::select(NAMES), header_value()), 0..3);
    (each, extra).prop_map(|(each, extra)| {
        let mut map = HeaderMap::new();
        for (name, value) in NAMES.iter().zip(each) {
            if let Some(value) = value {
                map.append(HeaderName::from_static(name), value);
            }
        }
        for (name, value) in extra {
            map.append(HeaderName::from_static(name), value);
        }
        map
    })
}

fn query() -> impl Strategy<Value = String> {
    prop_oneof![".{0,80}", "((t|token|x)=[a-zA-Z0-9%+]{0,12}&?){0,4}"]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..512)
}

fn now() -> impl Strategy<Value = i64> {
    prop_oneof![any::<i64>(), 1_500_000_000i64..1_800_000_000]
}

/// One verifier per scheme, including the generic hmac's variants and a
/// query-parameter token.
fn fuzz_verifiers() -> Vec<Verifier> {
    let mut all: Vec<Verifier> = cases().iter().map(Case::verifier).collect();
    all.push(verifier(
        "scheme = \"token\"\nquery = \"token\"\nsecret = \"t\"",
    ));
    all
}

proptest! {
    #![proptest_config(config(FUZZ_CASES))]

    /// Runs all 13 verifiers (8 schemes) on each case: FUZZ_CASES per verifier.
    #[test]
    fn verify_never_panics(h in header_map(), q in query(), b in body(), now in now()) {
        for v in fuzz_verifiers() {
            let req = Request { headers: &h, query: &q, body: &b, now_unix: now };
            let _ = v.verify(&req);
        }
    }

    #[test]
    fn parsers_never_panic(text in "\\PC{0,200}", raw in header_value(), n in any::<i64>(), m in any::<i64>(), t in any::<i64>()) {
        let _ = stripe::parse(&text);
        let _ = crate::webhooks::standard::signatures(&text);
        let _ = hex_decode(&text);
        let _ = timestamp("t", &text);
        let _ = check_age(n, m, t);
        if let Ok(s) = raw.to_str() {
            let _ = stripe::parse(s);
            let _ = crate::webhooks::standard::signatures(s);
        }
    }

    /// A signed request whose headers are then corrupted one byte at a time:
    /// deep inputs that only differ slightly from valid ones.
    #[test]
    fn corrupted_signed_requests_never_panic_or_pass(
        b in body(),
        pick in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        byte in 0x20u8..0x7f,
    ) {
        for case in cases() {
            let mut signed = case.sign(case.secrets[0], &b, NOW);
            let slot = pick.index(signed.len());
            let value = &mut signed[slot].1;
            let i = at.index(value.len().max(1)).min(value.len().saturating_sub(1));
            let mut bytes = value.clone().into_bytes();
            if bytes.is_empty() {
                continue;
            }
            let before = bytes[i];
            bytes[i] = byte;
            *value = String::from_utf8(bytes).expect("ASCII");
            let got = check(&case.verifier(), &owned_headers(&signed), "", &b, NOW);
            // A changed byte may only pass as another spelling of the same
            // value: letter case (hex digits, prefixes, "Bearer"), or a final
            // base64 "=" turned into trimmed space (padding is optional).
            let same_spelling = before.eq_ignore_ascii_case(&byte) || (before == b'=' && byte == b' ');
            let allowed = if before == byte {
                got.is_ok()
            } else {
                same_spelling || got.is_err()
            };
            prop_assert!(allowed, "{}: {:?} gave {:?}", case.name(), signed, got);
        }
    }
}

proptest! {
    #![proptest_config(config(ROUND_TRIP_CASES))]

    /// For every scheme: what `sign_as` signs, `verify` accepts, for any body
    /// and any time, and a flipped body bit is caught where the body is signed.
    #[test]
    fn sign_as_round_trips(b in body(), now in 0i64..4_000_000_000, flip in any::<prop::sample::Index>()) {
        for case in cases() {
            let v = case.verifier();
            let signed = owned_headers(&case.sign(case.secrets[1], &b, now));
            prop_assert_eq!(check(&v, &signed, "", &b, now), Ok(()), "{}", case.name());
            if case.signs_body && !b.is_empty() {
                let mut tampered = b.clone();
                tampered[flip.index(b.len())] ^= 1;
                prop_assert_eq!(check(&v, &signed, "", &tampered, now), Err(Rejection::Mismatch));
            }
        }
    }

    /// Any secret (printable, as a TOML string can carry it simply) round-trips.
    #[test]
    fn any_secret_round_trips(secret in "[a-zA-Z0-9 !#-&(-/;-~]{1,40}", b in body()) {
        for scheme in ["github", "stripe", "shopify", "slack"] {
            let signed = sign_as(scheme, &secret, &b, NOW, &SignOptions::default()).unwrap();
            let raw = RawVerify {
                scheme: scheme.into(), secret: Some(secret.clone()), secrets: None, tolerance: None,
                header: None, query: None, algorithm: None, encoding: None, prefix: None, username: None,
            };
            let v = Verifier::from_config(KEY, &raw, &fake_resolve).unwrap();
            prop_assert_eq!(check(&v, &owned_headers(&signed), "", &b, NOW), Ok(()), "{}", scheme);
        }
    }
}
