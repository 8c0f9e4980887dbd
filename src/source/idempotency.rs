//! Which part of a request identifies a delivery, so a provider's retry of
//! something we already stored is answered "duplicate" instead of being
//! routed twice.

use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

/// Longest value (bytes) stored in a key as it is; longer ones are hashed.
const MAX_PLAIN_KEY: usize = 128;

/// Default time a key is remembered; providers retry within hours.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Header(String),
    /// RFC 6901 pointer into a JSON body, e.g. Stripe's `/id`.
    JsonPointer(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: KeySource,
    pub window: Duration,
}

impl Idempotency {
    /// The request's key, if it has one (a request without one is simply
    /// not deduplicated). The key is the whole value, tagged with its JSON
    /// type so `1` and `"1"` stay distinct; a long value is replaced by its
    /// SHA-256, which bounds what the store keeps per key without letting
    /// two ids that share a prefix collide.
    pub fn key_of(&self, headers: &HeaderMap, body: &[u8]) -> Option<String> {
        let (tag, value) = match &self.key {
            KeySource::Header(name) => ('s', headers.get(name)?.to_str().ok()?.trim().to_string()),
            KeySource::JsonPointer(ptr) => {
                let v: serde_json::Value = serde_json::from_slice(body).ok()?;
                match v.pointer(ptr)? {
                    serde_json::Value::String(s) => ('s', s.clone()),
                    serde_json::Value::Number(n) => ('n', n.to_string()),
                    _ => return None,
                }
            }
        };
        if value.is_empty() {
            return None;
        }
        Some(if value.len() <= MAX_PLAIN_KEY {
            format!("{tag}:{value}")
        } else {
            // `#` instead of `:` so a hash never equals a short value.
            let digest = Sha256::digest(value.as_bytes());
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            format!("{tag}#{hex}")
        })
    }

    /// Parses `idempotency = { header = "..." | json_pointer = "/...", window = "24h" }`
    /// or `idempotency = false`; `preset` is the scheme's default.
    pub fn from_config(
        key: &str,
        value: Option<&toml::Value>,
        preset: Option<KeySource>,
    ) -> Result<Option<Idempotency>> {
        let table = match value {
            None => {
                return Ok(preset.map(|k| Idempotency {
                    key: k,
                    window: DEFAULT_WINDOW,
                }));
            }
            Some(toml::Value::Boolean(false)) => return Ok(None),
            Some(toml::Value::Table(t)) => t,
            Some(other) => bail!(
                "{key}: expected a table like {{ header = \"webhook-id\" }} or false, got {other}"
            ),
        };
        let mut source = preset;
        let mut window = DEFAULT_WINDOW;
        for (k, v) in table {
            let text = v
                .as_str()
                .ok_or_else(|| anyhow!("{key}.{k}: expected a string"))?;
            match k.as_str() {
                "header" => source = Some(KeySource::Header(text.to_ascii_lowercase())),
                "json_pointer" => {
                    if !text.starts_with('/') {
                        bail!("{key}.json_pointer: {text:?} must start with '/' (e.g. \"/id\")");
                    }
                    source = Some(KeySource::JsonPointer(text.to_string()));
                }
                "window" => window = crate::config::parse_duration(&format!("{key}.window"), text)?,
                other => bail!("{key}: unknown key {other:?} (use header, json_pointer, window)"),
            }
        }
        let key_source = source
            .ok_or_else(|| anyhow!("{key}: needs header = \"...\" or json_pointer = \"/...\""))?;
        Ok(Some(Idempotency {
            key: key_source,
            window,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_headers_and_json() {
        let mut h = HeaderMap::new();
        h.insert("x-github-delivery", "abc-123".parse().unwrap());
        let by_header = Idempotency {
            key: KeySource::Header("x-github-delivery".into()),
            window: DEFAULT_WINDOW,
        };
        assert_eq!(by_header.key_of(&h, b""), Some("s:abc-123".into()));
        assert_eq!(by_header.key_of(&HeaderMap::new(), b""), None);
        let by_body = Idempotency {
            key: KeySource::JsonPointer("/id".into()),
            window: DEFAULT_WINDOW,
        };
        assert_eq!(
            by_body.key_of(&h, br#"{"id":"evt_1"}"#),
            Some("s:evt_1".into())
        );
        assert_eq!(by_body.key_of(&h, b"not json"), None);
    }

    #[test]
    fn keys_keep_the_whole_value_and_its_type() {
        let by_body = Idempotency {
            key: KeySource::JsonPointer("/id".into()),
            window: DEFAULT_WINDOW,
        };
        let key = |body: String| by_body.key_of(&HeaderMap::new(), body.as_bytes()).unwrap();
        assert_ne!(key(r#"{"id":1}"#.into()), key(r#"{"id":"1"}"#.into()));
        let long = "x".repeat(300);
        let a = key(format!(r#"{{"id":"{long}a"}}"#));
        let b = key(format!(r#"{{"id":"{long}b"}}"#));
        assert_ne!(a, b);
        assert_eq!(a, key(format!(r#"{{"id":"{long}a"}}"#)));
        assert!(a.len() <= 66, "{a}");
        assert_ne!(
            key(format!(r#"{{"id":{}}}"#, "9".repeat(300))),
            key(format!(r#"{{"id":"{}"}}"#, "9".repeat(300)))
        );
        // A short value that looks like a hash is not one.
        let hashed = &a[2..];
        assert_ne!(key(format!(r#"{{"id":"{hashed}"}}"#)), a);
        assert_eq!(by_body.key_of(&HeaderMap::new(), br#"{"id":""}"#), None);
        assert_eq!(by_body.key_of(&HeaderMap::new(), br#"{"id":true}"#), None);
    }

    #[test]
    fn config_forms() {
        let t: toml::Value =
            toml::from_str("x = { json_pointer = \"/id\", window = \"1h\" }").unwrap();
        let i = Idempotency::from_config("k", t.get("x"), None)
            .unwrap()
            .unwrap();
        assert_eq!(i.window, Duration::from_secs(3600));
        assert_eq!(
            Idempotency::from_config(
                "k",
                Some(&toml::Value::Boolean(false)),
                Some(KeySource::Header("a".into()))
            )
            .unwrap(),
            None
        );
        let bad: toml::Value = toml::from_str("x = { json_pointer = \"id\" }").unwrap();
        assert!(Idempotency::from_config("k", bad.get("x"), None).is_err());
    }
}
