//! The most recent rejections, with enough detail to debug a misconfigured
//! sender: reason, time, client, headers with secrets redacted, body size.
//! (How many requests each source accepted and rejected is counted by
//! [`crate::telemetry`].)

use std::collections::VecDeque;
use std::sync::Mutex;

use axum::http::HeaderMap;
use serde::Serialize;

use crate::telemetry::RejectReason;

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
    pub reason: RejectReason,
    pub message: String,
    pub status: u16,
    pub at: u64,
    pub client_ip: String,
    pub headers: Vec<(String, String)>,
    pub body_size: Option<u64>,
}

/// The last `KEPT` (100) rejections of every source, oldest dropped first.
#[derive(Default)]
pub struct RecentRejections {
    recent: Mutex<VecDeque<Rejected>>,
}

impl RecentRejections {
    /// Remembers a rejection, redacting `sensitive` headers.
    pub fn remember(&self, mut r: Rejected, headers: &HeaderMap, sensitive: &[String]) {
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
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() >= KEPT {
            recent.pop_front();
        }
        recent.push_back(r);
    }

    /// Most recent rejections first.
    pub fn recent(&self) -> Vec<Rejected> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.iter().rev().cloned().collect()
    }
}
