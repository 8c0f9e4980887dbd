//! Inbound Standard Webhooks: the request's headers checked with
//! [`crate::webhooks::standard`] (the same secret rule and signatures
//! hookyard's own deliveries use), then the timestamp against the
//! tolerance.

use anyhow::{Result, anyhow};

use crate::webhooks::standard::{self, Secret, VerifyError};
pub(super) use crate::webhooks::standard::{ID, SIGNATURE, TIMESTAMP};

use super::{Configured, Rejection, Request, check_age, header, timestamp};

#[derive(Clone, Debug)]
pub(super) struct StandardWebhooks {
    keys: Vec<Secret>,
    tolerance: i64,
}

/// Parses each configured secret; errors name the entry, not its value.
pub(super) fn decode_keys(secrets: &[Configured]) -> Result<Vec<Secret>> {
    secrets
        .iter()
        .map(|s| Secret::parse(&s.value).map_err(|e| anyhow!("{}: {e}", s.key)))
        .collect()
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
        let signature = header(req, SIGNATURE)?;
        // `timestamp` takes digits only, so the value is not negative.
        standard::verify(&self.keys, id, ts as u64, req.body, signature).map_err(|e| match e {
            VerifyError::Mismatch => Rejection::Mismatch,
            malformed => Rejection::BadFormat(malformed.to_string()),
        })?;
        check_age(ts, req.now_unix, self.tolerance)
    }

    pub(super) fn sign(&self, id: &str, body: &[u8], now_unix: i64) -> Vec<(String, String)> {
        let ts = now_unix.max(0) as u64;
        vec![
            (ID.to_string(), id.to_string()),
            (TIMESTAMP.to_string(), ts.to_string()),
            (
                SIGNATURE.to_string(),
                standard::sign(&self.keys[0], id, ts, body),
            ),
        ]
    }
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
    /// libraries (e.g. the PHP library's `testSignFunctionWorks`), through
    /// the whole inbound path.
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
        // base64 of "secret": the rule every side shares wants 16 bytes.
        let e = err("whsec_c2VjcmV0");
        assert!(e.contains("secrets[1]") && e.contains("too short"), "{e}");
    }
}
