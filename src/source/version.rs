//! Where a source's events carry their version (`Stripe-Version`,
//! `X-GitHub-Api-Version`, a field of the body), so it can be stored with
//! the event, filtered on, handed to plugins and sent on with deliveries.
//!
//! A version is a label, not content: it is kept only when it is short
//! (at most [`MAX_VERSION`] bytes) and has no control characters, because it
//! goes into listings, log lines, plugin records and outgoing headers. A
//! request whose version does not qualify is still accepted and stored,
//! without one: refusing a provider's webhook over its version label would
//! lose the event, and the body and headers keep whatever was sent.

use anyhow::{Result, anyhow, bail};
use axum::http::HeaderMap;

/// Longest version kept, in bytes.
pub const MAX_VERSION: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSource {
    /// A request header (lower-case name).
    Header(String),
    /// An RFC 6901 pointer into a JSON body; the value there must be a
    /// string or a number.
    JsonPointer(String),
}

impl VersionSource {
    /// Parses `version = { header = "stripe-version" }` or
    /// `version = { json_pointer = "/api_version" }`.
    pub fn from_config(key: &str, value: &toml::Value) -> Result<VersionSource> {
        let toml::Value::Table(table) = value else {
            bail!(
                "{key}: expected a table like {{ header = \"stripe-version\" }} or \
                 {{ json_pointer = \"/api_version\" }}, got {value}"
            );
        };
        let mut found = None;
        for (k, v) in table {
            let text = v
                .as_str()
                .ok_or_else(|| anyhow!("{key}.{k}: expected a string"))?;
            let source = match k.as_str() {
                "header" => {
                    let name = text.to_ascii_lowercase();
                    axum::http::HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| anyhow!("{key}.header: {text:?} is not a header name"))?;
                    VersionSource::Header(name)
                }
                "json_pointer" => {
                    if !text.starts_with('/') {
                        bail!(
                            "{key}.json_pointer: {text:?} must start with '/' (e.g. \"/api_version\")"
                        );
                    }
                    VersionSource::JsonPointer(text.to_string())
                }
                other => bail!("{key}: unknown key {other:?} (use header or json_pointer)"),
            };
            if found.replace(source).is_some() {
                bail!("{key}: set one of header or json_pointer, not both");
            }
        }
        found.ok_or_else(|| anyhow!("{key}: needs header = \"...\" or json_pointer = \"/...\""))
    }

    /// The request's version, if it carries one that qualifies (see the
    /// module docs). The body is only parsed for a JSON pointer.
    pub fn find(&self, headers: &HeaderMap, body: &[u8]) -> Option<String> {
        let text = match self {
            VersionSource::Header(name) => headers.get(name)?.to_str().ok()?.to_string(),
            VersionSource::JsonPointer(ptr) => {
                let v: serde_json::Value = serde_json::from_slice(body).ok()?;
                match v.pointer(ptr)? {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Number(n) => n.to_string(),
                    _ => return None,
                }
            }
        };
        let text = text.trim();
        let fits =
            !text.is_empty() && text.len() <= MAX_VERSION && !text.chars().any(char::is_control);
        fits.then(|| text.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<VersionSource> {
        let t: toml::Value = toml::from_str(&format!("v = {text}")).unwrap();
        VersionSource::from_config("sources.s.version", t.get("v").unwrap())
    }

    #[test]
    fn config_forms_and_errors_name_the_key() {
        assert_eq!(
            parse(r#"{ header = "Stripe-Version" }"#).unwrap(),
            VersionSource::Header("stripe-version".into())
        );
        assert_eq!(
            parse(r#"{ json_pointer = "/api_version" }"#).unwrap(),
            VersionSource::JsonPointer("/api_version".into())
        );
        for (bad, says) in [
            (
                r#"{ json_pointer = "api_version" }"#,
                "sources.s.version.json_pointer",
            ),
            (r#"{ header = "bad name" }"#, "sources.s.version.header"),
            (r#"{ header = "a", json_pointer = "/b" }"#, "not both"),
            (r#"{ headr = "a" }"#, "unknown key \"headr\""),
            ("{}", "needs header"),
            (r#""stripe-version""#, "expected a table"),
            (
                "{ header = 1 }",
                "sources.s.version.header: expected a string",
            ),
        ] {
            let err = format!("{:#}", parse(bad).unwrap_err());
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn versions_are_short_printable_labels() {
        let by_header = VersionSource::Header("stripe-version".into());
        let mut h = HeaderMap::new();
        h.insert("stripe-version", " 2024-06-20 ".parse().unwrap());
        assert_eq!(by_header.find(&h, b""), Some("2024-06-20".into()));
        assert_eq!(by_header.find(&HeaderMap::new(), b""), None);
        h.insert("stripe-version", "x".repeat(MAX_VERSION).parse().unwrap());
        assert_eq!(by_header.find(&h, b"").map(|v| v.len()), Some(MAX_VERSION));
        h.insert(
            "stripe-version",
            "x".repeat(MAX_VERSION + 1).parse().unwrap(),
        );
        assert_eq!(by_header.find(&h, b""), None);

        let by_body = VersionSource::JsonPointer("/meta/v".into());
        let find = |body: &str| by_body.find(&HeaderMap::new(), body.as_bytes());
        assert_eq!(find(r#"{"meta":{"v":"2"}}"#), Some("2".into()));
        assert_eq!(find(r#"{"meta":{"v":3}}"#), Some("3".into()));
        assert_eq!(find(r#"{"meta":{"v":true}}"#), None);
        assert_eq!(find(r#"{"meta":{"v":{"x":1}}}"#), None);
        assert_eq!(find(r#"{"meta":{"v":"a\nb"}}"#), None);
        assert_eq!(find(r#"{"meta":{"v":""}}"#), None);
        assert_eq!(find("not json"), None);
    }
}
