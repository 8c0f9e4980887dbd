//! Shared-secret schemes for senders that cannot sign: HTTP Basic
//! credentials, or a token in a header (`Authorization: Bearer <t>` included)
//! or in the query string.
//!
//! Unlike the signature schemes these authenticate the sender, not the body:
//! anyone who sees one request can send others. They are for senders that
//! offer nothing better, over TLS.

use anyhow::{Result, anyhow, bail};
use base64::Engine as _;

use super::{
    BASE64, Configured, RawVerify, Rejection, Request, Secret, any_equal, header, header_name,
};

pub(super) const AUTHORIZATION: &str = "authorization";

/// `Authorization: Basic base64(user:pass)`.
#[derive(Clone, Debug)]
pub(super) struct Basic {
    /// Accepted `user:pass` byte strings, compared whole.
    credentials: Vec<Secret>,
}

impl Basic {
    /// With `username`, each secret is a password for it; without, each
    /// secret is a whole `user:pass`.
    pub(super) fn from_config(key: &str, raw: &RawVerify, secrets: &[Configured]) -> Result<Basic> {
        if let Some(user) = &raw.username {
            if user.is_empty() {
                bail!("{key}.username: is empty");
            }
            if user.contains(':') {
                // RFC 7617: the user-id cannot contain a colon.
                bail!(
                    "{key}.username: {user:?} contains ':', which Basic credentials cannot carry"
                );
            }
        }
        let credentials = secrets
            .iter()
            .map(|s| match &raw.username {
                Some(user) => Ok(Secret::new(format!("{user}:{}", s.value))),
                None if s.value.contains(':') => Ok(Secret::new(s.value.as_bytes())),
                None => Err(anyhow!(
                    "{}: expected \"user:password\" (or set username and give the password alone)",
                    s.key
                )),
            })
            .collect::<Result<_>>()?;
        Ok(Basic { credentials })
    }

    pub(super) fn verify(&self, req: &Request<'_>) -> Result<(), Rejection> {
        let value = header(req, AUTHORIZATION)?;
        let bad = || Rejection::BadFormat("header authorization is not \"Basic <base64>\"".into());
        let (scheme, encoded) = value.split_once(' ').ok_or_else(bad)?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(bad());
        }
        let given = BASE64.decode(encoded.trim()).map_err(|_| bad())?;
        if any_equal(
            &self
                .credentials
                .iter()
                .map(Secret::bytes)
                .collect::<Vec<_>>(),
            &[given],
        ) {
            Ok(())
        } else {
            Err(Rejection::Mismatch)
        }
    }

    pub(super) fn sign(&self) -> (String, String) {
        let encoded = BASE64.encode(self.credentials[0].bytes());
        (AUTHORIZATION.to_string(), format!("Basic {encoded}"))
    }
}

/// Where a token travels.
#[derive(Clone, Debug)]
enum Place {
    /// A header holding the bare token.
    Header(String),
    /// `Authorization`, where a `Bearer ` prefix is stripped.
    Authorization,
    /// A query parameter, for senders that can only configure a URL.
    Query(String),
}

/// A shared token, compared whole.
#[derive(Clone, Debug)]
pub(super) struct Token {
    place: Place,
    tokens: Vec<Secret>,
}

impl Token {
    pub(super) fn from_config(key: &str, raw: &RawVerify, tokens: Vec<Secret>) -> Result<Token> {
        let place = match (&raw.header, &raw.query) {
            (Some(_), Some(_)) => {
                bail!("{key}: set either header or query for the token, not both")
            }
            (None, None) => bail!(
                "{key}: the token scheme needs where the token travels: header = \"x-token\" \
                 (or \"authorization\" for a Bearer token), or query = \"token\""
            ),
            (Some(h), None) => match header_name(&format!("{key}.header"), h)?.as_str() {
                AUTHORIZATION => Place::Authorization,
                name => Place::Header(name.to_string()),
            },
            (None, Some(q)) if q.trim().is_empty() => bail!("{key}.query: is empty"),
            (None, Some(q)) => Place::Query(q.trim().to_string()),
        };
        Ok(Token { place, tokens })
    }

