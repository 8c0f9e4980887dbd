//! Inbound verification: proving a webhook came from its provider before it
//! is stored, so that anyone who learns a hook URL cannot inject events.
//!
//! Providers sign in a handful of ways, so each family has its own file and
//! this one holds what they share: the config as written ([`RawVerify`]), the
//! checked [`Verifier`] built from it, and the [`Rejection`] a failed check
//! answers with. Secret-derived bytes are only ever compared in constant
//! time, and no secret is ever printed: not by `Debug`, not in a config
//! error, not in a rejection.

mod auth;
mod hmac_schemes;
mod sign;
mod standard_webhooks;
mod stripe;
mod v0_hmac;

use std::fmt;

use anyhow::{Result, anyhow, bail};
use axum::http::HeaderMap;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use serde::Deserialize;
use subtle::{Choice, ConstantTimeEq};

use crate::telemetry::RejectReason;

pub use sign::{SignOptions, sign_as};

use auth::{Basic, Token};
use hmac_schemes::BodyHmac;
use standard_webhooks::StandardWebhooks;
use stripe::Stripe;
use v0_hmac::V0Hmac;

/// The schemes a source can name, in the order error messages list them.
pub const SCHEMES: &[&str] = &[
    "github",
    "stripe",
    "standard-webhooks",
    "shopify",
    "slack",
    "hmac",
    "basic",
    "token",
    "meta",
    "zoom",
];

/// Replay window when the config names none: what Stripe, Slack and the
/// Standard Webhooks libraries all default to.
const DEFAULT_TOLERANCE: &str = "5m";

/// As written in the config: `verify = { scheme = "...", ... }` on a source.
/// Its `Debug` shows "env:NAME" references but not literal secrets.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawVerify {
    /// github | stripe | standard-webhooks | shopify | slack | hmac | basic |
    /// token | meta | zoom
    pub scheme: String,
    /// One secret ...
    pub secret: Option<String>,
    /// ... or several, any of which may match (rotation); each may be "env:NAME".
    pub secrets: Option<Vec<String>>,
    /// Replay window for timestamped schemes (humantime, default "5m").
    pub tolerance: Option<String>,
    /// hmac: the signature header; token: the header carrying the token.
    pub header: Option<String>,
    /// token: the query parameter carrying the token (instead of a header).
    pub query: Option<String>,
    /// hmac: sha256 (default) | sha1 | sha512.
    pub algorithm: Option<String>,
    /// hmac: hex (default) | base64.
    pub encoding: Option<String>,
    /// hmac: text before the encoded signature, e.g. "sha256=".
    pub prefix: Option<String>,
    /// basic: the user name, with the secret(s) as passwords; without it each
    /// secret is "user:pass".
    pub username: Option<String>,
}

/// A secret as written in the config, as `Debug` may show it: an
/// `env:NAME` reference as it is, a literal never.
pub(crate) fn shown_secret(s: &str) -> String {
    if s.starts_with("env:") {
        s.to_string()
    } else {
        "<redacted>".to_string()
    }
}

impl fmt::Debug for RawVerify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawVerify")
            .field("scheme", &self.scheme)
            .field("secret", &self.secret.as_deref().map(shown_secret))
            .field(
                "secrets",
                &self
                    .secrets
                    .as_ref()
                    .map(|l| l.iter().map(|s| shown_secret(s)).collect::<Vec<_>>()),
            )
            .field("tolerance", &self.tolerance)
            .field("header", &self.header)
            .field("query", &self.query)
            .field("algorithm", &self.algorithm)
            .field("encoding", &self.encoding)
            .field("prefix", &self.prefix)
            .field("username", &self.username)
            .finish()
    }
}

/// A checked verification rule for one source. `Debug` shows the scheme and
/// its settings but never a secret.
#[derive(Clone, Debug)]
pub struct Verifier {
    scheme: &'static str,
    check: Check,
}

