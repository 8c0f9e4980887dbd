//! Schemes that are a single HMAC of the raw body in a single header: GitHub
//! and Meta (`X-Hub-Signature-256: sha256=<hex>`), Shopify
//! (`X-Shopify-Hmac-Sha256: <base64>`), and the generic `hmac` scheme for the
//! many providers built the same way with their own header, hash and encoding.
//!
//! These carry no timestamp, so a captured request can be replayed; the
//! idempotency key is what makes a replay harmless.

use anyhow::{Result, anyhow, bail};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Sha256, Sha512};

use super::{
    BASE64, RawVerify, Rejection, Request, Secret, any_equal, header, header_name, hex_decode,
    hex_encode,
};
use base64::Engine as _;

/// The hash under the HMAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    fn parse(key: &str, text: &str) -> Result<Algorithm> {
        match text.trim().to_ascii_lowercase().as_str() {
            "sha256" | "sha-256" => Ok(Algorithm::Sha256),
            "sha1" | "sha-1" => Ok(Algorithm::Sha1),
            "sha512" | "sha-512" => Ok(Algorithm::Sha512),
            _ => bail!("{key}: unknown algorithm {text:?} (expected sha256, sha1 or sha512)"),
        }
    }

    /// HMAC of the concatenated `parts`: schemes that sign "ts.body" need not
    /// copy the body to build the message.
    pub(super) fn mac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
            let mut mac = <M as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
            for part in parts {
                mac.update(part);
            }
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            Algorithm::Sha1 => run::<Hmac<Sha1>>(key, parts),
            Algorithm::Sha256 => run::<Hmac<Sha256>>(key, parts),
            Algorithm::Sha512 => run::<Hmac<Sha512>>(key, parts),
        }
    }
}

/// How the MAC is written in the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Encoding {
    Hex,
    Base64,
}

impl Encoding {
    fn parse(key: &str, text: &str) -> Result<Encoding> {
        match text.trim().to_ascii_lowercase().as_str() {
            "hex" => Ok(Encoding::Hex),
            "base64" => Ok(Encoding::Base64),
            _ => bail!("{key}: unknown encoding {text:?} (expected hex or base64)"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Encoding::Hex => "hex",
            Encoding::Base64 => "base64",
        }
    }

    fn encode(self, bytes: &[u8]) -> String {
        match self {
            Encoding::Hex => hex_encode(bytes),
            Encoding::Base64 => BASE64.encode(bytes),
        }
    }

    fn decode(self, text: &str) -> Option<Vec<u8>> {
        match self {
            Encoding::Hex => hex_decode(text),
            Encoding::Base64 => BASE64.decode(text).ok().filter(|b| !b.is_empty()),
        }
    }
}

/// One MAC of the body, in one header.
#[derive(Clone, Debug)]
pub(super) struct BodyHmac {
    /// Lowercase header name.
    header: String,
    algorithm: Algorithm,
    encoding: Encoding,
    /// Text before the encoded MAC, matched without regard to case; may be empty.
    prefix: String,
    keys: Vec<Secret>,
}

impl BodyHmac {
    /// GitHub's `X-Hub-Signature-256`, which Meta (Facebook, Instagram,
    /// WhatsApp) sends identically, keyed with the app secret.
    pub(super) fn hub_signature_256(keys: Vec<Secret>) -> BodyHmac {
        BodyHmac {
            header: "x-hub-signature-256".to_string(),
            algorithm: Algorithm::Sha256,
            encoding: Encoding::Hex,
            prefix: "sha256=".to_string(),
            keys,
        }
    }

    pub(super) fn shopify(keys: Vec<Secret>) -> BodyHmac {
        BodyHmac {
            header: "x-shopify-hmac-sha256".to_string(),
            algorithm: Algorithm::Sha256,
            encoding: Encoding::Base64,
            prefix: String::new(),
            keys,
        }
    }

