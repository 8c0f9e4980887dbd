//! Provider handshakes: challenges some providers send before they deliver
//! any event, to prove the endpoint is the subscriber's. They are answered
//! by the ingest handler on the spot, counted and logged, and never stored
//! or routed: they are not events, and a plugin has nothing to decide.
//!
//! Where the provider signs its challenge (Slack, Zoom), the answer comes
//! after the source's verification, so an unsigned request cannot make
//! hookyard compute a proof of the secret for it. The GET handshakes (Meta,
//! X, Dropbox) and Microsoft Graph's are not signed; Meta's carries its own
//! proof (the verify token), the others' answers reveal nothing secret.
//!
//! Everything taken from the request is bounded ([`MAX_CHALLENGE`]), and
//! text answers go out as `text/plain` with `nosniff`, so a challenge is
//! never a way to serve an attacker's page from the endpoint.

mod providers;

use std::fmt;

use anyhow::{Result, anyhow, bail};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::source::verify::{RawVerify, first_secret, shown_secret};
use crate::telemetry::{HandshakeProvider, RejectReason};

/// The longest challenge, token or CRC answered; longer ones are refused
/// with 400. Providers send tens of bytes.
pub const MAX_CHALLENGE: usize = 1024;

/// As written: `handshake = { provider = "meta", verify_token = "env:…" }`,
/// or `handshake = false` to turn off the default of a Slack- or
/// Zoom-verified source. Read from a `toml::Value` by hand, so that a
/// mistake inside the table is reported under its key (serde's untagged
/// enums only say that nothing matched).
#[derive(Clone, Debug)]
pub enum RawHandshakeSetting {
    Enabled(bool),
    Table(RawHandshake),
}

impl RawHandshakeSetting {
    /// `key` is the setting's own key, e.g. "sources.x.handshake".
    pub fn from_value(key: &str, value: &toml::Value) -> Result<RawHandshakeSetting> {
        match value {
            toml::Value::Boolean(on) => Ok(RawHandshakeSetting::Enabled(*on)),
            toml::Value::Table(_) => RawHandshake::deserialize(value.clone())
                .map(RawHandshakeSetting::Table)
                .map_err(|e| anyhow!("{key}: {}", e.message())),
            other => bail!(
                "{key}: expected a table such as {{ provider = \"meta\", verify_token = \"env:NAME\" }} or false, got {other}"
            ),
        }
    }
}

/// The `handshake` table. Its `Debug` shows `env:NAME` references but no
/// literal token or secret.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawHandshake {
    /// slack | meta | graph | zoom | twitter | dropbox
    pub provider: String,
    /// meta: the Verify Token set in the App Dashboard (may be "env:NAME").
    pub verify_token: Option<String>,
    /// zoom: the app's Secret Token (default: the source's zoom verify
    /// secret); twitter: the app's consumer secret. May be "env:NAME".
    pub secret: Option<String>,
}

impl fmt::Debug for RawHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawHandshake")
            .field("provider", &self.provider)
            .field(
                "verify_token",
                &self.verify_token.as_deref().map(shown_secret),
            )
            .field("secret", &self.secret.as_deref().map(shown_secret))
            .finish()
    }
}

/// Bytes from the config that must not be printed.
#[derive(Clone)]
struct Secret(Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A source's checked handshake. `Debug` never shows a token or secret.
#[derive(Clone, Debug)]
pub struct Handshake {
    kind: Kind,
}

#[derive(Clone, Debug)]
enum Kind {
    Slack,
    Meta { verify_token: Secret },
    Graph,
    Zoom { secret: Secret },
    Twitter { secret: Secret },
    Dropbox,
}

/// What a handshake is answered with.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// 200 `text/plain`.
    Text(String),
    /// 200 `application/json`.
    Json(serde_json::Value),
}