#[derive(Clone, Debug)]
enum Check {
    /// github, meta, shopify and the generic hmac: one MAC of the body in
    /// one header.
    BodyHmac(BodyHmac),
    Stripe(Stripe),
    StandardWebhooks(StandardWebhooks),
    /// slack and zoom: a MAC of "v0:<ts>:<body>".
    V0Hmac(V0Hmac),
    Basic(Basic),
    Token(Token),
}

/// What a verifier looks at. `query` is the raw query string (without `?`),
/// `body` the exact bytes received: providers sign bytes, not parsed JSON.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    pub headers: &'a HeaderMap,
    pub query: &'a str,
    pub body: &'a [u8],
    pub now_unix: i64,
}

/// Why a request was refused. The variants carry header names and
/// descriptions of what was wrong, never a received or configured secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// A required header is absent or empty: its lowercase name, or
    /// "query parameter NAME" for a token expected in the query string.
    MissingHeader(String),
    /// Something present could not be parsed; a sentence saying what.
    BadFormat(String),
    /// The signed timestamp is older than the tolerance allows.
    StaleTimestamp,
    /// The signed timestamp is further ahead than the tolerance allows.
    FutureTimestamp,
    /// Well-formed, but no configured secret produces this signature or
    /// these credentials.
    Mismatch,
}

/// How [`Rejection::MissingHeader`] names a query parameter rather than a header.
const QUERY_PARAMETER: &str = "query parameter ";

impl Rejection {
    /// The reason counted and answered (its text is the error `code`,
    /// stable for scripts).
    pub fn reason(&self) -> RejectReason {
        match self {
            Rejection::MissingHeader(_) => RejectReason::MissingHeader,
            Rejection::BadFormat(_) => RejectReason::BadFormat,
            Rejection::StaleTimestamp => RejectReason::StaleTimestamp,
            Rejection::FutureTimestamp => RejectReason::FutureTimestamp,
            Rejection::Mismatch => RejectReason::SignatureMismatch,
        }
    }

