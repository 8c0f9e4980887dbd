//! Signing a body exactly as a provider would, for `hookyard send` and for
//! tests. It goes through the same config checks and the same code as
//! verification, so whatever it signs, a matching source accepts.

use anyhow::{Result, bail};

use super::{RawVerify, Verifier};

/// Scheme settings for [`sign_as`], as the `verify` table would give them.
#[derive(Debug, Clone, Default)]
pub struct SignOptions {
    /// hmac: the signature header; token: the header carrying the token.
    pub header: Option<String>,
    /// hmac: sha256 (default) | sha1 | sha512.
    pub algorithm: Option<String>,
    /// hmac: hex (default) | base64.
    pub encoding: Option<String>,
    /// hmac: text before the encoded signature, e.g. "sha256=".
    pub prefix: Option<String>,
    /// basic: the user name, the secret being the password.
    pub username: Option<String>,
    /// The delivery id: signed by standard-webhooks (a fresh `msg_...` when
    /// unset); sent as `x-github-delivery` / `x-shopify-webhook-id` when set.
    pub msg_id: Option<String>,
}

/// Signs `body` as the provider of `scheme` does and returns the headers to
/// add, e.g. `[("x-hub-signature-256", "sha256=…")]`; for basic and token,
/// the header carrying the credentials. `secret` is as the user typed it
/// (`whsec_...` for standard-webhooks; "env:NAME" is resolved). Errors say
/// which option is wrong, under the key "sign".
pub fn sign_as(
    scheme: &str,
    secret: &str,
    body: &[u8],
    now_unix: i64,
    opts: &SignOptions,
) -> Result<Vec<(String, String)>> {
    if scheme == "token" && opts.header.is_none() {
        bail!(
            "sign.header: the token scheme needs the header to carry the token \
             (a query-parameter token belongs in the URL instead)"
        );
    }
    let raw = RawVerify {
        scheme: scheme.to_string(),
        secret: Some(secret.to_string()),
        secrets: None,
        tolerance: None,
        header: opts.header.clone(),
        query: None,
        algorithm: opts.algorithm.clone(),
        encoding: opts.encoding.clone(),
        prefix: opts.prefix.clone(),
        username: opts.username.clone(),
    };
    let verifier = Verifier::from_config("sign", &raw, &crate::config::resolve_secret_text)?;
    Ok(verifier.sign(body, now_unix, opts.msg_id.as_deref()))
}