    pub(super) fn generic(key: &str, raw: &RawVerify, keys: Vec<Secret>) -> Result<BodyHmac> {
        let header = raw.header.as_deref().ok_or_else(|| {
            anyhow!(
                "{key}.header: the hmac scheme needs the header that carries the signature, \
                 e.g. header = \"x-signature\""
            )
        })?;
        Ok(BodyHmac {
            header: header_name(&format!("{key}.header"), header)?,
            algorithm: match &raw.algorithm {
                Some(text) => Algorithm::parse(&format!("{key}.algorithm"), text)?,
                None => Algorithm::Sha256,
            },
            encoding: match &raw.encoding {
                Some(text) => Encoding::parse(&format!("{key}.encoding"), text)?,
                None => Encoding::Hex,
            },
            prefix: raw.prefix.clone().unwrap_or_default(),
            keys,
        })
    }

    pub(super) fn header(&self) -> &str {
        &self.header
    }

    pub(super) fn verify(&self, req: &Request<'_>) -> Result<(), Rejection> {
        let name = self.header.as_str();
        let value = header(req, name)?;
        let encoded = strip_prefix_ignore_case(value, &self.prefix).ok_or_else(|| {
            Rejection::BadFormat(format!(
                "header {name} does not start with {:?}",
                self.prefix
            ))
        })?;
        let given = self.encoding.decode(encoded.trim()).ok_or_else(|| {
            Rejection::BadFormat(format!(
                "header {name} does not hold a {} signature",
                self.encoding.name()
            ))
        })?;
        let expected: Vec<Vec<u8>> = self
            .keys
            .iter()
            .map(|k| self.algorithm.mac(k.bytes(), &[req.body]))
            .collect();
        if any_equal(&expected, &[given]) {
            Ok(())
        } else {
            Err(Rejection::Mismatch)
        }
    }

