//! Counts of what each source accepted and rejected (by reason), and the
//! most recent rejections with enough detail to debug a misconfigured
//! sender: reason, time, client, headers with secrets redacted, body size.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use axum::http::HeaderMap;
use serde::Serialize;

/// Recent rejections kept in memory (oldest dropped first).
const KEPT: usize = 100;

/// Headers that carry credentials in every scheme, redacted always.
const ALWAYS_SENSITIVE: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-hub-signature",
    "x-hub-signature-256",
    "stripe-signature",
    "webhook-signature",
    "x-shopify-hmac-sha256",
    "x-slack-signature",
];

#[derive(Debug, Clone, Serialize)]
pub struct Rejected {
    pub source: String,
    pub reason: String,
    pub message: String,
    pub status: u16,
    pub at: u64,
    pub client_ip: String,
    pub headers: Vec<(String, String)>,
    pub body_size: Option<u64>,
}

#[derive(Default)]
struct Inner {
    counts: BTreeMap<String, BTreeMap<String, u64>>,
    recent: VecDeque<Rejected>,
}

/// Per-source ingestion outcomes.
#[derive(Default)]
pub struct IngestLog {
    inner: Mutex<Inner>,
}

impl IngestLog {
    /// Counts an outcome (`accepted`, `duplicate`, or a rejection reason).
    pub fn count(&self, source: &str, outcome: &str) {
        let mut i = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *i.counts
            .entry(source.to_string())
            .or_default()
            .entry(outcome.to_string())
            .or_default() += 1;
    }

    /// Counts a rejection and remembers it, redacting `sensitive` headers.
    pub fn reject(&self, mut r: Rejected, headers: &HeaderMap, sensitive: &[String]) {
        r.headers = headers
            .iter()
            .map(|(k, v)| {
                let name = k.as_str();
                let secret = ALWAYS_SENSITIVE.contains(&name)
                    || sensitive.iter().any(|s| s.eq_ignore_ascii_case(name));
                let value = if secret {
                    "[redacted]".to_string()
                } else {
                    String::from_utf8_lossy(v.as_bytes())
                        .chars()
                        .take(256)
                        .collect()
                };
                (name.to_string(), value)
            })
            .collect();
        self.count(&r.source, &r.reason);
        let mut i = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if i.recent.len() >= KEPT {
            i.recent.pop_front();
        }
        i.recent.push_back(r);
    }

    /// Outcome counts per source.
    pub fn counts(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .counts
            .clone()
    }

    /// Most recent rejections first.
    pub fn recent(&self) -> Vec<Rejected> {
        let i = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        i.recent.iter().rev().cloned().collect()
    }
}