    /// The query parameter carrying the token, if it travels in the URL.
    pub(super) fn query_param(&self) -> Option<&str> {
        match &self.place {
            Place::Query(name) => Some(name),
            _ => None,
        }
    }

    /// The header carrying the token, if it travels in one.
    pub(super) fn header(&self) -> Option<&str> {
        match &self.place {
            Place::Header(name) => Some(name),
            Place::Authorization => Some(AUTHORIZATION),
            Place::Query(_) => None,
        }
    }

    pub(super) fn verify(&self, req: &Request<'_>) -> Result<(), Rejection> {
        let given: String = match &self.place {
            Place::Header(name) => header(req, name)?.to_string(),
            Place::Authorization => {
                let value = header(req, AUTHORIZATION)?;
                match value.get(..7) {
                    Some(scheme) if scheme.eq_ignore_ascii_case("bearer ") => {
                        value[7..].trim().to_string()
                    }
                    _ => value.to_string(),
                }
            }
            Place::Query(name) => query_param(req.query, name)?,
        };
        let tokens: Vec<&[u8]> = self.tokens.iter().map(Secret::bytes).collect();
        if any_equal(&tokens, &[given.as_bytes()]) {
            Ok(())
        } else {
            Err(Rejection::Mismatch)
        }
    }

    /// The header a sender adds, or `None` when the token belongs in the URL.
    pub(super) fn sign(&self) -> Option<(String, String)> {
        let token = String::from_utf8_lossy(self.tokens[0].bytes()).into_owned();
        match &self.place {
            Place::Header(name) => Some((name.clone(), token)),
            Place::Authorization => Some((AUTHORIZATION.to_string(), format!("Bearer {token}"))),
            Place::Query(_) => None,
        }
    }
}