/// Why a handshake was refused. Carries no configured token or secret.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Missing, repeated, empty or over-long parameters, or a mode other
    /// than a subscription: a sentence saying which.
    Invalid(String),
    /// Meta's `hub.verify_token` is not the configured one.
    TokenMismatch,
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Invalid(_) => StatusCode::BAD_REQUEST,
            Refusal::TokenMismatch => StatusCode::FORBIDDEN,
        }
    }

    pub fn reason(&self) -> RejectReason {
        match self {
            Refusal::Invalid(_) => RejectReason::HandshakeInvalid,
            Refusal::TokenMismatch => RejectReason::VerifyTokenMismatch,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Refusal::Invalid(what) => what.clone(),
            Refusal::TokenMismatch => {
                "hub.verify_token does not match this source's verify_token".to_string()
            }
        }
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut r = match self {
            // Exactly `text/plain`: Dropbox and Graph name it, and no
            // charset parameter is needed for what they send.
            Answer::Text(text) => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))],
                text,
            )
                .into_response(),
            Answer::Json(value) => (StatusCode::OK, axum::Json(value)).into_response(),
        };
        // The body echoes what the sender chose: never let a browser
        // guess it is HTML.
        r.headers_mut().insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        r
    }
}

fn provider_named(key: &str, text: &str) -> Result<HandshakeProvider> {
    HandshakeProvider::ALL
        .iter()
        .copied()
        .find(|p| p.as_str() == text)
        .ok_or_else(|| {
            let names: Vec<&str> = HandshakeProvider::ALL.iter().map(|p| p.as_str()).collect();
            anyhow!(
                "{key}.provider: unknown provider {text:?} (expected one of: {})",
                names.join(", ")
            )
        })
}

/// A token or secret from the config, resolved and non-empty.
fn resolved(
    key: &str,
    text: &str,
    resolve: &dyn Fn(&str, &str) -> Result<String>,
) -> Result<Secret> {
    let value = resolve(key, text)?;
    if value.is_empty() {
        bail!("{key}: the value is empty");
    }
    Ok(Secret(value.into_bytes()))
}

impl Handshake {
    /// Checks the source's `handshake` setting and resolves its secrets.
    /// `key` names the source (e.g. "sources.slack"); errors name the key
    /// at fault. Without a setting, a source verified with `slack` answers
    /// Slack's handshake and one verified with `zoom` Zoom's (keyed with
    /// the verify secret): those providers will not deliver otherwise.
    pub fn from_config(
        key: &str,
        raw: Option<&toml::Value>,
        verify: Option<&RawVerify>,
        resolve: &dyn Fn(&str, &str) -> Result<String>,
    ) -> Result<Option<Handshake>> {
        let key = format!("{key}.handshake");
        let raw = raw
            .map(|v| RawHandshakeSetting::from_value(&key, v))
            .transpose()?;
        let raw = raw.as_ref();
        let scheme = verify.map(|v| v.scheme.as_str());
        let table = match raw {
            Some(RawHandshakeSetting::Enabled(false)) => return Ok(None),
            Some(RawHandshakeSetting::Enabled(true)) => bail!(
                "{key}: name the provider, e.g. handshake = {{ provider = \"meta\", verify_token = \"env:META_VERIFY_TOKEN\" }}"
            ),
            Some(RawHandshakeSetting::Table(t)) => t,
            None => {
                return Ok(match scheme {
                    Some("slack") => Some(Handshake { kind: Kind::Slack }),
                    Some("zoom") => {
                        let verify = verify.expect("a scheme comes from a verify table");
                        first_secret(&format!("{key}.verify"), verify, resolve)?
                            .filter(|s| !s.is_empty())
                            .map(|s| Handshake {
                                kind: Kind::Zoom {
                                    secret: Secret(s.into_bytes()),
                                },
                            })
                    }
                    _ => None,
                });
            }
        };
        let provider = provider_named(&key, &table.provider)?;
        let uses = |field: &str| match field {
            "verify_token" => provider == HandshakeProvider::Meta,
            _ => matches!(
                provider,
                HandshakeProvider::Zoom | HandshakeProvider::Twitter
            ),
        };
        for (field, set) in [
            ("verify_token", table.verify_token.is_some()),
            ("secret", table.secret.is_some()),
        ] {
            if set && !uses(field) {
                let users = if field == "verify_token" {
                    "meta"
                } else {
                    "zoom, twitter"
                };
                bail!("{key}.{field}: not used by provider \"{provider}\" (only by {users})");
            }
        }
        let kind = match provider {
            HandshakeProvider::Slack => Kind::Slack,
            HandshakeProvider::Graph => Kind::Graph,
            HandshakeProvider::Dropbox => Kind::Dropbox,
            HandshakeProvider::Meta => {
                let text = table.verify_token.as_deref().ok_or_else(|| {
                    anyhow!(
                        "{key}.verify_token: the meta handshake needs the Verify Token set in \
                         the App Dashboard, e.g. verify_token = \"env:META_VERIFY_TOKEN\""
                    )
                })?;
                Kind::Meta {
                    verify_token: resolved(&format!("{key}.verify_token"), text, resolve)?,
                }
            }
            HandshakeProvider::Zoom => {
                let secret = match (&table.secret, verify) {
                    (Some(text), _) => resolved(&format!("{key}.secret"), text, resolve)?,
                    (None, Some(v)) if v.scheme == "zoom" => {
                        match first_secret(&format!("{key}.verify"), v, resolve)? {
                            Some(s) if !s.is_empty() => Secret(s.into_bytes()),
                            _ => bail!("{key}.secret: the zoom verify table has no secret"),
                        }
                    }
                    (None, _) => bail!(
                        "{key}.secret: the zoom handshake needs the app's Secret Token \
                         (or a zoom verify table to take it from), e.g. secret = \"env:ZOOM_SECRET_TOKEN\""
                    ),
                };
                Kind::Zoom { secret }
            }
            HandshakeProvider::Twitter => {
                let text = table.secret.as_deref().ok_or_else(|| {
                    anyhow!(
                        "{key}.secret: the twitter handshake needs the app's consumer secret, \
                         e.g. secret = \"env:X_CONSUMER_SECRET\""
                    )
                })?;
                Kind::Twitter {
                    secret: resolved(&format!("{key}.secret"), text, resolve)?,
                }
            }
        };
        Ok(Some(Handshake { kind }))
    }

