//! Stripe: `Stripe-Signature: t=<ts>,v1=<hex>[,v1=<hex>...][,v0=<hex>]`, each
//! v1 an HMAC-SHA256 of `"<ts>.<body>"`. The key is the endpoint's signing
//! secret exactly as shown, `whsec_` included: Stripe's libraries use the
//! secret's UTF-8 bytes and never decode it (stripe-python
//! `WebhookSignature._compute_signature`: `hmac.new(secret.encode("utf-8"), ...)`).
//!
//! Stripe sends several v1 entries while an endpoint secret is being rolled;
//! any one matching any configured secret is enough. v0 is a legacy test-mode
//! signature and, like any scheme we do not know, is ignored.

use super::hmac_schemes::Algorithm;
use super::{
    Rejection, Request, Secret, any_equal, check_age, header, hex_decode, hex_encode, timestamp,
};

pub(super) const HEADER: &str = "stripe-signature";

#[derive(Clone, Debug)]
pub(super) struct Stripe {
    keys: Vec<Secret>,
    tolerance: i64,
}

/// What a `Stripe-Signature` header says.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Parsed {
    pub(super) timestamp: i64,
    /// The decodable v1 signatures; entries that are not hex cannot match
    /// and are dropped, as Stripe's own libraries let them simply not match.
    pub(super) v1: Vec<Vec<u8>>,
}

/// Parses the header. Exactly one `t`; at least one v1 that is hex.
pub(super) fn parse(value: &str) -> Result<Parsed, Rejection> {
    let mut t = None;
    let mut v1 = Vec::new();
    let mut saw_v1 = false;
    for item in value.split(',') {
        let Some((name, text)) = item.split_once('=') else {
            continue;
        };
        match name.trim() {
            "t" if t.is_some() => {
                return Err(Rejection::BadFormat(
                    "Stripe-Signature has more than one t= timestamp".to_string(),
                ));
            }
            "t" => t = Some(text.trim()),
            "v1" => {
                saw_v1 = true;
                v1.extend(hex_decode(text.trim()));
            }
            _ => {}
        }
    }
    let t =
        t.ok_or_else(|| Rejection::BadFormat("Stripe-Signature has no t= timestamp".to_string()))?;
    let timestamp = timestamp("the t= value in Stripe-Signature", t)?;
    if v1.is_empty() {
        return Err(Rejection::BadFormat(if saw_v1 {
            "Stripe-Signature has no v1 signature in hex".to_string()
        } else {
            "Stripe-Signature has no v1 signature".to_string()
        }));
    }
    Ok(Parsed { timestamp, v1 })
}

impl Stripe {
    pub(super) fn new(keys: Vec<Secret>, tolerance: i64) -> Stripe {
        Stripe { keys, tolerance }
    }

    /// The signature is checked before the clock, so a stale or future
    /// rejection always concerns a genuine request: worth telling apart from
    /// a forgery when debugging clock skew or a delayed retry.
    pub(super) fn verify(&self, req: &Request<'_>) -> Result<(), Rejection> {
        let parsed = parse(header(req, HEADER)?)?;
        let ts = parsed.timestamp.to_string();
        let expected: Vec<Vec<u8>> = self.keys.iter().map(|k| mac(k, &ts, req.body)).collect();
        if !any_equal(&expected, &parsed.v1) {
            return Err(Rejection::Mismatch);
        }
        check_age(parsed.timestamp, req.now_unix, self.tolerance)
    }

    pub(super) fn sign(&self, body: &[u8], now_unix: i64) -> (String, String) {
        let ts = now_unix.to_string();
        let sig = hex_encode(&mac(&self.keys[0], &ts, body));
        (HEADER.to_string(), format!("t={ts},v1={sig}"))
    }
}

fn mac(key: &Secret, ts: &str, body: &[u8]) -> Vec<u8> {
    Algorithm::Sha256.mac(key.bytes(), &[ts.as_bytes(), b".", body])
}

#[cfg(test)]
mod tests {
    use super::super::tests::{check, headers, verifier};
    use super::*;