    /// A sentence for people reading a 401 or a log line.
    pub fn message(&self) -> String {
        match self {
            Rejection::MissingHeader(what) if what.starts_with(QUERY_PARAMETER) => {
                format!("the request has no {what}")
            }
            Rejection::MissingHeader(name) => format!("the request has no {name} header"),
            Rejection::BadFormat(what) => what.clone(),
            Rejection::StaleTimestamp => "the signed timestamp is older than the allowed \
                tolerance (a replayed request, or a clock out of sync)"
                .to_string(),
            Rejection::FutureTimestamp => "the signed timestamp is further in the future than \
                the allowed tolerance (a clock out of sync)"
                .to_string(),
            Rejection::Mismatch => "the signature or credentials match none of the configured \
                secrets"
                .to_string(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for Rejection {}

impl Verifier {
    /// Checks the config and resolves its secrets. `key` is the config key for
    /// error messages, e.g. "sources.github.verify"; `resolve(key, text)`
    /// turns "env:NAME" into the value.
    pub fn from_config(
        key: &str,
        raw: &RawVerify,
        resolve: &dyn Fn(&str, &str) -> Result<String>,
    ) -> Result<Verifier> {
        let scheme = SCHEMES
            .iter()
            .copied()
            .find(|s| *s == raw.scheme)
            .ok_or_else(|| {
                anyhow!(
                    "{key}.scheme: unknown scheme {:?} (expected one of: {})",
                    raw.scheme,
                    SCHEMES.join(", ")
                )
            })?;
        reject_unused_fields(key, scheme, raw)?;
        let secrets = resolve_secrets(key, raw, resolve)?;
        let check = match scheme {
            // Meta signs exactly as GitHub does (`X-Hub-Signature-256`).
            "github" | "meta" => Check::BodyHmac(BodyHmac::hub_signature_256(plain_keys(secrets))),
            "shopify" => Check::BodyHmac(BodyHmac::shopify(plain_keys(secrets))),
            "hmac" => Check::BodyHmac(BodyHmac::generic(key, raw, plain_keys(secrets))?),
            "stripe" => Check::Stripe(Stripe::new(plain_keys(secrets), tolerance(key, raw)?)),
            "standard-webhooks" => Check::StandardWebhooks(StandardWebhooks::new(
                standard_webhooks::decode_keys(&secrets)?,
                tolerance(key, raw)?,
            )),
            "slack" => Check::V0Hmac(V0Hmac::new(
                &v0_hmac::SLACK,
                plain_keys(secrets),
                tolerance(key, raw)?,
            )),
            "zoom" => Check::V0Hmac(V0Hmac::new(
                &v0_hmac::ZOOM,
                plain_keys(secrets),
                tolerance(key, raw)?,
            )),
            "basic" => Check::Basic(Basic::from_config(key, raw, &secrets)?),
            "token" => Check::Token(Token::from_config(key, raw, plain_keys(secrets))?),
            _ => unreachable!("every name in SCHEMES has a case"),
        };
        Ok(Verifier { scheme, check })
    }

    /// Headers and the query parameter that carry a credential itself (not
    /// a signature): they are redacted from the stored event, so the admin
    /// API and plugins never see a password or token.
    pub fn credentials(&self) -> (Vec<String>, Option<&str>) {
        match &self.check {
            Check::Basic(_) => (vec!["authorization".to_string()], None),
            Check::Token(t) => (
                t.header().map(str::to_string).into_iter().collect(),
                t.query_param(),
            ),
            _ => (vec![], None),
        }
    }

    /// The scheme's name as written in the config.
    pub fn scheme(&self) -> &str {
        self.scheme
    }

    /// The header that conventionally carries the provider's delivery id, for
    /// the default idempotency key. Stripe and Slack put theirs in the body.
    pub fn default_idempotency_header(&self) -> Option<&'static str> {
        match self.scheme {
            "github" => Some("x-github-delivery"),
            "standard-webhooks" => Some("webhook-id"),
            "shopify" => Some("x-shopify-webhook-id"),
            _ => None,
        }
    }

    /// Lowercase names of the headers that carry secrets or signatures, to
    /// redact in debug output. A token carried in the query string is not a
    /// header and is not listed.
    pub fn sensitive_headers(&self) -> Vec<String> {
        let names: Vec<&str> = match &self.check {
            Check::BodyHmac(h) if matches!(self.scheme, "github" | "meta") => {
                // GitHub and Meta also send the legacy SHA-1 signature.
                vec![h.header(), "x-hub-signature"]
            }
            Check::BodyHmac(h) => vec![h.header()],
            Check::Stripe(_) => vec![stripe::HEADER],
            Check::StandardWebhooks(_) => vec![standard_webhooks::SIGNATURE],
            Check::V0Hmac(v) => vec![v.signature_header()],
            Check::Basic(_) => vec![auth::AUTHORIZATION],
            Check::Token(t) => t.header().into_iter().collect(),
        };
        names.into_iter().map(str::to_string).collect()
    }

    /// Accepts the request if it carries a valid signature (or credentials)
    /// for any configured secret and, for timestamped schemes, a timestamp
    /// within the tolerance.
    pub fn verify(&self, req: &Request<'_>) -> Result<(), Rejection> {
        match &self.check {
            Check::BodyHmac(h) => h.verify(req),
            Check::Stripe(s) => s.verify(req),
            Check::StandardWebhooks(s) => s.verify(req),
            Check::V0Hmac(v) => v.verify(req),
            Check::Basic(b) => b.verify(req),
            Check::Token(t) => t.verify(req),
        }
    }

    /// The headers a provider would send for `body`, signed with the first
    /// secret. `msg_id` is the delivery id: signed by standard-webhooks (a
    /// fresh one when `None`), sent in the id header by github and shopify.
    fn sign(&self, body: &[u8], now_unix: i64, msg_id: Option<&str>) -> Vec<(String, String)> {
        let mut headers = match &self.check {
            Check::BodyHmac(h) => vec![h.sign(body)],
            Check::Stripe(s) => vec![s.sign(body, now_unix)],
            Check::StandardWebhooks(s) => {
                let id = msg_id.map_or_else(|| crate::model::id::new_id("msg"), str::to_string);
                s.sign(&id, body, now_unix)
            }
            Check::V0Hmac(v) => v.sign(body, now_unix),
            Check::Basic(b) => vec![b.sign()],
            Check::Token(t) => t.sign().into_iter().collect(),
        };
        if let (Some(name), Some(id)) = (self.default_idempotency_header(), msg_id)
            && !headers.iter().any(|(h, _)| h == name)
        {
            headers.push((name.to_string(), id.to_string()));
        }
        headers
    }
}

// ---- shared with the handshakes ----------------------------------------------

/// HMAC-SHA256 of `message`: Zoom's and X's handshakes prove the secret the
/// way their signatures do, so they use the same primitive.
pub(crate) fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    hmac_schemes::Algorithm::Sha256.mac(key, &[message])
}

/// Lowercase hex, as the providers write MACs.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    hex_encode(bytes)
}

/// Constant-time equality, for configured tokens a sender presents.
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    any_equal(&[a], &[b])
}

