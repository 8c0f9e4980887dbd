//! Which of the sender's headers a passthrough delivery carries on.
//!
//! A receiver written for a provider dispatches on the provider's headers
//! (`X-GitHub-Event`), so by default a passthrough delivery carries every
//! header the sender sent, except:
//!
//! - those about the connection or the body's framing on the way in
//!   (hop-by-hop, `Host`, `Content-Length`, `Content-Encoding`: the body goes
//!   out decoded), hookyard's own (`webhook-*`, `x-hookyard-*`), `Expect`
//!   and `Accept-Encoding` (they negotiate with hookyard, not the receiver),
//!   and the trace context (sent on, checked, by the attempt): never;
//! - credentials (`Authorization`, `Cookie`) and the signature headers the
//!   source verified (they would not verify downstream: hookyard re-signs):
//!   only when a `forward_headers` list names them exactly;
//! - whatever a `drop_headers` of the source or the target matches, or a
//!   `forward_headers` of either does not match.
//!
//! The sender controls these headers, so what is forwarded is bounded
//! ([`MAX_FORWARDED`] headers, [`MAX_FORWARDED_BYTES`]); the rest is left
//! off and recorded on the delivery as refused, with why. They are decided
//! when the delivery is created and stored with it, so the delivery's
//! `headers` are what is sent on every attempt.

use anyhow::{Result, bail};
use reqwest::header::{HeaderName, HeaderValue};

use crate::model::records::RefusedHeader;
use crate::model::trace;

/// Most sender headers one passthrough delivery carries.
pub const MAX_FORWARDED: usize = 64;

/// Most bytes (names and values) of the headers one delivery carries on.
pub const MAX_FORWARDED_BYTES: usize = 16 * 1024;

/// Headers never forwarded beyond [`super::headers::reserved`] ones: they
/// are about the request to hookyard, not the one to the receiver.
const THIS_HOP: &[&str] = &[
    "expect",
    "accept-encoding",
    trace::TRACEPARENT,
    trace::TRACESTATE,
];

/// Credentials: forwarded only when a `forward_headers` names them.
const PRIVATE: &[&str] = &["authorization", "cookie"];

/// A header name, or a prefix of names written `x-github-*` (`*` alone
/// is every name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    Name(String),
    Prefix(String),
}

impl Pattern {
    /// `key` names the setting in errors.
    pub fn parse(key: &str, text: &str) -> Result<Pattern> {
        let lower = text.trim().to_ascii_lowercase();
        let (stem, prefix) = match lower.strip_suffix('*') {
            Some(stem) => (stem, true),
            None => (lower.as_str(), false),
        };
        let stem_ok = stem.is_empty() && prefix
            || stem
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'+-.^_`|~".contains(&b));
        if !stem_ok || (!prefix && HeaderName::from_bytes(stem.as_bytes()).is_err()) {
            bail!(
                "{key}: {text:?} is not a header name or a prefix pattern such as \"x-github-*\""
            );
        }
        Ok(if prefix {
            Pattern::Prefix(stem.to_string())
        } else {
            Pattern::Name(stem.to_string())
        })
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            Pattern::Name(n) => n == name,
            Pattern::Prefix(p) => name.starts_with(p.as_str()),
        }
    }
}

/// A source's or a target's `forward_headers` / `drop_headers`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderRules {
    /// `None`: every header (the default set); `Some`: only those matched.
    pub forward: Option<Vec<Pattern>>,
    pub drop: Vec<Pattern>,
}

impl HeaderRules {
    /// `key` is the source's or target's table, e.g. `targets.ci`.
    pub fn from_config(key: &str, forward: Option<&[String]>, drop: &[String]) -> Result<Self> {
        let list = |name: &str, items: &[String]| {
            items
                .iter()
                .enumerate()
                .map(|(i, t)| Pattern::parse(&format!("{key}.{name}[{i}]"), t))
                .collect::<Result<Vec<_>>>()
        };
        Ok(HeaderRules {
            forward: forward.map(|f| list("forward_headers", f)).transpose()?,
            drop: list("drop_headers", drop)?,
        })
    }

    fn allows(&self, name: &str) -> bool {
        !self.drop.iter().any(|p| p.matches(name))
            && self
                .forward
                .as_ref()
                .is_none_or(|f| f.iter().any(|p| p.matches(name)))
    }

    fn names_exactly(&self, name: &str) -> bool {
        self.forward
            .iter()
            .flatten()
            .any(|p| matches!(p, Pattern::Name(n) if n == name))
    }
}

