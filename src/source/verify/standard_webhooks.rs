//! Standard Webhooks (<https://www.standardwebhooks.com>), used by Svix and
//! the providers built on it: `webhook-id`, `webhook-timestamp` and
//! `webhook-signature: v1,<base64> [v1,<base64> ...]`, each an HMAC-SHA256 of
//! `"<id>.<timestamp>.<body>"` keyed with the base64-decoded part of the
//! `whsec_` secret. Entries of other versions (such as `v1a`, asymmetric)
//! are skipped, as the specification asks.

use anyhow::{Result, anyhow, bail};
use base64::Engine as _;

use super::hmac_schemes::Algorithm;
use super::{
    BASE64, Configured, Rejection, Request, Secret, any_equal, check_age, header, timestamp,
};

pub(super) const ID: &str = "webhook-id";
pub(super) const TIMESTAMP: &str = "webhook-timestamp";
pub(super) const SIGNATURE: &str = "webhook-signature";

#[derive(Clone, Debug)]
pub(super) struct StandardWebhooks {
    /// Decoded keys.
    keys: Vec<Secret>,
    tolerance: i64,
}

/// Decodes `whsec_<base64>` secrets; errors name the entry, not its value.
pub(super) fn decode_keys(secrets: &[Configured]) -> Result<Vec<Secret>> {
    secrets
        .iter()
        .map(|s| {
            let b64 = s.value.trim().strip_prefix("whsec_").ok_or_else(|| {
                anyhow!(
                    "{}: expected a Standard Webhooks secret \"whsec_<base64>\"",
                    s.key
                )
            })?;
            let key = BASE64
                .decode(b64)
                .map_err(|_| anyhow!("{}: the part after \"whsec_\" is not valid base64", s.key))?;
            if key.is_empty() {
                bail!("{}: the part after \"whsec_\" is empty", s.key);
            }
            Ok(Secret::new(key))
        })
        .collect()
}

/// The v1 signatures in a `webhook-signature` header. Entries that are not
/// `v1,<base64>` are skipped; none left is malformed.
pub(super) fn parse_signatures(value: &str) -> Result<Vec<Vec<u8>>, Rejection> {
    let mut saw_v1 = false;
    let mut found = Vec::new();
    for entry in value.split_ascii_whitespace() {
        if let Some(("v1", sig)) = entry.split_once(',') {
            saw_v1 = true;
            found.extend(BASE64.decode(sig).ok().filter(|b| !b.is_empty()));
        }
    }
    if found.is_empty() {
        return Err(Rejection::BadFormat(if saw_v1 {
            "webhook-signature has no v1 signature in base64".to_string()
        } else {
            "webhook-signature has no v1 signature".to_string()
        }));
    }
    Ok(found)
}

impl StandardWebhooks {
    pub(super) fn new(keys: Vec<Secret>, tolerance: i64) -> StandardWebhooks {
        StandardWebhooks { keys, tolerance }
    }

    /// Signature first, then the clock, so that a stale or future rejection
    /// only ever concerns a genuine request.
    pub(super) fn verify(&self, req: &Request<'_>) -> Result<(), Rejection> {
        let id = header(req, ID)?;
        let ts = timestamp("header webhook-timestamp", header(req, TIMESTAMP)?)?;
        let given = parse_signatures(header(req, SIGNATURE)?)?;
        let ts_text = ts.to_string();
        let expected: Vec<Vec<u8>> = self
            .keys
            .iter()
            .map(|k| mac(k, id, &ts_text, req.body))
            .collect();
        if !any_equal(&expected, &given) {
            return Err(Rejection::Mismatch);
        }
        check_age(ts, req.now_unix, self.tolerance)
    }

    pub(super) fn sign(&self, id: &str, body: &[u8], now_unix: i64) -> Vec<(String, String)> {
        let ts = now_unix.to_string();
        let sig = BASE64.encode(mac(&self.keys[0], id, &ts, body));
        vec![
            (ID.to_string(), id.to_string()),
            (TIMESTAMP.to_string(), ts),
            (SIGNATURE.to_string(), format!("v1,{sig}")),
        ]
    }
}

fn mac(key: &Secret, id: &str, ts: &str, body: &[u8]) -> Vec<u8> {
    Algorithm::Sha256.mac(
        key.bytes(),
        &[id.as_bytes(), b".", ts.as_bytes(), b".", body],
    )
}

#[cfg(test)]
mod tests {
    use super::super::tests::{check, headers, verifier};
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID_: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    /// The published Standard Webhooks example, as asserted by its reference
    /// libraries (e.g. the PHP library's `testSignFunctionWorks`) and by this
    /// crate's own outbound signer (src/delivery/signing.rs).
    #[test]
    fn spec_vector() {
        let v = verifier(&format!(
            "scheme = \"standard-webhooks\"\nsecret = \"{SECRET}\""
        ));
        let ts = TS.to_string();
        let h = headers(&[(ID, ID_), (TIMESTAMP, &ts), (SIGNATURE, SIG)]);
        assert_eq!(check(&v, &h, "", BODY, TS), Ok(()));
        // Another id changes the signed content.
        let other = headers(&[(ID, "msg_other"), (TIMESTAMP, &ts), (SIGNATURE, SIG)]);
        assert_eq!(check(&v, &other, "", BODY, TS), Err(Rejection::Mismatch));
    }

    #[test]
    fn unknown_versions_are_skipped_and_any_v1_may_match() {
        let v = verifier(&format!(
            "scheme = \"standard-webhooks\"\nsecret = \"{SECRET}\""
        ));
        let ts = TS.to_string();
        let list = format!("v1a,abcdef v2,{} v1,AAAA {SIG}  v1,!!!", &SIG[3..]);
        let h = headers(&[(ID, ID_), (TIMESTAMP, &ts), (SIGNATURE, &list)]);
        assert_eq!(check(&v, &h, "", BODY, TS), Ok(()));
    }

    #[test]
    fn malformed_headers_are_bad_format() {
        for (sig, ts) in [
            ("v1a,abcdef", "1614265330"),
            ("v1,", "1614265330"),
            ("v1,not base64!", "1614265330"),
            ("g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", "1614265330"),
            (SIG, "1614265330.5"),
            (SIG, "soon"),
            (SIG, "-1"),
        ] {
            let v = verifier(&format!(
                "scheme = \"standard-webhooks\"\nsecret = \"{SECRET}\""
            ));
            let h = headers(&[(ID, ID_), (TIMESTAMP, ts), (SIGNATURE, sig)]);
            let got = check(&v, &h, "", BODY, TS);
            assert!(
                matches!(got, Err(Rejection::BadFormat(_))),
                "{sig} {ts}: {got:?}"
            );
        }
    }

    #[test]
    fn secrets_must_be_whsec_base64() {
        let err = |secret: &str| {
            super::super::tests::config_error(&format!(
                "scheme = \"standard-webhooks\"\nsecrets = [\"{SECRET}\", \"{secret}\"]"
            ))
        };
        let e = err("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        assert!(
            e.contains("sources.test.verify.secrets[1]") && e.contains("whsec_"),
            "{e}"
        );
        let e = err("whsec_not*base64");
        assert!(
            e.contains("secrets[1]") && e.contains("not valid base64"),
            "{e}"
        );
        assert!(!e.contains("not*base64"), "the secret is not echoed: {e}");
        let e = err("whsec_");
        assert!(e.contains("empty"), "{e}");
    }
}
