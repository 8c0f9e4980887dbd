//! Each provider's challenge and the answer it expects, as their docs
//! describe them:
//!
//! - Slack (`api.slack.com/events/url_verification`): a signed POST
//!   `{"type": "url_verification", "challenge": …}`, answered
//!   `{"challenge": …}`.
//! - Meta (Graph API webhooks, "Verification Requests"): `GET
//!   ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`, answered with
//!   the challenge as text once the token matches.
//! - Microsoft Graph (change notifications, "notification endpoint
//!   validation"): `POST ?validationToken=…`, answered 200 `text/plain`
//!   with the decoded token.
//! - Zoom ("Validate your webhook endpoint"): a signed POST
//!   `{"event": "endpoint.url_validation", "payload": {"plainToken": …}}`,
//!   answered with the token and `encryptedToken` = hex HMAC-SHA256 of it.
//! - X/Twitter ("Securing webhooks", CRC): `GET ?crc_token=…`, answered
//!   `{"response_token": "sha256=" + base64 HMAC-SHA256 of it}`.
//! - Dropbox (webhooks reference): `GET ?challenge=…`, answered with the
//!   challenge as text.

use base64::Engine as _;
use serde_json::{Value, json};

use super::{Answer, MAX_CHALLENGE, Refusal};
use crate::source::query::pairs;
use crate::source::verify::{hmac_sha256, same_bytes, to_hex};

/// The one value of query parameter `name` (names and values decoded as a
/// form). `None` when absent; refused when repeated (which one would
/// count?), empty or longer than [`MAX_CHALLENGE`].
fn param(query: &str, name: &str) -> Result<Option<String>, Refusal> {
    let mut found = None;
    for (_, n, value) in pairs(query) {
        if n != name {
            continue;
        }
        if found.is_some() {
            return Err(Refusal::Invalid(format!(
                "query parameter {name} appears more than once"
            )));
        }
        found = Some(bounded(
            &format!("query parameter {name}"),
            value.into_owned(),
        )?);
    }
    Ok(found)
}

fn required(query: &str, name: &str) -> Result<String, Refusal> {
    param(query, name)?
        .ok_or_else(|| Refusal::Invalid(format!("the request has no query parameter {name}")))
}

fn bounded(what: &str, value: String) -> Result<String, Refusal> {
    if value.is_empty() {
        return Err(Refusal::Invalid(format!("{what} is empty")));
    }
    if value.len() > MAX_CHALLENGE {
        return Err(Refusal::Invalid(format!(
            "{what} is longer than {MAX_CHALLENGE} bytes"
        )));
    }
    Ok(value)
}

pub(super) fn meta(query: &str, verify_token: &[u8]) -> Result<Answer, Refusal> {
    let mode = required(query, "hub.mode")?;
    if mode != "subscribe" {
        return Err(Refusal::Invalid(format!(
            "hub.mode is {mode:?}; only \"subscribe\" is answered"
        )));
    }
    let challenge = required(query, "hub.challenge")?;
    let token = required(query, "hub.verify_token")?;
    if !same_bytes(token.as_bytes(), verify_token) {
        return Err(Refusal::TokenMismatch);
    }
    Ok(Answer::Text(challenge))
}

pub(super) fn twitter(query: &str, consumer_secret: &[u8]) -> Result<Answer, Refusal> {
    let token = required(query, "crc_token")?;
    let mac = hmac_sha256(consumer_secret, token.as_bytes());
    let encoded = base64::engine::general_purpose::STANDARD.encode(mac);
    Ok(Answer::Json(
        json!({ "response_token": format!("sha256={encoded}") }),
    ))
}

pub(super) fn dropbox(query: &str) -> Result<Answer, Refusal> {
    required(query, "challenge").map(Answer::Text)
}

pub(super) fn graph(query: &str) -> Option<Result<Answer, Refusal>> {
    match param(query, "validationToken") {
        Ok(None) => None,
        Ok(Some(token)) => Some(Ok(Answer::Text(token))),
        Err(refused) => Some(Err(refused)),
    }
}

pub(super) fn slack(body: &[u8]) -> Option<Result<Answer, Refusal>> {
    let v = json_with(body, "type", "url_verification")?;
    Some(
        string_at(&v, "/challenge", "challenge")
            .map(|challenge| Answer::Json(json!({ "challenge": challenge }))),
    )
}

pub(super) fn zoom(body: &[u8], secret: &[u8]) -> Option<Result<Answer, Refusal>> {
    let v = json_with(body, "event", "endpoint.url_validation")?;
    Some(
        string_at(&v, "/payload/plainToken", "payload.plainToken").map(|plain| {
            let encrypted = to_hex(&hmac_sha256(secret, plain.as_bytes()));
            Answer::Json(json!({ "plainToken": plain, "encryptedToken": encrypted }))
        }),
    )
}

/// The body as JSON when it is an object whose `field` is `value`: a
/// handshake. Anything else (not JSON, another type) is an ordinary event.
/// Bodies without the value's bytes are not parsed at all, so events pay
/// a byte scan, not a parse.
fn json_with(body: &[u8], field: &str, value: &str) -> Option<Value> {
    let needle = value.as_bytes();
    if !body.windows(needle.len()).any(|w| w == needle) {
        return None;
    }
    let v: Value = serde_json::from_slice(body).ok()?;
    (v.get(field)?.as_str()? == value).then_some(v)
}

fn string_at(v: &Value, pointer: &str, name: &str) -> Result<String, Refusal> {
    let text = v
        .pointer(pointer)
        .and_then(Value::as_str)
        .ok_or_else(|| Refusal::Invalid(format!("the handshake has no string {name}")))?;
    bounded(name, text.to_string())
}