/// The first secret of a `verify` table (`secret`, or `secrets[0]`: the
/// current one during a rotation), resolved, for a handshake keyed with
/// the same secret as the signatures.
pub(crate) fn first_secret(
    key: &str,
    raw: &RawVerify,
    resolve: &dyn Fn(&str, &str) -> Result<String>,
) -> Result<Option<String>> {
    let (item_key, text) = match (&raw.secret, raw.secrets.as_deref()) {
        (Some(one), _) => (format!("{key}.secret"), one),
        (None, Some([first, ..])) => (format!("{key}.secrets[0]"), first),
        _ => return Ok(None),
    };
    resolve(&item_key, text).map(Some)
}

// ---- config helpers ---------------------------------------------------------

/// A secret, or a key derived from one. Its `Debug` is redacted so that a
/// `{:?}` of a config or verifier cannot leak it into a log.
#[derive(Clone)]
pub(super) struct Secret(Vec<u8>);

impl Secret {
    fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        Secret(bytes.into())
    }

    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A resolved secret with the key it came from, for scheme-specific errors
/// (e.g. "sources.x.verify.secrets[1]: ...").
struct Configured {
    key: String,
    value: String,
}

fn plain_keys(secrets: Vec<Configured>) -> Vec<Secret> {
    secrets
        .into_iter()
        .map(|s| Secret::new(s.value.into_bytes()))
        .collect()
}

/// The optional fields each scheme reads. Anything else set on a scheme is
/// an error rather than silently ignored: `header` on a github source is a
/// misunderstanding worth hearing about at start.
fn fields_used_by(scheme: &str) -> &'static [&'static str] {
    match scheme {
        "stripe" | "standard-webhooks" | "slack" | "zoom" => &["tolerance"],
        "hmac" => &["header", "algorithm", "encoding", "prefix"],
        "basic" => &["username"],
        "token" => &["header", "query"],
        _ => &[],
    }
}

fn reject_unused_fields(key: &str, scheme: &str, raw: &RawVerify) -> Result<()> {
    let set = [
        ("tolerance", raw.tolerance.is_some()),
        ("header", raw.header.is_some()),
        ("query", raw.query.is_some()),
        ("algorithm", raw.algorithm.is_some()),
        ("encoding", raw.encoding.is_some()),
        ("prefix", raw.prefix.is_some()),
        ("username", raw.username.is_some()),
    ];
    let used = fields_used_by(scheme);
    for (field, present) in set {
        if present && !used.contains(&field) {
            let users: Vec<&str> = SCHEMES
                .iter()
                .copied()
                .filter(|s| fields_used_by(s).contains(&field))
                .collect();
            bail!(
                "{key}.{field}: not used by scheme {scheme:?} (only by {})",
                users.join(", ")
            );
        }
    }
    Ok(())
}