    /// The signature header for `body`, with the first key.
    pub(super) fn sign(&self, body: &[u8]) -> (String, String) {
        let mac = self.algorithm.mac(self.keys[0].bytes(), &[body]);
        (
            self.header.clone(),
            format!("{}{}", self.prefix, self.encoding.encode(&mac)),
        )
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::super::tests::{check, headers, verifier};
    use super::*;

    /// GitHub's documented example, from "Validating webhook deliveries"
    /// (docs.github.com/webhooks/using-webhooks/validating-webhook-deliveries,
    /// "Testing the webhook payload validation").
    #[test]
    fn github_docs_vector() {
        let v = verifier(
            r#"scheme = "github"
            secret = "It's a Secret to Everybody""#,
        );
        let h = headers(&[(
            "X-Hub-Signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        )]);
        assert_eq!(check(&v, &h, "", b"Hello, World!", 0), Ok(()));
        assert_eq!(
            check(&v, &h, "", b"Hello, World?", 0),
            Err(Rejection::Mismatch)
        );
    }

    /// Meta documents the format (`sha256=` + hex HMAC-SHA256 of the raw
    /// body with the app secret) but no worked example; this one was
    /// computed independently: `printf '{"object":"page","entry":[]}' |
    /// openssl dgst -sha256 -hmac 'meta-app-secret'`.
    #[test]
    fn meta_vector_computed_with_openssl() {
        let v = verifier(
            r#"scheme = "meta"
            secret = "meta-app-secret""#,
        );
        let h = headers(&[(
            "X-Hub-Signature-256",
            "sha256=5dcb51eb590634700c8d9cc1fde4d2d5981ca7bb83f250eb3fb71bfd849057ed",
        )]);
        assert_eq!(
            check(&v, &h, "", br#"{"object":"page","entry":[]}"#, 0),
            Ok(())
        );
        assert_eq!(
            check(&v, &h, "", br#"{"object":"page","entry":[1]}"#, 0),
            Err(Rejection::Mismatch)
        );
    }

    /// From Shopify's own library: shopify-api-js,
    /// packages/shopify-api/lib/webhooks/__tests__/validate.test.ts (the
    /// expected `hmac` of `{"foo": "bar"}`), with the secret "test_secret_key"
    /// from packages/shopify-api/lib/__tests__/test-config.ts.
    #[test]
    fn shopify_library_vector() {
        let v = verifier(
            r#"scheme = "shopify"
            secret = "test_secret_key""#,
        );
        let h = headers(&[(
            "X-Shopify-Hmac-Sha256",
            "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g=",
        )]);
        assert_eq!(check(&v, &h, "", br#"{"foo": "bar"}"#, 0), Ok(()));
        assert_eq!(
            check(&v, &h, "", br#"{"foo":"bar"}"#, 0),
            Err(Rejection::Mismatch)
        );
    }

    /// RFC 4231 test case 2 and RFC 2202 test case 2 ("Jefe"), pinning the
    /// three hashes of the generic scheme to published values.
    #[test]
    fn generic_algorithms_match_the_rfc_vectors() {
        let body = b"what do ya want for nothing?";
        let cases = [
            ("sha1", "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"),
            (
                "sha256",
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                "sha512",
                "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
            ),
        ];
        for (alg, hex) in cases {
            let v = verifier(&format!(
                "scheme = \"hmac\"\nsecret = \"Jefe\"\nheader = \"X-Sig\"\nalgorithm = \"{alg}\""
            ));
            assert_eq!(
                check(&v, &headers(&[("x-sig", hex)]), "", body, 0),
                Ok(()),
                "{alg}"
            );
            assert_eq!(
                check(&v, &headers(&[("x-sig", &hex.to_uppercase())]), "", body, 0),
                Ok(()),
                "{alg}, upper-case hex"
            );
        }
    }

    #[test]
    fn generic_base64_with_prefix() {
        let v = verifier(
            r#"scheme = "hmac"
            secret = "Jefe"
            header = "X-Sig"
            encoding = "base64"
            prefix = "v1=""#,
        );
        // base64 of the RFC 4231 case 2 SHA-256 value.
        let good = "v1=W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=";
        let body = b"what do ya want for nothing?";
        assert_eq!(check(&v, &headers(&[("x-sig", good)]), "", body, 0), Ok(()));
        // Prefix case does not matter; padding may be dropped.
        let relaxed = "V1=W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM";
        assert_eq!(
            check(&v, &headers(&[("x-sig", relaxed)]), "", body, 0),
            Ok(())
        );
        assert!(matches!(
            check(&v, &headers(&[("x-sig", "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=")]), "", body, 0),
            Err(Rejection::BadFormat(m)) if m.contains("does not start with")
        ));
        assert!(matches!(
            check(&v, &headers(&[("x-sig", "v1=not base64!")]), "", body, 0),
            Err(Rejection::BadFormat(m)) if m.contains("base64")
        ));
    }

    #[test]
    fn malformed_signatures_are_bad_format() {
        let v = verifier(
            r#"scheme = "github"
            secret = "s""#,
        );
        for value in ["757107ea", "sha1=757107ea", "sha256=zz", "sha256=abc"] {
            let got = check(&v, &headers(&[("x-hub-signature-256", value)]), "", b"x", 0);
            assert!(
                matches!(got, Err(Rejection::BadFormat(_))),
                "{value}: {got:?}"
            );
        }
        // A well-formed signature of the wrong length simply does not match.
        let short = check(
            &v,
            &headers(&[("x-hub-signature-256", "sha256=abcd")]),
            "",
            b"x",
            0,
        );
        assert_eq!(short, Err(Rejection::Mismatch));
        let twice = headers(&[
            ("x-hub-signature-256", "sha256=abcd"),
            ("x-hub-signature-256", "sha256=abcd"),
        ]);
        assert!(matches!(
            check(&v, &twice, "", b"x", 0),
            Err(Rejection::BadFormat(m)) if m.contains("more than once")
        ));
        assert_eq!(
            check(&v, &headers(&[("x-hub-signature-256", "  ")]), "", b"x", 0),
            Err(Rejection::MissingHeader("x-hub-signature-256".into()))
        );
    }
}