    /// The fixture of Stripe's .NET library: stripe-dotnet,
    /// src/StripeTests/Services/Events/EventUtilityTest.cs (secret
    /// "webhook_secret", t=1533204620, the v1 below) over
    /// src/StripeTests/Resources/event_test_signature.json, whose exact bytes
    /// (LF line ends, final newline) are copied here.
    const DOTNET_FIXTURE: &str = r#"{
  "id": "evt_123",
  "object": "event",
  "account": "acct_123",
  "api_version": "2017-05-25",
  "created": 1533204620,
  "data": {
    "object": {
      "id": "cus_123",
      "object": "customer",
      "created": 123456789,
      "email": "test@stripe.com",
      "livemode": false,
      "metadata": {}
    }
  },
  "livemode": false,
  "pending_webhooks": 1,
  "request": {
    "id": "req_123",
    "idempotency_key": "idempotency-key-123"
  },
  "type": "customer.created"
}
"#;
    const DOTNET_HEADER: &str = "t=1533204620,v1=2220f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3c7,v0=63f3a72374a733066c4be69ed7f8e5ac85c22c9f0a6a612ab9a025a9e4ee7eef";

    #[test]
    fn stripe_dotnet_vector() {
        let v = verifier(
            r#"scheme = "stripe"
            secret = "webhook_secret""#,
        );
        let h = headers(&[("Stripe-Signature", DOTNET_HEADER)]);
        let body = DOTNET_FIXTURE.as_bytes();
        // As in the .NET test: 100 s after signing, tolerance 300 s.
        assert_eq!(check(&v, &h, "", body, 1533204620 + 100), Ok(()));
        assert_eq!(
            check(&v, &h, "", body, 1533204620 + 400),
            Err(Rejection::StaleTimestamp)
        );
        let tampered = format!("{DOTNET_FIXTURE}this_changes_the_json");
        assert_eq!(
            check(&v, &h, "", tampered.as_bytes(), 1533204620),
            Err(Rejection::Mismatch)
        );
    }

    /// The whole `whsec_...` string is the key, not its decoded tail.
    #[test]
    fn the_whsec_string_itself_is_the_key() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let v = verifier(&format!("scheme = \"stripe\"\nsecret = \"{secret}\""));
        let expected = Algorithm::Sha256.mac(secret.as_bytes(), &[b"100.", b"{}"]);
        let h = headers(&[(HEADER, &format!("t=100,v1={}", hex_encode(&expected)))]);
        assert_eq!(check(&v, &h, "", b"{}", 100), Ok(()));
    }

    #[test]
    fn any_v1_may_match() {
        let v = verifier(
            r#"scheme = "stripe"
            secret = "webhook_secret""#,
        );
        let good = DOTNET_HEADER.split(',').nth(1).unwrap();
        let value = format!(
            "t=1533204620,v1=bad_signature,v1={},{good}, v0=00",
            "ab".repeat(32)
        );
        let h = headers(&[(HEADER, &value)]);
        assert_eq!(
            check(&v, &h, "", DOTNET_FIXTURE.as_bytes(), 1533204620),
            Ok(())
        );
    }

    #[test]
    fn parse_rejects_what_stripe_rejects() {
        // The malformed headers of stripe-dotnet's
        // ValidateSignatureHandlesIncorrectHeaderValues, and a few more.
        for value in [
            "t=,v1=2220f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3c7",
            "t,v1=,v0=",
            "t,v1=,v0",
            "t,v1=,",
            "t,,",
            ",,",
            "t",
            "v1=abcd",
            "t=12,v0=abcd",
            "t=12,v1=xyz",
            "t=-12,v1=abcd",
            "t=1e3,v1=abcd",
            "t=99999999999999999999,v1=abcd",
            "t=1,t=2,v1=abcd",
        ] {
            assert!(
                matches!(parse(value), Err(Rejection::BadFormat(_))),
                "{value}: {:?}",
                parse(value)
            );
        }
        assert_eq!(
            parse(" t=5 , v1=AbCd , x=y=z,junk"),
            Ok(Parsed {
                timestamp: 5,
                v1: vec![vec![0xab, 0xcd]]
            })
        );
    }
}