/// `secret` or `secrets`, resolved, each non-empty. Errors name the entry but
/// never show its value.
fn resolve_secrets(
    key: &str,
    raw: &RawVerify,
    resolve: &dyn Fn(&str, &str) -> Result<String>,
) -> Result<Vec<Configured>> {
    let written: Vec<(String, &str)> = match (&raw.secret, &raw.secrets) {
        (Some(_), Some(_)) => {
            bail!("{key}: set either secret or secrets, not both")
        }
        (None, None) => bail!(
            "{key}: no secret; set secret = \"...\" (or secrets = [...] to accept several \
             during a rotation)"
        ),
        (Some(one), None) => vec![(format!("{key}.secret"), one.as_str())],
        (None, Some(list)) if list.is_empty() => {
            bail!("{key}.secrets: the list is empty; give at least one secret")
        }
        (None, Some(list)) => list
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("{key}.secrets[{i}]"), s.as_str()))
            .collect(),
    };
    written
        .into_iter()
        .map(|(item_key, text)| {
            let value = resolve(&item_key, text)?;
            if value.is_empty() {
                // An empty secret would make an empty token or password valid.
                bail!("{item_key}: the secret is empty");
            }
            Ok(Configured {
                key: item_key,
                value,
            })
        })
        .collect()
}

/// The replay window in whole seconds.
fn tolerance(key: &str, raw: &RawVerify) -> Result<i64> {
    let text = raw.tolerance.as_deref().unwrap_or(DEFAULT_TOLERANCE);
    let d = crate::config::parse_duration(&format!("{key}.tolerance"), text)?;
    if d.as_secs() == 0 {
        bail!("{key}.tolerance: {text:?} is too short; use at least \"1s\"");
    }
    Ok(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A header name from the config, lowercased and checked.
fn header_name(key: &str, text: &str) -> Result<String> {
    let lower = text.trim().to_ascii_lowercase();
    axum::http::HeaderName::from_bytes(lower.as_bytes())
        .map_err(|_| anyhow!("{key}: {text:?} is not a valid header name"))?;
    Ok(lower)
}

// ---- request helpers --------------------------------------------------------

/// The one value of a required header, trimmed. Absent or empty is missing;
/// a repeated signature header is refused rather than guessing which counts.
fn header<'a>(req: &Request<'a>, name: &str) -> Result<&'a str, Rejection> {
    let headers: &'a HeaderMap = req.headers;
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Err(Rejection::MissingHeader(name.to_string()));
    };
    if values.next().is_some() {
        return Err(Rejection::BadFormat(format!(
            "header {name} appears more than once"
        )));
    }
    let text = first
        .to_str()
        .map_err(|_| Rejection::BadFormat(format!("header {name} is not printable ASCII")))?
        .trim();
    if text.is_empty() {
        return Err(Rejection::MissingHeader(name.to_string()));
    }
    Ok(text)
}

/// A Unix timestamp in seconds, as providers send it: plain digits.
fn timestamp(what: &str, text: &str) -> Result<i64, Rejection> {
    let bad = || Rejection::BadFormat(format!("{what} is not a Unix timestamp in seconds"));
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    text.parse::<i64>().map_err(|_| bad())
}

/// Refuses a timestamp further than `tolerance` seconds from now, either way.
fn check_age(ts: i64, now: i64, tolerance: i64) -> Result<(), Rejection> {
    // i128: neither an attacker's timestamp nor a test's clock can overflow.
    let age = i128::from(now) - i128::from(ts);
    if age > i128::from(tolerance) {
        Err(Rejection::StaleTimestamp)
    } else if -age > i128::from(tolerance) {
        Err(Rejection::FutureTimestamp)
    } else {
        Ok(())
    }
}

/// Whether any expected value equals any given one. Every pair is compared in
/// constant time and without stopping early, so timing reveals neither how
/// many bytes matched nor which secret did.
fn any_equal<E: AsRef<[u8]>, G: AsRef<[u8]>>(expected: &[E], given: &[G]) -> bool {
    let mut hit = Choice::from(0);
    for e in expected {
        for g in given {
            hit |= e.as_ref().ct_eq(g.as_ref());
        }
    }
    hit.into()
}

/// Standard base64 that accepts a missing `=` padding: some senders strip it.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// Hex in either case; `None` for empty text, odd lengths or other characters.
fn hex_decode(text: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if bytes.is_empty() || !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests;
