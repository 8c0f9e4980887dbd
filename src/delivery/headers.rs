//! Which headers a plugin may put on a delivery.
//!
//! A plugin's headers go on the wire next to the ones hookyard writes, so a
//! few must stay hookyard's: a plugin-set `content-length` truncated the
//! body on the wire (and broke the signature) or hung the request until the
//! timeout, and hop-by-hop headers describe a connection the plugin does
//! not own. Names and values that are not valid HTTP (CR/LF, spaces) cannot
//! be sent at all. Such headers are left off and recorded on the delivery
//! with the reason, so what a delivery shows as its headers is what was
//! sent.

use reqwest::header::{HeaderName, HeaderValue};

use crate::model::records::RefusedHeader;
use crate::webhooks::standard;

/// Most headers a plugin may set on one delivery.
pub const MAX_HEADERS: usize = 64;

/// Headers hookyard writes itself or that belong to the connection.
const RESERVED: &[(&str, &str)] = &[
    ("content-length", "framing: hookyard sets it from the body"),
    (
        "transfer-encoding",
        "framing: hookyard sets it from the body",
    ),
    ("host", "framing: it comes from the target's URL"),
    (
        "content-encoding",
        "hookyard sends bodies decoded, or compressed itself (a target's compress)",
    ),
    ("connection", "hop-by-hop"),
    ("keep-alive", "hop-by-hop"),
    ("proxy-connection", "hop-by-hop"),
    ("proxy-authenticate", "hop-by-hop"),
    ("proxy-authorization", "hop-by-hop"),
    ("te", "hop-by-hop"),
    ("trailer", "hop-by-hop"),
    ("upgrade", "hop-by-hop"),
    (standard::ID, "hookyard signs deliveries and sets it"),
    (standard::TIMESTAMP, "hookyard signs deliveries and sets it"),
    (standard::SIGNATURE, "hookyard signs deliveries and sets it"),
    (EVENT_ID, "hookyard names the event on every delivery"),
    (SOURCE, "hookyard names the source on every delivery"),
];

/// The event a delivery came from, on every delivery, so a receiver (or
/// its operator) can find it in hookyard.
pub const EVENT_ID: &str = "x-hookyard-event-id";
/// The source the event came in on, on every delivery.
pub const SOURCE: &str = "x-hookyard-source";

/// Why hookyard keeps `name` (lower-case) for itself, if it does.
pub fn reserved(name: &str) -> Option<&'static str> {
    RESERVED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, why)| *why)
}

/// Splits a plugin's headers into those that will be sent (names
/// lower-cased) and those refused, with the reason.
pub fn screen(headers: Vec<(String, String)>) -> (Vec<(String, String)>, Vec<RefusedHeader>) {
    let mut kept = Vec::with_capacity(headers.len());
    let mut refused = Vec::new();
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        let reason = if kept.len() >= MAX_HEADERS {
            Some(format!("more than {MAX_HEADERS} headers on one delivery"))
        } else if let Some(why) = reserved(&lower) {
            Some(why.to_string())
        } else if HeaderName::from_bytes(lower.as_bytes()).is_err() {
            Some("not a valid header name".to_string())
        } else if HeaderValue::from_str(&value).is_err() {
            Some("not a valid header value (control characters such as CR or LF)".to_string())
        } else {
            None
        };
        match reason {
            None => kept.push((lower, value)),
            Some(reason) => refused.push(RefusedHeader {
                name: crate::routing::cap_text(name).chars().take(256).collect(),
                reason,
            }),
        }
    }
    (kept, refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[RefusedHeader]) -> Vec<&str> {
        list.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn framing_hop_by_hop_and_invalid_headers_are_refused() {
        let (kept, refused) = screen(vec![
            ("X-Custom".into(), "a".into()),
            ("Content-Length".into(), "3".into()),
            ("transfer-encoding".into(), "chunked".into()),
            ("connection".into(), "close".into()),
            ("webhook-signature".into(), "v1,forged".into()),
            ("x-injected".into(), "a\r\nx-evil: 1".into()),
            ("bad name".into(), "v".into()),
        ]);
        assert_eq!(kept, vec![("x-custom".to_string(), "a".to_string())]);
        assert_eq!(
            names(&refused),
            vec![
                "Content-Length",
                "transfer-encoding",
                "connection",
                "webhook-signature",
                "x-injected",
                "bad name"
            ]
        );
        assert!(refused[0].reason.contains("framing"), "{refused:?}");
        assert!(refused[5].reason.contains("name"), "{refused:?}");
    }

    #[test]
    fn at_most_max_headers_are_kept() {
        let many = (0..MAX_HEADERS + 3)
            .map(|i| (format!("x-h{i}"), "v".to_string()))
            .collect();
        let (kept, refused) = screen(many);
        assert_eq!(kept.len(), MAX_HEADERS);
        assert_eq!(refused.len(), 3);
    }
}