/// What one passthrough delivery forwards of `headers` (the event's, as
/// stored: lower-case names, in order), and what it left off past the
/// bounds. `secret` lists the headers that carried the source's signature
/// or credential: like credentials, forwarded only when named exactly;
/// `redacted` those the store holds only as `[redacted]`: never.
pub fn forwarded(
    headers: &[(String, String)],
    secret: &[String],
    redacted: &[String],
    source: &HeaderRules,
    target: &HeaderRules,
) -> (Vec<(String, String)>, Vec<RefusedHeader>) {
    // The sender's Connection header names more hop-by-hop headers.
    let connection: Vec<String> = headers
        .iter()
        .filter(|(k, _)| k == "connection")
        .flat_map(|(_, v)| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    let mut kept = Vec::new();
    let mut refused = Vec::new();
    let mut bytes = 0;
    for (name, value) in headers {
        let never = super::headers::reserved(name).is_some()
            || THIS_HOP.contains(&name.as_str())
            || connection.contains(name)
            || redacted.contains(name);
        if never || !source.allows(name) || !target.allows(name) {
            continue;
        }
        let private = PRIVATE.contains(&name.as_str()) || secret.contains(name);
        if private && !source.names_exactly(name) && !target.names_exactly(name) {
            continue;
        }
        let reason = if HeaderValue::from_str(value).is_err() {
            Some("not a valid header value".to_string())
        } else if kept.len() >= MAX_FORWARDED {
            Some(format!("more than {MAX_FORWARDED} forwarded headers"))
        } else if bytes + name.len() + value.len() > MAX_FORWARDED_BYTES {
            Some(format!(
                "forwarded headers past {} KiB",
                MAX_FORWARDED_BYTES / 1024
            ))
        } else {
            None
        };
        match reason {
            None => {
                bytes += name.len() + value.len();
                kept.push((name.clone(), value.clone()));
            }
            Some(reason) => refused.push(RefusedHeader {
                name: name.chars().take(256).collect(),
                reason,
            }),
        }
    }
    (kept, refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn names(list: &[(String, String)]) -> Vec<&str> {
        list.iter().map(|(k, _)| k.as_str()).collect()
    }

    fn rules(forward: Option<&[&str]>, drop: &[&str]) -> HeaderRules {
        let s = |l: &[&str]| l.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        HeaderRules::from_config("t", forward.map(s).as_deref(), &s(drop)).unwrap()
    }

    fn github() -> Vec<(String, String)> {
        h(&[
            ("host", "hookyard.example"),
            ("content-length", "10"),
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
            ("user-agent", "GitHub-Hookshot/abc"),
            ("x-github-event", "push"),
            ("x-github-delivery", "d-1"),
            ("x-hub-signature-256", "sha256=ab"),
            ("x-hub-signature", "sha1=ab"),
            ("authorization", "Bearer t"),
            ("cookie", "a=b"),
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "1"),
            ("expect", "100-continue"),
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ("webhook-id", "msg_x"),
            ("x-hookyard-event-id", "evt_spoofed"),
        ])
    }

    const SECRET: &[&str] = &["x-hub-signature-256", "x-hub-signature"];

    fn secret() -> Vec<String> {
        SECRET.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_default_set_is_the_senders_headers_minus_framing_credentials_and_signatures() {
        let (kept, refused) = forwarded(
            &github(),
            &secret(),
            &[],
            &HeaderRules::default(),
            &HeaderRules::default(),
        );
        assert_eq!(
            names(&kept),
            vec![
                "content-type",
                "user-agent",
                "x-github-event",
                "x-github-delivery"
            ]
        );
        assert!(refused.is_empty());
    }

    #[test]
    fn forward_and_drop_lists_change_the_set() {
        let only_github = rules(Some(&["x-github-*"]), &[]);
        let (kept, _) = forwarded(
            &github(),
            &secret(),
            &[],
            &only_github,
            &HeaderRules::default(),
        );
        assert_eq!(names(&kept), vec!["x-github-event", "x-github-delivery"]);
        // Source and target both apply: the target drops one more.
        let (kept, _) = forwarded(
            &github(),
            &secret(),
            &[],
            &only_github,
            &rules(None, &["X-GitHub-Delivery"]),
        );
        assert_eq!(names(&kept), vec!["x-github-event"]);
        // Credentials and the verified signature only when named exactly;
        // a pattern is not enough.
        let (kept, _) = forwarded(
            &github(),
            &secret(),
            &[],
            &rules(Some(&["*"]), &[]),
            &rules(Some(&["x-*", "authorization"]), &[]),
        );
        assert_eq!(
            names(&kept),
            vec!["x-github-event", "x-github-delivery", "authorization"]
        );
        let (kept, _) = forwarded(
            &github(),
            &secret(),
            &["authorization".to_string()],
            &rules(Some(&["authorization", "x-hub-signature-256"]), &[]),
            &HeaderRules::default(),
        );
        assert_eq!(names(&kept), vec!["x-hub-signature-256"]);
        // Never, whatever the lists say.
        let (kept, _) = forwarded(
            &github(),
            &secret(),
            &[],
            &rules(
                Some(&["host", "connection", "x-hop", "traceparent", "webhook-id"]),
                &[],
            ),
            &HeaderRules::default(),
        );
        assert!(kept.is_empty(), "{kept:?}");
    }

    #[test]
    fn forwarding_is_bounded_in_count_and_bytes() {
        let many: Vec<(String, String)> = (0..MAX_FORWARDED + 5)
            .map(|i| (format!("x-h{i}"), "v".to_string()))
            .collect();
        let d = HeaderRules::default();
        let (kept, refused) = forwarded(&many, &[], &[], &d, &d);
        assert_eq!(kept.len(), MAX_FORWARDED);
        assert_eq!(refused.len(), 5);
        assert!(refused[0].reason.contains("more than"), "{refused:?}");
        let big: Vec<(String, String)> = (0..5)
            .map(|i| (format!("x-b{i}"), "v".repeat(5000)))
            .collect();
        let (kept, refused) = forwarded(&big, &[], &[], &d, &d);
        assert_eq!(kept.len(), 3);
        assert_eq!(refused.len(), 2);
        assert!(refused[0].reason.contains("KiB"), "{refused:?}");
    }

    #[test]
    fn patterns_are_checked() {
        assert_eq!(
            Pattern::parse("k", "X-GitHub-*").unwrap(),
            Pattern::Prefix("x-github-".into())
        );
        assert_eq!(
            Pattern::parse("k", "*").unwrap(),
            Pattern::Prefix("".into())
        );
        for bad in ["x-*-y", "a b", "", "x:y"] {
            let err = Pattern::parse("sources.s.forward_headers[0]", bad).unwrap_err();
            assert!(err.to_string().contains("forward_headers[0]"), "{err}");
        }
    }
}
