//! The `v0` scheme Slack introduced and Zoom copied:
//! `<signature header>: v0=<hex HMAC-SHA256(secret, "v0:<ts>:<body>")>`
//! with the Unix timestamp (seconds) in a second header. Slack sends
//! `X-Slack-Signature` / `X-Slack-Request-Timestamp`, Zoom `x-zm-signature`
//! / `x-zm-request-timestamp`; only the names differ, so one type serves
//! both. The secret is used as text, never decoded, even though Slack's
//! looks like hex.

use super::hmac_schemes::Algorithm;
use super::{
    Rejection, Request, Secret, any_equal, check_age, header, hex_decode, hex_encode, timestamp,
};

/// Where a provider puts the two values.
#[derive(Debug)]
pub(super) struct Names {
    pub(super) timestamp: &'static str,
    pub(super) signature: &'static str,
}

pub(super) const SLACK: Names = Names {
    timestamp: "x-slack-request-timestamp",
    signature: "x-slack-signature",
};

pub(super) const ZOOM: Names = Names {
    timestamp: "x-zm-request-timestamp",
    signature: "x-zm-signature",
};

#[derive(Clone, Debug)]
pub(super) struct V0Hmac {
    names: &'static Names,
    keys: Vec<Secret>,
    tolerance: i64,
}

impl V0Hmac {
    pub(super) fn new(names: &'static Names, keys: Vec<Secret>, tolerance: i64) -> V0Hmac {
        V0Hmac {
            names,
            keys,
            tolerance,
        }
    }

    pub(super) fn signature_header(&self) -> &'static str {
        self.names.signature
    }

    /// Signature first, then the clock, so that a stale or future rejection
    /// only ever concerns a genuine request.
    pub(super) fn verify(&self, req: &Request<'_>) -> Result<(), Rejection> {
        let Names {
            timestamp: ts_name,
            signature: sig_name,
        } = self.names;
        let ts_text = header(req, ts_name)?;
        let ts = timestamp(&format!("header {ts_name}"), ts_text)?;
        let value = header(req, sig_name)?;
        let hex = value.strip_prefix("v0=").ok_or_else(|| {
            Rejection::BadFormat(format!("header {sig_name} does not start with \"v0=\""))
        })?;
        let given = hex_decode(hex).ok_or_else(|| {
            Rejection::BadFormat(format!("header {sig_name} does not hold a hex signature"))
        })?;
        // The timestamp is signed as sent, so it is used as sent.
        let expected: Vec<Vec<u8>> = self
            .keys
            .iter()
            .map(|k| mac(k, ts_text, req.body))
            .collect();
        if !any_equal(&expected, &[given]) {
            return Err(Rejection::Mismatch);
        }
        check_age(ts, req.now_unix, self.tolerance)
    }

    pub(super) fn sign(&self, body: &[u8], now_unix: i64) -> Vec<(String, String)> {
        let ts = now_unix.to_string();
        let sig = hex_encode(&mac(&self.keys[0], &ts, body));
        vec![
            (self.names.timestamp.to_string(), ts),
            (self.names.signature.to_string(), format!("v0={sig}")),
        ]
    }
}

fn mac(key: &Secret, ts: &str, body: &[u8]) -> Vec<u8> {
    Algorithm::Sha256.mac(key.bytes(), &[b"v0:", ts.as_bytes(), b":", body])
}

#[cfg(test)]
mod tests {
    use super::super::tests::{check, headers, verifier};
    use super::*;

    /// The worked example of Slack's "Verifying requests from Slack"
    /// (api.slack.com/authentication/verifying-requests-from-slack): its
    /// signing secret, timestamp, slash-command body and resulting signature.
    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const TS: i64 = 1531420618;
    const BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    #[test]
    fn slack_docs_vector() {
        let v = verifier(&format!("scheme = \"slack\"\nsecret = \"{SECRET}\""));
        let h = headers(&[
            ("X-Slack-Request-Timestamp", "1531420618"),
            ("X-Slack-Signature", SIG),
        ]);
        assert_eq!(check(&v, &h, "", BODY.as_bytes(), TS), Ok(()));
        // The docs' five-minute window, both ways.
        assert_eq!(check(&v, &h, "", BODY.as_bytes(), TS + 300), Ok(()));
        assert_eq!(check(&v, &h, "", BODY.as_bytes(), TS - 300), Ok(()));
        assert_eq!(
            check(&v, &h, "", BODY.as_bytes(), TS + 301),
            Err(Rejection::StaleTimestamp)
        );
        assert_eq!(
            check(&v, &h, "", BODY.as_bytes(), TS - 301),
            Err(Rejection::FutureTimestamp)
        );
        let tampered = BODY.replace("roadrunner", "coyote");
        assert_eq!(
            check(&v, &h, "", tampered.as_bytes(), TS),
            Err(Rejection::Mismatch)
        );
    }

    #[test]
    fn malformed_headers_are_bad_format() {
        let v = verifier(&format!("scheme = \"slack\"\nsecret = \"{SECRET}\""));
        for (ts, sig) in [
            ("1531420618", &SIG[3..]),
            ("1531420618", "v1=a2114d57"),
            ("1531420618", "v0=xyz"),
            ("1531420618", "v0="),
            ("15314206.18", SIG),
            ("yesterday", SIG),
        ] {
            let h = headers(&[(SLACK.timestamp, ts), (SLACK.signature, sig)]);
            let got = check(&v, &h, "", BODY.as_bytes(), TS);
            assert!(
                matches!(got, Err(Rejection::BadFormat(_))),
                "{ts} {sig}: {got:?}"
            );
        }
    }

    /// Zoom publishes no worked signature example; this one was computed
    /// independently:
    /// `printf 'v0:1658940994:<BODY>' | openssl dgst -sha256 -hmac 'zoom-secret-token'`.
    #[test]
    fn zoom_vector_computed_with_openssl() {
        const BODY: &str = r#"{"event":"meeting.started","payload":{"account_id":"AAAAAA"}}"#;
        let v = verifier("scheme = \"zoom\"\nsecret = \"zoom-secret-token\"");
        let h = headers(&[
            ("x-zm-request-timestamp", "1658940994"),
            (
                "x-zm-signature",
                "v0=dd42df7885ec7f06d7df66d2a954c6841ab54e451d00b833242d24c0cb705bc0",
            ),
        ]);
        assert_eq!(check(&v, &h, "", BODY.as_bytes(), 1658940994), Ok(()));
        assert_eq!(
            check(
                &v,
                &h,
                "",
                BODY.replace("AAAAAA", "BBBBBB").as_bytes(),
                1658940994
            ),
            Err(Rejection::Mismatch)
        );
        assert_eq!(
            check(&v, &h, "", BODY.as_bytes(), 1658940994 + 301),
            Err(Rejection::StaleTimestamp)
        );
        // Slack's header names mean nothing to a Zoom source.
        let slack = headers(&[
            ("x-slack-request-timestamp", "1658940994"),
            ("x-slack-signature", "v0=dd42df78"),
        ]);
        assert_eq!(
            check(&v, &slack, "", BODY.as_bytes(), 1658940994),
            Err(Rejection::MissingHeader("x-zm-request-timestamp".into()))
        );
    }
}
