//! Standard Webhooks (<https://www.standardwebhooks.com>), the scheme of
//! Svix and the providers built on it, and the one hookyard signs its own
//! deliveries with: `webhook-id`, `webhook-timestamp` and
//! `webhook-signature: v1,<base64> [v1,<base64> ...]`, each an HMAC-SHA256
//! of `"<id>.<timestamp>.<body>"` keyed with the secret's decoded bytes.
//!
//! Deliveries, inbound verification and `hookyard sink` all read secrets
//! with [`Secret::parse`] and sign with [`sign`], so a secret one side
//! accepts the others accept, and a signature one makes the others check.

use std::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

pub const ID: &str = "webhook-id";
pub const TIMESTAMP: &str = "webhook-timestamp";
pub const SIGNATURE: &str = "webhook-signature";

/// What every secret starts with.
pub const PREFIX: &str = "whsec_";

/// The shortest key accepted. The specification asks for 24 to 64 bytes
/// and providers generate 24 or more; 16 (128 bits) is the floor below
/// which an HMAC key is guessable, and a shorter one is a typo or a
/// placeholder, not a key.
pub const MIN_KEY_BYTES: usize = 16;

/// Standard base64; the `=` padding may be left off (some tools strip it).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A decoded signing key. Its `Debug` is redacted, so a `{:?}` of a config
/// or a verifier cannot leak it into a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

/// Why a secret's text was refused. Never carries the text itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("expected a Standard Webhooks secret \"whsec_<base64>\"")]
    NoPrefix,
    #[error("the part after \"whsec_\" is not valid base64")]
    NotBase64,
    #[error("the part after \"whsec_\" is empty")]
    Empty,
    #[error("secret is too short ({0} bytes; use at least {MIN_KEY_BYTES})")]
    TooShort(usize),
}

impl Secret {
    /// The one rule, for targets, sources and the sink alike: `whsec_`
    /// followed by the key in standard base64 (padding optional), the key
    /// at least [`MIN_KEY_BYTES`] long. Whitespace around it is ignored
    /// (it comes from config files and environment variables).
    pub fn parse(text: &str) -> Result<Secret, SecretError> {
        let b64 = text
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(SecretError::NoPrefix)?;
        let key = BASE64.decode(b64).map_err(|_| SecretError::NotBase64)?;
        match key.len() {
            0 => Err(SecretError::Empty),
            n if n < MIN_KEY_BYTES => Err(SecretError::TooShort(n)),
            _ => Ok(Secret(key)),
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The raw HMAC of one message.
fn mac(secret: &Secret, id: &str, timestamp: u64, body: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.bytes()).expect("HMAC takes any key");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// The `v1,<base64>` signature of one message.
pub fn sign(secret: &Secret, id: &str, timestamp: u64, body: &[u8]) -> String {
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac(secret, id, timestamp, body))
    )
}

/// Why a `webhook-signature` header does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// No `v1,` entry at all (entries of other versions, such as `v1a`,
    /// are skipped, as the specification asks).
    #[error("webhook-signature has no v1 signature")]
    NoSignature,
    /// `v1,` entries, none of them base64.
    #[error("webhook-signature has no v1 signature in base64")]
    NotBase64,
    /// Well-formed, but no secret makes any of its signatures.
    #[error("the signature matches none of the secrets")]
    Mismatch,
}

/// The v1 signatures in a `webhook-signature` header value.
pub fn signatures(header: &str) -> Result<Vec<Vec<u8>>, VerifyError> {
    let mut saw_v1 = false;
    let mut found = Vec::new();
    for entry in header.split_ascii_whitespace() {
        if let Some(("v1", sig)) = entry.split_once(',') {
            saw_v1 = true;
            found.extend(BASE64.decode(sig).ok().filter(|b| !b.is_empty()));
        }
    }
    match (found.is_empty(), saw_v1) {
        (false, _) => Ok(found),
        (true, true) => Err(VerifyError::NotBase64),
        (true, false) => Err(VerifyError::NoSignature),
    }
}

/// Accepts the message when any v1 signature in `header` is one of
/// `secrets`' (several during a rotation). Every pair is compared in
/// constant time and without stopping early, so timing reveals neither
/// how much matched nor which secret did. The timestamp's age is the
/// caller's to judge.
pub fn verify(
    secrets: &[Secret],
    id: &str,
    timestamp: u64,
    body: &[u8],
    header: &str,
) -> Result<(), VerifyError> {
    let given = signatures(header)?;
    let mut hit = Choice::from(0);
    for secret in secrets {
        let expected = mac(secret, id, timestamp, body);
        for g in &given {
            hit |= expected.ct_eq(g);
        }
    }
    if bool::from(hit) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID_: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: u64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    /// The example from the Standard Webhooks specification, as its
    /// reference libraries assert it.
    #[test]
    fn matches_the_spec_vector() {
        let secret = [Secret::parse(SECRET).unwrap()];
        assert_eq!(sign(&secret[0], ID_, TS, BODY), SIG);
        assert_eq!(verify(&secret, ID_, TS, BODY, SIG), Ok(()));
        assert_eq!(
            verify(&secret, "msg_other", TS, BODY, SIG),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn one_rule_for_secrets() {
        assert!(Secret::parse(&format!("  {SECRET}\n")).is_ok());
        // Padding is optional: 17 bytes, written with and without it.
        let padded = format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode([7; 17])
        );
        assert!(padded.ends_with('='));
        assert!(Secret::parse(&padded).is_ok());
        assert!(Secret::parse(padded.trim_end_matches('=')).is_ok());
        assert_eq!(
            Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(SecretError::NoPrefix)
        );
        assert_eq!(
            Secret::parse("whsec_not*base64"),
            Err(SecretError::NotBase64)
        );
        assert_eq!(Secret::parse("whsec_"), Err(SecretError::Empty));
        // base64 of "secret": 6 bytes.
        assert_eq!(
            Secret::parse("whsec_c2VjcmV0"),
            Err(SecretError::TooShort(6))
        );
        let e = Secret::parse("whsec_c2VjcmV0").unwrap_err().to_string();
        assert!(e.contains("use at least 16"), "{e}");
        assert!(!format!("{:?}", Secret::parse(SECRET).unwrap()).contains("MfKQ"));
    }

    #[test]
    fn any_v1_entry_may_match_and_others_are_skipped() {
        let secret = [Secret::parse(SECRET).unwrap()];
        let list = format!("v1a,abcdef v2,{} v1,AAAA {SIG}  v1,!!!", &SIG[3..]);
        assert_eq!(verify(&secret, ID_, TS, BODY, &list), Ok(()));
        assert_eq!(
            verify(&secret, ID_, TS, BODY, "v1a,abcdef"),
            Err(VerifyError::NoSignature)
        );
        assert_eq!(
            verify(&secret, ID_, TS, BODY, "v1,not base64!"),
            Err(VerifyError::NotBase64)
        );
    }
}
