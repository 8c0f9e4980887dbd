//! `hookyard send`: POST a body signed exactly as a provider signs it, to try
//! a source's verification (or any receiver) without the provider.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};

use crate::source::verify::{SignOptions, sign_as};

pub struct Send {
    pub url: String,
    pub scheme: Option<String>,
    pub secret: Option<String>,
    pub file: Option<PathBuf>,
    pub data: Option<String>,
    pub headers: Vec<String>,
    pub options: SignOptions,
}

/// Sends the request and prints the answer; the result says whether it
/// was a 2xx.
pub async fn run(send: Send) -> Result<bool> {
    let body = match (&send.file, &send.data) {
        (Some(_), Some(_)) => return Err(anyhow!("use --file or --data, not both")),
        (Some(f), None) => {
            std::fs::read(f).with_context(|| format!("--file: cannot read {}", f.display()))?
        }
        (None, Some(d)) => d.clone().into_bytes(),
        (None, None) => b"{}".to_vec(),
    };
    let mut request = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?
        .post(&send.url);
    let has_content_type = send
        .headers
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("content-type:"));
    if !has_content_type {
        let json = serde_json::from_slice::<serde_json::Value>(&body).is_ok();
        request = request.header(
            "content-type",
            if json {
                "application/json"
            } else {
                "application/octet-stream"
            },
        );
    }
    for h in &send.headers {
        let (k, v) = h
            .split_once(':')
            .with_context(|| format!("-H {h:?}: expected 'name: value'"))?;
        request = request.header(k.trim(), v.trim());
    }
    if let Some(scheme) = &send.scheme {
        let secret = send
            .secret
            .as_deref()
            .ok_or_else(|| anyhow!("--scheme {scheme} needs --secret"))?;
        let now = crate::model::id::now_ms() as i64 / 1000;
        for (k, v) in sign_as(scheme, secret, &body, now, &send.options)? {
            request = request.header(k, v);
        }
    }
    let response = request
        .body(body)
        .send()
        .await
        .with_context(|| format!("POST {} failed", send.url))?;
    let status = response.status();
    println!("HTTP {status}");
    let text = response.text().await.unwrap_or_default();
    if !text.is_empty() {
        println!("{text}");
    }
    Ok(status.is_success())
}