/// The decoded value of the one `name` parameter in a query string. A
/// repeated parameter is refused rather than guessing which one counts.
/// Names are matched by [`crate::source::query::pairs`], exactly as the
/// stored event's redaction matches them.
fn query_param(query: &str, name: &str) -> Result<String, Rejection> {
    let mut found = None;
    for (_, k, v) in crate::source::query::pairs(query) {
        if k == name && found.replace(v).is_some() {
            return Err(Rejection::BadFormat(format!(
                "query parameter {name} appears more than once"
            )));
        }
    }
    match found {
        Some(v) if !v.is_empty() => Ok(v.into_owned()),
        _ => Err(Rejection::MissingHeader(format!(
            "{}{name}",
            super::QUERY_PARAMETER
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{check, config_error, headers, verifier};
    use super::*;

    #[test]
    fn basic_with_username_and_with_pairs() {
        // "Aladdin:open sesame", the example of RFC 7617.
        let h = headers(&[("authorization", "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")]);
        let with_user = verifier(
            r#"scheme = "basic"
            username = "Aladdin"
            secrets = ["old", "open sesame"]"#,
        );
        assert_eq!(check(&with_user, &h, "", b"", 0), Ok(()));
        let pairs = verifier(
            r#"scheme = "basic"
            secret = "Aladdin:open sesame""#,
        );
        assert_eq!(check(&pairs, &h, "", b"", 0), Ok(()));
        let lower = headers(&[("authorization", "basic   QWxhZGRpbjpvcGVuIHNlc2FtZQ")]);
        assert_eq!(check(&pairs, &lower, "", b"", 0), Ok(()));
        let other = headers(&[("authorization", "Basic QWxhZGRpbjpvcGVu")]);
        assert_eq!(check(&pairs, &other, "", b"", 0), Err(Rejection::Mismatch));
    }

    #[test]
    fn basic_malformed() {
        let v = verifier(
            r#"scheme = "basic"
            secret = "a:b""#,
        );
        for value in ["Basic", "Bearer YTpi", "Basic !!!", "YTpi"] {
            let got = check(&v, &headers(&[("authorization", value)]), "", b"", 0);
            assert!(
                matches!(got, Err(Rejection::BadFormat(_))),
                "{value}: {got:?}"
            );
        }
        assert_eq!(
            check(&v, &headers(&[]), "", b"", 0),
            Err(Rejection::MissingHeader("authorization".into()))
        );
    }

    #[test]
    fn basic_config_errors_name_the_entry() {
        let e = config_error(
            r#"scheme = "basic"
            secrets = ["a:b", "nopair"]"#,
        );
        assert!(
            e.contains("secrets[1]") && e.contains("user:password"),
            "{e}"
        );
        assert!(!e.contains("nopair"), "the secret is not echoed: {e}");
        let e = config_error(
            r#"scheme = "basic"
            username = "a:b"
            secret = "x""#,
        );
        assert!(e.contains(".username"), "{e}");
    }

    #[test]
    fn token_in_a_header() {
        let v = verifier(
            r#"scheme = "token"
            header = "X-Token"
            secrets = ["old", "new"]"#,
        );
        assert_eq!(
            check(&v, &headers(&[("x-token", "new")]), "", b"", 0),
            Ok(())
        );
        assert_eq!(
            check(&v, &headers(&[("x-token", "old")]), "", b"", 0),
            Ok(())
        );
        assert_eq!(
            check(&v, &headers(&[("x-token", "Bearer new")]), "", b"", 0),
            Err(Rejection::Mismatch)
        );
        assert_eq!(
            check(&v, &headers(&[]), "", b"", 0),
            Err(Rejection::MissingHeader("x-token".into()))
        );
    }

    #[test]
    fn bearer_token_in_authorization() {
        let v = verifier(
            r#"scheme = "token"
            header = "Authorization"
            secret = "s3cr3t""#,
        );
        for value in [
            "Bearer s3cr3t",
            "bearer s3cr3t",
            "BEARER   s3cr3t",
            "s3cr3t",
        ] {
            assert_eq!(
                check(&v, &headers(&[("authorization", value)]), "", b"", 0),
                Ok(()),
                "{value}"
            );
        }
        for value in ["Bearer s3cr3", "Basic s3cr3t", "Bearer"] {
            assert_eq!(
                check(&v, &headers(&[("authorization", value)]), "", b"", 0),
                Err(Rejection::Mismatch),
                "{value}"
            );
        }
    }

    #[test]
    fn token_in_the_query() {
        let v = verifier(
            r#"scheme = "token"
            query = "key"
            secret = "a b+c/d""#,
        );
        assert_eq!(
            check(&v, &headers(&[]), "x=1&key=a+b%2Bc%2Fd", b"", 0),
            Ok(())
        );
        assert_eq!(check(&v, &headers(&[]), "?key=a%20b%2Bc/d", b"", 0), Ok(()));
        assert_eq!(
            check(&v, &headers(&[]), "key=a+b", b"", 0),
            Err(Rejection::Mismatch)
        );
        let missing = check(&v, &headers(&[]), "keys=a", b"", 0);
        assert_eq!(
            missing,
            Err(Rejection::MissingHeader("query parameter key".into()))
        );
        assert_eq!(
            missing.unwrap_err().message(),
            "the request has no query parameter key"
        );
        assert_eq!(
            check(&v, &headers(&[]), "key=", b"", 0),
            Err(Rejection::MissingHeader("query parameter key".into()))
        );
        assert!(matches!(
            check(&v, &headers(&[]), "key=a+b%2Bc%2Fd&key=x", b"", 0),
            Err(Rejection::BadFormat(m)) if m.contains("more than once")
        ));
    }

    #[test]
    fn token_config_errors() {
        let e = config_error(
            r#"scheme = "token"
            secret = "x""#,
        );
        assert!(e.contains("header") && e.contains("query"), "{e}");
        let e = config_error(
            r#"scheme = "token"
            header = "x"
            query = "y"
            secret = "x""#,
        );
        assert!(e.contains("not both"), "{e}");
        let e = config_error(
            r#"scheme = "token"
            header = "bad header"
            secret = "x""#,
        );
        assert!(
            e.contains(".header") && e.contains("not a valid header name"),
            "{e}"
        );
    }
}