    pub fn provider(&self) -> HandshakeProvider {
        match self.kind {
            Kind::Slack => HandshakeProvider::Slack,
            Kind::Meta { .. } => HandshakeProvider::Meta,
            Kind::Graph => HandshakeProvider::Graph,
            Kind::Zoom { .. } => HandshakeProvider::Zoom,
            Kind::Twitter { .. } => HandshakeProvider::Twitter,
            Kind::Dropbox => HandshakeProvider::Dropbox,
        }
    }

    /// Whether the source answers GET (every other source refuses it 405).
    pub fn answers_get(&self) -> bool {
        matches!(
            self.kind,
            Kind::Meta { .. } | Kind::Twitter { .. } | Kind::Dropbox
        )
    }

    /// A GET: the whole request is the handshake. `query` is the raw query
    /// string.
    pub fn on_get(&self, query: &str) -> Result<Answer, Refusal> {
        match &self.kind {
            Kind::Meta { verify_token } => providers::meta(query, &verify_token.0),
            Kind::Twitter { secret } => providers::twitter(query, &secret.0),
            Kind::Dropbox => providers::dropbox(query),
            Kind::Slack | Kind::Graph | Kind::Zoom { .. } => Err(Refusal::Invalid(
                "this source answers no GET handshake".to_string(),
            )),
        }
    }

    /// A POST, before its verification: Microsoft Graph's validation is not
    /// signed (its notifications carry no signature either). `None`: not a
    /// handshake, go on.
    pub fn before_verify(&self, query: &str) -> Option<Result<Answer, Refusal>> {
        match self.kind {
            Kind::Graph => providers::graph(query),
            _ => None,
        }
    }

    /// A POST whose signature (if the source verifies) has been checked:
    /// Slack's and Zoom's challenges are signed like their events.
    /// `None`: an ordinary event.
    pub fn after_verify(&self, body: &[u8]) -> Option<Result<Answer, Refusal>> {
        match &self.kind {
            Kind::Slack => providers::slack(body),
            Kind::Zoom { secret } => providers::zoom(body, &secret.0),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
